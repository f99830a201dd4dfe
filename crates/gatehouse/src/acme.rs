//! Wiring the ACME manager to the running proxy: which sites want certificates, where they are stored,
//! and how a new certificate is put into service.

use gatehouse_acme::schedule::RenewBefore;
use gatehouse_acme::{AcmeConfig, AcmeManager, AcmeSite, ChallengeKind, FileStorage, RedisStorage};
use gatehouse_config::{AcmeChallenge, AcmeStorage, Config, SiteTls};
use gatehouse_proxy::Proxy;
use gatehouse_tls::ManagedSite;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The running ACME manager's handle.
pub struct Acme {
    sites: watch::Sender<Vec<AcmeSite>>,
    settings: gatehouse_config::Acme,
    /// Orders, failures and states, for the admin listener.
    pub stats: Arc<gatehouse_acme::AcmeStats>,
}

/// The sites of `config` that say `tls = "acme"`.
fn acme_sites(config: &Config) -> Vec<AcmeSite> {
    config
        .sites
        .iter()
        .enumerate()
        .filter(|(_, s)| s.tls == Some(SiteTls::Acme))
        .filter_map(|(order, s)| {
            let names = s.exact_hosts();
            Some(AcmeSite {
                id: names.first()?.clone(),
                names,
                default: s.default,
                order,
            })
        })
        .collect()
}

impl Acme {
    /// Starts the manager if the config has an `[acme]` section: stored certificates are served at once,
    /// then the loop orders what is missing. Call on the control runtime.
    pub async fn start(config: &Config, proxy: &Arc<Proxy>) -> Result<Option<Acme>, String> {
        let Some(a) = &config.acme else {
            return Ok(None);
        };
        let storage: Arc<dyn gatehouse_acme::Storage> = match &a.storage {
            AcmeStorage::Folder(dir) => {
                Arc::new(FileStorage::open(dir).map_err(|e| format!("acme.storage: {e}"))?)
            }
            AcmeStorage::Redis(r) => {
                let ca = match &r.ca {
                    Some(p) => Some(
                        std::fs::read(p)
                            .map_err(|e| format!("acme.redis_ca: {}: {e}", p.display()))?,
                    ),
                    None => None,
                };
                Arc::new(
                    RedisStorage::open(&r.url.0, &r.prefix, ca, r.url.redacted())
                        .map_err(|e| format!("acme.storage: {e}"))?,
                )
            }
        };
        let manager_config = AcmeConfig {
            directory: a.directory.clone(),
            email: a.email.clone(),
            ca_root: a.ca_root.clone(),
            challenge: match a.challenge {
                AcmeChallenge::Http01 => ChallengeKind::Http01,
                AcmeChallenge::TlsAlpn01 => ChallengeKind::TlsAlpn01,
            },
            renew_before: a.renew_before.map_or(RenewBefore::Auto, RenewBefore::Fixed),
            check_interval: a.check_interval,
            retry_initial: a.retry_initial,
            retry_cap: Duration::from_secs(86_400),
            http01_possible: config.listeners.iter().any(|l| l.tls.is_none()),
            tls_alpn01_possible: config.listeners.iter().any(|l| l.tls.is_some()),
            lock_ttl: a.lock_ttl,
        };
        let weak = Arc::downgrade(proxy);
        let install: gatehouse_acme::manager::Install = Arc::new(move |site: &AcmeSite, cert| {
            if let Some(p) = weak.upgrade() {
                p.certificates().install_managed(
                    &site.id,
                    ManagedSite {
                        hosts: site.names.clone(),
                        default: site.default,
                        order: site.order,
                    },
                    cert,
                );
            }
        });
        let manager = AcmeManager::new(
            manager_config,
            storage,
            proxy.certificates().store(),
            proxy.http01(),
            install,
        );
        let sites = acme_sites(config);
        let loaded = manager.load_stored(&sites).await;
        tracing::info!(sites = sites.len(), loaded_from_storage = loaded, storage = %a.storage.shown(), directory = %a.directory, "ACME manager started");
        let (tx, rx) = watch::channel(sites);
        let stats = manager.stats();
        tokio::spawn(manager.run(rx));
        Ok(Some(Acme {
            sites: tx,
            settings: a.clone(),
            stats,
        }))
    }

    /// After a reload: new ACME sites get certificates, removed ones stop being served.
    pub fn update(&self, config: &Config, proxy: &Proxy) {
        if config.acme.as_ref() != Some(&self.settings) {
            tracing::warn!(
                "[acme] settings changed: they apply on restart (site changes apply now)"
            );
        }
        let sites = acme_sites(config);
        let ids: Vec<(String, usize)> = sites.iter().map(|s| (s.id.clone(), s.order)).collect();
        proxy.certificates().retain_managed(&ids);
        let _ = self.sites.send(sites);
    }
}
