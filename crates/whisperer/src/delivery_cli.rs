//! The content and delivery commands: templates from files, and the outbox (dead letters and
//! their re-drive) for operators.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use whisperer_core::Millis;
use whisperer_deliver::TemplateDefinition;
use whisperer_store::{DefinitionKind, MessageQuery, MessageStatus, MessageUpdate};

use crate::config::{Config, StoreArgs};
use crate::{admin, print_json, server};

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Create or update a message template from a JSON file (`{"kind", "default_locale",
    /// "locales": {"en": {"subject", "body", "html"}}}`); the id is the file's stem unless
    /// `--id` is given. Prints `{"id", "version", "warnings"}`; a template that refers to an
    /// unknown variable is refused with its line and column.
    Apply {
        file: PathBuf,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print every template of a workspace (current versions) as JSON.
    List {
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
pub enum MessagesCommand {
    /// Outbox messages, newest first, as JSON lines (`--status dead` lists the dead letters).
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Queue dead letters again with fresh attempts: the ids given, or every dead letter with
    /// `--all`. A running server sends them within a second.
    Redrive {
        ids: Vec<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub async fn template(command: TemplateCommand) -> anyhow::Result<()> {
    match command {
        TemplateCommand::Apply { file, id, workspace, store } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let compiled = TemplateDefinition::parse(&text).map_err(|e| {
                anyhow::anyhow!("{}: invalid template: {}", file.display(), e.with_position())
            })?;
            let id = match id {
                Some(id) => id,
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_owned)
                    .context("the file name gives no template id; use --id")?,
            };
            let db = server::open_store(&Config::load(&store, None)?).await?;
            let ws = admin::existing_workspace(&db, &workspace).await?;
            let record = db
                .put_definition(
                    &ws,
                    DefinitionKind::Template,
                    &id,
                    &compiled.definition.to_json(),
                    Millis::now(),
                )
                .await?;
            let warnings: Vec<String> = compiled.warnings.iter().map(ToString::to_string).collect();
            print_json(&json!({ "id": record.id, "version": record.version, "warnings": warnings }))
        }
        TemplateCommand::List { workspace, store } => {
            let db = server::open_store(&Config::load(&store, None)?).await?;
            let ws = admin::existing_workspace(&db, &workspace).await?;
            let mut out = Vec::new();
            for t in db.definitions(&ws, DefinitionKind::Template).await? {
                let definition: Value = serde_json::from_str(&t.definition)?;
                out.push(json!({
                    "id": t.id, "version": t.version, "updatedAt": t.created_at.to_string(), "definition": definition,
                }));
            }
            print_json(&Value::Array(out))
        }
    }
}

pub async fn messages(command: MessagesCommand) -> anyhow::Result<()> {
    match command {
        MessagesCommand::List { status, limit, workspace, store } => {
            let status = status
                .as_deref()
                .map(|s| {
                    MessageStatus::parse(s).with_context(|| {
                        format!("--status must be queued, sending, sent, failed or dead; got {s:?}")
                    })
                })
                .transpose()?;
            let db = server::open_store(&Config::load(&store, None)?).await?;
            let ws = admin::existing_workspace(&db, &workspace).await?;
            let query = MessageQuery { status, limit: limit.clamp(1, 10_000), ..Default::default() };
            for m in db.messages(&ws, &query).await? {
                let error: Value =
                    m.error.as_deref().and_then(|e| serde_json::from_str(e).ok()).unwrap_or(Value::Null);
                let line = json!({
                    "id": m.id, "channel": m.channel, "status": m.status, "attempts": m.attempts,
                    "decisionId": m.decision_id, "campaign": m.campaign, "provider": m.provider,
                    "error": error, "updatedAt": m.updated_at.to_string(),
                });
                println!("{line}");
            }
            Ok(())
        }
        MessagesCommand::Redrive { ids, all, workspace, store } => {
            anyhow::ensure!(all == ids.is_empty(), "give message ids or --all, not both or neither");
            let db = server::open_store(&Config::load(&store, None)?).await?;
            let ws = admin::existing_workspace(&db, &workspace).await?;
            let ids = if all {
                let query =
                    MessageQuery { status: Some(MessageStatus::Dead), limit: 100_000, ..Default::default() };
                db.messages(&ws, &query).await?.into_iter().map(|m| m.id).collect()
            } else {
                ids
            };
            let now = Millis::now();
            let updates: Vec<MessageUpdate> = ids
                .iter()
                .map(|id| {
                    let mut u = MessageUpdate::new(id, MessageStatus::Dead, MessageStatus::Queued, now);
                    u.due_at = Some(now);
                    u.reset_attempts = true;
                    u
                })
                .collect();
            let requeued = db.update_messages(&ws, &updates).await?;
            print_json(&json!({ "requeued": requeued, "notDead": ids.len() as u64 - requeued }))
        }
    }
}
