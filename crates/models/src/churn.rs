//! Churn prediction per workspace: train two candidate models on the workspace's own past,
//! validate them on a later cut-off, keep the better one, calibrate it, and explain each score.
//!
//! Time-based validation: the validation cut-off is `as_of − horizon`, so its labels are fully
//! observed by `as_of`; training cut-offs are weekly before it, and only those whose label
//! window closes by the validation cut-off, so nothing a training label saw comes after the
//! validation features.

use forust_ml::gradientbooster::GradientBooster;
use forust_ml::{Matrix, objective::ObjectiveType};
use serde::{Deserialize, Serialize};

use crate::dataset::{Examples, FeatureSpec, Replay};
use crate::logistic::{Logistic, sigmoid};
use crate::metrics::{auc, brier, log_loss};
use whisperer_profiles::profile::DAY_MS;

/// Weekly training cut-offs, at most this many.
const MAX_TRAIN_CUTOFFS: usize = 8;
/// Fewer validation or training examples than this is too little history to learn from.
const MIN_EXAMPLES: usize = 50;
const REASONS: usize = 3;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    #[error("no events up to {as_of}: nothing to learn from")]
    NoEvents { as_of: String },
    #[error(
        "too little history: training needs events from at least {needed_days} days before the as-of time \
         (horizon {horizon_days} days for validation plus {horizon_days} + 7 for one training cut-off), the \
         workspace has {have_days:.1}"
    )]
    TooLittleHistory { needed_days: i64, horizon_days: u32, have_days: f64 },
    #[error("too few {set} examples ({got}, need {need}): too few users were active before the cut-offs")]
    TooFewExamples { set: &'static str, got: usize, need: usize },
    #[error("no {missing} in the {set} examples: every user {every}, so there is nothing to tell apart")]
    OneClass { set: &'static str, missing: &'static str, every: &'static str },
    #[error("horizon must be 1 to 365 days, not {0}")]
    Horizon(u32),
    #[error("gradient boosting failed: {0}")]
    Boosting(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Logistic,
    GradientBoosting,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Logistic => "logistic_regression",
            ModelKind::GradientBoosting => "gradient_boosting",
        }
    }
}

/// Validation quality of one model (calibrated probabilities; AUC is unaffected by calibration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub auc: f64,
    pub log_loss: f64,
    pub brier: f64,
}

/// What training found, for printing and for the stored model version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub as_of: i64,
    pub horizon_days: u32,
    pub chosen: ModelKind,
    pub logistic: Quality,
    pub gradient_boosting: Quality,
    /// AUC of days since the last activity alone, the baseline any model must beat.
    pub recency_auc: f64,
    pub train_examples: usize,
    pub validation_examples: usize,
    pub train_churn_rate: f64,
    pub validation_churn_rate: f64,
    pub train_cutoffs: Vec<i64>,
    pub validation_cutoff: i64,
    pub features: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Scorer {
    Logistic(Logistic),
    GradientBoosting(Forest),
}

/// A trained, calibrated churn model with what it needs to read a profile.
#[derive(Serialize, Deserialize)]
pub struct ChurnModel {
    pub spec: FeatureSpec,
    pub report: TrainReport,
    scorer: Scorer,
    /// Platt scaling of the raw score: p = sigmoid(a * raw + b).
    calibration: (f64, f64),
}

/// Boosted trees as flat arrays: scoring walks row-major features directly, without the
/// column-major copy and per-tree passes the training library's predictor makes. Stored as
/// forust's own JSON dump, from which the arrays are rebuilt on load.
#[derive(Clone, Debug)]
struct Forest {
    json: String,
    base: f64,
    roots: Vec<u32>,
    nodes: Vec<FlatNode>,
}

#[derive(Clone, Copy, Debug)]
struct FlatNode {
    feature: u32,
    threshold: f64,
    left: u32,
    right: u32,
    missing: u32,
    weight: f64,
    leaf: bool,
}

impl Serialize for Forest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.json)
    }
}

impl<'de> Deserialize<'de> for Forest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let json = String::deserialize(d)?;
        let booster = GradientBooster::from_json(&json).map_err(serde::de::Error::custom)?;
        Forest::of(&booster).map_err(serde::de::Error::custom)
    }
}

