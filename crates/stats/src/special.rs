//! Distribution tails and quantiles behind the tests and intervals, good to ~3e-12 relative or
//! better over their whole range (tests/reference.rs checks them through scipy's results).
//!
//! The chi-squared tail and the normal quantile come from statrs. The normal tail is
//! `erfc(x) = Q(½, x²)` through statrs' incomplete gamma, good to ~1e-15, where statrs' own
//! `erfc` is off by up to ~1e-10. The Student t functions are written here, because statrs'
//! t quantile is off by ~1e-5 at 1e5 degrees of freedom and its incomplete beta loses digits
//! once `a` is large — both common with Welch degrees of freedom from big experiments. Below
//! 1e5 degrees of freedom the tail is the incomplete-beta continued fraction with a
//! cancellation-free prefactor; above, the normal scale-mixture integral.

use statrs::function::{erf, gamma};

const LN_SQRT_PI: f64 = 0.572_364_942_924_700_1;

/// Two-sided normal tail `P(|Z| > |z|) = erfc(|z| / √2)`.
pub(crate) fn normal_two_sided_p(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// `erfc(x)` for `x ≥ 0` as the regularised upper incomplete gamma `Q(½, x²)`.
fn erfc(x: f64) -> f64 {
    if x <= 0.0 { 1.0 } else { gamma::gamma_ur(0.5, x * x) }
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
/// number of terms can grow like √max(a, b), hence the generous cap.
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
/// `t²/ν` directly rather than from a rounded `x`; from `MIXTURE_MIN_DF` on, the continued
/// fraction itself cancels, and the tail comes from [`student_t_two_sided_p_mixture`].
pub(crate) fn student_t_two_sided_p(t: f64, df: f64) -> f64 {
    let t2 = t * t;
    if t2 == 0.0 {
        return 1.0;
    }
    if t2.is_infinite() {
        return 0.0;
    }
    // Beyond t² = 1600 the tail is below 1e-300 for these ν and the fraction is fine anyway.
    if df >= MIXTURE_MIN_DF && t2 < 1600.0 {
        return student_t_two_sided_p_mixture(t, df);
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

/// From here on the continued fraction's relative error, about `ε ν / t²` (it works with
/// `x = ν/(ν+t²)` next to 1), would exceed ~1e-11 for moderate `t`; the mixture below is good
/// to ~3e-12 from here up.
const MIXTURE_MIN_DF: f64 = 1e5;

/// `ln(1 + δ) − δ`, by its series near 0 where the subtraction would cancel.
fn log1p_minus(delta: f64) -> f64 {
    if delta.abs() >= 0.05 {
        return delta.ln_1p() - delta;
    }
    // −δ²/2 + δ³/3 − δ⁴/4 + …
    let mut sum = 0.0;
    let mut power = delta;
    for n in 2..60 {
        power *= -delta;
        let term = power / f64::from(n);
        sum += term;
        if term.abs() <= 1e-18 * sum.abs() {
            break;
        }
    }
    sum
}

/// Two-sided t tail for large ν as the normal scale mixture it is:
/// `T = Z/√W` with `W ~ Gamma(ν/2, rate ν/2)`, so `P(|T| > t) = E[erfc(t √(W/2))]`.
///
/// `W` has sd `√(2/ν)` (≤ 4.5e-3 here), so 60 Gauss–Legendre panels over `1 ± 30 sd` resolve it
/// completely; for `t² < 1600` the integrand's peak near `ν/(ν+t²)` is at most 3.6 sd below 1,
/// well inside the grid. The Gamma density is evaluated relative to its value at 1 and
/// normalised by its own quadrature sum, which keeps `ln Γ(ν/2)` out of it.
fn student_t_two_sided_p_mixture(t: f64, df: f64) -> f64 {
    const PANELS: usize = 60;
    let (gx, gw) = gauss_legendre();
    let k = df / 2.0;
    let sd = (2.0 / df).sqrt();
    let (lo, hi) = (1.0 - 30.0 * sd, 1.0 + 30.0 * sd);
    let half = (hi - lo) / PANELS as f64 / 2.0;
    let (mut num, mut den) = (0.0, 0.0);
    for p in 0..PANELS {
        let mid = lo + (2 * p + 1) as f64 * half;
        for (x, w) in gx.iter().zip(gw) {
            let v = mid + half * x;
            // Gamma(k, rate k) density over its value at 1: v^(k−1) e^(−k(v−1)).
            let g = (k * log1p_minus(v - 1.0) - v.ln()).exp() * w;
            den += g;
            num += g * erfc(t.abs() * (v / 2.0).sqrt());
        }
    }
    (num / den).clamp(0.0, 1.0)
}

/// Gauss–Legendre nodes and weights on `[−1, 1]` (10 points, exact for degree 19), by Newton's
/// method on the Legendre polynomial.
pub(crate) fn gauss_legendre() -> ([f64; GL_NODES], [f64; GL_NODES]) {
    let mut x = [0.0; GL_NODES];
    let mut w = [0.0; GL_NODES];
    let n = GL_NODES as f64;
    for i in 0..GL_NODES {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, z);
            for k in 2..=GL_NODES {
                let k = k as f64;
                let p2 = ((2.0 * k - 1.0) * z * p1 - (k - 1.0) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            dp = n * (z * p1 - p0) / (z * z - 1.0);
            let dz = p1 / dp;
            z -= dz;
            if dz.abs() < 1e-16 {
                break;
            }
        }
        x[i] = z;
        w[i] = 2.0 / ((1.0 - z * z) * dp * dp);
    }
    (x, w)
}

/// Number of Gauss–Legendre points per panel.
pub(crate) const GL_NODES: usize = 10;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!((got - want).abs() <= rel * want.abs(), "got {got:e}, want {want:e}");
    }

    #[test]
    fn t_tail_matches_closed_forms_for_one_and_two_degrees_of_freedom() {
        for t in [0.01, 0.5, 1.0, 2.5, 12.0, 300.0, 1e5] {
            // ν = 1 is Cauchy: P(|T| > t) = 1 − 2 atan(t)/π = 2 atan(1/t)/π.
            close(student_t_two_sided_p(t, 1.0), 2.0 * (1.0 / t).atan() / std::f64::consts::PI, 1e-13);
            // ν = 2: P(|T| > t) = 1 − t/√(2 + t²).
            let s = (2.0 + t * t).sqrt();
            close(student_t_two_sided_p(-t, 2.0), 2.0 / (s * (s + t)), 1e-13);
        }
        for alpha in [0.5, 0.05, 1e-3, 1e-9] {
            // tan(π/2 (1 − α)) = 1/tan(π α / 2), without the rounding of 1 − α next to the pole.
            let one = 1.0 / (std::f64::consts::FRAC_PI_2 * alpha).tan();
            close(student_t_two_sided_critical(alpha, 1.0), one, 1e-12);
            let q = 1.0 - alpha;
            // 1 − q² = α(2 − α), kept exact for small α.
            close(
                student_t_two_sided_critical(alpha, 2.0),
                (2.0 * q * q / (alpha * (2.0 - alpha))).sqrt(),
                1e-12,
            );
        }
    }

    #[test]
    fn t_approaches_the_normal_for_huge_degrees_of_freedom() {
        // The relative gap to the normal tail is about (t⁴ + t²)/(4ν): below 2e-12 here.
        for t in [0.3, 1.7, 1.96, 4.0, 9.0] {
            close(student_t_two_sided_p(t, 1e15), normal_two_sided_p(t), 1e-11);
        }
        close(student_t_two_sided_critical(0.05, 1e12), 1.959_963_984_540_054, 1e-10);
        close(normal_two_sided_critical(0.05), 1.959_963_984_540_054, 1e-15);
    }

    #[test]
    fn critical_value_inverts_the_tail() {
        for df in [1.0, 1.5, 3.0, 7.3, 40.0, 1e3, 1e6] {
            for alpha in [0.9, 0.2, 0.05, 1e-4, 1e-12] {
                let t = student_t_two_sided_critical(alpha, df);
                close(student_t_two_sided_p(t, df), alpha, 1e-12);
            }
        }
    }
}
