//! Running the server: storage, ingestion and the API wired together, with graceful shutdown.

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use whisperer_api::AppState;
use whisperer_models::ChurnModels;
use whisperer_profiles::{EngineConfig, ProfileEngine};
use whisperer_store::Store;
use whisperer_store_postgres::PgStore;
use whisperer_store_sqlite::SqliteStore;

use crate::config::Config;

/// Opens the store the config names: PostgreSQL when a database URL is set, else SQLite.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.database_url {
        Some(url) => Arc::new(
            PgStore::connect(url)
                .await
                .with_context(|| format!("cannot open {}", crate::config::redact_url(url)))?,
        ),
        None => Arc::new(
            SqliteStore::open(&config.data_dir)
                .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?,
        ),
    })
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: axum::Router,
    pub addr: SocketAddr,
    grace: std::time::Duration,
    profiles: ProfileEngine,
    churn: Arc<ChurnModels>,
    decisions: whisperer_decide::service::DecisionService,
    sender: whisperer_deliver::Sender,
}

impl Server {
    pub async fn bind(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let mut registry = prometheus_client::registry::Registry::default();
        let ingestor =
            Arc::new(config.ingest.build(store.clone(), &mut registry).context("invalid [ingest] config")?);
        let profiles = ProfileEngine::new(store.clone(), EngineConfig::default());
        let churn = Arc::new(ChurnModels::new(store.clone()));
        let state = AppState::new(store, ingestor, registry, Some(profiles.clone()), Some(churn.clone()))
            .with_sender_config(config.delivery.sender_config())
            .with_decide_acknowledge(config.decide.acknowledge);
        let decisions = state.decisions().clone();
        let sender = state.sender().clone();
        let app = whisperer_api::router(state);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            app,
            addr,
            grace: config.shutdown_grace.as_std(),
            profiles,
            churn,
            decisions,
            sender,
        })
    }

    /// The live profile engine this server runs.
    pub fn profiles(&self) -> ProfileEngine {
        self.profiles.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// (their events are committed before they are answered) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_tx, mut stopping) = tokio::sync::watch::channel(false);
        let grace = self.grace;
        let mut engine_stop = stopping.clone();
        let engine = tokio::spawn(self.profiles.run(async move {
            let _ = engine_stop.wait_for(|s| *s).await;
        }));
        // New churn models (from `whisperer churn train`) go into service within two seconds.
        let mut models_stop = stopping.clone();
        tokio::spawn(self.churn.run(std::time::Duration::from_secs(2), async move {
            let _ = models_stop.wait_for(|s| *s).await;
        }));
        // The decision learner: outcomes, policy state, campaign and rule changes (every 0.5 s).
        let learner = self.decisions.spawn();
        // The outbox sender: due messages rendered, checked and delivered (idle polls every 100 ms).
        let sending = self.sender.spawn(std::time::Duration::from_millis(100));
        let service = self.app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(self.listener, service).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        tokio::select! {
            result = serve => result.context("server failed")?,
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish within the grace period"),
        }
        // The learner's commits are atomic: stopping it between two loses nothing.
        learner.abort();
        // A message claimed but not recorded stays claimed until its lease runs out; the next
        // start resends it only where providers drop duplicates (see whisperer_deliver::sender).
        sending.abort();
        // The engine stops with the server and commits what it has folded in.
        if let Err(e) = engine.await {
            tracing::error!(error = %e, "profile engine task failed");
        }
        Ok(())
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining in-flight requests");
}
