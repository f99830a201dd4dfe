//! Accepting connections and serving HTTP on them.
//!
//! Each listener has one accept loop per worker; each connection is one task that reads the first bytes to
//! tell HTTP/2 (prior knowledge) from HTTP/1.1, then runs hyper's server for that protocol (HTTP/1.1 with
//! upgrades enabled). Beside hyper, a per-connection watchdog closes keep-alive
//! connections idle for `idle_timeout`, drops clients that take longer than `header_read_timeout` to send a
//! request head (slowloris), and starts a graceful close when the proxy shuts down.

use crate::client_io::ClientIo;
use crate::service;
use crate::Snapshot;
use arc_swap::ArcSwap;
use gatehouse_balance::now_ms;
use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

/// Counts open client connections and tunnels, so shutdown knows when everything has drained.
#[derive(Debug, Default)]
pub struct Tracker {
    open: AtomicUsize,
    drained: Notify,
}

impl Tracker {
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

#[derive(Debug)]
pub struct TrackGuard(Arc<Tracker>);

impl Drop for TrackGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Relaxed) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// What the request path knows about the client connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The peer's IP rendered once as a header value, reused by every request on the connection.
    pub peer_value: HeaderValue,
    /// "http" or "https", for X-Forwarded-Proto.
    pub proto: &'static str,
    /// Over TLS: the server name the client asked for (SNI), lower-cased.
    pub sni: Option<Box<str>>,
    pub tracker: Arc<Tracker>,
    /// Requests in progress on this connection.
    pub(crate) active: AtomicU32,
    /// When the last request finished (or the connection opened).
    last_done_ms: AtomicU64,
    /// When bytes of a not yet complete request head started to arrive; 0 = none pending.
    pub(crate) head_started_ms: AtomicU64,
    /// Requests started on this connection (lets the head scanner tell heads from bodies).
    pub(crate) started: AtomicU32,
    /// The head being served had both Content-Length and Transfer-Encoding (see client_io.rs).
    pub(crate) ambiguous_framing: std::sync::atomic::AtomicBool,
}

impl ConnInfo {
    pub fn new(
        peer: SocketAddr,
        proto: &'static str,
        sni: Option<Box<str>>,
        tracker: Arc<Tracker>,
    ) -> Self {
        let ip = gatehouse_config::canonical(peer.ip());
        ConnInfo {
            peer: SocketAddr::new(ip, peer.port()),
            peer_value: HeaderValue::from_str(&ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            proto,
            sni,
            tracker,
            active: AtomicU32::new(0),
            last_done_ms: AtomicU64::new(now_ms()),
            head_started_ms: AtomicU64::new(0),
            started: AtomicU32::new(0),
            ambiguous_framing: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Marks a request as in progress on its connection until its response body is done.
#[derive(Debug)]
pub struct ActiveRequest(Arc<ConnInfo>);

impl ActiveRequest {
    pub fn new(conn: Arc<ConnInfo>) -> Self {
        conn.active.fetch_add(1, Relaxed);
        conn.started.fetch_add(1, Relaxed);
        conn.head_started_ms.store(0, Relaxed);
        ActiveRequest(conn)
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.last_done_ms.store(now_ms(), Relaxed);
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// Binds a listening socket. SO_REUSEADDR lets a restarted Gatehouse bind at once over TIME_WAIT sockets.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// What an accept loop shares with the rest of the proxy.
#[derive(Debug)]
pub struct ListenerContext {
    /// The bind address as configured: the key of this listener's settings in the snapshot.
    pub bind: SocketAddr,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub tracker: Arc<Tracker>,
    pub shutdown: watch::Receiver<bool>,
}

/// Accepts until `stop` turns true (listener removed by a reload, or shutdown).
pub async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ListenerContext>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(stream, peer, ctx.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<ListenerContext>) {
    let _open = ctx.tracker.open();
    let _ = stream.set_nodelay(true);
    let (http1, http2, timeouts, tls) = {
        let snap = ctx.snapshot.load();
        (
            snap.http1.clone(),
            snap.http2.clone(),
            Timeouts::new(snap.idle_timeout, snap.header_read_timeout),
            snap.tls_for(ctx.bind),
        )
    };
    let protocols = Protocols {
        http1,
        http2,
        timeouts,
    };
    match tls {
        None => {
            let info = Arc::new(ConnInfo::new(peer, "http", None, ctx.tracker.clone()));
            // A client that connects and sends nothing is idle: it gets idle_timeout to start.
            match tokio::time::timeout(timeouts.idle, ClientIo::accept(stream, info.clone())).await
            {
                Ok(Ok(Some((io, h2)))) => protocols.serve(io, h2, info, &ctx).await,
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "client connection failed before its first request")
                }
            }
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tls = match tokio::time::timeout(timeouts.head(), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let session = tls.get_ref().1;
            let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
            if alpn.as_deref() == Some(gatehouse_tls::alpn::ACME_TLS) {
                // A TLS-ALPN-01 validator: the handshake was the whole exchange.
                return;
            }
            let sni = session
                .server_name()
                .map(|n| n.to_ascii_lowercase().into_boxed_str());
            let h2 = alpn.as_deref() == Some(gatehouse_tls::alpn::H2);
            let info = Arc::new(ConnInfo::new(peer, "https", sni, ctx.tracker.clone()));
            protocols
                .serve(ClientIo::new(tls, info.clone(), h2), h2, info, &ctx)
                .await;
        }
    }
}

/// hyper's per-protocol servers and the connection's clocks.
struct Protocols {
    http1: Arc<hyper::server::conn::http1::Builder>,
    http2: Arc<hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor>>,
    timeouts: Timeouts,
}

impl Protocols {
    async fn serve<S>(
        &self,
        io: ClientIo<S>,
        h2: bool,
        info: Arc<ConnInfo>,
        ctx: &Arc<ListenerContext>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let svc = {
            let (ctx, info) = (ctx.clone(), info.clone());
            service_fn(move |req| {
                let snap = ctx.snapshot.load_full();
                let info = info.clone();
                async move { Ok::<_, Infallible>(service::handle(snap, info, req).await) }
            })
        };
        let io = TokioIo::new(io);
        if h2 {
            let conn = self.http2.serve_connection(io, svc);
            drive(conn, |c| c.graceful_shutdown(), &info, ctx, self.timeouts).await;
        } else {
            let conn = self.http1.serve_connection(io, svc).with_upgrades();
            drive(conn, |c| c.graceful_shutdown(), &info, ctx, self.timeouts).await;
        }
    }
}

/// Runs a hyper connection to its end beside the watchdog (idle and head clocks) and the shutdown signal.
async fn drive<C>(
    conn: C,
    graceful: impl Fn(std::pin::Pin<&mut C>),
    info: &ConnInfo,
    ctx: &ListenerContext,
    timeouts: Timeouts,
) where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    let peer = info.peer;
    tokio::pin!(conn);
    let mut shutdown = ctx.shutdown.clone();
    let mut closing = *shutdown.borrow();
    if closing {
        graceful(conn.as_mut());
    }
    let watchdog = tokio::time::sleep(timeouts.first_check());
    tokio::pin!(watchdog);
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                break;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                graceful(conn.as_mut());
            }
            _ = &mut watchdog => match timeouts.check(info, now_ms()) {
                Verdict::Wait(ms) => watchdog.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(ms)),
                Verdict::Idle => {
                    if closing {
                        // A graceful close that does not finish (a client that never reads): stop waiting.
                        break;
                    }
                    tracing::debug!(%peer, "closing idle connection");
                    closing = true;
                    graceful(conn.as_mut());
                    watchdog.as_mut().reset(tokio::time::Instant::now() + timeouts.idle);
                }
                Verdict::SlowHead => {
                    tracing::debug!(%peer, "request head not received within header_read_timeout; closing");
                    break;
                }
            },
        }
    }
}

