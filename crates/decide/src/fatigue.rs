//! Fatigue management: how often anyone may be messaged, across every campaign of a workspace.
//!
//! Rules are a workspace setting ([`FATIGUE_SETTING`]); the ledger remembers each person's
//! sends of the last week (scheduled ones included), so every check is a scan of a handful of
//! entries. Each check is recorded, passed or not, in the decision's explanation.

use std::collections::HashMap;

use chrono::{TimeZone, Timelike};
use serde::{Deserialize, Serialize};

use crate::campaign::Channel;

pub const FATIGUE_SETTING: &str = "fatigue";
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;

/// Caps on one scope (all channels, or one channel), over rolling windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    /// Messages in any 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
    /// Messages in any 7 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_week: Option<u32>,
}

/// Hours of the user's local day when nothing is sent: `start` (inclusive) to `end`
/// (exclusive), wrapping over midnight when `start > end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: u8,
    pub end: u8,
}

impl QuietHours {
    pub fn contains(&self, hour: u8) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&hour)
        } else {
            hour >= self.start || hour < self.end
        }
    }
}

/// A workspace's fatigue rules. A stored setting names what it changes: missing fields keep
/// their defaults, `null` turns quiet hours off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FatigueRules {
    pub caps: Caps,
    pub channels: HashMap<Channel, Caps>,
    pub quiet_hours: Option<QuietHours>,
    /// Least time between any two messages to one person, in minutes.
    pub min_gap_minutes: u32,
}

impl Default for FatigueRules {
    /// What a workspace gets before it sets its own: at most 2 messages a day and 5 a week,
    /// one SMS a day, nothing between 21:00 and 08:00 local time, 4 hours between messages.
    fn default() -> Self {
        FatigueRules {
            caps: Caps { per_day: Some(2), per_week: Some(5) },
            channels: HashMap::from([(Channel::Sms, Caps { per_day: Some(1), per_week: Some(2) })]),
            quiet_hours: Some(QuietHours { start: 21, end: 8 }),
            min_gap_minutes: 240,
        }
    }
}

/// A fatigue setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

impl FatigueRules {
    pub fn from_json(text: &str) -> Result<Self, RulesError> {
        let rules: FatigueRules = serde_json::from_str(text).map_err(|e| RulesError(e.to_string()))?;
        rules.validate()?;
        Ok(rules)
    }

    pub fn validate(&self) -> Result<(), RulesError> {
        if let Some(q) = self.quiet_hours
            && (q.start > 23 || q.end > 23)
        {
            return Err(RulesError(format!(
                "quiet_hours: start and end are hours 0-23, got {}-{}",
                q.start, q.end
            )));
        }
        for (scope, caps) in std::iter::once(("caps".to_owned(), &self.caps))
            .chain(self.channels.iter().map(|(c, caps)| (format!("channels.{c}"), caps)))
        {
            if let (Some(d), Some(w)) = (caps.per_day, caps.per_week)
                && d > w
            {
                return Err(RulesError(format!("{scope}: per_day ({d}) exceeds per_week ({w})")));
            }
        }
        Ok(())
    }
}

/// One rule's verdict on one decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    pub rule: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// One message counted against a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    pub at: i64,
    pub channel: Channel,
    pub campaign: u32,
}

/// Every person's messages of the last week and future scheduled ones.
#[derive(Default)]
pub struct Ledger {
    by_person: HashMap<i64, Vec<Sent>>,
    /// Channels a person unsubscribed from or bounced on, as bits of `Channel as u8`.
    suppressed: HashMap<i64, u8>,
}

/// What the rules allow for a message wanted at some time.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Delivery time (later than wanted when deferred); None when suppressed.
    pub deliver_at: Option<i64>,
    pub deferred: bool,
    /// The rule that stopped or deferred it.
    pub rule: Option<&'static str>,
    pub checks: Vec<Check>,
}

