//! One JSON object per line, for pipelines that ingest JSON (Elasticsearch, Loki, Vector). Field names follow
//! nginx's variable names where there is one (`request_time`, `upstream_connect_time`, …); times are seconds
//! with millisecond precision; absent values are `null`. Bytes that are not UTF-8 (a hostile User-Agent) are
//! replaced, never passed raw.

use super::Entry;
use serde::Serialize;
use std::borrow::Cow;

#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    client_ip: String,
    method: &'a str,
    host: Option<Cow<'a, str>>,
    path: &'a str,
    query: Option<&'a str>,
    protocol: &'static str,
    status: u16,
    bytes_sent: u64,
    bytes_received: u64,
    request_time: f64,
    upstream_addr: Option<String>,
    upstream_connect_time: Option<f64>,
    upstream_response_time: Option<f64>,
    attempts: usize,
    site: Option<&'a str>,
    route: Option<&'a str>,
    pool: Option<&'a str>,
    tls_version: Option<&'static str>,
    request_id: Cow<'a, str>,
    user_agent: Option<Cow<'a, str>>,
    referer: Option<Cow<'a, str>>,
    end: &'static str,
}

fn secs(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64 / 1000.0).round() / 1000.0
}

fn text(b: Option<&[u8]>) -> Option<Cow<'_, str>> {
    b.map(String::from_utf8_lossy)
}

pub fn write(e: &Entry<'_>, out: &mut Vec<u8>) {
    let time = super::clock::with_time(e.time, |_, iso, ms| format!("{iso}.{ms:03}Z"));
    let line = Line {
        time: &time,
        client_ip: e.client_ip.to_string(),
        method: e.method,
        host: text(e.host),
        path: e.path(),
        query: e.query(),
        protocol: e.protocol(),
        status: e.status,
        bytes_sent: e.bytes_sent,
        bytes_received: e.bytes_received,
        request_time: secs(e.request_time),
        upstream_addr: e.upstream.map(|a| a.to_string()),
        upstream_connect_time: e.upstream_connect.map(secs),
        upstream_response_time: e.upstream_response.map(secs),
        attempts: e.attempts,
        site: e.site,
        route: e.route,
        pool: e.pool,
        tls_version: e.tls_version,
        request_id: String::from_utf8_lossy(e.request_id.as_bytes()),
        user_agent: text(e.user_agent),
        referer: text(e.referer),
        end: match e.end {
            Some(gatehouse_proxy::context::EndReason::Complete) => "complete",
            Some(gatehouse_proxy::context::EndReason::ClientAbort) => "client_abort",
            Some(gatehouse_proxy::context::EndReason::UpstreamError) => "upstream_error",
            None => "unknown",
        },
    };
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}
