//! 3a. Rewrite the request for the upstream: `max_body` by Content-Length (413), the target in origin-form
//! (normalized path, route prefix stripped when asked, query kept), `Host` (from `:authority` for h2
//! clients), hop-by-hop headers removed (`Connection: upgrade` + `Upgrade` kept on an upgrade), forwarded
//! headers set, and the version the pool speaks (HTTP/1.1, or HTTP/2 with the host as `:authority`).

use crate::context::RequestCtx;
use crate::error::ProxyError;
use crate::headers::forwarded::{set_forwarded_headers, Forwarded};
use crate::headers::hop::{is_upgrade_request, remove_hop_by_hop};
use crate::snapshot::PoolRt;
use crate::upstream::body::RequestBody;
use http::{header, HeaderValue, Request, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

/// What the rewrite needs besides the request.
#[derive(Debug)]
pub struct Input<'a> {
    /// The normalized path, when it differs from the request's.
    pub path: Option<&'a str>,
    /// The route prefix to remove from the path, when the route says strip_prefix.
    pub strip: Option<&'a str>,
    pub max_body: Option<u64>,
    pub pool: &'a PoolRt,
    pub peer_trusted: bool,
}

/// The request as it goes upstream.
#[derive(Debug)]
pub struct Outgoing {
    pub req: Request<RequestBody>,
    /// For an upgrade request (HTTP/1.1 `Connection: upgrade`), the client side of the future tunnel.
    pub client_upgrade: Option<OnUpgrade>,
}

pub fn request(
    mut req: Request<Incoming>,
    input: &Input<'_>,
    ctx: &mut RequestCtx,
) -> Result<Outgoing, ProxyError> {
    if let Some(limit) = input.max_body {
        if content_length(&req).is_some_and(|n| n > limit) {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade_request(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

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
    parts.uri = upstream_target(&parts.uri, input.path, input.strip)?;
    remove_hop_by_hop(&mut parts.headers, upgrade);
    let peer = &ctx.conn().peer;
    let fwd = Forwarded {
        peer_value: &peer.ip_value,
        peer_trusted: input.peer_trusted,
        client_ip: ctx.client_ip,
        client_is_peer: ctx.client_ip == peer.addr.ip(),
        proto: peer.scheme.as_str(),
    };
    let pool = input.pool;
    if pool.connect.http2 && !upgrade {
        // An HTTP/2 upstream takes the host as :authority in an absolute target, not as a Host header.
        let scheme = if pool.connect.tls.is_some() {
            "https"
        } else {
            "http"
        };
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
    // Count the body only when there is one: a plain GET allocates no counter.
    let counted = (!body.is_end_stream()).then(|| ctx.bytes_in.counter());
    let req = Request::from_parts(parts, RequestBody::new(body, input.max_body, counted));
    Ok(Outgoing {
        req,
        client_upgrade,
    })
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
