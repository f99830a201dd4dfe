//! Every crate's top-level modules form layers: no module imports, directly or through others, a module
//! that imports it. Read from the sources (`crate::x` paths outside tests and comments), so a new cycle fails
//! here before a reviewer has to find it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it uses.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeSet::new();
    for e in std::fs::read_dir(src).expect("src").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            modules.insert(name);
        } else if let Some(m) = name.strip_suffix(".rs") {
            if m != "lib" && m != "main" {
                modules.insert(m.to_string());
            }
        }
    }
    // `pub use module::Item` in the root: a path through the root is a path to that module.
    let root = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .find(|p| p.exists())
        .expect("lib.rs or main.rs");
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    for line in std::fs::read_to_string(&root).expect("root").lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        for item in items
            .trim_end_matches(';')
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
        {
            let item = item.rsplit(" as ").next().unwrap_or("").trim();
            if !item.is_empty() {
                reexports.insert(item.to_string(), module.to_string());
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut files = vec![src.to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(
                std::fs::read_dir(&p)
                    .expect("dir")
                    .flatten()
                    .map(|e| e.path()),
            );
            continue;
        }
        if p.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = p.strip_prefix(src).expect("inside src");
        let top = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs").to_string();
        if !modules.contains(&top) {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("source");
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = code
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for used in crate_paths(&code) {
            let target = if modules.contains(&used) {
                Some(used)
            } else {
                reexports.get(&used).cloned()
            };
            if let Some(t) = target.filter(|t| *t != top) {
                edges.entry(top.clone()).or_default().insert(t);
            }
        }
    }
    edges
}

/// The first segment of every `crate::...` path, including each item of `crate::{a, b::c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.push(first_segment(&item));
        } else {
            out.push(first_segment(rest));
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn first_segment(s: &str) -> String {
    s.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle in `edges`, if there is one, as the modules along it.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = path.iter().position(|p| p == m) {
            let mut c = path[pos..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

fn crates() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("crates/")
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn no_crate_has_a_module_cycle() {
    let all = crates();
    assert!(all.len() >= 7, "found {all:?}");
    for src in all {
        let g = graph(&src);
        assert!(
            cycle(&g).is_none(),
            "{}: module cycle {:?}\n{g:#?}",
            src.display(),
            cycle(&g)
        );
    }
}

#[test]
fn the_checker_sees_a_cycle_and_grouped_imports() {
    assert_eq!(
        crate_paths("use crate::{a::X, b, c::{d, e}};\nlet x = crate::f::g();"),
        ["a", "b", "c", "f"]
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&g).map(|c| c.len()), Some(4));
    g.get_mut("c").unwrap().clear();
    assert!(cycle(&g).is_none());
}

/// The proxy's layers, as lib.rs documents them: the leaf modules use no other module of the crate.
#[test]
fn the_proxy_leaves_are_leaves() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/gatehouse-proxy/src");
    let g = graph(&src);
    for leaf in ["conn", "headers"] {
        let uses: Vec<&String> = g[leaf].iter().filter(|m| *m != "worker").collect();
        assert!(uses.is_empty(), "{leaf} uses {uses:?}");
    }
    assert!(
        !g["upstream"].contains("snapshot"),
        "upstream must not know the snapshot"
    );
    assert!(
        !g["context"].contains("snapshot"),
        "the context is plain data below the snapshot"
    );
}
