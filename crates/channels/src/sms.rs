//! SMS through the Twilio Messages API.
//!
//! A send is one form-encoded POST to `/2010-04-01/Accounts/{AccountSid}/Messages.json` with
//! HTTP Basic auth (the account SID and auth token, or an API key SID and secret). The message id
//! goes out as `I-Twilio-Idempotency-Token`, so Twilio drops a repeat of the same message and a
//! send whose outcome was lost may be repeated. Delivery outcomes come back later as status
//! callbacks, form-encoded POSTs signed with `X-Twilio-Signature`: [`verify_signature`] checks
//! one and [`parse_status_callback`] reads it into a [`StatusEvent`].

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::http;
use crate::{
    CallbackError, Channel, ConfigError, DeliveryStatus, FailureKind, Message, Provider, Receipt, Recipient,
    SendError, StatusEvent,
};

/// Twilio's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// The header Twilio signs status callbacks with.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Twilio error codes that mean the number cannot get this SMS from anyone: 21211 invalid `To`,
/// 21614 not a mobile number, 21610 the recipient replied STOP.
const RECIPIENT_ERRORS: [&str; 3] = ["21211", "21614", "21610"];

/// Delivery error codes in a status callback that mean the number is gone rather than the
/// attempt unlucky: 30003 unreachable handset, 30005 unknown destination, 30006 landline or
/// unreachable carrier.
const BOUNCE_ERRORS: [&str; 3] = ["30003", "30005", "30006"];

/// Twilio provider settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// Provider name, unique per workspace.
    #[serde(default = "default_name")]
    pub name: String,
    /// `AC…`, the account the messages are sent from.
    pub account_sid: String,
    /// The account's auth token: Basic auth password and the key of status callback signatures.
    #[serde(default)]
    pub auth_token: Option<String>,
    /// An API key (`SK…`) to authenticate with instead of the auth token.
    #[serde(default)]
    pub api_key_sid: Option<String>,
    #[serde(default)]
    pub api_key_secret: Option<String>,
    /// Sender number, E.164. Exactly one of `from` and `messaging_service_sid`.
    #[serde(default)]
    pub from: Option<String>,
    /// A messaging service (`MG…`) that picks the sender.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Where Twilio posts status callbacks for the messages sent.
    #[serde(default)]
    pub status_callback: Option<String>,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_name() -> String {
    "twilio".to_string()
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}

fn default_timeout_ms() -> u64 {
    http::DEFAULT_TIMEOUT.as_millis() as u64
}

impl TwilioConfig {
    /// A config with the auth token and a sender number, defaults elsewhere.
    pub fn new(account_sid: &str, auth_token: &str, from: &str) -> Self {
        TwilioConfig {
            name: default_name(),
            account_sid: account_sid.to_string(),
            auth_token: Some(auth_token.to_string()),
            api_key_sid: None,
            api_key_secret: None,
            from: Some(from.to_string()),
            messaging_service_sid: None,
            status_callback: None,
            base_url: default_base_url(),
            timeout_ms: default_timeout_ms(),
        }
    }

