//! Firebase Cloud Messaging, HTTP v1 API.
//!
//! Authentication is Google's OAuth 2.0 service-account flow: a JWT signed RS256 with the
//! service account's key is exchanged at the key's `token_uri` for an access token, which is
//! kept until shortly before it expires and renewed once when FCM answers 401 (a token revoked
//! or rotated early). A send is one POST of `{"message": {...}}` to
//! `/v1/projects/{project_id}/messages:send`; FCM's errors are `google.rpc.Status` bodies whose
//! `FcmError` detail names what went wrong (`UNREGISTERED`, `QUOTA_EXCEEDED`, …).

use std::sync::Arc;
use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::{b64url, jwt_signing_input, pem_body};
use crate::http;
use crate::{Channel, ConfigError, FailureKind, Message, Provider, Receipt, Recipient, SendError};

pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";

/// The OAuth scope that allows sending FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// An access token is renewed this long before Google says it expires, so a request never
/// carries one that lapses in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);

/// FCM provider settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    #[serde(default = "default_name")]
    pub name: String,
    /// The service account key: the JSON key file's content, or the path of the file.
    pub service_account: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_name() -> String {
    "fcm".to_string()
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}

fn default_timeout_ms() -> u64 {
    http::DEFAULT_TIMEOUT.as_millis() as u64
}

/// The fields of a Google service account key file that the flow uses. The file has more
/// (`private_key_id`, `client_id`, `auth_uri`, …): Google's format, so unknown fields are let by.
#[derive(Clone, Debug, Deserialize)]
pub struct ServiceAccountKey {
    pub project_id: String,
    pub client_email: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key: String,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    DEFAULT_TOKEN_URI.to_string()
}

impl FcmConfig {
    pub fn new(service_account: impl Into<String>) -> Self {
        FcmConfig {
            name: default_name(),
            service_account: service_account.into(),
            base_url: default_base_url(),
            timeout_ms: default_timeout_ms(),
        }
    }

    /// Reads and checks the service account key and makes the provider.
    pub fn build(&self) -> Result<Fcm, ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("fcm.name", "must not be empty"));
        }
        let text = if self.service_account.trim_start().starts_with('{') {
            self.service_account.clone()
        } else {
            std::fs::read_to_string(&self.service_account).map_err(|e| {
                ConfigError::new(
                    "fcm.service_account",
                    format!("cannot read {:?}: {e}", self.service_account),
                )
            })?
        };
        let key: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
            ConfigError::new("fcm.service_account", format!("not a service account key file: {e}"))
        })?;
        if key.project_id.trim().is_empty() || key.project_id.contains('/') {
            return Err(ConfigError::new("fcm.service_account.project_id", "must be a project id"));
        }
        if !key.client_email.contains('@') {
            return Err(ConfigError::new(
                "fcm.service_account.client_email",
                format!("not an email address: {:?}", key.client_email),
            ));
        }
        let token_uri = url::Url::parse(&key.token_uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                ConfigError::new(
                    "fcm.service_account.token_uri",
                    format!("not an http(s) URL: {:?}", key.token_uri),
                )
            })?;
        let der = pem_body(&key.private_key, "PRIVATE KEY").ok_or_else(|| {
            ConfigError::new("fcm.service_account.private_key", "not a PKCS#8 PEM (BEGIN PRIVATE KEY) block")
        })?;
        let signer = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
            ConfigError::new("fcm.service_account.private_key", format!("not a usable RSA key: {e}"))
        })?;
        let base = http::base_url("fcm.base_url", &self.base_url)?;
        if self.timeout_ms == 0 {
            return Err(ConfigError::new("fcm.timeout_ms", "must be positive"));
        }
        Ok(Fcm {
            name: self.name.clone(),
            client: http::client(Duration::from_millis(self.timeout_ms))?,
            send_url: format!("{base}/v1/projects/{}/messages:send", key.project_id),
            token_uri: token_uri.to_string(),
            client_email: key.client_email,
            signer: Arc::new(signer),
            rng: SystemRandom::new(),
            token: Arc::new(Mutex::new(None)),
        })
    }
}

/// Sends push notifications to FCM registration tokens of one Firebase project.
#[derive(Clone)]
pub struct Fcm {
    name: String,
    client: reqwest::Client,
    send_url: String,
    token_uri: String,
    client_email: String,
    signer: Arc<RsaKeyPair>,
    rng: SystemRandom,
    /// The access token in use. The lock is held across a renewal so that concurrent sends
    /// wait for one token request instead of each making their own.
    token: Arc<Mutex<Option<AccessToken>>>,
}

impl std::fmt::Debug for Fcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fcm")
            .field("name", &self.name)
            .field("send_url", &self.send_url)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
