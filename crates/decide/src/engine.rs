//! The decision engine of one workspace: campaigns with their policies, the fatigue ledger,
//! and the decisions still waiting for their outcome.
//!
//! Everything here is synchronous and takes the time as an argument: the server passes the
//! wall clock, the simulator its simulated clock. Persistence is the caller's: decisions and
//! outcomes come out as values, policy states as JSON.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::campaign::{Campaign, Channel, SendTime, Status, Trigger};
use crate::context::UserContext;
use crate::fatigue::{self, Check, FatigueRules, Ledger, Request, Sent};
use crate::policy::{ArmExplanation, PolicyState};

/// How long after its window closed a decision still accepts a late conversion (which then
/// corrects the failure learned at the close).
pub const LATE_GRACE_MS: i64 = 7 * 86_400_000;

/// What became of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStatus {
    /// A message goes out at `deliver_at`.
    Send,
    /// In the control group: nothing is sent, the outcome is still watched.
    Holdout,
    /// The policy chose to send nothing.
    NoSend,
    /// A fatigue rule (or a higher-priority campaign) stopped it; `rule` says which.
    Suppressed,
    /// Outside the campaign's audience.
    NotEligible,
    /// The campaign is paused.
    Paused,
}

impl DecisionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionStatus::Send => "send",
            DecisionStatus::Holdout => "holdout",
            DecisionStatus::NoSend => "no_send",
            DecisionStatus::Suppressed => "suppressed",
            DecisionStatus::NotEligible => "not_eligible",
            DecisionStatus::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Send, Self::Holdout, Self::NoSend, Self::Suppressed, Self::NotEligible, Self::Paused]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One arm in an explanation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArmSummary {
    pub arm: String,
    #[serde(flatten)]
    pub stats: ArmExplanation,
}

/// Why a decision came out as it did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Explanation {
    pub policy: &'static str,
    /// Every arm's probability and what it rests on (empty when no arm was considered).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub arms: Vec<ArmSummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fatigue: Vec<Check>,
    /// The rule that suppressed or deferred the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub audience: bool,
    /// The stable draw that put the user in or out of the holdout, and the holdout share.
    pub holdout_draw: f64,
    pub holdout_share: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A decision, as recorded for the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub id: String,
    pub campaign: String,
    pub campaign_version: i64,
    pub person: i64,
    pub user_id: Option<String>,
    pub at: i64,
    pub status: DecisionStatus,
    pub arm: Option<usize>,
    pub arm_name: Option<String>,
    pub channel: Option<Channel>,
    /// The chosen content's id.
    pub content: Option<String>,
    /// Probability with which this outcome (the arm, or the holdout) was chosen.
    pub propensity: f64,
    pub holdout: bool,
    pub deliver_at: Option<i64>,
    /// End of the goal window.
    pub deadline: i64,
    pub policy_version: u64,
    /// The context the policy saw (intercept first; empty for non-contextual policies).
    pub context: Vec<f64>,
    pub explanation: Explanation,
}

/// What happened after a decision, to be stored with it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub decision: String,
    pub kind: OutcomeKind,
    pub at: i64,
    /// The goal's value property, for conversions.
    pub value: Option<f64>,
}

/// Outcome kinds are the store's: the engine attributes them, the store records them.
pub use whisperer_store::OutcomeKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpenState {
    Waiting,
    Converted,
    Failed,
}

/// A decision still waiting for (or correctable by) its goal event.
#[derive(Clone, Debug)]
struct Open {
    decision: String,
    campaign: Arc<Campaign>,
    /// The arm the policy learns about (None for holdouts).
    arm: Option<usize>,
    context: Vec<f64>,
    from: i64,
    deadline: i64,
    state: OpenState,
}

/// The per-call inputs that are not about the user.
#[derive(Clone, Copy, Debug)]
pub struct Draw<'a> {
    pub decision_id: &'a str,
    /// Stable id of the user (user id, else anonymous id): keeps holdouts and A/B arms stable.
    pub unit: &'a str,
    /// Uniform number in [0, 1) for the policy's draw.
    pub u: f64,
    pub now: i64,
}

