//! The request path, one phase per step, read top to bottom. The numbers are the ones in
//! `docs/architecture.md` ("A request's life") and in the comments below.
//!
//! 1. [`route`]: framing, ACME challenges, host, site, path, client address — or an early answer.
//! 2. [`crate::layers`]: the site's and the route's layers (HSTS, access rules) around step 3.
//! 3. The route's action: a fixed answer, a redirect, or forwarding to its pool:
//!    * 3a. [`rewrite`] the request for the upstream;
//!    * 3b. [`send`]: choose a server and send, retrying another when nothing reached the first;
//!    * 3c. [`respond`]: rewrite the response for the client.
//! 4. Deliver: the request's context goes to the response body, which reports the request's end after its
//!    last byte ([`crate::body::ClientBody`]); a 101 goes to the [`tunnel`] instead.
//!
//! [`handle`] owns the context and the error mapping; each phase is a function that reads its inputs, fills
//! in the context, and returns the next step's input or a [`ProxyError`] — which [`fail`] turns into an
//! answer (the status table is in [`crate::error`]).

pub mod respond;
pub mod rewrite;
pub mod route;
pub mod send;
pub mod tunnel;

use crate::body::{ClientBody, ResponseBody};
use crate::conn::ActiveRequest;
use crate::context::{HeadFields, RequestCtx, RequestId};
use crate::error::{status_response, ProxyError};
use crate::exchange::Exchange;
use crate::headers::X_REQUEST_ID;
use crate::layers;
use crate::snapshot::{ActionRt, PoolRt, Snapshot};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use route::{RouteMatch, Routed, Step};
use std::convert::Infallible;
use std::sync::Arc;
use tower::ServiceExt;

/// Serves one request on the snapshot current at its start. Never fails: every error becomes an answer.
///
/// The context is set up here, before the future exists, and the future holds only the exchange, the request
/// and step 1-3's future: an `async fn` would also keep its arguments and the context it moved into the
/// exchange, and hyper moves this future by value (2.8 KiB as an `async fn`; docs/benchmarks.md).
pub fn handle(
    snap: Arc<Snapshot>,
    active: ActiveRequest,
    req: Request<Incoming>,
) -> impl std::future::Future<Output = Response<ClientBody>> + Send {
    let mut ctx = RequestCtx::new(active, req.method().clone(), req.version());
    // The request id: the client's when it sent a valid one (a front proxy's, a tracing header), else ours;
    // it goes upstream, back to the client, and into the log.
    if let Some(v) = req
        .headers()
        .get(X_REQUEST_ID)
        .filter(|v| RequestId::is_valid_incoming(v))
    {
        ctx.request_id = RequestId::for_header(v.clone());
    }
    if snap.access_log {
        let h = req.headers();
        ctx.head = Some(Box::new(HeadFields {
            uri: req.uri().clone(),
            host: None,
            user_agent: h.get(header::USER_AGENT).cloned(),
            referer: h.get(header::REFERER).cloned(),
        }));
    }
    snap.unrouted.request_started();
    let mut x = Exchange::new(snap, ctx);
    async move {
        let resp = serve(&mut x, req).await;
        deliver(x, resp)
    }
}

