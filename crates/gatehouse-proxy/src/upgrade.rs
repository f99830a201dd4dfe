//! After a 101 Switching Protocols (WebSocket and any other Upgrade), the two connections become a plain byte
//! tunnel. The tunnel holds the server's in-flight count (least_conn sees long-lived sockets) and counts as an
//! open connection for graceful shutdown, until either side closes.

use crate::listener::TrackGuard;
use gatehouse_balance::InFlight;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

pub fn bridge(client: OnUpgrade, upstream: OnUpgrade, in_flight: InFlight, open: TrackGuard) {
    tokio::spawn(async move {
        let _hold = (in_flight, open);
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed"),
            Err(e) => tracing::debug!(error = %e, "tunnel ended"),
        }
    });
}
