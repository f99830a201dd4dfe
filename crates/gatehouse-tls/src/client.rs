//! TLS to backends: certificates verified against the webpki roots, or against a pool's own CA file.

use crate::{alpn, provider};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

/// A client config for a pool. With `ca_pem` (the bytes of a PEM file: one or more certificates), only that CA
/// is trusted; the caller read the file once and names it in errors.
pub fn client_config(ca_pem: Option<&[u8]>, h2: bool) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem).filter_map(Result::ok) {
                roots.add(cert).map_err(|e| e.to_string())?;
                added += 1;
            }
            if added == 0 {
                return Err("no PEM certificate found".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if h2 {
        vec![alpn::H2.to_vec()]
    } else {
        vec![alpn::HTTP11.to_vec()]
    };
    Ok(Arc::new(config))
}
