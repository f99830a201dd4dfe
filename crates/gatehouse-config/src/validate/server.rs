//! `[server]`: process-wide settings.

use super::Checker;
use crate::model::*;
use crate::raw::RawServer;
use std::net::SocketAddr;

/// Path prefixes for `access_log_skip` (server or site): each starts with `/`.
pub(super) fn skip_paths(
    c: &mut Checker,
    list: &[toml::Spanned<String>],
    key: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for p in list {
        if p.get_ref().starts_with('/') {
            out.push(p.get_ref().clone());
        } else {
            c.err(
                p.span(),
                key,
                format!("{:?}: a path prefix starts with \"/\"", p.get_ref()),
            );
        }
    }
    out
}

pub(super) fn check(c: &mut Checker, s: &RawServer) -> Server {
    let admin = s.admin.as_ref().and_then(|a| {
        let text = a.get_ref().trim();
        if text.is_empty() {
            return None;
        }
        text.parse::<SocketAddr>()
            .map_err(|_| {
                c.err(
                    a.span(),
                    "server.admin",
                    format!("{text:?} is not an ip:port address (e.g. \"127.0.0.1:9901\")"),
                )
            })
            .ok()
    });
    let access_log = match s.access_log.as_ref().map(|v| v.get_ref().as_str()) {
        None | Some("stdout") => AccessLog::Stdout,
        Some("off") => AccessLog::Off,
        Some(path) => AccessLog::File(path.into()),
    };
    let access_log_format = match &s.access_log_format {
        None => AccessLogFormat::Combined,
        Some(f) => match f.get_ref().as_str() {
            "combined" => AccessLogFormat::Combined,
            "json" => AccessLogFormat::Json,
            other => {
                c.err(
                    f.span(),
                    "server.access_log_format",
                    format!("{other:?}: expected \"combined\" or \"json\""),
                );
                AccessLogFormat::Combined
            }
        },
    };
    let workers = match &s.workers {
        None => 0,
        Some(w) => usize::try_from(*w.get_ref()).unwrap_or_else(|_| {
            c.err(
                w.span(),
                "server.workers",
                "must be 0 (one per core) or a positive number",
            );
            0
        }),
    };
    let tls_min_version = s.tls_min_version.as_ref().map_or(TlsVersion::Tls12, |v| {
        c.tls_version(v, "server.tls_min_version")
    });
    let mut max_header_size = c
        .size(&s.max_header_size, "server.max_header_size")
        .map_or(defaults::MAX_HEADER_SIZE as u64, |n| n);
    if let Some(v) = &s.max_header_size {
        if max_header_size < 8192 {
            c.err(v.span(), "server.max_header_size", "must be at least 8KiB");
        } else if max_header_size > defaults::MAX_HEADER_SIZE_LIMIT as u64 {
            c.err(v.span(), "server.max_header_size", "must be at most 16MiB");
            max_header_size = defaults::MAX_HEADER_SIZE as u64;
        }
    }
    let max_header_size = max_header_size as usize;
    let max_request_target = c
        .size(&s.max_request_target, "server.max_request_target")
        .map_or(defaults::MAX_REQUEST_TARGET as u64, |n| n);
    if let Some(v) = &s.max_request_target {
        if max_request_target < 256 || max_request_target > max_header_size as u64 {
            c.err(
                v.span(),
                "server.max_request_target",
                format!("must be between 256 bytes and max_header_size ({max_header_size} bytes)"),
            );
        }
    }
    let max_connections_per_worker = c.connection_cap(
        s.max_connections_per_worker.as_ref(),
        "server.max_connections_per_worker",
        "derived from the open-file limit",
    );
    let access_log_skip = s
        .access_log_skip
        .as_ref()
        .map_or_else(Vec::new, |l| skip_paths(c, l, "server.access_log_skip"));
    let access_log_sample = match &s.access_log_sample {
        None => 0,
        Some(v) => u32::try_from(*v.get_ref()).unwrap_or_else(|_| {
            c.err(
                v.span(),
                "server.access_log_sample",
                "must be 0 (skipped requests are never logged) or N (one in N is logged)",
            );
            0
        }),
    };
    let dns_servers = s
        .dns_servers
        .iter()
        .filter_map(|v| {
            let t = v.get_ref().trim();
            t.parse::<SocketAddr>()
                .or_else(|_| {
                    t.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    c.err(
                        v.span(),
                        "server.dns_servers",
                        format!("{t:?} is not an ip or ip:port (e.g. \"127.0.0.1:53\")"),
                    )
                })
                .ok()
        })
        .collect();
    Server {
        dns_servers,
        access_log_skip,
        access_log_sample,
        admin,
        log_level: match &s.log_level {
            None => defaults::LOG_LEVEL.into(),
            Some(l) => {
                if let Err(e) = check_log_level(l.get_ref()) {
                    c.err(l.span(), "server.log_level", e);
                }
                l.get_ref().clone()
            }
        },
        access_log,
        access_log_format,
        grace_period: c.duration(
            &s.grace_period,
            "server.grace_period",
            defaults::GRACE_PERIOD,
        ),
        workers,
        admin_token: s.admin_token.clone().filter(|t| !t.is_empty()),
        trusted_proxies: c.cidrs(&s.trusted_proxies, "server.trusted_proxies"),
        header_read_timeout: c.timeout(
            &s.header_read_timeout,
            "server.header_read_timeout",
            defaults::HEADER_READ_TIMEOUT,
        ),
        idle_timeout: c.timeout(
            &s.idle_timeout,
            "server.idle_timeout",
            defaults::IDLE_TIMEOUT,
        ),
        max_header_size,
        tls_min_version,
        send_timeout: c.timeout(
            &s.send_timeout,
            "server.send_timeout",
            defaults::SEND_TIMEOUT,
        ),
        body_timeout: c.timeout(
            &s.body_timeout,
            "server.body_timeout",
            defaults::BODY_TIMEOUT,
        ),
        strict_sni: s.strict_sni.as_ref().is_some_and(|v| *v.get_ref()),
        max_connections_per_worker,
        max_request_target: max_request_target as usize,
    }
}

