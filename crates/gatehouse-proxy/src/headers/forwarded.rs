//! Who the client is, and telling the backend: `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`,
//! `X-Forwarded-Host`.
//!
//! Headers from a peer in `trusted_proxies` are believed: the client is the right-most address in its
//! `X-Forwarded-For` that is not itself a trusted proxy, and its `X-Forwarded-Proto`/`-Host` are kept. From any
//! other peer they are replaced, as Caddy and Traefik do, so a client cannot choose its own address; and the
//! forwarding headers Gatehouse does not set (`Forwarded`, `X-Forwarded-Port`, `X-Forwarded-Prefix`) are
//! removed, so a backend that reads them cannot be told a scheme, port or prefix by the client.
//!
//! The walk fails closed: an entry that is not a plain address (`203.0.113.7:51234`, garbage) ends it as an
//! untrusted client — its address when one can be read from it, else `0.0.0.0`, which no allow rule admits —
//! never as the last trusted hop.

use super::added::{Added, Field};
use gatehouse_config::canonical;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// Forwarding headers Gatehouse does not set: passed on only from trusted peers.
static UNTRUSTED_REMOVED: [HeaderName; 3] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];

pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client's address: the peer's, unless the peer is a trusted proxy vouching for someone else.
pub fn client_ip(
    trusted: &[IpNet],
    peer: IpAddr,
    peer_trusted: bool,
    headers: &HeaderMap,
) -> IpAddr {
    if !peer_trusted {
        return peer;
    }
    let mut client = peer;
    // Walk right to left over every X-Forwarded-For line; stop at the first address we do not trust.
    let values: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let hop = hop.trim();
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical(ip);
                if !is_trusted(trusted, ip) {
                    break;
                }
            }
            Err(_) => {
                // Not a plain address: the client is whoever this is, trusted or not.
                client = address_with_port(hop)
                    .map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), canonical);
                break;
            }
        }
    }
    client
}

/// The address of `ip:port` or `[v6]:port`, as some proxies write X-Forwarded-For entries.
fn address_with_port(hop: &str) -> Option<IpAddr> {
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

/// What the forwarded headers are built from.
#[derive(Debug)]
pub struct Forwarded<'a> {
    /// The peer's address, pre-rendered once per connection.
    pub peer_value: &'a HeaderValue,
    pub peer_trusted: bool,
    pub client_ip: IpAddr,
    pub client_is_peer: bool,
    pub proto: &'static str,
}

/// What an untrusted peer's request carries upstream in place of its own forwarding headers: every one of
/// these is removed from it (the first four and X-Request-Id are then set by the proxy).
static FROM_UNTRUSTED_REPLACED: [HeaderName; 8] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    crate::headers::X_REQUEST_ID,
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];

/// The forwarded headers of a request from an untrusted peer, as [`set_forwarded_headers`] sets them, but
/// into the side list of an HTTP/1.1 request (see [`super::added`]); the client's own forwarding
/// headers and X-Request-Id are removed from `headers` first, so none goes up twice.
pub fn replace_forwarded(
    headers: &mut HeaderMap,
    f: &Forwarded<'_>,
    host: Option<HeaderValue>,
    added: &mut Added,
) {
    debug_assert!(!f.peer_trusted);
    // One pass over the names compares them (their lengths first) and hashes nothing; almost no request has
    // any of them, and a remove would hash each name.
    if headers.keys().any(|n| FROM_UNTRUSTED_REPLACED.contains(n)) {
        for name in &FROM_UNTRUSTED_REPLACED {
            headers.remove(name);
        }
    }
    added.set(Field::ForwardedFor, f.peer_value.clone());
    added.set(Field::RealIp, real_ip(f));
    added.set(Field::ForwardedProto, HeaderValue::from_static(f.proto));
    if let Some(h) = host {
        added.set(Field::ForwardedHost, h);
    }
}

/// The X-Real-IP value: the client's address.
fn real_ip(f: &Forwarded<'_>) -> HeaderValue {
    if f.client_is_peer {
        f.peer_value.clone()
    } else {
        HeaderValue::from_str(&f.client_ip.to_string()).unwrap_or_else(|_| f.peer_value.clone())
    }
}

