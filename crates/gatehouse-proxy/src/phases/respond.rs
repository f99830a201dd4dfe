//! 3c. Rewrite the response for the client: hop-by-hop headers removed, the body streamed back holding the
//! server's in-flight unit and the connection's lease (back to its pool when the body ends). A 101 to an
//! upgrade request leaves both sides of the tunnel in the context, for delivery to join — only when it switches
//! to a protocol the request offered; any other 101 is a broken upstream (502), never tunnelled.

use super::send::Sent;
use crate::body::{ResponseBody, UpstreamHold};
use crate::context::{PendingUpgrade, RequestCtx};
use crate::error::ProxyError;
use crate::headers::hop::{remove_hop_by_hop, switched_to_offered};
use crate::snapshot::PoolRt;
use crate::upstream::pool::Lease;
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;

pub fn response(
    pool: &PoolRt,
    sent: Sent<'_>,
    client_upgrade: Option<(OnUpgrade, http::HeaderMap)>,
    tunnel_idle_timeout: std::time::Duration,
    ctx: &mut RequestCtx,
) -> Result<Response<ResponseBody>, ProxyError> {
    let Sent {
        mut resp,
        sender,
        in_flight,
        upstream,
    } = sent;
    // A connection opened for an upgrade request is never pooled, whatever the answer.
    let upgrade_conn = client_upgrade.is_some();
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some((client, offered)) = client_upgrade else {
            return Err(ProxyError::BadUpstream {
                addr: upstream.addr,
                what: "101 Switching Protocols to a request that asked for no upgrade",
            });
        };
        if !switched_to_offered(resp.headers(), &offered) {
            return Err(ProxyError::BadUpstream {
                addr: upstream.addr,
                what: "101 Switching Protocols to a protocol the request did not offer",
            });
        }
        ctx.upgrade = Some(PendingUpgrade {
            client,
            upstream: hyper::upgrade::on(&mut resp),
            in_flight,
            idle_timeout: tunnel_idle_timeout,
        });
        let (mut parts, _) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers, true);
        return Ok(Response::from_parts(parts, ResponseBody::empty()));
    }
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers, false);
    let lease = (!upgrade_conn).then(|| Lease {
        sender,
        pool: upstream.conns.clone(),
        max_idle: pool.max_idle,
    });
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body, UpstreamHold { in_flight, lease }),
    ))
}
