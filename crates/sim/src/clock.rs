//! Local time of simulated users: UTC offsets per time zone (from chrono-tz, tabulated once so
//! the hot loop does a short binary search instead of a tz lookup), local hour and weekday, and
//! the daily and weekly rhythm of activity.

use chrono::{DateTime, Offset, TimeZone};

use crate::population::ZONES;

pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Relative activity by local hour (0..24) for a user with no peak shift: quiet nights, a
/// morning ramp, a dip at lunch and a long evening tail.
const HOURLY: [f64; 24] = [
    0.12, 0.06, 0.04, 0.03, 0.04, 0.08, 0.25, 0.55, 1.05, 1.55, 1.75, 1.65, 1.25, 1.55, 1.7, 1.6, 1.4, 1.1,
    0.8, 0.7, 0.7, 0.6, 0.42, 0.25,
];
/// Relative activity by local weekday, Monday first: a B2B product, quiet at weekends.
const WEEKLY: [f64; 7] = [1.1, 1.15, 1.15, 1.1, 0.95, 0.45, 0.4];

/// The daily and weekly rhythm, normalised so its average over a week is 1.
pub(crate) struct Rhythm {
    hourly: [f64; 24],
    weekly: [f64; 7],
    pub max: f64,
}

impl Rhythm {
    fn new() -> Self {
        let h_mean = HOURLY.iter().sum::<f64>() / 24.0;
        let w_mean = WEEKLY.iter().sum::<f64>() / 7.0;
        let hourly = HOURLY.map(|h| h / h_mean);
        let weekly = WEEKLY.map(|w| w / w_mean);
        let max = hourly.iter().cloned().fold(0.0, f64::max) * weekly.iter().cloned().fold(0.0, f64::max);
        Self { hourly, weekly, max }
    }

    /// The daily part of the rhythm at a local hour (0..24) for a user shifted by `shift` hours.
    pub(crate) fn hour_weight(&self, hour: u8, shift: i8) -> f64 {
        self.hourly[(i32::from(hour) - i32::from(shift)).rem_euclid(24) as usize]
    }

    /// The rhythm at a local time, for a user whose day is shifted by `shift` hours.
    pub(crate) fn at(&self, local: Local, shift: i8) -> f64 {
        let hour = (i32::from(local.hour) - i32::from(shift)).rem_euclid(24) as usize;
        self.hourly[hour] * self.weekly[local.weekday as usize]
    }
}

/// A local wall-clock position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Local {
    pub hour: u8,
    /// Monday = 0.
    pub weekday: u8,
    /// Milliseconds until the next local hour starts.
    pub ms_to_next_hour: i64,
}

/// Offsets of one zone: `changes[i] = (utc_ms, offset_secs)` holds from `utc_ms` until the next.
struct ZoneTable {
    changes: Vec<(i64, i32)>,
    from: i64,
    to: i64,
}

pub(crate) struct Clock {
    zones: Vec<ZoneTable>,
    pub rhythm: Rhythm,
}

fn chrono_offset(zone: usize, t_ms: i64) -> i32 {
    let utc = DateTime::from_timestamp_millis(t_ms).unwrap_or_default().naive_utc();
    ZONES[zone].tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()
}

impl Clock {
    /// Tabulates every zone's offsets over `[from, to]`; outside it, offsets come from chrono-tz
    /// directly (slower, same answer).
    pub(crate) fn new(from: i64, to: i64) -> Self {
        let zones = (0..ZONES.len())
            .map(|z| {
                let mut changes = vec![(from, chrono_offset(z, from))];
                let mut t = from;
                while t < to {
                    let next = (t + HOUR_MS).min(to);
                    let off = chrono_offset(z, next);
                    if off != changes.last().unwrap().1 {
                        // The change happened in (t, next]: find the first millisecond of it.
                        let (mut lo, mut hi) = (t, next);
                        while hi - lo > 1 {
                            let mid = lo + (hi - lo) / 2;
                            if chrono_offset(z, mid) == off { hi = mid } else { lo = mid }
                        }
                        changes.push((hi, off));
                    }
                    t = next;
                }
                ZoneTable { changes, from, to }
            })
            .collect();
        Self { zones, rhythm: Rhythm::new() }
    }

