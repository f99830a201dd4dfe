//! Automatic certificates against a real ACME server (Pebble): HTTP-01 and TLS-ALPN-01 issuance, restart
//! without a new order, renewal at the configured window, a failing name that does not hurt the others,
//! file modes, two processes sharing one storage, and a site added by reload.

use gatehouse_e2e::client::get_with;
use gatehouse_e2e::pebble::{pebble_client, served, Pebble};
use gatehouse_e2e::tls::connect;
use gatehouse_e2e::{eventually, free_port, Gatehouse};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const ISSUE: Duration = Duration::from_secs(30);

struct Ports {
    http: SocketAddr,
    https: SocketAddr,
}

fn ports() -> Ports {
    Ports {
        http: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        https: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    }
}

/// A config with a plain and a TLS listener, `[acme]` pointing at `pebble`, and one respond site per name.
fn config(
    p: &Ports,
    pebble: &Pebble,
    storage: &Path,
    challenge: &str,
    acme_extra: &str,
    names: &[&str],
) -> String {
    let mut s = format!(
        "[server]\ngrace_period = \"1s\"\n[[listener]]\nname = \"http\"\nbind = \"{}\"\n[[listener]]\nname = \"https\"\nbind = \"{}\"\ntls = true\n",
        p.http, p.https
    );
    s += &pebble.acme_section(storage, challenge, acme_extra);
    for n in names {
        s += &format!("[[site]]\nhosts = [\"{n}\"]\ntls = \"acme\"\n  [[site.route]]\n  path = \"/\"\n  respond = \"hello from {n}\"\n");
    }
    s
}

fn orders(g: &Gatehouse) -> usize {
    g.logs().matches("ordering a certificate").count()
}

fn not_after(storage: &Path, name: &str) -> SystemTime {
    let pem = std::fs::read(storage.join(format!("certificates/{name}/bundle.pem"))).unwrap();
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_secs(cert.validity().not_after.timestamp() as u64)
}

