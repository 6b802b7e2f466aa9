//! Training examples from a workspace's log: profile features at cut-offs in the past, labels
//! from what followed them.
//!
//! The log is read once, each event turned into an [`Observation`], and replayed in timestamp
//! order. At each cut-off `c` every person active in the 30 days up to `c` (not yet churned)
//! becomes an example with their features as of `c` — built from events up to `c` only — and
//! the label "churned": no activity in `(c, c + horizon]`.

use std::collections::HashMap;
use whisperer_core::{PersonId, StoredEvent};
use whisperer_profiles::profile::DAY_MS;
use whisperer_profiles::{Dictionary, Engagement, Observation, Profile, ProfileTable, observe};

/// Only people active within this many days before a cut-off are examples: someone gone for a
/// month has churned already, predicting it says nothing.
pub const ELIGIBLE_DAYS: i64 = 30;
/// Event names (the most frequent) that get features of their own.
pub const TOP_EVENTS: usize = 6;
/// Stand-in for "never", in days.
const NEVER_DAYS: f64 = 365.0;

const BASE_FEATURES: &[&str] = &[
    "days_since_last_activity",
    "tenure_days",
    "events_1d",
    "events_7d",
    "events_30d",
    "events_90d",
    "events_prev_7d",
    "active_days_7d",
    "active_days_30d",
    "active_days_90d",
    "sessions_7d",
    "sessions_30d",
    "sessions_total",
    "distinct_events",
    "distinct_features",
    "week_over_week_trend",
    "revenue_total",
    "revenue_events",
    "days_since_revenue",
    "engagement_score",
];

/// Base features stored as `ln(1 + x)` (counts and revenue), by index in [`BASE_FEATURES`].
const LOGGED_BASE: &[usize] = &[2, 3, 4, 5, 6, 10, 11, 12, 16, 17];

/// Which features a model reads, by name: the base set and, per top event name, its lifetime
/// count and days since it last happened.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSpec {
    pub top_events: Vec<String>,
}

impl FeatureSpec {
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = BASE_FEATURES.iter().map(|s| s.to_string()).collect();
        for e in &self.top_events {
            names.push(format!("count:{e}"));
            names.push(format!("days_since:{e}"));
        }
        names
    }

    /// A feature's value as a person would read it: counts and revenue are stored as
    /// `ln(1 + x)` for the linear model, and shown as `x`.
    pub fn readable(&self, feature: usize, value: f64) -> f64 {
        let logged = LOGGED_BASE.contains(&feature)
            || (feature >= BASE_FEATURES.len() && (feature - BASE_FEATURES.len()).is_multiple_of(2));
        if logged { value.exp_m1() } else { value }
    }

    /// Features per row.
    pub fn width(&self) -> usize {
        BASE_FEATURES.len() + 2 * self.top_events.len()
    }

    /// Appends the features of `profile` as of `as_of` to `out`.
    pub fn vector(&self, profile: &Profile, dict: &Dictionary, as_of: i64, out: &mut Vec<f64>) {
        let f = profile.features(as_of);
        let days = |t: Option<i64>| {
            t.map_or(NEVER_DAYS, |t| ((as_of - t).max(0) as f64 / DAY_MS as f64).min(NEVER_DAYS))
        };
        let log = |n: u32| (n as f64).ln_1p();
        out.extend([
            f.recency_days.unwrap_or(f.tenure_days).min(NEVER_DAYS),
            f.tenure_days,
            log(f.events_1d),
            log(f.events_7d),
            log(f.events_30d),
            log(f.events_90d),
            log(f.events_prev_7d),
            f.active_days_7d as f64,
            f.active_days_30d as f64,
            f.active_days_90d as f64,
            log(f.sessions_7d),
            log(f.sessions_30d),
            log(f.sessions_total),
            f.distinct_events as f64,
            f.distinct_features as f64,
            f.trend,
            f.revenue_total.max(0.0).ln_1p(),
            log(f.revenue_events),
            f.days_since_revenue.unwrap_or(NEVER_DAYS).min(NEVER_DAYS),
            Engagement::of(&f).score,
        ]);
        for name in &self.top_events {
            let slot = dict.events.get(name).and_then(|id| profile.name_stats(id));
            out.push(log(slot.map_or(0, |s| s.count)));
            out.push(days(slot.map(|s| s.last)));
        }
    }
}

/// The log of one workspace up to an instant, ready to replay in time order.
pub struct Replay {
    pub dict: Dictionary,
    /// (timestamp, person, observation), sorted by timestamp.
    observations: Vec<(PersonId, Observation)>,
    /// The latest user id (else anonymous id) seen per person.
    pub names: HashMap<PersonId, String>,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    as_of: i64,
}

impl Replay {
    /// Reads events (in log order) up to `as_of`; later ones are ignored.
    pub fn new(events: impl IntoIterator<Item = StoredEvent>, as_of: i64) -> Self {
        let mut replay = Replay::empty(as_of);
        for e in events {
            replay.push(&e);
        }
        replay.finish()
    }

    /// A replay to fill with [`Replay::push`] (page by page, without holding the raw log) and
    /// close with [`Replay::finish`].
    pub fn empty(as_of: i64) -> Self {
        Replay {
            dict: Dictionary::default(),
            observations: Vec::new(),
            names: HashMap::new(),
            first_event: None,
            last_event: None,
            as_of,
        }
    }

    pub fn push(&mut self, e: &StoredEvent) {
        if e.event.timestamp.0 > self.as_of
            || e.event.name.as_deref() == Some(whisperer_profiles::observation::LIFECYCLE_EVENT)
        {
            return;
        }
        if let Some(id) = e.event.user_id.as_ref().or(e.event.anonymous_id.as_ref()) {
            let known = self.names.entry(e.person_id).or_default();
            if e.event.user_id.is_some() || known.is_empty() {
                known.clone_from(id);
            }
        }
        self.observations.push((e.person_id, observe(e, &mut self.dict)));
    }

