//! Gatehouse's Prometheus metrics.
//!
//! * [`Metrics`] is the process-wide registry: every family, registered once at start.
//! * The request path never looks a label set up: a config's compile step asks for [`RouteMetrics`],
//!   [`SiteMetrics`], [`PoolMetrics`] and [`ServerMetrics`] handles (clones of `Arc`'d atomics) and keeps them
//!   in the snapshot, so recording a request is a few atomic adds.
//! * Values that are state rather than events (in-flight, health, open connections, certificate expiry,
//!   process CPU and memory) are read when scraped: the admin endpoint fills the gauges from the live state
//!   ([`Metrics::encode`] is handed a closure for that), so nothing on the request path keeps them.
//!
//! Label values come from the config only (site, route prefix, pool and listener names, server addresses,
//! certificate names) or from fixed sets (status class, protocol): never from a Host header, a path or a
//! client address, so the number of series is bounded by the config.

pub mod histogram;
pub mod process;

pub use histogram::Histogram;
/// The counter type of every handle (re-exported so users need not name prometheus-client).
pub use prometheus_client::metrics::counter::Counter;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub site: String,
    pub route: String,
    pub class: &'static str,
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub site: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodecLabels {
    pub codec: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    pub site: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub pool: String,
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub pool: String,
    pub server: String,
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
    /// "in" (client to server) or "out".
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub name: String,
}

/// The status classes a request is counted under: index = first digit - 1.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The protocols a request is counted under.
pub const PROTOCOLS: [&str; 3] = ["http/1.0", "http/1.1", "h2"];

/// Every family, registered once. Families keep the series of routes and servers a reload removed (their
/// counts stay valid history); gauges of state are cleared and refilled at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<SiteLabels, Histogram>,
    request_bytes: Family<SiteLabels, Counter>,
    response_bytes: Family<SiteLabels, Counter>,
    upstream_connect: Family<PoolLabels, Histogram>,
    upstream_response: Family<PoolLabels, Histogram>,
    server_selections: Family<ServerLabels, Counter>,
    server_failures: Family<ServerLabels, Counter>,
    server_retries: Family<ServerLabels, Counter>,
    server_ejections: Family<ServerLabels, Counter>,
    in_flight: Gauge,
    stream_bytes: Family<StreamLabels, Counter>,
    rate_limited: Family<RouteLabels, Counter>,
    compressed: Family<CodecLabels, Counter>,
    /// Filled at scrape time.
    pub gauges: StateGauges,
    /// Counted by whoever does the work (reloads, ACME, the access log).
    pub events: Events,
}

/// Gauges (and counters kept elsewhere) copied from live state when scraped.
#[derive(Debug, Default)]
pub struct StateGauges {
    pub connections_open: Family<ListenerLabels, Gauge>,
    pub connections_parked: Family<ListenerLabels, Gauge>,
    pub connections_accepted: Family<ListenerLabels, Counter>,
    /// Refused by `max_conns_per_ip`.
    pub connections_refused: Family<ListenerLabels, Counter>,
    pub server_up: Family<ServerLabels, Gauge>,
    pub server_in_flight: Family<ServerLabels, Gauge>,
    /// 0 active, 1 drain, 2 disabled.
    pub server_admin_state: Family<ServerLabels, Gauge>,
    pub server_weight: Family<ServerLabels, Gauge>,
    /// Active health check transitions (to "up", to "down"), mirrored from the probers' counts.
    pub health_transitions: Family<TransitionLabels, Counter>,
    pub cert_expiry: Family<CertLabels, Gauge>,
    pub generation: Gauge,
    /// 1 when the ACME store (a shared Redis) answers, 0 when it does not.
    pub acme_store_up: Gauge,
    /// Unix seconds of the last change heard from other nodes (or resync).
    pub acme_store_last_sync: Gauge,
    /// Order locks held in the store, by any node.
    pub acme_store_locks: Gauge,
    pub process: process::ProcessGauges,
}

