//! Counting a finished request into the metric handles its snapshot holds: atomic adds only, no look-up,
//! no lock, no allocation. Runs once per request, just before the end-of-request [`super::Observer`].

use super::Snapshot;
use crate::context::{Outcome, RequestCtx};
use http::Version;

/// Which of [`gatehouse_metrics::PROTOCOLS`] a request was spoken in.
pub fn protocol_index(v: Version) -> usize {
    match v {
        Version::HTTP_2 | Version::HTTP_3 => 2,
        Version::HTTP_11 => 1,
        _ => 0,
    }
}

pub fn record(snap: &Snapshot, ctx: &RequestCtx) {
    let route = ctx
        .site
        .zip(ctx.route)
        .and_then(|(s, r)| snap.route(s, r))
        .map_or(&snap.unrouted, |(_, r)| &r.metrics);
    let status = ctx.status.map_or(499, |s| s.as_u16());
    route.count(status, protocol_index(ctx.version));
    route.request_ended();

    let site = ctx
        .site
        .and_then(|s| snap.site(s))
        .map_or(&snap.unrouted_site, |s| &s.metrics);
    if let Some(end) = ctx.times.last_byte {
        site.duration
            .record(end.duration_since(ctx.times.head_read));
    }
    site.bytes_in.inc_by(ctx.bytes_in.get());
    site.bytes_out.inc_by(ctx.bytes_out);

    let Some(pool) = ctx.pool.and_then(|p| snap.pool(p)) else {
        return;
    };
    if let Some(start) = ctx.times.upstream_start {
        if let Some(c) = ctx.times.upstream_connected {
            pool.metrics
                .connect
                .record(c.saturating_duration_since(start));
        }
        if let Some(h) = ctx.times.upstream_head {
            pool.metrics
                .response
                .record(h.saturating_duration_since(start));
        }
    }
    let tries = ctx.attempts.len();
    for (i, a) in ctx.attempts.iter().enumerate() {
        let Some(up) = pool.upstreams.get(a.server as usize) else {
            continue;
        };
        let m = &up.metrics;
        m.selections.inc();
        match a.outcome {
            Outcome::Responded => {
                if let (Some(start), Some(head)) =
                    (ctx.times.upstream_start, ctx.times.upstream_head)
                {
                    m.latency.record(head.saturating_duration_since(start));
                }
            }
            Outcome::ConnectFailed | Outcome::Failed | Outcome::TimedOut => {
                m.failures.inc();
                // Another server took the request over (after a failed connect, or a reset replay).
                if i + 1 < tries {
                    m.retries.inc();
                }
            }
            Outcome::Pending | Outcome::ClientFailed => {}
        }
        if a.ejected {
            m.ejections.inc();
        }
    }
}
