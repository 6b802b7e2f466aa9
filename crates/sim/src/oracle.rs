//! The oracle: true probabilities computed from the hidden state, never from the draws the
//! generator already made about the future.
//!
//! Between events a user's hidden state follows a known deterministic path, and the model's
//! rates are known functions of it (`model.rs`). So "no events in `[from, to)`" is the survival
//! of a two-state chain along that path: an active user leaves the no-event path by starting a
//! session (rate λ) and moves to churned at rate μ; a churned user leaves it by coming back
//! (rate ρ, which starts a session). Integrating hour by hour in the user's local time (the
//! rhythm is constant within a local hour) gives the probability directly — no Monte-Carlo, no
//! randomness, nothing shared with the simulation's random streams.

use crate::clock::{Clock, DAY_MS, HOUR_MS};
use crate::model::{
    BOOST_TAU_DAYS, Factors, HABIT_TAU_DAYS, Hidden, Phase, RESURRECTION_TAU_DAYS, SATISFACTION_TAU_DAYS,
    User,
};

/// Stop integrating once the no-event probability is this small.
const NEGLIGIBLE: f64 = 1e-12;

/// `e^(−x)` for the small `x` of one hour of a slow rate (a cubic is exact to 1e-7 there).
fn decay(x: f64) -> f64 {
    if x < 0.05 { 1.0 - x * (1.0 - x * (0.5 - x / 6.0)) } else { (-x).exp() }
}

/// Probability that a user whose hidden state at `from` is `user.hidden` (and whose phase is
/// `phase`) has no events in `[from, to)`.
pub(crate) fn p_no_events(clock: &Clock, user: &User, phase: Phase, from: i64, to: i64) -> f64 {
    let (mut active, churned_before, mut churned_new) = match phase {
        Phase::Active => (1.0, 0.0, 0.0),
        Phase::Churned => (0.0, 1.0, 0.0),
        // Not signed up: no behaviour to speak of (callers leave these users out).
        Phase::Visitor => return 1.0,
    };
    let factors = Factors::of(user);
    let base = f64::from(user.traits.satisfaction_base);
    let mut h: Hidden = user.hidden;
    let (mut habit, mut satisfaction, mut boost) =
        (f64::from(h.habit), f64::from(h.satisfaction), f64::from(h.boost));
    // The pull back to the product fades with the time since churning: for those churned before
    // `from`, and for those who churn in the window (close to `from`, where it is strongest).
    let since_days = |t: i64| (from.saturating_sub(t) as f64 / DAY_MS as f64).max(0.0);
    let mut pull_before = (-since_days(user.churned_at) / RESURRECTION_TAU_DAYS).exp();
    let mut pull_new = 1.0;
    // ∫ρ dt of those churned before `from` (their survival is e^(−∫ρ), taken at the end).
    let mut resisted_before = 0.0;
    let hour_days = HOUR_MS as f64 / DAY_MS as f64;
    let full = |tau: f64| (-hour_days / tau).exp();
    let hourly = [HABIT_TAU_DAYS, SATISFACTION_TAU_DAYS, BOOST_TAU_DAYS, RESURRECTION_TAU_DAYS].map(full);
    let mut t = from;
    while t < to && active + churned_before + churned_new > NEGLIGIBLE {
        let local = clock.local(user.traits.zone, t);
        let end = (t + local.ms_to_next_hour).min(to);
        let dt = (end - t) as f64 / DAY_MS as f64;
        let rhythm = clock.rhythm.at(local, user.traits.peak_shift);
        if active > NEGLIGIBLE {
            (h.habit, h.satisfaction, h.boost) = (habit as f32, satisfaction as f32, boost as f32);
            let lambda = factors.session_rate(&h) * rhythm;
            let mu = factors.churn_rate(&h);
            let total = lambda + mu;
            let stay = (-total * dt).exp();
            churned_new += active * (mu / total) * (1.0 - stay);
            active *= stay;
        } else {
            active = 0.0;
        }
        if churned_before > 0.0 {
            resisted_before += factors.resurrection_rate_with(pull_before, boost) * rhythm * dt;
        }
        if churned_new > 0.0 {
            churned_new *= decay(factors.resurrection_rate_with(pull_new, boost) * rhythm * dt);
        }
        let [hf, sf, bf, pf] = if end - t == HOUR_MS {
            hourly
        } else {
            [HABIT_TAU_DAYS, SATISFACTION_TAU_DAYS, BOOST_TAU_DAYS, RESURRECTION_TAU_DAYS]
                .map(|tau| (-dt / tau).exp())
        };
        habit *= hf;
        satisfaction = base + (satisfaction - base) * sf;
        boost *= bf;
        pull_before *= pf;
        pull_new *= pf;
        t = end;
    }
    (active + churned_before * (-resisted_before).exp() + churned_new).clamp(0.0, 1.0)
}

/// Area under the ROC curve of `scores` for the binary `labels` (true = positive), with ties
/// counted half (the Mann-Whitney U statistic). None when either class is empty.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut positives) = (0.0, 0u64);
    let mut i = 0;
    while i < order.len() {
        // A run of tied scores shares the average rank.
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum += rank;
                positives += 1;
            }
        }
        i = j + 1;
    }
    let negatives = scores.len() as u64 - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]), Some(0.5));
        assert_eq!(auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), None);
    }
}
