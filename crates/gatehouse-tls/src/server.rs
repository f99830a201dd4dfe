//! The rustls server configuration of a TLS listener: TLS 1.2+ (or 1.3 only), certificates from the shared
//! [`CertStore`], ALPN h2 and http/1.1 (and acme-tls/1 for TLS-ALPN-01), session resumption by ID and tickets.

use crate::{alpn, provider, CertStore, MinVersion};
use rustls::ServerConfig;
use std::sync::Arc;

pub fn server_config(
    store: Arc<CertStore>,
    min: MinVersion,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![
        alpn::H2.to_vec(),
        alpn::HTTP11.to_vec(),
        alpn::ACME_TLS.to_vec(),
    ];
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}
