//! Group commit: many concurrent requests share one durable store transaction.
//!
//! Each request hands its events to the committer and waits. The committer takes everything
//! that is waiting (up to a bound), appends it in one transaction, and answers every request
//! with its own outcomes. While one commit runs, the next group gathers, so under load the
//! cost of an fsync is spread over thousands of events, and with a single request in flight
//! the latency is that of one commit.

use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use whisperer_core::event::AppendOutcome;
use whisperer_core::{Millis, NewEvent};
use whisperer_store::{Store, StoreError};

use crate::metrics::IngestMetrics;

struct Job {
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, StoreError>>,
}

/// Hands events to the commit task. Dropping every handle lets the task finish what it holds.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the commit task. `max_group_events` bounds one transaction; a single request
    /// larger than that still commits whole.
    pub fn spawn(
        store: Arc<dyn Store>,
        dedup_window_ms: i64,
        max_group_events: usize,
        metrics: IngestMetrics,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(4096);
        let task = tokio::spawn(run(rx, store, dedup_window_ms, max_group_events, metrics));
        (Self { jobs }, task)
    }

    /// Durably appends `events`; returns one outcome per event, in order.
    pub async fn commit(&self, events: Vec<NewEvent>) -> Result<Vec<AppendOutcome>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { events, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the committer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the committer stopped before answering".into()))?
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<dyn Store>,
    dedup_window_ms: i64,
    max_group_events: usize,
    metrics: IngestMetrics,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        let mut total = group[0].events.len();
        while total < max_group_events {
            match rx.try_recv() {
                Ok(job) => {
                    total += job.events.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let mut events = Vec::with_capacity(total);
        let mut replies = Vec::with_capacity(group.len());
        for job in group {
            replies.push((job.events.len(), job.reply));
            events.extend(job.events);
        }
        let since = Millis::now().saturating_add(-dedup_window_ms);
        let started = Instant::now();
        let result = store.append(events, since).await;
        metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        metrics.commit_events.observe(total as f64);
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (n, reply) in replies {
                    // A requester that went away (client disconnect) still had its events stored.
                    let _ = reply.send(Ok(outcomes.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = total, "group commit failed");
                for (_, reply) in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }
}
