//! One user's live profile: fixed-size aggregates updated in O(1) per event.
//!
//! A profile is a fold over the person's events in log order: [`Profile::apply`] is the only
//! way it changes, so folding the log again from scratch gives exactly the same profile (the
//! engine's tests check this). Everything is kept in fixed arrays (no heap), about 700 bytes,
//! so a million profiles fit in well under a gigabyte.
//!
//! Windows are calendar days in UTC: "the last 7 days" as of an instant are the 7 day buckets
//! ending with that instant's day. A day ring holds the last [`WINDOW_DAYS`] days of activity;
//! an event older than the ring still counts in the lifetime totals.

use chrono_tz::Tz;

use crate::dictionary::{Dictionary, NameId};
use crate::lifecycle::Stage;
use crate::observation::{Channel, Observation, local_hour};

pub const DAY_MS: i64 = 86_400_000;
/// Days the ring keeps: enough for the 90-day counts.
pub const WINDOW_DAYS: usize = 90;
/// A gap this long without activity ends a session.
pub const SESSION_GAP_MS: i64 = 30 * 60_000;
/// Distinct event names a profile counts one by one; further names are counted approximately.
pub const NAME_SLOTS: usize = 16;
/// Distinct features a profile lists; further ones are counted approximately.
pub const FEATURE_SLOTS: usize = 24;

const NONE: i64 = i64::MIN;
const NO_ZONE: u16 = u16::MAX;

/// Per-name counters of one profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameSlot {
    pub id: NameId,
    pub count: u32,
    pub last: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// First event of any kind.
    first_seen: i64,
    /// Last event of any kind.
    last_seen: i64,
    first_active: i64,
    last_active: i64,
    /// Activity events, lifetime.
    events: u32,
    sessions: u32,
    /// Day number (days since the epoch, UTC) of the newest day in the ring.
    newest_day: i64,
    day_events: [u16; WINDOW_DAYS],
    day_sessions: [u8; WINDOW_DAYS],
    revenue: f64,
    revenue_events: u32,
    last_revenue_at: i64,
    /// Activity by hour of day in the user's local time.
    hours: [u32; 24],
    /// Last engagement per [`Channel`].
    channels: [i64; Channel::ALL.len()],
    names: [NameSlot; NAME_SLOTS],
    names_len: u8,
    /// Names that found no slot, hashed into 64 bits: its popcount estimates how many.
    names_overflow: u64,
    features: [NameId; FEATURE_SLOTS],
    features_len: u8,
    features_overflow: u64,
    zone: u16,
    pub(crate) stage: Stage,
    pub(crate) stage_since: i64,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            first_seen: NONE,
            last_seen: NONE,
            first_active: NONE,
            last_active: NONE,
            events: 0,
            sessions: 0,
            newest_day: NONE,
            day_events: [0; WINDOW_DAYS],
            day_sessions: [0; WINDOW_DAYS],
            revenue: 0.0,
            revenue_events: 0,
            last_revenue_at: NONE,
            hours: [0; 24],
            channels: [NONE; Channel::ALL.len()],
            names: [NameSlot::default(); NAME_SLOTS],
            names_len: 0,
            names_overflow: 0,
            features: [0; FEATURE_SLOTS],
            features_len: 0,
            features_overflow: 0,
            zone: NO_ZONE,
            stage: Stage::New,
            stage_since: NONE,
        }
    }
}

fn day_of(ts: i64) -> i64 {
    ts.div_euclid(DAY_MS)
}

fn slot(day: i64) -> usize {
    day.rem_euclid(WINDOW_DAYS as i64) as usize
}

fn some(ts: i64) -> Option<i64> {
    (ts != NONE).then_some(ts)
}

