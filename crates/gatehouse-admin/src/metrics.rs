//! `GET /metrics`: the state gauges are filled from the live proxy (servers of the current snapshot, open
//! listeners, served certificates, ACME counters), then every family is encoded as OpenMetrics text, which
//! Prometheus reads (and any scraper that accepts its `Accept` header).

use crate::{Admin, Body};
use bytes::Bytes;
use gatehouse_balance::now_ms;
use gatehouse_metrics::{set_counter, set_gauge, CertLabels, ListenerLabels, ServerLabels};
use http::{header, HeaderValue, Response};
use http_body_util::Full;
use std::time::SystemTime;

pub fn metrics(admin: &Admin) -> Response<Body> {
    let proxy = &admin.proxy;
    let m = proxy.metrics();
    let snap = proxy.snapshot();
    let acme = admin.acme_stats();
    let text = m.encode(|g| {
        let now = now_ms();
        for p in &snap.pools {
            for u in &p.upstreams {
                let l = ServerLabels {
                    pool: p.name.to_string(),
                    server: u.addr.to_string(),
                };
                g.server_up.get_or_create(&l).set(i64::from(u.healthy(now)));
                if let Some(p) = &u.probe {
                    use std::sync::atomic::Ordering::Relaxed;
                    let t = |to: &'static str| gatehouse_metrics::TransitionLabels {
                        pool: l.pool.clone(),
                        server: l.server.clone(),
                        to,
                    };
                    let (ups, downs) = (p.state.ups.load(Relaxed), p.state.downs.load(Relaxed));
                    set_counter(&g.health_transitions.get_or_create(&t("up")), ups);
                    set_counter(&g.health_transitions.get_or_create(&t("down")), downs);
                }
                set_gauge(&g.server_in_flight.get_or_create(&l), u.state.in_flight());
                g.server_admin_state
                    .get_or_create(&l)
                    .set(u.admin.state().code());
                g.server_weight.get_or_create(&l).set(i64::from(u.weight()));
            }
        }
        for l in proxy.listeners() {
            let labels = ListenerLabels { listener: l.name };
            set_gauge(&g.connections_open.get_or_create(&labels), l.open);
            set_gauge(&g.connections_parked.get_or_create(&labels), l.parked);
            set_counter(&g.connections_accepted.get_or_create(&labels), l.accepted);
            set_counter(
                &g.connections_refused.get_or_create(&labels),
                l.refused_per_ip,
            );
        }
        let now = SystemTime::now();
        for c in proxy.certificates().list() {
            let left = crate::seconds_between(now, c.not_after);
            for name in c.names {
                g.cert_expiry.get_or_create(&CertLabels { name }).set(left);
            }
        }
        set_gauge(&g.generation, proxy.generation());
        if let Some(a) = &acme {
            use std::sync::atomic::Ordering::Relaxed;
            set_counter(&m.events.acme_orders, a.orders.load(Relaxed));
            set_counter(&m.events.acme_failures, a.failures.load(Relaxed));
            if let Some(h) = a.store.get() {
                g.acme_store_up.set(i64::from(h.reachable()));
                set_gauge(&g.acme_store_last_sync, h.last_sync_unix());
                set_gauge(&g.acme_store_locks, h.locks().len());
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}
