//! The file as written: serde types mirroring `shared/config-contract.toml`, with spans on the values that
//! validation may reject. Nothing here is checked beyond TOML syntax and types; see [`crate::validate`].

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Spanned<RawListener>>,
    pub acme: Option<Spanned<RawAcme>>,
    #[serde(default, rename = "site")]
    pub sites: Vec<Spanned<RawSite>>,
    #[serde(default, rename = "pool")]
    pub pools: BTreeMap<String, Spanned<RawPool>>,
    #[serde(default, rename = "stream")]
    pub streams: Vec<Spanned<RawStream>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub admin: Option<Spanned<String>>,
    pub log_level: Option<Spanned<String>>,
    pub access_log: Option<Spanned<String>>,
    pub access_log_format: Option<Spanned<String>>,
    pub grace_period: Option<Spanned<String>>,
    pub workers: Option<Spanned<i64>>,
    pub admin_token: Option<String>,
    pub tls_min_version: Option<Spanned<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    // Gatehouse additions (documented in docs/configuration.md).
    pub header_read_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_header_size: Option<Spanned<RawSize>>,
    pub send_timeout: Option<Spanned<String>>,
    pub body_timeout: Option<Spanned<String>>,
    pub strict_sni: Option<Spanned<bool>>,
    pub max_connections_per_worker: Option<Spanned<i64>>,
    pub max_request_target: Option<Spanned<RawSize>>,
    pub access_log_skip: Option<Vec<Spanned<String>>>,
    pub access_log_sample: Option<Spanned<i64>>,
    #[serde(default)]
    pub dns_servers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Spanned<String>,
    pub bind: Spanned<String>,
    #[serde(default)]
    pub tls: Option<Spanned<bool>>,
    pub tls_min_version: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub proxy_protocol: Option<Spanned<bool>>,
    pub max_conns_per_ip: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub email: Option<Spanned<String>>,
    pub directory: Option<Spanned<String>>,
    pub ca_root: Option<Spanned<String>>,
    pub challenge: Option<Spanned<String>>,
    pub storage: Option<Spanned<String>>,
    pub renew_before: Option<Spanned<String>>,
    // Gatehouse additions.
    pub check_interval: Option<Spanned<String>>,
    pub retry_initial: Option<Spanned<String>>,
    pub lock_ttl: Option<Spanned<String>>,
    /// Redis storage: the key prefix, and the CA for rediss://.
    pub storage_prefix: Option<Spanned<String>>,
    pub redis_ca: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub hosts: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub default: bool,
    pub tls: Option<Spanned<toml::Value>>,
    pub redirect_https: Option<Spanned<bool>>,
    pub hsts: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    pub max_body: Option<Spanned<RawSize>>,
    pub allow_encoded_slashes: Option<bool>,
    pub upgrades: Option<Spanned<Vec<Spanned<String>>>>,
    pub tunnel_idle_timeout: Option<Spanned<String>>,
    pub access_log: Option<Spanned<String>>,
    pub access_log_skip: Option<Vec<Spanned<String>>>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    pub request_headers: Option<Spanned<RawHeaderRules>>,
    pub response_headers: Option<Spanned<RawHeaderRules>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub compress: Option<Spanned<Vec<Spanned<String>>>>,
    pub compress_level: Option<Spanned<RawLevel>>,
    pub compress_min_size: Option<Spanned<RawSize>>,
    /// X-Content-Type-Options, X-Frame-Options and Referrer-Policy on every answer.
    pub security_headers: Option<bool>,
    #[serde(default, rename = "route")]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: Spanned<String>,
    pub pool: Option<Spanned<String>>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub redirect: Option<Spanned<String>>,
    pub respond: Option<String>,
    pub status: Option<Spanned<i64>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    pub max_body: Option<Spanned<RawSize>>,
    pub upgrades: Option<Spanned<Vec<Spanned<String>>>>,
    pub tunnel_idle_timeout: Option<Spanned<String>>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    pub request_headers: Option<Spanned<RawHeaderRules>>,
    pub response_headers: Option<Spanned<RawHeaderRules>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub compress: Option<Spanned<Vec<Spanned<String>>>>,
    pub compress_level: Option<Spanned<RawLevel>>,
    pub compress_min_size: Option<Spanned<RawSize>>,
    /// X-Content-Type-Options, X-Frame-Options and Referrer-Policy on every answer.
    pub security_headers: Option<bool>,
    pub rewrite: Option<Spanned<RawRewrite>>,
}

/// `rate_limit = { rate = "10r/s", burst = 20, nodelay = true, ipv6_prefix = 64, max_clients = 65536 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub rate: Spanned<String>,
    pub burst: Option<Spanned<i64>>,
    pub nodelay: Option<bool>,
    pub ipv6_prefix: Option<Spanned<i64>>,
    pub max_clients: Option<Spanned<i64>>,
}

/// `request_headers = { set = { … }, add = { … }, remove = [ … ] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRules {
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub add: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub realm: Option<Spanned<String>>,
    pub users: Spanned<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    pub forward: bool,
}

/// `compress_level = "fastest" | "default" | "best" | 6`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawLevel {
    Number(i64),
    Name(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub balance: Option<Spanned<String>>,
    #[serde(default)]
    pub servers: Vec<Spanned<toml::Value>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub response_timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub health: Option<Spanned<RawHealth>>,
    pub max_fails: Option<Spanned<i64>>,
    pub fail_timeout: Option<Spanned<String>>,
    /// TLS to the servers (also implied by `https://` server addresses).
    pub tls: Option<Spanned<bool>>,
    /// PEM file of the CA that signs the servers' certificates (default: the webpki roots).
    pub ca: Option<Spanned<String>>,
    /// Server name sent (SNI) and verified; default: the server's host name.
    pub sni: Option<Spanned<String>>,
    /// HTTP/2 to the servers: h2 over TLS, h2c (prior knowledge) in plain.
    pub http2: Option<bool>,
    // Gatehouse additions.
    pub idle_timeout: Option<Spanned<String>>,
    pub max_idle: Option<Spanned<i64>>,
    pub retry_timeout: Option<Spanned<String>>,
    pub resolve_interval: Option<Spanned<String>>,
    pub fail_on_status: Option<Spanned<Vec<i64>>>,
}

/// `health = { path, interval, timeout, fall, rise, status, body, host, port, tls }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub fall: Option<Spanned<i64>>,
    pub rise: Option<Spanned<i64>>,
    /// `"200-399"`, `"2xx"`, `200`, or a list of these.
    pub status: Option<Spanned<RawStatus>>,
    pub body: Option<String>,
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub tls: Option<bool>,
    /// TCP checks: bytes to send, and a substring the answer must hold.
    pub send: Option<String>,
    pub expect: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStatus {
    One(i64),
    Text(String),
    List(Vec<RawStatusItem>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStatusItem {
    One(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStream {
    pub name: Spanned<String>,
    pub bind: Spanned<String>,
    pub pool: Spanned<String>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub proxy_protocol: Option<Spanned<String>>,
    pub accept_proxy_protocol: Option<Spanned<bool>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_conns_per_ip: Option<Spanned<i64>>,
}

/// A size written as a number of bytes or as a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(i64),
    Text(String),
}
