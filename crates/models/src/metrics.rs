//! Quality measures of probabilistic binary predictions.

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative (ties count half). None without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Sum of the positives' ranks, with tied scores sharing their average rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += order[i..=j].iter().filter(|&&k| labels[k]).count() as f64 * average_rank;
        i = j + 1;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

const EPS: f64 = 1e-12;

/// Mean negative log-likelihood.
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> f64 {
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(EPS, 1.0 - EPS);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / probabilities.len().max(1) as f64
}

/// Mean squared error of the probabilities.
pub fn brier(probabilities: &[f64], labels: &[bool]) -> f64 {
    let total: f64 = probabilities.iter().zip(labels).map(|(&p, &y)| (p - y as u8 as f64).powi(2)).sum();
    total / probabilities.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_hand_counts() {
        // pairs (pos, neg): (0.9 > 0.1), (0.9 > 0.4), (0.35 < 0.4), (0.35 > 0.1) → 3 of 4
        assert_eq!(auc(&[0.1, 0.4, 0.35, 0.9], &[false, false, true, true]), Some(0.75));
        // ties count half
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(auc(&[0.5, 0.7], &[true, true]), None);
    }

    #[test]
    fn losses_of_perfect_and_coin_flip_predictions() {
        let labels = [true, false];
        assert!(log_loss(&[1.0, 0.0], &labels) < 1e-9);
        assert!((log_loss(&[0.5, 0.5], &labels) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(brier(&[0.5, 0.5], &labels), 0.25);
        assert!(log_loss(&[0.0, 1.0], &labels).is_finite());
    }
}
