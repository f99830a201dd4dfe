//! `[acme]`: where certificates come from and how often they are looked at.

use super::Checker;
use crate::model::*;
use crate::raw::RawAcme;
use toml::Spanned;

pub(super) fn check(c: &mut Checker, raw: &Spanned<RawAcme>) -> Acme {
    let at = c.at(raw.span());
    let a = raw.get_ref();
    let directory = match a.directory.as_ref().map(|d| (d, d.get_ref().as_str())) {
        None | Some((_, "letsencrypt")) => defaults::LETSENCRYPT.to_string(),
        Some((_, "letsencrypt-staging")) => defaults::LETSENCRYPT_STAGING.to_string(),
        Some((_, url)) if url.starts_with("https://") || url.starts_with("http://") => {
            url.to_string()
        }
        Some((d, other)) => {
            c.err(d.span(), "acme.directory", format!("{other:?}: expected \"letsencrypt\", \"letsencrypt-staging\" or a directory URL (https://…)"));
            String::new()
        }
    };
    let challenge = match a.challenge.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "tls-alpn-01")) => AcmeChallenge::TlsAlpn01,
        Some((_, "http-01")) => AcmeChallenge::Http01,
        Some((v, other)) => {
            c.err(v.span(), "acme.challenge", format!("{other:?}: expected \"tls-alpn-01\" or \"http-01\" (dns-01 is not supported yet)"));
            AcmeChallenge::TlsAlpn01
        }
    };
    let ca_root = a.ca_root.as_ref().filter(|p| !p.get_ref().is_empty());
    if let Some(st) = &a.storage {
        // A URL is never a folder: a scheme this version cannot use is an error, not a folder named "redis:".
        if let Some((scheme, _)) = st.get_ref().split_once("://") {
            c.err(
                st.span(),
                "acme.storage",
                format!("{scheme}:// storage is not supported by this version of Gatehouse; use a folder"),
            );
        }
    }
    let renew_before = match &a.renew_before {
        None => None,
        Some(v) if v.get_ref() == "auto" => None,
        Some(v) => Some(c.duration(
            &Some(v.clone()),
            "acme.renew_before",
            std::time::Duration::ZERO,
        )),
    };
    Acme {
        at,
        email: a
            .email
            .as_ref()
            .map(|e| e.get_ref().clone())
            .filter(|e| !e.is_empty()),
        directory,
        ca_root: ca_root.map(|p| p.get_ref().into()),
        ca_root_at: ca_root.map_or(at, |p| c.at(p.span())),
        challenge,
        storage: a
            .storage
            .as_ref()
            .map_or_else(|| defaults::ACME_STORAGE.into(), |s| s.get_ref().into()),
        storage_at: a.storage.as_ref().map_or(at, |s| c.at(s.span())),
        renew_before,
        check_interval: c.timeout(
            &a.check_interval,
            "acme.check_interval",
            defaults::ACME_CHECK_INTERVAL,
        ),
        retry_initial: c.timeout(
            &a.retry_initial,
            "acme.retry_initial",
            defaults::ACME_RETRY_INITIAL,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{rejects, OK};
    use crate::parse;

    #[test]
    fn bad_acme_settings_name_their_line() {
        rejects(
            "directory",
            "[pool.web]",
            "[acme]\ndirectory = \"lets\"\n[pool.web]",
            13,
            "acme.directory",
        );
        rejects(
            "challenge",
            "[pool.web]",
            "[acme]\nchallenge = \"dns-01\"\n[pool.web]",
            13,
            "not supported yet",
        );
    }

    #[test]
    fn a_url_is_never_taken_for_a_folder() {
        rejects(
            "redis",
            "[pool.web]",
            "[acme]\nstorage = \"redis://127.0.0.1:6379/0\"\n[pool.web]",
            13,
            "not supported",
        );
    }

    #[test]
    fn aliases_and_auto_renewal() {
        let cfg = parse(
            &format!("[acme]\ndirectory = \"letsencrypt-staging\"\nrenew_before = \"auto\"\n{OK}"),
            "t",
        )
        .unwrap();
        let acme = cfg.acme.unwrap();
        assert!(acme.directory.contains("staging"));
        assert_eq!(acme.renew_before, None);
        assert_eq!(acme.at.line, 1);
    }
}
