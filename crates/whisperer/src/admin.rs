//! Administration commands that work directly on the store, also while a server runs on it.

use anyhow::{Context, bail};
use serde_json::json;
use std::sync::Arc;
use whisperer_core::keys::looks_like_key_id;
use whisperer_core::workspace::validate_workspace_name;
use whisperer_core::{ApiKey, KeyKind, Millis, Workspace, WorkspaceId};
use whisperer_store::{NewKey, Store};

/// A new workspace and its first keys; the plaintext keys exist only in the returned value.
pub struct CreatedWorkspace {
    pub workspace: Workspace,
    pub write_key: ApiKey,
    pub secret_key: ApiKey,
}

impl CreatedWorkspace {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "id": self.workspace.id,
            "name": self.workspace.name,
            "write_key": self.write_key.plaintext,
            "secret_key": self.secret_key.plaintext,
        })
    }
}

pub async fn create_workspace(store: &Arc<dyn Store>, name: &str) -> anyhow::Result<CreatedWorkspace> {
    validate_workspace_name(name).map_err(anyhow::Error::msg)?;
    let now = Millis::now();
    let workspace = Workspace { id: WorkspaceId::generate(), name: name.trim().to_owned(), created_at: now };
    let write_key = ApiKey::generate(KeyKind::Write);
    let secret_key = ApiKey::generate(KeyKind::Secret);
    store
        .create_workspace(&workspace, &[NewKey::of(&write_key, now), NewKey::of(&secret_key, now)])
        .await
        .context("cannot create the workspace")?;
    Ok(CreatedWorkspace { workspace, write_key, secret_key })
}

pub async fn existing_workspace(store: &Arc<dyn Store>, id: &str) -> anyhow::Result<WorkspaceId> {
    let id = WorkspaceId::parse(id).map_err(anyhow::Error::msg)?;
    if store.workspace(&id).await?.is_none() {
        bail!("no workspace {id} in this store");
    }
    Ok(id)
}

/// Makes a new key of `kind` and revokes the workspace's other active keys of that kind.
pub async fn rotate_key(
    store: &Arc<dyn Store>,
    workspace: &WorkspaceId,
    kind: KeyKind,
) -> anyhow::Result<serde_json::Value> {
    let now = Millis::now();
    let key = ApiKey::generate(kind);
    store.add_key(workspace, &NewKey::of(&key, now)).await?;
    let revoked = store.revoke_keys_except(workspace, kind, &key.id(), now).await?;
    Ok(
        json!({"workspace": workspace, "kind": kind, "key_id": key.id(), "key": key.plaintext, "revoked": revoked}),
    )
}

/// Revokes a key given whole or by its id.
pub async fn revoke_key(
    store: &Arc<dyn Store>,
    workspace: &WorkspaceId,
    key: &str,
) -> anyhow::Result<serde_json::Value> {
    let id = if looks_like_key_id(key) { key.to_owned() } else { whisperer_core::keys::key_id(key) };
    if !store.revoke_key(workspace, &id, Millis::now()).await? {
        bail!("workspace {workspace} has no active key {id}");
    }
    Ok(json!({"workspace": workspace, "key_id": id, "revoked": true}))
}
