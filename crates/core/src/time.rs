//! Time as milliseconds since the Unix epoch, and the ISO-8601 forms clients send.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

/// Earliest accepted timestamp (1970-01-01) and latest (9999-12-31): anything else is a client bug.
const MIN_MILLIS: i64 = 0;
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl Millis {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }

    /// `2024-01-02T03:04:05.000Z`.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime().to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn from_datetime<Tz: chrono::TimeZone>(dt: &DateTime<Tz>) -> Self {
        Self(dt.timestamp_millis())
    }

    pub fn saturating_add(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("not an ISO-8601 timestamp")]
    Malformed,
    #[error("timestamp outside 1970-01-01..9999-12-31")]
    OutOfRange,
}

/// Parses the ISO-8601 forms real clients send: RFC 3339 with `Z` or an offset (with or without
/// a colon), any number of fraction digits, `T` or a space between date and time, a date and
/// time without offset (taken as UTC, as Python's naive `isoformat()` produces), or a bare date.
pub fn parse_iso8601(s: &str) -> Result<Millis, TimestampError> {
    let s = s.trim();
    let millis = if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        dt.timestamp_millis()
    } else if let Ok(dt) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        dt.timestamp_millis()
    } else if let Ok(dt) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%z") {
        dt.timestamp_millis()
    } else if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        dt.and_utc().timestamp_millis()
    } else if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        dt.and_utc().timestamp_millis()
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).ok_or(TimestampError::Malformed)?.and_utc().timestamp_millis()
    } else {
        return Err(TimestampError::Malformed);
    };
    if (MIN_MILLIS..=MAX_MILLIS).contains(&millis) {
        Ok(Millis(millis))
    } else {
        Err(TimestampError::OutOfRange)
    }
}

/// Parses a duration such as `7d`, `12h`, `30m`, `45s` or `250ms` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: i64 =
        digits.parse().map_err(|_| format!("invalid duration {s:?}: expected e.g. 7d, 12h, 30m, 45s"))?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("invalid duration {s:?}: unit must be ms, s, m, h or d")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("duration {s:?} is too large"))
}

/// (year, month 1–12, day 1–31) of a day counted from 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's algorithm: integer arithmetic only, for hot formatting paths).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to a (year, month 1–12, day 1–31).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An HTTP `Retry-After` value: delay seconds (fractions accepted, capped at a day) or an HTTP
/// date (a date in the past means now). Every HTTP client of Whisperer reads it this way.
pub fn parse_retry_after(value: &str) -> Option<std::time::Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| std::time::Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let delta = date.timestamp_millis() - Utc::now().timestamp_millis();
    Some(std::time::Duration::from_millis(delta.max(0) as u64))
}

#[cfg(test)]
mod retry_after_tests {
    use super::parse_retry_after;
    use std::time::Duration;

    #[test]
    fn retry_after_reads_seconds_fractions_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("999999999"), Some(Duration::from_secs(86_400)), "capped");
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    #[test]
    fn civil_dates_agree_with_chrono() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        // Every day from 1970 to past 2100 (a century year that is not a leap year) and 2400.
        for days in (0..50_000).chain(157_000..158_000) {
            let date = epoch + chrono::Days::new(days as u64);
            assert_eq!(
                civil_from_days(days),
                (i64::from(date.year()), date.month(), date.day()),
                "day {days}"
            );
            assert_eq!(days_from_civil(i64::from(date.year()), date.month(), date.day()), days);
        }
    }

    fn ms(s: &str) -> i64 {
        parse_iso8601(s).unwrap().0
    }

    #[test]
    fn parses_what_real_clients_send() {
        let expected = 1_704_164_645_000;
        assert_eq!(ms("2024-01-02T03:04:05.000Z"), expected);
        assert_eq!(ms("2024-01-02T03:04:05Z"), expected);
        assert_eq!(ms("2024-01-02T03:04:05.000+00:00"), expected);
        assert_eq!(ms("2024-01-02T04:04:05+01:00"), expected);
        assert_eq!(ms("2024-01-02T04:04:05+0100"), expected);
        assert_eq!(ms("2024-01-02 03:04:05"), expected);
        assert_eq!(ms("2024-01-02T03:04:05"), expected);
        assert_eq!(ms("2024-01-02T03:04:05.000123+00:00"), expected);
        assert_eq!(ms("2024-01-02"), 1_704_153_600_000);
    }

    #[test]
    fn rejects_garbage_and_absurd_dates() {
        for bad in ["", "yesterday", "2024-13-01T00:00:00Z", "2024-01-02T25:00:00Z", "1700000000"] {
            assert_eq!(parse_iso8601(bad), Err(TimestampError::Malformed), "{bad}");
        }
        assert_eq!(parse_iso8601("1960-01-01T00:00:00Z"), Err(TimestampError::OutOfRange));
    }

    #[test]
    fn formats_round_trip() {
        let t = Millis(1_704_164_645_123);
        assert_eq!(t.to_rfc3339(), "2024-01-02T03:04:05.123Z");
        assert_eq!(parse_iso8601(&t.to_rfc3339()).unwrap(), t);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("7d").unwrap(), 604_800_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("7 weeks").is_err());
        assert!(parse_duration_ms("d").is_err());
    }
}

/// A duration written the way people write it in config files: `7d`, `12h`, `30m`, `45s`, `250ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration {
    pub millis: i64,
}

impl HumanDuration {
    pub const fn from_millis(millis: i64) -> Self {
        Self { millis }
    }

    pub const fn from_secs(secs: i64) -> Self {
        Self { millis: secs * 1000 }
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis.max(0) as u64)
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration_ms(s).map(Self::from_millis)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms != 0 && ms % size == 0 {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod human_duration_tests {
    use super::*;

    #[test]
    fn displays_in_the_largest_whole_unit() {
        for s in ["7d", "12h", "30m", "45s", "250ms", "90m"] {
            assert_eq!(s.parse::<HumanDuration>().unwrap().to_string(), s);
        }
    }
}
