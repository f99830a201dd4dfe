//! A pool's server choice: primary tier first, backup tier only when no primary is eligible; servers already
//! tried for this request, servers that are down (passive or active checks), and servers drained or disabled
//! on the admin API are never eligible (for every algorithm: ip_hash and least_conn route around them like
//! round_robin).

use crate::{
    ip_hash::IpHash, least_conn::LeastConn, round_robin::RoundRobin, ActiveHealth, AdminControl,
    Balancer, Health, Member, ServerState,
};
use std::sync::Arc;

/// Which algorithm a pool uses; config produces this, [`Selector::new`] turns it into a [`Balancer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    IpHash,
    LeastConn,
}

impl Algorithm {
    fn build(self, members: &[Member]) -> Box<dyn Balancer> {
        match self {
            Algorithm::RoundRobin => Box::new(RoundRobin::new(members)),
            Algorithm::IpHash => Box::new(IpHash::new(members)),
            Algorithm::LeastConn => Box::new(LeastConn::new()),
        }
    }
}

#[derive(Debug)]
struct Tier {
    members: Vec<Member>,
    balancer: Box<dyn Balancer>,
}

/// Servers already tried for one request, by (tier, index). Small and allocation-free for the usual retries.
#[derive(Debug, Default)]
pub struct Tried {
    inline: [(u8, u32); 4],
    len: usize,
    spill: Vec<(u8, u32)>,
}

impl Tried {
    fn contains(&self, t: u8, i: usize) -> bool {
        let i = i as u32;
        self.inline[..self.len.min(4)].contains(&(t, i)) || self.spill.contains(&(t, i))
    }

