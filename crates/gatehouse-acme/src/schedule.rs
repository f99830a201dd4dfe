//! When to renew, and how long to wait after a failure. Pure functions, so the policy is tested alone.

use std::time::{Duration, SystemTime};

/// When a certificate should be renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewBefore {
    /// When a third of its lifetime is left (certmagic's rule; follows short lifetimes such as 47 days).
    Auto,
    /// When this much is left.
    Fixed(Duration),
}

/// How long before `not_after` renewal starts.
fn window(not_before: SystemTime, not_after: SystemTime, rule: RenewBefore) -> Duration {
    match rule {
        RenewBefore::Auto => {
            not_after
                .duration_since(not_before)
                .unwrap_or(Duration::ZERO)
                / 3
        }
        RenewBefore::Fixed(d) => d,
    }
}

/// Whether a certificate valid from `not_before` to `not_after` is due at `now`.
pub fn is_due(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    rule: RenewBefore,
) -> bool {
    not_after.duration_since(now).unwrap_or(Duration::ZERO) <= window(not_before, not_after, rule)
}

/// When it becomes due (for logs and sleeping).
pub fn due_at(not_before: SystemTime, not_after: SystemTime, rule: RenewBefore) -> SystemTime {
    not_after
        .checked_sub(window(not_before, not_after, rule))
        .unwrap_or(not_before)
}

/// Exponential backoff after `failures` consecutive failures: `initial`, doubled each time, capped.
pub fn backoff(failures: u32, initial: Duration, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    initial.saturating_mul(factor).min(cap)
}

/// Let's Encrypt states rate-limit retry times in the problem detail ("retry after 2025-01-01 00:00:00 UTC");
/// instant-acme does not expose the Retry-After header, so read that.
pub fn retry_after_from_detail(detail: &str, now: SystemTime) -> Option<Duration> {
    let at = detail.to_ascii_lowercase().find("retry after ")? + "retry after ".len();
    let text = detail.get(at..)?;
    let stamp: String = text.chars().take(19).collect(); // YYYY-MM-DD HH:MM:SS
    let parse = |s: &str, a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d) = (
        parse(&stamp, 0, 4)?,
        parse(&stamp, 5, 7)?,
        parse(&stamp, 8, 10)?,
    );
    let (h, mi, se) = (
        parse(&stamp, 11, 13)?,
        parse(&stamp, 14, 16)?,
        parse(&stamp, 17, 19)?,
    );
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?);
    when.duration_since(now).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn auto_renews_with_a_third_of_the_lifetime_left() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        assert!(!is_due(start, end, start + 59 * DAY, RenewBefore::Auto));
        assert!(is_due(start, end, start + 60 * DAY, RenewBefore::Auto));
        // A 47-day certificate renews with about 15.7 days left, not at a fixed 30.
        let end47 = start + 47 * DAY;
        assert!(!is_due(start, end47, start + 31 * DAY, RenewBefore::Auto));
        assert!(is_due(start, end47, start + 32 * DAY, RenewBefore::Auto));
        assert_eq!(due_at(start, end, RenewBefore::Auto), start + 60 * DAY);
    }

    #[test]
    fn a_fixed_window() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        assert!(!is_due(
            start,
            end,
            end - 31 * DAY,
            RenewBefore::Fixed(30 * DAY)
        ));
        assert!(is_due(
            start,
            end,
            end - 30 * DAY,
            RenewBefore::Fixed(30 * DAY)
        ));
        assert!(
            is_due(start, end, end + DAY, RenewBefore::Fixed(30 * DAY)),
            "expired is due"
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let m = Duration::from_secs(60);
        assert_eq!(backoff(1, m, DAY), m);
        assert_eq!(backoff(2, m, DAY), 2 * m);
        assert_eq!(backoff(5, m, DAY), 16 * m);
        assert_eq!(backoff(40, m, DAY), DAY);
    }

    #[test]
    fn retry_after_in_a_rate_limit_detail() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600); // 2025-01-01 00:00:00 UTC
        let d = "too many certificates (5) already issued for this exact set of domains: retry after 2025-01-01 01:30:00 UTC";
        assert_eq!(
            retry_after_from_detail(d, now),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(retry_after_from_detail("no hint here", now), None);
    }
}
