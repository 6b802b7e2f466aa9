//! The ground truth: each user's hidden state and the rates that turn it into behaviour.
//!
//! Between a user's events the hidden state moves deterministically (habit and boosts decay,
//! satisfaction returns to its baseline), and three competing rates act on it:
//! - sessions arrive as a Poisson process of intensity `session_rate × rhythm(local time)`;
//!   each session reinforces the habit, and its events move satisfaction and feature discovery;
//! - an active user churns at `churn_rate`, which rises as habit, satisfaction and discovery
//!   decay;
//! - a churned user comes back (resurrection) at `resurrection_rate × rhythm`, highest soon
//!   after leaving, and raised by interventions.
//!
//! Because the state is deterministic between events and the rates are known, the probability of
//! no activity over any window is a small two-state (active/churned) integral — that is the
//! oracle (`oracle.rs`). The generator samples the same rates by thinning (`sim.rs`).

use crate::clock::{Clock, DAY_MS};
use crate::population::{FEATURES, Traits};
use crate::rng::Rng;

/// Habit fades over about a week without sessions.
pub(crate) const HABIT_TAU_DAYS: f64 = 7.0;
/// What a session adds to habit: `h += HABIT_GAIN × (1 − h)`.
pub(crate) const HABIT_GAIN: f64 = 0.3;
/// Satisfaction returns to the user's baseline over about a month.
pub(crate) const SATISFACTION_TAU_DAYS: f64 = 25.0;
/// A nudge from an intervention fades over a couple of days.
pub(crate) const BOOST_TAU_DAYS: f64 = 1.5;
/// A discount offer is on the user's mind for about a week.
pub(crate) const OFFER_TAU_DAYS: f64 = 7.0;
/// "Messages received recently" counts with a 3-day memory (the fatigue load).
pub(crate) const LOAD_TAU_DAYS: f64 = 3.0;
/// Annoyance lingers for weeks.
pub(crate) const ANNOYANCE_TAU_DAYS: f64 = 21.0;

/// Sessions per day of a user of fit 1 with a saturated habit, before the other factors and the
/// rhythm.
const SESSION_RATE: f64 = 0.95;
/// Highest churn hazard per day (a user with no habit, no satisfaction, no discovery).
pub(crate) const CHURN_MAX: f64 = 0.15;
/// Resurrection per day right after churning, for a user of fit 1.
const RESURRECTION_RATE: f64 = 0.006;
/// How quickly the pull to come back fades after churning.
pub(crate) const RESURRECTION_TAU_DAYS: f64 = 45.0;
/// Extra resurrection per day per unit of intervention boost.
const RESURRECTION_PER_BOOST: f64 = 0.15;

/// The continuous part of the hidden state, as of `User::updated_at`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hidden {
    /// 0..1: how much using the product is a routine.
    pub habit: f32,
    /// 0..1: how happy the user is with the product.
    pub satisfaction: f32,
    /// ≥ 0: a temporary lift of the session rate from an intervention.
    pub boost: f32,
    /// 0..1: a pending discount, raising the chance to upgrade.
    pub offer: f32,
    /// ≥ 0: messages received recently (fatigue).
    pub load: f32,
    /// ≥ 0: accumulated irritation with messages; drives unsubscribing.
    pub annoyance: f32,
}

impl Hidden {
    /// The state `dt_ms` later with no events in between.
    pub(crate) fn project(&self, base_satisfaction: f32, dt_ms: i64) -> Hidden {
        if dt_ms <= 0 {
            return *self;
        }
        let days = dt_ms as f64 / DAY_MS as f64;
        let decay = |x: f32, tau: f64| (f64::from(x) * (-days / tau).exp()) as f32;
        let base = f64::from(base_satisfaction);
        Hidden {
            habit: decay(self.habit, HABIT_TAU_DAYS),
            satisfaction: (base
                + (f64::from(self.satisfaction) - base) * (-days / SATISFACTION_TAU_DAYS).exp())
                as f32,
            boost: decay(self.boost, BOOST_TAU_DAYS),
            offer: decay(self.offer, OFFER_TAU_DAYS),
            load: decay(self.load, LOAD_TAU_DAYS),
            annoyance: decay(self.annoyance, ANNOYANCE_TAU_DAYS),
        }
    }
}

