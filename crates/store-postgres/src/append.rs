//! The append transaction; see [`Store::append`](whisperer_store::Store::append).
//!
//! A batch costs a fixed number of round trips whatever its size: every step sends whole
//! columns as arrays and lets `unnest` turn them back into rows.
//!
//! Appends to one workspace are serialised by a transaction-level advisory lock taken first
//! thing. That gives PostgreSQL the guarantees SQLite gets from its single writer: identity
//! resolution sees every id committed before it (two batches cannot both create a person for
//! the same new user), and a workspace's seqs are handed out in commit order, because the next
//! batch can only reserve seqs after the previous one has committed and released the lock. A
//! reader of `events_after` therefore never sees seq n+1 before seq n of its workspace, and a
//! consumer that checkpoints the last seq it read never skips an event.

use chrono::{DateTime, Utc};
use deadpool_postgres::{Client, Transaction};
use serde_json::Value;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tokio_postgres::error::SqlState;
use whisperer_core::event::AppendOutcome;
use whisperer_core::identity::{IdKind, IdentityResolver, MessageIds, PersonId};
use whisperer_core::{Millis, NewEvent};
use whisperer_store::{Result, StoreError};

use crate::identity::{Folded, creates};
use crate::partitions::{Known, Month};
use crate::{LOCK_APPEND, bound, db_err, event_type_code, get, timestamptz};

/// What append computes about an event before touching the database.
struct Row {
    timestamp: DateTime<Utc>,
    received_at: DateTime<Utc>,
    month: Month,
    properties: Option<Value>,
}

impl Row {
    fn new(e: &NewEvent) -> Result<Self> {
        let text = [
            Some(e.workspace_id.as_str()),
            Some(e.message_id.as_str()),
            e.name.as_deref(),
            e.user_id.as_deref(),
            e.anonymous_id.as_deref(),
            e.previous_id.as_deref(),
            Some(e.raw.as_str()),
            Some(e.enrichment.as_str()),
        ];
        // Refused here with a clear reason rather than by the server as an encoding error.
        if text.into_iter().flatten().any(|s| s.contains('\0')) {
            return Err(StoreError::Conflict(format!(
                "message {:?} contains a nul character, which postgresql text cannot hold",
                e.message_id
            )));
        }
        let timestamp = timestamptz(e.timestamp)?;
        let month = Month::of(timestamp).ok_or_else(|| {
            StoreError::Conflict(format!(
                "timestamp {} of message {:?} is outside the years 1 to 9999",
                e.timestamp.0, e.message_id
            ))
        })?;
        Ok(Self {
            timestamp,
            received_at: timestamptz(e.received_at)?,
            month,
            properties: properties(&e.raw),
        })
    }
}

/// The `properties` of a message, or its `traits` when it has none (identify, group).
fn properties(raw: &str) -> Option<Value> {
    let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(raw) else { return None };
    let value = match message.remove("properties") {
        Some(v) if !v.is_null() => v,
        _ => message.remove("traits")?,
    };
    // jsonb cannot hold U+0000; the exact text stays in raw, so the queryable copy may differ.
    Some(if raw.contains("\\u0000") { replace_nul(value) } else { value })
}

fn replace_nul(value: Value) -> Value {
    const REPLACEMENT: &str = "\u{FFFD}";
    match value {
        Value::String(s) => Value::String(s.replace('\0', REPLACEMENT)),
        Value::Array(items) => Value::Array(items.into_iter().map(replace_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter().map(|(k, v)| (k.replace('\0', REPLACEMENT), replace_nul(v))).collect(),
        ),
        other => other,
    }
}

fn message_ids(e: &NewEvent) -> MessageIds<'_> {
    MessageIds {
        user_id: e.user_id.as_deref(),
        anonymous_id: e.anonymous_id.as_deref(),
        previous_id: e.previous_id.as_deref(),
    }
}

