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
use super::{ListenerContext, Permits};
use crate::conn::{Conn, Peer, Timeouts, TlsFacts, Verdict};
use crate::phases;
use gatehouse_balance::now_ms;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

pub async fn serve_connection(
    mut stream: TcpStream,
    addr: SocketAddr,
    ctx: Arc<ListenerContext>,
    permits: Permits,
) {
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
        match super::proxy_header::read(&mut stream, protocols.timeouts.head()).await {
            Ok(Some(client)) if trusted => addr = client,
            Ok(Some(client)) => {
                tracing::debug!(peer = %addr, claimed = %client, "PROXY header from an untrusted peer: not believed")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "closing: the listener expects a PROXY header");
                return;
            }
        }
    }
    // One client's share of the listener, before any TLS work.
    let mut permits = permits;
    if !ctx.limit.admit(addr.ip(), &mut permits, &ctx.settings.name) {
        return;
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
            match tokio::time::timeout(
                timeouts.idle(),
                ClientIo::accept(stream, conn.clone(), max_target),
            )
            .await
            {
                Ok(Ok(Some((io, h2)))) => protocols.serve(io, h2, conn, &ctx).await,
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "client connection failed before its first request")
                }
            }
        }
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tls = match tokio::time::timeout(timeouts.head(), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let session = tls.get_ref().1;
            let alpn = session.alpn_protocol();
            if alpn == Some(gatehouse_tls::alpn::ACME_TLS) {
                // A TLS-ALPN-01 validator: the handshake was the whole exchange.
                return;
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
            protocols
                .serve(
                    ClientIo::new(tls, conn.clone(), h2, max_target),
                    h2,
                    conn,
                    &ctx,
                )
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
    async fn serve<S>(&self, io: ClientIo<S>, h2: bool, conn: Arc<Conn>, ctx: &Arc<ListenerContext>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let svc = {
            let (ctx, conn) = (ctx.clone(), conn.clone());
            service_fn(move |req| {
                let snap = ctx.snapshot.load_full();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(phases::handle(snap, conn, req).await) }
            })
        };
        let io = TokioIo::new(io);
        if h2 {
            let c = self.http2.serve_connection(io, svc);
            drive(c, |c| c.graceful_shutdown(), &conn, ctx, self.timeouts).await;
        } else {
            let c = self.http1.serve_connection(io, svc).with_upgrades();
            drive(c, |c| c.graceful_shutdown(), &conn, ctx, self.timeouts).await;
        }
    }
}

/// Runs a hyper connection to its end beside the watchdog (idle and head clocks) and the shutdown signal.
async fn drive<C>(
    hyper_conn: C,
    graceful: impl Fn(std::pin::Pin<&mut C>),
    conn: &Conn,
    ctx: &ListenerContext,
    timeouts: Timeouts,
) where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    let peer = conn.peer.addr;
    tokio::pin!(hyper_conn);
    let mut shutdown = ctx.shutdown.clone();
    let mut closing = *shutdown.borrow();
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
                }
                break;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                graceful(hyper_conn.as_mut());
            }
            _ = &mut watchdog => match timeouts.check(&conn.clock, now_ms()) {
                Verdict::Wait(ms) => watchdog.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(ms)),
                Verdict::Idle => {
                    if closing {
                        // A graceful close that does not finish (a client that never reads): stop waiting.
                        break;
                    }
                    tracing::debug!(%peer, "closing idle connection");
                    closing = true;
                    graceful(hyper_conn.as_mut());
                    watchdog.as_mut().reset(tokio::time::Instant::now() + timeouts.idle());
                }
                Verdict::SlowHead => {
                    tracing::debug!(%peer, "request head not received within header_read_timeout; closing");
                    break;
                }
                Verdict::SlowReader => {
                    tracing::debug!(%peer, "the client read nothing for send_timeout; closing");
                    break;
                }
            },
        }
    }
}
