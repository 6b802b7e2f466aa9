//! The outbox: messages to send and where their delivery stands.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use whisperer_core::{Millis, WorkspaceId};
use whisperer_store::{MessageQuery, MessageRecord, MessageStatus, MessageUpdate};

const COLUMNS: &str =
    "id, person_id, channel, decision_id, campaign, status, attempts, due_at, lease_until, provider,
     provider_message_id, body, error, created_at, updated_at, seen_at";

pub fn enqueue(tx: &Transaction<'_>, ws: &WorkspaceId, messages: &[MessageRecord]) -> rusqlite::Result<u64> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO messages (workspace_id, id, person_id, channel, decision_id, campaign, status, attempts,
             due_at, lease_until, provider, provider_message_id, body, error, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (workspace_id, id) DO NOTHING",
    )?;
    let mut inserted = 0;
    for m in messages {
        inserted += insert.execute(params![
            ws.as_str(),
            m.id,
            m.person,
            m.channel,
            m.decision_id,
            m.campaign,
            m.status.as_str(),
            m.attempts,
            m.due_at.0,
            m.lease_until.map(|t| t.0),
            m.provider,
            m.provider_message_id,
            m.body,
            m.error,
            m.created_at.0,
            m.updated_at.0,
        ])? as u64;
    }
    Ok(inserted)
}

pub fn claim(
    tx: &Transaction<'_>,
    ws: &WorkspaceId,
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> rusqlite::Result<Vec<MessageRecord>> {
    let claimed: Vec<MessageRecord> = tx
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages
             WHERE workspace_id = ?1 AND status = 'queued' AND due_at <= ?2
             ORDER BY due_at, id LIMIT ?3"
        ))?
        .query_map(params![ws.as_str(), now.0, limit as i64], row)?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = tx.prepare_cached(
        "UPDATE messages SET status = 'sending', lease_until = ?3, attempts = attempts + 1, updated_at = ?4
         WHERE workspace_id = ?1 AND id = ?2",
    )?;
    let mut out = Vec::with_capacity(claimed.len());
    for mut m in claimed {
        update.execute(params![ws.as_str(), m.id, lease_until.0, now.0])?;
        m.status = MessageStatus::Sending;
        m.lease_until = Some(lease_until);
        m.attempts += 1;
        m.updated_at = now;
        out.push(m);
    }
    Ok(out)
}

pub fn expired(
    c: &Connection,
    ws: &WorkspaceId,
    now: Millis,
    limit: usize,
) -> rusqlite::Result<Vec<MessageRecord>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages
         WHERE workspace_id = ?1 AND status = 'sending' AND lease_until < ?2
         ORDER BY due_at, id LIMIT ?3"
    ))?
    .query_map(params![ws.as_str(), now.0, limit as i64], row)?
    .collect()
}

pub fn update(tx: &Transaction<'_>, ws: &WorkspaceId, updates: &[MessageUpdate]) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare_cached(
        "UPDATE messages SET
             status = ?4,
             due_at = COALESCE(?5, due_at),
             attempts = CASE WHEN ?6 THEN 0 ELSE attempts END,
             lease_until = NULL,
             provider = COALESCE(?7, provider),
             provider_message_id = COALESCE(?8, provider_message_id),
             body = COALESCE(?9, body),
             error = CASE WHEN ?4 = 'sent' THEN ?10 ELSE COALESCE(?10, error) END,
             updated_at = ?11
         WHERE workspace_id = ?1 AND id = ?2 AND status = ?3",
    )?;
    let mut applied = 0;
    for u in updates {
        applied += stmt.execute(params![
            ws.as_str(),
            u.id,
            u.from.as_str(),
            u.status.as_str(),
            u.due_at.map(|t| t.0),
            u.reset_attempts,
            u.provider,
            u.provider_message_id,
            u.body,
            u.error,
            u.at.0,
        ])? as u64;
    }
    Ok(applied)
}

pub fn query(c: &Connection, ws: &WorkspaceId, q: &MessageQuery) -> rusqlite::Result<Vec<MessageRecord>> {
    let (before_at, before_id) = match &q.before {
        Some((at, id)) => (Some(at.0), Some(id.as_str())),
        None => (None, None),
    };
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages
         WHERE workspace_id = ?1
           AND (?2 IS NULL OR status = ?2)
           AND (?3 IS NULL OR person_id = ?3)
           AND (?4 IS NULL OR decision_id = ?4)
           AND (?5 IS NULL OR provider_message_id = ?5)
           AND (?6 IS NULL OR (created_at, id) < (?6, ?7))
           AND (?9 IS NULL OR due_at <= ?9)
           AND (?10 IS NULL OR channel = ?10)
           AND (?11 = 0 OR seen_at IS NULL)
         ORDER BY created_at DESC, id DESC LIMIT ?8"
    ))?
    .query_map(
        params![
            ws.as_str(),
            q.status.map(MessageStatus::as_str),
            q.person,
            q.decision_id,
            q.provider_message_id,
            before_at,
            before_id,
            q.limit as i64,
            q.due_by.map(|t| t.0),
            q.channel,
            q.unseen
        ],
        row,
    )?
    .collect()
}

pub fn one(c: &Connection, ws: &WorkspaceId, id: &str) -> rusqlite::Result<Option<MessageRecord>> {
    c.prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE workspace_id = ?1 AND id = ?2"))?
        .query_row(params![ws.as_str(), id], row)
        .optional()
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRecord> {
    let status: String = r.get(5)?;
    Ok(MessageRecord {
        id: r.get(0)?,
        person: r.get(1)?,
        channel: r.get(2)?,
        decision_id: r.get(3)?,
        campaign: r.get(4)?,
        status: MessageStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("unknown message status {status:?}").into(),
            )
        })?,
        attempts: r.get(6)?,
        due_at: Millis(r.get(7)?),
        lease_until: r.get::<_, Option<i64>>(8)?.map(Millis),
        provider: r.get(9)?,
        provider_message_id: r.get(10)?,
        body: r.get(11)?,
        error: r.get(12)?,
        created_at: Millis(r.get(13)?),
        updated_at: Millis(r.get(14)?),
        seen_at: r.get::<_, Option<i64>>(15)?.map(Millis),
    })
}

pub fn mark_seen(
    tx: &Transaction<'_>,
    ws: &WorkspaceId,
    person: i64,
    ids: &[String],
    at: Millis,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = tx.prepare_cached(
        "UPDATE messages SET seen_at = ?4
         WHERE workspace_id = ?1 AND id = ?2 AND person_id = ?3 AND channel = 'in_app' AND status = 'sent'
           AND seen_at IS NULL",
    )?;
    let mut marked = Vec::new();
    for id in ids {
        if stmt.execute(params![ws.as_str(), id, person, at.0])? > 0 {
            marked.push(id.clone());
        }
    }
    Ok(marked)
}
