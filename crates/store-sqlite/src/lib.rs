//! The embedded storage backend: one SQLite database file in the data directory.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a commit returns only after the WAL is
//! fsynced; a `kill -9` or power cut after that loses nothing. One writer connection serialises
//! writes (SQLite allows one writer at a time anyway; other processes such as the CLI wait on
//! `busy_timeout`); reads use a small pool of their own connections and never block the writer.
//! All SQLite calls run on blocking threads, never on the async workers.
//!
//! Decisions are acknowledged from a journal of their own (an fdatasync'd append, see
//! `journal.rs`) and reach the database behind it; reads of decisions and messages wait for
//! what was acknowledged, and every other write applies it first.
//!
//! Two things keep the single writer fast: a cache of identity lookups (invalidated whenever
//! another connection, such as a CLI import, commits) and WAL checkpoints on a thread of their
//! own, so commits never copy pages back into the database file themselves.

mod decisions;
mod identity_cache;
mod journal;
mod messages;
mod schema;

use identity_cache::IdentityCache;
use journal::Journal;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use whisperer_core::event::AppendOutcome;
use whisperer_core::identity::{IdKind, IdentityOp, IdentityResolver, MessageIds, PersonId, PersonRef};
use whisperer_core::keys::KeyHash;
use whisperer_core::tracking_plan::TrackingPlan;
use whisperer_core::{EventType, KeyKind, Millis, NewEvent, StoredEvent, Workspace, WorkspaceId};
use whisperer_store::{
    ConsumerCommit, ConsumerState, DecisionQuery, DecisionRecord, DefinitionKind, DefinitionRecord,
    EventCount, EventCursor, KeyRecord, LearnerCommit, MessageQuery, MessageRecord, MessageUpdate,
    ModelVersion, NewKey, OutcomeUpdate, Person, PersonMerge, Result, Store, StoreError, WorkspaceStats,
};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "whisperer.sqlite3";
/// The decision journal's folder in the data directory.
pub const JOURNAL_DIR: &str = "journal";
/// Reader connections kept open: opening one costs far more than a lookup, and 32 concurrent
/// decide requests exhausted 4 (p99 8.3 -> 6.5 ms at 5,000 decisions/s with 16).
const READ_POOL_SIZE: usize = 16;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Vec<Connection>>,
    /// Decisions are acknowledged from here (absent when another process holds the journal).
    journal: Option<Arc<Journal>>,
    applier: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// A clean stop leaves the journal empty: what it holds goes into the database now.
    fn drop(&mut self) {
        if let Some(journal) = &self.journal {
            journal.stop();
            let applier = self.applier.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(applier) = applier.filter(|a| a.thread().id() != std::thread::current().id()) {
                let _ = applier.join();
            }
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            match apply_journal(journal, &mut writer) {
                Ok(()) => journal.prune(),
                Err(e) => tracing::warn!(error = %e, "decision journal left for the next start to apply"),
            }
            journal.release();
        }
    }
}

/// Moves the journal's durable entries into the database in one transaction. Runs with the
/// writer held, so every other write comes after the decisions acknowledged before it.
fn apply_journal(journal: &Journal, writer: &mut Writer) -> rusqlite::Result<()> {
    let entries = journal.take_durable();
    let Some(&(last, _)) = entries.last() else { return Ok(()) };
    let applied = in_transaction(&mut writer.conn, |tx| {
        for (_, entry) in &entries {
            decisions::insert_decisions(tx, &entry.ws, &entry.decisions)?;
            messages::enqueue(tx, &entry.ws, &entry.messages)?;
        }
        Ok(())
    });
    match applied {
        Ok(()) => {
            journal.applied(last);
            Ok(())
        }
        Err(e) => {
            journal.put_back(entries);
            Err(e)
        }
    }
}

/// Runs `f` in one IMMEDIATE transaction (the write lock taken at its start), committed when
/// `f` succeeds and rolled back otherwise.
fn in_transaction<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// The applier thread: moves durable journal entries into the database every
/// [`journal::APPLY_EVERY`], or at once when a reader waits for them.
fn apply_loop(journal: Arc<Journal>, store: std::sync::Weak<Inner>) {
    while !journal.stopping() {
        if !journal.wait_for_durable() {
            continue;
        }
        let Some(inner) = store.upgrade() else { return };
        let mut writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = apply_journal(&journal, &mut writer) {
            tracing::error!(error = %e, "cannot apply the decision journal; retrying");
            drop(writer);
            std::thread::sleep(journal::APPLY_EVERY);
        }
    }
}

struct Writer {
    conn: Connection,
    identities: IdentityCache,
}

