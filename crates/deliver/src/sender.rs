//! The outbox sender: claims due messages, composes them, sends them through the workspace's
//! router and records what happened, as message states and as events in the log.
//!
//! Exactly-once where the world allows it: a message is claimed with a lease before its send.
//! A sender that dies mid-send leaves the lease to run out; the message is then sent again
//! only when every provider of its channel drops duplicates by message id (Twilio's
//! idempotency token, a webhook's `Idempotency-Key`), and otherwise becomes a dead letter
//! marked `outcome_unknown` for an operator to look at and re-drive. A message is never sent
//! twice without someone deciding it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use whisperer_channels::Message;
use whisperer_channels::router::{Outcome, Router};
use whisperer_compliance::ComplianceRules;
use whisperer_core::{Millis, NewEvent, WorkspaceId};
use whisperer_decide::record::DeliveryJob;
use whisperer_store::{MessageQuery, MessageRecord, MessageStatus, MessageUpdate, Store, StoreError};

use crate::compose::{ComposeError, Composer, WorkspaceContent};
use crate::config::{DeliveryConfig, ProviderFactory, SETTING};
use crate::tracking::TrackingKey;

/// Most results recorded in one write.
const RECORD_CHUNK: usize = 64;

/// The setting holding a workspace's compliance rules.
pub const COMPLIANCE_SETTING: &str = "compliance";
/// The setting holding a workspace's LLM configuration (`whisperer_llm::LlmConfig` as JSON).
pub const LLM_SETTING: &str = "llm";
/// Where a workspace's LLM budget counters are kept between restarts.
pub const LLM_BUDGET_SETTING: &str = "llm_budget";

/// The setting holding a workspace's tracking key.
pub const TRACKING_KEY_SETTING: &str = "tracking_key";

/// How the sender paces itself.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// Most messages claimed at once.
    pub batch: usize,
    /// Most sends in flight at once per workspace.
    pub concurrency: usize,
    /// How long a claim holds; a sender that has not finished by then is presumed dead.
    pub lease: Duration,
    /// How often configuration is read again.
    pub reload: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        // A claim no larger than the sends in flight: a claimed message waiting for a free
        // slot would also count as in flight if the sender died.
        SenderConfig {
            batch: 64,
            concurrency: 64,
            lease: Duration::from_secs(120),
            reload: Duration::from_secs(1),
        }
    }
}

/// A workspace's delivery as last loaded.
pub struct WorkspaceDelivery {
    pub config: DeliveryConfig,
    pub router: Router,
    pub rules: ComplianceRules,
    pub key: TrackingKey,
    pub llm: Option<whisperer_llm::Generator>,
    texts: (Option<String>, Option<String>, Option<String>),
    /// When the settings were last compared with the store's.
    checked_at: Mutex<Instant>,
    /// The LLM budget counters as last saved.
    budget_saved: Mutex<String>,
}

impl WorkspaceDelivery {
    pub fn content(&self) -> WorkspaceContent<'_> {
        WorkspaceContent {
            rules: &self.rules,
            tracking: self.config.tracking.base_url.as_deref().map(|b| (b.trim_end_matches('/'), &self.key)),
            opens_and_clicks: self.config.tracking.opens_and_clicks,
            preview: false,
            llm: self.llm.as_ref(),
            translate_missing_locales: self.config.content.translate_missing_locales,
            default_locale: self.config.content.default_locale.as_deref(),
        }
    }
}

/// Why a workspace cannot deliver.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("delivery setting: {0}")]
    Config(#[from] whisperer_channels::ConfigError),
    #[error("compliance setting: {0}")]
    Rules(String),
    #[error("llm setting: {0}")]
    Llm(String),
}

/// Labels of a delivery result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResultLabels {
    pub channel: String,
    /// The provider that took it or refused it last (empty when none was tried).
    pub provider: String,
    /// `sent`, `retry`, `failed` or `dead`.
    pub outcome: String,
    /// For anything but `sent`: the stable code (`compliance`, `no_recipient`,
    /// `undeliverable`, `retrying`, `retries_exhausted`, `refused`, `outcome_unknown`, …).
    pub reason: String,
}

