//! `rate_limit`: a token bucket per client address, as GCRA (the "theoretical arrival time" form of a token
//! bucket): one `u64` per client, updated with a compare-and-swap, so workers share the limiter without a lock
//! on the hot path. Clients live in a bounded concurrent cache (moka): at most `max_clients` at once, and a
//! client idle for longer than a full bucket takes to refill is forgotten — losslessly, since its bucket is
//! full again by then.

use gatehouse_config::RateLimit;
use moka::sync::Cache;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a request gets from its limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Within the burst but ahead of the rate, on a rule without `nodelay`: wait this long, then go.
    Wait(Duration),
    /// Beyond the burst: 429, and a token is back after this long.
    Refuse {
        retry_after: Duration,
    },
}

#[derive(Debug)]
pub struct Limiter {
    /// Nanoseconds between tokens (1 / rate).
    interval: u64,
    /// How far ahead of the rate a client may be (burst × interval).
    tolerance: u64,
    nodelay: bool,
    ipv6_prefix: u8,
    epoch: Instant,
    /// Per client key: its theoretical arrival time, in nanoseconds since `epoch`.
    clients: Cache<u128, Arc<AtomicU64>>,
    refused: AtomicU64,
}

impl Limiter {
    pub fn new(rule: &RateLimit) -> Self {
        let interval = (1e9 / rule.per_second).clamp(1.0, u64::MAX as f64 / 4.0) as u64;
        let tolerance = interval.saturating_mul(u64::from(rule.burst));
        // A client whose bucket is full again is the same as an unknown one.
        let refill = Duration::from_nanos(tolerance.saturating_add(interval))
            .max(Duration::from_secs(1))
            .min(Duration::from_secs(24 * 3600));
        Limiter {
            interval,
            tolerance,
            nodelay: rule.nodelay,
            ipv6_prefix: rule.ipv6_prefix,
            epoch: Instant::now(),
            clients: Cache::builder()
                .max_capacity(rule.max_clients)
                .time_to_idle(refill)
                .build(),
            refused: AtomicU64::new(0),
        }
    }

    pub fn check(&self, ip: IpAddr) -> Verdict {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(ip, now)
    }

    fn check_at(&self, ip: IpAddr, now: u64) -> Verdict {
        let cell = self.clients.get_with(client_key(ip, self.ipv6_prefix), || {
            Arc::new(AtomicU64::new(0))
        });
        let mut tat = cell.load(Relaxed);
        loop {
            let start = tat.max(now);
            let ahead = start - now;
            if ahead > self.tolerance {
                self.refused.fetch_add(1, Relaxed);
                return Verdict::Refuse {
                    retry_after: Duration::from_nanos(ahead - self.tolerance),
                };
            }
            match cell.compare_exchange_weak(tat, start + self.interval, Relaxed, Relaxed) {
                Ok(_) if ahead == 0 || self.nodelay => return Verdict::Go,
                Ok(_) => return Verdict::Wait(Duration::from_nanos(ahead)),
                Err(now_tat) => tat = now_tat,
            }
        }
    }

    /// Requests refused since the limiter was made (it lives across reloads while its rule is unchanged).
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Client addresses remembered now (after the cache's pending evictions are applied).
    pub fn clients(&self) -> u64 {
        self.clients.run_pending_tasks();
        self.clients.entry_count()
    }
}

/// IPv4 addresses are keyed whole, as their v4-mapped form (which no IPv6 client has once
/// [`gatehouse_config::canonical`] has turned mapped addresses into IPv4); IPv6 ones by their first `prefix`
/// bits.
pub fn client_key(ip: IpAddr, prefix: u8) -> u128 {
    match gatehouse_config::canonical(ip) {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            match prefix {
                0 => 0,
                p if p >= 128 => bits,
                p => bits & !(u128::MAX >> p),
            }
        }
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::RateScope;

    fn rule(per_second: f64, burst: u32, nodelay: bool) -> RateLimit {
        RateLimit {
            per_second,
            burst,
            nodelay,
            ipv6_prefix: 64,
            max_clients: 1000,
            scope: RateScope::Route,
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_burst_then_refusal_then_the_refill() {
        let l = Limiter::new(&rule(10.0, 4, true));
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = 10 * S;
        for i in 0..5 {
            assert_eq!(l.check_at(ip, t0), Verdict::Go, "request {i} of the bucket");
        }
        let Verdict::Refuse { retry_after } = l.check_at(ip, t0) else {
            panic!("the 6th is beyond the burst")
        };
        assert_eq!(
            retry_after,
            Duration::from_millis(100),
            "one token every 100 ms"
        );
        assert_eq!(
            l.check_at(ip, t0 + S / 10),
            Verdict::Go,
            "a token came back"
        );
        assert!(matches!(
            l.check_at(ip, t0 + S / 10),
            Verdict::Refuse { .. }
        ));
        // A second client has its own bucket.
        assert_eq!(l.check_at("127.0.0.3".parse().unwrap(), t0), Verdict::Go);
        assert_eq!(l.refused(), 2);
    }

    #[test]
    fn without_nodelay_the_burst_waits_its_turn() {
        let l = Limiter::new(&rule(10.0, 2, false));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(l.check_at(ip, S), Verdict::Go);
        assert_eq!(l.check_at(ip, S), Verdict::Wait(Duration::from_millis(100)));
        assert_eq!(l.check_at(ip, S), Verdict::Wait(Duration::from_millis(200)));
        assert!(matches!(l.check_at(ip, S), Verdict::Refuse { .. }));
    }

    #[test]
    fn ipv6_clients_share_their_prefix() {
        let a = client_key("2001:db8:1:2::1".parse().unwrap(), 64);
        let b = client_key("2001:db8:1:2:ffff::9".parse().unwrap(), 64);
        let c = client_key("2001:db8:1:3::1".parse().unwrap(), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            client_key("2001:db8::1".parse().unwrap(), 128),
            client_key("2001:db8::2".parse().unwrap(), 128)
        );
        assert_eq!(
            client_key("::ffff:10.0.0.1".parse().unwrap(), 64),
            client_key("10.0.0.1".parse().unwrap(), 64),
            "v4-mapped is v4"
        );
        assert_ne!(
            client_key("0.0.0.1".parse().unwrap(), 128),
            client_key("::1".parse().unwrap(), 128),
            "v4 keys never meet v6 ones"
        );
    }

    /// 100,000 distinct clients through a limiter that remembers 1,000: memory stays bounded.
    #[test]
    fn memory_is_bounded_under_many_clients() {
        let l = Limiter::new(&rule(1.0, 0, true));
        for i in 0..100_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert_eq!(l.check_at(ip, S), Verdict::Go);
        }
        let n = l.clients();
        assert!(n <= 1_000, "{n} clients remembered");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
