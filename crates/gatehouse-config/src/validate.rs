//! Checks a [`RawConfig`] and builds the typed [`Config`], collecting *every* problem rather than stopping at
//! the first, so an operator fixes a broken file in one pass.

use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::raw::*;
use crate::units::{parse_duration, parse_size};
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;
use toml::Spanned;

/// Collects diagnostics while building the model.
struct Checker {
    diags: Vec<Diagnostic>,
}

impl Checker {
    fn err(
        &mut self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::new(Some(span), key, msg));
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, key: &str, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|e| {
                self.err(s.span(), key, e);
                default
            }),
        }
    }

    fn size(&mut self, v: &Option<Spanned<RawSize>>, key: &str) -> Option<u64> {
        let s = v.as_ref()?;
        let parsed = match s.get_ref() {
            RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| format!("{n} is not a size")),
            RawSize::Text(t) => parse_size(t),
        };
        parsed.map_err(|e| self.err(s.span(), key, e)).ok()
    }

    fn count(&mut self, v: &Option<Spanned<i64>>, key: &str, default: u32, max: u32) -> u32 {
        match v {
            None => default,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(x) if x <= max => x,
                _ => {
                    self.err(n.span(), key, format!("must be between 0 and {max}"));
                    default
                }
            },
        }
    }

    fn cidrs(&mut self, list: &[Spanned<String>], key: &str) -> Vec<IpNet> {
        list.iter()
            .filter_map(|s| match parse_cidr(s.get_ref()) {
                Ok(net) => Some(net),
                Err(e) => {
                    self.err(s.span(), key, e);
                    None
                }
            })
            .collect()
    }

    fn not_yet(&mut self, span: std::ops::Range<usize>, key: &str, what: &str) {
        self.err(
            span,
            key,
            format!("{what} is not supported yet in this version of Gatehouse (see README: planned); remove it for now"),
        );
    }
}

/// A CIDR, or a bare address meaning a single host.
fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (e.g. \"10.0.0.0/8\") or an IP address"))
}

/// `ip:port`, `[v6]:port`, `name:port`, optionally with `http://` or `https://` (whose port defaults to 80 and
/// 443). Names are resolved once, here; the first address wins. Returns the address, the host as written
/// (for TLS SNI) and whether `https://` was written.
fn parse_addr(s: &str) -> Result<(SocketAddr, String, bool), String> {
    let t = s.trim();
    let (rest, https, default_port) = if let Some(r) = t.strip_prefix("https://") {
        (r, true, Some(443))
    } else if let Some(r) = t.strip_prefix("http://") {
        (r, false, Some(80))
    } else {
        (t, false, None)
    };
    let rest = rest.trim_end_matches('/');
    let has_port = rest.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (!h.contains(':') || h.ends_with(']'))
    });
    let with_port = match (has_port, default_port) {
        (true, _) => rest.to_string(),
        (false, Some(p)) => format!("{rest}:{p}"),
        (false, None) => {
            return Err(format!(
                "{s:?} has no port; write it as host:port, e.g. \"127.0.0.1:8080\""
            ));
        }
    };
    let host = with_port
        .rsplit_once(':')
        .map_or(with_port.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if let Ok(a) = with_port.parse::<SocketAddr>() {
        return Ok((a, host, https));
    }
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{s:?} is not an address ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))?;
    Ok((addr, host, https))
}

