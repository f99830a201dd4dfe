//! Active health checks of one server: what identifies a prober ([`HealthKey`]), how it probes ([`Probe`],
//! [`probe`]) and its loop ([`run`]). One probe: connect (TLS if asked), `GET path` with the check's Host, read
//! the status (and, when the check looks for a body substring, up to 64 KiB of the body), all within the
//! check's timeout, on a connection of its own (never a pooled one: a probe tests what a new request meets).
//! [`crate::health::Probers`] decides which probers run.

use bytes::Bytes;
use gatehouse_balance::{ActiveHealth, Health};
use gatehouse_config::HealthCheck;
use http::{header, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// What identifies one prober: where it connects and what it asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthKey {
    /// The server's address (the check's `port` already applied).
    pub addr: SocketAddr,
    pub check: HealthCheck,
    /// The Host header sent.
    pub host: String,
    /// Probed over TLS, verified against this name.
    pub tls_name: Option<String>,
}

/// How one server of a pool is probed (built at compile time, kept in its `Upstream`).
#[derive(Debug, Clone)]
pub struct Probe {
    pub key: HealthKey,
    pub state: Arc<ActiveHealth>,
    /// For TLS probes: the client config (http/1.1 only) and the verified name.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
}

/// Probes until aborted. The first probe goes out after a random part of one interval (so a reload or a start
/// does not probe every server at once), then one every interval; a probe that takes longer than the
/// interval (its timeout is longer) delays the next one rather than overlapping it.
pub async fn run(p: Probe) {
    let c = &p.key.check;
    let jitter = |d: Duration| d.mul_f64(rand::random::<f64>() * 0.1);
    tokio::time::sleep(c.interval.mul_f64(rand::random::<f64>())).await;
    loop {
        let started = tokio::time::Instant::now();
        let result = probe(&p).await;
        let error = result.as_ref().err().cloned();
        if let Some(now) = p.state.record(result, c.fall, c.rise) {
            match now {
                Health::Down => {
                    tracing::warn!(server = %p.key.addr, path = c.path.as_deref().unwrap_or("(tcp)"), error = error.as_deref().unwrap_or(""), fall = c.fall, "health check: server down")
                }
                Health::Up => {
                    tracing::info!(server = %p.key.addr, path = c.path.as_deref().unwrap_or("(tcp)"), "health check: server up")
                }
                Health::Unknown => {}
            }
        }
        tokio::time::sleep_until(started + c.interval + jitter(c.interval)).await;
    }
}

/// Bytes of body read when looking for `body`.
const MAX_BODY: usize = 64 * 1024;

pub async fn probe(p: &Probe) -> Result<(), String> {
    let c = &p.key.check;
    match tokio::time::timeout(c.timeout, exchange(p)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", c.timeout)),
    }
}

async fn exchange(p: &Probe) -> Result<(), String> {
    let tcp = TcpStream::connect(p.key.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match &p.tls {
        None => check(tcp, p).await,
        Some((config, name)) => {
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            check(tls, p).await
        }
    }
}

/// On a connected (and, over TLS, handshaken) socket: an HTTP check asks for its path; a TCP check (no path)
/// passes already, or on what the server says to the check's `send`.
async fn check<T>(io: T, p: &Probe) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match &p.key.check.path {
        None => converse(io, &p.key.check).await,
        Some(path) => ask(TokioIo::new(io), p, path)
            .await
            .map_err(|e| format!("{path} {}: {e}", p.key.host)),
    }
}

async fn ask<T>(io: TokioIo<T>, p: &Probe, path: &str) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let c = &p.key.check;
    let (mut send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, p.key.host.as_str())
        .header(header::USER_AGENT, "gatehouse-health-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string());
    let result = match resp {
        Err(e) => Err(e),
        Ok(resp) => {
            let status = resp.status().as_u16();
            if !c.status_ok(status) {
                Err(format!("status {status}"))
            } else if let Some(want) = &c.body {
                let mut body = resp.into_body();
                let mut seen = Vec::new();
                while seen.len() < MAX_BODY {
                    match body.frame().await {
                        Some(Ok(f)) => {
                            if let Some(d) = f.data_ref() {
                                seen.extend_from_slice(d);
                            }
                        }
                        Some(Err(e)) => return Err(format!("body: {e}")),
                        None => break,
                    }
                }
                if memmem(&seen, want.as_bytes()) {
                    Ok(())
                } else {
                    Err(format!("body does not contain {want:?}"))
                }
            } else {
                Ok(())
            }
        }
    };
    conn.abort();
    result
}

/// A TCP check's exchange: `send`, then read until `expect` shows (or the server closes, or 64 KiB came).
async fn converse<S>(mut io: S, c: &HealthCheck) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if let Some(send) = &c.send {
        io.write_all(send.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
    }
    let Some(want) = &c.expect else { return Ok(()) };
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while seen.len() < MAX_BODY {
        let n = io.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if memmem(&seen, want.as_bytes()) {
            return Ok(());
        }
    }
    Err(format!("the answer does not contain {want:?}"))
}

fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}
