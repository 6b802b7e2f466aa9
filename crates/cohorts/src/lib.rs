//! Retention cohorts over a workspace's durable event log.
//!
//! Persons are grouped by the period (UTC week from Monday, or calendar month) of their first
//! activity — `track`, `page` and `screen` events that are not Whisperer's own
//! ([`whisperer_profiles::observation::SYSTEM_EVENTS`]) — and each cohort's row counts the
//! persons active in each period since. A report can be split by a trait (from identify calls,
//! later calls winning key by key, as `Store::identify_traits` orders them) and by a behaviour
//! ("did event X within their first N days").
//!
//! - [`period`]: the period math (weeks, months, labels);
//! - [`active`]: the compact per-person set of active periods;
//! - [`query`]: what can be asked, and the one parameter parser the API and the CLI share;
//! - [`fold`]: the per-person fold over events and merges, and the matrices;
//! - [`report`]: the plain result types.
//!
//! [`retention`] reads the log once through [`Store::events_after`] in pages, folding each page
//! on a blocking thread while the next one is read. Nothing here knows SQL, HTTP or JSON shapes.

pub mod active;
pub mod fold;
pub mod period;
pub mod query;
pub mod report;

pub use fold::Collector;
pub use period::Period;
pub use query::{Behavior, RetentionQuery};
pub use report::{Cell, CohortRow, Group, Retention, TraitGroup};

use whisperer_core::WorkspaceId;
use whisperer_store::{Store, StoreError};

/// Events read per page of the log.
const PAGE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CohortError {
    /// The query asks for something that cannot be computed; the message says what.
    #[error("{0}")]
    InvalidQuery(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fold's thread died (a bug, never bad data).
    #[error("cohort computation failed: {0}")]
    Internal(String),
}

/// The retention report of a workspace, from one pass over its log.
///
/// Events are read in log order while persons can merge meanwhile: an event read before a merge
/// carries the old person, so once the log is read the merges recorded during the read are
/// applied to the fold (a merge already reflected in what was read changes nothing).
pub async fn retention(
    store: &dyn Store,
    workspace: &WorkspaceId,
    query: &RetentionQuery,
) -> Result<Retention, CohortError> {
    query.validate()?;
    let mut collector = Collector::new(query.clone());
    let mut page = store.events_after(workspace, 0, PAGE).await?;
    // Merges up to the first page's end happened before it was read: every event shows them.
    let settled = page.last().map_or(0, |e| e.seq);
    let mut read_up_to = settled;
    while let Some(last) = page.last().map(|e| e.seq) {
        read_up_to = last;
        let fold = tokio::task::spawn_blocking(move || {
            for event in &page {
                collector.observe(event);
            }
            collector
        });
        let (next, folded) = tokio::join!(store.events_after(workspace, last, PAGE), fold);
        collector = folded.map_err(|e| CohortError::Internal(e.to_string()))?;
        page = next?;
    }
    if read_up_to > settled {
        for merge in store.person_merges(workspace, settled, read_up_to).await? {
            collector.merge(merge.from, merge.into);
        }
    }
    tokio::task::spawn_blocking(move || collector.finish())
        .await
        .map_err(|e| CohortError::Internal(e.to_string()))
}