fn parse_tls_version(v: &Spanned<String>, key: &str, c: &mut Checker) -> TlsVersion {
    match v.get_ref().as_str() {
        "1.2" => TlsVersion::Tls12,
        "1.3" => TlsVersion::Tls13,
        _ => {
            c.err(
                v.span(),
                key,
                "expected \"1.2\" or \"1.3\" (older versions are never offered)",
            );
            TlsVersion::Tls12
        }
    }
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

pub fn validate(raw: RawConfig, _source: &str) -> Result<Config, Vec<Diagnostic>> {
    let mut c = Checker { diags: Vec::new() };

    let server = check_server(&mut c, &raw.server);
    let listeners = check_listeners(&mut c, &raw.listeners, server.tls_min_version);
    let acme = raw.acme.as_ref().map(|a| check_acme(&mut c, a.get_ref()));
    for (i, s) in raw.streams.iter().enumerate() {
        c.not_yet(s.span(), &format!("stream[{i}]"), "L4 stream forwarding");
    }
    let pools = check_pools(&mut c, &raw.pools);
    let sites = check_sites(&mut c, &raw.sites, &raw.pools, &server);
    check_tls_coherence(&mut c, &raw, &listeners, &sites);

    if c.diags.is_empty() {
        Ok(Config {
            server,
            listeners,
            acme,
            sites,
            pools,
        })
    } else {
        c.diags
            .sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
        Err(c.diags)
    }
}

fn check_server(c: &mut Checker, s: &RawServer) -> Server {
    let admin = s.admin.as_ref().and_then(|a| {
        if a.get_ref().trim().is_empty() {
            return None;
        }
        parse_addr(a.get_ref())
            .map(|(addr, _, _)| addr)
            .map_err(|e| c.err(a.span(), "server.admin", e))
            .ok()
    });
    let access_log = match s.access_log.as_ref().map(|v| v.get_ref().as_str()) {
        None | Some("stdout") => AccessLog::Stdout,
        Some("off") => AccessLog::Off,
        Some(path) => AccessLog::File(path.into()),
    };
    let access_log_format = match &s.access_log_format {
        None => AccessLogFormat::Combined,
        Some(f) => match f.get_ref().as_str() {
            "combined" => AccessLogFormat::Combined,
            "json" => AccessLogFormat::Json,
            other => {
                c.err(
                    f.span(),
                    "server.access_log_format",
                    format!("{other:?}: expected \"combined\" or \"json\""),
                );
                AccessLogFormat::Combined
            }
        },
    };
    let workers = match &s.workers {
        None => 0,
        Some(w) => usize::try_from(*w.get_ref()).unwrap_or_else(|_| {
            c.err(
                w.span(),
                "server.workers",
                "must be 0 (one per core) or a positive number",
            );
            0
        }),
    };
    let workers = if workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        workers
    };
    let tls_min_version = s.tls_min_version.as_ref().map_or(TlsVersion::Tls12, |v| {
        parse_tls_version(v, "server.tls_min_version", c)
    });
    let max_header_size = c
        .size(&s.max_header_size, "server.max_header_size")
        .map_or(defaults::MAX_HEADER_SIZE, |n| n as usize);
    if max_header_size < 8192 {
        if let Some(v) = &s.max_header_size {
            c.err(v.span(), "server.max_header_size", "must be at least 8KiB");
        }
    }
    Server {
        admin,
        log_level: match &s.log_level {
            None => defaults::LOG_LEVEL.into(),
            Some(l) => {
                if let Err(e) = check_log_level(l.get_ref()) {
                    c.err(l.span(), "server.log_level", e);
                }
                l.get_ref().clone()
            }
        },
        access_log,
        access_log_format,
        grace_period: c.duration(
            &s.grace_period,
            "server.grace_period",
            defaults::GRACE_PERIOD,
        ),
        workers,
        admin_token: s.admin_token.clone().filter(|t| !t.is_empty()),
        trusted_proxies: c.cidrs(&s.trusted_proxies, "server.trusted_proxies"),
        header_read_timeout: c.duration(
            &s.header_read_timeout,
            "server.header_read_timeout",
            defaults::HEADER_READ_TIMEOUT,
        ),
        idle_timeout: c.duration(
            &s.idle_timeout,
            "server.idle_timeout",
            defaults::IDLE_TIMEOUT,
        ),
        max_header_size,
        tls_min_version,
    }
}

