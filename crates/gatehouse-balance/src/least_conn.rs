//! Fewest in-flight requests relative to weight; ties rotate so equal servers share the load evenly.
//! In-flight counts live in [`crate::ServerState`], so they are shared by every pool naming the server and
//! survive reloads; upgraded connections (WebSocket) hold their count until they close.

use crate::{Balancer, Member};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct LeastConn {
    rotate: AtomicUsize,
}

impl LeastConn {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for LeastConn {
    fn pick(
        &self,
        members: &[Member],
        _key: u64,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = members.len();
        if n == 0 {
            return None;
        }
        let start = self.rotate.fetch_add(1, Relaxed) % n;
        let mut best: Option<(usize, usize)> = None; // (index, in_flight)
        for k in 0..n {
            let i = (start + k) % n;
            if !eligible(i) {
                continue;
            }
            let load = members[i].state.in_flight();
            // load_i / w_i < load_b / w_b, compared without division.
            let better = match best {
                None => true,
                Some((b, bload)) => {
                    (load as u128) * u128::from(members[b].weight)
                        < (bload as u128) * u128::from(members[i].weight)
                }
            };
            if better {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(weights: &[u32]) -> Vec<Member> {
        crate::testing::members(weights, 1)
    }

    #[test]
    fn picks_the_least_loaded() {
        let m = members(&[1, 1, 1]);
        let lc = LeastConn::new();
        let _busy: Vec<_> = (0..3)
            .map(|_| m[0].state.acquire())
            .chain([m[2].state.acquire()])
            .collect();
        for _ in 0..5 {
            assert_eq!(lc.pick(&m, 0, &|_| true), Some(1));
        }
    }

    #[test]
    fn ties_rotate() {
        let m = members(&[1, 1, 1]);
        let lc = LeastConn::new();
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[lc.pick(&m, 0, &|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn weight_scales_the_load() {
        let m = members(&[1, 3]);
        let lc = LeastConn::new();
        // Fill up as the balancer directs, holding every request: the weight-3 server ends up with 3x.
        let held: Vec<_> = (0..40)
            .map(|_| m[lc.pick(&m, 0, &|_| true).unwrap()].state.acquire())
            .collect();
        assert_eq!(m[0].state.in_flight(), 10);
        assert_eq!(m[1].state.in_flight(), 30);
        drop(held);
    }

    #[test]
    fn skips_ineligible() {
        let m = members(&[1, 1]);
        let lc = LeastConn::new();
        assert_eq!(lc.pick(&m, 0, &|i| i == 1), Some(1));
        assert_eq!(lc.pick(&m, 0, &|_| false), None);
    }
}
