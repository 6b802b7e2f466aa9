//! One pass over the log, folded per person, then the matrices.
//!
//! Per person the fold keeps only what the report needs, in a fixed-size record: the earliest
//! activity, the earliest time they did the behaviour event, the split trait's value with the
//! position of the identify call that set it, and the set of periods they were active in (as
//! absolute period indexes, because a late event can still move their first activity earlier).
//! Offsets ("periods since first activity") are taken only in [`Collector::finish`], so the
//! order events arrive in does not matter.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use whisperer_core::{EventType, Millis, PersonId, StoredEvent};
use whisperer_profiles::observation::is_activity;

use crate::active::ActiveSet;
use crate::query::RetentionQuery;
use crate::report::{Cell, CohortRow, Group, Retention, TraitGroup};

/// "Never": no activity, or never did the behaviour event.
const NEVER: i64 = i64::MAX;
/// The split trait was never set, or last set to `null`.
const NO_VALUE: u32 = u32::MAX;

/// Person ids are small sequential integers: a multiplicative hash spreads them well and costs
/// far less than the default SipHash, which matters at tens of millions of lookups per scan.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<PersonId, V, BuildHasherDefault<IdHasher>>;

/// What the fold knows of one person.
#[derive(Clone, Debug)]
struct PersonState {
    /// Earliest activity (ms), or `NEVER`.
    first: i64,
    /// Earliest behaviour event (ms), or `NEVER`.
    behavior: i64,
    /// Where the identify call that last set the split trait stands in the order
    /// `Store::identify_traits` applies calls: (timestamp, seq × 2 + 1 for top-level `traits`).
    trait_order: (i64, i64),
    trait_value: u32,
    active: ActiveSet,
}

impl PersonState {
    fn new() -> Self {
        Self {
            first: NEVER,
            behavior: NEVER,
            trait_order: (i64::MIN, i64::MIN),
            trait_value: NO_VALUE,
            active: ActiveSet::default(),
        }
    }
}

/// Folds events (in any order) and person merges into a [`Retention`].
pub struct Collector {
    query: RetentionQuery,
    cap: u32,
    persons: IdMap<PersonState>,
    values: Vec<String>,
    value_ids: HashMap<String, u32>,
    newest_activity: i64,
    events: u64,
}

impl Collector {
    pub fn new(query: RetentionQuery) -> Self {
        let cap = query.column_cap();
        Self {
            query,
            cap,
            persons: IdMap::default(),
            values: Vec::new(),
            value_ids: HashMap::new(),
            newest_activity: i64::MIN,
            events: 0,
        }
    }

    /// Persons seen so far with anything the report uses.
    pub fn persons(&self) -> usize {
        self.persons.len()
    }

    pub fn observe(&mut self, event: &StoredEvent) {
        self.events += 1;
        let e = &event.event;
        let named = matches!(e.event_type, EventType::Track | EventType::Page | EventType::Screen);
        let name = e.name.as_deref();
        let activity = is_activity(e.event_type, name);
        let behavior = named
            && self.query.behavior.as_ref().is_some_and(|b| name.is_some_and(|n| n == b.event.as_str()));
        let traits = match (&self.query.split, e.event_type) {
            (Some(split), EventType::Identify) => trait_in(&e.raw, split),
            _ => None,
        };
        if !activity && !behavior && traits.is_none() {
            return;
        }
        let ts = e.timestamp.0;
        let value = traits.map(|(value, part)| (self.intern(value), part));
        let state = self.persons.entry(event.person_id).or_insert_with(PersonState::new);
        if activity {
            state.first = state.first.min(ts);
            state.active.insert(self.query.period.index(ts), self.cap);
            self.newest_activity = self.newest_activity.max(ts);
        }
        if behavior {
            state.behavior = state.behavior.min(ts);
        }
        if let Some((value, part)) = value {
            let order = (ts, event.seq.saturating_mul(2).saturating_add(part));
            if order > state.trait_order {
                state.trait_order = order;
                state.trait_value = value;
            }
        }
    }

