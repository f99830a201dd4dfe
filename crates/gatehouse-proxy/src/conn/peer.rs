//! What a connection is, fixed when it is accepted: who is on the other end, on which listener, over what TLS.

use http::HeaderValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// "http" or "https", for X-Forwarded-Proto and redirects.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What the TLS handshake settled.
#[derive(Debug, Clone)]
pub struct TlsFacts {
    /// The server name the client asked for (SNI), lower-cased.
    pub sni: Option<Box<str>>,
    /// "TLSv1.2" or "TLSv1.3".
    pub version: &'static str,
}

/// The immutable facts of one client connection.
#[derive(Debug)]
pub struct Peer {
    /// The client's address (IPv4-mapped IPv6 shown as IPv4).
    pub addr: SocketAddr,
    /// The client's IP rendered once as a header value, reused by every request on the connection.
    pub ip_value: HeaderValue,
    /// The listener's configured name.
    pub listener: Arc<str>,
    pub scheme: Scheme,
    /// `Some` over TLS.
    pub tls: Option<TlsFacts>,
    pub accepted: Instant,
}

impl Peer {
    pub fn new(
        addr: SocketAddr,
        listener: Arc<str>,
        tls: Option<TlsFacts>,
        accepted: Instant,
    ) -> Self {
        let ip = gatehouse_config::canonical(addr.ip());
        Peer {
            addr: SocketAddr::new(ip, addr.port()),
            ip_value: ip_value(ip),
            listener,
            scheme: if tls.is_some() {
                Scheme::Https
            } else {
                Scheme::Http
            },
            tls,
            accepted,
        }
    }

    /// The SNI the client sent, when it sent one over TLS.
    pub fn sni(&self) -> Option<&str> {
        self.tls.as_ref().and_then(|t| t.sni.as_deref())
    }
}

/// `ip` as a header value (X-Forwarded-For). IPv4 is written by hand into a stack buffer: through `to_string`
/// it was 1.8k instructions per new connection (a growing String, `fmt`'s padding per octet).
fn ip_value(ip: IpAddr) -> HeaderValue {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => {
            return HeaderValue::from_str(&v6.to_string())
                .unwrap_or(HeaderValue::from_static("unknown"))
        }
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            buf[len] = b'0' + d;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_values_are_what_display_writes() {
        for s in [
            "0.0.0.0",
            "1.2.3.4",
            "10.20.30.40",
            "100.200.250.255",
            "127.0.0.1",
            "9.99.199.0",
            "::1",
            "2001:db8::7",
        ] {
            let addr: IpAddr = s.parse().unwrap();
            assert_eq!(ip_value(addr), addr.to_string().as_str(), "{s}");
        }
    }
}
