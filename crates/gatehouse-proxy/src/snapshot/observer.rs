//! The end-of-request hook: where access logs, metrics and anything else that wants to know how a request
//! went attach. It is called exactly once per request, when the request's context is complete: after the
//! last byte of the response was handed to the client, when the client went away, or when an upgraded
//! tunnel closed — also for answers Gatehouse gives itself (404, 502, …).
//!
//! It runs on the worker thread that served the request, on the hot path: an implementation does atomic adds
//! or hands a record to a queue, never I/O.

use super::Snapshot;
use crate::context::RequestCtx;

pub trait Observer: Send + Sync + std::fmt::Debug {
    /// `ctx` is complete (`ctx.end` is set); `snapshot` is the one the request was served on, for the names
    /// and settings its indexes point at.
    fn request_end(&self, snapshot: &Snapshot, ctx: &RequestCtx);
}

/// Observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn request_end(&self, _: &Snapshot, _: &RequestCtx) {}
}
