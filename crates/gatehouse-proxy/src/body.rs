//! Bodies in both directions, streamed frame by frame, never collected.
//!
//! [`RequestBody`] carries the client's body upstream and enforces `max_body` as it goes.
//! [`ResponseBody`] carries the upstream's (or Gatehouse's own) body to the client, and holds what must be
//! released when it ends: the server's in-flight count, the upstream connection (back to its pool when the
//! body completed cleanly, closed otherwise), and the client connection's activity count.

use crate::listener::ActiveRequest;
use crate::upstream::pool::Lease;
use bytes::Bytes;
use gatehouse_balance::InFlight;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body was cut because it exceeded max_body.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds max_body")]
pub struct TooLarge;

/// A client's request body on its way to a server.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    /// Bytes still allowed, when max_body applies.
    remaining: Option<u64>,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: Option<u64>) -> Self {
        RequestBody {
            inner: Some(inner),
            remaining: limit,
        }
    }

    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            remaining: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        if let (Some(Ok(f)), Some(rem)) = (&frame, this.remaining.as_mut()) {
            if let Some(data) = f.data_ref() {
                let n = data.len() as u64;
                if n > *rem {
                    this.inner = None;
                    return Poll::Ready(Some(Err(Box::new(TooLarge))));
                }
                *rem -= n;
            }
        }
        Poll::Ready(frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// A response body on its way to the client.
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
    /// Upstream resources held until the body ends.
    upstream: Option<UpstreamHold>,
    /// Marks the client connection busy until the body ends (idle timeout, graceful drain).
    _active: Option<ActiveRequest>,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

/// What a proxied response holds on the upstream side.
#[derive(Debug)]
pub struct UpstreamHold {
    pub in_flight: InFlight,
    /// The connection, returned to its pool only if the body is read to its end.
    pub lease: Option<Lease>,
}

impl ResponseBody {
    pub fn full(bytes: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full(Some(bytes).filter(|b| !b.is_empty())),
            upstream: None,
            _active: None,
        }
    }

    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    pub fn upstream(body: Incoming, hold: UpstreamHold) -> Self {
        ResponseBody {
            kind: Kind::Upstream(body),
            upstream: Some(hold),
            _active: None,
        }
    }

    pub(crate) fn set_active(&mut self, active: ActiveRequest) {
        self._active = Some(active);
    }

    /// The upstream body ended cleanly: the connection may serve another request.
    fn finish(&mut self) {
        if let Some(hold) = self.upstream.take() {
            if let Some(lease) = hold.lease {
                lease.release();
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(inner) => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                match &frame {
                    None => this.finish(),
                    Some(Err(_)) => this.upstream = None,
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(inner) => inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper does not poll a body that says it is already at its end (204, 304, HEAD, Content-Length: 0):
        // such a connection is still clean and goes back to the pool.
        if let Kind::Upstream(inner) = &self.kind {
            if inner.is_end_stream() {
                self.finish();
            }
        }
    }
}
