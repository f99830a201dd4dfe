//! The hardening findings, one test each, with raw sockets where the bytes matter. Each of these failed
//! before its fix.

use gatehouse_e2e::client::{get, get_with, raw};
use gatehouse_e2e::{Backend, Gatehouse};

/// Two sites, each with its own backend; `extra` goes into both pools.
fn two_sites(public: &Backend, internal: &Backend, pool_extra: &str) -> String {
    format!(
        r#"
[[site]]
hosts = ["public.example"]
default = true
  [[site.route]]
  path = "/"
  pool = "public"
  [[site.route]]
  path = "/admin/"
  pool = "public"
  deny = ["0.0.0.0/0", "::/0"]
[[site]]
hosts = ["internal.example"]
  [[site.route]]
  path = "/"
  pool = "internal"
[pool.public]
servers = ["{}"]
{pool_extra}
[pool.internal]
servers = ["{}"]
{pool_extra}
"#,
        public.addr, internal.addr
    )
}

/// 1. The Host sent upstream is the host the request was routed by: for absolute-form that is the URI's
///    authority (RFC 9112 §3.2.2), and a Host that is not host[:port] is refused.
#[tokio::test(flavor = "multi_thread")]
async fn host_sent_upstream_is_the_host_routed_by() {
    for http2 in [false, true] {
        let (public, internal) = (
            Backend::start("public").await,
            Backend::start("internal").await,
        );
        let g = Gatehouse::start(&two_sites(&public, &internal, &format!("http2 = {http2}")));
        let r = raw(
            g.addr,
            b"GET http://public.example/x HTTP/1.1\r\nHost: internal.example\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 200"), "http2={http2}: {r}");
        assert!(
            r.contains("x-backend: public"),
            "routed by the authority: {r}"
        );
        assert_eq!(internal.count(), 0);
        let seen = &public.seen()[0];
        let host = seen
            .headers
            .get("host")
            .map(|h| h.to_str().unwrap().to_string())
            .or_else(|| seen.uri.authority().map(|a| a.to_string()));
        assert_eq!(
            host.as_deref(),
            Some("public.example"),
            "http2={http2}: {seen:?}"
        );

        // A Host that smuggles a path past the deny on /admin/ (and would be pasted into an h2 :path).
        for bad in [
            "GET http://public.example/ HTTP/1.1\r\nHost: public.example/admin/?\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: public.example/admin/?\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: user@public.example\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: public.example:80:80\r\nConnection: close\r\n\r\n",
            "GET http://user@public.example/ HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
        ] {
            let r = raw(g.addr, bad.as_bytes()).await;
            assert!(r.starts_with("HTTP/1.1 400"), "http2={http2}: {bad:?} got {r}");
        }
        assert_eq!(public.count(), 1, "nothing bad reached a backend");

        // Connection may not name Host (or a header Gatehouse sets).
        let r = get_with(
            &g.url("/c"),
            &[
                ("host", "public.example"),
                ("connection", "host, x-forwarded-for, x-real-ip"),
            ],
        )
        .await;
        assert_eq!(r.status, 200);
        let seen = &public.seen()[1];
        let host = seen
            .headers
            .get("host")
            .map(|h| h.to_str().unwrap().to_string())
            .or_else(|| seen.uri.authority().map(|a| a.to_string()));
        assert_eq!(host.as_deref(), Some("public.example"));
        assert!(
            seen.headers.contains_key("x-forwarded-for") && seen.headers.contains_key("x-real-ip")
        );
    }
    let _ = get;
}

