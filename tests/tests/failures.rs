//! Answers when things go wrong: 502, 503, 504, 413, 403, and dead servers that cost no request.

use bytes::Bytes;
use gatehouse_e2e::backend::{closing_backend, garbage_backend, silent_backend};
use gatehouse_e2e::client::{get, get_with, http1, send};
use gatehouse_e2e::{dead_addr, single_pool, Backend, Gatehouse};
use http::Method;
use std::time::{Duration, Instant};

fn config(servers: &str, extra: &str) -> String {
    single_pool(servers, extra, "")
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_servers_give_502() {
    let g = Gatehouse::start(&config(
        &format!("\"{}\", \"{}\"", dead_addr(), dead_addr()),
        "max_fails = 0",
    ));
    let r = get(&g.url("/")).await;
    assert_eq!(r.status, 502);
    assert!(r.body.starts_with("502"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_that_is_not_http_gives_502() {
    let (addr, _task) = garbage_backend().await;
    let g = Gatehouse::start(&config(&format!("\"{addr}\""), ""));
    assert_eq!(get(&g.url("/")).await.status, 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_taken_out_by_failures_give_503() {
    let g = Gatehouse::start(&config(
        &format!("\"{}\"", dead_addr()),
        "max_fails = 1\nfail_timeout = \"30s\"",
    ));
    assert_eq!(
        get(&g.url("/")).await.status,
        502,
        "the failing attempt itself"
    );
    let r = get(&g.url("/")).await;
    assert_eq!(r.status, 503, "no server left: {}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_server_gives_504_after_response_timeout() {
    let (addr, _task) = silent_backend().await;
    let g = Gatehouse::start(&config(
        &format!("\"{addr}\""),
        "response_timeout = \"300ms\"",
    ));
    let t = Instant::now();
    let r = get(&g.url("/")).await;
    assert_eq!(r.status, 504);
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// An HTTP/1.1 upstream connection keeps one response clock for its life, pushed later for each request
/// (no timer registered per request): it must still cut a slow answer on a reused connection — also one whose
/// clock ran out while it sat idle in the pool — and never the body of a response whose head came in time.
#[tokio::test(flavor = "multi_thread")]
async fn response_timeout_holds_on_a_reused_upstream_connection() {
    let b = Backend::start("a").await;
    let g = Gatehouse::start(&config(
        &format!("\"{}\"", b.addr),
        "response_timeout = \"300ms\"\nmax_fails = 0",
    ));
    let client = http1();
    let get = |path: &str| {
        let (client, url) = (&client, g.url(path));
        async move { send(client, Method::GET, &url, &[], Bytes::new()).await }
    };
    for i in 0..3 {
        assert_eq!(get("/slow/20").await.status, 200, "quick answer {i}");
    }
    // Idle past the last deadline, not yet parked (1 s): the clock ran out with no request on it. Set again,
    // it lets a quick answer through, then cuts a slow one.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        get("/slow/20").await.status,
        200,
        "a clock that ran out while idle cut the next request"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let t = Instant::now();
    let r = get("/slow/3000").await;
    assert_eq!(r.status, 504, "{}", r.body);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "cut by response_timeout (300ms), neither at once nor answered: {took:?}"
    );
    // The cut connection is gone: on a new one, a quick answer, then a slow one cut (its clock moved later
    // once, then run out).
    assert_eq!(get("/slow/20").await.status, 200);
    assert_eq!(get("/slow/3000").await.status, 504);
    // The head at once, the body over 1.5 s: the response clock stopped at the head.
    let r = get("/sse/2").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("event 1"), "the whole body: {}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_server_in_a_pool_fails_no_request() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let dead = dead_addr();
    // max_fails = 0 keeps the dead server in rotation, so every third request really hits it and is retried.
    let g = Gatehouse::start(&config(
        &format!("\"{dead}\", \"{}\", \"{}\"", a.addr, b.addr),
        "max_fails = 0",
    ));
    let client = http1();
    for i in 0..90 {
        let r = send(&client, Method::GET, &g.url("/"), &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(a.count() + b.count(), 90);
    assert!(
        g.logs().contains("server unreachable"),
        "the retries were logged"
    );
}

/// A server that takes the request and closes without a response: an idempotent request without a body goes
/// to the next server (the HTTP/1.1 client hands it back; nothing is copied beforehand), one with a body
/// never does.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_server_dropped_is_replayed_only_if_idempotent_and_bodiless() {
    let (closing, _task) = closing_backend().await;
    let a = Backend::start("a").await;
    let g = Gatehouse::start(&config(
        &format!("\"{closing}\", \"{}\"", a.addr),
        "max_fails = 0
retries = 1",
    ));
    let client = http1();
    for i in 0..10 {
        let r = send(&client, Method::GET, &g.url("/"), &[], Bytes::new()).await;
        assert_eq!(r.status, 200, "GET {i}: {}", r.body);
    }
    assert_eq!(a.count(), 10, "every GET answered by the live server");
    assert!(
        g.logs().contains("connection broke before the response"),
        "the replays were logged"
    );
    let mut failed = 0;
    for _ in 0..4 {
        let r = send(
            &client,
            Method::POST,
            &g.url("/"),
            &[],
            Bytes::from_static(b"a body"),
        )
        .await;
        match r.status {
            200 => {}
            502 => failed += 1,
            s => panic!("POST answered {s}"),
        }
    }
    assert_eq!(
        failed, 2,
        "round robin sent every other POST to the closing server; none was replayed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_server_is_taken_out_after_max_fails() {
    let a = Backend::start("a").await;
    let dead = dead_addr();
    let g = Gatehouse::start(&config(
        &format!("\"{dead}\", \"{}\"", a.addr),
        "max_fails = 2\nfail_timeout = \"30s\"",
    ));
    for _ in 0..20 {
        assert_eq!(get(&g.url("/")).await.status, 200);
    }
    let attempts = g.logs().matches("server unreachable").count();
    assert_eq!(attempts, 2, "tried twice, then out for fail_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_rules_and_body_limit() {
    let a = Backend::start("a").await;
    let g = Gatehouse::start(&format!(
        r#"
[[site]]
hosts = ["example.com"]
default = true
max_body = "1KiB"
  [[site.route]]
  path = "/"
  pool = "p"
  [[site.route]]
  path = "/private/"
  pool = "p"
  allow = ["10.0.0.0/8"]
  [[site.route]]
  path = "/blocked/"
  pool = "p"
  deny = ["127.0.0.1"]
[pool.p]
servers = ["{}"]
"#,
        a.addr
    ));
    assert_eq!(get(&g.url("/private/x")).await.status, 403);
    assert_eq!(get(&g.url("/blocked/x")).await.status, 403);
    assert_eq!(get(&g.url("/open")).await.status, 200);

    let client = http1();
    let small = send(
        &client,
        Method::POST,
        &g.url("/count"),
        &[],
        Bytes::from(vec![b'x'; 1000]),
    )
    .await;
    assert_eq!((small.status, small.body.as_str()), (200, "1000"));
    let big = send(
        &client,
        Method::POST,
        &g.url("/count"),
        &[],
        Bytes::from(vec![b'x'; 5000]),
    )
    .await;
    assert_eq!(big.status, 413);
    // Only the allowed requests reached the backend.
    assert_eq!(a.count(), 2);
    let _ = get_with(&g.url("/"), &[]).await;
}
