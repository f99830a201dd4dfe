//! allow/deny CIDR rules: a client they refuse gets 403 and never reaches the route's action.

use crate::body::ResponseBody;
use crate::error::ProxyError;
use futures_util::future::{Either, Ready};
use gatehouse_config::AccessRules;
use http::{Request, Response};
use std::net::IpAddr;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[derive(Debug, Clone, Copy)]
pub struct AccessLayer<'a> {
    rules: &'a AccessRules,
    client: IpAddr,
}

impl<'a> AccessLayer<'a> {
    pub fn new(rules: &'a AccessRules, client: IpAddr) -> Self {
        AccessLayer { rules, client }
    }
}

impl<'a, S> Layer<S> for AccessLayer<'a> {
    type Service = Access<'a, S>;

    fn layer(&self, inner: S) -> Access<'a, S> {
        Access {
            inner,
            rules: self.rules,
            client: self.client,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Access<'a, S> {
    inner: S,
    rules: &'a AccessRules,
    client: IpAddr,
}

impl<S, B> Service<Request<B>> for Access<'_, S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>>,
{
    type Response = Response<ResponseBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<ResponseBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.rules.permits(self.client) {
            Either::Left(self.inner.call(req))
        } else {
            tracing::debug!(client = %self.client, path = req.uri().path(), "refused by access rules");
            Either::Right(futures_util::future::ready(Ok(
                ProxyError::Forbidden.into_response()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn rules(allow: &str) -> AccessRules {
        AccessRules {
            route_allow: vec![allow.parse().unwrap()],
            ..AccessRules::default()
        }
    }

    async fn status(rules: &AccessRules, client: &str) -> u16 {
        let inner = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(ResponseBody::empty()))
        });
        let svc = AccessLayer::new(rules, client.parse().unwrap()).layer(inner);
        let resp = svc.oneshot(Request::new(())).await.unwrap();
        resp.status().as_u16()
    }

    #[tokio::test]
    async fn refused_clients_never_reach_the_action() {
        let r = rules("10.0.0.0/8");
        assert_eq!(status(&r, "10.1.2.3").await, 200);
        assert_eq!(status(&r, "192.168.1.1").await, 403);
        assert_eq!(status(&r, "::ffff:10.0.0.1").await, 200, "v4-mapped is v4");
    }
}
