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
use whisperer_store::{
    ConsumerCommit, DecisionQuery, DecisionRecord, LearnerCommit, MessageRecord, Store, StoreError,
};

use crate::engine::{DecideError, Decision, Draw, Engine, LATE_GRACE_MS, Outcome, fnv1a};
use crate::fatigue::{FATIGUE_SETTING, FatigueRules};
use crate::policy::PolicyState;
use crate::record::{from_record, to_outbox, to_record, to_update};
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

/// When `POST /v1/decide` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acknowledge {
    /// Once the decision is durable: a crash loses no decision that was answered.
    #[default]
    Stored,
    /// As soon as the decision is queued for storing, a few milliseconds before it is durable.
    /// A crash (or a store failure) in that window loses the decision from the audit trail
    /// although the caller has it: its outcome is not learned and its message, when Whisperer
    /// delivers it, is not sent. Decisions of triggers always wait (the learner's checkpoint
    /// must not pass a decision that is not stored).
    Queued,
}

/// A real-time decision request.
#[derive(Clone, Copy, Debug)]
pub struct DecideRequest<'a> {
    pub user_id: &'a str,
    pub campaign: &'a str,
    pub context: Option<&'a Map<String, Value>>,
    /// Whether Whisperer delivers the chosen message (else the caller does).
    pub deliver: bool,
}

struct WsState {
    engine: Engine,
    /// Campaign id → what is known of its stored version.
    versions: HashMap<String, Stored>,
    rules_text: Option<String>,
    checkpoint: i64,
    /// User id → person and merged traits, as last read from the store; an event of the user
    /// (identify, alias, anything) drops the entry, so the next decision reads them again.
    users: HashMap<String, KnownUser>,
}

/// What the service keeps of a stored campaign version.
struct Stored {
    version: i64,
    /// Stable number: the key of its rows.
    num: i64,
    /// When this version was stored: triggers fire only for events that arrive after it.
    since: i64,
}

/// Events older than this before a campaign was stored never trigger it, even when they arrive
/// later (an import of history must not message anyone).
const TRIGGER_LOOKBACK_MS: i64 = 86_400_000;

/// A user as the store knows them: person, whether the store has them, merged traits.
type KnownUser = (PersonId, bool, Arc<Map<String, Value>>);

/// Most users remembered per workspace before the cache starts afresh.
const USER_CACHE: usize = 200_000;

#[derive(Clone)]
pub struct DecisionService {
    inner: Arc<Inner>,
    acknowledge: Acknowledge,
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
    record: DecisionRecord,
    /// The message the decision sends, when Whisperer delivers it.
    message: Option<MessageRecord>,
    done: Done,
}

/// Told whether a decision is stored.
type Done = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

/// Most decisions stored in one transaction.
const WRITE_BATCH: usize = 1_000;