/// What the sender exposes on `/metrics`.
#[derive(Clone, Default)]
pub struct SenderMetrics {
    pub results: prometheus_client::metrics::family::Family<
        ResultLabels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl SenderMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "whisperer_delivery_results",
            "Outbox messages by channel, provider, outcome and reason",
            self.results.clone(),
        );
    }

    fn count(&self, channel: &str, update: &MessageUpdate) {
        let outcome = match update.status {
            MessageStatus::Sent => "sent",
            MessageStatus::Queued => "retry",
            MessageStatus::Failed => "failed",
            MessageStatus::Dead => "dead",
            MessageStatus::Sending => return,
        };
        let reason = match update.status {
            MessageStatus::Sent => String::new(),
            _ => update
                .error
                .as_deref()
                .and_then(|e| serde_json::from_str::<Value>(e).ok())
                .and_then(|e| e.get("code").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default(),
        };
        let labels = ResultLabels {
            channel: channel.to_owned(),
            provider: update.provider.clone().unwrap_or_default(),
            outcome: outcome.into(),
            reason,
        };
        self.results.get_or_create(&labels).inc();
    }
}

/// What one round did, for tests and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub claimed: usize,
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
    pub dead: usize,
    /// Expired claims sent again (deduplicating providers) or dead-lettered.
    pub recovered: usize,
}

/// Sends every workspace's due messages.
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    composer: Arc<Composer>,
    factory: Arc<dyn ProviderFactory>,
    config: SenderConfig,
    workspaces: tokio::sync::Mutex<HashMap<WorkspaceId, Arc<WorkspaceDelivery>>>,
    /// Tracking keys never change once made: read once per workspace, not per link followed.
    keys: Mutex<HashMap<WorkspaceId, TrackingKey>>,
    metrics: SenderMetrics,
}

impl Sender {
    pub fn new(
        store: Arc<dyn Store>,
        composer: Arc<Composer>,
        factory: Arc<dyn ProviderFactory>,
        config: SenderConfig,
    ) -> Self {
        let inner = Inner {
            store,
            composer,
            factory,
            config,
            workspaces: Default::default(),
            keys: Default::default(),
            metrics: Default::default(),
        };
        Sender { inner: Arc::new(inner) }
    }

    /// A sender like this one (same store, composer, providers and counters) paced by `config`.
    pub fn reconfigured(&self, config: SenderConfig) -> Sender {
        let inner = Inner {
            store: self.inner.store.clone(),
            composer: self.inner.composer.clone(),
            factory: self.inner.factory.clone(),
            config,
            workspaces: Default::default(),
            keys: Default::default(),
            metrics: self.inner.metrics.clone(),
        };
        Sender { inner: Arc::new(inner) }
    }

    /// The sender's counters, to register where `/metrics` reads them.
    pub fn metrics(&self) -> &SenderMetrics {
        &self.inner.metrics
    }

    pub fn composer(&self) -> &Arc<Composer> {
        &self.inner.composer
    }

    /// What makes the providers no config describes (in-app).
    pub fn factory(&self) -> &dyn ProviderFactory {
        self.inner.factory.as_ref()
    }

    /// A workspace's tracking key (made on first use); None when there is no such workspace,
    /// so a forged link cannot make one.
    pub async fn tracking_key(&self, ws: &WorkspaceId) -> Result<Option<TrackingKey>, StoreError> {
        if let Some(key) = lock(&self.inner.keys).get(ws) {
            return Ok(Some(key.clone()));
        }
        if self.inner.store.workspace(ws).await?.is_none() {
            return Ok(None);
        }
        let key = tracking_key(self.inner.store.as_ref(), ws).await?;
        lock(&self.inner.keys).insert(ws.clone(), key.clone());
        Ok(Some(key))
    }

    /// Drops what is loaded of a workspace, so its next use reads the settings again (a server
    /// that changed them itself need not wait for the next check).
    pub async fn forget(&self, ws: &WorkspaceId) {
        self.inner.workspaces.lock().await.remove(ws);
    }

    /// A workspace's delivery, loaded again when its settings changed.
    pub async fn workspace(&self, ws: &WorkspaceId) -> Result<Arc<WorkspaceDelivery>, SenderError> {
        let current = self.inner.workspaces.lock().await.get(ws).cloned();
        if let Some(d) = &current
            && lock(&d.checked_at).elapsed() < self.inner.config.reload
        {
            return Ok(d.clone());
        }
        let store = &self.inner.store;
        let texts = (
            store.setting(ws, SETTING).await?,
            store.setting(ws, COMPLIANCE_SETTING).await?,
            store.setting(ws, LLM_SETTING).await?,
        );
        let loaded = match current {
            // Unchanged: keep the router, whose breakers and buckets carry state.
            Some(d) if d.texts == texts => {
                *lock(&d.checked_at) = Instant::now();
                return Ok(d);
            }
            _ => Arc::new(self.load(ws, texts).await?),
        };
        self.inner.workspaces.lock().await.insert(ws.clone(), loaded.clone());
        Ok(loaded)
    }

