//! Interventions: a message on a channel, with a content angle, at a time — and the hidden
//! ground truth of what it does to a user.
//!
//! The effect of one message is `net = value − cost`:
//! - `value` = relevance of the angle to this user's state × channel affinity × timing ×
//!   a fatigue discount that falls with the messages received in the last few days;
//! - `cost` = a small base + fatigue (grows faster than linearly with recent messages) + a night
//!   penalty (loud channels at night in the user's local time) + irrelevance + accumulated
//!   annoyance.
//!
//! An opened message with positive `net` raises habit and satisfaction and gives a short boost to
//! the session rate (a discount also leaves an offer that makes an upgrade likelier; a feature tip
//! reveals a feature); a click brings the user in right away (a session, or a comeback for a
//! churned user). Negative `net` lowers satisfaction and builds annoyance, which makes
//! unsubscribing likelier. An unopened message only costs (a little).

use serde::{Deserialize, Serialize};
use whisperer_core::Millis;

use crate::clock::{Clock, DAY_MS};
use crate::model::{Hidden, User};
use crate::population::{COMPANY_SIZES, ENTERPRISE};

pub use whisperer_core::Channel;

/// What the message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Angle {
    /// Points at a feature the user has not found: helps users with low feature discovery.
    FeatureTip,
    /// "Teams like yours use it for…": helps users half-way into a habit, more so in teams.
    SocialProof,
    /// A price cut: helps price-sensitive users at risk; wasted (or cheapening) otherwise.
    Discount,
    /// A personal "how is it going?": helps unhappy users at risk.
    CheckIn,
    /// Getting-started help: helps new users with no habit yet; noise for veterans.
    OnboardingHelp,
}

impl Angle {
    pub const ALL: [Angle; 5] =
        [Angle::FeatureTip, Angle::SocialProof, Angle::Discount, Angle::CheckIn, Angle::OnboardingHelp];

    pub fn as_str(self) -> &'static str {
        match self {
            Angle::FeatureTip => "feature_tip",
            Angle::SocialProof => "social_proof",
            Angle::Discount => "discount",
            Angle::CheckIn => "check_in",
            Angle::OnboardingHelp => "onboarding_help",
        }
    }

    pub fn parse(s: &str) -> Option<Angle> {
        Angle::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Angle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message to one user: on `channel`, with content `angle`, delivered at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Intervention {
    pub channel: Channel,
    pub angle: Angle,
    pub at: Millis,
}

/// Whether an intervention reached the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Delivered at `Outcome::delivered_at` (now, or later if `at` was in the future).
    Delivered,
    /// No such user in the simulation.
    UnknownUser,
    /// The user has not signed up yet at the delivery time: there is no one to message.
    NotSignedUp,
    /// The user unsubscribed from this channel earlier; nothing happens.
    Unsubscribed,
}

/// What happened to an intervention. The probabilities are the hidden truth at delivery; the
/// booleans are one draw from them (from a stream of its own, so asking never shifts the
/// population's randomness).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: DeliveryStatus,
    pub delivered_at: Millis,
    pub open_probability: f64,
    /// Probability of a click (a click implies an open).
    pub click_probability: f64,
    pub opened: bool,
    pub clicked: bool,
    /// The user unsubscribed from this channel because of this message.
    pub unsubscribed: bool,
}

impl Outcome {
    pub(crate) fn undelivered(status: DeliveryStatus, at: Millis) -> Self {
        Self {
            status,
            delivered_at: at,
            open_probability: 0.0,
            click_probability: 0.0,
            opened: false,
            clicked: false,
            unsubscribed: false,
        }
    }
}

/// The oracle's view of an intervention: activity probabilities over a horizon with and
/// without it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Uplift {
    /// Probability of any activity in `[at, at + horizon)` if nothing is sent.
    pub p_active_without: f64,
    /// The same if the intervention is delivered at `at`.
    pub p_active_with: f64,
    /// `p_active_with − p_active_without`: the expected gain in retention (may be negative).
    pub uplift: f64,
    pub open_probability: f64,
    pub click_probability: f64,
}

