//! Connections to backend servers: [`connect`] opens one (TCP_NODELAY, connect timeout, TLS if asked, HTTP/1.1
//! or HTTP/2 handshake), [`pool`] keeps idle keep-alive connections per server (and shares HTTP/2 ones) so most
//! requests open none.

pub mod connect;
pub mod pool;
pub mod sender;

use gatehouse_balance::ServerState;
use pool::ConnPool;
use std::net::SocketAddr;
use std::sync::Arc;

/// One server of a pool, with the state it shares with every snapshot that names it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    pub conns: Arc<ConnPool>,
    /// For TLS pools: the name sent as SNI and verified in the server's certificate.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
}

/// How a pool speaks to its servers; idle connections are shared only between pools that speak alike.
/// For TLS that includes what the server was verified against (CA and name): a connection verified with one
/// pool's private CA must never serve a pool that trusts only the public roots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub addr: SocketAddr,
    /// `None` in plain; else (CA file bytes, or empty for the webpki roots; server name).
    pub tls: Option<(Vec<u8>, String)>,
    pub http2: bool,
}
