//! One client connection, from accept to close: the TLS handshake when the listener says so, the protocol
//! (the first bytes on plain listeners, ALPN over TLS), then hyper's server for that protocol (HTTP/1.1 with
//! upgrades) beside the connection's watchdog. The watchdog closes keep-alive connections idle for
//! `idle_timeout`, drops clients that take longer than `header_read_timeout` to send a request head
//! (slowloris) or that read nothing of a response for `send_timeout` (slow readers), and starts a graceful
//! close when the proxy shuts down.
//!
//! What a connection reads from the snapshot *once*, when accepted: its listener's TLS settings, hyper's
//! protocol settings and the two client timeouts. What it reads *per request*: everything else (the request
//! path loads the current snapshot for each request, so a reload applies to the next request on a
//! keep-alive connection).

use super::client_io::ClientIo;
use super::client_stream::ClientStream;
use super::{ListenerContext, Permits};
use crate::conn::{ActiveRequest, Conn, Peer, Timeouts, TlsFacts, Verdict};
use crate::phases;
use gatehouse_balance::now_ms;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    ctx: Arc<ListenerContext>,
    permits: Permits,
) -> impl std::future::Future<Output = ()> + Send {
    // Setting up (PROXY header, limits, TLS handshake, the first bytes) runs boxed and is gone before the
    // first request: the task keeps only what serving needs, which is what an idle connection costs. (A plain
    // fn, so that the task does not also keep this function's arguments.)
    // Serving runs boxed too: tokio moves the task's future by value several times while spawning it and
    // writes its whole stage twice when it ends, so a small task is cheaper on every new connection.
    let set_up = Box::pin(set_up(stream, addr, ctx.clone(), permits));
    async move {
        let _released = Released;
        let Some((io, h2, conn, protocols)) = set_up.await else {
            return;
        };
        Box::pin(protocols.serve(io, h2, conn, &ctx)).await
    }
}

/// What a served connection starts with: its socket wrapped, whether it speaks HTTP/2, its facts, its
/// protocol settings.
type SetUp = (Box<ClientIo<ClientStream>>, bool, Arc<Conn>, Protocols);

