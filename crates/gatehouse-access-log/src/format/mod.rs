//! What one access log line says, read from a finished request's context, and the two ways of writing it.
//!
//! [`Entry`] borrows everything from the context and its snapshot; [`combined`] and [`json`] write it into a
//! byte buffer. Nothing here allocates beyond that buffer.

pub mod clock;
pub mod combined;
pub mod json;

use gatehouse_proxy::context::EndReason;
use gatehouse_proxy::{RequestCtx, Snapshot};
use http::{HeaderValue, Version};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

/// One request as the log shows it.
#[derive(Debug)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub client_ip: IpAddr,
    pub method: &'a str,
    /// The Host the request was routed by.
    pub host: Option<&'a [u8]>,
    /// The request target as sent (`/path?query`, or absolute-form).
    pub target: Option<&'a http::Uri>,
    pub version: Version,
    /// 499 (nginx's "client closed request") when the client went away before any status was sent.
    pub status: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub request_time: Duration,
    pub upstream: Option<SocketAddr>,
    pub upstream_connect: Option<Duration>,
    pub upstream_response: Option<Duration>,
    pub attempts: usize,
    pub site: Option<&'a str>,
    pub route: Option<&'a str>,
    pub pool: Option<&'a str>,
    pub tls_version: Option<&'static str>,
    pub request_id: &'a HeaderValue,
    pub user_agent: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub end: Option<EndReason>,
}

impl<'a> Entry<'a> {
    pub fn new(snap: &'a Snapshot, ctx: &'a RequestCtx, now: SystemTime) -> Self {
        let names = snap.names(ctx);
        let t = &ctx.times;
        let head = ctx.head.as_deref();
        let since_start = |i: Option<std::time::Instant>| {
            t.upstream_start
                .zip(i)
                .map(|(s, e)| e.saturating_duration_since(s))
        };
        Entry {
            time: now,
            client_ip: ctx.client_ip,
            method: ctx.method.as_str(),
            host: head
                .and_then(|h| h.host.as_ref())
                .map(HeaderValue::as_bytes),
            target: head.map(|h| &h.uri),
            version: ctx.version,
            status: ctx.status.map_or(499, |s| s.as_u16()),
            bytes_sent: ctx.bytes_out,
            bytes_received: ctx.bytes_in.get(),
            request_time: t
                .last_byte
                .map_or(Duration::ZERO, |e| e.saturating_duration_since(t.head_read)),
            upstream: ctx.server(),
            upstream_connect: since_start(t.upstream_connected),
            upstream_response: since_start(t.upstream_head),
            attempts: ctx.attempts.len(),
            site: names.site,
            route: names.route,
            pool: names.pool,
            tls_version: ctx.conn().peer.tls.as_ref().map(|t| t.version),
            request_id: &ctx.request_id,
            user_agent: head
                .and_then(|h| h.user_agent.as_ref())
                .map(HeaderValue::as_bytes),
            referer: head
                .and_then(|h| h.referer.as_ref())
                .map(HeaderValue::as_bytes),
            end: ctx.end,
        }
    }

    /// `HTTP/1.1`, as nginx's `$server_protocol`.
    pub fn protocol(&self) -> &'static str {
        match self.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        }
    }

    /// The path of the target (for HTTP/2, which has no request line, the path and query as nginx shows).
    pub fn path(&self) -> &str {
        self.target.map_or("-", |u| u.path())
    }

    pub fn query(&self) -> Option<&str> {
        self.target.and_then(|u| u.query())
    }
}
