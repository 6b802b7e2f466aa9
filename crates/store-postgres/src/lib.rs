//! The scale-out storage backend: PostgreSQL through a pool of connections.
//!
//! Durability: a commit returns once PostgreSQL has flushed it to its WAL (with the server's
//! default `synchronous_commit = on`), so every `Stored` event survives a crash of either side.
//! Several processes may share one database: migrations and partition creation take advisory
//! locks, and appends to one workspace are serialised by another (see the `append` module), so
//! every process sees the same identities and the same log order.
//!
//! The `events` log is partitioned by month of event time; see the `partitions` module.

mod append;
mod identity;
mod messages;
mod partitions;
mod schema;
pub mod testing;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::types::{FromSql, Json, ToSql};
use whisperer_core::event::AppendOutcome;
use whisperer_core::identity::{IdKind, PersonId};
use whisperer_core::keys::KeyHash;
use whisperer_core::tracking_plan::TrackingPlan;
use whisperer_core::{EventType, KeyKind, Millis, NewEvent, StoredEvent, Workspace, WorkspaceId};
use whisperer_store::{
    ConsumerCommit, ConsumerState, DecisionQuery, DecisionRecord, DefinitionKind, DefinitionRecord,
    EventCount, EventCursor, KeyRecord, LearnerCommit, MessageQuery, MessageRecord, MessageUpdate,
    ModelVersion, NewKey, OutcomeKind, OutcomeUpdate, Person, PersonMerge, Result, Store, StoreError,
    WorkspaceStats,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller waits for a free pooled connection before the store reports itself
/// unavailable rather than queueing forever.
const POOL_WAIT: Duration = Duration::from_secs(30);

// Advisory lock classes: the first key of PostgreSQL's two-key advisory locks, so these locks
// never collide with another application's single-key locks on a shared database.
const LOCK_MIGRATE: i32 = 0x5748_0001;
const LOCK_PARTITION: i32 = 0x5748_0002;
const LOCK_APPEND: i32 = 0x5748_0003;

/// Earliest instant a `timestamptz` holds (4714-11-24 BC), in Unix milliseconds.
const PG_MIN_MILLIS: i64 = -210_866_803_200_000;

#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    partitions: partitions::Known,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, or any form
    /// `tokio-postgres` accepts) and migrates its schema to the latest.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::open(url, None).await
    }

    /// Like [`PgStore::connect`], but keeps every table in `schema`, creating it if missing.
    /// Lets several stores share one database, as the tests do.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        if !schema::valid_schema_name(schema) {
            return Err(StoreError::Unavailable(format!(
                "invalid schema name {schema:?}: use lowercase letters, digits and underscores"
            )));
        }
        Self::open(url, Some(schema)).await
    }

    async fn open(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Unavailable(format!("invalid postgresql url: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("whisperer");
        }
        if let Some(schema) = schema {
            // Set at connection start, so every pooled connection, including ones the pool opens
            // later to replace broken ones, resolves table names in the schema.
            let search_path = format!("-c search_path={schema}");
            let options = match config.get_options() {
                Some(existing) if !existing.is_empty() => format!("{existing} {search_path}"),
                _ => search_path,
            };
            config.options(options);
        }
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot build the postgresql pool: {e}")))?;
        let store = Self { inner: Arc::new(Inner { pool, partitions: partitions::Known::default() }) };
        let mut client = store.client().await?;
        schema::migrate(&mut client, schema).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot get a postgresql connection: {e}")))
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(db_err)?;
        client.query(&stmt, params).await.map_err(db_err)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(db_err)?;
        client.execute(&stmt, params).await.map_err(db_err)
    }
}

