//! Difference of two means without assuming equal variances.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::Interval;
use crate::error::{Result, StatsError, check_confidence, check_finite};
use crate::special::{student_t_two_sided_critical, student_t_two_sided_p};

/// Count, mean and sample variance of a stream of values, kept with Welford's update so that a
/// single pass over millions of values loses no precision to `Σx² − (Σx)²/n` cancellation.
///
/// Summaries of disjoint parts merge exactly ([`Summary::merge`], Chan et al. 1979), so each
/// shard or partition can keep its own.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    n: u64,
    mean: f64,
    /// Sum of squared deviations from the mean, `Σ(x − x̄)²`.
    m2: f64,
}

impl Summary {
    /// An empty summary.
    pub fn new() -> Self {
        Self::default()
    }

    /// A summary from already known moments: `n` values with this mean and sample variance
    /// (`ddof = 1`; ignored and may be 0 when `n = 1`).
    pub fn from_moments(n: u64, mean: f64, variance: f64) -> Result<Self> {
        check_finite("mean", mean)?;
        check_finite("variance", variance)?;
        if variance < 0.0 {
            return Err(StatsError::OutOfDomain {
                what: "variance",
                expected: "non-negative",
                value: variance,
            });
        }
        if n == 0 {
            return Err(StatsError::Empty { what: "summary" });
        }
        Ok(Self { n, mean, m2: variance * (n - 1) as f64 })
    }

    /// The summary of a slice, by pushing each value.
    pub fn from_slice(values: &[f64]) -> Result<Self> {
        let mut s = Self::new();
        for &x in values {
            s.push(x)?;
        }
        Ok(s)
    }

    /// Adds one value: `δ = x − x̄; x̄ += δ/n; M2 += δ(x − x̄)` (Welford 1962). A NaN or infinite
    /// value is refused and leaves the summary unchanged.
    pub fn push(&mut self, x: f64) -> Result<()> {
        check_finite("value", x)?;
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
        Ok(())
    }

    /// Combines with the summary of another, disjoint set of values:
    /// `δ = x̄_b − x̄_a; n = n_a + n_b; x̄ = x̄_a + δ n_b/n; M2 = M2_a + M2_b + δ² n_a n_b / n`.
    pub fn merge(&mut self, other: &Summary) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.n += other.n;
    }

    /// Number of values.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Mean, `None` while empty.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then_some(self.mean)
    }

    /// Sample variance `Σ(x − x̄)² / (n − 1)`, `None` below two values.
    pub fn variance(&self) -> Option<f64> {
        (self.n > 1).then(|| self.m2 / (self.n - 1) as f64)
    }
}

/// Serialised as `{ n, mean, variance }`, with `null` where [`Summary::mean`] or
/// [`Summary::variance`] is undefined.
impl Serialize for Summary {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Summary", 3)?;
        s.serialize_field("n", &self.n)?;
        s.serialize_field("mean", &self.mean())?;
        s.serialize_field("variance", &self.variance())?;
        s.end()
    }
}

/// Result of [`welch_test`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanTest {
    /// `mean_treat − mean_control`.
    pub diff: f64,
    /// Interval for `diff` from the t distribution with `df` degrees of freedom.
    pub diff_ci: Interval,
    /// Welch's t statistic.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Welch's unequal-variances t test for `mean_treat − mean_control`.
///
/// With `v_i = s_i²/n_i`:
///
/// ```text
/// t  = (x̄_t − x̄_c) / √(v_t + v_c)
/// df = (v_t + v_c)² / (v_t²/(n_t − 1) + v_c²/(n_c − 1))
/// p  = P(|T_df| > |t|)
/// ci = diff ± t_{df, 1−α/2} √(v_t + v_c)
/// ```
///
/// Matches scipy `ttest_ind(treat, control, equal_var=False)` and its
/// `confidence_interval(confidence)`.
///
/// Each group needs two values. If both variances are zero the standard error is zero and t is
/// undefined (scipy returns NaN): that is [`StatsError::ZeroVariance`], whether or not the means
/// differ, because no honest p-value exists for it. One zero-variance group is fine.
pub fn welch_test(treat: &Summary, control: &Summary, confidence: f64) -> Result<MeanTest> {
    check_confidence("confidence", confidence)?;
    for (what, s) in [("treatment", treat), ("control", control)] {
        if s.n < 2 {
            return Err(StatsError::TooFew { what, needed: 2, got: s.n });
        }
    }
    let vt = treat.m2 / (treat.n - 1) as f64 / treat.n as f64;
    let vc = control.m2 / (control.n - 1) as f64 / control.n as f64;
    let se2 = vt + vc;
    if se2 <= 0.0 {
        return Err(StatsError::ZeroVariance);
    }
    let se = se2.sqrt();
    let diff = treat.mean - control.mean;
    let t = diff / se;
    let df = se2 * se2 / (vt * vt / (treat.n - 1) as f64 + vc * vc / (control.n - 1) as f64);
    let p_value = student_t_two_sided_p(t, df);
    let half = student_t_two_sided_critical(1.0 - confidence, df) * se;
    Ok(MeanTest { diff, diff_ci: Interval { lower: diff - half, upper: diff + half }, t, df, p_value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass_and_merge_matches_one_stream() {
        let xs: Vec<f64> = (0..1000).map(|i| 1e6 + f64::from(i % 17) * 0.25 - f64::from(i % 5)).collect();
        let s = Summary::from_slice(&xs).unwrap();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
        assert!((s.mean().unwrap() - mean).abs() < 1e-9);
        assert!((s.variance().unwrap() - var).abs() < 1e-9 * var);
        let mut a = Summary::from_slice(&xs[..300]).unwrap();
        a.merge(&Summary::from_slice(&xs[300..]).unwrap());
        a.merge(&Summary::new());
        assert_eq!(a.n(), 1000);
        assert!((a.mean().unwrap() - mean).abs() < 1e-9);
        assert!((a.variance().unwrap() - var).abs() < 1e-9 * var);
        let mut empty = Summary::new();
        empty.merge(&s);
        assert_eq!(empty, s);
    }

    #[test]
    fn refuses_nan_and_small_or_constant_groups() {
        let mut s = Summary::new();
        assert!(matches!(s.push(f64::NAN), Err(StatsError::NotFinite { .. })));
        assert_eq!(s.n(), 0);
        assert_eq!(s.mean(), None);
        s.push(1.0).unwrap();
        assert_eq!(s.variance(), None);
        let two = Summary::from_slice(&[1.0, 2.0]).unwrap();
        assert!(matches!(welch_test(&s, &two, 0.95), Err(StatsError::TooFew { got: 1, .. })));
        let flat = Summary::from_slice(&[3.0, 3.0, 3.0]).unwrap();
        let flat2 = Summary::from_slice(&[4.0, 4.0]).unwrap();
        assert_eq!(welch_test(&flat, &flat2, 0.95), Err(StatsError::ZeroVariance));
        let one_flat = welch_test(&flat, &two, 0.95).unwrap();
        assert!(one_flat.p_value > 0.0 && one_flat.p_value < 1.0);
        assert!((one_flat.df - 1.0).abs() < 1e-12);
        assert!(Summary::from_moments(3, 1.0, -1.0).is_err());
        assert!(Summary::from_moments(0, 1.0, 1.0).is_err());
        assert!(welch_test(&two, &two, 1.0).is_err());
    }

    #[test]
    fn serialises_undefined_moments_as_null() {
        let json = serde_json::to_string(&Summary::new()).unwrap();
        assert_eq!(json, r#"{"n":0,"mean":null,"variance":null}"#);
    }
}
