//! Bandit policies: how a campaign picks one of its arms, with the exact probability of that
//! pick (the propensity) and an explanation, and how outcomes teach it.
//!
//! Every policy turns its state into a choice distribution and draws from it with one uniform
//! number, so the recorded propensity is the probability actually used — what off-policy
//! evaluation needs. Thompson sampling's distribution is the posterior probability that each
//! arm is best (drawing one sample per arm and taking the largest picks arm `i` with exactly that
//! probability), computed by integration in [`crate::prob`].
//!
//! Learning is batched: outcomes change the live counts at once, and [`PolicyState::refresh`]
//! turns them into a new *snapshot* (numbered by `version`) that decisions read. A decision
//! records the snapshot version it used.

use serde::{Deserialize, Serialize};

use crate::linalg;
use crate::prob;

/// Which policy a campaign uses, with its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicyConfig {
    /// Beta-Bernoulli Thompson sampling on the goal conversion. With `discount` < 1 every
    /// outcome first shrinks all arms' counts by that factor (discounted Thompson sampling), so
    /// the posterior follows a base rate that drifts over time instead of crediting an arm
    /// with the era it happened to be chosen in.
    Thompson {
        prior_alpha: f64,
        prior_beta: f64,
        exploration_floor: f64,
        #[serde(default = "no_discount")]
        discount: f64,
    },
    /// Linear Thompson sampling on user features: per arm a Bayesian ridge regression of the
    /// conversion on the context; `exploration` scales the posterior spread.
    Contextual { features: Vec<String>, ridge: f64, exploration: f64, exploration_floor: f64 },
    /// Fixed split (A/B/n), stable per user.
    Ab { weights: Vec<f64> },
    /// The arm with the best observed conversion, or a uniformly random one with probability ε.
    EpsilonGreedy { epsilon: f64 },
}

fn no_discount() -> f64 {
    1.0
}

impl PolicyConfig {
    pub fn name(&self) -> &'static str {
        match self {
            PolicyConfig::Thompson { .. } => "thompson",
            PolicyConfig::Contextual { .. } => "contextual",
            PolicyConfig::Ab { .. } => "ab",
            PolicyConfig::EpsilonGreedy { .. } => "epsilon_greedy",
        }
    }

    /// Whether the draw must be stable per user (a fixed split keeps each user in one arm).
    pub fn sticky(&self) -> bool {
        matches!(self, PolicyConfig::Ab { .. })
    }
}

/// What one arm has seen: conversions are fractional only for rewards in (0, 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmCounts {
    pub trials: f64,
    pub successes: f64,
}

/// One arm's ridge regression: `a = ridge·I + Σ x xᵀ`, `b = Σ r x`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearArm {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

/// A policy's learned state, persisted between runs. The snapshot is derived and rebuilt by
/// [`PolicyState::refresh`] after loading.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyState {
    pub config: PolicyConfig,
    /// Snapshot number; a decision records the one it used.
    pub version: u64,
    pub arms: Vec<ArmCounts>,
    /// Contextual policies only.
    pub linear: Vec<LinearArm>,
    /// Context width, intercept included (contextual policies only).
    pub dim: usize,
    #[serde(skip)]
    snapshot: Snapshot,
}

#[derive(Clone, Debug, Default)]
struct Snapshot {
    /// Non-contextual policies: the choice distribution.
    probabilities: Vec<f64>,
    /// Contextual: per arm θ = A⁻¹ b and A⁻¹.
    theta: Vec<Vec<f64>>,
    a_inv: Vec<Vec<f64>>,
}

/// A policy's pick.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub arm: usize,
    /// Probability with which `arm` was chosen.
    pub propensity: f64,
    /// Every arm's probability and what it rests on.
    pub arms: Vec<ArmExplanation>,
}

/// Why an arm had the probability it had.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ArmExplanation {
    pub probability: f64,
    /// Posterior (Thompson: Beta mean; contextual: predicted conversion for this user) or
    /// observed (ε-greedy) mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Posterior spread (Thompson: Beta sd; contextual: sd of the prediction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sd: Option<f64>,
    pub trials: f64,
    pub successes: f64,
}

