//! A request sender on an upstream connection, HTTP/1.1 (one request at a time, lent out) or HTTP/2
//! (multiplexed, shared).
//!
//! An HTTP/1.1 sender carries its connection's [`ParkSlot`]: the pool writes into it when it takes the
//! connection out of hyper's hands to keep only the socket (see [`super::pool`]).
//!
//! An HTTP/2 connection takes at most as many streams at once as the server allows (its SETTINGS'
//! MAX_CONCURRENT_STREAMS, read by [`crate::upstream::h2_settings`]); hyper would queue more inside the
//! connection, where they wait, time out and count against the server. So every HTTP/2 handle handed to a
//! request counts one stream on its connection until the request lets it go, and the pool opens another
//! connection when every one it has is full.

use super::body::RequestBody;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Debug)]
pub enum Sender {
    H1(http1::SendRequest<RequestBody>, Arc<ParkSlot>),
    H2(H2Sender),
}

/// Set by the pool, read by the connection's task when hyper's connection ends: whether the socket is to be
/// parked (kept, without hyper's buffers) rather than closed, and since when it has been idle. Only the pool
/// sets it, and only on a connection it holds idle and ready: a connection that ends any other way (a
/// response cut short, the server's close) is never parked, whatever its socket looks like.
#[derive(Debug, Default)]
pub struct ParkSlot {
    /// `gatehouse_balance::now_ms()` when the connection went idle; 0 until the pool asks.
    idle_since_ms: AtomicU64,
}

impl ParkSlot {
    pub fn ask(&self, idle_since_ms: u64) {
        self.idle_since_ms.store(idle_since_ms.max(1), Relaxed);
    }

    /// When the pool asked, since when the connection has been idle.
    pub fn asked(&self) -> Option<u64> {
        Some(self.idle_since_ms.load(Relaxed)).filter(|&ms| ms != 0)
    }
}

/// A handle on a shared HTTP/2 connection.
#[derive(Debug)]
pub struct H2Sender {
    tx: http2::SendRequest<RequestBody>,
    streams: Arc<H2Streams>,
    /// This handle holds one of the connection's streams (a request's handle; the pool's own does not).
    counted: bool,
}

/// How many streams an HTTP/2 connection has in use, and how many its server allows.
#[derive(Debug)]
pub struct H2Streams {
    in_use: AtomicU32,
    /// The server's MAX_CONCURRENT_STREAMS; unlimited until its SETTINGS say otherwise (RFC 9113 §6.5.2).
    max: AtomicU32,
}

impl Default for H2Streams {
    fn default() -> Self {
        H2Streams {
            in_use: AtomicU32::new(0),
            max: AtomicU32::new(u32::MAX),
        }
    }
}

impl H2Streams {
    /// The server's limit, as its SETTINGS frame gave it.
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Relaxed);
    }

    /// Takes a stream if one is free.
    fn take(&self) -> bool {
        let max = self.max.load(Relaxed);
        self.in_use
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }
}

impl Drop for H2Sender {
    fn drop(&mut self) {
        if self.counted {
            self.streams.in_use.fetch_sub(1, Relaxed);
        }
    }
}

impl Sender {
    /// The pool's handle on a new HTTP/2 connection.
    pub fn h2(tx: http2::SendRequest<RequestBody>, streams: Arc<H2Streams>) -> Sender {
        Sender::H2(H2Sender {
            tx,
            streams,
            counted: false,
        })
    }

    pub fn is_ready(&self) -> bool {
        match self {
            Sender::H1(s, _) => s.is_ready(),
            Sender::H2(s) => s.tx.is_ready(),
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s, _) => s.is_closed(),
            Sender::H2(s) => s.tx.is_closed(),
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    /// Asks the connection's task to park the socket when hyper's connection ends (which dropping this
    /// sender, the connection's only one, makes it do at once). HTTP/2 connections do not park.
    pub fn park(self, idle_since_ms: u64) {
        if let Sender::H1(_, slot) = &self {
            slot.ask(idle_since_ms);
        }
    }

    /// A handle for one request on a shared HTTP/2 connection, holding one of its streams; `None` for
    /// HTTP/1.1 (which cannot be shared) or when every stream the server allows is in use.
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::H1(..) => None,
            Sender::H2(s) => s.streams.take().then(|| {
                Sender::H2(H2Sender {
                    tx: s.tx.clone(),
                    streams: s.streams.clone(),
                    counted: true,
                })
            }),
        }
    }

    /// The pool's (uncounted) handle on this HTTP/2 connection.
    pub fn pooled(&self) -> Option<Sender> {
        match self {
            Sender::H1(..) => None,
            Sender::H2(s) => Some(Sender::H2(H2Sender {
                tx: s.tx.clone(),
                streams: s.streams.clone(),
                counted: false,
            })),
        }
    }

    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s, _) => s.ready().await,
            Sender::H2(s) => s.tx.ready().await,
        }
    }

    /// Sends `req`; if it could not be written at all, the error gives it back.
    pub async fn try_send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        match self {
            Sender::H1(s, _) => s.try_send_request(req).await,
            Sender::H2(s) => s.tx.try_send_request(req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_taken_up_to_the_servers_limit() {
        let s = H2Streams::default();
        assert!((0..1000).all(|_| s.take()), "unlimited until SETTINGS say");
        let s = H2Streams::default();
        s.set_max(2);
        assert!(s.take() && s.take());
        assert!(!s.take());
        s.in_use.fetch_sub(1, Relaxed);
        assert!(s.take());
    }
}
