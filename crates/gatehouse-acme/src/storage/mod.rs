//! Where ACME state lives: the account, each certificate and key, HTTP-01 tokens, and per-name locks.
//!
//! Keys are `/`-separated relative names, built in one place ([`crate::keys`]). A lock is a lease: it expires
//! by itself after its TTL, so a node that dies while ordering blocks nobody for long; the holder renews it
//! while it works.
//!
//! The trait is async because a shared store (Redis) answers over the network, and a worker thread must never
//! wait on it. It is used as `Arc<dyn Storage>` (the backend is chosen by the config at run time), and an
//! `async fn` in a trait cannot be called through `dyn`; so each method returns a boxed future
//! (`async-trait`). One small allocation per storage call is nothing next to a disk write or a round trip.

// `file` implements the trait defined here: a cycle inside this folder only.
mod file;

pub use file::FileStorage;

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid storage key {0:?}")]
    BadKey(String),
    #[error("storage task failed: {0}")]
    Task(String),
}

/// Proof of holding a lock, needed to renew or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockToken {
    pub name: String,
    pub owner: String,
}

/// The storage seam: what several nodes must share to act as one.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Replaces `key` atomically: readers see the old bytes or the new, never a mix.
    async fn store(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Takes the lock `name` for `ttl`, or `None` when another live holder has it.
    async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<LockToken>, StorageError>;
    /// Extends a held lease; false when it was lost (expired and taken by someone else).
    async fn renew(&self, token: &LockToken, ttl: Duration) -> Result<bool, StorageError>;
    async fn unlock(&self, token: &LockToken) -> Result<(), StorageError>;
}
