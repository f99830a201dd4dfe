//! 1. Route: from a request head to its site and route, or to an early answer.
//!
//! 1.1 framing: Content-Length with Transfer-Encoding, Transfer-Encoding other than one final `chunked`
//!     → 400 (a coding before it → 501), a target over max_request_target → 414; each closes;
//! 1.2 ACME: on plain HTTP, `/.well-known/acme-challenge/TOKEN` is answered before anything else;
//! 1.3 host: `:authority` / absolute-form target, else the one `Host` header; only `host[:port]` is valid
//!     (400 otherwise); matched with case and port ignored, and sent upstream as the request's Host;
//! 1.4 site: by host (exact, wildcard, default) → 404; over TLS the Host must name the SNI's site → 421;
//!     a `redirect_https` site on plain HTTP → 308 to https://;
//! 1.5 route: an encoded `/` or `\\` → 400 unless the site allows them; the longest prefix of the
//!     normalized path, matched as backends read it (`;params` dropped, allowed `%2F` decoded) (none: the
//!     site's layers still run, the action is 404);
//! 1.6 client: the peer's address, or the one a trusted proxy's X-Forwarded-For vouches for.

use crate::body::ResponseBody;
use crate::conn::Scheme;
use crate::context::RequestCtx;
use crate::error::{status_response, ProxyError};
use crate::headers::forwarded::{client_ip, is_trusted};
use crate::snapshot::{RouteRt, SiteRt, Snapshot};
use gatehouse_route::{
    has_encoded_separator, has_malformed_escape, is_valid_host, match_form, normalize_host,
    normalize_path,
};
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use std::borrow::Cow;
use std::time::Duration;

/// How long an HTTP-01 answer may be looked for in shared storage before the request gets 404.
pub const CHALLENGE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

pub enum Step<'s> {
    Routed(Routed<'s>),
    /// Answered already (an ACME challenge, an https redirect).
    Answer(Response<ResponseBody>),
}

/// A request's place in the snapshot.
#[derive(Debug)]
pub struct Routed<'s> {
    pub site: &'s SiteRt,
    /// The site's HSTS, when the request came over TLS.
    pub hsts: Option<&'s HeaderValue>,
    pub found: Option<RouteMatch<'s>>,
    /// The peer is a trusted proxy (its forwarded headers are believed).
    pub peer_trusted: bool,
    /// The host the request was routed by, as the client wrote it (with its port): what the upstream gets as
    /// Host (or `:authority`). `None` only for an HTTP/1.0 request without a Host.
    pub authority: Option<HeaderValue>,
    /// How long a request body may send nothing.
    pub body_timeout: std::time::Duration,
}

#[derive(Debug)]
pub struct RouteMatch<'s> {
    pub route: &'s RouteRt,
    /// The route's path prefix.
    pub prefix: &'s str,
    /// The normalized path, when it differs from the request's.
    pub path: Option<String>,
}

pub async fn route<'s, B>(
    snap: &'s Snapshot,
    ctx: &mut RequestCtx,
    req: &Request<B>,
) -> Result<Step<'s>, ProxyError> {
    let conn = ctx.conn().clone();
    let peer = &conn.peer;
    // 1.1 Framing.
    check_framing(req, ctx)?;
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > snap.max_request_target {
        return Err(ProxyError::UriTooLong);
    }
    // 1.2 ACME HTTP-01 challenges, on plain HTTP, before any route, redirect or access rule.
    if peer.scheme == Scheme::Http {
        if let Some(answer) = challenge(snap, req).await {
            return Ok(Step::Answer(answer));
        }
    }
    // 1.3 Host.
    let (host, authority) = request_host(req)?;
    if let Some(head) = &mut ctx.head {
        head.host = authority.clone();
    }
    // 1.4 Site.
    let site = snap.sites.lookup(&host).ok_or(ProxyError::NoRoute)?;
    ctx.site = Some(site.id);
    if let Some(sni) = peer.sni() {
        let by_sni = snap.sites.lookup(sni);
        if !by_sni.is_some_and(|s| std::ptr::eq(s, site)) {
            return Err(ProxyError::Misdirected);
        }
    }
    let hsts = match peer.scheme {
        Scheme::Https => site.hsts.as_ref(),
        Scheme::Http if site.redirect_https => {
            // Only to a host the site names itself: a Host that reached it as the default site gets the
            // site's own first name, never an open redirect.
            let named = !host.is_empty() && snap.sites.lookup_named(&host).is_some();
            let target = match (named, site.canonical_host.as_deref()) {
                (true, _) => &*host,
                (false, Some(canonical)) => canonical,
                (false, None) => return Err(ProxyError::NoRoute),
            };
            return Ok(Step::Answer(https_redirect(target, snap.https_port, req)));
        }
        Scheme::Http => None,
    };
    // 1.5 Route by longest prefix of the normalized path (%XX of unreserved characters decoded, `//`, `.`,
    //     `..` resolved, as nginx does). The backend gets the normalized path, so it and the access rules agree
    //     on what was asked for.
    if has_malformed_escape(req.uri().path()) {
        return Err(ProxyError::BadRequest(
            "a % in the path that is not an escape",
        ));
    }
    if !site.allow_encoded_slashes && has_encoded_separator(req.uri().path()) {
        return Err(ProxyError::BadRequest("encoded / or \\ in the path"));
    }
    let path = normalize_path(req.uri().path());
    let found = site
        .paths
        .lookup(&match_form(&path, site.allow_encoded_slashes));
    // 1.6 Client address, believing X-Forwarded-For only from trusted proxies.
    let peer_ip = peer.addr.ip();
    let peer_trusted =
        !snap.trusted_proxies.is_empty() && is_trusted(&snap.trusted_proxies, peer_ip);
    let client = client_ip(&snap.trusted_proxies, peer_ip, peer_trusted, req.headers());

    ctx.route = found.map(|(i, _, _)| i as u32);
    ctx.client_ip = client;
    let found = found.map(|(_, prefix, route)| RouteMatch {
        route,
        prefix,
        path: match path {
            Cow::Owned(p) => Some(p),
            Cow::Borrowed(_) => None,
        },
    });
    Ok(Step::Routed(Routed {
        site,
        hsts,
        found,
        peer_trusted,
        authority,
        body_timeout: snap.body_timeout,
    }))
}

