//! Parked keep-alive connections: an idle HTTP/1 connection gives back hyper's buffers and waits on its bare
//! socket (`listener/serve.rs`). What that must not break: pipelined requests after a park, bytes read
//! while parked, requests that arrive just as the connection parks, TLS connections, the idle timeout, and a
//! graceful shutdown (which closes parked connections at once).
//!
//! Idle upstream HTTP/1.1 connections park too (`upstream/pool.rs`): after a second idle only the socket is
//! kept, and the next request resumes it. What that must not break: the same server connection serves the
//! next request, and one the server closed, or wrote to unasked, while parked is never used.

use gatehouse_e2e::admin::Admin;
use gatehouse_e2e::tls::{connect, TestCa};
use gatehouse_e2e::{closed_within, eventually, Gatehouse};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Two routes with bodies of different lengths, so the order of pipelined answers shows.
fn config(server: &str, admin: &Admin) -> String {
    format!(
        "[server]\n{}{server}\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/a\"\n  respond = \"alpha\"\n  [[site.route]]\n  path = \"/b\"\n  respond = \"bravo-b\"\n",
        admin.server_keys()
    )
}

fn req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n")
}

/// Reads `n` whole responses (they carry Content-Length) and returns them, head and body.
async fn responses<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.len() < n {
        // Cut complete responses off the front.
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("content-length"))
                .expect("a content-length");
            if buf.len() >= end + 4 + len {
                let whole: Vec<u8> = buf.drain(..end + 4 + len).collect();
                out.push(String::from_utf8_lossy(&whole).into_owned());
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!("closed after {} of {n} responses: {out:?}", out.len()),
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Ok(Err(e)) => panic!("read failed after {} of {n} responses: {e}", out.len()),
            Err(_) => panic!("timed out after {} of {n} responses: {out:?}", out.len()),
        }
    }
    assert!(buf.is_empty(), "more than {n} responses");
    out
}

/// A 200 with `body` that keeps the connection open.
fn assert_ok(resp: &str, body: &str) {
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with(body), "expected {body:?}: {resp}");
    assert!(
        !resp.to_lowercase().contains("connection: close"),
        "keep-alive lost: {resp}"
    );
}

