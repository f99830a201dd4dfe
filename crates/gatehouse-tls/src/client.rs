//! TLS to backends: certificates verified against the webpki roots, or against a pool's own CA file.

use crate::{alpn, provider};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::Arc;

/// A client config for a pool. With `ca`, only that CA (PEM, one or more certificates) is trusted.
pub fn client_config(ca: Option<&Path>, h2: bool) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("{}: no PEM certificate found", path.display()));
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
