//! `[[stream]]`: L4 TCP port forwarding to a pool.

use super::Checker;
use crate::model::*;
use crate::raw::{RawPool, RawStream};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use toml::Spanned;

pub(super) fn check(
    c: &mut Checker,
    raw: &[Spanned<RawStream>],
    pools: &BTreeMap<String, Spanned<RawPool>>,
    listeners: &[Listener],
    have_trusted_proxies: bool,
) -> Vec<Stream> {
    let mut names = HashSet::new();
    let mut binds: HashSet<SocketAddr> = listeners.iter().map(|l| l.bind).collect();
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let s = s.get_ref();
        let key = format!("stream[{i}]");
        let name = s.name.get_ref().trim();
        if name.is_empty() {
            c.err(s.name.span(), format!("{key}.name"), "must not be empty");
        } else if !names.insert(name.to_string()) {
            c.err(
                s.name.span(),
                format!("{key}.name"),
                format!("duplicate stream name {name:?}"),
            );
        }
        let bind = match s.bind.get_ref().trim().parse::<SocketAddr>() {
            Ok(b) => {
                if !binds.insert(b) {
                    c.err(
                        s.bind.span(),
                        format!("{key}.bind"),
                        format!("{b} is already bound by a listener or another stream"),
                    );
                }
                Some(b)
            }
            Err(_) => {
                c.err(
                    s.bind.span(),
                    format!("{key}.bind"),
                    format!(
                        "{:?} is not an ip:port address (e.g. \"0.0.0.0:2201\")",
                        s.bind.get_ref()
                    ),
                );
                None
            }
        };
        match pools.get(s.pool.get_ref()) {
            None => c.err(
                s.pool.span(),
                format!("{key}.pool"),
                format!("no pool named {:?}", s.pool.get_ref()),
            ),
            Some(p) => {
                let p = p.get_ref();
                if p.tls.as_ref().is_some_and(|t| *t.get_ref()) || p.http2 == Some(true) {
                    c.err(
                        s.pool.span(),
                        format!("{key}.pool"),
                        "a stream's pool carries raw TCP: it cannot set tls or http2",
                    );
                }
                if p.health
                    .as_ref()
                    .is_some_and(|h| h.get_ref().path.is_some())
                {
                    c.err(s.pool.span(), format!("{key}.pool"), "an HTTP health check (a path) cannot probe a stream's servers: omit the path for a TCP connect check");
                }
            }
        }
        let proxy_protocol = match s.proxy_protocol.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "off")) => ProxyProtocolOut::Off,
            Some((_, "v1")) => ProxyProtocolOut::V1,
            Some((_, "v2")) => ProxyProtocolOut::V2,
            Some((v, other)) => {
                c.err(
                    v.span(),
                    format!("{key}.proxy_protocol"),
                    format!("{other:?}: expected \"off\", \"v1\" or \"v2\""),
                );
                ProxyProtocolOut::Off
            }
        };
        let access = AccessRules {
            site_allow: c.cidrs(&s.allow, &format!("{key}.allow")),
            site_deny: c.cidrs(&s.deny, &format!("{key}.deny")),
            route_allow: Vec::new(),
            route_deny: Vec::new(),
        };
        if let Some(v) = s.accept_proxy_protocol.as_ref().filter(|v| *v.get_ref()) {
            if !have_trusted_proxies {
                c.err(v.span(), format!("{key}.accept_proxy_protocol"), "needs server.trusted_proxies: the load balancers whose PROXY header is believed");
            }
        }
        let idle_timeout = c.timeout(
            &s.idle_timeout,
            &format!("{key}.idle_timeout"),
            defaults::STREAM_IDLE_TIMEOUT,
        );
        let max_connections = c.connection_cap(
            s.max_connections.as_ref(),
            &format!("{key}.max_connections"),
            "no limit of its own",
        );
        let max_conns_per_ip = c.connection_cap(
            s.max_conns_per_ip.as_ref(),
            &format!("{key}.max_conns_per_ip"),
            "no limit",
        );
        if let Some(bind) = bind {
            out.push(Stream {
                name: name.to_string(),
                bind,
                pool: s.pool.get_ref().clone(),
                access,
                idle_timeout,
                proxy_protocol,
                accept_proxy_protocol: s
                    .accept_proxy_protocol
                    .as_ref()
                    .is_some_and(|v| *v.get_ref()),
                max_connections,
                max_conns_per_ip,
            });
        }
    }
    out
}