impl Profile {
    /// Folds one event in. O(1): a few array updates, at most one pass over the ring when a
    /// new day starts.
    pub fn apply(&mut self, o: &Observation, dict: &Dictionary) {
        let ts = o.timestamp;
        if self.first_seen == NONE || ts < self.first_seen {
            self.first_seen = ts;
        }
        self.last_seen = self.last_seen.max(ts);
        if let Some(zone) = o.zone {
            self.zone = zone;
        }
        if let Some(channel) = o.channel {
            let last = &mut self.channels[channel.index()];
            *last = (*last).max(ts);
        }
        if !o.activity {
            return;
        }

        let new_session = self.last_active == NONE || ts > self.last_active.saturating_add(SESSION_GAP_MS);
        self.events = self.events.saturating_add(1);
        if new_session {
            self.sessions = self.sessions.saturating_add(1);
        }
        if self.first_active == NONE || ts < self.first_active {
            self.first_active = ts;
        }
        self.last_active = self.last_active.max(ts);

        let day = day_of(ts);
        if self.newest_day == NONE || day > self.newest_day {
            let from = if self.newest_day == NONE { day - WINDOW_DAYS as i64 } else { self.newest_day };
            let clear = (day - from).min(WINDOW_DAYS as i64);
            for d in (day - clear + 1)..=day {
                self.day_events[slot(d)] = 0;
                self.day_sessions[slot(d)] = 0;
            }
            self.newest_day = day;
        }
        if day > self.newest_day - WINDOW_DAYS as i64 {
            let s = slot(day);
            self.day_events[s] = self.day_events[s].saturating_add(1);
            if new_session {
                self.day_sessions[s] = self.day_sessions[s].saturating_add(1);
            }
        }

        if let Some(revenue) = o.revenue {
            self.revenue += revenue;
            self.revenue_events = self.revenue_events.saturating_add(1);
            self.last_revenue_at = self.last_revenue_at.max(ts);
        }

        let hour = o
            .local_hour
            .or_else(|| self.zone().and_then(|z| dict.zone(z)).map(|tz| local_hour(tz, ts)))
            .unwrap_or_else(|| local_hour(Tz::UTC, ts));
        let h = &mut self.hours[hour as usize % 24];
        *h = h.saturating_add(1);

        if let Some(name) = o.name {
            self.count_name(name, ts);
        }
        if let Some(feature) = o.feature {
            self.add_feature(feature);
        }
    }

    fn count_name(&mut self, id: NameId, ts: i64) {
        let used = &mut self.names[..self.names_len as usize];
        if let Some(slot) = used.iter_mut().find(|s| s.id == id) {
            slot.count = slot.count.saturating_add(1);
            slot.last = slot.last.max(ts);
        } else if (self.names_len as usize) < NAME_SLOTS {
            self.names[self.names_len as usize] = NameSlot { id, count: 1, last: ts };
            self.names_len += 1;
        } else {
            self.names_overflow |= 1 << (id % 64);
        }
    }

    fn add_feature(&mut self, id: NameId) {
        if self.features[..self.features_len as usize].contains(&id) {
            return;
        }
        if (self.features_len as usize) < FEATURE_SLOTS {
            self.features[self.features_len as usize] = id;
            self.features_len += 1;
        } else {
            self.features_overflow |= 1 << (id % 64);
        }
    }

    /// True before the profile has seen any event.
    pub fn is_empty(&self) -> bool {
        self.first_seen == NONE
    }

    pub fn first_seen(&self) -> Option<i64> {
        some(self.first_seen)
    }

    pub fn last_seen(&self) -> Option<i64> {
        some(self.last_seen)
    }

    pub fn first_active(&self) -> Option<i64> {
        some(self.first_active)
    }

    pub fn last_active(&self) -> Option<i64> {
        some(self.last_active)
    }

