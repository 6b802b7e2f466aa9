//! Distribution functions the tests need, each accurate to a few ulps over its whole range.
//!
//! The normal and chi-squared functions come from statrs. The Student t ones are written here:
//! statrs computes the t quantile through an incomplete-beta inverse that is off by ~1e-5 at
//! 1e5 degrees of freedom, and its incomplete beta stops after 140 continued-fraction terms and
//! loses digits in `ln Γ(a + b) − ln Γ(a)` once `a` is large — both common with Welch degrees of
//! freedom from big experiments.

use statrs::function::{erf, gamma};

const LN_SQRT_PI: f64 = 0.572_364_942_924_700_1;

/// Two-sided normal tail `P(|Z| > |z|) = erfc(|z| / √2)`.
pub(crate) fn normal_two_sided_p(z: f64) -> f64 {
    erf::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// The `z` with `P(|Z| > z) = alpha`, i.e. the `1 − alpha/2` normal quantile, as `√2 · erfc⁻¹(alpha)`
/// so that small `alpha` keeps its relative precision.
pub(crate) fn normal_two_sided_critical(alpha: f64) -> f64 {
    std::f64::consts::SQRT_2 * erf::erfc_inv(alpha)
}

/// Upper tail of the chi-squared distribution, `Q(df/2, x/2)`.
pub(crate) fn chi_squared_sf(x: f64, df: f64) -> f64 {
    // statrs refuses x = 0 for the incomplete gamma; the tail there is exactly 1.
    if x <= 0.0 { 1.0 } else { gamma::gamma_ur(df / 2.0, x / 2.0) }
}

/// `ln Γ(z) − [(z − ½) ln z − z + ln √(2π)]` by the Stirling series, for `z ≥ 10` (next term
/// below 1e-17 there).
fn stirling_remainder(z: f64) -> f64 {
    let r = 1.0 / z;
    let r2 = r * r;
    r * (1.0 / 12.0
        + r2 * (-1.0 / 360.0
            + r2 * (1.0 / 1260.0 + r2 * (-1.0 / 1680.0 + r2 * (1.0 / 1188.0 + r2 * (-691.0 / 360_360.0))))))
}

/// `ln B(ν/2, ½)`, the normaliser of Student's t. For large ν the difference
/// `ln Γ(ν/2) − ln Γ(ν/2 + ½)` is taken from the Stirling series directly, since subtracting two
/// log-gammas of size ~ν ln ν would throw away the digits that matter.
fn ln_beta_half(a: f64) -> f64 {
    if a < 10.0 {
        gamma::ln_gamma(a) + LN_SQRT_PI - gamma::ln_gamma(a + 0.5)
    } else {
        // ln Γ(a) − ln Γ(a + ½) = −a·ln(1 + 1/(2a)) − ½ ln a + ½ + ω(a) − ω(a + ½)
        let diff =
            -a * (0.5 / a).ln_1p() - 0.5 * a.ln() + 0.5 + stirling_remainder(a) - stirling_remainder(a + 0.5);
        LN_SQRT_PI + diff
    }
}

/// Continued fraction for the incomplete beta (Numerical Recipes `betacf`, modified Lentz),
/// `I_x(a, b) = x^a (1−x)^b / (a B(a, b)) · cf`. Converges fast for `x < (a+1)/(a+b+2)`; the
/// number of terms grows like √max(a, b), hence the generous cap.
fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let qab = a + b;
    let qap = a + 1.0;
    let qam = a - 1.0;
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=1_000_000u32 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    h
}

/// Two-sided Student t tail `P(|T_ν| > |t|) = I_{ν/(ν+t²)}(ν/2, ½)`.
///
/// `x = ν/(ν+t²)` sits next to 1 when ν is large, so `ln x` and `ln(1 − x)` are formed from
/// `t²/ν` directly rather than from a rounded `x`.
pub(crate) fn student_t_two_sided_p(t: f64, df: f64) -> f64 {
    let t2 = t * t;
    if t2 == 0.0 {
        return 1.0;
    }
    if t2.is_infinite() {
        return 0.0;
    }
    let a = df / 2.0;
    let b = 0.5;
    let r = t2 / df;
    let x = 1.0 / (1.0 + r);
    let y = r / (1.0 + r);
    let ln_x = -r.ln_1p();
    let ln_y = r.ln() - r.ln_1p();
    let ln_front = a * ln_x + b * ln_y - ln_beta_half(a);
    if x < (a + 1.0) / (a + b + 2.0) {
        (ln_front.exp() * beta_continued_fraction(a, b, x) / a).clamp(0.0, 1.0)
    } else {
        (1.0 - ln_front.exp() * beta_continued_fraction(b, a, y) / b).clamp(0.0, 1.0)
    }
}

/// Student t density at `t`: `(1 + t²/ν)^{−(ν+1)/2} / (√ν B(ν/2, ½))`.
fn student_t_pdf(t: f64, df: f64) -> f64 {
    (-(df + 1.0) / 2.0 * (t * t / df).ln_1p() - 0.5 * df.ln() - ln_beta_half(df / 2.0)).exp()
}

/// The `t > 0` with `P(|T_ν| > t) = alpha`, i.e. the `1 − alpha/2` quantile: Newton's method on
/// `ln P(|T| > t)` (nearly linear in the tails), kept inside a bisection bracket so a poor start
/// for small ν cannot run away.
pub(crate) fn student_t_two_sided_critical(alpha: f64, df: f64) -> f64 {
    let z = normal_two_sided_critical(alpha);
    // Cornish–Fisher start: exact enough that Newton needs two or three steps for ν ≥ 3.
    let mut t = z + (z * z * z + z) / (4.0 * df);
    let ln_alpha = alpha.ln();
    let mut lo = 0.0_f64;
    let mut hi = t.max(1.0);
    while student_t_two_sided_p(hi, df) > alpha {
        lo = hi;
        hi *= 2.0;
    }
    if !(t > lo && t < hi) {
        t = 0.5 * (lo + hi);
    }
    for _ in 0..200 {
        let p = student_t_two_sided_p(t, df);
        if p > alpha {
            lo = t;
        } else {
            hi = t;
        }
        let step = (p.ln() - ln_alpha) * p / (2.0 * student_t_pdf(t, df));
        let mut next = t + step;
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
        }
        let done = (next - t).abs() <= 4.0 * f64::EPSILON * t;
        t = next;
        if done || hi - lo <= 4.0 * f64::EPSILON * hi {
            break;
        }
    }
    t
}
