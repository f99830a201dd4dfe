//! A site's and a route's traffic policy: `rate_limit`, `request_headers`, `response_headers`,
//! `security_headers`, `basic_auth`, `compress` (+ `compress_level`, `compress_min_size`), and the route's
//! `rewrite`. A route inherits what its site says and replaces it with its own; header rules add up.

use super::{http_header_unsafe, Checker};
use crate::policy::{self, *};
use crate::raw::{RawBasicAuth, RawHeaderRules, RawLevel, RawRateLimit, RawRewrite, RawSize};
use toml::Spanned;

/// The policy keys a site and a route share, as written.
pub(super) struct Fields<'a> {
    pub rate_limit: &'a Option<Spanned<RawRateLimit>>,
    pub request_headers: &'a Option<Spanned<RawHeaderRules>>,
    pub response_headers: &'a Option<Spanned<RawHeaderRules>>,
    pub basic_auth: &'a Option<Spanned<RawBasicAuth>>,
    pub compress: &'a Option<Spanned<Vec<Spanned<String>>>>,
    pub compress_level: &'a Option<Spanned<RawLevel>>,
    pub compress_min_size: &'a Option<Spanned<RawSize>>,
    pub security_headers: Option<bool>,
}

/// Headers a rule may not touch: they frame the message or belong to one connection, and Gatehouse sets them.
const FRAMING: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// A site's policy (`inherited` is the empty policy) or a route's (`inherited` is its site's).
pub(super) fn check(
    c: &mut Checker,
    f: &Fields<'_>,
    key: &str,
    scope: RateScope,
    inherited: &Policy,
    rewrite: Option<&Spanned<RawRewrite>>,
) -> Policy {
    let rate_limit = match f.rate_limit {
        Some(r) => rate_limit(c, r, &format!("{key}.rate_limit"), scope),
        None => inherited.rate_limit.clone(),
    };
    let mut response = inherited.response_headers.clone();
    if f.security_headers == Some(true) {
        response = response.then(&HeaderRules {
            set: [
                ("x-content-type-options", "nosniff"),
                ("x-frame-options", "SAMEORIGIN"),
                ("referrer-policy", "strict-origin-when-cross-origin"),
            ]
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
            ..HeaderRules::default()
        });
    }
    if let Some(r) = f.response_headers {
        response = response.then(&header_rules(c, r, &format!("{key}.response_headers")));
    }
    let request = match f.request_headers {
        Some(r) => {
            inherited
                .request_headers
                .then(&header_rules(c, r, &format!("{key}.request_headers")))
        }
        None => inherited.request_headers.clone(),
    };
    let basic_auth = match f.basic_auth {
        Some(b) => basic_auth(c, b, &format!("{key}.basic_auth")),
        None => inherited.basic_auth.clone(),
    };
    let compress = compress(c, f, key, inherited.compress.as_ref());
    Policy {
        rate_limit,
        request_headers: request,
        response_headers: response,
        rewrite: rewrite.and_then(|r| self::rewrite(c, r, &format!("{key}.rewrite"))),
        basic_auth,
        compress,
    }
}

fn rate_limit(
    c: &mut Checker,
    raw: &Spanned<RawRateLimit>,
    key: &str,
    scope: RateScope,
) -> Option<RateLimit> {
    let r = raw.get_ref();
    let per_second = match parse_rate(r.rate.get_ref()) {
        Ok(v) => v,
        Err(e) => {
            c.err(r.rate.span(), format!("{key}.rate"), e);
            return None;
        }
    };
    let burst = c.count(
        &r.burst,
        &format!("{key}.burst"),
        policy::defaults::RATE_BURST,
        1_000_000,
    );
    let ipv6_prefix = match &r.ipv6_prefix {
        None => policy::defaults::RATE_IPV6_PREFIX,
        Some(p) => match u8::try_from(*p.get_ref()) {
            Ok(v) if (1..=128).contains(&v) => v,
            _ => {
                c.err(
                    p.span(),
                    format!("{key}.ipv6_prefix"),
                    "must be a prefix length between 1 and 128 (64: one subscriber's network)",
                );
                policy::defaults::RATE_IPV6_PREFIX
            }
        },
    };
    let max_clients = match &r.max_clients {
        None => policy::defaults::RATE_MAX_CLIENTS,
        Some(n) => match u64::try_from(*n.get_ref()) {
            Ok(v) if (1..=10_000_000).contains(&v) => v,
            _ => {
                c.err(
                    n.span(),
                    format!("{key}.max_clients"),
                    "must be between 1 and 10000000",
                );
                policy::defaults::RATE_MAX_CLIENTS
            }
        },
    };
    Some(RateLimit {
        per_second,
        burst,
        nodelay: r.nodelay.unwrap_or(true),
        ipv6_prefix,
        max_clients,
        scope,
    })
}

