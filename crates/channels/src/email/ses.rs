//! Amazon SES v2 `SendEmail`, signed with SigV4 ([`super::sigv4`]).
//!
//! The message goes as `Content.Raw`: the same MIME the SMTP provider sends
//! ([`super::mime`]), so `List-Unsubscribe` and every other extra header reach the inbox
//! exactly as built, which `Content.Simple` headers cannot promise for every header name.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::email::mime::Sender;
use crate::email::sigv4::{self, Request, Signer};
use crate::email::{default_timeout_ms, required, sender, timeout};
use crate::http::{base_url, classify_status, client, clip, error_from_transport, parse_retry_after};
use crate::{Channel, ConfigError, FailureKind, Message, Provider, Receipt, SendError};

/// The SendEmail path below the endpoint.
pub const SEND_PATH: &str = "/v2/email/outbound-emails";

/// An SES account in one region.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SesConfig {
    #[serde(default = "default_name")]
    pub name: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// For temporary credentials (STS).
    #[serde(default)]
    pub session_token: Option<String>,
    /// Defaults to `https://email.{region}.amazonaws.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    pub from: String,
    #[serde(default)]
    pub from_name: Option<String>,
    #[serde(default)]
    pub configuration_set: Option<String>,
    /// The right side of `Message-ID`s; defaults to the domain of `from`.
    #[serde(default)]
    pub message_id_domain: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_name() -> String {
    "ses".into()
}

impl SesConfig {
    pub fn new(
        region: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        from: impl Into<String>,
    ) -> SesConfig {
        SesConfig {
            name: default_name(),
            region: region.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            base_url: None,
            from: from.into(),
            from_name: None,
            configuration_set: None,
            message_id_domain: None,
            timeout_ms: default_timeout_ms(),
        }
    }

    pub fn build(&self) -> Result<SesProvider, ConfigError> {
        required("ses.name", &self.name)?;
        let region = self.region.trim();
        if region.is_empty()
            || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || region.starts_with('-')
            || region.ends_with('-')
        {
            return Err(ConfigError::new("ses.region", format!("not an AWS region: {:?}", self.region)));
        }
        let visible = |field: &str, value: &str| {
            required(field, value)?;
            if value.trim().bytes().all(|b| b.is_ascii_graphic()) {
                Ok(value.trim().to_owned())
            } else {
                Err(ConfigError::new(field, "must be printable ASCII without spaces"))
            }
        };
        let access_key_id = visible("ses.access_key_id", &self.access_key_id)?;
        let secret_access_key = visible("ses.secret_access_key", &self.secret_access_key)?;
        let session_token = match &self.session_token {
            Some(token) => Some(visible("ses.session_token", token)?),
            None => None,
        };
        if let Some(set) = &self.configuration_set {
            required("ses.configuration_set", set)?;
        }
        let base = match &self.base_url {
            Some(url) => base_url("ses.base_url", url)?,
            None => format!("https://email.{region}.amazonaws.com"),
        };
        let url = url::Url::parse(&format!("{base}{SEND_PATH}"))
            .map_err(|e| ConfigError::new("ses.base_url", format!("not a URL: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(ConfigError::new("ses.base_url", "has no host")),
        };
        let timeout = timeout("ses.timeout_ms", self.timeout_ms)?;
        let from = sender("ses", &self.from, self.from_name.as_deref())?;
        Ok(SesProvider {
            name: self.name.clone(),
            path: url.path().to_owned(),
            url: url.to_string(),
            host,
            region: region.to_owned(),
            access_key_id,
            secret_access_key,
            session_token,
            configuration_set: self.configuration_set.clone(),
            sender: Sender::new(from, self.message_id_domain.as_deref(), "ses.message_id_domain")?,
            client: client(timeout)?,
        })
    }
}

/// Sends email through Amazon SES v2.
pub struct SesProvider {
    name: String,
    url: String,
    /// The request path as signed (the base URL's own path included).
    path: String,
    /// The `Host` header as the HTTP client will send it, which the signature covers.
    host: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    configuration_set: Option<String>,
    sender: Sender,
    client: reqwest::Client,
}

impl std::fmt::Debug for SesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesProvider")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Tags allow letters, digits, `_` and `-` only; an id outside that is left untagged rather
/// than refused, since the Message-ID still carries it.
fn taggable(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl SesProvider {
    /// The SendEmail body for one message.
    pub fn body(&self, message: &Message) -> Result<Value, SendError> {
        let mime = self.sender.build(message)?;
        let to: Vec<String> = mime.envelope.to().iter().map(ToString::to_string).collect();
        let mut body = json!({
            "FromEmailAddress": self.sender.from().email.to_string(),
            "Destination": {"ToAddresses": to},
            "Content": {"Raw": {"Data": STANDARD.encode(&mime.bytes)}},
        });
        if let Some(set) = &self.configuration_set {
            body["ConfigurationSetName"] = Value::String(set.clone());
        }
        if taggable(&message.id) {
            body["EmailTags"] = json!([{"Name": "whisperer_message_id", "Value": message.id}]);
        }
        Ok(body)
    }
}

#[async_trait::async_trait]
impl Provider for SesProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError> {
        let payload = serde_json::to_vec(&self.body(message)?)
            .map_err(|e| SendError::new(FailureKind::Provider, "invalid_message", e.to_string()))?;
        let amz_date = sigv4::amz_date(chrono::Utc::now());
        let mut headers = vec![
            ("content-type", "application/json"),
            ("host", self.host.as_str()),
            ("x-amz-date", amz_date.as_str()),
        ];
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token", token.as_str()));
        }
        let signer = Signer {
            access_key_id: &self.access_key_id,
            secret_access_key: &self.secret_access_key,
            region: &self.region,
            service: "ses",
        };
        let request =
            Request { method: "POST", path: &self.path, query: "", headers: &headers, payload: &payload };
        let signature = signer.sign(&request, &amz_date);
        let mut builder = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header("x-amz-date", &amz_date)
            .header("authorization", signature.authorization);
        if let Some(token) = &self.session_token {
            builder = builder.header("x-amz-security-token", token);
        }
        let response = builder.body(payload).send().await.map_err(error_from_transport)?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            let body: Value = response.json().await.map_err(|e| {
                // Accepted but unreadable: the message may be on its way, so this is not
                // worth a second send on another provider.
                SendError::new(
                    FailureKind::Transient,
                    "bad_response",
                    format!("unreadable SendEmail answer: {e}"),
                )
            })?;
            return Ok(Receipt { provider_message_id: body["MessageId"].as_str().map(str::to_owned) });
        }
        let header_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(':').next().unwrap_or(v).to_owned());
        let retry_after_ms = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            .map(|d| d.as_millis() as u64);
        let text = response.text().await.unwrap_or_default();
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let body_type = parsed["__type"].as_str().map(|t| t.rsplit('#').next().unwrap_or(t).to_owned());
        let error_type = header_type.or(body_type).filter(|t| !t.is_empty());
        let message = parsed["message"]
            .as_str()
            .or_else(|| parsed["Message"].as_str())
            .map(|m| clip(m, 500))
            .unwrap_or_else(|| clip(&text, 500));
        Err(SendError {
            kind: classify(status, error_type.as_deref()),
            code: error_type.unwrap_or_else(|| status.to_string()),
            message,
            retry_after_ms,
        })
    }
}

