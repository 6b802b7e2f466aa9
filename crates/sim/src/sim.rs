//! The simulation: a population, a priority queue of each user's next transition, and the
//! simulated clock that streams messages in timestamp order.
//!
//! Each user has exactly one scheduled transition (`User::next` at `User::next_at`), drawn from
//! the user's own random stream when the previous one happened; the queue orders them by
//! (time, user index), so the output order is total and independent of how the caller steps the
//! clock. Sessions and churn are drawn by thinning: candidate times come from a Poisson process at
//! an upper bound of the rates, and each is accepted with probability rate/bound.
//! An intervention changes the state and redraws that user's next transition (the old queue entry
//! is recognised as stale because its time no longer matches `next_at`).

use std::collections::BTreeMap;

use whisperer_core::Millis;

use crate::clock::{Clock, DAY_MS, HOUR_MS};
use crate::contact::{Contact, index_of_address};
use crate::intervention::{Assessment, DeliveryStatus, Intervention, Outcome, Uplift, assess};
use crate::message::{Body, EVENT_NAMES, Message, MessageKind, index_of_user_id, user_id_of};
use crate::model::{CHURN_MAX, Factors, Hidden, Next, Phase, SessionEvent, User, in_session_gap, rates_at};
use crate::oracle::p_no_events;
use crate::population::{SITE_PAGES, Traits};
use crate::queue::TimeQueue;
use crate::rng::{Rng, Stream};
use crate::{SimConfig, SimError};

/// With no transition for this long, draw again (keeps the thinning loop bounded).
const RECHECK_MS: i64 = 60 * DAY_MS;
/// Offsets are tabulated this far past the end, for closed loops that run on.
const CLOCK_MARGIN_MS: i64 = 400 * DAY_MS;

/// Counts of what the simulation has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages emitted (identify + page + track).
    pub messages: u64,
    pub identifies: u64,
    pub pages: u64,
    pub tracks: u64,
    /// Users who signed up.
    pub signups: u64,
    /// Times a user churned (a resurrected user may churn again).
    pub churns: u64,
    /// Times a churned user came back.
    pub resurrections: u64,
    pub interventions: u64,
    pub opened: u64,
    pub clicked: u64,
    pub unsubscribes: u64,
    /// Track events by name, in `EVENT_NAMES` order.
    pub events: [u64; EVENT_NAMES.len()],
}

impl Stats {
    /// Messages by name: each track event name, `page` and `identify`, most frequent first.
    pub fn by_name(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = EVENT_NAMES.iter().copied().zip(self.events).collect();
        out.push(("page", self.pages));
        out.push(("identify", self.identifies));
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }
}

/// A snapshot of one user's hidden state (ground truth, for oracles and tests).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HiddenState {
    pub signed_up: bool,
    pub churned: bool,
    /// 0..1.
    pub habit: f64,
    /// 0..1.
    pub satisfaction: f64,
    /// Share of the product's features the user has used, 0..1.
    pub discovery: f64,
    /// Messages received recently (decays over a few days).
    pub fatigue: f64,
    pub annoyance: f64,
    /// Median about 1: how much the product is worth to this user.
    pub fit: f64,
    pub price_sensitivity: f64,
    pub signup_at: Millis,
}

/// An intervention waiting for its delivery time.
#[derive(Clone, Copy, Debug)]
struct Pending {
    user: u32,
    iv: Intervention,
    opened: bool,
    clicked: bool,
    unsubscribed: bool,
    /// From the click to the session it brings.
    click_delay: i64,
    /// Whether it waited in `Simulation::pending` (and so counts in `User::queued`).
    queued: bool,
}

/// A running simulation. See the crate docs.
pub struct Simulation {
    config: SimConfig,
    clock: Clock,
    users: Vec<User>,
    /// Every user's next transition, earliest first; entries whose time no longer matches the
    /// user's `next_at` are stale and skipped.
    queue: TimeQueue,
    /// Interventions scheduled for later, by (delivery time, order of arrival).
    pending: BTreeMap<(i64, u64), Pending>,
    pending_seq: u64,
    now: i64,
    stats: Stats,
}

