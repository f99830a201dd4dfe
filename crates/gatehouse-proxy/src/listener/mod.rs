//! Listening sockets and the connections they accept.
//!
//! * [`set`]: the listeners that are open, by kind, and the one place where a reload's listener changes are
//!   worked out ([`set::ListenerSet::diff`]).
//! * [`accept_loop`]: one per listener per worker, each on the worker's own socket ([`bind`]).
//! * [`serve`]: one task per connection: TLS handshake if the listener says so, HTTP/1.1 or HTTP/2 by hyper,
//!   beside the connection's watchdog.
//! * [`client_io`]: the client socket, wrapped to feed the watchdog's clocks and the framing scanner.
//! * [`proxy_header`]: the PROXY protocol header a load balancer in front may send first.
//!
//! `serve` uses the [`ListenerContext`] defined here and this file spawns `serve`: a cycle inside the folder,
//! which is one concern (a listener and the connections it accepts).

pub mod client_io;
pub mod client_stream;
pub mod proxy_header;
pub mod serve;
pub mod set;
pub mod stream;

use crate::conn::Tracker;
use crate::signal::Signal;
use crate::Snapshot;
use arc_swap::ArcSwap;
use gatehouse_balance::now_ms;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::conn::connections_released;
use crate::conn::released;

/// A listener's sockets: one per worker, or one for all.
pub type Sockets = Arc<[std::net::TcpListener]>;

/// Binds a listener's sockets. SO_REUSEADDR lets a restarted Gatehouse bind at once over TIME_WAIT sockets.
///
/// With more than one worker, each gets a socket of its own (SO_REUSEPORT): the kernel spreads new connections
/// over the workers' accept queues, and no worker wakes for a connection another one takes (on one shared
/// socket every worker's epoll is woken for each). SO_REUSEPORT would also let another process of ours bind
/// the port beside us and take a share of its connections, silently: so the address is first bound without
/// it, which fails if anything holds the port, and only then by the workers' sockets.
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Sockets> {
    if workers <= 1 {
        return Ok(Arc::new([listen(addr, false)?]));
    }
    let addr = {
        let probe = socket(addr)?;
        probe.bind(&addr.into())?;
        probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("bound to a non-IP address"))?
    };
    (0..workers)
        .map(|_| listen(addr, true))
        .collect::<std::io::Result<Vec<_>>>()
        .map(Into::into)
}

fn socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    Ok(socket)
}

fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket(addr)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// What a listener's accept loops serve, fixed for their life (see [`set`]).
#[derive(Debug)]
pub struct ListenerSettings {
    pub name: Arc<str>,
    /// `None` for plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A PROXY protocol header comes first.
    pub proxy_protocol: bool,
    /// An L4 stream: its connections are forwarded as bytes ([`stream`]), found in the snapshot by `bind`.
    pub stream: bool,
    /// The configured bind address.
    pub bind: SocketAddr,
}

/// What an accept loop shares with the rest of the proxy.
#[derive(Debug)]
pub struct ListenerContext {
    pub settings: ListenerSettings,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub tracker: Arc<Tracker>,
    pub shutdown: Signal,
    /// The listener's own connection limit (all workers), kept across reloads with the socket.
    pub limit: Arc<Limit>,
}

/// A cap on open connections: beyond it, accepting stops (the kernel keeps new connections in the listen
/// backlog) until one closes. Reaching it is logged at most once a minute. A listener's limit lives as long as
/// its socket, so a reload that changes `max_connections` resizes it with the open connections still counted.
#[derive(Debug)]
pub struct Limit {
    what: &'static str,
    /// The size now (what reloads set), [`UNLIMITED`] for no limit.
    max: std::sync::atomic::AtomicUsize,
    permits: Arc<Semaphore>,
    logged_ms: AtomicU64,
    /// Connections accepted under this limit, ever (a listener's: for its metrics and status).
    pub accepted: AtomicU64,
    /// Connections open now.
    pub open: AtomicUsize,
    /// Of those, idle HTTP/1 connections parked on their bare socket (no hyper state held).
    pub parked: AtomicUsize,
    /// `max_conns_per_ip`, counted after the PROXY header (the real client) and before TLS.
    pub per_ip: Arc<gatehouse_policy::conn_limit::PerIpLimit>,
}

/// What "no limit" counts as: more connections than any machine holds, and a size a resize can still add
/// or take away in one step.
const UNLIMITED: usize = 1 << 30;

impl Limit {
    /// A limit of `max` connections; 0 = none.
    pub fn new(what: &'static str, max: usize) -> Self {
        let max = Self::size(max);
        Limit {
            what,
            max: max.into(),
            permits: Arc::new(Semaphore::new(max)),
            logged_ms: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            per_ip: Arc::new(gatehouse_policy::conn_limit::PerIpLimit::new(0)),
        }
    }

    /// With `max_conns_per_ip` (0 = none).
    pub fn with_per_ip(self, max: usize) -> Self {
        self.per_ip.set_max(max);
        self
    }

    /// Takes a place for a connection from `ip` under `max_conns_per_ip` into `permits`; false (logged at
    /// debug) when `ip` holds all it may: the connection is to be closed before any other work.
    pub fn admit(&self, ip: std::net::IpAddr, permits: &mut Permits, listener: &str) -> bool {
        match self.per_ip.try_open(ip) {
            Ok(guard) => {
                permits.2 = guard;
                true
            }
            Err(()) => {
                tracing::debug!(listener, client = %ip, "closing: max_conns_per_ip reached");
                false
            }
        }
    }

    fn size(max: usize) -> usize {
        if max == 0 {
            UNLIMITED
        } else {
            max.min(UNLIMITED)
        }
    }

