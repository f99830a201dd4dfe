//! Gatehouse's access log.
//!
//! [`AccessLog`] is an end-of-request [`Observer`]: at a request's end it decides whether the request is
//! logged (the site's `access_log`, the skip list for health-check paths and its sampling), formats one line
//! ([`format::combined`] or [`format::json`], by the running config) on the worker that served it, and hands
//! the line to the [`writer`] thread through a bounded queue. The request never waits for the disk.

pub mod format;
pub mod writer;

use gatehouse_config::AccessLogFormat;
use gatehouse_proxy::{Observer, RequestCtx, Snapshot};
use std::cell::Cell;
use std::time::SystemTime;
pub use writer::{Target, Writer};

#[derive(Debug)]
pub struct AccessLog {
    writer: Writer,
}

impl AccessLog {
    pub fn new(writer: Writer) -> Self {
        AccessLog { writer }
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Whether `ctx` is logged under `snap`'s settings.
    pub fn wanted(snap: &Snapshot, ctx: &RequestCtx) -> bool {
        if !snap.access_log {
            return false;
        }
        let Some(site) = ctx.site.and_then(|s| snap.site(s)) else {
            return true;
        };
        if !site.access_log {
            return false;
        }
        let ok = ctx.status.is_some_and(|s| s.as_u16() < 400);
        let path = ctx.head.as_deref().map_or("", |h| h.uri.path());
        if ok && site.access_log_skip.iter().any(|p| path.starts_with(&**p)) {
            return sampled(snap.access_log_sample);
        }
        true
    }
}

/// One in `n` (0: never), counted per worker thread: no shared counter for what is skipped.
fn sampled(n: u32) -> bool {
    thread_local!(static SEEN: Cell<u32> = const { Cell::new(0) });
    if n == 0 {
        return false;
    }
    SEEN.with(|c| {
        let seen = c.get().wrapping_add(1);
        c.set(seen);
        seen % n == 0
    })
}

impl Observer for AccessLog {
    fn request_end(&self, snap: &Snapshot, ctx: &RequestCtx) {
        if !Self::wanted(snap, ctx) {
            return;
        }
        let entry = format::Entry::new(snap, ctx, SystemTime::now());
        let mut line = Vec::with_capacity(256);
        match snap.config.server.access_log_format {
            AccessLogFormat::Combined => format::combined::write(&entry, &mut line),
            AccessLogFormat::Json => format::json::write(&entry, &mut line),
        }
        self.writer.send(line);
    }
}
