//! The request context: everything Gatehouse learns about one request while serving it, for the end-of-request
//! hook (access log, metrics) to read.
//!
//! It is plain data, filled in by the phases as they go (site, route, pool, each attempt and its outcome, the
//! times, the byte counts, the status) and owned — through [`crate::exchange::Exchange`] — by whatever holds
//! the request last: the response body until its last byte is sent or the client goes away, or the tunnel of
//! an upgrade until it closes. It lives inline in that owner: a plain request allocates nothing for it.

use crate::conn::{ActiveRequest, Conn};
use gatehouse_balance::InFlight;
use http::{HeaderValue, Method, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

#[derive(Debug)]
pub struct RequestCtx {
    /// The connection (peer facts), marked busy while this request runs.
    active: ActiveRequest,
    pub id: RequestId,
    /// The `X-Request-Id` sent upstream and returned: the client's, when it sent a valid one, else [`Self::id`].
    pub request_id: HeaderValue,
    pub method: Method,
    pub version: Version,
    /// The client's address: the peer's, or the one a trusted proxy vouched for.
    pub client_ip: IpAddr,
    /// Index of the site in the snapshot it was served on ([`crate::Snapshot::site`]).
    pub site: Option<u32>,
    /// Index of the route in its site's path table ([`crate::Snapshot::route`]; longest prefix first, not
    /// the order of `[[site.route]]` in the file).
    pub route: Option<u32>,
    /// Index of the pool in the snapshot ([`crate::Snapshot::pool`]).
    pub pool: Option<u32>,
    pub attempts: Attempts,
    pub times: Times,
    /// Request body bytes received from the client.
    pub bytes_in: BytesIn,
    /// Response body bytes handed to the client.
    pub bytes_out: u64,
    /// The status sent (for an upgrade, 101).
    pub status: Option<StatusCode>,
    /// Why Gatehouse answered by itself, or why the upstream failed.
    pub error: Option<ErrorKind>,
    /// How it ended; set exactly once, when the end-of-request hook runs.
    pub end: Option<EndReason>,
    /// A 101 whose tunnel has yet to be set up (taken by the request path once the response is out).
    pub(crate) upgrade: Option<PendingUpgrade>,
    /// What the access log needs from the request head; taken only when the access log is on.
    pub head: Option<Box<HeadFields>>,
}

/// The parts of a request head an access log line shows. The values share the bytes hyper read (cloning a
/// `Uri` or a `HeaderValue` copies no bytes).
#[derive(Debug, Clone)]
pub struct HeadFields {
    /// The request target as the client sent it.
    pub uri: http::Uri,
    /// The Host (or `:authority`) the request was routed by, once known.
    pub host: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub referer: Option<HeaderValue>,
}

impl RequestCtx {
    pub fn new(active: ActiveRequest, method: Method, version: Version) -> Self {
        let client_ip = active.conn().peer.addr.ip();
        let id = RequestId::next();
        RequestCtx {
            active,
            request_id: id.header_value(),
            id,
            method,
            version,
            client_ip,
            site: None,
            route: None,
            pool: None,
            attempts: Attempts::default(),
            times: Times::start(),
            bytes_in: BytesIn::default(),
            bytes_out: 0,
            status: None,
            error: None,
            end: None,
            upgrade: None,
            head: None,
        }
    }

    /// The client connection.
    pub fn conn(&self) -> &Arc<Conn> {
        self.active.conn()
    }

    /// Which request of its connection this is (0 = the first).
    pub fn index(&self) -> u32 {
        self.active.index()
    }

    /// The server that answered (the last attempt's), if any.
    pub fn server(&self) -> Option<SocketAddr> {
        self.attempts.last().map(|a| a.addr)
    }
}

/// When things happened. `accepted` is the connection's ([`crate::conn::Peer::accepted`]).
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// The request head was read and handed to Gatehouse.
    pub head_read: Instant,
    /// The first server was chosen (the upstream clocks start here).
    pub upstream_start: Option<Instant>,
    /// The connection to the server that answered was ready (pooled or new).
    pub upstream_connected: Option<Instant>,
    /// The server's response head arrived.
    pub upstream_head: Option<Instant>,
    /// The last byte was handed to the client (or the client went away).
    pub last_byte: Option<Instant>,
}

impl Times {
    fn start() -> Self {
        Times {
            head_read: Instant::now(),
            upstream_start: None,
            upstream_connected: None,
            upstream_head: None,
            last_byte: None,
        }
    }
}

/// One try of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// The server's index in its pool's list.
    pub server: u32,
    pub addr: SocketAddr,
    pub outcome: Outcome,
    /// This failure took the server out (passive health, `max_fails`).
    pub ejected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent; waiting for the head.
    Pending,
    /// The server answered with a response head.
    Responded,
    /// No connection could be made; nothing was sent (the request may go to another server).
    ConnectFailed,
    /// Sent, then the exchange broke before a response head (never retried: a body is never replayed).
    Failed,
    /// Sent, and no response head came within response_timeout.
    TimedOut,
    /// The client's body broke while it was being sent (the client went away, or sent a malformed body).
    ClientFailed,
}

