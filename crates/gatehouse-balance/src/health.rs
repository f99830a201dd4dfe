//! Active health: what the probes of one server (with one check) have found, as the balancers read it.
//!
//! It lives outside the config snapshot, keyed by the server's address *and* the check, so two pools that
//! probe the same address differently keep two states, and a reload that keeps both keeps the state. The
//! prober (in the proxy) records each probe's result; the balancer reads one atomic per pick.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

/// What the probes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No probe has answered yet (a new server): it takes traffic only when no other server is known up.
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

#[derive(Debug, Default)]
pub struct ActiveHealth {
    /// 0 unknown, 1 up, 2 down.
    state: AtomicU8,
    /// Consecutive failures (while not down) or successes (while not up).
    streak: AtomicU32,
    /// Transitions to up and to down, for metrics.
    pub ups: AtomicU64,
    pub downs: AtomicU64,
    /// Why the last probe failed (set on failures only).
    last_error: Mutex<Option<String>>,
}

impl ActiveHealth {
    pub fn get(&self) -> Health {
        match self.state.load(Relaxed) {
            0 => Health::Unknown,
            1 => Health::Up,
            _ => Health::Down,
        }
    }

    /// Records a probe's result; returns the new state when it changed. From unknown, one good probe is
    /// enough to be up and `fall` failures to be down; after that `rise` and `fall` consecutive results.
    /// Only the prober calls this (one per server and check), so the streak needs no compare-and-swap.
    pub fn record(&self, ok: Result<(), String>, fall: u32, rise: u32) -> Option<Health> {
        let now = self.get();
        let streak = self.streak.load(Relaxed);
        let (next, streak) = match (now, &ok) {
            (Health::Up, Ok(())) | (Health::Down, Err(_)) => (now, 0),
            (Health::Unknown, Ok(())) => (Health::Up, 0),
            (Health::Down, Ok(())) if streak + 1 >= rise => (Health::Up, 0),
            (Health::Up | Health::Unknown, Err(_)) if streak + 1 >= fall => (Health::Down, 0),
            _ => (now, streak + 1),
        };
        self.streak.store(streak, Relaxed);
        if let Err(e) = ok {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
        if next == now {
            return None;
        }
        self.state.store(next as u8, Relaxed);
        match next {
            Health::Up => self.ups.fetch_add(1, Relaxed),
            Health::Down => self.downs.fetch_add(1, Relaxed),
            Health::Unknown => 0,
        };
        Some(next)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise_count_consecutive_results() {
        let h = ActiveHealth::default();
        assert_eq!(h.get(), Health::Unknown);
        assert_eq!(
            h.record(Ok(()), 3, 2),
            Some(Health::Up),
            "one good probe from unknown"
        );
        assert_eq!(h.record(Err("x".into()), 3, 2), None);
        assert_eq!(h.record(Err("x".into()), 3, 2), None);
        assert_eq!(h.record(Ok(()), 3, 2), None, "a success breaks the streak");
        assert_eq!(h.record(Err("x".into()), 3, 2), None);
        assert_eq!(h.record(Err("x".into()), 3, 2), None);
        assert_eq!(h.record(Err("refused".into()), 3, 2), Some(Health::Down));
        assert_eq!(h.last_error().as_deref(), Some("refused"));
        assert_eq!(h.record(Ok(()), 3, 2), None);
        assert_eq!(
            h.record(Err("x".into()), 3, 2),
            None,
            "a failure breaks the rise"
        );
        assert_eq!(h.record(Ok(()), 3, 2), None);
        assert_eq!(h.record(Ok(()), 3, 2), Some(Health::Up));
        assert_eq!((h.ups.load(Relaxed), h.downs.load(Relaxed)), (2, 1));
    }
}
