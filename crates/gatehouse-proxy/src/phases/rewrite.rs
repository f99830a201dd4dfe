//! 3a. Rewrite the request for the upstream: `max_body` by Content-Length (413), the target in origin-form
//! (normalized path, route prefix stripped when asked, query kept), `Host` (from `:authority` for h2
//! clients), hop-by-hop headers removed (`Connection: upgrade` + `Upgrade` kept on an upgrade), forwarded
//! headers set, and the version the pool speaks (HTTP/1.1, or HTTP/2 with the host as `:authority`).

use crate::context::RequestCtx;
use crate::error::ProxyError;
use crate::headers::added::{Added, Field};
use crate::headers::forwarded::{replace_forwarded, set_forwarded_headers, Forwarded};
use crate::headers::hop::{allow_upgrade, is_upgrade_request, remove_hop_by_hop};
use crate::snapshot::PoolRt;
use crate::upstream::body::RequestBody;
use crate::upstream::request::UpRequest;
use gatehouse_policy::header_rules::{HeaderRuleSet, Vars};
use gatehouse_policy::rewrite::PathRewrite;
use gatehouse_route::strip_matched_prefix;
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
    /// The site passes encoded `/` and `\` through (and matched them as `/`).
    pub encoded_slashes: bool,
    pub max_body: Option<u64>,
    pub pool: &'a PoolRt,
    pub peer_trusted: bool,
    /// The host the request was routed by: sent as Host (or `:authority`), never the client's other one.
    pub authority: Option<&'a HeaderValue>,
    /// The Upgrade protocols the route tunnels.
    pub upgrades: &'a [Box<str>],
    /// How long the client may send nothing of its body.
    pub body_timeout: std::time::Duration,
    /// The route's `rewrite` of the path (after the prefix is stripped).
    pub rewrite: Option<&'a PathRewrite>,
    /// The route's `request_headers`, applied last (a `set` wins over the forwarded headers).
    pub request_headers: Option<&'a HeaderRuleSet>,
}

/// The request as it goes upstream.
#[derive(Debug)]
pub struct Outgoing {
    /// Boxed: the request goes down five nested futures (retries, attempt, send, the sender, the HTTP/1.1
    /// client), and each would hold its 320 bytes, twice where it is moved on (see docs/benchmarks.md).
    pub req: Box<UpRequest>,
    /// For an allowed upgrade request: the client side of the future tunnel, and the protocols offered.
    pub client_upgrade: Option<(OnUpgrade, http::HeaderMap)>,
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
    // An upgrade only to protocols the route allows; any other goes on as a plain request, its Upgrade removed.
    let upgrade = req.version() == Version::HTTP_11
        && is_upgrade_request(req.headers())
        && allow_upgrade(req.headers_mut(), input.upgrades);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    let (mut parts, body) = req.into_parts();
    let pool = input.pool;
    let peer = &ctx.conn().peer;
    // Straight to an HTTP/1.1 server, from a peer whose forwarding headers count for nothing, with no header
    // rules to read or change them: the fields the proxy adds go beside the map (headers::added), not in it.
    let beside =
        !input.peer_trusted && !upgrade && !pool.connect.http2 && input.request_headers.is_none();
    if !beside {
        // The forwarded headers, X-Request-Id and Host go in below: one growth of the map, not one per insert.
        parts.headers.reserve(6);
    }
    // The host routed by is the host sent (absolute-form and h2 carry it in the target, RFC 9112 §3.2.2).
    let host = input.authority.cloned();
    match &host {
        Some(h) => {
            parts.headers.insert(header::HOST, h.clone());
        }
        None => {
            parts.headers.remove(header::HOST);
        }
    }
    parts.uri = upstream_target(
        &parts.uri,
        input.path,
        input.strip,
        input.encoded_slashes,
        input.rewrite,
    )?;
    remove_hop_by_hop(&mut parts.headers, upgrade);
    let fwd = Forwarded {
        peer_value: &peer.ip_value,
        peer_trusted: input.peer_trusted,
        client_ip: ctx.client_ip,
        client_is_peer: ctx.client_ip == peer.addr.ip(),
        proto: peer.scheme.as_str(),
    };
    let h2_client = parts.version == Version::HTTP_2;
    if pool.connect.http2 && !upgrade {
        // An HTTP/2 upstream takes the host as :authority in an absolute target, not as a Host header.
        let scheme = if pool.connect.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let authority = host
            .as_ref()
            .and_then(|h| http::uri::Authority::try_from(h.as_bytes()).ok())
            .unwrap_or_else(|| http::uri::Authority::from_static("localhost"));
        let pq = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|_| ProxyError::BadRequest("request target"))?;
        parts.headers.remove(header::HOST);
        parts.version = Version::HTTP_2;
    } else {
        if h2_client {
            join_cookies(&mut parts.headers);
        }
        parts.version = Version::HTTP_11;
    }
    let mut added = Added::default();
    if beside {
        replace_forwarded(&mut parts.headers, &fwd, host, &mut added);
        added.set(Field::RequestId, ctx.request_id.clone());
    } else {
        set_forwarded_headers(&mut parts.headers, &fwd, host);
        parts
            .headers
            .insert(crate::headers::X_REQUEST_ID, ctx.request_id.clone());
    }
    if let Some(rules) = input.request_headers {
        let vars = Vars {
            client_ip: ctx.client_ip,
            host: input.authority.map(HeaderValue::as_bytes),
            request_id: &ctx.request_id,
            scheme: ctx.conn().peer.scheme.as_str(),
        };
        rules.apply(&mut parts.headers, &vars);
    }
    // Count the body only when there is one: a plain GET allocates no counter.
    let counted = (!body.is_end_stream()).then(|| ctx.bytes_in.progress());
    // What was offered, to check the 101 against (rare: only upgrade requests copy it).
    let client_upgrade = client_upgrade.map(|on| {
        let mut offered = http::HeaderMap::new();
        for v in parts.headers.get_all(header::UPGRADE) {
            offered.append(header::UPGRADE, v.clone());
        }
        (on, offered)
    });
    let req = Request::from_parts(
        parts,
        RequestBody::new(body, input.max_body, counted, input.body_timeout),
    );
    Ok(Outgoing {
        req: Box::new(UpRequest::new(req, added)),
        client_upgrade,
    })
}

