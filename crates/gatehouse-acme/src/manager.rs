//! The ACME loop: keep every `tls = "acme"` site's certificate present and fresh.
//!
//! For each site, in turn:
//! 1. A valid stored certificate that is not due is served as is (a restart orders nothing).
//! 2. Otherwise take the site's lock in [`Storage`] (waiting while another node holds it), and look in storage
//!    again: the other node may just have stored a fresh certificate.
//! 3. Order ([`crate::order`]): publish the answer to the preferred challenge, tell the CA, wait for
//!    validation; if that challenge fails and the other is possible, order again with it.
//! 4. Serve the certificate from the next handshake, store key and chain as one record, release the lock.
//!
//! A failure never removes a serving certificate; it is logged with what the CA said and retried after an
//! exponential backoff (capped at a day), or after the time a rate-limit answer names.
//!
//! An issued certificate is served from memory even when storing it fails (a full disk, a store that is
//! down): the manager holds every certificate it serves, looks there before storage, and tries the store
//! again on each pass. A store failure never orders the name again (CA rate limits allow 5 duplicates a
//! week).

use crate::account::{self, Directory};
use crate::challenge::{Answers, ChallengeKind};
use crate::error::AcmeError;
use crate::keys;
use crate::order::{self, OrderSpec};
use crate::schedule::{backoff, due_at, is_due, RenewBefore};
use crate::storage::{LockToken, Storage, StoreEvent, StoreHealth};
use gatehouse_tls::{CertStore, Http01Tokens, LoadedCert};
use instant_acme::Account;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The ACME directory URL.
    pub directory: String,
    pub email: Option<String>,
    /// PEM file to trust for the ACME server's own HTTPS (a private CA, Pebble).
    pub ca_root: Option<PathBuf>,
    pub challenge: ChallengeKind,
    pub renew_before: RenewBefore,
    /// How often certificates are looked at (with ±10% jitter).
    pub check_interval: Duration,
    /// First wait after a failure; doubles per failure up to `retry_cap`.
    pub retry_initial: Duration,
    pub retry_cap: Duration,
    /// Which challenges this configuration can answer: HTTP-01 needs a plain listener, TLS-ALPN-01 a TLS one.
    pub http01_possible: bool,
    pub tls_alpn01_possible: bool,
    /// An order's lock lease; renewed every third of it while the order runs.
    pub lock_ttl: Duration,
}

/// A site that wants an ACME certificate: one certificate for all its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSite {
    /// Storage and lock name: the first host.
    pub id: String,
    pub names: Vec<String>,
    pub default: bool,
    /// Its place in the config (see `gatehouse_tls::SiteCert::order`).
    pub order: usize,
}

/// Puts a certificate into service.
pub type Install = Arc<dyn Fn(&AcmeSite, LoadedCert) + Send + Sync>;

pub struct AcmeManager {
    config: AcmeConfig,
    storage: Arc<dyn Storage>,
    answers: Answers,
    install: Install,
    /// What is being served, by site id, and the record still to be stored when storing it failed.
    held: std::sync::Mutex<HashMap<String, Held>>,
    stats: Arc<AcmeStats>,
}

/// What the manager has done, for status pages and metrics.
#[derive(Debug, Default)]
pub struct AcmeStats {
    /// Orders placed with the CA.
    pub orders: std::sync::atomic::AtomicU64,
    /// Orders (or stored-certificate checks) that failed.
    pub failures: std::sync::atomic::AtomicU64,
    /// By site id: "valid", "ordering", or "failed: <why>".
    states: std::sync::Mutex<HashMap<String, String>>,
    /// The storage's health (reachable, last sync, lock holders).
    pub store: std::sync::OnceLock<Arc<StoreHealth>>,
}

impl AcmeStats {
    fn set(&self, site: &str, state: String) {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(site.to_string(), state);
    }

    /// Each ACME site's state, by site id (its first host).
    pub fn states(&self) -> HashMap<String, String> {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Debug, Clone)]
struct Held {
    cert: LoadedCert,
    /// The bundle that could not be stored yet.
    unsaved: Option<Vec<u8>>,
}

impl std::fmt::Debug for AcmeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeManager")
            .field("config", &self.config)
            .finish()
    }
}

/// How long to wait for another node's order before trying again later.
const LOCK_WAIT: Duration = Duration::from_secs(180);

/// How waiting for a site's lock ended.
enum Wait {
    Locked(LockToken),
    /// Another node stored a fresh certificate meanwhile: no order needed.
    Stored(LoadedCert),
}

