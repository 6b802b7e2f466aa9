//! Always-valid inference for the difference of two conversion rates, so an experiment can be
//! looked at after every batch without inflating the false-positive rate.
//!
//! Both tools use the normal approximation `d = p̂_t − p̂_c ~ N(θ, V)` and mix the likelihood
//! ratio of `θ` against the null over `θ ~ N(θ₀, τ²)`:
//!
//! ```text
//! Λ(θ₀) = ∫ φ((d − θ)/√V) dN(θ; θ₀, τ²) / φ((d − θ₀)/√V)
//!       = √(V / (V + τ²)) · exp( τ² (d − θ₀)² / (2V(V + τ²)) )
//! ```
//!
//! With equal arm sizes `n` and `V = 2σ²/n` this is the mSPRT statistic of Johari, Pekelis,
//! Walsh, "Always valid inference: continuous monitoring of A/B tests" (Operations Research
//! 2022), `√(2σ²/(2σ² + nτ²)) exp(n²τ²(Ȳ − X̄ − θ₀)² / (4σ²(2σ² + nτ²)))`. Λ is a nonnegative
//! martingale under the null, so by Ville's inequality `P(∃ look: Λ ≥ 1/α) ≤ α`: the running
//! minimum of `1/Λ` is a p-value that stays valid at any stopping time.
//!
//! `τ²` is the prior variance of plausible effects: about the square of the lift one hopes to
//! detect (e.g. `1e-4` for ±1 percentage point). Too small and real effects take long to show;
//! too large and the price of always-validity (wider intervals) rises; validity holds for any
//! `τ² > 0`.
//!
//! `V` is a plug-in estimate, so guarantees are asymptotic (as for the fixed-horizon z test).

use serde::Serialize;

use crate::Interval;
use crate::error::{Result, StatsError, check_confidence, check_counts};

fn check_tau2(tau2: f64) -> Result<()> {
    if tau2 > 0.0 && tau2.is_finite() {
        Ok(())
    } else {
        Err(StatsError::OutOfDomain { what: "tau2", expected: "positive and finite", value: tau2 })
    }
}

/// `ln Λ` for the mixture above with `V` the given variance of `d − θ₀`.
fn ln_mixture_ratio(d: f64, v: f64, tau2: f64) -> f64 {
    0.5 * (v / (v + tau2)).ln() + tau2 * d * d / (2.0 * v * (v + tau2))
}

/// Log of the mixture likelihood ratio `Λ` of "rates differ" against "rates are equal" at one
/// look, from cumulative counts.
///
/// `V` is the pooled null variance `p̄(1 − p̄)(1/n_t + 1/n_c)` with `p̄ = (x_t + x_c)/(n_t + n_c)`,
/// the same one the fixed-horizon [`two_proportion_test`](crate::two_proportion_test) uses:
///
/// ```text
/// ln Λ = ½ ln(V/(V + τ²)) + τ² d² / (2V(V + τ²))
/// ```
///
/// When `p̄` is 0 or 1 nothing has varied yet and `d = 0`: the look carries no evidence and
/// `ln Λ = 0` by definition (the formula's limit would be `−∞`, evidence *for* the null that a
/// run of identical outcomes does not really give).
pub fn msprt_log_likelihood_ratio(x_t: u64, n_t: u64, x_c: u64, n_c: u64, tau2: f64) -> Result<f64> {
    check_counts("treatment", x_t, n_t)?;
    check_counts("control", x_c, n_c)?;
    check_tau2(tau2)?;
    let (nt, nc) = (n_t as f64, n_c as f64);
    let d = x_t as f64 / nt - x_c as f64 / nc;
    let pooled = (x_t + x_c) as f64 / (nt + nc);
    let v = pooled * (1.0 - pooled) * (1.0 / nt + 1.0 / nc);
    Ok(if v > 0.0 { ln_mixture_ratio(d, v, tau2) } else { 0.0 })
}

/// Running state of an always-valid (mSPRT) test of equal rates.
///
/// Feed it the cumulative counts at each look with [`AlwaysValid::update`]; [`AlwaysValid::p_value`]
/// is `min(1, min over looks of 1/Λ)`, never increases, and `P(p ≤ α at any look) ≤ α` under
/// the null however often and whenever one looks (see the module doc for the formula).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlwaysValid {
    tau2: f64,
    p_value: f64,
    looks: u64,
    last: [u64; 4],
}

impl AlwaysValid {
    /// A test with mixing variance `tau2` (> 0), before any look: p = 1.
    pub fn new(tau2: f64) -> Result<Self> {
        check_tau2(tau2)?;
        Ok(Self { tau2, p_value: 1.0, looks: 0, last: [0; 4] })
    }

