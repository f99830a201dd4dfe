//! The PROXY protocol (HAProxy's v1 text and v2 binary headers, parsed by the `ppp` crate): a load
//! balancer in front of Gatehouse says who the client is before the connection's own bytes start. A
//! listener with `proxy_protocol = true` requires the header; it is believed only when the peer sending it
//! is in `trusted_proxies` (anyone else could claim any address).
//!
//! The header is read with `peek` and then consumed to its exact length, so the bytes after it (a TLS
//! ClientHello, an HTTP head) are left to the next stage untouched.

use ppp::{v1, v2, HeaderResult, PartialResult};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Enough for any v1 header (107 bytes) and v2 headers with a few TLVs.
const MAX_HEADER: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    #[error("not a PROXY protocol header")]
    Invalid,
    #[error("the connection closed before its PROXY header ended")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY header at the start of `stream`: the client's address it names (`None` for `LOCAL` or
/// `UNKNOWN`, e.g. a health check by the load balancer itself).
pub async fn read(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    tokio::time::timeout(timeout, read_now(stream))
        .await
        .map_err(|_| ProxyHeaderError::Timeout(timeout))?
}

async fn read_now(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        if n == seen {
            // A header split across packets (rare: load balancers send it whole): look again shortly.
            // `peek` cannot wait for *more* bytes, and reading them would take the ones after the header.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen = n;
        let (len, source) = match HeaderResult::parse(&buf[..n]) {
            r if r.is_incomplete() => {
                if n == MAX_HEADER {
                    return Err(ProxyHeaderError::Invalid);
                }
                continue;
            }
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_source(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.len(), v2_source(&h)),
            _ => return Err(ProxyHeaderError::Invalid),
        };
        let mut header = vec![0u8; len];
        stream.read_exact(&mut header).await?;
        return Ok(source);
    }
}

fn v1_source(a: &v1::Addresses) -> Option<SocketAddr> {
    match a {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(h: &v2::Header<'_>) -> Option<SocketAddr> {
    if h.command == v2::Command::Local {
        return None;
    }
    match h.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        _ => None,
    }
}
