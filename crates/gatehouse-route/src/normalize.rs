//! Path normalization before matching, as nginx does: `%XX` escapes of unreserved characters decoded, repeated
//! slashes merged, `.` and `..` segments resolved. Without it `/%61dmin/`, `//admin/` or `/x/../admin/` would
//! slip past a rule on `/admin/`. Escapes of reserved characters (`%2F`, `%3F`, …) stay as they are.

use std::borrow::Cow;

/// The normalized form of a request path; borrows when the path is already normal (the common case).
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if path == "*" {
        return Cow::Borrowed(path); // OPTIONS *
    }
    let b = path.as_bytes();
    let needs =
        b.contains(&b'%') || path.contains("//") || path.contains("/.") || !path.starts_with('/');
    if !needs {
        return Cow::Borrowed(path);
    }
    // 1. Decode unreserved escapes only.
    let mut decoded = Vec::with_capacity(b.len() + 1);
    if !path.starts_with('/') {
        decoded.push(b'/');
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                let c = h * 16 + l;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(c);
                    i += 3;
                    continue;
                }
            }
        }
        decoded.push(b[i]);
        i += 1;
    }
    // 2. Merge slashes and resolve dot segments, segment by segment.
    let text = String::from_utf8_lossy(&decoded);
    let trailing = text.ends_with('/') || text.ends_with("/.") || text.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut result = String::with_capacity(text.len());
    for seg in &out {
        result.push('/');
        result.push_str(seg);
    }
    if trailing || out.is_empty() {
        result.push('/');
    }
    if result == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(result)
    }
}

/// Whether a path has a `%` that is not followed by two hex digits. Such a path is refused (400, as nginx
/// does): decoding the escape after it could make a new one (`/%%361dmin` → `/%61dmin`), which the backend
/// would decode again to a path the routes never saw (`/admin`). With every `%` a whole escape,
/// [`normalize_path`] is idempotent.
pub fn has_malformed_escape(path: &str) -> bool {
    let b = path.as_bytes();
    b.iter().enumerate().any(|(i, c)| {
        *c == b'%'
            && !(b.get(i + 1).copied().and_then(hex).is_some()
                && b.get(i + 2).copied().and_then(hex).is_some())
    })
}

/// Whether a path carries an encoded `/` or `\` (`%2F`, `%5C`, any case): backends disagree on whether
/// that is a separator (Django and many frameworks decode it, nginx and Apache by default do not), so it
/// could reach a route the decoded path would not.
pub fn has_encoded_separator(path: &str) -> bool {
    path.as_bytes().windows(3).any(is_encoded_separator)
}

fn is_encoded_separator(w: &[u8]) -> bool {
    w[0] == b'%' && (w[1] == b'2' && (w[2] | 0x20) == b'f' || w[1] == b'5' && (w[2] | 0x20) == b'c')
}

/// The form of a normalized path that routes are matched on: `;parameters` dropped from each segment (what
/// Tomcat and other servlet containers do, so `/admin;x/` is matched as `/admin/`), and with
/// `decode_separators`, `%2F` and `%5C` decoded to `/` (a backend that decodes them sees these segments).
/// Borrows when nothing changes.
pub fn match_form(normalized: &str, decode_separators: bool) -> Cow<'_, str> {
    let has_params = normalized.contains(';');
    let has_encoded = decode_separators && has_encoded_separator(normalized);
    if !has_params && !has_encoded {
        return Cow::Borrowed(normalized);
    }
    let mut text = normalized.to_string();
    if has_encoded {
        for (from, to) in [("%2F", "/"), ("%2f", "/"), ("%5C", "/"), ("%5c", "/")] {
            text = text.replace(from, to);
        }
    }
    if has_params {
        text = text
            .split('/')
            .map(|seg| seg.split(';').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("/");
    }
    // Decoding and dropping may have made `//`, `.` or `..` segments: resolve them as well.
    Cow::Owned(normalize_path(&text).into_owned())
}

