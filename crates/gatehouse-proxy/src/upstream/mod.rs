//! Connections to backend servers. Knows nothing of routes or requests' contexts: it is given a server, the
//! pool's connection settings and a request, and hands back a sender or an error.
//!
//! * [`connect`] opens one (TCP_NODELAY, connect timeout, TLS if asked, HTTP/2 handshake);
//! * [`h1`] speaks HTTP/1.1 on it, inside the request's task (hyper's client only for upgrades);
//! * [`pool`] keeps idle keep-alive connections per server and worker (and shares HTTP/2 ones), so most
//!   requests open none; HTTP/1.1 ones idle for a second park as bare sockets ([`io`]);
//! * [`request`] is a request as it goes up: the rewritten request, and the fields the proxy adds beside it;
//! * [`sender`] is the handle a request is sent on (an HTTP/2 one holds a stream, up to the server's limit,
//!   which [`h2_settings`] reads); [`body`] the request body as it goes up, [`response`] the response body
//!   as it comes down.
//!
//! The files use the [`Upstream`] and [`Settings`] defined here: a cycle inside the folder only.

pub mod body;
pub mod connect;
pub mod dns;
pub mod h1;
pub mod h2_settings;
pub mod health;
pub mod io;
pub mod pool;
pub mod request;
pub mod response;
pub mod sender;

use gatehouse_balance::{AdminControl, ServerState};
use gatehouse_metrics::ServerMetrics;
use pool::ConnPool;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// One server of a pool, with the state it shares with every snapshot that names it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    /// Drain / disable / weight from the admin API, for this server in this pool.
    pub admin: Arc<AdminControl>,
    /// Counters, latency and last error of this server in this pool (kept across reloads).
    pub metrics: Arc<ServerMetrics>,
    pub conns: Arc<ConnPool>,
    /// How it is probed, when its pool has active health checks (the state the balancer reads is inside).
    pub probe: Option<health::Probe>,
    /// The weight the config gives it (see [`Upstream::weight`]).
    pub config_weight: u32,
    /// Used only when no primary server is available.
    pub backup: bool,
    /// For TLS pools: the name sent as SNI and verified in the server's certificate.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
}

impl Upstream {
    /// In service by its health: not taken out by passive checks (`max_fails`), nor found down by active
    /// ones (a server not probed yet counts as healthy here; the balancer prefers known-good ones).
    pub fn healthy(&self, now_ms: u64) -> bool {
        self.state.is_available(now_ms)
            && self
                .probe
                .as_ref()
                .is_none_or(|p| p.state.get() != gatehouse_balance::Health::Down)
    }

    /// The weight in effect: one set on the admin API stands in for the config's while the server is listed.
    pub fn weight(&self) -> u32 {
        self.admin.weight().unwrap_or(self.config_weight)
    }
}

/// How a pool's connections are made.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connect_timeout: Duration,
    /// TLS to the servers, when the pool says so.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The same, offering only http/1.1 (for upgrades when `http2` is on).
    pub tls_h1: Option<Arc<rustls::ClientConfig>>,
    /// HTTP/2 to the servers (h2 over TLS, h2c in plain).
    pub http2: bool,
}

/// How a pool speaks to its servers; idle connections are shared only between pools that speak alike.
/// For TLS that includes what the server was verified against (CA and name): a connection verified with one
/// pool's private CA must never serve a pool that trusts only the public roots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub addr: SocketAddr,
    /// `None` in plain; else (CA file bytes, or empty for the webpki roots; server name).
    pub tls: Option<(Arc<[u8]>, String)>,
    pub http2: bool,
}
