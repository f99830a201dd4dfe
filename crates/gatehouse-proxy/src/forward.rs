//! Forwarding a request to its pool: rewrite, pick a server, send, stream the answer back.
//!
//! Retries follow one rule: a request is sent again only if no byte of it reached a server. A failed connect
//! moves on to the next server the balancer offers (up to `retries` more); a pooled connection that turns out
//! to be closed hands the request back untouched (hyper's `try_send_request`) and we use another. Once a
//! request was written, a failure is final: a body is never replayed.

use crate::body::{RequestBody, ResponseBody, UpstreamHold};
use crate::error::ProxyError;
use crate::headers::forwarded::{set_forwarded_headers, Forwarded};
use crate::headers::hop::{is_upgrade_request, remove_hop_by_hop};
use crate::listener::ConnInfo;
use crate::snapshot::PoolRt;
use crate::upgrade;
use crate::upstream::connect::connect;
use crate::upstream::pool::Lease;
use crate::upstream::sender::Sender;
use crate::upstream::Upstream;
use gatehouse_balance::{ip_hash::key_for_ip, now_ms, Tried};
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use std::net::IpAddr;

/// What [`forward`] needs besides the request.
#[derive(Debug)]
pub struct Forward<'a> {
    pub pool: &'a PoolRt,
    /// The normalized path, when it differs from the request's.
    pub path: Option<&'a str>,
    /// The route prefix to remove from the path, when the route says strip_prefix.
    pub strip: Option<&'a str>,
    pub max_body: Option<u64>,
    pub conn: &'a ConnInfo,
    pub client_ip: IpAddr,
    pub peer_trusted: bool,
}

pub async fn forward(
    f: Forward<'_>,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let pool = f.pool;
    if let Some(limit) = f.max_body {
        if content_length(&req).is_some_and(|n| n > limit) {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade_request(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    // Rewrite the request for an HTTP/1.1 upstream: origin-form target, Host, hop-by-hop, forwarded headers.
    let (mut parts, body) = req.into_parts();
    let host = match parts.headers.get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => {
            // h2 carries the host in :authority; an HTTP/1.1 upstream needs it as Host.
            let from_authority = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
            if let Some(h) = &from_authority {
                parts.headers.insert(header::HOST, h.clone());
            }
            from_authority
        }
    };
    parts.uri = upstream_target(&parts.uri, f.path, f.strip)?;
    remove_hop_by_hop(&mut parts.headers, upgrade);
    let fwd = Forwarded {
        peer_value: &f.conn.peer_value,
        peer_trusted: f.peer_trusted,
        client_ip: f.client_ip,
        client_is_peer: f.client_ip == f.conn.peer.ip(),
        proto: f.conn.proto,
    };
    if pool.http2 && !upgrade {
        // An HTTP/2 upstream takes the host as :authority in an absolute target, not as a Host header.
        let scheme = if pool.tls.is_some() { "https" } else { "http" };
        let authority = host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("{scheme}://{authority}{pq}")
            .parse()
            .map_err(|_| ProxyError::BadRequest("request target"))?;
        parts.headers.remove(header::HOST);
        parts.version = Version::HTTP_2;
    } else {
        parts.version = Version::HTTP_11;
    }
    set_forwarded_headers(&mut parts.headers, &fwd, host);
    let mut req = Request::from_parts(parts, RequestBody::new(body, f.max_body));

    // Pick, connect, send; on a failed connect try the next server.
    let key = if pool.wants_key() {
        key_for_ip(f.client_ip)
    } else {
        0
    };
    let mut tried = Tried::default();
    let mut last_error: Option<ProxyError> = None;
    loop {
        let Some(member) = pool.selector.select(key, &mut tried, now_ms()) else {
            return Err(last_error.unwrap_or_else(|| ProxyError::NoServer(pool.name.clone())));
        };
        let up = &pool.upstreams[member.id];
        // Counted from now, while waiting for the head too, so least_conn sees slow servers; released when
        // the response body ends (or, for an upgrade, when the tunnel closes).
        let in_flight = up.state.acquire();
        match attempt(pool, up, req, upgrade).await {
            Attempt::Sent(resp, sender) => {
                up.state.record_success();
                return Ok(respond(
                    pool,
                    up,
                    resp,
                    sender,
                    in_flight,
                    client_upgrade,
                    f.conn,
                ));
            }
            Attempt::NotSent(back, err) => {
                let took_out =
                    up.state
                        .record_failure(now_ms(), pool.max_fails, pool.fail_timeout_ms);
                tracing::warn!(pool = %pool.name, server = %up.addr, error = %err, taken_out = took_out, "server unreachable, trying another");
                req = back;
                last_error = Some(err);
                if tried.len() > pool.retries as usize {
                    return Err(
                        last_error.unwrap_or_else(|| ProxyError::NoServer(pool.name.clone()))
                    );
                }
            }
            Attempt::Failed(err) => {
                if matches!(err, ProxyError::Timeout { .. }) {
                    up.state
                        .record_failure(now_ms(), pool.max_fails, pool.fail_timeout_ms);
                }
                return Err(err);
            }
        }
    }
}

enum Attempt {
    /// The server answered with a response head.
    Sent(Response<Incoming>, Sender),
    /// Nothing reached the server: the request is handed back for another.
    NotSent(Request<RequestBody>, ProxyError),
    /// The request was written and then failed: final.
    Failed(ProxyError),
}

/// One server: idle pooled connections first (skipping ones found closed), then a new connection.
async fn attempt(
    pool: &PoolRt,
    up: &Upstream,
    mut req: Request<RequestBody>,
    upgrade: bool,
) -> Attempt {
    if !upgrade {
        while let Some(sender) = up.conns.checkout(pool.idle_timeout) {
            match send(pool, up, sender, req).await {
                Attempt::NotSent(back, _) => req = back,
                done => return done,
            }
        }
    }
    match connect(pool, up, upgrade).await {
        Ok(sender) => {
            up.conns.share_h2(&sender);
            send(pool, up, sender, req).await
        }
        Err(e) => Attempt::NotSent(
            req,
            ProxyError::Connect {
                addr: up.addr,
                reason: e.to_string(),
            },
        ),
    }
}

async fn send(
    pool: &PoolRt,
    up: &Upstream,
    mut sender: Sender,
    req: Request<RequestBody>,
) -> Attempt {
    match tokio::time::timeout(pool.response_timeout, sender.try_send(req)).await {
        Err(_) => Attempt::Failed(ProxyError::Timeout { addr: up.addr }),
        Ok(Ok(resp)) => Attempt::Sent(resp, sender),
        Ok(Err(mut e)) => match e.take_message() {
            Some(back) => Attempt::NotSent(
                back,
                ProxyError::Upstream {
                    addr: up.addr,
                    source: e.into_error(),
                },
            ),
            None => {
                let source = e.into_error();
                if is_body_too_large(&source) {
                    return Attempt::Failed(ProxyError::BodyTooLarge);
                }
                Attempt::Failed(ProxyError::Upstream {
                    addr: up.addr,
                    source,
                })
            }
        },
    }
}

/// Turns the upstream response into the client's: hop-by-hop removed, body streamed, connection returned to the
/// pool when the body ends. A 101 answer to an upgrade request hands both connections to [`upgrade::bridge`].
fn respond(
    pool: &PoolRt,
    up: &Upstream,
    mut resp: Response<Incoming>,
    sender: Sender,
    in_flight: gatehouse_balance::InFlight,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    conn: &ConnInfo,
) -> Response<ResponseBody> {
    // A connection opened for an upgrade request is never pooled, whatever the answer.
    let upgrade_conn = client_upgrade.is_some();
    if let Some(client_upgrade) = client_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            upgrade::bridge(
                client_upgrade,
                upstream_upgrade,
                in_flight,
                conn.tracker.open(),
            );
            let (mut parts, _) = resp.into_parts();
            remove_hop_by_hop(&mut parts.headers, true);
            return Response::from_parts(parts, ResponseBody::empty());
        }
    }
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers, false);
    let lease = (!upgrade_conn).then(|| Lease {
        sender,
        pool: up.conns.clone(),
        max_idle: pool.max_idle,
    });
    Response::from_parts(
        parts,
        ResponseBody::upstream(body, UpstreamHold { in_flight, lease }),
    )
}

