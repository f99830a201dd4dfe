//! 3b. Choose a server and send, with retries.
//!
//! Retries follow one rule: a request is sent again only if nothing the server could act on twice reached it.
//! A failed connect moves on to the next server the balancer offers (up to `retries` more, within
//! `retry_timeout`); a pooled connection that turns out to be closed hands the request back untouched
//! (`Sender::try_send`) and the next idle one, or a new connection, to the *same* server is used — that
//! is not an attempt. Once a request was written, a failure is final, except for an idempotent request without
//! a body (GET, HEAD, …) whose connection broke before any response byte (a server killed mid-request): it
//! goes to the next server (an HTTP/1.1 connection hands the request back; for HTTP/2, whose client consumes
//! it, its head is copied first). A body is never replayed. This is why retries are a phase
//! and not a tower retry layer: only here is it known whether the body was consumed.
//!
//! Every try of a server is an [`Attempt`] in the request's context, with its outcome.
//!
//! Whose fault a failure is decides whether it counts against the server (`max_fails`): a connect error, a
//! connection reset before the response, a response that does not come within `response_timeout` *once the
//! request body is complete*, and a status listed in `fail_on_status` are the server's; a body that stops coming from the client (408 after `body_timeout`), a client that goes away or
//! sends a malformed body (400), a body over `max_body` (413) are the client's. A slow upload is never a
//! slow server: the response clock starts when the body has been sent.

use crate::context::BodyProgress;
use crate::context::{Attempt, Outcome, RequestCtx};
use crate::error::ProxyError;
use crate::headers::added::Added;
use crate::snapshot::PoolRt;
use crate::upstream::body::{BodyStalled, BoxError, ClientBodyError, RequestBody, TooLarge};
use crate::upstream::connect::{connect, resume};
use crate::upstream::request::UpRequest;
use crate::upstream::response::ServerBody;
use crate::upstream::sender::{SendFailure, Sender};
use crate::upstream::Upstream;
use gatehouse_balance::{ip_hash::key_for_ip, now_ms, InFlight, Tried};
use http::{Request, Response};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A response head from a server, and what it holds.
#[derive(Debug)]
pub struct Sent<'p> {
    pub resp: Response<ServerBody>,
    pub sender: Sender,
    /// Counted from the pick, while waiting for the head too (least_conn sees slow servers); released when
    /// the response body ends (or, for an upgrade, when the tunnel closes).
    pub in_flight: InFlight,
    pub upstream: &'p Upstream,
}

pub async fn with_retries<'p>(
    pool: &'p PoolRt,
    mut req: Box<UpRequest>,
    upgrade: bool,
    body_timeout: Duration,
    ctx: &mut RequestCtx,
) -> Result<Sent<'p>, ProxyError> {
    let key = if pool.wants_key() {
        key_for_ip(ctx.client_ip)
    } else {
        0
    };
    let mut tried = Tried::default();
    let mut last_error: Option<ProxyError> = None;
    // Idempotent and bodiless: it may be sent again if the connection breaks before any response byte (a
    // server killed mid-request), when another server could take it. HTTP/1.1 hands such a request back;
    // HTTP/2's client consumes it, so for an HTTP/2 pool its head is copied now.
    let replayable = pool.retries > 0 && pool.upstreams.len() > 1 && Replay::applies(&req, upgrade);
    let replay = (replayable && pool.connect.http2).then(|| Replay::of(&req));
    let first_try = Instant::now();
    loop {
        if let (Some(limit), false) = (pool.retry_timeout, tried.is_empty()) {
            if first_try.elapsed() >= limit {
                return Err(give_up(pool, last_error));
            }
        }
        let Some(member) = pool.selector.select(key, &mut tried, now_ms()) else {
            return Err(give_up(pool, last_error));
        };
        let up = &pool.upstreams[member.id];
        ctx.attempts.push(Attempt {
            server: member.id as u32,
            addr: up.addr,
            outcome: Outcome::Pending,
            ejected: false,
        });
        ctx.times.upstream_start.get_or_insert_with(Instant::now);
        let in_flight = up.state.acquire();
        match attempt(pool, up, req, upgrade, body_timeout, ctx).await {
            Try::Sent(resp, sender) => {
                if pool.fail_on_status.contains(&resp.status().as_u16()) {
                    if up
                        .state
                        .record_failure(now_ms(), pool.max_fails, pool.fail_timeout_ms)
                    {
                        ctx.attempts.ejected_last();
                    }
                } else {
                    up.state.record_success();
                }
                ctx.attempts.finish_last(Outcome::Responded);
                ctx.times.upstream_head = Some(Instant::now());
                return Ok(Sent {
                    resp,
                    sender,
                    in_flight,
                    upstream: up,
                });
            }
            Try::NotSent(back, err) => {
                ctx.attempts.finish_last(Outcome::ConnectFailed);
                let took_out =
                    up.state
                        .record_failure(now_ms(), pool.max_fails, pool.fail_timeout_ms);
                if took_out {
                    ctx.attempts.ejected_last();
                }
                up.metrics.set_last_error(err.to_string());
                tracing::warn!(pool = %pool.name, server = %up.addr, error = %err, taken_out = took_out, "server unreachable, trying another");
                req = back;
                last_error = Some(err);
                if tried.len() > pool.retries as usize {
                    return Err(give_up(pool, last_error));
                }
            }
            Try::Failed(err, back) => {
                // Broken before any response byte, and safe to send again: the next server. The request is
                // the one handed back (HTTP/1.1) or a copy of its head (HTTP/2).
                let again = match back {
                    Some(back) if replayable => Some(back),
                    _ => replay
                        .as_ref()
                        .filter(|_| matches!(err, ProxyError::Upstream { .. }))
                        .map(|r| Box::new(r.request(body_timeout))),
                };
                if let Some(again) = again {
                    ctx.attempts.finish_last(Outcome::Failed);
                    if up
                        .state
                        .record_failure(now_ms(), pool.max_fails, pool.fail_timeout_ms)
                    {
                        ctx.attempts.ejected_last();
                    }
                    up.metrics.set_last_error(err.to_string());
                    tracing::warn!(pool = %pool.name, server = %up.addr, error = %err, "connection broke before the response; sending the request to another server");
                    last_error = Some(err);
                    if tried.len() > pool.retries as usize {
                        return Err(give_up(pool, last_error));
                    }
                    req = again;
                    continue;
                }
                // The server's doing: no answer in time, or the connection broke (a reset) before a response.
                let servers_fault = matches!(
                    err,
                    ProxyError::Timeout { .. } | ProxyError::Upstream { .. }
                );
                ctx.attempts.finish_last(match err {
                    ProxyError::Timeout { .. } => Outcome::TimedOut,
                    ProxyError::ClientBody(_)
                    | ProxyError::ClientGone(_)
                    | ProxyError::BodyTimeout
                    | ProxyError::BodyTooLarge => Outcome::ClientFailed,
                    _ => Outcome::Failed,
                });
                if servers_fault
                    && up
                        .state
                        .record_failure(now_ms(), pool.max_fails, pool.fail_timeout_ms)
                {
                    ctx.attempts.ejected_last();
                }
                if err.kind().is_upstream() {
                    up.metrics.set_last_error(err.to_string());
                }
                return Err(err);
            }
        }
    }
}

