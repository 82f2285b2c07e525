//! Time helpers for token checks: the clock as seconds since the epoch, and the human renderings
//! (`2026-11-26T13:00:00Z`, `in 54m`, `3h ago`) used in rejection reasons and `check-token` output.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch. Validation takes `now` as a parameter; this is where it comes from.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// ISO 8601 UTC, or the raw number when it is outside the representable range.
pub fn iso8601(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(timestamp) => timestamp.to_string(),
        Err(_) => format!("{seconds} (out of range)"),
    }
}

/// `in 54m` for a future instant, `3h ago` for a past one, relative to `now`.
pub fn relative(seconds: i64, now: i64) -> String {
    let delta = seconds.saturating_sub(now);
    let span = short_duration(delta.unsigned_abs());
    if delta >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// The largest whole unit of a duration: `45s`, `54m`, `3h`, `12d`.
pub fn short_duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_relative_times() {
        assert_eq!(relative(1_000 + 54 * 60, 1_000), "in 54m");
        assert_eq!(relative(1_000, 1_000 + 3 * 3_600 + 5), "3h ago");
        assert_eq!(relative(10, 10), "in 0s");
        assert_eq!(short_duration(3 * 86_400), "3d");
    }

    #[test]
    fn renders_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert!(iso8601(i64::MAX).contains("out of range"));
    }
}