    /// Checks the values and makes the provider.
    pub fn build(&self) -> Result<Twilio, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("twilio.name", "must not be empty"));
        }
        check_sid("twilio.account_sid", &self.account_sid, "AC")?;
        let (user, password) = match (&self.auth_token, &self.api_key_sid, &self.api_key_secret) {
            (Some(token), None, None) => {
                if token.trim().is_empty() {
                    return Err(ConfigError::new("twilio.auth_token", "must not be empty"));
                }
                (self.account_sid.clone(), token.clone())
            }
            (_, Some(sid), Some(secret)) => {
                check_sid("twilio.api_key_sid", sid, "SK")?;
                if secret.trim().is_empty() {
                    return Err(ConfigError::new("twilio.api_key_secret", "must not be empty"));
                }
                (sid.clone(), secret.clone())
            }
            (_, Some(_), None) => {
                return Err(ConfigError::new("twilio.api_key_secret", "required with api_key_sid"));
            }
            (_, None, Some(_)) => {
                return Err(ConfigError::new("twilio.api_key_sid", "required with api_key_secret"));
            }
            (None, None, None) => {
                return Err(ConfigError::new(
                    "twilio.auth_token",
                    "set auth_token, or api_key_sid and api_key_secret",
                ));
            }
        };
        let sender = match (&self.from, &self.messaging_service_sid) {
            (Some(from), None) => {
                if !is_e164(from) {
                    return Err(ConfigError::new(
                        "twilio.from",
                        format!("not an E.164 number (+ and 2 to 15 digits): {from:?}"),
                    ));
                }
                ("From", from.clone())
            }
            (None, Some(sid)) => {
                check_sid("twilio.messaging_service_sid", sid, "MG")?;
                ("MessagingServiceSid", sid.clone())
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "twilio.from",
                    "set either from or messaging_service_sid, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new("twilio.from", "set from or messaging_service_sid"));
            }
        };
        let status_callback = match &self.status_callback {
            Some(url) => Some(absolute_url("twilio.status_callback", url)?),
            None => None,
        };
        let base = http::base_url("twilio.base_url", &self.base_url)?;
        if self.timeout_ms == 0 {
            return Err(ConfigError::new("twilio.timeout_ms", "must be positive"));
        }
        Ok(Twilio {
            name: self.name.clone(),
            client: http::client(Duration::from_millis(self.timeout_ms))?,
            messages_url: format!("{base}/2010-04-01/Accounts/{}/Messages.json", self.account_sid),
            user,
            password,
            sender,
            status_callback,
        })
    }
}

/// Twilio SIDs are a two-letter prefix and 32 hex digits.
fn check_sid(field: &str, value: &str, prefix: &str) -> Result<(), ConfigError> {
    let ok =
        value.len() == 34 && value.starts_with(prefix) && value[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(field, format!("not a {prefix} SID ({prefix} and 32 hex digits): {value:?}")))
    }
}

