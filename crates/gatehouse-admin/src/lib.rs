//! The admin listener: what an operator reads and does on a running Gatehouse.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the dashboard ([`dashboard`]), or a login form when a token is set and the browser has no session |
//! | `POST /login`, `POST /logout` | trade the token for an HttpOnly session cookie ([`auth`]) |
//! | `GET /status` | JSON: config, listeners, pools and servers, certificates ([`status`]) |
//! | `GET /metrics` | Prometheus / OpenMetrics text ([`metrics`]) |
//! | `POST /pools/<pool>/servers/<addr>/drain` (`disable`, `enable`, `weight`) | [`actions`] |
//!
//! It binds only where `[server] admin` says (nowhere by default; keep it on loopback). With `admin_token`
//! set, every route but the login form needs `Authorization: Bearer <token>` or a session cookie; the token
//! is read from the running config on each request, so a reload rotates it. Actions are POST only. The
//! listener runs on the control runtime, beside reloads and signals, never on a worker.

pub mod actions;
pub mod auth;
pub mod client;
pub mod dashboard;
pub mod metrics;
pub mod status;

use bytes::Bytes;
use gatehouse_acme::AcmeStats;
use gatehouse_proxy::Proxy;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The ACME manager's counters and states, once it runs (it may start on a later reload).
pub type AcmeSlot = Arc<Mutex<Option<Arc<AcmeStats>>>>;

/// What the admin routes read and act on.
#[derive(Debug)]
pub struct Admin {
    pub proxy: Arc<Proxy>,
    /// The config file, as given on the command line.
    pub config_file: PathBuf,
    pub acme: AcmeSlot,
    sessions: auth::Sessions,
}

pub type Body = Full<Bytes>;

/// Largest request body the admin routes read (a login form, a weight).
const MAX_BODY: usize = 4096;

impl Admin {
    pub fn new(proxy: Arc<Proxy>, config_file: PathBuf, acme: AcmeSlot) -> Arc<Admin> {
        Arc::new(Admin {
            proxy,
            config_file,
            acme,
            sessions: auth::Sessions::default(),
        })
    }

    fn acme_stats(&self) -> Option<Arc<AcmeStats>> {
        self.acme.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.handle(req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(Duration::from_secs(300), conn).await;
            });
        }
    }

    /// One request: authentication, then the route.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let token = self.proxy.snapshot().config.server.admin_token.clone();
        let who = auth::identify(&parts.headers, token.as_deref(), &self.sessions);
        // The login form is the one route open without credentials.
        if path == "/login" {
            return match parts.method {
                Method::POST => match read_body(body).await {
                    Ok(b) => auth::login(&b, token.as_deref(), &self.sessions),
                    Err(resp) => resp,
                },
                Method::GET => auth::login_page(false),
                _ => method_not_allowed("GET, POST"),
            };
        }
        if who == auth::Who::Nobody {
            // A browser asking for the dashboard gets the login form (as a 401); everything else a bare 401.
            if path == "/" && parts.method == Method::GET {
                let mut page = auth::login_page(false);
                *page.status_mut() = StatusCode::UNAUTHORIZED;
                return page;
            }
            return auth::unauthorized();
        }
        match (&parts.method, path.as_str()) {
            (&Method::GET, "/") => dashboard::page(),
            (&Method::POST, "/logout") => auth::logout(&parts.headers, &self.sessions),
            (&Method::GET, "/status") => json(StatusCode::OK, &status::status(self)),
            (&Method::GET, "/metrics") => metrics::metrics(self),
            (_, "/" | "/status" | "/metrics") => method_not_allowed("GET"),
            (_, p) if p.starts_with("/pools/") => {
                if parts.method != Method::POST {
                    return method_not_allowed("POST");
                }
                // A session cookie rides along with any request the browser makes: an action must also
                // carry a header no cross-site form can set (SameSite=Strict already stops most of this).
                if who == auth::Who::Session && !parts.headers.contains_key("x-gatehouse-action") {
                    return text(
                        StatusCode::FORBIDDEN,
                        "actions from a browser session need the X-Gatehouse-Action header\n",
                    );
                }
                match read_body(body).await {
                    Ok(b) => actions::action(self, p, &b).await,
                    Err(resp) => resp,
                }
            }
            _ => text(StatusCode::NOT_FOUND, "no such admin route\n"),
        }
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, Response<Body>> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        )),
    }
}

/// Whole seconds from `from` to `to`, negative when `to` is earlier (an expired certificate).
pub(crate) fn seconds_between(from: std::time::SystemTime, to: std::time::SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
