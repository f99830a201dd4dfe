//! WebSocket (HTTP/1.1 Upgrade) through the proxy, both ways.

use futures_util::{SinkExt, StreamExt};
use gatehouse_e2e::{Backend, Gatehouse};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_through_the_proxy() {
    let b = Backend::start("ws").await;
    let g = Gatehouse::start(&format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nbalance = \"least_conn\"\nservers = [\"{}\"]\n",
        b.addr
    ));
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", g.addr))
        .await
        .expect("handshake");
    assert_eq!(resp.status().as_u16(), 101);
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::Text(text.clone().into()))
            .await
            .expect("send");
        let back = ws.next().await.expect("frame").expect("message");
        assert_eq!(back.into_text().expect("text").as_str(), text);
    }
    ws.send(Message::Binary(vec![0u8, 1, 2, 255].into()))
        .await
        .expect("send");
    let back = ws.next().await.expect("frame").expect("message");
    assert_eq!(back.into_data().as_ref(), &[0u8, 1, 2, 255]);

    // The upgrade request reached the backend with its Upgrade headers, not stripped as hop-by-hop.
    let seen = &b.seen()[0].headers;
    assert_eq!(
        seen["upgrade"].to_str().unwrap().to_ascii_lowercase(),
        "websocket"
    );
    assert!(seen["connection"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase()
        .contains("upgrade"));
    ws.close(None).await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_through_an_http2_pool_uses_http1_for_the_upgrade() {
    let b = Backend::start("ws").await;
    let g = Gatehouse::start(&format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nhttp2 = true\nservers = [\"{}\"]\n",
        b.addr
    ));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", g.addr))
        .await
        .expect("handshake");
    ws.send(Message::Text("over h1".into()))
        .await
        .expect("send");
    let back = ws.next().await.expect("frame").expect("message");
    assert_eq!(back.into_text().expect("text").as_str(), "over h1");
    assert_eq!(
        b.seen()[0].version,
        http::Version::HTTP_11,
        "the upgrade went over HTTP/1.1"
    );
    // Ordinary requests to the same pool use HTTP/2.
    let r = gatehouse_e2e::client::get(&g.url("/plain")).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.seen()[1].version, http::Version::HTTP_2);
}

#[tokio::test(flavor = "multi_thread")]
async fn least_conn_counts_an_open_websocket_until_it_closes() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let g = Gatehouse::start(&format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nbalance = \"least_conn\"\nservers = [\"{}\", \"{}\"]\n",
        a.addr, b.addr
    ));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", g.addr))
        .await
        .expect("handshake");
    let busy = if a.count() == 1 { "a" } else { "b" };
    // While the tunnel is open its server holds one in-flight unit: every plain request goes to the other.
    for _ in 0..6 {
        let r = gatehouse_e2e::client::get(&g.url("/x")).await;
        assert_ne!(
            r.backend(),
            busy,
            "request sent to the server holding the WebSocket"
        );
    }
    ws.close(None).await.expect("close");
    drop(ws);
    // Closed: the count goes back to zero and both servers share again.
    let mut seen_busy = false;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if gatehouse_e2e::client::get(&g.url("/y")).await.backend() == busy {
            seen_busy = true;
            break;
        }
    }
    assert!(seen_busy, "the closed WebSocket still counted");
}
