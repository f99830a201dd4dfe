//! `[pool.NAME]`: backend servers and how to reach and balance them.

use super::Checker;
use crate::model::*;
use crate::raw::{RawHealth, RawPool, RawStatus, RawStatusItem};
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

pub(super) fn check(
    c: &mut Checker,
    raw: &BTreeMap<String, Spanned<RawPool>>,
) -> BTreeMap<String, Pool> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let span = p.span();
        let at = c.at(span.clone());
        let p = p.get_ref();
        let key = format!("pool.{name}");
        let balance = match &p.balance {
            None => Balance::RoundRobin,
            Some(b) => match b.get_ref().as_str() {
                "round_robin" => Balance::RoundRobin,
                "ip_hash" => Balance::IpHash,
                "least_conn" => Balance::LeastConn,
                other => {
                    c.err(
                        b.span(),
                        format!("{key}.balance"),
                        format!(
                            "{other:?}: expected \"round_robin\", \"ip_hash\" or \"least_conn\""
                        ),
                    );
                    Balance::RoundRobin
                }
            },
        };
        let health = p
            .health
            .as_ref()
            .and_then(|h| check_health(c, h, &format!("{key}.health")));
        let servers = check_servers(c, &p.servers, &key);
        let https_count = servers.iter().filter(|s| s.https).count();
        if https_count != 0 && https_count != servers.len() {
            c.err(
                span.clone(),
                format!("{key}.servers"),
                "mixes https:// and plain servers: a pool is all TLS or none",
            );
        }
        let pool_tls = p.tls.as_ref().map(|t| *t.get_ref());
        if let (Some(false), true) = (pool_tls, https_count > 0) {
            if let Some(t) = &p.tls {
                c.err(
                    t.span(),
                    format!("{key}.tls"),
                    "tls = false, but the servers are written https://",
                );
            }
        }
        let tls = (pool_tls.unwrap_or(false) || https_count > 0).then(|| UpstreamTls {
            ca: p.ca.as_ref().map(|c| c.get_ref().into()),
            ca_at: p.ca.as_ref().map_or(at, |ca| c.at(ca.span())),
            sni: p.sni.as_ref().map(|s| s.get_ref().clone()),
        });
        match &tls {
            None => {
                for (v, name) in [(&p.ca, "ca"), (&p.sni, "sni")] {
                    if let Some(v) = v {
                        c.err(
                            v.span(),
                            format!("{key}.{name}"),
                            "applies only to TLS pools (https:// servers or tls = true)",
                        );
                    }
                }
            }
            // The name sent as SNI and verified in the certificate: the pool's sni, else each server's host.
            Some(_) => match &p.sni {
                Some(sni) => {
                    if let Err(e) = check_server_name(sni.get_ref()) {
                        c.err(sni.span(), format!("{key}.sni"), e);
                    }
                }
                None => {
                    for (i, s) in servers.iter().enumerate() {
                        if let Err(e) = check_server_name(&s.host) {
                            if let Some(v) = p.servers.get(i) {
                                c.err(v.span(), format!("{key}.servers[{i}]"), e);
                            }
                        }
                    }
                }
            },
        }
        if p.servers.is_empty() {
            c.err(
                span.clone(),
                format!("{key}.servers"),
                "a pool needs at least one server",
            );
        } else if !servers.is_empty() && servers.iter().all(|s| s.backup) {
            c.err(
                span.clone(),
                format!("{key}.servers"),
                "every server is a backup: at least one must not be",
            );
        }
        let max_idle = c.count(
            &p.max_idle,
            &format!("{key}.max_idle"),
            defaults::MAX_IDLE as u32,
            65_536,
        ) as usize;
        let pool = Pool {
            name: name.clone(),
            at,
            balance,
            servers,
            connect_timeout: c.timeout(
                &p.connect_timeout,
                &format!("{key}.connect_timeout"),
                defaults::CONNECT_TIMEOUT,
            ),
            response_timeout: c.timeout(
                &p.response_timeout,
                &format!("{key}.response_timeout"),
                defaults::RESPONSE_TIMEOUT,
            ),
            retries: c.count(
                &p.retries,
                &format!("{key}.retries"),
                defaults::RETRIES,
                100,
            ),
            max_fails: c.count(
                &p.max_fails,
                &format!("{key}.max_fails"),
                defaults::MAX_FAILS,
                1_000_000,
            ),
            fail_timeout: c.duration(
                &p.fail_timeout,
                &format!("{key}.fail_timeout"),
                defaults::FAIL_TIMEOUT,
            ),
            idle_timeout: c.duration(
                &p.idle_timeout,
                &format!("{key}.idle_timeout"),
                defaults::UPSTREAM_IDLE_TIMEOUT,
            ),
            max_idle,
            tls,
            http2: p.http2.unwrap_or(false),
            health,
            resolve_interval: c.timeout(
                &p.resolve_interval,
                &format!("{key}.resolve_interval"),
                defaults::RESOLVE_INTERVAL,
            ),
            retry_timeout: p.retry_timeout.as_ref().and_then(|_| {
                let d = c.duration(
                    &p.retry_timeout,
                    &format!("{key}.retry_timeout"),
                    Duration::ZERO,
                );
                (!d.is_zero()).then_some(d)
            }),
            fail_on_status: p.fail_on_status.as_ref().map_or_else(Vec::new, |l| {
                l.get_ref()
                    .iter()
                    .filter_map(|n| match u16::try_from(*n) {
                        Ok(s) if (500..=599).contains(&s) => Some(s),
                        _ => {
                            c.err(
                                l.span(),
                                format!("{key}.fail_on_status"),
                                format!("{n}: only 5xx statuses can be the server's failure"),
                            );
                            None
                        }
                    })
                    .collect()
            }),
        };
        out.insert(name.clone(), pool);
    }
    out
}