enum Failure {
    Store(StoreError),
    /// The insert found no partition for a month this store believed existed.
    PartitionMissing(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

fn db(e: tokio_postgres::Error) -> Failure {
    Failure::Store(db_err(e))
}

/// Appends `events`; see [`Store::append`](whisperer_store::Store::append).
pub async fn append(
    client: &mut Client,
    known: &Known,
    events: &[NewEvent],
    dedup_since: Millis,
) -> Result<Vec<AppendOutcome>> {
    let rows = events.iter().map(Row::new).collect::<Result<Vec<_>>>()?;
    let months: BTreeSet<Month> = rows.iter().map(|r| r.month).collect();
    let since = bound(dedup_since);
    let mut retried = false;
    loop {
        known.ensure(client, &months).await?;
        match transaction(client, events, &rows, since).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(Failure::PartitionMissing(e)) if !retried => {
                // Someone dropped a partition behind this store's back; relearn and try again.
                tracing::warn!(error = %e, "events partition missing, recreating");
                known.forget();
                retried = true;
            }
            Err(Failure::PartitionMissing(e) | Failure::Store(e)) => return Err(e),
        }
    }
}

async fn transaction(
    client: &mut Client,
    events: &[NewEvent],
    rows: &[Row],
    since: DateTime<Utc>,
) -> Result<Vec<AppendOutcome>, Failure> {
    let tx = client.transaction().await.map_err(db)?;
    let mut workspaces: Vec<&str> = events.iter().map(|e| e.workspace_id.as_str()).collect();
    workspaces.sort_unstable();
    workspaces.dedup();
    // Sorted, so two batches spanning the same workspaces cannot deadlock on each other.
    let lock = tx.prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))").await.map_err(db)?;
    for ws in &workspaces {
        tx.execute(&lock, &[&LOCK_APPEND, ws]).await.map_err(db)?;
    }

    let fresh = dedup(&tx, events, rows, since).await?;
    let mut outcomes = vec![AppendOutcome::Duplicate; events.len()];
    if fresh.is_empty() {
        tx.commit().await.map_err(db)?;
        return Ok(outcomes);
    }

    let (persons, merges) = resolve(&tx, events, &fresh).await?;
    let seqs = reserve(&tx, "events_seq", fresh.len()).await?;
    if seqs.len() != fresh.len() || persons.len() != fresh.len() {
        return Err(StoreError::Unavailable("reserved seqs or persons do not match the batch".into()).into());
    }
    let mut first_seq: HashMap<&str, i64> = HashMap::new();
    for (&i, &seq) in fresh.iter().zip(&seqs) {
        outcomes[i] = AppendOutcome::Stored { seq };
        first_seq.entry(events[i].workspace_id.as_str()).or_insert(seq);
    }
    if !merges.is_empty() {
        // A merge comes from a stored event of its workspace, so the batch has a seq there.
        let seq: Vec<i64> =
            merges.iter().map(|(w, _, _)| first_seq.get(w).copied().unwrap_or_default()).collect();
        let ws: Vec<&str> = merges.iter().map(|(w, _, _)| *w).collect();
        let from: Vec<i64> = merges.iter().map(|(_, f, _)| *f).collect();
        let into: Vec<i64> = merges.iter().map(|(_, _, i)| *i).collect();
        let record = tx
            .prepare_cached(
                "INSERT INTO person_merges (workspace_id, seq, from_person, into_person)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[]) ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(db)?;
        tx.execute(&record, &[&ws, &seq, &from, &into]).await.map_err(db)?;
    }
    let ws = column(&fresh, events, rows, |e, _| e.workspace_id.as_str());
    let message_id = column(&fresh, events, rows, |e, _| e.message_id.as_str());
    let kind = column(&fresh, events, rows, |e, _| event_type_code(e.event_type));
    let name = column(&fresh, events, rows, |e, _| e.name.as_deref());
    let user_id = column(&fresh, events, rows, |e, _| e.user_id.as_deref());
    let anonymous_id = column(&fresh, events, rows, |e, _| e.anonymous_id.as_deref());
    let previous_id = column(&fresh, events, rows, |e, _| e.previous_id.as_deref());
    let timestamp = column(&fresh, events, rows, |_, r| r.timestamp);
    let received_at = column(&fresh, events, rows, |_, r| r.received_at);
    let raw = column(&fresh, events, rows, |e, _| e.raw.as_str());
    let enrichment = column(&fresh, events, rows, |e, _| e.enrichment.as_str());
    let properties = column(&fresh, events, rows, |_, r| r.properties.as_ref());
    let insert = tx
        .prepare_cached(
            r#"INSERT INTO events (seq, workspace_id, person_id, message_id, type, name, user_id, anonymous_id,
                   previous_id, "timestamp", received_at, raw, enrichment, properties)
               OVERRIDING SYSTEM VALUE
               SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::int2[], $6::text[],
                   $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::text[],
                   $13::text[], $14::jsonb[])"#,
        )
        .await
        .map_err(db)?;
    tx.execute(
        &insert,
        &[
            &seqs,
            &ws,
            &persons,
            &message_id,
            &kind,
            &name,
            &user_id,
            &anonymous_id,
            &previous_id,
            &timestamp,
            &received_at,
            &raw,
            &enrichment,
            &properties,
        ],
    )
    .await
    .map_err(|e| {
        let missing_partition = e.code() == Some(&SqlState::CHECK_VIOLATION)
            && e.as_db_error().is_some_and(|d| d.message().starts_with("no partition of relation"));
        if missing_partition { Failure::PartitionMissing(db_err(e)) } else { db(e) }
    })?;
    tx.commit().await.map_err(db)?;
    Ok(outcomes)
}

