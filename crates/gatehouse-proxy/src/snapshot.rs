//! The runtime form of one config: everything a request needs, built once, then read without locks.
//!
//! A [`Snapshot`] is immutable and swapped whole (`ArcSwap`) on reload; a request loads it once at its start
//! and keeps that `Arc` to its end, so in-flight work finishes on the config it started with. State that must
//! survive a reload (in-flight counts, passive health, idle upstream connections) is *not* in here: it lives in
//! registries keyed by server address and the snapshot only holds `Arc`s to it.

use crate::upstream::{pool::ConnPool, ConnKey, Upstream};
use bytes::Bytes;
use gatehouse_balance::{Algorithm, Registry, Selector, ServerState};
use gatehouse_config::{AccessRules, Balance, Config, HostPattern, RouteAction, TlsVersion};
use gatehouse_route::{HostTable, PathTable};
use http::{HeaderValue, StatusCode};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Snapshot {
    /// Rises by one with every applied config.
    pub generation: u64,
    pub config: Arc<Config>,
    pub sites: HostTable<SiteRt>,
    pub pools: BTreeMap<String, Arc<PoolRt>>,
    pub trusted_proxies: Vec<IpNet>,
    /// Client connections with nothing in flight are closed after this long.
    pub idle_timeout: Duration,
    /// A request head must arrive within this long of its first byte.
    pub header_read_timeout: Duration,
    /// Per listener (by configured bind address): its TLS settings, `None` for plain HTTP.
    pub listener_tls:
        std::collections::HashMap<std::net::SocketAddr, Option<Arc<rustls::ServerConfig>>>,
    /// ACME HTTP-01 answers (shared, outside the config).
    pub http01: Arc<gatehouse_tls::Http01Tokens>,
    /// The port of the first TLS listener, for redirect_https.
    pub https_port: Option<u16>,
    /// hyper's server settings, shared by the connections accepted under this snapshot.
    pub http1: Arc<http1::Builder>,
    pub http2: Arc<http2::Builder<TokioExecutor>>,
}

#[derive(Debug)]
pub struct SiteRt {
    pub paths: PathTable<RouteRt>,
    pub redirect_https: bool,
    /// Strict-Transport-Security for this site's HTTPS responses.
    pub hsts: Option<HeaderValue>,
}

impl Snapshot {
    /// The TLS server config of the listener bound at `bind`, or `None` for plain HTTP.
    pub fn tls_for(&self, bind: std::net::SocketAddr) -> Option<Arc<rustls::ServerConfig>> {
        self.listener_tls.get(&bind).cloned().flatten()
    }
}

#[derive(Debug)]
pub struct RouteRt {
    pub action: ActionRt,
    /// `None` when neither site nor route has allow/deny rules (the common case: no check at all).
    pub access: Option<AccessRules>,
    pub max_body: Option<u64>,
}

#[derive(Debug)]
pub enum ActionRt {
    Pool {
        pool: Arc<PoolRt>,
        strip_prefix: bool,
    },
    Redirect {
        location: HeaderValue,
        status: StatusCode,
    },
    Respond {
        body: Bytes,
        status: StatusCode,
    },
}

/// A pool ready for requests: its balancer and its servers' shared state.
#[derive(Debug)]
pub struct PoolRt {
    pub name: Arc<str>,
    pub selector: Selector,
    /// Indexed by [`gatehouse_balance::Member::id`].
    pub upstreams: Vec<Upstream>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub max_fails: u32,
    pub fail_timeout_ms: u64,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    /// TLS to the servers, when the pool says so.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The same, offering only http/1.1 (for upgrades when `http2` is on).
    pub tls_h1: Option<Arc<rustls::ClientConfig>>,
    /// HTTP/2 to the servers (h2 over TLS, h2c in plain).
    pub http2: bool,
}

impl PoolRt {
    /// Whether the balancer reads the client's affinity key (so it is worth hashing).
    pub fn wants_key(&self) -> bool {
        self.selector.algorithm() == Algorithm::IpHash
    }
}

/// TLS server configs for the two minimum versions, built once per proxy (they carry the session-ticket
/// keys, which must outlive reloads) around the shared certificate store.
#[derive(Debug, Clone)]
pub struct TlsServers {
    pub tls12: Arc<rustls::ServerConfig>,
    pub tls13: Arc<rustls::ServerConfig>,
}

