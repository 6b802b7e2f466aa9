//! Webhooks: a JSON POST signed with HMAC-SHA256 over timestamp and body.
//!
//! Each message is POSTed to the customer's URL as one JSON object with
//! `Whisperer-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`; signing
//! the timestamp with the body lets a receiver refuse replays of an old request ([`verify`]).
//! `Idempotency-Key` carries the message id: the documented contract is that receivers drop a
//! second delivery with a key they have seen, which is what makes a repeat safe.

use std::collections::BTreeMap;
use std::time::Duration;

use ring::hmac;
use serde::Deserialize;
use serde_json::json;

use crate::http;
use crate::{CallbackError, Channel, ConfigError, FailureKind, Message, Provider, Receipt, SendError};

pub const SIGNATURE_HEADER: &str = "Whisperer-Signature";
pub const MESSAGE_ID_HEADER: &str = "Whisperer-Message-Id";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Shorter secrets are guessable enough to forge signatures offline.
pub const MIN_SECRET_BYTES: usize = 16;

/// Webhook provider settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    #[serde(default = "default_name")]
    pub name: String,
    pub url: String,
    /// The signing key shared with the receiver, at least 16 bytes.
    pub secret: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Sent with every request, e.g. a static auth header the receiver's gateway expects.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Whether the receiver honours `Idempotency-Key` (the documented contract), which lets a
    /// send whose outcome was lost be repeated.
    #[serde(default = "default_true")]
    pub receiver_deduplicates: bool,
}

fn default_name() -> String {
    "webhook".to_string()
}

fn default_timeout_ms() -> u64 {
    http::DEFAULT_TIMEOUT.as_millis() as u64
}

fn default_true() -> bool {
    true
}

/// Headers the provider sets itself; config may not replace them.
const RESERVED: [&str; 5] =
    ["whisperer-signature", "whisperer-message-id", "idempotency-key", "content-type", "host"];

impl WebhookConfig {
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        WebhookConfig {
            name: default_name(),
            url: url.into(),
            secret: secret.into(),
            timeout_ms: default_timeout_ms(),
            headers: BTreeMap::new(),
            receiver_deduplicates: true,
        }
    }

    pub fn build(&self) -> Result<Webhook, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("webhook.name", "must not be empty"));
        }
        let parsed = url::Url::parse(&self.url)
            .map_err(|e| ConfigError::new("webhook.url", format!("not a URL ({e}): {:?}", self.url)))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(ConfigError::new("webhook.url", format!("must be an http(s) URL: {:?}", self.url)));
        }
        if self.secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::new(
                "webhook.secret",
                format!("must be at least {MIN_SECRET_BYTES} bytes, is {}", self.secret.len()),
            ));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &self.headers {
            let field = format!("webhook.headers.{name}");
            if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(ConfigError::new(field, "set by the provider itself"));
            }
            let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(field.clone(), "not a valid header name"))?;
            let header_value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| ConfigError::new(field, "not a valid header value"))?;
            headers.insert(header_name, header_value);
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::new("webhook.timeout_ms", "must be positive"));
        }
        Ok(Webhook {
            name: self.name.clone(),
            client: http::client(Duration::from_millis(self.timeout_ms))?,
            url: parsed.to_string(),
            key: hmac::Key::new(hmac::HMAC_SHA256, self.secret.as_bytes()),
            headers,
            deduplicates: self.receiver_deduplicates,
        })
    }
}

/// Posts messages to one customer endpoint.
pub struct Webhook {
    name: String,
    client: reqwest::Client,
    url: String,
    key: hmac::Key,
    headers: reqwest::header::HeaderMap,
    deduplicates: bool,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("name", &self.name).field("url", &self.url).finish_non_exhaustive()
    }
}

