//! The layers around a route's action: tower `Layer`s and `Service`s, one per concern, configured by the
//! site's and the route's settings in the snapshot. A new per-route concern (header rules, rate limits,
//! compression) is a new layer added in [`stack`], not an edit of the forwarding phases.
//!
//! The stack is assembled per request from settings compiled into the snapshot: each layer is a few words
//! on the stack (references into the snapshot, the client's address), an absent setting is tower's
//! `option_layer` passing straight through, and nothing is boxed. A `BoxCloneService` stored per route would
//! cost a box per call; assembling costs nothing measurable (see docs/benchmarks.md).
//!
//! Outermost first: HSTS (site), response header rules, allow/deny, rate limit, basic auth, the action.
//! Request header rules and the path rewrite are part of the request's rewrite for the upstream (phase 3a:
//! they must see the forwarded headers and the final path), and compression part of the response's (3c).
//!
//! What is *not* a layer, and why: retries (they must know whether a byte of the body reached a server —
//! a generic retry layer would replay it), the upstream connection pool (a lease held by the response body
//! until its last byte, not a request/response pair), and the upgrade bridge (it outlives the response).
//! Those are plain phases in [`crate::phases`].

pub mod access;
pub mod basic_auth;
pub mod headers;
pub mod rate_limit;

use crate::body::ResponseBody;
use crate::snapshot::policy::RoutePolicy;
use gatehouse_config::AccessRules;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::IpAddr;
use tower::util::MapResponseLayer;
use tower::{Service, ServiceBuilder};
use tower_http::set_header::SetResponseHeaderLayer;

/// What the layers of one request are configured with.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// The site's Strict-Transport-Security, when the request came over TLS.
    pub hsts: Option<&'a HeaderValue>,
    /// The route's allow/deny rules, if it has any.
    pub access: Option<&'a AccessRules>,
    /// The client's address, as access rules and rate limits see it.
    pub client_ip: IpAddr,
    /// The route's traffic policy (`None`: no route matched).
    pub policy: Option<&'a RoutePolicy>,
    /// The route's response header rules with this request's values.
    pub response_headers: Option<headers::ResponseRules<'a>>,
}

/// The site's layers, then the route's, around `action` (outermost first).
pub fn stack<'a, S>(
    settings: Settings<'a>,
    action: S,
) -> impl Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future: Send,
> + Send
       + 'a
where
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Send
        + 'a,
    S::Future: Send,
{
    let policy = settings.policy;
    ServiceBuilder::new()
        // Site: HSTS on every HTTPS answer of the site, its own refusals included (nginx's `always`).
        .option_layer(settings.hsts.map(|v| {
            SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, v.clone())
        }))
        // Route: response header rules, on every answer below (refusals included).
        .option_layer(
            settings
                .response_headers
                .map(|r| MapResponseLayer::new(move |resp| r.apply(resp))),
        )
        // Route: allow/deny before anything reaches the action ...
        .option_layer(
            settings
                .access
                .map(|rules| access::AccessLayer::new(rules, settings.client_ip)),
        )
        // ... then the rate limit (a refused client costs no bucket) ...
        .option_layer(
            policy
                .and_then(|p| p.rate_limit.as_ref())
                .map(|r| rate_limit::RateLimitLayer::new(r, settings.client_ip)),
        )
        // ... then basic auth (so that guessing passwords is rate limited too).
        .option_layer(
            policy
                .and_then(|p| p.basic_auth.as_ref())
                .map(basic_auth::BasicAuthLayer::new),
        )
        .service(action)
}
