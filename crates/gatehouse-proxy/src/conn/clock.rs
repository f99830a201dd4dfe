//! The connection watchdog's clocks, kept in one place.
//!
//! hyper's own header timer also runs while a keep-alive connection sits idle, which would make an idle
//! timeout meaningless; so the listener's watchdog keeps two clocks of its own:
//! * *idle*: no request in flight and no bytes since the last one ended;
//! * *head*: bytes of a request arrived, but no complete head yet (slowloris).
//!
//! A third clock runs while a request is in flight: *send* — a write to the client has been waiting for the
//! client to read for `send_timeout` (nginx's `send_timeout`): the client is cut.
//!
//! These events move them, each one atomic store: the client socket saw the first bytes of a head
//! ([`Clock::head_bytes`], from the listener's socket wrapper), a write to the client could not proceed or
//! did ([`Clock::write_blocked`], [`Clock::write_moved`]), a request started ([`ActiveRequest::new`]), a request
//! ended (its guard dropped). [`Timeouts::check`] reads them.

use super::Conn;
use gatehouse_balance::now_ms;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Clock {
    /// Requests in progress on this connection.
    active: AtomicU32,
    /// When the last request finished (or the connection opened).
    last_done_ms: AtomicU64,
    /// When bytes of a not yet complete request head started to arrive; 0 = none pending.
    head_started_ms: AtomicU64,
    /// Requests started on this connection.
    started: AtomicU32,
    /// Since when a write to the client has been waiting for the client to read; 0 = not blocked.
    write_blocked_ms: AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            active: AtomicU32::new(0),
            last_done_ms: AtomicU64::new(now_ms()),
            head_started_ms: AtomicU64::new(0),
            started: AtomicU32::new(0),
            write_blocked_ms: AtomicU64::new(0),
        }
    }

    /// A write to the client could not proceed (its socket buffer is full: the client is not reading).
    pub fn write_blocked(&self) {
        if self.write_blocked_ms.load(Relaxed) == 0 {
            self.write_blocked_ms.store(now_ms(), Relaxed);
        }
    }

    /// A write to the client proceeded.
    pub fn write_moved(&self) {
        if self.write_blocked_ms.load(Relaxed) != 0 {
            self.write_blocked_ms.store(0, Relaxed);
        }
    }

    /// Bytes arrived while no request runs: a head has started (the clock starts at its first byte only).
    pub fn head_bytes(&self) {
        if self.head_started_ms.load(Relaxed) == 0 {
            self.head_started_ms.store(now_ms(), Relaxed);
        }
    }

    /// Whether a request is in progress (its bytes are a body, not a head).
    pub fn busy(&self) -> bool {
        self.active.load(Relaxed) > 0
    }

    /// Requests started so far.
    pub fn started(&self) -> u32 {
        self.started.load(Relaxed)
    }
}

/// Marks a request as in progress on its connection until dropped (when its response body is done). It holds
/// the connection, so whoever holds a request's context can read the connection's facts.
#[derive(Debug)]
pub struct ActiveRequest(Arc<Conn>, u32);

impl ActiveRequest {
    pub fn new(conn: Arc<Conn>) -> Self {
        let clock = &conn.clock;
        clock.active.fetch_add(1, Relaxed);
        let index = clock.started.fetch_add(1, Relaxed);
        clock.head_started_ms.store(0, Relaxed);
        ActiveRequest(conn, index)
    }

    pub fn conn(&self) -> &Arc<Conn> {
        &self.0
    }

    /// Which request of its connection this is (0 = the first).
    pub fn index(&self) -> u32 {
        self.1
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        let clock = &self.0.clock;
        clock.last_done_ms.store(now_ms(), Relaxed);
        clock.active.fetch_sub(1, Relaxed);
    }
}