/// `"10r/s"`, `"600r/m"`, `"3600r/h"` (nginx's notation, plus hours).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let bad = || {
        format!("{s:?} is not a rate: write requests per second, minute or hour, as \"10r/s\" or \"600r/m\"")
    };
    let (n, unit) = s.trim().split_once("r/").ok_or_else(bad)?;
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    if !(n.is_finite() && n > 0.0 && n <= 1e9) {
        return Err(format!("{s:?}: the rate must be above 0"));
    }
    Ok(n / per)
}

fn header_rules(c: &mut Checker, raw: &Spanned<RawHeaderRules>, key: &str) -> HeaderRules {
    let r = raw.get_ref();
    let mut out = HeaderRules::default();
    for name in &r.remove {
        if let Some(n) = header_name(c, name, &format!("{key}.remove")) {
            out.remove.push(n);
        }
    }
    for (what, list, into) in [("set", &r.set, &mut out.set), ("add", &r.add, &mut out.add)] {
        let k = format!("{key}.{what}");
        for (name, value) in list {
            let Some(n) = header_name(c, name, &k) else {
                continue;
            };
            if let Err(e) = check_template(value.get_ref()) {
                c.err(value.span(), &k, e);
                continue;
            }
            into.push((n, value.get_ref().clone()));
        }
    }
    out
}

/// A header name rules may use, lower-cased.
fn header_name(c: &mut Checker, name: &Spanned<String>, key: &str) -> Option<String> {
    let n = name.get_ref().to_ascii_lowercase();
    let token = !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        c.err(
            name.span(),
            key,
            format!("{:?} is not a header name", name.get_ref()),
        );
        return None;
    }
    if FRAMING.contains(&n.as_str()) {
        c.err(
            name.span(),
            key,
            format!(
                "{:?} frames the message or belongs to one connection: Gatehouse sets it, a rule may not",
                name.get_ref()
            ),
        );
        return None;
    }
    Some(n)
}

