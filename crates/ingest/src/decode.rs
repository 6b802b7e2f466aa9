//! Decoding of Segment HTTP Tracking API request bodies into message drafts.
//!
//! This is the code that faces untrusted bytes, so it is strict and bounded: the body and each
//! message have size limits (checked after gzip too, so a small bomb cannot expand past them),
//! JSON must be UTF-8 and at most 128 levels deep (serde_json's limit), and every field Segment
//! defines is type-checked. A bad message in a batch rejects only that message.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::Read;
use whisperer_core::EventType;
use whisperer_core::time::{Millis, parse_iso8601};

/// Size limits of a request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest body, compressed or decompressed.
    pub max_request_bytes: usize,
    /// Largest single message (its JSON text).
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_request_bytes: 500 * 1024, max_message_bytes: 32 * 1024 }
    }
}

/// Which endpoint a body was sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Batch,
    Single(EventType),
}

/// Why a whole request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request body is larger than {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("unsupported content encoding {0:?}: send the body plain or gzip-compressed")]
    UnsupportedEncoding(String),
    #[error("body is not valid gzip: {0}")]
    InvalidGzip(String),
    #[error("body is not valid UTF-8 (first bad byte at offset {0})")]
    InvalidUtf8(usize),
    #[error("body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("JSON is nested more than {MAX_DEPTH} levels deep")]
    NestingTooDeep,
    #[error("{0}")]
    InvalidBatch(String),
    /// The one message of a single-message endpoint is invalid.
    #[error("{0}")]
    Message(MessageError),
}

/// Why one message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MessageError {
    pub reason: Reason,
    pub message: String,
}

/// Stable reason codes for refused messages; the API error table maps each to its HTTP form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    MessageTooLarge,
    InvalidMessage,
    TrackingPlanViolation,
}

impl Reason {
    pub const ALL: [Reason; 3] =
        [Reason::MessageTooLarge, Reason::InvalidMessage, Reason::TrackingPlanViolation];

    pub fn code(self) -> &'static str {
        match self {
            Reason::MessageTooLarge => "message_too_large",
            Reason::InvalidMessage => "invalid_message",
            Reason::TrackingPlanViolation => "tracking_plan_violation",
        }
    }
}

impl MessageError {
    fn invalid(message: impl Into<String>) -> Self {
        Self { reason: Reason::InvalidMessage, message: message.into() }
    }
}

/// A message that passed decoding and validation, before enrichment.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub event_type: EventType,
    /// None when the client sent none; ingestion assigns one.
    pub message_id: Option<String>,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub previous_id: Option<String>,
    /// Track event name, or page/screen name.
    pub name: Option<String>,
    /// The client's `timestamp` (or `originalTimestamp`).
    pub timestamp: Option<Millis>,
    /// The message's own `sentAt`, else the batch's.
    pub sent_at: Option<Millis>,
    /// `context.userAgent`, else the batch context's.
    pub user_agent: Option<String>,
    /// `context.ip`, else the batch context's.
    pub ip: Option<String>,
    /// The message exactly as sent.
    pub raw: String,
}

/// A decoded request: the key it carried in its body, and each message or why it was refused.
#[derive(Debug)]
pub struct DecodedRequest {
    pub write_key: Option<String>,
    pub messages: Vec<Result<Draft, MessageError>>,
}

/// Deepest nesting of arrays and objects accepted in a body. Deeper data is never real
/// analytics and would make every later consumer that parses it fail.
pub const MAX_DEPTH: usize = 64;

