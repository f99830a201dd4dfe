//! Smooth weighted round-robin, as nginx does it: weights 5:1:1 give `a a b a c a a`, never `a a a a a b c`.
//!
//! The whole sequence (one period, sum of weights / their gcd) is computed once when the snapshot is
//! compiled; a request then costs one atomic increment. An ineligible server's turn passes to whoever holds
//! the next turn, so the others keep their relative shares.
//!
//! nginx's algorithm costs (servers × period) to unroll, which a very large pool cannot pay (100,000 servers
//! of weight up to 1000). Past [`EXACT_WORK`], the period is built instead by ordering every server's turns
//! at the middle of its share ((k + ½) / weight): just as smooth, O(period · log period); and past
//! [`MAX_PERIOD`] turns the weights are scaled down in proportion, so the state stays bounded.

use crate::{Balancer, Member};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

#[derive(Debug)]
pub struct RoundRobin {
    sequence: Vec<u32>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(members: &[Member]) -> Self {
        RoundRobin {
            sequence: smooth_sequence(&members.iter().map(|m| m.weight).collect::<Vec<_>>()),
            next: AtomicUsize::new(0),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(
        &self,
        _members: &[Member],
        _key: u64,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let len = self.sequence.len();
        if len == 0 {
            return None;
        }
        // Each skip takes the next turn from the shared counter (rather than looking at the following entry), so
        // while a server is out its turns are spread over all the others, not all given to its successor.
        (0..len)
            .map(|_| self.sequence[self.next.fetch_add(1, Relaxed) % len] as usize)
            .find(|&i| eligible(i))
    }
}

/// The most (servers × period) steps nginx's exact unrolling may take.
pub const EXACT_WORK: u64 = 1 << 22;
/// The longest period kept; heavier pools have their weights scaled down to fit.
pub const MAX_PERIOD: u64 = 1 << 20;

/// One period of smooth weighted round-robin.
fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let total: u64 = weights.iter().map(|&x| u64::from(x / g)).sum();
    if total.saturating_mul(weights.len() as u64) <= EXACT_WORK {
        return nginx_sequence(weights, g);
    }
    let scale = if total > MAX_PERIOD {
        MAX_PERIOD as f64 / total as f64
    } else {
        1.0
    };
    let w: Vec<u64> = weights
        .iter()
        .map(|&x| ((f64::from(x / g) * scale).round() as u64).max(1))
        .collect();
    spread_sequence(&w)
}

/// Every server's k-th turn at (k + ½) / weight of the period, in that order (ties by position).
fn spread_sequence(w: &[u64]) -> Vec<u32> {
    let mut turns: Vec<(u64, u64, u32)> = Vec::with_capacity(w.iter().sum::<u64>() as usize);
    for (i, &wi) in w.iter().enumerate() {
        for k in 0..wi {
            turns.push((2 * k + 1, 2 * wi, i as u32));
        }
    }
    // Compare a/b < c/d as a·d < c·b, exactly.
    turns.sort_unstable_by(|&(a, b, i), &(c, d, j)| {
        (u128::from(a) * u128::from(d))
            .cmp(&(u128::from(c) * u128::from(b)))
            .then(i.cmp(&j))
    });
    turns.into_iter().map(|(_, _, i)| i).collect()
}

/// nginx's smooth weighted round-robin over one period.
fn nginx_sequence(weights: &[u32], g: u32) -> Vec<u32> {
    let w: Vec<i64> = weights.iter().map(|&x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, wi) in current.iter_mut().zip(&w) {
            *c += wi;
        }
        let best = (0..w.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        current[best] -= total;
        seq.push(best as u32);
    }
    seq
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(weights: &[u32]) -> Vec<Member> {
        crate::testing::members(weights, 1)
    }

    fn picks(weights: &[u32], n: usize) -> Vec<usize> {
        let m = members(weights);
        let rr = RoundRobin::new(&m);
        (0..n).map(|_| rr.pick(&m, 0, &|_| true).unwrap()).collect()
    }

    #[test]
    fn equal_weights_rotate_in_order() {
        assert_eq!(picks(&[1, 1, 1], 7), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn nginx_smooth_sequence_for_5_1_1() {
        assert_eq!(picks(&[5, 1, 1], 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weights_1_3_give_exactly_one_in_four() {
        let p = picks(&[1, 3], 400);
        for window in p.chunks(4) {
            assert_eq!(window.iter().filter(|&&i| i == 0).count(), 1, "{window:?}");
        }
    }

    #[test]
    fn a_huge_pool_is_spread_smoothly_in_bounded_state() {
        // 100,000 servers, weights 1..=1000: unrolling nginx's way would take ~5·10^12 steps.
        let weights: Vec<u32> = (0..100_000u32).map(|i| 1 + i % 1000).collect();
        let seq = smooth_sequence(&weights);
        assert!(
            seq.len() as u64 <= MAX_PERIOD + weights.len() as u64,
            "{}",
            seq.len()
        );
        // Every server has turns, the heavy ones about 1000 times the light ones'.
        let mut count = vec![0u32; weights.len()];
        for &i in &seq {
            count[i as usize] += 1;
        }
        assert!(count.iter().all(|&c| c > 0));
        assert!(count[999] > 10 * count[0], "{} vs {}", count[999], count[0]);
        // Smooth: two servers of weight 1 and 3 in a spread period give one in four.
        assert_eq!(spread_sequence(&[1, 3]), vec![1, 0, 1, 1]);
    }

    #[test]
    fn common_factors_do_not_lengthen_the_period() {
        assert_eq!(smooth_sequence(&[200, 600]).len(), 4);
    }

    #[test]
    fn ineligible_servers_are_skipped_keeping_the_rest_in_turn() {
        let m = members(&[1, 1, 1]);
        let rr = RoundRobin::new(&m);
        let got: Vec<usize> = (0..6)
            .map(|_| rr.pick(&m, 0, &|i| i != 1).unwrap())
            .collect();
        assert!(got.iter().all(|&i| i != 1));
        assert_eq!(got.iter().filter(|&&i| i == 0).count(), 3, "{got:?}");
        assert!(rr.pick(&m, 0, &|_| false).is_none());
    }
}