/// Maps a database error: refused data is a conflict, anything else means the database cannot
/// serve us right now.
/// Writes a consumer's commit inside `tx`; `Err(stored)` when the stored checkpoint is not the
/// one the commit starts from (the caller rolls back).
async fn commit_consumer_tx(
    tx: &deadpool_postgres::Transaction<'_>,
    consumer: &str,
    workspace: &WorkspaceId,
    commit: &ConsumerCommit,
) -> Result<std::result::Result<(), i64>> {
    let ws = workspace.as_str();
    // The row lock (or, at first, the insert's unique check) serialises two writers.
    tx.execute(
        "INSERT INTO consumers (name, workspace_id, checkpoint, meta) VALUES ($1, $2, 0, '') ON CONFLICT DO NOTHING",
        &[&consumer, &ws],
    )
    .await
    .map_err(db_err)?;
    let stored: i64 = tx
        .query_one(
            "SELECT checkpoint FROM consumers WHERE name = $1 AND workspace_id = $2 FOR UPDATE",
            &[&consumer, &ws],
        )
        .await
        .map_err(db_err)?
        .try_get(0)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if stored != commit.expected {
        return Ok(Err(stored));
    }
    tx.execute(
        "UPDATE consumers SET checkpoint = $3, meta = $4 WHERE name = $1 AND workspace_id = $2",
        &[&consumer, &ws, &commit.checkpoint, &commit.meta],
    )
    .await
    .map_err(db_err)?;
    if !commit.upserts.is_empty() {
        let keys: Vec<i64> = commit.upserts.iter().map(|(k, _)| *k).collect();
        let values: Vec<&[u8]> = commit.upserts.iter().map(|(_, v)| v.as_slice()).collect();
        tx.execute(
            "INSERT INTO consumer_rows (name, workspace_id, key, value)
             SELECT $1, $2, k, v FROM unnest($3::int8[], $4::bytea[]) AS u (k, v)
             ON CONFLICT (name, workspace_id, key) DO UPDATE SET value = excluded.value",
            &[&consumer, &ws, &keys, &values],
        )
        .await
        .map_err(db_err)?;
    }
    if !commit.deletes.is_empty() {
        tx.execute(
            "DELETE FROM consumer_rows WHERE name = $1 AND workspace_id = $2 AND key = ANY($3)",
            &[&consumer, &ws, &commit.deletes],
        )
        .await
        .map_err(db_err)?;
    }
    Ok(Ok(()))
}

/// Writes outcomes on decisions inside `tx`: a conversion overrides a failure, a failure only
/// lands on an open decision, message events keep their first time.
async fn apply_outcomes(
    tx: &deadpool_postgres::Transaction<'_>,
    workspace: &WorkspaceId,
    outcomes: &[OutcomeUpdate],
) -> Result<()> {
    let ws = workspace.as_str();
    for o in outcomes {
        // Only a conversion carries a value; the others set a time once.
        let (sql, with_value) = match o.kind {
            OutcomeKind::Converted => (
                "UPDATE decisions SET outcome = 'converted', outcome_at = $3, value = $4
                 WHERE workspace_id = $1 AND id = $2 AND (outcome IS NULL OR outcome = 'failed')",
                true,
            ),
            OutcomeKind::Failed => (
                "UPDATE decisions SET outcome = 'failed', outcome_at = $3
                 WHERE workspace_id = $1 AND id = $2 AND outcome IS NULL",
                false,
            ),
            OutcomeKind::Delivered => (
                "UPDATE decisions SET delivered_at = $3 WHERE workspace_id = $1 AND id = $2 AND delivered_at IS NULL",
                false,
            ),
            OutcomeKind::Opened => (
                "UPDATE decisions SET opened_at = $3 WHERE workspace_id = $1 AND id = $2 AND opened_at IS NULL",
                false,
            ),
            OutcomeKind::Clicked => (
                "UPDATE decisions SET clicked_at = $3 WHERE workspace_id = $1 AND id = $2 AND clicked_at IS NULL",
                false,
            ),
        };
        let stmt = tx.prepare_cached(sql).await.map_err(db_err)?;
        if with_value {
            tx.execute(&stmt, &[&ws, &o.decision, &o.at.0, &o.value]).await.map_err(db_err)?;
        } else {
            tx.execute(&stmt, &[&ws, &o.decision, &o.at.0]).await.map_err(db_err)?;
        }
    }
    Ok(())
}

fn consumer_conflict(consumer: &str, workspace: &WorkspaceId, stored: i64, expected: i64) -> StoreError {
    StoreError::Conflict(format!(
        "consumer {consumer} of workspace {workspace} is at {stored}, not at {expected}"
    ))
}

fn definition_row(r: &tokio_postgres::Row) -> Result<DefinitionRecord> {
    Ok(DefinitionRecord {
        id: get(r, 0)?,
        version: get(r, 1)?,
        num: get(r, 2)?,
        definition: get(r, 3)?,
        created_at: Millis(get(r, 4)?),
    })
}

pub(crate) fn db_err(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        return StoreError::Unavailable(format!("postgresql: {e}"));
    };
    let code = db.code().code();
    let message = format!("{} (sqlstate {code})", db.message());
    // Class 23: integrity constraint violation; class 22: data the server refuses to hold.
    if code.starts_with("23") || code.starts_with("22") {
        StoreError::Conflict(message)
    } else {
        StoreError::Unavailable(message)
    }
}

/// Reads a column, treating a value that does not decode as corrupt data.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a tokio_postgres::Row, idx: usize) -> Result<T> {
    row.try_get(idx).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A time to store; a conflict when `timestamptz` cannot hold it.
fn timestamptz(at: Millis) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(at.0)
        .filter(|_| at.0 >= PG_MIN_MILLIS)
        .ok_or_else(|| StoreError::Conflict(format!("time {} ms is outside what postgresql can store", at.0)))
}

