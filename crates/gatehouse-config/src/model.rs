//! The validated config: every value typed, every default applied. `PartialEq` so that a reload can tell
//! what changed.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file the config came from, for messages about it (`file:line:col`).
    pub origin: Origin,
    pub server: Server,
    pub listeners: Vec<Listener>,
    pub acme: Option<Acme>,
    pub sites: Vec<Site>,
    pub pools: BTreeMap<String, Pool>,
    /// L4 TCP forwarding.
    pub streams: Vec<Stream>,
}

/// `[[stream]]`: one port forwarded, connection by connection, to a pool's servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub name: String,
    pub bind: SocketAddr,
    pub pool: String,
    /// Who may connect (the site fields are used; the route ones stay empty).
    pub access: AccessRules,
    /// A connection with no byte either way for this long is closed.
    pub idle_timeout: Duration,
    /// The header sent to the server first, with the client's address.
    pub proxy_protocol: ProxyProtocolOut,
    /// A PROXY header is expected from the client first (a load balancer in front), believed from
    /// `trusted_proxies` only.
    pub accept_proxy_protocol: bool,
    /// Connections open at once; 0 = no limit of its own.
    pub max_connections: usize,
    /// Connections one client address may hold open at once; 0 = no limit.
    pub max_conns_per_ip: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolOut {
    Off,
    V1,
    V2,
}

/// Where a value was written: 1-based line and column of the file in [`Config::origin`], so that a problem
/// found after validation (an unreadable certificate, a name that does not resolve) still names its line.
///
/// Not part of a config's meaning: two `At`s always compare equal, so a reload that only moved lines (a
/// comment added at the top) is not a change.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct At {
    pub line: usize,
    pub col: usize,
}

impl PartialEq for At {
    fn eq(&self, _: &At) -> bool {
        true
    }
}

/// The name of the file a config came from. Like [`At`], not part of the config's meaning.
#[derive(Debug, Clone, Default, Eq)]
pub struct Origin(pub String);

