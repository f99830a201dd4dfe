//! L4 TCP forwarding (`[[stream]]`): one accepted connection, one server connection, bytes copied both ways.
//!
//! The stream's settings come from the snapshot current when the connection is accepted (a reload changes
//! where new connections go, never an open one). Order: allow/deny on the client address → the pool's balancer
//! (ip_hash keys on the client IP; least_conn counts open connections: one in-flight unit per connection) →
//! connect, moving to another server when one refuses (up to the pool's `retries`; connect failures count for
//! passive health) → the PROXY protocol header, when the stream asks for one → copy until both sides have
//! finished (a half-close is passed on: the other side's write half is shut down, the other direction goes
//! on) or nothing moved either way for `idle_timeout`.

use super::{ListenerContext, Permits};
use crate::snapshot::{PoolRt, StreamRt};
use gatehouse_balance::{ip_hash::key_for_ip, now_ms, InFlight, Tried};
use gatehouse_config::ProxyProtocolOut;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

pub async fn serve(
    mut client: TcpStream,
    mut peer: SocketAddr,
    ctx: Arc<ListenerContext>,
    permits: Permits,
) {
    let mut permits = permits;
    let _open = ctx.tracker.open();
    let snap = ctx.snapshot.load_full();
    let Some(st) = snap.stream(ctx.settings.bind) else {
        tracing::warn!(listener = %ctx.settings.name, "no stream for this listener in the running config");
        return;
    };
    // A load balancer in front says who the client is; believed from trusted proxies only.
    if ctx.settings.proxy_protocol {
        let trusted = crate::headers::forwarded::is_trusted(&snap.trusted_proxies, peer.ip());
        match super::proxy_header::read(&mut client, snap.header_read_timeout).await {
            Ok(Some(claimed)) if trusted => peer = claimed,
            Ok(Some(claimed)) => {
                tracing::debug!(peer = %peer, claimed = %claimed, "PROXY header from an untrusted peer: not believed")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "closing: the stream expects a PROXY header");
                return;
            }
        }
    }
    let ip = gatehouse_config::canonical(peer.ip());
    if !ctx.limit.admit(ip, &mut permits, &ctx.settings.name) {
        return;
    }
    if st.access.as_ref().is_some_and(|a| !a.permits(ip)) {
        tracing::debug!(stream = %st.name, client = %ip, "refused by the stream's allow/deny");
        return;
    }
    let local = client.local_addr().unwrap_or(ctx.settings.bind);
    let Some((server, addr, _in_flight)) = connect(&st.pool, ip).await else {
        tracing::warn!(stream = %st.name, pool = %st.pool.name, client = %ip, "no server reachable; connection closed");
        return;
    };
    if let Err(e) = forward(st, client, server, SocketAddr::new(ip, peer.port()), local).await {
        tracing::debug!(stream = %st.name, server = %addr, error = %e, "stream ended");
    }
}

/// The pool's choice, connected: (socket, address, the server's in-flight unit held for the connection's life).
async fn connect(pool: &PoolRt, ip: std::net::IpAddr) -> Option<(TcpStream, SocketAddr, InFlight)> {
    let key = if pool.wants_key() { key_for_ip(ip) } else { 0 };
    let mut tried = Tried::default();
    loop {
        let member = pool.selector.select(key, &mut tried, now_ms())?;
        let up = &pool.upstreams[member.id];
        let in_flight = up.state.acquire();
        up.metrics.selections.inc();
        match tokio::time::timeout(pool.connect.connect_timeout, TcpStream::connect(up.addr)).await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                up.state.record_success();
                return Some((s, up.addr, in_flight));
            }
            result => {
                let why = match result {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no connection within {:?}", pool.connect.connect_timeout),
                };
                up.metrics.failures.inc();
                if up
                    .state
                    .record_failure(now_ms(), pool.max_fails, pool.fail_timeout_ms)
                {
                    up.metrics.ejections.inc();
                }
                up.metrics.set_last_error(format!("connect: {why}"));
                tracing::warn!(pool = %pool.name, server = %up.addr, error = %why, "stream: server unreachable, trying another");
                if tried.len() > pool.retries as usize {
                    return None;
                }
                up.metrics.retries.inc();
            }
        }
    }
}

