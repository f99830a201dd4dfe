//! 100 MB each way through the proxy, with the proxy's memory staying flat: bodies are streamed, never held.

use bytes::Bytes;
use futures_util::StreamExt;
use gatehouse_e2e::backend::Repeat;
use gatehouse_e2e::{Backend, Gatehouse};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const SIZE: u64 = 100 * 1024 * 1024;
/// Peak RSS may grow by this much at most while 100 MB pass; buffering a body would cost > 100 MB.
const FLAT_KIB: u64 = 30 * 1024;

fn config(b: &Backend) -> String {
    format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{}\"]\n",
        b.addr
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn large_download_and_upload_stream_with_flat_memory() {
    let b = Backend::start("b").await;
    let g = Gatehouse::start(&config(&b));
    // Warm up so that baseline includes the connection machinery.
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let _ = client
        .get(g.url("/").parse().unwrap())
        .await
        .unwrap()
        .into_body()
        .collect()
        .await;
    let baseline = g.memory_kib("VmRSS");

    // Download: count bytes as they arrive.
    let resp = client
        .get(g.url(&format!("/bytes/{SIZE}")).parse().unwrap())
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body().into_data_stream();
    let mut got: u64 = 0;
    while let Some(chunk) = body.next().await {
        got += chunk.expect("chunk").len() as u64;
    }
    assert_eq!(got, SIZE);

    // Upload: a streamed request body; the backend counts what it receives.
    let upload = Client::builder(TokioExecutor::new()).build_http::<Repeat>();
    let req = http::Request::post(g.url("/count"))
        .body(Repeat::new(SIZE))
        .unwrap();
    let resp = upload.request(req).await.expect("upload");
    assert_eq!(resp.status(), 200);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&text), SIZE.to_string());

    let peak = g.memory_kib("VmHWM");
    assert!(
        peak < baseline + FLAT_KIB,
        "proxy peak RSS {peak} KiB vs {baseline} KiB before 2 x 100 MB: not streaming"
    );
}