/// `health = { ... }`; `None` (with errors recorded) when it cannot work.
fn check_health(c: &mut Checker, h: &Spanned<RawHealth>, key: &str) -> Option<HealthCheck> {
    let span = h.span();
    let h = h.get_ref();
    let path = match &h.path {
        // No path: a TCP connect check (stream pools, or servers with no HTTP health endpoint).
        None => None,
        Some(p) if !p.get_ref().starts_with('/') || http_unsafe(p.get_ref()) => {
            c.err(
                p.span(),
                format!("{key}.path"),
                "must start with / and hold no spaces or control characters",
            );
            return None;
        }
        Some(p) => Some(p.get_ref().clone()),
    };
    if let (Some(_), Some(e)) = (&path, &h.expect) {
        c.err(
            e.span(),
            format!("{key}.expect"),
            "applies to TCP checks (no path); HTTP checks use body",
        );
    }
    if path.is_none() {
        let http_only = [
            (h.status.as_ref().map(|s| s.span()), "status"),
            (h.host.as_ref().map(|s| s.span()), "host"),
            (h.body.as_ref().map(|_| span.clone()), "body"),
        ];
        for (at, what) in http_only {
            if let Some(at) = at {
                c.err(
                    at,
                    format!("{key}.{what}"),
                    "applies to HTTP checks only: set a path",
                );
            }
        }
    }
    let interval = c.timeout(
        &h.interval,
        &format!("{key}.interval"),
        defaults::HEALTH_INTERVAL,
    );
    let timeout = c.timeout(
        &h.timeout,
        &format!("{key}.timeout"),
        defaults::HEALTH_TIMEOUT,
    );
    let fall = c
        .count(&h.fall, &format!("{key}.fall"), defaults::HEALTH_FALL, 1000)
        .max(1);
    let rise = c
        .count(&h.rise, &format!("{key}.rise"), defaults::HEALTH_RISE, 1000)
        .max(1);
    let status = match &h.status {
        None => vec![(200, 399)],
        Some(s) => {
            let items: Vec<Result<(u16, u16), String>> = match s.get_ref() {
                RawStatus::One(n) => vec![status_one(*n)],
                RawStatus::Text(t) => vec![status_text(t)],
                RawStatus::List(l) => l
                    .iter()
                    .map(|i| match i {
                        RawStatusItem::One(n) => status_one(*n),
                        RawStatusItem::Text(t) => status_text(t),
                    })
                    .collect(),
            };
            let mut out = Vec::new();
            for i in items {
                match i {
                    Ok(r) => out.push(r),
                    Err(e) => c.err(s.span(), format!("{key}.status"), e),
                }
            }
            if out.is_empty() {
                c.err(
                    s.span(),
                    format!("{key}.status"),
                    "no status would count as healthy",
                );
            }
            out
        }
    };
    if let Some(host) = &h.host {
        if host.get_ref().is_empty() || http_unsafe(host.get_ref()) {
            c.err(
                host.span(),
                format!("{key}.host"),
                "must be a host name (no spaces or control characters)",
            );
        }
    }
    let port = h
        .port
        .as_ref()
        .and_then(|p| match u16::try_from(*p.get_ref()) {
            Ok(n) if n > 0 => Some(n),
            _ => {
                c.err(
                    p.span(),
                    format!("{key}.port"),
                    "must be a port, 1 to 65535",
                );
                None
            }
        });
    Some(HealthCheck {
        path,
        interval,
        timeout,
        fall,
        rise,
        status,
        body: h.body.clone().filter(|b| !b.is_empty()),
        host: h.host.as_ref().map(|v| v.get_ref().clone()),
        port,
        tls: h.tls,
        send: h.send.clone().filter(|s| !s.is_empty()),
        expect: h
            .expect
            .as_ref()
            .map(|e| e.get_ref().clone())
            .filter(|e| !e.is_empty()),
    })
}

