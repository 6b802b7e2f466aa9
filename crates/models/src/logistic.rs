//! L2-regularised logistic regression on standardised features, fitted by Newton's method.
//!
//! With a few dozen features Newton's method converges in a handful of iterations, each one
//! pass over the data plus a small Cholesky solve, so no optimisation crate is needed.

// Index loops over row-major matrices read closer to the algebra than iterator chains.
#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Logistic {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Weights of the standardised features; the intercept is last.
    pub weights: Vec<f64>,
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Logistic {
    /// Fits on row-major `x` (`rows` × `cols`) with penalty `l2` on the weights (not the
    /// intercept), scaled by the number of rows.
    pub fn fit(x: &[f64], rows: usize, cols: usize, y: &[bool], l2: f64) -> Self {
        let mut mean = vec![0.0; cols];
        let mut scale = vec![0.0; cols];
        for r in 0..rows {
            for c in 0..cols {
                mean[c] += x[r * cols + c];
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
        for r in 0..rows {
            for c in 0..cols {
                scale[c] += (x[r * cols + c] - mean[c]).powi(2);
            }
        }
        // A constant column gets scale 1 (its standardised value is 0 anyway).
        scale.iter_mut().for_each(|s| *s = (*s / rows.max(1) as f64).sqrt().max(1e-9));
        let d = cols + 1;
        let mut w = vec![0.0; d];
        let mut z = vec![0.0; d];
        z[cols] = 1.0;
        let penalty = l2 * rows as f64;
        for _ in 0..25 {
            let mut grad = vec![0.0; d];
            let mut hess = vec![0.0; d * d];
            for r in 0..rows {
                for c in 0..cols {
                    z[c] = (x[r * cols + c] - mean[c]) / scale[c];
                }
                let p = sigmoid(dot(&w, &z));
                let g = p - y[r] as u8 as f64;
                let h = (p * (1.0 - p)).max(1e-9);
                for i in 0..d {
                    grad[i] += g * z[i];
                    let hz = h * z[i];
                    for j in 0..=i {
                        hess[i * d + j] += hz * z[j];
                    }
                }
            }
            for i in 0..cols {
                grad[i] += penalty * w[i];
                hess[i * d + i] += penalty;
            }
            hess[cols * d + cols] += 1e-9;
            let step = cholesky_solve(&mut hess, d, &grad);
            let mut largest = 0.0f64;
            for i in 0..d {
                w[i] -= step[i];
                largest = largest.max(step[i].abs());
            }
            if largest < 1e-8 {
                break;
            }
        }
        Logistic { mean, scale, weights: w }
    }

    /// The log-odds and each feature's share of it (relative to an average user).
    pub fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        let cols = self.mean.len();
        let mut z = self.weights[cols];
        for c in 0..cols {
            out[c] = self.weights[c] * (row[c] - self.mean[c]) / self.scale[c];
            z += out[c];
        }
        z
    }

    pub fn log_odds(&self, row: &[f64]) -> f64 {
        let cols = self.mean.len();
        let mut z = self.weights[cols];
        for c in 0..cols {
            z += self.weights[c] * (row[c] - self.mean[c]) / self.scale[c];
        }
        z
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves `A x = b` for symmetric positive-definite `A` given by its lower triangle (row-major,
/// overwritten with its Cholesky factor).
fn cholesky_solve(a: &mut [f64], n: usize, b: &[f64]) -> Vec<f64> {
    for j in 0..n {
        let mut diag = a[j * n + j];
        for k in 0..j {
            diag -= a[j * n + k] * a[j * n + k];
        }
        let diag = diag.max(1e-12).sqrt();
        a[j * n + j] = diag;
        for i in j + 1..n {
            let mut v = a[i * n + j];
            for k in 0..j {
                v -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = v / diag;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let mut v = b[i];
        for k in 0..i {
            v -= a[i * n + k] * y[k];
        }
        y[i] = v / a[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut v = y[i];
        for k in i + 1..n {
            v -= a[k * n + i] * x[k];
        }
        x[i] = v / a[i * n + i];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn recovers_known_weights() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let (rows, cols) = (20_000, 2);
        let mut x = Vec::with_capacity(rows * cols);
        let mut y = Vec::with_capacity(rows);
        for _ in 0..rows {
            let (a, b): (f64, f64) = (rng.random_range(-2.0..2.0), rng.random_range(-2.0..2.0));
            x.extend([a, b]);
            y.push(rng.random_bool(sigmoid(1.5 * a - 0.5 * b + 0.3)));
        }
        let m = Logistic::fit(&x, rows, cols, &y, 0.0);
        // back to the raw scale: w / scale
        let wa = m.weights[0] / m.scale[0];
        let wb = m.weights[1] / m.scale[1];
        assert!((wa - 1.5).abs() < 0.1 && (wb + 0.5).abs() < 0.1, "{wa} {wb}");
        let mut parts = [0.0; 2];
        let z = m.contributions(&[2.0, 0.0], &mut parts);
        assert!((z - m.log_odds(&[2.0, 0.0])).abs() < 1e-12);
        assert!(parts[0] > 0.0);
    }

    #[test]
    fn a_constant_column_and_separable_data_stay_finite() {
        let x = [1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0];
        let y = [false, false, true, true];
        let m = Logistic::fit(&x, 4, 2, &y, 0.01);
        assert!(m.weights.iter().all(|w| w.is_finite()));
        assert!(m.log_odds(&[1.0, 3.0]) > m.log_odds(&[1.0, 0.0]));
    }
}
