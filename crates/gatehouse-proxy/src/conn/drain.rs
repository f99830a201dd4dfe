//! Open connections and tunnels, counted so that a graceful shutdown knows when everything has drained; and
//! connections that gave their buffers back, counted for the memory trimmer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Tracker {
    open: AtomicUsize,
    drained: Notify,
}

impl Tracker {
    /// Counts one more open connection (or tunnel) until the guard is dropped.
    pub fn open(self: &Arc<Self>) -> TrackGuard {
        self.open.fetch_add(1, Relaxed);
        TrackGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Waits until nothing is open.
    pub async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection or tunnel.
#[derive(Debug)]
pub struct TrackGuard(Arc<Tracker>);

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Relaxed) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Client connections that parked or closed, and upstream connections that parked, since the process
/// started: what the binary's memory trimmer watches (`gatehouse/src/memory.rs`): after many, the allocator
/// holds freed buffers worth giving back.
static RELEASED: AtomicU64 = AtomicU64::new(0);

/// See [`RELEASED`].
pub fn connections_released() -> u64 {
    RELEASED.load(Relaxed)
}

/// Counts one connection whose buffers were just freed (see [`RELEASED`]).
pub fn released() {
    RELEASED.fetch_add(1, Relaxed);
}
