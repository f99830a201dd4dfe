//! Client-side protections: idle keep-alive timeout, slow request heads, ambiguous framing, path tricks
//! against access rules, and signals that must not kill the process.

use gatehouse_e2e::client::{get, raw};
use gatehouse_e2e::{closed_within, Backend, Gatehouse};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

fn respond_config(extra_server: &str) -> String {
    format!(
        "[server]\n{extra_server}\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  respond = \"ok\"\n"
    )
}

/// Reads one small response (headers + "ok") from a keep-alive connection.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("response")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keepalive_lasts_idle_timeout_not_header_timeout() {
    let g = Gatehouse::start(&respond_config(
        "idle_timeout = \"1500ms\"\nheader_read_timeout = \"400ms\"",
    ));
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(REQ).await.unwrap();
    assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    // Idle longer than header_read_timeout: the connection must still serve.
    tokio::time::sleep(Duration::from_millis(900)).await;
    s.write_all(REQ).await.unwrap();
    assert!(
        read_response(&mut s).await.starts_with("HTTP/1.1 200"),
        "closed before idle_timeout"
    );
    // Then idle past idle_timeout: closed.
    let took = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("idle connection not closed");
    assert!(took >= Duration::from_millis(1200), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_request_head_is_dropped_after_header_read_timeout() {
    let g = Gatehouse::start(&respond_config(
        "idle_timeout = \"10s\"\nheader_read_timeout = \"500ms\"",
    ));
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: exam").await.unwrap();
    let took = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("slow head not dropped");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(
        get(&g.url("/")).await.status,
        200,
        "others are still served"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn content_length_with_transfer_encoding_is_refused() {
    let b = Backend::start("b").await;
    let g = Gatehouse::start(&format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{}\"]\n",
        b.addr
    ));
    let out = raw(
        g.addr,
        b"POST /count HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("connection: close"),
        "{out}"
    );
    assert_eq!(b.count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_and_dotted_paths_do_not_dodge_an_allow_rule() {
    let b = Backend::start("b").await;
    let g = Gatehouse::start(&format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n  [[site.route]]\n  path = \"/admin/\"\n  pool = \"p\"\n  allow = [\"10.0.0.0/8\"]\n[pool.p]\nservers = [\"{}\"]\n",
        b.addr
    ));
    for path in [
        "/admin/x",
        "/%61dmin/x",
        "//admin/x",
        "/public/../admin/x",
        "/./admin/x",
        "/%2e%2e/admin/x",
    ] {
        let out = raw(
            g.addr,
            format!("GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 403"), "{path}: {out}");
    }
    assert_eq!(b.count(), 0);
    // An allowed request is forwarded with the normalized path.
    let out = raw(
        g.addr,
        b"GET /x/../y/%7Euser?q=%2F HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(b.seen()[0].uri.to_string(), "/y/~user?q=%2F");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigusr1_and_sighup_do_not_stop_the_proxy() {
    let g = Gatehouse::start(&respond_config(""));
    g.signal(10); // SIGUSR1
    g.signal(1); // SIGHUP
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&g.url("/")).await.status, 200, "{}", g.logs());
}
