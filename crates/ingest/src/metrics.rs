//! Prometheus metrics of ingestion, registered into the registry the server exposes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone)]
pub struct IngestMetrics {
    pub accepted: Counter,
    pub duplicates: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub commit_seconds: Histogram,
    pub commit_events: Histogram,
    pub request_messages: Histogram,
}

impl IngestMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self {
            accepted: Counter::default(),
            duplicates: Counter::default(),
            rejected: Family::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.0002, 2.0, 16)),
            commit_events: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            request_messages: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
        };
        registry.register("whisperer_events_accepted", "Events durably stored", metrics.accepted.clone());
        registry.register(
            "whisperer_events_duplicate",
            "Events dropped because their messageId was already stored",
            metrics.duplicates.clone(),
        );
        registry.register("whisperer_events_rejected", "Events refused, by reason", metrics.rejected.clone());
        registry.register(
            "whisperer_commit_duration_seconds",
            "Time of one group commit to the store, fsync included",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "whisperer_commit_batch_events",
            "Events written by one group commit",
            metrics.commit_events.clone(),
        );
        registry.register(
            "whisperer_request_batch_messages",
            "Messages per ingestion request",
            metrics.request_messages.clone(),
        );
        metrics
    }
}
