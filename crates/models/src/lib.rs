//! Churn prediction trained per workspace from its own log.
//!
//! - [`dataset`] replays the log in time order and takes examples at past cut-offs: features
//!   from events up to the cut-off, the label from the horizon after it;
//! - [`logistic`] (our own: small and dependency-free) and gradient-boosted trees (forust-ml)
//!   are the two candidates; [`churn`] validates both on a later cut-off, keeps the better,
//!   calibrates it (Platt scaling) and explains each score with feature contributions;
//! - [`metrics`]: AUC, log-loss, Brier score;
//! - [`serving`] keeps each workspace's newest model in service, swapped atomically.

pub mod churn;
pub mod dataset;
pub mod logistic;
pub mod metrics;
pub mod serving;

pub use churn::{ChurnModel, ModelKind, Score, TrainError, TrainReport, train};
pub use dataset::{FeatureSpec, Replay};
pub use serving::{CHURN_MODEL_KIND, ChurnModels, Served};
