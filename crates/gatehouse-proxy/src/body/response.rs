//! The response on its way to the client: the upstream's body, or a small answer of Gatehouse's own.

use crate::context::ErrorKind;
use crate::upstream::pool::Lease;
use crate::upstream::response::ServerBody;
use bytes::Bytes;
use gatehouse_balance::InFlight;
use http_body::{Body, Frame, SizeHint};
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

enum Kind {
    Full(Option<Bytes>),
    Upstream(ServerBody),
    /// Compressed on the way ([`super::compress`]); the upstream body (and what it holds) is inside.
    Encoded(Box<super::compress::Encoded>),
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Full(b) => f.debug_tuple("Full").field(b).finish(),
            Kind::Upstream(b) => f.debug_tuple("Upstream").field(b).finish(),
            Kind::Encoded(_) => f.write_str("Encoded"),
        }
    }
}

/// What a body fails with: the upstream's error, or the encoder's.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

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

    pub fn upstream(body: ServerBody, hold: UpstreamHold) -> Self {
        ResponseBody {
            kind: Kind::Upstream(body),
            upstream: Some(hold),
            error: None,
        }
    }

    /// This body, compressed with `codec` on the way.
    pub fn encoded(
        self,
        codec: gatehouse_config::Codec,
        level: gatehouse_config::CompressLevel,
    ) -> Self {
        let error = self.error;
        ResponseBody {
            kind: Kind::Encoded(Box::new(super::compress::encode(self, codec, level))),
            upstream: None,
            error,
        }
    }

    /// Why Gatehouse gave this answer itself, if it did.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error
    }

    /// The upstream body ended cleanly: the connection may serve another request.
    fn finish(&mut self) {
        let (Some(hold), Kind::Upstream(inner)) = (self.upstream.take(), &mut self.kind) else {
            return;
        };
        if let Some(lease) = hold.lease {
            lease.release(inner.take_finished());
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
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
            Kind::Encoded(enc) => {
                use futures_util::Stream;
                match ready!(Pin::new(&mut **enc).poll_next(cx)) {
                    None => Poll::Ready(None),
                    Some(Ok(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream(inner) => inner.is_end_stream(),
            Kind::Encoded(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(inner) => inner.size_hint(),
            Kind::Encoded(_) => SizeHint::default(),
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
