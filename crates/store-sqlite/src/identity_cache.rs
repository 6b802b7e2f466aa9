//! What the writer knows about identities, so steady traffic from known users costs no lookups.
//!
//! Only committed state enters the cache: lookups (which read committed rows) and, after a
//! commit, the identity operations that commit applied. Any commit by another connection
//! changes `PRAGMA data_version`, and the cache is then dropped whole.

use std::collections::HashMap;
use whisperer_core::identity::{IdKind, IdentityOp, PersonId, PersonRef};

/// Entries kept at most; past that the cache starts over.
const CAPACITY: usize = 500_000;

#[derive(Default)]
pub struct IdentityCache {
    data_version: Option<i64>,
    /// `workspace \u{1} kind \u{1} value` → person.
    ids: HashMap<String, PersonId>,
    /// User id of every cached person (None: anonymous).
    users: HashMap<PersonId, Option<String>>,
    /// Persons merged away, to the person they became.
    merged: HashMap<PersonId, PersonId>,
}

fn key(ws: &str, kind: IdKind, value: &str) -> String {
    let mut k = String::with_capacity(ws.len() + value.len() + 4);
    k.push_str(ws);
    k.push('\u{1}');
    k.push(if kind == IdKind::User { 'u' } else { 'a' });
    k.push('\u{1}');
    k.push_str(value);
    k
}

impl IdentityCache {
    /// Drops everything unless `data_version` is the one seen last time.
    pub fn validate(&mut self, data_version: i64) {
        if self.data_version != Some(data_version) {
            self.clear();
            self.data_version = Some(data_version);
        }
    }

    pub fn clear(&mut self) {
        self.ids.clear();
        self.users.clear();
        self.merged.clear();
    }

    pub fn get(&self, ws: &str, kind: IdKind, value: &str) -> Option<(PersonId, Option<String>)> {
        let mut person = *self.ids.get(&key(ws, kind, value))?;
        while let Some(&next) = self.merged.get(&person) {
            person = next;
        }
        Some((person, self.users.get(&person)?.clone()))
    }

    pub fn remember(&mut self, ws: &str, kind: IdKind, value: &str, person: PersonId, user: Option<String>) {
        if self.ids.len() >= CAPACITY {
            self.clear();
        }
        self.ids.insert(key(ws, kind, value), person);
        self.users.insert(person, user);
    }

    /// Applies the identity operations of a committed transaction; `id` maps a reference to
    /// the stored person id.
    pub fn committed(&mut self, ws: &str, ops: &[IdentityOp], id: impl Fn(PersonRef) -> PersonId) {
        for op in ops {
            match op {
                IdentityOp::CreatePerson { person, user_id } => {
                    self.users.insert(id(*person), user_id.clone());
                }
                IdentityOp::Link { kind, value, person } => {
                    let person = id(*person);
                    if self.users.contains_key(&person) {
                        self.ids.insert(key(ws, *kind, value), person);
                    }
                }
                IdentityOp::SetUser { person, user_id } => {
                    self.users.insert(id(*person), Some(user_id.clone()));
                }
                IdentityOp::Merge { from, into } => {
                    let (from, into) = (id(*from), id(*into));
                    self.users.remove(&from);
                    self.merged.insert(from, into);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_merges_and_drops_on_foreign_commits() {
        let mut c = IdentityCache::default();
        c.validate(1);
        c.remember("ws", IdKind::Anonymous, "a", 10, None);
        c.remember("ws", IdKind::User, "u", 20, Some("u".into()));
        c.committed(
            "ws",
            &[IdentityOp::Merge { from: PersonRef::Existing(10), into: PersonRef::Existing(20) }],
            |p| match p {
                PersonRef::Existing(id) => id,
                PersonRef::New(_) => unreachable!(),
            },
        );
        assert_eq!(c.get("ws", IdKind::Anonymous, "a"), Some((20, Some("u".into()))));
        assert_eq!(c.get("other", IdKind::Anonymous, "a"), None);
        c.validate(1);
        assert!(c.get("ws", IdKind::User, "u").is_some());
        c.validate(2);
        assert!(c.get("ws", IdKind::User, "u").is_none());
    }
}
