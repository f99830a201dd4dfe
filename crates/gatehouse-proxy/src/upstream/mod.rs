//! Connections to backend servers: [`connect`] opens one (TCP_NODELAY, connect timeout, HTTP/1.1 handshake),
//! [`pool`] keeps idle keep-alive connections per server so most requests open none.

pub mod connect;
pub mod pool;

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
}
