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
    entries: Mutex<HashMap<K, Weak<T>>>,
}

impl<T, K> Default for Registry<T, K> {
    fn default() -> Self {
        Registry {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T, K: Eq + Hash> Registry<T, K> {
    /// The live state for `addr`, created with `make` if no snapshot holds it any more.
    pub fn get_or_insert_with(&self, addr: K, make: impl FnOnce() -> T) -> Arc<T> {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = map.get(&addr).and_then(Weak::upgrade) {
            return live;
        }
        let fresh = Arc::new(make());
        map.insert(addr, Arc::downgrade(&fresh));
        map.retain(|_, w| w.strong_count() > 0);
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
}
