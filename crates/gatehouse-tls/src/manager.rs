//! Which site's certificate comes from which files, and keeping the store in step with those files.
//!
//! A config (re)load [`prepare`](CertManager::prepare)s every pair and [`commit`](CertManager::commit)s them
//! once the rest of the config compiled too. One bad pair never takes the other sites down: a site whose pair
//! does not load keeps the pair it had (same files), or is served without one (its handshakes fail); the
//! problem is reported for the operator, and `gatehouse check` calls it an error. Between reloads,
//! [`refresh`](CertManager::refresh) re-reads pairs whose files changed: a good pair is swapped in for the
//! next handshake; a bad one (half-written, mismatched) is logged and the old one keeps serving.

use crate::certificate::{load_pair, CertError, LoadedCert};
use crate::store::{CertMap, CertStore};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A site's certificate source: its host names and its PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCert {
    /// Exact names, and wildcards as `*.example.org`.
    pub hosts: Vec<String>,
    pub default: bool,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What the files looked like when last read: modification time and size of cert and key.
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

fn stamp(site: &SiteCert) -> Stamp {
    let c = std::fs::metadata(&site.cert).ok()?;
    let k = std::fs::metadata(&site.key).ok()?;
    Some((c.modified().ok()?, c.len(), k.modified().ok()?, k.len()))
}

#[derive(Debug, Clone)]
struct Entry {
    site: SiteCert,
    /// `None` while the files do not load (the site is served without a certificate of its own).
    loaded: Option<LoadedCert>,
    stamp: Stamp,
}

/// Loaded pairs for a config, not yet serving, and the pairs that did not load.
#[derive(Debug)]
pub struct Prepared {
    entries: Vec<Entry>,
    /// By index in the sites given to [`CertManager::prepare`].
    pub failed: Vec<(usize, CertError)>,
}

#[derive(Debug, Default)]
pub struct CertManager {
    store: Arc<CertStore>,
    entries: Mutex<Vec<Entry>>,
    /// Certificates obtained by ACME, by site id (its first host): hosts, default flag, certificate.
    managed: Mutex<Managed>,
}

impl CertManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn store(&self) -> Arc<CertStore> {
        self.store.clone()
    }

    /// Loads every site's pair. A pair that does not load is listed in [`Prepared::failed`]; its site keeps
    /// the pair it is serving now from the same files, if any.
    pub fn prepare(&self, sites: &[SiteCert]) -> Prepared {
        let mut out = Vec::with_capacity(sites.len());
        let mut failed = Vec::new();
        let current = self.lock();
        for (i, site) in sites.iter().enumerate() {
            let before = stamp(site);
            match load_pair(&site.cert, &site.key) {
                Ok(loaded) => out.push(Entry {
                    site: site.clone(),
                    loaded: Some(loaded),
                    stamp: before,
                }),
                Err(e) => {
                    let kept = current
                        .iter()
                        .find(|c| c.site.cert == site.cert && c.site.key == site.key);
                    // Kept (or none), and watched: a fixed file is picked up by the next refresh.
                    out.push(Entry {
                        site: site.clone(),
                        loaded: kept.and_then(|k| k.loaded.clone()),
                        stamp: before,
                    });
                    failed.push((i, e));
                }
            }
        }
        Prepared {
            entries: out,
            failed,
        }
    }

    /// Makes prepared pairs the ones served.
    pub fn commit(&self, prepared: Prepared) {
        let mut entries = self.lock();
        *entries = prepared.entries;
        self.store.replace(build_map(&entries, &self.managed()));
    }

    /// Serves an ACME-obtained certificate for a site from the next handshake on.
    pub fn install_managed(&self, id: &str, hosts: Vec<String>, default: bool, cert: LoadedCert) {
        let entries = self.lock();
        let mut managed = self.managed();
        managed.insert(id.to_string(), (hosts, default, cert));
        self.store.replace(build_map(&entries, &managed));
    }

    /// Stops serving ACME certificates of sites not in `keep` (sites removed by a reload).
    pub fn retain_managed(&self, keep: &[String]) {
        let entries = self.lock();
        let mut managed = self.managed();
        managed.retain(|id, _| keep.contains(id));
        self.store.replace(build_map(&entries, &managed));
    }

    fn managed(&self) -> std::sync::MutexGuard<'_, Managed> {
        self.managed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-reads pairs whose files changed (every pair with `force`). Returns how many were swapped in.
    pub fn refresh(&self, force: bool) -> usize {
        let mut entries = self.lock();
        let mut swapped = 0;
        for e in entries.iter_mut() {
            let now = stamp(&e.site);
            if !force && now == e.stamp {
                continue;
            }
            e.stamp = now;
            match load_pair(&e.site.cert, &e.site.key) {
                Ok(loaded) => {
                    tracing::info!(cert = %e.site.cert.display(), names = ?loaded.names, "certificate reloaded");
                    e.loaded = Some(loaded);
                    swapped += 1;
                }
                Err(err) => {
                    tracing::error!(error = %err, "certificate change rejected; the previous certificate keeps serving")
                }
            }
        }
        if swapped > 0 {
            self.store.replace(build_map(&entries, &self.managed()));
        }
        swapped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Certificates obtained by ACME: site id → (hosts, default flag, certificate).
type Managed = std::collections::BTreeMap<String, (Vec<String>, bool, LoadedCert)>;

fn build_map(entries: &[Entry], managed: &Managed) -> CertMap {
    let mut map = CertMap::default();
    let files = entries
        .iter()
        .filter_map(|e| Some((&e.site.hosts, e.site.default, e.loaded.as_ref()?)));
    let acme = managed
        .values()
        .map(|(hosts, default, cert)| (hosts, *default, cert));
    for (hosts, default, cert) in files.chain(acme) {
        for host in hosts {
            let host = host.to_ascii_lowercase();
            match host.strip_prefix('*') {
                Some(suffix) => map.wildcard.insert(suffix.to_string(), cert.key.clone()),
                None => map.exact.insert(host, cert.key.clone()),
            };
        }
        if default {
            map.default = Some(cert.key.clone());
        }
        if map.first.is_none() {
            map.first = Some(cert.key.clone());
        }
    }
    map
}
