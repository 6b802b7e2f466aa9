//! Pure statistics for experiments and off-policy evaluation. No I/O, no randomness: every
//! function maps counts or summaries to a result, and refuses invalid input with a
//! [`StatsError`] rather than returning NaN.
//!
//! | method | function | reference it matches |
//! | --- | --- | --- |
//! | Wilson score interval | [`wilson_interval`] | statsmodels `proportion_confint(method="wilson")` |
//! | pooled two-proportion z test + Wald interval for the difference | [`two_proportion_test`] | statsmodels `proportions_ztest`, `confint_proportions_2indep(method="wald")` |
//! | Welch's t test and interval | [`Summary`], [`welch_test`] | scipy `ttest_ind(equal_var=False)`, `.confidence_interval()` |
//! | mixture SPRT, always-valid p-value | [`AlwaysValid`], [`msprt_log_likelihood_ratio`] | Johari et al. 2022 (closed form, checked against numpy) |
//! | normal-mixture confidence sequence | [`confidence_sequence`] | Howard et al. 2021 (closed form, checked against numpy) |
//! | Beta-Bernoulli P(beats control), expected loss, P(best) | [`prob_beats_control`], [`expected_loss`], [`prob_best`], [`BetaPrior`] | scipy `integrate.quad` over `stats.beta` |
//! | sample-ratio mismatch | [`sample_ratio_mismatch`] | scipy `stats.chisquare` |
//! | Holm adjustment | [`holm_adjust`] | statsmodels `multipletests(method="holm")` |
//! | IPS, SNIPS, doubly robust | [`ips`], [`snips`], [`doubly_robust`] | closed form, checked against numpy |
//!
//! Formulas, with `z_{q}` the standard normal quantile, `α = 1 − confidence`:
//!
//! ```text
//! Wilson:      (p̂ + z²/2n ± z √(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n),  z = z_{1−α/2}, clipped to [0, 1]
//! z test:      z = (p̂_t − p̂_c) / √(p̄(1−p̄)(1/n_t + 1/n_c)),  p = 2(1 − Φ(|z|))
//! Wald diff:   p̂_t − p̂_c ± z_{1−α/2} √(p̂_t(1−p̂_t)/n_t + p̂_c(1−p̂_c)/n_c)
//! Welch:       t = Δ/√(s_t²/n_t + s_c²/n_c),  df = (v_t + v_c)² / (v_t²/(n_t−1) + v_c²/(n_c−1)),
//!              Δ ± t_{df,1−α/2} √(v_t + v_c)
//! mSPRT:       Λ = √(V/(V+τ²)) exp(τ² d² / (2V(V+τ²))),  V = p̄(1−p̄)(1/n_t + 1/n_c),
//!              p_k = min(1, p_{k−1}, 1/Λ_k)
//! CS:          d ± √(V(V+τ²)/τ² · (ln(1 + τ²/V) + 2 ln(1/α))),  V = p̂_t(1−p̂_t)/n_t + p̂_c(1−p̂_c)/n_c
//! Bayes:       P(p_t > p_c) = ∫ f_t F_c,  E[(p_c − p_t)⁺] = ∫ f_t(u) ∫_u^1 (v − u) f_c(v) dv du,
//!              P(k best) = ∫ f_k Π_{j≠k} F_j,  f = Beta(α + x, β + n − x) density
//! SRM:         χ² = Σ (o_i − e_i)²/e_i,  e_i = N w_i/Σw,  df = k − 1
//! Holm:        p̃_(i) = min(1, max_{j≤i} (m − j + 1) p_(j))
//! IPS:         mean of w r,  w = π_e(a|x)/π_0(a|x);  SNIPS: Σ w r / Σ w;
//! DR:          mean of q̂(x, π_e) + w (r − q̂(x, a))
//! ```
//!
//! Accuracy against scipy/statsmodels over the committed reference cases: closed forms to a
//! few ulps; normal, Student t and chi-squared tails and quantiles to ~1e-11 relative or better
//! (Student t is computed here, not by statrs, which loses up to 1e-5 at large degrees of
//! freedom); Beta-Bernoulli integrals to ~1e-13 absolute.
//!
//! Each module's doc has the details: [`proportion`], [`welch`], [`sequential`], [`bayes`],
//! [`srm`], [`holm`], [`ope`]. `tests/fixtures/make_reference.py` regenerates the reference
//! values the integration tests compare against.

pub mod bayes;
pub mod error;
pub mod holm;
pub mod ope;
pub mod proportion;
pub mod sequential;
mod special;
pub mod srm;
pub mod welch;

pub use bayes::{BetaPrior, ExpectedLoss, expected_loss, prob_beats_control, prob_best};
pub use error::{Result, StatsError};
pub use holm::holm_adjust;
pub use ope::{Estimate, Logged, doubly_robust, ips, snips};
pub use proportion::{ProportionTest, two_proportion_test, wilson_interval};
pub use sequential::{AlwaysValid, confidence_sequence, msprt_log_likelihood_ratio};
pub use srm::{Srm, sample_ratio_mismatch};
pub use welch::{MeanTest, Summary, welch_test};

use serde::Serialize;

/// A closed interval `[lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// Lower end.
    pub lower: f64,
    /// Upper end.
    pub upper: f64,
}

impl Interval {
    /// Whether `x` lies in the interval, ends included.
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }

    /// `upper − lower`.
    pub fn width(&self) -> f64 {
        self.upper - self.lower
    }
}