impl Forest {
    fn of(booster: &GradientBooster) -> Result<Self, String> {
        let json = booster.json_dump().map_err(|e| e.to_string())?;
        let mut forest = Forest { json, base: booster.base_score, roots: Vec::new(), nodes: Vec::new() };
        for tree in &booster.trees {
            let offset = forest.nodes.len() as u32;
            forest.roots.push(offset);
            forest.nodes.extend(tree.nodes.iter().map(|n| FlatNode {
                feature: n.split_feature as u32,
                threshold: n.split_value,
                left: offset + n.left_child as u32,
                right: offset + n.right_child as u32,
                missing: offset + n.missing_node as u32,
                weight: n.weight_value as f64,
                leaf: n.is_leaf,
            }));
        }
        Ok(forest)
    }

    fn child(&self, node: &FlatNode, row: &[f64]) -> u32 {
        let v = row[node.feature as usize];
        if v.is_nan() {
            node.missing
        } else if v < node.threshold {
            node.left
        } else {
            node.right
        }
    }

    /// The log-odds: the base score plus each tree's leaf.
    fn raw(&self, row: &[f64]) -> f64 {
        let mut z = self.base;
        for &root in &self.roots {
            let mut node = &self.nodes[root as usize];
            while !node.leaf {
                node = &self.nodes[self.child(node, row) as usize];
            }
            z += node.weight;
        }
        z
    }

    /// The log-odds, with each feature's share (Saabas: the change of the node value along the
    /// path, credited to the split feature); the roots' values and the base are the bias.
    fn contributions(&self, row: &[f64], out: &mut [f64]) -> f64 {
        out.iter_mut().for_each(|c| *c = 0.0);
        let mut z = self.base;
        for &root in &self.roots {
            let mut node = &self.nodes[root as usize];
            z += node.weight;
            while !node.leaf {
                let child = &self.nodes[self.child(node, row) as usize];
                out[node.feature as usize] += child.weight - node.weight;
                z += child.weight - node.weight;
                node = child;
            }
        }
        z
    }
}

impl std::fmt::Debug for ChurnModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChurnModel").field("kind", &self.report.chosen).finish()
    }
}

/// A score with the features that pushed it up most.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    pub probability: f64,
    /// (feature, value, contribution to the log-odds), largest contribution first.
    pub reasons: Vec<(String, f64, f64)>,
}

fn cutoffs(first: i64, as_of: i64, horizon_days: u32) -> Result<(Vec<i64>, i64), TrainError> {
    let horizon = horizon_days as i64 * DAY_MS;
    let validation = as_of - horizon;
    let last_train = validation - horizon;
    // the first cut-off needs a week of history behind it
    let earliest = first + 7 * DAY_MS;
    if last_train < earliest {
        let needed_days = 2 * horizon_days as i64 + 7;
        let have_days = (as_of - first) as f64 / DAY_MS as f64;
        return Err(TrainError::TooLittleHistory { needed_days, horizon_days, have_days });
    }
    let mut train: Vec<i64> = (0..MAX_TRAIN_CUTOFFS as i64)
        .map(|k| last_train - k * 7 * DAY_MS)
        .filter(|&c| c >= earliest)
        .collect();
    train.reverse();
    Ok((train, validation))
}

fn check(set: &'static str, y: &[bool]) -> Result<(), TrainError> {
    if y.len() < MIN_EXAMPLES {
        return Err(TrainError::TooFewExamples { set, got: y.len(), need: MIN_EXAMPLES });
    }
    if !y.iter().any(|l| *l) {
        return Err(TrainError::OneClass { set, missing: "churned users", every: "came back" });
    }
    if y.iter().all(|l| *l) {
        return Err(TrainError::OneClass { set, missing: "retained users", every: "churned" });
    }
    Ok(())
}

fn col_major(ex: &Examples) -> Vec<f64> {
    let mut out = vec![0.0; ex.rows * ex.cols];
    for r in 0..ex.rows {
        for c in 0..ex.cols {
            out[c * ex.rows + r] = ex.x[r * ex.cols + c];
        }
    }
    out
}

fn booster() -> GradientBooster {
    GradientBooster::default()
        .set_objective_type(ObjectiveType::LogLoss)
        .set_iterations(80)
        .set_learning_rate(0.1)
        .set_max_depth(4)
        .set_l2(1.0)
        .set_min_leaf_weight(5.0)
        .set_parallel(true)
}

