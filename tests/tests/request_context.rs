//! The end-of-request hook: exactly one report per request, with the right site, route, pool, server,
//! attempts, status, byte counts and end — for proxied answers, Gatehouse's own, aborted ones and tunnels.
//! The proxy runs in this process (the same library the binary runs) with a recording hook.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gatehouse_e2e::client::{http1, send};
use gatehouse_e2e::inproc::{InProcess, Recorder};
use gatehouse_e2e::{dead_addr, single_pool, Backend};
use gatehouse_proxy::context::{EndReason, ErrorKind, Outcome};
use http::Method;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn start(config: &str) -> (InProcess, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    (InProcess::start(config, rec.clone()), rec)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxied_200_and_an_upload_are_reported_once_each() {
    let a = Backend::start("a").await;
    let (g, rec) = start(&single_pool(&format!("\"{}\"", a.addr), "", ""));
    let client = http1();
    let r = send(&client, Method::GET, &g.url("/hello"), &[], Bytes::new()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "a"));
    let r = send(
        &client,
        Method::POST,
        &g.url("/count"),
        &[],
        Bytes::from(vec![b'x'; 1000]),
    )
    .await;
    assert_eq!(r.body, "1000");

    let ended = rec.wait_for(2).await;
    assert_eq!(ended.len(), 2, "{ended:?}");
    let (get, post) = (&ended[0], &ended[1]);
    assert_eq!(get.site.as_deref(), Some("example.com"));
    assert_eq!(get.route.as_deref(), Some("/"));
    assert_eq!(get.pool.as_deref(), Some("p"));
    assert_eq!(get.server, Some(a.addr));
    assert_eq!(get.attempts, [(a.addr, Outcome::Responded)]);
    assert_eq!(
        (get.status, get.error, get.end),
        (Some(200), None, Some(EndReason::Complete))
    );
    assert_eq!((get.bytes_in, get.bytes_out), (0, 1), "the body \"a\"");
    assert!(get.times_in_order, "{get:?}");
    assert_eq!(
        (post.bytes_in, post.bytes_out),
        (1000, 4),
        "1000 up, \"1000\" down"
    );
    assert_ne!(get.id, post.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_request_records_both_attempts() {
    let a = Backend::start("a").await;
    let dead = dead_addr();
    // The dead primary is always picked first; its failed connect moves the request to the backup.
    let servers = format!("\"{dead}\", {{ addr = \"{}\", backup = true }}", a.addr);
    let (g, rec) = start(&single_pool(&servers, "max_fails = 0", ""));
    let r = send(&http1(), Method::GET, &g.url("/"), &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
    let ended = rec.wait_for(1).await;
    assert_eq!(ended.len(), 1);
    let e = &ended[0];
    assert_eq!(
        e.attempts,
        [(dead, Outcome::ConnectFailed), (a.addr, Outcome::Responded)]
    );
    assert_eq!(
        (e.server, e.status, e.end),
        (Some(a.addr), Some(200), Some(EndReason::Complete))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_of_gatehouse_itself_404_and_502_are_reported() {
    let config = format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/api/\"\n  pool = \"p\"\n\n[pool.p]\nservers = [\"{}\"]\nmax_fails = 0\nretries = 0\n",
        dead_addr()
    );
    let (g, rec) = start(&config);
    let client = http1();
    assert_eq!(
        send(&client, Method::GET, &g.url("/nothing"), &[], Bytes::new())
            .await
            .status,
        404
    );
    assert_eq!(
        send(&client, Method::GET, &g.url("/api/x"), &[], Bytes::new())
            .await
            .status,
        502
    );
    let ended = rec.wait_for(2).await;
    assert_eq!(ended.len(), 2, "{ended:?}");
    let (not_found, bad_gateway) = (&ended[0], &ended[1]);
    assert_eq!(not_found.site.as_deref(), Some("example.com"));
    assert_eq!(
        (not_found.route.as_deref(), not_found.pool.as_deref()),
        (None, None)
    );
    assert_eq!(
        (not_found.status, not_found.error, not_found.end),
        (
            Some(404),
            Some(ErrorKind::NoRoute),
            Some(EndReason::Complete)
        )
    );
    assert!(not_found.attempts.is_empty());
    assert_eq!(not_found.bytes_out, "404 Not Found\n".len() as u64);
    assert_eq!(bad_gateway.site.as_deref(), Some("example.com"));
    assert_eq!(bad_gateway.bytes_out, "502 Bad Gateway\n".len() as u64);
    assert_eq!(bad_gateway.route.as_deref(), Some("/api/"));
    assert_eq!(bad_gateway.pool.as_deref(), Some("p"));
    assert_eq!(bad_gateway.attempts.len(), 1);
    assert_eq!(bad_gateway.attempts[0].1, Outcome::ConnectFailed);
    assert_eq!(
        (bad_gateway.status, bad_gateway.error, bad_gateway.end),
        (
            Some(502),
            Some(ErrorKind::Connect),
            Some(EndReason::UpstreamError)
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_mid_body_is_a_client_abort() {
    let a = Backend::start("a").await;
    let (g, rec) = start(&single_pool(&format!("\"{}\"", a.addr), "", ""));
    // Download: read the head and a little of a 64 MiB body, then hang up.
    let mut s = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    s.write_all(b"GET /bytes/67108864 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    // Upload: send half of a declared body, then hang up.
    let mut s = tokio::net::TcpStream::connect(g.addr).await.unwrap();
    s.write_all(b"POST /count HTTP/1.1\r\nHost: example.com\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'x'; 50_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);

    let ended = rec.wait_for(2).await;
    assert_eq!(ended.len(), 2, "{ended:?}");
    let download = &ended[0];
    assert_eq!(
        (download.status, download.end),
        (Some(200), Some(EndReason::ClientAbort))
    );
    assert!(download.bytes_out < 64 << 20, "{download:?}");
    let upload = &ended[1];
    assert_eq!(upload.end, Some(EndReason::ClientAbort), "{upload:?}");
    assert!(
        upload.bytes_in > 0 && upload.bytes_in <= 50_000,
        "{upload:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_is_reported_when_it_closes() {
    let a = Backend::start("a").await;
    let (g, rec) = start(&single_pool(&format!("\"{}\"", a.addr), "", ""));
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", g.addr))
        .await
        .expect("websocket through the proxy");
    assert_eq!(resp.status().as_u16(), 101);
    ws.send("hello".into()).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "hello");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rec.ended().is_empty(),
        "reported before the tunnel closed: {:?}",
        rec.ended()
    );
    ws.close(None).await.unwrap();
    drop(ws);

    let ended = rec.wait_for(1).await;
    assert_eq!(ended.len(), 1, "{ended:?}");
    let e = &ended[0];
    assert_eq!(
        (e.status, e.end, e.server),
        (Some(101), Some(EndReason::Complete), Some(a.addr))
    );
    assert!(e.bytes_in > 5 && e.bytes_out > 5, "frames both ways: {e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_requests_many_reports_each_id_once() {
    let a = Backend::start("a").await;
    let (g, rec) = start(&single_pool(&format!("\"{}\"", a.addr), "", ""));
    let client = http1();
    for _ in 0..50 {
        assert_eq!(
            send(&client, Method::GET, &g.url("/"), &[], Bytes::new())
                .await
                .status,
            200
        );
    }
    let h2 = gatehouse_e2e::client::h2c();
    for _ in 0..50 {
        assert_eq!(
            send(&h2, Method::GET, &g.url("/"), &[], Bytes::new())
                .await
                .status,
            200
        );
    }
    let ended = rec.wait_for(100).await;
    assert_eq!(ended.len(), 100);
    let ids: HashSet<&str> = ended.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 100, "every id reported once");
    assert!(ended.iter().all(|e| e.end == Some(EndReason::Complete)));
}

/// Answers with no body on the wire (HEAD, 204), proxied or Gatehouse's own, end complete, not aborted.
#[tokio::test(flavor = "multi_thread")]
async fn bodiless_answers_are_complete() {
    let a = Backend::start("a").await;
    let config = format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/api/\"\n  pool = \"p\"\n  strip_prefix = true\n  [[site.route]]\n  path = \"/fixed\"\n  respond = \"hello\"\n[pool.p]\nservers = [\"{}\"]\n",
        a.addr
    );
    let (g, rec) = start(&config);
    let client = http1();
    for (method, path, status) in [
        (Method::HEAD, "/api/x", 200),
        (Method::HEAD, "/nothing", 404),
        (Method::HEAD, "/fixed", 200),
        (Method::GET, "/api/status/204", 204),
    ] {
        assert_eq!(
            send(&client, method, &g.url(path), &[], Bytes::new())
                .await
                .status,
            status,
            "{path}"
        );
    }
    let ended = rec.wait_for(4).await;
    assert_eq!(ended.len(), 4, "{ended:?}");
    for e in &ended {
        assert_eq!(e.end, Some(EndReason::Complete), "{e:?}");
        assert_eq!(e.bytes_out, 0, "{e:?}");
    }
}