    /// Everything of `from` now belongs to `into` (the store re-pointed their events; this
    /// catches up with events read before it did).
    pub fn merge(&mut self, from: PersonId, into: PersonId) {
        if from == into {
            return;
        }
        let Some(old) = self.persons.remove(&from) else { return };
        let cap = self.cap;
        let state = self.persons.entry(into).or_insert_with(PersonState::new);
        state.first = state.first.min(old.first);
        state.behavior = state.behavior.min(old.behavior);
        if old.trait_order > state.trait_order {
            state.trait_order = old.trait_order;
            state.trait_value = old.trait_value;
        }
        state.active.union(&old.active, cap);
    }

    fn intern(&mut self, value: Option<String>) -> u32 {
        let Some(value) = value else { return NO_VALUE };
        if let Some(&id) = self.value_ids.get(&value) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(value.clone());
        self.value_ids.insert(value, id);
        id
    }

    /// The report.
    pub fn finish(self) -> Retention {
        let q = &self.query;
        let period = q.period;
        let from = q.from.map_or(i64::MIN, |m| m.0);
        let to = q.to.map_or(i64::MAX, |m| m.0);
        let shown = |s: &PersonState| s.first != NEVER && s.first >= from && s.first < to;

        // Trait groups: the largest values get their own, then (none), then (other).
        let (slot_of_value, mut slots, other_values) = if q.split.is_some() {
            let mut counts = vec![0u64; self.values.len()];
            for s in self.persons.values().filter(|s| shown(s) && s.trait_value != NO_VALUE) {
                counts[s.trait_value as usize] += 1;
            }
            let mut ranked: Vec<u32> = (0..counts.len() as u32).filter(|&v| counts[v as usize] > 0).collect();
            ranked.sort_by(|&a, &b| {
                counts[b as usize]
                    .cmp(&counts[a as usize])
                    .then_with(|| self.values[a as usize].cmp(&self.values[b as usize]))
            });
            let kept = ranked.len().min(q.max_groups);
            let (none_slot, other_slot) = (kept as u32, kept as u32 + 1);
            let mut slot_of_value = vec![other_slot; self.values.len()];
            let mut slots: Vec<Option<TraitGroup>> = Vec::with_capacity(kept + 2);
            for (slot, &v) in ranked[..kept].iter().enumerate() {
                slot_of_value[v as usize] = slot as u32;
                slots.push(Some(TraitGroup::Value(self.values[v as usize].clone())));
            }
            slots.push(Some(TraitGroup::None));
            slots.push(Some(TraitGroup::Other));
            debug_assert_eq!(slots.len() as u32, other_slot + 1);
            (Some((slot_of_value, none_slot)), slots, (ranked.len() - kept) as u64)
        } else {
            (None, vec![None], 0)
        };
        let sides: &[Option<bool>] = if q.behavior.is_some() { &[Some(true), Some(false)] } else { &[None] };
        let window = q.behavior.as_ref().map_or(0, |b| b.window_ms());

        #[derive(Default)]
        struct Acc {
            persons: u64,
            /// cohort period -> (size, active persons per offset)
            cohorts: BTreeMap<i32, (u64, Vec<u64>)>,
        }
        let mut accs: Vec<Acc> = (0..slots.len() * sides.len()).map(|_| Acc::default()).collect();
        let cap = self.cap as i64;
        let mut persons = 0u64;
        for s in self.persons.values().filter(|s| shown(s)) {
            persons += 1;
            let slot = match &slot_of_value {
                Some((of_value, none_slot)) => {
                    if s.trait_value == NO_VALUE {
                        *none_slot
                    } else {
                        of_value[s.trait_value as usize]
                    }
                }
                None => 0,
            } as usize;
            // Did it by the end of the first `within_days` days (an event before the first
            // activity, possible only for a system event, counts as done).
            let side = usize::from(q.behavior.is_some() && s.behavior >= s.first.saturating_add(window));
            let acc = &mut accs[slot * sides.len() + side];
            acc.persons += 1;
            let cohort = period.index(s.first);
            let (size, counts) = acc.cohorts.entry(cohort).or_default();
            *size += 1;
            for p in s.active.iter() {
                let offset = i64::from(p) - i64::from(cohort);
                if (0..cap).contains(&offset) {
                    let offset = offset as usize;
                    if counts.len() <= offset {
                        counts.resize(offset + 1, 0);
                    }
                    counts[offset] += 1;
                }
            }
        }

        let as_of = (self.newest_activity != i64::MIN).then_some(self.newest_activity);
        let last = as_of.map(|t| period.index(t));
        let earliest = accs.iter().filter_map(|a| a.cohorts.keys().next().copied()).min();
        let columns = match (earliest, last) {
            (Some(earliest), Some(last)) => {
                (i64::from(last) - i64::from(earliest) + 1).clamp(0, cap) as usize
            }
            _ => 0,
        };
        let last = last.unwrap_or(i32::MIN);
        let observed = |cohort: i32, k: usize| i64::from(cohort) + k as i64 <= i64::from(last);

        let mut groups = Vec::new();
        for (slot, trait_group) in slots.iter_mut().enumerate() {
            let slot_persons: u64 = (0..sides.len()).map(|i| accs[slot * sides.len() + i].persons).sum();
            // Without a split the one group always shows; a trait group only when it has someone.
            if trait_group.is_some() && slot_persons == 0 {
                continue;
            }
            for (i, &did) in sides.iter().enumerate() {
                let acc = std::mem::take(&mut accs[slot * sides.len() + i]);
                let cohorts: Vec<CohortRow> = acc
                    .cohorts
                    .into_iter()
                    .map(|(index, (size, counts))| CohortRow {
                        index,
                        start: Millis(period.start(index)),
                        label: period.label(index),
                        size,
                        cells: (0..columns)
                            .map(|k| {
                                observed(index, k)
                                    .then(|| Cell::new(counts.get(k).copied().unwrap_or(0), size))
                            })
                            .collect(),
                    })
                    .collect();
                let curve = (0..columns)
                    .map(|k| {
                        let (active, eligible) = cohorts
                            .iter()
                            .filter_map(|row| row.cells[k])
                            .fold((0, 0), |(a, e), cell| (a + cell.active, e + cell.persons));
                        (eligible > 0).then(|| Cell::new(active, eligible))
                    })
                    .collect();
                groups.push(Group {
                    trait_group: trait_group.clone(),
                    did_behavior: did,
                    persons: acc.persons,
                    cohorts,
                    curve,
                });
            }
        }

        Retention {
            period,
            columns,
            split: q.split.clone(),
            behavior: q.behavior.clone(),
            from: q.from,
            to: q.to,
            as_of: as_of.map(Millis),
            persons,
            events_scanned: self.events,
            other_values,
            groups,
        }
    }
}