/// Group commit: every decision waiting when the previous transaction ends goes into the next,
/// so the durable write costs one commit per batch, not per decision.
async fn write_decisions(store: Arc<dyn Store>, mut rx: tokio::sync::mpsc::Receiver<Write>) {
    let mut batch: Vec<Write> = Vec::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        // Moved, not copied, into one group per workspace: each record carries its explanation.
        type Group = (Vec<DecisionRecord>, Vec<MessageRecord>, Vec<Done>);
        let mut by_ws: HashMap<WorkspaceId, Group> = HashMap::new();
        for w in batch.drain(..) {
            let (records, messages, done) = by_ws.entry(w.ws).or_default();
            records.push(w.record);
            messages.extend(w.message);
            done.push(w.done);
        }
        for (ws, (records, messages, done)) in by_ws {
            let result = store.insert_decisions(&ws, &records, &messages).await;
            for done in done {
                let _ = done.send(match &result {
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
            acknowledge: Acknowledge::default(),
        }
    }

    /// When real-time decisions are answered (clones made before keep their own setting).
    pub fn acknowledging(mut self, acknowledge: Acknowledge) -> Self {
        self.acknowledge = acknowledge;
        self
    }

    /// Decides for one user and campaign, and stores the decision before returning it (queues
    /// it, when acknowledging [`Acknowledge::Queued`]).
    pub async fn decide(&self, ws: &WorkspaceId, req: DecideRequest<'_>) -> Result<Decision, ServiceError> {
        let slot = self.workspace(ws).await?;
        let known_campaign = slot.lock().expect("lock").engine.campaign(req.campaign).is_some();
        if !known_campaign {
            // Applied a moment ago: do not wait for the next reload.
            self.reload_campaigns(ws, &slot, Some(req.campaign)).await?;
        }
        let now = Millis::now().0;
        let subject = self.subject(ws, &slot, req.user_id, now).await?;
        let id = decision_id();
        let decision = {
            let mut state = slot.lock().expect("lock");
            let draw = Draw { decision_id: &id, unit: req.user_id, u: rand::random::<f64>(), now };
            let user = subject.context(req.context);
            state.engine.decide(req.campaign, &user, Some(req.user_id), draw).map_err(|e| match e {
                DecideError::UnknownCampaign(c) => ServiceError::UnknownCampaign(c),
            })?
        };
        let wait = self.acknowledge == Acknowledge::Stored;
        self.store_decisions(ws, vec![decision.clone()], req.deliver, wait).await?;
        Ok(decision)
    }

    /// Stores decisions through the group commit; on failure the workspace is reloaded (the
    /// engine counted messages that will not go out).
    /// With `deliver`, decisions to send enqueue their message in the same transaction.
    /// Without `wait` it returns once they are queued, and a failure to store them is logged
    /// (and the workspace reloaded) behind the caller's back.
    async fn store_decisions(
        &self,
        ws: &WorkspaceId,
        decisions: Vec<Decision>,
        deliver: bool,
        wait: bool,
    ) -> Result<(), ServiceError> {
        let mut waiting = Vec::with_capacity(decisions.len());
        for d in &decisions {
            let (done, stored) = tokio::sync::oneshot::channel();
            let message = if deliver { to_outbox(d) } else { None };
            let write = Write { ws: ws.clone(), record: to_record(d), message, done };
            if self.inner.writes.send(write).await.is_err() {
                self.forget(ws).await;
                return Err(StoreError::Unavailable("decision writer stopped".into()).into());
            }
            waiting.push(stored);
        }
        if !wait {
            let (service, ws) = (self.clone(), ws.clone());
            tokio::spawn(async move {
                if let Err(e) = service.await_stored(&ws, waiting).await {
                    tracing::error!(workspace = %ws, error = %e, "answered decisions could not be stored");
                }
            });
            return Ok(());
        }
        self.await_stored(ws, waiting).await
    }

    /// Waits for queued decisions to be stored; on failure the workspace is reloaded.
    async fn await_stored(
        &self,
        ws: &WorkspaceId,
        waiting: Vec<tokio::sync::oneshot::Receiver<Result<(), StoreError>>>,
    ) -> Result<(), ServiceError> {
        for stored in waiting {
            let result = stored
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("decision writer stopped".into())));
            if let Err(e) = result {
                self.forget(ws).await;
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// What the engine needs to know of a user now: person and traits (cached until an event
    /// of the user arrives), live profile, churn probability.
    async fn subject(
        &self,
        ws: &WorkspaceId,
        slot: &Arc<Mutex<WsState>>,
        user_id: &str,
        now: i64,
    ) -> Result<Subject, ServiceError> {
        let store = &self.inner.store;
        let cached = slot.lock().expect("lock").users.get(user_id).cloned();
        let (person, known, traits) = match cached {
            Some(c) => c,
            None => {
                let entry = match store.person_with_traits(ws, IdKind::User, user_id).await? {
                    Some((person, traits)) => (person.id, true, Arc::new(traits)),
                    None => (unknown_person(user_id), false, Arc::new(Map::new())),
                };
                let mut state = slot.lock().expect("lock");
                if state.users.len() >= USER_CACHE {
                    state.users.clear();
                }
                state.users.insert(user_id.to_owned(), entry.clone());
                entry
            }
        };
        let view =
            if known { self.inner.profiles.as_ref().and_then(|p| p.view(ws, person, now)) } else { None };
        let churn = if known { self.inner.churn.as_ref().and_then(|c| c(ws, person, now)) } else { None };
        Ok(Subject { person, known, traits, view, churn })
    }

    /// Decides for campaigns that triggers fired, highest priority first; ids come from the
    /// triggering event, so a replay after a crash finds them already made (and the store keeps
    /// the first).
    async fn decide_triggered(
        &self,
        ws: &WorkspaceId,
        slot: &Arc<Mutex<WsState>>,
        fired: Vec<Fired>,
        checks: Vec<Check>,
        now: i64,
    ) -> Result<usize, ServiceError> {
        // Per user: the campaigns fired, and the last event that may have changed their state.
        let mut by_user: HashMap<String, (Vec<Fired>, Option<Check>)> = HashMap::new();
        for f in fired {
            by_user.entry(f.user_id.clone()).or_default().0.push(f);
        }
        for c in checks {
            let user = c.user_id.clone();
            by_user.entry(user).or_default().1 = Some(c);
        }
        let mut made = Vec::new();
        for (user_id, (mut fired, check)) in by_user {
            let subject = self.subject(ws, slot, &user_id, now).await?;
            let mut state = slot.lock().expect("lock");
            let user = subject.context(None);
            if let Some(check) = check {
                let mut entered = Vec::new();
                // Membership follows every event, history included; only entries caused by
                // events after the campaign was applied decide anything.
                state.engine.triggered_by_state(&user, &mut entered);
                entered.retain(|i| {
                    state.versions.get(state.engine.campaign_id(*i)).is_some_and(|v| {
                        check.received_at >= v.since && check.timestamp >= v.since - TRIGGER_LOOKBACK_MS
                    })
                });
                fired.extend(entered.into_iter().map(|i| Fired {
                    user_id: user_id.clone(),
                    campaign: i,
                    cause: check.cause.clone(),
                }));
            }
            by_user_decide(&mut state, &user, &user_id, fired, now, &mut made);
        }
        let n = made.len();
        if n > 0 {
            self.store_decisions(ws, made, true, true).await?;
        }
        Ok(n)
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
        self.reload_campaigns(ws, &slot, None).await?;
        self.reload_rules(ws, &slot).await?;
        while self.learn_once(ws, &slot, Millis::now().0).await? == PAGE {}
        self.run_schedules(ws, &slot, Millis::now().0).await?;
        Ok(())
    }

    /// Scheduled campaigns that are due decide for every identified user with a live profile
    /// (the audience filters them); the decision ids carry the schedule's period, so a restart
    /// within the same period decides nobody twice.
    async fn run_schedules(
        &self,
        ws: &WorkspaceId,
        slot: &Arc<Mutex<WsState>>,
        now: i64,
    ) -> Result<(), ServiceError> {
        let due: Vec<(usize, i64)> = {
            let mut state = slot.lock().expect("lock");
            let mut due = Vec::new();
            state.engine.due_schedules(now, &mut due);
            due.into_iter()
                .map(|i| {
                    let every = match &state
                        .engine
                        .campaign(state.engine.campaign_id(i))
                        .expect("listed")
                        .spec
                        .trigger
                    {
                        crate::Trigger::Schedule { every } => {
                            crate::spec::duration_ms(every).unwrap_or(86_400_000)
                        }
                        _ => 86_400_000,
                    };
                    (i, now / every)
                })
                .collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        let persons: Vec<PersonId> = self
            .inner
            .profiles
            .as_ref()
            .and_then(|p| p.with_workspace(ws, |w| w.profiles.iter().map(|(id, _)| id).collect()))
            .unwrap_or_default();
        let mut fired = Vec::new();
        for person in persons {
            let Some(user_id) = self.inner.store.person(ws, person).await?.and_then(|p| p.user_id) else {
                continue;
            };
            for &(campaign, period) in &due {
                fired.push(Fired { user_id: user_id.clone(), campaign, cause: format!("schedule-{period}") });
            }
        }
        self.decide_triggered(ws, slot, fired, Vec::new(), now).await?;
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
        let mut outcomes: Vec<Outcome> = Vec::new();
        let mut fired: Vec<Fired> = Vec::new();
        let mut checks: Vec<Check> = Vec::new();
        {
            let mut state = slot.lock().expect("lock");
            let state_triggers = state.engine.has_state_triggers();
            let mut hits = Vec::new();
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
                // Only identified users can be messaged; decisions need their user id.
                let Some(user_id) = &e.event.user_id else { continue };
                hits.clear();
                state.engine.triggered_by_event(name, props.as_ref(), &mut hits);
                // Campaigns act on what happens after they are applied, not on the history a
                // first start (or an import) replays.
                let fresh = |i: &usize| {
                    state.versions.get(state.engine.campaign_id(*i)).is_some_and(|v| {
                        e.event.received_at.0 >= v.since
                            && e.event.timestamp.0 >= v.since - TRIGGER_LOOKBACK_MS
                    })
                };
                hits.retain(fresh);
                let cause = &e.event.message_id;
                fired.extend(hits.iter().map(|&campaign| Fired {
                    user_id: user_id.clone(),
                    campaign,
                    cause: cause.clone(),
                }));
                if state_triggers {
                    checks.push(Check {
                        user_id: user_id.clone(),
                        cause: cause.clone(),
                        received_at: e.event.received_at.0,
                        timestamp: e.event.timestamp.0,
                    });
                }
            }
        }
        if !fired.is_empty() || !checks.is_empty() {
            self.decide_triggered(ws, slot, fired, checks, now).await?;
        }
        let (commit, checkpoint) = {
            let mut state = slot.lock().expect("lock");
            state.engine.expire(now, &mut outcomes);
            state.engine.refresh();
            let checkpoint = events.last().map_or(after, |e| e.seq);
            let dirty = state.engine.take_dirty_policies();
            let members = state.engine.take_dirty_members();
            if outcomes.is_empty() && dirty.is_empty() && members.is_empty() && checkpoint == after {
                return Ok(0);
            }
            // Rows: a campaign's policy state under its number, its segment members under the
            // number negated.
            let mut upserts: Vec<(i64, Vec<u8>)> = dirty
                .into_iter()
                .filter_map(|(id, policy)| {
                    Some((state.versions.get(&id)?.num, policy.to_json().into_bytes()))
                })
                .collect();
            upserts.extend(members.into_iter().filter_map(|(id, persons)| {
                let bytes = persons.iter().flat_map(|p| p.to_le_bytes()).collect();
                Some((-state.versions.get(&id)?.num, bytes))
            }));
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

    /// Puts new or changed campaigns into the engine: every one, or only `id` (a decide call
    /// naming a campaign the engine does not know reads just that row).
    async fn reload_campaigns(
        &self,
        ws: &WorkspaceId,
        slot: &Arc<Mutex<WsState>>,
        id: Option<&str>,
    ) -> Result<(), ServiceError> {
        let records = match id {
            Some(id) => self.inner.store.campaign(ws, id, None).await?.into_iter().collect(),
            None => self.inner.store.campaigns(ws).await?,
        };
        let mut state = slot.lock().expect("lock");
        for r in records {
            if state.versions.get(&r.id).is_none_or(|v| v.version != r.version) {
                install(&mut state, ws, &r, None, None);
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
        let mut members: HashMap<i64, Vec<i64>> = HashMap::new();
        for (key, bytes) in store.consumer_rows(LEARNER, ws).await? {
            if key < 0 {
                let persons = bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                members.insert(-key, persons);
            } else if let Some(p) =
                std::str::from_utf8(&bytes).ok().and_then(|t| PolicyState::from_json(t).ok())
            {
                policies.insert(key, p);
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
            let (policy, persons) = (policies.remove(&r.num), members.remove(&r.num));
            install(&mut state, ws, &r, policy, persons);
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

/// Puts a stored campaign version into the engine, with its stored policy state and segment
/// members when the workspace is being loaded; a version that does not compile is skipped.
fn install(
    state: &mut WsState,
    ws: &WorkspaceId,
    r: &whisperer_store::CampaignRecord,
    policy: Option<PolicyState>,
    members: Option<Vec<i64>>,
) {
    match CampaignSpec::parse(&r.definition).and_then(|s| s.compile(r.version)) {
        Ok(c) => {
            state.engine.put_campaign(c, policy);
            if let Some(persons) = members {
                state.engine.set_members(&r.id, persons);
            }
            state
                .versions
                .insert(r.id.clone(), Stored { version: r.version, num: r.num, since: r.created_at.0 });
        }
        Err(e) => {
            tracing::warn!(workspace = %ws, campaign = %r.id, error = %e, "stored campaign does not compile")
        }
    }
}

/// A campaign a trigger fired for a user, and the event that fired it.
#[derive(Debug)]
struct Fired {
    user_id: String,
    campaign: usize,
    /// The triggering event's message id (or the schedule's tick).
    cause: String,
}

/// A user whose state may have changed with an event, for segment and churn triggers.
struct Check {
    user_id: String,
    cause: String,
    received_at: i64,
    timestamp: i64,
}

/// A user as the engine sees them, owned (see [`Subject::context`]).
struct Subject {
    person: PersonId,
    known: bool,
    traits: Arc<Map<String, Value>>,
    view: Option<whisperer_profiles::engine::ProfileView>,
    churn: Option<f64>,
}

impl Subject {
    fn context<'a>(&'a self, request: Option<&'a Map<String, Value>>) -> UserContext<'a> {
        let view = self.view.as_ref();
        UserContext {
            person: self.person,
            known: self.known && view.is_some(),
            traits: &self.traits,
            features: view.map(|v| &v.features),
            engagement: view.map(|v| v.engagement.score),
            stage: view.map(|v| v.stage),
            churn: self.churn,
            zone: view.and_then(|v| v.time_zone.as_deref()).and_then(|z| z.parse().ok()),
            request,
        }
    }
}

/// Decides the fired campaigns of one user (not already decided for the same cause).
fn by_user_decide(
    state: &mut WsState,
    user: &UserContext<'_>,
    user_id: &str,
    fired: Vec<Fired>,
    now: i64,
    made: &mut Vec<Decision>,
) {
    let mut indexes = Vec::new();
    let mut ids = HashMap::new();
    for f in fired {
        let id = trigger_id(&f.cause, state.engine.campaign_id(f.campaign));
        if !state.engine.is_watching(user.person, &id) && !ids.contains_key(&f.campaign) {
            ids.insert(f.campaign, id);
            indexes.push(f.campaign);
        }
    }
    if indexes.is_empty() {
        return;
    }
    let draws: HashMap<usize, f64> = indexes.iter().map(|i| (*i, rand::random::<f64>())).collect();
    // decide_many asks in priority order; answer by campaign index.
    let decided = state.engine.decide_many(&indexes, user, Some(user_id), &mut |i| Draw {
        decision_id: &ids[&i],
        unit: user_id,
        u: draws[&i],
        now,
    });
    made.extend(decided);
}

/// `trg_` and a hash of the cause and the campaign: the same trigger, the same decision id.
fn trigger_id(cause: &str, campaign: &str) -> String {
    format!("trg_{:016x}", fnv1a(cause.bytes().chain([0xff]).chain(campaign.bytes())))
}

/// A stable stand-in person for a user id the store has never seen (negative, so it never
/// meets a real one): their holdout, fatigue and outcomes stay together.
fn unknown_person(user_id: &str) -> PersonId {
    -((fnv1a(user_id.bytes()) >> 1) as i64) - 1
}

/// `dec_` and 24 hex digits: time-ordered, unique without coordination.
fn decision_id() -> String {
    format!("dec_{:012x}{:012x}", Millis::now().0, rand::random::<u64>() & 0xffff_ffff_ffff)
}
