//! What an operator said about one server of one pool (the admin API), apart from its health: drained or
//! disabled servers get no new requests, and a weight may stand in for the config's.
//!
//! It is keyed by (pool, address) in a [`crate::Registry`] outside the config snapshot, so it is kept across
//! reloads as long as the pool still lists the server, and forgotten when the server leaves the config.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::Relaxed};

/// A server's admin state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminState {
    /// Takes requests.
    Active,
    /// No new requests or connections; what is in flight (and open tunnels) finishes. For taking a server
    /// out for maintenance gracefully.
    Drain,
    /// No new requests either; for a server that is off for maintenance. In-flight work is not cut (the proxy
    /// never cuts a request it can let finish).
    Disabled,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Active => "active",
            AdminState::Drain => "drain",
            AdminState::Disabled => "disabled",
        }
    }

    /// The value of the `gatehouse_server_admin_state` gauge.
    pub fn code(self) -> i64 {
        self as i64
    }
}

#[derive(Debug, Default)]
pub struct AdminControl {
    state: AtomicU8,
    /// 0: the config's weight.
    weight: AtomicU32,
}

impl AdminControl {
    pub fn state(&self) -> AdminState {
        match self.state.load(Relaxed) {
            0 => AdminState::Active,
            1 => AdminState::Drain,
            _ => AdminState::Disabled,
        }
    }

    pub fn set_state(&self, s: AdminState) {
        self.state.store(s as u8, Relaxed);
    }

    /// Whether the balancer may pick the server for a new request: one relaxed load.
    #[inline]
    pub fn accepts(&self) -> bool {
        self.state.load(Relaxed) == 0
    }

    /// The weight set on the admin API, if any.
    pub fn weight(&self) -> Option<u32> {
        match self.weight.load(Relaxed) {
            0 => None,
            w => Some(w),
        }
    }

    /// Sets (`Some`) or clears (`None`) the weight that stands in for the config's. Takes effect when the
    /// pool's balancer is rebuilt (weights are compiled into its sequence).
    pub fn set_weight(&self, w: Option<u32>) {
        self.weight.store(w.unwrap_or(0), Relaxed);
    }
}