/// Where a user is in their life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Not signed up yet: browsing the site anonymously.
    Visitor,
    Active,
    Churned,
}

/// What the user's next scheduled transition is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Next {
    /// An anonymous page view before sign-up.
    Visit,
    /// The identify that links the anonymous id and carries the traits.
    Signup,
    SessionStart,
    /// One event inside the current session.
    SessionEvent,
    /// An identify with the new plan after an upgrade (then the session goes on).
    PlanIdentify,
    Churn,
    Resurrect,
    /// Nothing happened for a long while: draw again from here (the process is memoryless).
    Recheck,
    /// Past any horizon: no more transitions.
    Never,
}

/// One simulated user: everything the simulator keeps about them (~130 bytes).
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub rng: Rng,
    pub signup_at: i64,
    /// When `next` happens.
    pub next_at: i64,
    /// The time `hidden` is valid at.
    pub updated_at: i64,
    /// The last message's timestamp (i64::MIN before any).
    pub last_event_at: i64,
    /// When the user last churned (i64::MIN if never).
    pub churned_at: i64,
    pub hidden: Hidden,
    pub traits: Traits,
    /// Messages sent so far, for message ids.
    pub seq: u32,
    /// Interventions received, which seeds their outcome draws.
    pub interventions: u32,
    /// Features used at least once (bit i = `FEATURES[i]`).
    pub features: u16,
    pub projects: u16,
    pub phase: Phase,
    pub next: Next,
    /// Events left in the current session, or pages left before sign-up.
    pub left: u8,
    pub plan: u8,
    /// Channels the user unsubscribed from (bit = `Channel as u8`).
    pub unsubscribed: u8,
    /// Interventions scheduled for a later time and not yet delivered.
    pub queued: u8,
}

impl User {
    pub(crate) fn discovery(&self) -> f64 {
        f64::from(self.features.count_ones()) / FEATURES.len() as f64
    }

    /// The hidden state at `t` (≥ `updated_at`) assuming no events in between.
    pub(crate) fn hidden_at(&self, t: i64) -> Hidden {
        self.hidden.project(self.traits.satisfaction_base, t - self.updated_at)
    }

    /// Brings the stored state forward to `t`.
    pub(crate) fn advance(&mut self, t: i64) {
        if t > self.updated_at {
            self.hidden = self.hidden_at(t);
            self.updated_at = t;
        }
    }

    /// Whether a session (or the identify inside one) is under way.
    pub(crate) fn in_session(&self) -> bool {
        matches!(self.next, Next::SessionEvent | Next::PlanIdentify)
    }
}

/// The per-user factors of the rates that only change at events (fit, discovery), computed once
/// per stretch between events: the rates are evaluated many times in between.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Factors {
    session: f64,
    churn: f64,
    resurrection: f64,
}

impl Factors {
    pub(crate) fn of(user: &User) -> Factors {
        let fit = f64::from(user.traits.fit);
        let discovery = user.discovery();
        Factors {
            session: SESSION_RATE * fit * (0.75 + 0.5 * discovery),
            churn: 2.5 - 1.5 * discovery - 0.8 * fit.ln(),
            resurrection: RESURRECTION_RATE * fit.sqrt(),
        }
    }

    /// Sessions per day before the rhythm, for an active user in state `h`.
    pub(crate) fn session_rate(&self, h: &Hidden) -> f64 {
        self.session
            * habit_drive(h.habit)
            * (0.3 + 1.4 * f64::from(h.satisfaction))
            * (1.0 + f64::from(h.boost))
    }

    /// An upper bound of `session_rate` over any later time with no events: habit and boost
    /// only decay, and satisfaction moves monotonically toward its baseline.
    pub(crate) fn session_rate_bound(&self, user: &User, h: &Hidden) -> f64 {
        let mut top = *h;
        top.satisfaction = h.satisfaction.max(user.traits.satisfaction_base);
        self.session_rate(&top)
    }

    /// Churn hazard per day for an active user in state `h`: rises as habit, satisfaction,
    /// discovery and fit fall.
    pub(crate) fn churn_rate(&self, h: &Hidden) -> f64 {
        let x = self.churn - 7.0 * f64::from(h.habit) - 4.0 * f64::from(h.satisfaction);
        CHURN_MAX / (1.0 + (-x).exp())
    }