/// The request body for a message.
pub fn payload(message: &Message, sent_at: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    json!({
        "id": message.id,
        "workspace": message.workspace,
        "person": message.person,
        "userId": message.user_id,
        "channel": message.channel,
        "kind": message.kind,
        "subject": message.subject,
        "text": message.text,
        "data": message.data,
        "sentAt": sent_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// The `Whisperer-Signature` value for a body sent at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("t={timestamp},v1={}", hex::encode(tag(&key, timestamp, body).as_ref()))
}

fn tag(key: &hmac::Key, timestamp: i64, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// For receivers: checks a `Whisperer-Signature` header against the raw body, and that its
/// timestamp is within `tolerance` of `now`. Several `v1` values (a secret being rotated on
/// the sender's side) pass if any matches.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
    tolerance: Duration,
) -> Result<(), CallbackError> {
    if header.trim().is_empty() {
        return Err(CallbackError::MissingSignature(SIGNATURE_HEADER));
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| CallbackError::Malformed(format!("bad timestamp {value:?}")))?,
                );
            }
            Some(("v1", value)) => signatures.push(value),
            // Unknown schemes are skipped so a later version can be added alongside v1.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| CallbackError::Malformed("no t= in signature header".into()))?;
    if signatures.is_empty() {
        return Err(CallbackError::Malformed("no v1= in signature header".into()));
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = Vec::with_capacity(body.len() + 12);
    message.extend_from_slice(timestamp.to_string().as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let matches = signatures
        .iter()
        .filter_map(|s| hex::decode(s).ok())
        .any(|tag| hmac::verify(&key, &message, &tag).is_ok());
    if !matches {
        return Err(CallbackError::BadSignature);
    }
    let age = now.timestamp().abs_diff(timestamp);
    if age > tolerance.as_secs() {
        return Err(CallbackError::Stale);
    }
    Ok(())
}

#[async_trait::async_trait]
impl Provider for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Webhook
    }

    fn deduplicates(&self) -> bool {
        self.deduplicates
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError> {
        let now = chrono::Utc::now();
        let body = payload(message, now).to_string().into_bytes();
        let signature = tag(&self.key, now.timestamp(), &body);
        let response = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, format!("t={},v1={}", now.timestamp(), hex::encode(signature.as_ref())))
            .header(MESSAGE_ID_HEADER, &message.id)
            .header(IDEMPOTENCY_HEADER, &message.id)
            .body(body)
            .send()
            .await
            .map_err(http::error_from_transport)?;
        if response.status().is_success() {
            return Ok(Receipt { provider_message_id: None });
        }
        let gone = response.status() == reqwest::StatusCode::GONE;
        let mut error = http::error_from_response(response).await;
        if gone {
            // The receiver says it will never take messages for this person again.
            error.kind = FailureKind::Recipient;
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef-secret";

    fn at(seconds: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Independent of `sign`: the documented construction spelled out with ring directly.
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET);
        let expected = hex::encode(hmac::sign(&key, b"1700000000.{\"id\":\"m1\"}").as_ref());
        assert_eq!(sign(SECRET, 1_700_000_000, br#"{"id":"m1"}"#), format!("t=1700000000,v1={expected}"));
    }

    #[test]
    fn verify_accepts_good_and_refuses_forged_stale_and_malformed() {
        let body = br#"{"id":"m1"}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        let window = Duration::from_secs(300);
        assert_eq!(verify(SECRET, &header, body, at(1_700_000_100), window), Ok(()));
        assert_eq!(
            verify(SECRET, &header, br#"{"id":"m2"}"#, at(1_700_000_100), window),
            Err(CallbackError::BadSignature)
        );
        assert_eq!(
            verify(b"another-secret-16b", &header, body, at(1_700_000_100), window),
            Err(CallbackError::BadSignature)
        );
        assert_eq!(verify(SECRET, &header, body, at(1_700_000_301), window), Err(CallbackError::Stale));
        assert_eq!(verify(SECRET, &header, body, at(1_699_999_000), window), Err(CallbackError::Stale));
        // Moving the timestamp breaks the signature, so a replay cannot be freshened.
        let moved = header.replace("t=1700000000", "t=1700000200");
        assert_eq!(verify(SECRET, &moved, body, at(1_700_000_200), window), Err(CallbackError::BadSignature));
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(verify(SECRET, &rotated, body, at(1_700_000_000), window), Ok(()));
        assert_eq!(
            verify(SECRET, "", body, at(0), window),
            Err(CallbackError::MissingSignature(SIGNATURE_HEADER))
        );
        assert!(matches!(verify(SECRET, "v1=ab", body, at(0), window), Err(CallbackError::Malformed(_))));
        assert!(matches!(verify(SECRET, "t=1", body, at(0), window), Err(CallbackError::Malformed(_))));
        assert!(matches!(verify(SECRET, "t=x,v1=ab", body, at(0), window), Err(CallbackError::Malformed(_))));
    }

    #[test]
    fn config_names_the_bad_field() {
        let field = |c: WebhookConfig| c.build().unwrap_err().field;
        assert!(WebhookConfig::new("https://hooks.example.com/w", "0123456789abcdef").build().is_ok());
        assert_eq!(field(WebhookConfig::new("https://hooks.example.com/w", "short")), "webhook.secret");
        assert_eq!(field(WebhookConfig::new("ftp://x/", "0123456789abcdef")), "webhook.url");
        let mut reserved = WebhookConfig::new("https://h.example.com/", "0123456789abcdef");
        reserved.headers.insert("Idempotency-Key".into(), "x".into());
        assert_eq!(field(reserved), "webhook.headers.Idempotency-Key");
        let mut bad = WebhookConfig::new("https://h.example.com/", "0123456789abcdef");
        bad.headers.insert("X-Token".into(), "a\nb".into());
        assert_eq!(field(bad), "webhook.headers.X-Token");
        let unknown = r#"{"url":"https://h.example.com/","secret":"0123456789abcdef","retries":3}"#;
        assert!(serde_json::from_str::<WebhookConfig>(unknown).is_err());
        let defaults: WebhookConfig =
            serde_json::from_str(r#"{"url":"https://h.example.com/","secret":"0123456789abcdef"}"#).unwrap();
        assert!(defaults.receiver_deduplicates);
        assert!(defaults.build().unwrap().deduplicates());
    }
}