/// Events counted outside the request path.
#[derive(Debug, Default)]
pub struct Events {
    pub reloads: Family<ResultLabels, Counter>,
    /// Unix seconds of the last reload attempt (applied or not).
    pub last_reload: Gauge,
    pub acme_orders: Counter,
    pub acme_failures: Counter,
    pub access_log_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            request_duration: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            upstream_connect: Family::default(),
            upstream_response: Family::default(),
            server_selections: Family::default(),
            server_failures: Family::default(),
            server_retries: Family::default(),
            server_ejections: Family::default(),
            in_flight: Gauge::default(),
            stream_bytes: Family::default(),
            rate_limited: Family::default(),
            compressed: Family::default(),
            gauges: StateGauges::default(),
            events: Events::default(),
        };
        let r = &mut m.registry;
        r.register(
            "gatehouse_requests",
            "Requests answered, by site, route, status class and protocol",
            m.requests.clone(),
        );
        r.register_with_unit(
            "gatehouse_request_duration",
            "From the request head to the last response byte, by site",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register_with_unit(
            "gatehouse_request_body",
            "Request body bytes received from clients, by site",
            Unit::Bytes,
            m.request_bytes.clone(),
        );
        r.register_with_unit(
            "gatehouse_response_body",
            "Response body bytes sent to clients, by site",
            Unit::Bytes,
            m.response_bytes.clone(),
        );
        r.register_with_unit(
            "gatehouse_upstream_connect_duration",
            "Time to a ready upstream connection (0 when pooled), by pool",
            Unit::Seconds,
            m.upstream_connect.clone(),
        );
        r.register_with_unit(
            "gatehouse_upstream_response_duration",
            "From the first try of a server to its response head, by pool",
            Unit::Seconds,
            m.upstream_response.clone(),
        );
        r.register(
            "gatehouse_server_selections",
            "Times the balancer chose a server",
            m.server_selections.clone(),
        );
        r.register(
            "gatehouse_server_failures",
            "Tries of a server that failed (connect error, reset, timeout)",
            m.server_failures.clone(),
        );
        r.register(
            "gatehouse_server_retries",
            "Requests moved to another server after this one failed them (connect error, or a reset before the response)",
            m.server_retries.clone(),
        );
        r.register(
            "gatehouse_server_ejections",
            "Times passive health checks (max_fails) took a server out",
            m.server_ejections.clone(),
        );
        r.register(
            "gatehouse_requests_in_flight",
            "Requests being served",
            m.in_flight.clone(),
        );
        r.register_with_unit(
            "gatehouse_stream",
            "L4 stream bytes, by stream and direction (in: client to server)",
            Unit::Bytes,
            m.stream_bytes.clone(),
        );
        r.register(
            "gatehouse_rate_limited",
            "Requests refused with 429 by a rate_limit, by site and route",
            m.rate_limited.clone(),
        );
        r.register(
            "gatehouse_compressed_responses",
            "Responses compressed on the way to the client, by codec",
            m.compressed.clone(),
        );
        let g = &m.gauges;
        r.register(
            "gatehouse_client_connections_refused",
            "Client connections refused by max_conns_per_ip, by listener or stream",
            g.connections_refused.clone(),
        );
        r.register(
            "gatehouse_client_connections_open",
            "Client connections open, by listener",
            g.connections_open.clone(),
        );
        r.register(
            "gatehouse_client_connections_parked",
            "Idle HTTP/1 client connections parked on their bare socket (no protocol buffers held), by listener",
            g.connections_parked.clone(),
        );
        r.register(
            "gatehouse_client_connections_accepted",
            "Client connections accepted, by listener",
            g.connections_accepted.clone(),
        );
        r.register(
            "gatehouse_server_up",
            "1 when a server takes traffic by its health (passive and active checks), 0 when out",
            g.server_up.clone(),
        );
        r.register(
            "gatehouse_server_in_flight",
            "Requests and tunnels on a server now",
            g.server_in_flight.clone(),
        );
        r.register(
            "gatehouse_server_admin_state",
            "0 active, 1 drain, 2 disabled (set on the admin API)",
            g.server_admin_state.clone(),
        );
        r.register(
            "gatehouse_server_health_transitions",
            "Times active health checks found a server up again or down",
            g.health_transitions.clone(),
        );
        r.register(
            "gatehouse_server_weight",
            "A server's weight in effect",
            g.server_weight.clone(),
        );
        r.register_with_unit(
            "gatehouse_certificate_expiry",
            "Seconds until a served certificate expires, by name",
            Unit::Seconds,
            g.cert_expiry.clone(),
        );
        r.register(
            "gatehouse_config_generation",
            "The running config's generation (rises with each applied reload)",
            g.generation.clone(),
        );
        r.register(
            "gatehouse_acme_store_up",
            "1 when the ACME storage (a shared Redis, or the folder) answers, 0 when it does not",
            g.acme_store_up.clone(),
        );
        r.register(
            "gatehouse_acme_store_last_sync_timestamp_seconds",
            "Unix time of the last change heard from the other nodes through the ACME storage, or resync",
            g.acme_store_last_sync.clone(),
        );
        r.register(
            "gatehouse_acme_store_locks",
            "Certificate order locks held in the ACME storage, by any node",
            g.acme_store_locks.clone(),
        );
        let e = &m.events;
        r.register(
            "gatehouse_config_reloads",
            "Config reloads, by result (ok, failed)",
            e.reloads.clone(),
        );
        r.register(
            "gatehouse_config_last_reload_timestamp_seconds",
            "Unix time of the last reload attempt",
            e.last_reload.clone(),
        );
        r.register(
            "gatehouse_acme_orders",
            "ACME orders placed",
            e.acme_orders.clone(),
        );
        r.register(
            "gatehouse_acme_failures",
            "ACME orders that failed",
            e.acme_failures.clone(),
        );
        r.register(
            "gatehouse_access_log_dropped_lines",
            "Access log lines dropped because the writer fell behind",
            e.access_log_dropped.clone(),
        );
        // Process metrics carry their conventional names, without the prefix.
        m.gauges.process.register(r);
        m
    }

    /// A route's request counters, one per status class and protocol (for requests that matched no route,
    /// `site` and `route` are empty).
    pub fn route(&self, site: &str, route: &str) -> RouteMetrics {
        let counter = |class: &'static str, protocol: &'static str| {
            self.requests
                .get_or_create(&RequestLabels {
                    site: site.to_string(),
                    route: route.to_string(),
                    class,
                    protocol,
                })
                .clone()
        };
        RouteMetrics {
            requests: CLASSES.map(|c| PROTOCOLS.map(|p| counter(c, p))),
            in_flight: self.in_flight.clone(),
        }
    }

    /// The 429s of one route's rate limit.
    pub fn rate_limited(&self, site: &str, route: &str) -> Counter {
        self.rate_limited
            .get_or_create(&RouteLabels {
                site: site.to_string(),
                route: route.to_string(),
            })
            .clone()
    }

    /// Responses compressed with `codec` ("zstd", "br", "gzip").
    pub fn compressed(&self, codec: &'static str) -> Counter {
        self.compressed
            .get_or_create(&CodecLabels { codec })
            .clone()
    }

    pub fn site(&self, site: &str) -> SiteMetrics {
        let l = SiteLabels {
            site: site.to_string(),
        };
        SiteMetrics {
            duration: self.request_duration.get_or_create(&l).clone(),
            bytes_in: self.request_bytes.get_or_create(&l).clone(),
            bytes_out: self.response_bytes.get_or_create(&l).clone(),
        }
    }

    pub fn pool(&self, pool: &str) -> PoolMetrics {
        let l = PoolLabels {
            pool: pool.to_string(),
        };
        PoolMetrics {
            connect: self.upstream_connect.get_or_create(&l).clone(),
            response: self.upstream_response.get_or_create(&l).clone(),
        }
    }

    pub fn server(&self, pool: &str, server: &str) -> ServerMetrics {
        let l = ServerLabels {
            pool: pool.to_string(),
            server: server.to_string(),
        };
        ServerMetrics {
            selections: self.server_selections.get_or_create(&l).clone(),
            failures: self.server_failures.get_or_create(&l).clone(),
            retries: self.server_retries.get_or_create(&l).clone(),
            ejections: self.server_ejections.get_or_create(&l).clone(),
            latency: Histogram::default(),
            last_error: Mutex::new(None),
        }
    }

    /// A stream's byte counters.
    pub fn stream(&self, stream: &str) -> StreamMetrics {
        let c = |direction| {
            self.stream_bytes
                .get_or_create(&StreamLabels {
                    stream: stream.to_string(),
                    direction,
                })
                .clone()
        };
        StreamMetrics {
            bytes_in: c("in"),
            bytes_out: c("out"),
        }
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool, unix_seconds: i64) {
        let result = if ok { "ok" } else { "failed" };
        self.events
            .reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        self.events.last_reload.set(unix_seconds);
    }

    /// The OpenMetrics text of every family, after `refresh` filled the state gauges (cleared first, so a
    /// server or certificate that is gone is not shown).
    pub fn encode(&self, refresh: impl FnOnce(&StateGauges)) -> String {
        let g = &self.gauges;
        g.connections_open.clear();
        g.connections_parked.clear();
        g.server_up.clear();
        g.server_in_flight.clear();
        g.server_admin_state.clear();
        g.server_weight.clear();
        g.cert_expiry.clear();
        g.process.refresh();
        refresh(g);
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A route's counters: `requests[class][protocol]` (see [`CLASSES`], [`PROTOCOLS`]).
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    requests: [[Counter; 3]; 5],
    in_flight: Gauge,
}

