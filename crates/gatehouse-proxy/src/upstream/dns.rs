//! Servers written as DNS names: every address a name resolves to is a server of its pool (with the entry's
//! weight), and the answer is kept here, outside the snapshot, so that a compile uses the last good answer
//! and a failed look-up never empties a pool.
//!
//! Look-ups use hickory-resolver (the system's name servers, or `[server] dns_servers`), never a blocking
//! `getaddrinfo` on a worker. A compile that meets a name it has no answer for yet (start, a reload adding a
//! server) looks it up on a thread of its own, since compiles may run inside the control runtime. The proxy's
//! refresher ([`crate::Proxy`]) looks every name up again as its TTL (bounded by the pool's
//! `resolve_interval`) runs out, and rebuilds the running config when an answer changed.

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one look-up may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Dns {
    answers: Mutex<HashMap<(String, u16), Vec<SocketAddr>>>,
    /// Empty: the system's configuration.
    servers: Mutex<Vec<SocketAddr>>,
}

/// One look-up's addresses and until when they are valid.
#[derive(Debug, Clone)]
pub struct Answer {
    pub addrs: Vec<SocketAddr>,
    pub valid_until: Instant,
}

impl Dns {
    /// Use these name servers (empty: the system's). Set at start.
    pub fn set_servers(&self, servers: Vec<SocketAddr>) {
        *self.servers.lock().unwrap_or_else(|e| e.into_inner()) = servers;
    }

    /// A resolver for the current tokio runtime.
    pub fn resolver(&self) -> Result<TokioResolver, String> {
        let servers = self
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if servers.is_empty() {
            return TokioResolver::builder_tokio()
                .map(|b| b.build())
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"));
        }
        let mut group = NameServerConfigGroup::new();
        for s in servers {
            group.merge(NameServerConfigGroup::from_ips_clear(
                &[s.ip()],
                s.port(),
                true,
            ));
        }
        Ok(TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], group),
            TokioConnectionProvider::default(),
        )
        .build())
    }

    /// The addresses of `host:port` for a compile: the last good answer, else a look-up now.
    pub fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let key = (host.to_ascii_lowercase(), port);
        if let Some(a) = self
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(a.clone());
        }
        // On a thread of its own: this may run inside a runtime (start-up), which cannot block on another.
        let answer = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async {
                    let resolver = self.resolver()?;
                    lookup(&resolver, host, port).await
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the DNS look-up failed".into()))
        })?;
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, answer.addrs.clone());
        Ok(answer.addrs)
    }

    /// Records a fresh answer; returns true when it differs from the one kept.
    pub fn update(&self, host: &str, port: u16, addrs: Vec<SocketAddr>) -> bool {
        let key = (host.to_ascii_lowercase(), port);
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        if answers.get(&key) == Some(&addrs) {
            return false;
        }
        answers.insert(key, addrs);
        true
    }
}

/// Looks `host` up (A and AAAA); the addresses with `port`, sorted, without duplicates.
pub async fn lookup(resolver: &TokioResolver, host: &str, port: u16) -> Result<Answer, String> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup_ip(host))
        .await
        .map_err(|_| format!("cannot resolve {host}: no answer within {LOOKUP_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(format!("{host} resolves to no address"));
    }
    Ok(Answer {
        addrs,
        valid_until: found.valid_until(),
    })
}
