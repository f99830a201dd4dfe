//! The runtime form of one config: everything a request needs, built once, then read without locks.
//!
//! A [`Snapshot`] is immutable and swapped whole (`ArcSwap`) on reload; a request loads it once at its start
//! and keeps that `Arc` until its context is reported (its response body's end, or its tunnel's), so in-flight
//! work finishes on the config it started with. State that must survive a reload (in-flight counts, passive
//! health, idle upstream connections) is *not* in here: it lives in the [`Registries`], keyed by server, and
//! the snapshot only holds `Arc`s to it.
//!
//! * [`compile`] builds a snapshot from a validated config (resolving server names, reading CA files);
//! * [`registries`] holds the long-lived state a compile reads and shares;
//! * [`observer`] is the end-of-request hook each snapshot carries;
//! * [`policy`] compiles a route's traffic policy;
//! * [`record`] counts a finished request into the metric handles the snapshot holds.
//!
//! These files and this one name each other's types (a snapshot holds its observer, the observer is told
//! the snapshot): a cycle inside the folder, which is one concept.

pub mod compile;
pub mod observer;
pub mod policy;
pub mod record;
pub mod registries;

pub use compile::compile;
pub use observer::{NoObserver, Observer};
pub use registries::{Registries, TlsServers};

use crate::context::RequestCtx;
use crate::upstream::{self, Upstream};
use bytes::Bytes;
use gatehouse_balance::{Algorithm, Selector};
use gatehouse_config::{AccessRules, Config};
use gatehouse_metrics::{PoolMetrics, RouteMetrics, SiteMetrics};
use gatehouse_route::{HostTable, PathTable};
use http::{HeaderValue, StatusCode};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub sites: HostTable<SiteRt>,
    /// By [`PoolRt::id`].
    pub pools: Vec<Arc<PoolRt>>,
    /// L4 streams, found by their configured bind address.
    pub streams: Vec<StreamRt>,
    pub trusted_proxies: Vec<IpNet>,
    /// Client connections with nothing in flight are closed after this long.
    pub idle_timeout: Duration,
    /// A request head must arrive within this long of its first byte.
    pub header_read_timeout: Duration,
    /// A client that reads nothing of a response for this long is cut.
    pub send_timeout: Duration,
    /// A request body that sends nothing for this long gets 408.
    pub body_timeout: Duration,
    /// Longest request target (path and query); longer gets 414.
    pub max_request_target: usize,
    /// ACME HTTP-01 answers (shared, outside the config).
    pub http01: Arc<gatehouse_tls::Http01Tokens>,
    /// The port of the first TLS listener, for redirect_https.
    pub https_port: Option<u16>,
    /// hyper's server settings, shared by the connections accepted under this snapshot.
    pub http1: Arc<http1::Builder>,
    pub http2: Arc<http2::Builder<TokioExecutor>>,
    /// Told about every request when it ends.
    pub observer: Arc<dyn Observer>,
    /// Counters of requests that matched no site or route.
    pub unrouted: RouteMetrics,
    pub unrouted_site: SiteMetrics,
    /// An access log is written: request heads keep what a line shows ([`crate::context::HeadFields`]).
    pub access_log: bool,
    /// One in this many requests on a skipped path is logged anyway (0: none).
    pub access_log_sample: u32,
}

impl Snapshot {
    /// The site a context's index names.
    pub fn site(&self, id: u32) -> Option<&SiteRt> {
        self.sites.get(id as usize)
    }

    /// The route (and its path prefix) a context's indexes name.
    pub fn route(&self, site: u32, route: u32) -> Option<(&str, &RouteRt)> {
        self.site(site)?.paths.get(route as usize)
    }

    pub fn pool(&self, id: u32) -> Option<&Arc<PoolRt>> {
        self.pools.get(id as usize)
    }

    /// The stream bound at `bind` (as configured).
    pub fn stream(&self, bind: std::net::SocketAddr) -> Option<&StreamRt> {
        self.streams.iter().find(|s| s.bind == bind)
    }