    /// Resurrection rate per day (before the rhythm) at `t` for a user churned since
    /// `churned_at`: strongest right after leaving, raised by an intervention's boost.
    pub(crate) fn resurrection_rate(&self, h: &Hidden, churned_at: i64, t: i64) -> f64 {
        let since_days = (t.saturating_sub(churned_at) as f64 / DAY_MS as f64).max(0.0);
        self.resurrection_rate_with((-since_days / RESURRECTION_TAU_DAYS).exp(), f64::from(h.boost))
    }

    /// `resurrection_rate` given the faded pull `e^(−days since churn / τ)` and the boost.
    pub(crate) fn resurrection_rate_with(&self, pull: f64, boost: f64) -> f64 {
        self.resurrection * (0.25 + 0.75 * pull) + RESURRECTION_PER_BOOST * boost
    }
}

/// S-shaped in habit: a weak habit feeds itself too little to last (it fades faster than the
/// sessions it brings rebuild it), a strong one sustains itself, and the rate saturates.
fn habit_drive(habit: f32) -> f64 {
    let h2 = f64::from(habit).powi(2);
    0.02 + h2 / (h2 + 0.15)
}

/// The rates of the user's competing transitions at `t`, per day: the one that produces
/// activity (a session, or a comeback) and the one that does not (churn). `state_at_t` is the
/// hidden state at `t`.
pub(crate) fn rates_at(
    clock: &Clock,
    user: &User,
    factors: &Factors,
    phase: Phase,
    state_at_t: &Hidden,
    t: i64,
) -> (f64, f64) {
    let rhythm = clock.rhythm_at(user.traits.zone, user.traits.peak_shift, t);
    match phase {
        Phase::Active => (factors.session_rate(state_at_t) * rhythm, factors.churn_rate(state_at_t)),
        Phase::Churned => (factors.resurrection_rate(state_at_t, user.churned_at, t) * rhythm, 0.0),
        Phase::Visitor => (0.0, 0.0),
    }
}

/// What one in-session event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionEvent {
    Page(u8),
    Feature(u8),
    ProjectCreated,
    InviteSent(u8),
    PlanUpgraded { plan: u8, cents: u32 },
    PaymentFailed { cents: u32, reason: u8 },
    SupportTicket { topic: u8, priority: u8 },
}

/// Milliseconds between two events of a session: 10 s plus about a minute and a half.
pub(crate) fn in_session_gap(rng: &mut Rng) -> i64 {
    10_000 + (rng.exp() * 90_000.0) as i64
}

/// Chance per session that the user's need for the product shifts (a project ends, a team
/// reorganises, a competitor appears): engaged users do not stay forever.
const NEED_SHIFT: f64 = 0.015;

impl User {
    /// A session starts: the habit is reinforced, the need may shift, and the number of events
    /// after `Session Started` is drawn into `left`.
    pub(crate) fn start_session(&mut self) {
        let mut rng = self.rng;
        let h = f64::from(self.hidden.habit);
        self.hidden.habit = (h + HABIT_GAIN * (1.0 - h)) as f32;
        if rng.chance(NEED_SHIFT) {
            // Mostly downward: needs erode more often than they grow.
            let factor = (-0.3 + 0.35 * rng.normal()).exp();
            self.traits.fit = (f64::from(self.traits.fit) * factor).clamp(0.05, 5.0) as f32;
        }
        let mean = 0.5 + 2.5 * f64::from(self.hidden.habit) + 2.0 * self.discovery();
        self.left = (1 + rng.poisson(mean)).min(40) as u8;
        self.rng = rng;
    }

