//! The listeners that are open, and the one place where a new config's listeners are compared with them.
//!
//! A listener is identified by its configured bind address (which may say port 0; `local` has the real one).
//! Its kind says what it serves; plain HTTP and TLS today, L4 streams and the admin API are kinds to come, so
//! that every kind's reload diff is this one.

use gatehouse_config::Config;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::sync::watch;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain HTTP/1.1 and h2c.
    Http,
    /// TLS, then HTTP/1.1 or h2 by ALPN.
    Tls,
}

/// A listener a config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub bind: SocketAddr,
    pub name: String,
    pub kind: Kind,
}

impl Wanted {
    /// Every listener `config` asks for.
    pub fn all(config: &Config) -> Vec<Wanted> {
        config
            .listeners
            .iter()
            .map(|l| Wanted {
                bind: l.bind,
                name: l.name.clone(),
                kind: if l.tls.is_some() {
                    Kind::Tls
                } else {
                    Kind::Http
                },
            })
            .collect()
    }
}

/// How the open listeners must change for a config.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// New bind addresses: bound before the new snapshot is swapped in (a failed bind changes nothing).
    pub open: Vec<Wanted>,
    /// Bind addresses no longer wanted: their accept loops stop after the swap; open connections finish.
    pub close: Vec<SocketAddr>,
    /// Same bind address, another name or kind: the socket is kept, the new settings apply with the snapshot.
    pub changed: Vec<Wanted>,
}

/// One open listening socket.
#[derive(Debug)]
pub struct Bound {
    pub wanted: Wanted,
    pub local: SocketAddr,
    /// Tells the listener's accept loops to stop.
    pub stop: watch::Sender<bool>,
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
                Some(b) if b.wanted != *w => d.changed.push(w.clone()),
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
        let _ = b.stop.send(true);
        Some(b)
    }

    /// Records a kept listener's new name and kind.
    pub fn update(&mut self, wanted: &Wanted) {
        if let Some(b) = self.bound.get_mut(&wanted.bind) {
            b.wanted = wanted.clone();
        }
    }

    /// Stops every listener (shutdown).
    pub fn close_all(&mut self) {
        for (_, b) in std::mem::take(&mut self.bound) {
            let _ = b.stop.send(true);
        }
    }

    /// The addresses actually bound, by configured bind address.
    pub fn local_addrs(&self) -> BTreeMap<SocketAddr, SocketAddr> {
        self.bound.iter().map(|(k, b)| (*k, b.local)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(bind: &str, name: &str, kind: Kind) -> Wanted {
        Wanted {
            bind: bind.parse().unwrap(),
            name: name.into(),
            kind,
        }
    }

    fn set(listeners: &[Wanted]) -> ListenerSet {
        let mut s = ListenerSet::default();
        for l in listeners {
            s.insert(Bound {
                wanted: l.clone(),
                local: l.bind,
                stop: watch::channel(false).0,
            });
        }
        s
    }

    #[test]
    fn diff_opens_closes_and_keeps_by_bind_address() {
        let s = set(&[
            w("127.0.0.1:80", "http", Kind::Http),
            w("127.0.0.1:443", "https", Kind::Tls),
            w("127.0.0.1:81", "old", Kind::Http),
        ]);
        let d = s.diff(&[
            w("127.0.0.1:80", "http", Kind::Http),
            w("127.0.0.1:443", "tls", Kind::Tls),
            w("127.0.0.1:8443", "new", Kind::Tls),
        ]);
        assert_eq!(d.open, [w("127.0.0.1:8443", "new", Kind::Tls)]);
        assert_eq!(d.close, ["127.0.0.1:81".parse::<SocketAddr>().unwrap()]);
        assert_eq!(d.changed, [w("127.0.0.1:443", "tls", Kind::Tls)]);
        assert_eq!(
            s.diff(&[w("127.0.0.1:80", "http", Kind::Tls)])
                .changed
                .len(),
            1,
            "kind change"
        );
    }

    #[test]
    fn closing_stops_the_accept_loops() {
        let mut s = ListenerSet::default();
        let (stop, rx) = watch::channel(false);
        let l = w("127.0.0.1:80", "http", Kind::Http);
        s.insert(Bound {
            wanted: l.clone(),
            local: l.bind,
            stop,
        });
        assert!(s.close(l.bind).is_some());
        assert!(*rx.borrow());
        assert!(s.local_addrs().is_empty());
    }
}