/// A change to the hidden state.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Delta {
    /// Fraction of the way to 1 (habit rises by `habit × (1 − h)`).
    pub habit: f64,
    /// Positive: fraction of the way to 1; negative: fraction of the way to 0.
    pub satisfaction: f64,
    pub boost: f64,
    pub offer: f64,
    pub annoyance: f64,
    /// Reveal the first undiscovered feature.
    pub discover: bool,
}

impl Delta {
    pub(crate) fn apply(&self, user: &mut User) {
        let h = &mut user.hidden;
        let toward = |v: f32, by: f64| {
            let v = f64::from(v);
            (if by >= 0.0 { v + by * (1.0 - v) } else { v * (1.0 + by) }).clamp(0.0, 1.0) as f32
        };
        h.habit = toward(h.habit, self.habit);
        h.satisfaction = toward(h.satisfaction, self.satisfaction);
        h.boost = (f64::from(h.boost) + self.boost).max(0.0) as f32;
        h.offer = (f64::from(h.offer) + self.offer).clamp(0.0, 1.0) as f32;
        h.annoyance = (f64::from(h.annoyance) + self.annoyance).max(0.0) as f32;
        h.load += 1.0;
        if self.discover {
            let undiscovered = !user.features & ((1u16 << crate::population::FEATURES.len()) - 1);
            if undiscovered != 0 {
                user.features |= 1 << undiscovered.trailing_zeros();
            }
        }
    }
}

/// The ground truth of one intervention for one user in one state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Assessment {
    pub p_open: f64,
    pub p_click_given_open: f64,
    pub opened: Delta,
    pub unopened: Delta,
    /// Unsubscribe probability after each branch (it follows the annoyance it leaves).
    pub p_unsubscribe_opened: f64,
    pub p_unsubscribe_unopened: f64,
}

/// How relevant an angle is to a user in state `h` (negative: it grates).
pub(crate) fn relevance(user: &User, h: &Hidden, angle: Angle, at: i64) -> f64 {
    let habit = f64::from(h.habit);
    let sat = f64::from(h.satisfaction);
    let discovery = user.discovery();
    let risk = 1.0 - (0.6 * habit + 0.4 * sat);
    let tenure = ((at - user.signup_at) as f64 / DAY_MS as f64).max(0.0);
    match angle {
        Angle::FeatureTip => 1.1 * (1.0 - discovery) - 0.3,
        Angle::SocialProof => {
            let team = COMPANY_SIZES[user.traits.company as usize].2 / 1.8;
            let halfway = (1.0 - 2.5 * (habit - 0.35).abs()).max(0.0);
            0.25 * team + 0.45 * halfway - 0.15
        }
        Angle::Discount if user.plan == ENTERPRISE => -0.3,
        Angle::Discount => 1.4 * f64::from(user.traits.price_sensitivity) * risk - 0.3,
        Angle::CheckIn => 0.9 * risk * (1.0 - sat) + 0.2 * risk - 0.2,
        Angle::OnboardingHelp if tenure < 14.0 => 0.9 * (1.0 - habit) - 0.1,
        Angle::OnboardingHelp => 0.9 * (1.0 - habit) * (-(tenure - 14.0) / 10.0).exp() - 0.25,
    }
}

