//! Real HTTP backends for the tests, each on its own 127.0.0.1 port.
//!
//! Paths: `/slow/MS` answers after MS milliseconds; `/bytes/N` streams N bytes; `/count` reads the request body
//! and answers its length; `/ws` is a WebSocket echo; `/status/CODE` answers CODE; `/healthz` answers what
//! [`Backend::set_health`] set (200 by default); `/hop` answers with
//! hop-by-hop headers of its own; `/text/N?header=value&…` answers N bytes of text ([`text_body`]) with
//! `content-type: text/plain` and the query's pairs as headers (percent-decoded; `status=CODE` sets the
//! status); `/sse/N` is a server-sent event stream of N events (`data: event I`), one every 1.5 s;
//! anything else answers the backend's name. Every answer carries
//! `x-backend: NAME`, and every request is recorded in [`Backend::seen`].

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role};

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
}

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The status `/healthz` answers (200 unless set).
    health: Arc<std::sync::atomic::AtomicU16>,
    task: JoinHandle<()>,
    kill: tokio::sync::watch::Sender<bool>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

/// How a backend's HTTP/2 side behaves.
#[derive(Clone, Copy, Default)]
struct H2 {
    /// SETTINGS_MAX_CONCURRENT_STREAMS, if limited.
    streams: Option<u32>,
    /// A wait after accepting a connection before serving it: the server's SETTINGS frame comes that late.
    late: Option<std::time::Duration>,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Self::start_with_tls(name, None).await
    }

    /// Like [`Backend::start`], behind TLS when `tls` is given (HTTP/1.1 or h2 by ALPN).
    pub async fn start_with_tls(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        Self::start_full(name, tls, H2::default()).await
    }

    /// Like [`Backend::start`], allowing at most `streams` HTTP/2 streams per connection.
    pub async fn start_h2_limited(name: &str, streams: u32) -> Backend {
        Self::start_full(
            name,
            None,
            H2 {
                streams: Some(streams),
                late: None,
            },
        )
        .await
    }

    /// Like [`Backend::start_h2_limited`], serving each connection (and so sending its SETTINGS frame, which
    /// carries the limit) only `late` after accepting it.
    pub async fn start_h2_late(name: &str, streams: u32, late: std::time::Duration) -> Backend {
        Self::start_full(
            name,
            None,
            H2 {
                streams: Some(streams),
                late: Some(late),
            },
        )
        .await
    }

    /// Like [`Backend::start`], on `addr` (another loopback address, a port shared with another backend).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        Self::start_at(name, None, H2::default(), addr).await
    }

    async fn start_full(name: &str, tls: Option<tokio_rustls::TlsAcceptor>, h2: H2) -> Backend {
        Self::start_at(name, tls, h2, "127.0.0.1:0".parse().expect("addr")).await
    }

    async fn start_at(
        name: &str,
        tls: Option<tokio_rustls::TlsAcceptor>,
        h2: H2,
        at: SocketAddr,
    ) -> Backend {
        let listener = TcpListener::bind(at).await.expect("bind backend");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let health = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let name_arc: Arc<str> = name.into();
        let (kill, killed) = tokio::sync::watch::channel(false);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = {
            let seen = seen.clone();
            let health = health.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (seen, name, mut killed) = (seen.clone(), name_arc.clone(), killed.clone());
                    let health = health.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        if let Some(late) = h2.late {
                            tokio::time::sleep(late).await;
                        }
                        let svc = service_fn(move |req| {
                            handle(req, name.clone(), seen.clone(), health.clone())
                        });
                        let mut builder =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        if let Some(n) = h2.streams {
                            builder.http2().max_concurrent_streams(n);
                        }
                        match tls {
                            None => {
                                let conn = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), svc);
                                tokio::select! {
                                    _ = conn => {}
                                    _ = killed.changed() => {} // dropping the connection closes its socket
                                }
                            }
                            Some(acceptor) => {
                                let Ok(stream) = acceptor.accept(stream).await else {
                                    return;
                                };
                                let conn = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), svc);
                                tokio::select! {
                                    _ = conn => {}
                                    _ = killed.changed() => {}
                                }
                            }
                        }
                    });
                }
            })
        };
        Backend {
            name: name.to_string(),
            addr,
            seen,
            health,
            task,
            kill,
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }

    /// Requests received so far other than health probes (`/healthz`).
    pub fn served(&self) -> usize {
        self.seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|s| s.uri.path() != "/healthz")
            .count()
    }

    /// What `/healthz` answers from now on.
    pub fn set_health(&self, status: u16) {
        self.health
            .store(status, std::sync::atomic::Ordering::Relaxed);
    }

    /// Dies like a crashed server: the port refuses connections and open connections are closed.
    pub fn stop(&self) {
        self.task.abort();
        let _ = self.kill.send(true);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(s: impl Into<Bytes>) -> BoxBody {
    http_body_util::Full::new(s.into()).boxed()
}

async fn handle(
    mut req: Request<Incoming>,
    name: Arc<str>,
    seen: Arc<Mutex<Vec<Seen>>>,
    health: Arc<std::sync::atomic::AtomicU16>,
) -> Result<Response<BoxBody>, Infallible> {
    seen.lock().expect("seen").push(Seen {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (first, arg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut resp = match first {
        "slow" => {
            tokio::time::sleep(Duration::from_millis(arg.parse().unwrap_or(1000))).await;
            Response::new(full(name.to_string()))
        }
        "bytes" => Response::new(Repeat::new(arg.parse().unwrap_or(0)).boxed()),
        "count" => {
            let mut n: u64 = 0;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            Response::new(full(n.to_string()))
        }
        "healthz" => {
            let mut r = Response::new(full(name.to_string()));
            *r.status_mut() =
                StatusCode::from_u16(health.load(std::sync::atomic::Ordering::Relaxed))
                    .unwrap_or(StatusCode::OK);
            r
        }
        "status" => {
            let mut r = Response::new(full(name.to_string()));
            *r.status_mut() =
                StatusCode::from_u16(arg.parse().unwrap_or(200)).unwrap_or(StatusCode::OK);
            r
        }
        "hop" => {
            let mut r = Response::new(full(name.to_string()));
            r.headers_mut()
                .insert("connection", "x-resp-hop".parse().expect("hv"));
            r.headers_mut()
                .insert("x-resp-hop", "1".parse().expect("hv"));
            r.headers_mut()
                .insert("keep-alive", "timeout=5".parse().expect("hv"));
            r.headers_mut()
                .insert("x-resp-kept", "1".parse().expect("hv"));
            r
        }
        "ws" => return Ok(websocket_echo(&mut req)),
        "text" => {
            let mut r = Response::new(full(text_body(arg.parse().unwrap_or(0))));
            r.headers_mut().insert(
                "content-type",
                "text/plain; charset=utf-8".parse().expect("hv"),
            );
            for pair in req.uri().query().unwrap_or("").split('&') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = percent_decode(v);
                if k == "status" {
                    *r.status_mut() = v.parse().unwrap_or(StatusCode::OK);
                } else if let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(&v),
                ) {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
        "sse" => {
            let n: usize = arg.parse().unwrap_or(1);
            let events = futures_util::stream::unfold(0usize, move |i| async move {
                if i >= n {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                let frame = Frame::data(Bytes::from(format!("data: event {i}\n\n")));
                Some((Ok::<_, Infallible>(frame), i + 1))
            });
            let mut r = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(events)));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().expect("hv"));
            r
        }
        _ => Response::new(full(name.to_string())),
    };
    resp.headers_mut()
        .insert("x-backend", name.parse().expect("name"));
    Ok(resp)
}

/// Answers a WebSocket handshake with 101 and echoes every message prefixed with nothing.
fn websocket_echo(req: &mut Request<Incoming>) -> Response<BoxBody> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut r = Response::new(full("not a websocket request"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("connection", "upgrade".parse().expect("hv"));
    h.insert("upgrade", "websocket".parse().expect("hv"));
    h.insert(
        "sec-websocket-accept",
        derive_accept_key(key.as_bytes()).parse().expect("hv"),
    );
    r
}

/// N bytes of compressible text: numbered lines, so a decoding error shows where it went wrong.
pub fn text_body(n: usize) -> String {
    let mut s = String::with_capacity(n + 64);
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "line {i}: the quick brown fox jumps over the lazy dog\n"
        ));
        i += 1;
    }
    s.truncate(n);
    s
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                match u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A body of N bytes produced 64 KiB at a time, never held whole.
pub struct Repeat {
    remaining: u64,
    chunk: Bytes,
}

impl Repeat {
    pub fn new(n: u64) -> Self {
        Repeat {
            remaining: n,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// A TCP server that answers every connection with bytes that are not HTTP, then closes.
pub async fn garbage_backend() -> (SocketAddr, JoinHandle<()>) {
    raw_backend(b"THIS IS NOT HTTP\r\n\r\n").await
}

/// A TCP server that reads a request and closes the connection without a response (a server killed
/// mid-request, every time).
pub async fn closing_backend() -> (SocketAddr, JoinHandle<()>) {
    raw_backend(b"").await
}

/// A TCP server that reads once from each connection, writes `reply` (raw bytes, maybe none), and closes.
async fn raw_backend(reply: &'static [u8]) -> (SocketAddr, JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
            });
        }
    });
    (addr, task)
}

/// A TCP server that accepts connections and never answers.
pub async fn silent_backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}
