//! What outlives a snapshot and every compile reads: per-server state, idle connections, the TLS server
//! configs, the ACME answers, the end-of-request hook. One bundle, so adding a registry changes one type.

use super::Observer;
use crate::upstream::health::HealthKey;
use crate::upstream::{pool::ConnPool, ConnKey};
use gatehouse_balance::{ActiveHealth, AdminControl, Registry, ServerState};
use gatehouse_metrics::{Metrics, ServerMetrics};
use gatehouse_tls::{CertManager, Http01Tokens, MinVersion};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
pub struct Registries {
    /// In-flight counts and passive health, by server address (shared by every pool naming the server).
    pub servers: Registry<ServerState>,
    /// Idle upstream connections, by how they were made ([`ConnKey`]).
    pub conns: Registry<ConnPool, ConnKey>,
    /// Worker threads (connection pools keep one idle list per worker).
    pub workers: usize,
    /// Site certificates: files and ACME, served through the listeners' shared store.
    pub certs: CertManager,
    pub tls: TlsServers,
    pub http01: Arc<Http01Tokens>,
    pub observer: Arc<dyn Observer>,
    /// Every metric family; compiles take their handles from it.
    pub metrics: Arc<Metrics>,
    /// What the admin API set for a server of a pool, by (pool, address).
    pub admin: Registry<AdminControl, (Arc<str>, SocketAddr)>,
    /// Counters of a server of a pool, by (pool, address).
    pub server_metrics: Registry<ServerMetrics, (Arc<str>, SocketAddr)>,
    /// What active health checks found, by address and check.
    pub health: Registry<ActiveHealth, HealthKey>,
    /// The addresses of servers written as names (last good answers).
    pub dns: crate::upstream::dns::Dns,
    /// Rate limiters, by where their rule is written and the rule ([`super::policy::LimiterKey`]).
    pub limiters: Registry<gatehouse_policy::rate_limit::Limiter, super::policy::LimiterKey>,
}

impl Registries {
    /// With a fresh metrics registry (tests, `gatehouse check`).
    pub fn new(workers: usize, observer: Arc<dyn Observer>) -> Result<Self, rustls::Error> {
        Self::with_metrics(workers, observer, Arc::new(Metrics::new()))
    }

    pub fn with_metrics(
        workers: usize,
        observer: Arc<dyn Observer>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, rustls::Error> {
        let certs = CertManager::new();
        let tls = TlsServers::new(&certs)?;
        Ok(Registries {
            servers: Registry::default(),
            conns: Registry::default(),
            workers: workers.max(1),
            certs,
            tls,
            http01: Arc::new(Http01Tokens::default()),
            observer,
            metrics,
            admin: Registry::default(),
            server_metrics: Registry::default(),
            health: Registry::default(),
            dns: Default::default(),
            limiters: Registry::default(),
        })
    }
}

/// TLS server configs for the two minimum versions, built once per proxy (they carry the session-ticket
/// keys, which must outlive reloads) around the shared certificate store.
#[derive(Debug, Clone)]
pub struct TlsServers {
    pub tls12: Arc<rustls::ServerConfig>,
    pub tls13: Arc<rustls::ServerConfig>,
}

impl TlsServers {
    fn new(certs: &CertManager) -> Result<Self, rustls::Error> {
        Ok(TlsServers {
            tls12: gatehouse_tls::server::server_config(certs.store(), MinVersion::Tls12)?,
            tls13: gatehouse_tls::server::server_config(certs.store(), MinVersion::Tls13)?,
        })
    }
}
