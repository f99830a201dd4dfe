//! The running proxy: listeners, the current snapshot, and the state that outlives snapshots.
//!
//! Reload is diff-and-swap: listeners are compared by bind address (new ones opened first, so a failed bind
//! changes nothing; removed ones closed after the swap; unchanged ones untouched), then the whole new snapshot
//! replaces the old with one `ArcSwap::store`. Requests already running keep the snapshot they loaded.

use crate::listener::{self, ListenerContext, Tracker};
use crate::snapshot::{self, Snapshot, TlsServers};
use crate::upstream::pool::ConnPool;
use crate::upstream::ConnKey;
use arc_swap::ArcSwap;
use gatehouse_balance::{Registry, ServerState};
use gatehouse_config::Config;
use gatehouse_tls::{CertManager, Http01Tokens, MinVersion, SiteCert};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One open listening socket.
#[derive(Debug)]
struct Bound {
    name: String,
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

#[derive(Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    servers: Registry<ServerState>,
    conns: Registry<ConnPool, ConnKey>,
    /// Site certificates, outside the snapshot: a changed file swaps one pair without a reload.
    certs: CertManager,
    /// The listeners' rustls configs, built once so session-ticket keys outlive reloads.
    tls: TlsServers,
    /// HTTP-01 answers published by the ACME manager, served on plain listeners.
    http01: Arc<Http01Tokens>,
    tracker: Arc<Tracker>,
    shutdown: watch::Sender<bool>,
    generation: AtomicU64,
    /// By configured bind address (which may say port 0; `local` has the real one).
    listeners: Mutex<BTreeMap<SocketAddr, Bound>>,
    /// Serializes reloads (a SIGHUP and a file event may race).
    reload_lock: Mutex<()>,
    /// The worker runtimes that run accept loops and connections.
    workers: Vec<tokio::runtime::Handle>,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub generation: u64,
    pub listeners_added: Vec<SocketAddr>,
    pub listeners_removed: Vec<SocketAddr>,
}

/// How a shutdown went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections and tunnels still open when the grace period ended (cut).
    pub cut: usize,
    pub waited: Duration,
}

impl Proxy {
    /// Compiles `config`, binds every listener and starts serving on `workers` (see [`crate::Workers`]).
    /// Call inside a tokio runtime (the control runtime: reloads, sweeps).
    pub fn start(
        config: Config,
        workers: &[tokio::runtime::Handle],
    ) -> std::io::Result<Arc<Proxy>> {
        if workers.is_empty() {
            return Err(std::io::Error::other("no worker runtime"));
        }
        let servers = Registry::default();
        let conns = Registry::default();
        let certs = CertManager::new();
        let store = certs.store();
        let tls = TlsServers {
            tls12: gatehouse_tls::server::server_config(store.clone(), MinVersion::Tls12)
                .map_err(std::io::Error::other)?,
            tls13: gatehouse_tls::server::server_config(store, MinVersion::Tls13)
                .map_err(std::io::Error::other)?,
        };
        let prepared = certs
            .prepare(&site_certs(&config))
            .map_err(std::io::Error::other)?;
        let http01 = Arc::new(Http01Tokens::default());
        let snap = snapshot::compile(
            Arc::new(config),
            1,
            &servers,
            &conns,
            workers.len(),
            &tls,
            &http01,
        )
        .map_err(std::io::Error::other)?;
        certs.commit(prepared);
        let (shutdown, _) = watch::channel(false);
        let proxy = Arc::new(Proxy {
            snapshot: Arc::new(ArcSwap::from_pointee(snap)),
            servers,
            conns,
            certs,
            tls,
            http01,
            tracker: Arc::new(Tracker::default()),
            shutdown,
            generation: AtomicU64::new(1),
            listeners: Mutex::new(BTreeMap::new()),
            reload_lock: Mutex::new(()),
            workers: workers.to_vec(),
        });
        let config = proxy.snapshot.load().config.clone();
        let opened =
            proxy.open_listeners(config.listeners.iter().map(|l| (l.bind, l.name.clone())))?;
        let mut map = proxy.lock_listeners();
        for (addr, bound) in opened {
            tracing::info!(listener = %bound.name, addr = %bound.local, "listening");
            map.insert(addr, bound);
        }
        drop(map);
        tokio::spawn(sweep_idle(Arc::downgrade(&proxy)));
        Ok(proxy)
    }