fn absolute_url(field: &str, value: &str) -> Result<String, ConfigError> {
    let parsed =
        url::Url::parse(value).map_err(|e| ConfigError::new(field, format!("not a URL ({e}): {value:?}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::new(field, format!("scheme must be http or https: {value:?}")));
    }
    Ok(value.to_string())
}

/// `+` then 2 to 15 digits, the first not zero.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else { return false };
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

/// Sends SMS through one Twilio account.
#[derive(Clone, Debug)]
pub struct Twilio {
    name: String,
    client: reqwest::Client,
    messages_url: String,
    user: String,
    password: String,
    /// The form field naming the sender and its value.
    sender: (&'static str, String),
    status_callback: Option<String>,
}

/// Twilio's error body.
#[derive(Debug, Deserialize)]
struct TwilioError {
    code: Option<u64>,
    message: Option<String>,
    more_info: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Created {
    sid: String,
}

#[async_trait::async_trait]
impl Provider for Twilio {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    fn deduplicates(&self) -> bool {
        true
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError> {
        let Recipient::Phone { number } = &message.recipient else {
            return Err(SendError::new(
                FailureKind::Provider,
                "unsupported_recipient",
                "twilio sends to phone numbers only",
            ));
        };
        if !is_e164(number) {
            return Err(SendError::new(
                FailureKind::Recipient,
                "invalid_number",
                format!("not an E.164 number: {number:?}"),
            ));
        }
        // The serializer is not Send, so it must not live across the await below.
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("To", number);
            form.append_pair(self.sender.0, &self.sender.1);
            form.append_pair("Body", &message.text);
            if let Some(callback) = &self.status_callback {
                form.append_pair("StatusCallback", callback);
            }
            form.finish()
        };
        let response = self
            .client
            .post(&self.messages_url)
            .basic_auth(&self.user, Some(&self.password))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("I-Twilio-Idempotency-Token", &message.id)
            .body(form)
            .send()
            .await
            .map_err(http::error_from_transport)?;
        let status = response.status();
        if status.is_success() {
            let body = response.text().await.map_err(http::error_from_transport)?;
            let created: Created = serde_json::from_str(&body).map_err(|e| {
                SendError::new(
                    FailureKind::Transient,
                    status.as_u16().to_string(),
                    format!(
                        "twilio answered {status} without a message sid ({e}): {}",
                        http::clip(&body, 200)
                    ),
                )
            })?;
            return Ok(Receipt { provider_message_id: Some(created.sid) });
        }
        Err(twilio_error(response).await)
    }
}

/// Reads a Twilio error response: the status decides unless Twilio's code says the recipient
/// is at fault or we are throttled.
async fn twilio_error(response: reqwest::Response) -> SendError {
    let mut error = http::error_from_response(response).await;
    let http_status = error.code.clone();
    let Ok(body) = serde_json::from_str::<TwilioError>(&error.message) else { return error };
    let Some(code) = body.code.map(|c| c.to_string()) else { return error };
    if RECIPIENT_ERRORS.contains(&code.as_str()) {
        error.kind = FailureKind::Recipient;
    } else if code == "20429" {
        error.kind = FailureKind::RateLimited;
    }
    let mut text = body.message.unwrap_or_default();
    if let Some(info) = body.more_info {
        text = format!("{text} ({info})");
    }
    error.message = format!("http {http_status}: {text}");
    error.code = code;
    error
}

/// The `X-Twilio-Signature` Twilio would send: base64 of HMAC-SHA1, keyed with the auth token,
/// over the full callback URL followed by every POST parameter's name and value, in name order.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    STANDARD.encode(ring::hmac::sign(&key, signed_text(url, params).as_bytes()).as_ref())
}

fn signed_text(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Repeated names (array parameters) are ordered by value too, as Twilio's own helpers do.
    sorted.sort();
    let mut text = url.to_string();
    for (name, value) in sorted {
        text.push_str(name);
        text.push_str(value);
    }
    text
}

/// Checks a status callback's `X-Twilio-Signature` against the URL Twilio called (exactly as
/// configured, query included) and the decoded form parameters.
pub fn verify_signature(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), CallbackError> {
    let header = header.ok_or(CallbackError::MissingSignature(SIGNATURE_HEADER))?;
    let tag = STANDARD.decode(header.trim()).map_err(|_| CallbackError::BadSignature)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    // hmac::verify compares in constant time.
    ring::hmac::verify(&key, signed_text(url, params).as_bytes(), &tag)
        .map_err(|_| CallbackError::BadSignature)
}

/// Reads a status callback. Intermediate statuses (`queued`, `sending`, `sent`, …) give `None`:
/// only outcomes become events.
pub fn parse_status_callback(params: &[(String, String)]) -> Result<Option<StatusEvent>, CallbackError> {
    let get = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let status = get("MessageStatus").ok_or_else(|| CallbackError::Malformed("no MessageStatus".into()))?;
    let sid = get("MessageSid")
        .or_else(|| get("SmsSid"))
        .ok_or_else(|| CallbackError::Malformed("no MessageSid".into()))?;
    let error_code = get("ErrorCode").filter(|c| !c.is_empty());
    let status = match status {
        "delivered" => DeliveryStatus::Delivered,
        "read" => DeliveryStatus::Opened,
        "undelivered" | "failed" => match error_code {
            Some(code) if BOUNCE_ERRORS.contains(&code) => DeliveryStatus::Bounced,
            Some("21610") => DeliveryStatus::Unsubscribed,
            _ => DeliveryStatus::Failed,
        },
        _ => return Ok(None),
    };
    let mut detail = BTreeMap::new();
    if let Some(code) = error_code {
        detail.insert("error_code".to_string(), code.to_string());
    }
    if let Some(raw) = get("MessageStatus") {
        detail.insert("message_status".to_string(), raw.to_string());
    }
    Ok(Some(StatusEvent {
        message_id: None,
        provider_message_id: Some(sid.to_string()),
        status,
        at: chrono::Utc::now().timestamp_millis(),
        detail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// The worked example of Twilio's webhook security documentation: auth token `12345`, this
    /// URL and these parameters give this signature. Two versions of the example are published
    /// (the caller number differs); both must come out.
    #[test]
    fn signature_matches_twilios_documented_examples() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let docs = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(signature("12345", url, &docs), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        let sdk = pairs(&[
            ("To", "+18005551212"),
            ("From", "+14158675309"),
            ("Digits", "1234"),
            ("Caller", "+14158675309"),
            ("CallSid", "CA1234567890ABCDE"),
        ]);
        assert_eq!(signature("12345", url, &sdk), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        assert_eq!(verify_signature("12345", url, &sdk, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")), Ok(()));
    }

    #[test]
    fn tampered_or_missing_signatures_are_refused() {
        let url = "https://example.com/twilio/status";
        let params = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
        let good = signature("tok", url, &params);
        assert_eq!(verify_signature("tok", url, &params, Some(&good)), Ok(()));
        let changed = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "failed")]);
        assert_eq!(verify_signature("tok", url, &changed, Some(&good)), Err(CallbackError::BadSignature));
        assert_eq!(verify_signature("other", url, &params, Some(&good)), Err(CallbackError::BadSignature));
        assert_eq!(
            verify_signature("tok", "https://example.com/other", &params, Some(&good)),
            Err(CallbackError::BadSignature)
        );
        assert_eq!(verify_signature("tok", url, &params, Some("%%%")), Err(CallbackError::BadSignature));
        assert_eq!(
            verify_signature("tok", url, &params, None),
            Err(CallbackError::MissingSignature(SIGNATURE_HEADER))
        );
    }

    #[test]
    fn status_callbacks_become_events() {
        let read = |list: &[(&str, &str)]| parse_status_callback(&pairs(list)).unwrap();
        let delivered = read(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]).unwrap();
        assert_eq!(delivered.status, DeliveryStatus::Delivered);
        assert_eq!(delivered.provider_message_id.as_deref(), Some("SM1"));
        assert_eq!(
            read(&[("MessageSid", "SM1"), ("MessageStatus", "read")]).unwrap().status,
            DeliveryStatus::Opened
        );
        let gone =
            read(&[("MessageSid", "SM1"), ("MessageStatus", "undelivered"), ("ErrorCode", "30005")]).unwrap();
        assert_eq!(gone.status, DeliveryStatus::Bounced);
        assert_eq!(gone.detail["error_code"], "30005");
        let failed =
            read(&[("MessageSid", "SM1"), ("MessageStatus", "failed"), ("ErrorCode", "30008")]).unwrap();
        assert_eq!(failed.status, DeliveryStatus::Failed);
        assert_eq!(read(&[("MessageSid", "SM1"), ("MessageStatus", "sent")]), None);
        assert_eq!(read(&[("MessageSid", "SM1"), ("MessageStatus", "queued")]), None);
        assert!(matches!(
            parse_status_callback(&pairs(&[("MessageSid", "SM1")])),
            Err(CallbackError::Malformed(_))
        ));
    }

    #[test]
    fn config_names_the_bad_field() {
        let sid = "AC0123456789abcdef0123456789abcdef";
        assert!(TwilioConfig::new(sid, "tok", "+4915112345678").build().is_ok());
        let field = |config: TwilioConfig| config.build().unwrap_err().field;
        assert_eq!(field(TwilioConfig::new(sid, "tok", "015112345678")), "twilio.from");
        assert_eq!(field(TwilioConfig::new("AC1", "tok", "+4915112345678")), "twilio.account_sid");
        let mut both = TwilioConfig::new(sid, "tok", "+4915112345678");
        both.messaging_service_sid = Some("MG0123456789abcdef0123456789abcdef".into());
        assert_eq!(field(both), "twilio.from");
        let mut no_auth = TwilioConfig::new(sid, "tok", "+4915112345678");
        no_auth.auth_token = None;
        assert_eq!(field(no_auth), "twilio.auth_token");
        let mut half_key = TwilioConfig::new(sid, "tok", "+4915112345678");
        half_key.api_key_sid = Some("SK0123456789abcdef0123456789abcdef".into());
        assert_eq!(field(half_key), "twilio.api_key_secret");
        let mut callback = TwilioConfig::new(sid, "tok", "+4915112345678");
        callback.status_callback = Some("not a url".into());
        assert_eq!(field(callback), "twilio.status_callback");
        let unknown = serde_json::from_str::<TwilioConfig>(
            r#"{"account_sid":"AC0123456789abcdef0123456789abcdef","auth_token":"t","from":"+15005550006","sender":"x"}"#,
        );
        assert!(unknown.is_err());
    }

    #[test]
    fn e164_numbers() {
        assert!(is_e164("+4915112345678"));
        assert!(!is_e164("4915112345678"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("+1"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+49 151"));
    }
}
