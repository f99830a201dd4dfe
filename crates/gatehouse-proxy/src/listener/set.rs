//! The listeners that are open, and the one place where a new config's listeners are compared with them.
//!
//! A listener is identified by its configured bind address (which may say port 0; `local` has the real one).
//! Its kind says what it serves: plain HTTP, TLS, or an L4 stream, so that every kind's reload diff is this
//! one (the admin listener is apart: it binds at start, on the control runtime).
//!
//! What a listener serves is fixed for the life of its accept loops: a connection's kind (TLS or not), its
//! limit and its PROXY header expectation come from the loop that accepted it, never from whichever snapshot
//! is current. A reload that changes them starts new loops on the same socket before the swap and stops the
//! old ones after it, so no connection is ever served as the other kind (a TLS port never answers plaintext).

use super::Limit;
use crate::signal::Trigger;
use gatehouse_config::{Config, TlsVersion};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain HTTP/1.1 and h2c.
    Http,
    /// TLS (with this lowest version), then HTTP/1.1 or h2 by ALPN.
    Tls(TlsVersion),
    /// L4 TCP forwarding (`[[stream]]`): bytes to a pool's server, no HTTP.
    Stream,
}

/// A listener a config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub bind: SocketAddr,
    pub name: String,
    pub kind: Kind,
    /// Client connections at once, all workers together; 0 = no limit of its own.
    pub max_connections: usize,
    /// A PROXY protocol header comes first.
    pub proxy_protocol: bool,
    /// Connections one client address may hold open; 0 = no limit.
    pub max_conns_per_ip: usize,
}

impl Wanted {
    /// Every listener `config` asks for.
    pub fn all(config: &Config) -> Vec<Wanted> {
        let http = config.listeners.iter().map(|l| Wanted {
            bind: l.bind,
            name: l.name.clone(),
            kind: l.tls.map_or(Kind::Http, Kind::Tls),
            max_connections: l.max_connections,
            proxy_protocol: l.proxy_protocol,
            max_conns_per_ip: l.max_conns_per_ip,
        });
        let streams = config.streams.iter().map(|s| Wanted {
            bind: s.bind,
            name: s.name.clone(),
            kind: Kind::Stream,
            max_connections: s.max_connections,
            proxy_protocol: s.accept_proxy_protocol,
            max_conns_per_ip: s.max_conns_per_ip,
        });
        http.chain(streams).collect()
    }

    /// Whether a kept socket can go on with its accept loops (only the name or the limit's size differs), or
    /// needs new ones.
    pub fn same_loops(&self, other: &Wanted) -> bool {
        self.kind == other.kind && self.proxy_protocol == other.proxy_protocol
    }
}

/// How the open listeners must change for a config.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// New bind addresses: bound before the new snapshot is swapped in (a failed bind changes nothing).
    pub open: Vec<Wanted>,
    /// Bind addresses no longer wanted: their accept loops stop after the swap; open connections finish.
    pub close: Vec<SocketAddr>,
    /// Same bind address, another name or `max_connections` only: the socket and its accept loops are kept
    /// (the limit is resized, its open connections still counted).
    pub updated: Vec<Wanted>,
    /// Same bind address, another kind or PROXY setting: the socket (and its limit) is kept, new accept loops
    /// start on it before the swap, the old ones stop after it.
    pub respawn: Vec<Wanted>,
}

/// One open listening socket.
#[derive(Debug)]
pub struct Bound {
    pub wanted: Wanted,
    pub local: SocketAddr,
    /// Kept to start new accept loops on (a reload that changes what the listener serves).
    pub sockets: super::Sockets,
    /// Tells the listener's accept loops to stop.
    pub stop: Trigger,
    /// Its `max_connections`, shared by all its accept loops, old and new.
    pub limit: Arc<Limit>,
}

/// One listener, for the status page and metrics.
#[derive(Debug, Clone)]
pub struct ListenerStatus {
    pub name: String,
    pub bind: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// An L4 stream, not HTTP.
    pub stream: bool,
    pub accepted: u64,
    pub open: usize,
    /// Of the open ones, idle HTTP/1 connections parked on their bare socket.
    pub parked: usize,
    /// Connections refused by `max_conns_per_ip`, ever.
    pub refused_per_ip: u64,
}

#[derive(Debug, Default)]
pub struct ListenerSet {
    bound: BTreeMap<SocketAddr, Bound>,
}

impl ListenerSet {
    /// What must change for `wanted` to be the open listeners.
    pub fn diff(&self, wanted: &[Wanted]) -> Diff {
        let mut d = Diff::default();
        for w in wanted {
            match self.bound.get(&w.bind) {
                None => d.open.push(w.clone()),
                Some(b) if !b.wanted.same_loops(w) => d.respawn.push(w.clone()),
                Some(b) if b.wanted != *w => d.updated.push(w.clone()),
                Some(_) => {}
            }
        }
        d.close = self
            .bound
            .keys()
            .filter(|a| !wanted.iter().any(|w| w.bind == **a))
            .copied()
            .collect();
        d
    }

    pub fn insert(&mut self, bound: Bound) {
        self.bound.insert(bound.wanted.bind, bound);
    }

