//! Traffic policy against the real binary: rate limits (429, refill, clients apart, kept across a reload),
//! `max_conns_per_ip` on a listener and a stream, header rules both ways with variables, rewrites with
//! captures, basic auth with hashes from `gatehouse hash-password`, and compression (each codec decodes to the
//! original bytes; skipped where it must be; server-sent events arrive event by event).

use bytes::Bytes;
use gatehouse_e2e::admin::{sample, Admin};
use gatehouse_e2e::backend::text_body;
use gatehouse_e2e::client::{get, get_with, http1, send, Resp};
use gatehouse_e2e::gatehouse::binary;
use gatehouse_e2e::{eventually, free_port, Backend, Gatehouse};
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECS: Duration = Duration::from_secs(10);

/// One site (`example.com`, default) with `route` lines on its one route to pool `p` (server `addr`), `site`
/// lines on the site, and `server` lines in `[server]`.
fn config(addr: SocketAddr, site: &str, route: &str, server: &str) -> String {
    format!(
        "[server]\n{server}\n\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n{site}\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n  {route}\n\n[pool.p]\nservers = [\"{addr}\"]\n"
    )
}

/// A keep-alive HTTP/1.1 client whose connections come from `ip` (another loopback address).
fn client_from(ip: &str) -> Client<HttpConnector, Full<Bytes>> {
    let mut c = HttpConnector::new();
    c.set_local_address(Some(ip.parse::<IpAddr>().expect("ip")));
    Client::builder(TokioExecutor::new()).build(c)
}

async fn get_from(client: &Client<HttpConnector, Full<Bytes>>, url: &str) -> Resp {
    send(client, Method::GET, url, &[], Bytes::new()).await
}

#[tokio::test]
async fn rate_limits_refuse_after_the_burst_refill_and_keep_clients_apart_across_a_reload() {
    let b = Backend::start("b").await;
    let admin = Admin::on_free_port(None);
    let route = "rate_limit = { rate = \"2r/s\", burst = 3 }";
    let g = Gatehouse::start(&config(b.addr, "", route, &admin.server_keys()));
    let (a, c) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let url = g.url("/");
    for i in 0..4 {
        assert_eq!(
            get_from(&a, &url).await.status,
            200,
            "request {i}: within the burst"
        );
    }
    let refused = get_from(&a, &url).await;
    assert_eq!(refused.status, 429, "beyond the burst");
    assert_eq!(
        refused
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1"),
        "a token comes back within 500 ms"
    );
    assert_eq!(
        get_from(&c, &url).await.status,
        200,
        "another client has its own bucket"
    );
    assert_eq!(
        b.served(),
        5,
        "the refused request never reached the server"
    );

    // The bucket refills: one token every 500 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get_from(&a, &url).await.status, 200, "refilled");
    assert_eq!(get_from(&a, &url).await.status, 429);

    // A reload that leaves the rule as it was keeps the buckets: the client is still refused.
    g.write_config(&config(
        b.addr,
        "",
        &format!("{route}\n  max_body = \"1MiB\""),
        &admin.server_keys(),
    ));
    assert!(eventually(SECS, || async { admin.status().await["generation"] == 2 }).await);
    assert_eq!(
        get_from(&a, &url).await.status,
        429,
        "the bucket survived the reload"
    );
    let m = admin.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"gatehouse_rate_limited_total{site="example.com",route="/"}"#
        ),
        Some(3.0),
        "{m}"
    );
}

#[tokio::test]
async fn without_nodelay_the_burst_is_delayed_not_refused() {
    let b = Backend::start("b").await;
    let route = "rate_limit = { rate = \"5r/s\", burst = 2, nodelay = false }";
    let g = Gatehouse::start(&config(b.addr, "", route, ""));
    let client = http1();
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(get_from(&client, &g.url("/")).await.status, 200);
    }
    // The second waited 200 ms and the third 400 ms for their turn at 5 per second (a lower bound: the
    // requests were spaced by the rate, not refused).
    assert!(
        start.elapsed() >= Duration::from_millis(390),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        get_from(&client, &g.url("/")).await.status,
        200,
        "the queue drained"
    );
}

/// Opens `n` connections, sends nothing, and returns them; then the next one must be closed at once.
async fn hold(addr: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    held
}