/// Platt scaling fitted on (raw score, label); honest quality from two-fold cross-fitting.
fn calibrate(raw: &[f64], y: &[bool]) -> ((f64, f64), Quality) {
    let fit = |idx: &[usize]| -> (f64, f64) {
        let x: Vec<f64> = idx.iter().map(|&i| raw[i]).collect();
        let labels: Vec<bool> = idx.iter().map(|&i| y[i]).collect();
        let m = Logistic::fit(&x, x.len(), 1, &labels, 1e-6);
        let a = m.weights[0] / m.scale[0];
        (a, m.weights[1] - a * m.mean[0])
    };
    let (even, odd): (Vec<usize>, Vec<usize>) = (0..raw.len()).partition(|i| i % 2 == 0);
    let mut p = vec![0.0; raw.len()];
    for (train, test) in [(&even, &odd), (&odd, &even)] {
        let (a, b) = fit(train);
        for &i in test.iter() {
            p[i] = sigmoid(a * raw[i] + b);
        }
    }
    let all: Vec<usize> = (0..raw.len()).collect();
    let quality = Quality { auc: auc(raw, y).unwrap_or(0.5), log_loss: log_loss(&p, y), brier: brier(&p, y) };
    (fit(&all), quality)
}

/// Trains on a replay of the workspace's log up to `as_of`.
pub fn train(replay: &Replay, as_of: i64, horizon_days: u32) -> Result<ChurnModel, TrainError> {
    if !(1..=365).contains(&horizon_days) {
        return Err(TrainError::Horizon(horizon_days));
    }
    let first = replay
        .first_event
        .ok_or_else(|| TrainError::NoEvents { as_of: whisperer_core::Millis(as_of).to_rfc3339() })?;
    let (train_cutoffs, validation_cutoff) = cutoffs(first, as_of, horizon_days)?;
    let spec = replay.spec();
    let mut all_cutoffs = train_cutoffs.clone();
    all_cutoffs.push(validation_cutoff);
    let examples = replay.examples(&spec, &all_cutoffs, horizon_days);
    let last = all_cutoffs.len() - 1;
    let train_set = examples.filter(|i| examples.cutoff[i] < last);
    let validation = examples.filter(|i| examples.cutoff[i] == last);
    check("training", &train_set.y)?;
    check("validation", &validation.y)?;

    let logistic = Logistic::fit(&train_set.x, train_set.rows, train_set.cols, &train_set.y, 1e-3);
    let lr_raw: Vec<f64> = (0..validation.rows).map(|i| logistic.log_odds(validation.row(i))).collect();
    let (lr_calibration, lr_quality) = calibrate(&lr_raw, &validation.y);

    let mut gbt = booster();
    let train_cols = col_major(&train_set);
    let y: Vec<f64> = train_set.y.iter().map(|l| *l as u8 as f64).collect();
    let weights = vec![1.0; train_set.rows];
    gbt.fit(&Matrix::new(&train_cols, train_set.rows, train_set.cols), &y, &weights, None)
        .map_err(|e| TrainError::Boosting(e.to_string()))?;
    let val_cols = col_major(&validation);
    let gbt_raw = gbt.predict(&Matrix::new(&val_cols, validation.rows, validation.cols), true);
    // Scoring uses our flat copy of the trees: it must agree with the library's predictor.
    let forest = Forest::of(&gbt).map_err(TrainError::Boosting)?;
    debug_assert!((0..validation.rows).all(|i| (forest.raw(validation.row(i)) - gbt_raw[i]).abs() < 1e-6));
    let (gbt_calibration, gbt_quality) = calibrate(&gbt_raw, &validation.y);

    let recency: Vec<f64> = (0..validation.rows).map(|i| validation.row(i)[0]).collect();
    let recency_auc = auc(&recency, &validation.y).unwrap_or(0.5);
    let gbt_better = (gbt_quality.auc, -gbt_quality.log_loss) > (lr_quality.auc, -lr_quality.log_loss);
    let rate = |y: &[bool]| y.iter().filter(|l| **l).count() as f64 / y.len() as f64;
    let report = TrainReport {
        as_of,
        horizon_days,
        chosen: if gbt_better { ModelKind::GradientBoosting } else { ModelKind::Logistic },
        logistic: lr_quality,
        gradient_boosting: gbt_quality,
        recency_auc,
        train_examples: train_set.rows,
        validation_examples: validation.rows,
        train_churn_rate: rate(&train_set.y),
        validation_churn_rate: rate(&validation.y),
        train_cutoffs,
        validation_cutoff,
        features: spec.names(),
    };
    let (scorer, calibration) = if gbt_better {
        (Scorer::GradientBoosting(forest), gbt_calibration)
    } else {
        (Scorer::Logistic(logistic), lr_calibration)
    };
    Ok(ChurnModel { spec, report, scorer, calibration })
}

