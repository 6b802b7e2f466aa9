//! Campaigns and the decision audit trail.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use whisperer_core::{Millis, WorkspaceId};
use whisperer_store::{
    DecisionQuery, DecisionRecord, DefinitionKind, DefinitionRecord, OutcomeKind, OutcomeUpdate,
};

pub fn put_definition(
    tx: &Transaction<'_>,
    ws: &WorkspaceId,
    kind: DefinitionKind,
    id: &str,
    definition: &str,
    at: Millis,
) -> rusqlite::Result<DefinitionRecord> {
    if let Some(current) = self::definition(tx, ws, kind, id, None)? {
        if current.definition == definition {
            return Ok(current);
        }
        let record = DefinitionRecord {
            version: current.version + 1,
            definition: definition.to_owned(),
            created_at: at,
            ..current
        };
        insert_definition(tx, ws, kind, &record)?;
        return Ok(record);
    }
    let num: i64 = tx.query_row(
        "SELECT COALESCE(MAX(num), 0) + 1 FROM definitions WHERE workspace_id = ?1 AND kind = ?2",
        params![ws.as_str(), kind.as_str()],
        |r| r.get(0),
    )?;
    let record = DefinitionRecord {
        id: id.to_owned(),
        version: 1,
        num,
        definition: definition.to_owned(),
        created_at: at,
    };
    insert_definition(tx, ws, kind, &record)?;
    Ok(record)
}

fn insert_definition(
    tx: &Transaction<'_>,
    ws: &WorkspaceId,
    kind: DefinitionKind,
    r: &DefinitionRecord,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO definitions (workspace_id, kind, id, version, num, definition, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        ws.as_str(),
        kind.as_str(),
        r.id,
        r.version,
        r.num,
        r.definition,
        r.created_at.0
    ])?;
    Ok(())
}

fn definition_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DefinitionRecord> {
    Ok(DefinitionRecord {
        id: r.get(0)?,
        version: r.get(1)?,
        num: r.get(2)?,
        definition: r.get(3)?,
        created_at: Millis(r.get(4)?),
    })
}

pub fn definition(
    c: &Connection,
    ws: &WorkspaceId,
    kind: DefinitionKind,
    id: &str,
    version: Option<i64>,
) -> rusqlite::Result<Option<DefinitionRecord>> {
    c.prepare_cached(
        "SELECT id, version, num, definition, created_at FROM definitions
         WHERE workspace_id = ?1 AND kind = ?2 AND id = ?3 AND (?4 IS NULL OR version = ?4)
         ORDER BY version DESC LIMIT 1",
    )?
    .query_row(params![ws.as_str(), kind.as_str(), id, version], definition_row)
    .optional()
}

pub fn definitions(
    c: &Connection,
    ws: &WorkspaceId,
    kind: DefinitionKind,
) -> rusqlite::Result<Vec<DefinitionRecord>> {
    c.prepare_cached(
        "SELECT id, version, num, definition, created_at FROM definitions d
         WHERE workspace_id = ?1 AND kind = ?2
           AND version = (SELECT MAX(version) FROM definitions
                          WHERE workspace_id = d.workspace_id AND kind = d.kind AND id = d.id)
         ORDER BY id",
    )?
    .query_map(params![ws.as_str(), kind.as_str()], definition_row)?
    .collect()
}

pub fn insert_decisions(
    tx: &Transaction<'_>,
    ws: &WorkspaceId,
    decisions: &[DecisionRecord],
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO decisions (workspace_id, id, campaign, campaign_version, person_id, user_id, at, status, arm,
             propensity, holdout, deliver_at, deadline, policy_version, body, outcome, outcome_at, value,
             delivered_at, opened_at, clicked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)
         ON CONFLICT (workspace_id, id) DO NOTHING",
    )?;
    for d in decisions {
        insert.execute(params![
            ws.as_str(),
            d.id,
            d.campaign,
            d.campaign_version,
            d.person,
            d.user_id,
            d.at.0,
            d.status,
            d.arm,
            d.propensity,
            d.holdout,
            d.deliver_at.map(|m| m.0),
            d.deadline.0,
            d.policy_version,
            d.body,
            d.outcome,
            d.outcome_at.map(|m| m.0),
            d.value,
            d.delivered_at.map(|m| m.0),
            d.opened_at.map(|m| m.0),
            d.clicked_at.map(|m| m.0),
        ])?;
    }
    Ok(())
}

