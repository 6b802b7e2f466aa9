//! The live profile engine: a consumer of the durable log that keeps every profile of every
//! workspace in memory and persists them with its checkpoint.
//!
//! Per workspace it reads events after its checkpoint in log order, applies the merges the
//! store recorded for them (a merged person's profile is rebuilt from their log), folds each
//! event in with [`Tracker::step`], writes a `Lifecycle Stage Changed` event for every stage
//! change, and commits the changed profiles together with the new checkpoint in one store
//! transaction. A crash loses at most the uncommitted tail, which is read again on restart;
//! the stage-change events of that tail get the same message ids again and dedup drops them.
//! A periodic sweep moves stages that change with time alone (a user who stopped coming back).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use whisperer_core::{Millis, NewEvent, PersonId, StoredEvent, WorkspaceId};
use whisperer_store::{ConsumerCommit, PersonMerge, Store, StoreError};

use crate::dictionary::{Dictionary, DictionaryData};
use crate::lifecycle::{LIFECYCLE_SETTING, LifecycleConfig};
use crate::observation::LIFECYCLE_EVENT;
use crate::profile::Profile;
use crate::table::ProfileTable;
use crate::tracker::{Tracker, Transition};

/// The name this consumer's checkpoint and rows are stored under.
pub const CONSUMER: &str = "profiles";
/// How often workspace settings are read again.
const SETTINGS_REFRESH: Duration = Duration::from_secs(2);
/// Shortest time between two sweeps started by catching up with the log.
const CAUGHT_UP_SWEEP_GAP: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// How long to wait for new events when caught up.
    pub poll_interval: Duration,
    /// Events read per store query.
    pub batch: usize,
    /// Longest time changed profiles stay uncommitted.
    pub commit_interval: Duration,
    /// How often stages are re-evaluated for the passage of time.
    pub sweep_interval: Duration,
    /// Thresholds of workspaces that set none of their own.
    pub lifecycle: LifecycleConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(100),
            batch: 5000,
            commit_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(60),
            lifecycle: LifecycleConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored profile state of workspace {workspace} is corrupt: {reason}")]
    Corrupt { workspace: WorkspaceId, reason: String },
}

/// What one [`ProfileEngine::poll_once`] round did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Polled {
    /// Events folded in, over all workspaces.
    pub read: usize,
    /// Some workspace had a full batch: more may be waiting.
    pub more: bool,
}

/// Everything the engine knows about one workspace.
pub struct WorkspaceProfiles {
    pub tracker: Tracker,
    pub profiles: ProfileTable,
    /// Every event up to here is folded in.
    pub checkpoint: i64,
    committed: i64,
    dirty: HashSet<PersonId>,
    deleted: HashSet<PersonId>,
    last_commit: Instant,
    settings_read: Option<Instant>,
}

impl WorkspaceProfiles {
    fn new(lifecycle: LifecycleConfig) -> Self {
        Self {
            tracker: Tracker { dict: Dictionary::default(), lifecycle },
            profiles: ProfileTable::default(),
            checkpoint: 0,
            committed: 0,
            dirty: HashSet::new(),
            deleted: HashSet::new(),
            last_commit: Instant::now(),
            settings_read: None,
        }
    }
}

/// The engine; cheap to clone, shared by the consumer task and API readers.
#[derive(Clone)]
pub struct ProfileEngine {
    store: Arc<dyn Store>,
    config: Arc<EngineConfig>,
    workspaces: Arc<RwLock<HashMap<WorkspaceId, Arc<RwLock<WorkspaceProfiles>>>>>,
    sweeps: Arc<std::sync::atomic::AtomicU64>,
}

impl ProfileEngine {
    pub fn new(store: Arc<dyn Store>, config: EngineConfig) -> Self {
        Self { store, config: Arc::new(config), workspaces: Default::default(), sweeps: Default::default() }
    }

