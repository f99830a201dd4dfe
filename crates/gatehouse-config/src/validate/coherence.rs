//! Checks that span sections: a TLS listener needs a certificate, `tls = "acme"` needs `[acme]` and exact
//! names, `redirect_https` needs somewhere to redirect to.

use super::Checker;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::raw::RawConfig;

pub(super) fn check(c: &mut Checker, raw: &RawConfig, listeners: &[Listener], sites: &[Site]) {
    let any_cert = sites.iter().any(|s| s.tls.is_some());
    for (i, l) in listeners.iter().enumerate() {
        if l.tls.is_some() && !any_cert {
            let span = raw.listeners.get(i).map(|r| r.span());
            c.diags.push(Diagnostic::new(
                span,
                format!("listener[{i}].tls"),
                "a TLS listener needs at least one site with tls = { cert, key } or tls = \"acme\"",
            ));
        }
    }
    let has_tls_listener = listeners.iter().any(|l| l.tls.is_some());
    for (i, s) in sites.iter().enumerate() {
        if s.tls != Some(SiteTls::Acme) {
            continue;
        }
        let span = raw
            .sites
            .get(i)
            .and_then(|r| r.get_ref().tls.as_ref())
            .map(|v| v.span());
        if raw.acme.is_none() {
            c.diags.push(Diagnostic::new(
                span.clone(),
                format!("site[{i}].tls"),
                "tls = \"acme\" needs an [acme] section",
            ));
        }
        if s.hosts
            .iter()
            .any(|h| matches!(h, HostPattern::Wildcard(_)))
        {
            c.diags.push(Diagnostic::new(
                span.clone(),
                format!("site[{i}].tls"),
                "a wildcard host needs the DNS-01 challenge, which is not supported yet: list exact names, or use tls = { cert, key }",
            ));
        }
        if s.exact_hosts().is_empty() {
            c.diags.push(Diagnostic::new(
                span,
                format!("site[{i}].tls"),
                "an ACME certificate needs at least one exact host name",
            ));
        }
    }
    for (i, s) in sites.iter().enumerate() {
        if s.redirect_https && !has_tls_listener {
            let span = raw
                .sites
                .get(i)
                .and_then(|r| r.get_ref().redirect_https.as_ref())
                .map(|v| v.span());
            c.diags.push(Diagnostic::new(
                span,
                format!("site[{i}].redirect_https"),
                "needs a listener with tls = true",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, OK};

    #[test]
    fn tls_needs_certificates_and_acme_needs_its_section() {
        let tls_listener =
            format!("{OK}\n[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:8443\"\ntls = true\n");
        assert!(errors(&tls_listener)
            .iter()
            .any(|e| e.contains("needs at least one site with tls")));
        let acme_site = OK.replace("[[site]]", "[[site]]\ntls = \"acme\"");
        let e = errors(&acme_site);
        assert!(
            e.iter().any(|e| e.contains("needs an [acme] section")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("DNS-01")), "{e:?}");
        let redirect = OK.replace("[[site]]", "[[site]]\nredirect_https = true");
        assert!(errors(&redirect)
            .iter()
            .any(|e| e.contains("needs a listener with tls")));
    }
}
