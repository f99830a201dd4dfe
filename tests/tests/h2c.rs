//! HTTP/2 clients (h2c, prior knowledge) on a plain listener, forwarded to HTTP/1.1 backends.
//! For h2 the host comes from :authority, here 127.0.0.1, so the sites name that.

use bytes::Bytes;
use gatehouse_e2e::client::{h2c, send};
use gatehouse_e2e::{Backend, Gatehouse};
use http::{Method, Version};

#[tokio::test(flavor = "multi_thread")]
async fn h2c_client_with_multiplexed_requests() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let g = Gatehouse::start(&format!(
        "[[site]]\nhosts = [\"127.0.0.1\"]\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{}\", \"{}\"]\n",
        a.addr, b.addr
    ));
    let client = h2c();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, url) = (client.clone(), g.url(&format!("/item/{i}")));
        tasks.push(tokio::spawn(async move {
            send(&client, Method::GET, &url, &[], Bytes::new()).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task").status, 200);
    }
    assert_eq!((a.count(), b.count()), (10, 10), "round robin across both");
    let seen = a.seen();
    assert_eq!(seen[0].version, Version::HTTP_11, "forwarded as HTTP/1.1");
    assert_eq!(
        seen[0].headers["host"],
        g.addr.to_string(),
        "Host filled from :authority"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn h2c_respond_route_and_missing_route() {
    let g = Gatehouse::start("[[site]]\nhosts = [\"127.0.0.1\"]\n  [[site.route]]\n  path = \"/hi\"\n  respond = \"hi\"\n");
    let client = h2c();
    let r = send(&client, Method::GET, &g.url("/hi"), &[], Bytes::new()).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hi"));
    let r = send(&client, Method::GET, &g.url("/nothing"), &[], Bytes::new()).await;
    assert_eq!(r.status, 404);
}
