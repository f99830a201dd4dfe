//! What Gatehouse knows about one backend server, independent of any config snapshot.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Debug)]
pub struct ServerState {
    addr: SocketAddr,
    /// Requests (and upgraded connections) currently using this server.
    in_flight: AtomicUsize,
    /// Passive health: failures counted in the window that started at `window_start`.
    fails: AtomicU32,
    window_start: AtomicU64,
    /// Passive health: not available before this instant ([`crate::now_ms`]); 0 = available.
    down_until: AtomicU64,
    /// Taken out, and not answered well since: when it is back, its first failure takes it out again at once
    /// (nginx's trial request after fail_timeout).
    on_trial: std::sync::atomic::AtomicBool,
}

impl ServerState {
    pub fn new(addr: SocketAddr) -> Self {
        ServerState {
            addr,
            in_flight: AtomicUsize::new(0),
            fails: AtomicU32::new(0),
            window_start: AtomicU64::new(0),
            down_until: AtomicU64::new(0),
            on_trial: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Counts a request against this server until the returned guard is dropped.
    pub fn acquire(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    /// Not taken out by passive failures at `now` ([`crate::now_ms`]).
    pub fn is_available(&self, now: u64) -> bool {
        self.down_until.load(Relaxed) <= now
    }

    /// Records a failed attempt (connect error, timeout): `max_fails` of them within `fail_timeout_ms` take the
    /// server out for `fail_timeout_ms` (nginx's max_fails/fail_timeout). `max_fails == 0` disables this.
    /// Returns true when this failure took the server out.
    pub fn record_failure(&self, now: u64, max_fails: u32, fail_timeout_ms: u64) -> bool {
        if max_fails == 0 {
            return false;
        }
        if self.on_trial.load(Relaxed) && self.is_available(now) {
            // Back after fail_timeout, and its trial failed: out again, for another fail_timeout.
            self.down_until.store(now + fail_timeout_ms, Relaxed);
            self.fails.store(0, Relaxed);
            return true;
        }
        let start = self.window_start.load(Relaxed);
        if now.saturating_sub(start) > fail_timeout_ms {
            self.window_start.store(now, Relaxed);
            self.fails.store(0, Relaxed);
        }
        let fails = self.fails.fetch_add(1, Relaxed) + 1;
        if fails >= max_fails {
            self.down_until.store(now + fail_timeout_ms, Relaxed);
            self.fails.store(0, Relaxed);
            self.on_trial.store(true, Relaxed);
            return true;
        }
        false
    }

    /// A success forgets earlier failures (and ends a trial).
    pub fn record_success(&self) {
        if self.fails.load(Relaxed) != 0 {
            self.fails.store(0, Relaxed);
        }
        if self.on_trial.load(Relaxed) {
            self.on_trial.store(false, Relaxed);
        }
    }
}

/// Holds one unit of a server's in-flight count; dropping it gives the unit back.
#[derive(Debug)]
pub struct InFlight(Arc<ServerState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_follows_guards() {
        let s = Arc::new(ServerState::new("127.0.0.1:1".parse().unwrap()));
        let a = s.acquire();
        let b = s.acquire();
        assert_eq!(s.in_flight(), 2);
        drop(a);
        assert_eq!(s.in_flight(), 1);
        drop(b);
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn max_fails_within_window_takes_server_out_for_fail_timeout() {
        let s = ServerState::new("127.0.0.1:1".parse().unwrap());
        assert!(!s.record_failure(1000, 3, 10_000));
        assert!(!s.record_failure(1001, 3, 10_000));
        assert!(s.is_available(1002));
        assert!(s.record_failure(1002, 3, 10_000));
        assert!(!s.is_available(1003));
        assert!(s.is_available(11_002));
    }

    #[test]
    fn after_fail_timeout_one_trial_failure_takes_it_out_again() {
        let s = ServerState::new("127.0.0.1:1".parse().unwrap());
        for t in 0..3 {
            s.record_failure(1000 + t, 3, 10_000);
        }
        assert!(!s.is_available(5_000));
        assert!(s.is_available(11_003), "back after fail_timeout");
        assert!(
            s.record_failure(11_004, 3, 10_000),
            "its trial failed: out at once"
        );
        assert!(!s.is_available(11_005));
        s.record_success();
        assert!(
            !s.record_failure(30_000, 3, 10_000),
            "a success ended the trial: max_fails again"
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let s = ServerState::new("127.0.0.1:1".parse().unwrap());
        s.record_failure(1000, 2, 100);
        assert!(!s.record_failure(2000, 2, 100));
        assert!(s.is_available(2001));
        assert!(!s.record_failure(3000, 0, 100), "max_fails = 0 disables");
    }
}
