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
    fn normal_paths_are_borrowed() {
        for p in ["/", "/a/b", "/a/b/", "/index.html", "/a-b_c~d"] {
            assert!(matches!(normalize_path(p), Cow::Borrowed(_)), "{p}");
        }
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
}