    /// The names behind a request context's indexes, for logs.
    pub fn names(&self, ctx: &RequestCtx) -> Names<'_> {
        Names {
            site: ctx.site.and_then(|s| self.site(s)).map(|s| &*s.name),
            route: ctx
                .site
                .zip(ctx.route)
                .and_then(|(s, r)| self.route(s, r))
                .map(|(p, _)| p),
            pool: ctx.pool.and_then(|p| self.pool(p)).map(|p| &*p.name),
        }
    }
}

/// What a request's site, route and pool are called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Names<'a> {
    /// The site's first host.
    pub site: Option<&'a str>,
    /// The route's path prefix.
    pub route: Option<&'a str>,
    pub pool: Option<&'a str>,
}

#[derive(Debug)]
pub struct SiteRt {
    /// Index in [`Snapshot::sites`].
    pub id: u32,
    /// The first host, as written: how logs name the site.
    pub name: Box<str>,
    /// The first exact host: where `redirect_https` sends a request whose Host no site names (the default
    /// site catching it), so a client cannot pick the redirect's target.
    pub canonical_host: Option<Box<str>>,
    pub paths: PathTable<RouteRt>,
    pub redirect_https: bool,
    /// Strict-Transport-Security for this site's HTTPS responses.
    pub hsts: Option<HeaderValue>,
    /// `%2F` and `%5C` in paths are passed through (matched decoded) instead of refused.
    pub allow_encoded_slashes: bool,
    pub metrics: SiteMetrics,
    /// The site's requests are logged (`access_log = "off"` on the site: not).
    pub access_log: bool,
    /// Path prefixes whose successful requests are not logged (health checks).
    pub access_log_skip: Box<[Box<str>]>,
}

#[derive(Debug)]
pub struct RouteRt {
    pub action: ActionRt,
    /// Requests by status class and protocol.
    pub metrics: RouteMetrics,
    /// `None` when neither site nor route has allow/deny rules (the common case: no check at all).
    pub access: Option<AccessRules>,
    pub max_body: Option<u64>,
    /// Upgrade protocols tunnelled (lower-case tokens, `h2c` never among them).
    pub upgrades: Box<[Box<str>]>,
    /// An upgraded connection with no bytes either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Rate limit, header rules, rewrite, basic auth, compression.
    pub policy: policy::RoutePolicy,
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

/// A `[[stream]]` ready for connections.
#[derive(Debug)]
pub struct StreamRt {
    pub name: Arc<str>,
    pub bind: std::net::SocketAddr,
    pub pool: Arc<PoolRt>,
    /// `None` when the stream has no allow/deny rules.
    pub access: Option<AccessRules>,
    pub idle_timeout: Duration,
    pub proxy_protocol: gatehouse_config::ProxyProtocolOut,
    pub metrics: gatehouse_metrics::StreamMetrics,
}

/// A pool ready for requests: its balancer and its servers' shared state.
#[derive(Debug)]
pub struct PoolRt {
    /// Index in [`Snapshot::pools`].
    pub id: u32,
    pub name: Arc<str>,
    pub selector: Selector,
    /// Indexed by [`gatehouse_balance::Member::id`].
    pub upstreams: Vec<Upstream>,
    /// How connections to the servers are made.
    pub connect: upstream::Settings,
    pub response_timeout: Duration,
    pub retries: u32,
    /// No new try starts this long after the first.
    pub retry_timeout: Option<Duration>,
    pub max_fails: u32,
    /// Response statuses counted as the server's failure (passive health).
    pub fail_on_status: Box<[u16]>,
    pub fail_timeout_ms: u64,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    /// Upstream connect and response times.
    pub metrics: PoolMetrics,
}

impl PoolRt {
    /// Whether the balancer reads the client's affinity key (so it is worth hashing).
    pub fn wants_key(&self) -> bool {
        self.selector.algorithm() == Algorithm::IpHash
    }
}