/// How long an HTTP/1 keep-alive connection waits idle with hyper's buffers before it parks. Long enough that
/// a client's next request in a burst (a page's assets, a keep-alive benchmark) finds the connection as it
/// was; short enough that a connection held open between page views costs only its socket.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// The client-side limits of a connection, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    idle_ms: u64,
    head_ms: u64,
    send_ms: u64,
    /// Idle this long, a connection that can be parked is (0 = never: HTTP/2).
    park_ms: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing due yet: look again in this many milliseconds.
    Wait(u64),
    /// No request in flight and none started for idle_timeout.
    Idle,
    /// No request in flight, no bytes of one, nothing left to write, for [`PARK_AFTER`]: time to give back
    /// the protocol's buffers and wait on the bare socket.
    Park,
    /// A request head started arriving header_read_timeout ago and is still incomplete.
    SlowHead,
    /// The client has not read what was written to it for send_timeout.
    SlowReader,
}

impl Timeouts {
    pub fn new(idle: Duration, head: Duration, send: Duration) -> Self {
        Timeouts {
            idle_ms: idle.as_millis() as u64,
            head_ms: head.as_millis() as u64,
            send_ms: send.as_millis() as u64,
            park_ms: 0,
        }
    }

    /// The same limits for a connection that parks when idle for [`PARK_AFTER`] (HTTP/1).
    pub fn parking(self) -> Self {
        Timeouts {
            park_ms: PARK_AFTER.as_millis() as u64,
            ..self
        }
    }

    /// When a connection idle since `last_done_ms` reaches its idle timeout.
    pub fn idle_deadline(&self, clock: &Clock) -> u64 {
        clock
            .last_done_ms
            .load(Relaxed)
            .saturating_add(self.idle_ms)
    }

    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    pub fn head(&self) -> Duration {
        Duration::from_millis(self.head_ms)
    }

    pub fn first_check(&self) -> Duration {
        Duration::from_millis(self.busy_wait(self.send_ms).max(1))
    }

    /// How long the watchdog sleeps while a request runs (a parking connection: at most [`PARK_AFTER`]).
    fn busy_wait(&self, send_wait: u64) -> u64 {
        let wait = self.idle_ms.min(self.head_ms).min(send_wait);
        if self.park_ms > 0 {
            wait.min(self.park_ms)
        } else {
            wait
        }
    }

    pub fn check(&self, clock: &Clock, now: u64) -> Verdict {
        match self.verdict(clock, now) {
            // A parking connection looks at least every PARK_AFTER, so that it parks about that long after
            // its last request whatever it was doing before (a slow head, a long response).
            Verdict::Wait(ms) if self.park_ms > 0 => Verdict::Wait(ms.min(self.park_ms)),
            v => v,
        }
    }

