//! Schema migrations, applied in order and recorded in `schema_migrations`.
//!
//! Several processes may start against one database at once (one per role when scaled out), so
//! the whole migration runs in one transaction under an advisory lock: the first process
//! migrates, the others wait, then find every version applied and do nothing.

use deadpool_postgres::Client;
use whisperer_store::{Result, StoreError};

use crate::{LOCK_MIGRATE, db_err};

/// Each entry is one version; never edit an applied one, append a new one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE workspaces (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    hash         bytea NOT NULL UNIQUE,
    workspace_id text NOT NULL REFERENCES workspaces (id),
    kind         text NOT NULL,
    created_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);
CREATE TABLE tracking_plans (
    workspace_id text PRIMARY KEY REFERENCES workspaces (id),
    plan         jsonb NOT NULL,
    updated_at   timestamptz NOT NULL
);
-- A person: every id of one human in one workspace. user_id is the canonical user id.
-- The sequence is named so that append can reserve ids for a whole batch in one query.
CREATE TABLE persons (
    id           bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME persons_id_seq) PRIMARY KEY,
    workspace_id text NOT NULL,
    user_id      text
);
CREATE TABLE identities (
    workspace_id text NOT NULL,
    kind         smallint NOT NULL,
    value        text NOT NULL,
    person_id    bigint NOT NULL,
    PRIMARY KEY (workspace_id, kind, value)
);
CREATE INDEX identities_person ON identities (workspace_id, person_id);
-- Dedup: message ids seen within the window. Pruned by a full scan now and then, which is
-- cheaper overall than maintaining an index on first_seen on every ingested message.
CREATE TABLE message_ids (
    workspace_id text NOT NULL,
    message_id   text NOT NULL,
    first_seen   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
);
-- The durable log, one partition per calendar month (UTC) of event time, created on demand, so
-- retention can drop whole months. seq is the log position: a sequence never hands a value out
-- twice, so a seq is never reused even after the newest rows are deleted. Append reserves seqs
-- from the named sequence and inserts them explicitly (OVERRIDING SYSTEM VALUE), which is how
-- it knows each event's seq without relying on the order of RETURNING rows.
-- raw and enrichment are text, not jsonb: they must come back byte for byte. properties (the
-- properties of a track/page/screen call, the traits of an identify) is the queryable copy;
-- append computes it because a generated column casting raw to jsonb would fail the whole
-- batch on JSON that jsonb refuses (a \u0000 escape, say).
CREATE TABLE events (
    seq          bigint GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME events_seq),
    workspace_id text NOT NULL,
    person_id    bigint NOT NULL,
    message_id   text NOT NULL,
    type         smallint NOT NULL,
    name         text,
    user_id      text,
    anonymous_id text,
    previous_id  text,
    "timestamp"  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    raw          text NOT NULL,
    enrichment   text NOT NULL,
    properties   jsonb,
    PRIMARY KEY (workspace_id, "timestamp", seq)
) PARTITION BY RANGE ("timestamp");
CREATE INDEX events_person ON events (workspace_id, person_id, "timestamp", seq);
CREATE INDEX events_log ON events (workspace_id, seq);
"#,
    r#"
-- Person merges, at the first seq of the batch that made them, for log consumers.
CREATE TABLE person_merges (
    workspace_id text NOT NULL,
    seq          bigint NOT NULL,
    from_person  bigint NOT NULL,
    into_person  bigint NOT NULL,
    PRIMARY KEY (workspace_id, seq, from_person)
);
-- Log consumers (profiles, ...): a checkpoint and small state per workspace, and their rows.
CREATE TABLE consumers (
    name         text NOT NULL,
    workspace_id text NOT NULL,
    checkpoint   bigint NOT NULL,
    meta         bytea NOT NULL,
    PRIMARY KEY (name, workspace_id)
);
CREATE TABLE consumer_rows (
    name         text NOT NULL,
    workspace_id text NOT NULL,
    key          bigint NOT NULL,
    value        bytea NOT NULL,
    PRIMARY KEY (name, workspace_id, key)
);
"#,
    r#"
-- Trained models (churn, ...), versioned per workspace and kind; the highest version serves.
CREATE TABLE models (
    workspace_id text NOT NULL,
    kind         text NOT NULL,
    version      bigint NOT NULL,
    created_at   bigint NOT NULL,
    as_of        bigint NOT NULL,
    metrics      text NOT NULL,
    model        bytea NOT NULL,
    PRIMARY KEY (workspace_id, kind, version)
);
"#,
    r#"
-- Per-workspace settings (lifecycle thresholds, ...) as JSON text by name.
CREATE TABLE settings (
    workspace_id text NOT NULL REFERENCES workspaces (id),
    name         text NOT NULL,
    value        text NOT NULL,
    updated_at   bigint NOT NULL,
    PRIMARY KEY (workspace_id, name)
);
"#,
    r#"
