//! Multiple-comparison correction for experiments with several metrics or arms.

use crate::error::{Result, StatsError};

/// Holm–Bonferroni adjusted p-values, in the input order.
///
/// With the `m` p-values sorted ascending, `p_(1) ≤ … ≤ p_(m)`:
///
/// ```text
/// p̃_(i) = min(1, max_{j ≤ i} (m − j + 1) p_(j))
/// ```
///
/// Rejecting every hypothesis with `p̃ ≤ α` controls the family-wise error rate at `α` under
/// any dependence (Holm 1979), and is uniformly more powerful than Bonferroni. Matches
/// statsmodels `multipletests(p, method="holm")[1]`. Each p-value must lie in `[0, 1]`; an
/// empty input gives an empty output.
pub fn holm_adjust(p_values: &[f64]) -> Result<Vec<f64>> {
    for &p in p_values {
        if !(0.0..=1.0).contains(&p) {
            return Err(StatsError::OutOfDomain { what: "p-value", expected: "in [0, 1]", value: p });
        }
    }
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    // Ties get the same adjusted value whatever their order, so an unstable sort is fine.
    order.sort_unstable_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max((m - rank) as f64 * p_values[i]);
        adjusted[i] = running.min(1.0);
    }
    Ok(adjusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjusts_in_original_order() {
        let adj = holm_adjust(&[0.04, 0.01, 0.03, 0.5]).unwrap();
        for (a, e) in adj.iter().zip([0.09, 0.04, 0.09, 0.5]) {
            assert!((a - e).abs() < 1e-15, "{adj:?}");
        }
        assert_eq!(holm_adjust(&[]).unwrap(), Vec::<f64>::new());
        assert!(holm_adjust(&[0.1, f64::NAN]).is_err());
        assert!(holm_adjust(&[1.5]).is_err());
        assert_eq!(holm_adjust(&[0.6, 0.6]).unwrap(), vec![1.0, 1.0]);
    }
}