/// One column of the fresh events, for `unnest`.
fn column<'a, T>(
    fresh: &[usize],
    events: &'a [NewEvent],
    rows: &'a [Row],
    f: impl Fn(&'a NewEvent, &'a Row) -> T,
) -> Vec<T> {
    fresh.iter().map(|&i| f(&events[i], &rows[i])).collect()
}

/// Records the batch's message ids and returns the indexes of the events to store, in order.
///
/// Matches the SQLite store, which upserts one event at a time: an id already seen in its
/// workspace at or after `since` is a duplicate; a repeat within the batch is stored again only
/// when the copy stored before it is itself older than `since`, which it practically never is.
/// One statement cannot update a row twice, so repeats are settled here and each id is sent once,
/// with the `first_seen` its last stored copy leaves behind.
async fn dedup(
    tx: &Transaction<'_>,
    events: &[NewEvent],
    rows: &[Row],
    since: DateTime<Utc>,
) -> Result<Vec<usize>, Failure> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        match group_of.entry((e.workspace_id.as_str(), e.message_id.as_str())) {
            Entry::Occupied(g) => groups[*g.get()].push(i),
            Entry::Vacant(v) => {
                v.insert(groups.len());
                groups.push(vec![i]);
            }
        }
    }
    let (mut ws, mut message_id, mut first_seen) = (Vec::new(), Vec::new(), Vec::new());
    for group in &mut groups {
        let mut last = rows[group[0]].received_at;
        let mut kept = vec![group[0]];
        for &i in &group[1..] {
            if last < since {
                kept.push(i);
                last = rows[i].received_at;
            }
        }
        *group = kept;
        let e = &events[group[0]];
        ws.push(e.workspace_id.as_str());
        message_id.push(e.message_id.as_str());
        first_seen.push(last);
    }
    let upsert = tx
        .prepare_cached(
            "INSERT INTO message_ids (workspace_id, message_id, first_seen)
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
             ON CONFLICT (workspace_id, message_id) DO UPDATE SET first_seen = EXCLUDED.first_seen
             WHERE message_ids.first_seen < $4
             RETURNING workspace_id, message_id",
        )
        .await
        .map_err(db)?;
    let written = tx.query(&upsert, &[&ws, &message_id, &first_seen, &since]).await.map_err(db)?;
    let mut fresh = Vec::new();
    for row in &written {
        let (ws, id): (&str, &str) = (get(row, 0)?, get(row, 1)?);
        let group = group_of
            .get(&(ws, id))
            .ok_or_else(|| StoreError::Corrupt(format!("dedup returned message {id:?} it was not given")))?;
        fresh.extend_from_slice(&groups[*group]);
    }
    fresh.sort_unstable();
    Ok(fresh)
}

/// Persons merged away by a batch: (workspace, from, into).
type Merges<'a> = Vec<(&'a str, PersonId, PersonId)>;

