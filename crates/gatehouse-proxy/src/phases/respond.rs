//! 3c. Rewrite the response for the client: hop-by-hop headers removed, the body streamed back holding the
//! server's in-flight unit and the connection's lease (back to its pool when the body ends). A 101 to an
//! upgrade request leaves both sides of the tunnel in the context, for delivery to join — only when it switches
//! to a protocol the request offered; any other 101 is a broken upstream (502), never tunnelled. On a route
//! with `compress`, an eligible response (see [`gatehouse_policy::encoding::eligible`]) gets
//! `Vary: Accept-Encoding`, and is compressed with the codec the client chose, if it chose one.

use super::send::Sent;
use crate::body::{ResponseBody, UpstreamHold};
use crate::context::{PendingUpgrade, RequestCtx};
use crate::error::ProxyError;
use crate::headers::hop::{remove_hop_by_hop, switched_to_offered};
use crate::snapshot::policy::CompressRt;
use crate::snapshot::PoolRt;
use crate::upstream::pool::Lease;
use gatehouse_config::Codec;
use gatehouse_policy::encoding::eligible;
use http::{header, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;

pub fn response(
    pool: &PoolRt,
    sent: Sent<'_>,
    client_upgrade: Option<(OnUpgrade, http::HeaderMap)>,
    tunnel_idle_timeout: std::time::Duration,
    compress: Option<(&CompressRt, Option<Codec>)>,
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
    let body = ResponseBody::upstream(body, UpstreamHold { in_flight, lease });
    let codec = match compress {
        Some((rule, codec)) if eligible(parts.status, &parts.headers, &rule.rule) => {
            vary_accept_encoding(&mut parts.headers);
            codec.map(|c| (rule, c))
        }
        _ => None,
    };
    let Some((rule, codec)) = codec else {
        return Ok(Response::from_parts(parts, body));
    };
    rule.count(codec);
    let h = &mut parts.headers;
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(codec.token()),
    );
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    // The bytes differ from the uncompressed representation's: a strong validator becomes weak (as nginx does).
    if let Some(etag) = h.get(header::ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            match HeaderValue::from_bytes(&weak) {
                Ok(v) => {
                    h.insert(header::ETAG, v);
                }
                Err(_) => {
                    h.remove(header::ETAG);
                }
            }
        }
    }
    Ok(Response::from_parts(
        parts,
        body.encoded(codec, rule.rule.level),
    ))
}

/// Adds `Accept-Encoding` to `Vary` unless it (or `*`) is there.
fn vary_accept_encoding(headers: &mut http::HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}