/// The campaign-level parts of a fatigue check.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub person: i64,
    pub campaign: u32,
    pub channel: Channel,
    /// When the message should go out.
    pub at: i64,
    pub cooldown_ms: i64,
    /// The campaign allows deferring out of quiet hours.
    pub allow_defer: bool,
}

impl Ledger {
    pub fn record(&mut self, person: i64, sent: Sent) {
        let list = self.by_person.entry(person).or_default();
        let cutoff = sent.at - WEEK_MS;
        list.retain(|s| s.at > cutoff - WEEK_MS);
        list.push(sent);
    }

    pub fn suppress(&mut self, person: i64, channel: Channel) {
        *self.suppressed.entry(person).or_default() |= 1 << channel as u8;
    }

    pub fn is_suppressed(&self, person: i64, channel: Channel) -> bool {
        self.suppressed.get(&person).is_some_and(|bits| bits & (1 << channel as u8) != 0)
    }

    /// Drops what no rule can look at any more (older than a week before `now`).
    pub fn prune(&mut self, now: i64) {
        let cutoff = now - WEEK_MS;
        self.by_person.retain(|_, list| {
            list.retain(|s| s.at > cutoff);
            !list.is_empty()
        });
    }

    /// Applies `rules` to a message wanted at `req.at` for a person in time zone `zone`.
    pub fn check(&self, rules: &FatigueRules, req: &Request, zone: Option<chrono_tz::Tz>) -> Verdict {
        let mut checks = Vec::with_capacity(6);
        let mut at = req.at;
        let mut deferred = false;
        if self.is_suppressed(req.person, req.channel) {
            checks.push(Check {
                rule: "unsubscribed",
                passed: false,
                detail: format!("the user unsubscribed from {} or it bounced", req.channel),
            });
            return Verdict { deliver_at: None, deferred, rule: Some("unsubscribed"), checks };
        }
        if let Some(q) = rules.quiet_hours {
            let hour = local_hour(at, zone);
            if q.contains(hour) {
                if req.allow_defer {
                    at = next_local_hour(at, q.end, zone);
                    deferred = true;
                    checks.push(Check {
                        rule: "quiet_hours",
                        passed: true,
                        detail: format!(
                            "{hour:02}:00 local is within quiet hours {:02}-{:02}; deferred to {:02}:00",
                            q.start, q.end, q.end
                        ),
                    });
                } else {
                    checks.push(Check {
                        rule: "quiet_hours",
                        passed: false,
                        detail: format!(
                            "{hour:02}:00 local is within quiet hours {:02}-{:02} and the campaign does not defer",
                            q.start, q.end
                        ),
                    });
                    return Verdict { deliver_at: None, deferred, rule: Some("quiet_hours"), checks };
                }
            } else {
                checks.push(Check {
                    rule: "quiet_hours",
                    passed: true,
                    detail: format!("{hour:02}:00 local"),
                });
            }
        }
        let sent: &[Sent] = self.by_person.get(&req.person).map_or(&[], Vec::as_slice);
        let within = |from: i64, to: i64, f: &dyn Fn(&Sent) -> bool| {
            sent.iter().filter(|s| s.at > from && s.at <= to && f(s)).count() as u32
        };
        let stop = |rule: &'static str, passed: bool, detail: String, checks: &mut Vec<Check>| {
            checks.push(Check { rule, passed, detail });
            !passed
        };
        if req.cooldown_ms > 0 {
            let last = sent.iter().filter(|s| s.campaign == req.campaign).map(|s| s.at).max();
            let ok = last.is_none_or(|l| (at - l).abs() >= req.cooldown_ms);
            let detail = match last {
                Some(l) => format!("last message of this campaign {} ago", human(at - l)),
                None => "no earlier message of this campaign".into(),
            };
            if stop("cooldown", ok, detail, &mut checks) {
                return Verdict { deliver_at: None, deferred, rule: Some("cooldown"), checks };
            }
        }
        if rules.min_gap_minutes > 0 {
            let gap = i64::from(rules.min_gap_minutes) * 60_000;
            let nearest = sent.iter().map(|s| (at - s.at).abs()).min();
            let ok = nearest.is_none_or(|d| d >= gap);
            let detail = match nearest {
                Some(d) => format!("nearest other message {} away, minimum {}", human(d), human(gap)),
                None => "no other message".into(),
            };
            if stop("min_gap", ok, detail, &mut checks) {
                return Verdict { deliver_at: None, deferred, rule: Some("min_gap"), checks };
            }
        }
        let scopes = [
            ("", &rules.caps, None),
            ("channel_", rules.channels.get(&req.channel).unwrap_or(&NO_CAPS), Some(req.channel)),
        ];
        for (prefix, caps, channel) in scopes {
            let matches = |s: &Sent| channel.is_none_or(|c| s.channel == c);
            for (window, cap, name) in [
                (DAY_MS, caps.per_day, if prefix.is_empty() { "daily_cap" } else { "channel_daily_cap" }),
                (WEEK_MS, caps.per_week, if prefix.is_empty() { "weekly_cap" } else { "channel_weekly_cap" }),
            ] {
                let Some(cap) = cap else { continue };
                let n = within(at - window, at, &matches);
                let scope = channel.map_or(String::new(), |c| format!(" on {c}"));
                let detail = format!(
                    "{n} of {cap} messages{scope} in the last {}",
                    if window == DAY_MS { "24 hours" } else { "7 days" }
                );
                if stop(name, n < cap, detail, &mut checks) {
                    return Verdict { deliver_at: None, deferred, rule: Some(name), checks };
                }
            }
        }
        Verdict { deliver_at: Some(at), deferred, rule: deferred.then_some("quiet_hours"), checks }
    }
}

