//! Wall-clock text for log lines, formatted once per second per thread: a log line costs a copy of the
//! cached text, not a calendar computation.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;

struct Cache {
    second: u64,
    /// `01/Dec/2026:23:54:32 +0000` (nginx's `$time_local`, in UTC).
    local: String,
    /// `2026-12-01T23:54:32` (the seconds of RFC 3339; milliseconds and `Z` are appended per line).
    iso: String,
}

thread_local!(static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) });

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn fill(second: u64) -> Cache {
    let t = OffsetDateTime::from_unix_timestamp(i64::try_from(second).unwrap_or(0))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let month = MONTHS[usize::from(u8::from(t.month())) - 1];
    Cache {
        second,
        local: format!(
            "{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000",
            t.day(),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        iso: format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
    }
}

/// Calls `f` with (`$time_local` text, RFC 3339 seconds text, milliseconds) for `now`.
pub fn with_time<R>(now: SystemTime, f: impl FnOnce(&str, &str, u32) -> R) -> R {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = since.as_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|c| c.second != second) {
            *c = Some(fill(second));
        }
        match c.as_ref() {
            Some(cache) => f(&cache.local, &cache.iso, since.subsec_millis()),
            None => f("-", "-", 0),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_nginx_and_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_169_272_123);
        with_time(t, |local, iso, ms| {
            assert_eq!(local, "01/Dec/2026:23:54:32 +0000");
            assert_eq!(iso, "2026-12-01T23:54:32");
            assert_eq!(ms, 123);
        });
    }
}
