//! Sites by Host (exact, wildcard, default), routes by longest prefix, strip_prefix, redirect, respond.

use gatehouse_e2e::client::{get, get_with, raw};
use gatehouse_e2e::{three_backends, Backend, Gatehouse};

fn config(a: &Backend, b: &Backend, c: &Backend, with_default: bool) -> String {
    format!(
        r#"
[[site]]
hosts = ["example.com", "www.example.com"]
  [[site.route]]
  path = "/"
  pool = "a"
  [[site.route]]
  path = "/api/"
  pool = "b"
  strip_prefix = true
  [[site.route]]
  path = "/api/v2/"
  pool = "c"
  [[site.route]]
  path = "/old/"
  redirect = "https://example.com/new/"
  [[site.route]]
  path = "/moved"
  redirect = "/elsewhere"
  status = 301
  [[site.route]]
  path = "/ping"
  respond = "pong\n"
  [[site.route]]
  path = "/teapot"
  respond = "short and stout"
  status = 418

[[site]]
hosts = ["*.example.org"]
  [[site.route]]
  path = "/"
  pool = "b"

[[site]]
hosts = ["fallback.test"]
default = {with_default}
  [[site.route]]
  path = "/"
  pool = "c"

[pool.a]
servers = ["{a}"]
[pool.b]
servers = ["{b}"]
[pool.c]
servers = ["{c}"]
"#,
        a = a.addr,
        b = b.addr,
        c = c.addr
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_pick_sites_exact_wildcard_default() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, true));
    let cases = [
        ("example.com", "a"),
        ("EXAMPLE.COM", "a"),
        ("www.example.com:8080", "a"),
        ("x.example.org", "b"),
        ("deep.x.example.org", "c"), // one label only: falls to the default site
        ("example.org", "c"),
        ("unknown.test", "c"),
    ];
    for (host, want) in cases {
        let r = get_with(&g.url("/"), &[("host", host)]).await;
        assert_eq!((r.status, r.backend()), (200, want), "Host: {host}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_default_site_means_404() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, false));
    let r = get_with(&g.url("/"), &[("host", "unknown.test")]).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("404"), "{}", r.body);
    assert_eq!(a.count() + b.count() + c.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn longest_prefix_wins_and_strip_prefix_rewrites() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, true));
    let host = [("host", "example.com")];
    assert_eq!(get_with(&g.url("/index.html"), &host).await.backend(), "a");
    assert_eq!(
        get_with(&g.url("/api"), &host).await.backend(),
        "a",
        "/api is not under /api/"
    );
    assert_eq!(
        get_with(&g.url("/api/users?id=7"), &host).await.backend(),
        "b"
    );
    assert_eq!(
        get_with(&g.url("/api/v2/users"), &host).await.backend(),
        "c"
    );

    assert_eq!(
        b.seen()[0].uri.to_string(),
        "/users?id=7",
        "prefix stripped, query kept"
    );
    assert_eq!(
        c.seen()[0].uri.to_string(),
        "/api/v2/users",
        "no strip_prefix on this route"
    );
    assert_eq!(a.seen()[0].uri.to_string(), "/index.html");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_and_respond_routes() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, true));
    let host = [("host", "example.com")];

    let r = get_with(&g.url("/old/page"), &host).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://example.com/new/");

    let r = get_with(&g.url("/moved"), &host).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "/elsewhere");

    let r = get_with(&g.url("/ping"), &host).await;
    assert_eq!((r.status, r.body.as_str()), (200, "pong\n"));

    let r = get_with(&g.url("/teapot"), &host).await;
    assert_eq!((r.status, r.body.as_str()), (418, "short and stout"));
    assert_eq!(
        a.count() + b.count() + c.count(),
        0,
        "answered by gatehouse itself"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_400() {
    let a = Backend::start("a").await;
    let g = Gatehouse::start(&format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"a\"\n[pool.a]\nservers = [\"{}\"]\n",
        a.addr
    ));
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n", // HTTP/1.1 without Host
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: example.com\r\nBad Header\r\n\r\n",
    ] {
        let out = raw(g.addr, bad).await;
        assert!(
            out.starts_with("HTTP/1.1 400"),
            "{:?} -> {out:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(a.count(), 0);
    // The proxy still serves afterwards.
    assert_eq!(
        get_with(&g.url("/"), &[("host", "example.com")])
            .await
            .status,
        200
    );
    let _ = get(&g.url("/")).await;
}