-- Campaign definitions, every version kept; `num` is stable per campaign (its policy state key).
CREATE TABLE campaigns (
    workspace_id text NOT NULL REFERENCES workspaces (id),
    id           text NOT NULL,
    version      bigint NOT NULL,
    num          bigint NOT NULL,
    definition   text NOT NULL,
    created_at   bigint NOT NULL,
    PRIMARY KEY (workspace_id, id, version)
);
-- The decision engine's audit trail, with the outcome of each decision.
CREATE TABLE decisions (
    workspace_id     text NOT NULL,
    id               text NOT NULL,
    campaign         text NOT NULL,
    campaign_version bigint NOT NULL,
    person_id        bigint NOT NULL,
    user_id          text,
    at               bigint NOT NULL,
    status           text NOT NULL,
    arm              text,
    propensity       double precision NOT NULL,
    holdout          boolean NOT NULL,
    deliver_at       bigint,
    deadline         bigint NOT NULL,
    policy_version   bigint NOT NULL,
    body             text NOT NULL,
    outcome          text,
    outcome_at       bigint,
    value            double precision,
    delivered_at     bigint,
    opened_at        bigint,
    clicked_at       bigint,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX decisions_at ON decisions (workspace_id, at, id);
CREATE INDEX decisions_campaign ON decisions (workspace_id, campaign, at, id);
CREATE INDEX decisions_person ON decisions (workspace_id, person_id, at, id);
CREATE INDEX decisions_deadline ON decisions (workspace_id, deadline);
"#,
    r#"
-- Campaigns and templates share one versioned table; campaigns move over with their numbers.
CREATE TABLE definitions (
    workspace_id text NOT NULL REFERENCES workspaces (id),
    kind         text NOT NULL,
    id           text NOT NULL,
    version      bigint NOT NULL,
    num          bigint NOT NULL,
    definition   text NOT NULL,
    created_at   bigint NOT NULL,
    PRIMARY KEY (workspace_id, kind, id, version)
);
INSERT INTO definitions (workspace_id, kind, id, version, num, definition, created_at)
    SELECT workspace_id, 'campaign', id, version, num, definition, created_at FROM campaigns;
DROP TABLE campaigns;
"#,
    r#"
-- The outbox: every message to send, its idempotency key as id, and where its delivery stands.
CREATE TABLE messages (
    workspace_id        text NOT NULL,
    id                  text NOT NULL,
    person_id           bigint NOT NULL,
    channel             text NOT NULL,
    decision_id         text,
    campaign            text,
    status              text NOT NULL,
    attempts            bigint NOT NULL,
    due_at              bigint NOT NULL,
    lease_until         bigint,
    provider            text,
    provider_message_id text,
    body                text NOT NULL,
    error               text,
    created_at          bigint NOT NULL,
    updated_at          bigint NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX messages_due ON messages (workspace_id, status, due_at);
CREATE INDEX messages_created ON messages (workspace_id, created_at, id);
CREATE INDEX messages_provider_id ON messages (workspace_id, provider_message_id);
"#,
    r#"
-- When the user saw an in-app message in their inbox.
ALTER TABLE messages ADD COLUMN seen_at bigint;
"#,
];

/// Brings the schema to the latest version, creating `schema` first when given.
pub async fn migrate(client: &mut Client, schema: Option<&str>) -> Result<()> {
    let tx = client.transaction().await.map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_MIGRATE]).await.map_err(db_err)?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))
            .await
            .map_err(db_err)?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(db_err)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[])
        .await
        .map_err(db_err)?
        .try_get(0)
        .map_err(|e| StoreError::Corrupt(format!("schema_migrations: {e}")))?;
    let known = MIGRATIONS.len();
    let applied = usize::try_from(current).unwrap_or(usize::MAX);
    if applied > known {
        return Err(StoreError::Unavailable(format!(
            "database schema version {current} is newer than this build knows ({known}); upgrade whisperer"
        )));
    }
    for (version, sql) in (1i32..).zip(MIGRATIONS).skip(applied) {
        tx.batch_execute(sql).await.map_err(db_err)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version])
            .await
            .map_err(db_err)?;
        tracing::info!(version, "applied postgresql schema migration");
    }
    tx.commit().await.map_err(db_err)
}

/// Quotes an identifier for DDL, which takes no bind parameters.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `name` is a schema name this store accepts: plain lowercase, so it needs no quoting
/// in `search_path` and means the same quoted or not.
pub fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63
        && !name.starts_with("pg_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for good in ["t_0123abcd", "whisperer", "_x"] {
            assert!(valid_schema_name(good), "{good}");
        }
        for bad in ["", "T_x", "1x", "a-b", "a b", "pg_catalog", "x\"; drop", &"a".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
