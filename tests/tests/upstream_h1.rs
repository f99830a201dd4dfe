//! Gatehouse's own HTTP/1.1 client to the servers (`upstream/h1/`), against a backend that writes raw bytes:
//! each framing a server may use arrives whole and the connection is reused exactly when it may be; framings
//! a proxy must not guess at are a 502; bytes a server sends past its response end that connection; and a
//! keep-alive connection the server closes just as a request goes is not the client's problem when the
//! request may safely go again.

use gatehouse_e2e::client::raw;
use gatehouse_e2e::Gatehouse;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the backend does with request `req` (from 1) on connection `conn` (from 1).
enum Reply {
    /// Writes the bytes and reads the next request.
    Send(&'static [u8]),
    /// Writes the bytes and closes.
    SendClose(&'static [u8]),
    /// Closes without a byte.
    Close,
}

type Script = fn(conn: usize, req: usize) -> Reply;

/// A backend that follows `script`, and counts its connections.
async fn backend(script: Script) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let conn = count.fetch_add(1, SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut req = 0;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        req += 1;
                        match script(conn, req) {
                            Reply::Send(b) => {
                                if s.write_all(b).await.is_err() {
                                    return;
                                }
                            }
                            Reply::SendClose(b) => {
                                let _ = s.write_all(b).await;
                                return;
                            }
                            Reply::Close => return,
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
            });
        }
    });
    (addr, conns)
}

fn start(server: std::net::SocketAddr) -> Gatehouse {
    // One worker: idle connections are kept per worker, and the tests count the backend's connections.
    // No passive health: the broken answers must not take the only server out.
    Gatehouse::start(&format!(
        "[server]\nworkers = 1\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{server}\"]\nmax_fails = 0\n"
    ))
}

/// One request on a new client connection; the whole answer as text.
async fn ask(g: &Gatehouse, method: &str) -> String {
    let req = format!("{method} / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    raw(g.addr, req.as_bytes()).await
}

/// The data of a chunked body (as Gatehouse sends it on to the client).
fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = b.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n.min(rest.len())]);
        b = rest.get(n + 2..).unwrap_or("");
    }
    out
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_framing_arrives_whole_and_the_connection_is_reused_when_it_may_be() {
    let (addr, conns) = backend(|conn, req| match (conn, req) {
        (1, 1) => Reply::Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
        (1, 2) => Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc"),
        (1, 3) => Reply::Send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
        _ => Reply::SendClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the close"),
    })
    .await;
    let g = start(addr);
    let a = ask(&g, "GET").await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert_eq!(dechunk(body(&a)), "hello world", "chunked body: {a}");
    assert!(
        !a.to_lowercase().contains("x-trailer"),
        "trailers are dropped: {a}"
    );
    let a = ask(&g, "GET").await;
    assert_eq!(body(&a), "abc", "{a}");
    assert!(a.to_lowercase().contains("content-length: 3\r\n"), "{a}");
    let a = ask(&g, "GET").await;
    assert!(a.starts_with("HTTP/1.1 204"), "1xx skipped: {a}");
    assert_eq!(
        conns.load(SeqCst),
        1,
        "one server connection served all three"
    );
    let a = ask(&g, "GET").await;
    assert!(body(&a).contains("until the close"), "{a}");
    // A body delimited by the close leaves no connection to reuse.
    let a = ask(&g, "GET").await;
    assert!(body(&a).contains("until the close"), "{a}");
    assert_eq!(conns.load(SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn framings_a_proxy_must_not_guess_at_are_a_502() {
    let (addr, _) = backend(|conn, _| match conn {
        1 => Reply::SendClose(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        ),
        2 => Reply::SendClose(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        3 => Reply::SendClose(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
        4 => Reply::SendClose(b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"),
        _ => Reply::SendClose(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    })
    .await;
    let g = start(addr);
    for what in [
        "two lengths",
        "a coding after chunked",
        "a negative length",
        "a folded line",
    ] {
        let a = ask(&g, "GET").await;
        assert!(a.starts_with("HTTP/1.1 502"), "{what}: {a}");
    }
    assert_eq!(body(&ask(&g, "GET").await), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_past_a_response_end_its_connection() {
    let (addr, conns) = backend(|conn, _| match conn {
        1 => Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"),
        _ => Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"),
    })
    .await;
    let g = start(addr);
    assert_eq!(body(&ask(&g, "GET").await), "ok");
    assert_eq!(
        body(&ask(&g, "GET").await),
        "fresh",
        "the stale answer was never used"
    );
    assert_eq!(conns.load(SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_connection_closed_under_a_safe_request_is_retried_on_a_new_one() {
    // Every connection answers its first request and closes without a byte at its second, as a server
    // does when its keep-alive timeout crosses a request.
    let (addr, conns) = backend(|conn, req| match req {
        1 if conn % 2 == 1 => Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"),
        1 => Reply::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nretry"),
        _ => Reply::Close,
    })
    .await;
    let g = start(addr);
    assert_eq!(body(&ask(&g, "GET").await), "first");
    // The pooled connection closes under this GET: it goes again on a new connection (one server only, so
    // no other server could have taken it).
    let a = ask(&g, "GET").await;
    assert_eq!(body(&a), "retry", "{a}");
    assert_eq!(conns.load(SeqCst), 2);
    // A POST is never sent twice: the same close is a 502.
    let a = ask(&g, "POST").await;
    assert!(a.starts_with("HTTP/1.1 502"), "{a}");
}
