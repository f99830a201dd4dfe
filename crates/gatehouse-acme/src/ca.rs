//! Every call to the CA goes through [`call`], which bounds it in time: a CA that stops answering delays
//! one site's renewal, never the ACME loop itself.

use crate::error::AcmeError;
use std::future::Future;
use std::time::Duration;

/// How long one request to the CA (or one step of instant-acme's own polling) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long validation and issuance may take in all, polled by instant-acme within this bound.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one CA call, naming it in the error (`what`: "new order", "finalize", ...).
pub async fn call<T>(
    what: &'static str,
    timeout: Duration,
    f: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, AcmeError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(|source| AcmeError::Ca { what, source }),
        Err(_) => Err(AcmeError::CaTimeout(what, timeout)),
    }
}