/// Steps 1 to 3.
async fn serve(x: &mut Exchange, req: Request<Incoming>) -> Response<ResponseBody> {
    let (snap, ctx) = x.parts_mut();
    // 1. Route.
    let routed = match route::route(snap, ctx, &req).await {
        Ok(Step::Routed(r)) => r,
        Ok(Step::Answer(resp)) => return resp,
        Err(e) => return fail(ctx, e),
    };
    // 2. The layers, around 3. the action. The action takes the context from its slot when it runs (a layer
    //    may answer first, e.g. 403, and then it never does).
    let policy = routed.found.as_ref().map(|m| &m.route.policy);
    let settings = layers::Settings {
        hsts: routed.hsts,
        access: routed.found.as_ref().and_then(|m| m.route.access.as_ref()),
        client_ip: ctx.client_ip,
        policy,
        response_headers: policy
            .and_then(|p| p.response_headers.as_ref())
            .map(|rules| layers::headers::ResponseRules {
                rules,
                client_ip: ctx.client_ip,
                host: routed.authority.clone(),
                request_id: ctx.request_id.clone(),
                scheme: ctx.conn().peer.scheme.as_str(),
            }),
    };
    let mut slot = Some(ctx);
    // The action's future (the forward phases, some 5 KiB) is boxed: each layer wraps the future it gets
    // in its own, and every wrap, and every await above, would otherwise copy all of it (memmove was 6% of
    // the proxy's CPU on h1 keep-alive). Boxed, they move a pointer.
    let action = tower::service_fn(|req: Request<Incoming>| {
        let ctx = slot.take();
        let routed = &routed;
        Box::pin(async move {
            Ok::<_, Infallible>(match ctx {
                Some(ctx) => act(routed, ctx, req).await,
                None => ProxyError::BadRequest("request served twice").into_response(),
            })
        })
    });
    match layers::stack(settings, action).oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// 3. The route's action.
async fn act(
    routed: &Routed<'_>,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let Some(found) = &routed.found else {
        return fail(ctx, ProxyError::NoRoute);
    };
    match &found.route.action {
        ActionRt::Respond { body, status } => {
            let mut resp = Response::new(ResponseBody::full(body.clone()));
            *resp.status_mut() = *status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        ActionRt::Redirect { location, status } => {
            let mut resp = status_response(*status);
            resp.headers_mut()
                .insert(header::LOCATION, location.clone());
            resp
        }
        ActionRt::Pool { pool, strip_prefix } => {
            match forward(pool, found, *strip_prefix, routed, ctx, req).await {
                Ok(resp) => resp,
                Err(e) => fail(ctx, e),
            }
        }
    }
}

/// 3a–3c: forwarding to the route's pool.
async fn forward(
    pool: &PoolRt,
    found: &RouteMatch<'_>,
    strip_prefix: bool,
    routed: &Routed<'_>,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ProxyError> {
    ctx.pool = Some(pool.id);
    // The codec the client takes, among the route's (read before the request goes upstream).
    let compress = found.route.policy.compress.as_ref().map(|c| {
        let codec = (ctx.method != Method::HEAD)
            .then(|| gatehouse_policy::encoding::choose(req.headers(), &c.rule.codecs))
            .flatten();
        (c, codec)
    });
    // 3a. Rewrite the request for the upstream.
    let input = rewrite::Input {
        path: found.path.as_deref(),
        strip: strip_prefix.then_some(found.prefix),
        encoded_slashes: routed.site.allow_encoded_slashes,
        max_body: found.route.max_body,
        pool,
        peer_trusted: routed.peer_trusted,
        authority: routed.authority.as_ref(),
        upgrades: &found.route.upgrades,
        body_timeout: routed.body_timeout,
        rewrite: found.route.policy.rewrite.as_ref(),
        request_headers: found.route.policy.request_headers.as_ref(),
    };
    let out = rewrite::request(req, &input, ctx)?;
    // 3b. Choose a server and send, with retries.
    let sent = send::with_retries(
        pool,
        out.req,
        out.client_upgrade.is_some(),
        routed.body_timeout,
        ctx,
    )
    .await?;
    // 3c. Rewrite the response.
    respond::response(
        pool,
        sent,
        out.client_upgrade,
        found.route.tunnel_idle_timeout,
        compress,
        ctx,
    )
}

/// A failure becomes its answer: logged once (5xx at warn, 4xx at debug) and recorded in the context.
fn fail(ctx: &mut RequestCtx, err: ProxyError) -> Response<ResponseBody> {
    let status = err.status();
    let (peer, method, id) = (ctx.conn().peer.addr, &ctx.method, ctx.id);
    if status.is_server_error() {
        tracing::warn!(%peer, %method, request_id = %id, status = status.as_u16(), error = %err, "request failed");
    } else {
        tracing::debug!(%peer, %method, request_id = %id, status = status.as_u16(), error = %err, "request refused");
    }
    ctx.error = Some(err.kind());
    err.into_response()
}

/// 4. Deliver: the context goes with the response body, or with the tunnel of an upgrade.
fn deliver(mut x: Exchange, resp: Response<ResponseBody>) -> Response<ClientBody> {
    let ctx = x.ctx_mut();
    ctx.status = Some(resp.status());
    let mut resp = resp;
    resp.headers_mut()
        .insert(X_REQUEST_ID, ctx.request_id.clone());
    if ctx.error.is_none() {
        ctx.error = resp.body().error_kind();
    }
    let bodiless = ctx.method == Method::HEAD || parts_bodiless(resp.status());
    let (parts, body) = resp.into_parts();
    let upgrade = ctx.upgrade.take();
    match upgrade {
        Some(pending) if parts.status == StatusCode::SWITCHING_PROTOCOLS => {
            // The connection carries tunnel bytes from now on, not HTTP: the head scanner stops.
            x.ctx().conn().framing.tunnel();
            tunnel::spawn(pending, x);
            Response::from_parts(parts, ClientBody::new(body, None, true))
        }
        _ => Response::from_parts(parts, ClientBody::new(body, Some(x), bodiless)),
    }
}

/// Statuses whose answers carry no body (RFC 9110 §6.4.1).
fn parts_bodiless(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}
