//! What changed between two configs, as data: a reload logs it, tests assert on it.

use crate::model::{Config, HostPattern, Server, Site};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    ListenerAdded {
        name: String,
        bind: std::net::SocketAddr,
    },
    ListenerRemoved {
        name: String,
        bind: std::net::SocketAddr,
    },
    /// Same bind address, another name or TLS setting (the socket is kept).
    ListenerChanged {
        name: String,
        bind: std::net::SocketAddr,
    },
    PoolAdded(String),
    PoolRemoved(String),
    PoolChanged(String),
    /// Streams are named by their name.
    StreamAdded(String),
    StreamRemoved(String),
    StreamChanged(String),
    /// Sites are named by their first host.
    SiteAdded(String),
    SiteRemoved(String),
    SiteChanged(String),
    /// A `[server]` setting; `restart` when it only takes effect on restart.
    ServerSetting {
        key: &'static str,
        restart: bool,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::ListenerAdded { name, bind } => write!(f, "+listener {name} ({bind})"),
            Change::ListenerRemoved { name, bind } => write!(f, "-listener {name} ({bind})"),
            Change::ListenerChanged { name, bind } => write!(f, "~listener {name} ({bind})"),
            Change::ServerSetting { key: "acme", .. } => {
                write!(
                    f,
                    "~acme (its settings apply on restart; ACME sites apply now)"
                )
            }
            Change::PoolAdded(p) => write!(f, "+pool {p}"),
            Change::PoolRemoved(p) => write!(f, "-pool {p}"),
            Change::PoolChanged(p) => write!(f, "~pool {p}"),
            Change::StreamAdded(s) => write!(f, "+stream {s}"),
            Change::StreamRemoved(s) => write!(f, "-stream {s}"),
            Change::StreamChanged(s) => write!(f, "~stream {s}"),
            Change::SiteAdded(s) => write!(f, "+site {s}"),
            Change::SiteRemoved(s) => write!(f, "-site {s}"),
            Change::SiteChanged(s) => write!(f, "~site {s}"),
            Change::ServerSetting {
                key,
                restart: false,
            } => write!(f, "~server.{key}"),
            Change::ServerSetting { key, restart: true } => {
                write!(f, "~server.{key} (applies on restart)")
            }
        }
    }
}

fn site_name(s: &Site) -> String {
    match s.hosts.first() {
        Some(HostPattern::Exact(h)) => h.clone(),
        Some(HostPattern::Wildcard(suffix)) => format!("*{suffix}"),
        None => "(no host)".into(),
    }
}

