//! The engagement score: one number 0–100 from five dimensions, each 0–100.
//!
//! ```text
//! frequency = ln(1 + active days in the last 30) / ln(1 + 20)          capped at 1
//! recency   = exp(-days since last activity / 7)                        0 when never active
//! breadth   = ln(1 + distinct event names + distinct features) / ln(13) capped at 1
//! depth     = ln(1 + events per active day, last 30 days) / ln(26)      capped at 1
//! trend     = (1 + week-over-week trend) / 2                            0 with no activity in 14 days
//! score     = 100 × (0.35 frequency + 0.30 recency + 0.10 breadth + 0.10 depth + 0.15 trend)
//! ```
//! Someone active 20 of the last 30 days, today, across a dozen events and features, with 25
//! events a day and a steady week scores 92.5; the same user last seen three weeks ago, active on
//! two of the last 30 days, about 30.

use serde::Serialize;

use crate::profile::Features;

/// Weights of the dimensions, in the order of [`Engagement`]'s fields; they sum to 1.
pub const WEIGHTS: [f64; 5] = [0.35, 0.30, 0.10, 0.10, 0.15];

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Engagement {
    pub score: f64,
    pub frequency: f64,
    pub recency: f64,
    pub breadth: f64,
    pub depth: f64,
    pub trend: f64,
}

fn log_scale(x: f64, full: f64) -> f64 {
    ((1.0 + x.max(0.0)).ln() / (1.0 + full).ln()).min(1.0)
}

impl Engagement {
    pub fn of(f: &Features) -> Self {
        let frequency = log_scale(f.active_days_30d as f64, 20.0);
        let recency = f.recency_days.map_or(0.0, |d| (-d / 7.0).exp());
        let breadth = log_scale((f.distinct_events + f.distinct_features) as f64, 12.0);
        let per_day = f.events_30d as f64 / f.active_days_30d.max(1) as f64;
        let depth = log_scale(per_day, 25.0);
        let trend = if f.events_7d + f.events_prev_7d == 0 { 0.0 } else { (1.0 + f.trend) / 2.0 };
        let dims = [frequency, recency, breadth, depth, trend];
        let score: f64 = dims.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
        let pct = |x: f64| (x * 1000.0).round() / 10.0;
        Engagement {
            score: pct(score),
            frequency: pct(frequency),
            recency: pct(recency),
            breadth: pct(breadth),
            depth: pct(depth),
            trend: pct(trend),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> Features {
        Features {
            recency_days: Some(0.0),
            tenure_days: 100.0,
            events_total: 600,
            events_1d: 25,
            events_7d: 150,
            events_30d: 500,
            events_90d: 600,
            events_prev_7d: 150,
            active_days_7d: 6,
            active_days_30d: 20,
            active_days_90d: 25,
            sessions_total: 40,
            sessions_7d: 6,
            sessions_30d: 20,
            distinct_events: 8,
            distinct_features: 4,
            trend: 0.0,
            revenue_total: 0.0,
            revenue_events: 0,
            days_since_revenue: None,
            usual_hour: Some(10),
        }
    }

    #[test]
    fn the_documented_examples_hold() {
        let e = Engagement::of(&features());
        assert!((e.score - 92.5).abs() < 0.1, "{e:?}");
        let gone = Features {
            recency_days: Some(21.0),
            events_7d: 0,
            events_prev_7d: 0,
            events_30d: 10,
            active_days_30d: 2,
            ..features()
        };
        let e = Engagement::of(&gone);
        assert!((25.0..35.0).contains(&e.score), "{e:?}");
    }

    #[test]
    fn score_stays_in_range_and_is_never_nan() {
        let empty = Features { recency_days: None, events_30d: 0, active_days_30d: 0, ..features() };
        for f in [empty, features(), Features { trend: 1.0, events_7d: 10_000, ..features() }] {
            let e = Engagement::of(&f);
            assert!(e.score.is_finite() && (0.0..=100.0).contains(&e.score), "{e:?}");
        }
    }
}
