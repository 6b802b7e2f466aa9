//! Small dense symmetric matrices (a contextual policy's d × d design matrix, d ≈ 10): a
//! Cholesky factorisation is all that is needed, and d is small enough that a crate would
//! cost more than it saves.

/// Inverse of the symmetric positive definite `n × n` matrix `a` (row-major), or None when it
/// is not positive definite (or holds non-finite numbers).
pub fn spd_inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum.is_nan() || sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    // Invert L (lower triangular), then A⁻¹ = L⁻ᵀ L⁻¹.
    let mut li = vec![0.0; n * n];
    for i in 0..n {
        li[i * n + i] = 1.0 / l[i * n + i];
        for j in 0..i {
            let mut sum = 0.0;
            for k in j..i {
                sum -= l[i * n + k] * li[k * n + j];
            }
            li[i * n + j] = sum / l[i * n + i];
        }
    }
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = 0.0;
            for k in i..n {
                sum += li[k * n + i] * li[k * n + j];
            }
            inv[i * n + j] = sum;
            inv[j * n + i] = sum;
        }
    }
    inv.iter().all(|x| x.is_finite()).then_some(inv)
}

/// `m · v` for an `n × n` row-major matrix.
pub fn mat_vec(m: &[f64], v: &[f64], out: &mut [f64]) {
    let n = v.len();
    for (i, o) in out.iter_mut().enumerate().take(n) {
        *o = m[i * n..(i + 1) * n].iter().zip(v).map(|(a, b)| a * b).sum();
    }
}

/// `vᵀ m v`.
pub fn quad_form(m: &[f64], v: &[f64]) -> f64 {
    let n = v.len();
    let mut total = 0.0;
    for i in 0..n {
        let row: f64 = m[i * n..(i + 1) * n].iter().zip(v).map(|(a, b)| a * b).sum();
        total += v[i] * row;
    }
    total
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let inv = spd_inverse(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let v: f64 = (0..3).map(|k| a[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12, "{i},{j}: {v}");
            }
        }
        let x = [1.0, -2.0, 0.5];
        let mut ax = [0.0; 3];
        mat_vec(&a, &x, &mut ax);
        assert!((dot(&x, &ax) - quad_form(&a, &x)).abs() < 1e-12);
    }

    #[test]
    fn indefinite_or_broken_matrices_are_refused() {
        assert!(spd_inverse(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
        assert!(spd_inverse(&[f64::NAN, 0.0, 0.0, 1.0], 2).is_none());
        assert!(spd_inverse(&[0.0], 1).is_none());
    }
}