/// What is left of `normalized` once the route `prefix` (which matched its [`match_form`]) is taken off the
/// front, walking both as the match form was made: `;parameters` skipped, and with `decode_separators` an
/// encoded `/` or `\` read as `/`. `None` when the prefix does not map onto the path letter by letter (the
/// match form re-resolved a `..` that dropping parameters made): the caller refuses such a request rather
/// than send it unstripped.
pub fn strip_matched_prefix<'a>(
    normalized: &'a str,
    prefix: &str,
    decode_separators: bool,
) -> Option<&'a str> {
    let (b, p) = (normalized.as_bytes(), prefix.as_bytes());
    let (mut i, mut j) = (0, 0);
    let skip_params = |i: &mut usize| {
        while *i < b.len() && b[*i] != b'/' {
            *i += 1;
        }
    };
    while j < p.len() {
        if i >= b.len() {
            return None;
        }
        if b[i] == b';' {
            skip_params(&mut i);
            continue;
        }
        let (c, len) =
            if decode_separators && b.len() - i >= 3 && is_encoded_separator(&b[i..i + 3]) {
                (b'/', 3)
            } else {
                (b[i], 1)
            };
        if c != p[j] {
            return None;
        }
        i += len;
        j += 1;
    }
    // A prefix that ends where a segment's parameters start takes them too (`/api` of `/api;v=1/x`).
    if i < b.len() && b[i] == b';' && !prefix.ends_with('/') {
        skip_params(&mut i);
    }
    Some(&normalized[i..])
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stray_percent_is_malformed_and_whole_escapes_normalize_once() {
        for bad in ["/%%361dmin", "/%4%41", "/50%", "/%g1", "/a%2"] {
            assert!(has_malformed_escape(bad), "{bad}");
        }
        for good in ["/%61dmin", "/a%2Fb", "/plain", "/%25"] {
            assert!(!has_malformed_escape(good), "{good}");
            let once = normalize_path(good);
            assert_eq!(normalize_path(&once), once, "{good}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a/b", "/a/b/", "/index.html", "/a-b_c~d"] {
            assert!(matches!(normalize_path(p), Cow::Borrowed(_)), "{p}");
        }
    }

    #[test]
    fn separators_and_parameters_are_matched_as_backends_read_them() {
        assert!(has_encoded_separator("/a%2Fb") && has_encoded_separator("/a%5cb"));
        assert!(!has_encoded_separator("/a%20b") && !has_encoded_separator("/a/b"));
        let cases = [
            ("/admin;x/users", false, "/admin/users"),
            ("/admin;/users", false, "/admin/users"),
            ("/a;b=c", false, "/a"),
            ("/admin%2Fusers", true, "/admin/users"),
            ("/x%2F..%2Fadmin/", true, "/admin/"),
            ("/admin%5Cusers", true, "/admin/users"),
            ("/admin%2Fusers", false, "/admin%2Fusers"),
            ("/plain", true, "/plain"),
        ];
        for (input, decode, want) in cases {
            assert_eq!(match_form(input, decode), want, "{input}");
        }
        assert!(matches!(match_form("/plain", true), Cow::Borrowed(_)));
    }

    #[test]
    fn tricks_that_would_dodge_a_prefix_rule() {
        let cases = [
            ("/%61dmin/x", "/admin/x"),
            ("//admin/x", "/admin/x"),
            ("/x/../admin/", "/admin/"),
            ("/./admin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/../../etc", "/etc"),
            ("/a%2Fb", "/a%2Fb"), // an encoded slash stays encoded
            ("/100%", "/100%"),
            ("/%zz", "/%zz"),
            ("/..", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input), want, "{input}");
        }
    }

    #[test]
    fn prefixes_strip_as_they_matched() {
        for (path, prefix, decode, want) in [
            ("/api/users", "/api/", false, Some("users")),
            ("/api;x/users", "/api/", false, Some("users")),
            ("/api;v=1/x", "/api", false, Some("/x")),
            ("/api%2Fusers", "/api/", true, Some("users")),
            ("/a;p/b;q/c", "/a/b/", false, Some("c")),
            ("/api/..;x/admin/", "/admin/", false, None),
            ("/other", "/api/", false, None),
            ("/\u{e9}t\u{e9};x/y", "/\u{e9}t\u{e9}/", true, Some("y")),
            ("/api%2", "/api/", true, None),
        ] {
            assert_eq!(strip_matched_prefix(path, prefix, decode), want, "{path}");
            let matched = match_form(path, decode);
            assert!(want.is_none() || matched.starts_with(prefix), "{path}");
        }
    }
}
