//! One order: authorizations, challenges, validation, CSR, download. The preferred challenge first, the other
//! when the first fails validation (and the configuration can answer it).

use crate::ca::{call, CALL_TIMEOUT, POLL_TIMEOUT};
use crate::challenge::{Answers, ChallengeKind, Published};
use crate::error::AcmeError;
use instant_acme::{Account, AuthorizationStatus, Identifier, NewOrder, OrderStatus, RetryPolicy};

/// What an order needs to know about the site and the configuration.
#[derive(Debug, Clone, Copy)]
pub struct OrderSpec<'a> {
    pub names: &'a [String],
    pub preferred: ChallengeKind,
    /// Which challenges this configuration can answer: HTTP-01 needs a plain listener, TLS-ALPN-01 a TLS one.
    pub http01_possible: bool,
    pub tls_alpn01_possible: bool,
}

/// An issued certificate: the chain and the key made for it, both PEM.
#[derive(Debug)]
pub struct Issued {
    pub chain: String,
    pub key: String,
}

/// Orders with the preferred challenge, then the other when the first fails validation.
pub async fn order(
    account: &Account,
    answers: &Answers,
    spec: OrderSpec<'_>,
) -> Result<Issued, AcmeError> {
    let possible = |k: ChallengeKind| match k {
        ChallengeKind::Http01 => spec.http01_possible,
        ChallengeKind::TlsAlpn01 => spec.tls_alpn01_possible,
    };
    let kinds = [spec.preferred, spec.preferred.other()]
        .into_iter()
        .filter(|k| possible(*k));
    let mut last = AcmeError::NoChallengePossible;
    for kind in kinds {
        match order_with(account, answers, spec.names, kind).await {
            Ok(done) => return Ok(done),
            Err(e @ (AcmeError::Validation { .. } | AcmeError::NoChallenge(_))) => {
                tracing::warn!(names = ?spec.names, challenge = kind.name(), error = %e, "challenge failed");
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

async fn order_with(
    account: &Account,
    answers: &Answers,
    names: &[String],
    kind: ChallengeKind,
) -> Result<Issued, AcmeError> {
    tracing::info!(?names, challenge = kind.name(), "ordering a certificate");
    let ids: Vec<Identifier> = names.iter().cloned().map(Identifier::Dns).collect();
    let mut order = call(
        "new order",
        CALL_TIMEOUT,
        account.new_order(&NewOrder::new(&ids)),
    )
    .await?;
    let mut published: Vec<Published> = Vec::new();
    let result = async {
        {
            let mut authzs = order.authorizations();
            loop {
                let next = tokio::time::timeout(CALL_TIMEOUT, authzs.next())
                    .await
                    .map_err(|_| AcmeError::CaTimeout("authorization", CALL_TIMEOUT))?;
                let Some(authz) = next else { break };
                let mut authz = authz.map_err(|source| AcmeError::Ca {
                    what: "authorization",
                    source,
                })?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => {
                        return Err(AcmeError::Validation {
                            names: names.join(", "),
                            challenge: kind.name(),
                            problem: format!("authorization is {other:?}"),
                        })
                    }
                }
                let mut challenge = authz
                    .challenge(kind.acme())
                    .ok_or(AcmeError::NoChallenge(kind.name()))?;
                let name = challenge.identifier().to_string();
                let key_auth = challenge.key_authorization();
                let token = challenge.token.clone();
                published.push(
                    answers
                        .publish(
                            kind,
                            &name,
                            &token,
                            key_auth.as_str(),
                            key_auth.digest().as_ref(),
                        )
                        .await?,
                );
                call("challenge ready", CALL_TIMEOUT, challenge.set_ready()).await?;
            }
        }
        let retry = RetryPolicy::new().timeout(POLL_TIMEOUT);
        // instant-acme polls within `retry`; the outer bound is a little longer so its own error wins.
        let status =
            match tokio::time::timeout(POLL_TIMEOUT + CALL_TIMEOUT, order.poll_ready(&retry)).await
            {
                Err(_) => return Err(AcmeError::CaTimeout("waiting for validation", POLL_TIMEOUT)),
                Ok(Ok(status)) => status,
                // An order that turned invalid comes back as the CA's problem document: a failed validation.
                Ok(Err(instant_acme::Error::Api(problem))) => {
                    return Err(AcmeError::Validation {
                        names: names.join(", "),
                        challenge: kind.name(),
                        problem: problem.to_string(),
                    })
                }
                Ok(Err(source)) => {
                    return Err(AcmeError::Ca {
                        what: "waiting for validation",
                        source,
                    })
                }
            };
        if status != OrderStatus::Ready {
            return Err(validation_problem(&mut order, names, kind).await);
        }
        let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Other(e.to_string()))?;
        let csr = rcgen::CertificateParams::new(names.to_vec())
            .and_then(|p| p.serialize_request(&key))
            .map_err(|e| AcmeError::Other(format!("CSR: {e}")))?;
        call("finalize", CALL_TIMEOUT, order.finalize_csr(csr.der())).await?;
        let chain = call(
            "certificate download",
            POLL_TIMEOUT + CALL_TIMEOUT,
            order.poll_certificate(&retry),
        )
        .await?;
        Ok(Issued {
            chain,
            key: key.serialize_pem(),
        })
    }
    .await;
    for p in published {
        answers.unpublish(p).await;
    }
    result
}

/// What the CA said about a failed validation: the challenges' problem documents.
async fn validation_problem(
    order: &mut instant_acme::Order,
    names: &[String],
    kind: ChallengeKind,
) -> AcmeError {
    let mut problems = Vec::new();
    let mut authzs = order.authorizations();
    while let Ok(Some(Ok(authz))) = tokio::time::timeout(CALL_TIMEOUT, authzs.next()).await {
        for ch in &authz.challenges {
            if let Some(p) = &ch.error {
                problems.push(p.to_string());
            }
        }
    }
    if problems.is_empty() {
        problems.push("the order did not become ready".into());
    }
    AcmeError::Validation {
        names: names.join(", "),
        challenge: kind.name(),
        problem: problems.join("; "),
    }
}
