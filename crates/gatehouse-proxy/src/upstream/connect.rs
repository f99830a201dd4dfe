//! Opening a connection to a server: TCP with a timeout and TCP_NODELAY, TLS when the pool says so
//! (certificate verified, SNI from the pool or the server's name), then HTTP/1.1 (Gatehouse's own client,
//! [`super::h1`]: no handshake, no task) or the HTTP/2 handshake (its I/O in its own task on the current
//! worker). A request that may upgrade gets hyper's HTTP/1.1 client, which hands the socket to the tunnel.
//! [`resume`] takes a parked socket up again.

use super::body::RequestBody;
use super::h1::H1Conn;
use super::h2_settings::SettingsReader;
use super::io::UpstreamIo;
use super::sender::{H2Streams, Sender};
use super::{Settings, Upstream};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The most an HTTP/1.1 upstream connection buffers of a response.
pub const UPSTREAM_MAX_BUF: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

/// Connects to `up`. With `upgrades`, the connection may be taken over by a protocol upgrade (WebSocket)
/// and must not be pooled; upgrades always use HTTP/1.1.
pub async fn connect(
    settings: &Settings,
    up: &Upstream,
    upgrades: bool,
) -> Result<Sender, ConnectError> {
    let pool = settings;
    let timeout = pool.connect_timeout;
    let h2 = pool.http2 && !upgrades;
    let work = async {
        let tcp = TcpStream::connect(up.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = if upgrades { &pool.tls_h1 } else { &pool.tls };
        match (tls, &up.server_name) {
            (Some(config), Some(name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(ConnectError::Tls)?;
                if h2 {
                    handshake_h2(tls, up).await
                } else {
                    handshake_h1(UpstreamIo::Tls(Box::new(tls)), upgrades, up).await
                }
            }
            _ if h2 => handshake_h2(tcp, up).await,
            _ => handshake_h1(UpstreamIo::Plain(tcp), upgrades, up).await,
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

/// A parked socket (one the pool kept without its buffers) made a connection again: no I/O, the server
/// sees the next request on its open connection.
pub fn resume(io: UpstreamIo) -> Sender {
    Sender::H1(H1Conn::new(io, true))
}

async fn handshake_h2<S>(io: S, up: &Upstream) -> Result<Sender, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = up.addr;
    let streams = Arc::new(H2Streams::default());
    let io = TokioIo::new(SettingsReader::new(io, streams.clone()));
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake::<_, RequestBody>(io)
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "upstream h2 connection ended");
        }
    });
    // The pool's handle, and one stream of it for the request that opened it.
    let pooled = Sender::h2(sender, streams);
    pooled
        .share()
        .ok_or_else(|| ConnectError::Io(std::io::Error::other("the server allows no stream")))
}

async fn handshake_h1(
    io: UpstreamIo,
    upgrades: bool,
    up: &Upstream,
) -> Result<Sender, ConnectError> {
    if !upgrades {
        return Ok(Sender::H1(H1Conn::new(io, false)));
    }
    let addr = up.addr;
    // The read buffer bounds what an upstream connection holds for a client that reads slowly (hyper's default
    // grows to ~400 KiB): beyond it, the server's bytes wait in its socket.
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(UPSTREAM_MAX_BUF)
        .handshake::<_, RequestBody>(TokioIo::new(io))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended");
        }
    });
    Ok(Sender::Upgrade(sender))
}