/// The split trait in an identify message, when the call sets it: its value as text (`None`
/// for `null`, which clears it) and which part set it (0 `context.traits`, 1 `traits`; the
/// top-level traits apply last, as in `Store::identify_traits`).
fn trait_in(raw: &str, split: &str) -> Option<(Option<String>, i64)> {
    // Identify calls are a small share of a log; a full parse keeps this simple and exact.
    let message: Value = serde_json::from_str(raw).ok()?;
    let top = message.get("traits").and_then(|t| t.get(split)).map(|v| (v, 1));
    let context = || message.get("context")?.get("traits")?.get(split).map(|v| (v, 0));
    let (value, part) = top.or_else(context)?;
    let text = match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    Some((text, part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::Period;
    use crate::query::Behavior;
    use whisperer_core::time::parse_iso8601;
    use whisperer_core::{NewEvent, WorkspaceId};

    fn ms(s: &str) -> i64 {
        parse_iso8601(s).unwrap().0
    }

    struct Log {
        events: Vec<StoredEvent>,
    }

    impl Log {
        fn new() -> Self {
            Self { events: Vec::new() }
        }

        fn push(
            &mut self,
            person: PersonId,
            event_type: EventType,
            name: Option<&str>,
            at: &str,
            raw: Value,
        ) {
            let seq = self.events.len() as i64 + 1;
            self.events.push(StoredEvent {
                seq,
                person_id: person,
                event: NewEvent {
                    workspace_id: WorkspaceId::generate(),
                    message_id: format!("m{seq}"),
                    event_type,
                    name: name.map(str::to_owned),
                    user_id: Some(format!("u{person}")),
                    anonymous_id: None,
                    previous_id: None,
                    timestamp: Millis(ms(at)),
                    received_at: Millis(ms(at)),
                    raw: raw.to_string(),
                    enrichment: "{}".into(),
                },
            });
        }

        fn track(&mut self, person: PersonId, name: &str, at: &str) -> &mut Self {
            self.push(person, EventType::Track, Some(name), at, serde_json::json!({"event": name}));
            self
        }

        fn identify(&mut self, person: PersonId, at: &str, raw: Value) -> &mut Self {
            self.push(person, EventType::Identify, None, at, raw);
            self
        }

        fn run(&self, query: RetentionQuery) -> Retention {
            let mut c = Collector::new(query);
            for e in &self.events {
                c.observe(e);
            }
            c.finish()
        }
    }

    /// Rows as (label, size, active counts with `None` for unobserved cells).
    fn rows(group: &Group) -> Vec<(String, u64, Vec<Option<u64>>)> {
        group
            .cohorts
            .iter()
            .map(|r| (r.label.clone(), r.size, r.cells.iter().map(|c| c.map(|c| c.active)).collect()))
            .collect()
    }

    fn row(label: &str, size: u64, cells: &[Option<u64>]) -> (String, u64, Vec<Option<u64>>) {
        (label.to_owned(), size, cells.to_vec())
    }

    #[test]
    fn weekly_matrix_counts_persons_per_period_since_first_activity() {
        let mut log = Log::new();
        // Week of 2024-01-01: persons 1 and 2. Week of 2024-01-08: person 3.
        log.track(1, "Opened", "2024-01-01T09:00:00Z")
            .track(1, "Opened", "2024-01-07T23:59:59Z") // still week 0
            .track(1, "Opened", "2024-01-15T00:00:00Z") // week 2
            .track(2, "Opened", "2024-01-03T10:00:00Z")
            .track(2, "Opened", "2024-01-08T10:00:00Z") // week 1
            .track(3, "Opened", "2024-01-09T10:00:00Z")
            .track(3, "Opened", "2024-01-16T10:00:00Z"); // week 1 for person 3
        // System events are not activity: person 4 only received messages.
        log.track(4, "Message Sent", "2024-01-02T10:00:00Z").track(
            1,
            "Message Opened",
            "2024-01-22T10:00:00Z",
        );
        let r = log.run(RetentionQuery::default());
        assert_eq!(r.persons, 3);
        assert_eq!(r.columns, 3, "2024-01-01 to the newest activity's week 2024-01-15");
        assert_eq!(r.as_of, Some(Millis(ms("2024-01-16T10:00:00Z"))));
        assert_eq!(r.groups.len(), 1);
        let g = &r.groups[0];
        assert_eq!((g.trait_group.as_ref(), g.did_behavior, g.persons), (None, None, 3));
        assert_eq!(
            rows(g),
            [
                row("2024-01-01", 2, &[Some(2), Some(1), Some(1)]),
                row("2024-01-08", 1, &[Some(1), Some(1), None]),
            ]
        );
        let cell = g.cohorts[0].cells[1].unwrap();
        assert_eq!((cell.active, cell.persons, cell.fraction), (1, 2, 0.5));
        // The curve weighs cohorts by size and leaves out unobserved cells.
        let curve: Vec<_> = g.curve.iter().map(|c| c.map(|c| (c.active, c.persons))).collect();
        assert_eq!(curve, [Some((3, 3)), Some((2, 3)), Some((1, 2))]);
        assert_eq!(r.group_label(g), "all");
    }

    #[test]
    fn monthly_cohorts_use_calendar_months() {
        let mut log = Log::new();
        log.track(1, "A", "2024-01-31T23:59:59Z").track(1, "A", "2024-02-01T00:00:00Z");
        log.track(2, "A", "2024-02-29T12:00:00Z").track(2, "A", "2024-04-01T00:00:00Z");
        let r = log.run(RetentionQuery { period: Period::Month, ..Default::default() });
        assert_eq!(r.columns, 4);
        assert_eq!(
            rows(&r.groups[0]),
            [
                row("2024-01", 1, &[Some(1), Some(1), Some(0), Some(0)]),
                row("2024-02", 1, &[Some(1), Some(0), Some(1), None]),
            ]
        );
        assert_eq!(r.groups[0].cohorts[1].start, Millis(ms("2024-02-01")));
    }

    #[test]
    fn late_events_move_the_first_activity_and_every_offset() {
        let mut in_order = Log::new();
        in_order.track(1, "A", "2024-01-02").track(1, "A", "2024-01-10").track(1, "A", "2024-01-24");
        let mut late = Log::new();
        // The same events, the earliest arriving last.
        late.track(1, "A", "2024-01-24").track(1, "A", "2024-01-10").track(1, "A", "2024-01-02");
        let expected = [row("2024-01-01", 1, &[Some(1), Some(1), Some(0), Some(1)])];
        assert_eq!(rows(&in_order.run(RetentionQuery::default()).groups[0]), expected);
        assert_eq!(rows(&late.run(RetentionQuery::default()).groups[0]), expected);
        // A late event far earlier than a capped history drops what is now out of reach.
        let mut capped = Log::new();
        capped.track(1, "A", "2024-01-22").track(1, "A", "2024-01-29").track(1, "A", "2024-01-01");
        let r = capped.run(RetentionQuery { periods: Some(4), ..Default::default() });
        assert_eq!(r.columns, 4);
        assert_eq!(rows(&r.groups[0]), [row("2024-01-01", 1, &[Some(1), Some(0), Some(0), Some(1)])]);
    }

    #[test]
    fn from_and_to_bound_the_first_activity_not_later_activity() {
        let mut log = Log::new();
        log.track(1, "A", "2023-12-20").track(1, "A", "2024-01-03"); // first seen before `from`
        log.track(2, "A", "2024-01-02").track(2, "A", "2024-01-20"); // in range
        log.track(3, "A", "2024-01-15").track(3, "A", "2024-01-16"); // at `to`: out
        let q = RetentionQuery {
            from: Some(Millis(ms("2024-01-01"))),
            to: Some(Millis(ms("2024-01-15"))),
            ..Default::default()
        };
        let r = log.run(q.clone());
        assert_eq!(r.persons, 1);
        assert_eq!(rows(&r.groups[0]), [row("2024-01-01", 1, &[Some(1), Some(0), Some(1)])]);
        assert_eq!((r.from, r.to), (q.from, q.to));
    }

    #[test]
    fn split_uses_the_latest_identify_key_by_key() {
        let mut log = Log::new();
        for p in 1..=6 {
            log.track(p, "A", "2024-01-02");
        }
        // Person 1: later call wins (by event time, not by arrival).
        log.identify(1, "2024-01-05", serde_json::json!({"traits": {"plan": "pro"}}));
        log.identify(1, "2024-01-03", serde_json::json!({"traits": {"plan": "free", "email": "x"}}));
        // Person 2: a later call without the key leaves it; top-level traits apply after context.
        log.identify(
            2,
            "2024-01-03",
            serde_json::json!({"context": {"traits": {"plan": "free"}}, "traits": {"plan": "pro"}}),
        );
        log.identify(2, "2024-01-04", serde_json::json!({"traits": {"email": "y"}}));
        // Person 3: only context.traits (as some libraries send).
        log.identify(3, "2024-01-03", serde_json::json!({"context": {"traits": {"plan": "free"}}}));
        // Person 4: set, then cleared with null.
        log.identify(4, "2024-01-03", serde_json::json!({"traits": {"plan": "pro"}}));
        log.identify(4, "2024-01-04", serde_json::json!({"traits": {"plan": null}}));
        // Person 5: a number. Person 6: never identified.
        log.identify(5, "2024-01-03", serde_json::json!({"traits": {"plan": 3}}));
        let r = log.run(RetentionQuery { split: Some("plan".into()), ..Default::default() });
        let groups: Vec<(String, u64)> = r.groups.iter().map(|g| (r.group_label(g), g.persons)).collect();
        assert_eq!(
            groups,
            [
                ("plan = pro".to_owned(), 2),
                ("plan = 3".to_owned(), 1),
                ("plan = free".to_owned(), 1),
                ("plan (none)".to_owned(), 2),
            ]
        );
        assert_eq!(r.groups[0].trait_group, Some(TraitGroup::Value("pro".into())));
        assert_eq!(r.groups[3].trait_group, Some(TraitGroup::None));
        assert_eq!(r.other_values, 0);
    }

    #[test]
    fn split_caps_the_groups_and_folds_the_rest_into_other() {
        let mut log = Log::new();
        let plans = ["a", "a", "a", "b", "b", "c", "d"];
        for (i, plan) in plans.iter().enumerate() {
            let p = i as i64 + 1;
            log.track(p, "A", "2024-01-02");
            log.identify(p, "2024-01-02", serde_json::json!({"traits": {"plan": plan}}));
        }
        let r = log.run(RetentionQuery { split: Some("plan".into()), max_groups: 2, ..Default::default() });
        let groups: Vec<(Option<TraitGroup>, u64)> =
            r.groups.iter().map(|g| (g.trait_group.clone(), g.persons)).collect();
        assert_eq!(
            groups,
            [
                (Some(TraitGroup::Value("a".into())), 3),
                (Some(TraitGroup::Value("b".into())), 2),
                (Some(TraitGroup::Other), 2),
            ]
        );
        assert_eq!(r.other_values, 2);
        assert_eq!(r.group_label(&r.groups[2]), "plan (other)");
    }

    #[test]
    fn behaviour_cohorts_split_on_the_first_days_from_first_activity() {
        let mut log = Log::new();
        // 1: invites on day 2. 2: on day 8 (too late for 7 days). 3: never.
        // 4: invites within 7 days of an activity that arrives late, which moves the window.
        log.track(1, "Signed Up", "2024-01-01T10:00:00Z").track(1, "Invite Sent", "2024-01-03T10:00:00Z");
        log.track(1, "A", "2024-01-10");
        log.track(2, "Signed Up", "2024-01-01T10:00:00Z").track(2, "Invite Sent", "2024-01-09T10:00:00Z");
        log.track(3, "Signed Up", "2024-01-02T10:00:00Z");
        log.track(4, "Invite Sent", "2024-01-12T10:00:00Z").track(4, "A", "2024-01-06T10:00:00Z");
        let q = RetentionQuery {
            behavior: Some(Behavior { event: "Invite Sent".into(), within_days: 7 }),
            ..Default::default()
        };
        let r = log.run(q);
        assert_eq!(r.groups.len(), 2);
        let (did, not) = (&r.groups[0], &r.groups[1]);
        assert_eq!((did.did_behavior, did.persons), (Some(true), 2));
        assert_eq!((not.did_behavior, not.persons), (Some(false), 2));
        assert_eq!(r.group_label(did), "did Invite Sent within 7d");
        assert_eq!(r.group_label(not), "did not do Invite Sent within 7d");
        assert_eq!(rows(did), [row("2024-01-01", 2, &[Some(2), Some(2)])]);
        assert_eq!(rows(not), [row("2024-01-01", 2, &[Some(2), Some(1)])]);
        // The window is exclusive at exactly N days after the first activity.
        let mut edge = Log::new();
        edge.track(1, "A", "2024-01-01T00:00:00Z").track(1, "X", "2024-01-02T00:00:00Z");
        let one_day = |log: &Log| {
            let q = RetentionQuery {
                behavior: Some(Behavior { event: "X".into(), within_days: 1 }),
                ..Default::default()
            };
            log.run(q).groups.iter().map(|g| g.persons).collect::<Vec<_>>()
        };
        assert_eq!(one_day(&edge), [0, 1]);
        edge.track(1, "X", "2024-01-01T23:59:59Z");
        assert_eq!(one_day(&edge), [1, 0]);
    }

    #[test]
    fn split_and_behaviour_combine() {
        let mut log = Log::new();
        log.track(1, "A", "2024-01-01").track(1, "X", "2024-01-01");
        log.identify(1, "2024-01-01", serde_json::json!({"traits": {"plan": "pro"}}));
        log.track(2, "A", "2024-01-01");
        let q = RetentionQuery {
            split: Some("plan".into()),
            behavior: Some(Behavior { event: "X".into(), within_days: 3 }),
            ..Default::default()
        };
        let r = log.run(q);
        let groups: Vec<(String, u64)> = r.groups.iter().map(|g| (r.group_label(g), g.persons)).collect();
        assert_eq!(
            groups,
            [
                ("plan = pro, did X within 3d".to_owned(), 1),
                ("plan = pro, did not do X within 3d".to_owned(), 0),
                ("plan (none), did X within 3d".to_owned(), 0),
                ("plan (none), did not do X within 3d".to_owned(), 1),
            ]
        );
        assert!(r.groups[1].cohorts.is_empty() && r.groups[1].curve.iter().all(Option::is_none));
    }

    #[test]
    fn merges_join_what_was_read_under_the_old_person() {
        let mut log = Log::new();
        // An anonymous visitor (person 7) read before they identified as person 8.
        log.track(7, "Pricing", "2024-01-01").track(8, "A", "2024-01-15");
        log.identify(7, "2024-01-02", serde_json::json!({"traits": {"plan": "trial"}}));
        let q = RetentionQuery { split: Some("plan".into()), ..Default::default() };
        let mut c = Collector::new(q);
        for e in &log.events {
            c.observe(e);
        }
        c.merge(7, 8);
        c.merge(7, 8); // a merge already applied is a no-op
        assert_eq!(c.persons(), 1);
        let r = c.finish();
        assert_eq!(r.persons, 1);
        assert_eq!(r.groups[0].trait_group, Some(TraitGroup::Value("trial".into())));
        assert_eq!(rows(&r.groups[0]), [row("2024-01-01", 1, &[Some(1), Some(0), Some(1)])]);
    }

    #[test]
    fn an_empty_log_gives_an_empty_report() {
        let r = Log::new().run(RetentionQuery::default());
        assert_eq!((r.persons, r.columns, r.as_of), (0, 0, None));
        assert_eq!(r.groups.len(), 1);
        assert!(r.groups[0].cohorts.is_empty());
        let split = Log::new().run(RetentionQuery { split: Some("plan".into()), ..Default::default() });
        assert!(split.groups.is_empty());
    }

    #[test]
    fn a_person_record_stays_small() {
        // 1M persons must fit in well under a gigabyte with the map's overhead.
        assert!(std::mem::size_of::<PersonState>() <= 72, "{}", std::mem::size_of::<PersonState>());
    }
}