/// A time used only as a bound in a comparison: clamped to what `timestamptz` holds, which
/// compares the same against every stored time.
fn bound(at: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.0.max(PG_MIN_MILLIS)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn millis(at: DateTime<Utc>) -> Millis {
    Millis(at.timestamp_millis())
}

fn event_type_code(t: EventType) -> i16 {
    EventType::ALL.iter().position(|x| *x == t).and_then(|i| i16::try_from(i).ok()).unwrap_or(0)
}

fn event_type_from_code(code: i16) -> Result<EventType> {
    usize::try_from(code)
        .ok()
        .and_then(|i| EventType::ALL.get(i).copied())
        .ok_or_else(|| StoreError::Corrupt(format!("event type code {code}")))
}

const EVENT_COLUMNS: &str = r#"seq, person_id, workspace_id, message_id, type, name, user_id, anonymous_id,
     previous_id, "timestamp", received_at, raw, enrichment"#;

fn event_from_row(row: &tokio_postgres::Row) -> Result<StoredEvent> {
    Ok(StoredEvent {
        seq: get(row, 0)?,
        person_id: get(row, 1)?,
        event: NewEvent {
            workspace_id: WorkspaceId::from_stored(get(row, 2)?),
            message_id: get(row, 3)?,
            event_type: event_type_from_code(get(row, 4)?)?,
            name: get(row, 5)?,
            user_id: get(row, 6)?,
            anonymous_id: get(row, 7)?,
            previous_id: get(row, 8)?,
            timestamp: millis(get(row, 9)?),
            received_at: millis(get(row, 10)?),
            raw: get(row, 11)?,
            enrichment: get(row, 12)?,
        },
    })
}

const KEY_COLUMNS: &str = "id, workspace_id, kind, created_at, revoked_at";

fn key_from_row(row: &tokio_postgres::Row) -> Result<KeyRecord> {
    let kind: &str = get(row, 2)?;
    Ok(KeyRecord {
        id: get(row, 0)?,
        workspace_id: WorkspaceId::from_stored(get(row, 1)?),
        kind: KeyKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("key kind {kind:?}")))?,
        created_at: millis(get(row, 3)?),
        revoked_at: get::<Option<DateTime<Utc>>>(row, 4)?.map(millis),
    })
}

/// A person from rows of (id, user_id, identity kind, identity value), the identity columns null
/// for a person without ids.
fn person_from_rows(rows: &[tokio_postgres::Row]) -> Result<Option<Person>> {
    let Some(first) = rows.first() else { return Ok(None) };
    let (id, user_id) = (get(first, 0)?, get(first, 1)?);
    let mut identities = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(code) = get::<Option<i16>>(r, 2)? else { continue };
        let kind = IdKind::from_code(code.into())
            .ok_or_else(|| StoreError::Corrupt(format!("identity kind {code}")))?;
        identities.push((kind, get(r, 3)?));
    }
    Ok(Some(Person { id, user_id, identities }))
}