/// A reward the policy cannot learn from.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UpdateError {
    #[error("arm {0} does not exist")]
    UnknownArm(usize),
    #[error("reward must be a finite number in [0, 1], got {0}")]
    BadReward(f64),
    #[error("context has {got} values, the policy expects {want}")]
    BadContext { got: usize, want: usize },
    #[error("context holds a value that is not a finite number")]
    NonFiniteContext,
}

impl PolicyState {
    /// A fresh state for `arms` arms; `dim` is the context width (contextual policies).
    pub fn new(config: PolicyConfig, arms: usize, dim: usize) -> Self {
        let linear = match &config {
            PolicyConfig::Contextual { ridge, .. } => (0..arms)
                .map(|_| {
                    let mut a = vec![0.0; dim * dim];
                    for i in 0..dim {
                        a[i * dim + i] = *ridge;
                    }
                    LinearArm { a, b: vec![0.0; dim] }
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut state = PolicyState {
            config,
            version: 0,
            arms: vec![ArmCounts::default(); arms],
            linear,
            dim,
            snapshot: Snapshot::default(),
        };
        state.refresh();
        state
    }

    /// Reads a stored state; the snapshot is rebuilt (same version) so decisions can use it.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut state: PolicyState = serde_json::from_str(text)?;
        state.rebuild();
        Ok(state)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("policy state serialises")
    }

    /// Whether this state can serve a campaign whose policy is `config` over `arms` arms with
    /// context width `dim` (otherwise a changed campaign starts afresh).
    pub fn fits(&self, config: &PolicyConfig, arms: usize, dim: usize) -> bool {
        std::mem::discriminant(&self.config) == std::mem::discriminant(config)
            && self.arms.len() == arms
            && (self.linear.is_empty() || self.dim == dim)
    }

    /// Takes a new snapshot of what was learned so far.
    pub fn refresh(&mut self) {
        self.version += 1;
        self.rebuild();
    }

    fn rebuild(&mut self) {
        let k = self.arms.len();
        let mut probabilities = Vec::with_capacity(k);
        let mut theta = Vec::new();
        let mut a_inv = Vec::new();
        match &self.config {
            PolicyConfig::Thompson { prior_alpha, prior_beta, exploration_floor, .. } => {
                let params: Vec<(f64, f64)> = self
                    .arms
                    .iter()
                    .map(|c| (prior_alpha + c.successes, prior_beta + (c.trials - c.successes).max(0.0)))
                    .collect();
                prob::beta_prob_best(&params, &mut probabilities);
                floor(&mut probabilities, *exploration_floor);
            }
            PolicyConfig::Ab { weights } => {
                let total: f64 = weights.iter().sum();
                probabilities.extend(weights.iter().map(|w| w / total));
            }
            PolicyConfig::EpsilonGreedy { epsilon } => {
                let best = self.greedy_arm();
                probabilities
                    .extend((0..k).map(|i| epsilon / k as f64 + if i == best { 1.0 - epsilon } else { 0.0 }));
            }
            PolicyConfig::Contextual { ridge, .. } => {
                for arm in &self.linear {
                    let inv = linalg::spd_inverse(&arm.a, self.dim).unwrap_or_else(|| {
                        // Cannot happen for a = ridge·I + Σ x xᵀ with finite x; fall back to the
                        // prior rather than serve garbage.
                        let mut id = vec![0.0; self.dim * self.dim];
                        (0..self.dim).for_each(|i| id[i * self.dim + i] = 1.0 / ridge);
                        id
                    });
                    let mut t = vec![0.0; self.dim];
                    linalg::mat_vec(&inv, &arm.b, &mut t);
                    theta.push(t);
                    a_inv.push(inv);
                }
            }
        }
        self.snapshot = Snapshot { probabilities, theta, a_inv };
    }

    /// The arm with the highest observed conversion (unseen arms first, lowest index on ties).
    fn greedy_arm(&self) -> usize {
        let score = |c: &ArmCounts| if c.trials > 0.0 { c.successes / c.trials } else { f64::INFINITY };
        let mut best = 0;
        for (i, c) in self.arms.iter().enumerate() {
            if score(c) > score(&self.arms[best]) {
                best = i;
            }
        }
        best
    }

    /// Picks an arm for context `x` (ignored by non-contextual policies) with the uniform number
    /// `u` in [0, 1).
    pub fn choose(&self, x: &[f64], u: f64) -> Choice {
        let mut arms: Vec<ArmExplanation> = self
            .arms
            .iter()
            .map(|c| ArmExplanation {
                probability: 0.0,
                mean: None,
                sd: None,
                trials: c.trials,
                successes: c.successes,
            })
            .collect();
        let probabilities: Vec<f64> = match &self.config {
            PolicyConfig::Contextual { exploration, exploration_floor, .. } if x.len() == self.dim => {
                let mut means = Vec::with_capacity(arms.len());
                let mut sds = Vec::with_capacity(arms.len());
                for (theta, inv) in self.snapshot.theta.iter().zip(&self.snapshot.a_inv) {
                    means.push(linalg::dot(theta, x));
                    sds.push(exploration * linalg::quad_form(inv, x).max(0.0).sqrt());
                }
                let mut p = Vec::with_capacity(arms.len());
                prob::normal_prob_best(&means, &sds, &mut p);
                floor(&mut p, *exploration_floor);
                for (e, (m, s)) in arms.iter_mut().zip(means.iter().zip(&sds)) {
                    e.mean = Some(*m);
                    e.sd = Some(*s);
                }
                p
            }
            PolicyConfig::Contextual { .. } => {
                // A context of the wrong width (a bug upstream): explore uniformly rather than fail.
                vec![1.0 / arms.len() as f64; arms.len()]
            }
            PolicyConfig::Thompson { prior_alpha, prior_beta, .. } => {
                for (e, c) in arms.iter_mut().zip(&self.arms) {
                    let a = prior_alpha + c.successes;
                    let b = prior_beta + (c.trials - c.successes).max(0.0);
                    e.mean = Some(a / (a + b));
                    e.sd = Some((a * b / ((a + b) * (a + b) * (a + b + 1.0))).sqrt());
                }
                self.snapshot.probabilities.clone()
            }
            PolicyConfig::EpsilonGreedy { .. } => {
                for (e, c) in arms.iter_mut().zip(&self.arms) {
                    e.mean = (c.trials > 0.0).then(|| c.successes / c.trials);
                }
                self.snapshot.probabilities.clone()
            }
            PolicyConfig::Ab { .. } => self.snapshot.probabilities.clone(),
        };
        let arm = prob::categorical(&probabilities, u.clamp(0.0, 1.0));
        for (e, p) in arms.iter_mut().zip(&probabilities) {
            e.probability = *p;
        }
        Choice { arm, propensity: probabilities[arm], arms }
    }

    /// Learns that `arm`, chosen in context `x`, earned `reward` (1 = goal reached).
    pub fn update(&mut self, arm: usize, x: &[f64], reward: f64) -> Result<(), UpdateError> {
        self.check(arm, x, reward)?;
        if let PolicyConfig::Thompson { discount, .. } = self.config
            && discount < 1.0
        {
            for c in &mut self.arms {
                c.trials *= discount;
                c.successes *= discount;
            }
        }
        let c = &mut self.arms[arm];
        c.trials += 1.0;
        c.successes += reward;
        if let Some(lin) = self.linear.get_mut(arm) {
            let d = x.len();
            for i in 0..d {
                for j in 0..d {
                    lin.a[i * d + j] += x[i] * x[j];
                }
                lin.b[i] += reward * x[i];
            }
        }
        Ok(())
    }

    /// Replaces a reward learned earlier (a conversion that arrived after its window was closed
    /// as a failure): the trial stays counted once.
    pub fn correct(&mut self, arm: usize, x: &[f64], from: f64, to: f64) -> Result<(), UpdateError> {
        self.check(arm, x, from)?;
        self.check(arm, x, to)?;
        let c = &mut self.arms[arm];
        c.successes = (c.successes + to - from).clamp(0.0, c.trials);
        if let Some(lin) = self.linear.get_mut(arm) {
            for (b, xi) in lin.b.iter_mut().zip(x) {
                *b += (to - from) * xi;
            }
        }
        Ok(())
    }

    fn check(&self, arm: usize, x: &[f64], reward: f64) -> Result<(), UpdateError> {
        if arm >= self.arms.len() {
            return Err(UpdateError::UnknownArm(arm));
        }
        if !(0.0..=1.0).contains(&reward) {
            return Err(UpdateError::BadReward(reward));
        }
        if !self.linear.is_empty() && x.len() != self.dim {
            return Err(UpdateError::BadContext { got: x.len(), want: self.dim });
        }
        if !self.linear.is_empty() && x.iter().any(|v| !v.is_finite()) {
            return Err(UpdateError::NonFiniteContext);
        }
        Ok(())
    }
}

/// Mixes a little uniform exploration in, so no arm's probability reaches 0 (which would make
/// off-policy estimates of policies that like that arm impossible).
fn floor(p: &mut [f64], total_floor: f64) {
    if total_floor <= 0.0 || p.is_empty() {
        return;
    }
    let k = p.len() as f64;
    for x in p.iter_mut() {
        *x = (1.0 - total_floor) * *x + total_floor / k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thompson() -> PolicyConfig {
        PolicyConfig::Thompson { prior_alpha: 1.0, prior_beta: 1.0, exploration_floor: 0.0, discount: 1.0 }
    }

    /// A seeded stream of uniforms (SplitMix64), for tests.
    fn uniforms(seed: u64) -> impl FnMut() -> f64 {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        move || rng.random::<f64>()
    }

    #[test]
    fn thompson_finds_the_best_arm() {
        let truth = [0.05, 0.12, 0.08];
        let mut policy = PolicyState::new(thompson(), 3, 0);
        let mut u = uniforms(7);
        let mut picks = [0u32; 3];
        for round in 0..6_000 {
            let choice = policy.choose(&[], u());
            assert!((choice.propensity - choice.arms[choice.arm].probability).abs() < 1e-15);
            let reward = if u() < truth[choice.arm] { 1.0 } else { 0.0 };
            policy.update(choice.arm, &[], reward).unwrap();
            if round % 50 == 49 {
                policy.refresh();
            }
            if round >= 4_000 {
                picks[choice.arm] += 1;
            }
        }
        assert!(picks[1] > 1_600, "{picks:?}");
        let probs: f64 = policy.choose(&[], 0.5).arms.iter().map(|a| a.probability).sum();
        assert!((probs - 1.0).abs() < 1e-9);
    }

    #[test]
    fn propensities_match_observed_pick_frequencies() {
        let mut policy = PolicyState::new(thompson(), 3, 0);
        for (arm, (n, s)) in [(20, 3), (20, 6), (10, 2)].into_iter().enumerate() {
            for i in 0..n {
                policy.update(arm, &[], if i < s { 1.0 } else { 0.0 }).unwrap();
            }
        }
        policy.refresh();
        let mut u = uniforms(3);
        let mut counts = [0u32; 3];
        let draws = 200_000;
        for _ in 0..draws {
            counts[policy.choose(&[], u()).arm] += 1;
        }
        let probs: Vec<f64> = policy.choose(&[], 0.0).arms.iter().map(|a| a.probability).collect();
        for i in 0..3 {
            let freq = f64::from(counts[i]) / f64::from(draws);
            assert!((freq - probs[i]).abs() < 0.005, "arm {i}: {freq} vs {}", probs[i]);
        }
    }

    #[test]
    fn discounting_follows_a_drifting_arm() {
        let config = |discount| PolicyConfig::Thompson {
            prior_alpha: 1.0,
            prior_beta: 1.0,
            exploration_floor: 0.0,
            discount,
        };
        let (mut kept, mut forgetting) =
            (PolicyState::new(config(1.0), 2, 0), PolicyState::new(config(0.99), 2, 0));
        // Arm 0 converted 60 % for a long time, then stopped converting.
        for i in 0..2_000 {
            let reward = if i < 1_000 { f64::from(u8::from(i % 5 < 3)) } else { 0.0 };
            kept.update(0, &[], reward).unwrap();
            forgetting.update(0, &[], reward).unwrap();
        }
        let mean = |p: &PolicyState| p.arms[0].successes / p.arms[0].trials;
        assert!((mean(&kept) - 0.3).abs() < 0.01, "{}", mean(&kept));
        assert!(mean(&forgetting) < 0.01, "{}", mean(&forgetting));
        assert!(forgetting.arms[0].trials < 101.0, "effective memory about 1 / (1 - 0.99)");
    }

    #[test]
    fn epsilon_greedy_probabilities() {
        let mut policy = PolicyState::new(PolicyConfig::EpsilonGreedy { epsilon: 0.3 }, 3, 0);
        policy.update(0, &[], 0.0).unwrap();
        policy.update(1, &[], 1.0).unwrap();
        policy.update(2, &[], 0.0).unwrap();
        policy.refresh();
        let c = policy.choose(&[], 0.5);
        assert_eq!(c.arm, 1);
        assert!((c.propensity - 0.8).abs() < 1e-12);
        assert!((c.arms[0].probability - 0.1).abs() < 1e-12);
    }

    #[test]
    fn ab_split_follows_weights() {
        let policy = PolicyState::new(PolicyConfig::Ab { weights: vec![1.0, 1.0, 2.0] }, 3, 0);
        assert_eq!(policy.choose(&[], 0.1).arm, 0);
        assert_eq!(policy.choose(&[], 0.3).arm, 1);
        let c = policy.choose(&[], 0.6);
        assert_eq!(c.arm, 2);
        assert_eq!(c.propensity, 0.5);
    }

    #[test]
    fn contextual_learns_which_arm_suits_which_user() {
        // Arm 0 converts users with x1 = 1, arm 1 users with x1 = 0.
        let config = PolicyConfig::Contextual {
            features: vec![],
            ridge: 1.0,
            exploration: 0.5,
            exploration_floor: 0.0,
        };
        let mut policy = PolicyState::new(config, 2, 2);
        let mut u = uniforms(11);
        for round in 0..3_000 {
            let x1 = if u() < 0.5 { 1.0 } else { 0.0 };
            let x = [1.0, x1];
            let c = policy.choose(&x, u());
            let p = if (c.arm == 0) == (x1 == 1.0) { 0.6 } else { 0.1 };
            policy.update(c.arm, &x, if u() < p { 1.0 } else { 0.0 }).unwrap();
            if round % 100 == 99 {
                policy.refresh();
            }
        }
        let for_a = policy.choose(&[1.0, 1.0], 0.5);
        let for_b = policy.choose(&[1.0, 0.0], 0.5);
        assert!(for_a.arms[0].probability > 0.95, "{for_a:?}");
        assert!(for_b.arms[1].probability > 0.95, "{for_b:?}");
        // Stored and read back: same choices.
        let again = PolicyState::from_json(&policy.to_json()).unwrap();
        assert_eq!(again.choose(&[1.0, 1.0], 0.5), for_a);
        assert_eq!(again.version, policy.version);
    }

    #[test]
    fn late_conversion_corrects_once() {
        let mut policy = PolicyState::new(thompson(), 2, 0);
        policy.update(0, &[], 0.0).unwrap();
        policy.correct(0, &[], 0.0, 1.0).unwrap();
        assert_eq!(policy.arms[0], ArmCounts { trials: 1.0, successes: 1.0 });
    }

    #[test]
    fn bad_rewards_never_reach_the_state() {
        let mut policy = PolicyState::new(thompson(), 2, 0);
        assert!(policy.update(0, &[], f64::NAN).is_err());
        assert!(policy.update(0, &[], 2.0).is_err());
        assert!(policy.update(5, &[], 1.0).is_err());
        assert_eq!(policy.arms[0].trials, 0.0);
        let config = PolicyConfig::Contextual {
            features: vec![],
            ridge: 1.0,
            exploration: 1.0,
            exploration_floor: 0.0,
        };
        let mut lin = PolicyState::new(config, 2, 2);
        assert!(lin.update(0, &[1.0, f64::INFINITY], 1.0).is_err());
        assert!(lin.update(0, &[1.0], 1.0).is_err());
        lin.refresh();
        let c = lin.choose(&[1.0, 0.5], 0.3);
        assert!(c.arms.iter().all(|a| a.probability.is_finite() && a.mean.unwrap().is_finite()));
    }
}
