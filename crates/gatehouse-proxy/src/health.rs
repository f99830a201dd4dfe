//! Which active health checks run: one prober task per (server address, check) that the current snapshot
//! has (see [`crate::upstream::health`] for what a prober does).
//!
//! The state a prober writes lives in `Registries::health`, keyed by [`HealthKey`], so two pools probing one
//! address the same way share a prober and a state, two pools probing it differently have two, and a reload
//! that keeps a check keeps its state and its prober. [`Probers::reconcile`] runs after every swap: it starts
//! probers for the checks the new snapshot has and stops the ones it no longer has.

use crate::snapshot::Snapshot;
use crate::upstream::health::{run, HealthKey, Probe};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Probers {
    running: Mutex<HashMap<HealthKey, tokio::task::JoinHandle<()>>>,
}

impl Probers {
    /// Starts a prober for each check `snap` has and none runs for, and stops those it no longer has. Needs a
    /// tokio runtime (the control runtime).
    pub fn reconcile(&self, snap: &Snapshot) {
        let mut wanted: HashMap<&HealthKey, &Probe> = HashMap::new();
        for pool in &snap.pools {
            for up in &pool.upstreams {
                if let Some(p) = &up.probe {
                    wanted.insert(&p.key, p);
                }
            }
        }
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|key, task| {
            let keep = wanted.contains_key(key) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!("health checks need a runtime; none are running");
            return;
        };
        for (key, probe) in wanted {
            if !running.contains_key(key) {
                running.insert(key.clone(), rt.spawn(run(probe.clone())));
            }
        }
    }

    /// Stops every prober (shutdown).
    pub fn stop(&self) {
        for (_, t) in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            t.abort();
        }
    }
}
