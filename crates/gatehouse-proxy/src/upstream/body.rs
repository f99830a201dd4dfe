//! The client's request body on its way to a server: streamed frame by frame, never collected, cut when it
//! passes `max_body`, and counted for the request's context.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body was cut because it exceeded max_body.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds max_body")]
pub struct TooLarge;

/// Reading the client's body failed (the client went away, or sent a malformed chunked body): the client's
/// fault, never the server's.
#[derive(Debug, thiserror::Error)]
#[error("reading the client's request body: {0}")]
pub struct ClientBodyError(#[source] pub hyper::Error);

#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    /// Bytes still allowed, when max_body applies.
    remaining: Option<u64>,
    /// Where received bytes are counted (`None` for a body known to be empty).
    counted: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub fn new(inner: Incoming, limit: Option<u64>, counted: Option<Arc<AtomicU64>>) -> Self {
        RequestBody {
            inner: Some(inner),
            remaining: limit,
            counted,
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
        if let Some(Ok(f)) = &frame {
            if let Some(data) = f.data_ref() {
                let n = data.len() as u64;
                if let Some(c) = &this.counted {
                    c.fetch_add(n, Relaxed);
                }
                if let Some(rem) = this.remaining.as_mut() {
                    if n > *rem {
                        this.inner = None;
                        return Poll::Ready(Some(Err(Box::new(TooLarge))));
                    }
                    *rem -= n;
                }
            }
        }
        Poll::Ready(frame.map(|r| r.map_err(|e| Box::new(ClientBodyError(e)) as BoxError)))
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