async fn parked(admin: &Admin) -> u64 {
    admin.status().await["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .filter_map(|l| l["parked_connections"].as_u64())
        .sum()
}

async fn wait_parked(admin: &Admin, n: u64) {
    assert!(
        eventually(Duration::from_secs(5), || async {
            parked(admin).await == n
        })
        .await,
        "expected {n} parked connections, have {}",
        parked(admin).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_and_split_requests_are_served_across_a_park() {
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&config("", &admin));
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(req("/a").as_bytes()).await.unwrap();
    assert_ok(&responses(&mut s, 1).await[0], "alpha");
    wait_parked(&admin, 1).await;
    let metrics = admin.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gatehouse_client_connections_parked{") && l.ends_with(" 1")),
        "the parked connection in /metrics:\n{metrics}"
    );

    // Three pipelined requests in one write wake the parked connection: all answered, in order.
    let three = format!("{}{}{}", req("/b"), req("/a"), req("/b"));
    s.write_all(three.as_bytes()).await.unwrap();
    let got = responses(&mut s, 3).await;
    assert_ok(&got[0], "bravo-b");
    assert_ok(&got[1], "alpha");
    assert_ok(&got[2], "bravo-b");
    wait_parked(&admin, 1).await;

    // A request in pieces: the bytes the parked wait reads are kept for the next hyper connection.
    let r = req("/b");
    let (first, rest) = r.as_bytes().split_at(9);
    s.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(parked(&admin).await, 0, "woken by its first bytes");
    s.write_all(rest).await.unwrap();
    assert_ok(&responses(&mut s, 1).await[0], "bravo-b");

    // Parked again, a request plus the start of the next one, then the rest of it.
    wait_parked(&admin, 1).await;
    let both = format!("{}GET /a HT", req("/b"));
    s.write_all(both.as_bytes()).await.unwrap();
    assert_ok(&responses(&mut s, 1).await[0], "bravo-b");
    s.write_all(b"TP/1.1\r\nHost: example.com\r\n\r\n")
        .await
        .unwrap();
    assert_ok(&responses(&mut s, 1).await[0], "alpha");
    assert!(
        !g.logs().contains("panicked"),
        "no panic in the logs:\n{}",
        g.logs()
    );
}

/// The first read of a new connection (and the read that wakes a parked one) takes up to 4 KiB and hands all
/// of it to hyper before hyper reads the socket itself: pipelined requests in that read, a head that comes a
/// byte at a time, a head longer than the read, and more pipelined bytes than it takes are all answered.
#[tokio::test(flavor = "multi_thread")]
async fn what_the_first_read_takes_reaches_hyper_whole() {
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&config("", &admin));

    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let three = format!("{}{}{}", req("/a"), req("/b"), req("/a"));
    s.write_all(three.as_bytes()).await.unwrap();
    let got = responses(&mut s, 3).await;
    assert_ok(&got[0], "alpha");
    assert_ok(&got[1], "bravo-b");
    assert_ok(&got[2], "alpha");

    let mut s = byte_by_byte(g.addr, req("/b").as_bytes()).await;
    assert_ok(&responses(&mut s, 1).await[0], "bravo-b");

    // Bytes that could still start the HTTP/2 preface ("P", "PR") are kept across the first read's waits:
    // an HTTP/1 PUT and the preface itself, a byte at a time.
    let put = "PUT /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n";
    let mut s = byte_by_byte(g.addr, put.as_bytes()).await;
    assert_ok(&responses(&mut s, 1).await[0], "bravo-b");
    let mut s = byte_by_byte(g.addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    s.write_all(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head))
        .await
        .expect("an answer to the preface")
        .expect("the server's first frame");
    assert_eq!(head[3], 4, "HTTP/2: a SETTINGS frame first, got {head:?}");

    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let long = format!(
        "GET /a HTTP/1.1\r\nHost: example.com\r\nX-Long: {}\r\n\r\n",
        "x".repeat(6000)
    );
    s.write_all(long.as_bytes()).await.unwrap();
    assert_ok(&responses(&mut s, 1).await[0], "alpha");

    // Parked, then woken by more pipelined bytes than one read takes.
    wait_parked(&admin, 1).await;
    let many: String = (0..120)
        .map(|i| req(if i % 2 == 0 { "/a" } else { "/b" }))
        .collect();
    assert!(many.len() > 4096);
    s.write_all(many.as_bytes()).await.unwrap();
    let got = responses(&mut s, 120).await;
    for (i, r) in got.iter().enumerate() {
        assert_ok(r, if i % 2 == 0 { "alpha" } else { "bravo-b" });
    }
}

/// A new connection that writes `bytes` one at a time, a little apart.
async fn byte_by_byte(addr: std::net::SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for b in bytes {
        s.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_arriving_as_connections_park_are_answered_with_keep_alive() {
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&config("", &admin));
    // 48 connections whose second request comes 900..1,370 ms after their first answer: about when the
    // watchdog parks them (1 s after the last request), so some arrive just before, during and after.
    let mut tasks = Vec::new();
    for i in 0..48u64 {
        let addr = g.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req("/a").as_bytes()).await.unwrap();
            assert_ok(&responses(&mut s, 1).await[0], "alpha");
            tokio::time::sleep(Duration::from_millis(900 + i * 10)).await;
            s.write_all(format!("{}{}", req("/b"), req("/a")).as_bytes())
                .await
                .unwrap();
            let got = responses(&mut s, 2).await;
            assert_ok(&got[0], "bravo-b");
            assert_ok(&got[1], "alpha");
            s.write_all(req("/b").as_bytes()).await.unwrap();
            assert_ok(&responses(&mut s, 1).await[0], "bravo-b");
        }));
    }
    for t in tasks {
        t.await.expect("a connection lost a request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_connections_park_and_wake() {
    let admin = Admin::on_free_port(None);
    let ca = TestCa::new("Parking CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue_files(dir.path(), "site", &["example.com"]);
    let port = gatehouse_e2e::free_port();
    let cfg = format!(
        "[server]\n{}\n[[listener]]\nname = \"https\"\nbind = \"127.0.0.1:{port}\"\ntls = true\n[[site]]\nhosts = [\"example.com\"]\ntls = {{ cert = \"{}\", key = \"{}\" }}\n  [[site.route]]\n  path = \"/a\"\n  respond = \"alpha\"\n",
        admin.server_keys(),
        cert.display(),
        key.display()
    );
    let _g = Gatehouse::start_raw(&cfg, format!("127.0.0.1:{port}").parse().unwrap());
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = ca.client(
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[b"http/1.1"],
    );
    let mut s = connect(addr, "example.com", client).await.unwrap();
    for _ in 0..3 {
        s.write_all(req("/a").as_bytes()).await.unwrap();
        assert_ok(&responses(&mut s, 1).await[0], "alpha");
        wait_parked(&admin, 1).await;
    }
    // Pipelined over TLS after a park.
    let two = format!("{}{}", req("/a"), req("/a"));
    s.write_all(two.as_bytes()).await.unwrap();
    let got = responses(&mut s, 2).await;
    assert_ok(&got[0], "alpha");
    assert_ok(&got[1], "alpha");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_idle_timeout_still_closes_a_parked_connection() {
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&config("idle_timeout = \"2500ms\"", &admin));
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(req("/a").as_bytes()).await.unwrap();
    assert_ok(&responses(&mut s, 1).await[0], "alpha");
    let answered = Instant::now();
    wait_parked(&admin, 1).await;
    assert!(
        closed_within(&mut s, Duration::from_secs(5))
            .await
            .is_some(),
        "a parked connection outlived idle_timeout"
    );
    let after = answered.elapsed();
    assert!(
        after >= Duration::from_millis(2300) && after < Duration::from_millis(4500),
        "closed {after:?} after its last answer, idle_timeout is 2.5 s"
    );
    wait_parked(&admin, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_closes_parked_connections_at_once() {
    let admin = Admin::on_free_port(None);
    let mut g = Gatehouse::start(&config("grace_period = \"30s\"", &admin));
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(g.addr).await.unwrap();
        s.write_all(req("/a").as_bytes()).await.unwrap();
        assert_ok(&responses(&mut s, 1).await[0], "alpha");
        conns.push(s);
    }
    wait_parked(&admin, 20).await;
    let t = Instant::now();
    g.signal(15); // SIGTERM
    let status = g.wait_exit(Duration::from_secs(10));
    assert!(status.is_some(), "still running 10 s after SIGTERM");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}: parked connections held the 30 s grace period",
        t.elapsed()
    );
    for s in &mut conns {
        assert!(closed_within(s, Duration::from_secs(2)).await.is_some());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_connection_does_not_park_and_h2_never_does() {
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&config("", &admin));
    // A request head trickling in is not idle: the connection is not parked under it.
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(parked(&admin).await, 0, "parked in the middle of a head");
    s.write_all(b"Host: example.com\r\n\r\n").await.unwrap();
    assert_ok(&responses(&mut s, 1).await[0], "alpha");

    // HTTP/2 (prior knowledge) keeps its state: idle, it is not parked, and still serves.
    let client = gatehouse_e2e::client::h2c();
    let url = g.url("/a");
    let r = gatehouse_e2e::client::send(&client, http::Method::GET, &url, &[], Default::default())
        .await;
    assert_eq!(r.status, 200);
    wait_parked(&admin, 1).await; // the HTTP/1 connection above
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(parked(&admin).await, 1, "only the HTTP/1 connection parks");
    let r = gatehouse_e2e::client::send(&client, http::Method::GET, &url, &[], Default::default())
        .await;
    assert_eq!(r.status, 200);
    drop(s);
}

/// What a test tells one connection of [`RawBackend`] to do.
enum Cmd {
    Close,
    Send(&'static [u8]),
}

/// A backend that numbers its connections and answers each request with `conn<N>` (N from 1), so a test
/// sees which server connection carried it; [`RawBackend::tell`] closes one or writes to it unasked.
struct RawBackend {
    addr: std::net::SocketAddr,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::sync::mpsc::UnboundedSender<Cmd>>>>,
}

impl RawBackend {
    async fn start() -> RawBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let list = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let n = {
                    let mut l = list.lock().unwrap();
                    l.push(tx);
                    l.len()
                };
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        tokio::select! {
                            r = s.read(&mut chunk) => match r {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            },
                            cmd = rx.recv() => match cmd {
                                Some(Cmd::Send(bytes)) => { let _ = s.write_all(bytes).await; continue; }
                                Some(Cmd::Close) | None => return,
                            },
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let body = format!("conn{n}");
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawBackend { addr, conns }
    }

    fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }

    /// Tells connection `n` (from 1) what to do.
    fn tell(&self, n: usize, cmd: Cmd) {
        let _ = self.conns.lock().unwrap()[n - 1].send(cmd);
    }
}

/// The backend's idle and parked connection counts in `/status`.
async fn upstream_idle(admin: &Admin, addr: std::net::SocketAddr) -> (u64, u64) {
    let s = admin.server("p", addr).await;
    (
        s["idle_connections"].as_u64().expect("idle_connections"),
        s["parked_connections"]
            .as_u64()
            .expect("parked_connections"),
    )
}

async fn wait_upstream(admin: &Admin, addr: std::net::SocketAddr, want: (u64, u64)) {
    assert!(
        eventually(Duration::from_secs(5), || async {
            upstream_idle(admin, addr).await == want
        })
        .await,
        "expected (idle, parked) = {want:?}, have {:?}",
        upstream_idle(admin, addr).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_upstream_connections_park_and_only_quiet_ones_are_resumed() {
    let admin = Admin::on_free_port(None);
    let backend = RawBackend::start().await;
    let cfg = format!(
        // One worker: idle connections are kept per worker, and the test wants the next request to find it.
        "[server]\nworkers = 1\n{}\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{}\"]\n",
        admin.server_keys(),
        backend.addr
    );
    let g = Gatehouse::start(&cfg);
    let get = || async {
        let mut s = TcpStream::connect(g.addr).await.unwrap();
        s.write_all(req("/").as_bytes()).await.unwrap();
        responses(&mut s, 1).await.remove(0)
    };

    // The first request's connection goes back to the pool with hyper's state, then parks.
    assert_ok(&get().await, "conn1");
    wait_upstream(&admin, backend.addr, (1, 0)).await;
    wait_upstream(&admin, backend.addr, (0, 1)).await;
    // The next request resumes it: the same server connection, no new one.
    assert_ok(&get().await, "conn1");
    assert_eq!(backend.connections(), 1, "the parked connection was reused");
    wait_upstream(&admin, backend.addr, (0, 1)).await;

    // The server closes it while parked: the next request takes a new connection and does not fail.
    backend.tell(1, Cmd::Close);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_ok(&get().await, "conn2");
    wait_upstream(&admin, backend.addr, (0, 1)).await;

    // The server writes to it unasked while parked (a stale answer a request must never take for its own):
    // it is dropped, and a new connection carries the request.
    backend.tell(
        2,
        Cmd::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale"),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_ok(&get().await, "conn3");
    assert_eq!(backend.connections(), 3);
    assert!(
        !g.logs().contains("panicked"),
        "no panic in the logs:\n{}",
        g.logs()
    );
}