/// How often the checkpoint thread looks at the WAL, and the WAL size that makes it copy the
/// log back into the database file.
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);
const CHECKPOINT_WAL_BYTES: u64 = 16 * 1024 * 1024;
/// The WAL size past which the checkpoint thread restarts the WAL, and the size SQLite cuts
/// the file back to when it restarts.
const WAL_RESTART_BYTES: u64 = 128 * 1024 * 1024;
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, migrating the schema to the latest.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create data dir {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut writer = open_connection(&path)?;
        schema::migrate(&mut writer).map_err(map_err)?;
        // Checkpoints run on their own thread (below), not inside a commit.
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(map_err)?;
        // A WAL that grew during a burst (a big import) is cut back to this size whenever it
        // restarts, instead of keeping its largest size on disk for good.
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT).map_err(map_err)?;
        let checkpointer = open_connection(&path)?;
        let journal_dir = data_dir.join(JOURNAL_DIR);
        let journal = Journal::open(&journal_dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open the decision journal in {}: {e}",
                journal_dir.display()
            ))
        })?;
        let mut writer = Writer { conn: writer, identities: IdentityCache::default() };
        if let Some(journal) = &journal {
            // What a crash left in the journal goes in before anything else.
            apply_journal(journal, &mut writer).map_err(map_err)?;
        }
        let inner = Arc::new(Inner {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            journal: journal.map(Arc::new),
            applier: Mutex::new(None),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, weak))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}")))?;
        if let Some(journal) = inner.journal.clone() {
            let weak = Arc::downgrade(&inner);
            let applier = std::thread::Builder::new()
                .name("journal-apply".into())
                .spawn(move || apply_loop(journal, weak))
                .map_err(|e| StoreError::Unavailable(format!("cannot start the journal thread: {e}")))?;
            *inner.applier.lock().unwrap_or_else(|p| p.into_inner()) = Some(applier);
        }
        Ok(Self { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.write_with_cache(move |writer| f(&mut writer.conn)).await
    }

    async fn write_with_cache<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Writer) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(journal) = &inner.journal {
                apply_journal(journal, &mut writer).map_err(map_err)?;
            }
            f(&mut writer).map_err(map_err)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// A read of decisions or messages: it first waits until the decisions acknowledged so far
    /// are in the database, so it sees every one of them.
    async fn read_settled<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        if let Some(journal) = &self.inner.journal {
            journal.settle().await?;
        }
        self.read(move |c| f(c).map_err(map_err)).await
    }

    /// Runs `f` in one transaction of the writer, committed when `f` succeeds.
    async fn write_tx<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.write(move |c| in_transaction(c, f)).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path)?,
            };
            let result = f(&conn);
            let mut readers = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if readers.len() < READ_POOL_SIZE {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }
}

/// Copies the WAL back into the database file when it has grown, until the store is dropped.
/// PASSIVE never blocks the writer or readers; the writer restarts the WAL from its start once
/// a checkpoint has caught up.
fn checkpoint_loop(conn: Connection, store: std::sync::Weak<Inner>) {
    let wal = {
        let mut p = conn.path().map(PathBuf::from).unwrap_or_default().into_os_string();
        p.push("-wal");
        PathBuf::from(p)
    };
    while let Some(inner) = store.upgrade() {
        drop(inner);
        std::thread::sleep(CHECKPOINT_POLL);
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size < CHECKPOINT_WAL_BYTES {
            continue;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "wal checkpoint failed");
        }
        // Under a steady stream of commits a passive checkpoint never finds the moment when
        // every frame is copied and no transaction is open, so the WAL would only grow (5 GB
        // after a 1M-event import). Past the limit, hold the writer for the short time it takes
        // to copy what the passive pass left and restart the WAL from its start.
        if size >= WAL_RESTART_BYTES
            && let Some(inner) = store.upgrade()
        {
            let _writer = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "wal restart failed");
            }
        }
    }
}

/// A workspace's log after a seq: walks `events_log`, never the workspace's whole history.
fn events_after_sql() -> String {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ?2 AND seq > ?1 ORDER BY seq LIMIT ?3")
}

/// One person's log before a seq: their rows of `events_person`, not the workspace's log.
fn person_log_sql() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_person
         WHERE workspace_id = ?1 AND person_id = ?2 AND seq < ?3 ORDER BY seq"
    )
}

fn find_person_in(c: &Connection, ws: &WorkspaceId, kind: IdKind, value: &str) -> Result<Option<Person>> {
    let found: Option<(i64, Option<String>)> = c
        .prepare_cached(
            "SELECT p.id, p.user_id FROM identities i JOIN persons p ON p.id = i.person_id
         WHERE i.workspace_id = ?1 AND i.kind = ?2 AND i.value = ?3",
        )
        .map_err(map_err)?
        .query_row(params![ws.as_str(), kind.code(), value], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(map_err)?;
    let Some((id, user_id)) = found else { return Ok(None) };
    Ok(Some(Person { id, user_id, identities: identities_of(c, ws, id)? }))
}

/// The traits objects of a person's identify calls in the order they apply.
fn identify_traits_in(c: &Connection, ws: &WorkspaceId, person: PersonId) -> Result<Vec<serde_json::Value>> {
    // Some libraries (RudderStack's Python SDK) send identify traits only in
    // context.traits; the top-level traits, when present, apply after them.
    let mut stmt = c
        .prepare_cached(
            "SELECT raw -> '$.context.traits', raw -> '$.traits' FROM events
         WHERE workspace_id = ?1 AND person_id = ?2 AND type = ?3 ORDER BY timestamp, seq",
        )
        .map_err(map_err)?;
    let rows = stmt
        .query_map(params![ws.as_str(), person, event_type_code(EventType::Identify)], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?))
        })
        .map_err(map_err)?;
    let mut traits = Vec::new();
    for row in rows {
        let (context_traits, top_level) = row.map_err(map_err)?;
        for text in [context_traits, top_level].into_iter().flatten() {
            let value: serde_json::Value = serde_json::from_str(&text).map_err(corrupt)?;
            if value.is_object() {
                traits.push(value);
            }
        }
    }
    Ok(traits)
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(map_err)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(map_err)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(map_err)?;
    // 8 MB per connection: SQLite scans a connection's whole page-cache hash at the end of each
    // write transaction (pcache1TruncateUnsafe, 8 % of the server's CPU under 5,000 decisions/s
    // with 64 MB); the OS page cache holds the file anyway. Measured with 8 MB: ingest 39k ->
    // 46k events/s, decide p50 1.47 -> 1.21 ms, p99 13 -> 8.3 ms (medians of 3, 2 cores).
    conn.pragma_update(None, "cache_size", -8192).map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Writes a consumer's commit inside `tx`; `Err(stored)` when the stored checkpoint is not the