    /// Changes the size; open connections keep their units. A smaller limit takes effect as connections
    /// close (the units it no longer has are taken out of service as they come back).
    pub fn resize(&self, max: usize) {
        let new = Self::size(max);
        let old = self.max.swap(new, Relaxed);
        if new > old {
            self.permits.add_permits(new - old);
        } else if new < old {
            let excess = old - new;
            let taken = self.permits.forget_permits(excess);
            let rest = u32::try_from(excess - taken).unwrap_or(u32::MAX);
            if rest > 0 {
                let permits = self.permits.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            if let Ok(p) = permits.acquire_many_owned(rest).await {
                                p.forget();
                            }
                        });
                    }
                    Err(_) => tracing::warn!(
                        "connection limit lowered outside a runtime: it applies as units free up"
                    ),
                }
            }
        }
    }

    /// A unit of the limit, waiting (not accepting) while none is free.
    async fn acquire(&self, listener: &str) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        let now = now_ms();
        let last = self.logged_ms.load(Relaxed);
        if last == 0 || now.saturating_sub(last) >= 60_000 {
            self.logged_ms.store(now, Relaxed);
            tracing::warn!(listener, limit = self.what, max = self.max.load(Relaxed), "connection limit reached: new connections wait until one closes (logged once a minute)");
        }
        self.permits.clone().acquire_owned().await.ok()
    }
}

/// The units of every limit a connection counts against (the worker's and the listener's: fields, not a
/// `Vec`, so that a connection's units cost no allocation of their own), released when its last holder lets
/// it go; the listener's open count falls with them.
#[derive(Debug, Default)]
pub struct Permits(
    [Option<OwnedSemaphorePermit>; 2],
    Option<Arc<Limit>>,
    Option<gatehouse_policy::conn_limit::PerIpGuard>,
);

impl Drop for Permits {
    fn drop(&mut self) {
        if let Some(l) = &self.1 {
            l.open.fetch_sub(1, Relaxed);
        }
    }
}

/// Accepts until `stop` turns true (listener removed or replaced by a reload, or shutdown). `worker` is the
/// worker's own connection limit, shared by all its listeners.
///
/// A connection waiting on the socket comes first, then the units of the limits, then the accept: each
/// worker has a socket of its own, and a unit held by a loop whose socket is empty would be lost to the other
/// workers' loops, whose sockets may hold connections (tokio's `TcpListener` can only accept, not wait for
/// one to be there, so the socket is mio's under an `AsyncFd`).
pub async fn accept_loop(
    listener: mio::net::TcpListener,
    ctx: Arc<ListenerContext>,
    worker: Arc<Limit>,
    stop: Signal,
) {
    // SAFETY: the mio listener owns its descriptor and moves into the AsyncFd, which owns it from then on:
    // it stays open, and the same, until the AsyncFd is dropped.
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) };
    let listener = match registered {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = %ctx.settings.name, error = %e, "cannot register listener with a worker");
            return;
        }
    };
    // One wait on `stop` for the loop's life, polled on every pass (see `signal.rs` for why not a watch).
    let mut stopped = stop.wait();
    loop {
        let mut ready = tokio::select! {
            biased;
            _ = &mut stopped => break,
            ready = listener.readable() => match ready {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(listener = %ctx.settings.name, error = %e, "listener failed");
                    break;
                }
            },
        };
        // Units of the limits next: beyond either, stop accepting (the connection waits in the kernel's queue).
        let units = async {
            let mut permits = Permits::default();
            permits.0[0] = worker.acquire(&ctx.settings.name).await;
            permits.0[1] = ctx.limit.acquire(&ctx.settings.name).await;
            permits
        };
        let mut permits = tokio::select! {
            biased;
            _ = &mut stopped => break,
            p = units => p,
        };
        // Would block: the connection went (or another pass took the last one); the readiness is cleared and
        // the units go back.
        let Ok(accepted) = ready.try_io(|l| l.get_ref().accept()) else {
            continue;
        };
        let stream = accepted
            .and_then(|(s, peer)| Ok((TcpStream::from_std(std::net::TcpStream::from(s))?, peer)));
        match stream {
            Ok((stream, peer)) => {
                ctx.limit.accepted.fetch_add(1, Relaxed);
                ctx.limit.open.fetch_add(1, Relaxed);
                permits.1 = Some(ctx.limit.clone());
                if ctx.settings.stream {
                    tokio::spawn(stream::serve(stream, peer, ctx.clone(), permits));
                } else {
                    tokio::spawn(serve::serve_connection(stream, peer, ctx.clone(), permits));
                }
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The default per-worker connection limit: half the open-file limit (each proxied connection may need an
/// upstream one too), shared by the workers, at least 1024.
pub fn default_worker_limit(workers: usize) -> usize {
    let nofile = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .unwrap_or(1024);
    (nofile.saturating_sub(64) / 2 / workers.max(1)).max(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resizing keeps the units in use counted: a raise adds room beside them, a cut takes effect as they
    /// come back.
    #[tokio::test]
    async fn a_resized_limit_counts_the_units_in_use() {
        let limit = Limit::new("test", 2);
        let (a, b) = (
            limit.acquire("l").await.unwrap(),
            limit.acquire("l").await.unwrap(),
        );
        limit.resize(3);
        assert_eq!(limit.permits.available_permits(), 1);
        limit.resize(1);
        assert_eq!(limit.permits.available_permits(), 0);
        drop((a, b));
        tokio::task::yield_now().await;
        for _ in 0..100 {
            if limit.permits.available_permits() == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            limit.permits.available_permits(),
            1,
            "one unit, as the new size says"
        );
        limit.resize(0);
        assert!(
            limit.permits.available_permits() > 1_000_000,
            "0 = no limit"
        );
    }
}
