//! Accepting connections and serving HTTP on them.
//!
//! Each listener is one accept loop; each connection one task running hyper's auto server (HTTP/1.1, and h2c
//! by prior knowledge) with upgrades enabled. Beside hyper, a per-connection watchdog closes keep-alive
//! connections idle for `idle_timeout` and starts a graceful close when the proxy shuts down.

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
    pub tracker: Arc<Tracker>,
    active: AtomicU32,
    last_done_ms: AtomicU64,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, proto: &'static str, tracker: Arc<Tracker>) -> Self {
        let ip = gatehouse_config::canonical(peer.ip());
        ConnInfo {
            peer: SocketAddr::new(ip, peer.port()),
            peer_value: HeaderValue::from_str(&ip.to_string())
                .unwrap_or(HeaderValue::from_static("unknown")),
            proto,
            tracker,
            active: AtomicU32::new(0),
            last_done_ms: AtomicU64::new(now_ms()),
        }
    }
}

/// Marks a request as in progress on its connection until its response body is done.
#[derive(Debug)]
pub struct ActiveRequest(Arc<ConnInfo>);

impl ActiveRequest {
    pub fn new(conn: Arc<ConnInfo>) -> Self {
        conn.active.fetch_add(1, Relaxed);
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
    let (http, idle_timeout) = {
        let snap = ctx.snapshot.load();
        (snap.http.clone(), snap.idle_timeout)
    };
    let info = Arc::new(ConnInfo::new(peer, "http", ctx.tracker.clone()));
    let svc = {
        let (ctx, info) = (ctx.clone(), info.clone());
        service_fn(move |req| {
            let snap = ctx.snapshot.load_full();
            let info = info.clone();
            async move { Ok::<_, Infallible>(service::handle(snap, info, req).await) }
        })
    };
    let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut shutdown = ctx.shutdown.clone();
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    let idle_ms = idle_timeout.as_millis() as u64;
    let watchdog = tokio::time::sleep(idle_timeout);
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
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut watchdog, if !closing => {
                let idle_for = now_ms().saturating_sub(info.last_done_ms.load(Relaxed));
                if info.active.load(Relaxed) == 0 && idle_for >= idle_ms {
                    tracing::debug!(%peer, "closing idle connection");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                } else {
                    let wait = if info.active.load(Relaxed) == 0 { idle_ms - idle_for } else { idle_ms };
                    watchdog.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(wait.max(10)));
                }
            }
        }
    }
}