/// one the commit starts from.
fn commit_consumer_tx(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    ws: &WorkspaceId,
    commit: &ConsumerCommit,
) -> rusqlite::Result<std::result::Result<(), i64>> {
    let stored: i64 = tx
        .prepare_cached("SELECT checkpoint FROM consumers WHERE name = ?1 AND workspace_id = ?2")?
        .query_row(params![name, ws.as_str()], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if stored != commit.expected {
        return Ok(Err(stored));
    }
    tx.prepare_cached(
        "INSERT INTO consumers (name, workspace_id, checkpoint, meta) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name, workspace_id) DO UPDATE SET checkpoint = excluded.checkpoint, meta = excluded.meta",
    )?
    .execute(params![name, ws.as_str(), commit.checkpoint, commit.meta])?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO consumer_rows (name, workspace_id, key, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name, workspace_id, key) DO UPDATE SET value = excluded.value",
    )?;
    for (key, value) in &commit.upserts {
        upsert.execute(params![name, ws.as_str(), key, value])?;
    }
    let mut delete =
        tx.prepare_cached("DELETE FROM consumer_rows WHERE name = ?1 AND workspace_id = ?2 AND key = ?3")?;
    for key in &commit.deletes {
        delete.execute(params![name, ws.as_str(), key])?;
    }
    Ok(Ok(()))
}

fn consumer_conflict(consumer: &str, workspace: &WorkspaceId, stored: i64, expected: i64) -> StoreError {
    StoreError::Conflict(format!(
        "consumer {consumer} of workspace {workspace} is at {stored}, not at {expected}"
    ))
}

fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation => {
            StoreError::Conflict(e.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::Corrupt(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn event_type_code(t: EventType) -> i64 {
    EventType::ALL.iter().position(|x| *x == t).unwrap_or(0) as i64
}

fn event_type_from_code(code: i64) -> rusqlite::Result<EventType> {
    usize::try_from(code)
        .ok()
        .and_then(|i| EventType::ALL.get(i).copied())
        .ok_or(rusqlite::Error::IntegralValueOutOfRange(0, code))
}

fn key_kind(s: &str) -> rusqlite::Result<KeyKind> {
    KeyKind::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("key kind {s:?}").into(),
        )
    })
}

const EVENT_COLUMNS: &str = "seq, person_id, workspace_id, message_id, type, name, user_id, anonymous_id, \
     previous_id, timestamp, received_at, raw, enrichment";

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: row.get(0)?,
        person_id: row.get(1)?,
        event: NewEvent {
            workspace_id: WorkspaceId::from_stored(row.get(2)?),
            message_id: row.get(3)?,
            event_type: event_type_from_code(row.get(4)?)?,
            name: row.get(5)?,
            user_id: row.get(6)?,
            anonymous_id: row.get(7)?,
            previous_id: row.get(8)?,
            timestamp: Millis(row.get(9)?),
            received_at: Millis(row.get(10)?),
            raw: row.get(11)?,
            enrichment: row.get(12)?,
        },
    })
}

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.get(0)?,
        workspace_id: WorkspaceId::from_stored(row.get(1)?),
        kind: key_kind(&row.get::<_, String>(2)?)?,
        created_at: Millis(row.get(3)?),
        revoked_at: row.get::<_, Option<i64>>(4)?.map(Millis),
    })
}

fn message_ids(e: &NewEvent) -> MessageIds<'_> {
    MessageIds {
        user_id: e.user_id.as_deref(),
        anonymous_id: e.anonymous_id.as_deref(),
        previous_id: e.previous_id.as_deref(),
    }
}

