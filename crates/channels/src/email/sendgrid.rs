//! SendGrid v3 Mail Send, and its signed Event Webhook.
//!
//! Our [`Message::id`] rides along as the custom arg `whisperer_message_id`, which SendGrid
//! copies into every event of the message, so [`parse_events`] can name the message without a
//! lookup.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lettre::message::Mailbox;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::email::{check_header, default_timeout_ms, recipient, required, sender, timeout};
use crate::http::{base_url, classify_status, client, clip, error_from_transport, parse_retry_after};
use crate::{
    CallbackError, Channel, ConfigError, DeliveryStatus, FailureKind, Message, Provider, Receipt, SendError,
    StatusEvent,
};

/// Header carrying the base64 ECDSA signature of an event post.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// Header carrying the timestamp that is signed together with the body.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";
/// The custom arg that carries [`Message::id`].
pub const MESSAGE_ID_ARG: &str = "whisperer_message_id";

/// A SendGrid account.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridConfig {
    #[serde(default = "default_name")]
    pub name: String,
    pub api_key: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub from: String,
    #[serde(default)]
    pub from_name: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_name() -> String {
    "sendgrid".into()
}

fn default_base_url() -> String {
    "https://api.sendgrid.com".into()
}

impl SendgridConfig {
    pub fn new(api_key: impl Into<String>, from: impl Into<String>) -> SendgridConfig {
        SendgridConfig {
            name: default_name(),
            api_key: api_key.into(),
            base_url: default_base_url(),
            from: from.into(),
            from_name: None,
            timeout_ms: default_timeout_ms(),
        }
    }

    pub fn build(&self) -> Result<SendgridProvider, ConfigError> {
        required("sendgrid.name", &self.name)?;
        required("sendgrid.api_key", &self.api_key)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key.trim()))
            .ok()
            .filter(|_| self.api_key.trim().bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| ConfigError::new("sendgrid.api_key", "must be printable ASCII without spaces"))?;
        auth.set_sensitive(true);
        let base = base_url("sendgrid.base_url", &self.base_url)?;
        let timeout = timeout("sendgrid.timeout_ms", self.timeout_ms)?;
        Ok(SendgridProvider {
            name: self.name.clone(),
            url: format!("{base}/v3/mail/send"),
            auth,
            from: sender("sendgrid", &self.from, self.from_name.as_deref())?,
            client: client(timeout)?,
        })
    }
}

/// Sends email through SendGrid's v3 API.
pub struct SendgridProvider {
    name: String,
    url: String,
    auth: HeaderValue,
    from: Mailbox,
    client: reqwest::Client,
}

fn address(mailbox: &Mailbox) -> Value {
    let mut out = Map::new();
    out.insert("email".into(), Value::String(mailbox.email.to_string()));
    if let Some(name) = &mailbox.name {
        out.insert("name".into(), Value::String(name.clone()));
    }
    Value::Object(out)
}

impl SendgridProvider {
    /// The Mail Send body for one message.
    pub fn body(&self, message: &Message) -> Result<Value, SendError> {
        let to = recipient(message)?;
        let subject = message.subject.as_deref().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            SendError::new(FailureKind::Provider, "invalid_message", "sendgrid needs a subject")
        })?;
        // SendGrid wants text/plain first, then text/html.
        let mut content = vec![json!({"type": "text/plain", "value": message.text})];
        if let Some(html) = &message.html {
            content.push(json!({"type": "text/html", "value": html}));
        }
        let mut headers = Map::new();
        for (name, value) in &message.headers {
            check_header(name, value)?;
            headers.insert(name.clone(), Value::String(value.clone()));
        }
        let mut custom_args: Map<String, Value> =
            message.data.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        custom_args.insert(MESSAGE_ID_ARG.into(), Value::String(message.id.clone()));
        let mut body = json!({
            "personalizations": [{"to": [address(&to)]}],
            "from": address(&self.from),
            "subject": subject,
            "content": content,
            "custom_args": custom_args,
        });
        if !headers.is_empty() {
            body["headers"] = Value::Object(headers);
        }
        Ok(body)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    help: Option<String>,
}

/// The `errors[].message` texts of an error body (with field and help when given), else the
/// body itself.
fn error_text(body: &str) -> String {
    let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) else { return clip(body, 500) };
    let texts: Vec<String> = parsed
        .errors
        .iter()
        .map(|e| {
            let mut text = e.message.clone().unwrap_or_else(|| "error".into());
            if let Some(field) = e.field.as_deref().filter(|f| !f.is_empty()) {
                text = format!("{field}: {text}");
            }
            if let Some(help) = e.help.as_deref().filter(|h| !h.is_empty()) {
                text = format!("{text} (see {help})");
            }
            text
        })
        .collect();
    if texts.is_empty() { clip(body, 500) } else { clip(&texts.join("; "), 500) }
}

