//! The access log against the real binary: nginx-compatible combined lines, JSON lines with the fields a
//! pipeline needs, per-site off and the health-check skip rule, and logrotate's rename + SIGUSR1 under load.

use gatehouse_e2e::client::{get, get_with, http1, send};
use gatehouse_e2e::{dead_addr, eventually, Backend, Gatehouse};
use http::Method;
use std::path::Path;
use std::time::Duration;

const SECS: Duration = Duration::from_secs(10);

/// The standard combined-log regex (as GoAccess and Logstash's COMBINEDAPACHELOG read it).
const COMBINED: &str = r#"^(?P<ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "(?P<method>[A-Z]+) (?P<target>\S+) (?P<proto>HTTP/\d\.\d)" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)"$"#;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    eventually(SECS, || async { lines(path).len() >= n }).await;
    // And nothing more comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    lines(path)
}

/// A config with a site for pool `p` (and `/dead/` to a dead pool), a site with no `/` route (404s), and
/// the access log in `log`.
fn config(a: &Backend, log: &Path, server: &str) -> String {
    format!(
        r#"[server]
access_log = "{log}"
workers = 1
{server}

[[site]]
hosts = ["example.com"]
default = true
  [[site.route]]
  path = "/"
  pool = "p"
  [[site.route]]
  path = "/dead/"
  pool = "dead"

[[site]]
hosts = ["only.test"]
  [[site.route]]
  path = "/x/"
  respond = "x"

[[site]]
hosts = ["quiet.test"]
access_log = "off"
  [[site.route]]
  path = "/"
  pool = "p"

[pool.p]
servers = ["{a}"]

[pool.dead]
servers = ["{dead}"]
"#,
        log = log.display(),
        a = a.addr,
        dead = dead_addr(),
    )
}

