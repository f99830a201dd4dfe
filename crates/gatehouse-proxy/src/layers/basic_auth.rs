//! `basic_auth`: a request without a user's valid credentials gets 401 with `WWW-Authenticate`; one with
//! them goes on, its `Authorization` header removed unless the rule says `forward`. Verification runs off
//! the worker ([`gatehouse_policy::basic_auth`]).

use crate::body::ResponseBody;
use crate::error::ProxyError;
use futures_util::future::BoxFuture;
use gatehouse_policy::basic_auth::Users;
use http::{header, Request, Response};
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[derive(Debug, Clone, Copy)]
pub struct BasicAuthLayer<'a> {
    users: &'a Users,
}

impl<'a> BasicAuthLayer<'a> {
    pub fn new(users: &'a Users) -> Self {
        BasicAuthLayer { users }
    }
}

impl<'a, S> Layer<S> for BasicAuthLayer<'a> {
    type Service = BasicAuth<'a, S>;

    fn layer(&self, inner: S) -> BasicAuth<'a, S> {
        BasicAuth {
            inner: Some(inner),
            users: self.users,
        }
    }
}

/// Serves one request: the check is asynchronous, so the inner service moves into the check's future
/// (the action is a one-shot service that is not `Clone`).
#[derive(Debug)]
pub struct BasicAuth<'a, S> {
    inner: Option<S>,
    users: &'a Users,
}

impl<'a, S, B> Service<Request<B>> for BasicAuth<'a, S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>> + Send + 'a,
    S::Future: Send + 'a,
    B: Send + 'a,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = BoxFuture<'a, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        match &mut self.inner {
            Some(inner) => inner.poll_ready(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let users = self.users;
        let inner = self.inner.take();
        Box::pin(async move {
            let Some(mut inner) = inner else {
                return Ok(ProxyError::BadRequest("request served twice").into_response());
            };
            if !users.check(req.headers().get(header::AUTHORIZATION)).await {
                tracing::debug!(path = req.uri().path(), "refused by basic_auth");
                return Ok(ProxyError::Unauthorized(users.challenge().clone()).into_response());
            }
            if !users.forward() {
                req.headers_mut().remove(header::AUTHORIZATION);
            }
            inner.call(req).await
        })
    }
}