    pub fn zone(&self) -> Option<NameId> {
        (self.zone != NO_ZONE).then_some(self.zone)
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn stage_since(&self) -> Option<i64> {
        some(self.stage_since)
    }

    /// Per-name counters (up to [`NAME_SLOTS`] names, in the order first seen).
    pub fn names(&self) -> &[NameSlot] {
        &self.names[..self.names_len as usize]
    }

    pub fn features_used(&self) -> &[NameId] {
        &self.features[..self.features_len as usize]
    }

    /// Last engagement through a channel.
    pub fn last_engagement(&self, channel: Channel) -> Option<i64> {
        some(self.channels[channel.index()])
    }

    /// Sum of a ring over the `days` UTC days ending with `as_of`'s day.
    fn window<T: Copy + Into<u32>>(&self, ring: &[T; WINDOW_DAYS], as_of: i64, days: i64, skip: i64) -> u32 {
        if self.newest_day == NONE {
            return 0;
        }
        let end = day_of(as_of) - skip;
        let start = (end - days + 1).max(self.newest_day - WINDOW_DAYS as i64 + 1);
        let end = end.min(self.newest_day);
        (start..=end).map(|d| ring[slot(d)].into()).sum()
    }

    fn active_days(&self, as_of: i64, days: i64) -> u32 {
        if self.newest_day == NONE {
            return 0;
        }
        let end = day_of(as_of);
        let start = (end - days + 1).max(self.newest_day - WINDOW_DAYS as i64 + 1);
        (start..=end.min(self.newest_day)).filter(|&d| self.day_events[slot(d)] > 0).count() as u32
    }

    /// The profile's features as of an instant at or after its last event.
    pub fn features(&self, as_of: i64) -> Features {
        let days = |ms: i64| ms.max(0) as f64 / DAY_MS as f64;
        let events_7d = self.window(&self.day_events, as_of, 7, 0);
        let events_prev_7d = self.window(&self.day_events, as_of, 7, 7);
        let usual_hour = {
            let (hour, count) = self
                .hours
                .iter()
                .enumerate()
                .max_by_key(|(h, c)| (**c, std::cmp::Reverse(*h)))
                .expect("24 hours");
            (*count > 0).then_some(hour as u8)
        };
        Features {
            recency_days: some(self.last_active).map(|t| days(as_of - t)),
            tenure_days: some(self.first_seen).map(|t| days(as_of - t)).unwrap_or(0.0),
            events_total: self.events,
            events_1d: self.window(&self.day_events, as_of, 1, 0),
            events_7d,
            events_30d: self.window(&self.day_events, as_of, 30, 0),
            events_90d: self.window(&self.day_events, as_of, 90, 0),
            events_prev_7d,
            active_days_7d: self.active_days(as_of, 7),
            active_days_30d: self.active_days(as_of, 30),
            active_days_90d: self.active_days(as_of, 90),
            sessions_total: self.sessions,
            sessions_7d: self.window(&self.day_sessions, as_of, 7, 0),
            sessions_30d: self.window(&self.day_sessions, as_of, 30, 0),
            distinct_events: self.names_len as u32 + self.names_overflow.count_ones(),
            distinct_features: self.features_len as u32 + self.features_overflow.count_ones(),
            trend: trend(events_7d, events_prev_7d),
            revenue_total: self.revenue,
            revenue_events: self.revenue_events,
            days_since_revenue: some(self.last_revenue_at).map(|t| days(as_of - t)),
            usual_hour,
        }
    }

    /// Lifetime count and last time of one event name, when the name has a slot.
    pub fn name_stats(&self, id: NameId) -> Option<NameSlot> {
        self.names().iter().copied().find(|s| s.id == id)
    }
}

/// Week-over-week change of activity in -1..=1: (this week − last week) / max(both).
pub fn trend(this_week: u32, last_week: u32) -> f64 {
    let max = this_week.max(last_week);
    if max == 0 { 0.0 } else { (this_week as f64 - last_week as f64) / max as f64 }
}

/// A profile's features at one instant: what scores, stages and models read.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Features {
    /// Days since the last activity; None when never active.
    pub recency_days: Option<f64>,
    /// Days since the first event.
    pub tenure_days: f64,
    pub events_total: u32,
    pub events_1d: u32,
    pub events_7d: u32,
    pub events_30d: u32,
    pub events_90d: u32,
    /// Events in the 7 days before the last 7.
    pub events_prev_7d: u32,
    pub active_days_7d: u32,
    pub active_days_30d: u32,
    pub active_days_90d: u32,
    pub sessions_total: u32,
    pub sessions_7d: u32,
    pub sessions_30d: u32,
    pub distinct_events: u32,
    pub distinct_features: u32,
    /// Week-over-week trend in -1..=1.
    pub trend: f64,
    pub revenue_total: f64,
    pub revenue_events: u32,
    pub days_since_revenue: Option<f64>,
    /// Most frequent hour of activity in the user's time zone (UTC when unknown).
    pub usual_hour: Option<u8>,
}