#[derive(Debug, thiserror::Error)]
#[error("stored churn model cannot be read: {0}")]
pub struct LoadError(String);

impl ChurnModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialisable")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LoadError> {
        serde_json::from_slice(bytes).map_err(|e| LoadError(e.to_string()))
    }

    /// Calibrated probabilities alone, for row-major feature rows (faster than [`Self::score`]).
    pub fn probabilities(&self, x: &[f64], rows: usize) -> Vec<f64> {
        let (a, b) = self.calibration;
        par_rows(&x[..rows * self.spec.width()], self.spec.width(), |row| {
            let z = match &self.scorer {
                Scorer::GradientBoosting(forest) => forest.raw(row),
                Scorer::Logistic(lr) => lr.log_odds(row),
            };
            sigmoid(a * z + b)
        })
    }

    /// Calibrated probabilities and reasons for row-major feature rows.
    pub fn score(&self, x: &[f64], rows: usize) -> Vec<Score> {
        let cols = self.spec.width();
        let names = self.spec.names();
        let (a, b) = self.calibration;
        par_rows(&x[..rows * cols], cols, |row| {
            let mut parts = vec![0.0; cols];
            let z = match &self.scorer {
                Scorer::GradientBoosting(forest) => forest.contributions(row, &mut parts),
                Scorer::Logistic(lr) => lr.contributions(row, &mut parts),
            };
            // Shares of the calibrated log-odds: the calibration slope scales (and could flip)
            // what each feature added to the raw score.
            parts.iter_mut().for_each(|p| *p *= a);
            let mut order: Vec<usize> = (0..cols).filter(|&c| parts[c] > 0.0).collect();
            order.sort_by(|&i, &j| parts[j].total_cmp(&parts[i]));
            Score {
                probability: sigmoid(a * z + b),
                reasons: order
                    .into_iter()
                    .take(REASONS)
                    .map(|c| (names[c].clone(), self.spec.readable(c, row[c]), parts[c]))
                    .collect(),
            }
        })
    }
}

/// Maps every row (of `cols` values) with `f`, on all cores when the batch is large.
fn par_rows<T: Send>(x: &[f64], cols: usize, f: impl Fn(&[f64]) -> T + Sync) -> Vec<T> {
    const MIN_ROWS_PER_THREAD: usize = 4096;
    let rows = x.len() / cols.max(1);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || rows < 2 * MIN_ROWS_PER_THREAD {
        return x.chunks(cols.max(1)).map(&f).collect();
    }
    let per_thread = rows.div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = x
            .chunks(per_thread * cols)
            .map(|part| scope.spawn(move || part.chunks(cols).map(f).collect::<Vec<T>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("scoring thread")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_trees_agree_with_forust_and_survive_a_round_trip() {
        let rows = 400;
        // column-major: x0 = i, x1 = i mod 7; label: x0 > 200 or x1 == 3
        let mut x = Vec::with_capacity(rows * 2);
        x.extend((0..rows).map(|i| i as f64));
        x.extend((0..rows).map(|i| (i % 7) as f64));
        let y: Vec<f64> = (0..rows).map(|i| (i > 200 || i % 7 == 3) as u8 as f64).collect();
        let mut gbt = booster().set_parallel(false);
        gbt.fit(&Matrix::new(&x, rows, 2), &y, &vec![1.0; rows], None).unwrap();
        let expected = gbt.predict(&Matrix::new(&x, rows, 2), false);
        let forest = Forest::of(&gbt).unwrap();
        let again: Forest = serde_json::from_str(&serde_json::to_string(&forest).unwrap()).unwrap();
        let mut parts = [0.0; 2];
        for i in 0..rows {
            let row = [x[i], x[rows + i]];
            assert!((forest.raw(&row) - expected[i]).abs() < 1e-9, "row {i}");
            assert_eq!(again.raw(&row), forest.raw(&row));
            assert!((forest.contributions(&row, &mut parts) - expected[i]).abs() < 1e-9);
        }
    }
}
