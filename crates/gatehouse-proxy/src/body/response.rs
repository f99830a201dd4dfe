//! The response on its way to the client: the upstream's body, or a small answer of Gatehouse's own.

use crate::context::ErrorKind;
use crate::upstream::pool::Lease;
use bytes::Bytes;
use gatehouse_balance::InFlight;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
    /// Upstream resources held until the body ends.
    upstream: Option<UpstreamHold>,
    /// For an answer Gatehouse gave itself: why (read into the request's context).
    error: Option<ErrorKind>,
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
            error: None,
        }
    }

    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// The text of an error answer, marked with its kind.
    pub fn error(kind: ErrorKind, text: Bytes) -> Self {
        let mut b = Self::full(text);
        b.error = Some(kind);
        b
    }

    pub fn upstream(body: Incoming, hold: UpstreamHold) -> Self {
        ResponseBody {
            kind: Kind::Upstream(body),
            upstream: Some(hold),
            error: None,
        }
    }

    /// Why Gatehouse gave this answer itself, if it did.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error
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
