//! The decision service of a server: one [`Engine`] per workspace, loaded from the store on
//! first use, with every decision stored before it is answered and a learner that follows the
//! log, attributes outcomes and commits them with the policy states and its checkpoint in one
//! transaction (so a crash repeats work, never loses or doubles it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use whisperer_core::identity::IdKind;
use whisperer_core::{EventType, Millis, PersonId, WorkspaceId};
use whisperer_profiles::ProfileEngine;
use whisperer_store::{ConsumerCommit, DecisionQuery, LearnerCommit, Store, StoreError};

use crate::engine::{DecideError, Decision, Draw, Engine, LATE_GRACE_MS, Outcome};
use crate::fatigue::{FATIGUE_SETTING, FatigueRules};
use crate::policy::PolicyState;
use crate::record::{from_record, to_record, to_update};
use crate::{CampaignSpec, UserContext};

/// The learner's consumer name (checkpoint and policy rows keyed by campaign number).
pub const LEARNER: &str = "decisions";
/// Log page the learner reads at a time.
const PAGE: usize = 2_000;
/// How often the background task reloads campaigns and rules and runs the learner.
const TICK: Duration = Duration::from_millis(500);

/// A user's churn probability now, when a model is in service.
pub type ChurnScorer = Arc<dyn Fn(&WorkspaceId, PersonId, i64) -> Option<f64> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("unknown campaign {0:?}")]
    UnknownCampaign(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A real-time decision request.
#[derive(Clone, Copy, Debug)]
pub struct DecideRequest<'a> {
    pub user_id: &'a str,
    pub campaign: &'a str,
    pub context: Option<&'a Map<String, Value>>,
}

struct WsState {
    engine: Engine,
    /// Campaign id → (stored version, number).
    versions: HashMap<String, (i64, i64)>,
    rules_text: Option<String>,
    checkpoint: i64,
    /// User id → person and merged traits, as last read from the store; an event of the user
    /// (identify, alias, anything) drops the entry, so the next decision reads them again.
    users: HashMap<String, KnownUser>,
}

/// A user as the store knows them: person, whether the store has them, merged traits.
type KnownUser = (PersonId, bool, Arc<Map<String, Value>>);

/// Most users remembered per workspace before the cache starts afresh.
const USER_CACHE: usize = 200_000;

#[derive(Clone)]
pub struct DecisionService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    profiles: Option<ProfileEngine>,
    churn: Option<ChurnScorer>,
    workspaces: tokio::sync::Mutex<HashMap<WorkspaceId, Arc<Mutex<WsState>>>>,
    writes: tokio::sync::mpsc::Sender<Write>,
}

/// A decision waiting to be stored, and who to tell when it is.
struct Write {
    ws: WorkspaceId,
    record: whisperer_store::DecisionRecord,
    done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// Most decisions stored in one transaction.
const WRITE_BATCH: usize = 1_000;

/// Group commit: every decision waiting when the previous transaction ends goes into the next,
/// so the durable write costs one commit per batch, not per decision.
async fn write_decisions(store: Arc<dyn Store>, mut rx: tokio::sync::mpsc::Receiver<Write>) {
    let mut batch: Vec<Write> = Vec::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let mut by_ws: HashMap<WorkspaceId, Vec<Write>> = HashMap::new();
        for w in batch.drain(..) {
            by_ws.entry(w.ws.clone()).or_default().push(w);
        }
        for (ws, writes) in by_ws {
            let records: Vec<_> = writes.iter().map(|w| w.record.clone()).collect();
            let result = store.insert_decisions(&ws, &records).await;
            for w in writes {
                let _ = w.done.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::Unavailable(e.to_string())),
                });
            }
        }
    }
}

