//! What can go wrong while obtaining a certificate, and how long the CA asked us to wait.

use crate::schedule::retry_after_from_detail;
use crate::storage::StorageError;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The storage backend failed (disk, network store).
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The CA answered with an error, or could not be reached.
    #[error("{what}: {source}")]
    Ca {
        what: &'static str,
        #[source]
        source: instant_acme::Error,
    },
    /// The CA did not answer within the timeout every call to it has.
    #[error("{0}: the CA did not answer within {1:?}")]
    CaTimeout(&'static str, Duration),
    /// The CA could not validate a challenge; `problem` is what it said.
    #[error("{names}: {challenge} validation failed: {problem}")]
    Validation {
        names: String,
        challenge: &'static str,
        problem: String,
    },
    #[error("the CA offered no {0} challenge")]
    NoChallenge(&'static str),
    #[error(
        "no challenge can be answered: http-01 needs a plain listener, tls-alpn-01 a TLS listener"
    )]
    NoChallengePossible,
    /// Another node held the name's lock for longer than we wait.
    #[error("another node has held the lock for {0} too long")]
    Locked(String),
    #[error("{0}")]
    Other(String),
}

impl AcmeError {
    /// How long the CA asked us to wait (rate limits).
    pub fn retry_after(&self) -> Option<Duration> {
        let AcmeError::Ca {
            source: instant_acme::Error::Api(problem),
            ..
        } = self
        else {
            return None;
        };
        let limited = problem
            .r#type
            .as_deref()
            .is_some_and(|t| t.ends_with("rateLimited"));
        limited.then(|| {
            problem
                .detail
                .as_deref()
                .and_then(|d| retry_after_from_detail(d, SystemTime::now()))
                .unwrap_or(Duration::from_secs(3600))
        })
    }
}