/// The answer to an ACME HTTP-01 challenge, from this node's tokens or (bounded in time) shared storage.
async fn challenge<B>(snap: &Snapshot, req: &Request<B>) -> Option<Response<ResponseBody>> {
    let token = req
        .uri()
        .path()
        .strip_prefix("/.well-known/acme-challenge/")?;
    let answer = tokio::time::timeout(CHALLENGE_LOOKUP_TIMEOUT, snap.http01.get(token))
        .await
        .ok()
        .flatten()?;
    let mut resp = Response::new(ResponseBody::full(answer.into()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Some(resp)
}

/// 308 to the same host, path and query over HTTPS (on the first TLS listener's port when it is not 443).
fn https_redirect<B>(host: &str, port: Option<u16>, req: &Request<B>) -> Response<ResponseBody> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let location = match port {
        Some(443) | None => format!("https://{host}{pq}"),
        Some(p) => format!("https://{host}:{p}{pq}"),
    };
    let mut resp = status_response(StatusCode::PERMANENT_REDIRECT);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Framing no backend should have to interpret. Content-Length together with Transfer-Encoding is the
/// classic request-smuggling shape: hyper removes Content-Length when both came (RFC 9112 §6.1), so the head
/// scanner (conn/framing.rs) tells us, for pipelined heads too. Transfer-Encoding must be exactly one
/// `chunked`: listed twice, or not last, a backend may read another length than we did.
fn check_framing<B>(req: &Request<B>, ctx: &RequestCtx) -> Result<(), ProxyError> {
    let h = req.headers();
    // One lookup of Transfer-Encoding serves both checks (a lookup hashes the name).
    let te = h.get_all(header::TRANSFER_ENCODING);
    if ctx.conn().framing.is_ambiguous(ctx.index())
        || (te.iter().next().is_some() && h.contains_key(header::CONTENT_LENGTH))
    {
        return Err(ProxyError::BadRequest(
            "Content-Length with Transfer-Encoding",
        ));
    }
    let mut codings = te
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty());
    let Some(first) = codings.next() else {
        return Ok(());
    };
    let rest: Vec<&[u8]> = codings.collect();
    let last = rest.last().copied().unwrap_or(first);
    let chunked = |t: &[u8]| t.eq_ignore_ascii_case(b"chunked");
    let chunked_count = std::iter::once(first)
        .chain(rest.iter().copied())
        .filter(|t| chunked(t))
        .count();
    if !chunked(last) || chunked_count > 1 {
        return Err(ProxyError::BadRequest(
            "Transfer-Encoding must end in one chunked",
        ));
    }
    if !rest.is_empty() {
        return Err(ProxyError::UnsupportedCoding);
    }
    Ok(())
}

/// The host a request is for, normalized for matching, and as written for the upstream. The URI's authority
/// (h2 `:authority`, HTTP/1.1 absolute-form) wins over the Host header (RFC 9112 §3.2.2). Two Host headers,
/// none on HTTP/1.1, or one that is not `host[:port]` (a path, userinfo, spaces) is a bad request.
fn request_host<B>(req: &Request<B>) -> Result<(Cow<'_, str>, Option<HeaderValue>), ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    if let Some(auth) = req.uri().authority() {
        let a = auth.as_str();
        if !is_valid_host(a) {
            return Err(ProxyError::BadRequest(
                "the request target's authority is not host[:port]",
            ));
        }
        let value = HeaderValue::from_str(a).map_err(|_| {
            ProxyError::BadRequest("the request target's authority is not host[:port]")
        })?;
        // A Host header beside it must be valid too: some backends read it anyway.
        if let Some(h) = first {
            if !h.to_str().is_ok_and(is_valid_host) {
                return Err(ProxyError::BadRequest("Host is not host[:port]"));
            }
        }
        return Ok((normalize_host(a), Some(value)));
    }
    match first {
        Some(h) => {
            let text = h
                .to_str()
                .map_err(|_| ProxyError::BadRequest("Host is not valid text"))?;
            if !is_valid_host(text) {
                return Err(ProxyError::BadRequest("Host is not host[:port]"));
            }
            Ok((normalize_host(text), Some(h.clone())))
        }
        None if req.version() == Version::HTTP_11 => {
            Err(ProxyError::BadRequest("HTTP/1.1 request without Host"))
        }
        None => Ok((Cow::Borrowed(""), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{ActiveRequest, Conn, Peer, Tracker};
    use crate::snapshot::{compile, NoObserver, Registries};
    use std::sync::Arc;

    const CONFIG: &str = r#"
[server]
trusted_proxies = ["10.0.0.0/8"]
[[listener]]
name = "http"
bind = "127.0.0.1:1"
[[site]]
hosts = ["example.com", "*.example.org"]
default = true
  [[site.route]]
  path = "/"
  respond = "root"
  [[site.route]]
  path = "/api/"
  respond = "api"
[[site]]
hosts = ["other.test"]
  [[site.route]]
  path = "/only/"
  respond = "x"
"#;

    fn snapshot() -> Snapshot {
        let config = gatehouse_config::parse(CONFIG, "t.toml").unwrap();
        let reg = Registries::new(1, Arc::new(NoObserver)).unwrap();
        compile(Arc::new(config), &reg).unwrap()
    }

    fn ctx(peer: &str) -> RequestCtx {
        let tracker = Arc::new(Tracker::default());
        let peer = Peer::new(
            peer.parse().unwrap(),
            "http".into(),
            None,
            std::time::Instant::now(),
        );
        let active = ActiveRequest::new(Arc::new(Conn::new(peer, tracker.open())));
        RequestCtx::new(active, http::Method::GET, Version::HTTP_11)
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    /// (site name, route prefix, normalized path) of a routed request, or its error.
    async fn routed(
        snap: &Snapshot,
        ctx: &mut RequestCtx,
        r: &Request<()>,
    ) -> Result<(String, Option<String>, Option<String>), ProxyError> {
        match route(snap, ctx, r).await? {
            Step::Routed(r) => Ok((
                r.site.name.to_string(),
                r.found.as_ref().map(|m| m.prefix.to_string()),
                r.found.and_then(|m| m.path),
            )),
            Step::Answer(_) => panic!("answered"),
        }
    }

    #[tokio::test]
    async fn host_site_and_route_are_found_and_recorded() {
        let snap = snapshot();
        let mut c = ctx("192.0.2.1:5000");
        let got = routed(
            &snap,
            &mut c,
            &req("/api/%75sers", &[("host", "Example.COM:8080")]),
        )
        .await;
        assert_eq!(
            got.unwrap(),
            (
                "example.com".into(),
                Some("/api/".into()),
                Some("/api/users".into())
            )
        );
        assert_eq!((c.site, c.route.is_some()), (Some(0), true));
        let (prefix, _) = snap.route(0, c.route.unwrap()).unwrap();
        assert_eq!(prefix, "/api/");

        let mut c = ctx("192.0.2.1:5000");
        let got = routed(
            &snap,
            &mut c,
            &req("http://other.test/nothing", &[("host", "example.com")]),
        )
        .await;
        assert_eq!(
            got.unwrap(),
            ("other.test".into(), None, None),
            "absolute-form names the site"
        );
        assert_eq!(c.route, None);
    }

    #[tokio::test]
    async fn bad_heads_are_refused() {
        let snap = snapshot();
        let two_hosts = req("/", &[("host", "a"), ("host", "b")]);
        assert!(matches!(
            routed(&snap, &mut ctx("192.0.2.1:1"), &two_hosts).await,
            Err(ProxyError::BadRequest(_))
        ));
        let no_host = req("/", &[]);
        assert!(matches!(
            routed(&snap, &mut ctx("192.0.2.1:1"), &no_host).await,
            Err(ProxyError::BadRequest(_))
        ));
        let both = req(
            "/",
            &[
                ("host", "example.com"),
                ("content-length", "1"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert!(matches!(
            routed(&snap, &mut ctx("192.0.2.1:1"), &both).await,
            Err(ProxyError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn the_client_is_believed_only_from_trusted_proxies() {
        let snap = snapshot();
        let xff = [("host", "example.com"), ("x-forwarded-for", "203.0.113.9")];
        let mut c = ctx("10.1.1.1:1");
        routed(&snap, &mut c, &req("/", &xff)).await.unwrap();
        assert_eq!(c.client_ip.to_string(), "203.0.113.9");
        let mut c = ctx("192.0.2.7:1");
        routed(&snap, &mut c, &req("/", &xff)).await.unwrap();
        assert_eq!(c.client_ip.to_string(), "192.0.2.7");
    }
}