    fn verdict(&self, clock: &Clock, now: u64) -> Verdict {
        let blocked = clock.write_blocked_ms.load(Relaxed);
        let send_wait = if blocked != 0 {
            let waited = now.saturating_sub(blocked);
            if waited >= self.send_ms {
                return Verdict::SlowReader;
            }
            self.send_ms - waited
        } else {
            self.send_ms
        };
        if clock.busy() {
            return Verdict::Wait(self.busy_wait(send_wait).max(10));
        }
        let head = clock.head_started_ms.load(Relaxed);
        if head != 0 {
            let waited = now.saturating_sub(head);
            return if waited >= self.head_ms {
                Verdict::SlowHead
            } else {
                Verdict::Wait((self.head_ms - waited).max(10))
            };
        }
        let idle = now.saturating_sub(clock.last_done_ms.load(Relaxed));
        if idle >= self.idle_ms {
            Verdict::Idle
        } else if self.park_ms > 0 && idle >= self.park_ms && blocked == 0 {
            Verdict::Park
        } else if self.park_ms > idle {
            Verdict::Wait((self.park_ms - idle).min(self.idle_ms - idle).max(10))
        } else {
            Verdict::Wait((self.idle_ms - idle).max(10))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Peer;

    fn conn() -> Arc<Conn> {
        let peer = Peer::new(
            "127.0.0.1:1".parse().unwrap(),
            "test".into(),
            None,
            std::time::Instant::now(),
        );
        Arc::new(Conn::new(
            peer,
            Arc::new(crate::conn::Tracker::default()).open(),
        ))
    }

    #[test]
    fn idle_and_slow_head_clocks() {
        let t = Timeouts::new(
            Duration::from_secs(65),
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let c = conn();
        let clock = &c.clock;
        let start = clock.last_done_ms.load(Relaxed);
        assert!(matches!(t.check(clock, start + 1000), Verdict::Wait(_)));
        assert_eq!(
            t.check(clock, start + 65_000),
            Verdict::Idle,
            "idle for 65 s"
        );
        assert_eq!(
            t.check(clock, start + 40_000),
            Verdict::Wait(25_000),
            "30 s of idle is not a slow head"
        );

        clock.head_started_ms.store(start + 40_000, Relaxed);
        assert_eq!(t.check(clock, start + 60_000), Verdict::Wait(10_000));
        assert_eq!(t.check(clock, start + 70_000), Verdict::SlowHead);

        let busy = ActiveRequest::new(conn());
        assert!(
            matches!(t.check(&busy.conn().clock, u64::MAX / 2), Verdict::Wait(_)),
            "never while a request runs"
        );
        assert_eq!(busy.conn().clock.started(), 1);
    }

    #[test]
    fn a_client_that_does_not_read_is_a_slow_reader_even_mid_request() {
        let t = Timeouts::new(
            Duration::from_secs(65),
            Duration::from_secs(30),
            Duration::from_secs(5),
        );
        let c = conn();
        let _busy = ActiveRequest::new(c.clone());
        c.clock.write_blocked_ms.store(1000, Relaxed);
        assert_eq!(t.check(&c.clock, 3000), Verdict::Wait(3000));
        assert_eq!(t.check(&c.clock, 6000), Verdict::SlowReader);
        c.clock.write_moved();
        assert!(
            matches!(t.check(&c.clock, 6000), Verdict::Wait(_)),
            "a write that moved resets it"
        );
    }

    #[test]
    fn an_idle_http1_connection_parks_after_park_after_and_only_then() {
        let t = Timeouts::new(
            Duration::from_secs(65),
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        let park = PARK_AFTER.as_millis() as u64;
        let c = conn();
        let start = c.clock.last_done_ms.load(Relaxed);
        // Not parking (HTTP/2): idle goes straight to Idle, with no Park on the way.
        assert_eq!(
            t.check(&c.clock, start + park + 5),
            Verdict::Wait(65_000 - park - 5)
        );
        let p = t.parking();
        assert_eq!(p.check(&c.clock, start + 200), Verdict::Wait(park - 200));
        assert_eq!(p.check(&c.clock, start + park), Verdict::Park);
        assert_eq!(
            p.check(&c.clock, start + 65_000),
            Verdict::Idle,
            "the idle timeout still wins"
        );
        // Never under a request, a head or a blocked write; and it looks again within PARK_AFTER.
        let busy = ActiveRequest::new(c.clone());
        assert_eq!(p.check(&c.clock, start + 10 * park), Verdict::Wait(park));
        drop(busy);
        let now = c.clock.last_done_ms.load(Relaxed);
        c.clock.head_bytes();
        assert!(matches!(p.check(&c.clock, now + park), Verdict::Wait(ms) if ms <= park));
        c.clock.head_started_ms.store(0, Relaxed);
        c.clock.write_blocked_ms.store(now, Relaxed);
        assert!(matches!(p.check(&c.clock, now + park), Verdict::Wait(_)));
    }

    #[test]
    fn a_request_resets_the_head_clock_and_its_end_the_idle_clock() {
        let c = conn();
        c.clock.head_bytes();
        assert_ne!(c.clock.head_started_ms.load(Relaxed), 0);
        let active = ActiveRequest::new(c.clone());
        assert_eq!(c.clock.head_started_ms.load(Relaxed), 0);
        assert!(c.clock.busy());
        drop(active);
        assert!(!c.clock.busy());
    }
}
