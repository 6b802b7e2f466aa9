//! Off-policy evaluation: the expected reward a new (target) policy would have earned, estimated
//! from decisions logged under another (logging) policy, with their propensities.
//!
//! With importance weight `w_i = π_e(a_i|x_i) / π_0(a_i|x_i)` for the logged action `a_i`:
//!
//! ```text
//! IPS   V = (1/n) Σ w_i r_i
//! SNIPS V = Σ w_i r_i / Σ w_i
//! DR    V = (1/n) Σ [ q̂(x_i, π_e) + w_i (r_i − q̂(x_i, a_i)) ]
//! ```
//!
//! (Horvitz & Thompson 1952; Swaminathan & Joachims, "The self-normalized estimator for
//! counterfactual learning", NeurIPS 2015; Dudík, Langford & Li, "Doubly robust policy
//! evaluation and learning", ICML 2011). Intervals use the normal approximation; the effective
//! sample size is Kish's `(Σw)² / Σw²`, how many on-policy rounds the weighted log is worth.

use serde::Serialize;

use crate::Interval;
use crate::error::{Result, StatsError, check_confidence};
use crate::special::normal_two_sided_critical;

/// One logged decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Logged {
    /// The logging policy's probability of the action it took, in `(0, 1]`.
    pub propensity: f64,
    /// The observed reward.
    pub reward: f64,
    /// The target policy's probability of that same action, in `[0, 1]`.
    pub target_prob: f64,
    /// The reward model's prediction for the logged action, `q̂(x, a)`.
    pub q_logged: f64,
    /// The reward model's expectation under the target policy, `Σ_a π_e(a|x) q̂(x, a)`.
    pub q_target: f64,
}

/// An off-policy estimate of the target policy's mean reward per round.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The estimated value.
    pub value: f64,
    /// Its standard error.
    pub std_error: f64,
    /// `value ± z_{1−α/2} · std_error`.
    pub ci: Interval,
    /// Number of logged rounds.
    pub n: u64,
    /// Kish effective sample size of the importance weights, `(Σw)² / Σw²` (0 when every
    /// weight is 0).
    pub effective_sample_size: f64,
}

/// Validates the log and returns the importance weights.
fn weights(log: &[Logged], confidence: f64) -> Result<Vec<f64>> {
    check_confidence("confidence", confidence)?;
    if log.len() < 2 {
        return Err(StatsError::TooFew { what: "off-policy estimate", needed: 2, got: log.len() as u64 });
    }
    let bad = |index, field, expected, value| Err(StatsError::InvalidRound { index, field, expected, value });
    log.iter()
        .enumerate()
        .map(|(index, l)| {
            if !(l.propensity > 0.0 && l.propensity <= 1.0) {
                return bad(index, "propensity", "in (0, 1]", l.propensity);
            }
            if !(0.0..=1.0).contains(&l.target_prob) {
                return bad(index, "target_prob", "in [0, 1]", l.target_prob);
            }
            for (field, value) in [("reward", l.reward), ("q_logged", l.q_logged), ("q_target", l.q_target)] {
                if !value.is_finite() {
                    return bad(index, field, "finite", value);
                }
            }
            Ok(l.target_prob / l.propensity)
        })
        .collect()
}

fn kish(w: &[f64]) -> f64 {
    let s: f64 = w.iter().sum();
    let s2: f64 = w.iter().map(|w| w * w).sum();
    if s2 > 0.0 { s * s / s2 } else { 0.0 }
}

/// Mean of per-round terms with the standard error `sd(terms, ddof=1) / √n`.
fn mean_estimate(terms: impl Iterator<Item = f64>, w: &[f64], confidence: f64) -> Estimate {
    let mut n = 0u64;
    let (mut mean, mut m2) = (0.0, 0.0);
    for t in terms {
        n += 1;
        let delta = t - mean;
        mean += delta / n as f64;
        m2 += delta * (t - mean);
    }
    let std_error = (m2 / (n - 1) as f64 / n as f64).sqrt();
    finish(mean, std_error, n, w, confidence)
}

fn finish(value: f64, std_error: f64, n: u64, w: &[f64], confidence: f64) -> Estimate {
    let half = normal_two_sided_critical(1.0 - confidence) * std_error;
    Estimate {
        value,
        std_error,
        ci: Interval { lower: value - half, upper: value + half },
        n,
        effective_sample_size: kish(w),
    }
}

