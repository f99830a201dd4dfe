//! What the binary does at the end of every request (metrics are counted by the data path itself): the
//! access log when one is configured, and one debug line per request (`RUST_LOG=gatehouse::request=debug`),
//! built only when that level is on.

use gatehouse_access_log::AccessLog;
use gatehouse_proxy::{Observer, RequestCtx, Snapshot};
use std::sync::Arc;

/// The binary's end-of-request hook.
#[derive(Debug, Default)]
pub struct Observers {
    pub access_log: Option<Arc<AccessLog>>,
}

impl Observer for Observers {
    fn request_end(&self, snapshot: &Snapshot, ctx: &RequestCtx) {
        if let Some(log) = &self.access_log {
            log.request_end(snapshot, ctx);
        }
        LogObserver.request_end(snapshot, ctx);
    }
}

#[derive(Debug, Default)]
pub struct LogObserver;

impl Observer for LogObserver {
    fn request_end(&self, snapshot: &Snapshot, ctx: &RequestCtx) {
        if !tracing::enabled!(target: "gatehouse::request", tracing::Level::DEBUG) {
            return;
        }
        let names = snapshot.names(ctx);
        let took = ctx
            .times
            .last_byte
            .map(|t| t.duration_since(ctx.times.head_read));
        tracing::debug!(
            target: "gatehouse::request",
            id = %ctx.id,
            peer = %ctx.conn().peer.addr,
            method = %ctx.method,
            status = ctx.status.map_or(0, |s| s.as_u16()),
            site = names.site.unwrap_or("-"),
            route = names.route.unwrap_or("-"),
            pool = names.pool.unwrap_or("-"),
            server = ?ctx.server(),
            attempts = ctx.attempts.len(),
            bytes_in = ctx.bytes_in.get(),
            bytes_out = ctx.bytes_out,
            took = ?took,
            end = ?ctx.end,
            "request"
        );
    }
}