/// Bytes that would break a request line or a header.
fn http_unsafe(s: &str) -> bool {
    s.bytes().any(|b| b <= b' ' || b == 0x7f)
}

fn status_one(n: i64) -> Result<(u16, u16), String> {
    match u16::try_from(n) {
        Ok(s) if (100..=599).contains(&s) => Ok((s, s)),
        _ => Err(format!("{n} is not an HTTP status (100 to 599)")),
    }
}

/// `"200"`, `"2xx"` or `"200-399"`.
fn status_text(t: &str) -> Result<(u16, u16), String> {
    let bad =
        || format!("{t:?}: expected a status (200), a class (\"2xx\") or a range (\"200-399\")");
    let t = t.trim();
    if let Some(class) = t.strip_suffix("xx") {
        let d: u16 = class.parse().map_err(|_| bad())?;
        return if (1..=5).contains(&d) {
            Ok((d * 100, d * 100 + 99))
        } else {
            Err(bad())
        };
    }
    let (lo, hi) = t.split_once('-').unwrap_or((t, t));
    let lo = status_one(lo.trim().parse().map_err(|_| bad())?)?.0;
    let hi = status_one(hi.trim().parse().map_err(|_| bad())?)?.0;
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// A TLS server name (DNS name or IP address), as rustls will take it.
fn check_server_name(name: &str) -> Result<(), String> {
    rustls_pki_types::ServerName::try_from(name)
        .map(|_| ())
        .map_err(|_| {
            format!("{name:?} is not a valid TLS server name (a DNS name or an IP address)")
        })
}

fn check_servers(c: &mut Checker, raw: &[Spanned<toml::Value>], pool_key: &str) -> Vec<ServerSpec> {
    let mut out: Vec<ServerSpec> = Vec::with_capacity(raw.len());
    // (host lower-cased, port) → index: one hash per server, so a 100,000-server pool validates in O(n).
    let mut seen: std::collections::HashSet<(String, u16)> =
        std::collections::HashSet::with_capacity(raw.len());
    for (i, v) in raw.iter().enumerate() {
        let key = format!("{pool_key}.servers[{i}]");
        let (addr, weight, backup) = match v.get_ref() {
            toml::Value::String(s) => (s.clone(), defaults::WEIGHT as i64, false),
            toml::Value::Table(t) => {
                if let Some(unknown) = t
                    .keys()
                    .find(|k| !matches!(k.as_str(), "addr" | "weight" | "backup"))
                {
                    c.err(
                        v.span(),
                        &key,
                        format!("unknown key {unknown:?}; expected addr, weight, backup"),
                    );
                    continue;
                }
                let Some(addr) = t.get("addr").and_then(|a| a.as_str()) else {
                    c.err(v.span(), &key, "needs addr = \"host:port\"");
                    continue;
                };
                let weight = match t.get("weight") {
                    None => defaults::WEIGHT as i64,
                    Some(w) => match w.as_integer() {
                        Some(w) => w,
                        None => {
                            c.err(v.span(), format!("{key}.weight"), "must be an integer");
                            continue;
                        }
                    },
                };
                let backup = match t.get("backup") {
                    None => false,
                    Some(b) => match b.as_bool() {
                        Some(b) => b,
                        None => {
                            c.err(v.span(), format!("{key}.backup"), "must be true or false");
                            continue;
                        }
                    },
                };
                (addr.to_string(), weight, backup)
            }
            _ => {
                c.err(
                    v.span(),
                    &key,
                    "expected \"host:port\" or { addr = \"host:port\", weight = N, backup = bool }",
                );
                continue;
            }
        };
        if !(1..=defaults::MAX_WEIGHT as i64).contains(&weight) {
            c.err(
                v.span(),
                format!("{key}.weight"),
                format!("must be between 1 and {}", defaults::MAX_WEIGHT),
            );
            continue;
        }
        match parse_server_addr(&addr) {
            Ok((host, port, https)) => {
                let spec = ServerSpec {
                    host,
                    port,
                    weight: weight as u32,
                    backup,
                    https,
                    at: c.at(v.span()),
                };
                if !seen.insert((spec.host.to_ascii_lowercase(), spec.port)) {
                    c.err(
                        v.span(),
                        &key,
                        format!("{spec} is listed twice in this pool"),
                    );
                    continue;
                }
                out.push(spec);
            }
            Err(e) => c.err(v.span(), format!("{key}.addr"), e),
        }
    }
    out
}

/// `ip:port`, `[v6]:port`, `name:port`, optionally with `http://` or `https://` (whose port defaults to 80 and
/// 443). Returns the host (brackets removed), the port and whether `https://` was written. Names are not
/// resolved here: that happens when the config is prepared.
fn parse_server_addr(s: &str) -> Result<(String, u16, bool), String> {
    let t = s.trim();
    let (rest, https, default_port) = if let Some(r) = t.strip_prefix("https://") {
        (r, true, Some(443))
    } else if let Some(r) = t.strip_prefix("http://") {
        (r, false, Some(80))
    } else {
        (t, false, None)
    };
    let rest = rest.trim_end_matches('/');
    // The port is after the last ':' unless that ':' is inside an IPv6 literal.
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: {p:?} is not a port (1-65535)"))?,
        (None, Some(p)) => p,
        (None, None) => {
            return Err(format!(
                "{s:?} has no port; write it as host:port, e.g. \"127.0.0.1:8080\""
            ))
        }
    };
    let host = match host.strip_prefix('[') {
        Some(v6) => {
            let inner = v6
                .strip_suffix(']')
                .ok_or_else(|| format!("{s:?}: unclosed '['"))?;
            inner
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("{s:?}: {inner:?} is not an IPv6 address"))?;
            inner.to_string()
        }
        None => host.to_string(),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !name_ok && host.parse::<std::net::IpAddr>().is_err() {
        return Err(format!(
            "{s:?} is not an address: write ip:port, [v6]:port or name:port"
        ));
    }
    Ok((host, port, https))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, rejects, OK};
    use super::parse_server_addr;

    fn health(h: &str) -> Result<crate::HealthCheck, Vec<String>> {
        let src = OK.replacen("[pool.web]", &format!("[pool.web]\nhealth = {h}"), 1);
        match crate::parse(&src, "t.toml") {
            Ok(cfg) => Ok(cfg.pools["web"].health.clone().expect("health")),
            Err(_) => Err(errors(&src)),
        }
    }

    #[test]
    fn health_checks_get_their_defaults_and_their_statuses() {
        let h = health("{ path = \"/healthz\" }").unwrap();
        assert_eq!(
            (
                h.interval.as_millis(),
                h.timeout.as_millis(),
                h.fall,
                h.rise
            ),
            (1000, 1000, 2, 2)
        );
        assert!(h.status_ok(200) && h.status_ok(399) && !h.status_ok(400) && !h.status_ok(503));
        let h = health("{ path = \"/h\", status = [\"2xx\", 404, \"500-502\"], body = \"ok\", host = \"vm1\", port = 8081, tls = false, interval = \"5s\", fall = 1 }").unwrap();
        assert!(
            h.status_ok(204)
                && h.status_ok(404)
                && h.status_ok(501)
                && !h.status_ok(503)
                && !h.status_ok(302)
        );
        assert_eq!(
            (h.body.as_deref(), h.host.as_deref(), h.port, h.tls, h.fall),
            (Some("ok"), Some("vm1"), Some(8081), Some(false), 1)
        );
        for (bad, words) in [
            ("{ interval = \"1s\", status = 200 }", "HTTP checks only"),
            ("{ path = \"healthz\" }", "must start with /"),
            ("{ path = \"/a b\" }", "must start with /"),
            ("{ path = \"/h\", status = \"7xx\" }", "a class"),
            ("{ path = \"/h\", status = [99] }", "not an HTTP status"),
            ("{ path = \"/h\", status = \"400-200\" }", "a range"),
            ("{ path = \"/h\", timeout = \"0s\" }", "longer than 0"),
            ("{ path = \"/h\", port = 70000 }", "must be a port"),
            ("{ path = \"/h\", every = \"1s\" }", "unknown field"),
        ] {
            let errs = health(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad}: accepted"));
            assert!(errs.iter().any(|e| e.contains(words)), "{bad}: {errs:?}");
        }
    }

    #[test]
    fn server_addresses_are_parsed_without_resolving() {
        let ok = |s: &str| parse_server_addr(s).unwrap();
        assert_eq!(ok("127.0.0.1:80"), ("127.0.0.1".into(), 80, false));
        assert_eq!(ok("[::1]:8080"), ("::1".into(), 8080, false));
        assert_eq!(
            ok("https://backend.internal"),
            ("backend.internal".into(), 443, true)
        );
        assert_eq!(ok("http://vm1:8080/"), ("vm1".into(), 8080, false));
        for bad in [
            "127.0.0.1",
            "vm1:http",
            "vm1:0",
            "[::1:80",
            "a b:80",
            ":80",
            "vm1:99999",
        ] {
            assert!(parse_server_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_pools_name_their_line() {
        rejects(
            "bad balance",
            "[pool.web]",
            "[pool.web]\nbalance = \"random\"",
            13,
            "pool.web.balance",
        );
        rejects(
            "bad duration",
            "[pool.web]",
            "[pool.web]\nconnect_timeout = \"3\"",
            13,
            "connect_timeout",
        );
        rejects("zero weight", "weight = 3", "weight = 0", 13, "weight");
        rejects(
            "bad sni",
            "[pool.web]",
            "[pool.web]\ntls = true\nsni = \"not a name\"",
            14,
            "not a valid TLS server name",
        );
        rejects(
            "ca on plain pool",
            "[pool.web]",
            "[pool.web]\nca = \"ca.pem\"",
            13,
            "only to TLS pools",
        );
    }

    #[test]
    fn empty_duplicate_and_backup_only_pools() {
        let empty = OK.replace(
            "servers = [\"127.0.0.1:9001\", { addr = \"127.0.0.1:9002\", weight = 3 }, { addr = \"127.0.0.1:9003\", backup = true }]",
            "servers = []",
        );
        assert!(errors(&empty)
            .iter()
            .any(|e| e.contains("at least one server")));
        let dup = OK.replace("127.0.0.1:9002", "127.0.0.1:9001");
        assert!(
            errors(&dup).iter().any(|e| e.contains("listed twice")),
            "{:?}",
            errors(&dup)
        );
        let backups = OK.replace(
            "servers = [\"127.0.0.1:9001\", { addr = \"127.0.0.1:9002\", weight = 3 }, { addr = \"127.0.0.1:9003\", backup = true }]",
            "servers = [{ addr = \"127.0.0.1:9003\", backup = true }]",
        );
        assert!(errors(&backups)
            .iter()
            .any(|e| e.contains("every server is a backup")));
    }
}
