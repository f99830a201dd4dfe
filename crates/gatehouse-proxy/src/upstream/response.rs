//! A server's response body as the request path sees it: read by Gatehouse's own HTTP/1.1 client
//! ([`super::h1`]) or, for HTTP/2 servers, by hyper's.

use super::body::BoxError;
use super::h1::{self, H1Conn};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

#[derive(Debug)]
pub enum ServerBody {
    H1(h1::body::Body),
    Hyper(Incoming),
}

impl ServerBody {
    /// The HTTP/1.1 connection, once its body was read to its end and the server keeps it open.
    pub fn take_finished(&mut self) -> Option<Box<H1Conn>> {
        match self {
            ServerBody::H1(b) => b.take_finished(),
            ServerBody::Hyper(_) => None,
        }
    }
}

impl Body for ServerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ServerBody::H1(b) => Pin::new(b).poll_frame(cx),
            ServerBody::Hyper(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(BoxError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServerBody::H1(b) => b.is_end_stream(),
            ServerBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServerBody::H1(b) => b.size_hint(),
            ServerBody::Hyper(b) => b.size_hint(),
        }
    }
}