    async fn load(
        &self,
        ws: &WorkspaceId,
        texts: (Option<String>, Option<String>, Option<String>),
    ) -> Result<WorkspaceDelivery, SenderError> {
        let config = match &texts.0 {
            Some(t) => DeliveryConfig::parse(t)?,
            None => DeliveryConfig::default(),
        };
        let router = config.build(self.inner.factory.as_ref())?;
        let rules = match &texts.1 {
            Some(t) => {
                serde_json::from_str::<ComplianceRules>(t).map_err(|e| SenderError::Rules(e.to_string()))?
            }
            None => {
                ComplianceRules::new(Default::default()).map_err(|e| SenderError::Rules(e.to_string()))?
            }
        };
        let key =
            self.tracking_key(ws).await?.ok_or_else(|| StoreError::NotFound(format!("workspace {ws}")))?;
        let llm = match &texts.2 {
            Some(t) => {
                let config: whisperer_llm::LlmConfig =
                    serde_json::from_str(t).map_err(|e| SenderError::Llm(e.to_string()))?;
                let generator = config.build().map_err(|e| SenderError::Llm(e.to_string()))?;
                // Spending survives restarts and configuration changes.
                if let Some(saved) = self.inner.store.setting(ws, LLM_BUDGET_SETTING).await?
                    && let Ok(snapshot) = serde_json::from_str(&saved)
                {
                    generator.restore_budget(snapshot);
                }
                Some(generator)
            }
            None => None,
        };
        let budget_saved = Mutex::new(
            llm.as_ref()
                .map(|l| serde_json::to_string(&l.budget_snapshot()).expect("serialisable"))
                .unwrap_or_default(),
        );
        Ok(WorkspaceDelivery {
            config,
            router,
            rules,
            key,
            llm,
            texts,
            checked_at: Mutex::new(Instant::now()),
            budget_saved,
        })
    }

    /// One round for a workspace: recover expired claims, claim due messages, send them, record
    /// the results.
    pub async fn round(&self, ws: &WorkspaceId) -> Result<Round, SenderError> {
        let delivery = self.workspace(ws).await?;
        let store = &self.inner.store;
        let now = Millis::now();
        let mut round = Round::default();

        let expired = store.expired_messages(ws, now, self.inner.config.batch).await?;
        if !expired.is_empty() {
            let updates: Vec<MessageUpdate> = expired
                .iter()
                .map(|m| {
                    let resend = whisperer_channels::Channel::parse(&m.channel)
                        .and_then(|c| delivery.router.route(c))
                        .is_some_and(|r| r.deduplicates());
                    if resend {
                        let mut u = MessageUpdate::new(&m.id, MessageStatus::Sending, MessageStatus::Queued, now);
                        u.due_at = Some(now);
                        u.error = Some(error_json("lease_expired", "the sender stopped mid-send; sending again, the providers drop duplicates"));
                        u
                    } else {
                        let mut u = MessageUpdate::new(&m.id, MessageStatus::Sending, MessageStatus::Dead, now);
                        u.error = Some(error_json(
                            "outcome_unknown",
                            "the sender stopped mid-send and the provider cannot drop a duplicate: re-drive only if the message did not arrive",
                        ));
                        u
                    }
                })
                .collect();
            round.recovered = store.update_messages(ws, &updates).await? as usize;
            for (m, u) in expired.iter().zip(&updates) {
                self.inner.metrics.count(&m.channel, u);
            }
        }

        let lease_until = Millis(now.0 + self.inner.config.lease.as_millis() as i64);
        // No more than the slowest route carries at once (an SMTP pool's connections): every
        // claimed message is then truly in flight.
        let batch = self
            .inner
            .config
            .batch
            .min(self.inner.config.concurrency)
            .min(delivery.router.capacity().unwrap_or(usize::MAX))
            .max(1);
        let claimed = store.claim_messages(ws, now, lease_until, batch).await?;
        round.claimed = claimed.len();
        if claimed.is_empty() {
            return Ok(round);
        }
        let channels: HashMap<String, String> =
            claimed.iter().map(|m| (m.id.clone(), m.channel.clone())).collect();
        // Results are recorded as they come in (whatever is ready, up to a chunk), so a crash
        // mid-round leaves only the sends truly in flight with an unknown outcome.
        let mut results = std::pin::pin!(
            futures_util::stream::iter(claimed)
                .map(|m| self.send_one(ws, &delivery, m))
                .buffer_unordered(self.inner.config.concurrency.max(1))
                .ready_chunks(RECORD_CHUNK)
        );
        while let Some(chunk) = results.next().await {
            let mut updates = Vec::with_capacity(chunk.len());
            let mut events = Vec::new();
            for (update, event) in chunk {
                self.inner.metrics.count(channels.get(&update.id).map_or("", String::as_str), &update);
                match update.status {
                    MessageStatus::Sent => round.sent += 1,
                    MessageStatus::Queued => round.retried += 1,
                    MessageStatus::Failed => round.failed += 1,
                    MessageStatus::Dead => round.dead += 1,
                    MessageStatus::Sending => {}
                }
                updates.push(update);
                events.extend(event);
            }
            // Events first: a crash between the two leaves the messages to expire, and the
            // events (whose ids derive from the message) are not written twice.
            if !events.is_empty() {
                store.append(events, Millis(now.0 - 30 * 86_400_000)).await?;
            }
            store.update_messages(ws, &updates).await?;
        }
        if let Some(llm) = &delivery.llm
            && round.claimed > 0
        {
            // Written only when something was spent since the last save.
            let snapshot = serde_json::to_string(&llm.budget_snapshot()).expect("serialisable");
            let changed = *lock(&delivery.budget_saved) != snapshot;
            if changed {
                store.set_setting(ws, LLM_BUDGET_SETTING, &snapshot, Millis::now()).await?;
                *lock(&delivery.budget_saved) = snapshot;
            }
        }
        Ok(round)
    }

