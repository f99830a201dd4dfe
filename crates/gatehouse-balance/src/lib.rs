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

/// A monotonic millisecond clock for what is counted in milliseconds (passive-failure windows, idle and
/// watchdog deadlines, pooled connections' age), cheap to read: read several times per request, it is the
/// kernel's coarse clock on Linux (a tick's resolution, 1-4 ms; 7 ns a read against 27 for the precise one
/// on the benchmark machine). Never 0 (0 means "never" in the atomics that store it).
pub fn now_ms() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<u64> = OnceLock::new();
    let now = clock_ms();
    now.saturating_sub(*START.get_or_init(|| now)) + 1
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // one FFI call: std has no coarse clock
fn clock_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(not(target_os = "linux"))]
fn clock_ms() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}