/// Inverse propensity scoring: the mean of `w_i r_i`, with standard error
/// `sd(w_i r_i) / √n` (sample sd, `n − 1` divisor). Unbiased whenever the logging policy gives
/// every action the target policy may take a positive probability, but its variance grows with
/// the weights.
pub fn ips(log: &[Logged], confidence: f64) -> Result<Estimate> {
    let w = weights(log, confidence)?;
    Ok(mean_estimate(log.iter().zip(&w).map(|(l, w)| w * l.reward), &w, confidence))
}

/// Self-normalised IPS, `Σ w_i r_i / Σ w_i`: slightly biased, but bounded by the rewards and
/// far less variable than IPS when weights are large.
///
/// Its variance is the delta-method (ratio-estimator) one, from the influence terms
/// `ψ_i = w_i (r_i − V) / w̄` with `w̄ = Σw/n`: `se² = Σ ψ_i² / (n (n − 1))`, the `n − 1` matching
/// the sample-sd convention of [`ips`] and [`doubly_robust`]. Fails with
/// [`StatsError::NoOverlap`] when every weight is 0.
pub fn snips(log: &[Logged], confidence: f64) -> Result<Estimate> {
    let w = weights(log, confidence)?;
    let sum_w: f64 = w.iter().sum();
    if sum_w <= 0.0 {
        return Err(StatsError::NoOverlap);
    }
    let value = log.iter().zip(&w).map(|(l, w)| w * l.reward).sum::<f64>() / sum_w;
    let n = log.len() as f64;
    let mean_w = sum_w / n;
    let sum_psi2: f64 = log
        .iter()
        .zip(&w)
        .map(|(l, w)| {
            let psi = w * (l.reward - value) / mean_w;
            psi * psi
        })
        .sum();
    let std_error = (sum_psi2 / (n * (n - 1.0))).sqrt();
    Ok(finish(value, std_error, log.len() as u64, &w, confidence))
}

/// Doubly robust: the reward model's value for the target policy plus the importance-weighted
/// residual of the logged action, `q̂(x_i, π_e) + w_i (r_i − q̂(x_i, a_i))`, averaged, with
/// standard error `sd / √n` of those terms. Unbiased if either the propensities or the reward
/// model are right, and much less variable than IPS when the model is good.
pub fn doubly_robust(log: &[Logged], confidence: f64) -> Result<Estimate> {
    let w = weights(log, confidence)?;
    Ok(mean_estimate(
        log.iter().zip(&w).map(|(l, w)| l.q_target + w * (l.reward - l.q_logged)),
        &w,
        confidence,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(propensity: f64, target_prob: f64, reward: f64) -> Logged {
        Logged { propensity, reward, target_prob, q_logged: 0.5, q_target: 0.5 }
    }

    #[test]
    fn invalid_rounds_are_named_by_index() {
        let mut log = vec![round(0.5, 1.0, 1.0); 4];
        log[2].propensity = 0.0;
        assert_eq!(
            ips(&log, 0.95),
            Err(StatsError::InvalidRound {
                index: 2,
                field: "propensity",
                expected: "in (0, 1]",
                value: 0.0
            })
        );
        log[2].propensity = f64::NAN;
        assert!(matches!(snips(&log, 0.95), Err(StatsError::InvalidRound { index: 2, .. })));
        log[2].propensity = 1.5;
        assert!(matches!(doubly_robust(&log, 0.95), Err(StatsError::InvalidRound { index: 2, .. })));
        log[2].propensity = 0.5;
        log[3].reward = f64::INFINITY;
        assert!(matches!(ips(&log, 0.95), Err(StatsError::InvalidRound { index: 3, field: "reward", .. })));
        log[3].reward = 0.0;
        assert!(ips(&log, 0.95).is_ok());
        assert!(ips(&log[..1], 0.95).is_err());
        assert!(ips(&log, 0.0).is_err());
    }

    #[test]
    fn snips_needs_overlap_and_on_policy_logs_have_full_ess() {
        let log = vec![round(0.5, 0.0, 1.0); 3];
        assert_eq!(snips(&log, 0.95), Err(StatsError::NoOverlap));
        assert_eq!(ips(&log, 0.95).unwrap().effective_sample_size, 0.0);
        let on_policy: Vec<_> = (0..10).map(|i| round(0.25, 0.25, f64::from(i % 2))).collect();
        let e = ips(&on_policy, 0.95).unwrap();
        assert!((e.effective_sample_size - 10.0).abs() < 1e-12);
        assert!((e.value - 0.5).abs() < 1e-15);
        let s = snips(&on_policy, 0.95).unwrap();
        assert!((s.value - 0.5).abs() < 1e-15);
    }
}