    fn push(&mut self, t: u8, i: usize) {
        if self.len < 4 {
            self.inline[self.len] = (t, i as u32);
        } else {
            self.spill.push((t, i as u32));
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One server as a pool's config and state describe it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub state: Arc<ServerState>,
    pub admin: Arc<AdminControl>,
    pub health: Option<Arc<ActiveHealth>>,
    pub weight: u32,
    pub backup: bool,
}

impl Entry {
    /// A server with a fresh admin control (tests, tools).
    pub fn new(state: Arc<ServerState>, weight: u32, backup: bool) -> Self {
        Entry {
            state,
            admin: Arc::default(),
            health: None,
            weight,
            backup,
        }
    }
}

#[derive(Debug)]
pub struct Selector {
    tiers: [Tier; 2],
    algorithm: Algorithm,
}

impl Selector {
    /// One entry per server of the pool, in config order.
    pub fn new(algorithm: Algorithm, servers: impl IntoIterator<Item = Entry>) -> Self {
        let (mut primary, mut backup) = (Vec::new(), Vec::new());
        for (id, e) in servers.into_iter().enumerate() {
            let is_backup = e.backup;
            let m = Member {
                state: e.state,
                admin: e.admin,
                health: e.health,
                weight: e.weight,
                id,
            };
            if is_backup {
                backup.push(m)
            } else {
                primary.push(m)
            }
        }
        let tier = |members: Vec<Member>| Tier {
            balancer: algorithm.build(&members),
            members,
        };
        Selector {
            tiers: [tier(primary), tier(backup)],
            algorithm,
        }
    }

    /// Every server, primaries then backups.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.tiers.iter().flat_map(|t| &t.members)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Picks the next server for a request and records it in `tried`. `None`: no server is eligible.
    ///
    /// Servers whose active health is unknown (not probed yet) are picked only when no server known to be up
    /// is left, in either tier: a new server joins once its first probe answers, unless it is all there is.
    pub fn select(&self, key: u64, tried: &mut Tried, now: u64) -> Option<&Member> {
        self.select_with(key, tried, now, false)
            .or_else(|| self.select_with(key, tried, now, true))
    }

    fn select_with(
        &self,
        key: u64,
        tried: &mut Tried,
        now: u64,
        allow_unknown: bool,
    ) -> Option<&Member> {
        for (t, tier) in self.tiers.iter().enumerate() {
            let t = t as u8;
            let eligible = |i: usize| {
                let m = &tier.members[i];
                let health = m.health.as_ref().map_or(Health::Up, |h| h.get());
                !tried.contains(t, i)
                    && m.admin.accepts()
                    && m.state.is_available(now)
                    && (health == Health::Up || (allow_unknown && health == Health::Unknown))
            };
            if let Some(i) = tier.balancer.pick(&tier.members, key, &eligible) {
                tried.push(t, i);
                return Some(&tier.members[i]);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{now_ms, AdminState};

    fn states(n: usize) -> Vec<Arc<ServerState>> {
        (0..n)
            .map(|i| {
                Arc::new(ServerState::new(
                    format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                ))
            })
            .collect()
    }

    #[test]
    fn backup_only_when_no_primary_is_available() {
        let s = states(3);
        let sel = Selector::new(
            Algorithm::RoundRobin,
            [
                Entry::new(s[0].clone(), 1, false),
                Entry::new(s[1].clone(), 1, false),
                Entry::new(s[2].clone(), 1, true),
            ],
        );
        for _ in 0..10 {
            let m = sel.select(0, &mut Tried::default(), now_ms()).unwrap();
            assert_ne!(m.state.addr(), s[2].addr());
        }
        let now = now_ms();
        s[0].record_failure(now, 1, 60_000);
        s[1].record_failure(now, 1, 60_000);
        let m = sel.select(0, &mut Tried::default(), now_ms()).unwrap();
        assert_eq!(m.state.addr(), s[2].addr());
        s[2].record_failure(now, 1, 60_000);
        assert!(sel.select(0, &mut Tried::default(), now_ms()).is_none());
    }

    #[test]
    fn retries_walk_every_server_once_then_stop() {
        let s = states(3);
        for alg in [
            Algorithm::RoundRobin,
            Algorithm::IpHash,
            Algorithm::LeastConn,
        ] {
            let sel = Selector::new(alg, s.iter().map(|x| Entry::new(x.clone(), 1, false)));
            let mut tried = Tried::default();
            let mut seen: Vec<_> = (0..3)
                .map(|_| sel.select(42, &mut tried, now_ms()).unwrap().state.addr())
                .collect();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 3, "{alg:?}");
            assert!(sel.select(42, &mut tried, now_ms()).is_none(), "{alg:?}");
        }
    }

    #[test]
    fn drained_and_disabled_servers_get_nothing_new_whatever_the_algorithm() {
        let s = states(3);
        for alg in [
            Algorithm::RoundRobin,
            Algorithm::IpHash,
            Algorithm::LeastConn,
        ] {
            let entries: Vec<Entry> = s.iter().map(|x| Entry::new(x.clone(), 1, false)).collect();
            let sel = Selector::new(alg, entries.clone());
            entries[0].admin.set_state(AdminState::Drain);
            entries[1].admin.set_state(AdminState::Disabled);
            for key in 0..50u64 {
                let m = sel.select(key, &mut Tried::default(), now_ms()).unwrap();
                assert_eq!(m.state.addr(), s[2].addr(), "{alg:?} key {key}");
            }
            entries[0].admin.set_state(AdminState::Active);
            let picked: std::collections::HashSet<_> = (0..50u64)
                .map(|k| {
                    sel.select(k, &mut Tried::default(), now_ms())
                        .unwrap()
                        .state
                        .addr()
                })
                .collect();
            assert!(picked.contains(&s[0].addr()), "{alg:?}: enabled again");
            assert!(!picked.contains(&s[1].addr()), "{alg:?}");
        }
    }

    #[test]
    fn active_health_takes_servers_out_and_unknown_ones_wait_for_a_known_good_one() {
        let s = states(3);
        let entries: Vec<Entry> = s
            .iter()
            .map(|x| Entry {
                health: Some(Arc::default()),
                ..Entry::new(x.clone(), 1, false)
            })
            .collect();
        let h = |i: usize| entries[i].health.clone().unwrap();
        let sel = Selector::new(Algorithm::RoundRobin, entries.clone());
        let pick = || {
            sel.select(0, &mut Tried::default(), now_ms())
                .map(|m| m.state.addr())
        };
        assert!(pick().is_some(), "all unknown: they serve (nothing better)");
        h(0).record(Ok(()), 1, 1);
        for _ in 0..10 {
            assert_eq!(
                pick(),
                Some(s[0].addr()),
                "the known-good one, not the unknown ones"
            );
        }
        h(1).record(Ok(()), 1, 1);
        h(0).record(Err("down".into()), 1, 1);
        for _ in 0..10 {
            assert_eq!(pick(), Some(s[1].addr()));
        }
        h(1).record(Err("down".into()), 1, 1);
        assert_eq!(pick(), Some(s[2].addr()), "only the unknown one is left");
        h(2).record(Err("down".into()), 3, 1);
        h(2).record(Err("down".into()), 3, 1);
        h(2).record(Err("down".into()), 3, 1);
        assert_eq!(pick(), None, "all down");
    }

    #[test]
    fn tried_spills_past_four() {
        let mut t = Tried::default();
        for i in 0..10 {
            t.push(0, i);
        }
        assert!((0..10).all(|i| t.contains(0, i)));
        assert!(!t.contains(1, 0));
        assert_eq!(t.len(), 10);
    }
}