/// Why a decision could not be made at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecideError {
    #[error("unknown campaign {0:?}")]
    UnknownCampaign(String),
}

struct Live {
    campaign: Arc<Campaign>,
    policy: PolicyState,
    /// Policy state changed since last taken (to persist).
    dirty: bool,
    /// Outcomes since the last snapshot.
    fresh: u64,
    /// Members of a segment trigger, and users above a churn trigger's threshold.
    inside: HashSet<i64>,
    /// `inside` changed since last taken (to persist).
    inside_dirty: bool,
    next_run: Option<i64>,
}

/// One workspace's decision engine.
pub struct Engine {
    rules: FatigueRules,
    live: Vec<Live>,
    by_id: HashMap<String, usize>,
    ledger: Ledger,
    open: HashMap<i64, Vec<Open>>,
}

impl Engine {
    pub fn new(rules: FatigueRules) -> Self {
        Engine {
            rules,
            live: Vec::new(),
            by_id: HashMap::new(),
            ledger: Ledger::default(),
            open: HashMap::new(),
        }
    }

    pub fn set_rules(&mut self, rules: FatigueRules) {
        self.rules = rules;
    }

    /// Adds or replaces a campaign. A stored policy state is kept when it still fits the
    /// campaign (same policy kind, arms and context), else the policy starts afresh.
    pub fn put_campaign(&mut self, campaign: Campaign, stored: Option<PolicyState>) {
        let campaign = Arc::new(campaign);
        let arms = campaign.arms.len();
        let dim = campaign.context.dim();
        let fits = |p: &PolicyState| p.fits(&campaign.spec.policy, arms, dim);
        let existing = self.by_id.get(&campaign.spec.id).copied();
        let policy = match (stored, existing) {
            (Some(p), _) if fits(&p) => p,
            (_, Some(i))
                if fits(&self.live[i].policy) && self.live[i].policy.config == campaign.spec.policy =>
            {
                self.live[i].policy.clone()
            }
            _ => PolicyState::new(campaign.spec.policy.clone(), arms, dim),
        };
        let live = Live {
            campaign,
            policy,
            dirty: true,
            fresh: 0,
            inside: HashSet::new(),
            inside_dirty: false,
            next_run: None,
        };
        match existing {
            Some(i) => {
                let inside = std::mem::take(&mut self.live[i].inside);
                self.live[i] = Live { inside, ..live };
            }
            None => {
                self.by_id.insert(live.campaign.spec.id.clone(), self.live.len());
                self.live.push(live);
            }
        }
    }

    pub fn campaign(&self, id: &str) -> Option<&Arc<Campaign>> {
        self.by_id.get(id).map(|i| &self.live[*i].campaign)
    }

    pub fn policy(&self, id: &str) -> Option<&PolicyState> {
        self.by_id.get(id).map(|i| &self.live[*i].policy)
    }

    /// Decides for one user and one campaign.
    pub fn decide(
        &mut self,
        campaign: &str,
        user: &UserContext<'_>,
        user_id: Option<&str>,
        draw: Draw<'_>,
    ) -> Result<Decision, DecideError> {
        let index =
            *self.by_id.get(campaign).ok_or_else(|| DecideError::UnknownCampaign(campaign.to_owned()))?;
        Ok(self.decide_at(index, user, user_id, draw, None))
    }

