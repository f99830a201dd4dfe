//! Everything start-up and a reload do before binding a socket, in one function: certificates loaded, server
//! names resolved, CA files read, the snapshot compiled. `gatehouse check` runs exactly this, so a config that
//! `check` accepts does not fail to load, and one it rejects would not load either. Every problem comes back
//! at once, each with its file:line.
//!
//! It may block (files, DNS): callers run it off the worker threads.

use crate::snapshot::{compile, Registries, Snapshot};
use gatehouse_config::{At, Config, ConfigError, Diagnostic, SiteTls};
use gatehouse_tls::SiteCert;
use std::sync::Arc;

/// A config ready to be swapped in.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) snapshot: Snapshot,
    pub(crate) certs: gatehouse_tls::manager::Prepared,
}

impl Prepared {
    pub fn config(&self) -> &Arc<Config> {
        &self.snapshot.config
    }
}

pub fn prepare(config: Config, reg: &Registries) -> Result<Prepared, ConfigError> {
    let origin = config.origin.to_string();
    let mut problems = Vec::new();
    let (sites, ats) = site_certs(&config);
    let certs = match reg.certs.prepare(&sites) {
        Ok(c) => Some(c),
        Err(errors) => {
            for (i, e) in errors {
                let (site, at) = ats[i];
                problems.push(Diagnostic::at(
                    at,
                    format!("site[{site}].tls"),
                    e.to_string(),
                ));
            }
            None
        }
    };
    if let Some(acme) = &config.acme {
        if let Some(root) = &acme.ca_root {
            if let Err(e) = std::fs::File::open(root) {
                problems.push(Diagnostic::at(
                    acme.ca_root_at,
                    "acme.ca_root",
                    format!("{}: cannot read: {e}", root.display()),
                ));
            }
        }
    }
    let snapshot = compile(Arc::new(config), reg).map_err(|mut e| problems.append(&mut e));
    match (snapshot, certs) {
        (Ok(snapshot), Some(certs)) if problems.is_empty() => Ok(Prepared { snapshot, certs }),
        _ => Err(ConfigError::Invalid {
            origin,
            diagnostics: problems,
        }),
    }
}

/// The certificate files each site names, with (site index, where) for messages. ACME sites are served by
/// the ACME manager.
fn site_certs(config: &Config) -> (Vec<SiteCert>, Vec<(usize, At)>) {
    let mut certs = Vec::new();
    let mut ats = Vec::new();
    for (i, site) in config.sites.iter().enumerate() {
        let Some(SiteTls::Files { cert, key, at }) = &site.tls else {
            continue;
        };
        certs.push(SiteCert {
            hosts: site.hosts.iter().map(|h| h.as_config()).collect(),
            default: site.default,
            cert: cert.clone(),
            key: key.clone(),
        });
        ats.push((i, *at));
    }
    (certs, ats)
}
