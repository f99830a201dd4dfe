//! Client affinity by weighted rendezvous hashing (HRW): each server scores `-weight / ln(hash(client, server))`
//! and the highest score wins. Removing a server remaps only the clients that were on it; a server that is
//! down or already tried is skipped and its clients spread over the rest in proportion to weight.

use crate::{Balancer, Member};

#[derive(Debug)]
pub struct IpHash {
    /// A stable hash of each member's address, computed once.
    seeds: Vec<u64>,
}

impl IpHash {
    pub fn new(members: &[Member]) -> Self {
        IpHash {
            seeds: members
                .iter()
                .map(|m| hash_bytes(m.state.addr().to_string().as_bytes()))
                .collect(),
        }
    }
}

impl Balancer for IpHash {
    fn pick(
        &self,
        members: &[Member],
        key: u64,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for (i, m) in members.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            // Map the mixed hash to (0, 1), never 0 or 1, so ln() is finite and negative.
            let h = mix(key ^ self.seeds[i]);
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -f64::from(m.weight) / u.ln();
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }
}

/// The affinity key of a client address: a stable hash of its bytes.
pub fn key_for_ip(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        std::net::IpAddr::V6(v6) => hash_bytes(&v6.octets()),
    }
}

/// FNV-1a: stable across builds and platforms (unlike std's DefaultHasher), so affinity survives upgrades.
fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn members(weights: &[u32]) -> Vec<Member> {
        crate::testing::members(weights, 9000)
    }

    fn client(i: u32) -> u64 {
        key_for_ip(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()))
    }

    #[test]
    fn same_client_same_server() {
        let m = members(&[1, 1, 1, 1]);
        let h = IpHash::new(&m);
        for c in 0..100 {
            let first = h.pick(&m, client(c), &|_| true);
            assert!((0..5).all(|_| h.pick(&m, client(c), &|_| true) == first));
        }
    }

    #[test]
    fn removing_a_server_remaps_only_its_clients() {
        let m = members(&[1, 1, 1, 1, 1]);
        let h = IpHash::new(&m);
        let removed = 2;
        let (mut moved, mut on_removed) = (0, 0);
        for c in 0..5000 {
            let before = h.pick(&m, client(c), &|_| true).unwrap();
            let after = h.pick(&m, client(c), &|i| i != removed).unwrap();
            if before == removed {
                on_removed += 1;
            } else if before != after {
                moved += 1;
            }
        }
        assert_eq!(moved, 0, "clients of other servers must stay put");
        assert!(on_removed > 700 && on_removed < 1300, "{on_removed}");
    }

    #[test]
    fn removal_from_a_rebuilt_pool_also_remaps_only_its_clients() {
        let m = members(&[1, 1, 1, 1]);
        let h = IpHash::new(&m);
        let fewer: Vec<Member> = m
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, x)| x.clone())
            .collect();
        let h2 = IpHash::new(&fewer);
        for c in 0..3000 {
            let before = m[h.pick(&m, client(c), &|_| true).unwrap()].state.addr();
            let after = fewer[h2.pick(&fewer, client(c), &|_| true).unwrap()]
                .state
                .addr();
            if before != m[1].state.addr() {
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn weights_set_the_share() {
        let m = members(&[1, 3]);
        let h = IpHash::new(&m);
        let on_heavy = (0..20_000)
            .filter(|&c| h.pick(&m, client(c), &|_| true) == Some(1))
            .count();
        let share = on_heavy as f64 / 20_000.0;
        assert!(
            (0.72..0.78).contains(&share),
            "share of the weight-3 server: {share}"
        );
    }

    #[test]
    fn spreads_evenly() {
        let m = members(&[1, 1, 1, 1]);
        let h = IpHash::new(&m);
        let mut counts = [0; 4];
        for c in 0..20_000 {
            counts[h.pick(&m, client(c), &|_| true).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&n| (4500..5500).contains(&n)),
            "{counts:?}"
        );
    }
}
