//! Listening sockets and the connections they accept.
//!
//! * [`set`]: the listeners that are open, by kind, and the one place where a reload's listener changes are
//!   worked out ([`set::ListenerSet::diff`]).
//! * [`accept_loop`]: one per listener per worker, all on the same socket.
//! * [`serve`]: one task per connection: TLS handshake if the listener says so, HTTP/1.1 or HTTP/2 by hyper,
//!   beside the connection's watchdog.
//! * [`client_io`]: the client socket, wrapped to feed the watchdog's head clock and the head scanner.

pub mod client_io;
pub mod serve;
pub mod set;

use crate::conn::Tracker;
use crate::Snapshot;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Binds a listening socket. SO_REUSEADDR lets a restarted Gatehouse bind at once over TIME_WAIT sockets.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// What an accept loop shares with the rest of the proxy.
#[derive(Debug)]
pub struct ListenerContext {
    /// The bind address as configured: the key of this listener's settings in the snapshot.
    pub bind: SocketAddr,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub tracker: Arc<Tracker>,
    pub shutdown: watch::Receiver<bool>,
}

/// Accepts until `stop` turns true (listener removed by a reload, or shutdown).
pub async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<ListenerContext>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve::serve_connection(stream, peer, ctx.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
