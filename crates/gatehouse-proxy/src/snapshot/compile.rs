//! Building a [`Snapshot`] from a validated config: what validation could not check (it reads nothing but
//! the text) is done here, with every problem reported against its line — server names are resolved, CA files
//! read and turned into TLS client configs, TLS server names checked. It may block (DNS, disk): callers run it
//! off the worker threads.

use super::{ActionRt, PoolRt, Registries, RouteRt, SiteRt, Snapshot};
use crate::upstream::health::{HealthKey, Probe};
use crate::upstream::{self, pool::ConnPool, ConnKey, Upstream};
use bytes::Bytes;
use gatehouse_balance::{Algorithm, Entry, Selector, ServerState};
use gatehouse_config::{Balance, Config, Diagnostic, HostPattern, Pool, RouteAction, ServerSpec};
use gatehouse_route::{HostTable, PathTable};
use http::{HeaderValue, StatusCode};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

/// Streams one client HTTP/2 connection may have open at once.
pub const H2_MAX_STREAMS: u32 = 200;
/// Response bytes one HTTP/2 stream may buffer for a client that does not read (hyper's default is 400 KiB).
pub const H2_MAX_SEND_BUF: usize = 64 * 1024;

/// Builds a snapshot, or returns every problem found.
pub fn compile(config: Arc<Config>, reg: &Registries) -> Result<Snapshot, Vec<Diagnostic>> {
    let mut problems = Vec::new();
    let mut pools: Vec<Arc<PoolRt>> = Vec::with_capacity(config.pools.len());
    let mut by_name: BTreeMap<&str, Arc<PoolRt>> = BTreeMap::new();
    for p in config.pools.values() {
        match compile_pool(p, pools.len() as u32, reg) {
            Ok(rt) => {
                let rt = Arc::new(rt);
                by_name.insert(&p.name, rt.clone());
                pools.push(rt);
            }
            Err(mut e) => problems.append(&mut e),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut sites = HostTable::default();
    for (i, site) in config.sites.iter().enumerate() {
        let name = site
            .hosts
            .first()
            .map_or_else(String::new, HostPattern::as_config);
        let mut routes = Vec::with_capacity(site.routes.len());
        for (j, r) in site.routes.iter().enumerate() {
            // Validation makes each of these impossible; if one slipped through, the route must not
            // silently vanish (its requests would fall to a shorter prefix, past its access rules).
            let invalid = |what: &str| {
                Diagnostic::new(None, format!("site[{i}].route[{j}]"), what.to_string())
            };
            let action = match &r.action {
                RouteAction::Pool { pool, strip_prefix } => match by_name.get(pool.as_str()) {
                    Some(p) => ActionRt::Pool {
                        pool: p.clone(),
                        strip_prefix: *strip_prefix,
                    },
                    None => {
                        problems.push(invalid("names a pool that was not compiled"));
                        continue;
                    }
                },
                RouteAction::Redirect { location, status } => {
                    match (
                        HeaderValue::from_str(location),
                        StatusCode::from_u16(*status),
                    ) {
                        (Ok(location), Ok(status)) => ActionRt::Redirect { location, status },
                        _ => {
                            problems.push(invalid(
                                "redirect is not a header value, or its status is not one",
                            ));
                            continue;
                        }
                    }
                }
                RouteAction::Respond { body, status } => match StatusCode::from_u16(*status) {
                    Ok(status) => ActionRt::Respond {
                        body: Bytes::from(body.clone()),
                        status,
                    },
                    Err(_) => {
                        problems.push(invalid("status is not an HTTP status"));
                        continue;
                    }
                },
            };
            let policy = match super::policy::compile(&r.policy, &name, &r.path, reg) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(Diagnostic::new(None, format!("site[{i}].route[{j}]"), e));
                    continue;
                }
            };
            let rt = RouteRt {
                policy,
                metrics: reg.metrics.route(&name, &r.path),
                action,
                access: (!r.access.is_empty()).then(|| r.access.clone()),
                max_body: r.max_body,
                upgrades: r.upgrades.iter().map(|u| u.as_str().into()).collect(),
                tunnel_idle_timeout: r.tunnel_idle_timeout,
            };
            routes.push((r.path.clone(), rt));
        }
        let exact = site.hosts.iter().filter_map(|h| match h {
            HostPattern::Exact(n) => Some(n.as_str()),
            HostPattern::Wildcard(_) => None,
        });
        let wild = site.hosts.iter().filter_map(|h| match h {
            HostPattern::Wildcard(s) => Some(s.as_str()),
            HostPattern::Exact(_) => None,
        });
        sites.insert(
            SiteRt {
                id: i as u32,
                metrics: reg.metrics.site(&name),
                access_log: site.access_log,
                access_log_skip: site
                    .access_log_skip
                    .as_ref()
                    .unwrap_or(&config.server.access_log_skip)
                    .iter()
                    .map(|p| p.as_str().into())
                    .collect(),
                name: name.into_boxed_str(),
                canonical_host: site
                    .exact_hosts()
                    .into_iter()
                    .next()
                    .map(String::into_boxed_str),
                paths: PathTable::new(routes),
                redirect_https: site.redirect_https,
                allow_encoded_slashes: site.allow_encoded_slashes,
                hsts: match site.hsts.as_deref().map(HeaderValue::from_str) {
                    None => None,
                    Some(Ok(v)) => Some(v),
                    Some(Err(_)) => {
                        problems.push(Diagnostic::new(
                            None,
                            format!("site[{i}].hsts"),
                            "is not a header value",
                        ));
                        None
                    }
                },
            },
            exact,
            wild,
            site.default,
        );
    }

    let mut streams = Vec::with_capacity(config.streams.len());
    for (i, st) in config.streams.iter().enumerate() {
        match by_name.get(st.pool.as_str()) {
            Some(pool) => streams.push(super::StreamRt {
                name: st.name.as_str().into(),
                bind: st.bind,
                pool: pool.clone(),
                access: (!st.access.is_empty()).then(|| st.access.clone()),
                idle_timeout: st.idle_timeout,
                proxy_protocol: st.proxy_protocol,
                metrics: reg.metrics.stream(&st.name),
            }),
            None => problems.push(Diagnostic::new(
                None,
                format!("stream[{i}].pool"),
                "names a pool that was not compiled",
            )),
        }
    }

    let s = &config.server;
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None) // the listener's watchdog keeps this clock (see conn/clock.rs)
        .max_buf_size(s.max_header_size.max(8192));
    // HTTP/2's limits, explicit rather than hyper's defaults: streams at once per connection (200, as
    // hyper's default: 128 cost h2c ~9% more writev/recvfrom per request in the bench, strace -c),
    // what one stream may buffer towards a client that does not read, the header list, and how many streams
    // a client may reset before the connection is closed (the rapid-reset attack).
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_send_buf_size(H2_MAX_SEND_BUF)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(1024))
        .max_header_list_size(s.max_header_size as u32);

    let https_port = config
        .listeners
        .iter()
        .find(|l| l.tls.is_some())
        .map(|l| l.bind.port());
    if !problems.is_empty() {
        return Err(problems);
    }

    Ok(Snapshot {
        unrouted: reg.metrics.route("", ""),
        unrouted_site: reg.metrics.site(""),
        access_log: s.access_log != gatehouse_config::AccessLog::Off,
        access_log_sample: s.access_log_sample,
        http01: reg.http01.clone(),
        observer: reg.observer.clone(),
        https_port,
        trusted_proxies: s.trusted_proxies.clone(),
        idle_timeout: s.idle_timeout,
        header_read_timeout: s.header_read_timeout,
        send_timeout: s.send_timeout,
        body_timeout: s.body_timeout,
        max_request_target: s.max_request_target,
        http1: Arc::new(h1),
        http2: Arc::new(h2),
        sites,
        pools,
        streams,
        config,
    })
}

