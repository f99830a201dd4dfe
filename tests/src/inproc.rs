//! Gatehouse in the test's own process: the same library the binary runs (workers, listeners, the request
//! path), started with a recording end-of-request hook, for what only code can observe.

use gatehouse_proxy::context::{EndReason, ErrorKind, Outcome};
use gatehouse_proxy::{Observer, Proxy, RequestCtx, Snapshot, Workers};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the hook was told about one request, with the snapshot's names resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub id: String,
    pub site: Option<String>,
    pub route: Option<String>,
    pub pool: Option<String>,
    pub server: Option<SocketAddr>,
    pub attempts: Vec<(SocketAddr, Outcome)>,
    pub status: Option<u16>,
    pub error: Option<ErrorKind>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub end: Option<EndReason>,
    /// Every timestamp the context carries was in order (accepted ≤ head read ≤ connected ≤ head ≤ last byte).
    pub times_in_order: bool,
}

/// Records every request's end.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<Vec<Ended>>);

impl Observer for Recorder {
    fn request_end(&self, snapshot: &Snapshot, ctx: &RequestCtx) {
        let names = snapshot.names(ctx);
        let t = &ctx.times;
        let accepted = ctx.conn().peer.accepted;
        let in_order = accepted <= t.head_read
            && t.upstream_connected.is_none_or(|c| t.head_read <= c)
            && t.upstream_head
                .is_none_or(|h| t.upstream_connected.is_some_and(|c| c <= h))
            && t.last_byte
                .is_some_and(|l| t.head_read <= l && t.upstream_head.is_none_or(|h| h <= l));
        let e = Ended {
            id: ctx.id.to_string(),
            site: names.site.map(Into::into),
            route: names.route.map(Into::into),
            pool: names.pool.map(Into::into),
            server: ctx.server(),
            attempts: ctx.attempts.iter().map(|a| (a.addr, a.outcome)).collect(),
            status: ctx.status.map(|s| s.as_u16()),
            error: ctx.error,
            bytes_in: ctx.bytes_in.get(),
            bytes_out: ctx.bytes_out,
            end: ctx.end,
            times_in_order: in_order,
        };
        self.0.lock().expect("recorder").push(e);
    }
}

impl Recorder {
    pub fn ended(&self) -> Vec<Ended> {
        self.0.lock().expect("recorder").clone()
    }

    /// Waits (up to 10 s) until `n` requests have ended, then a little more to catch any extra report.
    pub async fn wait_for(&self, n: usize) -> Vec<Ended> {
        let ok = crate::eventually(Duration::from_secs(10), || async {
            self.ended().len() >= n
        })
        .await;
        assert!(
            ok,
            "only {} of {n} requests ended: {:?}",
            self.ended().len(),
            self.ended()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.ended()
    }
}

pub struct InProcess {
    pub proxy: Arc<Proxy>,
    pub addr: SocketAddr,
    workers: Option<Workers>,
}

impl InProcess {
    /// Starts the proxy with `config` plus a listener on 127.0.0.1 (port 0) and one worker. Call from a tokio
    /// runtime (the proxy's control tasks run on it).
    pub fn start(config: &str, observer: Arc<dyn Observer>) -> InProcess {
        let full = format!("{config}\n\n[[listener]]\nname = \"test\"\nbind = \"127.0.0.1:0\"\n");
        let cfg = gatehouse_config::parse(&full, "inproc.toml").expect("config");
        let workers = Workers::start(1).expect("workers");
        let proxy = Proxy::start(cfg, workers.handles(), observer).expect("proxy starts");
        let addr = *proxy.local_addrs().values().next().expect("a listener");
        InProcess {
            proxy,
            addr,
            workers: Some(workers),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(w) = self.workers.take() {
            w.stop();
        }
    }
}