async fn three_kinds(g: &Gatehouse) -> [String; 3] {
    let ok = get_with(
        &g.url("/hello?x=1&y=2"),
        &[
            ("user-agent", "test \"agent\"/1.0"),
            ("referer", "http://ref.test/"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    let missing = get_with(&g.url("/nope"), &[("host", "only.test")]).await;
    assert_eq!(missing.status, 404);
    let bad = get(&g.url("/dead/x")).await;
    assert_eq!(bad.status, 502);
    [ok, missing, bad].map(|r| r.headers["x-request-id"].to_str().unwrap().to_string())
}

#[tokio::test]
async fn combined_lines_parse_with_the_standard_regex_for_a_200_a_404_and_a_502() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let g = Gatehouse::start(&config(&a, &log, "access_log_format = \"combined\""));
    three_kinds(&g).await;
    let got = wait_lines(&log, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let re = regex::Regex::new(COMBINED).unwrap();
    let caps: Vec<_> = got
        .iter()
        .map(|l| {
            re.captures(l)
                .unwrap_or_else(|| panic!("not a combined line: {l}"))
        })
        .collect();
    assert_eq!(&caps[0]["ip"], "127.0.0.1");
    assert_eq!((&caps[0]["ident"], &caps[0]["user"]), ("-", "-"));
    assert_eq!(&caps[0]["method"], "GET");
    assert_eq!(&caps[0]["target"], "/hello?x=1&y=2");
    assert_eq!(&caps[0]["proto"], "HTTP/1.1");
    assert_eq!(&caps[0]["status"], "200");
    assert_eq!(&caps[0]["bytes"], "1", "the backend's name, \"a\"");
    assert_eq!(&caps[0]["referer"], "http://ref.test/");
    assert_eq!(
        &caps[0]["ua"], r"test \x22agent\x22/1.0",
        "quotes escaped as nginx does"
    );
    assert_eq!((&caps[1]["target"], &caps[1]["status"]), ("/nope", "404"));
    assert_eq!((&caps[2]["target"], &caps[2]["status"]), ("/dead/x", "502"));
    assert_eq!(&caps[1]["referer"], "-");
}

#[tokio::test]
async fn json_lines_carry_the_fields_for_a_200_a_404_and_a_502() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.json");
    let g = Gatehouse::start(&config(&a, &log, "access_log_format = \"json\""));
    let ids = three_kinds(&g).await;
    let got = wait_lines(&log, 3).await;
    let v: Vec<serde_json::Value> = got
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(v.len(), 3);
    let ok = &v[0];
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["path"], "/hello");
    assert_eq!(ok["query"], "x=1&y=2");
    assert_eq!(ok["protocol"], "HTTP/1.1");
    assert_eq!(ok["client_ip"], "127.0.0.1");
    assert_eq!(ok["host"], g.addr.to_string());
    assert_eq!(ok["bytes_sent"], 1);
    assert_eq!(ok["bytes_received"], 0);
    assert_eq!(ok["upstream_addr"], a.addr.to_string());
    assert!(ok["upstream_connect_time"].is_number());
    assert!(ok["upstream_response_time"].is_number());
    assert!(ok["request_time"].as_f64().is_some_and(|t| t >= 0.0));
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["site"], "example.com");
    assert_eq!(ok["route"], "/");
    assert_eq!(ok["pool"], "p");
    assert!(ok["tls_version"].is_null());
    assert_eq!(ok["user_agent"], "test \"agent\"/1.0");
    assert_eq!(ok["referer"], "http://ref.test/");
    assert!(ok["time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.contains('T')));
    for (line, id) in v.iter().zip(&ids) {
        assert_eq!(
            line["request_id"],
            id.as_str(),
            "the id the client got back"
        );
    }
    let missing = &v[1];
    assert_eq!(
        (missing["status"].as_u64(), missing["site"].as_str()),
        (Some(404), Some("only.test"))
    );
    assert!(missing["pool"].is_null() && missing["upstream_addr"].is_null());
    assert_eq!(missing["host"], "only.test");
    let bad = &v[2];
    assert_eq!(bad["status"], 502);
    assert_eq!(bad["pool"], "dead");
    assert_eq!(bad["attempts"], 1);
    assert_eq!(bad["end"], "upstream_error");
    assert!(bad["upstream_response_time"].is_null());
}

#[tokio::test]
async fn a_site_can_be_off_and_health_check_paths_are_skipped_or_sampled() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let g = Gatehouse::start(&config(
        &a,
        &log,
        "access_log_skip = [\"/healthz\", \"/status/\"]\naccess_log_sample = 5",
    ));
    for _ in 0..20 {
        assert_eq!(get(&g.url("/healthz")).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(
            get(&g.url("/status/500")).await.status,
            500,
            "errors on skipped paths are logged"
        );
    }
    for _ in 0..10 {
        assert_eq!(
            get_with(&g.url("/"), &[("host", "quiet.test")])
                .await
                .status,
            200
        );
    }
    for _ in 0..3 {
        get(&g.url("/other")).await;
    }
    let got = wait_lines(&log, 9).await;
    let count = |p: &str| {
        got.iter()
            .filter(|l| l.contains(&format!("\"GET {p} ")))
            .count()
    };
    assert_eq!(
        count("/healthz"),
        4,
        "one in five of the skipped successes: {got:#?}"
    );
    assert_eq!(count("/status/500"), 2);
    assert_eq!(count("/other"), 3);
    assert_eq!(
        got.len(),
        9,
        "nothing from the site whose access_log is off: {got:#?}"
    );
}

#[tokio::test]
async fn rename_and_sigusr1_under_load_lose_and_duplicate_no_line() {
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let g = std::sync::Arc::new(Gatehouse::start(&config(&a, &log, "")));
    const TASKS: usize = 4;
    const EACH: usize = 300;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = Vec::new();
    for t in 0..TASKS {
        let (g, done) = (g.clone(), done.clone());
        load.push(tokio::spawn(async move {
            let c = http1();
            for i in 0..EACH {
                let r = send(
                    &c,
                    Method::GET,
                    &g.url(&format!("/r/{t}/{i}")),
                    &[],
                    bytes::Bytes::new(),
                )
                .await;
                assert_eq!(r.status, 200);
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    // Rotate mid-load, as logrotate does: rename, then SIGUSR1.
    assert!(
        eventually(SECS, || async {
            done.load(std::sync::atomic::Ordering::Relaxed) >= TASKS * EACH / 3
        })
        .await
    );
    std::fs::rename(&log, &rotated).unwrap();
    g.signal(10); // SIGUSR1
    for l in load {
        l.await.unwrap();
    }
    let total = TASKS * EACH;
    assert!(
        eventually(SECS, || async {
            lines(&log).len() + lines(&rotated).len() >= total
        })
        .await,
        "{} + {} lines of {total}",
        lines(&log).len(),
        lines(&rotated).len()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (old, new) = (lines(&rotated), lines(&log));
    assert!(
        !old.is_empty() && !new.is_empty(),
        "both files got lines: {} and {}",
        old.len(),
        new.len()
    );
    let mut paths: Vec<String> = old
        .iter()
        .chain(&new)
        .map(|l| l.split('"').nth(1).unwrap_or("").to_string())
        .collect();
    assert_eq!(paths.len(), total, "no line lost, none twice");
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), total, "every request exactly once");
    assert!(g.logs().contains("access log reopened"));
}