pub fn decisions(
    c: &Connection,
    ws: &WorkspaceId,
    q: &DecisionQuery,
) -> rusqlite::Result<Vec<DecisionRecord>> {
    let (before_at, before_id) = match &q.before {
        Some((at, id)) => (Some(at.0), Some(id.as_str())),
        None => (None, None),
    };
    c.prepare_cached(
        "SELECT id, campaign, campaign_version, person_id, user_id, at, status, arm, propensity, holdout,
                deliver_at, deadline, policy_version, body, outcome, outcome_at, value, delivered_at,
                opened_at, clicked_at
         FROM decisions
         WHERE workspace_id = ?1
           AND (?2 IS NULL OR campaign = ?2)
           AND (?3 IS NULL OR person_id = ?3)
           AND (?4 IS NULL OR status = ?4)
           AND (?5 IS NULL OR at >= ?5)
           AND (?6 IS NULL OR at < ?6)
           AND (?7 IS NULL OR deadline >= ?7)
           AND (?8 IS NULL OR at < ?8 OR (at = ?8 AND id < ?9))
         ORDER BY at DESC, id DESC
         LIMIT ?10",
    )?
    .query_map(
        params![
            ws.as_str(),
            q.campaign,
            q.person,
            q.status,
            q.since.map(|m| m.0),
            q.until.map(|m| m.0),
            q.deadline_from.map(|m| m.0),
            before_at,
            before_id,
            q.limit as i64,
        ],
        |r| {
            let millis = |i: usize| r.get::<_, Option<i64>>(i).map(|m| m.map(Millis));
            Ok(DecisionRecord {
                id: r.get(0)?,
                campaign: r.get(1)?,
                campaign_version: r.get(2)?,
                person: r.get(3)?,
                user_id: r.get(4)?,
                at: Millis(r.get(5)?),
                status: r.get(6)?,
                arm: r.get(7)?,
                propensity: r.get(8)?,
                holdout: r.get(9)?,
                deliver_at: millis(10)?,
                deadline: Millis(r.get(11)?),
                policy_version: r.get(12)?,
                body: r.get(13)?,
                outcome: r.get(14)?,
                outcome_at: millis(15)?,
                value: r.get(16)?,
                delivered_at: millis(17)?,
                opened_at: millis(18)?,
                clicked_at: millis(19)?,
            })
        },
    )?
    .collect()
}

pub fn apply_outcomes(
    tx: &Transaction<'_>,
    ws: &WorkspaceId,
    outcomes: &[OutcomeUpdate],
) -> rusqlite::Result<()> {
    for o in outcomes {
        // Only a conversion carries a value; the others set a time once.
        let (sql, with_value) = match o.kind {
            OutcomeKind::Converted => (
                "UPDATE decisions SET outcome = 'converted', outcome_at = ?3, value = ?4
                 WHERE workspace_id = ?1 AND id = ?2 AND (outcome IS NULL OR outcome = 'failed')",
                true,
            ),
            OutcomeKind::Failed => (
                "UPDATE decisions SET outcome = 'failed', outcome_at = ?3
                 WHERE workspace_id = ?1 AND id = ?2 AND outcome IS NULL",
                false,
            ),
            OutcomeKind::Delivered => (
                "UPDATE decisions SET delivered_at = ?3 WHERE workspace_id = ?1 AND id = ?2 AND delivered_at IS NULL",
                false,
            ),
            OutcomeKind::Opened => (
                "UPDATE decisions SET opened_at = ?3 WHERE workspace_id = ?1 AND id = ?2 AND opened_at IS NULL",
                false,
            ),
            OutcomeKind::Clicked => (
                "UPDATE decisions SET clicked_at = ?3 WHERE workspace_id = ?1 AND id = ?2 AND clicked_at IS NULL",
                false,
            ),
        };
        let mut stmt = tx.prepare_cached(sql)?;
        if with_value {
            stmt.execute(params![ws.as_str(), o.decision, o.at.0, o.value])?;
        } else {
            stmt.execute(params![ws.as_str(), o.decision, o.at.0])?;
        }
    }
    Ok(())
}
