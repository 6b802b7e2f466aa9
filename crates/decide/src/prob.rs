//! Probability that each arm's sampled value is the largest — the exact choice distribution of
//! Thompson sampling, computed by deterministic integration instead of drawn, so that every
//! decision can record the probability with which its arm was chosen.

/// Standard normal CDF. erfc from Numerical Recipes' Chebyshev fit (relative error < 1.2e-7),
/// plenty for choice probabilities and much faster than a series.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z * std::f64::consts::FRAC_1_SQRT_2)
}

/// The standard normal density and CDF at `z` from one exponential (Abramowitz & Stegun
/// 26.2.17, absolute error < 7.5e-8): the inner loop of [`normal_prob_best`] needs both.
fn pdf_cdf(z: f64) -> (f64, f64) {
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    let density = INV_SQRT_2PI * (-0.5 * z * z).exp();
    let t = 1.0 / (1.0 + 0.231_641_9 * z.abs());
    let tail = density
        * t
        * (0.319_381_530
            + t * (-0.356_563_782 + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    (density, if z >= 0.0 { 1.0 - tail } else { tail })
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// P(arm i's draw is the largest) for independent normal draws N(means[i], sds[i]²):
/// ∫ φ_i(s) ∏_{j≠i} Φ_j(s) ds on a grid from the highest lower edge (m − 7 sd) to the highest
/// upper edge (m + 7 sd): below the highest lower edge some arm is almost surely larger, so the
/// maximum never lives there.
pub fn normal_prob_best(means: &[f64], sds: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let k = means.len();
    if k <= 1 {
        out.extend(std::iter::repeat_n(1.0, k));
        return;
    }
    let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for (m, s) in means.iter().zip(sds) {
        lo = lo.max(m - 7.0 * s);
        hi = hi.max(m + 7.0 * s);
    }
    // Arms with a (near) zero spread are point masses: handled by the grid as very narrow
    // bumps only if the grid is fine enough, so give them a floor relative to the span.
    let span = (hi - lo).max(1e-12);
    const POINTS: usize = 96;
    let step = span / (POINTS - 1) as f64;
    let floor = step * 0.5;
    out.resize(k, 0.0);
    // An arm whose upper edge lies below the region cannot be the largest, and its CDF there is
    // 1: leave it out of the integral.
    let active: Vec<usize> = (0..k.min(64)).filter(|&j| means[j] + 7.0 * sds[j].max(floor) >= lo).collect();
    let mut cdf = [0.0f64; 64];
    let mut pdf = [0.0f64; 64];
    for p in 0..POINTS {
        let s = lo + step * p as f64;
        let mut all = 1.0;
        let mut zeros = 0;
        for (a, &j) in active.iter().enumerate() {
            let sd = sds[j].max(floor);
            let (density, below) = pdf_cdf((s - means[j]) / sd);
            cdf[a] = below;
            pdf[a] = density / sd;
            if below > 0.0 {
                all *= below;
            } else {
                zeros += 1;
            }
        }
        let w = if p == 0 || p == POINTS - 1 { 0.5 } else { 1.0 };
        for (a, &i) in active.iter().enumerate() {
            let others = match zeros {
                0 => all / cdf[a],
                1 if cdf[a] == 0.0 => all,
                _ => 0.0,
            };
            out[i] += w * pdf[a] * others * step;
        }
    }
    normalise(out);
}

/// P(arm i's draw is the largest) for independent Beta(alpha[i], beta[i]) draws, by integrating
/// on a grid over the region that holds the posteriors' mass; each density is normalised on the
/// grid, so no gamma functions are needed.
pub fn beta_prob_best(params: &[(f64, f64)], out: &mut Vec<f64>) {
    out.clear();
    let k = params.len();
    if k <= 1 {
        out.extend(std::iter::repeat_n(1.0, k));
        return;
    }
    let (mut lo, mut hi) = (1.0f64, 0.0f64);
    for &(a, b) in params {
        let mean = a / (a + b);
        let sd = (a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt();
        lo = lo.min(mean - 10.0 * sd);
        hi = hi.max(mean + 10.0 * sd);
    }
    let lo = lo.max(0.0);
    let hi = hi.min(1.0);
    const POINTS: usize = 1024;
    // Cell midpoints avoid the endpoints, where densities with a or b < 1 are infinite.
    let step = (hi - lo) / POINTS as f64;
    let mut density = vec![0.0f64; k * POINTS];
    for (j, &(a, b)) in params.iter().enumerate() {
        let row = &mut density[j * POINTS..(j + 1) * POINTS];
        let mut max_log = f64::NEG_INFINITY;
        for (p, d) in row.iter_mut().enumerate() {
            let x = lo + step * (p as f64 + 0.5);
            let l = (a - 1.0) * x.ln() + (b - 1.0) * (1.0 - x).ln();
            *d = l;
            max_log = max_log.max(l);
        }
        let mut total = 0.0;
        for d in row.iter_mut() {
            *d = (*d - max_log).exp();
            total += *d;
        }
        if total > 0.0 && total.is_finite() {
            for d in row.iter_mut() {
                *d /= total;
            }
        }
    }
    out.resize(k, 0.0);
    // Walk up the grid keeping each arm's CDF below the current cell; within a cell count half
    // of the other arm's mass (ties split evenly).
    let mut below = vec![0.0f64; k];
    for p in 0..POINTS {
        for i in 0..k {
            let di = density[i * POINTS + p];
            if di == 0.0 {
                continue;
            }
            let mut others = 1.0;
            for j in 0..k {
                if j != i {
                    others *= below[j] + 0.5 * density[j * POINTS + p];
                }
            }
            out[i] += di * others;
        }
        for j in 0..k {
            below[j] += density[j * POINTS + p];
        }
    }
    normalise(out);
}

fn normalise(p: &mut [f64]) {
    let total: f64 = p.iter().sum();
    if total > 0.0 && total.is_finite() {
        for x in p.iter_mut() {
            *x /= total;
        }
    } else {
        let k = p.len() as f64;
        p.iter_mut().for_each(|x| *x = 1.0 / k);
    }
}

/// Index drawn from `probabilities` with the uniform number `u` in [0, 1).
pub fn categorical(probabilities: &[f64], u: f64) -> usize {
    let mut acc = 0.0;
    for (i, p) in probabilities.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    // Rounding left u above the total: the last arm with any probability.
    probabilities.iter().rposition(|p| *p > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!(close(normal_cdf(0.0), 0.5, 1e-7));
        assert!(close(normal_cdf(1.959_963_985), 0.975, 1e-7));
        assert!(close(normal_cdf(-1.0), 0.158_655_253_9, 1e-7));
        assert!(close(normal_cdf(-6.0), 9.865_876_45e-10, 1e-12));
    }

    #[test]
    fn the_fast_pair_agrees_with_the_cdf() {
        for i in -80..=80 {
            let z = f64::from(i) / 10.0;
            let (d, c) = pdf_cdf(z);
            assert!((c - normal_cdf(z)).abs() < 2e-7, "{z}");
            assert!((d - (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()).abs() < 1e-15);
        }
    }

    #[test]
    fn hopeless_arms_get_nothing() {
        let mut out = Vec::new();
        normal_prob_best(&[0.5, 0.1, 0.52], &[0.01, 0.01, 0.01], &mut out);
        assert_eq!(out[1], 0.0);
        let exact = normal_cdf(0.02 / (0.0002f64).sqrt());
        assert!((out[2] - exact).abs() < 1e-4, "{out:?} vs {exact}");
    }

    #[test]
    fn two_normals_have_a_closed_form() {
        // P(X1 > X2) = Φ((m1 − m2) / sqrt(s1² + s2²)).
        let mut out = Vec::new();
        normal_prob_best(&[0.3, 0.1], &[0.2, 0.1], &mut out);
        let exact = normal_cdf(0.2 / (0.05f64).sqrt());
        assert!(close(out[0], exact, 1e-4), "{out:?} vs {exact}");
        assert!(close(out[0] + out[1], 1.0, 1e-12));
    }

    #[test]
    fn identical_arms_are_equally_likely() {
        let mut out = Vec::new();
        normal_prob_best(&[1.0; 4], &[0.5; 4], &mut out);
        for p in &out {
            assert!(close(*p, 0.25, 1e-6), "{out:?}");
        }
        beta_prob_best(&[(3.0, 7.0); 3], &mut out);
        for p in &out {
            assert!(close(*p, 1.0 / 3.0, 1e-6), "{out:?}");
        }
    }

    #[test]
    fn beta_matches_exact_two_arm_probability() {
        // P(B > A) for A ~ Beta(1+3, 1+7), B ~ Beta(1+6, 1+4): the closed form (Evan Miller)
        // sum_{i<αB} B(αA+i, βA+βB) / ((βB+i) B(1+i, βB) B(αA, βA)).
        let (aa, ba, ab, bb) = (4.0f64, 8.0f64, 7.0f64, 5.0f64);
        let lbeta = |x: f64, y: f64| ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y);
        let mut exact = 0.0;
        for i in 0..(ab as usize) {
            let i = i as f64;
            exact += (lbeta(aa + i, ba + bb) - (bb + i).ln() - lbeta(1.0 + i, bb) - lbeta(aa, ba)).exp();
        }
        let mut out = Vec::new();
        beta_prob_best(&[(aa, ba), (ab, bb)], &mut out);
        assert!(close(out[1], exact, 1e-4), "{out:?} vs {exact}");
    }

    #[test]
    fn peaked_posteriors_stay_accurate() {
        // 5,000/100,000 vs 5,150/100,000: normal approximation gives Φ(0.15 % / sd).
        let a = (5_001.0, 95_001.0);
        let b = (5_151.0, 94_851.0);
        let var = |(x, y): (f64, f64)| x * y / ((x + y) * (x + y) * (x + y + 1.0));
        let approx = normal_cdf((b.0 / (b.0 + b.1) - a.0 / (a.0 + a.1)) / (var(a) + var(b)).sqrt());
        let mut out = Vec::new();
        beta_prob_best(&[a, b], &mut out);
        assert!(close(out[1], approx, 2e-3), "{out:?} vs {approx}");
    }

    #[test]
    fn categorical_draws_follow_the_probabilities() {
        let p = [0.2, 0.0, 0.5, 0.3];
        assert_eq!(categorical(&p, 0.0), 0);
        assert_eq!(categorical(&p, 0.19), 0);
        assert_eq!(categorical(&p, 0.2), 2);
        assert_eq!(categorical(&p, 0.69), 2);
        assert_eq!(categorical(&p, 0.7), 3);
        assert_eq!(categorical(&p, 0.999_999_999_999), 3);
        assert_eq!(categorical(&[0.5, 0.5, 0.0], 1.0), 1);
    }

    /// Lanczos approximation, for the closed-form check only.
    fn ln_gamma(x: f64) -> f64 {
        const G: [f64; 9] = [
            0.999_999_999_999_809_9,
            676.520_368_121_885_1,
            -1_259.139_216_722_402_8,
            771.323_428_777_653_1,
            -176.615_029_162_140_6,
            12.507_343_278_686_905,
            -0.138_571_095_265_720_12,
            9.984_369_578_019_572e-6,
            1.505_632_735_149_311_6e-7,
        ];
        let x = x - 1.0;
        let mut a = G[0];
        let t = x + 7.5;
        for (i, g) in G.iter().enumerate().skip(1) {
            a += g / (x + i as f64);
        }
        0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
    }
}
