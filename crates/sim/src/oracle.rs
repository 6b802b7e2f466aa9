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
    BOOST_TAU_DAYS, HABIT_TAU_DAYS, Hidden, Phase, SATISFACTION_TAU_DAYS, User, churn_rate,
    resurrection_rate, session_rate,
};

/// Stop integrating once the no-event probability is this small.
const NEGLIGIBLE: f64 = 1e-12;

/// Probability that a user whose hidden state at `from` is `user.hidden` (and whose phase is
/// `phase`) has no events in `[from, to)`.
pub(crate) fn p_no_events(clock: &Clock, user: &User, phase: Phase, from: i64, to: i64) -> f64 {
    let (mut active, mut churned_before, mut churned_new) = match phase {
        Phase::Active => (1.0, 0.0, 0.0),
        Phase::Churned => (0.0, 1.0, 0.0),
        // Not signed up: no behaviour to speak of (callers leave these users out).
        Phase::Visitor => return 1.0,
    };
    let mut h: Hidden = user.hidden;
    let base = f64::from(user.traits.satisfaction_base);
    // Decay factors of a whole hour, the usual step.
    let hour_days = HOUR_MS as f64 / DAY_MS as f64;
    let full = |tau: f64| (-hour_days / tau).exp();
    let (habit_hour, sat_hour, boost_hour) =
        (full(HABIT_TAU_DAYS), full(SATISFACTION_TAU_DAYS), full(BOOST_TAU_DAYS));
    let mut t = from;
    while t < to && active + churned_before + churned_new > NEGLIGIBLE {
        let local = clock.local(user.traits.zone, t);
        let end = (t + local.ms_to_next_hour).min(to);
        let dt = (end - t) as f64 / DAY_MS as f64;
        let rhythm = clock.rhythm.at(local, user.traits.peak_shift);
        if active > 0.0 {
            let lambda = session_rate(user, &h) * rhythm;
            let mu = churn_rate(user, &h);
            let total = lambda + mu;
            let stay = (-total * dt).exp();
            churned_new += active * (mu / total) * (1.0 - stay);
            active *= stay;
        }
        if churned_before > 0.0 {
            let rho = resurrection_rate(user, &h, user.churned_at, t) * rhythm;
            churned_before *= (-rho * dt).exp();
        }
        if churned_new > 0.0 {
            // Churned during the window: close to `from`, where the pull back is strongest.
            let rho = resurrection_rate(user, &h, from, t) * rhythm;
            churned_new *= (-rho * dt).exp();
        }
        let (hf, sf, bf) = if end - t == HOUR_MS {
            (habit_hour, sat_hour, boost_hour)
        } else {
            ((-dt / HABIT_TAU_DAYS).exp(), (-dt / SATISFACTION_TAU_DAYS).exp(), (-dt / BOOST_TAU_DAYS).exp())
        };
        h.habit = (f64::from(h.habit) * hf) as f32;
        h.satisfaction = (base + (f64::from(h.satisfaction) - base) * sf) as f32;
        h.boost = (f64::from(h.boost) * bf) as f32;
        t = end;
    }
    (active + churned_before + churned_new).clamp(0.0, 1.0)
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