/// Whether JSON text nests arrays/objects deeper than `limit`. One pass, no allocation; text
/// inside strings is skipped. Runs before parsing so serde never sees such input.
fn nests_deeper_than(text: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Longest id (userId, anonymousId, messageId, groupId, previousId) and event name, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// Returns the body as plain bytes, decompressing gzip within the size limit.
pub fn decompress<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limits: &Limits,
) -> Result<std::borrow::Cow<'a, [u8]>, DecodeError> {
    if body.len() > limits.max_request_bytes {
        return Err(DecodeError::RequestTooLarge { limit: limits.max_request_bytes });
    }
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(std::borrow::Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::with_capacity(body.len() * 4);
            let limit = limits.max_request_bytes as u64;
            flate2::read::MultiGzDecoder::new(body)
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|e| DecodeError::InvalidGzip(e.to_string()))?;
            if out.len() as u64 > limit {
                return Err(DecodeError::RequestTooLarge { limit: limits.max_request_bytes });
            }
            Ok(std::borrow::Cow::Owned(out))
        }
        Some(other) => Err(DecodeError::UnsupportedEncoding(other.to_owned())),
    }
}

#[derive(Deserialize)]
struct WireBatch<'a> {
    #[serde(borrow)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(rename = "writeKey", borrow, default)]
    write_key: Option<&'a RawValue>,
    #[serde(rename = "sentAt", borrow, default)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(rename = "messageId", borrow, default)]
    message_id: Option<&'a RawValue>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(rename = "anonymousId", borrow, default)]
    anonymous_id: Option<&'a RawValue>,
    #[serde(rename = "previousId", borrow, default)]
    previous_id: Option<&'a RawValue>,
    #[serde(rename = "groupId", borrow, default)]
    group_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(rename = "originalTimestamp", borrow, default)]
    original_timestamp: Option<&'a RawValue>,
    #[serde(rename = "sentAt", borrow, default)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
    #[serde(borrow, default)]
    traits: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    #[serde(borrow, default)]
    integrations: Option<&'a RawValue>,
    #[serde(rename = "writeKey", borrow, default)]
    write_key: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct WireContext<'a> {
    #[serde(rename = "userAgent", borrow, default)]
    user_agent: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ip: Option<&'a RawValue>,
}

/// Depth is checked before parsing (`nests_deeper_than`), so serde's own recursion limit is
/// never what fails here.
fn json_error(e: serde_json::Error) -> DecodeError {
    DecodeError::MalformedJson(e.to_string())
}

/// Decodes a (decompressed) body sent to `endpoint`.
pub fn decode(endpoint: Endpoint, body: &[u8], limits: &Limits) -> Result<DecodedRequest, DecodeError> {
    if body.len() > limits.max_request_bytes {
        return Err(DecodeError::RequestTooLarge { limit: limits.max_request_bytes });
    }
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::InvalidUtf8(e.valid_up_to()))?;
    if nests_deeper_than(body, MAX_DEPTH) {
        return Err(DecodeError::NestingTooDeep);
    }
    match endpoint {
        Endpoint::Batch => decode_batch(text, limits),
        Endpoint::Single(event_type) => {
            let raw: &RawValue = serde_json::from_str(text).map_err(json_error)?;
            if !raw.get().starts_with('{') {
                return Err(DecodeError::InvalidBatch("body must be a JSON object".into()));
            }
            let (draft, write_key) = decode_message(raw, Some(event_type), &BatchContext::default(), limits)
                .map_err(DecodeError::Message)?;
            let write_key = write_key.and_then(|k| string_value(k, "writeKey", false).ok().flatten());
            Ok(DecodedRequest { write_key, messages: vec![Ok(draft)] })
        }
    }
}

#[derive(Default)]
struct BatchContext {
    sent_at: Option<Millis>,
    user_agent: Option<String>,
    ip: Option<String>,
}