/// The attempts of one request, in order. Four fit inline (retries = 2 means at most three); more spill.
#[derive(Debug, Default)]
pub struct Attempts {
    inline: [Option<Attempt>; 4],
    spill: Vec<Attempt>,
}

impl Attempts {
    pub fn push(&mut self, a: Attempt) {
        match self.inline.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(a),
            None => self.spill.push(a),
        }
    }

    pub fn len(&self) -> usize {
        self.inline.iter().flatten().count() + self.spill.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inline[0].is_none()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Attempt> {
        self.inline.iter().flatten().chain(&self.spill)
    }

    pub fn last(&self) -> Option<&Attempt> {
        self.spill
            .last()
            .or_else(|| self.inline.iter().flatten().last())
    }

    /// Sets the outcome of the latest attempt.
    pub fn finish_last(&mut self, outcome: Outcome) {
        if let Some(a) = self.last_mut() {
            a.outcome = outcome;
        }
    }

    /// Marks the latest attempt as the failure that took its server out.
    pub fn ejected_last(&mut self) {
        if let Some(a) = self.last_mut() {
            a.ejected = true;
        }
    }

    fn last_mut(&mut self) -> Option<&mut Attempt> {
        match self.spill.last_mut() {
            Some(a) => Some(a),
            None => self.inline.iter_mut().flatten().last(),
        }
    }
}

/// The request body's progress: bytes received, whether it is complete, whether it is waiting for the
/// client. The body is streamed by the upstream connection's task while the request path waits for the
/// response, so this is shared; it is made only for requests that have a body, so a plain GET allocates
/// nothing.
#[derive(Debug, Default)]
pub struct BytesIn(Option<Arc<BodyProgress>>);

impl BytesIn {
    /// The progress a request body reports to.
    pub fn progress(&mut self) -> Arc<BodyProgress> {
        self.0.get_or_insert_with(Default::default).clone()
    }

    /// The progress, if the request has a body that is being forwarded.
    pub fn current(&self) -> Option<Arc<BodyProgress>> {
        self.0.clone()
    }

    pub fn get(&self) -> u64 {
        self.0.as_ref().map_or(0, |c| c.bytes())
    }

    /// Bytes that went up a tunnel, counted by the tunnel itself.
    pub fn add(&mut self, n: u64) {
        self.progress().add(n);
    }
}

/// How far a request body has come. The response clock starts when it is complete (a slow upload is not
/// the server's delay), and a body that stops coming is the client's fault only if it stopped at the client.
#[derive(Debug, Default)]
pub struct BodyProgress {
    bytes: AtomicU64,
    complete: AtomicBool,
    /// The body's last poll found nothing from the client yet.
    waiting_on_client: AtomicBool,
    completed: Notify,
}

impl BodyProgress {
    pub fn add(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }

    pub fn waiting_on_client(&self, waiting: bool) {
        if self.waiting_on_client.load(Relaxed) != waiting {
            self.waiting_on_client.store(waiting, Relaxed);
        }
    }

    pub fn is_waiting_on_client(&self) -> bool {
        self.waiting_on_client.load(Relaxed)
    }

    /// The body ended (completely, or cut).
    pub fn complete(&self) {
        if !self.complete.swap(true, Relaxed) {
            self.completed.notify_one();
        }
    }

    pub fn is_complete(&self) -> bool {
        self.complete.load(Relaxed)
    }

    /// Resolves when the body has ended.
    pub async fn completed(&self) {
        if !self.is_complete() {
            self.completed.notified().await;
        }
    }
}

/// Why Gatehouse answered by itself (or why the upstream failed): a bounded set, so it can label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NoRoute,
    Misdirected,
    Forbidden,
    /// A rate_limit refused the request (429).
    RateLimited,
    /// basic_auth: no credentials, or wrong ones (401).
    Unauthorized,
    BodyTooLarge,
    BadRequest,
    /// The client's request body was malformed.
    ClientBody,
    /// The client went away before its request body was complete.
    ClientGone,
    /// The client stopped sending its request body for body_timeout.
    BodyTimeout,
    UriTooLong,
    UnsupportedCoding,
    NoServer,
    Connect,
    Upstream,
    Timeout,
}

