//! The reload path: read → dedupe → parse + validate → build the new snapshot → swap.
//!
//! Whatever goes wrong (unreadable file, syntax error, unknown pool, a listener that cannot bind), the running
//! config keeps serving and the problem is logged once with file:line. The bytes last looked at, applied or
//! rejected, are remembered, so a file event that changed nothing (or the same bad file seen again) costs one
//! read and no log line. A signal (SIGHUP) always re-reads and re-applies.

use gatehouse_config::{diff, Config};
use gatehouse_proxy::Proxy;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The watcher saw something in the config folder.
    FileEvent,
    /// The periodic re-read.
    Poll,
    /// SIGHUP: apply even if the bytes did not change.
    Signal,
}

pub struct Reloader {
    path: PathBuf,
    proxy: Arc<Proxy>,
    /// The file's bytes when last read (applied or rejected).
    last_seen: Option<Vec<u8>>,
    /// The last read error, so that a missing file is reported once, not every poll.
    last_error: Option<String>,
}

impl Reloader {
    pub fn new(path: PathBuf, proxy: Arc<Proxy>, applied: Vec<u8>) -> Self {
        Reloader {
            path,
            proxy,
            last_seen: Some(applied),
            last_error: None,
        }
    }

    /// Looks at the file; returns true when a new config was applied.
    pub async fn check(&mut self, trigger: Trigger) -> bool {
        let generation = self.proxy.generation();
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(b) => b,
            Err(e) => {
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) || trigger == Trigger::Signal {
                    tracing::warn!(file = %self.path.display(), error = %msg, generation, "cannot read the config file; the running config keeps serving");
                }
                self.last_error = Some(msg);
                self.last_seen = None;
                return false;
            }
        };
        self.last_error = None;
        if trigger != Trigger::Signal && self.last_seen.as_deref() == Some(bytes.as_slice()) {
            return false;
        }
        self.last_seen = Some(bytes.clone());
        let origin = self.path.display().to_string();
        let parsed = tokio::task::spawn_blocking(move || {
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{origin}: the file is not UTF-8 text"))?;
            gatehouse_config::parse(&text, &origin).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("config parser failed: {e}")));
        match parsed {
            Ok(config) => self.apply(config, trigger).await,
            Err(e) => {
                tracing::error!(
                    generation,
                    "config rejected; the running config keeps serving:\n{e}"
                );
                self.proxy.note_reload(Err(e));
                false
            }
        }
    }

    async fn apply(&self, config: Config, trigger: Trigger) -> bool {
        let old = self.proxy.snapshot().config.clone();
        let changes = diff(&old, &config);
        if changes.is_empty() && trigger != Trigger::Signal {
            tracing::info!(
                generation = self.proxy.generation(),
                "config file changed, its meaning did not; nothing to apply"
            );
            return false;
        }
        let listed: Vec<String> = changes.iter().map(ToString::to_string).collect();
        // Certificates, CA files and DNS may block: off this thread, like the parse.
        let proxy = self.proxy.clone();
        let prepared = tokio::task::spawn_blocking(move || proxy.prepare(config))
            .await
            .unwrap_or_else(|e| {
                Err(gatehouse_config::ConfigError::Io {
                    path: self.path.display().to_string(),
                    error: format!("preparing the config failed: {e}"),
                })
            });
        let generation = self.proxy.generation();
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(
                    generation,
                    "config rejected; the running config keeps serving:\n{e}"
                );
                self.proxy.note_reload(Err(e.to_string()));
                return false;
            }
        };
        match self.proxy.apply(prepared) {
            Ok(report) => {
                tracing::info!(
                    generation = report.generation,
                    trigger = ?trigger,
                    changes = %listed.join(", "),
                    listeners_added = ?report.listeners_added,
                    listeners_removed = ?report.listeners_removed,
                    "config applied"
                );
                self.proxy.note_reload(Ok(()));
                true
            }
            Err(e) => {
                tracing::error!(generation, error = %e, "config not applied; the running config keeps serving");
                self.proxy.note_reload(Err(e.to_string()));
                false
            }
        }
    }
}