/// The origin-form target for the upstream: the (normalized) path, minus the route prefix when asked, and the
/// query unchanged.
fn upstream_target(
    uri: &Uri,
    normalized: Option<&str>,
    strip: Option<&str>,
) -> Result<Uri, ProxyError> {
    if normalized.is_none() && strip.is_none() {
        if uri.scheme().is_none() && uri.authority().is_none() {
            return Ok(uri.clone());
        }
        return Ok(uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from));
    }
    let path = normalized.unwrap_or_else(|| uri.path());
    let rest = strip.map_or(path, |prefix| path.strip_prefix(prefix).unwrap_or(path));
    let mut target = String::with_capacity(rest.len() + 1 + uri.query().map_or(0, |q| q.len() + 1));
    if !rest.starts_with('/') {
        target.push('/');
    }
    target.push_str(rest);
    if let Some(q) = uri.query() {
        target.push('?');
        target.push_str(q);
    }
    target
        .parse()
        .map_err(|_| ProxyError::BadRequest("request target"))
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn is_body_too_large(err: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<crate::body::TooLarge>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_origin_form_and_stripped() {
        let cases = [
            ("/api/users?x=1", None, Some("/api/"), "/users?x=1"),
            ("/api/", None, Some("/api/"), "/"),
            ("/api", None, Some("/api"), "/"),
            ("/keep/this", None, None, "/keep/this"),
            ("http://example.com/abs?q", None, None, "/abs?q"),
            ("http://example.com/api/x", None, Some("/api"), "/x"),
            (
                "//api/%75sers?q=%2F",
                Some("/api/users"),
                Some("/api/"),
                "/users?q=%2F",
            ),
            ("/a/../b?x", Some("/b"), None, "/b?x"),
        ];
        for (input, normalized, strip, want) in cases {
            let uri: Uri = input.parse().unwrap();
            let got = upstream_target(&uri, normalized, strip)
                .unwrap()
                .to_string();
            assert_eq!(got, want, "{input}");
        }
    }
}
