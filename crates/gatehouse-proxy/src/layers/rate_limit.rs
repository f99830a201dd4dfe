//! `rate_limit`: a client beyond its bucket gets 429 with `Retry-After` and never reaches the action; one
//! within its burst on a rule without `nodelay` waits its turn first (only that path allocates: the wait).

use crate::body::ResponseBody;
use crate::error::ProxyError;
use crate::snapshot::policy::RateLimitRt;
use futures_util::future::{BoxFuture, Either, Ready};
use gatehouse_policy::rate_limit::Verdict;
use http::{Request, Response};
use std::net::IpAddr;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[derive(Debug, Clone, Copy)]
pub struct RateLimitLayer<'a> {
    rule: &'a RateLimitRt,
    client: IpAddr,
}

impl<'a> RateLimitLayer<'a> {
    pub fn new(rule: &'a RateLimitRt, client: IpAddr) -> Self {
        RateLimitLayer { rule, client }
    }
}

impl<'a, S> Layer<S> for RateLimitLayer<'a> {
    type Service = RateLimit<'a, S>;

    fn layer(&self, inner: S) -> RateLimit<'a, S> {
        RateLimit {
            inner,
            rule: self.rule,
            client: self.client,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimit<'a, S> {
    inner: S,
    rule: &'a RateLimitRt,
    client: IpAddr,
}

type Answer<E> = Ready<Result<Response<ResponseBody>, E>>;

impl<'a, S, B> Service<Request<B>> for RateLimit<'a, S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>> + Send + 'a,
    S::Future: Send + 'a,
    B: Send + 'a,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Either<
        S::Future,
        Either<Answer<S::Error>, BoxFuture<'a, Result<Self::Response, S::Error>>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.rule.limiter.check(self.client) {
            Verdict::Go => Either::Left(self.inner.call(req)),
            Verdict::Wait(d) => {
                let fut = self.inner.call(req);
                Either::Right(Either::Right(Box::pin(async move {
                    tokio::time::sleep(d).await;
                    fut.await
                })))
            }
            Verdict::Refuse { retry_after } => {
                self.rule.refused.inc();
                tracing::debug!(client = %self.client, "refused by rate_limit");
                Either::Right(Either::Left(futures_util::future::ready(Ok(
                    ProxyError::RateLimited { retry_after }.into_response(),
                ))))
            }
        }
    }
}