/// A header value with `{variable}`s: no control characters, only known variables.
pub fn check_template(v: &str) -> Result<(), String> {
    if http_header_unsafe(v) {
        return Err(format!("{v:?}: a header value holds no control characters"));
    }
    let mut rest = v;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if is_name && !HEADER_VARIABLES.contains(&name) {
            return Err(format!(
                "{{{name}}} is not a variable (known: {})",
                HEADER_VARIABLES
                    .iter()
                    .map(|v| format!("{{{v}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

fn rewrite(c: &mut Checker, raw: &Spanned<RawRewrite>, key: &str) -> Option<Rewrite> {
    let r = raw.get_ref();
    let re = match regex::Regex::new(r.from.get_ref()) {
        Ok(re) => re,
        Err(e) => {
            c.err(
                r.from.span(),
                format!("{key}.from"),
                format!("not a valid regex: {e}"),
            );
            return None;
        }
    };
    let to = r.to.get_ref();
    if !to.starts_with('/') && !to.starts_with('$') {
        c.err(
            r.to.span(),
            format!("{key}.to"),
            "must start with '/' (or with a capture that holds one)",
        );
        return None;
    }
    if let Some(n) = missing_group(&re, to) {
        c.err(
            r.to.span(),
            format!("{key}.to"),
            format!(
                "${n}: the pattern has no such group ({} groups)",
                re.captures_len() - 1
            ),
        );
        return None;
    }
    if http_header_unsafe(to) || to.contains(' ') {
        c.err(
            r.to.span(),
            format!("{key}.to"),
            "a path holds no spaces or control characters",
        );
        return None;
    }
    Some(Rewrite {
        from: r.from.get_ref().clone(),
        to: to.clone(),
    })
}

/// The first `$N` / `${N}` / `${name}` in `to` that `re` does not have.
fn missing_group(re: &regex::Regex, to: &str) -> Option<String> {
    let names: Vec<&str> = re.capture_names().flatten().collect();
    let b = to.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            i += 1;
            continue;
        }
        if b.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let (name, next) = if b.get(i + 1) == Some(&b'{') {
            match to[i + 2..].find('}') {
                Some(end) => (&to[i + 2..i + 2 + end], i + 3 + end),
                None => return Some(to[i + 1..].to_string()),
            }
        } else {
            let end = to[i + 1..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .map_or(to.len(), |e| i + 1 + e);
            (&to[i + 1..end], end)
        };
        let known = match name.parse::<usize>() {
            Ok(n) => n < re.captures_len(),
            Err(_) => names.contains(&name),
        };
        if !known {
            return Some(name.to_string());
        }
        i = next;
    }
    None
}

fn basic_auth(c: &mut Checker, raw: &Spanned<RawBasicAuth>, key: &str) -> Option<BasicAuth> {
    let b = raw.get_ref();
    let realm = b
        .realm
        .as_ref()
        .map_or_else(|| "restricted".to_string(), |r| r.get_ref().clone());
    if let Some(r) = &b.realm {
        if realm.is_empty()
            || realm.contains('"')
            || realm.contains('\\')
            || http_header_unsafe(&realm)
        {
            c.err(
                r.span(),
                format!("{key}.realm"),
                "a realm is a non-empty name without quotes, backslashes or control characters",
            );
        }
    }
    if b.users.get_ref().is_empty() {
        c.err(
            b.users.span(),
            format!("{key}.users"),
            "needs at least one user (name = \"hash\" from `gatehouse hash-password`)",
        );
        return None;
    }
    let mut users = std::collections::BTreeMap::new();
    for (name, hash) in b.users.get_ref() {
        if name.is_empty() || name.contains(':') || http_header_unsafe(name) {
            c.err(
                hash.span(),
                format!("{key}.users"),
                format!("{name:?}: a user name is non-empty and holds no ':'"),
            );
            continue;
        }
        if !looks_like_hash(hash.get_ref()) {
            c.err(
                hash.span(),
                format!("{key}.users.{name}"),
                "not a password hash: write a bcrypt ($2b$…) or argon2 ($argon2id$…) hash, from `gatehouse hash-password` (never a password)",
            );
            continue;
        }
        users.insert(name.clone(), hash.get_ref().clone());
    }
    Some(BasicAuth {
        realm,
        users,
        forward: b.forward,
    })
}

/// The shape of a bcrypt or PHC argon2 hash (fully parsed when the config is compiled).
fn looks_like_hash(h: &str) -> bool {
    let bcrypt = h.len() == 60
        && ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| h.starts_with(p))
        && h.as_bytes()[6] == b'$';
    let argon2 = ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| h.starts_with(p))
        && h.split('$').count() >= 6;
    bcrypt || argon2
}

fn compress(
    c: &mut Checker,
    f: &Fields<'_>,
    key: &str,
    inherited: Option<&Compress>,
) -> Option<Compress> {
    let level = match f.compress_level {
        None => inherited.map_or(CompressLevel::Default, |i| i.level),
        Some(l) => match l.get_ref() {
            RawLevel::Name(n) if n == "fastest" => CompressLevel::Fastest,
            RawLevel::Name(n) if n == "default" => CompressLevel::Default,
            RawLevel::Name(n) if n == "best" => CompressLevel::Best,
            RawLevel::Number(n) if (0..=22).contains(n) => CompressLevel::Precise(*n as i32),
            _ => {
                c.err(
                    l.span(),
                    format!("{key}.compress_level"),
                    "\"fastest\", \"default\", \"best\", or a number from 0 to 22 (the codec's own scale)",
                );
                CompressLevel::Default
            }
        },
    };
    let min_size = c
        .size(f.compress_min_size, &format!("{key}.compress_min_size"))
        .or(inherited.map(|i| i.min_size))
        .unwrap_or(policy::defaults::COMPRESS_MIN_SIZE);
    let codecs = match f.compress {
        None => {
            return inherited.map(|i| Compress {
                codecs: i.codecs.clone(),
                level,
                min_size,
            })
        }
        Some(list) => {
            let mut out = Vec::new();
            for v in list.get_ref() {
                let codec = match v.get_ref().as_str() {
                    "zstd" => Codec::Zstd,
                    "br" => Codec::Br,
                    "gzip" => Codec::Gzip,
                    other => {
                        c.err(
                            v.span(),
                            format!("{key}.compress"),
                            format!("{other:?}: the codecs are \"zstd\", \"br\" and \"gzip\""),
                        );
                        continue;
                    }
                };
                if !out.contains(&codec) {
                    out.push(codec);
                }
            }
            out
        }
    };
    (!codecs.is_empty()).then_some(Compress {
        codecs,
        level,
        min_size,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, rejects, OK};
    use crate::{parse, Codec, RateScope};

    fn route_with(extra: &str) -> String {
        OK.replacen("pool = \"web\"", &format!("pool = \"web\"\n  {extra}"), 1)
    }

    #[test]
    fn rates_read_like_nginx() {
        assert_eq!(super::parse_rate("10r/s"), Ok(10.0));
        assert_eq!(super::parse_rate("600r/m"), Ok(10.0));
        assert_eq!(super::parse_rate("36r/h"), Ok(0.01));
        for bad in ["10", "10r/d", "0r/s", "-1r/s", "r/s", "nanr/s"] {
            assert!(super::parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policy_keys_build_and_inherit() {
        let src = OK.replacen(
            "hosts = [\"example.com\", \"*.example.org\"]",
            "hosts = [\"example.com\", \"*.example.org\"]\nrate_limit = { rate = \"5r/s\", burst = 3 }\ncompress = [\"gzip\", \"br\"]\nrequest_headers = { set = { \"X-Site\" = \"{host}\" } }\nsecurity_headers = true",
            1,
        ) + "\n";
        let src = src.replacen(
            "pool = \"web\"",
            "pool = \"web\"\n  request_headers = { add = { \"X-Route\" = \"{client_ip} {scheme}\" }, remove = [\"X-Debug\"] }\n  rewrite = { from = \"^/old/(.*)$\", to = \"/new/$1\" }\n  basic_auth = { realm = \"ops\", users = { alice = \"$2b$04$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\" } }",
            1,
        );
        let cfg = parse(&src, "t.toml").unwrap();
        let p = &cfg.sites[0].routes[0].policy;
        let rl = p.rate_limit.as_ref().unwrap();
        assert_eq!((rl.per_second, rl.burst, rl.nodelay), (5.0, 3, true));
        assert_eq!(rl.scope, RateScope::Site);
        assert_eq!(
            p.compress.as_ref().unwrap().codecs,
            [Codec::Gzip, Codec::Br]
        );
        assert_eq!(p.compress.as_ref().unwrap().min_size, 512);
        assert_eq!(p.request_headers.set, [("x-site".into(), "{host}".into())]);
        assert_eq!(p.request_headers.remove, ["x-debug"]);
        assert_eq!(p.response_headers.set.len(), 3, "security presets");
        assert_eq!(p.rewrite.as_ref().unwrap().to, "/new/$1");
        assert_eq!(p.basic_auth.as_ref().unwrap().realm, "ops");
    }

    #[test]
    fn bad_policy_values_name_their_line() {
        let cases = [
            ("rate_limit = { rate = \"10/s\" }", "not a rate"),
            (
                "rate_limit = { rate = \"1r/s\", ipv6_prefix = 129 }",
                "prefix length",
            ),
            ("compress = [\"lzma\"]", "codecs are"),
            ("compress_level = \"max\"", "fastest"),
            (
                "request_headers = { set = { \"Bad Name\" = \"x\" } }",
                "not a header name",
            ),
            (
                "request_headers = { set = { \"Content-Length\" = \"1\" } }",
                "frames the message",
            ),
            (
                "response_headers = { set = { \"X-A\" = \"{secret}\" } }",
                "not a variable",
            ),
            (
                "rewrite = { from = \"^/(\", to = \"/x\" }",
                "not a valid regex",
            ),
            (
                "rewrite = { from = \"^/(.*)$\", to = \"/x/$2\" }",
                "no such group",
            ),
            (
                "rewrite = { from = \"^/(.*)$\", to = \"x\" }",
                "must start with '/'",
            ),
            (
                "basic_auth = { users = { bob = \"hunter2\" } }",
                "never a password",
            ),
            ("basic_auth = { users = {} }", "at least one user"),
        ];
        for (edit, words) in cases {
            rejects(
                edit,
                "pool = \"web\"",
                &format!("pool = \"web\"\n  {edit}"),
                11,
                words,
            );
        }
    }

    #[test]
    fn a_route_without_compress_inherits_none_and_named_groups_are_checked() {
        let cfg = parse(
            &route_with("rewrite = { from = \"^/(?P<rest>.*)$\", to = \"/v2/${rest}\" }"),
            "t",
        )
        .unwrap();
        assert!(cfg.sites[0].routes[0].policy.compress.is_none());
        assert!(!errors(&route_with(
            "rewrite = { from = \"^/(?P<rest>.*)$\", to = \"/${nope}\" }"
        ))
        .is_empty());
    }
}