    pub fn finish(mut self) -> Self {
        self.observations.sort_by_key(|(_, o)| o.timestamp);
        self.first_event = self.observations.first().map(|(_, o)| o.timestamp);
        self.last_event = self.observations.last().map(|(_, o)| o.timestamp);
        self
    }

    pub fn events(&self) -> usize {
        self.observations.len()
    }

    /// The most frequent activity event names.
    pub fn spec(&self) -> FeatureSpec {
        let mut counts: HashMap<u16, usize> = HashMap::new();
        for (_, o) in &self.observations {
            if let (true, Some(n)) = (o.activity, o.name) {
                *counts.entry(n).or_default() += 1;
            }
        }
        let mut by_count: Vec<_> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top_events = by_count
            .iter()
            .take(TOP_EVENTS)
            .filter_map(|(n, _)| self.dict.events.name(*n).map(str::to_owned))
            .collect();
        FeatureSpec { top_events }
    }

    /// Examples at each cut-off (ascending), labelled over `horizon_days` after it.
    pub fn examples(&self, spec: &FeatureSpec, cutoffs: &[i64], horizon_days: u32) -> Examples {
        let horizon = horizon_days as i64 * DAY_MS;
        let cols = spec.width();
        let mut ex = Examples { cols, ..Examples::default() };
        let mut profiles = ProfileTable::default();
        // per cut-off: example index by person, still waiting for their label
        let mut open: Vec<HashMap<PersonId, usize>> = vec![HashMap::new(); cutoffs.len()];
        let mut next_cutoff = 0;
        let snapshot = |profiles: &ProfileTable,
                        k: usize,
                        open: &mut Vec<HashMap<PersonId, usize>>,
                        ex: &mut Examples| {
            let c = cutoffs[k];
            for (person, p) in profiles.iter() {
                let recent = p.last_active().is_some_and(|t| c - t < ELIGIBLE_DAYS * DAY_MS);
                if !recent {
                    continue;
                }
                open[k].insert(person, ex.y.len());
                spec.vector(p, &self.dict, c, &mut ex.x);
                ex.y.push(true);
                ex.cutoff.push(k);
                ex.person.push(person);
            }
        };
        for (person, o) in &self.observations {
            while next_cutoff < cutoffs.len() && o.timestamp > cutoffs[next_cutoff] {
                snapshot(&profiles, next_cutoff, &mut open, &mut ex);
                next_cutoff += 1;
            }
            if o.activity {
                for (k, c) in cutoffs[..next_cutoff].iter().enumerate() {
                    if o.timestamp > *c
                        && o.timestamp <= c + horizon
                        && let Some(i) = open[k].remove(person)
                    {
                        ex.y[i] = false;
                    }
                }
            }
            profiles.get_or_default(*person).apply(o, &self.dict);
        }
        while next_cutoff < cutoffs.len() {
            snapshot(&profiles, next_cutoff, &mut open, &mut ex);
            next_cutoff += 1;
        }
        ex.rows = ex.y.len();
        ex
    }

    /// Every person seen up to the end of the replay, with their features as of `as_of`.
    pub fn current(&self, spec: &FeatureSpec, as_of: i64) -> (Vec<PersonId>, Vec<f64>) {
        let mut profiles = ProfileTable::default();
        for (person, o) in &self.observations {
            profiles.get_or_default(*person).apply(o, &self.dict);
        }
        let mut persons = Vec::with_capacity(profiles.len());
        let mut x = Vec::with_capacity(profiles.len() * spec.width());
        for (person, p) in profiles.iter() {
            persons.push(person);
            spec.vector(p, &self.dict, as_of, &mut x);
        }
        (persons, x)
    }
}

/// Row-major examples.
#[derive(Clone, Debug, Default)]
pub struct Examples {
    pub rows: usize,
    pub cols: usize,
    pub x: Vec<f64>,
    /// Churned: no activity within the horizon after the cut-off.
    pub y: Vec<bool>,
    /// Index of the cut-off each row was taken at.
    pub cutoff: Vec<usize>,
    pub person: Vec<PersonId>,
}

impl Examples {
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.cols..(i + 1) * self.cols]
    }

    /// The rows for which `keep` holds.
    pub fn filter(&self, keep: impl Fn(usize) -> bool) -> Examples {
        let mut out = Examples { cols: self.cols, ..Examples::default() };
        for i in (0..self.rows).filter(|&i| keep(i)) {
            out.x.extend_from_slice(self.row(i));
            out.y.push(self.y[i]);
            out.cutoff.push(self.cutoff[i]);
            out.person.push(self.person[i]);
        }
        out.rows = out.y.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_values_undo_the_log_of_counts_only() {
        let spec = FeatureSpec { top_events: vec!["Order Completed".into()] };
        let names = spec.names();
        let at = |name: &str| names.iter().position(|n| n == name).unwrap();
        assert!((spec.readable(at("events_7d"), 4f64.ln_1p()) - 4.0).abs() < 1e-9);
        assert!((spec.readable(at("revenue_total"), 99f64.ln_1p()) - 99.0).abs() < 1e-9);
        assert!((spec.readable(at("count:Order Completed"), 7f64.ln_1p()) - 7.0).abs() < 1e-9);
        assert_eq!(spec.readable(at("days_since:Order Completed"), 12.5), 12.5);
        assert_eq!(spec.readable(at("days_since_last_activity"), 3.0), 3.0);
        assert_eq!(spec.readable(at("engagement_score"), 40.0), 40.0);
    }
}
