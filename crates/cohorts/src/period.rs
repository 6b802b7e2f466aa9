//! Calendar periods in UTC — weeks starting on Monday and calendar months — numbered from the
//! epoch, so that a period is a plain integer and "periods since" is a subtraction.
//!
//! The date arithmetic is Howard Hinnant's days/civil conversion (exact for the proleptic
//! Gregorian calendar): it runs for every event of a scan, so it stays a few integer operations
//! instead of building calendar objects.

use std::fmt;
use whisperer_core::time::{civil_from_days, days_from_civil};

pub const DAY_MS: i64 = 86_400_000;

/// The length of a cohort and of a retention column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Period {
    /// Monday 00:00 UTC to the next Monday.
    #[default]
    Week,
    /// The first of a month 00:00 UTC to the first of the next.
    Month,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Week, Period::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The period containing the instant `ms` (milliseconds since the epoch): weeks since the
    /// Monday 1969-12-29, months since January 1970.
    pub fn index(self, ms: i64) -> i32 {
        let day = ms.div_euclid(DAY_MS);
        let index = match self {
            // 1970-01-01 was a Thursday, so Monday 1969-12-29 is day -3.
            Period::Week => (day + 3).div_euclid(7),
            Period::Month => {
                let (year, month, _) = civil_from_days(day);
                (year - 1970) * 12 + i64::from(month) - 1
            }
        };
        // Timestamps are bounded to years 1970–9999 by ingestion; saturate rather than wrap on
        // anything stranger.
        index.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
    }

    /// The first day of a period, as days since the epoch.
    pub fn start_day(self, index: i32) -> i64 {
        let index = i64::from(index);
        match self {
            Period::Week => index * 7 - 3,
            Period::Month => {
                days_from_civil(1970 + index.div_euclid(12), (index.rem_euclid(12) + 1) as u32, 1)
            }
        }
    }

    /// When a period starts, in milliseconds since the epoch.
    pub fn start(self, index: i32) -> i64 {
        self.start_day(index) * DAY_MS
    }

    /// A period's name: the date of its Monday (`2024-01-15`) or its month (`2024-01`).
    pub fn label(self, index: i32) -> String {
        let (year, month, day) = civil_from_days(self.start_day(index));
        match self {
            Period::Week => format!("{year:04}-{month:02}-{day:02}"),
            Period::Month => format!("{year:04}-{month:02}"),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        whisperer_core::time::parse_iso8601(s).unwrap().0
    }

    #[test]
    fn weeks_start_on_monday_at_midnight_utc() {
        let w = Period::Week;
        // 1970-01-01 (Thursday) is in week 0, which began on Monday 1969-12-29.
        assert_eq!(w.index(0), 0);
        assert_eq!(w.label(0), "1969-12-29");
        assert_eq!(w.index(ms("1970-01-04T23:59:59.999Z")), 0);
        assert_eq!(w.index(ms("1970-01-05T00:00:00Z")), 1);
        // Sunday night and Monday morning of 2024-01-14/15 are different weeks.
        let sunday = w.index(ms("2024-01-14T23:59:59.999Z"));
        let monday = w.index(ms("2024-01-15T00:00:00Z"));
        assert_eq!(monday, sunday + 1);
        assert_eq!(w.label(monday), "2024-01-15");
        assert_eq!(w.start(monday), ms("2024-01-15"));
        assert_eq!(w.index(ms("2024-01-21T23:59:59.999Z")), monday);
        // An offset in the timestamp is resolved to UTC before the week is taken.
        assert_eq!(w.index(ms("2024-01-15T00:30:00+01:00")), sunday);
        // A week across a year boundary is one week.
        assert_eq!(w.index(ms("2024-12-30")), w.index(ms("2025-01-05T12:00:00Z")));
        assert_eq!(w.label(w.index(ms("2025-01-01"))), "2024-12-30");
    }

    #[test]
    fn months_are_calendar_months() {
        let m = Period::Month;
        assert_eq!(m.index(0), 0);
        assert_eq!(m.label(0), "1970-01");
        let jan = m.index(ms("2024-01-31T23:59:59.999Z"));
        assert_eq!(m.index(ms("2024-02-01T00:00:00Z")), jan + 1);
        assert_eq!(m.index(ms("2024-02-29T12:00:00Z")), jan + 1);
        assert_eq!(m.index(ms("2024-03-01T00:00:00Z")), jan + 2);
        assert_eq!(m.index(ms("2025-01-01")), jan + 12);
        assert_eq!(m.label(jan + 1), "2024-02");
        assert_eq!(m.start(jan + 1), ms("2024-02-01"));
        assert_eq!(m.label(jan + 11), "2024-12");
        assert_eq!(m.label(jan + 12), "2025-01");
        for index in 0..2_000 {
            assert_eq!(m.index(m.start(index)), index);
            assert_eq!(m.index(m.start(index) - 1), index - 1);
            let w = Period::Week;
            assert_eq!(w.index(w.start(index)), index);
            assert_eq!(w.index(w.start(index) - 1), index - 1);
        }
    }

    #[test]
    fn periods_parse_by_name() {
        assert_eq!(Period::parse("week"), Some(Period::Week));
        assert_eq!(Period::parse("month"), Some(Period::Month));
        assert_eq!(Period::parse("Week"), None);
        assert_eq!(Period::parse("day"), None);
    }
}