    async fn send_one(
        &self,
        ws: &WorkspaceId,
        delivery: &WorkspaceDelivery,
        record: MessageRecord,
    ) -> (MessageUpdate, Option<NewEvent>) {
        let now = Millis::now();
        let retry = &delivery.config.retry;
        let body: Value = serde_json::from_str(&record.body).unwrap_or(Value::Null);
        let stored_message =
            body.get("message").and_then(|m| serde_json::from_value::<Message>(m.clone()).ok());
        let job = body.get("job").and_then(|j| serde_json::from_value::<DeliveryJob>(j.clone()).ok());
        let (message, new_body) = match (stored_message, job) {
            (Some(m), _) => (m, None),
            (None, Some(job)) => {
                match self.inner.composer.compose(ws, &delivery.content(), &record, &job).await {
                    Ok(m) => {
                        let new_body = json!({"job": job, "message": m}).to_string();
                        (m, Some(new_body))
                    }
                    Err(e) => return (self.compose_failed(&record, e, now, retry.max_attempts), None),
                }
            }
            (None, None) => {
                let mut u =
                    MessageUpdate::new(&record.id, MessageStatus::Sending, MessageStatus::Failed, now);
                u.error = Some(error_json("bad_body", "the outbox entry has neither a job nor a message"));
                return (u, None);
            }
        };
        let outcome = delivery.router.send(&message).await;
        let mut update = MessageUpdate::new(&record.id, MessageStatus::Sending, MessageStatus::Sent, now);
        update.body = new_body;
        let mut event = None;
        match outcome {
            Outcome::Sent { provider, receipt, tries } => {
                event = message_event(
                    ws,
                    &record,
                    &message,
                    "sent",
                    "Message Sent",
                    json!({"provider": provider}),
                );
                update.provider = Some(provider);
                update.provider_message_id = receipt.provider_message_id;
                if tries.len() > 1 {
                    update.error = Some(json!({"code": "failed_over", "tries": tries}).to_string());
                }
            }
            Outcome::Retry { after, tries } => {
                if record.attempts >= i64::from(retry.max_attempts) {
                    update.status = MessageStatus::Dead;
                    update.error = Some(
                        json!({"code": "retries_exhausted", "attempts": record.attempts, "tries": tries})
                            .to_string(),
                    );
                } else {
                    let wait = retry.backoff(record.attempts as u32, rand::random::<f64>(), Some(after));
                    update.status = MessageStatus::Queued;
                    update.due_at = Some(Millis(now.0 + wait.as_millis() as i64));
                    update.error = Some(json!({"code": "retrying", "tries": tries}).to_string());
                }
            }
            Outcome::Undeliverable { error, tries } => {
                update.status = MessageStatus::Failed;
                update.provider = tries.last().map(|t| t.provider.clone());
                update.error = Some(json!({"code": "undeliverable", "tries": tries}).to_string());
                event = message_event(
                    ws,
                    &record,
                    &message,
                    "bounced",
                    "Message Bounced",
                    json!({"type": "hard", "reason": error.message, "code": error.code}),
                );
            }
            Outcome::Refused { tries } => {
                update.status = MessageStatus::Dead;
                update.error = Some(json!({"code": "refused", "tries": tries}).to_string());
            }
        }
        (update, event)
    }

