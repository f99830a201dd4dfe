//! The layers around a route's action: tower `Layer`s and `Service`s, one per concern, configured by the
//! site's and the route's settings in the snapshot. A new per-route concern (header rules, rate limits,
//! compression) is a new layer added in [`stack`], not an edit of the forwarding phases.
//!
//! The stack is assembled per request from settings compiled into the snapshot: each layer is a few words
//! on the stack (references into the snapshot, the client's address), an absent setting is tower's
//! `option_layer` passing straight through, and nothing is boxed. A `BoxCloneService` stored per route would
//! cost a box per call; assembling costs nothing measurable (see docs/benchmarks.md).
//!
//! What is *not* a layer, and why: retries (they must know whether a byte of the body reached a server —
//! a generic retry layer would replay it), the upstream connection pool (a lease held by the response body
//! until its last byte, not a request/response pair), and the upgrade bridge (it outlives the response).
//! Those are plain phases in [`crate::phases`].

pub mod access;

use crate::body::ResponseBody;
use gatehouse_config::AccessRules;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::net::IpAddr;
use tower::{Service, ServiceBuilder};
use tower_http::set_header::SetResponseHeaderLayer;

/// What the layers of one request are configured with.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// The site's Strict-Transport-Security, when the request came over TLS.
    pub hsts: Option<&'a HeaderValue>,
    /// The route's allow/deny rules, if it has any.
    pub access: Option<&'a AccessRules>,
    /// The client's address, as access rules see it.
    pub client_ip: IpAddr,
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
    ServiceBuilder::new()
        // Site: HSTS on every HTTPS answer of the site, its own refusals included (nginx's `always`).
        .option_layer(settings.hsts.map(|v| {
            SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, v.clone())
        }))
        // Route: allow/deny before anything reaches the action.
        .option_layer(
            settings
                .access
                .map(|rules| access::AccessLayer::new(rules, settings.client_ip)),
        )
        .service(action)
}