const NO_CAPS: Caps = Caps { per_day: None, per_week: None };

/// Hour of the day at `t` in `zone` (UTC when unknown).
pub fn local_hour(t: i64, zone: Option<chrono_tz::Tz>) -> u8 {
    let zone = zone.unwrap_or(chrono_tz::UTC);
    match zone.timestamp_millis_opt(t) {
        chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) => d.hour() as u8,
        chrono::LocalResult::None => 0,
    }
}

/// The first instant at or after `t` when the local clock in `zone` shows `hour`:00.
pub fn next_local_hour(t: i64, hour: u8, zone: Option<chrono_tz::Tz>) -> i64 {
    let start = t - t.rem_euclid(HOUR_MS);
    // Whole hours only: every zone's offset is a whole or half hour, and a half-hour zone
    // reaches `hour`:00 at a half hour of UTC — so walk in half hours.
    let mut c = start;
    while c < t + 2 * DAY_MS {
        if c >= t {
            let z = zone.unwrap_or(chrono_tz::UTC);
            if let chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) =
                z.timestamp_millis_opt(c)
                && d.hour() as u8 == hour
                && d.minute() == 0
            {
                return c;
            }
        }
        c += HOUR_MS / 4;
    }
    t
}

fn human(ms: i64) -> String {
    let minutes = ms / 60_000;
    if minutes < 120 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        format!("{} h", minutes / 60)
    } else {
        format!("{} d", minutes / (24 * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_258_000_000; // 2026-01-01T09:00:00Z

    fn req(at: i64) -> Request {
        Request { person: 1, campaign: 0, channel: Channel::Email, at, cooldown_ms: 0, allow_defer: true }
    }

    #[test]
    fn quiet_hours_defer_to_local_morning() {
        let rules = FatigueRules::default();
        let ledger = Ledger::default();
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        // 22:30 UTC on Jan 1 is 23:30 in Berlin: deferred to 08:00 Berlin = 07:00 UTC.
        let late = T0 + 13 * HOUR_MS + 30 * 60_000;
        let v = ledger.check(&rules, &req(late), Some(berlin));
        assert!(v.deferred);
        assert_eq!(v.deliver_at, Some(T0 + 22 * HOUR_MS));
        assert_eq!(v.rule, Some("quiet_hours"));
        let strict = Request { allow_defer: false, ..req(late) };
        let v = ledger.check(&rules, &strict, Some(berlin));
        assert_eq!((v.deliver_at, v.rule), (None, Some("quiet_hours")));
        // Kolkata is UTC+5:30: 08:00 there is 02:30 UTC.
        let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
        let at = next_local_hour(T0 + 14 * HOUR_MS, 8, Some(kolkata));
        assert_eq!(local_hour(at, Some(kolkata)), 8);
        assert_eq!(at.rem_euclid(HOUR_MS), 30 * 60_000);
    }

    #[test]
    fn caps_gap_and_cooldown_name_their_rule() {
        let rules = FatigueRules { quiet_hours: None, ..FatigueRules::default() };
        let mut ledger = Ledger::default();
        ledger.record(1, Sent { at: T0, channel: Channel::Email, campaign: 0 });
        let v = ledger.check(&rules, &req(T0 + HOUR_MS), None);
        assert_eq!(v.rule, Some("min_gap"));
        assert!(v.checks.last().unwrap().detail.contains("60 min"), "{v:?}");
        let with_cooldown = Request { cooldown_ms: 3 * DAY_MS, ..req(T0 + 5 * HOUR_MS) };
        assert_eq!(ledger.check(&rules, &with_cooldown, None).rule, Some("cooldown"));
        let other = Request { campaign: 1, ..with_cooldown };
        assert_eq!(ledger.check(&rules, &other, None).deliver_at, Some(T0 + 5 * HOUR_MS));
        ledger.record(1, Sent { at: T0 + 5 * HOUR_MS, channel: Channel::Email, campaign: 1 });
        assert_eq!(ledger.check(&rules, &req(T0 + 10 * HOUR_MS), None).rule, Some("daily_cap"));
        let sms = Request { channel: Channel::Sms, ..req(T0 + 30 * HOUR_MS) };
        ledger.record(1, Sent { at: T0 + 25 * HOUR_MS, channel: Channel::Sms, campaign: 2 });
        assert_eq!(ledger.check(&rules, &sms, None).rule, Some("channel_daily_cap"));
        for day in 2..5 {
            ledger.record(1, Sent { at: T0 + day * DAY_MS, channel: Channel::Push, campaign: 3 });
        }
        assert_eq!(ledger.check(&rules, &req(T0 + 6 * DAY_MS), None).rule, Some("weekly_cap"));
        assert!(ledger.check(&rules, &req(T0 + 9 * DAY_MS), None).deliver_at.is_some());
        ledger.suppress(1, Channel::Email);
        assert_eq!(ledger.check(&rules, &req(T0 + 9 * DAY_MS), None).rule, Some("unsubscribed"));
    }

    #[test]
    fn rules_are_validated() {
        assert!(FatigueRules::from_json(r#"{"quiet_hours": {"start": 25, "end": 7}}"#).is_err());
        assert!(FatigueRules::from_json(r#"{"caps": {"per_day": 9, "per_week": 3}}"#).is_err());
        assert!(FatigueRules::from_json(r#"{"caps": {"per_dy": 1}}"#).unwrap_err().0.contains("per_dy"));
        let rules =
            FatigueRules::from_json(r#"{"channels": {"sms": {"per_week": 1}}, "min_gap_minutes": 60}"#)
                .unwrap();
        assert_eq!(rules.channels[&Channel::Sms].per_week, Some(1));
        assert_eq!(rules.quiet_hours, FatigueRules::default().quiet_hours, "missing: the default");
        assert_eq!(rules.caps, FatigueRules::default().caps);
        let quiet_off = FatigueRules::from_json(r#"{"quiet_hours": null}"#).unwrap();
        assert_eq!((quiet_off.quiet_hours, quiet_off.min_gap_minutes), (None, 240));
    }
}