/// An SES error's kind: throttling by name or status, refusals that another provider may not
/// share by name, else by status.
pub fn classify(status: u16, error_type: Option<&str>) -> FailureKind {
    match error_type {
        Some("TooManyRequestsException" | "ThrottlingException" | "Throttling") => FailureKind::RateLimited,
        Some(
            "MessageRejected"
            | "AccountSuspendedException"
            | "MailFromDomainNotVerifiedException"
            | "SendingPausedException"
            | "NotFoundException"
            | "BadRequestException"
            | "LimitExceededException",
        ) => FailureKind::Provider,
        _ => classify_status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SesConfig {
        SesConfig::new("eu-west-1", "AKIDEXAMPLE", "secret", "news@shop.example")
    }

    #[test]
    fn config_is_checked_and_names_the_field() {
        let field = |c: SesConfig| c.build().err().map(|e| e.field);
        assert_eq!(field(config()), None);
        assert_eq!(field(SesConfig { region: "EU West".into(), ..config() }), Some("ses.region".into()));
        assert_eq!(field(SesConfig { region: "".into(), ..config() }), Some("ses.region".into()));
        assert_eq!(
            field(SesConfig { access_key_id: "".into(), ..config() }),
            Some("ses.access_key_id".into())
        );
        assert_eq!(
            field(SesConfig { secret_access_key: "a b".into(), ..config() }),
            Some("ses.secret_access_key".into())
        );
        assert_eq!(
            field(SesConfig { base_url: Some("nope".into()), ..config() }),
            Some("ses.base_url".into())
        );
        assert_eq!(field(SesConfig { from: "nope".into(), ..config() }), Some("ses.from".into()));
        let provider = config().build().unwrap();
        assert_eq!(provider.url, "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails");
        assert_eq!(provider.host, "email.eu-west-1.amazonaws.com");
    }

    #[test]
    fn error_types_decide_the_kind() {
        assert_eq!(classify(429, None), FailureKind::RateLimited);
        assert_eq!(classify(400, Some("TooManyRequestsException")), FailureKind::RateLimited);
        assert_eq!(classify(400, Some("MessageRejected")), FailureKind::Provider);
        assert_eq!(classify(400, Some("AccountSuspendedException")), FailureKind::Provider);
        assert_eq!(classify(400, Some("MailFromDomainNotVerifiedException")), FailureKind::Provider);
        assert_eq!(classify(500, Some("InternalFailure")), FailureKind::Transient);
        assert_eq!(classify(503, None), FailureKind::Transient);
    }
}
