//! The client's request body on its way to a server: streamed frame by frame, never collected, cut when it
//! passes `max_body` or when the client sends nothing of it for `body_timeout` (also after the server has
//! answered early, when nothing else watches it), and its progress reported to the request's context (bytes,
//! complete, waiting for the client).

use crate::context::BodyProgress;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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

/// The client sent nothing of its body for `body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the client sent nothing of its request body for body_timeout")]
pub struct BodyStalled;

#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    /// Bytes still allowed, when max_body applies.
    remaining: Option<u64>,
    /// Where progress is reported (`None` for a body known to be empty).
    progress: Option<Arc<BodyProgress>>,
    stall: Stall,
}

/// The `body_timeout` clock: armed (one timer per body, made the first time the client keeps us waiting)
/// while the body waits on the client, restarted by each frame.
#[derive(Debug)]
struct Stall {
    after: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A frame came since the timer was last set.
    moved: bool,
}

impl Stall {
    /// Polled when the client has nothing for us: `true` once it has had nothing for `after`.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timer = match &mut self.timer {
            Some(t) => {
                if self.moved {
                    t.as_mut().reset(tokio::time::Instant::now() + self.after);
                }
                t
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep(self.after))),
        };
        self.moved = false;
        timer.as_mut().poll(cx).is_ready()
    }
}

impl RequestBody {
    pub fn new(
        inner: Incoming,
        limit: Option<u64>,
        progress: Option<Arc<BodyProgress>>,
        body_timeout: Duration,
    ) -> Self {
        RequestBody {
            inner: Some(inner),
            remaining: limit,
            progress,
            stall: Stall {
                after: body_timeout,
                timer: None,
                moved: false,
            },
        }
    }

    /// A body with nothing in it (a request sent again after its first try broke: it had none).
    pub fn empty(body_timeout: Duration) -> Self {
        RequestBody {
            inner: None,
            remaining: None,
            progress: None,
            stall: Stall {
                after: body_timeout,
                timer: None,
                moved: false,
            },
        }
    }

    /// This body, leaving an empty one in its place (the request keeps its head for a retry).
    pub fn take(&mut self) -> RequestBody {
        let empty = RequestBody::empty(self.stall.after);
        std::mem::replace(self, empty)
    }

    fn end(&mut self) {
        if let Some(p) = &self.progress {
            p.complete();
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.end();
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
        let frame = match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Pending => {
                if this.stall.expired(cx) {
                    this.inner = None;
                    this.end();
                    return Poll::Ready(Some(Err(Box::new(BodyStalled))));
                }
                if let Some(p) = &this.progress {
                    p.waiting_on_client(true);
                }
                return Poll::Pending;
            }
            Poll::Ready(f) => f,
        };
        this.stall.moved = true;
        if let Some(p) = &this.progress {
            p.waiting_on_client(false);
        }
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    let n = data.len() as u64;
                    if let Some(p) = &this.progress {
                        p.add(n);
                    }
                    if let Some(rem) = this.remaining.as_mut() {
                        if n > *rem {
                            this.inner = None;
                            this.end();
                            return Poll::Ready(Some(Err(Box::new(TooLarge))));
                        }
                        *rem -= n;
                    }
                }
                // hyper may not poll again once the body says it is done.
                if inner.is_end_stream() {
                    this.end();
                }
            }
            None | Some(Err(_)) => this.end(),
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
