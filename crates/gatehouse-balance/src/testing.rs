//! Test support shared by the balancers' unit tests.

use crate::{Member, ServerState};
use std::sync::Arc;

/// Members with the given weights on 127.0.0.1, ports from `first_port` up, ids in order.
pub(crate) fn members(weights: &[u32], first_port: u16) -> Vec<Member> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Member {
            state: Arc::new(ServerState::new(
                format!("127.0.0.1:{}", usize::from(first_port) + i)
                    .parse()
                    .expect("address"),
            )),
            admin: Arc::default(),
            health: None,
            weight: w,
            id: i,
        })
        .collect()
}
