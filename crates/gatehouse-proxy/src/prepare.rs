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
    /// Problems that do not stop the config from serving, each at its line: certificate pairs that do not
    /// load (their sites keep the pair they had, or are served without one). `check` calls them errors;
    /// start-up and reload log them.
    pub warnings: Vec<Diagnostic>,
}

impl Prepared {
    pub fn config(&self) -> &Arc<Config> {
        &self.snapshot.config
    }

    /// The warnings as lines `file:line:col: key: message`.
    pub fn warnings_text(&self) -> Option<String> {
        (!self.warnings.is_empty()).then(|| {
            ConfigError::Invalid {
                origin: self.snapshot.config.origin.to_string(),
                diagnostics: self.warnings.clone(),
            }
            .to_string()
        })
    }
}

pub fn prepare(config: Config, reg: &Registries) -> Result<Prepared, ConfigError> {
    let origin = config.origin.to_string();
    let mut problems = Vec::new();
    let (sites, ats) = site_certs(&config);
    let certs = reg.certs.prepare(&sites);
    let warnings: Vec<Diagnostic> = certs
        .failed
        .iter()
        .map(|(i, e)| {
            let (site, at) = ats[*i];
            Diagnostic::at(at, format!("site[{site}].tls"), e.to_string())
        })
        .collect();
    if let Some(acme) = &config.acme {
        if let Some(root) = &acme.ca_root {
            if let Err(e) = check_pem_certificates(root) {
                problems.push(Diagnostic::at(acme.ca_root_at, "acme.ca_root", e));
            }
        }
        match &acme.storage {
            gatehouse_config::AcmeStorage::Folder(dir) => {
                if let Err(e) = check_storage_folder(dir) {
                    problems.push(Diagnostic::at(acme.storage_at, "acme.storage", e));
                }
            }
            // Redis is reached when the ACME manager starts (a node that cannot reach it serves what it has):
            // only the CA file is read here.
            gatehouse_config::AcmeStorage::Redis(r) => {
                if let Some(ca) = &r.ca {
                    if let Err(e) = check_pem_certificates(ca) {
                        problems.push(Diagnostic::at(r.ca_at, "acme.redis_ca", e));
                    }
                }
            }
        }
    }
    let snapshot = compile(Arc::new(config), reg).map_err(|mut e| problems.append(&mut e));
    match snapshot {
        Ok(snapshot) if problems.is_empty() => Ok(Prepared {
            snapshot,
            certs,
            warnings,
        }),
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
            order: i,
            cert: cert.clone(),
            key: key.clone(),
        });
        ats.push((i, *at));
    }
    (certs, ats)
}

/// A file of one or more PEM certificates.
fn check_pem_certificates(path: &std::path::Path) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    match rustls_pki_types::CertificateDer::pem_slice_iter(&pem).next() {
        Some(Ok(_)) => Ok(()),
        _ => Err(format!("{}: no PEM certificate in it", path.display())),
    }
}

/// The ACME storage folder holds private keys: an existing one must be Gatehouse's own (a folder, owned by
/// this user, 0700 or tighter), since Gatehouse never changes the mode of a folder it did not create. One
/// that does not exist yet is created 0700 at start.
fn check_storage_folder(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !meta.is_dir() {
        return Err(format!("{} is not a folder", path.display()));
    }
    let mode = meta.permissions().mode() & 0o777;
    let me = effective_uid();
    if me.is_some_and(|uid| uid != meta.uid()) || mode & 0o077 != 0 {
        return Err(format!(
            "{} is not Gatehouse's own (owner uid {}, mode {mode:o}): it holds private keys, and Gatehouse does not \
             change a folder it did not create; use a new folder, or make this one 0700 and owned by uid {}",
            path.display(),
            meta.uid(),
            me.map_or_else(|| "?".to_string(), |u| u.to_string())
        ));
    }
    Ok(())
}

/// This process's effective user id, from /proc (no libc call needed).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}