/// Resolves the person of every fresh event, writing whatever identity changes that takes, and
/// returns the persons with the merges made.
async fn resolve<'a>(
    tx: &Transaction<'_>,
    events: &'a [NewEvent],
    fresh: &[usize],
) -> Result<(Vec<PersonId>, Merges<'a>), Failure> {
    let mut resolvers: BTreeMap<&str, IdentityResolver> = BTreeMap::new();
    let mut wanted: HashSet<(&str, IdKind, &str)> = HashSet::new();
    let (mut ws, mut kind, mut value) = (Vec::new(), Vec::new(), Vec::new());
    for &i in fresh {
        let e = &events[i];
        let w = e.workspace_id.as_str();
        resolvers.entry(w).or_default();
        for (k, v) in message_ids(e).lookups() {
            if wanted.insert((w, k, v)) {
                ws.push(w);
                kind.push(k.code());
                value.push(v);
            }
        }
    }
    if !ws.is_empty() {
        let preload = tx
            .prepare_cached(
                "SELECT i.workspace_id, i.kind, i.value, i.person_id, p.user_id
                 FROM unnest($1::text[], $2::int2[], $3::text[]) AS q (workspace_id, kind, value)
                 JOIN identities i ON i.workspace_id = q.workspace_id AND i.kind = q.kind AND i.value = q.value
                 JOIN persons p ON p.workspace_id = i.workspace_id AND p.id = i.person_id",
            )
            .await
            .map_err(db)?;
        for row in tx.query(&preload, &[&ws, &kind, &value]).await.map_err(db)? {
            let (w, code, v, person, user): (&str, i16, &str, i64, Option<String>) =
                (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?, get(&row, 3)?, get(&row, 4)?);
            let kind = IdKind::from_code(code.into())
                .ok_or_else(|| StoreError::Corrupt(format!("identity kind {code}")))?;
            if let Some(resolver) = resolvers.get_mut(w) {
                resolver.preload(kind, v, person, user);
            }
        }
    }

    let mut refs = Vec::with_capacity(fresh.len());
    for &i in fresh {
        let e = &events[i];
        let resolver = resolvers
            .get_mut(e.workspace_id.as_str())
            .ok_or_else(|| StoreError::Unavailable("no identity resolver for the workspace".into()))?;
        refs.push(resolver.resolve(message_ids(e)));
    }

    let needed: usize = resolvers.values().map(|r| creates(r.ops())).sum();
    let mut reserved = reserve(tx, "persons_id_seq", needed).await?.into_iter();
    let mut folded: HashMap<&str, Folded> = HashMap::new();
    for (&w, resolver) in &resolvers {
        folded.insert(w, Folded::fold(resolver.ops(), &mut reserved)?);
    }
    write_identities(tx, &folded).await?;

    let mut persons = Vec::with_capacity(fresh.len());
    for (&i, person) in fresh.iter().zip(refs) {
        let w = events[i].workspace_id.as_str();
        persons.push(match person {
            Some(p) => {
                let canonical = resolvers.get(w).map(|r| r.canonical(p)).unwrap_or(p);
                folded
                    .get(w)
                    .ok_or_else(|| StoreError::Unavailable("no identity state for the workspace".into()))?
                    .person(canonical)?
            }
            // Ingestion never lets a message without ids through; keep such a row findable by
            // workspace scans rather than fail the whole batch.
            None => 0,
        });
    }
    let mut merges: Merges<'a> = folded
        .iter()
        .flat_map(|(w, f)| f.merges.iter().map(move |(from, into)| (*w, *from, *into)))
        .collect();
    merges.sort_unstable();
    Ok((persons, merges))
}

/// Takes `n` values from a sequence, ascending.
async fn reserve(tx: &Transaction<'_>, sequence: &str, n: usize) -> Result<Vec<i64>, Failure> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let stmt = tx
        .prepare_cached(&format!("SELECT nextval('{sequence}') FROM generate_series(1, $1::int8)"))
        .await
        .map_err(db)?;
    let count = i64::try_from(n).map_err(|_| StoreError::Conflict(format!("batch of {n} is too large")))?;
    let mut values = tx
        .query(&stmt, &[&count])
        .await
        .map_err(db)?
        .iter()
        .map(|r| get(r, 0))
        .collect::<Result<Vec<i64>>>()?;
    values.sort_unstable();
    Ok(values)
}

