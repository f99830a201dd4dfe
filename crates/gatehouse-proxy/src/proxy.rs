//! The running proxy: listeners, the current snapshot, and the state that outlives snapshots.
//!
//! A config is applied in two steps. [`prepare`](crate::prepare()) does everything that can fail and may
//! block (certificates, CA files, DNS, compiling the snapshot) and changes nothing; [`Proxy::apply`] then binds
//! the new listeners (a failed bind changes nothing), swaps the snapshot with one `ArcSwap::store`, and stops
//! the listeners that are gone. Requests already running keep the snapshot they loaded.

use crate::conn::Tracker;
pub use crate::listener::set::ListenerStatus;
use crate::listener::set::{Bound, Diff, Kind, ListenerSet, Wanted};
use crate::listener::{self, Limit, ListenerContext, ListenerSettings};
use crate::prepare::{prepare, Prepared};
use crate::signal::Trigger;
use crate::snapshot::{Observer, Registries, Snapshot};
use arc_swap::ArcSwap;
use gatehouse_config::{Config, ConfigError};
use gatehouse_metrics::Metrics;
use gatehouse_tls::{CertManager, Http01Tokens};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    registries: Registries,
    tracker: Arc<Tracker>,
    shutdown: Trigger,
    generation: AtomicU64,
    listeners: Mutex<ListenerSet>,
    /// Serializes applies (a SIGHUP and a file event may race).
    apply_lock: Mutex<()>,
    /// The worker runtimes that run accept loops and connections.
    workers: Vec<tokio::runtime::Handle>,
    /// Each worker's connection limit, shared by its accept loops (`max_connections_per_worker`).
    worker_limits: Vec<Arc<Limit>>,
    started: Instant,
    /// The active health checks that run, for the current snapshot's pools.
    probers: crate::health::Probers,
    /// How the last reload attempt went (for the status page).
    last_reload: Mutex<Option<LastReload>>,
}

/// The last reload attempt: applied, or rejected with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReload {
    pub ok: bool,
    pub at: std::time::SystemTime,
    pub error: Option<String>,
}

/// Why a config could not be applied; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A problem with the config's contents, with file:line.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// A listener could not be bound (or the runtime refused it).
    #[error("{0}")]
    Listen(#[from] std::io::Error),
}