/// Sets the forwarded headers on a request going upstream. `host` is the request's Host, if any.
pub fn set_forwarded_headers(
    headers: &mut HeaderMap,
    f: &Forwarded<'_>,
    host: Option<HeaderValue>,
) {
    // Removed by name only when one is there: a remove hashes the name, and almost no request has any. One
    // pass over the names compares them (their lengths first) and hashes nothing.
    if !f.peer_trusted && headers.keys().any(|n| UNTRUSTED_REMOVED.contains(n)) {
        for name in &UNTRUSTED_REMOVED {
            headers.remove(name);
        }
    }
    let prior_xff = if f.peer_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .fold(None::<String>, |acc, v| match acc {
                None => Some(v.to_string()),
                Some(a) => Some(a + ", " + v),
            })
    } else {
        None
    };
    let xff = match prior_xff {
        Some(prior) => HeaderValue::from_str(&format!(
            "{prior}, {}",
            f.peer_value.to_str().unwrap_or_default()
        ))
        .unwrap_or_else(|_| f.peer_value.clone()),
        None => f.peer_value.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);

    headers.insert(X_REAL_IP.clone(), real_ip(f));

    if !(f.peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(f.proto));
    }
    if !(f.peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST.clone(), h);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(&t, ip("203.0.113.9"), false, &xff("1.2.3.4")),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right() {
        let t = nets(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        assert_eq!(
            client_ip(&t, peer, true, &xff("6.6.6.6, 1.2.3.4, 10.1.1.1")),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(&t, peer, true, &xff("10.2.2.2")),
            ip("10.2.2.2"),
            "all trusted: left-most"
        );
        assert_eq!(client_ip(&t, peer, true, &HeaderMap::new()), peer);
        assert_eq!(
            client_ip(&t, peer, true, &xff("garbage, 1.2.3.4")),
            ip("1.2.3.4")
        );
        assert_eq!(
            client_ip(&t, peer, true, &xff("1.2.3.4, 10.1.1.1:80")),
            ip("10.1.1.1"),
            "an entry with a port ends the walk, even a trusted address"
        );
        assert_eq!(
            client_ip(&t, peer, true, &xff("1.2.3.4, garbage")),
            ip("0.0.0.0"),
            "fails closed"
        );
    }

    #[test]
    fn headers_from_untrusted_peer_are_replaced() {
        let mut h = xff("6.6.6.6");
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let peer = HeaderValue::from_static("203.0.113.9");
        let f = Forwarded {
            peer_value: &peer,
            peer_trusted: false,
            client_ip: ip("203.0.113.9"),
            client_is_peer: true,
            proto: "http",
        };
        set_forwarded_headers(&mut h, &f, Some(HeaderValue::from_static("example.com")));
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.9");
        assert_eq!(h[&X_REAL_IP], "203.0.113.9");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "example.com");
    }

    #[test]
    fn replaced_beside_the_map_they_leave_no_client_copy() {
        let mut h = xff("6.6.6.6");
        h.insert("forwarded", HeaderValue::from_static("for=6.6.6.6"));
        h.insert("x-request-id", HeaderValue::from_static("front-1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let peer = HeaderValue::from_static("203.0.113.9");
        let f = Forwarded {
            peer_value: &peer,
            peer_trusted: false,
            client_ip: ip("203.0.113.9"),
            client_is_peer: true,
            proto: "https",
        };
        let mut added = Added::default();
        replace_forwarded(&mut h, &f, None, &mut added);
        assert_eq!(h.len(), 1, "only accept is left: {h:?}");
        assert_eq!(added.get(Field::ForwardedFor).unwrap(), "203.0.113.9");
        assert_eq!(added.get(Field::RealIp).unwrap(), "203.0.113.9");
        assert_eq!(added.get(Field::ForwardedProto).unwrap(), "https");
        assert!(added.get(Field::ForwardedHost).is_none(), "no host, none");
    }

    #[test]
    fn headers_from_trusted_peer_are_appended_to() {
        let mut h = xff("1.2.3.4");
        let peer = HeaderValue::from_static("10.0.0.1");
        let f = Forwarded {
            peer_value: &peer,
            peer_trusted: true,
            client_ip: ip("1.2.3.4"),
            client_is_peer: false,
            proto: "http",
        };
        set_forwarded_headers(&mut h, &f, None);
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 10.0.0.1");
        assert_eq!(h[&X_REAL_IP], "1.2.3.4");
    }
}
