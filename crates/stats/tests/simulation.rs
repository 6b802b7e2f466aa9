//! Monte-Carlo checks of the guarantees the formulas are for, with fixed seeds so they are
//! deterministic: always-valid inference under continuous peeking, and off-policy estimators
//! on a bandit whose true values are known.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use whisperer_stats::*;

/// A uniform draw in [0, 1) and a fair coin from one 64-bit word, to keep the debug-build
/// simulation quick.
fn coin_and_uniform(rng: &mut StdRng) -> (bool, f64) {
    let r: u64 = rng.random();
    (r & 1 == 1, (r >> 11) as f64 * (1.0 / (1u64 << 53) as f64))
}

struct PeekingOutcome {
    always_valid: f64,
    confidence_sequence: f64,
    naive: f64,
}

/// Runs `runs` experiments of `looks × batch` users assigned by a fair coin, looking after
/// every batch, and returns the fraction of runs in which each procedure ever rejected
/// "equal rates" at level 0.05 (for the confidence sequence: ever excluded 0).
fn peek(seed: u64, runs: usize, p_treat: f64, p_control: f64) -> PeekingOutcome {
    const LOOKS: usize = 50;
    const BATCH: usize = 100;
    const ALPHA: f64 = 0.05;
    const TAU2: f64 = 1e-4;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut av, mut cs, mut naive) = (0usize, 0usize, 0usize);
    for _ in 0..runs {
        let mut test = AlwaysValid::new(TAU2).unwrap();
        let (mut xt, mut nt, mut xc, mut nc) = (0u64, 0u64, 0u64, 0u64);
        let (mut cs_rejected, mut naive_rejected) = (false, false);
        for _ in 0..LOOKS {
            for _ in 0..BATCH {
                let (treat, u) = coin_and_uniform(&mut rng);
                if treat {
                    nt += 1;
                    xt += u64::from(u < p_treat);
                } else {
                    nc += 1;
                    xc += u64::from(u < p_control);
                }
            }
            test.update(xt, nt, xc, nc).unwrap();
            let seq = confidence_sequence(xt, nt, xc, nc, ALPHA, TAU2).unwrap();
            cs_rejected |= !seq.contains(0.0);
            naive_rejected |= two_proportion_test(xt, nt, xc, nc, 1.0 - ALPHA).unwrap().p_value < ALPHA;
        }
        av += usize::from(test.p_value() < ALPHA);
        cs += usize::from(cs_rejected);
        naive += usize::from(naive_rejected);
    }
    let r = runs as f64;
    PeekingOutcome {
        always_valid: av as f64 / r,
        confidence_sequence: cs as f64 / r,
        naive: naive as f64 / r,
    }
}

#[test]
fn peeking_is_safe_with_always_valid_inference_and_not_with_repeated_z_tests() {
    const RUNS: usize = 1000;
    let aa = peek(0x5eed_a11a, RUNS, 0.1, 0.1);
    // Three binomial standard errors of slack around the nominal 5%.
    let slack = 3.0 * (0.05f64 * 0.95 / RUNS as f64).sqrt();
    assert!(aa.always_valid <= 0.05 + slack, "always-valid false positives {}", aa.always_valid);
    assert!(aa.confidence_sequence <= 0.05 + slack, "confidence sequence misses {}", aa.confidence_sequence);
    // Fifty looks at a fixed-horizon test inflate its 5% several-fold.
    assert!(aa.naive > 0.15, "naive false positives {}", aa.naive);

    // And the safety is not bought by never rejecting: a 10% → 14% lift is found within the
    // same 5,000 users in most runs.
    let ab = peek(0x5eed_00ab, 300, 0.14, 0.1);
    assert!(ab.always_valid > 0.6, "always-valid power {}", ab.always_valid);
    assert!(ab.confidence_sequence > 0.6, "confidence-sequence power {}", ab.confidence_sequence);
}

const MEANS: [f64; 3] = [0.3, 0.5, 0.7];

/// A 3-armed Bernoulli bandit with no context: `rounds` logged under the uniform policy; the
/// target policy always plays the best arm. The reward model is fit on a separate pilot log.
fn bandit_log(rng: &mut StdRng, rounds: usize, q: &[f64; 3]) -> Vec<Logged> {
    (0..rounds)
        .map(|_| {
            let arm = rng.random_range(0..3);
            let reward = f64::from(u8::from(rng.random::<f64>() < MEANS[arm]));
            Logged {
                propensity: 1.0 / 3.0,
                reward,
                target_prob: if arm == 2 { 1.0 } else { 0.0 },
                q_logged: q[arm],
                q_target: q[2],
            }
        })
        .collect()
}

/// Reward model: per-arm mean rewards from an independent pilot of 3,000 uniformly logged
/// rounds, good but not exact.
fn pilot_model(rng: &mut StdRng) -> [f64; 3] {
    let mut sums = [0.0; 3];
    let mut counts = [0.0; 3];
    for _ in 0..3000 {
        let arm = rng.random_range(0..3);
        sums[arm] += f64::from(u8::from(rng.random::<f64>() < MEANS[arm]));
        counts[arm] += 1.0;
    }
    [sums[0] / counts[0], sums[1] / counts[1], sums[2] / counts[2]]
}

#[test]
fn off_policy_estimators_cover_the_true_value_and_dr_is_tighter() {
    const TRUE_VALUE: f64 = 0.7;
    let mut rng = StdRng::seed_from_u64(7);
    let q = pilot_model(&mut rng);
    let log = bandit_log(&mut rng, 5000, &q);
    let (i, s, d) =
        (ips(&log, 0.95).unwrap(), snips(&log, 0.95).unwrap(), doubly_robust(&log, 0.95).unwrap());
    for (name, e) in [("ips", i), ("snips", s), ("dr", d)] {
        assert!(e.ci.contains(TRUE_VALUE), "{name}: {e:?}");
        assert_eq!(e.n, 5000);
        // Only a third of the rounds played the target's arm.
        assert!((e.effective_sample_size / 5000.0 - 1.0 / 3.0).abs() < 0.03, "{name}: {e:?}");
    }
    assert!(d.std_error < 0.8 * i.std_error, "dr {} vs ips {}", d.std_error, i.std_error);

    // Over many replications the 95% intervals cover about 95% of the time.
    const REPS: usize = 300;
    let mut covered = [0usize; 3];
    for _ in 0..REPS {
        let log = bandit_log(&mut rng, 600, &q);
        let estimates =
            [ips(&log, 0.95).unwrap(), snips(&log, 0.95).unwrap(), doubly_robust(&log, 0.95).unwrap()];
        for (c, e) in covered.iter_mut().zip(estimates) {
            *c += usize::from(e.ci.contains(TRUE_VALUE));
        }
    }
    for (name, c) in ["ips", "snips", "dr"].iter().zip(covered) {
        let rate = c as f64 / REPS as f64;
        assert!((0.90..=0.99).contains(&rate), "{name} coverage {rate}");
    }
}
