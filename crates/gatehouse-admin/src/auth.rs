//! Who may use the admin listener.
//!
//! With `admin_token` set, a request is let in with `Authorization: Bearer <token>` (scripts, Prometheus,
//! `gatehouse ctl`) compared in constant time, or with a session cookie a browser got by posting the token to
//! the login form once. The cookie is `HttpOnly` (page scripts cannot read it) and `SameSite=Strict` (other
//! sites cannot make the browser send it); it holds a random session id, never the token, and a session ends
//! when the token changes, after [`SESSION_TTL`], or on logout. The token never appears in a URL.

use crate::{text, Body};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "gatehouse_session";
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// No token is configured: the listener is open (bound to loopback, as the docs say).
    Open,
    Bearer,
    Session,
    Nobody,
}

#[derive(Debug)]
struct Session {
    expires: Instant,
    /// The token it was opened with: a new token ends it.
    token: String,
}

#[derive(Debug, Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    fn open(&self, token: &str) -> String {
        let id: [u8; 16] = rand::random();
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                expires: now + SESSION_TTL,
                token: token.to_string(),
            },
        );
        id
    }

    fn valid(&self, id: &str, token: &str) -> bool {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .is_some_and(|s| s.expires > Instant::now() && s.token == token)
    }

    fn close(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// Constant-time comparison (the length of the token is all a timing can tell).
pub fn token_matches(given: &[u8], token: &str) -> bool {
    given.ct_eq(token.as_bytes()).into()
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

pub fn identify(headers: &HeaderMap, token: Option<&str>, sessions: &Sessions) -> Who {
    let Some(token) = token else {
        return Who::Open;
    };
    if let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    {
        return if token_matches(given, token) {
            Who::Bearer
        } else {
            Who::Nobody
        };
    }
    match session_id(headers) {
        Some(id) if sessions.valid(id, token) => Who::Session,
        _ => Who::Nobody,
    }
}

pub fn unauthorized() -> Response<Body> {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "admin_token required: Authorization: Bearer <token>\n",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"gatehouse-admin\""),
    );
    r
}

/// `POST /login` with a form body `token=...`.
pub fn login(body: &[u8], token: Option<&str>, sessions: &Sessions) -> Response<Body> {
    let Some(token) = token else {
        return see_other("/", None);
    };
    let given = form_value(body, "token").unwrap_or_default();
    if !token_matches(given.as_bytes(), token) {
        tracing::warn!("admin: login with a wrong token");
        let mut r = login_page(true);
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let id = sessions.open(token);
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    see_other("/", Some(cookie))
}

pub fn logout(headers: &HeaderMap, sessions: &Sessions) -> Response<Body> {
    if let Some(id) = session_id(headers) {
        sessions.close(id);
    }
    see_other(
        "/",
        Some(format!(
            "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        )),
    )
}

fn see_other(to: &'static str, cookie: Option<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// The login form: one password field, posted to `/login`.
pub fn login_page(failed: bool) -> Response<Body> {
    let note = if failed {
        "<p class=err>That token is not the admin token.</p>"
    } else {
        ""
    };
    let html = format!(
        r#"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content="width=device-width">
<link rel="icon" href="data:,"><title>Gatehouse admin: log in</title>
<style>body{{font:15px system-ui,sans-serif;display:grid;place-items:center;height:90vh;margin:0;background:#f5f6f8}}
form{{background:#fff;padding:2em;border-radius:8px;box-shadow:0 1px 4px #0002}}input{{font:inherit;padding:.4em;margin:.5em 0;width:18em}}
.err{{color:#b00}}</style></head><body><form method=post action="/login"><h1>Gatehouse admin</h1>{note}
<label>Admin token<br><input type=password name=token autocomplete=current-password autofocus required></label><br>
<button type=submit>Log in</button></form></body></html>"#
    );
    let mut r = Response::new(Full::new(Bytes::from(html)));
    crate::dashboard::html_headers(r.headers_mut());
    r
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
pub fn form_value(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(&v.replace('+', " ")))
    })
}

/// `%XX` escapes decoded (invalid ones kept as written); bytes that are not UTF-8 replaced.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_cookie_and_nothing() {
        let s = Sessions::default();
        let mut h = HeaderMap::new();
        assert_eq!(identify(&h, None, &s), Who::Open);
        assert_eq!(identify(&h, Some("t0k"), &s), Who::Nobody);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0k"),
        );
        assert_eq!(identify(&h, Some("t0k"), &s), Who::Bearer);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t0"));
        assert_eq!(identify(&h, Some("t0k"), &s), Who::Nobody);
        let id = s.open("t0k");
        let mut c = HeaderMap::new();
        c.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={id}")).unwrap(),
        );
        assert_eq!(identify(&c, Some("t0k"), &s), Who::Session);
        assert_eq!(
            identify(&c, Some("new"), &s),
            Who::Nobody,
            "a new token ends old sessions"
        );
    }

    #[test]
    fn form_values_are_decoded() {
        assert_eq!(
            form_value(b"a=1&token=x%2By+z", "token").as_deref(),
            Some("x+y z")
        );
        assert_eq!(percent_decode("127.0.0.1%3A80"), "127.0.0.1:80");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