/// 7. X-Forwarded-For fails closed: an entry that is not a plain address ends the walk as an untrusted client,
///    never as the last trusted hop; `Forwarded`, `X-Forwarded-Port`, `X-Forwarded-Prefix` from untrusted
///    peers are removed.
#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_fail_closed() {
    let a = Backend::start("a").await;
    let g = Gatehouse::start(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n  allow = [\"127.0.0.0/8\"]\n[pool.p]\nservers = [\"{}\"]\n",
        a.addr
    ));
    // The peer (127.0.0.1) is trusted, so its X-Forwarded-For names the client.
    for (xff, want) in [
        ("10.9.9.9", 403),
        ("127.0.0.5", 200),
        ("203.0.113.7:51234", 403),
        ("garbage, 127.0.0.5", 200),
        ("127.0.0.5, garbage", 403),
        ("[2001:db8::1]:443", 403),
    ] {
        let r = get_with(&g.url("/"), &[("x-forwarded-for", xff)]).await;
        assert_eq!(r.status, want, "X-Forwarded-For: {xff}");
    }
    let seen = a.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["x-real-ip"], "127.0.0.5");

    // From an untrusted peer, the forwarding headers it sends are not passed on.
    let b = Backend::start("b").await;
    let g = Gatehouse::start(&gatehouse_e2e::single_pool(
        &format!("\"{}\"", b.addr),
        "",
        "",
    ));
    let r = get_with(
        &g.url("/"),
        &[
            ("forwarded", "for=198.51.100.1;proto=https"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/admin"),
            ("x-forwarded-for", "198.51.100.1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let h = &b.seen()[0].headers;
    for name in ["forwarded", "x-forwarded-port", "x-forwarded-prefix"] {
        assert!(!h.contains_key(name), "{name} passed on: {h:?}");
    }
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
}

/// 16. HTTP/2 splits cookies into several fields; an HTTP/1 backend gets them joined with "; " (RFC 9113 §8.2.3).
#[tokio::test(flavor = "multi_thread")]
async fn h2_cookies_are_joined_for_http1_backends() {
    use bytes::Bytes;
    let a = Backend::start("a").await;
    let g = Gatehouse::start(&gatehouse_e2e::single_pool(
        &format!("\"{}\"", a.addr),
        "",
        "",
    ));
    let client = gatehouse_e2e::client::h2c();
    let r = gatehouse_e2e::client::send(
        &client,
        http::Method::GET,
        &g.url("/"),
        &[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = &a.seen()[0];
    let cookies: Vec<&str> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["a=1; b=2; c=3"]);
}

/// 15. redirect_https on the default site redirects only to a configured host, not to whatever Host said.
#[tokio::test(flavor = "multi_thread")]
async fn redirect_https_goes_only_to_configured_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = gatehouse_e2e::tls::TestCa::new("t");
    let (cert, key) = ca.issue_files(dir.path(), "a", &["a.test", "*.w.test"]);
    let tls_port = gatehouse_e2e::free_port();
    let g = Gatehouse::start(&format!(
        "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:{tls_port}\"\ntls = true\n[[site]]\nhosts = [\"a.test\", \"*.w.test\"]\ndefault = true\nredirect_https = true\ntls = {{ cert = \"{}\", key = \"{}\" }}\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n",
        cert.display(),
        key.display()
    ));
    let loc = |host: &str| {
        let g = &g;
        let host = host.to_string();
        async move {
            let r = get_with(&g.url("/p?q=1"), &[("host", &host)]).await;
            assert_eq!(r.status, 308, "{host}");
            r.headers["location"].to_str().unwrap().to_string()
        }
    };
    assert_eq!(
        loc("a.test").await,
        format!("https://a.test:{tls_port}/p?q=1")
    );
    assert_eq!(
        loc("x.w.test").await,
        format!("https://x.w.test:{tls_port}/p?q=1"),
        "a wildcard match is configured"
    );
    assert_eq!(
        loc("evil.example").await,
        format!("https://a.test:{tls_port}/p?q=1"),
        "not an open redirect"
    );
}

/// A TCP backend that answers any request with a 101 to `upgrade`, then writes `after` on the raw socket.
async fn switching_backend(upgrade: &'static str, after: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: {upgrade}\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(after).await;
                let _ = s.read(&mut buf).await;
            });
        }
    });
    addr
}

/// 4. Only the upgrades a route allows are tunnelled (websocket by default), h2c never, and only when the 101
///    switches to what was asked.
#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_upgrades_are_tunnelled() {
    let a = Backend::start("a").await;
    let g = Gatehouse::start(&gatehouse_e2e::single_pool(&format!("\"{}\"", a.addr), "", ""));
    for upgrade in ["h2c", "foo", "websocket-not"] {
        let req = format!(
            "GET /u HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        );
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), raw_until_body(g.addr, req.as_bytes()))
            .await
            .expect("an answer");
        assert!(r.starts_with("HTTP/1.1 200"), "{upgrade}: {r}");
    }
    for seen in a.seen() {
        assert!(!seen.headers.contains_key("upgrade"), "an Upgrade reached the backend: {seen:?}");
        assert!(!seen.headers.contains_key("http2-settings"), "{seen:?}");
    }

    // A 101 to another protocol than the one asked for is not tunnelled.
    let sneaky = switching_backend("h2c", b"SECRET").await;
    let g = Gatehouse::start(&gatehouse_e2e::single_pool(&format!("\"{sneaky}\""), "", ""));
    let r = raw(
        g.addr,
        b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(!r.contains("SECRET"));

    // Another protocol, allowed by the route, is tunnelled.
    let custom = switching_backend("my-proto", b"HELLO").await;
    let g = Gatehouse::start(&format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n  upgrades = [\"my-proto\"]\n[pool.p]\nservers = [\"{custom}\"]\n"
    ));
    let r = raw(g.addr, b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: upgrade\r\nUpgrade: my-proto\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 101") && r.ends_with("HELLO"), "{r}");
}

/// Reads until a response head and its (small, Content-Length) body have arrived, on a kept-alive connection.
async fn raw_until_body(addr: std::net::SocketAddr, req: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
