//! Publishing the answer to a challenge where the CA will look, and taking it down again.
//!
//! HTTP-01: the key authorization goes into this node's in-memory tokens *and* into storage, so any node the
//! CA reaches can answer. TLS-ALPN-01: a self-signed certificate with the acmeIdentifier extension goes into
//! the certificate store, served to a validator that offers only `acme-tls/1`.

use crate::error::AcmeError;
use crate::keys;
use crate::storage::Storage;
use gatehouse_tls::{CertStore, Http01Tokens};
use instant_acme::ChallengeType;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Http01,
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }

    pub(crate) fn acme(self) -> ChallengeType {
        match self {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }

    pub(crate) fn other(self) -> Self {
        match self {
            ChallengeKind::Http01 => ChallengeKind::TlsAlpn01,
            ChallengeKind::TlsAlpn01 => ChallengeKind::Http01,
        }
    }
}

/// Where answers are published.
#[derive(Debug, Clone)]
pub struct Answers {
    pub storage: Arc<dyn Storage>,
    pub tls: Arc<CertStore>,
    pub http01: Arc<Http01Tokens>,
}

/// One published answer, to take down when the order ends.
#[derive(Debug)]
pub enum Published {
    /// An HTTP-01 token.
    Http01(String),
    /// The name a TLS-ALPN-01 certificate answers for.
    TlsAlpn01(String),
}

impl Answers {
    /// Makes `key_authorization` (and its digest) answer the challenge of `kind` for `name`.
    pub async fn publish(
        &self,
        kind: ChallengeKind,
        name: &str,
        token: &str,
        key_authorization: &str,
        digest: &[u8],
    ) -> Result<Published, AcmeError> {
        match kind {
            ChallengeKind::Http01 => {
                self.http01.insert(token, key_authorization);
                self.storage
                    .store(&keys::http01(token), key_authorization.as_bytes())
                    .await?;
                Ok(Published::Http01(token.to_string()))
            }
            ChallengeKind::TlsAlpn01 => {
                self.tls
                    .set_challenge(name, alpn_certificate(name, digest)?);
                // The other nodes make their own challenge certificate from the digest (a shared store tells
                // them); a store that cannot take it leaves this node answering alone.
                match self.storage.store(&keys::tls_alpn01(name), digest).await {
                    // Give the other nodes a moment to make their certificate before the CA is told: it may
                    // reach any of them first.
                    Ok(()) if self.storage.shared() => {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await
                    }
                    Ok(()) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot publish a TLS-ALPN-01 answer to the other nodes")
                    }
                }
                Ok(Published::TlsAlpn01(name.to_string()))
            }
        }
    }

    pub async fn unpublish(&self, published: Published) {
        match published {
            Published::Http01(token) => {
                self.http01.remove(&token);
                if let Err(e) = self.storage.delete(&keys::http01(&token)).await {
                    tracing::debug!(error = %e, "cannot remove a published HTTP-01 token");
                }
            }
            Published::TlsAlpn01(name) => {
                self.tls.clear_challenge(&name);
                if let Err(e) = self.storage.delete(&keys::tls_alpn01(&name)).await {
                    tracing::debug!(error = %e, "cannot remove a published TLS-ALPN-01 answer");
                }
            }
        }
    }

    /// Another node published (`Some(digest)`) or removed (`None`) a TLS-ALPN-01 answer for `name`.
    pub fn follow_tls_alpn01(&self, name: &str, digest: Option<&[u8]>) {
        match digest {
            Some(d) => match alpn_certificate(name, d) {
                Ok(cert) => self.tls.set_challenge(name, cert),
                Err(e) => {
                    tracing::warn!(%name, error = %e, "cannot make another node's TLS-ALPN-01 answer")
                }
            },
            None => self.tls.clear_challenge(name),
        }
    }
}

/// The TLS-ALPN-01 answer (RFC 8737): a self-signed certificate for `name` with the critical acmeIdentifier
/// extension. rustls' `from_der` refuses that extension, so the key is loaded separately.
fn alpn_certificate(
    name: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Other(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params
        .self_signed(&key)
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    let signing = gatehouse_tls::provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| AcmeError::Other(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}