/// The two client-side clocks of a connection, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    idle: Duration,
    idle_ms: u64,
    head_ms: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nothing due yet: look again in this many milliseconds.
    Wait(u64),
    /// No request in flight and none started for idle_timeout.
    Idle,
    /// A request head started arriving header_read_timeout ago and is still incomplete.
    SlowHead,
}

impl Timeouts {
    fn new(idle: Duration, head: Duration) -> Self {
        Timeouts {
            idle,
            idle_ms: idle.as_millis() as u64,
            head_ms: head.as_millis() as u64,
        }
    }

    fn head(&self) -> Duration {
        Duration::from_millis(self.head_ms)
    }

    fn first_check(&self) -> Duration {
        Duration::from_millis(self.idle_ms.min(self.head_ms).max(1))
    }

    fn check(&self, info: &ConnInfo, now: u64) -> Verdict {
        if info.active.load(Relaxed) > 0 {
            return Verdict::Wait(self.idle_ms.min(self.head_ms).max(10));
        }
        let head = info.head_started_ms.load(Relaxed);
        if head != 0 {
            let waited = now.saturating_sub(head);
            return if waited >= self.head_ms {
                Verdict::SlowHead
            } else {
                Verdict::Wait((self.head_ms - waited).max(10))
            };
        }
        let idle = now.saturating_sub(info.last_done_ms.load(Relaxed));
        if idle >= self.idle_ms {
            Verdict::Idle
        } else {
            Verdict::Wait((self.idle_ms - idle).max(10))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ConnInfo {
        ConnInfo::new(
            "127.0.0.1:1".parse().unwrap(),
            "http",
            None,
            Arc::new(Tracker::default()),
        )
    }

    #[test]
    fn idle_and_slow_head_clocks() {
        let t = Timeouts::new(Duration::from_secs(65), Duration::from_secs(30));
        let i = info();
        let start = i.last_done_ms.load(Relaxed);
        assert!(matches!(t.check(&i, start + 1000), Verdict::Wait(_)));
        assert_eq!(t.check(&i, start + 65_000), Verdict::Idle, "idle for 65 s");
        assert_eq!(
            t.check(&i, start + 40_000),
            Verdict::Wait(25_000),
            "30 s of idle is not a slow head"
        );

        i.head_started_ms.store(start + 40_000, Relaxed);
        assert_eq!(t.check(&i, start + 60_000), Verdict::Wait(10_000));
        assert_eq!(t.check(&i, start + 70_000), Verdict::SlowHead);

        let busy = ActiveRequest::new(Arc::new(info()));
        assert!(
            matches!(t.check(&busy.0, u64::MAX / 2), Verdict::Wait(_)),
            "never while a request runs"
        );
    }
}