/// The origin-form target for the upstream: the (normalized) path, minus the route prefix when asked (taken off
/// as it matched: across `;parameters` and, when the site allows them, encoded slashes), rewritten when the
/// route says so, and the query unchanged (after the rewrite's own, when it wrote one).
fn upstream_target(
    uri: &Uri,
    normalized: Option<&str>,
    strip: Option<&str>,
    encoded_slashes: bool,
    rewrite: Option<&PathRewrite>,
) -> Result<Uri, ProxyError> {
    if normalized.is_none() && strip.is_none() && rewrite.is_none() {
        if uri.scheme().is_none() && uri.authority().is_none() {
            return Ok(uri.clone());
        }
        return Ok(uri
            .path_and_query()
            .cloned()
            .map_or_else(|| Uri::from_static("/"), Uri::from));
    }
    let path = normalized.unwrap_or_else(|| uri.path());
    let rest = match strip {
        None => path,
        Some(prefix) => strip_matched_prefix(path, prefix, encoded_slashes).ok_or(
            ProxyError::BadRequest("path does not map onto the route prefix"),
        )?,
    };
    // The rewrite sees the path as the server would: with its leading slash.
    let slashed;
    let rest = if rest.starts_with('/') || rewrite.is_none() {
        rest
    } else {
        slashed = format!("/{rest}");
        &slashed
    };
    let rewritten = rewrite.and_then(|r| r.apply(rest));
    let (rest, own_query) = match &rewritten {
        Some(r) => (r.path.as_ref(), r.query.as_deref()),
        None => (rest, None),
    };
    let mut target = String::with_capacity(rest.len() + 2 + uri.query().map_or(0, |q| q.len() + 1));
    if !rest.starts_with('/') {
        target.push('/');
    }
    target.push_str(rest);
    let queries = [own_query, uri.query()];
    let mut sep = '?';
    for q in queries.into_iter().flatten().filter(|q| !q.is_empty()) {
        target.push(sep);
        target.push_str(q);
        sep = '&';
    }
    target
        .parse()
        .map_err(|_| ProxyError::BadRequest("request target"))
}

/// HTTP/2 sends each cookie as its own field; an HTTP/1 server expects one `Cookie` header, joined with
/// "; " (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
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
    fn h2_cookies_become_one_header() {
        let mut h = http::HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2"]);
    }

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
            ("/api;v=2/users?x", None, Some("/api/"), "/users?x"),
        ];
        for (input, normalized, strip, want) in cases {
            let uri: Uri = input.parse().unwrap();
            let got = upstream_target(&uri, normalized, strip, false, None)
                .unwrap()
                .to_string();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn rewrites_apply_after_the_strip_and_merge_queries() {
        let rw = |from: &str, to: &str| {
            PathRewrite::compile(&gatehouse_config::Rewrite {
                from: from.into(),
                to: to.into(),
            })
            .unwrap()
        };
        let old = rw("^/old/(.*)$", "/new/$1");
        let q = rw("^/u/([0-9]+)$", "/user?id=$1");
        let cases: [(&str, Option<&str>, &PathRewrite, &str); 6] = [
            ("/old/a?x=1", None, &old, "/new/a?x=1"),
            ("/other?x=1", None, &old, "/other?x=1"),
            ("/api/old/b", Some("/api/"), &old, "/new/b"),
            ("/api/u/7", Some("/api/"), &q, "/user?id=7"),
            ("/u/42", None, &q, "/user?id=42"),
            ("/u/42?x=1", None, &q, "/user?id=42&x=1"),
        ];
        for (input, strip, r, want) in cases {
            let uri: Uri = input.parse().unwrap();
            let got = upstream_target(&uri, None, strip, false, Some(r)).unwrap();
            assert_eq!(got.to_string(), want, "{input}");
        }
    }
}
