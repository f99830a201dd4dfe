//! What the binary does at the end of every request, until the access log and metrics arrive: one debug
//! line per request (`RUST_LOG=gatehouse::request=debug`), built only when that level is on.

use gatehouse_proxy::{Observer, RequestCtx, Snapshot};

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
