//! A latency histogram whose `record` is two atomic adds.
//!
//! prometheus-client's own `Histogram` takes a write lock per observation; on the request path, with every
//! worker recording into the same site's histogram, that lock would be the one shared point of contention.
//! Here the buckets are fixed (the same for every latency Gatehouse measures) and each is an `AtomicU64`;
//! the sum is kept in microseconds. A scrape may see a count one observation ahead of the sum: harmless.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (an implicit `+Inf` bucket follows): from a fast local answer to
/// a slow upstream's timeout.
pub const BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// [`BOUNDS`] in microseconds, for the comparison on the hot path.
const BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

#[derive(Debug, Default)]
struct Inner {
    /// One per bound, then `+Inf`; each counts its own observations (not cumulative).
    buckets: [AtomicU64; 14],
    sum_us: AtomicU64,
}

/// A handle: cheap to clone, all clones record into the same buckets.
#[derive(Debug, Clone, Default)]
pub struct Histogram(Arc<Inner>);

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BOUNDS_US.len());
        self.0.buckets[i].fetch_add(1, Relaxed);
        self.0.sum_us.fetch_add(us, Relaxed);
    }

    /// The count of each bucket (not cumulative), `+Inf` last.
    pub fn buckets(&self) -> [u64; 14] {
        std::array::from_fn(|i| self.0.buckets[i].load(Relaxed))
    }

    pub fn count(&self) -> u64 {
        self.buckets().iter().sum()
    }

    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.0.sum_us.load(Relaxed))
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.buckets();
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(counts)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.sum().as_secs_f64(),
            counts.iter().sum(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_the_first_bucket_that_holds_it() {
        let h = Histogram::default();
        h.record(Duration::from_micros(999));
        h.record(Duration::from_millis(1));
        h.record(Duration::from_millis(7));
        h.record(Duration::from_secs(60));
        let b = h.buckets();
        assert_eq!(b[0], 2, "≤ 1 ms, the bound itself included");
        assert_eq!(b[3], 1, "7 ms is in (5 ms, 10 ms]");
        assert_eq!(b[13], 1, "over 10 s is +Inf");
        assert_eq!(h.count(), 4);
        assert_eq!(
            h.sum(),
            Duration::from_micros(999 + 1_000 + 7_000 + 60_000_000)
        );
    }
}
