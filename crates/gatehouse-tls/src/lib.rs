//! TLS for Gatehouse, on rustls with the aws-lc-rs provider.
//!
//! * [`certificate`] loads a PEM chain and key and checks them (the key matches, not expired, key file mode).
//! * [`store::CertStore`] answers rustls' "which certificate for this ClientHello?" from an `ArcSwap`'d map:
//!   exact names, then one-label wildcards, then the default site's. It also holds `acme-tls/1` challenge
//!   certificates, answered when a validator offers only that protocol.
//! * [`manager::CertManager`] owns the site → files mapping: a config reload replaces it whole (all pairs must
//!   load), a changed file replaces one pair (a bad pair is logged and the old one keeps serving).
//! * [`server`] and [`client`] build the rustls configs for listeners and for HTTPS upstreams.

pub mod certificate;
pub mod challenge;
pub mod client;
pub mod manager;
pub mod server;
pub mod store;

pub use certificate::{CertError, LoadedCert};
pub use challenge::Http01Tokens;
pub use manager::{CertInfo, CertManager, CertSource, ManagedSite, SiteCert};
pub use store::CertStore;

use std::sync::{Arc, OnceLock};

/// The one crypto provider Gatehouse uses (aws-lc-rs), shared.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The lowest TLS version a listener accepts. TLS 1.0 and 1.1 are never offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MinVersion {
    #[default]
    Tls12,
    Tls13,
}

/// ALPN protocol ids.
pub mod alpn {
    pub const H2: &[u8] = b"h2";
    pub const HTTP11: &[u8] = b"http/1.1";
    /// RFC 8737: a TLS-ALPN-01 validator offers only this.
    pub const ACME_TLS: &[u8] = b"acme-tls/1";
}