#[async_trait::async_trait]
impl Provider for SendgridProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError> {
        let body = self.body(message)?;
        let response = self
            .client
            .post(&self.url)
            .header(AUTHORIZATION, self.auth.clone())
            .json(&body)
            .send()
            .await
            .map_err(error_from_transport)?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            let id = response.headers().get("x-message-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            return Ok(Receipt { provider_message_id: id });
        }
        let retry_after_ms = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            .map(|d| d.as_millis() as u64);
        let text = response.text().await.unwrap_or_default();
        Err(SendError {
            kind: classify_status(status),
            code: status.to_string(),
            message: error_text(&text),
            retry_after_ms,
        })
    }
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo: SEQUENCE { SEQUENCE { id-ecPublicKey,
/// prime256v1 }, BIT STRING (0 unused bits) } before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The uncompressed point of a P-256 public key in SPKI DER.
pub fn p256_point_from_spki(der: &[u8]) -> Option<&[u8]> {
    der.strip_prefix(&P256_SPKI_PREFIX[..]).filter(|point| point.len() == 65 && point[0] == 0x04)
}

/// The SPKI DER of an uncompressed P-256 point, as SendGrid shows its verification key.
pub fn p256_spki_from_point(point: &[u8]) -> Vec<u8> {
    [&P256_SPKI_PREFIX[..], point].concat()
}

/// Verifies a signed Event Webhook post: an ECDSA P-256 SHA-256 signature (ASN.1 DER,
/// base64) over the timestamp header's bytes followed by the raw body, under the account's
/// verification key (base64 SPKI DER, as the SendGrid console shows it).
pub fn verify_event_webhook(
    public_key_base64_der: &str,
    signature_b64: &str,
    timestamp: &str,
    body: &[u8],
) -> Result<(), CallbackError> {
    if signature_b64.trim().is_empty() {
        return Err(CallbackError::MissingSignature(SIGNATURE_HEADER));
    }
    if timestamp.trim().is_empty() {
        return Err(CallbackError::MissingSignature(TIMESTAMP_HEADER));
    }
    let der = STANDARD
        .decode(public_key_base64_der.trim())
        .map_err(|e| CallbackError::Malformed(format!("verification key is not base64: {e}")))?;
    let point = p256_point_from_spki(&der)
        .ok_or_else(|| CallbackError::Malformed("verification key is not a P-256 public key".into()))?;
    let signature = STANDARD.decode(signature_b64.trim()).map_err(|_| CallbackError::BadSignature)?;
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point)
        .verify(&signed, &signature)
        .map_err(|_| CallbackError::BadSignature)
}

/// Refuses a post whose signed timestamp (seconds) is further than `window` from `now`, so a
/// captured post cannot be replayed later. SendGrid documents no window; callers pick one.
pub fn check_timestamp(
    timestamp: &str,
    now: chrono::DateTime<chrono::Utc>,
    window: Duration,
) -> Result<(), CallbackError> {
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| CallbackError::Malformed(format!("bad timestamp {timestamp:?}")))?;
    if (now.timestamp() - seconds).unsigned_abs() > window.as_secs() {
        return Err(CallbackError::Stale);
    }
    Ok(())
}