    /// Stops the listener bound at `bind` (its accept loops end; open connections finish).
    pub fn close(&mut self, bind: SocketAddr) -> Option<Bound> {
        let b = self.bound.remove(&bind)?;
        b.stop.fire();
        Some(b)
    }

    /// Records a kept listener's new name and limit.
    pub fn update(&mut self, wanted: &Wanted) {
        if let Some(b) = self.bound.get_mut(&wanted.bind) {
            if b.wanted.max_connections != wanted.max_connections {
                b.limit.resize(wanted.max_connections);
            }
            b.limit.per_ip.set_max(wanted.max_conns_per_ip);
            b.wanted.name.clone_from(&wanted.name);
            b.wanted.max_connections = wanted.max_connections;
            b.wanted.max_conns_per_ip = wanted.max_conns_per_ip;
        }
    }

    /// The sockets and limit of the listener at `bind`, to start new accept loops on.
    pub fn loops_of(&self, bind: SocketAddr) -> Option<(super::Sockets, Arc<Limit>)> {
        self.bound
            .get(&bind)
            .map(|b| (b.sockets.clone(), b.limit.clone()))
    }

    /// Replaces the listener at `bind`'s accept loops (already started) and settings; the old loops stop.
    pub fn replace_loops(&mut self, wanted: &Wanted, stop: Trigger) {
        self.update(wanted);
        if let Some(b) = self.bound.get_mut(&wanted.bind) {
            let old = std::mem::replace(&mut b.stop, stop);
            old.fire();
            b.wanted = wanted.clone();
        }
    }

    /// Stops every listener (shutdown).
    pub fn close_all(&mut self) {
        for (_, b) in std::mem::take(&mut self.bound) {
            b.stop.fire();
        }
    }

    /// The addresses actually bound, by configured bind address.
    /// Each open listener with its connection counts.
    pub fn status(&self) -> Vec<ListenerStatus> {
        use std::sync::atomic::Ordering::Relaxed;
        self.bound
            .values()
            .map(|b| ListenerStatus {
                name: b.wanted.name.clone(),
                bind: b.wanted.bind,
                local: b.local,
                tls: matches!(b.wanted.kind, Kind::Tls(_)),
                stream: b.wanted.kind == Kind::Stream,
                accepted: b.limit.accepted.load(Relaxed),
                open: b.limit.open.load(Relaxed),
                parked: b.limit.parked.load(Relaxed),
                refused_per_ip: b.limit.per_ip.refused(),
            })
            .collect()
    }

    pub fn local_addrs(&self) -> BTreeMap<SocketAddr, SocketAddr> {
        self.bound.iter().map(|(k, b)| (*k, b.local)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS: Kind = Kind::Tls(TlsVersion::Tls12);

    fn w(bind: &str, name: &str, kind: Kind) -> Wanted {
        Wanted {
            bind: bind.parse().unwrap(),
            name: name.into(),
            kind,
            max_connections: 0,
            max_conns_per_ip: 0,
            proxy_protocol: false,
        }
    }

    fn bound(l: &Wanted, stop: Trigger) -> Bound {
        Bound {
            wanted: l.clone(),
            local: l.bind,
            sockets: Arc::new([std::net::TcpListener::bind("127.0.0.1:0").unwrap()]),
            stop,
            limit: Arc::new(Limit::new("max_connections", l.max_connections)),
        }
    }

    fn set(listeners: &[Wanted]) -> ListenerSet {
        let mut s = ListenerSet::default();
        for l in listeners {
            s.insert(bound(l, Trigger::new().0));
        }
        s
    }

    #[test]
    fn diff_opens_closes_and_keeps_by_bind_address() {
        let s = set(&[
            w("127.0.0.1:80", "http", Kind::Http),
            w("127.0.0.1:443", "https", TLS),
            w("127.0.0.1:81", "old", Kind::Http),
        ]);
        let d = s.diff(&[
            w("127.0.0.1:80", "http", Kind::Http),
            w("127.0.0.1:443", "tls", TLS),
            w("127.0.0.1:8443", "new", TLS),
        ]);
        assert_eq!(d.open, [w("127.0.0.1:8443", "new", TLS)]);
        assert_eq!(d.close, ["127.0.0.1:81".parse::<SocketAddr>().unwrap()]);
        assert_eq!(d.updated, [w("127.0.0.1:443", "tls", TLS)]);
        assert!(d.respawn.is_empty());
        let kind_change = s.diff(&[w("127.0.0.1:80", "http", TLS)]);
        assert_eq!(
            kind_change.respawn.len(),
            1,
            "plain → TLS: new accept loops"
        );
        let mut capped = w("127.0.0.1:80", "http", Kind::Http);
        capped.max_connections = 10;
        let d = s.diff(std::slice::from_ref(&capped));
        assert_eq!(
            (d.respawn.len(), d.updated),
            (0, vec![capped]),
            "a new limit: resized in place"
        );
    }

    #[test]
    fn closing_stops_the_accept_loops() {
        let mut s = ListenerSet::default();
        let (stop, stopped) = Trigger::new();
        let l = w("127.0.0.1:80", "http", Kind::Http);
        s.insert(bound(&l, stop));
        let closed = s.close(l.bind);
        assert!(
            stopped.is_fired(),
            "fired on close, before the bound listener is dropped"
        );
        assert!(closed.is_some());
        assert!(s.local_addrs().is_empty());
    }
}
