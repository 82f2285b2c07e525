//! A rate as `--rate-limit` and `--tool-rate-limit` take it: `N/UNIT`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `count` requests per `per`, with bursts of up to `burst` (GCRA: the requests are spread evenly,
/// one every `per / count`, and up to `burst` may come at once after a quiet spell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per `per`.
    pub count: u32,
    /// The period.
    pub per: Duration,
    /// Requests allowed at once.
    pub burst: u32,
}

impl Rate {
    /// The default burst for `count`: a tenth of it, at least 1.
    pub fn default_burst(count: u32) -> u32 {
        (count / 10).max(1)
    }

    /// The time between two requests at the steady rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s".to_owned(),
            60 => "min".to_owned(),
            3600 => "h".to_owned(),
            seconds => format!("{seconds}s"),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage =
            || format!("{text:?} is not a rate: write N/UNIT with UNIT s, min or h (e.g. 600/min)");
        let (count, unit) = text.trim().split_once('/').ok_or_else(usage)?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 {
            return Err(format!(
                "{text:?}: a rate of 0 refuses everything; leave the limit out instead"
            ));
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(usage()),
        };
        Ok(Rate {
            count,
            per,
            burst: Rate::default_burst(count),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_a_default_burst() {
        let rate: Rate = "600/min".parse().unwrap();
        assert_eq!(rate.count, 600);
        assert_eq!(rate.per, Duration::from_secs(60));
        assert_eq!(rate.burst, 60);
        assert_eq!(rate.interval(), Duration::from_millis(100));
        assert_eq!(rate.to_string(), "600/min");
        assert_eq!("5/s".parse::<Rate>().unwrap().burst, 1);
        assert_eq!(
            "2/h".parse::<Rate>().unwrap().per,
            Duration::from_secs(3600)
        );
        assert!("600".parse::<Rate>().is_err());
        assert!("600/day".parse::<Rate>().is_err());
        assert!(
            "0/s"
                .parse::<Rate>()
                .unwrap_err()
                .contains("refuses everything")
        );
    }
}