#[derive(Debug, Default)]
struct SiteState {
    next: Option<Instant>,
    failures: u32,
}

impl AcmeManager {
    pub fn new(
        config: AcmeConfig,
        storage: Arc<dyn Storage>,
        tls: Arc<CertStore>,
        http01: Arc<Http01Tokens>,
        install: Install,
    ) -> Arc<Self> {
        // Any node can answer an HTTP-01 token another node published. The data path bounds the look-up in
        // time, so a slow store delays only that one validation request.
        let s = storage.clone();
        http01.set_fallback(Arc::new(move |token: String| {
            let s = s.clone();
            Box::pin(async move {
                s.load(&keys::http01(&token))
                    .await
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
        }));
        let stats: Arc<AcmeStats> = Arc::default();
        let _ = stats.store.set(storage.health());
        Arc::new(AcmeManager {
            config,
            answers: Answers {
                storage: storage.clone(),
                tls,
                http01,
            },
            storage,
            install,
            held: std::sync::Mutex::new(HashMap::new()),
            stats,
        })
    }

    /// Orders, failures and each site's state.
    pub fn stats(&self) -> Arc<AcmeStats> {
        self.stats.clone()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves stored certificates now, without contacting the CA (startup). Returns how many were loaded.
    pub async fn load_stored(&self, sites: &[AcmeSite]) -> usize {
        let mut n = 0;
        for site in sites {
            if let Ok(Some(cert)) = self.stored(site).await {
                (self.install)(site, cert);
                n += 1;
            }
        }
        n
    }

    /// Runs until `sites` is closed; a reload sends the new list of ACME sites.
    pub async fn run(self: Arc<Self>, mut sites: watch::Receiver<Vec<AcmeSite>>) {
        if let Some(events) = self.storage.watch() {
            tokio::spawn(self.clone().follow(events, sites.clone()));
        }
        let mut state: HashMap<String, SiteState> = HashMap::new();
        let mut account: Option<Account> = None;
        loop {
            let current = sites.borrow_and_update().clone();
            state.retain(|id, _| current.iter().any(|s| &s.id == id));
            self.stats
                .states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|id, _| current.iter().any(|s| &s.id == id));
            for site in &current {
                let st = state.entry(site.id.clone()).or_default();
                if st.next.is_some_and(|t| t > Instant::now()) {
                    continue;
                }
                match self.ensure(site, &mut account).await {
                    Ok(due) => {
                        st.failures = 0;
                        self.stats.set(&site.id, "valid".into());
                        let until_due = due
                            .duration_since(SystemTime::now())
                            .unwrap_or(Duration::ZERO);
                        let wait = if until_due.is_zero() {
                            // Due as soon as obtained: renew_before is as long as the lifetime. Do not order in
                            // a loop; look again at the normal pace.
                            tracing::warn!(site = %site.id, "the certificate is due as soon as issued: renew_before is longer than its lifetime");
                            jitter(self.config.check_interval)
                        } else {
                            jitter(self.config.check_interval).min(until_due)
                        };
                        st.next = Some(Instant::now() + wait);
                    }
                    Err(e) => {
                        st.failures += 1;
                        self.stats
                            .failures
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.stats.set(&site.id, format!("failed: {e}"));
                        // The CA's own "retry after" is believed, up to the usual cap (a date far ahead must not
                        // park a site for good).
                        let wait = e
                            .retry_after()
                            .map(|d| d.min(self.config.retry_cap))
                            .unwrap_or_else(|| {
                                backoff(
                                    st.failures,
                                    self.config.retry_initial,
                                    self.config.retry_cap,
                                )
                            });
                        tracing::error!(site = %site.id, names = ?site.names, failures = st.failures, retry_in = ?wait, error = %e, "certificate not obtained; the current certificate (if any) keeps serving");
                        st.next = Some(Instant::now() + wait);
                    }
                }
            }
            let next = state
                .values()
                .filter_map(|s| s.next)
                .min()
                .unwrap_or_else(|| Instant::now() + self.config.check_interval);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                changed = sites.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Follows what other nodes change in a shared store: a certificate one of them obtained or renewed is
    /// served here from the next handshake; a TLS-ALPN-01 answer one of them published is answered here too
    /// (the CA may reach any node).
    async fn follow(
        self: Arc<Self>,
        mut events: tokio::sync::mpsc::Receiver<StoreEvent>,
        sites: watch::Receiver<Vec<AcmeSite>>,
    ) {
        while let Some(event) = events.recv().await {
            let current = sites.borrow().clone();
            match &event {
                StoreEvent::Resync => {
                    for site in &current {
                        self.adopt(site).await;
                    }
                }
                StoreEvent::Stored(key) | StoreEvent::Deleted(key) => {
                    if let Some(name) = key.strip_prefix(keys::TLS_ALPN01_PREFIX) {
                        let digest = match &event {
                            StoreEvent::Stored(_) => self.storage.load(key).await.ok().flatten(),
                            _ => None,
                        };
                        self.answers.follow_tls_alpn01(name, digest.as_deref());
                    } else if let Some(site) = current.iter().find(|s| keys::bundle(&s.id) == *key)
                    {
                        if matches!(event, StoreEvent::Stored(_)) {
                            self.adopt(site).await;
                        }
                    }
                }
            }
            if let Some(h) = self.stats.store.get() {
                h.synced();
            }
        }
    }

    /// Serves the stored certificate of `site` if it is newer than the one this node holds.
    async fn adopt(&self, site: &AcmeSite) {
        let Ok(Some(stored)) = self.stored(site).await else {
            return;
        };
        let held = self.held().get(&site.id).map(|h| h.cert.not_after);
        if held.is_none_or(|n| stored.not_after > n) {
            tracing::info!(site = %site.id, not_after = ?stored.not_after, "serving the certificate another node stored");
            self.serve(site, stored);
            self.stats.set(&site.id, "valid".into());
        }
    }

    /// Makes sure `site` has a valid certificate that is not due; returns when it will be due.
    async fn ensure(
        &self,
        site: &AcmeSite,
        account: &mut Option<Account>,
    ) -> Result<SystemTime, AcmeError> {
        // What this node serves comes first: a certificate issued while the store was failing is still good.
        let held = self.held().get(&site.id).cloned();
        if let Some(held) = held {
            if let Some(bundle) = &held.unsaved {
                self.save(site, bundle).await;
            }
            if !self.is_due(&held.cert) && held.cert.names_cover(&site.names) {
                return Ok(due_at(
                    held.cert.not_before,
                    held.cert.not_after,
                    self.config.renew_before,
                ));
            }
        }
        if let Some(cert) = self.stored(site).await? {
            let fresh = !self.is_due(&cert);
            let due = self.serve(site, cert);
            if fresh {
                return Ok(due);
            }
            tracing::info!(site = %site.id, "certificate due for renewal");
        }
        let token = match self.wait_for_lock(site).await? {
            Wait::Locked(token) => token,
            // Another node stored a fresh certificate while we waited.
            Wait::Stored(cert) => return Ok(self.serve(site, cert)),
        };
        self.stats.set(&site.id, "ordering".into());
        self.stats
            .orders
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.order_locked(site, account, &token).await;
        if let Err(e) = self.storage.unlock(&token).await {
            tracing::warn!(site = %site.id, error = %e, "cannot release the lock; it expires by itself");
        }
        result
    }

    fn is_due(&self, cert: &LoadedCert) -> bool {
        is_due(
            cert.not_before,
            cert.not_after,
            SystemTime::now(),
            self.config.renew_before,
        )
    }

    /// Serves `cert` for `site` from the next handshake on; returns when it will be due.
    fn serve(&self, site: &AcmeSite, cert: LoadedCert) -> SystemTime {
        let due = due_at(cert.not_before, cert.not_after, self.config.renew_before);
        self.held().insert(
            site.id.clone(),
            Held {
                cert: cert.clone(),
                unsaved: None,
            },
        );
        (self.install)(site, cert);
        due
    }

    /// Stores a site's bundle; on failure keeps it to try again on the next pass (it is served meanwhile).
    async fn save(&self, site: &AcmeSite, bundle: &[u8]) {
        let stored = self.storage.store(&keys::bundle(&site.id), bundle).await;
        let mut held = self.held();
        let Some(h) = held.get_mut(&site.id) else {
            return;
        };
        match stored {
            Ok(()) => {
                if h.unsaved.take().is_some() {
                    tracing::info!(site = %site.id, "certificate stored");
                }
            }
            Err(e) => {
                if h.unsaved.is_none() {
                    tracing::error!(site = %site.id, error = %e, "certificate obtained and serving, but it cannot be stored; trying again on each pass, no new order");
                } else {
                    tracing::debug!(site = %site.id, error = %e, "certificate still cannot be stored");
                }
                h.unsaved = Some(bundle.to_vec());
            }
        }
    }

    /// Takes the site's lock, unless another node stores a fresh certificate while we wait.
    async fn wait_for_lock(&self, site: &AcmeSite) -> Result<Wait, AcmeError> {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut logged = false;
        loop {
            if let Some(t) = self.storage.lock(&site.id, self.config.lock_ttl).await? {
                return Ok(Wait::Locked(t));
            }
            if !logged {
                tracing::info!(site = %site.id, "another node is ordering this certificate; waiting for it");
                logged = true;
            }
            if let Some(cert) = self.fresh_stored(site).await? {
                return Ok(Wait::Stored(cert));
            }
            if Instant::now() > deadline {
                return Err(AcmeError::Locked(site.id.clone()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn order_locked(
        &self,
        site: &AcmeSite,
        account: &mut Option<Account>,
        token: &LockToken,
    ) -> Result<SystemTime, AcmeError> {
        // Look again under the lock: another node may have finished just before we took it.
        if let Some(cert) = self.fresh_stored(site).await? {
            return Ok(self.serve(site, cert));
        }
        let lease = async {
            loop {
                tokio::time::sleep(self.config.lock_ttl / 3).await;
                match self.storage.renew(token, self.config.lock_ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(site = %site.id, "lost the lock lease while ordering")
                    }
                    Err(e) => {
                        tracing::warn!(site = %site.id, error = %e, "cannot renew the lock lease")
                    }
                }
            }
        };
        let work = async {
            if account.is_none() {
                let dir = Directory {
                    url: &self.config.directory,
                    email: self.config.email.as_deref(),
                    ca_root: self.config.ca_root.as_deref(),
                };
                *account =
                    Some(account::load_or_create(&*self.storage, dir, self.config.lock_ttl).await?);
            }
            let Some(acct) = account.as_ref() else {
                return Err(AcmeError::Other("no ACME account".into()));
            };
            let spec = OrderSpec {
                names: &site.names,
                preferred: self.config.challenge,
                http01_possible: self.config.http01_possible,
                tls_alpn01_possible: self.config.tls_alpn01_possible,
            };
            let issued = order::order(acct, &self.answers, spec).await?;
            let cert = gatehouse_tls::certificate::from_pem(
                issued.chain.as_bytes(),
                issued.key.as_bytes(),
                "acme chain".as_ref(),
                "acme key".as_ref(),
            )
            .map_err(|e| AcmeError::Other(format!("the CA's certificate does not load: {e}")))?;
            // Serve first (from memory), then store key and chain as one record: a store that fails cannot
            // take the new certificate out of service, nor cause another order.
            tracing::info!(site = %site.id, names = ?site.names, not_after = ?cert.not_after, "certificate obtained and serving");
            let due = self.serve(site, cert);
            let bundle = format!("{}{}", issued.key, issued.chain);
            self.save(site, bundle.as_bytes()).await;
            Ok(due)
        };
        tokio::select! {
            r = work => r,
            () = lease => Err(AcmeError::Other("lease task ended".into())),
        }
    }

    /// The stored certificate for `site` if it loads and covers its names: the bundle, or (stored by an
    /// earlier version) the separate chain and key.
    async fn stored(&self, site: &AcmeSite) -> Result<Option<LoadedCert>, AcmeError> {
        let (cert, key) = match self.storage.load(&keys::bundle(&site.id)).await? {
            Some(bundle) => (bundle.clone(), bundle),
            None => {
                let cert = self
                    .storage
                    .load(&keys::legacy_certificate(&site.id))
                    .await?;
                let key = self.storage.load(&keys::legacy_key(&site.id)).await?;
                let (Some(cert), Some(key)) = (cert, key) else {
                    return Ok(None);
                };
                (cert, key)
            }
        };
        match gatehouse_tls::certificate::from_pem(
            &cert,
            &key,
            "stored cert".as_ref(),
            "stored key".as_ref(),
        ) {
            Ok(c) if c.names_cover(&site.names) => Ok(Some(c)),
            Ok(_) => {
                tracing::info!(site = %site.id, "stored certificate does not cover the site's names; ordering a new one");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(site = %site.id, error = %e, "stored certificate unusable; ordering a new one");
                Ok(None)
            }
        }
    }

    async fn fresh_stored(&self, site: &AcmeSite) -> Result<Option<LoadedCert>, AcmeError> {
        Ok(self.stored(site).await?.filter(|c| !self.is_due(c)))
    }
}

/// ±10%, so that many sites (or nodes) do not all look at the same instant.
fn jitter(d: Duration) -> Duration {
    let f = 0.9 + rand::random::<f64>() * 0.2;
    d.mul_f64(f)
}