    /// The zone's UTC offset in seconds at `t_ms`.
    pub(crate) fn offset_secs(&self, zone: u8, t_ms: i64) -> i32 {
        let table = &self.zones[zone as usize];
        if t_ms < table.from || t_ms > table.to {
            return chrono_offset(zone as usize, t_ms);
        }
        let i = table.changes.partition_point(|&(at, _)| at <= t_ms);
        table.changes[i.saturating_sub(1)].1
    }

    pub(crate) fn local(&self, zone: u8, t_ms: i64) -> Local {
        let local_ms = t_ms + i64::from(self.offset_secs(zone, t_ms)) * 1000;
        let days = local_ms.div_euclid(DAY_MS);
        let in_day = local_ms.rem_euclid(DAY_MS);
        Local {
            hour: (in_day / HOUR_MS) as u8,
            // 1970-01-01 was a Thursday (3 with Monday = 0).
            weekday: (days + 3).rem_euclid(7) as u8,
            ms_to_next_hour: HOUR_MS - in_day % HOUR_MS,
        }
    }

    /// The rhythm of activity at `t_ms` for a user in `zone` shifted by `shift` hours.
    pub(crate) fn rhythm_at(&self, zone: u8, shift: i8, t_ms: i64) -> f64 {
        self.rhythm.at(self.local(zone, t_ms), shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whisperer_core::time::parse_iso8601;

    fn ms(s: &str) -> i64 {
        parse_iso8601(s).unwrap().0
    }

    fn zone_of(name: &str) -> u8 {
        ZONES.iter().position(|z| z.tz.name() == name).unwrap() as u8
    }

    #[test]
    fn offsets_follow_daylight_saving_time() {
        let clock = Clock::new(ms("2024-01-01"), ms("2024-12-31"));
        let berlin = zone_of("Europe/Berlin");
        assert_eq!(clock.offset_secs(berlin, ms("2024-03-31T00:59:59.999Z")), 3600);
        assert_eq!(clock.offset_secs(berlin, ms("2024-03-31T01:00:00Z")), 7200);
        assert_eq!(clock.offset_secs(berlin, ms("2024-10-27T01:00:00Z")), 3600);
        let kolkata = zone_of("Asia/Kolkata");
        assert_eq!(clock.offset_secs(kolkata, ms("2024-06-01T00:00:00Z")), 19_800);
        // Outside the table: chrono-tz directly.
        assert_eq!(clock.offset_secs(berlin, ms("2030-07-01T00:00:00Z")), 7200);
        let sydney = zone_of("Australia/Sydney");
        for t in (0..365).map(|d| ms("2024-01-01") + d * DAY_MS + 7 * HOUR_MS) {
            assert_eq!(clock.offset_secs(sydney, t), chrono_offset(sydney as usize, t));
        }
    }

    #[test]
    fn local_hour_and_weekday() {
        let clock = Clock::new(ms("2024-01-01"), ms("2024-02-01"));
        let ny = zone_of("America/New_York");
        // 2024-01-08 is a Monday; 14:30 UTC is 09:30 in New York.
        let local = clock.local(ny, ms("2024-01-08T14:30:00Z"));
        assert_eq!((local.hour, local.weekday, local.ms_to_next_hour), (9, 0, 30 * 60_000));
        // 03:00 UTC Monday is still Sunday evening in New York.
        assert_eq!(clock.local(ny, ms("2024-01-08T03:00:00Z")).weekday, 6);
    }

    #[test]
    fn rhythm_averages_one_over_a_week() {
        let r = Rhythm::new();
        let mut total = 0.0;
        for weekday in 0..7 {
            for hour in 0..24 {
                total += r.at(Local { hour, weekday, ms_to_next_hour: 0 }, 0);
            }
        }
        assert!((total / 168.0 - 1.0).abs() < 1e-9);
        assert!(r.at(Local { hour: 3, weekday: 1, ms_to_next_hour: 0 }, 0) < 0.1);
        let seven = Local { hour: 7, weekday: 1, ms_to_next_hour: 0 };
        assert!(r.at(seven, -2) > 1.5 * r.at(seven, 0), "an early bird is busier at 7:00");
    }
}
