//! `[[site]]` and `[[site.route]]`: which hosts a site answers, and what each path prefix does.

use super::{http_header_unsafe, policy, Checker};
use crate::model::*;
use crate::raw::{RawPool, RawRoute, RawSite};
use std::collections::{BTreeMap, HashMap, HashSet};
use toml::Spanned;

pub(super) fn check(
    c: &mut Checker,
    raw: &[Spanned<RawSite>],
    pools: &BTreeMap<String, Spanned<RawPool>>,
) -> Vec<Site> {
    let mut seen_hosts: HashMap<HostPattern, usize> = HashMap::new();
    let mut default_site: Option<usize> = None;
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let site_span = s.span();
        let s = s.get_ref();
        let key = format!("site[{i}]");
        if s.hosts.get_ref().is_empty() {
            c.err(
                s.hosts.span(),
                format!("{key}.hosts"),
                "a site needs at least one host",
            );
        }
        let mut hosts = Vec::new();
        for h in s.hosts.get_ref() {
            match parse_host(h.get_ref()) {
                Ok(p) => {
                    if let Some(prev) = seen_hosts.insert(p.clone(), i) {
                        c.err(
                            h.span(),
                            format!("{key}.hosts"),
                            format!("{:?} is already a host of site[{prev}]", h.get_ref()),
                        );
                    }
                    hosts.push(p);
                }
                Err(e) => c.err(h.span(), format!("{key}.hosts"), e),
            }
        }
        if s.default {
            if let Some(prev) = default_site {
                c.err(
                    site_span.clone(),
                    format!("{key}.default"),
                    format!("site[{prev}] is already the default site"),
                );
            }
            default_site = Some(i);
        }
        let tls = s.tls.as_ref().and_then(|t| check_site_tls(c, t, &key));
        if let Some(v) = &s.hsts {
            if v.get_ref().is_empty() || http_header_unsafe(v.get_ref()) {
                c.err(
                    v.span(),
                    format!("{key}.hsts"),
                    "must be a header value such as \"max-age=31536000\"",
                );
            }
        }
        let site_rules = SiteRules {
            allow: c.cidrs(&s.allow, &format!("{key}.allow")),
            deny: c.cidrs(&s.deny, &format!("{key}.deny")),
            max_body: c.size(&s.max_body, &format!("{key}.max_body")),
            upgrades: s
                .upgrades
                .as_ref()
                .map(|u| check_upgrades(c, u, &format!("{key}.upgrades")))
                .unwrap_or_else(|| defaults::UPGRADES.iter().map(|s| s.to_string()).collect()),
            tunnel_idle_timeout: c.timeout(
                &s.tunnel_idle_timeout,
                &format!("{key}.tunnel_idle_timeout"),
                defaults::TUNNEL_IDLE_TIMEOUT,
            ),
            policy: policy::check(
                c,
                &policy::Fields {
                    rate_limit: &s.rate_limit,
                    request_headers: &s.request_headers,
                    response_headers: &s.response_headers,
                    basic_auth: &s.basic_auth,
                    compress: &s.compress,
                    compress_level: &s.compress_level,
                    compress_min_size: &s.compress_min_size,
                    security_headers: s.security_headers,
                },
                &key,
                crate::RateScope::Site,
                &crate::Policy::default(),
                None,
            ),
        };
        if s.routes.is_empty() {
            c.err(
                site_span.clone(),
                format!("{key}.route"),
                "a site needs at least one [[site.route]]",
            );
        }
        let mut paths = HashSet::new();
        let mut routes = Vec::new();
        for (j, r) in s.routes.iter().enumerate() {
            let rkey = format!("{key}.route[{j}]");
            let path = r.get_ref().path.get_ref();
            if !path.starts_with('/') {
                c.err(
                    r.get_ref().path.span(),
                    format!("{rkey}.path"),
                    format!("{path:?} must start with '/'"),
                );
            } else if !paths.insert(path.clone()) {
                c.err(
                    r.get_ref().path.span(),
                    format!("{rkey}.path"),
                    format!("{path:?} appears twice in this site: the second would never match"),
                );
            }
            if let Some(route) = check_route(c, r, &rkey, pools, &site_rules) {
                routes.push(route);
            }
        }
        out.push(Site {
            hosts,
            default: s.default,
            routes,
            tls,
            redirect_https: s.redirect_https.as_ref().is_some_and(|v| *v.get_ref()),
            hsts: s.hsts.as_ref().map(|v| v.get_ref().clone()),
            allow_encoded_slashes: s.allow_encoded_slashes.unwrap_or(false),
            access_log: match &s.access_log {
                None => true,
                Some(v) => match v.get_ref().as_str() {
                    "on" => true,
                    "off" => false,
                    other => {
                        c.err(
                            v.span(),
                            format!("{key}.access_log"),
                            format!("{other:?}: a site's access_log is \"on\" or \"off\" (the file is [server] access_log)"),
                        );
                        true
                    }
                },
            },
            access_log_skip: s.access_log_skip.as_ref().map(|l| {
                super::server::skip_paths(c, l, &format!("{key}.access_log_skip"))
            }),
        });
    }
    out
}

