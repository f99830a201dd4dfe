//! A request sender on an upstream connection, HTTP/1.1 (one request at a time, lent out) or HTTP/2
//! (multiplexed, shared).

use super::body::RequestBody;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};

#[derive(Debug)]
pub enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

impl Sender {
    pub fn is_ready(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_ready(),
            Sender::H2(s) => s.is_ready(),
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    /// Another handle on a shared HTTP/2 connection (`None` for HTTP/1.1, which cannot be shared).
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(Sender::H2(s.clone())),
        }
    }

    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    /// Sends `req`; if it could not be written at all, the error gives it back.
    pub async fn try_send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        match self {
            Sender::H1(s) => s.try_send_request(req).await,
            Sender::H2(s) => s.try_send_request(req).await,
        }
    }
}