/// Builds a snapshot from a validated config. Fails only on what validation cannot see: upstream CA files.
pub fn compile(
    config: Arc<Config>,
    generation: u64,
    servers: &Registry<ServerState>,
    conns: &Registry<ConnPool, ConnKey>,
    workers: usize,
    tls: &TlsServers,
    http01: &Arc<gatehouse_tls::Http01Tokens>,
) -> Result<Snapshot, String> {
    let pools: BTreeMap<String, Arc<PoolRt>> = config
        .pools
        .values()
        .map(|p| {
            // With http2, TLS offers h2 for requests and a second config offers only http/1.1 for upgrades
            // (WebSocket), which HTTP/2 to the server cannot carry.
            let client_config = |h2: bool| match &p.tls {
                None => Ok(None),
                Some(t) => gatehouse_tls::client::client_config(t.ca.as_deref(), h2)
                    .map(Some)
                    .map_err(|e| format!("pool.{}.ca: {e}", p.name)),
            };
            let client_tls = client_config(p.http2)?;
            let client_tls_h1 = if p.http2 {
                client_config(false)?
            } else {
                client_tls.clone()
            };
            // What TLS connections to this pool's servers were verified against, part of their pool key.
            let ca_bytes: Vec<u8> = p
                .tls
                .as_ref()
                .and_then(|t| t.ca.as_ref())
                .and_then(|f| std::fs::read(f).ok())
                .unwrap_or_default();
            let upstreams: Vec<Upstream> = p
                .servers
                .iter()
                .map(|s| {
                    let name = p
                        .tls
                        .as_ref()
                        .map(|t| t.sni.clone().unwrap_or_else(|| s.host.clone()));
                    let key = ConnKey {
                        addr: s.addr,
                        tls: name.clone().map(|n| (ca_bytes.clone(), n)),
                        http2: p.http2,
                    };
                    let server_name = match name {
                        None => None,
                        Some(n) => Some(
                            rustls_pki_types::ServerName::try_from(n.clone()).map_err(|_| {
                                format!("pool.{}: {n:?} is not a valid TLS server name", p.name)
                            })?,
                        ),
                    };
                    Ok(Upstream {
                        addr: s.addr,
                        state: servers.get_or_insert_with(s.addr, || ServerState::new(s.addr)),
                        conns: conns.get_or_insert_with(key, || ConnPool::new(workers)),
                        server_name,
                    })
                })
                .collect::<Result<_, String>>()?;
            let algorithm = match p.balance {
                Balance::RoundRobin => Algorithm::RoundRobin,
                Balance::IpHash => Algorithm::IpHash,
                Balance::LeastConn => Algorithm::LeastConn,
            };
            let selector = Selector::new(
                algorithm,
                p.servers
                    .iter()
                    .zip(&upstreams)
                    .map(|(s, u)| (u.state.clone(), s.weight, s.backup)),
            );
            let rt = PoolRt {
                name: p.name.as_str().into(),
                selector,
                upstreams,
                connect_timeout: p.connect_timeout,
                response_timeout: p.response_timeout,
                retries: p.retries,
                max_fails: p.max_fails,
                fail_timeout_ms: p.fail_timeout.as_millis() as u64,
                idle_timeout: p.idle_timeout,
                max_idle: p.max_idle,
                tls: client_tls,
                tls_h1: client_tls_h1,
                http2: p.http2,
            };
            Ok((p.name.clone(), Arc::new(rt)))
        })
        .collect::<Result<_, String>>()?;

    let mut sites = HostTable::default();
    for site in &config.sites {
        let routes = site.routes.iter().filter_map(|r| {
            let action = match &r.action {
                RouteAction::Pool { pool, strip_prefix } => ActionRt::Pool {
                    pool: pools.get(pool)?.clone(),
                    strip_prefix: *strip_prefix,
                },
                RouteAction::Redirect { location, status } => ActionRt::Redirect {
                    location: HeaderValue::from_str(location).ok()?,
                    status: StatusCode::from_u16(*status).ok()?,
                },
                RouteAction::Respond { body, status } => ActionRt::Respond {
                    body: Bytes::from(body.clone()),
                    status: StatusCode::from_u16(*status).ok()?,
                },
            };
            let rt = RouteRt {
                action,
                access: (!r.access.is_empty()).then(|| r.access.clone()),
                max_body: r.max_body,
            };
            Some((r.path.clone(), rt))
        });
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
                paths: PathTable::new(routes),
                redirect_https: site.redirect_https,
                hsts: site
                    .hsts
                    .as_deref()
                    .and_then(|h| HeaderValue::from_str(h).ok()),
            },
            exact,
            wild,
            site.default,
        );
    }

    let s = &config.server;
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(None) // the listener's watchdog keeps this clock (see client_io.rs)
        .max_buf_size(s.max_header_size.max(8192));
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(s.max_header_size as u32);

    let listener_tls = config
        .listeners
        .iter()
        .map(|l| {
            let server = l.tls.map(|min| match min {
                TlsVersion::Tls12 => tls.tls12.clone(),
                TlsVersion::Tls13 => tls.tls13.clone(),
            });
            (l.bind, server)
        })
        .collect();
    let https_port = config
        .listeners
        .iter()
        .find(|l| l.tls.is_some())
        .map(|l| l.bind.port());

    Ok(Snapshot {
        http01: http01.clone(),
        listener_tls,
        https_port,
        generation,
        trusted_proxies: s.trusted_proxies.clone(),
        idle_timeout: s.idle_timeout,
        header_read_timeout: s.header_read_timeout,
        http1: Arc::new(h1),
        http2: Arc::new(h2),
        sites,
        pools,
        config,
    })
}
