//! `gatehouse check` and `run` on good and broken configs.

use gatehouse_e2e::gatehouse::{binary, check, check_file};
use std::path::Path;

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (ok, out) = check_file(&root.join("config/gatehouse.toml"));
    assert!(ok, "{out}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn broken_configs_name_file_line_and_key() {
    let cases = [
        // (config, expected line, words)
        ("[[listener]]\nname = \"a\"\nbind = \"nowhere\"\n", 3, "listener[0].bind"),
        (
            "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n[[site]]\nhosts = [\"x.test\"]\n  [[site.route]]\n  path = \"/\"\n  pool = \"missing\"\n",
            8,
            "no pool named \"missing\"",
        ),
        ("[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n[pool.p]\nservers = []\nbalance = \"random\"\n", 6, "pool.p.balance"),
        ("[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n[server]\nlog_levle = \"x\"\n", 5, "unknown field"),
        ("[[listener]\nname = \"a\"\n", 1, ""),
    ];
    for (config, line, words) in cases {
        let (ok, out) = check(config);
        assert!(!ok, "accepted:\n{config}");
        assert!(
            out.contains(&format!("g.toml:{line}:")),
            "wanted line {line} in: {out}"
        );
        assert!(out.contains(words), "wanted {words:?} in: {out}");
    }
}

#[test]
fn run_refuses_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[listener]]\nname = 1\n").unwrap();
    let out = std::process::Command::new(binary())
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.toml:2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let (ok, out) = gatehouse_e2e::gatehouse::check_file(Path::new("/nonexistent/g.toml"));
    assert!(!ok);
    assert!(
        out.contains("/nonexistent/g.toml") && out.contains("cannot read"),
        "{out}"
    );
}

/// `check` runs what reload runs before binding: a config one rejects, the other rejects too, naming the same
/// line — for problems found in validation (a bad sni) and in preparation (files that cannot be read). A
/// certificate that does not load is the exception that proves it: `check` calls it an error, and a reload
/// reports it at the same line but still applies (one bad certificate never takes other sites down).
#[tokio::test(flavor = "multi_thread")]
async fn check_rejects_what_reload_rejects_with_file_and_line() {
    use gatehouse_e2e::client::get;
    use gatehouse_e2e::{Backend, Gatehouse};
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    // A folder: unreadable as a file, even for root.
    let unreadable = dir.path().display().to_string();
    let base = format!(
        "[[site]]\nhosts = [\"example.com\"]\ndefault = true\n  [[site.route]]\n  path = \"/\"\n  pool = \"p\"\n[pool.p]\nservers = [\"{}\"]\n",
        a.addr
    );
    let cases = [
        (
            "bad sni",
            format!("{base}[pool.tls]\nservers = [\"127.0.0.1:1\"]\ntls = true\nsni = \"not a name\"\n"),
            12,
            "pool.tls.sni",
        ),
        (
            "unreadable CA file",
            format!("{base}[pool.tls]\nservers = [\"127.0.0.1:1\"]\ntls = true\nca = \"{unreadable}\"\n"),
            12,
            "pool.tls.ca",
        ),
        (
            "unreadable certificate",
            format!(
                "[[site]]\nhosts = [\"t.test\"]\ntls = {{ cert = \"{unreadable}\", key = \"{unreadable}\" }}\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n{base}"
            ),
            3,
            "site[0].tls",
        ),
    ];
    let applied_anyway = |name: &str| name == "unreadable certificate";
    let g = Gatehouse::start(&base);
    for (name, config, line, key) in cases {
        let listener = "\n[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:1\"\n";
        let (ok, out) = check(&format!("{config}{listener}"));
        assert!(!ok, "{name}: check accepted it");
        assert!(
            out.contains(&format!("g.toml:{line}:")) && out.contains(key),
            "{name}: check should name g.toml:{line} and {key}: {out}"
        );

        let marker = if applied_anyway(name) {
            "keep their last good certificate"
        } else {
            "config rejected"
        };
        let before = g.logs().matches(marker).count();
        g.write_config(&config);
        let rejected = gatehouse_e2e::eventually(std::time::Duration::from_secs(5), || async {
            g.logs().matches(marker).count() > before
        })
        .await;
        assert!(rejected, "{name}: reload did not report it:\n{}", g.logs());
        let logs = g.logs();
        let last = logs.rsplit(marker).next().unwrap_or("");
        assert!(
            last.contains(&format!("gatehouse.toml:{line}:")) && last.contains(key),
            "{name}: reload should name gatehouse.toml:{line} and {key}:\n{last}"
        );
        assert_eq!(
            get(&g.url("/")).await.status,
            200,
            "{name}: the old config keeps serving"
        );
    }
}

/// A 100,000-server config validates (and prepares: every balancer built) in seconds, not hours: no check
/// is O(n²) and no balancer keeps O(n·Σweight) state. The bound is generous: it catches an algorithm,
/// not a slow machine.
#[test]
fn a_hundred_thousand_servers_check_in_seconds() {
    let mut servers = String::with_capacity(100_000 * 40);
    for i in 0..100_000u32 {
        let [_, b, c, d] = i.to_be_bytes();
        servers += &format!(
            "{{ addr = \"127.{b}.{c}.{}:80\", weight = {} }},",
            d,
            1 + i % 1000
        );
    }
    let config = format!(
        "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:1\"\n[[site]]\nhosts = [\"x.test\"]\n  [[site.route]]\n  path = \"/\"\n  pool = \"rr\"\n  [[site.route]]\n  path = \"/h/\"\n  pool = \"hash\"\n[pool.rr]\nservers = [{servers}]\n[pool.hash]\nbalance = \"ip_hash\"\nservers = [{servers}]\n"
    );
    let start = std::time::Instant::now();
    let (ok, out) = check(&config);
    assert!(ok, "{}", &out[..out.len().min(500)]);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}