    /// Decides for every campaign in `indexes` that wants this user at once, highest priority
    /// first: once one sends, the others are suppressed by the `priority` rule.
    pub fn decide_many<'d>(
        &mut self,
        indexes: &[usize],
        user: &UserContext<'_>,
        user_id: Option<&str>,
        draws: &mut dyn FnMut(usize) -> Draw<'d>,
    ) -> Vec<Decision> {
        let mut order: Vec<usize> = indexes.to_vec();
        order.sort_by_key(|i| (-self.live[*i].campaign.spec.priority, *i));
        order.dedup();
        let mut sent_by: Option<String> = None;
        let mut out = Vec::with_capacity(order.len());
        for i in order {
            let draw = draws(i);
            let d = self.decide_at(i, user, user_id, draw, sent_by.as_deref());
            if d.status == DecisionStatus::Send {
                sent_by = Some(d.campaign.clone());
            }
            out.push(d);
        }
        out
    }

    fn decide_at(
        &mut self,
        index: usize,
        user: &UserContext<'_>,
        user_id: Option<&str>,
        draw: Draw<'_>,
        outranked_by: Option<&str>,
    ) -> Decision {
        let rules = &self.rules;
        let live = &mut self.live[index];
        let campaign = live.campaign.clone();
        let spec = &campaign.spec;
        let holdout_draw = stable_uniform(&spec.id, draw.unit, 0);
        let mut d = Decision {
            id: draw.decision_id.to_owned(),
            campaign: spec.id.clone(),
            campaign_version: campaign.version,
            person: user.person,
            user_id: user_id.map(str::to_owned),
            at: draw.now,
            status: DecisionStatus::NotEligible,
            arm: None,
            arm_name: None,
            channel: None,
            content: None,
            propensity: 1.0,
            holdout: false,
            deliver_at: None,
            deadline: draw.now + campaign.goal_window_ms,
            policy_version: live.policy.version,
            context: Vec::new(),
            explanation: Explanation {
                policy: spec.policy.name(),
                holdout_draw,
                holdout_share: campaign.holdout,
                ..Explanation::default()
            },
        };
        if user.person < 0 {
            d.explanation.notes.push("unknown user: decided with default features".into());
        } else if !user.known {
            d.explanation.notes.push("no live profile yet: decided with default features".into());
        }
        if spec.status == Status::Paused {
            d.status = DecisionStatus::Paused;
            return d;
        }
        d.explanation.audience = campaign.audience.matches(user);
        if !d.explanation.audience {
            d.explanation
                .notes
                .push(format!("not in the audience: {}", campaign.audience.source().unwrap_or("everyone")));
            return d;
        }
        if holdout_draw < campaign.holdout {
            d.status = DecisionStatus::Holdout;
            d.holdout = true;
            d.propensity = campaign.holdout;
            self.watch(user.person, &d, &campaign, None, draw.now);
            return d;
        }
        campaign.context.vector(user, &mut d.context);
        let u = if spec.policy.sticky() { stable_uniform(&spec.id, draw.unit, 1) } else { draw.u };
        let choice = live.policy.choose(&d.context, u);
        // The probability of this arm among those sent to non-holdout users.
        d.propensity = choice.propensity;
        d.explanation.arms = choice
            .arms
            .into_iter()
            .zip(&campaign.arms)
            .map(|(stats, arm)| ArmSummary { arm: arm.name.clone(), stats })
            .collect();
        let arm = &campaign.arms[choice.arm];
        d.arm = Some(choice.arm);
        d.arm_name = Some(arm.name.clone());
        d.content = arm.content.map(|c| spec.actions.contents[c].id.clone());
        let Some(channel) = arm.channel else {
            d.status = DecisionStatus::NoSend;
            self.watch(user.person, &d, &campaign, Some(choice.arm), draw.now);
            return d;
        };
        d.channel = Some(channel);
        if let Some(other) = outranked_by {
            d.status = DecisionStatus::Suppressed;
            d.explanation.rule = Some("priority".into());
            d.explanation.fatigue.push(Check {
                rule: "priority",
                passed: false,
                detail: format!("campaign {other:?} with a higher priority messages this user now"),
            });
            // Watched, not learned from: the arm's users in an experiment include the ones a
            // rule kept from messaging (intention to treat).
            self.watch(user.person, &d, &campaign, None, draw.now);
            return d;
        }
        let wanted = match arm.send_time {
            SendTime::Now => draw.now,
            SendTime::UsualHour => match user.features.and_then(|f| f.usual_hour) {
                Some(h) => fatigue::next_local_hour(draw.now, h, user.zone),
                None => {
                    d.explanation.notes.push("usual hour unknown: sending now".into());
                    draw.now
                }
            },
        };
        let request = Request {
            person: user.person,
            campaign: index as u32,
            channel,
            at: wanted,
            cooldown_ms: campaign.cooldown_ms,
            allow_defer: spec.defer_in_quiet_hours,
        };
        let verdict = self.ledger.check(rules, &request, user.zone);
        d.explanation.fatigue = verdict.checks;
        d.explanation.rule = verdict.rule.map(str::to_owned);
        match verdict.deliver_at {
            None => {
                d.status = DecisionStatus::Suppressed;
                self.watch(user.person, &d, &campaign, None, draw.now);
            }
            Some(at) => {
                d.status = DecisionStatus::Send;
                d.deliver_at = Some(at);
                d.deadline = at + campaign.goal_window_ms;
                self.ledger.record(user.person, Sent { at, channel, campaign: index as u32 });
                self.watch(user.person, &d, &campaign, Some(choice.arm), at);
            }
        }
        d
    }

    fn watch(&mut self, person: i64, d: &Decision, campaign: &Arc<Campaign>, arm: Option<usize>, from: i64) {
        self.open.entry(person).or_default().push(Open {
            decision: d.id.clone(),
            campaign: campaign.clone(),
            arm,
            context: d.context.clone(),
            from,
            deadline: from + campaign.goal_window_ms,
            state: OpenState::Waiting,
        });
    }

    /// Re-opens a stored decision after a restart (from the audit trail): `state` is its
    /// outcome so far (None while waiting).
    pub fn restore(&mut self, d: &Decision, converted: Option<bool>) {
        let Some(&index) = self.by_id.get(&d.campaign) else { return };
        let campaign = self.live[index].campaign.clone();
        let from = d.deliver_at.unwrap_or(d.at);
        if let (Some(at), Some(channel)) = (d.deliver_at, d.channel) {
            self.ledger.record(d.person, Sent { at, channel, campaign: index as u32 });
        }
        let watched = matches!(
            d.status,
            DecisionStatus::Send
                | DecisionStatus::NoSend
                | DecisionStatus::Holdout
                | DecisionStatus::Suppressed
        );
        if !watched {
            return;
        }
        // Only sent (or deliberately silent) decisions of the current version teach the policy.
        let learns = campaign.version == d.campaign_version
            && matches!(d.status, DecisionStatus::Send | DecisionStatus::NoSend);
        self.open.entry(d.person).or_default().push(Open {
            decision: d.id.clone(),
            campaign,
            arm: if learns { d.arm } else { None },
            context: d.context.clone(),
            from,
            deadline: d.deadline,
            state: match converted {
                None => OpenState::Waiting,
                Some(true) => OpenState::Converted,
                Some(false) => OpenState::Failed,
            },
        });
    }

    /// Learns from one event of a person: goal conversions (late ones correct a failure),
    /// message events of a decision, unsubscribes.
    pub fn observe(
        &mut self,
        person: i64,
        name: &str,
        timestamp: i64,
        properties: Option<&Map<String, Value>>,
        out: &mut Vec<Outcome>,
    ) {
        let prop = |k: &str| properties.and_then(|p| p.get(k));
        let decision_id = prop("decision_id").and_then(Value::as_str);
        match name {
            "Unsubscribed" | "Message Bounced" => {
                let hard = name == "Unsubscribed" || prop("type").and_then(Value::as_str) != Some("soft");
                if let (true, Some(channel)) =
                    (hard, prop("channel").and_then(Value::as_str).and_then(Channel::parse))
                {
                    self.ledger.suppress(person, channel);
                }
            }
            "Message Delivered" | "Message Opened" | "Message Clicked" => {
                if let Some(id) = decision_id
                    && self.open.get(&person).is_some_and(|list| list.iter().any(|o| o.decision == id))
                {
                    let kind = match name {
                        "Message Delivered" => OutcomeKind::Delivered,
                        "Message Opened" => OutcomeKind::Opened,
                        _ => OutcomeKind::Clicked,
                    };
                    out.push(Outcome { decision: id.to_owned(), kind, at: timestamp, value: None });
                }
            }
            _ => {}
        }
        let Some(list) = self.open.get_mut(&person) else { return };
        for o in list.iter_mut() {
            let goal = &o.campaign.spec.goal;
            if goal.event != name || timestamp < o.from || timestamp > o.deadline {
                continue;
            }
            if o.campaign.spec.goal_is_message_event() && decision_id != Some(o.decision.as_str()) {
                continue;
            }
            let learned_from = match o.state {
                OpenState::Converted => continue, // a second conversion counts once
                OpenState::Waiting => None,
                OpenState::Failed => Some(0.0),
            };
            o.state = OpenState::Converted;
            let value = goal
                .value_property
                .as_deref()
                .and_then(&prop)
                .and_then(Value::as_f64)
                .filter(|v| v.is_finite());
            out.push(Outcome {
                decision: o.decision.clone(),
                kind: OutcomeKind::Converted,
                at: timestamp,
                value,
            });
            if let (Some(arm), Some(&index)) = (o.arm, self.by_id.get(&o.campaign.spec.id)) {
                let live = &mut self.live[index];
                if Arc::ptr_eq(&live.campaign, &o.campaign) || live.campaign.version == o.campaign.version {
                    let learned = match learned_from {
                        None => live.policy.update(arm, &o.context, 1.0),
                        Some(from) => live.policy.correct(arm, &o.context, from, 1.0),
                    };
                    if learned.is_ok() {
                        live.dirty = true;
                        live.fresh += 1;
                    }
                }
            }
        }
    }

    /// Closes every window that ended before `now` as a failure (and forgets decisions whose
    /// late grace is over).
    pub fn expire(&mut self, now: i64, out: &mut Vec<Outcome>) {
        let live = &mut self.live;
        let by_id = &self.by_id;
        self.open.retain(|_, list| {
            for o in list.iter_mut() {
                if o.state == OpenState::Waiting && o.deadline < now {
                    o.state = OpenState::Failed;
                    out.push(Outcome {
                        decision: o.decision.clone(),
                        kind: OutcomeKind::Failed,
                        at: o.deadline,
                        value: None,
                    });
                    if let (Some(arm), Some(&index)) = (o.arm, by_id.get(&o.campaign.spec.id)) {
                        let l = &mut live[index];
                        if l.campaign.version == o.campaign.version
                            && l.policy.update(arm, &o.context, 0.0).is_ok()
                        {
                            l.dirty = true;
                            l.fresh += 1;
                        }
                    }
                }
            }
            list.retain(|o| o.state == OpenState::Waiting || o.deadline + LATE_GRACE_MS >= now);
            !list.is_empty()
        });
        self.ledger.prune(now);
    }

    /// Takes new policy snapshots for campaigns that learned something; returns how many.
    pub fn refresh(&mut self) -> usize {
        let mut n = 0;
        for l in &mut self.live {
            if l.fresh > 0 {
                l.policy.refresh();
                l.fresh = 0;
                l.dirty = true;
                n += 1;
            }
        }
        n
    }

    /// Policy states changed since the last call, as (campaign, state) to persist.
    pub fn take_dirty_policies(&mut self) -> Vec<(String, PolicyState)> {
        self.live
            .iter_mut()
            .filter_map(|l| {
                std::mem::take(&mut l.dirty).then(|| (l.campaign.spec.id.clone(), l.policy.clone()))
            })
            .collect()
    }

    /// Members of state-triggered campaigns' segments (or users above their churn threshold)
    /// that changed since the last call, as (campaign, sorted persons), to persist.
    pub fn take_dirty_members(&mut self) -> Vec<(String, Vec<i64>)> {
        self.live
            .iter_mut()
            .filter_map(|l| {
                std::mem::take(&mut l.inside_dirty).then(|| {
                    let mut members: Vec<i64> = l.inside.iter().copied().collect();
                    members.sort_unstable();
                    (l.campaign.spec.id.clone(), members)
                })
            })
            .collect()
    }

    /// Restores who was inside a state-triggered campaign's segment, so a restart does not
    /// count them as entering it again.
    pub fn set_members(&mut self, campaign: &str, members: impl IntoIterator<Item = i64>) {
        if let Some(&i) = self.by_id.get(campaign) {
            self.live[i].inside = members.into_iter().collect();
        }
    }

    /// Campaigns triggered by an event of a user (event and stage-change triggers).
    pub fn triggered_by_event(
        &self,
        name: &str,
        properties: Option<&Map<String, Value>>,
        out: &mut Vec<usize>,
    ) {
        for (i, l) in self.live.iter().enumerate() {
            let fire = match &l.campaign.spec.trigger {
                Trigger::Event { event } => event == name,
                Trigger::Stage { to, from } => {
                    name == whisperer_profiles::observation::LIFECYCLE_EVENT && {
                        let p = |k: &str| properties.and_then(|p| p.get(k)).and_then(Value::as_str);
                        p("to") == Some(to.as_str()) && from.as_deref().is_none_or(|f| p("from") == Some(f))
                    }
                }
                _ => false,
            };
            if fire && l.campaign.spec.status == Status::Active {
                out.push(i);
            }
        }
    }

    /// Campaigns triggered by a change of the user's state: entering a segment, or the churn
    /// probability rising above a threshold (each fires again only after the user left).
    pub fn triggered_by_state(&mut self, user: &UserContext<'_>, out: &mut Vec<usize>) {
        for (i, l) in self.live.iter_mut().enumerate() {
            let now_inside = match &l.campaign.spec.trigger {
                Trigger::Segment { .. } => l.campaign.segment.as_ref().is_some_and(|s| s.matches(user)),
                Trigger::Churn { above } => user.churn.is_some_and(|p| p > *above),
                _ => continue,
            };
            let was_inside =
                if now_inside { !l.inside.insert(user.person) } else { l.inside.remove(&user.person) };
            l.inside_dirty |= now_inside != was_inside;
            if now_inside && !was_inside && l.campaign.spec.status == Status::Active {
                out.push(i);
            }
        }
    }

    /// Scheduled campaigns due at `now` (each then runs over its audience).
    pub fn due_schedules(&mut self, now: i64, out: &mut Vec<usize>) {
        for (i, l) in self.live.iter_mut().enumerate() {
            if let Trigger::Schedule { every } = &l.campaign.spec.trigger {
                let every = crate::spec::duration_ms(every).unwrap_or(86_400_000);
                let due = l.next_run.is_none_or(|t| t <= now);
                if due && l.campaign.spec.status == Status::Active {
                    out.push(i);
                    l.next_run = Some(now + every);
                }
            }
        }
    }

    pub fn campaign_id(&self, index: usize) -> &str {
        &self.live[index].campaign.spec.id
    }

    /// Whether a decision of this id is being watched for its outcome (a trigger replayed
    /// after a crash must not decide again).
    pub fn is_watching(&self, person: i64, decision: &str) -> bool {
        self.open.get(&person).is_some_and(|list| list.iter().any(|o| o.decision == decision))
    }

    /// Whether any campaign fires on a change of user state (segment entry, churn threshold).
    pub fn has_state_triggers(&self) -> bool {
        self.live
            .iter()
            .any(|l| matches!(l.campaign.spec.trigger, Trigger::Segment { .. } | Trigger::Churn { .. }))
    }

    /// Decisions waiting for an outcome.
    pub fn waiting(&self) -> usize {
        self.open.values().flatten().filter(|o| o.state == OpenState::Waiting).count()
    }
}

/// A uniform number in [0, 1) fixed by campaign, unit and purpose (FNV-1a, then a SplitMix64
/// finaliser): the same user stays in or out of a holdout, and in one A/B arm.
pub fn stable_uniform(campaign: &str, unit: &str, purpose: u8) -> f64 {
    let mut h = fnv1a(campaign.bytes().chain([0xff, purpose]).chain(unit.bytes()));
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a: a stable 64-bit hash of some bytes (ids derived from names must not change between
/// builds, which rules out the standard library's hasher).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference (draft-eastlake-fnv): stored ids depend on these values.
        assert_eq!(fnv1a("".bytes()), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a".bytes()), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar".bytes()), 0x85944171f73967e8);
    }
}
