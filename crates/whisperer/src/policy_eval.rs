//! `whisperer policy evaluate`: how a candidate policy would have done on a campaign's logged
//! decisions, from their recorded propensities (IPS, self-normalised IPS, doubly robust).
//!
//! The reward model the doubly-robust estimator and the `greedy` policy need is a ridge
//! regression of the goal on the logged context, one per arm (an intercept only for campaigns
//! without context). It is cross-fitted: the decisions are split in two (alternately, in
//! decision order) and each half is scored by the model fitted on the other, so neither the
//! estimate nor the greedy choice rests on a model that has seen the outcome it scores.

use anyhow::bail;
use serde_json::{Value, json};
use whisperer_core::WorkspaceId;
use whisperer_decide::linalg;
use whisperer_stats::Logged;
use whisperer_store::Store;

const RIDGE: f64 = 1.0;

/// A candidate policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Candidate {
    /// Every arm alike.
    Uniform,
    /// Always this arm.
    Arm(usize),
    /// The arm the reward model rates best for the user, with ε spread evenly.
    Greedy { epsilon: f64 },
    /// The policy that logged the decisions (a check: its estimate is the observed mean).
    Logged,
}

pub fn parse_candidate(spec: &str, arms: &[String]) -> anyhow::Result<Candidate> {
    let bad = || {
        anyhow::anyhow!(
            "unknown policy {spec:?} (use uniform, logged, greedy, greedy:EPSILON or arm:NAME with NAME one of {})",
            arms.join(", ")
        )
    };
    Ok(match spec.split_once(':') {
        None if spec == "uniform" => Candidate::Uniform,
        None if spec == "logged" => Candidate::Logged,
        None if spec == "greedy" => Candidate::Greedy { epsilon: 0.0 },
        Some(("greedy", e)) => {
            let epsilon: f64 = e.parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&epsilon) {
                bail!("greedy:EPSILON needs EPSILON in [0, 1], got {e}");
            }
            Candidate::Greedy { epsilon }
        }
        Some(("arm", name)) => Candidate::Arm(arms.iter().position(|a| a == name).ok_or_else(bad)?),
        _ => return Err(bad()),
    })
}

struct Round {
    arm: usize,
    propensity: f64,
    reward: f64,
    context: Vec<f64>,
}

pub async fn evaluate(
    store: &dyn Store,
    ws: &WorkspaceId,
    campaign: &str,
    policy: &str,
    confidence: f64,
) -> anyhow::Result<Value> {
    let (_, _, compiled, decisions) = whisperer_decide::report::campaign_log(store, ws, campaign).await?;
    let arms: Vec<String> = compiled.arms.iter().map(|a| a.name.clone()).collect();
    let candidate = parse_candidate(policy, &arms)?;
    let mut rounds = Vec::new();
    for d in &decisions {
        // Actions that were taken, with a known result.
        if !matches!(d.status.as_str(), "send" | "no_send") || d.holdout {
            continue;
        }
        let (Some(arm), Some(outcome)) = (d.arm.as_ref(), d.outcome.as_deref()) else { continue };
        let Some(arm) = arms.iter().position(|a| a == arm) else { continue };
        let body: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
        let mut context: Vec<f64> = body["context"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        if context.is_empty() {
            context.push(1.0);
        }
        rounds.push(Round {
            arm,
            propensity: d.propensity,
            reward: f64::from(u8::from(outcome == "converted")),
            context,
        });
    }
    if rounds.is_empty() {
        bail!("campaign {campaign} has no settled decisions with an arm to learn from");
    }
    let dim = rounds[0].context.len();
    rounds.retain(|r| r.context.len() == dim);
    let halves: [Vec<&Round>; 2] =
        [0, 1].map(|h| rounds.iter().enumerate().filter(|(i, _)| i % 2 == h).map(|(_, r)| r).collect());
    // models[h] is fitted on half h and scores the other half.
    let models = [fit(&halves[0], arms.len(), dim), fit(&halves[1], arms.len(), dim)];
    let k = arms.len();
    let logged: Vec<Logged> = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let model = &models[1 - i % 2];
            let q = |x: &[f64], a: usize| linalg::dot(&model[a], x).clamp(0.0, 1.0);
            let probs: Vec<f64> = match &candidate {
                Candidate::Uniform => vec![1.0 / k as f64; k],
                Candidate::Arm(a) => (0..k).map(|i| f64::from(u8::from(i == *a))).collect(),
                Candidate::Greedy { epsilon } => {
                    let best =
                        (0..k).max_by(|a, b| q(&r.context, *a).total_cmp(&q(&r.context, *b))).unwrap_or(0);
                    (0..k).map(|i| epsilon / k as f64 + if i == best { 1.0 - epsilon } else { 0.0 }).collect()
                }
                Candidate::Logged => (0..k).map(|i| f64::from(u8::from(i == r.arm))).collect(),
            };
            let target_prob = if candidate == Candidate::Logged { r.propensity } else { probs[r.arm] };
            let q_target = if candidate == Candidate::Logged {
                q(&r.context, r.arm)
            } else {
                (0..k).map(|a| probs[a] * q(&r.context, a)).sum()
            };
            Logged {
                propensity: r.propensity,
                reward: r.reward,
                target_prob,
                q_logged: q(&r.context, r.arm),
                q_target,
            }
        })
        .collect();
    let observed = rounds.iter().map(|r| r.reward).sum::<f64>() / rounds.len() as f64;
    Ok(json!({
        "campaign": campaign,
        "policy": policy,
        "decisions": logged.len(),
        "observed_mean_reward": observed,
        "ips": whisperer_stats::ips(&logged, confidence)?,
        "snips": whisperer_stats::snips(&logged, confidence)?,
        "doubly_robust": whisperer_stats::doubly_robust(&logged, confidence)?,
        "confidence": confidence,
    }))
}

/// Per-arm ridge regressions of the reward on the context.
fn fit(rounds: &[&Round], arms: usize, dim: usize) -> Vec<Vec<f64>> {
    (0..arms)
        .map(|a| {
            let mut m = vec![0.0; dim * dim];
            let mut b = vec![0.0; dim];
            for i in 0..dim {
                m[i * dim + i] = RIDGE;
            }
            for r in rounds.iter().filter(|r| r.arm == a) {
                for i in 0..dim {
                    for j in 0..dim {
                        m[i * dim + j] += r.context[i] * r.context[j];
                    }
                    b[i] += r.reward * r.context[i];
                }
            }
            let inv = linalg::spd_inverse(&m, dim).unwrap_or_else(|| vec![0.0; dim * dim]);
            let mut theta = vec![0.0; dim];
            linalg::mat_vec(&inv, &b, &mut theta);
            theta
        })
        .collect()
}