fn model_version(r: &tokio_postgres::Row) -> Result<ModelVersion> {
    Ok(ModelVersion {
        version: get(r, 0)?,
        kind: get(r, 1)?,
        created_at: Millis(get(r, 2)?),
        as_of: Millis(get(r, 3)?),
        metrics: get(r, 4)?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        self.query("SELECT 1", &[]).await.map(drop)
    }

    async fn create_workspace(&self, workspace: &Workspace, keys: &[NewKey]) -> Result<()> {
        let created_at = timestamptz(workspace.created_at)?;
        let key_times = keys.iter().map(|k| timestamptz(k.created_at)).collect::<Result<Vec<_>>>()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)",
            &[&workspace.id.as_str(), &workspace.name, &created_at],
        )
        .await
        .map_err(db_err)?;
        for (key, at) in keys.iter().zip(&key_times) {
            tx.execute(
                "INSERT INTO api_keys (id, hash, workspace_id, kind, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&key.id, &&key.hash.0[..], &workspace.id.as_str(), &key.kind.as_str(), at],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        let rows =
            self.query("SELECT id, name, created_at FROM workspaces ORDER BY created_at, id", &[]).await?;
        rows.iter()
            .map(|r| {
                Ok(Workspace {
                    id: WorkspaceId::from_stored(get(r, 0)?),
                    name: get(r, 1)?,
                    created_at: millis(get(r, 2)?),
                })
            })
            .collect()
    }

    async fn workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>> {
        let rows =
            self.query("SELECT name, created_at FROM workspaces WHERE id = $1", &[&id.as_str()]).await?;
        rows.first()
            .map(|r| Ok(Workspace { id: id.clone(), name: get(r, 0)?, created_at: millis(get(r, 1)?) }))
            .transpose()
    }

    async fn add_key(&self, workspace: &WorkspaceId, key: &NewKey) -> Result<()> {
        let at = timestamptz(key.created_at)?;
        let added = self
            .execute(
                "INSERT INTO api_keys (id, hash, workspace_id, kind, created_at)
                 SELECT $1, $2, id, $3, $4 FROM workspaces WHERE id = $5",
                &[&key.id, &&key.hash.0[..], &key.kind.as_str(), &at, &workspace.as_str()],
            )
            .await?;
        if added == 1 { Ok(()) } else { Err(StoreError::NotFound(format!("workspace {workspace}"))) }
    }

    async fn list_keys(&self, workspace: &WorkspaceId) -> Result<Vec<KeyRecord>> {
        let sql =
            format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id");
        self.query(&sql, &[&workspace.as_str()]).await?.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, workspace: &WorkspaceId, key_id: &str, at: Millis) -> Result<bool> {
        let at = timestamptz(at)?;
        let n = self
            .execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE workspace_id = $2 AND id = $3 AND revoked_at IS NULL",
                &[&at, &workspace.as_str(), &key_id],
            )
            .await?;
        Ok(n == 1)
    }

    async fn revoke_keys_except(
        &self,
        workspace: &WorkspaceId,
        kind: KeyKind,
        keep: &str,
        at: Millis,
    ) -> Result<u64> {
        let at = timestamptz(at)?;
        self.execute(
            "UPDATE api_keys SET revoked_at = $1
             WHERE workspace_id = $2 AND kind = $3 AND id <> $4 AND revoked_at IS NULL",
            &[&at, &workspace.as_str(), &kind.as_str(), &keep],
        )
        .await
    }

    async fn find_key(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1");
        self.query(&sql, &[&&hash.0[..]]).await?.first().map(key_from_row).transpose()
    }

    async fn set_tracking_plan(&self, workspace: &WorkspaceId, plan: &TrackingPlan) -> Result<()> {
        let now = timestamptz(Millis::now())?;
        let n = self
            .execute(
                "INSERT INTO tracking_plans (workspace_id, plan, updated_at)
                 SELECT id, $2, $3 FROM workspaces WHERE id = $1
                 ON CONFLICT (workspace_id) DO UPDATE SET plan = EXCLUDED.plan, updated_at = EXCLUDED.updated_at",
                &[&workspace.as_str(), &Json(plan), &now],
            )
            .await?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound(format!("workspace {workspace}"))) }
    }

    async fn tracking_plan(&self, workspace: &WorkspaceId) -> Result<Option<TrackingPlan>> {
        let rows = self
            .query("SELECT plan FROM tracking_plans WHERE workspace_id = $1", &[&workspace.as_str()])
            .await?;
        rows.first().map(|r| get::<Json<TrackingPlan>>(r, 0).map(|Json(plan)| plan)).transpose()
    }

    async fn append(&self, events: Vec<NewEvent>, dedup_since: Millis) -> Result<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        append::append(&mut client, &self.inner.partitions, &events, dedup_since).await
    }

    async fn events_after(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        self.query(&sql, &[&workspace.as_str(), &after_seq, &self::limit(limit)])
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn person_merges(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        up_to_seq: i64,
    ) -> Result<Vec<PersonMerge>> {
        self.query(
            "SELECT seq, from_person, into_person FROM person_merges
             WHERE workspace_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq, from_person",
            &[&workspace.as_str(), &after_seq, &up_to_seq],
        )
        .await?
        .iter()
        .map(|r| Ok(PersonMerge { seq: get(r, 0)?, from: get(r, 1)?, into: get(r, 2)? }))
        .collect()
    }

    async fn person_log(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
        before_seq: i64,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = $1 AND person_id = $2 AND seq < $3 ORDER BY seq"
        );
        self.query(&sql, &[&workspace.as_str(), &person, &before_seq])
            .await?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn consumer_state(&self, consumer: &str, workspace: &WorkspaceId) -> Result<Option<ConsumerState>> {
        let rows = self
            .query(
                "SELECT checkpoint, meta FROM consumers WHERE name = $1 AND workspace_id = $2",
                &[&consumer, &workspace.as_str()],
            )
            .await?;
        rows.first().map(|r| Ok(ConsumerState { checkpoint: get(r, 0)?, meta: get(r, 1)? })).transpose()
    }

    async fn consumer_rows(&self, consumer: &str, workspace: &WorkspaceId) -> Result<Vec<(i64, Vec<u8>)>> {
        self.query(
            "SELECT key, value FROM consumer_rows WHERE name = $1 AND workspace_id = $2 ORDER BY key",
            &[&consumer, &workspace.as_str()],
        )
        .await?
        .iter()
        .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
        .collect()
    }

    async fn consumer_row(
        &self,
        consumer: &str,
        workspace: &WorkspaceId,
        key: i64,
    ) -> Result<Option<Vec<u8>>> {
        let rows = self
            .query(
                "SELECT value FROM consumer_rows WHERE name = $1 AND workspace_id = $2 AND key = $3",
                &[&consumer, &workspace.as_str(), &key],
            )
            .await?;
        rows.first().map(|r| get(r, 0)).transpose()
    }

    async fn commit_consumer(
        &self,
        consumer: &str,
        workspace: &WorkspaceId,
        commit: ConsumerCommit,
    ) -> Result<()> {
        self.commit_learning(consumer, workspace, LearnerCommit { consumer: commit, outcomes: Vec::new() })
            .await
    }

    async fn put_definition(
        &self,
        workspace: &WorkspaceId,
        kind: DefinitionKind,
        id: &str,
        definition: &str,
        at: Millis,
    ) -> Result<DefinitionRecord> {
        let ws = workspace.as_str();
        let kind = kind.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // One writer per workspace at a time: versions and numbers are read, then written.
        tx.execute("SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE", &[&ws]).await.map_err(db_err)?;
        let current = tx
            .query_opt(
                "SELECT id, version, num, definition, created_at FROM definitions
                 WHERE workspace_id = $1 AND kind = $2 AND id = $3 ORDER BY version DESC LIMIT 1",
                &[&ws, &kind, &id],
            )
            .await
            .map_err(db_err)?
            .map(|r| definition_row(&r))
            .transpose()?;
        let record = match current {
            Some(c) if c.definition == definition => {
                tx.rollback().await.map_err(db_err)?;
                return Ok(c);
            }
            Some(c) => DefinitionRecord {
                version: c.version + 1,
                definition: definition.to_owned(),
                created_at: at,
                ..c
            },
            None => {
                let num: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(num), 0) + 1 FROM definitions WHERE workspace_id = $1 AND kind = $2",
                        &[&ws, &kind],
                    )
                    .await
                    .map_err(db_err)?
                    .try_get(0)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                DefinitionRecord {
                    id: id.to_owned(),
                    version: 1,
                    num,
                    definition: definition.to_owned(),
                    created_at: at,
                }
            }
        };
        tx.execute(
            "INSERT INTO definitions (workspace_id, kind, id, version, num, definition, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&ws, &kind, &record.id, &record.version, &record.num, &record.definition, &record.created_at.0],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(record)
    }

    async fn definitions(
        &self,
        workspace: &WorkspaceId,
        kind: DefinitionKind,
    ) -> Result<Vec<DefinitionRecord>> {
        let rows = self
            .query(
                "SELECT DISTINCT ON (id) id, version, num, definition, created_at FROM definitions
                 WHERE workspace_id = $1 AND kind = $2 ORDER BY id, version DESC",
                &[&workspace.as_str(), &kind.as_str()],
            )
            .await?;
        rows.iter().map(definition_row).collect()
    }

    async fn definition(
        &self,
        workspace: &WorkspaceId,
        kind: DefinitionKind,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<DefinitionRecord>> {
        let rows = self
            .query(
                "SELECT id, version, num, definition, created_at FROM definitions
                 WHERE workspace_id = $1 AND kind = $2 AND id = $3 AND ($4::int8 IS NULL OR version = $4)
                 ORDER BY version DESC LIMIT 1",
                &[&workspace.as_str(), &kind.as_str(), &id, &version],
            )
            .await?;
        rows.first().map(definition_row).transpose()
    }

    async fn insert_decisions(
        &self,
        workspace: &WorkspaceId,
        records: &[DecisionRecord],
        outbox: &[MessageRecord],
    ) -> Result<()> {
        if records.is_empty() && outbox.is_empty() {
            return Ok(());
        }
        let ws = workspace.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO decisions (workspace_id, id, campaign, campaign_version, person_id, user_id, at, status,
                     arm, propensity, holdout, deliver_at, deadline, policy_version, body, outcome, outcome_at,
                     value, delivered_at, opened_at, clicked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
                 ON CONFLICT (workspace_id, id) DO NOTHING",
            )
            .await
            .map_err(db_err)?;
        for d in records {
            let ms = |m: Option<Millis>| m.map(|m| m.0);
            tx.execute(
                &stmt,
                &[
                    &ws,
                    &d.id,
                    &d.campaign,
                    &d.campaign_version,
                    &d.person,
                    &d.user_id,
                    &d.at.0,
                    &d.status,
                    &d.arm,
                    &d.propensity,
                    &d.holdout,
                    &ms(d.deliver_at),
                    &d.deadline.0,
                    &d.policy_version,
                    &d.body,
                    &d.outcome,
                    &ms(d.outcome_at),
                    &d.value,
                    &ms(d.delivered_at),
                    &ms(d.opened_at),
                    &ms(d.clicked_at),
                ],
            )
            .await
            .map_err(db_err)?;
        }
        messages::enqueue(&tx, workspace, outbox).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn enqueue_messages(&self, workspace: &WorkspaceId, outbox: &[MessageRecord]) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let inserted = messages::enqueue(&tx, workspace, outbox).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(inserted)
    }

    async fn claim_messages(
        &self,
        workspace: &WorkspaceId,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let claimed = messages::claim(&tx, workspace, now, lease_until, limit).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(claimed)
    }

    async fn expired_messages(
        &self,
        workspace: &WorkspaceId,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let rows = self
            .query(
                &format!(
                    "SELECT {} FROM messages
                     WHERE workspace_id = $1 AND status = 'sending' AND lease_until < $2
                     ORDER BY due_at, id LIMIT $3",
                    messages::COLUMNS
                ),
                &[&workspace.as_str(), &now.0, &(limit as i64)],
            )
            .await?;
        rows.iter().map(messages::row).collect()
    }

    async fn update_messages(&self, workspace: &WorkspaceId, updates: &[MessageUpdate]) -> Result<u64> {
        if updates.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let applied = messages::update(&tx, workspace, updates).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(applied)
    }

    async fn messages(&self, workspace: &WorkspaceId, query: &MessageQuery) -> Result<Vec<MessageRecord>> {
        let (status, before_at, before_id, limit) = messages::query_params(query);
        let rows = self
            .query(
                &messages::query_sql(),
                &[
                    &workspace.as_str(),
                    &status,
                    &query.person,
                    &query.decision_id,
                    &query.provider_message_id,
                    &before_at,
                    &before_id,
                    &limit,
                    &query.due_by.map(|t| t.0),
                    &query.channel,
                    &query.unseen,
                ],
            )
            .await?;
        rows.iter().map(messages::row).collect()
    }

    async fn mark_seen(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
        ids: &[String],
        at: Millis,
    ) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .query(
                "UPDATE messages SET seen_at = $4
                 WHERE workspace_id = $1 AND id = ANY($2) AND person_id = $3 AND channel = 'in_app'
                   AND status = 'sent' AND seen_at IS NULL
                 RETURNING id",
                &[&workspace.as_str(), &ids, &person, &at.0],
            )
            .await?;
        rows.iter().map(|r| get(r, 0)).collect()
    }

    async fn message(&self, workspace: &WorkspaceId, id: &str) -> Result<Option<MessageRecord>> {
        let rows = self
            .query(
                &format!("SELECT {} FROM messages WHERE workspace_id = $1 AND id = $2", messages::COLUMNS),
                &[&workspace.as_str(), &id],
            )
            .await?;
        rows.first().map(messages::row).transpose()
    }

    async fn decisions(&self, workspace: &WorkspaceId, q: &DecisionQuery) -> Result<Vec<DecisionRecord>> {
        let (before_at, before_id) = match &q.before {
            Some((at, id)) => (Some(at.0), Some(id.as_str())),
            None => (None, None),
        };
        let limit = q.limit as i64;
        let rows = self
            .query(
                "SELECT id, campaign, campaign_version, person_id, user_id, at, status, arm, propensity, holdout,
                        deliver_at, deadline, policy_version, body, outcome, outcome_at, value, delivered_at,
                        opened_at, clicked_at
                 FROM decisions
                 WHERE workspace_id = $1
                   AND ($2::text IS NULL OR campaign = $2)
                   AND ($3::int8 IS NULL OR person_id = $3)
                   AND ($4::text IS NULL OR status = $4)
                   AND ($5::int8 IS NULL OR at >= $5)
                   AND ($6::int8 IS NULL OR at < $6)
                   AND ($7::int8 IS NULL OR deadline >= $7)
                   AND ($8::int8 IS NULL OR at < $8 OR (at = $8 AND id < $9::text))
                 ORDER BY at DESC, id DESC
                 LIMIT $10",
                &[
                    &workspace.as_str(),
                    &q.campaign,
                    &q.person,
                    &q.status,
                    &q.since.map(|m| m.0),
                    &q.until.map(|m| m.0),
                    &q.deadline_from.map(|m| m.0),
                    &before_at,
                    &before_id,
                    &limit,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let ms = |i: usize| get::<Option<i64>>(r, i).map(|m| m.map(Millis));
                Ok(DecisionRecord {
                    id: get(r, 0)?,
                    campaign: get(r, 1)?,
                    campaign_version: get(r, 2)?,
                    person: get(r, 3)?,
                    user_id: get(r, 4)?,
                    at: Millis(get(r, 5)?),
                    status: get(r, 6)?,
                    arm: get(r, 7)?,
                    propensity: get(r, 8)?,
                    holdout: get(r, 9)?,
                    deliver_at: ms(10)?,
                    deadline: Millis(get(r, 11)?),
                    policy_version: get(r, 12)?,
                    body: get(r, 13)?,
                    outcome: get(r, 14)?,
                    outcome_at: ms(15)?,
                    value: get(r, 16)?,
                    delivered_at: ms(17)?,
                    opened_at: ms(18)?,
                    clicked_at: ms(19)?,
                })
            })
            .collect()
    }

    async fn record_outcomes(&self, workspace: &WorkspaceId, outcomes: &[OutcomeUpdate]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        apply_outcomes(&tx, workspace, outcomes).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn commit_learning(
        &self,
        consumer: &str,
        workspace: &WorkspaceId,
        commit: LearnerCommit,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        if let Err(stored) = commit_consumer_tx(&tx, consumer, workspace, &commit.consumer).await? {
            tx.rollback().await.map_err(db_err)?;
            return Err(consumer_conflict(consumer, workspace, stored, commit.consumer.expected));
        }
        apply_outcomes(&tx, workspace, &commit.outcomes).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn setting(&self, workspace: &WorkspaceId, name: &str) -> Result<Option<String>> {
        let rows = self
            .query(
                "SELECT value FROM settings WHERE workspace_id = $1 AND name = $2",
                &[&workspace.as_str(), &name],
            )
            .await?;
        rows.first().map(|r| get(r, 0)).transpose()
    }

    async fn set_setting(&self, workspace: &WorkspaceId, name: &str, value: &str, at: Millis) -> Result<()> {
        let changed = self
            .execute(
                "INSERT INTO settings (workspace_id, name, value, updated_at)
                 SELECT id, $2, $3, $4 FROM workspaces WHERE id = $1
                 ON CONFLICT (workspace_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &[&workspace.as_str(), &name, &value, &at.0],
            )
            .await?;
        if changed == 0 { Err(StoreError::NotFound(format!("workspace {workspace}"))) } else { Ok(()) }
    }

    async fn save_model(
        &self,
        workspace: &WorkspaceId,
        kind: &str,
        created_at: Millis,
        as_of: Millis,
        metrics: &str,
        model: &[u8],
    ) -> Result<i64> {
        // The primary key refuses a version two savers computed at once; the loser retries.
        for _ in 0..5 {
            let result = self
                .query(
                    "INSERT INTO models (workspace_id, kind, version, created_at, as_of, metrics, model)
                     SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5, $6 FROM models
                     WHERE workspace_id = $1 AND kind = $2
                     RETURNING version",
                    &[&workspace.as_str(), &kind, &created_at.0, &as_of.0, &metrics, &model],
                )
                .await;
            match result {
                Ok(rows) => {
                    let row = rows
                        .first()
                        .ok_or_else(|| StoreError::Unavailable("model insert returned no version".into()))?;
                    return get(row, 0);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(format!("cannot number a new {kind} model: too many concurrent saves")))
    }

    async fn list_models(&self, workspace: &WorkspaceId, kind: &str) -> Result<Vec<ModelVersion>> {
        self.query(
            "SELECT version, kind, created_at, as_of, metrics FROM models
             WHERE workspace_id = $1 AND kind = $2 ORDER BY version",
            &[&workspace.as_str(), &kind],
        )
        .await?
        .iter()
        .map(model_version)
        .collect()
    }

    async fn latest_model(
        &self,
        workspace: &WorkspaceId,
        kind: &str,
        at_most: Option<Millis>,
    ) -> Result<Option<(ModelVersion, Vec<u8>)>> {
        let bound = at_most.map_or(i64::MAX, |m| m.0);
        let rows = self
            .query(
                "SELECT version, kind, created_at, as_of, metrics, model FROM models
                 WHERE workspace_id = $1 AND kind = $2 AND as_of <= $3 ORDER BY version DESC LIMIT 1",
                &[&workspace.as_str(), &kind, &bound],
            )
            .await?;
        rows.first().map(|r| Ok((model_version(r)?, get(r, 5)?))).transpose()
    }

    async fn find_person(
        &self,
        workspace: &WorkspaceId,
        kind: IdKind,
        value: &str,
    ) -> Result<Option<Person>> {
        let rows = self
            .query(
                r#"SELECT p.id, p.user_id, other.kind, other.value
                   FROM identities i
                   JOIN persons p ON p.workspace_id = i.workspace_id AND p.id = i.person_id
                   JOIN identities other ON other.workspace_id = p.workspace_id AND other.person_id = p.id
                   WHERE i.workspace_id = $1 AND i.kind = $2 AND i.value = $3
                   ORDER BY other.kind, other.value COLLATE "C""#,
                &[&workspace.as_str(), &kind.code(), &value],
            )
            .await?;
        person_from_rows(&rows)
    }

    async fn person(&self, workspace: &WorkspaceId, person: PersonId) -> Result<Option<Person>> {
        let rows = self
            .query(
                r#"SELECT p.id, p.user_id, i.kind, i.value
                   FROM persons p
                   LEFT JOIN identities i ON i.workspace_id = p.workspace_id AND i.person_id = p.id
                   WHERE p.workspace_id = $1 AND p.id = $2
                   ORDER BY i.kind, i.value COLLATE "C""#,
                &[&workspace.as_str(), &person],
            )
            .await?;
        person_from_rows(&rows)
    }

    async fn event_counts(&self, workspace: &WorkspaceId, person: PersonId) -> Result<Vec<EventCount>> {
        let rows = self
            .query(
                r#"SELECT type, name, count(*), min("timestamp"), max("timestamp") FROM events
                   WHERE workspace_id = $1 AND person_id = $2
                   GROUP BY type, name ORDER BY type, name COLLATE "C" NULLS FIRST"#,
                &[&workspace.as_str(), &person],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EventCount {
                    event_type: event_type_from_code(get(r, 0)?)?,
                    name: get(r, 1)?,
                    count: u64::try_from(get::<i64>(r, 2)?).unwrap_or(0),
                    first: millis(get(r, 3)?),
                    last: millis(get(r, 4)?),
                })
            })
            .collect()
    }

    async fn identify_traits(&self, workspace: &WorkspaceId, person: PersonId) -> Result<Vec<Value>> {
        // Read from raw rather than the properties column: jsonb may have altered the traits.
        let rows = self
            .query(
                r#"SELECT raw FROM events WHERE workspace_id = $1 AND person_id = $2 AND type = $3
                   ORDER BY "timestamp", seq"#,
                &[&workspace.as_str(), &person, &event_type_code(EventType::Identify)],
            )
            .await?;
        let mut traits = Vec::new();
        for row in &rows {
            let raw: &str = get(row, 0)?;
            let mut message: Value = serde_json::from_str(raw)
                .map_err(|e| StoreError::Corrupt(format!("raw identify message: {e}")))?;
            // Some libraries (RudderStack's Python SDK) send identify traits only in
            // context.traits; the top-level traits, when present, apply after them.
            let context_traits =
                message.get_mut("context").and_then(|c| c.get_mut("traits")).map(Value::take);
            let top_level = message.get_mut("traits").map(Value::take);
            traits.extend([context_traits, top_level].into_iter().flatten().filter(Value::is_object));
        }
        Ok(traits)
    }

    async fn person_events(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
        before: Option<EventCursor>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let (ws, limit) = (workspace.as_str(), self::limit(limit));
        let rows = match before {
            None => {
                let sql = format!(
                    r#"SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = $1 AND person_id = $2
                       ORDER BY "timestamp" DESC, seq DESC LIMIT $3"#
                );
                self.query(&sql, &[&ws, &person, &limit]).await?
            }
            Some(cursor) => {
                let sql = format!(
                    r#"SELECT {EVENT_COLUMNS} FROM events
                       WHERE workspace_id = $1 AND person_id = $2 AND ("timestamp", seq) < ($3, $4)
                       ORDER BY "timestamp" DESC, seq DESC LIMIT $5"#
                );
                self.query(&sql, &[&ws, &person, &bound(cursor.timestamp), &cursor.seq, &limit]).await?
            }
        };
        rows.iter().map(event_from_row).collect()
    }

    async fn workspace_stats(&self, workspace: &WorkspaceId) -> Result<WorkspaceStats> {
        let rows = self
            .query(
                "SELECT (SELECT count(*) FROM events WHERE workspace_id = $1),
                        (SELECT count(*) FROM persons WHERE workspace_id = $1),
                        (SELECT count(user_id) FROM persons WHERE workspace_id = $1)",
                &[&workspace.as_str()],
            )
            .await?;
        let row = rows.first().ok_or_else(|| StoreError::Corrupt("stats query returned no row".into()))?;
        let count = |i| get::<i64>(row, i).map(|n| n as u64);
        Ok(WorkspaceStats { events: count(0)?, persons: count(1)?, identified_persons: count(2)? })
    }

    async fn prune_dedup(&self, before: Millis) -> Result<u64> {
        self.execute("DELETE FROM message_ids WHERE first_seen < $1", &[&bound(before)]).await
    }
}
