//! One request and the snapshot it is served on, until its end is reported — exactly once.
//!
//! Whoever holds the request last holds its `Exchange`: the request path while it works, then the response
//! body ([`crate::body::ClientBody`]) until its last byte is sent, or an upgraded tunnel until it closes.
//! [`Exchange::end`] reports to the snapshot's [`Observer`](crate::snapshot::Observer); dropping an exchange
//! that was not ended reports it as a client abort (the client went away: hyper dropped the request's future
//! or its response body). Either way the hook runs once.

use crate::context::{EndReason, RequestCtx};
use crate::snapshot::Snapshot;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug)]
pub struct Exchange {
    snapshot: Arc<Snapshot>,
    ctx: RequestCtx,
    reported: bool,
}

impl Exchange {
    pub fn new(snapshot: Arc<Snapshot>, ctx: RequestCtx) -> Self {
        Exchange {
            snapshot,
            ctx,
            reported: false,
        }
    }

    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    pub fn ctx(&self) -> &RequestCtx {
        &self.ctx
    }

    pub fn ctx_mut(&mut self) -> &mut RequestCtx {
        &mut self.ctx
    }

    /// The snapshot to read and the context to fill, at once.
    pub fn parts_mut(&mut self) -> (&Snapshot, &mut RequestCtx) {
        (&self.snapshot, &mut self.ctx)
    }

    /// Reports the request as ended for `reason`.
    pub fn end(mut self, reason: EndReason) {
        self.report(reason);
    }

    fn report(&mut self, reason: EndReason) {
        if self.reported {
            return;
        }
        self.reported = true;
        let ctx = &mut self.ctx;
        // An answer Gatehouse gave because the upstream failed ended for that reason, however well it was sent.
        let reason = match (reason, ctx.error) {
            (EndReason::Complete, Some(kind)) if kind.is_upstream() => EndReason::UpstreamError,
            _ => reason,
        };
        ctx.end = Some(reason);
        ctx.times.last_byte = Some(Instant::now());
        self.snapshot
            .observer
            .request_end(&self.snapshot, &self.ctx);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.report(EndReason::ClientAbort);
    }
}