struct AccessToken {
    value: String,
    renew_at: tokio::time::Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct SendResponse {
    name: String,
}

impl Fcm {
    /// The signed assertion of the JWT bearer grant (RFC 7523).
    fn assertion(&self) -> Result<String, SendError> {
        let iat = chrono::Utc::now().timestamp();
        let header = json!({"alg": "RS256", "typ": "JWT"});
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + 3600,
        });
        let input = jwt_signing_input(&header, &claims);
        let mut signature = vec![0; self.signer.public().modulus_len()];
        self.signer
            .sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut signature)
            .map_err(|_| SendError::new(FailureKind::Provider, "jwt", "cannot sign the oauth assertion"))?;
        Ok(format!("{input}.{}", b64url(&signature)))
    }

    /// A valid access token: the cached one, unless it is about to expire or is `rejected` (the
    /// one FCM just answered 401 to), in which case a new one is fetched.
    async fn access_token(&self, rejected: Option<&str>) -> Result<String, SendError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && tokio::time::Instant::now() < token.renew_at
            && rejected != Some(token.value.as_str())
        {
            return Ok(token.value.clone());
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &self.assertion()?)
            .finish();
        let response = self
            .client
            .post(&self.token_uri)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(http::error_from_transport)?;
        if !response.status().is_success() {
            let mut error = http::error_from_response(response).await;
            if let Ok(body) = serde_json::from_str::<OAuthError>(&error.message) {
                error.message = format!(
                    "oauth token request refused (http {}): {} {}",
                    error.code,
                    body.error,
                    body.error_description.unwrap_or_default()
                )
                .trim_end()
                .to_string();
                error.code = format!("oauth_{}", body.error);
            }
            return Err(error);
        }
        let body = response.text().await.map_err(http::error_from_transport)?;
        let token: TokenResponse = serde_json::from_str(&body).map_err(|e| {
            SendError::new(FailureKind::Transient, "oauth", format!("unreadable token response: {e}"))
        })?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        let renew_at = tokio::time::Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *cached = Some(AccessToken { value: token.access_token.clone(), renew_at });
        Ok(token.access_token)
    }

    fn body(message: &Message, token: &str) -> serde_json::Value {
        let mut notification = serde_json::Map::new();
        if let Some(title) = &message.subject {
            notification.insert("title".into(), title.clone().into());
        }
        notification.insert("body".into(), message.text.clone().into());
        let mut inner = json!({"token": token, "notification": notification});
        if !message.data.is_empty() {
            inner["data"] = json!(message.data);
        }
        json!({ "message": inner })
    }

    async fn post(
        &self,
        access_token: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, SendError> {
        self.client
            .post(&self.send_url)
            .bearer_auth(access_token)
            .json(body)
            .send()
            .await
            .map_err(http::error_from_transport)
    }
}

#[async_trait::async_trait]
impl Provider for Fcm {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        Channel::Push
    }

    async fn send(&self, message: &Message) -> Result<Receipt, SendError> {
        let Recipient::PushToken { token } = &message.recipient else {
            return Err(SendError::new(
                FailureKind::Provider,
                "unsupported_recipient",
                "fcm sends to registration tokens only",
            ));
        };
        let body = Self::body(message, token);
        let access_token = self.access_token(None).await?;
        let mut response = self.post(&access_token, &body).await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            tracing::debug!(provider = %self.name, "fcm refused the access token, renewing it once");
            let renewed = self.access_token(Some(&access_token)).await?;
            response = self.post(&renewed, &body).await?;
        }
        if response.status().is_success() {
            let status = response.status();
            let text = response.text().await.map_err(http::error_from_transport)?;
            let sent: SendResponse = serde_json::from_str(&text).map_err(|e| {
                SendError::new(
                    FailureKind::Transient,
                    status.as_u16().to_string(),
                    format!("fcm answered {status} without a message name ({e})"),
                )
            })?;
            return Ok(Receipt { provider_message_id: Some(sent.name) });
        }
        Err(fcm_error(http::error_from_response(response).await))
    }
}

