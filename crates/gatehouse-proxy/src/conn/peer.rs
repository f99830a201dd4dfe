//! What a connection is, fixed when it is accepted: who is on the other end, on which listener, over what TLS.

use http::HeaderValue;
use std::net::SocketAddr;
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
            ip_value: crate::headers::forwarded::ip_value(ip),
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
