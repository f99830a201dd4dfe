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

// `file` and `redis` implement the trait defined here: a cycle inside this folder only.
mod file;
mod redis;

pub use self::redis::RedisStorage;
pub use file::FileStorage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// The shared store did not answer (or answered an error): what this node holds keeps serving.
    #[error("{store}: {error}")]
    Unreachable { store: String, error: String },
}

/// A change another node made in a shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    Stored(String),
    Deleted(String),
    /// The notifications were interrupted (the store was unreachable): anything may have changed.
    Resync,
}

/// How the store is doing, for `/status` and metrics.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// "file" or "redis".
    pub kind: &'static str,
    /// Where (a folder, or the Redis URL without its password).
    pub location: String,
    reachable: AtomicBool,
    /// Unix seconds of the last answer from the store, and of the last change heard from other nodes (or
    /// full resync).
    last_ok: AtomicU64,
    last_sync: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Lock name → holder, as last seen.
    locks: Mutex<BTreeMap<String, String>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl StoreHealth {
    pub fn new(kind: &'static str, location: String) -> Self {
        StoreHealth {
            kind,
            location,
            reachable: AtomicBool::new(true),
            ..Default::default()
        }
    }

    pub fn ok(&self) {
        self.reachable.store(true, Relaxed);
        self.last_ok.store(unix_now(), Relaxed);
    }

    /// Records a failure; true when it is a change (reachable before), for logging once.
    pub fn failed(&self, error: &str) -> bool {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
        self.reachable.swap(false, Relaxed)
    }

    pub fn synced(&self) {
        self.last_sync.store(unix_now(), Relaxed);
    }

    pub fn set_locks(&self, locks: BTreeMap<String, String>) {
        *self.locks.lock().unwrap_or_else(|e| e.into_inner()) = locks;
    }

    pub fn reachable(&self) -> bool {
        self.reachable.load(Relaxed)
    }

    /// Unix seconds; 0 = never.
    pub fn last_ok_unix(&self) -> u64 {
        self.last_ok.load(Relaxed)
    }

    pub fn last_sync_unix(&self) -> u64 {
        self.last_sync.load(Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn locks(&self) -> BTreeMap<String, String> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
    /// Changes other nodes make, for a store that tells (Redis: pub/sub); `None` when it does not (files).
    /// Called once, by the ACME manager.
    fn watch(&self) -> Option<tokio::sync::mpsc::Receiver<StoreEvent>> {
        None
    }
    /// How the store is doing.
    fn health(&self) -> std::sync::Arc<StoreHealth>;
    /// Whether other nodes share this store and hear of its changes (so an answer published here is
    /// answered by them too, a moment later).
    fn shared(&self) -> bool {
        false
    }
}
