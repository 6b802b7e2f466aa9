//! A workspace's tracking plan: a JSON Schema per event name for the `properties` of track calls.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happens to an event that breaks the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PlanMode {
    /// Store it and flag the violations in its enrichment.
    #[default]
    Warn,
    /// Refuse it with the violations as the reason.
    Reject,
}

impl PlanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanMode::Warn => "warn",
            PlanMode::Reject => "reject",
        }
    }
}

/// The plan as set through the API or CLI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TrackingPlan {
    #[serde(default)]
    pub mode: PlanMode,
    /// Event name to the JSON Schema its `properties` must satisfy. Events not named here pass.
    #[serde(default)]
    pub events: BTreeMap<String, serde_json::Value>,
}
