//! What the backend sees: forwarded headers, Host kept, hop-by-hop headers gone (both directions).

use gatehouse_e2e::client::{get_with, raw};
use gatehouse_e2e::{single_pool, Backend, Gatehouse};

fn config(b: &Backend, trusted: &str) -> String {
    single_pool(
        &format!("\"{}\"", b.addr),
        "",
        &format!("trusted_proxies = [{trusted}]"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_from_an_untrusted_client() {
    let b = Backend::start("b").await;
    let g = Gatehouse::start(&config(&b, ""));
    let r = get_with(
        &g.url("/x"),
        &[
            ("host", "Example.com:8443"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=6.6.6.6;proto=https"),
            ("x-request-id", "front-42"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = &b.seen()[0].headers;
    // The proxy's fields replace the client's: each arrives once (they are written beside the header map
    // for an HTTP/1.1 server, so a client copy left in the map would arrive too).
    for name in [
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-request-id",
    ] {
        assert_eq!(seen.get_all(name).iter().count(), 1, "{name} arrives once");
    }
    assert!(!seen.contains_key("forwarded"), "Forwarded removed");
    assert_eq!(
        seen["x-request-id"], "front-42",
        "a valid client id is kept"
    );
    assert_eq!(seen["host"], "Example.com:8443", "Host unchanged");
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "a spoofed X-Forwarded-For is not believed"
    );
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "Example.com:8443");
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_headers_from_a_trusted_proxy_are_appended_to() {
    let b = Backend::start("b").await;
    let g = Gatehouse::start(&config(&b, "\"127.0.0.0/8\""));
    get_with(
        &g.url("/"),
        &[
            ("host", "example.com"),
            ("x-forwarded-for", "203.0.113.7, 127.0.0.5"),
        ],
    )
    .await;
    let seen = &b.seen()[0].headers;
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.5, 127.0.0.1");
    assert_eq!(
        seen["x-real-ip"], "203.0.113.7",
        "right-most untrusted address"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let b = Backend::start("b").await;
    let g = Gatehouse::start(&config(&b, ""));
    let out = raw(
        g.addr,
        b"GET /hop HTTP/1.1\r\nHost: example.com\r\nConnection: close, X-Private\r\nX-Private: secret\r\n\
Keep-Alive: timeout=5\r\nTE: gzip\r\nTrailer: X-T\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eA==\r\n\
Proxy-Connection: keep-alive\r\nX-End-To-End: yes\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = &b.seen()[0].headers;
    for gone in [
        "x-private",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "transfer-encoding",
    ] {
        assert!(
            !seen.contains_key(gone),
            "{gone} reached the backend: {seen:?}"
        );
    }
    assert_eq!(seen["x-end-to-end"], "yes");
    assert!(seen
        .get("connection")
        .is_none_or(|v| !v.to_str().unwrap_or("").contains("X-Private")));

    // The backend's own hop-by-hop headers do not reach the client.
    let lower = out.to_ascii_lowercase();
    assert!(!lower.contains("x-resp-hop"), "{out}");
    assert!(!lower.contains("keep-alive: timeout=5"), "{out}");
    assert!(lower.contains("x-resp-kept: 1"), "{out}");
}
