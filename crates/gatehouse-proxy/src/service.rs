//! The request path, read top to bottom. [`handle`] owns logging and error mapping; [`route_request`] is the
//! happy path, one numbered step at a time.

use crate::body::ResponseBody;
use crate::error::{status_response, ProxyError};
use crate::forward::{self, Forward};
use crate::headers::forwarded::{client_ip, is_trusted};
use crate::listener::{ActiveRequest, ConnInfo};
use crate::snapshot::{ActionRt, Snapshot};
use gatehouse_route::{normalize_host, normalize_path};
use http::{header, HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Serves one request on the snapshot current at its start. Never fails: every error becomes a response.
pub async fn handle(
    snap: Arc<Snapshot>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let active = ActiveRequest::new(conn.clone());
    let method = req.method().clone();
    let mut hsts = None;
    let mut resp = match route_request(&snap, &conn, req, &mut hsts).await {
        Ok(resp) => resp,
        Err(err) => {
            let status = err.status();
            if status.is_server_error() {
                tracing::warn!(peer = %conn.peer, %method, status = status.as_u16(), error = %err, "request failed");
            } else {
                tracing::debug!(peer = %conn.peer, %method, status = status.as_u16(), error = %err, "request refused");
            }
            err.into_response()
        }
    };
    if let Some(hsts) = hsts {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    resp.body_mut().set_active(active);
    resp
}

/// The steps of a request, each with its failure exit (see docs/architecture.md).
async fn route_request(
    snap: &Snapshot,
    conn: &ConnInfo,
    req: Request<Incoming>,
    hsts: &mut Option<HeaderValue>,
) -> Result<Response<ResponseBody>, ProxyError> {
    // 1. Framing and Host: ambiguous framing → 400; the host from the request target (h2 :authority,
    //    absolute-form) or the Host header, case and port ignored.
    check_framing(&req, conn)?;
    // 0. ACME HTTP-01 challenges, on plain HTTP, before any route, redirect or access rule.
    if conn.proto == "http" {
        if let Some(token) = req
            .uri()
            .path()
            .strip_prefix("/.well-known/acme-challenge/")
        {
            if let Some(answer) = snap.http01.get(token) {
                let mut resp = Response::new(ResponseBody::full(answer.into()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                return Ok(resp);
            }
        }
    }
    let host = request_host(&req)?;
    // 2. Site by host (exact, wildcard, default) → 404 when none.
    let site = snap.sites.lookup(&host).ok_or(ProxyError::NoRoute)?;
    //    Over TLS: the Host must name the site the SNI named (else 421), and HSTS applies. In plain HTTP, a
    //    redirect_https site sends the client to https:// with path and query kept.
    if let Some(sni) = &conn.sni {
        let by_sni = snap.sites.lookup(sni);
        if !by_sni.is_some_and(|s| std::ptr::eq(s, site)) {
            return Err(ProxyError::Misdirected);
        }
    }
    if conn.proto == "https" {
        hsts.clone_from(&site.hsts);
    } else if site.redirect_https {
        if host.is_empty() {
            return Err(ProxyError::BadRequest("no Host to redirect to https"));
        }
        return Ok(https_redirect(&host, snap.https_port, &req));
    }
    // 3. Route by longest prefix of the normalized path (%XX of unreserved characters decoded, `//`, `.`, `..`
    //    resolved, as nginx does) → 404 when none. The backend gets the normalized path, so it and the access
    //    rules below agree on what was asked for.
    let path = normalize_path(req.uri().path());
    let (prefix, route) = site.paths.lookup(&path).ok_or(ProxyError::NoRoute)?;
    let normalized: Option<String> = match path {
        Cow::Owned(p) => Some(p),
        Cow::Borrowed(_) => None,
    };
    // 4. Client address, believing X-Forwarded-For only from trusted proxies; allow/deny → 403.
    let peer_ip = conn.peer.ip();
    let peer_trusted =
        !snap.trusted_proxies.is_empty() && is_trusted(&snap.trusted_proxies, peer_ip);
    let client = client_ip(&snap.trusted_proxies, peer_ip, peer_trusted, req.headers());
    if let Some(rules) = &route.access {
        if !rules.permits(client) {
            return Err(ProxyError::Forbidden);
        }
    }
    // 5. Act: answer here, or forward to the route's pool.
    match &route.action {
        ActionRt::Respond { body, status } => {
            let mut resp = Response::new(ResponseBody::full(body.clone()));
            *resp.status_mut() = *status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(resp)
        }
        ActionRt::Redirect { location, status } => {
            let mut resp = status_response(*status);
            resp.headers_mut()
                .insert(header::LOCATION, location.clone());
            Ok(resp)
        }
        ActionRt::Pool { pool, strip_prefix } => {
            let fwd = Forward {
                pool,
                path: normalized.as_deref(),
                strip: strip_prefix.then_some(prefix),
                max_body: route.max_body,
                conn,
                client_ip: client,
                peer_trusted,
            };
            forward::forward(fwd, req).await
        }
    }
}

/// 308 to the same host, path and query over HTTPS (on the first TLS listener's port when it is not 443).
fn https_redirect(
    host: &str,
    port: Option<u16>,
    req: &Request<Incoming>,
) -> Response<ResponseBody> {
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

/// Content-Length together with Transfer-Encoding is the classic request-smuggling shape: refuse it.
/// hyper removes Content-Length when both came (RFC 9112 §6.1), so the head scanner in client_io.rs tells us.
fn check_framing(req: &Request<Incoming>, conn: &ConnInfo) -> Result<(), ProxyError> {
    let h = req.headers();
    let flag = &conn.ambiguous_framing;
    let seen_by_scanner = flag.load(Relaxed) && flag.swap(false, Relaxed);
    if seen_by_scanner
        || (h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH))
    {
        return Err(ProxyError::BadRequest(
            "Content-Length with Transfer-Encoding",
        ));
    }
    Ok(())
}

/// The host a request is for, normalized. Two Host headers, or none on HTTP/1.1, is a bad request.
fn request_host(req: &Request<Incoming>) -> Result<Cow<'_, str>, ProxyError> {
    if let Some(auth) = req.uri().authority() {
        return Ok(normalize_host(auth.as_str()));
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => h
            .to_str()
            .map(normalize_host)
            .map_err(|_| ProxyError::BadRequest("Host is not valid text")),
        (Some(_), Some(_)) => Err(ProxyError::BadRequest("more than one Host header")),
        (None, _) if req.version() == Version::HTTP_11 => {
            Err(ProxyError::BadRequest("HTTP/1.1 request without Host"))
        }
        (None, _) => Ok(Cow::Borrowed("")),
    }
}