/// The changes that turn `old` into `new`, in a stable order.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    for l in &new.listeners {
        match old.listeners.iter().find(|o| o.bind == l.bind) {
            None => out.push(Change::ListenerAdded {
                name: l.name.clone(),
                bind: l.bind,
            }),
            Some(o) if o != l => out.push(Change::ListenerChanged {
                name: l.name.clone(),
                bind: l.bind,
            }),
            Some(_) => {}
        }
    }
    for l in &old.listeners {
        if !new.listeners.iter().any(|n| n.bind == l.bind) {
            out.push(Change::ListenerRemoved {
                name: l.name.clone(),
                bind: l.bind,
            });
        }
    }
    for (name, pool) in &new.pools {
        match old.pools.get(name) {
            None => out.push(Change::PoolAdded(name.clone())),
            Some(o) if o != pool => out.push(Change::PoolChanged(name.clone())),
            Some(_) => {}
        }
    }
    for name in old.pools.keys().filter(|n| !new.pools.contains_key(*n)) {
        out.push(Change::PoolRemoved(name.clone()));
    }
    for st in &new.streams {
        match old.streams.iter().find(|o| o.name == st.name) {
            None => out.push(Change::StreamAdded(st.name.clone())),
            Some(o) if o != st => out.push(Change::StreamChanged(st.name.clone())),
            Some(_) => {}
        }
    }
    for st in &old.streams {
        if !new.streams.iter().any(|n| n.name == st.name) {
            out.push(Change::StreamRemoved(st.name.clone()));
        }
    }
    for site in &new.sites {
        let name = site_name(site);
        match old.sites.iter().find(|o| site_name(o) == name) {
            None => out.push(Change::SiteAdded(name)),
            Some(o) if o != site => out.push(Change::SiteChanged(name)),
            Some(_) => {}
        }
    }
    for site in &old.sites {
        let name = site_name(site);
        if !new.sites.iter().any(|n| site_name(n) == name) {
            out.push(Change::SiteRemoved(name));
        }
    }
    // Destructured without `..`: a new `[server]` key does not compile until it is diffed here, so a reload
    // never calls a changed file "the same".
    let Server {
        admin,
        log_level,
        access_log,
        access_log_format,
        grace_period,
        workers,
        admin_token,
        trusted_proxies,
        header_read_timeout,
        idle_timeout,
        max_header_size,
        tls_min_version,
        send_timeout,
        body_timeout,
        strict_sni,
        max_connections_per_worker,
        max_request_target,
        access_log_skip,
        access_log_sample,
        dns_servers,
    } = &old.server;
    let n = &new.server;
    let mut setting = |changed: bool, key: &'static str, restart: bool| {
        if changed {
            out.push(Change::ServerSetting { key, restart });
        }
    };
    setting(old.acme != new.acme, "acme", true);
    setting(
        *tls_min_version != n.tls_min_version,
        "tls_min_version",
        false,
    );
    setting(*workers != n.workers, "workers", true);
    setting(*log_level != n.log_level, "log_level", true);
    setting(*admin != n.admin, "admin", true);
    // Read by the admin listener on every request: a new token applies at once.
    setting(*admin_token != n.admin_token, "admin_token", false);
    setting(*access_log != n.access_log, "access_log", true);
    setting(
        *access_log_format != n.access_log_format,
        "access_log_format",
        false,
    );
    setting(*dns_servers != n.dns_servers, "dns_servers", true);
    setting(
        *access_log_skip != n.access_log_skip || *access_log_sample != n.access_log_sample,
        "access_log_skip",
        false,
    );
    setting(
        *trusted_proxies != n.trusted_proxies,
        "trusted_proxies",
        false,
    );
    setting(*grace_period != n.grace_period, "grace_period", false);
    setting(
        *header_read_timeout != n.header_read_timeout,
        "header_read_timeout",
        false,
    );
    setting(*idle_timeout != n.idle_timeout, "idle_timeout", false);
    setting(
        *max_header_size != n.max_header_size,
        "max_header_size",
        false,
    );
    setting(*send_timeout != n.send_timeout, "send_timeout", false);
    setting(*body_timeout != n.body_timeout, "body_timeout", false);
    setting(*strict_sni != n.strict_sni, "strict_sni", false);
    setting(
        *max_connections_per_worker != n.max_connections_per_worker,
        "max_connections_per_worker",
        true,
    );
    setting(
        *max_request_target != n.max_request_target,
        "max_request_target",
        false,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const BASE: &str = r#"
[[listener]]
name = "http"
bind = "127.0.0.1:8080"
[[site]]
hosts = ["a.test"]
  [[site.route]]
  path = "/"
  pool = "web"
[pool.web]
servers = ["127.0.0.1:9001"]
"#;

    #[test]
    fn identical_configs_have_no_changes() {
        let a = parse(BASE, "a").unwrap();
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn listeners_pools_sites_and_settings_are_reported() {
        let a = parse(BASE, "a").unwrap();
        let edited = BASE
            .replace("127.0.0.1:8080", "127.0.0.1:8081")
            .replace("127.0.0.1:9001", "127.0.0.1:9002")
            + "[pool.api]\nservers = [\"127.0.0.1:9003\"]\n[server]\nworkers = 3\n[[site]]\nhosts = [\"*.b.test\"]\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n";
        let b = parse(&edited, "b").unwrap();
        let changes: Vec<String> = diff(&a, &b).iter().map(ToString::to_string).collect();
        assert_eq!(
            changes,
            [
                "+listener http (127.0.0.1:8081)",
                "-listener http (127.0.0.1:8080)",
                "+pool api",
                "~pool web",
                "+site *.b.test",
                "~server.workers (applies on restart)",
            ]
        );
    }

    /// A listener keeping its bind but changing name (or TLS settings) is a change, not "nothing to apply".
    #[test]
    fn a_renamed_listener_on_the_same_bind_is_a_change() {
        let base = "[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:8080\"\n[[site]]\nhosts = [\"x.test\"]\n  [[site.route]]\n  path = \"/\"\n  respond = \"x\"\n";
        let old = parse(base, "a").unwrap();
        let new = parse(&base.replace("name = \"a\"", "name = \"b\""), "b").unwrap();
        let changes: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(changes, ["~listener b (127.0.0.1:8080)"]);
        let tls13 = parse(&format!("[server]\ntls_min_version = \"1.3\"\n{base}"), "c").unwrap();
        let changes: Vec<String> = diff(&old, &tls13).iter().map(ToString::to_string).collect();
        assert_eq!(changes, ["~server.tls_min_version"]);
    }

    #[test]
    fn every_server_key_counts_as_a_change() {
        let a = parse(BASE, "a").unwrap();
        for (line, key) in [
            ("send_timeout = \"5s\"", "~server.send_timeout"),
            ("body_timeout = \"5s\"", "~server.body_timeout"),
            ("strict_sni = true", "~server.strict_sni"),
            (
                "max_request_target = \"4KiB\"",
                "~server.max_request_target",
            ),
            (
                "max_connections_per_worker = 5000",
                "~server.max_connections_per_worker (applies on restart)",
            ),
        ] {
            let b = parse(&format!("{BASE}[server]\n{line}\n"), "b").unwrap();
            let changes: Vec<String> = diff(&a, &b).iter().map(ToString::to_string).collect();
            assert_eq!(changes, [key], "{line}");
        }
    }
}
