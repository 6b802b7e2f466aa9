//! API keys on requests: where they are read from, and a short-lived cache of lookups.
//!
//! Keys are looked up by hash. A found key is cached for half a second, so a key revoked by
//! another process (the CLI) is refused within a second; a key not found is never cached, so
//! a key made a moment ago works on its very next request.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use whisperer_core::keys::KeyHash;
use whisperer_core::{KeyKind, WorkspaceId};
use whisperer_store::{KeyRecord, Store};

use crate::error::{ApiError, ErrorCode};

const CACHE_TTL: Duration = Duration::from_millis(500);
const CACHE_CAPACITY: usize = 100_000;

/// The key a request presented: `Authorization: Basic base64(key:)` (Segment's form, the key
/// as user name) or `Authorization: Bearer key`.
pub fn key_from_headers(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else { return Ok(None) };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::InvalidKey, "authorization header is not valid text"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidKey, "basic credentials are not valid base64 text")
            })?;
        let user = decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user);
        Ok((!user.is_empty()).then(|| user.to_owned()))
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok((!rest.is_empty()).then(|| rest.to_owned()))
    } else {
        Err(ApiError::new(ErrorCode::InvalidKey, "authorization must use the Basic or Bearer scheme"))
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub workspace: WorkspaceId,
    pub kind: KeyKind,
    pub key_id: String,
}

pub struct KeyCache {
    store: Arc<dyn Store>,
    entries: RwLock<HashMap<KeyHash, (Instant, KeyRecord)>>,
}

impl KeyCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store, entries: RwLock::new(HashMap::new()) }
    }

    /// Authenticates `key` for an operation that needs a key of kind `needed`.
    pub async fn authenticate(&self, key: Option<&str>, needed: KeyKind) -> Result<Caller, ApiError> {
        let key = key.ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingKey,
                format!("a {needed} key is required (HTTP Basic user name or Bearer token)"),
            )
        })?;
        let record = self.lookup(KeyHash::of(key)).await?;
        let record = record
            .filter(KeyRecord::is_active)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidKey, "the key is unknown or revoked"))?;
        if record.kind != needed {
            return Err(ApiError::new(
                ErrorCode::WrongKeyKind,
                format!("this endpoint needs a {needed} key, not a {} key", record.kind),
            ));
        }
        Ok(Caller { workspace: record.workspace_id, kind: record.kind, key_id: record.id })
    }

    async fn lookup(&self, hash: KeyHash) -> Result<Option<KeyRecord>, ApiError> {
        if let Some((at, record)) = self.entries.read().unwrap_or_else(|p| p.into_inner()).get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(record.clone()));
        }
        let found = self.store.find_key(&hash).await?;
        if let Some(record) = &found {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            if entries.len() >= CACHE_CAPACITY {
                entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            }
            entries.insert(hash, (Instant::now(), record.clone()));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn reads_segment_basic_auth_and_bearer() {
        // The fixture's header: WRITE_KEY_abc with an empty password.
        assert_eq!(
            key_from_headers(&headers("Basic V1JJVEVfS0VZX2FiYzo=")).unwrap().as_deref(),
            Some("WRITE_KEY_abc")
        );
        assert_eq!(key_from_headers(&headers("Bearer sk_abc")).unwrap().as_deref(), Some("sk_abc"));
        assert_eq!(key_from_headers(&HeaderMap::new()).unwrap(), None);
        assert_eq!(key_from_headers(&headers("Basic Og==")).unwrap(), None, "empty user");
        assert!(key_from_headers(&headers("Basic !!!")).is_err());
        assert!(key_from_headers(&headers("Digest x")).is_err());
    }
}
