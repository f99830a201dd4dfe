//! The file's units: durations ("250ms", "5s", "10m", "1h", "30d") and sizes (bytes, "64KiB", "10MiB").

use std::time::Duration;

/// The longest duration accepted anywhere: longer can only be a typo, and deadlines beyond it could
/// overflow the clock they are added to.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 86_400);

/// Parses a duration with a unit, as humantime reads it ("1h 30m" works too), at most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!(
            "{s:?} is not a duration ({e}); write it with a unit, e.g. \"250ms\", \"5s\", \"10m\""
        )
    })?;
    if d > MAX_DURATION {
        return Err(format!("{s:?} is longer than ten years"));
    }
    Ok(d)
}

/// Parses a size: a bare number of bytes, or a number with B, KiB, MiB, GiB (or KB, MB, GB = powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write bytes or e.g. \"64KiB\", \"10MiB\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" | "m" => 1 << 20,
        "GiB" | "G" | "g" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "{s:?}: unknown size unit {other:?}; use B, KiB, MiB or GiB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("11y").is_err(), "beyond ten years");
        assert!(parse_duration("100000000000000y").is_err(), "overflow");
    }

    #[test]
    fn sizes_in_bytes_and_binary_units() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
