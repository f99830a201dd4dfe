//! The certificate store rustls asks on every handshake: lock-free reads of an `ArcSwap`'d map, replaced whole
//! when certificates change, so listeners never need to be touched.

use crate::alpn;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Certificates by name.
#[derive(Debug, Default, Clone)]
pub struct CertMap {
    pub exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after the first label, dot included: `*.example.org` → `.example.org`.
    pub wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For a ClientHello whose SNI names no site (or that has no SNI): the default site's certificate.
    pub default: Option<Arc<CertifiedKey>>,
    /// The same, when no site is default: the first site's (in config order) that has one, as nginx does.
    pub first: Option<Arc<CertifiedKey>>,
}

impl CertMap {
    /// The certificate for `sni`: exact, then wildcard, then (unless `strict`) the default or first site's.
    pub fn lookup(&self, sni: Option<&str>, strict: bool) -> Option<&Arc<CertifiedKey>> {
        let named = sni.and_then(|name| {
            let name = name.trim_end_matches('.');
            self.exact.get(name).or_else(|| {
                let dot = name.find('.').filter(|&d| d > 0)?;
                self.wildcard.get(&name[dot..])
            })
        });
        if strict {
            return named;
        }
        named.or(self.default.as_ref()).or(self.first.as_ref())
    }
}

#[derive(Debug, Default)]
pub struct CertStore {
    certs: ArcSwap<CertMap>,
    /// `strict_sni`: a handshake that names no known site (or none) gets no certificate.
    strict: std::sync::atomic::AtomicBool,
    /// TLS-ALPN-01 answers by name, set by the ACME manager while an order is being validated.
    challenges: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every certificate at once; the next handshake sees the new map.
    pub fn replace(&self, map: CertMap) {
        self.certs.store(Arc::new(map));
    }

    pub fn map(&self) -> Arc<CertMap> {
        self.certs.load_full()
    }

    /// Refuse handshakes that name no known site (and ones without a name) instead of serving the default
    /// or first site's certificate.
    pub fn set_strict(&self, strict: bool) {
        self.strict
            .store(strict, std::sync::atomic::Ordering::Relaxed);
    }

    /// Serves `cert` to TLS-ALPN-01 validators asking for `name`.
    pub fn set_challenge(&self, name: &str, cert: Arc<CertifiedKey>) {
        self.challenges.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(name.to_ascii_lowercase(), cert.clone());
            m
        });
    }

    pub fn clear_challenge(&self, name: &str) {
        self.challenges.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.remove(&name.to_ascii_lowercase());
            m
        });
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        let acme_only = hello
            .alpn()
            .map(|mut protocols| protocols.all(|p| p == alpn::ACME_TLS))
            .unwrap_or(false);
        if acme_only {
            // RFC 8737: a validator offers only acme-tls/1 and must get the challenge certificate, or nothing.
            return sni.and_then(|n| self.challenges.load().get(&n).cloned());
        }
        let strict = self.strict.load(std::sync::atomic::Ordering::Relaxed);
        self.certs.load().lookup(sni.as_deref(), strict).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let der = rustls_pki_types::PrivateKeyDer::try_from(k.serialize_der()).unwrap();
        Arc::new(CertifiedKey::from_der(vec![c.der().clone()], der, &crate::provider()).unwrap())
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let (a, w, d) = (key("a.test"), key("*.w.test"), key("d.test"));
        let mut m = CertMap::default();
        m.exact.insert("a.test".into(), a.clone());
        m.wildcard.insert(".w.test".into(), w.clone());
        assert!(Arc::ptr_eq(m.lookup(Some("a.test"), false).unwrap(), &a));
        assert!(Arc::ptr_eq(m.lookup(Some("x.w.test"), false).unwrap(), &w));
        assert!(
            m.lookup(Some("x.y.w.test"), false).is_none(),
            "one label only"
        );
        assert!(m.lookup(Some("other.test"), false).is_none());
        assert!(m.lookup(None, false).is_none());
        m.first = Some(a.clone());
        assert!(
            Arc::ptr_eq(m.lookup(None, false).unwrap(), &a),
            "no default: the first site's"
        );
        m.default = Some(d.clone());
        assert!(Arc::ptr_eq(
            m.lookup(Some("other.test"), false).unwrap(),
            &d
        ));
        assert!(Arc::ptr_eq(m.lookup(None, false).unwrap(), &d));
        assert!(m.lookup(None, true).is_none(), "strict_sni");
        assert!(m.lookup(Some("other.test"), true).is_none(), "strict_sni");
        assert!(Arc::ptr_eq(m.lookup(Some("a.test"), true).unwrap(), &a));
    }
}
