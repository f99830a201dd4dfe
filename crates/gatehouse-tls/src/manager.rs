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
    /// The site's place in the config: with no default site, the first one that has a certificate is
    /// served to handshakes that name no known site.
    pub order: usize,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An ACME site's certificate as served: its names, default flag and place in the config.
#[derive(Debug, Clone)]
pub struct ManagedSite {
    pub hosts: Vec<String>,
    pub default: bool,
    pub order: usize,
}

/// A certificate being served.
#[derive(Debug, Clone)]
pub struct CertInfo {
    /// The site's first host (for ACME sites, its id).
    pub site: String,
    pub source: CertSource,
    pub names: Vec<String>,
    pub not_after: SystemTime,
    pub issuer: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertSource {
    File,
    Acme,
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
    /// Certificates obtained by ACME, by site id (its first host).
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
    pub fn install_managed(&self, id: &str, site: ManagedSite, cert: LoadedCert) {
        let entries = self.lock();
        let mut managed = self.managed();
        managed.insert(id.to_string(), (site, cert));
        self.store.replace(build_map(&entries, &managed));
    }

    /// Stops serving ACME certificates of sites not in `keep` (sites removed by a reload); the others take
    /// their new place in the config.
    pub fn retain_managed(&self, keep: &[(String, usize)]) {
        let entries = self.lock();
        let mut managed = self.managed();
        managed.retain(|id, (site, _)| match keep.iter().find(|(k, _)| k == id) {
            Some((_, order)) => {
                site.order = *order;
                true
            }
            None => false,
        });
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

    /// Every certificate being served: from files, then from ACME (for status pages and metrics).
    pub fn list(&self) -> Vec<CertInfo> {
        let info = |site: String, source: CertSource, c: &LoadedCert| CertInfo {
            site,
            source,
            names: c.names.clone(),
            not_after: c.not_after,
            issuer: c
                .key
                .cert
                .first()
                .map(crate::certificate::issuer)
                .unwrap_or_default(),
        };
        let mut out: Vec<CertInfo> = self
            .lock()
            .iter()
            .filter_map(|e| {
                let site = e.site.hosts.first().cloned().unwrap_or_default();
                e.loaded.as_ref().map(|c| info(site, CertSource::File, c))
            })
            .collect();
        out.extend(
            self.managed()
                .iter()
                .map(|(id, (_, c))| info(id.clone(), CertSource::Acme, c)),
        );
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Certificates obtained by ACME: site id → (site, certificate).
type Managed = std::collections::BTreeMap<String, (ManagedSite, LoadedCert)>;

fn build_map(entries: &[Entry], managed: &Managed) -> CertMap {
    let mut map = CertMap::default();
    let files = entries.iter().filter_map(|e| {
        Some((
            &e.site.hosts,
            e.site.default,
            e.site.order,
            e.loaded.as_ref()?,
        ))
    });
    let acme = managed
        .values()
        .map(|(site, cert)| (&site.hosts, site.default, site.order, cert));
    let mut first = None;
    for (hosts, default, order, cert) in files.chain(acme) {
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
        if first.as_ref().is_none_or(|(o, _)| order < *o) {
            first = Some((order, cert.key.clone()));
        }
    }
    map.first = first.map(|(_, key)| key);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(name: &str) -> (String, String) {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        (c.pem(), k.serialize_pem())
    }

    fn served_without_sni(m: &CertManager) -> Vec<String> {
        let map = m.store().map();
        let key = map.lookup(None, false).expect("a fallback certificate");
        let (_, _, names) = crate::certificate::inspect(&key.cert[0]).unwrap();
        names
    }

    /// With no default site, a handshake without SNI gets the first site's certificate in config order,
    /// whether that site's certificate comes from files or from ACME.
    #[test]
    fn the_fallback_is_the_first_site_in_config_order() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem("files.test");
        let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cp, cert).unwrap();
        std::fs::write(&kp, key).unwrap();
        let m = CertManager::new();
        let files = |order| SiteCert {
            hosts: vec!["files.test".into()],
            default: false,
            order,
            cert: cp.clone(),
            key: kp.clone(),
        };
        m.commit(m.prepare(&[files(1)]));
        assert_eq!(served_without_sni(&m), ["files.test"]);

        let (c, k) = pem("acme.test");
        let loaded = crate::certificate::from_pem(c.as_bytes(), k.as_bytes(), &cp, &kp).unwrap();
        let acme = ManagedSite {
            hosts: vec!["acme.test".into()],
            default: false,
            order: 0,
        };
        m.install_managed("acme.test", acme, loaded);
        assert_eq!(
            served_without_sni(&m),
            ["acme.test"],
            "the ACME site comes first"
        );

        // A reload moves the ACME site after the files site.
        m.retain_managed(&[("acme.test".into(), 2)]);
        assert_eq!(served_without_sni(&m), ["files.test"]);
    }
}