fn check_listeners(
    c: &mut Checker,
    raw: &[Spanned<RawListener>],
    server_min: TlsVersion,
) -> Vec<Listener> {
    if raw.is_empty() {
        c.diags.push(Diagnostic::new(
            None,
            "listener",
            "no [[listener]]: add one, e.g. [[listener]] name = \"http\" bind = \"0.0.0.0:80\"",
        ));
    }
    let mut names = HashSet::new();
    let mut binds = HashMap::new();
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let l = l.get_ref();
        let key = format!("listener[{i}]");
        if l.name.get_ref().trim().is_empty() {
            c.err(l.name.span(), format!("{key}.name"), "must not be empty");
        } else if !names.insert(l.name.get_ref().clone()) {
            c.err(
                l.name.span(),
                format!("{key}.name"),
                format!("duplicate listener name {:?}", l.name.get_ref()),
            );
        }
        let is_tls = l.tls.as_ref().is_some_and(|t| *t.get_ref());
        let min = l.tls_min_version.as_ref().map_or(server_min, |v| {
            parse_tls_version(v, &format!("{key}.tls_min_version"), c)
        });
        if !is_tls {
            if let Some(v) = &l.tls_min_version {
                c.err(
                    v.span(),
                    format!("{key}.tls_min_version"),
                    "applies only to a listener with tls = true",
                );
            }
        }
        match l.bind.get_ref().trim().parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some(prev) = binds.insert(addr, i) {
                    c.err(
                        l.bind.span(),
                        format!("{key}.bind"),
                        format!("{addr} is already bound by listener[{prev}]"),
                    );
                }
                out.push(Listener {
                    name: l.name.get_ref().clone(),
                    bind: addr,
                    tls: is_tls.then_some(min),
                });
            }
            Err(_) => c.err(
                l.bind.span(),
                format!("{key}.bind"),
                format!(
                    "{:?} is not an ip:port address (e.g. \"0.0.0.0:80\", \"[::]:443\")",
                    l.bind.get_ref()
                ),
            ),
        }
    }
    out
}

fn check_pools(
    c: &mut Checker,
    raw: &BTreeMap<String, Spanned<RawPool>>,
) -> BTreeMap<String, Pool> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let span = p.span();
        let p = p.get_ref();
        let key = format!("pool.{name}");
        let balance = match &p.balance {
            None => Balance::RoundRobin,
            Some(b) => {
                match b.get_ref().as_str() {
                    "round_robin" => Balance::RoundRobin,
                    "ip_hash" => Balance::IpHash,
                    "least_conn" => Balance::LeastConn,
                    other => {
                        c.err(
                        b.span(),
                        format!("{key}.balance"),
                        format!("{other:?}: expected \"round_robin\", \"ip_hash\" or \"least_conn\""),
                    );
                        Balance::RoundRobin
                    }
                }
            }
        };
        if let Some(h) = &p.health {
            c.not_yet(h.span(), &format!("{key}.health"), "active health checks");
        }
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
            sni: p.sni.as_ref().map(|s| s.get_ref().clone()),
        });
        if tls.is_none() {
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
        if let Some(ca) = &p.ca {
            if !std::path::Path::new(ca.get_ref()).is_file() {
                c.err(
                    ca.span(),
                    format!("{key}.ca"),
                    format!("{:?} is not a readable file", ca.get_ref()),
                );
            }
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
        out.insert(
            name.clone(),
            Pool {
                name: name.clone(),
                balance,
                servers,
                connect_timeout: c.duration(
                    &p.connect_timeout,
                    &format!("{key}.connect_timeout"),
                    defaults::CONNECT_TIMEOUT,
                ),
                response_timeout: c.duration(
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
            },
        );
    }
    out
}

fn check_servers(c: &mut Checker, raw: &[Spanned<toml::Value>], pool_key: &str) -> Vec<ServerSpec> {
    let mut out: Vec<ServerSpec> = Vec::new();
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
        match parse_addr(&addr) {
            Ok((addr, host, https)) => {
                if out.iter().any(|s| s.addr == addr) {
                    c.err(
                        v.span(),
                        &key,
                        format!("{addr} is listed twice in this pool"),
                    );
                    continue;
                }
                out.push(ServerSpec {
                    addr,
                    weight: weight as u32,
                    backup,
                    host,
                    https,
                });
            }
            Err(e) => c.err(v.span(), format!("{key}.addr"), e),
        }
    }
    out
}

