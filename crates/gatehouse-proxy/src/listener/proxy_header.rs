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
        let (len, source) = match parse(&buf[..n]) {
            Parsed::Incomplete if n < MAX_HEADER => continue,
            Parsed::Incomplete | Parsed::Invalid => return Err(ProxyHeaderError::Invalid),
            Parsed::Header { len, source } => (len, source),
        };
        let mut header = vec![0u8; len];
        stream.read_exact(&mut header).await?;
        return Ok(source);
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header may still come: more bytes are needed.
    Incomplete,
    Invalid,
    /// A whole header of `len` bytes, naming `source` as the client (`None`: LOCAL or UNKNOWN).
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Parses a PROXY v1 or v2 header at the start of `buf` (bytes a peer sent: anything at all). Public for the
/// fuzz target (`fuzz/fuzz_targets/proxy_header.rs`).
pub fn parse(buf: &[u8]) -> Parsed {
    match HeaderResult::parse(buf) {
        r if r.is_incomplete() => Parsed::Incomplete,
        HeaderResult::V1(Ok(h)) => Parsed::Header {
            len: h.header.len(),
            source: v1_source(&h.addresses),
        },
        HeaderResult::V2(Ok(h)) => Parsed::Header {
            len: h.len(),
            source: v2_source(&h),
        },
        _ => Parsed::Invalid,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_measured_and_garbage_is_refused() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 443\r\n";
        let mut with_request = v1.to_vec();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&with_request),
            Parsed::Header {
                len: v1.len(),
                source: Some("192.0.2.7:51000".parse().unwrap())
            }
        );
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7"), Parsed::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Parsed::Invalid);
        assert!(matches!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header { source: None, .. }
        ));
    }
}