impl PartialEq for Origin {
    fn eq(&self, _: &Origin) -> bool {
        true
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[acme]`: automatic certificates.
#[derive(Debug, Clone, PartialEq)]
pub struct Acme {
    /// Where the `[acme]` section starts.
    pub at: At,
    pub email: Option<String>,
    /// The directory URL ("letsencrypt" and "letsencrypt-staging" already resolved).
    pub directory: String,
    pub ca_root: Option<std::path::PathBuf>,
    pub ca_root_at: At,
    pub challenge: AcmeChallenge,
    pub storage: AcmeStorage,
    pub storage_at: At,
    /// `None` = auto (a third of the lifetime left).
    pub renew_before: Option<Duration>,
    pub check_interval: Duration,
    pub retry_initial: Duration,
    /// How long a certificate order's lock lasts unless its holder renews it (a node that dies mid-order
    /// blocks the others this long at most).
    pub lock_ttl: Duration,
}

/// Where ACME state is kept: a folder (one node, or nodes sharing it), or a Redis every node shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeStorage {
    Folder(std::path::PathBuf),
    Redis(RedisStore),
}

/// `storage = "redis://[user:pass@]host[:port][/db]"` (or `rediss://` for TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStore {
    pub url: RedisUrl,
    /// Every key starts with this (`storage_prefix`, default `gatehouse:`), so several clusters can share one
    /// Redis.
    pub prefix: String,
    /// PEM file of the CA for `rediss://` (default: the system's roots).
    pub ca: Option<std::path::PathBuf>,
    pub ca_at: At,
}

/// A Redis URL, which may hold a password: `Debug` and [`RedisUrl::redacted`] never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub String);

impl RedisUrl {
    /// The URL with any password replaced by `***`, for logs and status pages.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some((scheme, rest)) = s.split_once("://") else {
            return s.clone();
        };
        match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                let shown = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    "***".to_string()
                };
                format!("{scheme}://{shown}@{host}")
            }
            None => s.clone(),
        }
    }

    pub fn tls(&self) -> bool {
        self.0.starts_with("rediss://")
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl AcmeStorage {
    /// As an operator would recognize it in a log line (no password).
    pub fn shown(&self) -> String {
        match self {
            AcmeStorage::Folder(p) => p.display().to_string(),
            AcmeStorage::Redis(r) => r.url.redacted(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
}

impl Site {
    /// The names an ACME certificate for this site covers (its exact hosts).
    pub fn exact_hosts(&self) -> Vec<String> {
        self.hosts
            .iter()
            .filter_map(|h| match h {
                HostPattern::Exact(n) => Some(n.clone()),
                HostPattern::Wildcard(_) => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub admin: Option<SocketAddr>,
    pub log_level: String,
    pub access_log: AccessLog,
    pub access_log_format: AccessLogFormat,
    pub grace_period: Duration,
    /// Worker threads; 0 = one per core (resolved at start, not here: validation reads nothing of the machine).
    pub workers: usize,
    pub admin_token: Option<String>,
    pub trusted_proxies: Vec<IpNet>,
    /// A client must send a whole request head within this time (slowloris guard).
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Largest request head accepted; larger ones get 431.
    pub max_header_size: usize,
    /// Lowest TLS version for TLS listeners that do not set their own.
    pub tls_min_version: TlsVersion,
    /// A client that takes nothing of a response for this long is cut (nginx `send_timeout`).
    pub send_timeout: Duration,
    /// A request body that sends nothing for this long is cut with 408 (nginx `client_body_timeout`).
    pub body_timeout: Duration,
    /// Refuse TLS handshakes that name no known site (or no name at all), instead of serving the default
    /// (or first) site's certificate.
    pub strict_sni: bool,
    /// Client connections one worker holds at once; 0 = derived from the open-file limit at start.
    pub max_connections_per_worker: usize,
    /// Longest request target (path and query); longer ones get 414.
    pub max_request_target: usize,
    /// Path prefixes (health checks, probes) whose successful requests are not logged ...
    pub access_log_skip: Vec<String>,
    /// ... except one in this many (0: none of them).
    pub access_log_sample: u32,
    /// Name servers for servers written as DNS names (empty: the system's, /etc/resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(std::path::PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    Combined,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    /// TLS with the certificate of the site SNI names; `Some` = the lowest version accepted.
    pub tls: Option<TlsVersion>,
    /// Client connections open at once on this listener (all workers); 0 = no limit of its own.
    pub max_connections: usize,
    /// Expect a PROXY protocol (v1 or v2) header first; believed only from `trusted_proxies`.
    pub proxy_protocol: bool,
    /// Connections one client address may hold open at once (refused before any TLS work); 0 = no limit.
    pub max_conns_per_ip: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub hosts: Vec<HostPattern>,
    pub default: bool,
    pub routes: Vec<Route>,
    pub tls: Option<SiteTls>,
    /// Plain-HTTP requests get 308 to https:// (on `https_port`).
    pub redirect_https: bool,
    /// Strict-Transport-Security value for HTTPS responses.
    pub hsts: Option<String>,
    /// Pass `%2F` and `%5C` in paths through (matching on their decoded form) instead of refusing them.
    pub allow_encoded_slashes: bool,
    /// `access_log = "off"` on the site: none of its requests are logged.
    pub access_log: bool,
    /// The site's own skip list (`None`: the server's).
    pub access_log_skip: Option<Vec<String>>,
}

/// Where a site's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteTls {
    Files {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        /// Where `tls = { cert, key }` is written.
        at: At,
    },
    /// Obtained and renewed by the ACME manager.
    Acme,
}

impl HostPattern {
    /// As written in the config: `example.com` or `*.example.org`.
    pub fn as_config(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Wildcard(suffix) => format!("*{suffix}"),
        }
    }
}

/// A host a site answers for, lower-cased and without a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.org`, stored as the suffix `.example.org`; matches exactly one more label.
    Wildcard(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub path: String,
    pub action: RouteAction,
    /// Site rules narrowed by the route's own; a request must pass both (see [`AccessRules`]).
    pub access: AccessRules,
    pub max_body: Option<u64>,
    /// Upgrade protocols tunnelled (lower-case tokens); others are forwarded as plain requests.
    pub upgrades: Vec<String>,
    /// An upgraded connection with no bytes either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Rate limit, header rules, rewrite, basic auth, compression (the site's, or the route's own).
    pub policy: crate::Policy,
}

/// allow/deny CIDR lists. Deny wins; an empty allow list allows everyone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessRules {
    pub site_allow: Vec<IpNet>,
    pub site_deny: Vec<IpNet>,
    pub route_allow: Vec<IpNet>,
    pub route_deny: Vec<IpNet>,
}

impl AccessRules {
    pub fn is_empty(&self) -> bool {
        self.site_allow.is_empty()
            && self.site_deny.is_empty()
            && self.route_allow.is_empty()
            && self.route_deny.is_empty()
    }

    /// Whether `ip` may use the route: not denied by site or route, and allowed by both (empty = all).
    pub fn permits(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical(ip);
        let within = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&ip));
        !within(&self.site_deny)
            && !within(&self.route_deny)
            && (self.site_allow.is_empty() || within(&self.site_allow))
            && (self.route_allow.is_empty() || within(&self.route_allow))
    }
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) compare as IPv4.
pub fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    Pool { pool: String, strip_prefix: bool },
    Redirect { location: String, status: u16 },
    Respond { body: String, status: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    IpHash,
    LeastConn,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    /// Where `[pool.NAME]` starts.
    pub at: At,
    pub balance: Balance,
    pub servers: Vec<ServerSpec>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub retries: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// How long an idle upstream keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Idle upstream connections kept per server, on each worker thread.
    pub max_idle: usize,
    pub tls: Option<UpstreamTls>,
    /// HTTP/2 to the servers (h2 over TLS, h2c in plain).
    pub http2: bool,
    /// Active health checks; `None`: passive only.
    pub health: Option<HealthCheck>,
    /// No new try starts this long after the first (`None`: only `retries` bounds them).
    pub retry_timeout: Option<Duration>,
    /// Response statuses that count as the server's failure for passive health.
    pub fail_on_status: Vec<u16>,
    /// Servers written as names are looked up again this often at most (sooner when the record's TTL says).
    pub resolve_interval: Duration,
}

/// An active health check on a short connection of its own, every `interval`: `GET path`, or without a path a
/// TCP connect (and TLS handshake, when it probes over TLS) only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    pub path: Option<String>,
    pub interval: Duration,
    /// For the whole probe: connect, send, the response head (and the body when `body` is checked).
    pub timeout: Duration,
    /// Consecutive failures that take a server out ...
    pub fall: u32,
    /// ... and consecutive successes that bring it back.
    pub rise: u32,
    /// Statuses that count as healthy, as inclusive ranges.
    pub status: Vec<(u16, u16)>,
    /// A substring the body must contain (the first 64 KiB are read).
    pub body: Option<String>,
    /// The Host header sent (default: the server's host as written).
    pub host: Option<String>,
    /// Probe this port instead of the server's.
    pub port: Option<u16>,
    /// Probe over TLS (default: as the pool speaks to its servers).
    pub tls: Option<bool>,
    /// TCP checks (no path): bytes sent once connected ...
    pub send: Option<String>,
    /// ... and a substring the server's first bytes must hold (up to 64 KiB are read).
    pub expect: Option<String>,
}

impl HealthCheck {
    pub fn status_ok(&self, status: u16) -> bool {
        self.status
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Trust only this CA; `None` = the webpki roots.
    pub ca: Option<std::path::PathBuf>,
    /// Where `ca` is written (the pool's table when it is not).
    pub ca_at: At,
    /// Server name to send and verify; `None` = each server's host name (or IP).
    pub sni: Option<String>,
}

/// One server of a pool, as written. A host name is resolved when the config is applied (and by `check`), never
/// during validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// An IP address or a DNS name, without brackets (`backend.internal` of `https://backend.internal:443`);
    /// also the TLS server name when the pool sets no `sni`.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub backup: bool,
    /// Written as `https://…`.
    pub https: bool,
    pub at: At,
}

impl ServerSpec {
    /// The address when `host` is an IP address; `None` for a name that must be resolved.
    pub fn literal(&self) -> Option<SocketAddr> {
        self.host
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl std::fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Defaults, in one place so that docs and code agree.
pub mod defaults {
    use std::time::Duration;
    pub const LOG_LEVEL: &str = "info";
    pub const GRACE_PERIOD: Duration = Duration::from_secs(30);
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(65);
    pub const MAX_HEADER_SIZE: usize = 64 * 1024;
    /// The most `max_header_size` may be (hyper's buffers, HTTP/2's 32-bit header list size).
    pub const MAX_HEADER_SIZE_LIMIT: usize = 16 << 20;
    pub const MAX_REQUEST_TARGET: usize = 8 * 1024;
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
    pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
    pub const UPGRADES: &[&str] = &["websocket"];
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const RETRIES: u32 = 2;
    pub const MAX_FAILS: u32 = 3;
    pub const FAIL_TIMEOUT: Duration = Duration::from_secs(10);
    pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const MAX_IDLE: usize = 256;
    pub const WEIGHT: u32 = 1;
    pub const MAX_WEIGHT: u32 = 1000;
    /// Active health checks: a server that stops answering is out within 5 s (2 failed probes one second
    /// apart, each given one second: 3.2 s at worst, counting the wait for the next probe and its jitter),
    /// and back after 2 good ones.
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
    pub const HEALTH_FALL: u32 = 2;
    pub const HEALTH_RISE: u32 = 2;
    pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
    pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
    pub const REDIRECT_STATUS: u16 = 308;
    pub const RESPOND_STATUS: u16 = 200;
    pub const ACME_STORAGE: &str = "certs/acme";
    pub const ACME_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
    pub const ACME_RETRY_INITIAL: Duration = Duration::from_secs(60);
    pub const ACME_LOCK_TTL: Duration = Duration::from_secs(30);
    pub const ACME_REDIS_PREFIX: &str = "gatehouse:";
    pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
    pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
}