    /// Records a look with cumulative counts (successes and trials per arm since the start) and
    /// returns the updated p-value. Counts that go down are refused, since they would mean the
    /// caller is passing per-batch counts, which this statistic does not accumulate.
    pub fn update(&mut self, x_t: u64, n_t: u64, x_c: u64, n_c: u64) -> Result<f64> {
        let current = [x_t, n_t, x_c, n_c];
        const NAMES: [&str; 4] =
            ["treatment successes", "treatment trials", "control successes", "control trials"];
        for ((what, previous), current) in NAMES.into_iter().zip(self.last).zip(current) {
            if current < previous {
                return Err(StatsError::NotCumulative { what, previous, current });
            }
        }
        let ln_lambda = msprt_log_likelihood_ratio(x_t, n_t, x_c, n_c, self.tau2)?;
        // exp(−ln Λ) underflows to 0 for overwhelming evidence, which is the right limit.
        self.p_value = self.p_value.min((-ln_lambda).exp()).min(1.0);
        self.looks += 1;
        self.last = current;
        Ok(self.p_value)
    }

    /// The always-valid p-value so far: 1 before the first look.
    pub fn p_value(&self) -> f64 {
        self.p_value
    }

    /// Number of looks recorded.
    pub fn looks(&self) -> u64 {
        self.looks
    }

    /// The mixing variance.
    pub fn tau2(&self) -> f64 {
        self.tau2
    }
}

/// Always-valid `1 − alpha` confidence sequence for `p_t − p_c` at one look.
///
/// The set of `θ₀` the mixture test does not reject, `{θ₀ : Λ(θ₀) < 1/α}`, solved for `θ₀`:
///
/// ```text
/// d ± √( V(V + τ²)/τ² · (ln(1 + τ²/V) + 2 ln(1/α)) ),   V = p̂_t(1−p̂_t)/n_t + p̂_c(1−p̂_c)/n_c
/// ```
///
/// clipped to `[−1, 1]`. This is the two-sided normal-mixture boundary of Howard, Ramdas,
/// McAuliffe, Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences"
/// (Annals of Statistics 2021, eq. 14) in the estimate's scale (intrinsic time `1/V`, mixing
/// precision `1/τ²`). The sequence covers the true difference at every look simultaneously
/// with probability `≥ 1 − α`, so the intersection of the intervals seen so far is valid too.
///
/// `V` is unpooled (the interval is about the difference wherever it is), so unlike the
/// p-value it is not centred on the null. When `V = 0` (each arm's rate is 0 or 1) the data say
/// nothing about the spread, and the interval is the whole `[−1, 1]`.
pub fn confidence_sequence(
    x_t: u64,
    n_t: u64,
    x_c: u64,
    n_c: u64,
    alpha: f64,
    tau2: f64,
) -> Result<Interval> {
    check_counts("treatment", x_t, n_t)?;
    check_counts("control", x_c, n_c)?;
    check_confidence("alpha", alpha)?;
    check_tau2(tau2)?;
    let (nt, nc) = (n_t as f64, n_c as f64);
    let (pt, pc) = (x_t as f64 / nt, x_c as f64 / nc);
    let d = pt - pc;
    let v = pt * (1.0 - pt) / nt + pc * (1.0 - pc) / nc;
    if v <= 0.0 {
        return Ok(Interval { lower: -1.0, upper: 1.0 });
    }
    let radius = (v * (v + tau2) / tau2 * ((tau2 / v).ln_1p() - 2.0 * alpha.ln())).sqrt();
    Ok(Interval { lower: (d - radius).max(-1.0), upper: (d + radius).min(1.0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_value_never_increases_and_rejects_bad_input() {
        let mut t = AlwaysValid::new(1e-3).unwrap();
        assert_eq!(t.p_value(), 1.0);
        let looks = [(10, 100, 12, 100), (30, 200, 20, 200), (40, 300, 41, 300), (80, 400, 45, 400)];
        let mut prev = 1.0;
        for (xt, nt, xc, nc) in looks {
            let p = t.update(xt, nt, xc, nc).unwrap();
            assert!(p <= prev && p > 0.0);
            prev = p;
        }
        assert_eq!(t.looks(), 4);
        assert!(matches!(t.update(70, 400, 45, 400), Err(StatsError::NotCumulative { .. })));
        assert!(AlwaysValid::new(0.0).is_err());
        assert!(AlwaysValid::new(f64::NAN).is_err());
        assert!(t.update(500, 450, 45, 400).is_err());
        assert_eq!(t.looks(), 4);
    }

    #[test]
    fn degenerate_looks_carry_no_evidence() {
        assert_eq!(msprt_log_likelihood_ratio(0, 10, 0, 10, 0.01).unwrap(), 0.0);
        assert_eq!(msprt_log_likelihood_ratio(10, 10, 5, 5, 0.01).unwrap(), 0.0);
        let cs = confidence_sequence(0, 10, 10, 10, 0.05, 0.01).unwrap();
        assert_eq!(cs, Interval { lower: -1.0, upper: 1.0 });
        assert!(confidence_sequence(1, 10, 1, 10, 1.0, 0.01).is_err());
        assert!(confidence_sequence(1, 10, 1, 10, 0.05, -1.0).is_err());
    }

    #[test]
    fn overwhelming_evidence_gives_zero_not_nan() {
        let mut t = AlwaysValid::new(0.01).unwrap();
        let p = t.update(900_000, 1_000_000, 100_000, 1_000_000).unwrap();
        assert_eq!(p, 0.0);
        let cs = confidence_sequence(900_000, 1_000_000, 100_000, 1_000_000, 0.05, 0.01).unwrap();
        assert!(cs.lower > 0.79 && cs.upper < 0.81);
    }
}