async fn forward(
    st: &StreamRt,
    client: TcpStream,
    mut server: TcpStream,
    from: SocketAddr,
    to: SocketAddr,
) -> io::Result<()> {
    if let Some(header) = proxy_header(st.proxy_protocol, from, to)? {
        server.write_all(&header).await?;
    }
    let clock = Arc::new(AtomicU64::new(now_ms()));
    let mut client = Counted::new(client, clock.clone());
    let mut server = Counted::new(server, clock.clone());
    let copied = {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
        tokio::pin!(copy);
        loop {
            let idle_for = Duration::from_millis(now_ms().saturating_sub(clock.load(Relaxed)));
            let left = st.idle_timeout.saturating_sub(idle_for);
            if left.is_zero() {
                break Err(io::Error::new(io::ErrorKind::TimedOut, "idle_timeout"));
            }
            tokio::select! {
                r = &mut copy => break r.map(|_| ()),
                () = tokio::time::sleep(left) => {}
            }
        }
    };
    st.metrics.bytes_in.inc_by(client.read);
    st.metrics.bytes_out.inc_by(server.read);
    copied
}

/// The PROXY protocol header telling the server who the client is (`from`) and where it connected (`to`).
pub fn proxy_header(
    version: ProxyProtocolOut,
    from: SocketAddr,
    to: SocketAddr,
) -> io::Result<Option<Vec<u8>>> {
    let (from, to) = (canonical(from), canonical(to));
    Ok(match version {
        ProxyProtocolOut::Off => None,
        ProxyProtocolOut::V1 => Some(
            match (from, to) {
                (SocketAddr::V4(f), SocketAddr::V4(t)) => format!(
                    "PROXY TCP4 {} {} {} {}\r\n",
                    f.ip(),
                    t.ip(),
                    f.port(),
                    t.port()
                ),
                (f, t) if f.is_ipv6() && t.is_ipv6() => format!(
                    "PROXY TCP6 {} {} {} {}\r\n",
                    f.ip(),
                    t.ip(),
                    f.port(),
                    t.port()
                ),
                _ => "PROXY UNKNOWN\r\n".to_string(),
            }
            .into_bytes(),
        ),
        ProxyProtocolOut::V2 => {
            use ppp::v2::{Builder, Command, Protocol, Version};
            let header = if from.is_ipv4() == to.is_ipv4() {
                Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, (from, to))
                    .build()
            } else {
                Builder::new(Version::Two | Command::Local, 0).build()
            };
            Some(header?)
        }
    })
}

/// IPv4-mapped IPv6 addresses as IPv4, so a dual-stack listener's clients are written as they are.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(gatehouse_config::canonical(a.ip()), a.port())
}

/// A socket that counts the bytes read from it and stamps the shared clock when any move.
struct Counted {
    inner: TcpStream,
    read: u64,
    clock: Arc<AtomicU64>,
}

impl Counted {
    fn new(inner: TcpStream, clock: Arc<AtomicU64>) -> Self {
        Counted {
            inner,
            read: 0,
            clock,
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.read += n;
            self.clock.store(now_ms(), Relaxed);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers_name_the_client_and_the_port_it_reached() {
        let from: SocketAddr = "192.168.1.7:51000".parse().unwrap();
        let to: SocketAddr = "10.0.0.1:2201".parse().unwrap();
        let v1 = proxy_header(ProxyProtocolOut::V1, from, to)
            .unwrap()
            .unwrap();
        assert_eq!(v1, b"PROXY TCP4 192.168.1.7 10.0.0.1 51000 2201\r\n");
        let v2 = proxy_header(ProxyProtocolOut::V2, from, to)
            .unwrap()
            .unwrap();
        let parsed = ppp::v2::Header::try_from(&v2[..]).unwrap();
        assert_eq!(parsed.addresses, ppp::v2::Addresses::from((from, to)));
        assert_eq!(parsed.command, ppp::v2::Command::Proxy);
        let mapped: SocketAddr = "[::ffff:192.168.1.7]:51000".parse().unwrap();
        let v1 = proxy_header(ProxyProtocolOut::V1, mapped, to)
            .unwrap()
            .unwrap();
        assert!(
            v1.starts_with(b"PROXY TCP4 192.168.1.7 "),
            "mapped addresses as IPv4"
        );
        assert!(proxy_header(ProxyProtocolOut::Off, from, to)
            .unwrap()
            .is_none());
    }
}
