//! A backend in a process of its own, for tests that must stop or kill a server the way an operator's VM
//! goes away (SIGSTOP, SIGKILL). Serves every path with its name (`/slow/MS` after MS milliseconds); prints its
//! address on stdout once it listens.
//! Usage: test-backend NAME

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let name: &'static str = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "backend".into())
        .leak();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    println!("{addr}");
    std::io::stdout().flush().expect("flush");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = service_fn(
                move |req: http::Request<hyper::body::Incoming>| async move {
                    // `/slow/MS` answers after MS milliseconds, anything else at once.
                    if let Some(ms) = req.uri().path().strip_prefix("/slow/") {
                        let ms = ms.parse().unwrap_or(0);
                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    }
                    let mut r = http::Response::new(Full::new(Bytes::from_static(name.as_bytes())));
                    r.headers_mut()
                        .insert("x-backend", http::HeaderValue::from_static(name));
                    Ok::<_, Infallible>(r)
                },
            );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
