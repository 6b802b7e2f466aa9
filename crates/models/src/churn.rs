//! Churn prediction per workspace: train two candidate models on the workspace's own past,
//! validate them on a later cut-off, keep the better one, calibrate it, and explain each score.
//!
//! Time-based validation: the validation cut-off is `as_of − horizon`, so its labels are fully
//! observed by `as_of`; training cut-offs are weekly before it, and only those whose label
//! window closes by the validation cut-off, so nothing a training label saw comes after the
//! validation features.

use forust_ml::gradientbooster::{ContributionsMethod, GradientBooster};
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
    /// forust's JSON dump (the booster is not Clone, so it is rebuilt on load).
    GradientBoosting(String),
}

/// A trained, calibrated churn model with what it needs to read a profile.
#[derive(Serialize, Deserialize)]
pub struct ChurnModel {
    pub spec: FeatureSpec,
    pub report: TrainReport,
    scorer: Scorer,
    /// Platt scaling of the raw score: p = sigmoid(a * raw + b).
    calibration: (f64, f64),
    #[serde(skip)]
    booster: Option<GradientBooster>,
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
    Ok(if gbt_better {
        let json = gbt.json_dump().map_err(|e| TrainError::Boosting(e.to_string()))?;
        ChurnModel {
            spec,
            report,
            scorer: Scorer::GradientBoosting(json),
            calibration: gbt_calibration,
            booster: Some(gbt),
        }
    } else {
        ChurnModel {
            spec,
            report,
            scorer: Scorer::Logistic(logistic),
            calibration: lr_calibration,
            booster: None,
        }
    })
}

#[derive(Debug, thiserror::Error)]
#[error("stored churn model cannot be read: {0}")]
pub struct LoadError(String);

impl ChurnModel {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialisable")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LoadError> {
        let mut model: ChurnModel = serde_json::from_slice(bytes).map_err(|e| LoadError(e.to_string()))?;
        if let Scorer::GradientBoosting(json) = &model.scorer {
            model.booster = Some(GradientBooster::from_json(json).map_err(|e| LoadError(e.to_string()))?);
        }
        Ok(model)
    }

    /// Calibrated probabilities alone, for row-major feature rows (faster than [`Self::score`]).
    pub fn probabilities(&self, x: &[f64], rows: usize) -> Vec<f64> {
        let cols = self.spec.len();
        let (a, b) = self.calibration;
        let raw: Vec<f64> = match (&self.scorer, &self.booster) {
            (Scorer::GradientBoosting(_), Some(booster)) => {
                let mut column_major = vec![0.0; rows * cols];
                for r in 0..rows {
                    for c in 0..cols {
                        column_major[c * rows + r] = x[r * cols + c];
                    }
                }
                booster.predict(&Matrix::new(&column_major, rows, cols), true)
            }
            (Scorer::Logistic(lr), _) => {
                (0..rows).map(|r| lr.log_odds(&x[r * cols..(r + 1) * cols])).collect()
            }
            (Scorer::GradientBoosting(_), None) => unreachable!("boosters are rebuilt on load"),
        };
        raw.into_iter().map(|z| sigmoid(a * z + b)).collect()
    }

    /// Calibrated probabilities and reasons for row-major feature rows.
    pub fn score(&self, x: &[f64], rows: usize) -> Vec<Score> {
        let cols = self.spec.len();
        let names = self.spec.names();
        let (a, b) = self.calibration;
        let mut contributions = vec![0.0; rows * cols];
        let raw: Vec<f64> = match (&self.scorer, &self.booster) {
            (Scorer::GradientBoosting(_), Some(booster)) => {
                let mut column_major = vec![0.0; rows * cols];
                for r in 0..rows {
                    for c in 0..cols {
                        column_major[c * rows + r] = x[r * cols + c];
                    }
                }
                let m = Matrix::new(&column_major, rows, cols);
                let parts = booster.predict_contributions(&m, ContributionsMethod::Weight, true);
                // One row of parts: cols contributions, then the bias; with leaf weights they sum
                // to the raw prediction, so no second pass over the trees is needed.
                (0..rows)
                    .map(|r| {
                        let row = &parts[r * (cols + 1)..(r + 1) * (cols + 1)];
                        contributions[r * cols..(r + 1) * cols].copy_from_slice(&row[..cols]);
                        row.iter().sum()
                    })
                    .collect()
            }
            (Scorer::Logistic(lr), _) => (0..rows)
                .map(|r| {
                    lr.contributions(
                        &x[r * cols..(r + 1) * cols],
                        &mut contributions[r * cols..(r + 1) * cols],
                    )
                })
                .collect(),
            (Scorer::GradientBoosting(_), None) => unreachable!("boosters are rebuilt on load"),
        };
        (0..rows)
            .map(|r| {
                let row = &contributions[r * cols..(r + 1) * cols];
                let mut order: Vec<usize> = (0..cols).filter(|&c| row[c] > 0.0).collect();
                order.sort_by(|&i, &j| row[j].total_cmp(&row[i]));
                Score {
                    probability: sigmoid(a * raw[r] + b),
                    reasons: order
                        .into_iter()
                        .take(REASONS)
                        .map(|c| (names[c].clone(), x[r * cols + c], row[c] * a.signum()))
                        .collect(),
                }
            })
            .collect()
    }
}
