//! Experiment reports: how each arm of a campaign did against the holdout (or, without one,
//! against the first arm), with fixed-horizon, always-valid and Bayesian answers, a
//! sample-ratio check and Holm's correction for comparing many arms.
//!
//! Input is the settled decisions (goal reached or window closed), in decision order.
//! Assignment is what counts (intention to treat): a decision whose message a fatigue rule
//! stopped still belongs to its arm.

use serde::Serialize;
use whisperer_stats::{AlwaysValid, Interval, MeanTest, ProportionTest, Srm, Summary};

/// Mixing variance of the mSPRT: a prior belief that effects are a few points of conversion.
pub const MSPRT_TAU2: f64 = 0.0025;
/// Looks of the always-valid test: after every this many settled decisions.
const LOOK_EVERY: usize = 50;

/// One settled decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// None for the holdout.
    pub arm: Option<String>,
    pub converted: bool,
    /// The goal's value (0 when not converted or no value).
    pub value: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    pub group: String,
    pub decisions: u64,
    pub conversions: u64,
    pub rate: f64,
    pub rate_ci: Interval,
    pub value_mean: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub group: String,
    pub control: String,
    /// Two-proportion z test and the Wald interval of the difference.
    pub conversion: ProportionTest,
    /// Holm-adjusted p-value over all comparisons of the report.
    pub p_value_holm: f64,
    /// mSPRT p-value, valid however often the report was looked at.
    pub always_valid_p: f64,
    /// Confidence sequence of the difference (valid at any time).
    pub always_valid_ci: Interval,
    pub prob_beats_control: f64,
    /// Expected loss in conversion rate of shipping this group rather than the control.
    pub expected_loss: f64,
    /// Welch's t test of the value per decision (when the goal has a value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<MeanTest>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SrmReport {
    pub groups: Vec<String>,
    pub observed: Vec<u64>,
    pub expected_weights: Vec<f64>,
    #[serde(flatten)]
    pub test: Srm,
    /// p below 0.001: the split is not what the campaign says; distrust the comparisons.
    pub mismatch: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExperimentReport {
    pub control: String,
    pub confidence: f64,
    pub groups: Vec<GroupReport>,
    pub comparisons: Vec<Comparison>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_ratio: Option<SrmReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no settled decisions yet")]
    Empty,
    #[error("the control group {0:?} has no settled decisions")]
    NoControl(String),
    #[error("{0}")]
    Stats(#[from] whisperer_stats::StatsError),
}

/// Builds the report. `arms` lists the campaign's arms in order; `weights`, when the split is
/// fixed (an A/B campaign), gives each arm's share of the non-holdout traffic, and `holdout` the
/// holdout share, for the sample-ratio check.
pub fn report(
    decisions: &[Settled],
    arms: &[String],
    holdout: f64,
    weights: Option<&[f64]>,
    confidence: f64,
) -> Result<ExperimentReport, ReportError> {
    if decisions.is_empty() {
        return Err(ReportError::Empty);
    }
    const HOLDOUT: &str = "holdout";
    let mut names: Vec<String> = Vec::new();
    if holdout > 0.0 {
        names.push(HOLDOUT.into());
    }
    names.extend(arms.iter().cloned());
    let index = |d: &Settled| match &d.arm {
        None => names.iter().position(|n| n == HOLDOUT),
        Some(a) => names.iter().position(|n| n == a),
    };
    let k = names.len();
    let (mut n, mut x) = (vec![0u64; k], vec![0u64; k]);
    let mut values = vec![Summary::new(); k];
    let has_value = decisions.iter().any(|d| d.value != 0.0);
    let control = 0;
    if names.is_empty() {
        return Err(ReportError::Empty);
    }
    let mut sequential: Vec<AlwaysValid> =
        (0..k).map(|_| AlwaysValid::new(MSPRT_TAU2)).collect::<Result<_, _>>()?;
    for (i, d) in decisions.iter().enumerate() {
        let Some(g) = index(d) else { continue };
        n[g] += 1;
        x[g] += u64::from(d.converted);
        values[g].push(d.value)?;
        if (i + 1) % LOOK_EVERY == 0 || i + 1 == decisions.len() {
            for g in 1..k {
                if n[g] > 0 && n[control] > 0 {
                    sequential[g].update(x[g], n[g], x[control], n[control])?;
                }
            }
        }
    }
    if n[control] == 0 {
        return Err(ReportError::NoControl(names[control].clone()));
    }
    let mut groups = Vec::with_capacity(k);
    for g in 0..k {
        groups.push(GroupReport {
            group: names[g].clone(),
            decisions: n[g],
            conversions: x[g],
            rate: if n[g] > 0 { x[g] as f64 / n[g] as f64 } else { 0.0 },
            rate_ci: if n[g] > 0 {
                whisperer_stats::wilson_interval(x[g], n[g], confidence)?
            } else {
                Interval { lower: 0.0, upper: 1.0 }
            },
            value_mean: if has_value { values[g].mean() } else { None },
        });
    }
    let mut comparisons = Vec::new();
    for g in 1..k {
        if n[g] == 0 {
            continue;
        }
        let conversion =
            whisperer_stats::two_proportion_test(x[g], n[g], x[control], n[control], confidence)?;
        let value = if has_value {
            whisperer_stats::welch_test(&values[g], &values[control], confidence).ok()
        } else {
            None
        };
        comparisons.push(Comparison {
            group: names[g].clone(),
            control: names[control].clone(),
            conversion,
            p_value_holm: conversion.p_value,
            always_valid_p: sequential[g].p_value(),
            always_valid_ci: whisperer_stats::confidence_sequence(
                x[g],
                n[g],
                x[control],
                n[control],
                1.0 - confidence,
                MSPRT_TAU2,
            )?,
            prob_beats_control: whisperer_stats::prob_beats_control(x[g], n[g], x[control], n[control])?,
            expected_loss: whisperer_stats::expected_loss(x[g], n[g], x[control], n[control])?.treatment,
            value,
        });
    }
    if !comparisons.is_empty() {
        let raw: Vec<f64> = comparisons.iter().map(|c| c.conversion.p_value).collect();
        for (c, p) in comparisons.iter_mut().zip(whisperer_stats::holm_adjust(&raw)?) {
            c.p_value_holm = p;
        }
    }
    let sample_ratio = sample_ratio(&names, &n, holdout, weights)?;
    Ok(ExperimentReport { control: names[control].clone(), confidence, groups, comparisons, sample_ratio })
}

/// With a fixed split every group's share is known; with an adaptive policy only the holdout's.
fn sample_ratio(
    names: &[String],
    n: &[u64],
    holdout: f64,
    weights: Option<&[f64]>,
) -> Result<Option<SrmReport>, ReportError> {
    let with_holdout = holdout > 0.0;
    let (groups, observed, expected): (Vec<String>, Vec<u64>, Vec<f64>) = match weights {
        Some(w) => {
            let total: f64 = w.iter().sum();
            let arms = w.iter().map(|x| (1.0 - holdout) * x / total);
            let expected: Vec<f64> =
                if with_holdout { std::iter::once(holdout).chain(arms).collect() } else { arms.collect() };
            (names.to_vec(), n.to_vec(), expected)
        }
        None if with_holdout => (
            vec!["holdout".into(), "treated".into()],
            vec![n[0], n[1..].iter().sum()],
            vec![holdout, 1.0 - holdout],
        ),
        None => return Ok(None),
    };
    if observed.iter().sum::<u64>() == 0 || expected.len() != observed.len() {
        return Ok(None);
    }
    let test = whisperer_stats::sample_ratio_mismatch(&observed, &expected)?;
    Ok(Some(SrmReport { groups, observed, expected_weights: expected, mismatch: test.p_value < 0.001, test }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(arm: Option<&str>, converted: bool) -> Settled {
        Settled { arm: arm.map(str::to_owned), converted, value: if converted { 10.0 } else { 0.0 } }
    }

    #[test]
    fn arms_against_the_holdout() {
        let mut d = Vec::new();
        for i in 0..3_000 {
            let (arm, p) = match i % 4 {
                0 => (None, 10),
                1 => (Some("a"), 10),
                2 => (Some("b"), 16),
                _ => (Some("c"), 10),
            };
            d.push(settled(arm, (i / 4) % 100 < p));
        }
        let arms = ["a", "b", "c"].map(String::from);
        let r = report(&d, &arms, 0.25, Some(&[1.0, 1.0, 1.0]), 0.95).unwrap();
        assert_eq!(r.control, "holdout");
        assert_eq!(r.groups.iter().map(|g| g.decisions).collect::<Vec<_>>(), [750, 750, 750, 750]);
        let b = r.comparisons.iter().find(|c| c.group == "b").unwrap();
        assert!(b.conversion.diff > 0.05 && b.conversion.p_value < 0.01, "{b:?}");
        assert!(b.p_value_holm >= b.conversion.p_value);
        assert!(b.prob_beats_control > 0.99 && b.expected_loss < 0.001);
        assert!(b.always_valid_p >= b.conversion.p_value, "always-valid is the more careful one");
        assert!(b.always_valid_ci.width() > b.conversion.diff_ci.width());
        assert!(b.value.is_some());
        let a = r.comparisons.iter().find(|c| c.group == "a").unwrap();
        assert!(a.conversion.p_value > 0.5 && (a.prob_beats_control - 0.5).abs() < 0.1, "{a:?}");
        let srm = r.sample_ratio.unwrap();
        assert!(!srm.mismatch && srm.test.p_value > 0.9, "{srm:?}");
    }

    #[test]
    fn a_broken_split_is_flagged() {
        let mut d: Vec<Settled> = (0..1_000).map(|_| settled(Some("a"), false)).collect();
        d.extend((0..200).map(|_| settled(None, false)));
        let r = report(&d, &["a".into()], 0.5, None, 0.95).unwrap();
        assert!(r.sample_ratio.unwrap().mismatch);
        assert!(matches!(report(&[], &["a".into()], 0.5, None, 0.95), Err(ReportError::Empty)));
        let no_control = [settled(Some("a"), true)];
        assert!(matches!(
            report(&no_control, &["a".into()], 0.5, None, 0.95),
            Err(ReportError::NoControl(_))
        ));
    }
}
