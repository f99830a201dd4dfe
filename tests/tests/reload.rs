//! Hot reload: file edits and SIGHUP apply a new config without dropping anything; bad edits change nothing;
//! SIGTERM drains.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gatehouse_e2e::client::{get, http1, send};
use gatehouse_e2e::{eventually, free_port, three_backends, Backend, Gatehouse};
use http::Method;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const APPLY: Duration = Duration::from_secs(5);

/// "/" goes to pool `target`; with `extra`, a pool and route `/extra/` exist too.
fn config(a: &Backend, b: &Backend, c: &Backend, target: &str, extra: bool) -> String {
    let mut s = format!(
        r#"
[[site]]
hosts = ["example.com"]
default = true
  [[site.route]]
  path = "/"
  pool = "{target}"
"#
    );
    if extra {
        s += "  [[site.route]]\n  path = \"/extra/\"\n  pool = \"extra\"\n";
        s += &format!("[pool.extra]\nservers = [\"{}\"]\n", c.addr);
    }
    s += &format!(
        "[pool.pa]\nbalance = \"least_conn\"\nservers = [\"{}\"]\n[pool.pb]\nservers = [\"{}\"]\n",
        a.addr, b.addr
    );
    s
}

async fn backend_of(g: &Gatehouse, path: &str) -> String {
    get(&g.url(path)).await.backend().to_string()
}

/// Waits until "/" is answered by `name`.
async fn applied(g: &Gatehouse, name: &str) -> bool {
    eventually(APPLY, || async { backend_of(g, "/").await == name }).await
}

