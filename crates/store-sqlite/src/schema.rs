//! Schema migrations, applied in order and recorded in `PRAGMA user_version`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    hash         BLOB NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    kind         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);
CREATE TABLE tracking_plans (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (id),
    plan         TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- A person: every id of one human in one workspace. user_id is the canonical user id.
CREATE TABLE persons (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    user_id      TEXT
);
CREATE TABLE identities (
    workspace_id TEXT NOT NULL,
    kind         INTEGER NOT NULL,
    value        TEXT NOT NULL,
    person_id    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, kind, value)
) WITHOUT ROWID;
CREATE INDEX identities_person ON identities (workspace_id, person_id);
-- Dedup: message ids seen within the window. Pruned by a full scan now and then.
CREATE TABLE message_ids (
    workspace_id TEXT NOT NULL,
    message_id   TEXT NOT NULL,
    first_seen   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
) WITHOUT ROWID;
-- The durable log. seq is the commit order; AUTOINCREMENT so a seq is never reused, even after
-- the newest rows are deleted, which keeps consumers' checkpoints sound.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    person_id    INTEGER NOT NULL,
    message_id   TEXT NOT NULL,
    type         INTEGER NOT NULL,
    name         TEXT,
    user_id      TEXT,
    anonymous_id TEXT,
    previous_id  TEXT,
    timestamp    INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    raw          TEXT NOT NULL,
    enrichment   TEXT NOT NULL
);
CREATE INDEX events_person ON events (workspace_id, person_id, timestamp, seq);
"#,
    r#"
-- Person merges, at the first seq of the batch that made them, for log consumers.
CREATE TABLE person_merges (
    workspace_id TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    from_person  INTEGER NOT NULL,
    into_person  INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, seq, from_person)
) WITHOUT ROWID;
-- Log consumers (profiles, ...): a checkpoint and small state per workspace, and their rows.
CREATE TABLE consumers (
    name         TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    checkpoint   INTEGER NOT NULL,
    meta         BLOB NOT NULL,
    PRIMARY KEY (name, workspace_id)
) WITHOUT ROWID;
CREATE TABLE consumer_rows (
    name         TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    key          INTEGER NOT NULL,
    value        BLOB NOT NULL,
    PRIMARY KEY (name, workspace_id, key)
) WITHOUT ROWID;
"#,
    r#"
-- Trained models (churn, ...), versioned per workspace and kind; the highest version serves.
CREATE TABLE models (
    workspace_id TEXT NOT NULL,
    kind         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    as_of        INTEGER NOT NULL,
    metrics      TEXT NOT NULL,
    model        BLOB NOT NULL,
    PRIMARY KEY (workspace_id, kind, version)
) WITHOUT ROWID;
"#,
    r#"
-- Log order per workspace, for consumers: without it a read of the log after a seq would scan
-- and sort the workspace's whole history for every page.
CREATE INDEX events_log ON events (workspace_id, seq);
"#,
    r#"
-- Per-workspace settings (lifecycle thresholds, ...) as JSON text by name.
CREATE TABLE settings (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name         TEXT NOT NULL,
    value        TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, name)
) WITHOUT ROWID;
"#,
    r#"
-- Campaign definitions, every version kept; `num` is stable per campaign (its policy state key).
CREATE TABLE campaigns (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    id           TEXT NOT NULL,
    version      INTEGER NOT NULL,
    num          INTEGER NOT NULL,
    definition   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, id, version)
) WITHOUT ROWID;
-- The decision engine's audit trail, with the outcome of each decision.
CREATE TABLE decisions (
    workspace_id     TEXT NOT NULL,
    id               TEXT NOT NULL,
    campaign         TEXT NOT NULL,
    campaign_version INTEGER NOT NULL,
    person_id        INTEGER NOT NULL,
    user_id          TEXT,
    at               INTEGER NOT NULL,
    status           TEXT NOT NULL,
    arm              TEXT,
    propensity       REAL NOT NULL,
    holdout          INTEGER NOT NULL,
    deliver_at       INTEGER,
    deadline         INTEGER NOT NULL,
    policy_version   INTEGER NOT NULL,
    body             TEXT NOT NULL,
    outcome          TEXT,
    outcome_at       INTEGER,
    value            REAL,
    delivered_at     INTEGER,
    opened_at        INTEGER,
    clicked_at       INTEGER,
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
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    kind         TEXT NOT NULL,
    id           TEXT NOT NULL,
    version      INTEGER NOT NULL,
    num          INTEGER NOT NULL,
    definition   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, kind, id, version)
) WITHOUT ROWID;
INSERT INTO definitions (workspace_id, kind, id, version, num, definition, created_at)
    SELECT workspace_id, 'campaign', id, version, num, definition, created_at FROM campaigns;
DROP TABLE campaigns;
"#,
    r#"
-- The outbox: every message to send, its idempotency key as id, and where its delivery stands.
CREATE TABLE messages (
    workspace_id        TEXT NOT NULL,
    id                  TEXT NOT NULL,
    person_id           INTEGER NOT NULL,
    channel             TEXT NOT NULL,
    decision_id         TEXT,
    campaign            TEXT,
    status              TEXT NOT NULL,
    attempts            INTEGER NOT NULL,
    due_at              INTEGER NOT NULL,
    lease_until         INTEGER,
    provider            TEXT,
    provider_message_id TEXT,
    body                TEXT NOT NULL,
    error               TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX messages_due ON messages (workspace_id, status, due_at);
CREATE INDEX messages_created ON messages (workspace_id, created_at, id);
CREATE INDEX messages_provider_id ON messages (workspace_id, provider_message_id);
"#,
    r#"
-- When the user saw an in-app message in their inbox.
ALTER TABLE messages ADD COLUMN seen_at INTEGER;
"#,
];

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()
}