impl RouteMetrics {
    /// Counts a request with `status` over `protocol` (an index in [`PROTOCOLS`]).
    pub fn count(&self, status: u16, protocol: usize) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.requests[class][protocol.min(2)].inc();
    }

    /// The request counters of one status class, all protocols together (for tests and status pages).
    pub fn class_total(&self, class: usize) -> u64 {
        self.requests[class.min(4)].iter().map(Counter::get).sum()
    }

    /// A request started (its end calls [`RouteMetrics::request_ended`]); shared by every route.
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    pub fn request_ended(&self) {
        self.in_flight.dec();
    }
}

/// A site's duration histogram and byte counters.
#[derive(Debug, Clone)]
pub struct SiteMetrics {
    pub duration: Histogram,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

/// A stream's bytes: in = client to server, out = server to client.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    pub bytes_in: Counter,
    pub bytes_out: Counter,
}

/// A pool's upstream timings.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    pub connect: Histogram,
    pub response: Histogram,
}

/// One server of one pool: its counters, the latency the status page shows, and its last error.
#[derive(Debug)]
pub struct ServerMetrics {
    pub selections: Counter,
    pub failures: Counter,
    pub retries: Counter,
    pub ejections: Counter,
    /// Response-head latency of this server's tries (for the status page's p99; not exported).
    pub latency: Histogram,
    /// Set on failures only (rare), read by the status page.
    last_error: Mutex<Option<Box<str>>>,
}