#[tokio::test(flavor = "multi_thread")]
async fn http01_issuance_served_then_reused_after_restart_with_private_files() {
    let p = ports();
    let pebble = Pebble::start(p.http.port(), p.https.port());
    let storage = tempfile::tempdir().unwrap().path().join("acme");
    // redirect_https is on: HTTP-01 challenges must be answered before the redirect.
    let cfg = config(&p, &pebble, &storage, "http-01", "", &["a.test"]).replace(
        "tls = \"acme\"\n",
        "tls = \"acme\"\nredirect_https = true\n",
    );
    let g = Gatehouse::start_raw(&cfg, p.http);
    let client = pebble_client(&pebble).await;
    let first = served(p.https, "a.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("no certificate:\n{}", g.logs()));
    assert!(
        g.logs().contains("challenge=\"http-01\"") || g.logs().contains("challenge=http-01"),
        "{}",
        g.logs()
    );
    assert_eq!(orders(&g), 1);
    // HTTP keeps working for the site, HTTPS now too.
    let tls = connect(p.https, "a.test", client.clone()).await.unwrap();
    let (r, _) = gatehouse_e2e::tls::get_over(tls, "a.test", "/").await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello from a.test"));
    let plain = get_with(&format!("http://{}/x", p.http), &[("host", "a.test")]).await;
    assert_eq!(
        plain.status, 308,
        "plain HTTP is redirected; only challenges were answered"
    );

    // Every file 0600, every folder 0700.
    assert_modes(&storage);

    // A restart serves the stored certificate at once and orders nothing.
    drop(g);
    let g2 = Gatehouse::start_raw(&cfg, p.http);
    let again = served(p.https, "a.test", &client, Duration::from_secs(5))
        .await
        .expect("stored certificate served");
    assert_eq!(again, first, "same certificate after restart");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(orders(&g2), 0, "a restart placed an order:\n{}", g2.logs());
}

fn assert_modes(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_path_buf()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for e in std::fs::read_dir(&dir).unwrap() {
            let path: PathBuf = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(
        files >= 3,
        "account, key and certificate stored ({files} files)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_alpn01_issuance() {
    let p = ports();
    let pebble = Pebble::start(p.http.port(), p.https.port());
    let storage = tempfile::tempdir().unwrap().path().join("acme");
    let g = Gatehouse::start_raw(
        &config(&p, &pebble, &storage, "tls-alpn-01", "", &["alpn.test"]),
        p.http,
    );
    let client = pebble_client(&pebble).await;
    served(p.https, "alpn.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("no certificate:\n{}", g.logs()));
    let logs = g.logs();
    assert!(logs.contains("tls-alpn-01"), "{logs}");
    assert!(
        !logs.contains("challenge failed"),
        "tls-alpn-01 worked without falling back:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn renewal_at_the_configured_window_is_served_without_restart() {
    let p = ports();
    let pebble = Pebble::start(p.http.port(), p.https.port());
    let storage = tempfile::tempdir().unwrap().path().join("acme");
    let g = Gatehouse::start_raw(
        &config(&p, &pebble, &storage, "http-01", "", &["renew.test"]),
        p.http,
    );
    let client = pebble_client(&pebble).await;
    let first = served(p.https, "renew.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("{}", g.logs()));
    // The manager serves a new certificate first, then stores it: wait for the file before stopping.
    let bundle = storage.join("certificates/renew.test/bundle.pem");
    assert!(eventually(Duration::from_secs(10), || async { bundle.exists() }).await);
    drop(g);

    // Restart with a window that opens 4 s from now: not due at start (no order), due soon after.
    let left = not_after(&storage, "renew.test")
        .duration_since(SystemTime::now())
        .unwrap();
    let window = left.as_secs().saturating_sub(4);
    let cfg = config(
        &p,
        &pebble,
        &storage,
        "http-01",
        &format!("renew_before = \"{window}s\""),
        &["renew.test"],
    );
    let g = Gatehouse::start_raw(&cfg, p.http);
    assert_eq!(
        served(p.https, "renew.test", &client, Duration::from_secs(5))
            .await
            .as_ref(),
        Some(&first)
    );
    assert_eq!(orders(&g), 0, "ordered before the window:\n{}", g.logs());
    let mut renewed = first.clone();
    let deadline = std::time::Instant::now() + ISSUE;
    while renewed == first && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        renewed = served(p.https, "renew.test", &client, Duration::from_secs(2))
            .await
            .unwrap();
    }
    assert_ne!(renewed, first, "not renewed:\n{}", g.logs());
    assert!(g.logs().contains("due for renewal"), "{}", g.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_that_cannot_validate_is_retried_and_does_not_hurt_the_others() {
    let p = ports();
    let pebble = Pebble::start(p.http.port(), p.https.port());
    pebble.set_a_record("bad.test", "127.0.0.2").await; // nothing answers there
    let storage = tempfile::tempdir().unwrap().path().join("acme");
    let g = Gatehouse::start_raw(
        &config(
            &p,
            &pebble,
            &storage,
            "http-01",
            "",
            &["bad.test", "good.test"],
        ),
        p.http,
    );
    let client = pebble_client(&pebble).await;
    served(p.https, "good.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("good.test got nothing:\n{}", g.logs()));
    assert!(
        eventually(ISSUE, || async {
            g.logs().matches("certificate not obtained").count() >= 2
        })
        .await,
        "bad.test not retried:\n{}",
        g.logs()
    );
    let logs = g.logs();
    assert!(
        logs.contains("bad.test") && logs.contains("validation failed"),
        "{logs}"
    );
    assert!(
        logs.contains("urn:ietf:params:acme:error"),
        "the CA's problem document is logged:\n{logs}"
    );
    assert!(logs.contains("failures=2"), "{logs}");
    // HTTPS for bad.test fails cleanly; plain HTTP keeps working.
    assert!(connect(p.https, "bad.test", client.clone()).await.is_err());
    let r = get_with(&format!("http://{}/", p.http), &[("host", "bad.test")]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello from bad.test"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_sharing_storage_place_one_order() {
    let p = ports();
    let q = ports();
    let pebble = Pebble::start(p.http.port(), p.https.port());
    let storage = tempfile::tempdir().unwrap().path().join("acme");
    // Both start at once; only `a` is where Pebble validates, so if `b` orders, `a` answers its HTTP-01
    // token from the shared storage.
    let a = Gatehouse::start_raw(
        &config(&p, &pebble, &storage, "http-01", "", &["shared.test"]),
        p.http,
    );
    let b = Gatehouse::start_raw(
        &config(&q, &pebble, &storage, "http-01", "", &["shared.test"]),
        q.http,
    );
    let client = pebble_client(&pebble).await;
    let ca = served(p.https, "shared.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("a:\n{}\nb:\n{}", a.logs(), b.logs()));
    let cb = served(q.https, "shared.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("b:\n{}", b.logs()));
    assert_eq!(ca, cb, "both serve the one certificate");
    assert_eq!(
        orders(&a) + orders(&b),
        1,
        "a:\n{}\nb:\n{}",
        a.logs(),
        b.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_added_by_reload_gets_its_certificate() {
    let p = ports();
    let pebble = Pebble::start(p.http.port(), p.https.port());
    let storage = tempfile::tempdir().unwrap().path().join("acme");
    let g = Gatehouse::start_raw(
        &config(&p, &pebble, &storage, "http-01", "", &["one.test"]),
        p.http,
    );
    let client = pebble_client(&pebble).await;
    served(p.https, "one.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("{}", g.logs()));
    assert!(
        connect(p.https, "two.test", client.clone()).await.is_err(),
        "no certificate for two.test yet"
    );
    std::fs::write(
        &g.config_path,
        config(
            &p,
            &pebble,
            &storage,
            "http-01",
            "",
            &["one.test", "two.test"],
        ),
    )
    .unwrap();
    served(p.https, "two.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("{}", g.logs()));
}

/// 10 (hardening). A certificate and its key are one record; an issued certificate is served from memory
/// even when storing it fails (here the storage's `certificates` is a file, not a folder), and the failure
/// orders nothing again.
#[tokio::test(flavor = "multi_thread")]
async fn an_issued_certificate_is_served_when_storing_it_fails_and_not_ordered_again() {
    let p = ports();
    let pebble = Pebble::start(p.http.port(), p.https.port());
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("acme");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&storage)
            .unwrap();
    }
    std::fs::write(storage.join("certificates"), "not a folder").unwrap();
    let cfg = config(&p, &pebble, &storage, "http-01", "", &["full.test"]);
    let g = Gatehouse::start_raw(&cfg, p.http);
    let client = pebble_client(&pebble).await;
    served(p.https, "full.test", &client, ISSUE)
        .await
        .unwrap_or_else(|| panic!("not served from memory:\n{}", g.logs()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            g.logs().contains("cannot be stored")
        })
        .await,
        "{}",
        g.logs()
    );
    // Several passes later (check_interval = 500 ms), still one order.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        orders(&g),
        1,
        "a store failure ordered again:\n{}",
        g.logs()
    );
    assert!(connect(p.https, "full.test", client.clone()).await.is_ok());

    // When the store works again, the certificate is stored, as one record.
    std::fs::remove_file(storage.join("certificates")).unwrap();
    let bundle = storage.join("certificates/full.test/bundle.pem");
    assert!(
        eventually(Duration::from_secs(10), || async { bundle.exists() }).await,
        "{}",
        g.logs()
    );
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(
        text.contains("PRIVATE KEY") && text.contains("BEGIN CERTIFICATE"),
        "key and chain together"
    );
    assert_eq!(orders(&g), 1);
}