    /// How many periodic sweeps [`ProfileEngine::run`] has completed.
    pub fn sweeps(&self) -> u64 {
        self.sweeps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs until `stop` resolves, then commits what it has folded in.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        // A sweep runs once the engine has folded in new events and the log has gone quiet
        // (at most every few seconds), so stages are right as of now soon after a burst of
        // traffic or a start, and at least every interval, busy or not.
        let mut last_sweep: Option<Instant> = None;
        let mut folded_since_sweep = true;
        loop {
            let polled = match self.poll_once().await {
                Ok(polled) => polled,
                Err(e) => {
                    tracing::error!(error = %e, "profile engine failed; retrying");
                    Polled::default()
                }
            };
            folded_since_sweep |= polled.read > 0;
            let quiet = polled.read == 0;
            let sweep_due = match last_sweep {
                None => quiet,
                Some(at) => {
                    at.elapsed() >= self.config.sweep_interval
                        || (folded_since_sweep && quiet && at.elapsed() >= CAUGHT_UP_SWEEP_GAP)
                }
            };
            if sweep_due {
                last_sweep = Some(Instant::now());
                folded_since_sweep = false;
                match self.sweep(Millis::now().0).await {
                    Ok(_) => {
                        self.sweeps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => tracing::error!(error = %e, "lifecycle sweep failed"),
                }
            }
            let pause = if polled.more { Duration::ZERO } else { self.config.poll_interval };
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if let Err(e) = self.commit_all(true).await {
            tracing::error!(error = %e, "cannot commit profiles at shutdown");
        }
    }

    /// One round over every workspace: reads one batch each, commits what is due.
    pub async fn poll_once(&self) -> Result<Polled, EngineError> {
        let mut polled = Polled::default();
        for ws in self.store.list_workspaces().await? {
            let state = self.load(&ws.id).await?;
            self.read_settings(&ws.id, &state).await?;
            let read = self.catch_up_batch(&ws.id, &state).await?;
            polled.read += read;
            polled.more |= read >= self.config.batch;
            self.commit_if_due(&ws.id, &state, false).await?;
        }
        Ok(polled)
    }

    /// Folds in everything logged so far and commits it (for tests, tools and shutdown).
    pub async fn catch_up(&self) -> Result<(), EngineError> {
        while self.poll_once().await?.more {}
        self.commit_all(true).await
    }

    async fn commit_all(&self, force: bool) -> Result<(), EngineError> {
        let loaded: Vec<_> =
            self.workspaces.read().expect("lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (ws, state) in loaded {
            self.commit_if_due(&ws, &state, force).await?;
        }
        Ok(())
    }

    /// Takes up the workspace's lifecycle thresholds (`PUT /v1/settings/lifecycle`) within
    /// [`SETTINGS_REFRESH`] of a change.
    async fn read_settings(
        &self,
        ws: &WorkspaceId,
        state: &Arc<RwLock<WorkspaceProfiles>>,
    ) -> Result<(), EngineError> {
        let due = state.read().expect("lock").settings_read.is_none_or(|at| at.elapsed() >= SETTINGS_REFRESH);
        if !due {
            return Ok(());
        }
        let stored = self.store.setting(ws, LIFECYCLE_SETTING).await?;
        let lifecycle = match stored.as_deref().map(LifecycleConfig::from_json) {
            None => self.config.lifecycle.clone(),
            Some(Ok(config)) => config,
            Some(Err(e)) => {
                // The API validates before storing; a bad value can only come from elsewhere.
                tracing::error!(workspace = %ws, error = %e, "ignoring stored lifecycle thresholds");
                self.config.lifecycle.clone()
            }
        };
        let mut s = state.write().expect("lock");
        s.tracker.lifecycle = lifecycle;
        s.settings_read = Some(Instant::now());
        Ok(())
    }

    /// The workspace's state, loaded from the store the first time.
    async fn load(&self, ws: &WorkspaceId) -> Result<Arc<RwLock<WorkspaceProfiles>>, EngineError> {
        if let Some(state) = self.workspaces.read().expect("lock").get(ws) {
            return Ok(state.clone());
        }
        let mut state = WorkspaceProfiles::new(self.config.lifecycle.clone());
        if let Some(stored) = self.store.consumer_state(CONSUMER, ws).await? {
            let corrupt = |reason: String| EngineError::Corrupt { workspace: ws.clone(), reason };
            let data: DictionaryData =
                serde_json::from_slice(&stored.meta).map_err(|e| corrupt(format!("dictionary: {e}")))?;
            state.tracker.dict = Dictionary::from_data(data);
            for (person, bytes) in self.store.consumer_rows(CONSUMER, ws).await? {
                let profile =
                    Profile::decode(&bytes).map_err(|e| corrupt(format!("person {person}: {e}")))?;
                state.profiles.insert(person, profile);
            }
            state.checkpoint = stored.checkpoint;
            state.committed = stored.checkpoint;
        }
        let state = Arc::new(RwLock::new(state));
        Ok(self.workspaces.write().expect("lock").entry(ws.clone()).or_insert(state).clone())
    }

    /// Reads and folds one batch; returns how many events it read.
    async fn catch_up_batch(
        &self,
        ws: &WorkspaceId,
        state: &Arc<RwLock<WorkspaceProfiles>>,
    ) -> Result<usize, EngineError> {
        let checkpoint = state.read().expect("lock").checkpoint;
        let events = self.store.events_after(ws, checkpoint, self.config.batch).await?;
        let Some(last) = events.last().map(|e| e.seq) else { return Ok(0) };
        let merges = self.store.person_merges(ws, checkpoint, last).await?;
        // Rebuilding a merged person needs their log up to the merge, read before folding.
        let groups = group_merges(&merges);
        let mut rebuilt: HashMap<(i64, PersonId), Vec<StoredEvent>> = HashMap::new();
        for (seq, group) in &groups {
            for into in survivors(group) {
                rebuilt.insert((*seq, into), self.store.person_log(ws, into, *seq).await?);
            }
        }

        let mut transitions = Vec::new();
        {
            let mut guard = state.write().expect("lock");
            let s = &mut *guard;
            let mut pending = groups.into_iter().peekable();
            for event in &events {
                while let Some((seq, group)) = pending.next_if(|(seq, _)| *seq <= event.seq) {
                    for m in &group {
                        s.profiles.remove(&m.from);
                        s.dirty.remove(&m.from);
                        s.deleted.insert(m.from);
                    }
                    for into in survivors(&group) {
                        let log = rebuilt.remove(&(seq, into)).unwrap_or_default();
                        let profile = s.tracker.recompute(&log);
                        if profile.is_empty() {
                            s.profiles.remove(&into);
                            continue;
                        }
                        s.profiles.insert(into, profile);
                        s.deleted.remove(&into);
                        s.dirty.insert(into);
                    }
                }
                let profile = s.profiles.get_or_default(event.person_id);
                s.tracker.step(profile, event, &mut transitions);
                s.dirty.insert(event.person_id);
                s.deleted.remove(&event.person_id);
            }
            s.checkpoint = last;
        }
        if let Err(e) = self.write_transitions(ws, transitions).await {
            // The folded state is ahead of what was written: forget it, and read the batch
            // again from the last commit.
            self.workspaces.write().expect("lock").remove(ws);
            return Err(e);
        }
        Ok(events.len())
    }

    async fn commit_if_due(
        &self,
        ws: &WorkspaceId,
        state: &Arc<RwLock<WorkspaceProfiles>>,
        force: bool,
    ) -> Result<(), EngineError> {
        let commit = {
            let s = state.read().expect("lock");
            let due = force || s.last_commit.elapsed() >= self.config.commit_interval;
            if !due || (s.checkpoint == s.committed && s.dirty.is_empty() && s.deleted.is_empty()) {
                return Ok(());
            }
            let upserts = s.dirty.iter().filter_map(|p| Some((*p, s.profiles.get(p)?.encode()))).collect();
            ConsumerCommit {
                expected: s.committed,
                checkpoint: s.checkpoint,
                meta: serde_json::to_vec(&s.tracker.dict.to_data()).expect("serialisable"),
                upserts,
                deletes: s.deleted.iter().copied().collect(),
            }
        };
        let (checkpoint, upserted, deleted) = (commit.checkpoint, commit.upserts.len(), commit.deletes.len());
        let written: BTreeSet<PersonId> = commit.upserts.iter().map(|(p, _)| *p).collect();
        let removed: BTreeSet<PersonId> = commit.deletes.iter().copied().collect();
        if let Err(e) = self.store.commit_consumer(CONSUMER, ws, commit).await {
            if matches!(e, StoreError::Conflict(_)) {
                // Another process consumes this workspace too: start over from what it wrote.
                self.workspaces.write().expect("lock").remove(ws);
            }
            return Err(e.into());
        }
        let mut s = state.write().expect("lock");
        s.committed = checkpoint;
        // Only what was written is clean: the sweep may have touched profiles meanwhile, and
        // it runs on this same task, so nothing else can have.
        s.dirty.retain(|p| !written.contains(p));
        s.deleted.retain(|p| !removed.contains(p));
        s.last_commit = Instant::now();
        tracing::debug!(workspace = %ws, checkpoint, upserted, deleted, "profiles committed");
        Ok(())
    }

    /// Re-evaluates every stage at `now` and writes the changes.
    pub async fn sweep(&self, now: i64) -> Result<usize, EngineError> {
        let loaded: Vec<_> =
            self.workspaces.read().expect("lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut changed = 0;
        for (ws, state) in loaded {
            let mut transitions = Vec::new();
            {
                let mut guard = state.write().expect("lock");
                let s = &mut *guard;
                for (person, profile) in s.profiles.iter_mut() {
                    if let Some(t) = s.tracker.evaluate(person, profile, now) {
                        transitions.push(t);
                        s.dirty.insert(person);
                    }
                }
            }
            changed += transitions.len();
            if let Err(e) = self.write_transitions(&ws, transitions).await {
                self.workspaces.write().expect("lock").remove(&ws);
                return Err(e);
            }
            // A sweep's stage changes carry the time of the sweep: commit them now, so a restart
            // does not find them again at another time and write them twice.
            self.commit_if_due(&ws, &state, true).await?;
        }
        Ok(changed)
    }

    /// Appends one `Lifecycle Stage Changed` event per transition. Message ids are derived
    /// from the transition, so writing the same one again after a crash stores nothing.
    async fn write_transitions(
        &self,
        ws: &WorkspaceId,
        transitions: Vec<Transition>,
    ) -> Result<(), EngineError> {
        let mut events = Vec::with_capacity(transitions.len());
        for t in transitions {
            let (user_id, anonymous_id) = match (t.user_id, t.anonymous_id) {
                (None, None) => match self.store.person(ws, t.person).await? {
                    Some(p) => (p.user_id, p.identities.into_iter().map(|(_, v)| v).next()),
                    None => continue,
                },
                ids => ids,
            };
            let message_id = format!("lifecycle-{}-{}-{}", t.person, t.at, t.to.as_str());
            events.push(NewEvent::whisperer_track(
                ws,
                message_id,
                LIFECYCLE_EVENT,
                user_id,
                anonymous_id,
                Millis(t.at),
                json!({"from": t.from.as_str(), "to": t.to.as_str(), "engagement_score": t.score}),
            ));
        }
        if !events.is_empty() {
            let since = Millis::now().saturating_add(-7 * 86_400_000);
            self.store.append(events, since).await?;
        }
        Ok(())
    }

    /// Runs `f` on a workspace's profiles if the engine has loaded them.
    pub fn with_workspace<T>(&self, ws: &WorkspaceId, f: impl FnOnce(&WorkspaceProfiles) -> T) -> Option<T> {
        let state = self.workspaces.read().expect("lock").get(ws)?.clone();
        let guard = state.read().expect("lock");
        Some(f(&guard))
    }
}

/// Merges grouped by the seq they apply at, in order.
fn group_merges(merges: &[PersonMerge]) -> Vec<(i64, Vec<PersonMerge>)> {
    let mut groups: Vec<(i64, Vec<PersonMerge>)> = Vec::new();
    for m in merges {
        match groups.last_mut() {
            Some((seq, group)) if *seq == m.seq => group.push(*m),
            _ => groups.push((m.seq, vec![*m])),
        }
    }
    groups
}

/// The persons a group of merges ends in (an `into` that is not itself merged away).
fn survivors(group: &[PersonMerge]) -> BTreeSet<PersonId> {
    let gone: HashSet<PersonId> = group.iter().map(|m| m.from).collect();
    group.iter().map(|m| m.into).filter(|p| !gone.contains(p)).collect()
}

/// What the engine can tell about one person at an instant, for the API.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileView {
    pub as_of: i64,
    pub features: crate::profile::Features,
    pub engagement: crate::score::Engagement,
    pub stage: crate::lifecycle::Stage,
    pub stage_since: Option<i64>,
    pub first_seen: Option<i64>,
    pub last_active: Option<i64>,
    pub time_zone: Option<String>,
    pub features_used: Vec<String>,
    /// Per event name: lifetime count and last time.
    pub events: Vec<(String, u32, i64)>,
    pub last_engagement: Vec<(crate::observation::Channel, i64)>,
}

impl ProfileEngine {
    /// A person's profile as of `now` (or their last event, when that is later); None when
    /// the engine has not loaded the workspace yet or knows no event of the person.
    pub fn view(&self, ws: &WorkspaceId, person: PersonId, now: i64) -> Option<ProfileView> {
        self.with_workspace(ws, |w| {
            let p = w.profiles.get(&person)?;
            let dict = &w.tracker.dict;
            let as_of = now.max(p.last_seen().unwrap_or(now));
            let features = p.features(as_of);
            Some(ProfileView {
                as_of,
                engagement: crate::score::Engagement::of(&features),
                features,
                stage: p.stage(),
                stage_since: p.stage_since(),
                first_seen: p.first_seen(),
                last_active: p.last_active(),
                time_zone: p.zone().and_then(|z| dict.zone_name(z)).map(str::to_owned),
                features_used: p
                    .features_used()
                    .iter()
                    .filter_map(|f| dict.features.name(*f).map(str::to_owned))
                    .collect(),
                events: p
                    .names()
                    .iter()
                    .filter_map(|s| Some((dict.events.name(s.id)?.to_owned(), s.count, s.last)))
                    .collect(),
                last_engagement: crate::observation::Channel::ALL
                    .into_iter()
                    .filter_map(|c| Some((c, p.last_engagement(c)?)))
                    .collect(),
            })
        })
        .flatten()
    }
}
