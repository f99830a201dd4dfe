//! Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are never forwarded: `Connection` and
//! every header it names, `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`,
//! `Trailer`, `Transfer-Encoding`, `Upgrade`. On a real upgrade, `Connection: upgrade` and `Upgrade` stay.

use http::header::{self, HeaderMap, HeaderValue};

const ALWAYS: [&str; 7] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Headers a `Connection` header may not remove: the Host the request was routed by, and the ones Gatehouse
/// sets itself (a client must not strip a trusted proxy's X-Forwarded-For chain by naming it).
const PROTECTED: [&str; 5] = [
    "host",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// Which hop-by-hop header a name is: bit `i` for `ALWAYS[i]`, then `Connection`, then `Upgrade`.
fn hop_bit(name: &header::HeaderName) -> u16 {
    match name.as_str() {
        "connection" => CONNECTION_BIT,
        "upgrade" => UPGRADE_BIT,
        n => ALWAYS.iter().position(|a| *a == n).map_or(0, |i| 1 << i),
    }
}

const CONNECTION_BIT: u16 = 1 << ALWAYS.len();
const UPGRADE_BIT: u16 = CONNECTION_BIT << 1;

/// Removes hop-by-hop headers. With `upgrade`, keeps `Upgrade` and sets `Connection: upgrade`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names first, and only the ones there are removed: a remove by name hashes it, and
    // most messages carry none of these or only `Connection: keep-alive` (a server's every response).
    let present = headers.keys().fold(0, |bits, name| bits | hop_bit(name));
    if present & CONNECTION_BIT != 0 {
        // Its values come out first (moved, not copied), then the names they list go by name: no header name
        // is built for an option like `close`, which names no header. (`keep-alive`, the usual one, goes with
        // ALWAYS below if it is there.)
        let mut values: smallvec::SmallVec<[HeaderValue; 2]> = smallvec::SmallVec::new();
        if let header::Entry::Occupied(e) = headers.entry(header::CONNECTION) {
            values.extend(e.remove_entry_mult().1);
        }
        for value in &values {
            let Ok(list) = value.to_str() else { continue };
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let skip = name.eq_ignore_ascii_case("keep-alive")
                    || PROTECTED.iter().any(|p| p.eq_ignore_ascii_case(name))
                    || (upgrade && name.eq_ignore_ascii_case("upgrade"));
                if !skip {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, name) in ALWAYS.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & UPGRADE_BIT != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// Whether a request asks to switch protocols (HTTP/1.1 `Connection: upgrade` + `Upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// The protocols of an `Upgrade` header (`websocket`, `my-proto/2`), lower-cased names without versions.
fn upgrade_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

/// Whether `token` (a configured `upgrades` entry, or an offered protocol) names `offered`'s protocol: a
/// configured name without a version allows every version of it.
fn allows(token: &str, offered: &str) -> bool {
    offered == token || offered.split('/').next() == Some(token)
}

/// For an upgrade request: keeps only the offered protocols the route allows (`h2c` never) in `Upgrade`, and
/// says whether any is left. With none left the request goes on as a plain one (its Upgrade is removed).
pub fn allow_upgrade(headers: &mut HeaderMap, allowed: &[Box<str>]) -> bool {
    let kept: Vec<String> = upgrade_names(headers)
        .filter(|o| o.split('/').next() != Some("h2c"))
        .filter(|o| allowed.iter().any(|a| allows(a, o)))
        .collect();
    match HeaderValue::from_str(&kept.join(", ")) {
        Ok(v) if !kept.is_empty() => {
            headers.insert(header::UPGRADE, v);
            true
        }
        _ => false,
    }
}

/// Whether a 101's `Upgrade` switches to one of the protocols the request offered (after [`allow_upgrade`]).
pub fn switched_to_offered(response: &HeaderMap, offered: &HeaderMap) -> bool {
    let offered: Vec<String> = upgrade_names(offered).collect();
    let mut chosen = upgrade_names(response);
    match (chosen.next(), chosen.next()) {
        (Some(c), None) => offered
            .iter()
            .any(|o| *o == c || allows(&c, o) || allows(o, &c)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn removes_fixed_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "gzip"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
            ("host", "example.com"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["host", "x-kept"]);
    }

    #[test]
    fn a_servers_keep_alive_goes_and_options_named_as_headers_go_too() {
        let mut h = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("content-length", "3"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["content-length"]);
        // RFC 9110 §7.6.1: every option the Connection header lists is removed as a field, `close` too.
        let mut h = map(&[("connection", "Close"), ("close", "x"), ("x-kept", "1")]);
        remove_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn every_connection_value_is_read_and_tokens_that_are_no_header_name_are_harmless() {
        let mut h = map(&[
            ("connection", "close, X-Secret"),
            ("connection", "bad name, , x(y), x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-kept"]);
    }

    #[test]
    fn connection_cannot_remove_host_or_forwarded_headers() {
        let mut h = map(&[
            ("connection", "Host, X-Forwarded-For, x-real-ip, x-other"),
            ("host", "example.com"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("x-other", "1"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["host", "x-forwarded-for", "x-real-ip"]);
    }

    #[test]
    fn upgrade_keeps_upgrade_and_connection_upgrade() {
        let mut h = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("keep-alive", "1"),
        ]);
        assert!(is_upgrade_request(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!h.contains_key("keep-alive"));
    }

    #[test]
    fn only_allowed_upgrades_are_kept_and_h2c_never() {
        let allowed: Vec<Box<str>> = vec!["websocket".into(), "h2c".into()];
        let mut h = map(&[("upgrade", "h2c, WebSocket/13, foo")]);
        assert!(allow_upgrade(&mut h, &allowed));
        assert_eq!(h["upgrade"], "websocket/13");
        let mut h = map(&[("upgrade", "h2c")]);
        assert!(!allow_upgrade(&mut h, &allowed));
        let sent = map(&[("upgrade", "websocket")]);
        assert!(switched_to_offered(
            &map(&[("upgrade", "WebSocket")]),
            &sent
        ));
        assert!(!switched_to_offered(&map(&[("upgrade", "h2c")]), &sent));
        assert!(!switched_to_offered(&map(&[]), &sent));
    }

    #[test]
    fn upgrade_header_alone_is_not_an_upgrade() {
        assert!(!is_upgrade_request(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade_request(&map(&[("connection", "upgrade")])));
    }
}
