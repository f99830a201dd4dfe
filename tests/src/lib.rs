//! End-to-end test support: the real `gatehouse` binary, real backends and real clients, all on 127.0.0.1.
//!
//! * [`Gatehouse`] writes a config, starts the binary built by cargo, waits for its port, and kills it on drop.
//! * [`Backend`] is a hyper server that answers with its name and records every request it saw, with routes
//!   for slow answers, large streamed bodies, body counting and WebSocket echo.
//! * [`client`] has small HTTP/1.1 and h2c clients; raw sockets are used where bytes matter.
//! * [`inproc::InProcess`] runs the proxy library in the test's own process, with a [`inproc::Recorder`] as its
//!   end-of-request hook, for what only code can see.

pub mod admin;
pub mod backend;
pub mod browser;
pub mod client;
pub mod dns;
pub mod gatehouse;
pub mod inproc;
pub mod pebble;
pub mod redis;
pub mod tls;

pub use backend::{Backend, Seen};
pub use gatehouse::Gatehouse;

/// The path of a program a test needs from Debian's `package`: a test fails, never skips, without it
/// (`tests/run.sh` installs it).
pub fn installed(bin: &str, package: &str) -> std::path::PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = std::path::PathBuf::from(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} not found: install the Debian package `{package}` (tests/run.sh does)");
}

/// An address on 127.0.0.1 that refuses connections, for the whole test: a socket stays bound to it without
/// listening (leaked on purpose). A port merely bound and released is not dead for long: the kernel may hand
/// it to another test's listener, or pick it as the source port of the proxy's own connect to it, which then
/// connects to itself (TCP simultaneous open) and reads its request back as a garbage response: a 502 that
/// `a_dead_server_in_a_pool_fails_no_request` caught once. A bound port is used for neither.
pub fn dead_addr() -> std::net::SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("loopback"))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    std::mem::forget(socket);
    addr
}

/// A port that was free a moment ago, for listeners the proxy (or a peer) binds itself.
///
/// It comes from outside the kernel's ephemeral range (below it; above it where the range starts low), so
/// no `bind(:0)` and no outgoing connection of a concurrent test can take it between this check and the
/// proxy's bind: a port from `bind(:0)` could, and CI once saw a cluster node fail with "Address already in
/// use". A per-process counter, started at an offset from the pid, keeps this process's tests from handing
/// out one port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static OUTSIDE_EPHEMERAL: std::sync::OnceLock<Option<(u32, u32)>> = std::sync::OnceLock::new();
    const LOW: u32 = 10_000;
    const ROOM: u32 = 1_000;
    let span = *OUTSIDE_EPHEMERAL.get_or_init(|| {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
        let mut bounds = range
            .iter()
            .flat_map(|s| s.split_whitespace())
            .filter_map(|n| n.parse::<u32>().ok());
        let (first, last) = (
            bounds.next().unwrap_or(32_768),
            bounds.next().unwrap_or(60_999),
        );
        // Below the range if there is room there, else above it (a machine whose range starts low).
        if first >= LOW + ROOM {
            Some((LOW, first.min(u32::from(u16::MAX))))
        } else if last + ROOM < u32::from(u16::MAX) {
            Some((last + 1, u32::from(u16::MAX)))
        } else {
            None
        }
    });
    let Some((from, to)) = span else {
        // No room outside the ephemeral range on this machine: the racy way, rather than none.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        return l.local_addr().expect("addr").port();
    };
    let width = to - from;
    let start = std::process::id().wrapping_mul(7_919) % width;
    for _ in 0..width {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(from + (start + n) % width).expect("below u16::MAX");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {from}..{to}");
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The usual test config: one default site (`example.com`) sending every path to pool `p`.
/// `servers` is the inside of the pool's `servers = [...]`; `pool_keys` and `server_keys` are extra lines
/// for `[pool.p]` and `[server]`.
pub fn single_pool(servers: &str, pool_keys: &str, server_keys: &str) -> String {
    format!(
        "[server]\n{server_keys}\n\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n\n[pool.p]\nservers = [{servers}]\n{pool_keys}\n"
    )
}

/// Backends named "a", "b" and "c", as most routing and reload tests want.
pub async fn three_backends() -> (Backend, Backend, Backend) {
    (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    )
}

/// Waits up to `limit` for the peer to close `s` (a read returns 0 or fails); returns how long it took, or
/// `None` when it stayed open (or sent bytes).
pub async fn closed_within<S>(s: &mut S, limit: std::time::Duration) -> Option<std::time::Duration>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let t = std::time::Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Some(t.elapsed()),
        _ => None,
    }
}