fn check_sites(
    c: &mut Checker,
    raw: &[Spanned<RawSite>],
    pools: &BTreeMap<String, Spanned<RawPool>>,
    server: &Server,
) -> Vec<Site> {
    let _ = server;
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
        let site_allow = c.cidrs(&s.allow, &format!("{key}.allow"));
        let site_deny = c.cidrs(&s.deny, &format!("{key}.deny"));
        let site_max_body = c.size(&s.max_body, &format!("{key}.max_body"));
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
            let rspan = r.span();
            let r = r.get_ref();
            let rkey = format!("{key}.route[{j}]");
            let path = r.path.get_ref();
            if !path.starts_with('/') {
                c.err(
                    r.path.span(),
                    format!("{rkey}.path"),
                    format!("{path:?} must start with '/'"),
                );
            } else if !paths.insert(path.clone()) {
                c.err(
                    r.path.span(),
                    format!("{rkey}.path"),
                    format!("{path:?} appears twice in this site: the second would never match"),
                );
            }
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
            let actions = [r.pool.is_some(), r.redirect.is_some(), r.respond.is_some()];
            let action = match actions {
                [true, false, false] => {
                    let Some(pool) = r.pool.as_ref() else {
                        continue;
                    };
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
                [false, true, false] => {
                    let Some(to) = r.redirect.as_ref() else {
                        continue;
                    };
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
                [false, false, true] => RouteAction::Respond {
                    body: r.respond.clone().unwrap_or_default(),
                    status: status.map_or(defaults::RESPOND_STATUS, |(s, _)| s),
                },
                _ => {
                    c.err(
                        rspan.clone(),
                        &rkey,
                        "a route needs exactly one of pool, redirect or respond",
                    );
                    continue;
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
            routes.push(Route {
                path: path.clone(),
                action,
                access: AccessRules {
                    site_allow: site_allow.clone(),
                    site_deny: site_deny.clone(),
                    route_allow: c.cidrs(&r.allow, &format!("{rkey}.allow")),
                    route_deny: c.cidrs(&r.deny, &format!("{rkey}.deny")),
                },
                max_body: route_max_body.or(site_max_body),
            });
        }
        out.push(Site {
            hosts,
            default: s.default,
            routes,
            tls,
            redirect_https: s.redirect_https.as_ref().is_some_and(|v| *v.get_ref()),
            hsts: s.hsts.as_ref().map(|v| v.get_ref().clone()),
        });
    }
    out
}

/// `tls = { cert = "...", key = "..." }` (files are checked when the config is applied) or `tls = "acme"`.
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

fn check_acme(c: &mut Checker, a: &RawAcme) -> Acme {
    let directory = match a.directory.as_ref().map(|d| (d, d.get_ref().as_str())) {
        None | Some((_, "letsencrypt")) => defaults::LETSENCRYPT.to_string(),
        Some((_, "letsencrypt-staging")) => defaults::LETSENCRYPT_STAGING.to_string(),
        Some((_, url)) if url.starts_with("https://") || url.starts_with("http://") => {
            url.to_string()
        }
        Some((d, other)) => {
            c.err(d.span(), "acme.directory", format!("{other:?}: expected \"letsencrypt\", \"letsencrypt-staging\" or a directory URL (https://…)"));
            String::new()
        }
    };
    let challenge = match a.challenge.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "tls-alpn-01")) => AcmeChallenge::TlsAlpn01,
        Some((_, "http-01")) => AcmeChallenge::Http01,
        Some((v, other)) => {
            c.err(v.span(), "acme.challenge", format!("{other:?}: expected \"tls-alpn-01\" or \"http-01\" (dns-01 is not supported yet)"));
            AcmeChallenge::TlsAlpn01
        }
    };
    let ca_root = a
        .ca_root
        .as_ref()
        .filter(|p| !p.get_ref().is_empty())
        .map(|p| {
            if !std::path::Path::new(p.get_ref()).is_file() {
                c.err(
                    p.span(),
                    "acme.ca_root",
                    format!("{:?} is not a readable file", p.get_ref()),
                );
            }
            std::path::PathBuf::from(p.get_ref())
        });
    let renew_before = match &a.renew_before {
        None => None,
        Some(v) if v.get_ref() == "auto" => None,
        Some(v) => Some(c.duration(
            &Some(v.clone()),
            "acme.renew_before",
            std::time::Duration::ZERO,
        )),
    };
    Acme {
        email: a
            .email
            .as_ref()
            .map(|e| e.get_ref().clone())
            .filter(|e| !e.is_empty()),
        directory,
        ca_root,
        challenge,
        storage: a
            .storage
            .as_ref()
            .map_or_else(|| defaults::ACME_STORAGE.into(), |s| s.get_ref().into()),
        renew_before,
        check_interval: c.duration(
            &a.check_interval,
            "acme.check_interval",
            defaults::ACME_CHECK_INTERVAL,
        ),
        retry_initial: c.duration(
            &a.retry_initial,
            "acme.retry_initial",
            defaults::ACME_RETRY_INITIAL,
        ),
    }
}