fn compile_pool(p: &Pool, id: u32, reg: &Registries) -> Result<PoolRt, Vec<Diagnostic>> {
    let key = format!("pool.{}", p.name);
    let mut problems = Vec::new();
    // The CA file is read once per pool: its bytes build the TLS configs and are part of the pool key.
    let ca_pem: Option<Arc<[u8]>> = match p.tls.as_ref().and_then(|t| t.ca.as_ref().map(|f| (t, f)))
    {
        None => None,
        Some((t, file)) => match std::fs::read(file) {
            Ok(b) => Some(b.into()),
            Err(e) => {
                problems.push(Diagnostic::at(
                    t.ca_at,
                    format!("{key}.ca"),
                    format!("{}: cannot read: {e}", file.display()),
                ));
                return Err(problems);
            }
        },
    };
    // With http2, TLS offers h2 for requests and a second config offers only http/1.1 for upgrades
    // (WebSocket), which HTTP/2 to the server cannot carry.
    let client_config = |h2: bool| match &p.tls {
        None => Ok(None),
        Some(t) => gatehouse_tls::client::client_config(ca_pem.as_deref(), h2)
            .map(Some)
            .map_err(|e| {
                let file =
                    t.ca.as_ref()
                        .map_or(String::new(), |f| format!("{}: ", f.display()));
                vec![Diagnostic::at(
                    t.ca_at,
                    format!("{key}.ca"),
                    format!("{file}{e}"),
                )]
            }),
    };
    let tls = client_config(p.http2)?;
    let tls_h1 = if p.http2 {
        client_config(false)?
    } else {
        tls.clone()
    };

    let mut upstreams: Vec<Upstream> = Vec::with_capacity(p.servers.len());
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, s) in p.servers.iter().enumerate() {
        let skey = format!("{key}.servers[{i}]");
        // A name is every address it resolves to, each a server with the entry's weight.
        let addrs = match s.literal() {
            Some(a) => vec![a],
            None => match reg.dns.addresses(&s.host, s.port) {
                Ok(a) => a,
                Err(e) => {
                    problems.push(Diagnostic::at(s.at, skey, e));
                    continue;
                }
            },
        };
        for addr in addrs {
            let skey = skey.clone();
            if let Some(prev) = seen.insert(addr, i) {
                problems.push(Diagnostic::at(
                    s.at,
                    skey,
                    format!("{s} is {addr}, already listed as servers[{prev}]"),
                ));
                continue;
            }
            let name = p
                .tls
                .as_ref()
                .map(|t| t.sni.clone().unwrap_or_else(|| s.host.clone()));
            let server_name = match &name {
                None => None,
                Some(n) => match rustls_pki_types::ServerName::try_from(n.clone()) {
                    Ok(sn) => Some(sn),
                    Err(_) => {
                        problems.push(Diagnostic::at(
                            s.at,
                            skey,
                            format!("{n:?} is not a valid TLS server name"),
                        ));
                        continue;
                    }
                },
            };
            let conn_key = ConnKey {
                addr,
                tls: name.map(|n| (ca_pem.clone().unwrap_or_else(|| Arc::from(&[][..])), n)),
                http2: p.http2,
            };
            let probe = match &p.health {
                None => None,
                Some(check) => {
                    match health_probe(p, s, addr, check, tls_h1.as_ref(), &server_name, reg) {
                        Ok(probe) => Some(probe),
                        Err(e) => {
                            problems.push(Diagnostic::at(s.at, format!("{key}.health"), e));
                            continue;
                        }
                    }
                }
            };
            let pool_key = (Arc::<str>::from(p.name.as_str()), addr);
            upstreams.push(Upstream {
                probe,
                addr,
                state: reg
                    .servers
                    .get_or_insert_with(addr, || ServerState::new(addr)),
                admin: reg
                    .admin
                    .get_or_insert_with(pool_key.clone(), Default::default),
                metrics: reg.server_metrics.get_or_insert_with(pool_key, || {
                    reg.metrics.server(&p.name, &addr.to_string())
                }),
                conns: reg
                    .conns
                    .get_or_insert_with(conn_key, || ConnPool::new(reg.workers)),
                server_name,
                config_weight: s.weight,
                backup: s.backup,
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let algorithm = match p.balance {
        Balance::RoundRobin => Algorithm::RoundRobin,
        Balance::IpHash => Algorithm::IpHash,
        Balance::LeastConn => Algorithm::LeastConn,
    };
    let selector = Selector::new(
        algorithm,
        upstreams.iter().map(|u| Entry {
            state: u.state.clone(),
            admin: u.admin.clone(),
            health: u.probe.as_ref().map(|p| p.state.clone()),
            weight: u.weight(),
            backup: u.backup,
        }),
    );
    Ok(PoolRt {
        id,
        metrics: reg.metrics.pool(&p.name),
        name: p.name.as_str().into(),
        selector,
        upstreams,
        connect: upstream::Settings {
            connect_timeout: p.connect_timeout,
            tls,
            tls_h1,
            http2: p.http2,
        },
        response_timeout: p.response_timeout,
        retries: p.retries,
        retry_timeout: p.retry_timeout,
        max_fails: p.max_fails,
        fail_on_status: p.fail_on_status.clone().into(),
        fail_timeout_ms: p.fail_timeout.as_millis() as u64,
        idle_timeout: p.idle_timeout,
        max_idle: p.max_idle,
    })
}

/// How one server of a pool is probed: the check's port and Host applied, TLS as the check (or else the pool)
/// says, the state shared by everyone who probes the same address the same way.
fn health_probe(
    pool: &Pool,
    s: &ServerSpec,
    addr: SocketAddr,
    check: &gatehouse_config::HealthCheck,
    pool_tls: Option<&Arc<rustls::ClientConfig>>,
    server_name: &Option<rustls_pki_types::ServerName<'static>>,
    reg: &Registries,
) -> Result<Probe, String> {
    let addr = SocketAddr::new(addr.ip(), check.port.unwrap_or(addr.port()));
    let host = check.host.clone().unwrap_or_else(|| {
        if s.host.contains(':') {
            format!("[{}]:{}", s.host, s.port)
        } else {
            format!("{}:{}", s.host, s.port)
        }
    });
    let tls = match check.tls.unwrap_or(pool.tls.is_some()) {
        false => None,
        true => {
            let config = match pool_tls {
                Some(c) => c.clone(),
                None => gatehouse_tls::client::client_config(None, false)?,
            };
            let name = match server_name {
                Some(n) => n.clone(),
                None => rustls_pki_types::ServerName::try_from(s.host.clone())
                    .map_err(|_| format!("{:?} is not a valid TLS server name", s.host))?,
            };
            Some((config, name))
        }
    };
    let key = HealthKey {
        addr,
        check: check.clone(),
        host,
        tls_name: tls.as_ref().map(|(_, n)| n.to_str().into_owned()),
    };
    Ok(Probe {
        state: reg.health.get_or_insert_with(key.clone(), Default::default),
        key,
        tls,
    })
}