/// The whole append transaction; see [`Store::append`].
fn append_blocking(
    writer: &mut Writer,
    events: &[NewEvent],
    dedup_since: Millis,
) -> rusqlite::Result<Vec<AppendOutcome>> {
    let Writer { conn, identities: cache } = writer;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Holding the write lock now: if anyone else committed since our last look, what the cache
    // knows may be stale.
    let data_version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    cache.validate(data_version);
    let mut fresh = Vec::with_capacity(events.len());
    {
        let mut dedup = tx.prepare_cached(
            "INSERT INTO message_ids (workspace_id, message_id, first_seen) VALUES (?1, ?2, ?3)
             ON CONFLICT (workspace_id, message_id) DO UPDATE SET first_seen = excluded.first_seen
             WHERE message_ids.first_seen < ?4",
        )?;
        for (i, e) in events.iter().enumerate() {
            let changed = dedup.execute(params![
                e.workspace_id.as_str(),
                e.message_id,
                e.received_at.0,
                dedup_since.0
            ])?;
            if changed == 1 {
                fresh.push(i);
            }
        }
    }

    // Identity resolution per workspace: load what is known about every id, then resolve.
    let mut resolvers: HashMap<&str, IdentityResolver> = HashMap::new();
    {
        let mut lookup = tx.prepare_cached(
            "SELECT i.person_id, p.user_id FROM identities i JOIN persons p ON p.id = i.person_id
             WHERE i.workspace_id = ?1 AND i.kind = ?2 AND i.value = ?3",
        )?;
        let mut loaded: std::collections::HashSet<(&str, IdKind, &str)> = Default::default();
        for &i in &fresh {
            let e = &events[i];
            let ws = e.workspace_id.as_str();
            let resolver = resolvers.entry(ws).or_default();
            for (kind, value) in message_ids(e).lookups() {
                if !loaded.insert((ws, kind, value)) {
                    continue;
                }
                let found = match cache.get(ws, kind, value) {
                    Some(hit) => Some(hit),
                    None => {
                        let found: Option<(i64, Option<String>)> = lookup
                            .query_row(params![ws, kind.code(), value], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?;
                        // Committed state, so safe to remember even if this transaction fails.
                        if let Some((person, user)) = &found {
                            cache.remember(ws, kind, value, *person, user.clone());
                        }
                        found
                    }
                };
                if let Some((person, user)) = found {
                    resolver.preload(kind, value, person, user);
                }
            }
        }
    }
    let mut refs = Vec::with_capacity(fresh.len());
    for &i in &fresh {
        let e = &events[i];
        let resolver = resolvers.get_mut(e.workspace_id.as_str()).expect("resolver made above");
        refs.push(resolver.resolve(message_ids(e)));
    }

    let mut ids: HashMap<(&str, PersonRef), PersonId> = HashMap::new();
    let mut merges: Vec<(&str, PersonId, PersonId)> = Vec::new();
    for (&ws, resolver) in &resolvers {
        apply_identity_ops(&tx, ws, resolver.ops(), &mut ids, &mut merges)?;
    }
    let mut first_seq: HashMap<&str, i64> = HashMap::new();

    let mut outcomes = vec![AppendOutcome::Duplicate; events.len()];
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (workspace_id, person_id, message_id, type, name, user_id, anonymous_id,
                 previous_id, timestamp, received_at, raw, enrichment)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for (&i, person) in fresh.iter().zip(refs) {
            let e = &events[i];
            let ws = e.workspace_id.as_str();
            let person = match person {
                Some(p) => {
                    let canonical = resolvers[ws].canonical(p);
                    resolve_ref(&ids, ws, canonical)
                }
                // Ingestion never lets a message without ids through; keep such a row findable
                // by workspace scans rather than fail the whole batch.
                None => 0,
            };
            insert.execute(params![
                ws,
                person,
                e.message_id,
                event_type_code(e.event_type),
                e.name,
                e.user_id,
                e.anonymous_id,
                e.previous_id,
                e.timestamp.0,
                e.received_at.0,
                e.raw,
                e.enrichment,
            ])?;
            let seq = tx.last_insert_rowid();
            first_seq.entry(ws).or_insert(seq);
            outcomes[i] = AppendOutcome::Stored { seq };
        }
    }
    if !merges.is_empty() {
        let mut record = tx.prepare_cached(
            "INSERT OR IGNORE INTO person_merges (workspace_id, seq, from_person, into_person) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (ws, from, into) in merges {
            // A merge comes from a stored event of its workspace, so the batch has a seq there.
            let seq = first_seq.get(ws).copied().unwrap_or_default();
            record.execute(params![ws, seq, from, into])?;
        }
    }
    if let Err(e) = tx.commit() {
        cache.clear();
        return Err(e);
    }
    for (&ws, resolver) in &resolvers {
        cache.committed(ws, resolver.ops(), |person| resolve_ref(&ids, ws, person));
    }
    Ok(outcomes)
}

fn model_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModelVersion> {
    Ok(ModelVersion {
        version: r.get(0)?,
        kind: r.get(1)?,
        created_at: Millis(r.get(2)?),
        as_of: Millis(r.get(3)?),
        metrics: r.get(4)?,
    })
}

fn identities_of(c: &Connection, ws: &WorkspaceId, person: PersonId) -> Result<Vec<(IdKind, String)>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT kind, value FROM identities WHERE workspace_id = ?1 AND person_id = ?2 ORDER BY kind, value",
        )
        .map_err(map_err)?;
    stmt.query_map(params![ws.as_str(), person], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(map_err)?
        .map(|row| {
            let (kind, value) = row.map_err(map_err)?;
            Ok((IdKind::from_code(kind).ok_or_else(|| corrupt(format!("identity kind {kind}")))?, value))
        })
        .collect()
}

fn resolve_ref(ids: &HashMap<(&str, PersonRef), PersonId>, ws: &str, person: PersonRef) -> PersonId {
    match person {
        PersonRef::Existing(id) => id,
        PersonRef::New(_) => ids[&(ws, person)],
    }
}

