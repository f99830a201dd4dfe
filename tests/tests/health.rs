//! Active health checks against the real binary: a server answering 503 on its health path leaves within
//! fall × interval and comes back after rise × interval; a stopped process (SIGSTOP) is out within 5 s with
//! the defaults; health is kept across a reload; all down → 503 with Retry-After; backups only then.

use gatehouse_e2e::admin::Admin;
use gatehouse_e2e::client::get;
use gatehouse_e2e::{eventually, single_pool, Backend, Gatehouse};
use std::io::BufRead;
use std::time::{Duration, Instant};

/// Which backend answers the next `n` requests.
async fn answers(g: &Gatehouse, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(&g.url("/")).await.backend().to_string());
    }
    out
}

#[tokio::test]
async fn a_server_failing_its_health_path_leaves_within_fall_intervals_and_returns_after_rise() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&single_pool(
        &format!("\"{}\", \"{}\"", a.addr, b.addr),
        "health = { path = \"/healthz\", interval = \"200ms\", timeout = \"500ms\", fall = 2, rise = 3 }",
        &admin.server_keys(),
    ));
    // Both become known-good (their first good probe), then share the traffic.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let s = admin.server("p", b.addr).await;
            s["health_check"] == "up" && admin.server("p", a.addr).await["health_check"] == "up"
        })
        .await
    );
    let both = answers(&g, 10).await;
    assert!(
        both.contains(&"a".into()) && both.contains(&"b".into()),
        "{both:?}"
    );

    b.set_health(503);
    let failed_at = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin.server("p", b.addr).await["health_check"] == "down"
        })
        .await
    );
    let took = failed_at.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "not before two probes: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "about fall × interval: {took:?}"
    );
    let s = admin.server("p", b.addr).await;
    assert_eq!(s["healthy"], false);
    assert!(
        s["health_check_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{s}"
    );
    let before = b.served();
    assert!(
        answers(&g, 20).await.iter().all(|n| n == "a"),
        "no traffic to the failing server"
    );
    assert_eq!(b.served(), before);
    assert!(g.logs().contains("health check: server down"));

    b.set_health(200);
    let healed_at = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin.server("p", b.addr).await["health_check"] == "up"
        })
        .await
    );
    assert!(
        healed_at.elapsed() >= Duration::from_millis(400),
        "rise = 3: three good probes"
    );
    assert!(
        answers(&g, 10).await.contains(&"b".into()),
        "back in service"
    );
    let m = admin.metrics().await;
    let series = format!(
        r#"gatehouse_server_health_transitions_total{{pool="p",server="{}",to="down"}}"#,
        b.addr
    );
    assert_eq!(gatehouse_e2e::admin::sample(&m, &series), Some(1.0), "{m}");
}

/// A backend in a process of its own, to SIGSTOP.
struct Process {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Process {
    fn start(name: &str) -> Process {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_test-backend"))
            .arg(name)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("test-backend");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its address");
        Process {
            addr: line.trim().parse().expect("address"),
            child,
        }
    }

    fn signal(&self, sig: &str) {
        assert!(std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_stopped_server_is_out_within_five_seconds_with_the_defaults() {
    let a = Backend::start("a").await;
    let frozen = Process::start("frozen");
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&single_pool(
        &format!("\"{}\", \"{}\"", a.addr, frozen.addr),
        "health = { path = \"/healthz\" }",
        &admin.server_keys(),
    ));
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin.server("p", frozen.addr).await["health_check"] == "up"
        })
        .await
    );
    assert!(answers(&g, 10).await.contains(&"frozen".into()));
    // The process stops: its socket still accepts (the kernel does), nothing answers.
    frozen.signal("-STOP");
    let stopped = Instant::now();
    assert!(
        eventually(Duration::from_secs(6), || async {
            admin.server("p", frozen.addr).await["health_check"] == "down"
        })
        .await
    );
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "out within 5 s, took {took:?}"
    );
    assert!(answers(&g, 10).await.iter().all(|n| n == "a"));
}

#[tokio::test]
async fn a_server_killed_under_steady_traffic_fails_no_idempotent_request() {
    let (one, two) = (Process::start("one"), Process::start("two"));
    let g = std::sync::Arc::new(Gatehouse::start(&single_pool(
        &format!("\"{}\", \"{}\"", one.addr, two.addr),
        "max_fails = 1\nfail_timeout = \"30s\"",
        "",
    )));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (g, stop) = (g.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let c = gatehouse_e2e::client::http1();
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = gatehouse_e2e::client::send(
                    &c,
                    http::Method::GET,
                    &g.url("/slow/50"),
                    &[],
                    bytes::Bytes::new(),
                )
                .await;
                statuses.push((r.status, r.backend().to_string()));
            }
            statuses
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Killed mid-request: its in-flight requests see their connections reset before any response byte.
    one.signal("-KILL");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.expect("client"));
    }
    let failed: Vec<_> = all.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\n{}",
        failed.len(),
        all.len(),
        g.logs()
    );
    assert!(
        all.iter().any(|(_, b)| b == "one"),
        "one served before it died"
    );
    assert!(
        all.iter().rev().take(8).all(|(_, b)| b == "two"),
        "two alone after"
    );
    assert!(
        g.logs().contains("sending the request to another server")
            || g.logs().contains("trying another")
    );
}

