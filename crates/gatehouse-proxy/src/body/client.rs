//! The body hyper sends to the client: counts what it hands over, and reports the request's end.

use super::ResponseBody;
use crate::context::EndReason;
use crate::exchange::Exchange;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

#[derive(Debug)]
pub struct ClientBody<B: Body = ResponseBody> {
    inner: B,
    /// `None` once reported, or for a 101 whose exchange went with the tunnel.
    exchange: Option<Exchange>,
    /// The response has no body on the wire (HEAD, 1xx, 204, 304): hyper never polls it.
    bodiless: bool,
}

impl<B: Body> ClientBody<B> {
    /// `bodiless`: the answer carries no body whatever `inner` holds (a HEAD request, 1xx, 204, 304).
    pub fn new(inner: B, exchange: Option<Exchange>, bodiless: bool) -> Self {
        ClientBody {
            inner,
            exchange,
            bodiless,
        }
    }

    fn end(&mut self, reason: EndReason) {
        if let Some(x) = self.exchange.take() {
            x.end(reason);
        }
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(data), Some(x)) = (f.data_ref(), this.exchange.as_mut()) {
                    x.ctx_mut().bytes_out += data.len() as u64;
                }
                // hyper may not poll again after a body says it is done: report now.
                if this.inner.is_end_stream() {
                    this.end(EndReason::Complete);
                }
            }
            None => this.end(EndReason::Complete),
            Some(Err(_)) => this.end(EndReason::UpstreamError),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for ClientBody<B> {
    fn drop(&mut self) {
        // Not ended by poll_frame. hyper does not poll a body that is empty from the start (Content-Length: 0),
        // nor any body of an answer that has none on the wire (HEAD, 1xx, 204, 304): such an exchange is
        // complete. Any other still here means the client went away mid-body, which the exchange's own drop
        // reports.
        if self.bodiless || self.inner.is_end_stream() {
            self.end(EndReason::Complete);
        }
    }
}