    fn compose_failed(
        &self,
        record: &MessageRecord,
        e: ComposeError,
        now: Millis,
        max_attempts: u32,
    ) -> MessageUpdate {
        let mut u = MessageUpdate::new(&record.id, MessageStatus::Sending, MessageStatus::Failed, now);
        if e.retryable && record.attempts < i64::from(max_attempts) {
            u.status = MessageStatus::Queued;
            u.due_at = Some(Millis(now.0 + 1_000 * record.attempts.max(1)));
        }
        u.error = Some(serde_json::to_string(&e).expect("errors serialise"));
        u
    }

    /// Whether a workspace has anything to do now: a due message or an expired claim. A read,
    /// so idle workspaces cost no write transaction.
    pub async fn has_work(&self, ws: &WorkspaceId) -> Result<bool, StoreError> {
        let now = Millis::now();
        let due = MessageQuery {
            status: Some(MessageStatus::Queued),
            due_by: Some(now),
            limit: 1,
            ..Default::default()
        };
        Ok(!self.inner.store.messages(ws, &due).await?.is_empty()
            || !self.inner.store.expired_messages(ws, now, 1).await?.is_empty())
    }

    /// Sends every workspace's due messages until the task is dropped: a round wherever there is
    /// work, a short pause when there was none anywhere.
    pub fn spawn(&self, idle: Duration) -> tokio::task::JoinHandle<()> {
        let sender = self.clone();
        tokio::spawn(async move {
            let mut workspaces = Vec::new();
            let mut listed = Instant::now() - Duration::from_secs(3_600);
            loop {
                if listed.elapsed() >= Duration::from_secs(10) {
                    match sender.inner.store.list_workspaces().await {
                        Ok(list) => workspaces = list.into_iter().map(|w| w.id).collect(),
                        Err(e) => tracing::warn!(error = %e, "delivery cannot list workspaces"),
                    }
                    listed = Instant::now();
                }
                let mut busy = false;
                for ws in &workspaces {
                    match sender.has_work(ws).await {
                        Ok(false) => continue,
                        Ok(true) => {}
                        Err(e) => {
                            tracing::warn!(workspace = %ws, error = %e, "delivery cannot read the outbox");
                            continue;
                        }
                    }
                    match sender.round(ws).await {
                        Ok(r) => busy |= r.claimed > 0,
                        Err(e) => tracing::warn!(workspace = %ws, error = %e, "delivery round failed"),
                    }
                }
                if !busy {
                    tokio::time::sleep(idle).await;
                }
            }
        })
    }
}

fn error_json(code: &str, message: &str) -> String {
    json!({"code": code, "message": message}).to_string()
}

/// A message event in the log for the message's user; its id derives from the message, so it
/// is written once however often the round repeats.
fn message_event(
    ws: &WorkspaceId,
    record: &MessageRecord,
    message: &Message,
    what: &str,
    name: &str,
    extra: Value,
) -> Option<NewEvent> {
    let user_id = message.user_id.clone()?;
    let mut properties = json!({
        "message_id": record.id,
        "channel": message.channel.as_str(),
        "decision_id": record.decision_id,
        "campaign": record.campaign,
    });
    if let (Value::Object(p), Value::Object(extra)) = (&mut properties, extra) {
        p.extend(extra);
    }
    Some(NewEvent::whisperer_track(
        ws,
        format!("{what}-{}", record.id),
        name,
        Some(user_id),
        None,
        Millis::now(),
        properties,
    ))
}

/// The workspace's tracking key, made on first use.
pub async fn tracking_key(store: &dyn Store, ws: &WorkspaceId) -> Result<TrackingKey, StoreError> {
    if let Some(key) =
        store.setting(ws, TRACKING_KEY_SETTING).await?.as_deref().and_then(TrackingKey::from_secret)
    {
        return Ok(key);
    }
    store.set_setting(ws, TRACKING_KEY_SETTING, &TrackingKey::generate_secret(), Millis::now()).await?;
    // Two processes may both have made one: whichever the store kept is the key.
    let stored = store.setting(ws, TRACKING_KEY_SETTING).await?.unwrap_or_default();
    TrackingKey::from_secret(&stored)
        .ok_or_else(|| StoreError::Corrupt("tracking key setting is not a key".into()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
