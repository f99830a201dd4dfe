//! Every way a request can fail, and the one table that turns each into a status code.

use crate::body::ResponseBody;
use crate::context::ErrorKind;
use http::{header, HeaderValue, Response, StatusCode};
use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No site matches the host and there is no default site, or no route matches the path.
    #[error("no site or route matches")]
    NoRoute,
    /// Over TLS, the Host names another site than the one the client's SNI asked for (domain fronting).
    #[error("Host names another site than the TLS server name")]
    Misdirected,
    /// An allow/deny rule refused the client.
    #[error("refused by access rules")]
    Forbidden,
    /// The client is beyond its rate_limit; a token is back after this long.
    #[error("rate limited")]
    RateLimited { retry_after: std::time::Duration },
    /// basic_auth wants (other) credentials; the value is the `WWW-Authenticate` challenge.
    #[error("no valid credentials for basic_auth")]
    Unauthorized(HeaderValue),
    /// The request body is larger than the route's max_body.
    #[error("request body larger than max_body")]
    BodyTooLarge,
    /// The request itself is malformed or ambiguous.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The client's body could not be read to its end while it was forwarded (the client went away, or sent
    /// a malformed body): the client's fault, never counted against the server.
    #[error("the client's request body failed: {0}")]
    ClientBody(crate::upstream::body::BoxError),
    /// The request target is longer than max_request_target.
    #[error("request target longer than max_request_target")]
    UriTooLong,
    /// A transfer coding Gatehouse does not forward (only `chunked` is).
    #[error("transfer coding not supported: only chunked is")]
    UnsupportedCoding,
    /// The client sent nothing of its request body for body_timeout.
    #[error("the client sent nothing of its request body for body_timeout")]
    BodyTimeout,
    /// The client closed its connection before its request body was complete.
    #[error("the client went away before its request body was complete: {0}")]
    ClientGone(crate::upstream::body::BoxError),
    /// Every server of the pool is down, or was already tried for this request.
    #[error("no server available in pool {0:?}")]
    NoServer(std::sync::Arc<str>),
    /// The last server tried could not be reached (connect refused or timed out).
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The server sent no valid response (closed early, malformed head) after the request was sent.
    #[error("bad response from {addr}: {source}")]
    Upstream {
        addr: SocketAddr,
        source: crate::upstream::body::BoxError,
    },
    /// The server answered something a proxy must not pass on (a 101 to a protocol nobody asked for).
    #[error("bad response from {addr}: {what}")]
    BadUpstream {
        addr: SocketAddr,
        what: &'static str,
    },
    /// The server did not send a response head within response_timeout.
    #[error("{addr} sent no response within the response timeout")]
    Timeout { addr: SocketAddr },
}

impl ProxyError {
    /// The bounded kind, for the request's context and metrics.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::NoRoute => ErrorKind::NoRoute,
            ProxyError::Misdirected => ErrorKind::Misdirected,
            ProxyError::Forbidden => ErrorKind::Forbidden,
            ProxyError::RateLimited { .. } => ErrorKind::RateLimited,
            ProxyError::Unauthorized(_) => ErrorKind::Unauthorized,
            ProxyError::BodyTooLarge => ErrorKind::BodyTooLarge,
            ProxyError::BadRequest(_) => ErrorKind::BadRequest,
            ProxyError::ClientBody(_) => ErrorKind::ClientBody,
            ProxyError::ClientGone(_) => ErrorKind::ClientGone,
            ProxyError::BodyTimeout => ErrorKind::BodyTimeout,
            ProxyError::UriTooLong => ErrorKind::UriTooLong,
            ProxyError::UnsupportedCoding => ErrorKind::UnsupportedCoding,
            ProxyError::NoServer(_) => ErrorKind::NoServer,
            ProxyError::Connect { .. } => ErrorKind::Connect,
            ProxyError::Upstream { .. } | ProxyError::BadUpstream { .. } => ErrorKind::Upstream,
            ProxyError::Timeout { .. } => ErrorKind::Timeout,
        }
    }

    /// The status code for this failure. The only place where errors become statuses.
    pub fn status(&self) -> StatusCode {
        match self.kind() {
            ErrorKind::NoRoute => StatusCode::NOT_FOUND,
            ErrorKind::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BadRequest | ErrorKind::ClientBody | ErrorKind::ClientGone => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::UriTooLong => StatusCode::URI_TOO_LONG,
            ErrorKind::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::NoServer => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Connect | ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let (kind, status) = (self.kind(), self.status());
        let mut resp = plain(
            status,
            ResponseBody::error(kind, status_text(status).into()),
        );
        if matches!(
            kind,
            ErrorKind::BadRequest
                | ErrorKind::ClientBody
                | ErrorKind::ClientGone
                | ErrorKind::BodyTimeout
                | ErrorKind::UriTooLong
                | ErrorKind::UnsupportedCoding
        ) {
            // After a malformed or ambiguous request the byte stream cannot be trusted: close it.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match &self {
            ProxyError::RateLimited { retry_after } => {
                let secs = gatehouse_policy::rate_limit::retry_after_secs(*retry_after);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ProxyError::Unauthorized(challenge) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge.clone());
            }
            _ => {}
        }
        if kind == ErrorKind::NoServer {
            // Every server is out (health, drained, or all tried): a client or a CDN may come back shortly, as
            // health checks bring servers back within seconds.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {}\n", status.as_u16(), reason),
        None => format!("{}\n", status.as_u16()),
    }
}

/// A small plain-text answer such as `308 Permanent Redirect`.
pub fn status_response(status: StatusCode) -> Response<ResponseBody> {
    plain(status, ResponseBody::full(status_text(status).into()))
}

fn plain(status: StatusCode, body: ResponseBody) -> Response<ResponseBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
