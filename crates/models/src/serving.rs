//! The churn models a server scores with: the newest version of each workspace's model, swapped
//! in atomically when a new one is stored (by `whisperer churn train`, even in another process).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use whisperer_core::WorkspaceId;
use whisperer_store::{Store, StoreError};

use crate::churn::ChurnModel;

/// The kind churn models are stored under.
pub const CHURN_MODEL_KIND: &str = "churn";

/// A model in service and its version.
#[derive(Debug)]
pub struct Served {
    pub version: i64,
    pub model: ChurnModel,
}

pub struct ChurnModels {
    store: Arc<dyn Store>,
    models: RwLock<HashMap<WorkspaceId, Arc<Served>>>,
}

impl ChurnModels {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, models: RwLock::default() }
    }

    /// The model in service for a workspace, if it has one. Readers keep the `Arc` they got
    /// while a newer model replaces it for later readers.
    pub fn get(&self, ws: &WorkspaceId) -> Option<Arc<Served>> {
        self.models.read().expect("lock").get(ws).cloned()
    }

    /// Loads every workspace's newest model where it is newer than the one in service;
    /// returns how many were swapped in.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        let mut swapped = 0;
        for ws in self.store.list_workspaces().await? {
            let newest = self.store.list_models(&ws.id, CHURN_MODEL_KIND).await?.last().map(|m| m.version);
            let current = self.get(&ws.id).map(|s| s.version);
            if newest.is_none() || newest == current {
                continue;
            }
            let Some((version, bytes)) = self.store.latest_model(&ws.id, CHURN_MODEL_KIND, None).await?
            else {
                continue;
            };
            match ChurnModel::from_bytes(&bytes) {
                Ok(model) => {
                    let served = Arc::new(Served { version: version.version, model });
                    self.models.write().expect("lock").insert(ws.id.clone(), served);
                    swapped += 1;
                    tracing::info!(workspace = %ws.id, version = version.version, "churn model in service");
                }
                Err(e) => {
                    tracing::error!(workspace = %ws.id, version = version.version, error = %e, "cannot load churn model")
                }
            }
        }
        Ok(swapped)
    }

    /// Refreshes every `interval` until `stop` resolves.
    pub async fn run(self: Arc<Self>, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.refresh().await {
                tracing::error!(error = %e, "cannot refresh churn models");
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
