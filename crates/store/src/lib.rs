//! The storage contract of Whisperer: one trait, several backends, one conformance suite.
//!
//! Backends live in sibling crates (`whisperer-store-sqlite`, `whisperer-store-postgres`) and
//! are the only code that knows SQL. Every backend must pass [`conformance_suite!`].
//!
//! Tenancy: every method that touches workspace data takes the [`WorkspaceId`]; a backend puts it
//! in every query, so a caller that holds workspace A's id can never see B's rows.

pub mod conformance;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use whisperer_core::event::AppendOutcome;
use whisperer_core::identity::{IdKind, PersonId};
use whisperer_core::keys::KeyHash;
use whisperer_core::tracking_plan::TrackingPlan;
use whisperer_core::{EventType, KeyKind, Millis, NewEvent, StoredEvent, Workspace, WorkspaceId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend cannot be reached or refused to work (connection lost, disk full, locked).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back as what it should be.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A key to store: everything but the plaintext.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub id: String,
    pub kind: KeyKind,
    pub hash: KeyHash,
    pub created_at: Millis,
}

impl NewKey {
    pub fn of(key: &whisperer_core::ApiKey, created_at: Millis) -> Self {
        Self { id: key.id(), kind: key.kind, hash: key.hash(), created_at }
    }
}

/// A stored key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRecord {
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub kind: KeyKind,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

impl KeyRecord {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A person and every id that belongs to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub id: PersonId,
    pub user_id: Option<String>,
    pub identities: Vec<(IdKind, String)>,
}

/// How often a person sent one kind of event, and when first and last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventCount {
    pub event_type: EventType,
    /// Track event name, or page/screen name.
    pub name: Option<String>,
    pub count: u64,
    pub first: Millis,
    pub last: Millis,
}

/// Totals of a workspace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkspaceStats {
    pub events: u64,
    /// People, anonymous or identified.
    pub persons: u64,
    /// People with a user id.
    pub identified_persons: u64,
}

/// Position in a person's event history, newest first: events strictly older than this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventCursor {
    pub timestamp: Millis,
    pub seq: i64,
}

/// Two persons that became one: every id and event of `from` now belongs to `into`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PersonMerge {
    /// The first log position of the batch that merged them: a consumer that has read the log
    /// up to just before `seq` applies the merge before the events at `seq` and after.
    pub seq: i64,
    pub from: PersonId,
    pub into: PersonId,
}

/// Where a log consumer stands in one workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerState {
    /// Every event up to and including this seq is reflected in the consumer's rows.
    pub checkpoint: i64,
    /// The consumer's own small state (dictionaries, versions), opaque to the store.
    pub meta: Vec<u8>,
}

/// What a consumer writes in one transaction: its rows changed since the last commit and the
/// checkpoint they reflect, so a crash leaves it either wholly before or wholly after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsumerCommit {
    /// The checkpoint this commit starts from, as read or last committed (0 at first); a commit
    /// whose stored checkpoint differs is a `Conflict`, so two processes running one consumer
    /// on one workspace cannot interleave.
    pub expected: i64,
    pub checkpoint: i64,
    pub meta: Vec<u8>,
    pub upserts: Vec<(i64, Vec<u8>)>,
    pub deletes: Vec<i64>,
}

/// One stored version of a trained model (the model itself is read separately).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelVersion {
    /// 1, 2, … per workspace and kind; the highest is the one in service.
    pub version: i64,
    pub kind: String,
    pub created_at: Millis,
    /// The model saw events up to this time only.
    pub as_of: Millis,
    /// Validation metrics as JSON.
    pub metrics: String,
}

/// What kind of versioned definition a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefinitionKind {
    Campaign,
    Template,
}

impl DefinitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Campaign => "campaign",
            DefinitionKind::Template => "template",
        }
    }
}

/// One stored version of a definition (a campaign, a template).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefinitionRecord {
    pub id: String,
    /// 1, 2, … per definition; a changed definition gets the next one.
    pub version: i64,
    /// Stable small number of the definition among its workspace's definitions of its kind (a
    /// campaign's key for its policy state).
    pub num: i64,
    /// Canonical JSON.
    pub definition: String,
    pub created_at: Millis,
}