/// What an applied config changed.
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
    /// Prepares `config`, binds every listener and starts serving on `workers` (see [`crate::Workers`]);
    /// `observer` is told about every request's end. Call inside a tokio runtime (the control runtime).
    pub fn start(
        config: Config,
        workers: &[tokio::runtime::Handle],
        observer: Arc<dyn Observer>,
    ) -> Result<Arc<Proxy>, ApplyError> {
        Self::start_with_metrics(config, workers, observer, Arc::new(Metrics::new()))
    }

    /// [`Proxy::start`], counting into `metrics` (which the admin listener serves).
    pub fn start_with_metrics(
        config: Config,
        workers: &[tokio::runtime::Handle],
        observer: Arc<dyn Observer>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Proxy>, ApplyError> {
        if workers.is_empty() {
            return Err(std::io::Error::other("no worker runtime").into());
        }
        let registries = Registries::with_metrics(workers.len(), observer, metrics)
            .map_err(std::io::Error::other)?;
        let per_worker = match config.server.max_connections_per_worker {
            0 => listener::default_worker_limit(workers.len()),
            n => n,
        };
        tracing::debug!(per_worker, "connections per worker at most");
        registries
            .dns
            .set_servers(config.server.dns_servers.clone());
        let prepared = prepare(config, &registries)?;
        if let Some(w) = prepared.warnings_text() {
            tracing::error!(
                "serving without these certificates (other sites are not affected):\n{w}"
            );
        }
        let (shutdown, _) = Trigger::new();
        let Prepared {
            snapshot, certs, ..
        } = prepared;
        registries
            .certs
            .store()
            .set_strict(snapshot.config.server.strict_sni);
        registries.certs.commit(certs);
        let proxy = Arc::new(Proxy {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            registries,
            tracker: Arc::new(Tracker::default()),
            shutdown,
            generation: AtomicU64::new(1),
            listeners: Mutex::new(ListenerSet::default()),
            apply_lock: Mutex::new(()),
            workers: workers.to_vec(),
            worker_limits: workers
                .iter()
                .map(|_| Arc::new(Limit::new("max_connections_per_worker", per_worker)))
                .collect(),
            started: Instant::now(),
            probers: crate::health::Probers::default(),
            last_reload: Mutex::new(None),
        });
        proxy.probers.reconcile(&proxy.snapshot.load());
        let wanted = Wanted::all(&proxy.snapshot.load().config);
        let opened = proxy.open_listeners(&wanted)?;
        let mut set = proxy.lock_listeners();
        for bound in opened {
            tracing::info!(listener = %bound.wanted.name, addr = %bound.local, "listening");
            set.insert(bound);
        }
        drop(set);
        tokio::spawn(sweep_idle(Arc::downgrade(&proxy)));
        tokio::spawn(refresh_dns(Arc::downgrade(&proxy)));
        Ok(proxy)
    }

    /// Everything a reload does before binding a socket (may block: run it off the workers). Changes nothing.
    pub fn prepare(&self, config: Config) -> Result<Prepared, ConfigError> {
        prepare(config, &self.registries)
    }

    /// Binds new listeners, swaps the snapshot, stops removed listeners. On error nothing has changed.
    pub fn apply(&self, prepared: Prepared) -> std::io::Result<ReloadReport> {
        let _serial = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = prepared.warnings_text() {
            tracing::error!("these sites keep their last good certificate (or serve none):\n{w}");
        }
        let Prepared {
            snapshot, certs, ..
        } = prepared;
        let wanted = Wanted::all(&snapshot.config);
        let Diff {
            open,
            close,
            updated,
            respawn,
        } = self.lock_listeners().diff(&wanted);
        let opened = self.open_listeners(&open)?;
        // Listeners that serve something else now: new accept loops on the same socket, started before the
        // swap; the old ones stop after it (each connection is served as the kind its loop had).
        let mut respawned = Vec::new();
        for w in &respawn {
            let (sockets, limit) = self
                .lock_listeners()
                .loops_of(w.bind)
                .ok_or_else(|| std::io::Error::other(format!("listener {:?} is gone", w.name)))?;
            respawned.push((w, self.spawn_loops(w, &sockets, limit)?));
        }

        let generation = self.generation.load(Relaxed) + 1;
        self.generation.store(generation, Relaxed);
        self.registries
            .certs
            .store()
            .set_strict(snapshot.config.server.strict_sni);
        self.registries.certs.commit(certs);
        self.snapshot.store(Arc::new(snapshot));
        self.probers.reconcile(&self.snapshot.load());

        let mut report = ReloadReport {
            generation,
            ..Default::default()
        };
        let mut set = self.lock_listeners();
        for bound in opened {
            tracing::info!(listener = %bound.wanted.name, addr = %bound.local, "listening");
            report.listeners_added.push(bound.wanted.bind);
            set.insert(bound);
        }
        for bind in close {
            if let Some(b) = set.close(bind) {
                tracing::info!(listener = %b.wanted.name, addr = %b.local, "listener closed");
                report.listeners_removed.push(bind);
            }
        }
        for w in &updated {
            set.update(w);
        }
        for (w, stop) in respawned {
            tracing::info!(listener = %w.name, addr = %w.bind, kind = ?w.kind, "listener settings changed: new connections get them");
            set.replace_loops(w, stop);
        }
        Ok(report)
    }

    /// Prepares and applies `config` (for callers that may block, such as tests).
    pub fn reload(&self, config: Config) -> Result<ReloadReport, ApplyError> {
        let prepared = self.prepare(config)?;
        Ok(self.apply(prepared)?)
    }

    /// Stops accepting, lets open connections finish for up to `grace`, and reports what was cut.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let started = Instant::now();
        self.lock_listeners().close_all();
        self.probers.stop();
        self.shutdown.fire();
        let _ = tokio::time::timeout(grace, self.tracker.drained()).await;
        ShutdownReport {
            cut: self.tracker.count(),
            waited: started.elapsed(),
        }
    }

    /// Re-reads certificate files that changed (all of them with `force`); returns how many pairs were swapped.
    pub fn refresh_certificates(&self, force: bool) -> usize {
        self.registries.certs.refresh(force)
    }

    /// Where the ACME manager publishes HTTP-01 answers.
    pub fn http01(&self) -> Arc<Http01Tokens> {
        self.registries.http01.clone()
    }

    /// The certificate manager (status pages, ACME).
    pub fn certificates(&self) -> &CertManager {
        &self.registries.certs
    }

    /// The current snapshot (for status pages and tests).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Open client connections (an upgraded connection counts until its tunnel closes).
    pub fn open_connections(&self) -> usize {
        self.tracker.count()
    }

    /// The process-wide metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.registries.metrics
    }

    /// When the proxy started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Records a reload attempt's result (for the status page and the reload metrics).
    pub fn note_reload(&self, result: Result<(), String>) {
        let at = std::time::SystemTime::now();
        let unix = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.registries.metrics.reload(result.is_ok(), unix);
        *self.last_reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastReload {
            ok: result.is_ok(),
            at,
            error: result.err(),
        });
    }

    pub fn last_reload(&self) -> Option<LastReload> {
        self.last_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The open listeners with their connection counts.
    pub fn listeners(&self) -> Vec<ListenerStatus> {
        self.lock_listeners().status()
    }

    /// Compiles the running config again and swaps it in (a weight set on the admin API is compiled into
    /// its pool's balancer). May block: run it off the workers.
    pub fn rebuild(&self) -> Result<ReloadReport, ApplyError> {
        let config = (*self.snapshot().config).clone();
        self.reload(config)
    }

    /// The addresses the listeners are bound to, by configured bind address (which may say port 0).
    pub fn local_addrs(&self) -> std::collections::BTreeMap<SocketAddr, SocketAddr> {
        self.lock_listeners().local_addrs()
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, ListenerSet> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds all of `wanted` or none (sockets opened before a failing one are closed again), then starts their
    /// accept loops.
    fn open_listeners(&self, wanted: &[Wanted]) -> std::io::Result<Vec<Bound>> {
        let mut sockets = Vec::new();
        for w in wanted {
            let bound = listener::bind(w.bind, self.workers.len()).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("listener {:?}: cannot bind {}: {e}", w.name, w.bind),
                )
            })?;
            sockets.push((w, bound));
        }
        let mut out = Vec::new();
        for (w, sockets) in sockets {
            let local = sockets
                .first()
                .ok_or_else(|| std::io::Error::other("a listener with no socket"))?
                .local_addr()?;
            let limit = Arc::new(
                Limit::new("max_connections", w.max_connections).with_per_ip(w.max_conns_per_ip),
            );
            let stop = self.spawn_loops(w, &sockets, limit.clone())?;
            out.push(Bound {
                wanted: w.clone(),
                local,
                sockets,
                stop,
                limit,
            });
        }
        Ok(out)
    }

    /// Starts one accept loop per worker, each on its own socket of `sockets` (or all on the one), serving
    /// what `w` says; the sender stops them.
    fn spawn_loops(
        &self,
        w: &Wanted,
        sockets: &listener::Sockets,
        limit: Arc<Limit>,
    ) -> std::io::Result<Trigger> {
        let (stop, stop_rx) = Trigger::new();
        let tls = match w.kind {
            Kind::Http | Kind::Stream => None,
            Kind::Tls(gatehouse_config::TlsVersion::Tls12) => {
                Some(self.registries.tls.tls12.clone())
            }
            Kind::Tls(gatehouse_config::TlsVersion::Tls13) => {
                Some(self.registries.tls.tls13.clone())
            }
        };
        let ctx = Arc::new(ListenerContext {
            settings: ListenerSettings {
                name: w.name.as_str().into(),
                tls,
                proxy_protocol: w.proxy_protocol,
                stream: w.kind == Kind::Stream,
                bind: w.bind,
            },
            snapshot: self.snapshot.clone(),
            tracker: self.tracker.clone(),
            shutdown: self.shutdown.signal(),
            limit,
        });
        // One accept loop per worker, on the worker's own socket: the kernel chose its connections.
        for (i, (worker, limit)) in self.workers.iter().zip(&self.worker_limits).enumerate() {
            let socket = sockets
                .get(i)
                .or(sockets.first())
                .ok_or_else(|| std::io::Error::other("a listener with no socket"))?
                .try_clone()?;
            let (ctx, stop_rx, limit) = (ctx.clone(), stop_rx.clone(), limit.clone());
            worker.spawn(async move {
                listener::accept_loop(mio::net::TcpListener::from_std(socket), ctx, limit, stop_rx)
                    .await;
            });
        }
        Ok(stop)
    }
}

