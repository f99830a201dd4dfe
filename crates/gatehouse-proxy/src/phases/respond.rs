//! 3c. Rewrite the response for the client: hop-by-hop headers removed, the body streamed back holding the
//! server's in-flight unit and the connection's lease (back to its pool when the body ends). A 101 to an
//! upgrade request leaves both sides of the tunnel in the context, for delivery to join.

use super::send::Sent;
use crate::body::{ResponseBody, UpstreamHold};
use crate::context::{PendingUpgrade, RequestCtx};
use crate::headers::hop::remove_hop_by_hop;
use crate::snapshot::PoolRt;
use crate::upstream::pool::Lease;
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;

pub fn response(
    pool: &PoolRt,
    sent: Sent<'_>,
    client_upgrade: Option<OnUpgrade>,
    ctx: &mut RequestCtx,
) -> Response<ResponseBody> {
    let Sent {
        mut resp,
        sender,
        in_flight,
        upstream,
    } = sent;
    // A connection opened for an upgrade request is never pooled, whatever the answer.
    let upgrade_conn = client_upgrade.is_some();
    if let Some(client) = client_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            ctx.upgrade = Some(PendingUpgrade {
                client,
                upstream: hyper::upgrade::on(&mut resp),
                in_flight,
            });
            let (mut parts, _) = resp.into_parts();
            remove_hop_by_hop(&mut parts.headers, true);
            return Response::from_parts(parts, ResponseBody::empty());
        }
    }
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers, false);
    let lease = (!upgrade_conn).then(|| Lease {
        sender,
        pool: upstream.conns.clone(),
        max_idle: pool.max_idle,
    });
    Response::from_parts(
        parts,
        ResponseBody::upstream(body, UpstreamHold { in_flight, lease }),
    )
}
