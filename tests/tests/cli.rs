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
