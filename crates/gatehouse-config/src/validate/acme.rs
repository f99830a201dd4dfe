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
    let storage = match &a.storage {
        None => AcmeStorage::Folder(defaults::ACME_STORAGE.into()),
        Some(st) => {
            match st.get_ref().split_once("://") {
                None => AcmeStorage::Folder(st.get_ref().into()),
                Some((scheme @ ("redis" | "rediss"), rest)) => {
                    if let Err(e) = check_redis_address(rest) {
                        c.err(st.span(), "acme.storage", format!("{scheme}:// URL: {e}"));
                    }
                    let prefix = a.storage_prefix.as_ref().map_or_else(
                        || defaults::ACME_REDIS_PREFIX.to_string(),
                        |p| p.get_ref().clone(),
                    );
                    if let Some(p) = &a.storage_prefix {
                        let ok = !prefix.is_empty()
                            && prefix.len() <= 64
                            && prefix.bytes().all(|b| b.is_ascii_graphic());
                        if !ok {
                            c.err(
                                p.span(),
                                "acme.storage_prefix",
                                "1 to 64 printable characters without spaces, e.g. \"gatehouse:\"",
                            );
                        }
                    }
                    let ca = a.redis_ca.as_ref().filter(|p| !p.get_ref().is_empty());
                    if let Some(p) = ca {
                        if scheme == "redis" {
                            c.err(
                                p.span(),
                                "acme.redis_ca",
                                "applies only to rediss:// (Redis over TLS)",
                            );
                        }
                    }
                    AcmeStorage::Redis(RedisStore {
                        url: RedisUrl(st.get_ref().clone()),
                        prefix,
                        ca: ca.map(|p| p.get_ref().into()),
                        ca_at: ca.map_or(at, |p| c.at(p.span())),
                    })
                }
                // A URL is never a folder: a scheme Gatehouse cannot use is an error, not a folder named "s3:".
                Some((scheme, _)) => {
                    c.err(
                    st.span(),
                    "acme.storage",
                    format!("{scheme}:// storage is not supported: use a folder, redis:// or rediss://"),
                );
                    AcmeStorage::Folder(defaults::ACME_STORAGE.into())
                }
            }
        }
    };
    if !matches!(storage, AcmeStorage::Redis(_)) {
        for (v, key) in [
            (&a.storage_prefix, "acme.storage_prefix"),
            (&a.redis_ca, "acme.redis_ca"),
        ] {
            if let Some(v) = v {
                c.err(
                    v.span(),
                    key,
                    "applies only to a redis:// or rediss:// storage",
                );
            }
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
        storage,
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
        lock_ttl: c.timeout(&a.lock_ttl, "acme.lock_ttl", defaults::ACME_LOCK_TTL),
    }
}

/// `[user[:password]@]host[:port][/db]` of a Redis URL: a host, a numeric port, a numeric database.
fn check_redis_address(rest: &str) -> Result<(), String> {
    let hostpart = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let (hostport, db) = match hostpart.split_once('/') {
        Some((hp, db)) => (hp, Some(db)),
        None => (hostpart, None),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("an IPv6 host needs its closing ]")?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host (redis://host:6379/0)".into());
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{p:?} is not a port"));
        }
    }
    if let Some(db) = db.filter(|d| !d.is_empty()) {
        if db.parse::<u32>().is_err() {
            return Err(format!("{db:?} is not a database number"));
        }
    }
    Ok(())
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
        for (url, words) in [
            ("s3://bucket/acme", "not supported"),
            ("redis://", "no host"),
            ("redis://h:port/0", "not a port"),
            ("rediss://h:6379/x", "not a database"),
        ] {
            rejects(
                url,
                "[pool.web]",
                &format!("[acme]\nstorage = \"{url}\"\n[pool.web]"),
                13,
                words,
            );
        }
        rejects(
            "prefix on a folder",
            "[pool.web]",
            "[acme]\nstorage_prefix = \"x:\"\n[pool.web]",
            13,
            "applies only to a redis",
        );
    }

    #[test]
    fn redis_storage_keeps_its_password_out_of_sight() {
        let cfg = parse(
            &format!("[acme]\nstorage = \"rediss://ops:s3cret@redis.internal:6380/2\"\nstorage_prefix = \"edge:\"\n{OK}"),
            "t",
        )
        .unwrap();
        let crate::AcmeStorage::Redis(r) = cfg.acme.unwrap().storage else {
            panic!("not redis")
        };
        assert!(r.url.tls());
        assert_eq!(r.prefix, "edge:");
        assert_eq!(r.url.redacted(), "rediss://ops:***@redis.internal:6380/2");
        assert!(!format!("{r:?}").contains("s3cret"));
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