/// A level ("info") or tracing directives ("warn,gatehouse_proxy=debug"): every level named must exist.
fn check_log_level(s: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit('=')
            .next()
            .unwrap_or(directive)
            .to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            return Err(format!(
                "{directive:?} is not a level (trace, debug, info, warn, error, off) or target=level"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{rejects, OK};
    use crate::parse;

    #[test]
    fn access_log_settings_reach_the_model() {
        let cfg = parse(
            &OK.replacen(
                "[[site]]\nhosts = [\"example.com\", \"*.example.org\"]",
                "[server]\naccess_log_skip = [\"/healthz\"]\naccess_log_sample = 10\n[[site]]\nhosts = [\"example.com\", \"*.example.org\"]\naccess_log = \"off\"\naccess_log_skip = []",
                1,
            ),
            "t.toml",
        )
        .unwrap();
        assert_eq!(cfg.server.access_log_skip, ["/healthz"]);
        assert_eq!(cfg.server.access_log_sample, 10);
        assert!(!cfg.sites[0].access_log);
        assert_eq!(cfg.sites[0].access_log_skip.as_deref(), Some(&[][..]));
        let plain = parse(OK, "t.toml").unwrap();
        assert!(plain.sites[0].access_log && plain.sites[0].access_log_skip.is_none());
    }

    #[test]
    fn bad_server_settings_name_their_line() {
        rejects(
            "bad log level",
            "[pool.web]",
            "[server]\nlog_level = \"loud\"\n[pool.web]",
            13,
            "not a level",
        );
        rejects(
            "admin by name",
            "[pool.web]",
            "[server]\nadmin = \"localhost:9901\"\n[pool.web]",
            13,
            "server.admin",
        );
        rejects(
            "huge header limit",
            "[pool.web]",
            "[server]\nmax_header_size = \"4GiB\"\n[pool.web]",
            13,
            "at most 16MiB",
        );
        rejects(
            "zero idle timeout",
            "[pool.web]",
            "[server]\nidle_timeout = \"0s\"\n[pool.web]",
            13,
            "must be longer than 0",
        );
        rejects(
            "a duration that overflows",
            "[pool.web]",
            "[server]\nsend_timeout = \"99999999999999y\"\n[pool.web]",
            13,
            "server.send_timeout",
        );
        rejects(
            "target longer than the head",
            "[pool.web]",
            "[server]\nmax_request_target = \"1MiB\"\n[pool.web]",
            13,
            "max_request_target",
        );
        rejects(
            "a skip path that is not a path",
            "[pool.web]",
            "[server]\naccess_log_skip = [\"/ok\", \"healthz\"]\n[pool.web]",
            13,
            "server.access_log_skip",
        );
        rejects(
            "a negative sample",
            "[pool.web]",
            "[server]\naccess_log_sample = -1\n[pool.web]",
            13,
            "server.access_log_sample",
        );
        rejects(
            "a site's access_log is on or off",
            "hosts = [\"example.com\", \"*.example.org\"]",
            "hosts = [\"example.com\", \"*.example.org\"]\naccess_log = \"/var/log/x\"",
            8,
            "\"on\" or \"off\"",
        );
        rejects(
            "small header limit",
            "[pool.web]",
            "[server]\nmax_header_size = \"1KiB\"\n[pool.web]",
            13,
            "at least 8KiB",
        );
    }

    #[test]
    fn workers_zero_is_left_for_start_up_to_resolve() {
        let cfg = parse(OK, "t.toml").unwrap();
        assert_eq!(cfg.server.workers, 0, "0 = one per core, resolved at start");
        let cfg = parse(&format!("[server]\nworkers = 3\n{OK}"), "t.toml").unwrap();
        assert_eq!(cfg.server.workers, 3);
    }
}