/// TLS listeners need a certificate to serve; redirect_https needs a TLS listener to send clients to.
fn check_tls_coherence(c: &mut Checker, raw: &RawConfig, listeners: &[Listener], sites: &[Site]) {
    let any_cert = sites.iter().any(|s| s.tls.is_some());
    for (i, l) in listeners.iter().enumerate() {
        if l.tls.is_some() && !any_cert {
            let span = raw.listeners.get(i).map(|r| r.span());
            c.diags.push(Diagnostic::new(
                span,
                format!("listener[{i}].tls"),
                "a TLS listener needs at least one site with tls = { cert, key } or tls = \"acme\"",
            ));
        }
    }
    let has_tls_listener = listeners.iter().any(|l| l.tls.is_some());
    for (i, s) in sites.iter().enumerate() {
        if s.tls != Some(SiteTls::Acme) {
            continue;
        }
        let span = raw
            .sites
            .get(i)
            .and_then(|r| r.get_ref().tls.as_ref())
            .map(|v| v.span());
        if raw.acme.is_none() {
            c.diags.push(Diagnostic::new(
                span.clone(),
                format!("site[{i}].tls"),
                "tls = \"acme\" needs an [acme] section",
            ));
        }
        if s.hosts
            .iter()
            .any(|h| matches!(h, HostPattern::Wildcard(_)))
        {
            c.diags.push(Diagnostic::new(
                span.clone(),
                format!("site[{i}].tls"),
                "a wildcard host needs the DNS-01 challenge, which is not supported yet: list exact names, or use tls = { cert, key }",
            ));
        }
        if s.exact_hosts().is_empty() {
            c.diags.push(Diagnostic::new(
                span,
                format!("site[{i}].tls"),
                "an ACME certificate needs at least one exact host name",
            ));
        }
    }
    for (i, s) in sites.iter().enumerate() {
        if s.redirect_https && !has_tls_listener {
            let span = raw
                .sites
                .get(i)
                .and_then(|r| r.get_ref().redirect_https.as_ref())
                .map(|v| v.span());
            c.diags.push(Diagnostic::new(
                span,
                format!("site[{i}].redirect_https"),
                "needs a listener with tls = true",
            ));
        }
    }
}

/// A level ("info") or tracing directives ("warn,gatehouse_proxy=debug"): every level named must exist.
fn check_log_level(s: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit('=')
            .next()
            .unwrap_or(directive)
            .to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            return Err(format!(
                "{directive:?} is not a level (trace, debug, info, warn, error, off) or target=level"
            ));
        }
    }
    Ok(())
}

