//! A bounded, expiring cache of answers to identical prompts, so asking twice costs once.
//! Least recently used entries go first when it is full.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ConfigError;
use crate::provider::{Completion, CompletionRequest};

/// `[llm.cache]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Entries kept; 0 turns the cache off.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    #[serde(default = "default_ttl_secs")]
    pub ttl_secs: u64,
}

fn default_capacity() -> usize {
    1_000
}

fn default_ttl_secs() -> u64 {
    24 * 3600
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { capacity: default_capacity(), ttl_secs: default_ttl_secs() }
    }
}

impl CacheConfig {
    pub fn build(&self) -> Result<PromptCache, ConfigError> {
        if self.capacity > 1_000_000 {
            return Err(ConfigError::new("llm.cache.capacity", "must be at most 1000000"));
        }
        if self.ttl_secs == 0 || self.ttl_secs > 30 * 24 * 3600 {
            return Err(ConfigError::new("llm.cache.ttl_secs", "must be between 1 and 2592000 (30 days)"));
        }
        Ok(PromptCache::new(self.capacity, chrono::Duration::seconds(self.ttl_secs as i64)))
    }
}

/// SHA-256 of everything that shapes an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Provider, model, system, user prompt, temperature, n, and max_tokens (a lower limit can
    /// cut the same prompt's answer short). Each field is length-prefixed so that moving text
    /// from one field to the next changes the key.
    pub fn new(provider: &str, model: &str, request: &CompletionRequest) -> CacheKey {
        let mut hash = Sha256::new();
        for field in
            [provider.as_bytes(), model.as_bytes(), request.system.as_bytes(), request.user.as_bytes()]
        {
            hash.update((field.len() as u64).to_le_bytes());
            hash.update(field);
        }
        hash.update(request.temperature.to_bits().to_le_bytes());
        hash.update(request.n.to_le_bytes());
        hash.update(request.max_tokens.to_le_bytes());
        CacheKey(hash.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[derive(Debug)]
struct Entry {
    completion: Completion,
    expires_at: DateTime<Utc>,
    last_used: u64,
}

/// Answers by [`CacheKey`], at most `capacity`, each for `ttl` after it was stored.
#[derive(Debug)]
pub struct PromptCache {
    capacity: usize,
    ttl: chrono::Duration,
    entries: HashMap<CacheKey, Entry>,
    /// Use counter to key, oldest first, for eviction.
    by_use: BTreeMap<u64, CacheKey>,
    clock: u64,
}

impl PromptCache {
    pub fn new(capacity: usize, ttl: chrono::Duration) -> PromptCache {
        PromptCache { capacity, ttl, entries: HashMap::new(), by_use: BTreeMap::new(), clock: 0 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn touch(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The stored answer, unless absent or expired at `now`.
    pub fn get(&mut self, key: &CacheKey, now: DateTime<Utc>) -> Option<Completion> {
        let expired = self.entries.get(key)?.expires_at <= now;
        if expired {
            self.remove(key);
            return None;
        }
        let tick = self.touch();
        let entry = self.entries.get_mut(key)?;
        self.by_use.remove(&entry.last_used);
        entry.last_used = tick;
        self.by_use.insert(tick, *key);
        Some(entry.completion.clone())
    }

    /// Stores an answer, evicting the least recently used entries beyond capacity.
    pub fn put(&mut self, key: CacheKey, completion: Completion, now: DateTime<Utc>) {
        if self.capacity == 0 {
            return;
        }
        self.remove(&key);
        let tick = self.touch();
        self.entries.insert(key, Entry { completion, expires_at: now + self.ttl, last_used: tick });
        self.by_use.insert(tick, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else { break };
            self.entries.remove(&oldest);
        }
    }

    pub fn remove(&mut self, key: &CacheKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_use.remove(&entry.last_used);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Usage;
    use chrono::TimeZone;

    fn request(user: &str) -> CompletionRequest {
        CompletionRequest { system: "s".into(), user: user.into(), max_tokens: 100, temperature: 0.7, n: 1 }
    }

    fn answer(text: &str) -> Completion {
        Completion { texts: vec![text.into()], usage: Usage::default(), stop_reason: None, model: "m".into() }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn keys_differ_for_every_field_and_are_stable() {
        let base = request("u");
        let key = CacheKey::new("openai", "m", &base);
        assert_eq!(key, CacheKey::new("openai", "m", &base.clone()));
        assert_eq!(key.to_hex().len(), 64);
        let mut variants = vec![CacheKey::new("anthropic", "m", &base), CacheKey::new("openai", "m2", &base)];
        let mut r = base.clone();
        r.system = "s2".into();
        variants.push(CacheKey::new("openai", "m", &r));
        let mut r = base.clone();
        r.user = "u2".into();
        variants.push(CacheKey::new("openai", "m", &r));
        let mut r = base.clone();
        r.temperature = 0.2;
        variants.push(CacheKey::new("openai", "m", &r));
        let mut r = base.clone();
        r.n = 2;
        variants.push(CacheKey::new("openai", "m", &r));
        // Text moved across the system/user boundary is another prompt.
        let a = CompletionRequest { system: "ab".into(), user: "c".into(), ..base.clone() };
        let b = CompletionRequest { system: "a".into(), user: "bc".into(), ..base.clone() };
        assert_ne!(CacheKey::new("openai", "m", &a), CacheKey::new("openai", "m", &b));
        for other in variants {
            assert_ne!(key, other);
        }
    }

    #[test]
    fn entries_expire_and_the_least_recently_used_goes_first() {
        let mut cache = PromptCache::new(2, chrono::Duration::seconds(60));
        let (a, b, c) = (
            CacheKey::new("p", "m", &request("a")),
            CacheKey::new("p", "m", &request("b")),
            CacheKey::new("p", "m", &request("c")),
        );
        cache.put(a, answer("A"), t0());
        cache.put(b, answer("B"), t0());
        assert_eq!(cache.get(&a, t0()).unwrap().texts, vec!["A"], "a is now the most recent");
        cache.put(c, answer("C"), t0());
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&b, t0()).is_none(), "b was least recently used");
        assert!(cache.get(&a, t0()).is_some());
        assert!(cache.get(&c, t0() + chrono::Duration::seconds(59)).is_some());
        assert!(cache.get(&c, t0() + chrono::Duration::seconds(60)).is_none(), "expired");
        assert_eq!(cache.len(), 1, "an expired entry is dropped when seen");
    }

    #[test]
    fn capacity_zero_stores_nothing_and_config_is_checked() {
        let mut cache = CacheConfig { capacity: 0, ttl_secs: 60 }.build().unwrap();
        let key = CacheKey::new("p", "m", &request("a"));
        cache.put(key, answer("A"), t0());
        assert!(cache.get(&key, t0()).is_none());
        let e = CacheConfig { capacity: 10, ttl_secs: 0 }.build().unwrap_err();
        assert_eq!(e.field, "llm.cache.ttl_secs");
    }
}
