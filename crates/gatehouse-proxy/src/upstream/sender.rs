//! A request sender on an upstream connection: HTTP/1.1 (one request at a time, lent out, spoken by
//! Gatehouse's own client, [`super::h1`]), an upgrade's HTTP/1.1 connection (hyper's client, which hands the
//! socket over for the tunnel; never pooled), or HTTP/2 (hyper's, multiplexed, shared).
//!
//! An HTTP/2 connection takes at most as many streams at once as the server allows (its SETTINGS'
//! MAX_CONCURRENT_STREAMS, read by [`crate::upstream::h2_settings`]); hyper would queue more inside the
//! connection, where they wait, time out and count against the server. So every HTTP/2 handle handed to a
//! request counts one stream on its connection until the request lets it go, and the pool opens another
//! connection when every one it has is full.

use super::body::{BoxError, RequestBody};
use super::h1::{self, H1Conn};
use super::request::UpRequest;
use super::response::ServerBody;
use http::Response;
use hyper::client::conn::{http1, http2};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub enum Sender {
    H1(Box<H1Conn>),
    /// An HTTP/1.1 connection whose response body holds it now (it comes back through the lease).
    Spent,
    /// hyper's HTTP/1.1 client, for a request that may upgrade.
    Upgrade(http1::SendRequest<RequestBody>),
    H2(H2Sender),
}

/// Why a request got no response head.
#[derive(Debug)]
pub enum SendFailure {
    /// Nothing reached the server: the request, untouched, for another connection.
    NotSent(Box<UpRequest>, BoxError),
    /// The request was written and then failed; a request without a body comes back where the connection
    /// can tell (HTTP/1.1), for a replay of an idempotent one.
    Failed(BoxError, Option<Box<UpRequest>>),
    /// No response head within the time given (a sender that runs its own clock).
    TimedOut,
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
    /// The server's MAX_CONCURRENT_STREAMS (unlimited if its SETTINGS do not say, RFC 9113 §6.5.2). One
    /// until its first SETTINGS frame is read: hyper's handshake ends before the server's preface arrives,
    /// and streams lent before it would queue inside the connection if the server allows fewer.
    max: AtomicU32,
}

impl Default for H2Streams {
    fn default() -> Self {
        H2Streams {
            in_use: AtomicU32::new(0),
            max: AtomicU32::new(1),
        }
    }
}

impl H2Streams {
    /// The server's limit, as its first SETTINGS frame gave it (`u32::MAX`: none given, or unreadable).
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Relaxed);
    }

    /// Takes a stream if one is free.
    pub(super) fn take(&self) -> bool {
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

    /// Can take a request now. An idle HTTP/1.1 connection is checked for a close (or stray bytes) from the
    /// server as it is taken ([`H1Conn::is_usable`]).
    pub fn is_ready(&self) -> bool {
        match self {
            Sender::H1(c) => c.is_usable(),
            Sender::Spent => false,
            Sender::Upgrade(s) => s.is_ready(),
            Sender::H2(s) => s.tx.is_ready(),
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(_) => false,
            Sender::Spent => true,
            Sender::Upgrade(s) => s.is_closed(),
            Sender::H2(s) => s.tx.is_closed(),
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    /// A handle for one request on a shared HTTP/2 connection, holding one of its streams; `None` for
    /// HTTP/1.1 (which cannot be shared) or when every stream the server allows is in use.
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::H2(s) => s.streams.take().then(|| {
                Sender::H2(H2Sender {
                    tx: s.tx.clone(),
                    streams: s.streams.clone(),
                    counted: true,
                })
            }),
            _ => None,
        }
    }

    /// The pool's (uncounted) handle on this HTTP/2 connection.
    pub fn pooled(&self) -> Option<Sender> {
        match self {
            Sender::H2(s) => Some(Sender::H2(H2Sender {
                tx: s.tx.clone(),
                streams: s.streams.clone(),
                counted: false,
            })),
            _ => None,
        }
    }

    /// Whether this sender runs the response clock itself (see [`Sender::try_send`]): an HTTP/1.1
    /// connection keeps one timer for its life.
    pub fn runs_own_clock(&self) -> bool {
        matches!(self, Sender::H1(_))
    }

    /// Sends `req` and waits for the response head; a sender that [runs its own clock](Self::runs_own_clock)
    /// gives up after `within` (the others leave timing to the caller: a timer wrapped around their future
    /// here would make every request's future larger).
    pub async fn try_send(
        &mut self,
        req: Box<UpRequest>,
        within: Option<Duration>,
    ) -> Result<Response<ServerBody>, SendFailure> {
        let hyper = |r: Result<_, hyper::client::conn::TrySendError<_>>| match r {
            Ok(resp) => Ok(Response::map(resp, ServerBody::Hyper)),
            Err(mut e) => match e.take_message() {
                Some(back) => Err(SendFailure::NotSent(
                    Box::new(UpRequest::from(back)),
                    Box::new(e.into_error()),
                )),
                None => Err(SendFailure::Failed(Box::new(e.into_error()), None)),
            },
        };
        // An HTTP/1.1 connection goes into its response's body; `Spent` stands in for it meanwhile.
        let taken = std::mem::replace(self, Sender::Spent);
        if let Sender::H1(conn) = taken {
            return match h1::send(conn, req, within).await {
                Ok(resp) => Ok(resp.map(ServerBody::H1)),
                Err(h1::SendError::Failed(h1::Error::TimedOut, _)) => Err(SendFailure::TimedOut),
                Err(h1::SendError::NotSent(back, e)) => {
                    Err(SendFailure::NotSent(back, Box::new(e)))
                }
                Err(h1::SendError::Failed(e, back)) => Err(SendFailure::Failed(Box::new(e), back)),
            };
        }
        *self = taken;
        match self {
            Sender::H1(_) | Sender::Spent => Err(SendFailure::NotSent(
                req,
                "connection already in use".into(),
            )),
            Sender::Upgrade(s) => hyper(s.try_send_request(req.into_request()).await),
            Sender::H2(s) => hyper(s.tx.try_send_request(req.into_request()).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_taken_up_to_the_servers_limit() {
        let s = H2Streams::default();
        assert!(s.take() && !s.take(), "one until SETTINGS say");
        s.set_max(u32::MAX);
        assert!(
            (0..1000).all(|_| s.take()),
            "unlimited when they name no limit"
        );
        let s = H2Streams::default();
        s.set_max(2);
        assert!(s.take() && s.take());
        assert!(!s.take());
        s.in_use.fetch_sub(1, Relaxed);
        assert!(s.take());
    }
}
