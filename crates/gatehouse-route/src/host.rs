//! Sites by host: exact names in a hash map, then one-label wildcards (`*.example.org`), then the default site.

use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug)]
pub struct HostTable<T> {
    exact: HashMap<Box<str>, usize>,
    /// Keyed by the suffix after the first label, dot included: `*.example.org` → `.example.org`.
    wildcard: HashMap<Box<str>, usize>,
    default: Option<usize>,
    sites: Vec<T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        HostTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
            sites: Vec::new(),
        }
    }
}

impl<T> HostTable<T> {
    /// Adds a site; `exact` are lower-case names, `wildcard_suffixes` start with a dot.
    /// Later duplicates are ignored (validation rejects them first).
    pub fn insert<'a>(
        &mut self,
        site: T,
        exact: impl IntoIterator<Item = &'a str>,
        wildcard_suffixes: impl IntoIterator<Item = &'a str>,
        is_default: bool,
    ) -> usize {
        let idx = self.sites.len();
        self.sites.push(site);
        for h in exact {
            self.exact.entry(h.into()).or_insert(idx);
        }
        for s in wildcard_suffixes {
            self.wildcard.entry(s.into()).or_insert(idx);
        }
        if is_default && self.default.is_none() {
            self.default = Some(idx);
        }
        idx
    }

    /// The site added as the `index`-th (as [`insert`](Self::insert) returned).
    pub fn get(&self, index: usize) -> Option<&T> {
        self.sites.get(index)
    }

    /// The site for a normalized host (see [`normalize_host`]); falls back to the default site.
    pub fn lookup(&self, host: &str) -> Option<&T> {
        self.lookup_exact_or_wildcard(host)
            .or(self.default)
            .map(|i| &self.sites[i])
    }

    /// Like [`lookup`](Self::lookup) without the default: the site that names this host itself.
    pub fn lookup_named(&self, host: &str) -> Option<&T> {
        self.lookup_exact_or_wildcard(host).map(|i| &self.sites[i])
    }

    fn lookup_exact_or_wildcard(&self, host: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        let dot = host.find('.')?;
        if dot == 0 {
            return None;
        }
        self.wildcard.get(&host[dot..]).copied()
    }
}

/// Whether `raw` (a Host header or an authority) is `host[:port]` and nothing else: a reg-name of letters,
/// digits, `-`, `.`, `_`, or an `[IPv6]` literal, then at most one `:port` of digits (≤ 65535). Anything
/// else — `/`, `?`, `#`, `@`, spaces, a second colon — is refused: the host is sent upstream and must not
/// smuggle a path or userinfo with it.
pub fn is_valid_host(raw: &str) -> bool {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => ("", Some(p)),
                None => return false,
            },
        }
    } else {
        match raw.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    });
    let host_ok = raw.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    port_ok && host_ok
}

/// Lower-cases a Host header or :authority and drops its port and any trailing dot.
/// Borrows when nothing needs changing, which is the common case.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let no_port = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port → v6 (kept bracketless so it compares with configured names)
        rest.split(']').next().unwrap_or(rest)
    } else {
        match raw.rfind(':') {
            Some(i) if raw[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &raw[..i],
            _ => raw,
        }
    };
    let trimmed = no_port.strip_suffix('.').unwrap_or(no_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_and_port_are_valid_hosts() {
        for ok in [
            "example.com",
            "Example.COM:8080",
            "a_b.test",
            "127.0.0.1",
            "[::1]",
            "[::1]:443",
            "x.",
            "localhost:1",
        ] {
            assert!(is_valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "a.example/admin/?",
            "a.example?x",
            "user@a.example",
            "a.example:80:80",
            "a b",
            "a.example:",
            "a.example:99999",
            "[::1",
            "[nope]",
            "[::1]x",
            "a.example#f",
            "a\\b",
            ":80",
            "a%2fb",
        ] {
            assert!(!is_valid_host(bad), "{bad}");
        }
    }

    fn table() -> HostTable<&'static str> {
        let mut t = HostTable::default();
        t.insert("exact", ["example.com", "www.example.com"], [], false);
        t.insert("wild", [], [".example.org"], false);
        t.insert("fallback", ["other.test"], [], true);
        t
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let t = table();
        let cases = [
            ("example.com", "exact"),
            ("www.example.com", "exact"),
            ("a.example.org", "wild"),
            ("example.org", "fallback"), // a wildcard needs one more label
            ("a.b.example.org", "fallback"), // ... exactly one
            ("unknown.test", "fallback"),
            ("", "fallback"),
        ];
        for (host, want) in cases {
            assert_eq!(t.lookup(host), Some(&want), "{host}");
        }
    }

    #[test]
    fn no_default_means_none() {
        let mut t = HostTable::default();
        t.insert(1, ["a.test"], [], false);
        assert_eq!(t.lookup("b.test"), None);
        assert_eq!(t.lookup_named("a.test"), Some(&1));
        assert_eq!(t.get(0), Some(&1));
        assert_eq!(t.get(1), None);
    }

    #[test]
    fn normalize_strips_port_case_and_dot() {
        let cases = [
            ("Example.COM:8080", "example.com"),
            ("example.com", "example.com"),
            ("example.com.", "example.com"),
            ("[::1]:80", "::1"),
            ("127.0.0.1:80", "127.0.0.1"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw), want, "{raw}");
        }
        assert!(matches!(normalize_host("plain.test"), Cow::Borrowed(_)));
    }
}
