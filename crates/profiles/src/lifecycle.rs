//! Lifecycle stages and the rules that move a profile between them.
//!
//! Rules, in order, with `recency` = days since the last activity (since the first event for
//! someone never active) and the thresholds of [`LifecycleConfig`]:
//! 1. recency > `churned_days` → churned; > `dormant_days` → dormant; > `at_risk_days` → at-risk.
//! 2. Active again after being dormant or churned → resurrected, for `resurrected_days`.
//! 3. Score ≥ `engaged_score` → engaged.
//! 4. Once engaged, a week with half the activity of the one before or less and a score below
//!    `engaged_score` → at-risk.
//! 5. Active on at least `activation_active_days` days (last 90), or ever past new → activated.
//! 6. Otherwise new.

use serde::{Deserialize, Serialize};

use crate::profile::{DAY_MS, Features};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    New = 0,
    Activated = 1,
    Engaged = 2,
    AtRisk = 3,
    Dormant = 4,
    Churned = 5,
    Resurrected = 6,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::New,
        Stage::Activated,
        Stage::Engaged,
        Stage::AtRisk,
        Stage::Dormant,
        Stage::Churned,
        Stage::Resurrected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Activated => "activated",
            Stage::Engaged => "engaged",
            Stage::AtRisk => "at-risk",
            Stage::Dormant => "dormant",
            Stage::Churned => "churned",
            Stage::Resurrected => "resurrected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }
}

/// Thresholds of the lifecycle rules; per workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    pub activation_active_days: u32,
    pub engaged_score: f64,
    pub at_risk_days: f64,
    pub dormant_days: f64,
    pub churned_days: f64,
    pub resurrected_days: f64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            activation_active_days: 3,
            engaged_score: 55.0,
            at_risk_days: 7.0,
            dormant_days: 14.0,
            churned_days: 30.0,
            resurrected_days: 14.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid lifecycle config: {0}")]
pub struct ConfigError(String);

/// The workspace setting the thresholds are stored under.
pub const LIFECYCLE_SETTING: &str = "lifecycle";

impl LifecycleConfig {
    /// Reads thresholds from JSON (missing ones take their defaults) and checks them.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: LifecycleConfig = serde_json::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let days = [self.at_risk_days, self.dormant_days, self.churned_days, self.resurrected_days];
        if days.iter().any(|d| !d.is_finite() || *d <= 0.0) {
            return Err(ConfigError("day thresholds must be positive numbers".into()));
        }
        if !(self.at_risk_days < self.dormant_days && self.dormant_days < self.churned_days) {
            return Err(ConfigError("at_risk_days < dormant_days < churned_days must hold".into()));
        }
        if !(0.0..=100.0).contains(&self.engaged_score) {
            return Err(ConfigError("engaged_score must be within 0..=100".into()));
        }
        Ok(())
    }

    /// The stage a profile is in at `as_of`, given the stage it was in and since when.
    pub fn stage(&self, f: &Features, score: f64, previous: Stage, since: Option<i64>, as_of: i64) -> Stage {
        let recency = f.recency_days.unwrap_or(f.tenure_days);
        if recency > self.churned_days {
            return Stage::Churned;
        }
        if recency > self.dormant_days {
            return Stage::Dormant;
        }
        if recency > self.at_risk_days {
            return Stage::AtRisk;
        }
        if f.recency_days.is_none() {
            return Stage::New;
        }
        match previous {
            Stage::Dormant | Stage::Churned => return Stage::Resurrected,
            Stage::Resurrected
                if since.is_some_and(|s| ((as_of - s) as f64) < self.resurrected_days * DAY_MS as f64) =>
            {
                return Stage::Resurrected;
            }
            _ => {}
        }
        if score >= self.engaged_score {
            return Stage::Engaged;
        }
        let slumping = f.events_prev_7d > 0 && f.events_7d * 2 <= f.events_prev_7d;
        if matches!(previous, Stage::Engaged | Stage::AtRisk) && slumping {
            return Stage::AtRisk;
        }
        if f.active_days_90d >= self.activation_active_days || previous != Stage::New {
            return Stage::Activated;
        }
        Stage::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(recency: f64, active_days: u32) -> Features {
        Features {
            recency_days: Some(recency),
            tenure_days: 60.0,
            events_total: 10,
            events_1d: 0,
            events_7d: 3,
            events_30d: 10,
            events_90d: 10,
            events_prev_7d: 3,
            active_days_7d: 2,
            active_days_30d: active_days,
            active_days_90d: active_days,
            sessions_total: 5,
            sessions_7d: 2,
            sessions_30d: 5,
            distinct_events: 2,
            distinct_features: 0,
            trend: 0.0,
            revenue_total: 0.0,
            revenue_events: 0,
            days_since_revenue: None,
            usual_hour: None,
        }
    }

    #[test]
    fn recency_moves_down_the_ladder_and_a_return_resurrects() {
        let c = LifecycleConfig::default();
        let at = |rec, prev| c.stage(&active(rec, 5), 30.0, prev, Some(0), 0);
        assert_eq!(at(1.0, Stage::New), Stage::Activated);
        assert_eq!(at(8.0, Stage::Activated), Stage::AtRisk);
        assert_eq!(at(15.0, Stage::AtRisk), Stage::Dormant);
        assert_eq!(at(31.0, Stage::Dormant), Stage::Churned);
        assert_eq!(at(0.0, Stage::Churned), Stage::Resurrected);
        assert_eq!(c.stage(&active(0.0, 5), 80.0, Stage::Resurrected, Some(0), 20 * DAY_MS), Stage::Engaged);
        assert_eq!(
            c.stage(&active(0.0, 5), 80.0, Stage::Resurrected, Some(0), 2 * DAY_MS),
            Stage::Resurrected
        );
    }

    #[test]
    fn new_until_activated_and_engaged_by_score() {
        let c = LifecycleConfig::default();
        assert_eq!(c.stage(&active(0.0, 1), 20.0, Stage::New, None, 0), Stage::New);
        assert_eq!(c.stage(&active(0.0, 3), 20.0, Stage::New, None, 0), Stage::Activated);
        assert_eq!(c.stage(&active(0.0, 3), 70.0, Stage::Activated, None, 0), Stage::Engaged);
        let slump = Features { events_7d: 1, events_prev_7d: 8, ..active(0.0, 9) };
        assert_eq!(c.stage(&slump, 40.0, Stage::Engaged, None, 0), Stage::AtRisk);
        assert_eq!(c.stage(&slump, 40.0, Stage::Activated, None, 0), Stage::Activated);
    }

    #[test]
    fn config_reads_partial_json_and_names_bad_fields() {
        let c = LifecycleConfig::from_json(r#"{"churned_days": 60}"#).unwrap();
        assert_eq!((c.churned_days, c.dormant_days), (60.0, 14.0));
        let err = LifecycleConfig::from_json(r#"{"churn_days": 60}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `churn_days`"), "{err}");
        let err = LifecycleConfig::from_json(r#"{"churned_days": 5}"#).unwrap_err().to_string();
        assert!(err.contains("dormant_days < churned_days"), "{err}");
    }

    #[test]
    fn config_is_checked() {
        assert!(LifecycleConfig::default().validate().is_ok());
        let bad = LifecycleConfig { dormant_days: 40.0, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("dormant_days"));
        let bad = LifecycleConfig { at_risk_days: f64::NAN, ..Default::default() };
        assert!(bad.validate().is_err());
    }
}