async fn set_up(
    mut stream: TcpStream,
    addr: SocketAddr,
    ctx: Arc<ListenerContext>,
    permits: Permits,
) -> Option<SetUp> {
    let open = ctx.tracker.open();
    let accepted = Instant::now();
    let _ = stream.set_nodelay(true);
    let (protocols, max_target, trusted) = {
        let snap = ctx.snapshot.load();
        let trusted = ctx.settings.proxy_protocol
            && crate::headers::forwarded::is_trusted(&snap.trusted_proxies, addr.ip());
        let p = Protocols {
            http1: snap.http1.clone(),
            http2: snap.http2.clone(),
            timeouts: Timeouts::new(
                snap.idle_timeout,
                snap.header_read_timeout,
                snap.send_timeout,
            ),
        };
        (p, snap.max_request_target, trusted)
    };
    // The PROXY header first, when the listener expects one: the client's address, believed only from a
    // trusted proxy.
    let mut addr = addr;
    if ctx.settings.proxy_protocol {
        // (Boxed, like the TLS handshake below: only the listeners that use it carry its size.)
        match Box::pin(super::proxy_header::read(
            &mut stream,
            protocols.timeouts.head(),
        ))
        .await
        {
            Ok(Some(client)) if trusted => addr = client,
            Ok(Some(client)) => {
                tracing::debug!(peer = %addr, claimed = %client, "PROXY header from an untrusted peer: not believed")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "closing: the listener expects a PROXY header");
                return None;
            }
        }
    }
    // One client's share of the listener, before any TLS work.
    let mut permits = permits;
    if !ctx.limit.admit(addr.ip(), &mut permits, &ctx.settings.name) {
        return None;
    }
    // The listener's own settings, fixed when its accept loops started: never another kind's.
    let name = ctx.settings.name.clone();
    let timeouts = protocols.timeouts;
    let held: Box<dyn std::any::Any + Send + Sync> = Box::new(permits);
    match ctx.settings.tls.clone() {
        None => {
            let conn = Arc::new(Conn::holding(
                Peer::new(addr, name, None, accepted),
                open,
                held,
            ));
            // A client that connects and sends nothing is idle: it gets idle_timeout to start.
            let first = ClientIo::accept(ClientStream::Plain(stream), conn.clone(), max_target);
            match tokio::time::timeout(timeouts.idle(), first).await {
                Ok(Ok(Some((io, h2)))) => Some((Box::new(io), h2, conn, protocols)),
                Ok(Ok(None)) | Err(_) => None,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "client connection failed before its first request");
                    None
                }
            }
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            // Boxed: the handshake's state (the rustls session inline) would make every plain connection's
            // set-up that much larger too.
            let handshake = Box::pin(tokio::time::timeout(
                timeouts.head(),
                acceptor.accept(stream),
            ));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    return None;
                }
            };
            let session = tls.get_ref().1;
            let alpn = session.alpn_protocol();
            if alpn == Some(gatehouse_tls::alpn::ACME_TLS) {
                // A TLS-ALPN-01 validator: the handshake was the whole exchange.
                return None;
            }
            let h2 = alpn == Some(gatehouse_tls::alpn::H2);
            let facts = TlsFacts {
                sni: session
                    .server_name()
                    .map(|n| n.to_ascii_lowercase().into_boxed_str()),
                version: match session.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                    _ => "TLS",
                },
            };
            // The connection holds the limit slots, so an upgraded tunnel (which outlives this function)
            // still counts against `max_connections`.
            let conn = Arc::new(Conn::holding(
                Peer::new(addr, name, Some(facts), accepted),
                open,
                held,
            ));
            let io = Box::new(ClientIo::new(
                ClientStream::Tls(Box::new(tls)),
                conn.clone(),
                h2,
                max_target,
            ));
            Some((io, h2, conn, protocols))
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
    /// `io` comes boxed so that the task holds a pointer: hyper's connection takes it and hands it back
    /// across parks, and the async fn would otherwise keep two copies of it in the task.
    async fn serve(
        &self,
        mut io: Box<ClientIo<ClientStream>>,
        h2: bool,
        conn: Arc<Conn>,
        ctx: &Arc<ListenerContext>,
    ) {
        // The request counts as in flight from the moment hyper hands it over, before its future first runs:
        // a connection is never parked (nor its idle clock run) under a request.
        let request = {
            let (ctx, conn) = (ctx.clone(), conn.clone());
            move |req| {
                let active = ActiveRequest::new(conn.clone());
                let snap = ctx.snapshot.load_full();
                futures_util::FutureExt::map(phases::handle(snap, active, req), Ok::<_, Infallible>)
            }
        };
        if h2 {
            // HTTP/2 keeps its connection state (streams, HPACK tables) for the connection's life: no parking.
            // Each stream's future is boxed: hyper wraps it in a stream task that tokio moves by value while
            // spawning and writes again as it ends, and the request's future is 2 KiB (HTTP/1.1 needs no box
            // of ours: hyper's dispatcher keeps its request future in one).
            let svc = service_fn(move |req| Box::pin(request(req)));
            let c = Box::pin(self.http2.serve_connection(TokioIo::new(io), svc));
            drive(c, |c| c.graceful_shutdown(), &conn, ctx, self.timeouts).await;
            return;
        }
        let svc = service_fn(request);
        // HTTP/1: hyper's connection (its read and write buffers, its dispatcher) lives while requests come;
        // idle for PARK_AFTER it ends without closing the socket, and the task waits on the bare socket until
        // the next request starts a new one. Boxed, so the parked task is small.
        let timeouts = self.timeouts.parking();
        loop {
            // The hyper connection's box lives in this block only: moving the parts out of it leaves the
            // allocation behind until the box goes out of scope, which must be before the wait below (a
            // parked connection would otherwise hold 624 bytes of nothing).
            let parts = {
                let mut c = Box::new(
                    self.http1
                        .serve_connection(TokioIo::new(io), svc.clone())
                        .with_upgrades(),
                );
                let ended = drive(
                    Pin::new(&mut *c),
                    |c| c.graceful_shutdown(),
                    &conn,
                    ctx,
                    timeouts,
                )
                .await;
                if ended != Ended::Parked {
                    return;
                }
                c.into_parts()
            };
            // An upgraded connection has no parts: it lives on as a tunnel. (A block, so that the parts are
            // not kept in the parked task.)
            io = match parts {
                Some(parts) => {
                    let mut io = parts.io.into_inner();
                    io.unread(parts.read_buf);
                    io
                }
                None => return,
            };
            conn.parking.store(false, Relaxed);
            if !park(&mut *io, &conn, ctx, timeouts).await {
                return;
            }
        }
    }
}

