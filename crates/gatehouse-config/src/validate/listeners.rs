//! `[[listener]]`: the sockets Gatehouse accepts on.

use super::Checker;
use crate::diagnostic::Diagnostic;
use crate::model::*;
use crate::raw::RawListener;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use toml::Spanned;

pub(super) fn check(
    c: &mut Checker,
    raw: &[Spanned<RawListener>],
    server_min: TlsVersion,
    have_trusted_proxies: bool,
) -> Vec<Listener> {
    if raw.is_empty() {
        c.diags.push(Diagnostic::new(
            None,
            "listener",
            "no [[listener]]: add one, e.g. [[listener]] name = \"http\" bind = \"0.0.0.0:80\"",
        ));
    }
    let mut names = HashSet::new();
    let mut binds = HashMap::new();
    let mut out = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let l = l.get_ref();
        let key = format!("listener[{i}]");
        if l.name.get_ref().trim().is_empty() {
            c.err(l.name.span(), format!("{key}.name"), "must not be empty");
        } else if !names.insert(l.name.get_ref().clone()) {
            c.err(
                l.name.span(),
                format!("{key}.name"),
                format!("duplicate listener name {:?}", l.name.get_ref()),
            );
        }
        let is_tls = l.tls.as_ref().is_some_and(|t| *t.get_ref());
        let min = l.tls_min_version.as_ref().map_or(server_min, |v| {
            c.tls_version(v, &format!("{key}.tls_min_version"))
        });
        if !is_tls {
            if let Some(v) = &l.tls_min_version {
                c.err(
                    v.span(),
                    format!("{key}.tls_min_version"),
                    "applies only to a listener with tls = true",
                );
            }
        }
        let max_connections = c.connection_cap(
            l.max_connections.as_ref(),
            &format!("{key}.max_connections"),
            "no limit",
        );
        let max_conns_per_ip = c.connection_cap(
            l.max_conns_per_ip.as_ref(),
            &format!("{key}.max_conns_per_ip"),
            "no limit",
        );
        let proxy_protocol = l.proxy_protocol.as_ref().is_some_and(|v| *v.get_ref());
        if proxy_protocol && !have_trusted_proxies {
            if let Some(v) = &l.proxy_protocol {
                c.err(
                    v.span(),
                    format!("{key}.proxy_protocol"),
                    "needs server.trusted_proxies: the load balancers whose PROXY header is believed",
                );
            }
        }
        match l.bind.get_ref().trim().parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some(prev) = binds.insert(addr, i) {
                    c.err(
                        l.bind.span(),
                        format!("{key}.bind"),
                        format!("{addr} is already bound by listener[{prev}]"),
                    );
                }
                out.push(Listener {
                    name: l.name.get_ref().clone(),
                    bind: addr,
                    tls: is_tls.then_some(min),
                    max_connections,
                    proxy_protocol,
                    max_conns_per_ip,
                });
            }
            Err(_) => c.err(
                l.bind.span(),
                format!("{key}.bind"),
                format!(
                    "{:?} is not an ip:port address (e.g. \"0.0.0.0:80\", \"[::]:443\")",
                    l.bind.get_ref()
                ),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{errors, rejects, OK};

    #[test]
    fn binds_are_ip_and_port() {
        rejects(
            "bad bind",
            "bind = \"127.0.0.1:8080\"",
            "bind = \"localhost\"",
            4,
            "listener[0].bind",
        );
        rejects(
            "tls_min_version on plain",
            "bind = \"127.0.0.1:8080\"",
            "bind = \"127.0.0.1:8080\"\ntls_min_version = \"1.3\"",
            5,
            "only to a listener with tls",
        );
    }

    #[test]
    fn proxy_protocol_needs_someone_to_believe() {
        rejects(
            "proxy_protocol without trusted proxies",
            "bind = \"127.0.0.1:8080\"",
            "bind = \"127.0.0.1:8080\"\nproxy_protocol = true",
            5,
            "needs server.trusted_proxies",
        );
        let ok = format!(
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n{}",
            OK.replace(
                "bind = \"127.0.0.1:8080\"",
                "bind = \"127.0.0.1:8080\"\nproxy_protocol = true\nmax_connections = 100"
            )
        );
        let cfg = crate::parse(&ok, "t").unwrap();
        assert!(cfg.listeners[0].proxy_protocol);
        assert_eq!(cfg.listeners[0].max_connections, 100);
    }

    #[test]
    fn connection_caps_are_bounded() {
        rejects(
            "negative max_connections",
            "bind = \"127.0.0.1:8080\"",
            "bind = \"127.0.0.1:8080\"\nmax_connections = -1",
            5,
            "listener[0].max_connections",
        );
        let e = errors(&format!(
            "[server]\nmax_connections_per_worker = 20000000\n{OK}"
        ));
        assert!(
            e.iter()
                .any(|e| e.contains("server.max_connections_per_worker")
                    && e.contains("open-file limit")),
            "{e:?}"
        );
    }

    #[test]
    fn names_and_binds_are_unique() {
        let dup = format!("{OK}\n[[listener]]\nname = \"http\"\nbind = \"127.0.0.1:8080\"\n");
        let e = errors(&dup);
        assert!(
            e.iter().any(|e| e.contains("duplicate listener name")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("already bound")), "{e:?}");
    }
}
