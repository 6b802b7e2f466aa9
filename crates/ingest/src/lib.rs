//! Ingestion: Segment-protocol bodies in, durably stored events out.
//!
//! `decode` (untrusted bytes → validated drafts) → tracking plan check → `enrich` (timestamps,
//! user agent, geo, ip) → `commit` (group commit to the store; the caller is answered only
//! after the events are durable). Nothing here knows HTTP; the API layer maps results to it.

pub mod commit;
pub mod decode;
pub mod enrich;
pub mod geo;
pub mod metrics;
pub mod plan;
pub mod user_agent;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use whisperer_core::event::AppendOutcome;
use whisperer_core::time::HumanDuration;
use whisperer_core::tracking_plan::PlanMode;
use whisperer_core::{Millis, WorkspaceId};
use whisperer_store::{Store, StoreError};

pub use decode::{DecodeError, DecodedRequest, Draft, Endpoint, Limits, MessageError, Reason};
pub use enrich::RequestMeta;

use crate::commit::Committer;
use crate::enrich::Enricher;
use crate::metrics::{IngestMetrics, ReasonLabel};
use crate::plan::TrackingPlans;

/// Ingestion settings, the `[ingest]` table of the config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body, compressed or not.
    pub max_request_bytes: usize,
    /// Largest single message.
    pub max_message_bytes: usize,
    /// A message id seen within this window is dropped as a duplicate.
    pub dedup_window: HumanDuration,
    /// Store IPs with the host part zeroed (and rewrite `context.ip` in the stored message).
    pub anonymize_ip: bool,
    /// MaxMind city database for geo enrichment.
    pub geoip_database: Option<PathBuf>,
    /// Upper bound of events in one group commit.
    pub max_commit_events: usize,
    /// How soon a tracking-plan change made elsewhere takes effect.
    pub tracking_plan_refresh: HumanDuration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_request_bytes: limits.max_request_bytes,
            max_message_bytes: limits.max_message_bytes,
            dedup_window: HumanDuration::from_secs(7 * 86_400),
            anonymize_ip: false,
            geoip_database: None,
            max_commit_events: 20_000,
            tracking_plan_refresh: HumanDuration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Geo(#[from] geo::GeoError),
    #[error("invalid ingest config: {0}")]
    Invalid(String),
}

impl IngestConfig {
    /// Makes the running ingestor; spawns its commit and dedup-pruning tasks on the current runtime.
    pub fn build(
        &self,
        store: Arc<dyn Store>,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Result<Ingestor, BuildError> {
        if self.max_message_bytes == 0 || self.max_message_bytes > self.max_request_bytes {
            return Err(BuildError::Invalid(
                "max_message_bytes must be between 1 and max_request_bytes".into(),
            ));
        }
        if self.dedup_window.millis <= 0 {
            return Err(BuildError::Invalid("dedup_window must be positive".into()));
        }
        let geo = self.geoip_database.as_deref().map(geo::GeoIp::open).transpose()?;
        let metrics = IngestMetrics::new(registry);
        let (committer, _commit_task) = Committer::spawn(
            store.clone(),
            self.dedup_window.millis,
            self.max_commit_events.max(1),
            metrics.clone(),
        );
        let pruner = tokio::spawn(prune_dedup(store.clone(), self.dedup_window.millis));
        Ok(Ingestor {
            limits: Limits {
                max_request_bytes: self.max_request_bytes,
                max_message_bytes: self.max_message_bytes,
            },
            enricher: Enricher::new(geo, self.anonymize_ip),
            plans: TrackingPlans::new(store, self.tracking_plan_refresh.as_std()),
            committer,
            metrics,
            pruner,
        })
    }
}

/// Forgets message ids older than the dedup window, hourly.
async fn prune_dedup(store: Arc<dyn Store>, window_ms: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match store.prune_dedup(Millis::now().saturating_add(-window_ms)).await {
            Ok(n) => tracing::debug!(pruned = n, "dedup window pruned"),
            Err(e) => tracing::warn!(error = %e, "dedup pruning failed"),
        }
    }
}

/// One refused message of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub index: usize,
    #[serde(serialize_with = "serialize_reason")]
    pub code: Reason,
    pub message: String,
}

fn serialize_reason<S: serde::Serializer>(r: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.code())
}

/// What happened to the messages of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
}

pub struct Ingestor {
    limits: Limits,
    enricher: Enricher,
    plans: TrackingPlans,
    committer: Committer,
    metrics: IngestMetrics,
    pruner: tokio::task::JoinHandle<()>,
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        self.pruner.abort();
    }
}

impl Ingestor {
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decompresses and decodes a request body. CPU only; bounded by the limits.
    pub fn decode(
        &self,
        endpoint: Endpoint,
        body: &[u8],
        content_encoding: Option<&str>,
    ) -> Result<DecodedRequest, DecodeError> {
        let plain = decode::decompress(body, content_encoding, &self.limits)?;
        decode::decode(endpoint, &plain, &self.limits)
    }

    /// Counts a request refused as a whole, for the metrics.
    pub fn count_refused_request(&self, reason: &'static str) {
        self.metrics.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Checks, enriches and durably stores the messages of one request for `workspace`.
    /// Returns only after every accepted event is committed.
    pub async fn ingest(
        &self,
        workspace: &WorkspaceId,
        messages: Vec<Result<Draft, MessageError>>,
        meta: &RequestMeta,
    ) -> Result<IngestReport, StoreError> {
        self.metrics.request_messages.observe(messages.len() as f64);
        let plan = self.plans.get(workspace).await?;
        let mut report = IngestReport::default();
        let mut events = Vec::with_capacity(messages.len());
        for (index, message) in messages.into_iter().enumerate() {
            let draft = match message {
                Ok(draft) => draft,
                Err(e) => {
                    report.rejected.push(Rejection { index, code: e.reason, message: e.message });
                    continue;
                }
            };
            let violations = plan.as_ref().map(|p| p.check(&draft)).unwrap_or_default();
            if !violations.is_empty() && plan.as_ref().is_some_and(|p| p.mode == PlanMode::Reject) {
                report.rejected.push(Rejection {
                    index,
                    code: Reason::TrackingPlanViolation,
                    message: format!(
                        "event {:?} breaks the tracking plan: {}",
                        draft.name.as_deref().unwrap_or_default(),
                        violations.join("; ")
                    ),
                });
                continue;
            }
            events.push(self.enricher.enrich(workspace, draft, meta, &violations));
        }
        for r in &report.rejected {
            self.metrics.rejected.get_or_create(&ReasonLabel { reason: r.code.code() }).inc();
        }
        for outcome in self.committer.commit(events).await? {
            match outcome {
                AppendOutcome::Stored { .. } => report.accepted += 1,
                AppendOutcome::Duplicate => report.duplicates += 1,
            }
        }
        self.metrics.accepted.inc_by(report.accepted as u64);
        self.metrics.duplicates.inc_by(report.duplicates as u64);
        Ok(report)
    }

    /// Forgets the cached tracking plan of a workspace after this process changed it.
    pub fn tracking_plan_changed(&self, workspace: &WorkspaceId) {
        self.plans.invalidate(workspace);
    }
}