/// The error a request ends with when no try is left: the last try's, or "no server" when none was made.
fn give_up(pool: &PoolRt, last_error: Option<ProxyError>) -> ProxyError {
    last_error.unwrap_or_else(|| ProxyError::NoServer(pool.name.clone()))
}

/// The head of a request that can be sent again: idempotent method (RFC 9110 §9.2.2), no body, no upgrade.
struct Replay {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
    added: Added,
}

impl Replay {
    /// Whether `req` may be sent again after its connection broke before any response byte.
    fn applies(req: &UpRequest, upgrade: bool) -> bool {
        use http_body::Body as _;
        crate::upstream::h1::is_idempotent(req.method()) && !upgrade && req.body().is_end_stream()
    }

    fn of(req: &UpRequest) -> Replay {
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            added: req.added().clone(),
        }
    }

    fn request(&self, body_timeout: Duration) -> UpRequest {
        let mut r = Request::new(RequestBody::empty(body_timeout));
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers.clone();
        UpRequest::new(r, self.added.clone())
    }
}

enum Try {
    /// The server answered with a response head.
    Sent(Response<ServerBody>, Sender),
    /// Nothing reached the server: the request is handed back for another.
    NotSent(Box<UpRequest>, ProxyError),
    /// The request was written and then failed: final, unless the connection broke before any response
    /// byte, the request had no body, and it came back (HTTP/1.1): then an idempotent one may go again.
    Failed(ProxyError, Option<Box<UpRequest>>),
}

/// One server: idle pooled connections first (skipping ones found closed), then a new connection.
async fn attempt(
    pool: &PoolRt,
    up: &Upstream,
    mut req: Box<UpRequest>,
    upgrade: bool,
    body_timeout: Duration,
    ctx: &mut RequestCtx,
) -> Try {
    let body = Body {
        progress: ctx.bytes_in.current(),
        timeout: body_timeout,
    };
    if !upgrade {
        while let Some(sender) = up.conns.checkout(pool.idle_timeout) {
            ctx.times.upstream_connected = Some(Instant::now());
            match send(pool, up, sender, req, &body).await {
                Try::NotSent(back, _) => req = back,
                done => return done,
            }
        }
        // Parked connections next: the open socket is taken up again (no I/O).
        while let Some(io) = up.conns.unpark(pool.idle_timeout) {
            let sender = resume(io);
            ctx.times.upstream_connected = Some(Instant::now());
            match send(pool, up, sender, req, &body).await {
                Try::NotSent(back, _) => req = back,
                done => return done,
            }
        }
    }
    // Boxed: the connect future (TCP, TLS, the HTTP handshake) is the largest part of a request's state, and
    // it runs only when no pooled connection serves. Kept inline, every request's future — which hyper and the
    // layers move by value — would carry its size: 9.9 KiB inline, 4.2 KiB boxed (docs/benchmarks.md).
    match Box::pin(connect(&pool.connect, up, upgrade)).await {
        Ok(sender) => {
            ctx.times.upstream_connected = Some(Instant::now());
            up.conns.share_h2(&sender);
            send(pool, up, sender, req, &body).await
        }
        Err(e) => Try::NotSent(
            req,
            ProxyError::Connect {
                addr: up.addr,
                reason: e.to_string(),
            },
        ),
    }
}