impl ErrorKind {
    /// Whether the failure was on the upstream side (502, 503, 504).
    pub fn is_upstream(self) -> bool {
        matches!(
            self,
            ErrorKind::NoServer | ErrorKind::Connect | ErrorKind::Upstream | ErrorKind::Timeout
        )
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The whole response was handed to the client (for an upgrade: the tunnel closed).
    Complete,
    /// The client went away first: a response cut short, or no response at all.
    ClientAbort,
    /// The upstream failed: no response (Gatehouse answered 502/503/504), or a body cut short.
    UpstreamError,
}

/// A 101 answer whose two upgraded connections are still to be joined.
#[derive(Debug)]
pub struct PendingUpgrade {
    pub client: OnUpgrade,
    pub upstream: OnUpgrade,
    /// The server's in-flight unit, held while the tunnel is open (least_conn sees long-lived sockets).
    pub in_flight: InFlight,
    /// The tunnel is closed after this long with no bytes either way.
    pub idle_timeout: std::time::Duration,
}

/// A request's id: unique within the process, random across processes; 32 hex digits when shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u128);

impl RequestId {
    /// The next id: a per-process random half, then the worker and a per-worker counter (no shared atomic).
    pub fn next() -> RequestId {
        use std::cell::Cell;
        use std::hash::{BuildHasher, Hasher};
        use std::sync::OnceLock;
        static SALT: OnceLock<u64> = OnceLock::new();
        thread_local!(static COUNTER: Cell<u64> = const { Cell::new(0) });
        let salt = *SALT.get_or_init(|| {
            // std's hasher keys are random per process: enough to tell two processes' ids apart.
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
        let n = COUNTER.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        let worker = crate::worker::current() as u64;
        RequestId((u128::from(salt) << 64) | u128::from((worker << 48) ^ n))
    }
}

impl RequestId {
    /// As a header value: 32 hex digits, marked sensitive (see [`RequestId::for_header`]).
    pub fn header_value(self) -> HeaderValue {
        let mut buf = [0u8; 32];
        let hex = b"0123456789abcdef";
        for (i, b) in buf.iter_mut().enumerate() {
            *b = hex[((self.0 >> (124 - 4 * i)) & 0xf) as usize];
        }
        Self::for_header(
            HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("-")),
        )
    }

    /// A request id's value as it is sent on: marked "sensitive", which HTTP/2 encodes as a literal never
    /// indexed. A value unique per request would otherwise be added to every connection's HPACK table and
    /// evict the entries that make repeated headers cost a byte or two.
    pub fn for_header(mut v: HeaderValue) -> HeaderValue {
        v.set_sensitive(true);
        v
    }

    /// Whether a client's `X-Request-Id` is kept: 1 to 128 characters that are safe in a log line and a
    /// header (letters, digits, `-_.:/+=@`), so an id can neither break a log parser nor smuggle a header.
    pub fn is_valid_incoming(v: &HeaderValue) -> bool {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:/+=@".contains(c))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(server: u32, outcome: Outcome) -> Attempt {
        Attempt {
            server,
            addr: "127.0.0.1:1".parse().unwrap(),
            outcome,
            ejected: false,
        }
    }

    #[test]
    fn attempts_keep_their_order_past_the_inline_four() {
        let mut a = Attempts::default();
        assert!(a.is_empty());
        for i in 0..6 {
            a.push(attempt(i, Outcome::ConnectFailed));
        }
        a.finish_last(Outcome::Responded);
        assert_eq!(a.len(), 6);
        let servers: Vec<u32> = a.iter().map(|x| x.server).collect();
        assert_eq!(servers, [0, 1, 2, 3, 4, 5]);
        assert_eq!(a.last().map(|x| x.outcome), Some(Outcome::Responded));
        let mut b = Attempts::default();
        b.push(attempt(7, Outcome::Pending));
        b.finish_last(Outcome::TimedOut);
        assert_eq!(
            b.last().map(|x| (x.server, x.outcome)),
            Some((7, Outcome::TimedOut))
        );
    }

    #[test]
    fn request_ids_differ_and_show_as_32_hex_digits() {
        let (a, b) = (RequestId::next(), RequestId::next());
        assert_ne!(a, b);
        let s = a.to_string();
        assert_eq!(s.len(), 32);
        assert!(s.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            a.header_value().to_str().unwrap(),
            s,
            "the header says what the log says"
        );
        for ok in ["abc", "1f2e-aa_bb.cc:dd/ee+ff=@"] {
            assert!(
                RequestId::is_valid_incoming(&HeaderValue::from_static(ok)),
                "{ok}"
            );
        }
        let long = "a".repeat(129);
        for bad in ["", "a b", "a\"b", "<script>", long.as_str()] {
            assert!(
                !RequestId::is_valid_incoming(&HeaderValue::from_str(bad).unwrap()),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bytes_in_is_allocated_only_when_counted() {
        let mut b = BytesIn::default();
        assert_eq!(b.get(), 0);
        assert!(b.0.is_none());
        b.progress().add(5);
        b.add(2);
        assert_eq!(b.get(), 7);
    }

    #[tokio::test]
    async fn body_progress_wakes_who_waits_for_its_end() {
        let p = Arc::new(BodyProgress::default());
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.completed().await })
        };
        tokio::task::yield_now().await;
        p.complete();
        p.complete();
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
        p.completed().await; // already complete: at once
    }
}