fn decode_batch(text: &str, limits: &Limits) -> Result<DecodedRequest, DecodeError> {
    // One pass: the batch array is split into raw messages while the envelope is read.
    let wire: WireBatch<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            DecodeError::InvalidBatch(format!(
                "body must be an object with a \"batch\" array of messages: {e}"
            ))
        } else {
            json_error(e)
        }
    })?;
    let items = wire.batch.ok_or_else(|| DecodeError::InvalidBatch("missing \"batch\" array".into()))?;
    let write_key = wire.write_key.and_then(|k| string_value(k, "writeKey", false).ok().flatten());
    let sent_at = match wire.sent_at {
        Some(raw) => Some(timestamp_value(raw, "sentAt").map_err(|e| DecodeError::InvalidBatch(e.message))?),
        None => None,
    }
    .flatten();
    let context = match wire.context {
        Some(raw) if raw.get().starts_with('{') => {
            serde_json::from_str::<WireContext<'_>>(raw.get()).unwrap_or_default()
        }
        Some(_) => return Err(DecodeError::InvalidBatch("batch \"context\" must be an object".into())),
        None => WireContext::default(),
    };
    let batch_context = BatchContext {
        sent_at,
        user_agent: context.user_agent.and_then(|v| string_value(v, "", false).ok().flatten()),
        ip: context.ip.and_then(|v| string_value(v, "", false).ok().flatten()),
    };
    let messages = items
        .into_iter()
        .map(|raw| decode_message(raw, None, &batch_context, limits).map(|(draft, _)| draft))
        .collect();
    Ok(DecodedRequest { write_key, messages })
}

/// A string field; numbers are accepted where `allow_number` (Segment accepts numeric ids).
/// Empty strings count as absent.
fn string_value(raw: &RawValue, field: &str, allow_number: bool) -> Result<Option<String>, MessageError> {
    let text = raw.get();
    let value = match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text)
            .map_err(|e| MessageError::invalid(format!("{field}: {e}")))?,
        // Integer ids only: a float id (1e3, 5.5) is a client bug, not a name.
        Some(b'-' | b'0'..=b'9')
            if allow_number && text.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.to_owned()
        }
        Some(b'n') => return Ok(None),
        _ => return Err(MessageError::invalid(format!("{field} must be a string"))),
    };
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_ID_BYTES {
        return Err(MessageError::invalid(format!("{field} is longer than {MAX_ID_BYTES} bytes")));
    }
    Ok(Some(value))
}

fn timestamp_value(raw: &RawValue, field: &str) -> Result<Option<Millis>, MessageError> {
    match string_value(raw, field, false)? {
        None => Ok(None),
        Some(s) => parse_iso8601(&s)
            .map(Some)
            .map_err(|e| MessageError::invalid(format!("{field} {s:?} is invalid: {e}"))),
    }
}

fn object_field(raw: Option<&RawValue>, field: &str) -> Result<(), MessageError> {
    match raw.map(|r| r.get().as_bytes()[0]) {
        None | Some(b'{') | Some(b'n') => Ok(()),
        Some(_) => Err(MessageError::invalid(format!("{field} must be an object"))),
    }
}

/// Whether the JSON text holds an escaped NUL (`\u0000`) in a string. Such strings cannot be
/// stored by PostgreSQL and are never meaningful in analytics data.
fn contains_escaped_nul(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find("\\u0000") {
        let at = from + pos;
        let backslashes = bytes[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return true;
        }
        from = at + 1;
    }
    false
}

