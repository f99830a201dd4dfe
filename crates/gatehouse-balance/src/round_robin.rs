//! Smooth weighted round-robin, as nginx does it: weights 5:1:1 give `a a b a c a a`, never `a a a a a b c`.
//!
//! The whole sequence (one period, sum of weights / their gcd) is computed once when the snapshot is
//! compiled; a request then costs one atomic increment. An ineligible server's turn passes to whoever holds
//! the next turn, so the others keep their relative shares.

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

/// nginx's smooth weighted round-robin over one period.
fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
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