fn http_header_unsafe(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use crate::{parse, ConfigError};

    fn errors(src: &str) -> Vec<String> {
        match parse(src, "t.toml") {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { diagnostics, .. }) => diagnostics
                .into_iter()
                .map(|d| format!("{}:{}: {}", d.line_col.map_or(0, |l| l.0), d.key, d.message))
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    const OK: &str = r#"
[[listener]]
name = "http"
bind = "127.0.0.1:8080"

[[site]]
hosts = ["example.com", "*.example.org"]
  [[site.route]]
  path = "/"
  pool = "web"

[pool.web]
servers = ["127.0.0.1:9001", { addr = "127.0.0.1:9002", weight = 3 }, { addr = "127.0.0.1:9003", backup = true }]
"#;

    #[test]
    fn a_good_config_builds_with_defaults() {
        let cfg = parse(OK, "t.toml").unwrap();
        let pool = &cfg.pools["web"];
        assert_eq!(pool.retries, 2);
        assert_eq!(pool.servers[1].weight, 3);
        assert!(pool.servers[2].backup);
        assert_eq!(cfg.server.idle_timeout, std::time::Duration::from_secs(65));
        assert_eq!(
            cfg.sites[0].hosts[1],
            crate::HostPattern::Wildcard(".example.org".into())
        );
    }

    /// Each case: a broken edit of OK, the line it must point at, and words the message must contain.
    #[test]
    fn broken_configs_are_rejected_with_line_and_key() {
        let cases: &[(&str, &str, &str, usize, &str)] = &[
            (
                "unknown pool",
                "pool = \"web\"",
                "pool = \"api\"",
                10,
                "no pool named \"api\"",
            ),
            (
                "bad bind",
                "bind = \"127.0.0.1:8080\"",
                "bind = \"localhost\"",
                4,
                "listener[0].bind",
            ),
            (
                "bad balance",
                "[pool.web]",
                "[pool.web]\nbalance = \"random\"",
                13,
                "pool.web.balance",
            ),
            (
                "bad duration",
                "[pool.web]",
                "[pool.web]\nconnect_timeout = \"3\"",
                13,
                "connect_timeout",
            ),
            (
                "bad host",
                "\"example.com\",",
                "\"exa mple.com\",",
                7,
                "not a host name",
            ),
            ("zero weight", "weight = 3", "weight = 0", 13, "weight"),
            (
                "unknown key",
                "[pool.web]",
                "[pool.web]\nbalanse = 1",
                13,
                "unknown field",
            ),
            ("syntax", "[pool.web]", "[pool.web", 12, ""),
            (
                "bad cidr",
                "[[site]]",
                "[[site]]\nallow = [\"10.0.0.0/33\"]",
                7,
                "not a CIDR",
            ),
            (
                "bad log level",
                "[pool.web]",
                "[server]\nlog_level = \"loud\"\n[pool.web]",
                13,
                "not a level",
            ),
        ];
        for (name, from, to, line, words) in cases {
            let src = OK.replacen(from, to, 1);
            let errs = errors(&src);
            assert!(!errs.is_empty(), "{name}: accepted");
            assert!(
                errs.iter()
                    .any(|e| e.starts_with(&format!("{line}:")) && e.contains(words)),
                "{name}: wanted line {line} with {words:?}, got {errs:?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let src = OK
            .replace("pool = \"web\"", "pool = \"nope\"")
            .replace("127.0.0.1:8080", "nowhere");
        assert_eq!(errors(&src).len(), 2, "{:?}", errors(&src));
    }

    #[test]
    fn duplicates_and_empty_pools_are_rejected() {
        let dup_listener =
            format!("{OK}\n[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:8080\"\n");
        let e = errors(&dup_listener);
        assert!(
            e.iter().any(|e| e.contains("duplicate listener name")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("already bound")), "{e:?}");

        let dup_route = OK.replace(
            "pool = \"web\"",
            "pool = \"web\"\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"",
        );
        assert!(errors(&dup_route)
            .iter()
            .any(|e| e.contains("appears twice")));

        let empty = OK.replace(
            "servers = [\"127.0.0.1:9001\", { addr = \"127.0.0.1:9002\", weight = 3 }, { addr = \"127.0.0.1:9003\", backup = true }]",
            "servers = []",
        );
        assert!(errors(&empty)
            .iter()
            .any(|e| e.contains("at least one server")));

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
