//! API keys. A key is shown once when it is made and only its SHA-256 hash is stored.
//!
//! The prefix tells the kind: `wk_` is a write key (ingestion only, safe to ship in a client),
//! `sk_` is a secret key (server-side reads and administration). The key id, the prefix plus the
//! first eight characters of the random part, names a key in listings and revocations without
//! revealing it.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

const RANDOM_CHARS: usize = 32;
const ID_CHARS: usize = 8;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Sends events; cannot read anything back.
    Write,
    /// Reads profiles and events and changes workspace settings.
    Secret,
}

impl KeyKind {
    pub fn prefix(self) -> &'static str {
        match self {
            KeyKind::Write => "wk_",
            KeyKind::Secret => "sk_",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Write => "write",
            KeyKind::Secret => "secret",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "write" => Some(KeyKind::Write),
            "secret" => Some(KeyKind::Secret),
            _ => None,
        }
    }

    /// The kind a presented key claims by its prefix.
    pub fn of_key(key: &str) -> Option<Self> {
        [KeyKind::Write, KeyKind::Secret].into_iter().find(|k| key.starts_with(k.prefix()))
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A freshly made key: the plaintext exists only in this value.
#[derive(Clone)]
pub struct ApiKey {
    pub kind: KeyKind,
    pub plaintext: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey").field("kind", &self.kind).field("id", &self.id()).finish()
    }
}

impl ApiKey {
    pub fn generate(kind: KeyKind) -> Self {
        let mut rng = rand::rng();
        let random: String =
            (0..RANDOM_CHARS).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
        Self { kind, plaintext: format!("{}{random}", kind.prefix()) }
    }

    pub fn id(&self) -> String {
        key_id(&self.plaintext)
    }

    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.plaintext)
    }
}

/// The public id of a key: its prefix and the first characters of the random part.
pub fn key_id(plaintext: &str) -> String {
    plaintext.chars().take(3 + ID_CHARS).collect()
}

/// Whether a string has the shape of a key id (as opposed to a whole key).
pub fn looks_like_key_id(s: &str) -> bool {
    KeyKind::of_key(s).is_some() && s.len() == 3 + ID_CHARS
}

/// SHA-256 of a key. Keys carry 190 bits of randomness, so a fast hash is safe to store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(plaintext: &str) -> Self {
        Self(Sha256::digest(plaintext.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_tells_the_kind() {
        for kind in [KeyKind::Write, KeyKind::Secret] {
            let key = ApiKey::generate(kind);
            assert_eq!(KeyKind::of_key(&key.plaintext), Some(kind));
            assert_eq!(key.plaintext.len(), 3 + RANDOM_CHARS);
            assert!(looks_like_key_id(&key.id()));
            assert!(!looks_like_key_id(&key.plaintext));
        }
    }

    #[test]
    fn keys_are_random_and_hash_stably() {
        let a = ApiKey::generate(KeyKind::Write);
        let b = ApiKey::generate(KeyKind::Write);
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.hash(), KeyHash::of(&a.plaintext));
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = ApiKey::generate(KeyKind::Secret);
        assert!(!format!("{key:?}").contains(&key.plaintext));
    }
}