async fn write_identities(tx: &Transaction<'_>, folded: &HashMap<&str, Folded>) -> Result<(), Failure> {
    let mut ordered: Vec<_> = folded.iter().collect();
    ordered.sort_by_key(|(w, _)| **w);

    let (mut ws, mut id, mut user) = (Vec::new(), Vec::new(), Vec::new());
    for (w, f) in &ordered {
        for (p, u) in &f.new_persons {
            ws.push(**w);
            id.push(*p);
            user.push(u.as_deref());
        }
    }
    if !ws.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO persons (id, workspace_id, user_id) OVERRIDING SYSTEM VALUE
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[])",
            )
            .await
            .map_err(db)?;
        tx.execute(&stmt, &[&id, &ws, &user]).await.map_err(db)?;
    }

    let (mut ws, mut from, mut into) = (Vec::new(), Vec::new(), Vec::new());
    for (w, f) in &ordered {
        for (a, b) in &f.merges {
            ws.push(**w);
            from.push(*a);
            into.push(*b);
        }
    }
    if !ws.is_empty() {
        for sql in [
            "UPDATE identities t SET person_id = m.into_id
             FROM unnest($1::text[], $2::int8[], $3::int8[]) AS m (workspace_id, from_id, into_id)
             WHERE t.workspace_id = m.workspace_id AND t.person_id = m.from_id",
            "UPDATE events t SET person_id = m.into_id
             FROM unnest($1::text[], $2::int8[], $3::int8[]) AS m (workspace_id, from_id, into_id)
             WHERE t.workspace_id = m.workspace_id AND t.person_id = m.from_id",
        ] {
            let stmt = tx.prepare_cached(sql).await.map_err(db)?;
            tx.execute(&stmt, &[&ws, &from, &into]).await.map_err(db)?;
        }
        let stmt = tx
            .prepare_cached(
                "DELETE FROM persons t USING unnest($1::text[], $2::int8[]) AS m (workspace_id, id)
                 WHERE t.workspace_id = m.workspace_id AND t.id = m.id",
            )
            .await
            .map_err(db)?;
        tx.execute(&stmt, &[&ws, &from]).await.map_err(db)?;
    }

    let (mut ws, mut id, mut user) = (Vec::new(), Vec::new(), Vec::new());
    for (w, f) in &ordered {
        for (p, u) in &f.set_users {
            ws.push(**w);
            id.push(*p);
            user.push(u.as_str());
        }
    }
    if !ws.is_empty() {
        let stmt = tx
            .prepare_cached(
                "UPDATE persons t SET user_id = m.user_id
                 FROM unnest($1::text[], $2::int8[], $3::text[]) AS m (workspace_id, id, user_id)
                 WHERE t.workspace_id = m.workspace_id AND t.id = m.id",
            )
            .await
            .map_err(db)?;
        tx.execute(&stmt, &[&ws, &id, &user]).await.map_err(db)?;
    }

    let (mut ws, mut kind, mut value, mut person) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (w, f) in &ordered {
        for (k, v, p) in &f.links {
            ws.push(**w);
            kind.push(k.code());
            value.push(v.as_str());
            person.push(*p);
        }
    }
    if !ws.is_empty() {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO identities (workspace_id, kind, value, person_id)
                 SELECT * FROM unnest($1::text[], $2::int2[], $3::text[], $4::int8[])
                 ON CONFLICT (workspace_id, kind, value) DO UPDATE SET person_id = EXCLUDED.person_id",
            )
            .await
            .map_err(db)?;
        tx.execute(&stmt, &[&ws, &kind, &value, &person]).await.map_err(db)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn properties_fall_back_to_traits() {
        assert_eq!(properties(r#"{"type":"track","properties":{"a":1}}"#), Some(json!({"a": 1})));
        assert_eq!(
            properties(r#"{"type":"identify","traits":{"plan":"pro"}}"#),
            Some(json!({"plan": "pro"}))
        );
        assert_eq!(properties(r#"{"properties":null,"traits":{"b":2}}"#), Some(json!({"b": 2})));
        assert_eq!(properties(r#"{"type":"alias"}"#), None);
        assert_eq!(properties("not json"), None);
        assert_eq!(properties("[1]"), None);
    }

    #[test]
    fn nul_escapes_become_replacement_characters() {
        let p = properties(r#"{"properties":{"a\u0000":"x\u0000y","n":[ "\u0000" ]}}"#).unwrap();
        assert_eq!(p, json!({"a\u{FFFD}": "x\u{FFFD}y", "n": ["\u{FFFD}"]}));
    }
}