/// Drops idle upstream connections past their pool's idle_timeout, every few seconds, until the proxy is gone.
/// Every second: idle upstream connections age out, and HTTP/1.1 ones idle for a second park.
async fn sweep_idle(proxy: std::sync::Weak<Proxy>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(proxy) = proxy.upgrade() else { return };
        let snap = proxy.snapshot.load();
        for pool in &snap.pools {
            for up in &pool.upstreams {
                up.conns.sweep(pool.idle_timeout, pool.max_idle);
            }
        }
    }
}

/// Looks up servers written as names again when their answers expire (the record's TTL, bounded by the pool's
/// `resolve_interval`, at least a second), and rebuilds the running config when an answer changed: new
/// addresses join their pool, vanished ones leave it (their requests in flight finish). A failed look-up keeps
/// the last good answer and is logged once until it works again.
async fn refresh_dns(proxy: std::sync::Weak<Proxy>) {
    use std::collections::{HashMap, HashSet};
    let resolver = match proxy.upgrade().map(|p| p.registries.dns.resolver()) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            tracing::error!(error = %e, "servers written as names will not be looked up again");
            return;
        }
        None => return,
    };
    let mut due: HashMap<(String, u16), Instant> = HashMap::new();
    let mut failing: HashSet<(String, u16)> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(proxy) = proxy.upgrade() else { return };
        let config = proxy.snapshot().config.clone();
        let mut changed = false;
        let mut names = HashSet::new();
        for pool in config.pools.values() {
            for s in pool.servers.iter().filter(|s| s.literal().is_none()) {
                let key = (s.host.to_ascii_lowercase(), s.port);
                names.insert(key.clone());
                let now = Instant::now();
                if due.get(&key).is_some_and(|t| *t > now) {
                    continue;
                }
                match crate::upstream::dns::lookup(&resolver, &s.host, s.port).await {
                    Ok(answer) => {
                        let ttl = answer.valid_until.saturating_duration_since(Instant::now());
                        due.insert(
                            key.clone(),
                            now + ttl.clamp(Duration::from_secs(1), pool.resolve_interval),
                        );
                        if failing.remove(&key) {
                            tracing::info!(server = %s, "DNS look-up works again");
                        }
                        if proxy
                            .registries
                            .dns
                            .update(&s.host, s.port, answer.addrs.clone())
                        {
                            tracing::info!(server = %s, addresses = ?answer.addrs, "server's addresses changed");
                            changed = true;
                        }
                    }
                    Err(e) => {
                        due.insert(key.clone(), now + pool.resolve_interval);
                        if failing.insert(key) {
                            tracing::warn!(server = %s, error = %e, "DNS look-up failed; its last good addresses stay in service");
                        }
                    }
                }
            }
        }
        due.retain(|k, _| names.contains(k));
        if changed {
            let p = proxy.clone();
            match tokio::task::spawn_blocking(move || p.rebuild()).await {
                Ok(Ok(r)) => tracing::info!(
                    generation = r.generation,
                    "config rebuilt with the new addresses"
                ),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot rebuild with the new addresses; the running config keeps serving")
                }
                Err(e) => tracing::error!(error = %e, "rebuild failed"),
            }
        }
    }
}