#[tokio::test]
async fn a_status_listed_in_fail_on_status_takes_the_server_out() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&single_pool(
        &format!("\"{}\", \"{}\"", a.addr, b.addr),
        "max_fails = 2\nfail_timeout = \"30s\"\nfail_on_status = [503]",
        &admin.server_keys(),
    ));
    // Both answer /status/503; after two each, both are out: 503 from Gatehouse itself, with Retry-After.
    for _ in 0..4 {
        assert_eq!(get(&g.url("/status/503")).await.status, 503);
    }
    assert_eq!(admin.server("p", a.addr).await["healthy"], false);
    assert_eq!(admin.server("p", b.addr).await["healthy"], false);
    let r = get(&g.url("/")).await;
    assert_eq!(r.status, 503);
    assert!(r.headers.contains_key("retry-after"), "Gatehouse's own 503");
    assert_eq!(
        a.served() + b.served(),
        4,
        "no request reached an ejected server"
    );
}

#[tokio::test]
async fn health_is_kept_across_a_reload_and_all_down_is_503_with_retry_after() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let admin = Admin::on_free_port(None);
    let servers = format!("\"{}\", \"{}\"", a.addr, b.addr);
    let health = "health = { path = \"/healthz\", interval = \"200ms\", fall = 1, rise = 1 }";
    let config = |extra: &str| {
        single_pool(
            &servers,
            &format!("{health}\n{extra}"),
            &admin.server_keys(),
        )
    };
    let g = Gatehouse::start(&config(""));
    b.set_health(500);
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin.server("p", b.addr).await["health_check"] == "down"
                && admin.server("p", a.addr).await["health_check"] == "up"
        })
        .await
    );
    // A reload that keeps the check keeps what it found: b is not "unknown" (or up) for a moment.
    g.write_config(&config("retries = 1"));
    assert!(
        eventually(Duration::from_secs(10), || async {
            admin.status().await["generation"] == 2
        })
        .await
    );
    assert_eq!(admin.server("p", b.addr).await["health_check"], "down");
    assert!(answers(&g, 10).await.iter().all(|n| n == "a"));

    a.set_health(500);
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin.server("p", a.addr).await["health_check"] == "down"
        })
        .await
    );
    let r = get(&g.url("/")).await;
    assert_eq!(r.status, 503, "every server down");
    assert_eq!(r.headers["retry-after"], "5");
}

#[tokio::test]
async fn a_backup_serves_only_when_every_primary_fails_its_checks() {
    let (a, spare) = (Backend::start("a").await, Backend::start("spare").await);
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&single_pool(
        &format!(
            "\"{}\", {{ addr = \"{}\", backup = true }}",
            a.addr, spare.addr
        ),
        "health = { path = \"/healthz\", interval = \"200ms\", fall = 1, rise = 1 }",
        &admin.server_keys(),
    ));
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin.server("p", a.addr).await["health_check"] == "up"
        })
        .await
    );
    assert!(answers(&g, 10).await.iter().all(|n| n == "a"));
    a.set_health(503);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&g.url("/")).await.backend() == "spare"
        })
        .await
    );
    assert!(answers(&g, 10).await.iter().all(|n| n == "spare"));
    a.set_health(200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get(&g.url("/")).await.backend() == "a"
        })
        .await
    );
}

#[tokio::test]
async fn a_name_whose_answer_changes_moves_traffic_without_a_reload() {
    let dns = gatehouse_e2e::dns::TestDns::start().await;
    // Two servers on one port, at two loopback addresses: the name says which.
    let port = gatehouse_e2e::free_port();
    let a = Backend::start_on("a", format!("127.0.0.2:{port}").parse().unwrap()).await;
    let b = Backend::start_on("b", format!("127.0.0.3:{port}").parse().unwrap()).await;
    dns.set("vm1.test", "127.0.0.2".parse().unwrap());
    let admin = Admin::on_free_port(None);
    let g = Gatehouse::start(&single_pool(
        &format!("\"vm1.test:{port}\""),
        "resolve_interval = \"1s\"",
        &format!("{}dns_servers = [\"{}\"]", admin.server_keys(), dns.addr),
    ));
    assert!(
        answers(&g, 5).await.iter().all(|n| n == "a"),
        "{}",
        g.logs()
    );
    dns.set("vm1.test", "127.0.0.3".parse().unwrap());
    assert!(
        eventually(Duration::from_secs(10), || async {
            get(&g.url("/")).await.backend() == "b"
        })
        .await,
        "{}",
        g.logs()
    );
    assert!(
        answers(&g, 5).await.iter().all(|n| n == "b"),
        "the old address left the pool"
    );
    assert!(g.logs().contains("server's addresses changed"));
    let s = admin.status().await;
    let servers = s["pools"][0]["servers"].as_array().unwrap().clone();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["addr"], b.addr.to_string());
    drop(a);
}
