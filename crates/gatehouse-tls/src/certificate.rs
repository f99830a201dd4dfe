//! Loading a certificate chain and its key from PEM files, with the checks an operator would want before a
//! certificate goes live: it parses, the key matches it. An expired certificate is loaded with a warning and
//! served, as nginx does: the clients decide (some accept it for a while), and refusing it would take the
//! site down harder than expiry did.

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: cannot read: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC): {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{cert} + {key}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("{path}: cannot parse the certificate: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// A checked certificate, ready for rustls.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS names from the subjectAltName extension.
    pub names: Vec<String>,
}

impl LoadedCert {
    /// Whether the certificate names every one of `names`.
    pub fn names_cover(&self, names: &[String]) -> bool {
        names.iter().all(|n| self.names.contains(n))
    }
}

/// Reads and checks a PEM chain (leaf first) and its private key.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, CertError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    warn_if_key_is_readable_by_others(key_path);
    from_pem(&cert_pem, &key_pem, cert_path, key_path)
}

/// Checks PEM bytes (paths only name them in errors).
pub fn from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<LoadedCert, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::BadKey {
        path: key_path.into(),
        reason: e.to_string(),
    })?;
    let (not_before, not_after, names) = inspect(&chain[0]).map_err(|reason| CertError::Parse {
        path: cert_path.into(),
        reason,
    })?;
    let now = SystemTime::now();
    if not_after < now {
        let days = now.duration_since(not_after).unwrap_or_default().as_secs() / 86_400;
        tracing::warn!(cert = %cert_path.display(), expired_days_ago = days, names = ?names, "certificate has expired; serving it anyway (clients decide): renew it");
    }
    let certified = CertifiedKey::from_der(chain, key, &crate::provider()).map_err(|e| {
        CertError::Mismatch {
            cert: cert_path.into(),
            key: key_path.into(),
            reason: match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not belong to the certificate".into()
                }
                other => other.to_string(),
            },
        }
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_before,
        not_after,
        names,
    })
}

/// The issuer's distinguished name (for status pages), or "" if the certificate does not parse.
pub fn issuer(der: &CertificateDer<'_>) -> String {
    x509_parser::parse_x509_certificate(der.as_ref())
        .map(|(_, c)| c.issuer().to_string())
        .unwrap_or_default()
}

/// Validity window and DNS names of a DER certificate.
pub fn inspect(der: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime, Vec<String>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let to_time = |t: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok((
        to_time(validity.not_before.timestamp()),
        to_time(validity.not_after.timestamp()),
        names,
    ))
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|error| CertError::Read {
        path: path.into(),
        error,
    })
}

fn warn_if_key_is_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(key = %path.display(), mode = format!("{:o}", mode & 0o777), "private key is readable by group or others; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_good_pair_loads_with_its_names() {
        let (c, k) = pair("example.com");
        let loaded = from_pem(
            c.as_bytes(),
            k.as_bytes(),
            Path::new("c.pem"),
            Path::new("k.pem"),
        )
        .unwrap();
        assert_eq!(loaded.names, vec!["example.com"]);
        assert!(loaded.not_after > SystemTime::now());
    }

    #[test]
    fn mismatched_key_and_garbage_are_refused_an_expired_one_loads() {
        let (c, _) = pair("a.test");
        let (_, other_key) = pair("b.test");
        let e = from_pem(
            c.as_bytes(),
            other_key.as_bytes(),
            Path::new("c.pem"),
            Path::new("k.pem"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");

        let e = from_pem(
            b"junk",
            other_key.as_bytes(),
            Path::new("c.pem"),
            Path::new("k.pem"),
        )
        .unwrap_err();
        assert!(matches!(e, CertError::NoCertificate { .. }));

        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let old = params.self_signed(&key).unwrap();
        let loaded = from_pem(
            old.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            Path::new("c.pem"),
            Path::new("k.pem"),
        )
        .expect("an expired certificate is served (with a warning)");
        assert!(loaded.not_after < SystemTime::now());
    }
}
