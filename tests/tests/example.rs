//! The worked example (`config/examples/one-ip-three-vms.toml`): it passes `gatehouse check` as shipped, and,
//! moved onto loopback (ports, VMs, the admin network), it routes each site to its VM and each SSH port to
//! its VM's port 22.

use gatehouse_e2e::client::get_with;
use gatehouse_e2e::gatehouse::check_file;
use gatehouse_e2e::{free_port, Backend, Gatehouse};
use std::net::SocketAddr;
use std::path::Path;
use tokio::io::AsyncReadExt;

fn example() -> (String, std::path::PathBuf) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/one-ip-three-vms.toml");
    (std::fs::read_to_string(&path).expect("example"), path)
}

/// A TCP server that greets with `banner` and closes.
async fn ssh_like(banner: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(banner.as_bytes()).await;
        }
    });
    addr
}

#[tokio::test]
async fn the_worked_example_passes_check_and_routes_sites_and_ssh_ports_to_their_vms() {
    let (text, path) = example();
    let (ok, out) = check_file(&path);
    assert!(ok, "{out}");

    let dir = tempfile::tempdir().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cfg = text
        .replace("0.0.0.0:80\"", &format!("{http}\""))
        .replace("0.0.0.0:443", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{}", free_port()))
        .replace(
            "/var/log/gatehouse/access.log",
            &dir.path().join("access.log").display().to_string(),
        )
        .replace(
            "/var/lib/gatehouse/acme",
            &dir.path().join("acme").display().to_string(),
        )
        // No CA is reachable from a test: a dead loopback address (orders fail, sites serve plain HTTP).
        .replace(
            "directory = \"letsencrypt\"",
            "directory = \"https://127.0.0.1:1/directory\"",
        )
        .replace("redirect_https = true", "redirect_https = false")
        // The admin network is loopback here.
        .replace("192.168.1.0/24", "127.0.0.0/8");
    let mut vms = Vec::new();
    let mut ssh = Vec::new();
    for (i, banner) in [
        (1, "SSH-2.0-vm1\r\n"),
        (2, "SSH-2.0-vm2\r\n"),
        (3, "SSH-2.0-vm3\r\n"),
    ] {
        let vm = Backend::start(&format!("vm{i}")).await;
        cfg = cfg.replace(&format!("192.168.1.1{i}:80"), &vm.addr.to_string());
        cfg = cfg.replace(
            &format!("192.168.1.1{i}:22"),
            &ssh_like(banner).await.to_string(),
        );
        let port = free_port();
        cfg = cfg.replace(&format!("0.0.0.0:220{i}"), &format!("127.0.0.1:{port}"));
        ssh.push((port, banner));
        vms.push(vm);
    }
    assert!(
        !cfg.contains("0.0.0.0") && !cfg.contains("192.168."),
        "everything moved to loopback:\n{cfg}"
    );
    let g = Gatehouse::start_raw(&cfg, http);
    for (host, vm) in [
        ("shop.example.com", "vm1"),
        ("www.shop.example.com", "vm1"),
        ("blog.example.com", "vm2"),
        ("app.example.com", "vm3"),
    ] {
        let r = get_with(&g.url("/"), &[("host", host)]).await;
        assert_eq!((r.status, r.backend()), (200, vm), "{host}");
    }
    let r = get_with(&g.url("/admin/"), &[("host", "app.example.com")]).await;
    assert_eq!(
        r.status, 200,
        "the admin network (here loopback) reaches /admin/"
    );
    for (port, banner) in ssh {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut got = vec![0u8; banner.len()];
        tokio::time::timeout(std::time::Duration::from_secs(10), c.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, banner.as_bytes());
    }
}