impl ServerMetrics {
    pub fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.into());
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
            .map(str::to_string)
    }
}

/// A gauge that is set from a count kept elsewhere.
pub fn set_gauge(g: &Gauge, v: impl TryInto<i64>) {
    g.set(v.try_into().unwrap_or(i64::MAX));
}

/// A counter that mirrors a count kept elsewhere (it only ever rises there).
pub fn set_counter(c: &Counter, v: u64) {
    c.inner().store(v, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_count_into_the_families_they_came_from() {
        let m = Metrics::new();
        let r = m.route("a.test", "/api/");
        for _ in 0..3 {
            r.count(200, 1);
        }
        r.count(502, 2);
        let again = m.route("a.test", "/api/");
        assert_eq!(again.class_total(1), 3, "the same series, built twice");
        m.site("a.test")
            .duration
            .record(std::time::Duration::from_millis(3));
        let text = m.encode(|_| {});
        assert!(text.contains("# TYPE gatehouse_requests counter"), "{text}");
        assert!(
            text.contains(
                r#"gatehouse_requests_total{site="a.test",route="/api/",class="2xx",protocol="http/1.1"} 3"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"gatehouse_requests_total{site="a.test",route="/api/",class="5xx",protocol="h2"} 1"#
        ));
        assert!(text.contains("# TYPE gatehouse_request_duration_seconds histogram"));
        assert!(
            text.contains(
                r#"gatehouse_request_duration_seconds_bucket{le="0.005",site="a.test"} 1"#
            ) || text.contains(
                r#"gatehouse_request_duration_seconds_bucket{site="a.test",le="0.005"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