/// `google.rpc.Status`, as FCM returns it.
#[derive(Deserialize)]
struct ErrorBody {
    error: Status,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// Reads an FCM error body into the failure kind: the `FcmError` detail's code decides, then
/// the status name, then the HTTP status (already in `error`).
fn fcm_error(mut error: SendError) -> SendError {
    let Ok(body) = serde_json::from_str::<ErrorBody>(&error.message) else { return error };
    let status = body.error;
    let detail_of = |kind: &'static str| status.details.iter().filter(move |d| d["@type"] == kind);
    let fcm_code = detail_of(FCM_ERROR_TYPE).find_map(|d| d["errorCode"].as_str().map(str::to_string));
    // An invalid token is reported as INVALID_ARGUMENT with a field violation on
    // `message.token`; INVALID_ARGUMENT about anything else is our malformed request.
    let token_at_fault = detail_of(BAD_REQUEST_TYPE).any(|d| {
        d["fieldViolations"]
            .as_array()
            .is_some_and(|v| v.iter().any(|f| f["field"].as_str().is_some_and(|f| f == "message.token")))
    }) || status.message.to_ascii_lowercase().contains("registration token");
    let code = fcm_code.or(status.status).unwrap_or_else(|| error.code.clone());
    let kind = match code.as_str() {
        "UNREGISTERED" => Some(FailureKind::Recipient),
        "INVALID_ARGUMENT" if token_at_fault => Some(FailureKind::Recipient),
        "INVALID_ARGUMENT" => Some(FailureKind::Provider),
        "QUOTA_EXCEEDED" | "RESOURCE_EXHAUSTED" => Some(FailureKind::RateLimited),
        "UNAVAILABLE" | "INTERNAL" => Some(FailureKind::Transient),
        "SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR" | "PERMISSION_DENIED" => Some(FailureKind::Provider),
        _ => None,
    };
    if let Some(kind) = kind {
        error.kind = kind;
    }
    error.message = format!("http {}: {}", error.code, status.message);
    error.code = code;
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, body: &str) -> SendError {
        fcm_error(SendError {
            kind: http::classify_status(status),
            code: status.to_string(),
            message: body.to_string(),
            retry_after_ms: None,
        })
    }

    fn fcm_body(status: &str, code: &str) -> String {
        json!({"error": {"code": 400, "message": "m", "status": status,
            "details": [{"@type": FCM_ERROR_TYPE, "errorCode": code}]}})
        .to_string()
    }

    #[test]
    fn fcm_error_codes_decide_what_happens_next() {
        let gone = error(404, &fcm_body("NOT_FOUND", "UNREGISTERED"));
        assert_eq!((gone.kind, gone.code.as_str()), (FailureKind::Recipient, "UNREGISTERED"));
        assert_eq!(
            error(429, &fcm_body("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")).kind,
            FailureKind::RateLimited
        );
        assert_eq!(error(503, &fcm_body("UNAVAILABLE", "UNAVAILABLE")).kind, FailureKind::Transient);
        assert_eq!(error(500, &fcm_body("INTERNAL", "INTERNAL")).kind, FailureKind::Transient);
        assert_eq!(
            error(403, &fcm_body("PERMISSION_DENIED", "SENDER_ID_MISMATCH")).kind,
            FailureKind::Provider
        );
        assert_eq!(
            error(401, &fcm_body("UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")).kind,
            FailureKind::Provider
        );
        let bad_token = json!({"error": {"code": 400, "message": "The registration token is not a valid FCM registration token",
            "status": "INVALID_ARGUMENT", "details": [
                {"@type": FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT"},
                {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}]}});
        assert_eq!(error(400, &bad_token.to_string()).kind, FailureKind::Recipient);
        let bad_data = json!({"error": {"code": 400, "message": "Invalid value at 'message.data[0].value'",
            "status": "INVALID_ARGUMENT", "details": [{"@type": FCM_ERROR_TYPE, "errorCode": "INVALID_ARGUMENT"}]}});
        assert_eq!(error(400, &bad_data.to_string()).kind, FailureKind::Provider);
        // Without a readable body the HTTP status decides.
        assert_eq!(error(502, "<html>bad gateway</html>").kind, FailureKind::Transient);
        assert_eq!(error(403, "{}").kind, FailureKind::Provider);
    }

    #[test]
    fn config_names_the_bad_field() {
        let field = |json: serde_json::Value| FcmConfig::new(json.to_string()).build().unwrap_err().field;
        let key = |private_key: &str| {
            json!({"type": "service_account", "project_id": "p", "client_email": "a@p.iam.gserviceaccount.com",
                "private_key": private_key, "token_uri": "https://oauth2.googleapis.com/token"})
        };
        assert_eq!(field(key("nope")), "fcm.service_account.private_key");
        assert_eq!(
            field(key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")),
            "fcm.service_account.private_key"
        );
        assert_eq!(field(json!({"project_id": "p"})), "fcm.service_account");
        let missing = FcmConfig::new("/nonexistent/key.json").build().unwrap_err();
        assert_eq!(missing.field, "fcm.service_account");
        assert!(serde_json::from_str::<FcmConfig>(r#"{"service_account":"k.json","project":"x"}"#).is_err());
    }
}
