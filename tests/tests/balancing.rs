//! The three balancers and backup servers, observed through real requests.

use bytes::Bytes;
use gatehouse_e2e::client::{get, get_with, http1, send};
use gatehouse_e2e::{single_pool, Backend, Gatehouse};
use http::Method;
use std::collections::HashMap;

fn pool_config(balance: &str, servers: &str) -> String {
    single_pool(
        servers,
        &format!("balance = \"{balance}\""),
        "trusted_proxies = [\"127.0.0.1/32\"]",
    )
}

async fn backends(n: usize) -> Vec<Backend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Backend::start(&format!("s{i}")).await);
    }
    v
}

fn list(bs: &[Backend]) -> String {
    bs.iter()
        .map(|b| format!("\"{}\"", b.addr))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_exact_sequence() {
    let bs = backends(3).await;
    let g = Gatehouse::start(&pool_config("round_robin", &list(&bs)));
    let client = http1();
    let mut seq = Vec::new();
    for _ in 0..9 {
        seq.push(
            send(&client, Method::GET, &g.url("/"), &[], Bytes::new())
                .await
                .backend()
                .to_string(),
        );
    }
    assert_eq!(seq, ["s0", "s1", "s2", "s0", "s1", "s2", "s0", "s1", "s2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_1_3_give_exactly_one_in_four() {
    let bs = backends(2).await;
    let servers = format!(
        "{{ addr = \"{}\", weight = 1 }}, {{ addr = \"{}\", weight = 3 }}",
        bs[0].addr, bs[1].addr
    );
    let g = Gatehouse::start(&pool_config("round_robin", &servers));
    let client = http1();
    let mut seq = Vec::new();
    for _ in 0..200 {
        seq.push(
            send(&client, Method::GET, &g.url("/"), &[], Bytes::new())
                .await
                .backend()
                .to_string(),
        );
    }
    for window in seq.chunks(4) {
        assert_eq!(
            window.iter().filter(|s| *s == "s0").count(),
            1,
            "{window:?}"
        );
    }
    assert_eq!(bs[0].count(), 50);
    assert_eq!(bs[1].count(), 150);
}

/// Which backend each of `clients` (given as X-Forwarded-For addresses, believed from 127.0.0.1) lands on.
async fn placement(g: &Gatehouse, clients: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for c in clients {
        let r = get_with(&g.url("/"), &[("x-forwarded-for", c)]).await;
        assert_eq!(r.status, 200);
        out.insert(c.clone(), r.backend().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_hash_is_sticky_and_removal_remaps_only_the_removed_servers_clients() {
    let bs = backends(4).await;
    let clients: Vec<String> = (0..200)
        .map(|i| format!("10.1.{}.{}", i / 250, i % 250 + 1))
        .collect();

    let g4 = Gatehouse::start(&pool_config("ip_hash", &list(&bs)));
    let first = placement(&g4, &clients).await;
    let again = placement(&g4, &clients).await;
    assert_eq!(first, again, "same client, same server");
    let used: std::collections::HashSet<_> = first.values().collect();
    assert_eq!(used.len(), 4, "clients spread over all servers");
    drop(g4);

    let g3 = Gatehouse::start(&pool_config("ip_hash", &list(&bs[..3])));
    let after = placement(&g3, &clients).await;
    let mut moved_from_removed = 0;
    for c in &clients {
        if first[c] == "s3" {
            moved_from_removed += 1;
        } else {
            assert_eq!(
                first[c], after[c],
                "client {c} of a remaining server was moved"
            );
        }
    }
    assert!(
        moved_from_removed > 20,
        "s3 had {moved_from_removed} clients"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn least_conn_steers_away_from_a_server_holding_slow_requests() {
    let bs = backends(2).await;
    // `/hold/` reaches s0 only; in-flight counts are per server address, shared by every pool naming it.
    let config = format!(
        r#"
[[site]]
hosts = ["example.com"]
default = true
  [[site.route]]
  path = "/"
  pool = "p"
  [[site.route]]
  path = "/hold/"
  pool = "only_s0"
  strip_prefix = true

[pool.p]
balance = "least_conn"
servers = [{}]

[pool.only_s0]
servers = ["{}"]
"#,
        list(&bs),
        bs[0].addr
    );
    let g = Gatehouse::start(&config);
    let held: Vec<_> = (0..3)
        .map(|_| {
            let url = g.url("/hold/slow/2500");
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    // Wait until s0 really holds all three.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while bs[0].count() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(bs[0].count(), 3);
    for _ in 0..10 {
        let r = get(&g.url("/fast")).await;
        assert_eq!(
            (r.status, r.backend()),
            (200, "s1"),
            "new request sent to the busy server"
        );
    }
    for h in held {
        assert_eq!(h.await.expect("slow").status, 200);
    }
    // Once the slow requests are done, both share again (ties rotate).
    let mut counts = HashMap::new();
    for _ in 0..10 {
        *counts
            .entry(get(&g.url("/fast")).await.backend().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!((counts["s0"], counts["s1"]), (5, 5), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_serves_only_when_no_primary_is_available() {
    let bs = backends(2).await;
    let backup = Backend::start("backup").await;
    let servers = format!(
        "\"{}\", \"{}\", {{ addr = \"{}\", backup = true }}",
        bs[0].addr, bs[1].addr, backup.addr
    );
    let g = Gatehouse::start(&pool_config("round_robin", &servers));
    for _ in 0..20 {
        assert_eq!(get(&g.url("/")).await.status, 200);
    }
    assert_eq!(backup.count(), 0, "backup unused while primaries are up");

    // Both primaries gone: every request is served by the backup, none fails.
    bs[0].stop();
    bs[1].stop();
    for _ in 0..20 {
        let r = get(&g.url("/")).await;
        assert_eq!((r.status, r.backend()), (200, "backup"));
    }
}