fn apply_identity_ops<'a>(
    tx: &rusqlite::Transaction<'_>,
    ws: &'a str,
    ops: &[IdentityOp],
    ids: &mut HashMap<(&'a str, PersonRef), PersonId>,
    merges: &mut Vec<(&'a str, PersonId, PersonId)>,
) -> rusqlite::Result<()> {
    for op in ops {
        match op {
            IdentityOp::CreatePerson { person, user_id } => {
                let id: i64 = tx
                    .prepare_cached(
                        "INSERT INTO persons (workspace_id, user_id) VALUES (?1, ?2) RETURNING id",
                    )?
                    .query_row(params![ws, user_id], |r| r.get(0))?;
                ids.insert((ws, *person), id);
            }
            IdentityOp::Link { kind, value, person } => {
                tx.prepare_cached(
                    "INSERT INTO identities (workspace_id, kind, value, person_id) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (workspace_id, kind, value) DO UPDATE SET person_id = excluded.person_id",
                )?
                .execute(params![ws, kind.code(), value, resolve_ref(ids, ws, *person)])?;
            }
            IdentityOp::SetUser { person, user_id } => {
                tx.prepare_cached("UPDATE persons SET user_id = ?1 WHERE workspace_id = ?2 AND id = ?3")?
                    .execute(params![user_id, ws, resolve_ref(ids, ws, *person)])?;
            }
            IdentityOp::Merge { from, into } => {
                let (from, into) = (resolve_ref(ids, ws, *from), resolve_ref(ids, ws, *into));
                merges.push((ws, from, into));
                tx.prepare_cached(
                    "UPDATE identities SET person_id = ?1 WHERE workspace_id = ?2 AND person_id = ?3",
                )?
                .execute(params![into, ws, from])?;
                tx.prepare_cached(
                    "UPDATE events SET person_id = ?1 WHERE workspace_id = ?2 AND person_id = ?3",
                )?
                .execute(params![into, ws, from])?;
                tx.prepare_cached("DELETE FROM persons WHERE workspace_id = ?1 AND id = ?2")?
                    .execute(params![ws, from])?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err)).await
    }

    async fn create_workspace(&self, workspace: &Workspace, keys: &[NewKey]) -> Result<()> {
        let (workspace, keys) = (workspace.clone(), keys.to_vec());
        self.write_tx(move |tx| {
            tx.execute(
                "INSERT INTO workspaces (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![workspace.id.as_str(), workspace.name, workspace.created_at.0],
            )?;
            for key in &keys {
                insert_key(tx, &workspace.id, key)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_workspaces(&self) -> Result<Vec<Workspace>> {
        self.read(|c| {
            let mut stmt = c
                .prepare("SELECT id, name, created_at FROM workspaces ORDER BY created_at, id")
                .map_err(map_err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Workspace {
                        id: WorkspaceId::from_stored(r.get(0)?),
                        name: r.get(1)?,
                        created_at: Millis(r.get(2)?),
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn workspace(&self, id: &WorkspaceId) -> Result<Option<Workspace>> {
        let id = id.clone();
        self.read(move |c| {
            c.query_row("SELECT name, created_at FROM workspaces WHERE id = ?1", [id.as_str()], |r| {
                Ok(Workspace { id: id.clone(), name: r.get(0)?, created_at: Millis(r.get(1)?) })
            })
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn add_key(&self, workspace: &WorkspaceId, key: &NewKey) -> Result<()> {
        let (ws, key) = (workspace.clone(), key.clone());
        self.write_tx(move |tx| {
            let exists = tx
                .query_row("SELECT 1 FROM workspaces WHERE id = ?1", [ws.as_str()], |_| Ok(()))
                .optional()?;
            if exists.is_none() {
                return Ok(false);
            }
            insert_key(tx, &ws, &key)?;
            Ok(true)
        })
        .await?
        .then_some(())
        .ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))
    }

    async fn list_keys(&self, workspace: &WorkspaceId) -> Result<Vec<KeyRecord>> {
        let ws = workspace.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT id, workspace_id, kind, created_at, revoked_at FROM api_keys
                     WHERE workspace_id = ?1 ORDER BY created_at, id",
                )
                .map_err(map_err)?;
            let rows = stmt.query_map([ws.as_str()], key_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn revoke_key(&self, workspace: &WorkspaceId, key_id: &str, at: Millis) -> Result<bool> {
        let (ws, key_id) = (workspace.clone(), key_id.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE api_keys SET revoked_at = ?1 WHERE workspace_id = ?2 AND id = ?3 AND revoked_at IS NULL",
                params![at.0, ws.as_str(), key_id],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn revoke_keys_except(
        &self,
        workspace: &WorkspaceId,
        kind: KeyKind,
        keep: &str,
        at: Millis,
    ) -> Result<u64> {
        let (ws, keep) = (workspace.clone(), keep.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE api_keys SET revoked_at = ?1
                 WHERE workspace_id = ?2 AND kind = ?3 AND id <> ?4 AND revoked_at IS NULL",
                params![at.0, ws.as_str(), kind.as_str(), keep],
            )
            .map(|n| n as u64)
        })
        .await
    }

    async fn find_key(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        let hash = *hash;
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, workspace_id, kind, created_at, revoked_at FROM api_keys WHERE hash = ?1",
            )
            .map_err(map_err)?
            .query_row([&hash.0[..]], key_from_row)
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn set_tracking_plan(&self, workspace: &WorkspaceId, plan: &TrackingPlan) -> Result<()> {
        let ws = workspace.clone();
        let plan = serde_json::to_string(plan).map_err(corrupt)?;
        let done = self
            .write_tx(move |tx| {
                let exists = tx.query_row("SELECT 1 FROM workspaces WHERE id = ?1", [ws.as_str()], |_| Ok(())).optional()?;
                if exists.is_none() {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO tracking_plans (workspace_id, plan, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (workspace_id) DO UPDATE SET plan = excluded.plan, updated_at = excluded.updated_at",
                    params![ws.as_str(), plan, Millis::now().0],
                )?;
                Ok(true)
            })
            .await?;
        done.then_some(()).ok_or_else(|| StoreError::NotFound(format!("workspace {workspace}")))
    }

    async fn tracking_plan(&self, workspace: &WorkspaceId) -> Result<Option<TrackingPlan>> {
        let ws = workspace.clone();
        let text: Option<String> = self
            .read(move |c| {
                c.prepare_cached("SELECT plan FROM tracking_plans WHERE workspace_id = ?1")
                    .map_err(map_err)?
                    .query_row([ws.as_str()], |r| r.get(0))
                    .optional()
                    .map_err(map_err)
            })
            .await?;
        text.map(|t| serde_json::from_str(&t).map_err(corrupt)).transpose()
    }

    async fn append(&self, events: Vec<NewEvent>, dedup_since: Millis) -> Result<Vec<AppendOutcome>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.write_with_cache(move |w| append_blocking(w, &events, dedup_since)).await
    }

    async fn events_after(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let ws = workspace.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&events_after_sql()).map_err(map_err)?;
            let rows = stmt
                .query_map(params![after_seq, ws.as_str(), limit as i64], event_from_row)
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn person_merges(
        &self,
        workspace: &WorkspaceId,
        after_seq: i64,
        up_to_seq: i64,
    ) -> Result<Vec<PersonMerge>> {
        let ws = workspace.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, from_person, into_person FROM person_merges
                     WHERE workspace_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq, from_person",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![ws.as_str(), after_seq, up_to_seq], |r| {
                    Ok(PersonMerge { seq: r.get(0)?, from: r.get(1)?, into: r.get(2)? })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn person_log(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
        before_seq: i64,
    ) -> Result<Vec<StoredEvent>> {
        let ws = workspace.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&person_log_sql()).map_err(map_err)?;
            let rows =
                stmt.query_map(params![ws.as_str(), person, before_seq], event_from_row).map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn consumer_state(&self, consumer: &str, workspace: &WorkspaceId) -> Result<Option<ConsumerState>> {
        let (name, ws) = (consumer.to_owned(), workspace.clone());
        self.read(move |c| {
            c.prepare_cached("SELECT checkpoint, meta FROM consumers WHERE name = ?1 AND workspace_id = ?2")
                .map_err(map_err)?
                .query_row(params![name, ws.as_str()], |r| {
                    Ok(ConsumerState { checkpoint: r.get(0)?, meta: r.get(1)? })
                })
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn consumer_rows(&self, consumer: &str, workspace: &WorkspaceId) -> Result<Vec<(i64, Vec<u8>)>> {
        let (name, ws) = (consumer.to_owned(), workspace.clone());
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT key, value FROM consumer_rows WHERE name = ?1 AND workspace_id = ?2 ORDER BY key",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![name, ws.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn consumer_row(
        &self,
        consumer: &str,
        workspace: &WorkspaceId,
        key: i64,
    ) -> Result<Option<Vec<u8>>> {
        let (name, ws) = (consumer.to_owned(), workspace.clone());
        self.read(move |c| {
            c.prepare_cached(
                "SELECT value FROM consumer_rows WHERE name = ?1 AND workspace_id = ?2 AND key = ?3",
            )
            .map_err(map_err)?
            .query_row(params![name, ws.as_str(), key], |r| r.get(0))
            .optional()
            .map_err(map_err)
        })
        .await
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
        let (ws, id, definition) = (workspace.clone(), id.to_owned(), definition.to_owned());
        self.write_tx(move |tx| decisions::put_definition(tx, &ws, kind, &id, &definition, at)).await
    }

    async fn definitions(
        &self,
        workspace: &WorkspaceId,
        kind: DefinitionKind,
    ) -> Result<Vec<DefinitionRecord>> {
        let ws = workspace.clone();
        self.read(move |c| decisions::definitions(c, &ws, kind).map_err(map_err)).await
    }

    async fn definition(
        &self,
        workspace: &WorkspaceId,
        kind: DefinitionKind,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<DefinitionRecord>> {
        let (ws, id) = (workspace.clone(), id.to_owned());
        self.read(move |c| decisions::definition(c, &ws, kind, &id, version).map_err(map_err)).await
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
        if let Some(journal) = &self.inner.journal {
            let entry = journal::Entry {
                ws: workspace.clone(),
                decisions: records.to_vec(),
                messages: outbox.to_vec(),
            };
            return match journal.append(entry)?.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(why)) => Err(StoreError::Unavailable(format!("decision journal failed: {why}"))),
                Err(_) => Err(StoreError::Unavailable("decision journal stopped".into())),
            };
        }
        let (ws, records, outbox) = (workspace.clone(), records.to_vec(), outbox.to_vec());
        self.write_tx(move |tx| {
            decisions::insert_decisions(tx, &ws, &records)?;
            messages::enqueue(tx, &ws, &outbox)?;
            Ok(())
        })
        .await
    }

    async fn enqueue_messages(&self, workspace: &WorkspaceId, outbox: &[MessageRecord]) -> Result<u64> {
        if outbox.is_empty() {
            return Ok(0);
        }
        let (ws, outbox) = (workspace.clone(), outbox.to_vec());
        self.write_tx(move |tx| messages::enqueue(tx, &ws, &outbox)).await
    }

    async fn claim_messages(
        &self,
        workspace: &WorkspaceId,
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let ws = workspace.clone();
        self.write_tx(move |tx| messages::claim(tx, &ws, now, lease_until, limit)).await
    }

    async fn expired_messages(
        &self,
        workspace: &WorkspaceId,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let ws = workspace.clone();
        self.read_settled(move |c| messages::expired(c, &ws, now, limit)).await
    }

    async fn update_messages(&self, workspace: &WorkspaceId, updates: &[MessageUpdate]) -> Result<u64> {
        if updates.is_empty() {
            return Ok(0);
        }
        let (ws, updates) = (workspace.clone(), updates.to_vec());
        self.write_tx(move |tx| messages::update(tx, &ws, &updates)).await
    }

    async fn messages(&self, workspace: &WorkspaceId, query: &MessageQuery) -> Result<Vec<MessageRecord>> {
        let (ws, query) = (workspace.clone(), query.clone());
        self.read_settled(move |c| messages::query(c, &ws, &query)).await
    }

    async fn message(&self, workspace: &WorkspaceId, id: &str) -> Result<Option<MessageRecord>> {
        let (ws, id) = (workspace.clone(), id.to_owned());
        self.read_settled(move |c| messages::one(c, &ws, &id)).await
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
        let (ws, ids) = (workspace.clone(), ids.to_vec());
        self.write_tx(move |tx| messages::mark_seen(tx, &ws, person, &ids, at)).await
    }

    async fn decisions(&self, workspace: &WorkspaceId, query: &DecisionQuery) -> Result<Vec<DecisionRecord>> {
        let (ws, query) = (workspace.clone(), query.clone());
        self.read_settled(move |c| decisions::decisions(c, &ws, &query)).await
    }

    async fn record_outcomes(&self, workspace: &WorkspaceId, outcomes: &[OutcomeUpdate]) -> Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let (ws, outcomes) = (workspace.clone(), outcomes.to_vec());
        self.write_tx(move |tx| {
            decisions::apply_outcomes(tx, &ws, &outcomes)?;
            Ok(())
        })
        .await
    }

    async fn commit_learning(
        &self,
        consumer: &str,
        workspace: &WorkspaceId,
        commit: LearnerCommit,
    ) -> Result<()> {
        let (name, ws) = (consumer.to_owned(), workspace.clone());
        let expected = commit.consumer.expected;
        let outcome = self
            .write_tx(move |tx| {
                if let Err(stored) = commit_consumer_tx(tx, &name, &ws, &commit.consumer)? {
                    return Ok(Err(stored));
                }
                decisions::apply_outcomes(tx, &ws, &commit.outcomes)?;
                Ok(Ok(()))
            })
            .await?;
        outcome.map_err(|stored| consumer_conflict(consumer, workspace, stored, expected))
    }

    async fn setting(&self, workspace: &WorkspaceId, name: &str) -> Result<Option<String>> {
        let (ws, name) = (workspace.clone(), name.to_owned());
        self.read(move |c| {
            c.prepare_cached("SELECT value FROM settings WHERE workspace_id = ?1 AND name = ?2")
                .map_err(map_err)?
                .query_row(params![ws.as_str(), name], |r| r.get(0))
                .optional()
                .map_err(map_err)
        })
        .await
    }

    async fn set_setting(&self, workspace: &WorkspaceId, name: &str, value: &str, at: Millis) -> Result<()> {
        let (ws, name, value) = (workspace.clone(), name.to_owned(), value.to_owned());
        let known = self
            .write_tx(move |tx| {
                let known = tx
                    .query_row("SELECT 1 FROM workspaces WHERE id = ?1", [ws.as_str()], |_| Ok(()))
                    .optional()?
                    .is_some();
                if known {
                    tx.execute(
                        "INSERT INTO settings (workspace_id, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (workspace_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                        params![ws.as_str(), name, value, at.0],
                    )?;
                }
                Ok(known)
            })
            .await?;
        if known { Ok(()) } else { Err(StoreError::NotFound(format!("workspace {workspace}"))) }
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
        let (ws, kind, metrics, model) =
            (workspace.clone(), kind.to_owned(), metrics.to_owned(), model.to_vec());
        self.write_tx(move |tx| {
            let version: i64 = tx.query_row(
                "SELECT coalesce(max(version), 0) + 1 FROM models WHERE workspace_id = ?1 AND kind = ?2",
                params![ws.as_str(), kind],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO models (workspace_id, kind, version, created_at, as_of, metrics, model)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![ws.as_str(), kind, version, created_at.0, as_of.0, metrics, model],
            )?;
            Ok(version)
        })
        .await
    }

    async fn list_models(&self, workspace: &WorkspaceId, kind: &str) -> Result<Vec<ModelVersion>> {
        let (ws, kind) = (workspace.clone(), kind.to_owned());
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT version, kind, created_at, as_of, metrics FROM models
                     WHERE workspace_id = ?1 AND kind = ?2 ORDER BY version",
                )
                .map_err(map_err)?;
            let rows = stmt.query_map(params![ws.as_str(), kind], model_version).map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn latest_model(
        &self,
        workspace: &WorkspaceId,
        kind: &str,
        at_most: Option<Millis>,
    ) -> Result<Option<(ModelVersion, Vec<u8>)>> {
        let (ws, kind, bound) = (workspace.clone(), kind.to_owned(), at_most.map_or(i64::MAX, |m| m.0));
        self.read(move |c| {
            c.prepare_cached(
                "SELECT version, kind, created_at, as_of, metrics, model FROM models
                 WHERE workspace_id = ?1 AND kind = ?2 AND as_of <= ?3 ORDER BY version DESC LIMIT 1",
            )
            .map_err(map_err)?
            .query_row(params![ws.as_str(), kind, bound], |r| Ok((model_version(r)?, r.get(5)?)))
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn find_person(
        &self,
        workspace: &WorkspaceId,
        kind: IdKind,
        value: &str,
    ) -> Result<Option<Person>> {
        let (ws, value) = (workspace.clone(), value.to_owned());
        self.read(move |c| find_person_in(c, &ws, kind, &value)).await
    }

    async fn person(&self, workspace: &WorkspaceId, person: PersonId) -> Result<Option<Person>> {
        let ws = workspace.clone();
        self.read(move |c| {
            let user_id: Option<Option<String>> = c
                .prepare_cached("SELECT user_id FROM persons WHERE workspace_id = ?1 AND id = ?2")
                .map_err(map_err)?
                .query_row(params![ws.as_str(), person], |r| r.get(0))
                .optional()
                .map_err(map_err)?;
            let Some(user_id) = user_id else { return Ok(None) };
            Ok(Some(Person { id: person, user_id, identities: identities_of(c, &ws, person)? }))
        })
        .await
    }

    async fn event_counts(&self, workspace: &WorkspaceId, person: PersonId) -> Result<Vec<EventCount>> {
        let ws = workspace.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT type, name, count(*), min(timestamp), max(timestamp) FROM events
                     WHERE workspace_id = ?1 AND person_id = ?2 GROUP BY type, name ORDER BY type, name",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![ws.as_str(), person], |r| {
                    Ok(EventCount {
                        event_type: event_type_from_code(r.get(0)?)?,
                        name: r.get(1)?,
                        count: r.get::<_, i64>(2)? as u64,
                        first: Millis(r.get(3)?),
                        last: Millis(r.get(4)?),
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn identify_traits(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
    ) -> Result<Vec<serde_json::Value>> {
        let ws = workspace.clone();
        self.read(move |c| identify_traits_in(c, &ws, person)).await
    }

    async fn person_with_traits(
        &self,
        workspace: &WorkspaceId,
        kind: IdKind,
        value: &str,
    ) -> Result<Option<(Person, serde_json::Map<String, serde_json::Value>)>> {
        let (ws, value) = (workspace.clone(), value.to_owned());
        self.read(move |c| {
            let Some(person) = find_person_in(c, &ws, kind, &value)? else { return Ok(None) };
            let merged = whisperer_core::event::fold_traits(&identify_traits_in(c, &ws, person.id)?);
            Ok(Some((person, merged)))
        })
        .await
    }

    async fn person_events(
        &self,
        workspace: &WorkspaceId,
        person: PersonId,
        before: Option<EventCursor>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let ws = workspace.clone();
        let (ts, seq) = before.map_or((i64::MAX, i64::MAX), |c| (c.timestamp.0, c.seq));
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE workspace_id = ?1 AND person_id = ?2 AND (timestamp, seq) < (?3, ?4)
                     ORDER BY timestamp DESC, seq DESC LIMIT ?5"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![ws.as_str(), person, ts, seq, limit as i64], event_from_row)
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn workspace_stats(&self, workspace: &WorkspaceId) -> Result<WorkspaceStats> {
        let ws = workspace.clone();
        self.read(move |c| {
            let events: i64 = c
                .query_row("SELECT count(*) FROM events WHERE workspace_id = ?1", [ws.as_str()], |r| r.get(0))
                .map_err(map_err)?;
            let (persons, identified): (i64, i64) = c
                .query_row(
                    "SELECT count(*), count(user_id) FROM persons WHERE workspace_id = ?1",
                    [ws.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(map_err)?;
            Ok(WorkspaceStats {
                events: events as u64,
                persons: persons as u64,
                identified_persons: identified as u64,
            })
        })
        .await
    }

    async fn prune_dedup(&self, before: Millis) -> Result<u64> {
        self.write(move |c| {
            c.execute("DELETE FROM message_ids WHERE first_seen < ?1", [before.0]).map(|n| n as u64)
        })
        .await
    }
}

fn insert_key(tx: &rusqlite::Transaction<'_>, ws: &WorkspaceId, key: &NewKey) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO api_keys (id, hash, workspace_id, kind, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![key.id, &key.hash.0[..], ws.as_str(), key.kind.as_str(), key.created_at.0],
    )
}

#[cfg(test)]
mod plans {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(params![0, "ws", 10], |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn log_reads_use_their_indexes_and_never_sort() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let conn = open_connection(store.path()).unwrap();
        let after = plan(&conn, &events_after_sql());
        assert!(after.contains("events_log") && !after.contains("TEMP B-TREE"), "{after}");
        let person = plan(&conn, &person_log_sql());
        assert!(person.contains("events_person"), "{person}");
    }
}