/// One message, and the `writeKey` it carries (single-message endpoints read it from there).
fn decode_message<'a>(
    raw: &'a RawValue,
    endpoint_type: Option<EventType>,
    batch: &BatchContext,
    limits: &Limits,
) -> Result<(Draft, Option<&'a RawValue>), MessageError> {
    let text = raw.get();
    if text.len() > limits.max_message_bytes {
        return Err(MessageError {
            reason: Reason::MessageTooLarge,
            message: format!(
                "message is {} bytes, more than the limit of {}",
                text.len(),
                limits.max_message_bytes
            ),
        });
    }
    if !text.starts_with('{') {
        return Err(MessageError::invalid("message must be a JSON object"));
    }
    if contains_escaped_nul(text) {
        return Err(MessageError::invalid("strings must not contain NUL characters (\\u0000)"));
    }
    let wire: WireMessage<'_> =
        serde_json::from_str(text).map_err(|e| MessageError::invalid(e.to_string()))?;

    let declared = wire.kind.map(|k| string_value(k, "type", false)).transpose()?.flatten();
    let event_type = match (endpoint_type, declared.as_deref()) {
        (Some(t), None) => t,
        (Some(t), Some(d)) if d == t.as_str() => t,
        (Some(t), Some(d)) => {
            return Err(MessageError::invalid(format!("type {d:?} does not match the /v1/{t} endpoint")));
        }
        (None, Some(d)) => EventType::parse(d).ok_or_else(|| {
            MessageError::invalid(format!(
                "type {d:?} is not one of track, identify, page, screen, group, alias"
            ))
        })?,
        (None, None) => return Err(MessageError::invalid("type is required in a batch message")),
    };

    let field = |raw: Option<&RawValue>, name: &str, numeric: bool| -> Result<Option<String>, MessageError> {
        raw.map(|r| string_value(r, name, numeric)).transpose().map(Option::flatten)
    };
    let user_id = field(wire.user_id, "userId", true)?;
    let anonymous_id = field(wire.anonymous_id, "anonymousId", true)?;
    let message_id = field(wire.message_id, "messageId", true)?;
    let previous_id = field(wire.previous_id, "previousId", true)?;
    let group_id = field(wire.group_id, "groupId", true)?;
    let event = field(wire.event, "event", false)?;
    let name = field(wire.name, "name", false)?;

    object_field(wire.properties, "properties")?;
    object_field(wire.traits, "traits")?;
    object_field(wire.context, "context")?;
    object_field(wire.integrations, "integrations")?;

    if user_id.is_none() && anonymous_id.is_none() {
        return Err(MessageError::invalid("userId or anonymousId is required"));
    }
    let name = match event_type {
        EventType::Track => Some(event.ok_or_else(|| MessageError::invalid("event is required for track"))?),
        EventType::Page | EventType::Screen => name,
        EventType::Alias => {
            if user_id.is_none() {
                return Err(MessageError::invalid("userId is required for alias"));
            }
            if previous_id.is_none() {
                return Err(MessageError::invalid("previousId is required for alias"));
            }
            None
        }
        EventType::Group => {
            if group_id.is_none() {
                return Err(MessageError::invalid("groupId is required for group"));
            }
            None
        }
        EventType::Identify => None,
    };

    let timestamp = match (wire.timestamp, wire.original_timestamp) {
        (Some(t), _) => timestamp_value(t, "timestamp")?,
        (None, Some(t)) => timestamp_value(t, "originalTimestamp")?,
        (None, None) => None,
    };
    let sent_at = match wire.sent_at {
        Some(s) => timestamp_value(s, "sentAt")?,
        None => None,
    }
    .or(batch.sent_at);

    let context: WireContext<'_> = match wire.context {
        Some(c) if c.get().starts_with('{') => {
            serde_json::from_str(c.get()).map_err(|e| MessageError::invalid(format!("context: {e}")))?
        }
        _ => WireContext::default(),
    };
    // A wrongly typed userAgent or ip is kept in the raw message but not used for enrichment.
    let user_agent = context
        .user_agent
        .and_then(|v| string_value(v, "", false).ok().flatten())
        .or_else(|| batch.user_agent.clone());
    let ip = context.ip.and_then(|v| string_value(v, "", false).ok().flatten()).or_else(|| batch.ip.clone());

    let draft = Draft {
        event_type,
        message_id,
        user_id,
        anonymous_id,
        previous_id: if event_type == EventType::Alias { previous_id } else { None },
        name,
        timestamp,
        sent_at,
        user_agent,
        ip,
        raw: text.to_owned(),
    };
    Ok((draft, wire.write_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(body: serde_json::Value) -> DecodedRequest {
        decode(Endpoint::Batch, body.to_string().as_bytes(), &Limits::default()).unwrap()
    }

    fn single(t: EventType, body: serde_json::Value) -> Result<Draft, DecodeError> {
        decode(Endpoint::Single(t), body.to_string().as_bytes(), &Limits::default())
            .map(|mut d| d.messages.remove(0).unwrap())
    }

    fn reject(t: EventType, body: serde_json::Value) -> String {
        match single(t, body) {
            Err(DecodeError::Message(e)) => e.message,
            other => panic!("expected a message error, got {other:?}"),
        }
    }

    #[test]
    fn decodes_the_node_fixture_batch() {
        let line = include_str!("../../../../shared/fixtures/segment-clients/node_segment.jsonl");
        let captured: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
        let decoded = batch(captured["body"].clone());
        assert_eq!(decoded.write_key.as_deref(), Some("WRITE_KEY_abc"));
        let drafts: Vec<_> = decoded.messages.into_iter().map(Result::unwrap).collect();
        let types: Vec<_> = drafts.iter().map(|d| d.event_type).collect();
        use EventType::*;
        assert_eq!(types, [Track, Identify, Page, Screen, Group, Alias]);
        assert_eq!(drafts[0].name.as_deref(), Some("Order Completed"));
        assert_eq!(drafts[0].ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(drafts[2].name.as_deref(), Some("Pricing"));
        assert_eq!(drafts[5].previous_id.as_deref(), Some("anon_777"));
        assert!(drafts.iter().all(|d| d.sent_at == Some(parse_iso8601("2026-11-24T16:30:27.710Z").unwrap())));
        assert!(drafts.iter().all(|d| d.message_id.as_deref().unwrap().starts_with("node-next-")));
    }

    #[test]
    fn python_nulls_are_absent() {
        let d = single(
            EventType::Track,
            json!({"userId": "u", "anonymousId": null, "event": "E", "properties": null}),
        )
        .unwrap();
        assert_eq!(d.anonymous_id, None);
        assert_eq!(d.user_id.as_deref(), Some("u"));
    }

    #[test]
    fn keeps_the_raw_message_exactly() {
        let body = br#"{"batch":[ {"type":"track", "userId":"u","event":"E","properties":{"b":1,"a":2}} ]}"#;
        let d = decode(Endpoint::Batch, body, &Limits::default()).unwrap().messages.remove(0).unwrap();
        assert_eq!(d.raw, r#"{"type":"track", "userId":"u","event":"E","properties":{"b":1,"a":2}}"#);
    }

    #[test]
    fn required_fields_per_type() {
        use EventType::*;
        assert_eq!(reject(Track, json!({"event": "E"})), "userId or anonymousId is required");
        assert_eq!(reject(Track, json!({"userId": "u"})), "event is required for track");
        assert_eq!(reject(Track, json!({"userId": "u", "event": ""})), "event is required for track");
        assert_eq!(reject(Alias, json!({"userId": "u"})), "previousId is required for alias");
        assert_eq!(
            reject(Alias, json!({"anonymousId": "a", "previousId": "p"})),
            "userId is required for alias"
        );
        assert_eq!(reject(Group, json!({"userId": "u"})), "groupId is required for group");
        assert!(single(Identify, json!({"userId": "u", "traits": {"a": 1}})).is_ok());
        assert!(single(Page, json!({"anonymousId": "a"})).is_ok());
        assert!(single(Screen, json!({"userId": 42, "name": "Home"})).is_ok(), "numeric ids are accepted");
    }

    #[test]
    fn wrong_types_are_named() {
        use EventType::*;
        assert_eq!(reject(Track, json!({"userId": {"x": 1}, "event": "E"})), "userId must be a string");
        assert_eq!(reject(Track, json!({"userId": 1.5, "event": "E"})), "userId must be a string");
        assert_eq!(reject(Track, json!({"userId": "u", "event": 5})), "event must be a string");
        assert_eq!(
            reject(Track, json!({"userId": "u", "event": "E", "properties": []})),
            "properties must be an object"
        );
        assert_eq!(reject(Identify, json!({"userId": "u", "traits": "pro"})), "traits must be an object");
        assert_eq!(
            reject(Track, json!({"userId": "u", "event": "E", "context": 1})),
            "context must be an object"
        );
        assert!(
            reject(Track, json!({"userId": "u", "event": "E", "timestamp": "yesterday"}))
                .starts_with("timestamp")
        );
        assert!(
            reject(Track, json!({"userId": "u", "event": "E", "timestamp": 1700000000}))
                .contains("must be a string")
        );
        assert_eq!(
            reject(Track, json!({"type": "identify", "userId": "u", "event": "E"})),
            "type \"identify\" does not match the /v1/track endpoint"
        );
        assert!(reject(Track, json!({"userId": "u".repeat(600), "event": "E"})).contains("longer than"));
        assert!(
            reject(Track, json!({"userId": "u", "event": "E", "properties": {"x": "a\u{0}b"}}))
                .contains("NUL")
        );
    }

    #[test]
    fn depth_scan_skips_strings() {
        assert!(!nests_deeper_than(br#"{"a":"[[[[[[[[[[[[[[[[[[[[[[["}"#, 2));
        assert!(!nests_deeper_than(br#"{"a":"\"[["}"#, 1));
        assert!(nests_deeper_than(br#"{"a":[{"b":[]}]}"#, 3));
        assert!(!nests_deeper_than(br#"{"a":[{"b":[]}]}"#, 4));
    }

    #[test]
    fn escaped_backslash_before_u0000_is_not_nul() {
        assert!(!contains_escaped_nul(r#"{"a":"\\u0000"}"#));
        assert!(contains_escaped_nul(r#"{"a":"\\\u0000"}"#));
        assert!(contains_escaped_nul(r#"{"a":"x\u0000"}"#));
    }

    #[test]
    fn batch_rejects_only_bad_messages() {
        let d = batch(json!({"batch": [
            {"type": "track", "userId": "u", "event": "ok"},
            {"type": "bogus", "userId": "u"},
            "not an object",
            {"userId": "u", "event": "no type"},
            {"type": "identify", "anonymousId": "a"}
        ]}));
        let ok: Vec<bool> = d.messages.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, false, false, true]);
        assert!(d.messages[1].as_ref().unwrap_err().message.contains("bogus"));
    }

    #[test]
    fn batch_level_context_and_sent_at_apply() {
        let d = batch(
            json!({"sentAt": "2024-01-01T00:00:10Z", "context": {"ip": "9.9.9.9", "userAgent": "curl/8"},
            "batch": [{"type": "track", "userId": "u", "event": "E", "timestamp": "2024-01-01T00:00:00Z"}]}),
        );
        let m = d.messages[0].as_ref().unwrap();
        assert_eq!(m.ip.as_deref(), Some("9.9.9.9"));
        assert_eq!(m.user_agent.as_deref(), Some("curl/8"));
        assert_eq!(m.sent_at, Some(parse_iso8601("2024-01-01T00:00:10Z").unwrap()));
    }

    #[test]
    fn oversized_messages_are_rejected_by_index() {
        let big = "x".repeat(40 * 1024);
        let d = batch(
            json!({"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"big": big}},
            {"type": "track", "userId": "u", "event": "E"}]}),
        );
        assert_eq!(d.messages[0].as_ref().unwrap_err().reason, Reason::MessageTooLarge);
        assert!(d.messages[1].is_ok());
    }

    #[test]
    fn whole_request_errors() {
        let limits = Limits::default();
        let err = |body: &[u8]| decode(Endpoint::Batch, body, &limits).unwrap_err();
        assert!(matches!(err(b"{\"batch\": ["), DecodeError::MalformedJson(_)));
        assert!(matches!(err(b"\xff\xfe"), DecodeError::InvalidUtf8(0)));
        assert!(matches!(err(b"{\"batch\": {}}"), DecodeError::InvalidBatch(_)));
        assert!(matches!(err(b"{}"), DecodeError::InvalidBatch(_)));
        assert!(matches!(err(b"[]"), DecodeError::InvalidBatch(_)));
        let deep = format!("{{\"batch\": [{}{}]}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(err(deep.as_bytes()), DecodeError::NestingTooDeep);
        let huge = vec![b' '; limits.max_request_bytes + 1];
        assert!(matches!(err(&huge), DecodeError::RequestTooLarge { .. }));
        assert!(matches!(
            decode(Endpoint::Single(EventType::Track), b"[1]", &limits).unwrap_err(),
            DecodeError::InvalidBatch(_)
        ));
    }

    #[test]
    fn gzip_is_bounded() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let limits = Limits { max_request_bytes: 1000, max_message_bytes: 500 };
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&vec![b' '; 10_000]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1000);
        assert!(matches!(decompress(&bomb, Some("gzip"), &limits), Err(DecodeError::RequestTooLarge { .. })));
        assert!(matches!(decompress(b"not gzip", Some("gzip"), &limits), Err(DecodeError::InvalidGzip(_))));
        assert!(matches!(decompress(b"x", Some("br"), &limits), Err(DecodeError::UnsupportedEncoding(_))));
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(b"{\"batch\": []}").unwrap();
        assert_eq!(&*decompress(&enc.finish().unwrap(), Some("gzip"), &limits).unwrap(), b"{\"batch\": []}");
    }

    #[test]
    fn single_endpoint_reads_the_body_write_key() {
        let d = decode(
            Endpoint::Single(EventType::Track),
            br#"{"writeKey":"wk_x","userId":"u","event":"E"}"#,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(d.write_key.as_deref(), Some("wk_x"));
    }

    /// A cheap, deterministic stand-in for the fuzz target (fuzz/): mutated real bodies never
    /// make the decoder panic, and whatever it accepts upholds the drafts' invariants.
    #[test]
    fn mutated_bodies_never_panic() {
        use rand::{Rng, SeedableRng};
        let seeds: Vec<Vec<u8>> = ["node_segment.jsonl", "py_segment.jsonl", "py_segment_batch.jsonl"]
            .iter()
            .flat_map(|name| {
                let path =
                    format!("{}/../../../shared/fixtures/segment-clients/{name}", env!("CARGO_MANIFEST_DIR"));
                std::fs::read_to_string(path)
                    .unwrap()
                    .lines()
                    .map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        v["body"].to_string().into_bytes()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
        let limits = Limits { max_request_bytes: 64 * 1024, max_message_bytes: 2048 };
        let tokens: &[&[u8]] =
            &[b"{", b"}", b"[", b"]", b"\"", b"\\", b"\\u0000", b":", b",", b"null", b"1e999", b"\xff"];
        for _ in 0..20_000 {
            let mut body = seeds[rng.random_range(0..seeds.len())].clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..=body.len());
                match rng.random_range(0..3) {
                    0 if at < body.len() => {
                        body.remove(at);
                    }
                    1 => body
                        .splice(at..at, tokens[rng.random_range(0..tokens.len())].iter().copied())
                        .for_each(drop),
                    _ if at < body.len() => body[at] = rng.random(),
                    _ => {}
                }
            }
            let endpoint =
                if rng.random_bool(0.5) { Endpoint::Batch } else { Endpoint::Single(EventType::Track) };
            if let Ok(request) = decode(endpoint, &body, &limits) {
                for draft in request.messages.into_iter().flatten() {
                    assert!(draft.raw.len() <= limits.max_message_bytes);
                    assert!(serde_json::from_str::<serde_json::Value>(&draft.raw).unwrap().is_object());
                    assert!(draft.user_id.is_some() || draft.anonymous_id.is_some());
                }
            }
        }
    }
}
