//! Listening sockets with several workers: one socket per worker (SO_REUSEPORT), and a port that anything
//! else holds still refused at start, as it is with one socket.

use gatehouse_e2e::gatehouse::binary;
use gatehouse_e2e::{free_port, Backend, Gatehouse};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn config(backend: SocketAddr) -> String {
    format!(
        "[server]\nworkers = 2\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{backend}\"]\n"
    )
}

/// Sockets in LISTEN state on 127.0.0.1:`port`, from /proc/net/tcp (local address `0100007F:PORT`, state 0A).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let mut f = l.split_whitespace();
            f.nth(1) == Some(local.as_str()) && f.nth(1) == Some("0A")
        })
        .count()
}

/// A listener of the test's own on `addr` with SO_REUSEPORT: another process of the same user, as the kernel
/// sees it.
fn hold_with_reuseport(addr: SocketAddr) -> socket2::Socket {
    let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    holder.set_reuse_address(true).unwrap();
    holder.set_reuse_port(true).unwrap();
    holder.bind(&addr.into()).unwrap();
    holder.listen(16).unwrap();
    holder
}

#[test]
fn each_worker_accepts_on_a_socket_of_its_own() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(Backend::start("b"));
    let g = Gatehouse::start(&config(backend.addr));
    // Without SO_REUSEPORT per worker there is one socket, shared.
    assert_eq!(listening_sockets(g.addr.port()), 2, "{}", g.logs());
    // The kernel spreads new connections over both: every one is served.
    for i in 0..40 {
        let r = rt.block_on(gatehouse_e2e::client::get(&g.url("/")));
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
}

#[test]
fn a_port_another_process_holds_with_reuseport_is_refused_at_start() {
    // Another process of the same user holding the port with SO_REUSEPORT (a second Gatehouse, say) would let
    // ours bind beside it and take a share of its connections, silently; it must be "cannot bind" instead.
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let holder = hold_with_reuseport(addr);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatehouse.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n[[listener]]\nname = \"taken\"\nbind = \"{addr}\"\n",
            config("127.0.0.1:9".parse().unwrap())
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(binary())
        .args(["run", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let status =
        status.unwrap_or_else(|| panic!("gatehouse bound a port that was taken:\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot bind") && stderr.contains(&addr.to_string()),
        "{stderr}"
    );
    drop(holder);
}

#[test]
fn a_reload_onto_a_taken_port_is_refused_and_the_rest_keeps_serving() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(Backend::start("b"));
    let g = Gatehouse::start(&config(backend.addr));
    let taken: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let holder = hold_with_reuseport(taken);

    g.write_config(&format!(
        "{}\n[[listener]]\nname = \"taken\"\nbind = \"{taken}\"\n",
        config(backend.addr)
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !g.logs().contains("cannot bind") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            g.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing of ours is listening on the taken port, and the old listener still serves.
    assert_eq!(listening_sockets(taken.port()), 1, "{}", g.logs());
    let r = rt.block_on(gatehouse_e2e::client::get(&g.url("/")));
    assert_eq!(r.status, 200, "{}", r.body);
    drop(holder);
}