/// What a site passes down to its routes.
struct SiteRules {
    allow: Vec<ipnet::IpNet>,
    deny: Vec<ipnet::IpNet>,
    max_body: Option<u64>,
    upgrades: Vec<String>,
    tunnel_idle_timeout: std::time::Duration,
    policy: crate::Policy,
}

/// Upgrade protocol tokens (RFC 9110 §7.8), lower-cased. `h2c` is never allowed: Gatehouse speaks h2c itself,
/// and an h2c upgrade would let a client talk HTTP/2 straight to a backend, past every route rule.
fn check_upgrades(c: &mut Checker, list: &Spanned<Vec<Spanned<String>>>, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for u in list.get_ref() {
        let t = u.get_ref().trim().to_ascii_lowercase();
        let name = t.split('/').next().unwrap_or("");
        let token_ok = !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
        if !token_ok {
            c.err(
                u.span(),
                key,
                format!(
                    "{:?} is not an Upgrade protocol token (e.g. \"websocket\")",
                    u.get_ref()
                ),
            );
        } else if name == "h2c" {
            c.err(
                u.span(),
                key,
                "h2c upgrades are never passed on: Gatehouse speaks h2c itself (prior knowledge)",
            );
        } else if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn check_route(
    c: &mut Checker,
    r: &Spanned<RawRoute>,
    rkey: &str,
    pools: &BTreeMap<String, Spanned<RawPool>>,
    site: &SiteRules,
) -> Option<Route> {
    let rspan = r.span();
    let r = r.get_ref();
    let status = match &r.status {
        None => None,
        Some(st) => match u16::try_from(*st.get_ref()) {
            Ok(v) if (200..=599).contains(&v) => Some((v, st.span())),
            _ => {
                c.err(
                    st.span(),
                    format!("{rkey}.status"),
                    "must be an HTTP status between 200 and 599",
                );
                None
            }
        },
    };
    let action = match (&r.pool, &r.redirect, &r.respond) {
        (Some(pool), None, None) => {
            if !pools.contains_key(pool.get_ref()) {
                let known: Vec<&str> = pools.keys().map(String::as_str).collect();
                c.err(
                    pool.span(),
                    format!("{rkey}.pool"),
                    format!(
                        "no pool named {:?} (pools: {})",
                        pool.get_ref(),
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            if let Some((_, sp)) = &status {
                c.err(
                    sp.clone(),
                    format!("{rkey}.status"),
                    "status applies only to redirect or respond routes",
                );
            }
            RouteAction::Pool {
                pool: pool.get_ref().clone(),
                strip_prefix: r.strip_prefix,
            }
        }
        (None, Some(to), None) => {
            let status = status.map_or(defaults::REDIRECT_STATUS, |(s, _)| s);
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                c.err(
                    r.status.as_ref().map_or(rspan.clone(), |s| s.span()),
                    format!("{rkey}.status"),
                    "a redirect status is one of 301, 302, 303, 307, 308",
                );
            }
            if to.get_ref().is_empty() || http_header_unsafe(to.get_ref()) {
                c.err(
                    to.span(),
                    format!("{rkey}.redirect"),
                    "must be a non-empty URL without control characters",
                );
            }
            RouteAction::Redirect {
                location: to.get_ref().clone(),
                status,
            }
        }
        (None, None, Some(body)) => RouteAction::Respond {
            body: body.clone(),
            status: status.map_or(defaults::RESPOND_STATUS, |(s, _)| s),
        },
        _ => {
            c.err(
                rspan,
                rkey,
                "a route needs exactly one of pool, redirect or respond",
            );
            return None;
        }
    };
    if r.strip_prefix && !matches!(action, RouteAction::Pool { .. }) {
        c.err(
            rspan.clone(),
            format!("{rkey}.strip_prefix"),
            "strip_prefix applies only to pool routes",
        );
    }
    let route_max_body = c.size(&r.max_body, &format!("{rkey}.max_body"));
    let upgrades = r
        .upgrades
        .as_ref()
        .map(|u| check_upgrades(c, u, &format!("{rkey}.upgrades")))
        .unwrap_or_else(|| site.upgrades.clone());
    let tunnel_idle_timeout = match &r.tunnel_idle_timeout {
        None => site.tunnel_idle_timeout,
        Some(_) => c.timeout(
            &r.tunnel_idle_timeout,
            &format!("{rkey}.tunnel_idle_timeout"),
            site.tunnel_idle_timeout,
        ),
    };
    let policy = policy::check(
        c,
        &policy::Fields {
            rate_limit: &r.rate_limit,
            request_headers: &r.request_headers,
            response_headers: &r.response_headers,
            basic_auth: &r.basic_auth,
            compress: &r.compress,
            compress_level: &r.compress_level,
            compress_min_size: &r.compress_min_size,
            security_headers: r.security_headers,
        },
        rkey,
        crate::RateScope::Route,
        &site.policy,
        r.rewrite.as_ref(),
    );
    if policy.rewrite.is_some() && !matches!(action, RouteAction::Pool { .. }) {
        c.err(
            rspan.clone(),
            format!("{rkey}.rewrite"),
            "rewrite applies only to pool routes",
        );
    }
    Some(Route {
        policy,
        path: r.path.get_ref().clone(),
        action,
        access: AccessRules {
            site_allow: site.allow.clone(),
            site_deny: site.deny.clone(),
            route_allow: c.cidrs(&r.allow, &format!("{rkey}.allow")),
            route_deny: c.cidrs(&r.deny, &format!("{rkey}.deny")),
        },
        max_body: route_max_body.or(site.max_body),
        upgrades,
        tunnel_idle_timeout,
    })
}

/// Lower-cases and checks a site host; `*.` may lead, nothing else may be a wildcard.
fn parse_host(s: &str) -> Result<HostPattern, String> {
    let h = s.trim().to_ascii_lowercase();
    let (wild, name) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h.as_str()),
    };
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return Err(format!(
            "{s:?} is not a host name (letters, digits, '-', dots; one leading \"*.\" for a wildcard; no port)"
        ));
    }
    Ok(if wild {
        HostPattern::Wildcard(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_string())
    })
}

/// `tls = { cert = "...", key = "..." }` (the files are read when the config is prepared) or `tls = "acme"`.
fn check_site_tls(c: &mut Checker, t: &Spanned<toml::Value>, site_key: &str) -> Option<SiteTls> {
    let key = format!("{site_key}.tls");
    match t.get_ref() {
        toml::Value::String(s) if s == "acme" => Some(SiteTls::Acme),
        toml::Value::Table(tab) => {
            if let Some(unknown) = tab.keys().find(|k| !matches!(k.as_str(), "cert" | "key")) {
                c.err(
                    t.span(),
                    &key,
                    format!("unknown key {unknown:?}; expected cert and key"),
                );
                return None;
            }
            match (
                tab.get("cert").and_then(|v| v.as_str()),
                tab.get("key").and_then(|v| v.as_str()),
            ) {
                (Some(cert), Some(k)) => Some(SiteTls::Files {
                    cert: cert.into(),
                    key: k.into(),
                    at: c.at(t.span()),
                }),
                _ => {
                    c.err(
                        t.span(),
                        &key,
                        "needs cert = \"file.pem\" and key = \"file.key\"",
                    );
                    None
                }
            }
        }
        _ => {
            c.err(
                t.span(),
                &key,
                "expected \"acme\" or { cert = \"file.pem\", key = \"file.key\" }",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, rejects, OK};

    #[test]
    fn bad_sites_and_routes_name_their_line() {
        rejects(
            "unknown pool",
            "pool = \"web\"",
            "pool = \"api\"",
            10,
            "no pool named \"api\"",
        );
        rejects(
            "bad host",
            "\"example.com\",",
            "\"exa mple.com\",",
            7,
            "not a host name",
        );
        rejects(
            "bad cidr",
            "[[site]]",
            "[[site]]\nallow = [\"10.0.0.0/33\"]",
            7,
            "not a CIDR",
        );
        rejects(
            "relative path",
            "path = \"/\"",
            "path = \"api\"",
            9,
            "must start with '/'",
        );
        rejects(
            "tls table",
            "[[site]]",
            "[[site]]\ntls = { cert = \"c.pem\" }",
            7,
            "needs cert",
        );
    }

    #[test]
    fn upgrades_default_to_websocket_and_never_allow_h2c() {
        let cfg = crate::parse(OK, "t").unwrap();
        assert_eq!(cfg.sites[0].routes[0].upgrades, ["websocket"]);
        assert_eq!(
            cfg.sites[0].routes[0].tunnel_idle_timeout,
            std::time::Duration::from_secs(3600)
        );
        rejects(
            "h2c",
            "pool = \"web\"",
            "pool = \"web\"\n  upgrades = [\"websocket\", \"h2c\"]",
            11,
            "never passed on",
        );
        rejects(
            "bad token",
            "pool = \"web\"",
            "pool = \"web\"\n  upgrades = [\"web socket\"]",
            11,
            "not an Upgrade protocol token",
        );
        let custom = OK.replace("pool = \"web\"", "pool = \"web\"\n  upgrades = [\"WebSocket\", \"my-proto/2\"]\n  tunnel_idle_timeout = \"5m\"");
        let cfg = crate::parse(&custom, "t").unwrap();
        assert_eq!(cfg.sites[0].routes[0].upgrades, ["websocket", "my-proto/2"]);
        assert_eq!(
            cfg.sites[0].routes[0].tunnel_idle_timeout,
            std::time::Duration::from_secs(300)
        );
    }

    #[test]
    fn duplicate_hosts_and_paths() {
        let dup_route = OK.replace(
            "pool = \"web\"",
            "pool = \"web\"\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"",
        );
        assert!(errors(&dup_route)
            .iter()
            .any(|e| e.contains("appears twice")));
        let dup_host = format!("{OK}\n[[site]]\nhosts = [\"EXAMPLE.com\"]\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n");
        assert!(errors(&dup_host)
            .iter()
            .any(|e| e.contains("already a host of site[0]")));
    }

    #[test]
    fn route_actions_are_exclusive_and_statuses_checked() {
        let two = OK.replace("pool = \"web\"", "pool = \"web\"\n  respond = \"x\"");
        assert!(errors(&two).iter().any(|e| e.contains("exactly one of")));
        let bad_redirect = OK.replace("pool = \"web\"", "redirect = \"/x\"\n  status = 200");
        assert!(errors(&bad_redirect)
            .iter()
            .any(|e| e.contains("redirect status")));
    }
}
