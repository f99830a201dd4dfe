//! What the request path does with a client's head before any upstream sees it: the target parsed as a URI,
//! Host validation and normalization, path normalization (dot segments, encoded separators, the match
//! form), longest-prefix routing and prefix stripping, a rewrite, and the Accept-Encoding choice. Input: a
//! target line, then a Host line, then an Accept-Encoding line (split on '\n').
#![no_main]

use gatehouse_config::{Codec, Rewrite};
use gatehouse_policy::rewrite::PathRewrite;
use gatehouse_route::{
    has_encoded_separator, has_malformed_escape, is_valid_host, match_form, normalize_host, normalize_path,
    strip_matched_prefix, PathTable,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn routes() -> &'static (PathTable<u8>, PathRewrite) {
    static R: OnceLock<(PathTable<u8>, PathRewrite)> = OnceLock::new();
    R.get_or_init(|| {
        let table = PathTable::new(
            ["/", "/api/", "/api/v2/", "/static", "/a;b/"]
                .iter()
                .enumerate()
                .map(|(i, p)| (p.to_string(), i as u8)),
        );
        let rw = PathRewrite::compile(&Rewrite {
            from: "^/api/(v[0-9]+)/(.*)$".into(),
            to: "/$2?version=$1".into(),
        })
        .expect("rewrite");
        (table, rw)
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let (target, host, accept) = (
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
        lines.next().unwrap_or(""),
    );
    if let Ok(uri) = target.parse::<http::Uri>() {
        let path = uri.path();
        if has_malformed_escape(path) {
            // Refused with 400 before normalization (a stray % could form a new escape).
            return;
        }
        let normalized = normalize_path(path);
        // Normalizing is idempotent, and the result never climbs above the root.
        assert_eq!(normalize_path(&normalized), normalized);
        // (`*` is OPTIONS's target, left as it is.)
        assert!(normalized.starts_with('/') || normalized == "*", "{normalized:?}");
        assert!(!normalized.split('/').any(|s| s == ".."), "{normalized:?}");
        let _ = has_encoded_separator(&normalized);
        for decode in [false, true] {
            let form = match_form(&normalized, decode);
            let (table, rw) = routes();
            if let Some((_, prefix, _)) = table.lookup(&form) {
                if let Some(rest) = strip_matched_prefix(&normalized, prefix, decode) {
                    assert!(rest.len() <= normalized.len());
                }
            }
            if let Some(out) = rw.apply(&form) {
                assert!(out.path.starts_with('/'));
            }
        }
    }
    if is_valid_host(host) {
        let n = normalize_host(host);
        assert!(!n.bytes().any(|b| b.is_ascii_uppercase()), "{n:?}");
    }
    if let Ok(v) = http::HeaderValue::from_str(accept) {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::ACCEPT_ENCODING, v);
        let offered = [Codec::Zstd, Codec::Br, Codec::Gzip];
        if let Some(c) = gatehouse_policy::encoding::choose(&h, &offered) {
            assert!(offered.contains(&c));
        }
    }
});
