//! Fixed-horizon inference on conversion rates.

use serde::Serialize;

use crate::Interval;
use crate::error::{Result, check_confidence, check_counts};
use crate::special::{normal_two_sided_critical, normal_two_sided_p};

/// Wilson score interval for a binomial proportion.
///
/// With `p̂ = x/n` and `z` the `1 − α/2` normal quantile (`α = 1 − confidence`):
///
/// ```text
/// centre = (p̂ + z²/(2n)) / (1 + z²/n)
/// half   = z √(p̂(1−p̂)/n + z²/(4n²)) / (1 + z²/n)
/// ```
///
/// clipped to `[0, 1]`. Matches statsmodels `proportion_confint(x, n, alpha, method="wilson")`.
/// Unlike the Wald interval it stays informative at `x = 0` and `x = n`.
pub fn wilson_interval(successes: u64, n: u64, confidence: f64) -> Result<Interval> {
    check_counts("sample", successes, n)?;
    check_confidence("confidence", confidence)?;
    let z = normal_two_sided_critical(1.0 - confidence);
    let nf = n as f64;
    let p = successes as f64 / nf;
    let z2 = z * z;
    let denom = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    Ok(Interval { lower: (centre - half).clamp(0.0, 1.0), upper: (centre + half).clamp(0.0, 1.0) })
}

/// Result of [`two_proportion_test`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProportionTest {
    /// `x_treat / n_treat`.
    pub rate_treat: f64,
    /// `x_control / n_control`.
    pub rate_control: f64,
    /// `rate_treat − rate_control`.
    pub diff: f64,
    /// Wald (unpooled) interval for `diff`.
    pub diff_ci: Interval,
    /// Pooled z statistic.
    pub z: f64,
    /// Two-sided p-value of the pooled z test.
    pub p_value: f64,
}

/// Two-sided z test of equal conversion rates, with a Wald interval for the difference.
///
/// The test pools the rates under the null, `p̄ = (x_t + x_c)/(n_t + n_c)`:
///
/// ```text
/// z = (p̂_t − p̂_c) / √(p̄(1−p̄)(1/n_t + 1/n_c)),   p = 2(1 − Φ(|z|))
/// ```
///
/// (statsmodels `proportions_ztest([x_t, x_c], [n_t, n_c])`). The interval does not pool,
/// since it describes the difference wherever it is:
///
/// ```text
/// diff ± z_{1−α/2} √(p̂_t(1−p̂_t)/n_t + p̂_c(1−p̂_c)/n_c)
/// ```
///
/// (statsmodels `confint_proportions_2indep(..., method="wald", compare="diff")`).
///
/// When `p̄` is 0 or 1 every observation is the same, the rates are equal and there is no
/// evidence of a difference: `z = 0`, `p = 1` (statsmodels returns NaN there), and the Wald
/// interval degenerates to `[0, 0]` as the method does.
pub fn two_proportion_test(
    x_treat: u64,
    n_treat: u64,
    x_control: u64,
    n_control: u64,
    confidence: f64,
) -> Result<ProportionTest> {
    check_counts("treatment", x_treat, n_treat)?;
    check_counts("control", x_control, n_control)?;
    check_confidence("confidence", confidence)?;
    let (nt, nc) = (n_treat as f64, n_control as f64);
    let rate_treat = x_treat as f64 / nt;
    let rate_control = x_control as f64 / nc;
    let diff = rate_treat - rate_control;
    let pooled = (x_treat + x_control) as f64 / (nt + nc);
    let pooled_var = pooled * (1.0 - pooled) * (1.0 / nt + 1.0 / nc);
    let (z, p_value) = if pooled_var > 0.0 {
        let z = diff / pooled_var.sqrt();
        (z, normal_two_sided_p(z))
    } else {
        (0.0, 1.0)
    };
    let crit = normal_two_sided_critical(1.0 - confidence);
    let half =
        crit * (rate_treat * (1.0 - rate_treat) / nt + rate_control * (1.0 - rate_control) / nc).sqrt();
    Ok(ProportionTest {
        rate_treat,
        rate_control,
        diff,
        diff_ci: Interval { lower: diff - half, upper: diff + half },
        z,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StatsError;

    #[test]
    fn rejects_bad_counts_and_confidence() {
        assert!(matches!(wilson_interval(0, 0, 0.95), Err(StatsError::Empty { .. })));
        assert!(matches!(
            wilson_interval(5, 4, 0.95),
            Err(StatsError::SuccessesExceedTrials { successes: 5, trials: 4, .. })
        ));
        for c in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(matches!(wilson_interval(1, 4, c), Err(StatsError::NotInUnitInterval { .. })));
        }
        assert!(two_proportion_test(1, 0, 1, 2, 0.95).is_err());
        assert!(two_proportion_test(1, 2, 3, 2, 0.95).is_err());
    }

    #[test]
    fn identical_degenerate_groups_show_no_difference() {
        for (xt, xc) in [(0, 0), (10, 20)] {
            let r = two_proportion_test(xt, 10, xc, 20, 0.95).unwrap();
            assert_eq!((r.z, r.p_value, r.diff), (0.0, 1.0, 0.0));
            assert_eq!(r.diff_ci, Interval { lower: 0.0, upper: 0.0 });
        }
    }

    #[test]
    fn wilson_stays_inside_unit_interval_at_the_edges() {
        let zero = wilson_interval(0, 50, 0.95).unwrap();
        assert!(zero.lower.abs() < 1e-15);
        assert!(zero.upper > 0.0 && zero.upper < 0.1);
        let all = wilson_interval(50, 50, 0.95).unwrap();
        assert!((all.upper - 1.0).abs() < 1e-15);
        assert!(all.lower > 0.9);
    }
}
