//! Workspaces: the tenant boundary. Every row and every query carries a [`WorkspaceId`].

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::time::Millis;

/// Identifier of a workspace, `ws_` followed by 16 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    const PREFIX: &'static str = "ws_";

    /// A fresh random workspace id.
    pub fn generate() -> Self {
        Self(format!("{}{:016x}", Self::PREFIX, rand::random::<u64>()))
    }

    /// Parses a workspace id as printed by `workspace create`.
    pub fn parse(s: &str) -> Result<Self, InvalidWorkspaceId> {
        let hex = s.strip_prefix(Self::PREFIX).ok_or(InvalidWorkspaceId)?;
        if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidWorkspaceId)
        }
    }

    /// Wraps a value read back from storage, where it was validated on the way in.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid workspace id: expected ws_ followed by 16 hex digits")]
pub struct InvalidWorkspaceId;

/// A workspace as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: Millis,
}

/// Longest accepted workspace name, in characters.
pub const MAX_WORKSPACE_NAME_CHARS: usize = 200;

/// Checks a workspace name given by a user.
pub fn validate_workspace_name(name: &str) -> Result<(), &'static str> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("workspace name must not be empty");
    }
    if trimmed.chars().count() > MAX_WORKSPACE_NAME_CHARS {
        return Err("workspace name must be at most 200 characters");
    }
    if trimmed.chars().any(char::is_control) {
        return Err("workspace name must not contain control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        let id = WorkspaceId::generate();
        assert_eq!(WorkspaceId::parse(id.as_str()).unwrap(), id);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in ["", "ws_", "ws_123", "xx_0123456789abcdef", "ws_0123456789ABCDEF", "ws_0123456789abcdefg"]
        {
            assert!(WorkspaceId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_workspace_name("Acme").is_ok());
        assert!(validate_workspace_name("  ").is_err());
        assert!(validate_workspace_name("a\u{7}b").is_err());
        assert!(validate_workspace_name(&"x".repeat(201)).is_err());
    }
}