/// A stored campaign version.
pub type CampaignRecord = DefinitionRecord;

/// A decision of the decision engine, with what came of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub id: String,
    pub campaign: String,
    pub campaign_version: i64,
    pub person: PersonId,
    pub user_id: Option<String>,
    pub at: Millis,
    /// send, holdout, no_send, suppressed, not_eligible, paused.
    pub status: String,
    pub arm: Option<String>,
    pub propensity: f64,
    pub holdout: bool,
    pub deliver_at: Option<Millis>,
    /// End of the goal window.
    pub deadline: Millis,
    pub policy_version: i64,
    /// The rest of the decision (context, explanation, channel, content) as JSON.
    pub body: String,
    /// converted or failed, once known.
    pub outcome: Option<String>,
    pub outcome_at: Option<Millis>,
    pub value: Option<f64>,
    pub delivered_at: Option<Millis>,
    pub opened_at: Option<Millis>,
    pub clicked_at: Option<Millis>,
}

/// Where a message is in the outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for its `due_at`.
    Queued,
    /// Claimed by a sender until `lease_until`; if the lease runs out the sender died and the
    /// outcome of its attempt is unknown.
    Sending,
    /// A provider accepted it.
    Sent,
    /// Never to be sent: blocked by the compliance gate, a suppressed or unknown recipient.
    Failed,
    /// A dead letter: retries exhausted, every provider refused, or the outcome of an attempt
    /// is unknown and the provider cannot deduplicate. Re-driven by an operator.
    Dead,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 5] = [
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Failed,
        MessageStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
            MessageStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A message in the outbox: what to send (the job, and once rendered the message itself) and
/// where its delivery stands. Its id is the idempotency key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: String,
    pub person: PersonId,
    pub channel: String,
    pub decision_id: Option<String>,
    pub campaign: Option<String>,
    pub status: MessageStatus,
    pub attempts: i64,
    /// When the next attempt may start.
    pub due_at: Millis,
    pub lease_until: Option<Millis>,
    /// The provider that accepted it (or last refused it).
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    /// JSON: the delivery job, and the rendered message once rendered.
    pub body: String,
    /// JSON: why the last attempt failed.
    pub error: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// When the user saw it (in-app messages marked seen in their inbox).
    pub seen_at: Option<Millis>,
}

/// A change to one outbox message, applied only while it is in status `from` (so two senders,
/// or a sender and an operator, cannot both move it).
#[derive(Clone, Debug, PartialEq)]
pub struct MessageUpdate {
    pub id: String,
    pub from: MessageStatus,
    pub status: MessageStatus,
    pub due_at: Option<Millis>,
    /// Resets the attempt count (a re-drive).
    pub reset_attempts: bool,
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    /// Replaces the body (the rendered message is kept for every retry).
    pub body: Option<String>,
    /// Replaces the error; on `sent` the error becomes exactly this (None clears it, Some
    /// keeps a note such as a failover).
    pub error: Option<String>,
    pub at: Millis,
}

impl MessageUpdate {
    pub fn new(id: impl Into<String>, from: MessageStatus, status: MessageStatus, at: Millis) -> Self {
        MessageUpdate {
            id: id.into(),
            from,
            status,
            due_at: None,
            reset_attempts: false,
            provider: None,
            provider_message_id: None,
            body: None,
            error: None,
            at,
        }
    }
}

/// Which outbox messages to read: newest first, every given condition applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessageQuery {
    pub status: Option<MessageStatus>,
    pub person: Option<PersonId>,
    pub decision_id: Option<String>,
    pub provider_message_id: Option<String>,
    /// Only messages due at or before this time.
    pub due_by: Option<Millis>,
    /// Only messages of this channel.
    pub channel: Option<String>,
    /// Only messages the user has not seen.
    pub unseen: bool,
    /// Only messages strictly older than this (created_at, id): the previous page's cursor.
    pub before: Option<(Millis, String)>,
    pub limit: usize,
}