/// Reads an Event Webhook body (a JSON array of events) into status events. Events that say
/// nothing about delivery (`processed`, `group_resubscribe`, unknown names) are skipped, so a
/// new SendGrid event type does not make SendGrid retry the whole batch.
pub fn parse_events(body: &[u8]) -> Result<Vec<StatusEvent>, CallbackError> {
    let events: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| CallbackError::Malformed(format!("not a JSON array of events: {e}")))?;
    let mut out = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let Some(fields) = event.as_object() else {
            return Err(CallbackError::Malformed(format!("event {i} is not an object")));
        };
        let text = |key: &str| fields.get(key).and_then(Value::as_str);
        let name =
            text("event").ok_or_else(|| CallbackError::Malformed(format!("event {i} has no event name")))?;
        let status = match name {
            "delivered" => DeliveryStatus::Delivered,
            "open" => DeliveryStatus::Opened,
            "click" => DeliveryStatus::Clicked,
            "bounce" if text("type") == Some("blocked") => DeliveryStatus::Deferred,
            "bounce" => DeliveryStatus::Bounced,
            "dropped" => DeliveryStatus::Failed,
            "deferred" => DeliveryStatus::Deferred,
            "spamreport" => DeliveryStatus::Complained,
            "unsubscribe" | "group_unsubscribe" => DeliveryStatus::Unsubscribed,
            _ => continue,
        };
        let seconds = fields
            .get("timestamp")
            .and_then(|t| t.as_i64().or_else(|| t.as_str().and_then(|s| s.parse().ok())))
            .ok_or_else(|| CallbackError::Malformed(format!("event {i} ({name}) has no timestamp")))?;
        let mut detail = BTreeMap::from([("event".to_owned(), name.to_owned())]);
        for key in
            ["url", "reason", "status", "type", "bounce_classification", "response", "attempt", "sg_event_id"]
        {
            match fields.get(key) {
                Some(Value::String(s)) => detail.insert(key.to_owned(), s.clone()),
                Some(Value::Number(n)) => detail.insert(key.to_owned(), n.to_string()),
                _ => None,
            };
        }
        if let Some(group) = fields.get("asm_group_id").and_then(Value::as_i64) {
            detail.insert("asm_group_id".into(), group.to_string());
        }
        let sg_message_id = text("sg_message_id");
        if let Some(full) = sg_message_id {
            detail.insert("sg_message_id".into(), full.to_owned());
        }
        out.push(StatusEvent {
            message_id: text(MESSAGE_ID_ARG).map(str::to_owned),
            // Events carry `<X-Message-Id>.<filter suffix>`; the part before the first dot is
            // what the send returned.
            provider_message_id: sg_message_id.map(|id| id.split('.').next().unwrap_or(id).to_owned()),
            status,
            at: seconds.saturating_mul(1000),
            detail,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verification vector SendGrid's own helper libraries test against.
    const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const SIGNATURE: &str =
        "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const TIMESTAMP: &str = "1588788367";
    const PAYLOAD: &str = r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;

    #[test]
    fn sendgrids_published_vector_verifies() {
        assert_eq!(verify_event_webhook(KEY, SIGNATURE, TIMESTAMP, PAYLOAD.as_bytes()), Ok(()));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let bad = Err(CallbackError::BadSignature);
        assert_eq!(verify_event_webhook(KEY, SIGNATURE, "1388788367", PAYLOAD.as_bytes()), bad);
        assert_eq!(verify_event_webhook(KEY, SIGNATURE, TIMESTAMP, b"payload"), bad);
        let other_sig = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
        assert_eq!(verify_event_webhook(KEY, other_sig, TIMESTAMP, PAYLOAD.as_bytes()), bad);
        assert_eq!(
            verify_event_webhook(KEY, "", TIMESTAMP, PAYLOAD.as_bytes()),
            Err(CallbackError::MissingSignature(SIGNATURE_HEADER))
        );
        assert!(matches!(
            verify_event_webhook("bm90IGEga2V5", SIGNATURE, TIMESTAMP, PAYLOAD.as_bytes()),
            Err(CallbackError::Malformed(_))
        ));
    }

    #[test]
    fn stale_timestamps_are_refused() {
        let now = chrono::DateTime::from_timestamp(1_588_788_367 + 60, 0).unwrap();
        assert_eq!(check_timestamp(TIMESTAMP, now, Duration::from_secs(300)), Ok(()));
        assert_eq!(check_timestamp(TIMESTAMP, now, Duration::from_secs(30)), Err(CallbackError::Stale));
    }

    #[test]
    fn error_bodies_become_readable_messages() {
        let body = r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":"http://x/y"}]}"#;
        assert_eq!(
            error_text(body),
            "from: The from address does not match a verified Sender Identity. (see http://x/y)"
        );
        assert_eq!(error_text("oops"), "oops");
    }

    #[test]
    fn config_is_checked() {
        let field = |c: SendgridConfig| c.build().err().map(|e| e.field);
        let ok = SendgridConfig::new("SG.key", "a@b.example");
        assert_eq!(field(ok.clone()), None);
        assert_eq!(
            field(SendgridConfig { api_key: "".into(), ..ok.clone() }),
            Some("sendgrid.api_key".into())
        );
        assert_eq!(
            field(SendgridConfig { api_key: "a b".into(), ..ok.clone() }),
            Some("sendgrid.api_key".into())
        );
        assert_eq!(
            field(SendgridConfig { base_url: "ftp://x".into(), ..ok.clone() }),
            Some("sendgrid.base_url".into())
        );
        assert_eq!(field(SendgridConfig { from: "x".into(), ..ok }), Some("sendgrid.from".into()));
    }
}
