//! Tracking plans: compiled JSON Schemas per event name, cached per workspace.
//!
//! The cache entry of a workspace lives for a short time (one second by default), so a plan
//! changed by the CLI or another server process takes effect within that time without a
//! restart, and the hot path reads the store at most once per workspace per second.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use whisperer_core::tracking_plan::{PlanMode, TrackingPlan};
use whisperer_core::{EventType, WorkspaceId};
use whisperer_store::{Store, StoreError};

use crate::decode::Draft;

/// A plan whose schemas are compiled and ready to check events.
pub struct CompiledPlan {
    pub mode: PlanMode,
    validators: HashMap<String, jsonschema::Validator>,
}

#[derive(Debug, thiserror::Error)]
#[error("schema of event {event:?} is invalid: {reason}")]
pub struct InvalidPlan {
    pub event: String,
    pub reason: String,
}

/// At most this many findings are reported for one event.
const MAX_VIOLATIONS: usize = 10;

impl CompiledPlan {
    pub fn compile(plan: &TrackingPlan) -> Result<Self, InvalidPlan> {
        let validators = plan
            .events
            .iter()
            .map(|(event, schema)| {
                jsonschema::validator_for(schema)
                    .map(|v| (event.clone(), v))
                    .map_err(|e| InvalidPlan { event: event.clone(), reason: e.to_string() })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { mode: plan.mode, validators })
    }

    /// What is wrong with a track event's `properties` under this plan (empty: nothing).
    pub fn check(&self, draft: &Draft) -> Vec<String> {
        if draft.event_type != EventType::Track {
            return Vec::new();
        }
        let Some(validator) = draft.name.as_deref().and_then(|n| self.validators.get(n)) else {
            return Vec::new();
        };
        let properties = serde_json::from_str::<serde_json::Value>(&draft.raw)
            .ok()
            .and_then(|mut v| v.get_mut("properties").map(serde_json::Value::take))
            .filter(|p| !p.is_null())
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        validator
            .iter_errors(&properties)
            .take(MAX_VIOLATIONS)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() { format!("properties: {e}") } else { format!("properties{path}: {e}") }
            })
            .collect()
    }
}

struct Entry {
    fetched: Instant,
    plan: Option<Arc<CompiledPlan>>,
}

/// Per-workspace plan cache in front of the store.
pub struct TrackingPlans {
    store: Arc<dyn Store>,
    ttl: Duration,
    cache: RwLock<HashMap<WorkspaceId, Entry>>,
}

impl TrackingPlans {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self { store, ttl, cache: RwLock::new(HashMap::new()) }
    }

    /// The workspace's compiled plan, if it has one.
    pub async fn get(&self, workspace: &WorkspaceId) -> Result<Option<Arc<CompiledPlan>>, StoreError> {
        if let Some(entry) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(workspace)
            && entry.fetched.elapsed() < self.ttl
        {
            return Ok(entry.plan.clone());
        }
        let plan = match self.store.tracking_plan(workspace).await? {
            None => None,
            // A stored plan was validated when it was set; one that no longer compiles (a newer
            // library refusing an old schema) is reported and skipped rather than blocking intake.
            Some(plan) => match CompiledPlan::compile(&plan) {
                Ok(compiled) => Some(Arc::new(compiled)),
                Err(e) => {
                    tracing::error!(workspace = %workspace, error = %e, "stored tracking plan does not compile");
                    None
                }
            },
        };
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(workspace.clone(), Entry { fetched: Instant::now(), plan: plan.clone() });
        Ok(plan)
    }

    /// Forgets the cached plan of a workspace, after this process changed it.
    pub fn invalidate(&self, workspace: &WorkspaceId) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).remove(workspace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan() -> CompiledPlan {
        let mut p = TrackingPlan { mode: PlanMode::Reject, ..Default::default() };
        p.events.insert(
            "Order Completed".into(),
            json!({"type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}}),
        );
        CompiledPlan::compile(&p).unwrap()
    }

    fn track(name: &str, raw: serde_json::Value) -> Draft {
        Draft {
            event_type: EventType::Track,
            message_id: None,
            user_id: Some("u".into()),
            anonymous_id: None,
            previous_id: None,
            name: Some(name.into()),
            timestamp: None,
            sent_at: None,
            user_agent: None,
            ip: None,
            raw: raw.to_string(),
        }
    }

    #[test]
    fn checks_planned_events_only() {
        let p = plan();
        assert!(p.check(&track("Order Completed", json!({"properties": {"revenue": 3.5}}))).is_empty());
        let v = p.check(&track("Order Completed", json!({"properties": {"revenue": "3.5"}})));
        assert_eq!(v.len(), 1);
        assert!(v[0].starts_with("properties/revenue"), "{v:?}");
        let v = p.check(&track("Order Completed", json!({})));
        assert!(v[0].contains("revenue"), "{v:?}");
        assert!(p.check(&track("Other", json!({"properties": {"revenue": "x"}}))).is_empty());
    }

    #[test]
    fn invalid_schemas_are_named() {
        let mut p = TrackingPlan::default();
        p.events.insert("Bad".into(), json!({"type": "no-such-type"}));
        let err = CompiledPlan::compile(&p).err().unwrap();
        assert_eq!(err.event, "Bad");
    }
}
