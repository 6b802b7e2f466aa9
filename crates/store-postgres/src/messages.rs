//! The outbox: messages to send and where their delivery stands.

use deadpool_postgres::Transaction;
use whisperer_core::{Millis, WorkspaceId};
use whisperer_store::{MessageQuery, MessageRecord, MessageStatus, MessageUpdate, Result, StoreError};

use crate::{db_err, get};

pub const COLUMNS: &str =
    "id, person_id, channel, decision_id, campaign, status, attempts, due_at, lease_until, provider,
     provider_message_id, body, error, created_at, updated_at, seen_at";

pub async fn enqueue(tx: &Transaction<'_>, ws: &WorkspaceId, messages: &[MessageRecord]) -> Result<u64> {
    if messages.is_empty() {
        return Ok(0);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO messages (workspace_id, id, person_id, channel, decision_id, campaign, status, attempts,
                 due_at, lease_until, provider, provider_message_id, body, error, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (workspace_id, id) DO NOTHING",
        )
        .await
        .map_err(db_err)?;
    let mut inserted = 0;
    for m in messages {
        inserted += tx
            .execute(
                &stmt,
                &[
                    &ws.as_str(),
                    &m.id,
                    &m.person,
                    &m.channel,
                    &m.decision_id,
                    &m.campaign,
                    &m.status.as_str(),
                    &m.attempts,
                    &m.due_at.0,
                    &m.lease_until.map(|t| t.0),
                    &m.provider,
                    &m.provider_message_id,
                    &m.body,
                    &m.error,
                    &m.created_at.0,
                    &m.updated_at.0,
                ],
            )
            .await
            .map_err(db_err)?;
    }
    Ok(inserted)
}

/// Claims due messages; `SKIP LOCKED` lets several senders claim side by side.
pub async fn claim(
    tx: &Transaction<'_>,
    ws: &WorkspaceId,
    now: Millis,
    lease_until: Millis,
    limit: usize,
) -> Result<Vec<MessageRecord>> {
    let rows = tx
        .query(
            &format!(
                "UPDATE messages SET status = 'sending', lease_until = $3, attempts = attempts + 1, updated_at = $2
                 WHERE workspace_id = $1 AND id IN (
                     SELECT id FROM messages
                     WHERE workspace_id = $1 AND status = 'queued' AND due_at <= $2
                     ORDER BY due_at, id LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {COLUMNS}"
            ),
            &[&ws.as_str(), &now.0, &lease_until.0, &(limit as i64)],
        )
        .await
        .map_err(db_err)?;
    let mut claimed: Vec<MessageRecord> = rows.iter().map(row).collect::<Result<_>>()?;
    claimed.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
    Ok(claimed)
}

pub async fn update(tx: &Transaction<'_>, ws: &WorkspaceId, updates: &[MessageUpdate]) -> Result<u64> {
    let stmt = tx
        .prepare_cached(
            "UPDATE messages SET
                 status = $4,
                 due_at = COALESCE($5, due_at),
                 attempts = CASE WHEN $6 THEN 0 ELSE attempts END,
                 lease_until = NULL,
                 provider = COALESCE($7, provider),
                 provider_message_id = COALESCE($8, provider_message_id),
                 body = COALESCE($9, body),
                 error = CASE WHEN $4 = 'sent' THEN $10 ELSE COALESCE($10, error) END,
                 updated_at = $11
             WHERE workspace_id = $1 AND id = $2 AND status = $3",
        )
        .await
        .map_err(db_err)?;
    let mut applied = 0;
    for u in updates {
        applied += tx
            .execute(
                &stmt,
                &[
                    &ws.as_str(),
                    &u.id,
                    &u.from.as_str(),
                    &u.status.as_str(),
                    &u.due_at.map(|t| t.0),
                    &u.reset_attempts,
                    &u.provider,
                    &u.provider_message_id,
                    &u.body,
                    &u.error,
                    &u.at.0,
                ],
            )
            .await
            .map_err(db_err)?;
    }
    Ok(applied)
}

pub fn query_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM messages
         WHERE workspace_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::int8 IS NULL OR person_id = $3)
           AND ($4::text IS NULL OR decision_id = $4)
           AND ($5::text IS NULL OR provider_message_id = $5)
           AND ($6::int8 IS NULL OR (created_at, id) < ($6, $7::text))
           AND ($9::int8 IS NULL OR due_at <= $9)
           AND ($10::text IS NULL OR channel = $10)
           AND (NOT $11::bool OR seen_at IS NULL)
         ORDER BY created_at DESC, id DESC LIMIT $8"
    )
}

pub fn query_params(q: &MessageQuery) -> (Option<&'static str>, Option<i64>, Option<String>, i64) {
    let (before_at, before_id) = match &q.before {
        Some((at, id)) => (Some(at.0), Some(id.clone())),
        None => (None, None),
    };
    (q.status.map(MessageStatus::as_str), before_at, before_id, q.limit as i64)
}

pub fn row(r: &tokio_postgres::Row) -> Result<MessageRecord> {
    let status: String = get(r, 5)?;
    Ok(MessageRecord {
        id: get(r, 0)?,
        person: get(r, 1)?,
        channel: get(r, 2)?,
        decision_id: get(r, 3)?,
        campaign: get(r, 4)?,
        status: MessageStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown message status {status:?}")))?,
        attempts: get(r, 6)?,
        due_at: Millis(get(r, 7)?),
        lease_until: get::<Option<i64>>(r, 8)?.map(Millis),
        provider: get(r, 9)?,
        provider_message_id: get(r, 10)?,
        body: get(r, 11)?,
        error: get(r, 12)?,
        created_at: Millis(get(r, 13)?),
        updated_at: Millis(get(r, 14)?),
        seen_at: get::<Option<i64>>(r, 15)?.map(Millis),
    })
}