/// Judges an intervention delivered at `at` to a user whose state at `at` is `h`, with `extra`
/// more messages already scheduled. `p_session_day` is the probability the user opens the app
/// within a day (an in-app message is only seen then).
pub(crate) fn assess(
    clock: &Clock,
    user: &User,
    churned: bool,
    h: &Hidden,
    iv: &Intervention,
    extra_load: f64,
    p_session_day: f64,
) -> Assessment {
    let at = iv.at.0;
    let affinity = f64::from(user.traits.affinity[iv.channel as usize]) / 255.0;
    let local = clock.local(user.traits.zone, at);
    // The user's own day, shifted like their activity rhythm.
    let hour = (i32::from(local.hour) - i32::from(user.traits.peak_shift)).rem_euclid(24);
    let night = !(7..22).contains(&hour);
    let prime = (9..18).contains(&hour);
    let load = f64::from(h.load) + extra_load;
    let (habit, sat) = (f64::from(h.habit), f64::from(h.satisfaction));
    // Timing: (open multiplier, value multiplier, night cost).
    let (t_open, t_value, night_cost) = match iv.channel {
        // Seen whenever the user next opens the app: the send hour does not matter.
        Channel::InApp => (1.0, 1.0, 0.0),
        // Goes to a success team, who act in their business hours.
        Channel::Webhook => (1.0, if local.weekday < 5 { 1.0 } else { 0.8 }, 0.0),
        Channel::Push | Channel::Sms if night => (0.5, 0.35, 0.35),
        Channel::Email if night => (0.45, 0.5, 0.06),
        _ if prime => (1.1, 1.0, 0.0),
        _ => (0.85, 0.8, 0.0),
    };
    let engagement = 0.25 + 0.35 * sat + 0.3 * habit;
    // A user who left pays the product's messages less attention.
    let attention = if churned { 0.6 } else { 1.0 };
    let p_open = (match iv.channel {
        Channel::Email => affinity * engagement * t_open / (1.0 + 0.25 * load),
        Channel::Push => affinity * engagement * 0.9 * t_open / (1.0 + 0.3 * load),
        Channel::Sms => affinity.sqrt() * (0.4 + 0.5 * engagement) * t_open / (1.0 + 0.4 * load),
        Channel::InApp => affinity * p_session_day,
        Channel::Webhook => affinity * 0.8,
    } * attention)
        .clamp(0.0, 0.95);
    let rel = relevance(user, h, iv.angle, at);
    let fatigue = 1.0 / (1.0 + (load / 2.0).powi(2));
    let value = rel.max(0.0) * (0.4 + 0.6 * affinity) * t_value * fatigue * attention;
    let cost =
        0.02 + 0.05 * load.powf(1.5) + night_cost + 0.3 * (-rel).max(0.0) + 0.1 * f64::from(h.annoyance);
    let net = value - cost;
    let mut opened = Delta::default();
    if net >= 0.0 {
        opened.habit = 0.2 * net;
        opened.satisfaction = 0.15 * net;
        opened.boost = 1.2 * net;
        match iv.angle {
            Angle::Discount if net > 0.05 => opened.offer = 0.8,
            Angle::FeatureTip if net > 0.05 => opened.discover = true,
            Angle::OnboardingHelp => opened.habit += 0.1 * net,
            Angle::CheckIn => opened.satisfaction += 0.1 * net,
            _ => {}
        }
    } else {
        opened.satisfaction = 0.4 * net;
        opened.annoyance = -1.5 * net;
    }
    let loud = matches!(iv.channel, Channel::Push | Channel::Sms);
    let unopened = Delta {
        satisfaction: -0.1 * cost,
        annoyance: cost * if loud { 0.8 } else { 0.3 },
        ..Delta::default()
    };
    let unsubscribe = |d: &Delta| {
        let annoyance = f64::from(h.annoyance) + d.annoyance;
        if iv.channel == Channel::InApp || iv.channel == Channel::Webhook {
            return 0.0;
        }
        0.002 + 0.4 / (1.0 + (-5.0 * (annoyance - 1.5)).exp())
    };
    Assessment {
        p_open,
        p_click_given_open: (0.02 + 0.35 * net.max(0.0)).min(0.4),
        p_unsubscribe_opened: unsubscribe(&opened),
        p_unsubscribe_unopened: unsubscribe(&unopened),
        opened,
        unopened,
    }
}
