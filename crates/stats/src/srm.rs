//! Sample-ratio mismatch: did the assignment really split traffic as configured?

use serde::Serialize;

use crate::error::{Result, StatsError};
use crate::special::chi_squared_sf;

/// Result of [`sample_ratio_mismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Srm {
    /// Pearson's statistic `Σ (o_i − e_i)² / e_i`.
    pub chi2: f64,
    /// Degrees of freedom, the number of groups minus one.
    pub df: u64,
    /// `P(χ²_df ≥ chi2)`. A tiny value (the usual alarm is below 0.001) means the observed split
    /// is implausible under the configured weights, so the experiment's results are suspect.
    pub p_value: f64,
}

/// Pearson chi-squared goodness-of-fit test of observed group sizes against configured
/// weights.
///
/// `e_i = N · w_i / Σw` with `N = Σ o_i`, `χ² = Σ (o_i − e_i)² / e_i`, `df = k − 1`,
/// `p = Q(df/2, χ²/2)`. Matches scipy `chisquare(observed, f_exp=e)`.
///
/// Needs at least two groups, one weight per group, every weight positive and finite, and at
/// least one observation.
pub fn sample_ratio_mismatch(observed: &[u64], expected_weights: &[f64]) -> Result<Srm> {
    if observed.len() != expected_weights.len() {
        return Err(StatsError::LengthMismatch {
            left: "observed",
            left_len: observed.len(),
            right: "expected_weights",
            right_len: expected_weights.len(),
        });
    }
    if observed.len() < 2 {
        return Err(StatsError::TooFew { what: "sample ratio test", needed: 2, got: observed.len() as u64 });
    }
    for &w in expected_weights {
        if !(w.is_finite() && w > 0.0) {
            return Err(StatsError::OutOfDomain {
                what: "weight",
                expected: "positive and finite",
                value: w,
            });
        }
    }
    let total: u64 = observed.iter().sum();
    if total == 0 {
        return Err(StatsError::Empty { what: "sample ratio test" });
    }
    let weight_sum: f64 = expected_weights.iter().sum();
    let n = total as f64;
    let chi2: f64 = observed
        .iter()
        .zip(expected_weights)
        .map(|(&o, &w)| {
            let e = n * w / weight_sum;
            let d = o as f64 - e;
            d * d / e
        })
        .sum();
    let df = observed.len() as u64 - 1;
    Ok(Srm { chi2, df, p_value: chi_squared_sf(chi2, df as f64) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_split_has_p_one_and_bad_input_is_refused() {
        let r = sample_ratio_mismatch(&[500, 500], &[1.0, 1.0]).unwrap();
        assert_eq!((r.chi2, r.df, r.p_value), (0.0, 1, 1.0));
        assert!(sample_ratio_mismatch(&[1, 2], &[1.0]).is_err());
        assert!(sample_ratio_mismatch(&[1], &[1.0]).is_err());
        assert!(sample_ratio_mismatch(&[0, 0], &[1.0, 1.0]).is_err());
        assert!(sample_ratio_mismatch(&[1, 2], &[1.0, 0.0]).is_err());
        assert!(sample_ratio_mismatch(&[1, 2], &[1.0, f64::NAN]).is_err());
    }
}
