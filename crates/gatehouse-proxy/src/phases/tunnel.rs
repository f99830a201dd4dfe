//! 4'. After a 101 Switching Protocols (WebSocket and any other Upgrade), the two connections become a plain
//! byte tunnel. It holds the request's exchange — so the connection counts as open for graceful shutdown, the
//! server's in-flight unit is held (least_conn sees long-lived sockets), and the request's end is reported
//! when the tunnel closes, with the bytes that went through it.

use crate::context::{EndReason, PendingUpgrade};
use crate::exchange::Exchange;
use hyper_util::rt::TokioIo;

pub fn spawn(pending: PendingUpgrade, x: Exchange) {
    tokio::spawn(async move {
        let PendingUpgrade {
            client,
            upstream,
            in_flight,
        } = pending;
        let _in_flight = in_flight;
        let mut x = x;
        let (client, upstream) = tokio::join!(client, upstream);
        let (client, upstream) = match (client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) => {
                tracing::debug!(error = %e, "upgrade did not complete on the client side");
                return x.end(EndReason::ClientAbort);
            }
            (_, Err(e)) => {
                tracing::debug!(error = %e, "upgrade did not complete on the upstream side");
                return x.end(EndReason::UpstreamError);
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => {
                tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed");
                let ctx = x.ctx_mut();
                ctx.bytes_in.add(up);
                ctx.bytes_out += down;
                x.end(EndReason::Complete);
            }
            Err(e) => {
                tracing::debug!(error = %e, "tunnel ended");
                x.end(EndReason::ClientAbort);
            }
        }
    });
}