/// Waits on a parked connection's bare socket: `true` when the next request's first bytes arrived, `false`
/// when the connection is to close (the client closed, the idle timeout, a shutdown).
async fn park<S>(
    io: &mut ClientIo<S>,
    conn: &Conn,
    ctx: &ListenerContext,
    timeouts: Timeouts,
) -> bool
where
    S: tokio::io::AsyncRead + Unpin,
{
    let peer = conn.peer.addr;
    if ctx.shutdown.is_fired() {
        return false;
    }
    let _parked = ParkedGuard::new(&ctx.limit.parked);
    super::released();
    let left = timeouts.idle_deadline(&conn.clock).saturating_sub(now_ms());
    let idle = tokio::time::sleep(Duration::from_millis(left));
    tokio::select! {
        woke = std::future::poll_fn(|cx| io.poll_wake(cx)) => match woke {
            Ok(more) => more,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "parked client connection failed");
                false
            }
        },
        _ = idle => {
            tracing::debug!(%peer, "closing idle connection");
            false
        }
        // A graceful shutdown closes parked connections at once: nothing is in flight on them.
        _ = ctx.shutdown.wait() => false,
    }
}

/// Counts the connection as released when its task ends.
struct Released;

impl Drop for Released {
    fn drop(&mut self) {
        super::released();
    }
}

/// Counts a listener's parked connections while one waits.
struct ParkedGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> ParkedGuard<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Relaxed);
        ParkedGuard(count)
    }
}

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// How a hyper connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Closed, failed, cut by a clock or upgraded.
    Done,
    /// Ended idle because the watchdog parked it: the socket is open and is to be waited on.
    Parked,
}

/// Runs a hyper connection to its end beside the watchdog (idle, head and park clocks) and the shutdown
/// signal.
async fn drive<C>(
    mut hyper_conn: Pin<C>,
    graceful: impl Fn(Pin<&mut C::Target>),
    conn: &Conn,
    ctx: &ListenerContext,
    timeouts: Timeouts,
) -> Ended
where
    C: std::ops::DerefMut,
    C::Target: std::future::Future<Output = Result<(), hyper::Error>>,
{
    let peer = conn.peer.addr;
    // One wait for the connection's life: `select!` polls it on every wake-up of the task.
    let mut shutdown = ctx.shutdown.wait();
    let mut closing = ctx.shutdown.is_fired();
    if closing {
        graceful(hyper_conn.as_mut());
    }
    let watchdog = tokio::time::sleep(timeouts.first_check());
    tokio::pin!(watchdog);
    loop {
        tokio::select! {
            res = hyper_conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                    return Ended::Done;
                }
                return if conn.parking.load(Relaxed) && !closing { Ended::Parked } else { Ended::Done };
            }
            _ = &mut shutdown, if !closing => {
                closing = true;
                conn.parking.store(false, Relaxed);
                graceful(hyper_conn.as_mut());
            }
            _ = &mut watchdog => match timeouts.check(&conn.clock, now_ms()) {
                Verdict::Wait(ms) => watchdog.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(ms)),
                Verdict::Park => {
                    if closing || conn.parking.load(Relaxed) || !conn.framing.between_messages() {
                        // Parking already (hyper is ending, or a graceful close is on its way), or a request
                        // body is still arriving after its answer: hyper is not idle, so not now.
                        watchdog.as_mut().reset(tokio::time::Instant::now() + timeouts.first_check());
                        continue;
                    }
                    // Nothing in flight (hyper's requests count from the moment they are handed over), no
                    // bytes of a message under way, nothing left to write: hyper is idle, so a graceful
                    // shutdown ends it at once, without a `Connection: close` on any response.
                    conn.parking.store(true, Relaxed);
                    graceful(hyper_conn.as_mut());
                    watchdog.as_mut().reset(tokio::time::Instant::now() + timeouts.first_check());
                }
                Verdict::Idle => {
                    if closing {
                        // A graceful close that does not finish (a client that never reads): stop waiting.
                        return Ended::Done;
                    }
                    tracing::debug!(%peer, "closing idle connection");
                    closing = true;
                    conn.parking.store(false, Relaxed);
                    graceful(hyper_conn.as_mut());
                    watchdog.as_mut().reset(tokio::time::Instant::now() + timeouts.idle());
                }
                Verdict::SlowHead => {
                    tracing::debug!(%peer, "request head not received within header_read_timeout; closing");
                    return Ended::Done;
                }
                Verdict::SlowReader => {
                    tracing::debug!(%peer, "the client read nothing for send_timeout; closing");
                    return Ended::Done;
                }
            },
        }
    }
}
