//! `max_conns_per_ip`: connections one client address holds open at once, on one listener or stream. Counted
//! when a connection is accepted (after its PROXY header, which names the real client) and before any TLS
//! work; the count falls when the connection's guard drops. The map is sharded so that accepts on several
//! workers rarely meet on one lock, and an address whose count reaches zero is removed (memory follows the
//! connections open, not the addresses ever seen).

use crate::rate_limit::client_key;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

#[derive(Debug)]
pub struct PerIpLimit {
    /// 0 = no limit (and nothing counted).
    max: AtomicUsize,
    shards: [Mutex<HashMap<u128, usize>>; SHARDS],
    refused: AtomicU64,
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub struct PerIpGuard {
    limit: Arc<PerIpLimit>,
    key: u128,
}

impl PerIpLimit {
    pub fn new(max: usize) -> Self {
        PerIpLimit {
            max: AtomicUsize::new(max),
            shards: Default::default(),
            refused: AtomicU64::new(0),
        }
    }

    /// A reload's new limit; connections open now keep their places (and, when there was no limit before,
    /// were not counted: the new one counts from the next connection).
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Relaxed);
    }

    /// A place for a connection from `ip`: `Ok(None)` when there is no limit, `Err(())` when `ip` already
    /// holds the most it may.
    #[allow(clippy::result_unit_err)]
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Result<Option<PerIpGuard>, ()> {
        let max = self.max.load(Relaxed);
        if max == 0 {
            return Ok(None);
        }
        let key = client_key(ip, 128);
        let mut shard = self.shard(key);
        let n = shard.entry(key).or_insert(0);
        if *n >= max {
            drop(shard);
            self.refused.fetch_add(1, Relaxed);
            return Err(());
        }
        *n += 1;
        Ok(Some(PerIpGuard {
            limit: self.clone(),
            key,
        }))
    }

    /// Connections refused by this limit, ever.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Addresses holding a counted connection now.
    pub fn addresses(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn shard(&self, key: u128) -> std::sync::MutexGuard<'_, HashMap<u128, usize>> {
        let i = (key ^ (key >> 64) ^ (key >> 17)) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut shard = self.limit.shard(self.key);
        if let Some(n) = shard.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                shard.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_n_plus_first_is_refused_until_one_closes() {
        let l = Arc::new(PerIpLimit::new(2));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let g1 = l.try_open(a).unwrap();
        let _g2 = l.try_open(a).unwrap();
        assert!(l.try_open(a).is_err());
        assert!(
            l.try_open("127.0.0.3".parse().unwrap()).unwrap().is_some(),
            "another client"
        );
        drop(g1);
        assert!(l.try_open(a).unwrap().is_some());
        assert_eq!(l.refused(), 1);
    }

    #[test]
    fn closed_addresses_are_forgotten_and_no_limit_counts_nothing() {
        let l = Arc::new(PerIpLimit::new(1));
        for i in 0..1000u32 {
            drop(
                l.try_open(IpAddr::from(std::net::Ipv4Addr::from(i)))
                    .unwrap(),
            );
        }
        assert_eq!(l.addresses(), 0);
        l.set_max(0);
        assert!(l.try_open("10.0.0.1".parse().unwrap()).unwrap().is_none());
    }
}