struct Sample {
    start: Instant,
    end: Instant,
    status: Result<(u16, String), String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_reloads_under_load_fail_nothing_and_follow_the_config() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, "pa", false));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    // Steady bounded load: two keep-alive clients and two that open a new connection per request.
    let mut load = Vec::new();
    for keep_alive in [true, true, false, false] {
        let (samples, stop, url) = (samples.clone(), stop.clone(), g.url("/"));
        load.push(tokio::spawn(async move {
            let client = http1();
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let start = Instant::now();
                let headers: &[(&str, &str)] = if keep_alive {
                    &[]
                } else {
                    &[("connection", "close")]
                };
                let req = send(&client, Method::GET, &url, headers, Bytes::new());
                let status = match tokio::time::timeout(Duration::from_secs(10), req).await {
                    Ok(r) => Ok((r.status, r.backend().to_string())),
                    Err(_) => Err("timeout".to_string()),
                };
                samples.lock().unwrap().push(Sample {
                    start,
                    end: Instant::now(),
                    status,
                });
            }
        }));
    }

    // Config j is written at written[j] and seen applied by a probe that ended at confirmed[j].
    let mut written = vec![Instant::now()];
    let mut confirmed = vec![Instant::now()];
    let mut targets = vec!["a"];
    for j in 1..=50 {
        let (pool, name) = if j % 2 == 1 { ("pb", "b") } else { ("pa", "a") };
        let extra = j % 4 == 1;
        let text = config(&a, &b, &c, pool, extra);
        written.push(Instant::now());
        if j % 3 == 0 {
            g.write_config_in_place(&text);
        } else {
            g.write_config(&text);
        }
        targets.push(name);
        assert!(
            applied(&g, name).await,
            "reload {j} not applied:\n{}",
            g.logs()
        );
        confirmed.push(Instant::now());
        // With the extra pool, /extra/ goes to c; once it is removed, "/" takes /extra/ too.
        let r = get(&g.url("/extra/x")).await;
        let want = if extra { "c" } else { name };
        assert_eq!((r.status, r.backend()), (200, want), "reload {j}");
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }

    let samples = samples.lock().unwrap();
    assert!(
        samples.len() > 1000,
        "only {} requests under load",
        samples.len()
    );
    for s in samples.iter() {
        let (status, backend) = s.status.clone().expect("request failed");
        assert_eq!(status, 200, "a request failed during reloads");
        // Configs possibly in force during the request: written before it ended, not yet superseded
        // (a later config confirmed) before it started.
        let allowed: Vec<&str> = (0..targets.len())
            .filter(|&j| {
                written[j] <= s.end && (j + 1 >= confirmed.len() || confirmed[j + 1] > s.start)
            })
            .map(|j| targets[j])
            .collect();
        assert!(
            allowed.contains(&backend.as_str()),
            "answered by {backend}, config said {allowed:?}"
        );
    }
    let applied_lines = g.logs().matches("config applied").count();
    assert!(applied_lines >= 50, "{applied_lines} reloads logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_opened_before_ten_reloads_still_echoes() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, "pa", false));
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", g.addr))
        .await
        .expect("ws");
    for j in 1..=10 {
        let (pool, name) = if j % 2 == 1 { ("pb", "b") } else { ("pa", "a") };
        g.write_config(&config(&a, &b, &c, pool, j % 2 == 1));
        assert!(applied(&g, name).await, "reload {j}");
        let text = format!("after reload {j}");
        ws.send(Message::Text(text.clone().into()))
            .await
            .expect("send");
        let echo = ws.next().await.expect("open").expect("frame");
        assert_eq!(echo.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_started_before_a_reload_completes() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, "pa", false));
    const SIZE: u64 = 50 * 1024 * 1024;
    let resp = http1()
        .get(g.url(&format!("/bytes/{SIZE}")).parse().unwrap())
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut got = 0u64;
    while got < 1024 * 1024 {
        got += body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .data_ref()
            .map_or(0, |d| d.len() as u64);
    }
    // Move "/" to the other pool and drop nothing else; the download keeps its old snapshot and connection.
    g.write_config(&config(&a, &b, &c, "pb", true));
    assert!(applied(&g, "b").await);
    while let Some(frame) = body.frame().await {
        got += frame
            .expect("body cut by reload")
            .data_ref()
            .map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, SIZE);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_edits_keep_the_old_config_and_the_next_good_one_applies() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, "pa", false));
    let settle = || tokio::time::sleep(Duration::from_millis(700));

    g.write_config("[[site]\nhosts = [");
    settle().await;
    assert_eq!(backend_of(&g, "/").await, "a");
    assert!(g.logs().contains("config rejected"), "{}", g.logs());
    assert!(
        g.logs().contains("gatehouse.toml:1:"),
        "error names file and line:\n{}",
        g.logs()
    );

    g.write_config_in_place(&config(&a, &b, &c, "nosuchpool", false));
    settle().await;
    assert_eq!(backend_of(&g, "/").await, "a");
    assert!(g.logs().contains("no pool named \"nosuchpool\""));

    std::fs::remove_file(&g.config_path).unwrap();
    settle().await;
    assert_eq!(backend_of(&g, "/").await, "a");
    assert!(g.logs().contains("cannot read the config file"));

    // Recreated later: applies, and the watcher still works for the next edit.
    g.write_config_in_place(&config(&a, &b, &c, "pb", false));
    assert!(applied(&g, "b").await, "{}", g.logs());
    g.write_config(&config(&a, &b, &c, "pa", false));
    assert!(applied(&g, "a").await, "{}", g.logs());
    // Rejected files were logged once each, not re-logged on every later look.
    assert_eq!(
        g.logs().matches("config rejected").count(),
        2,
        "{}",
        g.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn symlink_swaps_apply_and_sighup_rereads_a_target_edited_elsewhere() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, "pa", false));
    // ConfigMap style: the config path becomes a symlink into a data folder elsewhere.
    let data = tempfile::tempdir().unwrap();
    let v1 = data.path().join("v1.toml");
    std::fs::write(&v1, config(&a, &b, &c, "pb", false) + &g.listener_block()).unwrap();
    let link_tmp = g.dir.path().join(".link.tmp");
    std::os::unix::fs::symlink(&v1, &link_tmp).unwrap();
    std::fs::rename(&link_tmp, &g.config_path).unwrap();
    assert!(
        applied(&g, "b").await,
        "symlink swap not applied:\n{}",
        g.logs()
    );

    // Edit the target in its own folder (no event where gatehouse watches), then SIGHUP.
    std::fs::write(&v1, config(&a, &b, &c, "pa", false) + &g.listener_block()).unwrap();
    g.signal(1);
    assert!(applied(&g, "a").await);
    assert!(g.logs().contains("trigger=Signal"), "{}", g.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn least_conn_counts_stay_right_across_a_reload() {
    let (s0, s1) = (Backend::start("s0").await, Backend::start("s1").await);
    let cfg = |extra_route: bool| {
        let mut s = format!(
            "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n  [[site.route]]\n  path = \"/hold/\"\n  pool = \"only_s0\"\n  strip_prefix = true\n[pool.p]\nbalance = \"least_conn\"\nservers = [\"{}\", \"{}\"]\n[pool.only_s0]\nservers = [\"{}\"]\n",
            s0.addr, s1.addr, s0.addr
        );
        if extra_route {
            s += "  [[site.route]]\n  path = \"/marker\"\n  respond = \"new\"\n";
        }
        s
    };
    let g = Gatehouse::start(&cfg(false));
    let held: Vec<_> = (0..3)
        .map(|_| {
            let url = g.url("/hold/slow/3000");
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    assert!(eventually(APPLY, || async { s0.count() == 3 }).await);

    // The [[site.route]] appended lands in the last site table; it is a reload that changes the snapshot.
    g.write_config(&cfg(true));
    assert!(
        eventually(APPLY, || async {
            get(&g.url("/marker")).await.body == "new"
        })
        .await
    );
    for _ in 0..10 {
        assert_eq!(
            backend_of(&g, "/fast").await,
            "s1",
            "the new snapshot forgot s0's in-flight requests"
        );
    }
    for h in held {
        assert_eq!(
            h.await.unwrap().status,
            200,
            "a slow request was cut by the reload"
        );
    }
    let mut on_s0 = 0;
    for _ in 0..10 {
        on_s0 += usize::from(backend_of(&g, "/fast").await == "s0");
    }
    assert_eq!(
        on_s0, 5,
        "counts went back to zero after the old snapshot's requests ended"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listeners_are_added_and_removed_by_reload() {
    let (a, b, c) = three_backends().await;
    let g = Gatehouse::start(&config(&a, &b, &c, "pa", false));
    let port = free_port();
    let extra = format!("[[listener]]\nname = \"extra\"\nbind = \"127.0.0.1:{port}\"\n");
    g.write_config(&(config(&a, &b, &c, "pa", false) + &extra));
    let url = format!("http://127.0.0.1:{port}/slow/1500");
    assert!(
        eventually(APPLY, || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await
    );

    // A slow request in flight on the listener about to be removed.
    let slow = tokio::spawn(async move { get(&url).await });
    assert!(eventually(APPLY, || async { a.count() >= 1 }).await);
    g.write_config(&config(&a, &b, &c, "pa", false));
    assert!(
        eventually(APPLY, || async {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        })
        .await,
        "removed listener still accepts"
    );
    assert_eq!(
        slow.await.unwrap().status,
        200,
        "in-flight request on the removed listener finished"
    );
    assert_eq!(
        get(&g.url("/")).await.status,
        200,
        "the unchanged listener was not touched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_and_exits_0() {
    let a = Backend::start("a").await;
    let mut g = Gatehouse::start(&format!(
        "[server]\ngrace_period = \"10s\"\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{}\"]\n",
        a.addr
    ));
    let inflight: Vec<_> = (0..5)
        .map(|_| {
            let url = g.url("/slow/1500");
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    assert!(eventually(APPLY, || async { a.count() == 5 }).await);
    let t = Instant::now();
    g.signal(15);
    assert!(
        eventually(APPLY, || async {
            std::net::TcpStream::connect(g.addr).is_err()
        })
        .await,
        "still accepting after SIGTERM"
    );
    for h in inflight {
        let r = h.await.unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "a"));
    }
    let status =
        tokio::task::block_in_place(|| g.wait_exit(Duration::from_secs(10))).expect("exited");
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cuts_what_outlives_the_grace_period() {
    let a = Backend::start("a").await;
    let mut g = Gatehouse::start(&format!(
        "[server]\ngrace_period = \"500ms\"\n[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{}\"]\n",
        a.addr
    ));
    let url = g.url("/slow/20000");
    let _stuck = tokio::spawn(async move { http1().get(url.parse().unwrap()).await });
    assert!(eventually(APPLY, || async { a.count() == 1 }).await);
    let t = Instant::now();
    g.signal(15);
    let status =
        tokio::task::block_in_place(|| g.wait_exit(Duration::from_secs(5))).expect("exited");
    assert!(status.success());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(g.logs().contains("cut"), "{}", g.logs());
}
