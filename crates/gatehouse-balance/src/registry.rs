//! Per-server state keyed by address, shared by every snapshot that names the server.
//!
//! Snapshots hold `Arc`s; the registry holds `Weak`s, so state lives exactly as long as some snapshot (or an
//! in-flight request on an old snapshot) still uses the server. Only snapshot compilation touches the lock.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

/// Keyed by server address by default; any key that identifies a server (and how it is spoken to) works.
#[derive(Debug)]
pub struct Registry<T, K = SocketAddr> {
    entries: Mutex<Entries<K, T>>,
}

#[derive(Debug)]
struct Entries<K, T> {
    map: HashMap<K, Weak<T>>,
    /// Dead entries are swept when the map grows past this: amortized O(1) per insert, so compiling a
    /// 100,000-server pool is not O(n²).
    sweep_at: usize,
}

impl<T, K> Default for Registry<T, K> {
    fn default() -> Self {
        Registry {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                sweep_at: 64,
            }),
        }
    }
}

impl<T, K: Eq + Hash> Registry<T, K> {
    /// The live state for `addr`, created with `make` if no snapshot holds it any more.
    pub fn get_or_insert_with(&self, addr: K, make: impl FnOnce() -> T) -> Arc<T> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = entries.map.get(&addr).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = Arc::new(make());
        entries.map.insert(addr, Arc::downgrade(&fresh));
        if entries.map.len() > entries.sweep_at {
            entries.map.retain(|_, w| w.strong_count() > 0);
            entries.sweep_at = (entries.map.len() * 2).max(64);
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_address_same_state_while_held() {
        let r: Registry<u32> = Registry::default();
        let a = r.get_or_insert_with("127.0.0.1:1".parse().unwrap(), || 1);
        let b = r.get_or_insert_with("127.0.0.1:1".parse().unwrap(), || 2);
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        let c = r.get_or_insert_with("127.0.0.1:1".parse().unwrap(), || 3);
        assert_eq!(*c, 3, "dropped state is not resurrected");
    }

    #[test]
    fn dead_entries_are_swept_as_the_map_grows() {
        let r: Registry<u32, u32> = Registry::default();
        for i in 0..10_000 {
            drop(r.get_or_insert_with(i, || i));
        }
        let kept: Vec<_> = (0..10)
            .map(|i| r.get_or_insert_with(100_000 + i, || i))
            .collect();
        let len = r.entries.lock().unwrap().map.len();
        assert!(len < 1_000, "{len} entries for 10 live ones");
        drop(kept);
    }
}