/// Whether the server closed `s` without a byte within 2 s (refused), or kept it open (accepted: then `s`
/// comes back, to be held).
async fn closed_at_once_kept(
    mut s: tokio::net::TcpStream,
) -> (bool, Option<tokio::net::TcpStream>) {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => (true, None),
        _ => (false, Some(s)),
    }
}

#[tokio::test]
async fn max_conns_per_ip_refuses_the_extra_connection_on_listeners_and_streams() {
    let b = Backend::start("b").await;
    let admin = Admin::on_free_port(None);
    let port = free_port();
    let stream_port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let stream_addr: SocketAddr = format!("127.0.0.1:{stream_port}").parse().expect("addr");
    let cfg = format!(
        "{}\n[[listener]]\nname = \"capped\"\nbind = \"{addr}\"\nmax_conns_per_ip = 2\n\n[[stream]]\nname = \"tcp\"\nbind = \"{stream_addr}\"\npool = \"p\"\nmax_conns_per_ip = 1\n",
        config(b.addr, "", "", &admin.server_keys())
    );
    let g = Gatehouse::start(&cfg);
    // Three from one address: two are accepted (they wait for a request), one is closed unread. Which one is
    // the workers' race (two accept loops), so count them.
    let three = hold(addr, 3).await;
    let verdicts = futures_util::future::join_all(three.into_iter().map(closed_at_once_kept)).await;
    let refused = verdicts.iter().filter(|(closed, _)| *closed).count();
    assert_eq!(refused, 1, "exactly one of three connections is refused");
    let held: Vec<_> = verdicts.into_iter().filter_map(|(_, kept)| kept).collect();
    // Another client address is not affected.
    let other = tokio::net::TcpSocket::new_v4().expect("socket");
    other
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind");
    let mut other = other.connect(addr).await.expect("connect");
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // One closes: a new one is accepted and served.
    drop(held);
    let served = eventually(SECS, || async {
        let r = gatehouse_e2e::client::raw(
            addr,
            b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
        r.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(served);

    // The stream: one connection per address.
    let two = hold(stream_addr, 2).await;
    let verdicts = futures_util::future::join_all(two.into_iter().map(closed_at_once_kept)).await;
    assert_eq!(
        verdicts.iter().filter(|(closed, _)| *closed).count(),
        1,
        "exactly one of the stream's two connections is refused"
    );
    drop(verdicts);

    let m = admin.metrics().await;
    assert!(
        sample(
            &m,
            r#"gatehouse_client_connections_refused_total{listener="capped"}"#
        ) >= Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"gatehouse_client_connections_refused_total{listener="tcp"}"#
        ),
        Some(1.0)
    );
    drop(g);
}

#[tokio::test]
async fn header_rules_apply_both_ways_with_variables() {
    let b = Backend::start("b").await;
    let site = "request_headers = { set = { \"X-Env\" = \"prod\" } }\nresponse_headers = { set = { \"X-Site\" = \"gatehouse\" } }";
    let route = "request_headers = { set = { \"X-Client\" = \"{client_ip} via {scheme} for {host}\", \"X-Real-IP\" = \"overridden\" }, add = { \"X-Trace\" = \"id={request_id}\" }, remove = [\"X-Debug\"] }\n  response_headers = { set = { \"X-Frame-Options\" = \"DENY\", \"X-Served-For\" = \"{client_ip}\" }, remove = [\"Server\", \"X-Powered-By\"] }";
    let g = Gatehouse::start(&config(b.addr, site, route, ""));
    let r = get_with(
        &g.url("/text/10?server=Apache&x-powered-by=PHP%2F8"),
        &[
            ("x-debug", "1"),
            ("x-trace", "client"),
            ("host", "example.com"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = b.seen().pop().expect("a request");
    let h = |name: &str| -> Vec<String> {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(h("x-env"), ["prod"], "the site's rule");
    assert_eq!(h("x-client"), ["127.0.0.1 via http for example.com"]);
    assert_eq!(
        h("x-real-ip"),
        ["overridden"],
        "a set wins over the forwarded headers"
    );
    assert!(h("x-debug").is_empty());
    let id = r.headers["x-request-id"].to_str().expect("id");
    assert_eq!(
        h("x-trace"),
        ["client".to_string(), format!("id={id}")],
        "add appends"
    );
    // Response: hidden, set, and the site's rule as well as the route's.
    assert!(r.headers.get("server").is_none(), "Server hidden");
    assert!(
        r.headers.get("x-powered-by").is_none(),
        "X-Powered-By hidden"
    );
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["x-served-for"], "127.0.0.1");
    assert_eq!(r.headers["x-site"], "gatehouse");
}

#[tokio::test]
async fn rewrites_fill_in_captures_once_and_keep_the_query() {
    let b = Backend::start("b").await;
    let cfg = format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/old/\"\n  pool = \"p\"\n  rewrite = {{ from = \"^/old/(.*)$\", to = \"/new/$1\" }}\n  [[site.route]]\n  path = \"/u/\"\n  pool = \"p\"\n  strip_prefix = true\n  rewrite = {{ from = \"^/(?P<id>[0-9]+)$\", to = \"/users?id=${{id}}\" }}\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n\n[pool.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    let g = Gatehouse::start(&cfg);
    let target = |path: &'static str| {
        let (g, b) = (&g, &b);
        async move {
            assert_eq!(get(&g.url(path)).await.status, 200, "{path}");
            b.seen().pop().expect("seen").uri.to_string()
        }
    };
    assert_eq!(target("/old/a/b.html?x=1").await, "/new/a/b.html?x=1");
    assert_eq!(target("/old/old/c").await, "/new/old/c", "applied once");
    assert_eq!(target("/u/42?lang=en").await, "/users?id=42&lang=en");
    assert_eq!(target("/u/abc").await, "/abc", "no match: only the strip");
    assert_eq!(target("/new/x").await, "/new/x", "other routes untouched");
}

/// `gatehouse hash-password` with the password on stdin.
fn hash_password(password: &str, algorithm: &str) -> String {
    let mut child = std::process::Command::new(binary())
        .args(["hash-password", "--algorithm", algorithm, "--cost", "4"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn basic_auth_answers_401_until_a_user_signs_in_with_hashes_from_the_cli() {
    let alice = hash_password("wonder land", "bcrypt");
    let bob = hash_password("builder", "argon2id");
    assert!(alice.starts_with("$2b$04$"), "{alice}");
    assert!(bob.starts_with("$argon2id$"), "{bob}");
    let b = Backend::start("b").await;
    let cfg = format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/admin/\"\n  pool = \"p\"\n  basic_auth = {{ realm = \"ops\", users = {{ alice = \"{alice}\", bob = \"{bob}\" }} }}\n  [[site.route]]\n  path = \"/fwd/\"\n  pool = \"p\"\n  basic_auth = {{ users = {{ alice = \"{alice}\" }}, forward = true }}\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n\n[pool.p]\nservers = [\"{}\"]\n",
        b.addr
    );
    let g = Gatehouse::start(&cfg);
    let url = g.url("/admin/x");
    let anonymous = get(&url).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.headers["www-authenticate"],
        "Basic realm=\"ops\", charset=\"UTF-8\""
    );
    for (user, pw) in [
        ("alice", "wrong"),
        ("carol", "wonder land"),
        ("bob", "wonder land"),
    ] {
        let r = get_with(&url, &[("authorization", &basic(user, pw))]).await;
        assert_eq!(r.status, 401, "{user}:{pw}");
    }
    assert_eq!(b.served(), 0, "nothing reached the server");
    for (user, pw) in [("alice", "wonder land"), ("bob", "builder")] {
        let r = get_with(&url, &[("authorization", &basic(user, pw))]).await;
        assert_eq!(r.status, 200, "{user}");
        let seen = b.seen().pop().expect("seen");
        assert!(
            seen.headers.get("authorization").is_none(),
            "credentials kept from the server"
        );
    }
    let r = get_with(
        &g.url("/fwd/"),
        &[("authorization", &basic("alice", "wonder land"))],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        b.seen()
            .pop()
            .expect("seen")
            .headers
            .get("authorization")
            .is_some(),
        "forward = true"
    );
    assert_eq!(
        get(&g.url("/open")).await.status,
        200,
        "other routes are open"
    );
    assert!(!g.logs().contains("wonder land"), "no password in the logs");
}

fn decode(codec: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match codec {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("gzip");
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("br");
        }
        "zstd" => out = zstd::decode_all(bytes).expect("zstd"),
        other => panic!("{other}"),
    }
    out
}

/// GET `url` with `accept`, returning the status, headers and raw (still encoded) body.
async fn fetch(url: &str, accept: &str) -> (u16, http::HeaderMap, Vec<u8>) {
    let req = http::Request::get(url)
        .header("accept-encoding", accept)
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = http1().request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.status.as_u16(), parts.headers, bytes.to_vec())
}

#[tokio::test]
async fn compressed_responses_decode_to_the_original_and_are_skipped_where_they_must_be() {
    let b = Backend::start("b").await;
    let admin = Admin::on_free_port(None);
    let route = "compress = [\"zstd\", \"br\", \"gzip\"]";
    let g = Gatehouse::start(&config(b.addr, "", route, &admin.server_keys()));
    let original = text_body(300_000);
    for codec in ["gzip", "br", "zstd"] {
        let (status, h, body) = fetch(&g.url("/text/300000?etag=%22v1%22"), codec).await;
        assert_eq!(status, 200);
        assert_eq!(h["content-encoding"], codec);
        assert!(h.get("content-length").is_none());
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_eq!(h["etag"], "W/\"v1\"", "a strong validator becomes weak");
        assert!(
            body.len() < original.len() / 5,
            "{codec}: {} bytes",
            body.len()
        );
        assert!(
            decode(codec, &body) == original.as_bytes(),
            "{codec} decodes to the original"
        );
    }
    // The client's preference, then the route's order.
    let (_, h, _) = fetch(&g.url("/text/4000"), "gzip;q=1, br;q=0.5").await;
    assert_eq!(h["content-encoding"], "gzip");
    let (_, h, _) = fetch(&g.url("/text/4000"), "gzip, br").await;
    assert_eq!(h["content-encoding"], "br");

    // Never compressed: unaccepted, already encoded, partial, small, unlisted type, no-transform.
    let skipped = [
        ("/text/4000", "identity", "not accepted"),
        (
            "/text/4000?content-encoding=deflate",
            "gzip",
            "already encoded",
        ),
        (
            "/text/4000?status=206&content-range=bytes%200-3999%2F9000",
            "gzip",
            "206",
        ),
        ("/text/100", "gzip", "below the minimum size"),
        (
            "/text/4000?content-type=image%2Fpng",
            "gzip",
            "unlisted type",
        ),
        (
            "/text/4000?cache-control=public%2C%20no-transform",
            "gzip",
            "no-transform",
        ),
    ];
    for (path, accept, why) in skipped {
        let (_, h, body) = fetch(&g.url(path), accept).await;
        let encoding = h.get("content-encoding").and_then(|v| v.to_str().ok());
        assert!(
            encoding.is_none() || encoding == Some("deflate"),
            "{why}: {encoding:?}"
        );
        let n: usize = path[6..]
            .split('?')
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        assert_eq!(body.len(), n, "{why}: the body as the server sent it");
    }
    let m = admin.metrics().await;
    assert_eq!(
        sample(&m, r#"gatehouse_compressed_responses_total{codec="gzip"}"#),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test]
async fn server_sent_events_through_compression_arrive_event_by_event() {
    let b = Backend::start("b").await;
    let g = Gatehouse::start(&config(b.addr, "", "compress = [\"gzip\"]", ""));
    let req = http::Request::get(g.url("/sse/3"))
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = http1().request(req).await.expect("response");
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let mut body = resp.into_body();
    // Decode what has arrived so far: each event must be readable before the server sends the next one
    // (1.5 s later), not only when the stream ends: when event I decodes, event I+1 must not be there yet.
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    for i in 0..3 {
        let want = format!("data: event {i}\n\n");
        loop {
            let frame = tokio::time::timeout(SECS, body.frame())
                .await
                .expect("a frame in time")
                .expect("not the end")
                .expect("frame");
            if let Ok(data) = frame.into_data() {
                decoder.write_all(&data).expect("decode");
                decoder.flush().expect("flush");
            }
            if String::from_utf8_lossy(decoder.get_ref()).contains(&want) {
                break;
            }
        }
        let next = format!("event {}", i + 1);
        assert!(
            !String::from_utf8_lossy(decoder.get_ref()).contains(&next),
            "event {i} arrived only with the next one"
        );
    }
}
