//! Choosing a backend server for a request.
//!
//! * [`Balancer`] is the one trait an algorithm implements: given the tier's members and an eligibility
//!   test, return an index. Expensive work (sequences, hashes) happens once in the constructor, when a config
//!   snapshot is compiled; `pick` is a few atomics and a scan.
//! * [`round_robin`], [`ip_hash`] and [`least_conn`] are the algorithms, one module each.
//! * [`Selector`] is a pool's view: primary servers first, `backup` servers only when no primary is eligible,
//!   and the servers already tried for this request skipped (retries).
//! * [`ServerState`] (in-flight count, passive failures) lives *outside* the config snapshot, in a
//!   [`Registry`] keyed by server address, so a reload keeps least-conn counts and health; an operator's
//!   drain or disable ([`AdminControl`]) likewise, keyed by pool and address.

pub mod admin;
pub mod health;
pub mod ip_hash;
pub mod least_conn;
pub mod registry;
pub mod round_robin;
mod selector;
pub mod server;
#[cfg(test)]
mod testing;

pub use admin::{AdminControl, AdminState};
pub use health::{ActiveHealth, Health};
pub use registry::Registry;
pub use selector::{Algorithm, Entry, Selector, Tried};
pub use server::{InFlight, ServerState};

use std::sync::Arc;

/// One server as a balancer sees it.
#[derive(Debug, Clone)]
pub struct Member {
    pub state: Arc<ServerState>,
    /// Drain / disable from the admin API.
    pub admin: Arc<AdminControl>,
    /// What active health checks found, when the pool has them.
    pub health: Option<Arc<ActiveHealth>>,
    pub weight: u32,
    /// Position of the server in the pool's config list (primaries and backups together), so callers can
    /// find their own per-server data without a lookup.
    pub id: usize,
}

/// A load-balancing algorithm over one tier of servers.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Returns the index in `members` of the server to use, among those for which `eligible(i)` is true.
    /// `key` is the request's affinity key (a hash of the client IP); only hashing balancers read it.
    fn pick(&self, members: &[Member], key: u64, eligible: &dyn Fn(usize) -> bool)
        -> Option<usize>;
}

/// A monotonic millisecond clock shared by the crate (passive-failure windows), cheap to read.
pub fn now_ms() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}