impl Simulation {
    /// Draws the population. The clock starts at `config.start`.
    pub fn new(config: SimConfig) -> Result<Simulation, SimError> {
        let (start, end) = (config.start.0, config.end.0);
        if end <= start {
            return Err(SimError::EmptyWindow { start: config.start, end: config.end });
        }
        if !(config.signup_growth.is_finite() && config.signup_growth > 0.0) {
            return Err(SimError::InvalidGrowth(config.signup_growth));
        }
        let clock = Clock::new(start - 7 * DAY_MS, end + CLOCK_MARGIN_MS);
        let signups = signup_times(&config);
        let users: Vec<User> =
            signups.iter().enumerate().map(|(i, &at)| new_user(&config, &clock, i as u32, at)).collect();
        let queue = TimeQueue::new(start, users.iter().enumerate().map(|(i, u)| (u.next_at, i as u32)));
        Ok(Simulation {
            config,
            clock,
            users,
            queue,
            pending: BTreeMap::new(),
            pending_seq: 0,
            now: start,
            stats: Stats::default(),
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The simulated clock: every message before it has been emitted.
    pub fn now(&self) -> Millis {
        Millis(self.now)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn user_count(&self) -> u32 {
        self.users.len() as u32
    }

    /// Users currently churned.
    pub fn churned_now(&self) -> u64 {
        self.users.iter().filter(|u| u.phase == Phase::Churned).count() as u64
    }

    /// Ids of the users who have signed up by now, in index order.
    pub fn signed_up_user_ids(&self) -> Vec<String> {
        (0..self.users.len() as u32)
            .filter(|&i| self.users[i as usize].phase != Phase::Visitor)
            .map(user_id_of)
            .collect()
    }

    /// Approximate bytes of state per user (the user record and its queue entry).
    pub fn memory_per_user() -> usize {
        std::mem::size_of::<User>() + std::mem::size_of::<(i64, u32)>()
    }

    /// Emits, in timestamp order, every message with a timestamp before `t`, and moves the
    /// clock to `t` (a `t` not after `now()` does nothing). Messages with equal timestamps come
    /// in user-index order. Stepping to `t` in one call or in many gives the same messages.
    pub fn advance_to(&mut self, t: Millis, mut emit: impl FnMut(&Message<'_>)) {
        let result: Result<(), std::convert::Infallible> = self.try_advance_to(t, |m| {
            emit(m);
            Ok(())
        });
        let Ok(()) = result;
    }

    /// [`Simulation::advance_to`] with a fallible callback: the first error stops the clock right
    /// after the message that failed (it is not emitted again) and is returned.
    pub fn try_advance_to<E>(
        &mut self,
        t: Millis,
        mut emit: impl FnMut(&Message<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let t = t.0;
        loop {
            let next_user = self.queue.peek().map(|(at, _)| at).filter(|&at| at < t);
            let next_pending = self.pending.first_key_value().map(|(k, _)| k.0).filter(|&at| at < t);
            match (next_user, next_pending) {
                // An intervention due at the same time as a user's event is delivered first.
                (u, Some(p)) if u.is_none_or(|u| p <= u) => {
                    let ((at, _), pending) = self.pending.pop_first().expect("peeked");
                    self.now = self.now.max(at);
                    self.deliver(at, pending);
                }
                (Some(at), _) => {
                    let (at_, index) = self.queue.pop().expect("peeked");
                    debug_assert_eq!(at, at_);
                    if self.users[index as usize].next_at != at {
                        continue; // stale: the user was redrawn by an intervention
                    }
                    self.now = self.now.max(at);
                    if let Some((body, seq)) = self.transition(index, at) {
                        let message = Message {
                            seed: self.config.seed,
                            index,
                            user: &self.users[index as usize],
                            timestamp: at,
                            seq,
                            body,
                        };
                        emit(&message)?;
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(t);
        Ok(())
    }

    /// Runs to `config.end`.
    pub fn run_to_end(&mut self, emit: impl FnMut(&Message<'_>)) {
        self.advance_to(self.config.end, emit);
    }

    /// [`Simulation::run_to_end`] with a fallible callback.
    pub fn try_run_to_end<E>(&mut self, emit: impl FnMut(&Message<'_>) -> Result<(), E>) -> Result<(), E> {
        self.try_advance_to(self.config.end, emit)
    }

    /// Does the user's scheduled transition at `t`; returns the message it makes, if any.
    fn transition(&mut self, index: u32, t: i64) -> Option<(Body, u32)> {
        let clock = &self.clock;
        let stats = &mut self.stats;
        let user = &mut self.users[index as usize];
        let body = match user.next {
            Next::Visit => {
                user.left = user.left.saturating_sub(1);
                let page = if user.left == 0 {
                    (SITE_PAGES.len() - 1) as u8 // the sign-up page, last
                } else {
                    user.rng.below(SITE_PAGES.len() as u32 - 1) as u8
                };
                let remaining = user.signup_at - t;
                let gap = (remaining as f64 * (0.2 + 0.5 * user.rng.f64())) as i64;
                if user.left > 0 && gap > 0 && t + gap < user.signup_at {
                    schedule(user, Next::Visit, t + gap);
                } else {
                    user.left = 0;
                    schedule(user, Next::Signup, user.signup_at.max(t + 1));
                }
                Some(Body::SitePage(page))
            }
            Next::Signup => {
                user.phase = Phase::Active;
                user.updated_at = t;
                stats.signups += 1;
                // The first session starts right after signing up.
                let gap = 3_000 + user.rng.below(60_000) as i64;
                schedule(user, Next::SessionStart, t + gap);
                Some(Body::Identify { signup: true })
            }
            Next::SessionStart | Next::Resurrect => {
                user.advance(t);
                if user.next == Next::Resurrect || user.phase == Phase::Churned {
                    user.phase = Phase::Active;
                    stats.resurrections += 1;
                    // Coming back is a fresh start: some habit, the old grudges faded.
                    user.hidden.habit = user.hidden.habit.max(0.3);
                    user.hidden.satisfaction =
                        user.hidden.satisfaction.max(user.traits.satisfaction_base * 0.9);
                }
                user.start_session();
                continue_session(clock, user, t);
                Some(Body::SessionStarted)
            }
            Next::SessionEvent => {
                user.advance(t);
                let event = user.session_event();
                user.left = user.left.saturating_sub(1);
                if let SessionEvent::PlanUpgraded { .. } = event {
                    // Traits change: the app identifies the user again with the new plan.
                    schedule(user, Next::PlanIdentify, t + 1_000);
                } else {
                    continue_session(clock, user, t);
                }
                Some(Body::Session(event))
            }
            Next::PlanIdentify => {
                continue_session(clock, user, t);
                Some(Body::Identify { signup: false })
            }
            Next::Churn => {
                user.advance(t);
                user.phase = Phase::Churned;
                user.churned_at = t;
                stats.churns += 1;
                plan_next(clock, user, t);
                None
            }
            Next::Recheck => {
                plan_next(clock, user, t);
                None
            }
            Next::Never => None,
        };
        if user.next != Next::Never {
            self.queue.push(user.next_at, index);
        }
        let body = body?;
        user.seq += 1;
        user.last_event_at = t;
        stats.messages += 1;
        match body.kind() {
            MessageKind::Identify => stats.identifies += 1,
            MessageKind::Page => stats.pages += 1,
            MessageKind::Track => stats.tracks += 1,
        }
        if let Some(i) = body.event_index() {
            stats.events[i] += 1;
        }
        Some((body, user.seq))
    }

    fn user(&self, user_id: &str) -> Option<(u32, &User)> {
        let index = index_of_user_id(user_id)?;
        self.users.get(index as usize).map(|u| (index, u))
    }

    /// How a user is reached (email, phone, push token) and what their messages are written for
    /// (name, locale, time zone); None for an unknown id.
    pub fn contact(&self, user_id: &str) -> Option<Contact> {
        let (index, user) = self.user(user_id)?;
        Some(Contact::of(self.config.seed, index, &user.traits))
    }

    /// The user whose address on `channel` this is, as a mailbox provider or a phone network
    /// would find them; None for an address no simulated user has.
    pub fn user_of_address(&self, channel: crate::Channel, address: &str) -> Option<String> {
        let index = index_of_address(channel, address)?;
        let contact = Contact::of(self.config.seed, index, &self.users.get(index as usize)?.traits);
        (contact.address(channel) == Some(address)).then_some(contact.user_id)
    }

    /// A snapshot of a user's hidden state now, or None for an unknown id.
    pub fn hidden_state(&self, user_id: &str) -> Option<HiddenState> {
        let (_, user) = self.user(user_id)?;
        let h = user.hidden_at(self.now.max(user.updated_at));
        Some(HiddenState {
            signed_up: user.phase != Phase::Visitor,
            churned: user.phase == Phase::Churned,
            habit: f64::from(h.habit),
            satisfaction: f64::from(h.satisfaction),
            discovery: user.discovery(),
            fatigue: f64::from(h.load),
            annoyance: f64::from(h.annoyance),
            fit: f64::from(user.traits.fit),
            price_sensitivity: f64::from(user.traits.price_sensitivity),
            signup_at: Millis(user.signup_at),
        })
    }

    /// Delivers an intervention to a user at `intervention.at` (at `now()` if that is earlier).
    ///
    /// If it is due now, the hidden state changes at once and the user's next activity is redrawn.
    /// If it is due later, it is queued and takes effect when the clock reaches it (before any of
    /// the user's events at that instant); its outcome (opened, clicked, unsubscribed) is drawn
    /// now from the state projected to the delivery time, so it is known to the caller at once.
    /// Users not signed up by the delivery time, unknown ids and unsubscribed channels get an
    /// outcome saying so and nothing else happens.
    pub fn apply_intervention(&mut self, user_id: &str, intervention: Intervention) -> Outcome {
        let at = intervention.at.0.max(self.now);
        let iv = Intervention { at: Millis(at), ..intervention };
        let Some((index, user)) = self.user(user_id) else {
            return Outcome::undelivered(DeliveryStatus::UnknownUser, iv.at);
        };
        if user.signup_at >= at || (user.phase == Phase::Visitor && at <= self.now) {
            return Outcome::undelivered(DeliveryStatus::NotSignedUp, iv.at);
        }
        if user.unsubscribed & (1 << iv.channel as u8) != 0 {
            return Outcome::undelivered(DeliveryStatus::Unsubscribed, iv.at);
        }
        let assessment = self.assess(user, &iv, at, f64::from(user.queued));
        let user = &mut self.users[index as usize];
        let mut rng =
            Rng::new(self.config.seed, Stream::Intervention, u64::from(index), u64::from(user.interventions));
        user.interventions += 1;
        let opened = rng.chance(assessment.p_open);
        let clicked = opened && rng.chance(assessment.p_click_given_open);
        let p_unsubscribe =
            if opened { assessment.p_unsubscribe_opened } else { assessment.p_unsubscribe_unopened };
        let unsubscribed = rng.chance(p_unsubscribe);
        let click_delay = 30_000 + (rng.exp() * 240_000.0) as i64;
        let queued = at > self.now;
        let pending = Pending { user: index, iv, opened, clicked, unsubscribed, click_delay, queued };
        if queued {
            user.queued = user.queued.saturating_add(1);
            self.pending.insert((at, self.pending_seq), pending);
            self.pending_seq += 1;
        } else {
            self.deliver(at, pending);
        }
        Outcome {
            status: DeliveryStatus::Delivered,
            delivered_at: iv.at,
            open_probability: assessment.p_open,
            click_probability: assessment.p_open * assessment.p_click_given_open,
            opened,
            clicked,
            unsubscribed,
        }
    }

    /// The ground truth of an intervention to `user` delivered at `at` (≥ the user's last update).
    /// `extra_load` counts messages scheduled but not delivered yet.
    fn assess(&self, user: &User, iv: &Intervention, at: i64, extra_load: f64) -> Assessment {
        let h = user.hidden_at(at);
        let p_session_day = if iv.channel == crate::Channel::InApp {
            let mut probe = user.clone();
            probe.hidden = h;
            1.0 - p_no_events(&self.clock, &probe, phase_at(user, at), at, at + DAY_MS)
        } else {
            0.0
        };
        let churned = phase_at(user, at) == Phase::Churned;
        assess(&self.clock, user, churned, &h, iv, extra_load, p_session_day)
    }

    fn deliver(&mut self, at: i64, pending: Pending) {
        let index = pending.user as usize;
        let user = &mut self.users[index];
        if pending.queued {
            user.queued = user.queued.saturating_sub(1);
        }
        if user.phase == Phase::Visitor || user.unsubscribed & (1 << pending.iv.channel as u8) != 0 {
            return; // signed up later than projected, or unsubscribed in the meantime
        }
        let user = &self.users[index];
        let iv = Intervention { at: Millis(at), ..pending.iv };
        let assessment = self.assess(user, &iv, at, 0.0);
        let clock = &self.clock;
        let stats = &mut self.stats;
        let user = &mut self.users[index];
        user.advance(at);
        let delta = if pending.opened { assessment.opened } else { assessment.unopened };
        delta.apply(user);
        stats.interventions += 1;
        stats.opened += u64::from(pending.opened);
        stats.clicked += u64::from(pending.clicked);
        if pending.unsubscribed {
            user.unsubscribed |= 1 << pending.iv.channel as u8;
            stats.unsubscribes += 1;
        }
        if user.in_session() {
            return; // the session goes on; the new state shapes what follows it
        }
        if pending.clicked {
            // A click brings the user in within minutes (a comeback if they had churned).
            let next = if user.phase == Phase::Churned { Next::Resurrect } else { Next::SessionStart };
            schedule(user, next, at + pending.click_delay);
        } else {
            plan_next(clock, user, at);
        }
        self.queue.push(user.next_at, pending.user);
    }

    /// Probability that each user signed up before `as_of` has no events in
    /// `[as_of, as_of + horizon_days)`: the true churn hazard, from the hidden state.
    ///
    /// Exact (up to an hourly integration step) when `as_of` is `now()`: call
    /// `advance_to(as_of)` first. For a later `as_of` the state is projected without the
    /// activity that may happen in between (an approximation). For an earlier `as_of` it is a
    /// posterior, not a forecast: users with events since `as_of` get 0. Users in the middle of a
    /// session get 0. Nothing here draws random numbers, so calling it never changes the
    /// simulation. Results are in user-index order.
    pub fn oracle_churn_hazards(&self, as_of: Millis, horizon_days: u32) -> Vec<(String, f64)> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        let chunk = self.users.len().div_ceil(threads).max(1);
        let mut out: Vec<Vec<(String, f64)>> = Vec::new();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.users.len())
                .step_by(chunk)
                .map(|from| {
                    let to = (from + chunk).min(self.users.len());
                    scope.spawn(move || {
                        (from..to)
                            .filter_map(|i| {
                                let p = self.hazard(i, as_of.0, horizon_days)?;
                                Some((user_id_of(i as u32), p))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            out = handles.into_iter().map(|h| h.join().expect("oracle thread")).collect();
        });
        out.into_iter().flatten().collect()
    }

    /// [`Simulation::oracle_churn_hazards`] for one user; None if unknown or not signed up by
    /// `as_of`.
    pub fn oracle_churn_hazard(&self, user_id: &str, as_of: Millis, horizon_days: u32) -> Option<f64> {
        let (index, _) = self.user(user_id)?;
        self.hazard(index as usize, as_of.0, horizon_days)
    }

    fn hazard(&self, index: usize, as_of: i64, horizon_days: u32) -> Option<f64> {
        let user = &self.users[index];
        if user.signup_at >= as_of {
            return None;
        }
        let to = as_of + i64::from(horizon_days) * DAY_MS;
        if as_of < self.now && user.last_event_at >= as_of {
            return Some(0.0);
        }
        if user.in_session() && user.next_at < to {
            return Some(0.0);
        }
        let from = as_of.max(self.now).max(user.updated_at);
        let mut probe = user.clone();
        probe.hidden = user.hidden_at(from);
        Some(p_no_events(&self.clock, &probe, phase_at(user, from), from, to))
    }

    /// The oracle's expected effect of an intervention on the user's activity over
    /// `[at, at + horizon_days)` (`at` is clamped to `now()`), compared with sending nothing.
    /// None for unknown users and users not signed up by then. Reads the state only.
    pub fn expected_uplift(
        &self,
        user_id: &str,
        intervention: &Intervention,
        horizon_days: u32,
    ) -> Option<Uplift> {
        let (_, user) = self.user(user_id)?;
        let at = intervention.at.0.max(self.now).max(user.updated_at);
        if user.signup_at >= at {
            return None;
        }
        let to = at + i64::from(horizon_days) * DAY_MS;
        let phase = phase_at(user, at);
        let mut base = user.clone();
        base.hidden = user.hidden_at(at);
        base.updated_at = at;
        let in_session = user.in_session() && user.next_at < to;
        let active =
            |u: &User| if in_session { 1.0 } else { 1.0 - p_no_events(&self.clock, u, phase, at, to) };
        let without = active(&base);
        if user.unsubscribed & (1 << intervention.channel as u8) != 0 {
            return Some(Uplift {
                p_active_without: without,
                p_active_with: without,
                uplift: 0.0,
                open_probability: 0.0,
                click_probability: 0.0,
            });
        }
        let iv = Intervention { at: Millis(at), ..*intervention };
        let a = self.assess(user, &iv, at, f64::from(user.queued));
        let branch = |delta: &crate::intervention::Delta| {
            let mut u = base.clone();
            delta.apply(&mut u);
            active(&u)
        };
        let (opened, unopened) = (branch(&a.opened), branch(&a.unopened));
        let p_click = a.p_open * a.p_click_given_open;
        let with = p_click + (a.p_open - p_click) * opened + (1.0 - a.p_open) * unopened;
        Some(Uplift {
            p_active_without: without,
            p_active_with: with,
            uplift: with - without,
            open_probability: a.p_open,
            click_probability: p_click,
        })
    }

    /// The candidate with the highest expected uplift for the user (the oracle arm), with its
    /// uplift; None for unknown users, users not signed up, or no candidates. Compare its uplift
    /// with 0 to decide whether sending anything at all beats sending nothing.
    pub fn best_intervention(
        &self,
        user_id: &str,
        candidates: &[Intervention],
        horizon_days: u32,
    ) -> Option<(usize, Uplift)> {
        candidates
            .iter()
            .enumerate()
            .filter_map(|(i, iv)| Some((i, self.expected_uplift(user_id, iv, horizon_days)?)))
            .max_by(|a, b| a.1.uplift.total_cmp(&b.1.uplift).then(b.0.cmp(&a.0)))
    }
}

/// The user's phase at `t` (≥ now): visitors whose sign-up is due count as active.
fn phase_at(user: &User, t: i64) -> Phase {
    match user.phase {
        Phase::Visitor if user.signup_at < t => Phase::Active,
        phase => phase,
    }
}

fn schedule(user: &mut User, next: Next, at: i64) {
    user.next = next;
    user.next_at = at;
}

/// After a session event: the next event of the session, or the next session.
fn continue_session(clock: &Clock, user: &mut User, t: i64) {
    if user.left > 0 {
        let mut rng = user.rng;
        let gap = in_session_gap(&mut rng);
        user.rng = rng;
        schedule(user, Next::SessionEvent, t + gap);
    } else {
        plan_next(clock, user, t);
    }
}

/// Draws the user's next transition after `t0` by thinning: candidates at an upper bound of the
/// rates, each accepted as a session/comeback or a churn with probability rate/bound.
fn plan_next(clock: &Clock, user: &mut User, t0: i64) {
    user.advance(t0);
    let h0 = user.hidden;
    let factors = Factors::of(user);
    let bound = match user.phase {
        Phase::Active => factors.session_rate_bound(user, &h0) * clock.rhythm.max + CHURN_MAX,
        Phase::Churned => factors.resurrection_rate(&h0, user.churned_at, t0) * clock.rhythm.max,
        Phase::Visitor => return,
    };
    let (activity, quiet) = match user.phase {
        Phase::Active => (Next::SessionStart, Next::Churn),
        _ => (Next::Resurrect, Next::Never),
    };
    let mut rng = user.rng;
    let mut t = t0 as f64;
    let limit = t0 + RECHECK_MS;
    loop {
        t += rng.exp() / bound * DAY_MS as f64;
        if t >= limit as f64 {
            schedule(user, Next::Recheck, limit);
            break;
        }
        let at = (t as i64).max(t0 + 1);
        let h: Hidden = user.hidden_at(at);
        let (act, quiet_rate) = rates_at(clock, user, &factors, user.phase, &h, at);
        let x = rng.f64() * bound;
        if x < act {
            schedule(user, activity, at);
            break;
        }
        if x < act + quiet_rate {
            schedule(user, quiet, at);
            break;
        }
    }
    user.rng = rng;
}

/// Sign-up times, sorted, spread over the window with density growing by `signup_growth`.
fn signup_times(config: &SimConfig) -> Vec<i64> {
    let n = config.users as usize;
    let mut rng = Rng::new(config.seed, Stream::Signups, 0, 0);
    // Sorted uniforms from the top down: U(n) = V^(1/n), U(i) = U(i+1) · V^(1/i).
    let mut u = vec![0.0f64; n];
    let mut top = 1.0f64;
    for i in (0..n).rev() {
        top *= (1.0 - rng.f64()).powf(1.0 / (i + 1) as f64);
        u[i] = top;
    }
    let g = config.signup_growth.ln();
    let span = (config.end.0 - config.start.0) as f64;
    u.into_iter()
        .map(|u| {
            // Inverse CDF of a density ∝ e^(g·x) on [0, 1).
            let x = if g.abs() < 1e-9 { u } else { (1.0 + u * g.exp_m1()).ln() / g };
            config.start.0 + (x * span) as i64
        })
        .collect()
}

fn new_user(config: &SimConfig, clock: &Clock, index: u32, signup_day: i64) -> User {
    let traits = Traits::draw(config.seed, index);
    let mut rng = Rng::new(config.seed, Stream::User, u64::from(index), 0);
    // People sign up in their waking hours: keep the local day, draw the hour from the rhythm.
    let offset = i64::from(clock.offset_secs(traits.zone, signup_day)) * 1000;
    let local_midnight = (signup_day + offset).div_euclid(DAY_MS) * DAY_MS;
    let weights: Vec<u32> =
        (0..24).map(|h| (clock.rhythm.hour_weight(h, traits.peak_shift) * 1000.0) as u32 + 1).collect();
    let hour = rng.weighted(&weights) as i64;
    let local = local_midnight + hour * HOUR_MS + (rng.f64() * HOUR_MS as f64) as i64;
    let signup_at = (local - offset).clamp(config.start.0, config.end.0 - 1);
    // Anonymous browsing: a few site pages over the days before signing up.
    let pages = 1 + rng.below(3) as u8;
    let lead = ((rng.exp() * 1.5).min(6.0) * DAY_MS as f64) as i64;
    let first_visit = (signup_at - lead).max(config.start.0);
    let satisfaction = (f64::from(traits.satisfaction_base) + 0.08 * rng.normal()).clamp(0.05, 0.98) as f32;
    let habit = (0.05 + 0.15 * rng.f64()) as f32;
    let (next, next_at, left) = if first_visit < signup_at {
        (Next::Visit, first_visit, pages)
    } else {
        (Next::Signup, signup_at, 0)
    };
    User {
        rng,
        signup_at,
        next_at,
        updated_at: signup_at,
        last_event_at: i64::MIN,
        churned_at: i64::MIN,
        hidden: Hidden { habit, satisfaction, boost: 0.0, offer: 0.0, load: 0.0, annoyance: 0.0 },
        plan: traits.plan,
        traits,
        seq: 0,
        interventions: 0,
        features: 1,
        projects: 0,
        phase: Phase::Visitor,
        next,
        left,
        unsubscribed: 0,
        queued: 0,
    }
}
