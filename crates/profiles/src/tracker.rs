//! The per-event step every path shares: fold an event into a profile and move its lifecycle
//! stage. The live engine, a rebuild after a merge and a recompute from the log all call
//! [`Tracker::step`], which is why they agree exactly.

use whisperer_core::{EventType, PersonId, StoredEvent};

use crate::dictionary::Dictionary;
use crate::lifecycle::{LifecycleConfig, Stage};
use crate::observation::{LIFECYCLE_EVENT, observe};
use crate::profile::{DAY_MS, Profile};
use crate::score::Engagement;

/// A stage change, to be written as a `Lifecycle Stage Changed` event.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub person: PersonId,
    pub from: Stage,
    pub to: Stage,
    pub at: i64,
    pub score: f64,
    /// Ids of the event that caused it, to address the new event to the same person; none
    /// for a change found by a sweep.
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
}

/// Dictionary and lifecycle rules of one workspace.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    pub dict: Dictionary,
    pub lifecycle: LifecycleConfig,
}

impl Tracker {
    /// Folds `event` into `profile` and returns the stage changes it made (at most two: time
    /// passing since the last activity, then the event itself).
    pub fn step(&mut self, profile: &mut Profile, event: &StoredEvent, out: &mut Vec<Transition>) {
        if event.event.event_type == EventType::Track && event.event.name.as_deref() == Some(LIFECYCLE_EVENT)
        {
            // Our own record of a stage change: the profile already knows.
            return;
        }
        let o = observe(event, &mut self.dict);
        let ids = |t: &mut Transition| {
            t.user_id.clone_from(&event.event.user_id);
            t.anonymous_id.clone_from(&event.event.anonymous_id);
        };
        if o.activity {
            // Only a long silence can have moved the stage down by itself before this event.
            let quiet = profile.last_active().is_some_and(|last| {
                (o.timestamp - last) as f64 > self.lifecycle.at_risk_days * DAY_MS as f64
            });
            if quiet && let Some(mut t) = self.evaluate(event.person_id, profile, o.timestamp) {
                ids(&mut t);
                out.push(t);
            }
        }
        profile.apply(&o, &self.dict);
        if o.activity
            && o.timestamp >= profile.last_active().unwrap_or(i64::MIN)
            && let Some(mut t) = self.evaluate(event.person_id, profile, o.timestamp)
        {
            ids(&mut t);
            out.push(t);
        }
    }

    /// Moves `profile` to the stage it is in at `at`, if that is a change.
    pub fn evaluate(&self, person: PersonId, profile: &mut Profile, at: i64) -> Option<Transition> {
        if profile.is_empty() {
            return None;
        }
        let features = profile.features(at);
        let score = Engagement::of(&features).score;
        let stage = self.lifecycle.stage(&features, score, profile.stage, profile.stage_since(), at);
        let first = profile.stage_since().is_none();
        if stage == profile.stage && !first {
            return None;
        }
        let from = profile.stage;
        profile.stage = stage;
        profile.stage_since = at;
        // Entering the first stage is not a change worth an event.
        (!first && from != stage).then_some(Transition {
            person,
            from,
            to: stage,
            at,
            score,
            user_id: None,
            anonymous_id: None,
        })
    }

    /// A person's profile folded from their whole log, as the engine would have built it.
    pub fn recompute<'a>(&mut self, events: impl IntoIterator<Item = &'a StoredEvent>) -> Profile {
        let mut profile = Profile::default();
        let mut ignored = Vec::new();
        for e in events {
            self.step(&mut profile, e, &mut ignored);
            ignored.clear();
        }
        profile
    }
}