    /// Draws the next in-session event and applies what it does to the hidden state.
    pub(crate) fn session_event(&mut self) -> SessionEvent {
        use crate::population::{COMPANY_SIZES, ENTERPRISE, PLANS};
        let mut rng = self.rng;
        let h = &mut self.hidden;
        let s = f64::from(h.satisfaction);
        let d = f64::from(self.features.count_ones()) / FEATURES.len() as f64;
        let fit = f64::from(self.traits.fit).min(3.0);
        let team = COMPANY_SIZES[self.traits.company as usize].2;
        let p_ticket = 0.006 + 0.05 * (1.0 - s) * (1.0 - s);
        let p_upgrade = if self.plan < ENTERPRISE {
            0.004 * fit * (0.3 + s) * (0.5 + d) * (1.0 + 8.0 * f64::from(h.offer))
        } else {
            0.0
        };
        let p_payment = if self.plan > 0 { 0.003 } else { 0.0 };
        let p_project = 0.05 * (0.5 + 0.5 * fit);
        let p_invite = 0.03 * team;
        let p_page = 0.28;
        let mut x = rng.f64();
        let mut pick = |p: f64| {
            let hit = x < p;
            x -= p;
            hit
        };
        let up =
            |v: &mut f32, by: f64| *v = (f64::from(*v) + by * (1.0 - f64::from(*v))).clamp(0.0, 1.0) as f32;
        let down = |v: &mut f32, by: f64| *v = (f64::from(*v) * (1.0 - by)).clamp(0.0, 1.0) as f32;
        let event = if pick(p_ticket) {
            let topic = rng.weighted(&[30, 30, 10, 15, 15]) as u8;
            // Bugs and slowness hurt more than questions.
            down(&mut h.satisfaction, if topic == 0 || topic == 3 { 0.08 } else { 0.04 });
            SessionEvent::SupportTicket { topic, priority: rng.weighted(&[3, 6, 1]) as u8 }
        } else if pick(p_upgrade) {
            let plan = (self.plan + 1 + u8::from(rng.chance(0.15))).min(ENTERPRISE);
            let full = PLANS[plan as usize].1;
            // An accepted discount shows in the revenue.
            let cents = if h.offer > 0.2 { full * 4 / 5 } else { full };
            self.plan = plan;
            h.offer = 0.0;
            up(&mut h.satisfaction, 0.03);
            SessionEvent::PlanUpgraded { plan, cents }
        } else if pick(p_payment) {
            down(&mut h.satisfaction, 0.06);
            SessionEvent::PaymentFailed { cents: PLANS[self.plan as usize].1, reason: rng.below(3) as u8 }
        } else if pick(p_project) {
            self.projects = self.projects.saturating_add(1);
            up(&mut h.habit, 0.03);
            up(&mut h.satisfaction, 0.01);
            SessionEvent::ProjectCreated
        } else if pick(p_invite) {
            // Colleagues on board make the product part of the team's routine.
            up(&mut h.habit, 0.04);
            SessionEvent::InviteSent(rng.weighted(&[4, 5, 1]) as u8)
        } else if pick(p_page) {
            let unhappy = (1.0 - s) * (1.0 - s);
            // Order of `APP_PAGES`; unhappy users look at Billing and Help more.
            let weights = [
                30,
                20,
                15,
                8,
                (6.0 * team) as u32 + 1,
                6,
                3 + if self.plan > 0 { 4 } else { 0 } + (10.0 * unhappy) as u32,
                2 + (25.0 * unhappy) as u32,
            ];
            let page = rng.weighted(&weights) as u8;
            SessionEvent::Page(page)
        } else {
            let undiscovered = !self.features & ((1u16 << FEATURES.len()) - 1);
            let explore = 0.12 + 0.25 * (1.0 - d);
            let feature = if undiscovered != 0 && rng.chance(explore) {
                // Features are usually found in product order, sometimes by wandering.
                let f = if rng.chance(0.6) {
                    undiscovered.trailing_zeros()
                } else {
                    nth_set_bit(undiscovered, rng.below(undiscovered.count_ones()))
                };
                self.features |= 1 << f;
                up(&mut h.satisfaction, 0.04);
                f as u8
            } else {
                let known = self.features.max(1);
                up(&mut h.satisfaction, 0.003);
                nth_set_bit(known, rng.below(known.count_ones())) as u8
            };
            SessionEvent::Feature(feature)
        };
        self.rng = rng;
        event
    }
}

/// The position of the n-th (0-based) set bit of `bits`.
fn nth_set_bit(mut bits: u16, n: u32) -> u32 {
    for _ in 0..n {
        bits &= bits - 1;
    }
    bits.trailing_zeros()
}