impl DecisionService {
    /// A service over `store`; must be created inside a tokio runtime (it starts the task that
    /// stores decisions).
    pub fn new(store: Arc<dyn Store>, profiles: Option<ProfileEngine>, churn: Option<ChurnScorer>) -> Self {
        let (writes, rx) = tokio::sync::mpsc::channel(4 * WRITE_BATCH);
        tokio::spawn(write_decisions(store.clone(), rx));
        DecisionService {
            inner: Arc::new(Inner { store, profiles, churn, workspaces: Default::default(), writes }),
        }
    }

    /// Decides for one user and campaign, and stores the decision before returning it.
    pub async fn decide(&self, ws: &WorkspaceId, req: DecideRequest<'_>) -> Result<Decision, ServiceError> {
        let slot = self.workspace(ws).await?;
        let known_campaign = slot.lock().expect("lock").engine.campaign(req.campaign).is_some();
        if !known_campaign {
            // Applied a moment ago: do not wait for the next reload.
            self.reload_campaigns(ws, &slot).await?;
        }
        let store = &self.inner.store;
        let now = Millis::now().0;
        let cached = slot.lock().expect("lock").users.get(req.user_id).cloned();
        let (person_id, known, traits) = match cached {
            Some(c) => c,
            None => {
                let person = store.find_person(ws, IdKind::User, req.user_id).await?;
                let (person_id, known) = match &person {
                    Some(p) => (p.id, true),
                    None => (unknown_person(req.user_id), false),
                };
                let mut traits = Map::new();
                if known {
                    for t in store.identify_traits(ws, person_id).await? {
                        if let Value::Object(t) = t {
                            traits.extend(t);
                        }
                    }
                }
                let entry = (person_id, known, Arc::new(traits));
                let mut state = slot.lock().expect("lock");
                if state.users.len() >= USER_CACHE {
                    state.users.clear();
                }
                state.users.insert(req.user_id.to_owned(), entry.clone());
                entry
            }
        };
        let traits: &Map<String, Value> = &traits;
        let view =
            if known { self.inner.profiles.as_ref().and_then(|p| p.view(ws, person_id, now)) } else { None };
        let churn = if known { self.inner.churn.as_ref().and_then(|c| c(ws, person_id, now)) } else { None };
        let engagement = view.as_ref().map(|v| v.engagement.score);
        let user = UserContext {
            person: person_id,
            known: known && view.is_some(),
            traits,
            features: view.as_ref().map(|v| &v.features),
            engagement,
            stage: view.as_ref().map(|v| v.stage),
            churn,
            zone: view.as_ref().and_then(|v| v.time_zone.as_deref()).and_then(|z| z.parse().ok()),
            request: req.context,
        };
        let id = decision_id();
        let decision = {
            let mut state = slot.lock().expect("lock");
            let draw = Draw { decision_id: &id, unit: req.user_id, u: rand::random::<f64>(), now };
            state.engine.decide(req.campaign, &user, Some(req.user_id), draw).map_err(|e| match e {
                DecideError::UnknownCampaign(c) => ServiceError::UnknownCampaign(c),
            })?
        };
        let (done, stored) = tokio::sync::oneshot::channel();
        let write = Write { ws: ws.clone(), record: to_record(&decision), done };
        let result = match self.inner.writes.send(write).await {
            Ok(()) => stored
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("decision writer stopped".into()))),
            Err(_) => Err(StoreError::Unavailable("decision writer stopped".into())),
        };
        if let Err(e) = result {
            // The engine counted a message that will not go out: start again from the store.
            self.forget(ws).await;
            return Err(e.into());
        }
        Ok(decision)
    }

    /// Runs the learner and reloads campaigns and rules of every loaded workspace, and loads
    /// workspaces that have campaigns, until the task is dropped.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut ticks = 0u64;
            loop {
                if ticks.is_multiple_of(60)
                    && let Err(e) = service.load_workspaces_with_campaigns().await
                {
                    tracing::warn!(error = %e, "decision service cannot list workspaces");
                }
                ticks += 1;
                let loaded: Vec<WorkspaceId> =
                    service.inner.workspaces.lock().await.keys().cloned().collect();
                for ws in loaded {
                    if let Err(e) = service.tick(&ws).await {
                        tracing::warn!(workspace = %ws, error = %e, "decision learner failed; reloading the workspace");
                        service.forget(&ws).await;
                    }
                }
                tokio::time::sleep(TICK).await;
            }
        })
    }

    /// One round for a workspace: campaigns, rules, then the learner until the log is read.
    pub async fn tick(&self, ws: &WorkspaceId) -> Result<(), ServiceError> {
        let slot = self.workspace(ws).await?;
        self.reload_campaigns(ws, &slot).await?;
        self.reload_rules(ws, &slot).await?;
        while self.learn_once(ws, &slot, Millis::now().0).await? == PAGE {}
        Ok(())
    }

    /// Reads a page of the log, learns from it, closes expired windows, and commits.
    async fn learn_once(
        &self,
        ws: &WorkspaceId,
        slot: &Arc<Mutex<WsState>>,
        now: i64,
    ) -> Result<usize, ServiceError> {
        let store = &self.inner.store;
        let after = slot.lock().expect("lock").checkpoint;
        let events = store.events_after(ws, after, PAGE).await?;
        let (commit, checkpoint) = {
            let mut state = slot.lock().expect("lock");
            let mut outcomes: Vec<Outcome> = Vec::new();
            for e in &events {
                let props = if e.event.event_type == EventType::Track {
                    serde_json::from_str::<Value>(&e.event.raw).ok().and_then(|v| match v.get("properties") {
                        Some(Value::Object(p)) => Some(p.clone()),
                        _ => None,
                    })
                } else {
                    None
                };
                for id in [&e.event.user_id, &e.event.previous_id].into_iter().flatten() {
                    state.users.remove(id);
                }
                let name = e.event.name.as_deref().unwrap_or("");
                state.engine.observe(e.person_id, name, e.event.timestamp.0, props.as_ref(), &mut outcomes);
            }
            state.engine.expire(now, &mut outcomes);
            state.engine.refresh();
            let checkpoint = events.last().map_or(after, |e| e.seq);
            let dirty = state.engine.take_dirty_policies();
            if outcomes.is_empty() && dirty.is_empty() && checkpoint == after {
                return Ok(0);
            }
            let upserts = dirty
                .into_iter()
                .filter_map(|(id, policy)| Some((state.versions.get(&id)?.1, policy.to_json().into_bytes())))
                .collect();
            let commit = LearnerCommit {
                consumer: ConsumerCommit {
                    expected: after,
                    checkpoint,
                    meta: Vec::new(),
                    upserts,
                    deletes: Vec::new(),
                },
                outcomes: outcomes.iter().map(to_update).collect(),
            };
            (commit, checkpoint)
        };
        store.commit_learning(LEARNER, ws, commit).await?;
        slot.lock().expect("lock").checkpoint = checkpoint;
        Ok(events.len())
    }

    async fn reload_campaigns(
        &self,
        ws: &WorkspaceId,
        slot: &Arc<Mutex<WsState>>,
    ) -> Result<(), ServiceError> {
        let records = self.inner.store.campaigns(ws).await?;
        let mut state = slot.lock().expect("lock");
        for r in records {
            if state.versions.get(&r.id).is_some_and(|(v, _)| *v == r.version) {
                continue;
            }
            match CampaignSpec::parse(&r.definition).and_then(|s| s.compile(r.version)) {
                Ok(c) => {
                    state.engine.put_campaign(c, None);
                    state.versions.insert(r.id.clone(), (r.version, r.num));
                }
                Err(e) => {
                    tracing::warn!(workspace = %ws, campaign = %r.id, error = %e, "stored campaign does not compile")
                }
            }
        }
        Ok(())
    }

    async fn reload_rules(&self, ws: &WorkspaceId, slot: &Arc<Mutex<WsState>>) -> Result<(), ServiceError> {
        let text = self.inner.store.setting(ws, FATIGUE_SETTING).await?;
        let mut state = slot.lock().expect("lock");
        if state.rules_text != text {
            let rules = text.as_deref().map(FatigueRules::from_json).transpose();
            match rules {
                Ok(rules) => state.engine.set_rules(rules.unwrap_or_default()),
                Err(e) => {
                    tracing::warn!(workspace = %ws, error = %e, "stored fatigue rules are invalid; keeping the previous")
                }
            }
            state.rules_text = text;
        }
        Ok(())
    }

    async fn load_workspaces_with_campaigns(&self) -> Result<(), ServiceError> {
        for w in self.inner.store.list_workspaces().await? {
            if !self.inner.store.campaigns(&w.id).await?.is_empty() {
                self.workspace(&w.id).await?;
            }
        }
        Ok(())
    }

    async fn forget(&self, ws: &WorkspaceId) {
        self.inner.workspaces.lock().await.remove(ws);
    }

    /// A workspace's state, loaded from the store on first use: campaigns with their stored
    /// policy states, rules, the learner's checkpoint, and the decisions still being watched.
    async fn workspace(&self, ws: &WorkspaceId) -> Result<Arc<Mutex<WsState>>, ServiceError> {
        let mut map = self.inner.workspaces.lock().await;
        if let Some(slot) = map.get(ws) {
            return Ok(slot.clone());
        }
        let store = &self.inner.store;
        let rules_text = store.setting(ws, FATIGUE_SETTING).await?;
        let rules = rules_text.as_deref().and_then(|t| FatigueRules::from_json(t).ok()).unwrap_or_default();
        let checkpoint = store.consumer_state(LEARNER, ws).await?.map_or(0, |s| s.checkpoint);
        let mut policies: HashMap<i64, PolicyState> = HashMap::new();
        for (num, bytes) in store.consumer_rows(LEARNER, ws).await? {
            if let Some(p) = std::str::from_utf8(&bytes).ok().and_then(|t| PolicyState::from_json(t).ok()) {
                policies.insert(num, p);
            }
        }
        let mut state = WsState {
            engine: Engine::new(rules),
            versions: HashMap::new(),
            rules_text,
            checkpoint,
            users: HashMap::new(),
        };
        for r in store.campaigns(ws).await? {
            match CampaignSpec::parse(&r.definition).and_then(|s| s.compile(r.version)) {
                Ok(c) => {
                    state.engine.put_campaign(c, policies.remove(&r.num));
                    state.versions.insert(r.id.clone(), (r.version, r.num));
                }
                Err(e) => {
                    tracing::warn!(workspace = %ws, campaign = %r.id, error = %e, "stored campaign does not compile")
                }
            }
        }
        let now = Millis::now().0;
        let mut query = DecisionQuery {
            deadline_from: Some(Millis(now - LATE_GRACE_MS)),
            limit: 10_000,
            ..DecisionQuery::default()
        };
        loop {
            let page = store.decisions(ws, &query).await?;
            let Some(last) = page.last() else { break };
            query.before = Some((last.at, last.id.clone()));
            for r in &page {
                if let Some(d) = from_record(r) {
                    state.engine.restore(&d, r.outcome.as_deref().map(|o| o == "converted"));
                }
            }
            if page.len() < query.limit {
                break;
            }
        }
        let slot = Arc::new(Mutex::new(state));
        map.insert(ws.clone(), slot.clone());
        Ok(slot)
    }
}

/// A stable stand-in person for a user id the store has never seen (negative, so it never
/// meets a real one): their holdout, fatigue and outcomes stay together.
fn unknown_person(user_id: &str) -> PersonId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    -((h >> 1) as i64) - 1
}

/// `dec_` and 24 hex digits: time-ordered, unique without coordination.
fn decision_id() -> String {
    format!("dec_{:012x}{:012x}", Millis::now().0, rand::random::<u64>() & 0xffff_ffff_ffff)
}
