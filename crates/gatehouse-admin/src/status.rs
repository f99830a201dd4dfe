//! `GET /status`: the running state as JSON. The shape is documented in `docs/admin.md`; `generation` and each
//! server's `addr`, `healthy`, `admin_state` and `in_flight` are part of the config contract.

use crate::Admin;
use gatehouse_balance::now_ms;
use gatehouse_config::{RouteAction, SiteTls};
use gatehouse_metrics::histogram::BOUNDS;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn unix(t: SystemTime) -> i64 {
    crate::seconds_between(UNIX_EPOCH, t)
}

pub fn status(admin: &Admin) -> Value {
    let proxy = &admin.proxy;
    let snap = proxy.snapshot();
    let config = &snap.config;
    let now = now_ms();
    let listeners: Vec<Value> = proxy
        .listeners()
        .into_iter()
        .map(|l| {
            json!({
                "name": l.name, "bind": l.bind.to_string(), "local": l.local.to_string(),
                "kind": if l.stream { "stream" } else if l.tls { "https" } else { "http" },
                "open_connections": l.open, "parked_connections": l.parked, "accepted": l.accepted, "refused_per_ip": l.refused_per_ip,
            })
        })
        .collect();
    let sites: Vec<Value> = config
        .sites
        .iter()
        .map(|s| {
            json!({
                "name": s.hosts.first().map(|h| h.as_config()),
                "hosts": s.hosts.iter().map(|h| h.as_config()).collect::<Vec<_>>(),
                "default": s.default,
                "tls": match &s.tls { None => "none", Some(SiteTls::Acme) => "acme", Some(SiteTls::Files { .. }) => "file" },
                "access_log": s.access_log,
                "routes": s.routes.iter().map(|r| json!({
                    "path": r.path,
                    "pool": match &r.action { RouteAction::Pool { pool, .. } => Some(pool.as_str()), _ => None },
                    "action": match &r.action { RouteAction::Pool { .. } => "pool", RouteAction::Redirect { .. } => "redirect", RouteAction::Respond { .. } => "respond" },
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let pools: Vec<Value> = snap
        .pools
        .iter()
        .map(|p| {
            let spec = config.pools.get(&*p.name);
            let servers: Vec<Value> = p
                .upstreams
                .iter()
                .map(|u| {
                    let (idle, parked) = u.conns.idle_counts();
                    json!({
                        "addr": u.addr.to_string(),
                        "healthy": u.healthy(now),
                        "health_check": u.probe.as_ref().map(|p| p.state.get().as_str()),
                        "health_check_error": u.probe.as_ref().and_then(|p| p.state.last_error()),
                        "admin_state": u.admin.state().as_str(),
                        "in_flight": u.state.in_flight(),
                        "idle_connections": idle,
                        "parked_connections": parked,
                        "weight": u.weight(),
                        "config_weight": u.config_weight,
                        "backup": u.backup,
                        "requests": u.metrics.selections.get(),
                        "failures": u.metrics.failures.get(),
                        "ejections": u.metrics.ejections.get(),
                        "last_error": u.metrics.last_error(),
                        "latency_buckets": u.metrics.latency.buckets().to_vec(),
                    })
                })
                .collect();
            json!({
                "name": &*p.name,
                "balance": spec.map(|c| match c.balance {
                    gatehouse_config::Balance::RoundRobin => "round_robin",
                    gatehouse_config::Balance::IpHash => "ip_hash",
                    gatehouse_config::Balance::LeastConn => "least_conn",
                }),
                "servers": servers,
            })
        })
        .collect();
    let acme = admin.acme_stats().map(|a| a.states()).unwrap_or_default();
    let nowt = SystemTime::now();
    let certificates: Vec<Value> = proxy
        .certificates()
        .list()
        .into_iter()
        .map(|c| {
            let state = match c.source {
                gatehouse_tls::CertSource::File => "none".to_string(),
                gatehouse_tls::CertSource::Acme => {
                    acme.get(&c.site).cloned().unwrap_or_else(|| "valid".into())
                }
            };
            json!({
                "site": c.site,
                "names": c.names,
                "issuer": c.issuer,
                "source": match c.source { gatehouse_tls::CertSource::File => "file", gatehouse_tls::CertSource::Acme => "acme" },
                "not_after_unix": unix(c.not_after),
                "expires_in_seconds": crate::seconds_between(nowt, c.not_after),
                "acme": state,
            })
        })
        .collect();
    // ACME sites without a certificate yet (ordering, or failing).
    let pending: Vec<Value> = acme
        .iter()
        .filter(|(id, _)| !certificates.iter().any(|c| c["site"] == **id))
        .map(|(id, state)| json!({"site": id, "names": [id], "issuer": null, "source": "acme", "not_after_unix": null, "expires_in_seconds": null, "acme": state}))
        .collect();
    let last = proxy.last_reload();
    // Where ACME state lives, and whether this node can reach it (a shared Redis).
    let store = admin
        .acme_stats()
        .and_then(|a| a.store.get().cloned())
        .map(|h| {
            json!({
                "kind": h.kind,
                "location": h.location,
                "reachable": h.reachable(),
                "last_ok_unix": Some(h.last_ok_unix()).filter(|t| *t > 0),
                "last_sync_unix": Some(h.last_sync_unix()).filter(|t| *t > 0),
                "last_error": h.last_error(),
                "locks": h.locks(),
            })
        });
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": proxy.started().elapsed().as_secs(),
        "config_file": admin.config_file.display().to_string(),
        "generation": proxy.generation(),
        "last_reload": last.map(|r| json!({"ok": r.ok, "at_unix": unix(r.at), "error": r.error})),
        "listeners": listeners,
        "open_connections": proxy.open_connections(),
        "sites": sites,
        "latency_bounds": BOUNDS.to_vec(),
        "pools": pools,
        "certificates": certificates.into_iter().chain(pending).collect::<Vec<_>>(),
        "access_log": {"dropped": proxy.metrics().events.access_log_dropped.get()},
        "acme_store": store,
    })
}
