//! Several Gatehouse processes sharing one Redis (`[acme] storage = "redis://…"`) and one Pebble: one order
//! per name, every node serving the certificate, a challenge answered by a node that did not order, a dead
//! lock holder replaced after its lease, and nodes that keep serving while Redis is away.

use gatehouse_e2e::pebble::{pebble_client, served, Pebble};
use gatehouse_e2e::redis::Redis;
use gatehouse_e2e::tls::TestCa;
use gatehouse_e2e::{eventually, free_port, Gatehouse};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Generous: on two busy cores several nodes, Pebbles and Redises share the machine with other tests.
const ISSUE: Duration = Duration::from_secs(60);

struct Node {
    http: SocketAddr,
    https: SocketAddr,
    admin: SocketAddr,
}

fn node() -> Node {
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().expect("addr") };
    Node {
        http: addr(),
        https: addr(),
        admin: addr(),
    }
}

/// A node's config: both listeners, the admin listener, `[acme]` on Pebble and the shared Redis, and one
/// `tls = "acme"` site per name; `extra_site` is added as it is (a node needs a certificate of its own to
/// have a TLS listener before it has any ACME site).
fn config(
    n: &Node,
    pebble: &Pebble,
    redis: &Redis,
    acme: &str,
    names: &[&str],
    extra_site: &str,
) -> String {
    let mut s = format!(
        "[server]\ngrace_period = \"1s\"\nadmin = \"{}\"\n[[listener]]\nname = \"http\"\nbind = \"{}\"\n[[listener]]\nname = \"https\"\nbind = \"{}\"\ntls = true\n",
        n.admin, n.http, n.https
    );
    s += &pebble.acme_section(Path::new(&redis.url()), "http-01", acme);
    for name in names {
        s += &format!("[[site]]\nhosts = [\"{name}\"]\ntls = \"acme\"\n  [[site.route]]\n  path = \"/\"\n  respond = \"hello from {name}\"\n");
    }
    s + extra_site
}

fn orders(g: &Gatehouse) -> usize {
    g.logs().matches("ordering a certificate").count()
}

/// A site with a file certificate of its own, so that a node without ACME sites can have a TLS listener.
fn own_site(dir: &Path) -> String {
    let ca = TestCa::new("cluster test CA");
    let (cert, key) = ca.issue_files(dir, "own", &["own.test"]);
    format!(
        "[[site]]\nhosts = [\"own.test\"]\ntls = {{ cert = \"{}\", key = \"{}\" }}\n  [[site.route]]\n  path = \"/\"\n  respond = \"own\"\n",
        cert.display(),
        key.display()
    )
}

async fn status(admin: SocketAddr) -> serde_json::Value {
    let r = gatehouse_e2e::client::get(&format!("http://{admin}/status")).await;
    serde_json::from_str(&r.body).expect("status JSON")
}

/// Replaces a running node's config file (write aside, rename), as an operator's tooling would.
fn rewrite(g: &Gatehouse, config: &str) {
    let tmp = g.dir.path().join(".next.toml");
    std::fs::write(&tmp, config).expect("write");
    std::fs::rename(&tmp, &g.config_path).expect("rename");
}