/// A stored profile that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored profile is corrupt: {0}")]
pub struct DecodeError(&'static str);

const FORMAT: u8 = 1;

impl Profile {
    /// A compact binary form: sparse where the profile is (most days of the ring are empty).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.push(FORMAT);
        for v in [self.first_seen, self.last_seen, self.first_active, self.last_active, self.newest_day] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.events.to_le_bytes());
        out.extend_from_slice(&self.sessions.to_le_bytes());
        let days: Vec<u8> = (0..WINDOW_DAYS as u8)
            .filter(|&back| {
                self.newest_day != NONE && self.day_events[slot(self.newest_day - back as i64)] > 0
            })
            .collect();
        out.push(days.len() as u8);
        for back in days {
            let s = slot(self.newest_day - back as i64);
            out.push(back);
            out.extend_from_slice(&self.day_events[s].to_le_bytes());
            out.push(self.day_sessions[s]);
        }
        out.extend_from_slice(&self.revenue.to_le_bytes());
        out.extend_from_slice(&self.revenue_events.to_le_bytes());
        out.extend_from_slice(&self.last_revenue_at.to_le_bytes());
        let hours: Vec<u8> = (0..24).filter(|&h| self.hours[h as usize] > 0).collect();
        out.push(hours.len() as u8);
        for h in hours {
            out.push(h);
            out.extend_from_slice(&self.hours[h as usize].to_le_bytes());
        }
        let mask =
            (0..self.channels.len()).filter(|&c| self.channels[c] != NONE).fold(0u8, |m, c| m | 1 << c);
        out.push(mask);
        for c in self.channels.iter().filter(|&&c| c != NONE) {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.push(self.names_len);
        for n in self.names() {
            out.extend_from_slice(&n.id.to_le_bytes());
            out.extend_from_slice(&n.count.to_le_bytes());
            out.extend_from_slice(&n.last.to_le_bytes());
        }
        out.extend_from_slice(&self.names_overflow.to_le_bytes());
        out.push(self.features_len);
        for f in self.features_used() {
            out.extend_from_slice(&f.to_le_bytes());
        }
        out.extend_from_slice(&self.features_overflow.to_le_bytes());
        out.extend_from_slice(&self.zone.to_le_bytes());
        out.push(self.stage as u8);
        out.extend_from_slice(&self.stage_since.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        if r.u8()? != FORMAT {
            return Err(DecodeError("unknown format"));
        }
        let mut p = Profile {
            first_seen: r.i64()?,
            last_seen: r.i64()?,
            first_active: r.i64()?,
            last_active: r.i64()?,
            newest_day: r.i64()?,
            events: r.u32()?,
            sessions: r.u32()?,
            ..Profile::default()
        };
        for _ in 0..r.u8()? {
            let back = r.u8()? as i64;
            if back >= WINDOW_DAYS as i64 || p.newest_day == NONE {
                return Err(DecodeError("day outside the ring"));
            }
            let s = slot(p.newest_day - back);
            p.day_events[s] = r.u16()?;
            p.day_sessions[s] = r.u8()?;
        }
        p.revenue = f64::from_bits(r.u64()?);
        p.revenue_events = r.u32()?;
        p.last_revenue_at = r.i64()?;
        for _ in 0..r.u8()? {
            let h = r.u8()? as usize;
            *p.hours.get_mut(h).ok_or(DecodeError("hour out of range"))? = r.u32()?;
        }
        let mask = r.u8()?;
        for c in 0..p.channels.len() {
            if mask & (1 << c) != 0 {
                p.channels[c] = r.i64()?;
            }
        }
        p.names_len = r.u8()?;
        if p.names_len as usize > NAME_SLOTS {
            return Err(DecodeError("too many names"));
        }
        for i in 0..p.names_len as usize {
            p.names[i] = NameSlot { id: r.u16()?, count: r.u32()?, last: r.i64()? };
        }
        p.names_overflow = r.u64()?;
        p.features_len = r.u8()?;
        if p.features_len as usize > FEATURE_SLOTS {
            return Err(DecodeError("too many features"));
        }
        for i in 0..p.features_len as usize {
            p.features[i] = r.u16()?;
        }
        p.features_overflow = r.u64()?;
        p.zone = r.u16()?;
        p.stage = Stage::from_code(r.u8()?).ok_or(DecodeError("unknown stage"))?;
        p.stage_since = r.i64()?;
        if !r.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(p)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(DecodeError("truncated"))?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn fold(events: &[Observation]) -> Profile {
        let dict = Dictionary::default();
        let mut p = Profile::default();
        for o in events {
            p.apply(o, &dict);
        }
        p
    }

    /// The windows counted the slow way, straight from the events.
    fn naive_count(events: &[Observation], as_of: i64, days: i64) -> u32 {
        let end = day_of(as_of);
        events.iter().filter(|o| o.activity && (end - days + 1..=end).contains(&day_of(o.timestamp))).count()
            as u32
    }

    #[test]
    fn windows_match_a_direct_count() {
        let mut events = Vec::new();
        let mut rng = 12345u64;
        for _ in 0..2000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // in order over ~200 days, with a few late arrivals up to 3 days back
            let base = T0 + (events.len() as i64) * DAY_MS / 10;
            let late = if rng.is_multiple_of(10) { (rng % 3) as i64 * DAY_MS } else { 0 };
            events.push(Observation::activity(base - late, Some((rng % 5) as u16)));
        }
        let p = fold(&events);
        let as_of = p.last_active().unwrap() + 2 * DAY_MS;
        let f = p.features(as_of);
        assert_eq!(f.events_total, 2000);
        for (days, got) in [(1, f.events_1d), (7, f.events_7d), (30, f.events_30d), (90, f.events_90d)] {
            assert_eq!(got, naive_count(&events, as_of, days), "{days} days");
        }
        assert_eq!(f.distinct_events, 5);
        assert_eq!(f.recency_days, Some(2.0));
    }

    #[test]
    fn sessions_split_on_half_hour_gaps() {
        let at = |min: i64| Observation::activity(T0 + min * 60_000, None);
        let p = fold(&[at(0), at(10), at(39), at(70), at(71), at(200), at(5)]);
        // sessions start at 0, 70 and 200; the late event at minute 5 opens nothing
        assert_eq!(p.features(T0 + 300 * 60_000).sessions_total, 3);
    }

    #[test]
    fn an_old_event_counts_in_totals_but_not_in_windows() {
        let p = fold(&[Observation::activity(T0, None), Observation::activity(T0 - 200 * DAY_MS, None)]);
        let f = p.features(T0);
        assert_eq!((f.events_total, f.events_90d), (2, 1));
        assert_eq!(f.tenure_days, 200.0);
    }

    #[test]
    fn encoding_round_trips_and_is_small() {
        let mut events: Vec<Observation> =
            (0..500).map(|i| Observation::activity(T0 + i * 3_600_000 * 5, Some((i % 20) as u16))).collect();
        events[3].revenue = Some(49.0);
        events[4].channel = Some(Channel::Email);
        events[5].feature = Some(3);
        events[6].zone = Some(0);
        let p = fold(&events);
        let bytes = p.encode();
        assert!(bytes.len() < 1024, "{} bytes", bytes.len());
        assert_eq!(Profile::decode(&bytes).unwrap(), p);
        assert_eq!(Profile::decode(&Profile::default().encode()).unwrap(), Profile::default());
        for cut in 0..bytes.len() {
            assert!(Profile::decode(&bytes[..cut]).is_err());
        }
        assert!(std::mem::size_of::<Profile>() <= 900, "{}", std::mem::size_of::<Profile>());
    }

    #[test]
    fn trend_is_bounded() {
        assert_eq!(trend(0, 0), 0.0);
        assert_eq!(trend(10, 0), 1.0);
        assert_eq!(trend(0, 10), -1.0);
        assert_eq!(trend(5, 10), -0.5);
    }
}