/// The request body being sent, if there is one.
struct Body {
    progress: Option<Arc<BodyProgress>>,
    timeout: Duration,
}

impl Body {
    /// The body's progress while it is still coming from the client (the response clock waits for its end).
    fn still_coming(&self) -> Option<&BodyProgress> {
        self.progress.as_deref().filter(|p| !p.is_complete())
    }
}

/// Sends `req` and waits for the response head: first, while the body is still coming from the client, for
/// as long as it keeps coming (an early answer from the server is taken too); then `response_timeout`.
async fn send(
    pool: &PoolRt,
    up: &Upstream,
    mut sender: Sender,
    req: Box<UpRequest>,
    body: &Body,
) -> Try {
    // A body still coming keeps the response clock stopped: it starts when the body is complete. One
    // future per arm, the smaller first: the request's future holds the larger of the two.
    let result = if sender.runs_own_clock() && body.still_coming().is_none() {
        // The common case: HTTP/1.1 runs the clock itself (one timer for the connection's life).
        Ok(sender.try_send(req, Some(pool.response_timeout)).await)
    } else {
        let exchange = sender.try_send(req, None);
        tokio::pin!(exchange);
        match wait_for_body(&mut exchange, body, up).await {
            Some(done) => done,
            None => match tokio::time::timeout(pool.response_timeout, exchange).await {
                Err(_) => Err(ProxyError::Timeout { addr: up.addr }),
                Ok(r) => Ok(r),
            },
        }
    };
    match result {
        Err(failed) => Try::Failed(failed, None),
        Ok(Err(SendFailure::TimedOut)) => Try::Failed(ProxyError::Timeout { addr: up.addr }, None),
        Ok(Ok(resp)) => Try::Sent(resp, sender),
        Ok(Err(SendFailure::NotSent(back, source))) => Try::NotSent(
            back,
            ProxyError::Upstream {
                addr: up.addr,
                source,
            },
        ),
        Ok(Err(SendFailure::Failed(e, back))) => match blame(up, e) {
            // Only the server's breaking is replayed, never a failure of the client's.
            err @ ProxyError::Upstream { .. } => Try::Failed(err, back),
            err => Try::Failed(err, None),
        },
    }
}

type Exchanged = Result<Response<ServerBody>, SendFailure>;

/// While the request body is still coming: `None` once it is complete (the response clock starts), or the
/// exchange's end if the server answered first, or the failure if the body stopped moving for body_timeout.
async fn wait_for_body<F>(
    exchange: &mut std::pin::Pin<&mut F>,
    body: &Body,
    up: &Upstream,
) -> Option<Result<Exchanged, ProxyError>>
where
    F: std::future::Future<Output = Exchanged>,
{
    let progress = body.still_coming()?;
    let mut seen = progress.bytes();
    loop {
        tokio::select! {
            biased;
            r = exchange.as_mut() => return Some(Ok(r)),
            () = progress.completed() => return None,
            () = tokio::time::sleep(body.timeout) => {
                let now = progress.bytes();
                if now == seen {
                    // Nothing moved for body_timeout: the client stopped sending, or the server stopped reading.
                    return Some(Err(if progress.is_waiting_on_client() {
                        ProxyError::BodyTimeout
                    } else {
                        ProxyError::Timeout { addr: up.addr }
                    }));
                }
                seen = now;
            }
        }
    }
}

/// Whose fault a failed exchange was: a body cut by max_body or a client body that broke are the client's;
/// the rest is the server's.
fn blame(up: &Upstream, source: BoxError) -> ProxyError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*source);
    while let Some(e) = cause {
        if e.is::<TooLarge>() {
            return ProxyError::BodyTooLarge;
        }
        if e.is::<BodyStalled>() {
            return ProxyError::BodyTimeout;
        }
        if let Some(ClientBodyError(client)) = e.downcast_ref::<ClientBodyError>() {
            return if client_went_away(client) {
                ProxyError::ClientGone(source)
            } else {
                ProxyError::ClientBody(source)
            };
        }
        cause = e.source();
    }
    ProxyError::Upstream {
        addr: up.addr,
        source,
    }
}

/// Whether reading the client's body failed because the client closed its connection (rather than because
/// the body was malformed).
fn client_went_away(err: &hyper::Error) -> bool {
    use std::io::ErrorKind::*;
    if err.is_incomplete_message() || err.is_closed() {
        return true;
    }
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
            );
        }
        cause = e.source();
    }
    false
}