/// Three nodes, one name, `challenge` ("http-01" or "tls-alpn-01"). Pebble validates against node 3 only,
/// and node 3 starts with no ACME site: it cannot have ordered, so the order validates only if it answers
/// from what the ordering node published in Redis. Then node 3 is given the site by a reload and serves the
/// certificate from Redis without ordering it again.
async fn three_nodes_one_order(challenge: &str) {
    let redis = Redis::start();
    let nodes = [node(), node(), node()];
    let pebble = Pebble::start(nodes[2].http.port(), nodes[2].https.port());
    let acme = format!("challenge = \"{challenge}\"");
    let cfg = |i: usize, names: &[&str], extra: &str| {
        config(&nodes[i], &pebble, &redis, &acme, names, extra).replacen(
            "challenge = \"http-01\"\n",
            "",
            1,
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let own = own_site(dir.path());
    // Node 3 first: Pebble validates against it, and nodes 1 and 2 order as soon as they are up (started
    // after them, node 3 could still be starting when Pebble connects).
    let g3 = Gatehouse::start_raw(&cfg(2, &[], &own), nodes[2].http);
    let g1 = Gatehouse::start_raw(&cfg(0, &["shared.test"], ""), nodes[0].http);
    let g2 = Gatehouse::start_raw(&cfg(1, &["shared.test"], ""), nodes[1].http);
    let client = pebble_client(&pebble).await;
    let first = served(nodes[0].https, "shared.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| {
            panic!(
                "node 1 has no certificate:\n{}\n---\n{}\n---\n{}",
                g1.logs(),
                g2.logs(),
                g3.logs()
            )
        });
    let second = served(
        nodes[1].https,
        "shared.test",
        &client,
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|| panic!("node 2 has no certificate:\n{}", g2.logs()));
    assert_eq!(first, second, "both nodes serve the one certificate");
    assert_eq!(
        orders(&g1) + orders(&g2),
        1,
        "exactly one order:\n{}\n---\n{}",
        g1.logs(),
        g2.logs()
    );
    assert_eq!(orders(&g3), 0);
    let ordering = format!("{}{}", g1.logs(), g2.logs());
    assert!(
        !ordering.contains("challenge failed"),
        "{challenge} validated at node 3 without a fallback:\n{ordering}"
    );
    assert!(
        ordering.contains(&format!("challenge=\"{challenge}\"")),
        "{ordering}"
    );

    // Node 3 gets the site: it serves what is stored, and orders nothing.
    rewrite(&g3, &cfg(2, &["shared.test"], &own));
    let third = served(
        nodes[2].https,
        "shared.test",
        &client,
        Duration::from_secs(15),
    )
    .await
    .unwrap_or_else(|| panic!("node 3 has no certificate:\n{}", g3.logs()));
    assert_eq!(third, first, "node 3 serves the stored certificate");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(orders(&g1) + orders(&g2) + orders(&g3), 1, "{}", g3.logs());

    // Every node says where its certificates live; no password, no lock left behind.
    let s = status(nodes[2].admin).await;
    assert_eq!(s["acme_store"]["kind"], "redis", "{s}");
    assert_eq!(s["acme_store"]["reachable"], true);
    assert_eq!(
        redis
            .cli(&["--scan", "--pattern", "gatehouse:locks/*"])
            .trim(),
        ""
    );
    let keys = redis.cli(&["--scan", "--pattern", "gatehouse:*"]);
    assert!(
        keys.contains("gatehouse:certificates/shared.test/bundle.pem"),
        "{keys}"
    );
    assert!(keys.contains("gatehouse:account.json"), "{keys}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_one_http01_order_answered_by_a_node_that_did_not_place_it() {
    three_nodes_one_order("http-01").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_one_tls_alpn01_order_answered_by_a_node_that_did_not_place_it() {
    three_nodes_one_order("tls-alpn-01").await;
}

/// A TCP listener that accepts and never answers: Pebble's validation hangs on it, so the ordering node
/// holds its lock for as long as the test needs.
async fn silent(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_lock_holder_mid_order_lets_another_node_finish_after_the_lease() {
    let redis = Redis::start();
    let (a, b) = (node(), node());
    // Pebble validates on b's ports; while node a orders, nothing answers there but a silent socket.
    let pebble = Pebble::start(b.http.port(), b.https.port());
    let acme = "lock_ttl = \"3s\"";
    let hang = silent(b.http).await;
    let ga = Gatehouse::start_raw(
        &config(&a, &pebble, &redis, acme, &["lock.test"], ""),
        a.http,
    );
    let locked = eventually(Duration::from_secs(20), || async {
        !redis
            .cli(&["--scan", "--pattern", "gatehouse:locks/lock.test*"])
            .trim()
            .is_empty()
    })
    .await;
    assert!(locked, "node a never took the lock:\n{}", ga.logs());
    // Dies mid-order, holding the lock.
    ga.signal(9);
    hang.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gb = Gatehouse::start_raw(
        &config(&b, &pebble, &redis, acme, &["lock.test"], ""),
        b.http,
    );
    let client = pebble_client(&pebble).await;
    served(b.https, "lock.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("node b did not finish:\n{}", gb.logs()));
    let logs = gb.logs();
    assert!(
        logs.contains("another node is ordering this certificate"),
        "node b waited for the dead node's lease:\n{logs}"
    );
    assert_eq!(orders(&gb), 1, "{logs}");
}

/// The certificate's not-after time, from the bundle in Redis.
fn stored_not_after(redis: &Redis, name: &str) -> std::time::SystemTime {
    let pem = redis.cli(&["GET", &format!("gatehouse:certificates/{name}/bundle.pem")]);
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    std::time::SystemTime::UNIX_EPOCH
        + Duration::from_secs(cert.validity().not_after.timestamp() as u64)
}

use rustls_pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_away_nodes_keep_serving_and_renewal_resumes_when_it_returns() {
    let mut redis = Redis::start();
    let (a, b) = (node(), node());
    let pebble = Pebble::start(a.http.port(), a.https.port());
    let client = pebble_client(&pebble).await;
    let ga = Gatehouse::start_raw(
        &config(&a, &pebble, &redis, "", &["renew.test"], ""),
        a.http,
    );
    let first = served(a.https, "renew.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("no certificate:\n{}", ga.logs()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            !redis
                .cli(&["EXISTS", "gatehouse:certificates/renew.test/bundle.pem"])
                .starts_with('0')
        })
        .await
    );
    drop(ga);

    // Both nodes start with a renewal window that opens 8 s from now.
    let left = stored_not_after(&redis, "renew.test")
        .duration_since(std::time::SystemTime::now())
        .expect("not expired");
    let window = format!("renew_before = \"{}s\"", left.as_secs().saturating_sub(8));
    let ga = Gatehouse::start_raw(
        &config(&a, &pebble, &redis, &window, &["renew.test"], ""),
        a.http,
    );
    let gb = Gatehouse::start_raw(
        &config(&b, &pebble, &redis, &window, &["renew.test"], ""),
        b.http,
    );
    for n in [&a, &b] {
        let served_now = served(n.https, "renew.test", &client, Duration::from_secs(10)).await;
        assert_eq!(
            served_now.as_deref(),
            Some(first.as_slice()),
            "loaded from Redis"
        );
    }

    // Redis goes away before the window opens: both nodes keep serving, and say so.
    redis.stop();
    for n in [&a, &b] {
        let admin = n.admin;
        assert!(
            eventually(Duration::from_secs(15), || async {
                status(admin).await["acme_store"]["reachable"] == false
            })
            .await,
            "a node did not notice that Redis is away"
        );
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    for n in [&a, &b] {
        let still = served(n.https, "renew.test", &client, Duration::from_secs(5)).await;
        assert_eq!(
            still.as_deref(),
            Some(first.as_slice()),
            "kept serving while Redis was away"
        );
    }
    let m = gatehouse_e2e::client::get(&format!("http://{}/metrics", a.admin))
        .await
        .body;
    assert!(m.contains("gatehouse_acme_store_up 0"), "{m}");

    // Redis returns: the renewal goes ahead, once, and both nodes serve the new certificate.
    redis.restart();
    let renewed = |https: SocketAddr| {
        let (client, first) = (client.clone(), first.clone());
        async move {
            eventually(Duration::from_secs(60), || {
                let client = client.clone();
                let first = first.clone();
                async move {
                    served(https, "renew.test", &client, Duration::from_secs(2))
                        .await
                        .is_some_and(|c| c != first)
                }
            })
            .await
        }
    };
    assert!(
        renewed(a.https).await,
        "no renewal on a:\n{}\n---\n{}",
        ga.logs(),
        gb.logs()
    );
    assert!(
        renewed(b.https).await,
        "b did not take the renewed certificate:\n{}",
        gb.logs()
    );
    assert_eq!(
        orders(&ga) + orders(&gb),
        1,
        "one renewal order:\n{}\n---\n{}",
        ga.logs(),
        gb.logs()
    );
}

/// The Redis backend's contract, in-process against the real Redis: a lease is exclusive, renewed and
/// released only by its holder's token, taken over once it expires; records round-trip; another node hears
/// of a store.
#[tokio::test(flavor = "multi_thread")]
async fn redis_leases_are_exclusive_and_only_their_holder_renews_or_releases_them() {
    use gatehouse_acme::storage::{LockToken, Storage, StoreEvent};
    use gatehouse_acme::RedisStorage;
    let redis = Redis::start();
    let open = || RedisStorage::open(&redis.url(), "t:", None, redis.url()).expect("open");
    let (a, b) = (open(), open());
    let ttl = Duration::from_millis(800);
    let ta = a.lock("x", ttl).await.expect("redis").expect("free");
    assert!(
        b.lock("x", ttl).await.expect("redis").is_none(),
        "held by a"
    );
    // A token that is not the holder's neither renews nor releases it.
    let forged = LockToken {
        name: "x".into(),
        owner: "someone-else#0".into(),
    };
    assert!(!b.renew(&forged, ttl).await.expect("redis"));
    b.unlock(&forged).await.expect("redis");
    assert!(
        b.lock("x", ttl).await.expect("redis").is_none(),
        "still a's"
    );
    assert!(a.renew(&ta, ttl).await.expect("redis"));
    // a stops renewing: once the lease runs out b takes it, and a's late renew and release change nothing.
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;
    let tb = b
        .lock("x", ttl)
        .await
        .expect("redis")
        .expect("expired lease taken over");
    assert!(!a.renew(&ta, ttl).await.expect("redis"));
    a.unlock(&ta).await.expect("redis");
    assert!(
        b.renew(&tb, ttl).await.expect("redis"),
        "b's lease survived a's release"
    );
    b.unlock(&tb).await.expect("redis");
    assert!(a.lock("x", ttl).await.expect("redis").is_some(), "released");

    // Records, and the change another node hears of.
    let mut events = b.watch().expect("redis notifies");
    assert_eq!(events.recv().await, Some(StoreEvent::Resync), "subscribed");
    a.store("certificates/s/bundle.pem", b"pem bytes")
        .await
        .expect("store");
    let heard = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event in time");
    assert_eq!(
        heard,
        Some(StoreEvent::Stored("certificates/s/bundle.pem".into()))
    );
    assert_eq!(
        b.load("certificates/s/bundle.pem")
            .await
            .expect("load")
            .as_deref(),
        Some(&b"pem bytes"[..])
    );
    a.delete("certificates/s/bundle.pem").await.expect("delete");
    assert_eq!(
        b.load("certificates/s/bundle.pem").await.expect("load"),
        None
    );
    assert!(
        a.load("bad key").await.is_err(),
        "keys with spaces are refused"
    );
    assert_eq!(
        redis.cli(&["GET", "t:certificates/s/bundle.pem"]).trim(),
        "",
        "under the prefix"
    );
}

/// `rediss://` with a password and a private CA (`redis_ca`): the records go through; a wrong password, or
/// the system's roots instead of the CA, is an unreachable store (logged, in the health), never a panic.
#[tokio::test(flavor = "multi_thread")]
async fn rediss_with_a_password_and_a_private_ca() {
    use gatehouse_acme::storage::Storage;
    use gatehouse_acme::RedisStorage;
    let ca = TestCa::new("redis test CA");
    let redis = Redis::start_tls(&ca, "s3cret");
    let ca_pem = std::fs::read(ca.write_ca(redis.dir.path())).expect("ca");
    let url = |pw: &str| format!("rediss://:{pw}@127.0.0.1:{}/0", redis.addr.port());
    let good = RedisStorage::open(
        &url("s3cret"),
        "t:",
        Some(ca_pem.clone()),
        "rediss://…".into(),
    )
    .expect("open");
    good.store("account.json", b"{}")
        .await
        .expect("store over TLS");
    assert_eq!(
        good.load("account.json").await.expect("load").as_deref(),
        Some(&b"{}"[..])
    );
    assert!(good.health().reachable());

    let wrong =
        RedisStorage::open(&url("nope"), "t:", Some(ca_pem), "rediss://…".into()).expect("open");
    assert!(
        wrong.load("account.json").await.is_err(),
        "a wrong password is refused"
    );
    assert!(!wrong.health().reachable());
    let untrusted =
        RedisStorage::open(&url("s3cret"), "t:", None, "rediss://…".into()).expect("open");
    assert!(
        untrusted.load("account.json").await.is_err(),
        "the test CA is not a system root"
    );
    assert!(untrusted.health().last_error().is_some());
}
