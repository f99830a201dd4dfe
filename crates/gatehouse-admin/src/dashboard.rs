//! The dashboard: one self-contained page (`dashboard.html`, built into the binary) that polls `/status`
//! every two seconds and draws pools, servers, a heat map of requests per server, certificates and the last
//! reload. Nothing is fetched from anywhere else: the Content-Security-Policy below forbids it.

use crate::Body;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};
use http_body_util::Full;

const PAGE: &str = include_str!("dashboard.html");

pub fn page() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
    html_headers(r.headers_mut());
    r
}

/// Headers for the admin's HTML pages: no caching, no framing, no outside resources.
pub fn html_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}