/// Which decisions to read: newest first, every given condition applies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecisionQuery {
    pub campaign: Option<String>,
    pub person: Option<PersonId>,
    pub status: Option<String>,
    /// `at >= since`.
    pub since: Option<Millis>,
    /// `at < until`.
    pub until: Option<Millis>,
    /// Decisions whose goal window ends at or after this time.
    pub deadline_from: Option<Millis>,
    /// Only decisions strictly older than this (at, id): the cursor of the previous page.
    pub before: Option<(Millis, String)>,
    pub limit: usize,
}

/// What happened after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The goal was reached (overrides an earlier `Failed`: a late conversion).
    Converted,
    /// The goal window closed without it (only while nothing is known).
    Failed,
    /// Message events: the first time of each is kept.
    Delivered,
    Opened,
    Clicked,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 5] = [
        OutcomeKind::Converted,
        OutcomeKind::Failed,
        OutcomeKind::Delivered,
        OutcomeKind::Opened,
        OutcomeKind::Clicked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Converted => "converted",
            OutcomeKind::Failed => "failed",
            OutcomeKind::Delivered => "delivered",
            OutcomeKind::Opened => "opened",
            OutcomeKind::Clicked => "clicked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        OutcomeKind::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// An outcome to record on a decision.
#[derive(Clone, Debug, PartialEq)]
pub struct OutcomeUpdate {
    pub decision: String,
    pub kind: OutcomeKind,
    pub at: Millis,
    pub value: Option<f64>,
}

/// What the decision learner writes in one transaction: its consumer commit (checkpoint and
/// policy states as rows keyed by campaign number) and the outcomes it attributed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LearnerCommit {
    pub consumer: ConsumerCommit,
    pub outcomes: Vec<OutcomeUpdate>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Backend name for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Succeeds when the backend can serve a query now.
    async fn ping(&self) -> Result<()>;

    /// Creates a workspace together with its first keys, atomically.
    async fn create_workspace(&self, workspace: &Workspace, keys: &[NewKey]) -> Result<()>;
    async fn list_workspaces(&self) -> Result<Vec<Workspace>>;
    async fn workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>>;

    /// Adds a key to an existing workspace (`NotFound` otherwise).
    async fn add_key(&self, workspace: &WorkspaceId, key: &NewKey) -> Result<()>;
    async fn list_keys(&self, workspace: &WorkspaceId) -> Result<Vec<KeyRecord>>;
    /// Revokes one key by id; false when the workspace has no such active key.
    async fn revoke_key(&self, workspace: &WorkspaceId, key_id: &str, at: Millis) -> Result<bool>;
    /// Revokes every active key of a kind except `keep`, as a rotation does; returns how many.
    async fn revoke_keys_except(
        &self,
        workspace: &WorkspaceId,
        kind: KeyKind,
        keep: &str,
        at: Millis,
    ) -> Result<u64>;
    /// Finds a key by hash, active or revoked.
    async fn find_key(&self, hash: &KeyHash) -> Result<Option<KeyRecord>>;

    async fn set_tracking_plan(&self, workspace: &WorkspaceId, plan: &TrackingPlan) -> Result<()>;
    async fn tracking_plan(&self, workspace: &WorkspaceId) -> Result<Option<TrackingPlan>>;

    /// Appends events to the log in one durable transaction (taking the batch, so a backend that
    /// writes on another thread needs no copy): when this returns `Ok` every
    /// `Stored` event survives a crash. A message id already seen in its workspace at or after
    /// `dedup_since` is a `Duplicate` and writes nothing. Identities are resolved in the same
    /// transaction. On error nothing of the batch is written.
    async fn append(&self, events: Vec<NewEvent>, dedup_since: Millis) -> Result<Vec<AppendOutcome>>;

    /// Events of a workspace in log order, after `after_seq`.
    async fn events_after(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// Merges recorded by appends, with `after_seq < seq <= up_to_seq`, in log order. A consumer
    /// reads events first and then the merges up to the last seq it read: appends commit both
    /// at once, so it never sees an event without the merge its batch made.
    async fn person_merges(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        up_to_seq: i64,
    ) -> Result<Vec<PersonMerge>>;

    /// A person's events before `before_seq`, in log order (to rebuild what a consumer knows of
    /// them after a merge).
    async fn person_log(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
        before_seq: i64,
    ) -> Result<Vec<StoredEvent>>;

    /// A log consumer's checkpoint and meta in a workspace; None before its first commit.
    async fn consumer_state(&self, consumer: &str, workspace: &WorkspaceId) -> Result<Option<ConsumerState>>;
    /// Every row of a consumer in a workspace, by key.
    async fn consumer_rows(&self, consumer: &str, workspace: &WorkspaceId) -> Result<Vec<(i64, Vec<u8>)>>;
    /// One row of a consumer.
    async fn consumer_row(
        &self,
        consumer: &str,
        workspace: &WorkspaceId,
        key: i64,
    ) -> Result<Option<Vec<u8>>>;
    /// Writes a consumer's changed rows with its new checkpoint, atomically.
    async fn commit_consumer(
        &self,
        consumer: &str,
        workspace: &WorkspaceId,
        commit: ConsumerCommit,
    ) -> Result<()>;

    /// A workspace setting (JSON text) by name; None when it was never set.
    async fn setting(&self, workspace: &WorkspaceId, name: &str) -> Result<Option<String>>;
    /// Sets a workspace setting; `NotFound` when the workspace does not exist.
    async fn set_setting(&self, workspace: &WorkspaceId, name: &str, value: &str, at: Millis) -> Result<()>;

    /// Stores a new version of a model of `kind`, which becomes the one in service; returns
    /// its version number.
    async fn save_model(
        &self,
        workspace: &WorkspaceId,
        kind: &str,
        created_at: Millis,
        as_of: Millis,
        metrics: &str,
        model: &[u8],
    ) -> Result<i64>;
    /// Every version of a kind of model, oldest first.
    async fn list_models(&self, workspace: &WorkspaceId, kind: &str) -> Result<Vec<ModelVersion>>;
    /// The newest version of a kind of model whose `as_of` is at or before `at_most` (any when
    /// None), with the model.
    async fn latest_model(
        &self,
        workspace: &WorkspaceId,
        kind: &str,
        at_most: Option<Millis>,
    ) -> Result<Option<(ModelVersion, Vec<u8>)>>;

    /// Stores a definition; a definition equal to the current one keeps its version. Returns
    /// the record now current.
    async fn put_definition(
        &self,
        workspace: &WorkspaceId,
        kind: DefinitionKind,
        id: &str,
        definition: &str,
        at: Millis,
    ) -> Result<DefinitionRecord>;
    /// The current version of every definition of a kind in a workspace, by id.
    async fn definitions(
        &self,
        workspace: &WorkspaceId,
        kind: DefinitionKind,
    ) -> Result<Vec<DefinitionRecord>>;
    /// A definition's current version (or the given one).
    async fn definition(
        &self,
        workspace: &WorkspaceId,
        kind: DefinitionKind,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<DefinitionRecord>>;

    async fn put_campaign(
        &self,
        workspace: &WorkspaceId,
        id: &str,
        definition: &str,
        at: Millis,
    ) -> Result<CampaignRecord> {
        self.put_definition(workspace, DefinitionKind::Campaign, id, definition, at).await
    }
    async fn campaigns(&self, workspace: &WorkspaceId) -> Result<Vec<CampaignRecord>> {
        self.definitions(workspace, DefinitionKind::Campaign).await
    }
    async fn campaign(
        &self,
        workspace: &WorkspaceId,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<CampaignRecord>> {
        self.definition(workspace, DefinitionKind::Campaign, id, version).await
    }

    /// Records decisions and enqueues the messages they send, in one transaction (a decision
    /// or message already stored under its id is left as it is).
    async fn insert_decisions(
        &self,
        workspace: &WorkspaceId,
        decisions: &[DecisionRecord],
        messages: &[MessageRecord],
    ) -> Result<()>;
    /// Decisions matching a query, newest first.
    async fn decisions(&self, workspace: &WorkspaceId, query: &DecisionQuery) -> Result<Vec<DecisionRecord>>;
    /// Records outcomes on decisions outside any consumer (e.g. a simulation's whole run).
    async fn record_outcomes(&self, workspace: &WorkspaceId, outcomes: &[OutcomeUpdate]) -> Result<()>;
    /// Commits the decision learner's outcomes with its checkpoint and policy states, atomically
    /// (`Conflict` as for [`Store::commit_consumer`]).
    async fn commit_learning(
        &self,
        consumer: &str,
        workspace: &WorkspaceId,
        commit: LearnerCommit,
    ) -> Result<()>;

    /// Enqueues messages; one already stored under its id is left as it is. Returns how many
    /// were new.
    async fn enqueue_messages(&self, workspace: &WorkspaceId, messages: &[MessageRecord]) -> Result<u64>;
    /// Claims up to `limit` queued messages due at `now` (oldest due first): each moves to
    /// `sending` with `lease_until` and one more attempt.
    async fn claim_messages(
        &self,
        workspace: &WorkspaceId,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<MessageRecord>>;
    /// Messages still `sending` whose lease ran out before `now`: their sender died mid-send.
    async fn expired_messages(
        &self,
        workspace: &WorkspaceId,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<MessageRecord>>;
    /// Applies updates; each applies only while the message is in its `from` status. Returns
    /// how many applied.
    async fn update_messages(&self, workspace: &WorkspaceId, updates: &[MessageUpdate]) -> Result<u64>;
    /// Outbox messages matching a query, newest first.
    async fn messages(&self, workspace: &WorkspaceId, query: &MessageQuery) -> Result<Vec<MessageRecord>>;
    /// One outbox message by id.
    async fn message(&self, workspace: &WorkspaceId, id: &str) -> Result<Option<MessageRecord>>;
    /// Marks sent in-app messages of a person as seen at `at`; returns the ids that were not
    /// seen before (ids of other people, other channels or unsent messages are ignored).
    async fn mark_seen(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
        ids: &[String],
        at: Millis,
    ) -> Result<Vec<String>>;

    /// The person an id belongs to, with all their ids.
    async fn find_person(&self, workspace: &WorkspaceId, kind: IdKind, value: &str)
    -> Result<Option<Person>>;
    /// A person by id, with all their ids; None when unknown in this workspace or merged away.
    async fn person(&self, workspace: &WorkspaceId, person: PersonId) -> Result<Option<Person>>;
    /// Event counts of a person by type and name.
    async fn event_counts(&self, workspace: &WorkspaceId, person: PersonId) -> Result<Vec<EventCount>>;
    /// The traits objects of every identify call of a person in the order they apply: oldest
    /// call first, and within a call `context.traits` before the top-level `traits`.
    async fn identify_traits(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
    ) -> Result<Vec<serde_json::Value>>;
    /// A person's traits as they stand: every identify call merged in order
    /// ([`merge_traits`](whisperer_core::event::merge_traits)).
    async fn merged_traits(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        Ok(whisperer_core::event::fold_traits(&self.identify_traits(workspace, person).await?))
    }
    /// The person an id belongs to and their merged traits, in one read where the backend
    /// can (a decision for a user not seen since the server started needs both).
    async fn person_with_traits(
        &self,
        workspace: &WorkspaceId,
        kind: IdKind,
        value: &str,
    ) -> Result<Option<(Person, serde_json::Map<String, serde_json::Value>)>> {
        let Some(person) = self.find_person(workspace, kind, value).await? else { return Ok(None) };
        let traits = self.merged_traits(workspace, person.id).await?;
        Ok(Some((person, traits)))
    }
    /// A person's events, newest first, strictly before `before` when given.
    async fn person_events(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
        before: Option<EventCursor>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// How many events and people a workspace has.
    async fn workspace_stats(&self, workspace: &WorkspaceId) -> Result<WorkspaceStats>;

    /// Forgets message ids first seen before `before`; returns how many.
    async fn prune_dedup(&self, before: Millis) -> Result<u64>;
}

/// Calls `f` with a workspace's whole log, in log order, a page of at most `page` events at a
/// time: the one way tools read the log without holding it (export, churn training, the demo).
pub async fn scan_log<E: From<StoreError>>(
    store: &dyn Store,
    workspace: &WorkspaceId,
    page: usize,
    mut f: impl FnMut(&[StoredEvent]) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut after = 0;
    loop {
        let events = store.events_after(workspace, after, page).await?;
        let Some(last) = events.last() else { return Ok(()) };
        after = last.seq;
        f(&events)?;
    }
}
