//! One request and the snapshot it is served on, until its end is reported — exactly once.
//!
//! Whoever holds the request last holds its `Exchange`: the request path while it works, then the response
//! body ([`crate::body::ClientBody`]) until its last byte is sent, or an upgraded tunnel until it closes.
//! [`Exchange::end`] reports to the snapshot's [`Observer`](crate::snapshot::Observer); dropping an exchange
//! that was not ended reports it as a client abort (the client went away: hyper dropped the request's future
//! or its response body). Either way the hook runs once.

use crate::context::{EndReason, ErrorKind, RequestCtx};
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
        // An answer Gatehouse gave because the upstream failed, or to a client that had gone, ended for that
        // reason, however well it was sent.
        let reason = match (reason, ctx.error) {
            (EndReason::Complete, Some(kind)) if kind.is_upstream() => EndReason::UpstreamError,
            (EndReason::Complete, Some(ErrorKind::ClientGone)) => EndReason::ClientAbort,
            _ => reason,
        };
        ctx.end = Some(reason);
        ctx.times.last_byte = Some(Instant::now());
        crate::snapshot::record::record(&self.snapshot, &self.ctx);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{ClientBody, ResponseBody};
    use crate::conn::{ActiveRequest, Conn, Peer, Tracker};
    use crate::snapshot::{compile, Observer, Registries};
    use http_body_util::BodyExt;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Ends(Mutex<Vec<(EndReason, u64)>>);

    impl Observer for Ends {
        fn request_end(&self, _: &Snapshot, ctx: &RequestCtx) {
            let end = ctx.end.expect("end is set before the hook runs");
            self.0.lock().unwrap().push((end, ctx.bytes_out));
        }
    }

    fn exchange(ends: &Arc<Ends>) -> Exchange {
        let config = gatehouse_config::parse(
            "[[listener]]\nname = \"h\"\nbind = \"127.0.0.1:1\"\n[[site]]\nhosts = [\"a.test\"]\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n",
            "t.toml",
        )
        .unwrap();
        let reg = Registries::new(1, ends.clone()).unwrap();
        let snap = Arc::new(compile(Arc::new(config), &reg).unwrap());
        let peer = Peer::new(
            "127.0.0.1:9".parse().unwrap(),
            "h".into(),
            None,
            Instant::now(),
        );
        let conn = Arc::new(Conn::new(peer, Arc::new(Tracker::default()).open()));
        let ctx = RequestCtx::new(
            ActiveRequest::new(conn),
            http::Method::GET,
            http::Version::HTTP_11,
        );
        Exchange::new(snap, ctx)
    }

    fn ends(e: &Ends) -> Vec<(EndReason, u64)> {
        e.0.lock().unwrap().clone()
    }

    #[test]
    fn ended_once_whether_ended_or_dropped() {
        let e = Arc::new(Ends::default());
        exchange(&e).end(EndReason::Complete);
        assert_eq!(ends(&e), [(EndReason::Complete, 0)]);
        drop(exchange(&e));
        assert_eq!(
            ends(&e)[1],
            (EndReason::ClientAbort, 0),
            "a dropped exchange is a client abort"
        );
        let mut x = exchange(&e);
        x.ctx_mut().error = Some(ErrorKind::Connect);
        x.end(EndReason::Complete);
        assert_eq!(
            ends(&e)[2].0,
            EndReason::UpstreamError,
            "a 502 sent whole still ended by the upstream"
        );
        assert_eq!(ends(&e).len(), 3);
    }

    #[tokio::test]
    async fn the_client_body_reports_after_its_last_byte_with_the_count() {
        let e = Arc::new(Ends::default());
        let body = ClientBody::new(
            ResponseBody::full("hello".into()),
            Some(exchange(&e)),
            false,
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(ends(&e), [(EndReason::Complete, 5)]);

        // Dropped before anything was read: the client went away.
        drop(ClientBody::new(
            ResponseBody::full("hello".into()),
            Some(exchange(&e)),
            false,
        ));
        // Empty from the start: hyper never polls it, and it is complete.
        drop(ClientBody::new(
            ResponseBody::empty(),
            Some(exchange(&e)),
            false,
        ));
        // An answer to HEAD (or a 204/304) has no body on the wire, whatever the body holds.
        drop(ClientBody::new(
            ResponseBody::full("404 Not Found\n".into()),
            Some(exchange(&e)),
            true,
        ));
        assert_eq!(
            ends(&e)[1..],
            [
                (EndReason::ClientAbort, 0),
                (EndReason::Complete, 0),
                (EndReason::Complete, 0)
            ]
        );
    }
}