    /// Applies a new config: opens new listeners, swaps the snapshot, closes removed listeners.
    /// On error nothing has changed and the old config keeps serving.
    pub fn reload(&self, config: Config) -> std::io::Result<ReloadReport> {
        let _serial = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Everything that can fail comes first, with no effect yet: certificates, then the snapshot.
        let prepared = self
            .certs
            .prepare(&site_certs(&config))
            .map_err(std::io::Error::other)?;
        let generation = self.generation.load(Relaxed) + 1;
        let snap = snapshot::compile(
            Arc::new(config),
            generation,
            &self.servers,
            &self.conns,
            self.workers.len(),
            &self.tls,
            &self.http01,
        )
        .map_err(std::io::Error::other)?;
        let config = snap.config.clone();
        let wanted: BTreeMap<SocketAddr, String> = config
            .listeners
            .iter()
            .map(|l| (l.bind, l.name.clone()))
            .collect();
        let existing: Vec<SocketAddr> = self.lock_listeners().keys().copied().collect();
        let to_open = wanted
            .iter()
            .filter(|(a, _)| !existing.contains(a))
            .map(|(a, n)| (*a, n.clone()));
        let opened = self.open_listeners(to_open)?;

        self.generation.store(generation, Relaxed);
        self.certs.commit(prepared);
        self.snapshot.store(Arc::new(snap));

        let mut report = ReloadReport {
            generation,
            ..Default::default()
        };
        let mut map = self.lock_listeners();
        for (addr, bound) in opened {
            tracing::info!(listener = %bound.name, addr = %bound.local, "listening");
            report.listeners_added.push(addr);
            map.insert(addr, bound);
        }
        let removed: Vec<SocketAddr> = map
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(bound) = map.remove(&addr) {
                tracing::info!(listener = %bound.name, addr = %bound.local, "listener closed");
                let _ = bound.stop.send(true);
                report.listeners_removed.push(addr);
            }
        }
        for (addr, name) in &wanted {
            if let Some(b) = map.get_mut(addr) {
                b.name.clone_from(name);
            }
        }
        Ok(report)
    }

    /// Stops accepting, lets open connections finish for up to `grace`, and reports what was cut.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let started = Instant::now();
        for (_, bound) in std::mem::take(&mut *self.lock_listeners()) {
            let _ = bound.stop.send(true);
        }
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, self.tracker.drained()).await;
        ShutdownReport {
            cut: self.tracker.count(),
            waited: started.elapsed(),
        }
    }

    /// Re-reads certificate files that changed (all of them with `force`); returns how many pairs were swapped.
    pub fn refresh_certificates(&self, force: bool) -> usize {
        self.certs.refresh(force)
    }

    /// Where the ACME manager publishes HTTP-01 answers.
    pub fn http01(&self) -> Arc<Http01Tokens> {
        self.http01.clone()
    }

    /// The certificate manager (status pages, ACME).
    pub fn certificates(&self) -> &CertManager {
        &self.certs
    }

    /// The current snapshot (for status pages and tests).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Open client connections and tunnels.
    pub fn open_connections(&self) -> usize {
        self.tracker.count()
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, Bound>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds all of `wanted` or none: sockets opened before a failing one are closed again.
    fn open_listeners(
        &self,
        wanted: impl Iterator<Item = (SocketAddr, String)>,
    ) -> std::io::Result<Vec<(SocketAddr, Bound)>> {
        let mut sockets = Vec::new();
        for (addr, name) in wanted {
            let std_listener = listener::bind(addr).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("listener {name:?}: cannot bind {addr}: {e}"),
                )
            })?;
            sockets.push((addr, name, std_listener));
        }
        let mut out = Vec::new();
        for (addr, name, std_listener) in sockets {
            let local = std_listener.local_addr()?;
            let (stop, stop_rx) = watch::channel(false);
            let ctx = Arc::new(ListenerContext {
                bind: addr,
                snapshot: self.snapshot.clone(),
                tracker: self.tracker.clone(),
                shutdown: self.shutdown.subscribe(),
            });
            // One accept loop per worker, all on the same socket (each worker's epoll gets the readiness;
            // whoever accepts first serves the connection).
            for worker in &self.workers {
                let socket = std_listener.try_clone()?;
                let (ctx, stop_rx) = (ctx.clone(), stop_rx.clone());
                worker.spawn(async move {
                    match tokio::net::TcpListener::from_std(socket) {
                        Ok(l) => listener::accept_loop(l, ctx, stop_rx).await,
                        Err(e) => tracing::error!(%local, error = %e, "cannot register listener with a worker"),
                    }
                });
            }
            out.push((addr, Bound { name, local, stop }));
        }
        Ok(out)
    }
}

/// Drops idle upstream connections past their pool's idle_timeout, every few seconds, until the proxy is gone.
async fn sweep_idle(proxy: std::sync::Weak<Proxy>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(proxy) = proxy.upgrade() else { return };
        let snap = proxy.snapshot.load();
        for pool in snap.pools.values() {
            for up in &pool.upstreams {
                up.conns.sweep(pool.idle_timeout);
            }
        }
    }
}

/// The certificate files each site names.
fn site_certs(config: &Config) -> Vec<SiteCert> {
    config
        .sites
        .iter()
        .filter_map(|site| {
            let Some(gatehouse_config::SiteTls::Files { cert, key }) = &site.tls else {
                return None; // ACME sites are served by the ACME manager
            };
            Some(SiteCert {
                hosts: site.hosts.iter().map(|h| h.as_config()).collect(),
                default: site.default,
                cert: cert.clone(),
                key: key.clone(),
            })
        })
        .collect()
}
