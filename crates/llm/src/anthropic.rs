//! Anthropic Messages (`POST {base_url}/v1/messages`, `x-api-key`, `anthropic-version`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ConfigError, FailureKind, ProviderError};
use crate::http::{self, ConnectionFields, Endpoint, EnvLookup, Pricing, RetryPolicy};
use crate::openai::defaults;
use crate::provider::{Completion, CompletionRequest, Provider, Usage};

/// The official endpoint; `/v1/messages` is appended.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// The API version this client speaks, sent on every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const PREFIX: &str = "llm.anthropic";

/// `[llm.anthropic]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Name of the environment variable holding the key, read at build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    #[serde(default = "defaults::backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    #[serde(default)]
    pub usd_per_1k_input_tokens: f64,
    #[serde(default)]
    pub usd_per_1k_output_tokens: f64,
}

fn default_base_url() -> String {
    ANTHROPIC_BASE_URL.to_string()
}

impl std::fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("backoff_base_ms", &self.backoff_base_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("usd_per_1k_input_tokens", &self.usd_per_1k_input_tokens)
            .field("usd_per_1k_output_tokens", &self.usd_per_1k_output_tokens)
            .finish()
    }
}

impl AnthropicConfig {
    /// A config for `model` at the official endpoint with defaults elsewhere.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            base_url: default_base_url(),
            model: model.into(),
            api_key: None,
            api_key_env: None,
            timeout_ms: defaults::timeout_ms(),
            max_retries: defaults::max_retries(),
            backoff_base_ms: defaults::backoff_base_ms(),
            backoff_max_ms: defaults::backoff_max_ms(),
            usd_per_1k_input_tokens: 0.0,
            usd_per_1k_output_tokens: 0.0,
        }
    }

    /// Validates and builds the provider, reading `api_key_env` from the process environment.
    pub fn build(&self) -> Result<Anthropic, ConfigError> {
        self.build_with_env(&http::process_env)
    }

    /// [`build`](Self::build) with the environment given.
    pub fn build_with_env(&self, env: EnvLookup<'_>) -> Result<Anthropic, ConfigError> {
        let fields = ConnectionFields {
            base_url: &self.base_url,
            model: &self.model,
            api_key: self.api_key.as_deref(),
            api_key_env: self.api_key_env.as_deref(),
            timeout_ms: self.timeout_ms,
            max_retries: self.max_retries,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
            usd_per_1k_input_tokens: self.usd_per_1k_input_tokens,
            usd_per_1k_output_tokens: self.usd_per_1k_output_tokens,
        };
        Ok(Anthropic { endpoint: Endpoint::build(PREFIX, ANTHROPIC_BASE_URL, "/v1/messages", fields, env)? })
    }
}

/// A Messages API client for one model.
pub struct Anthropic {
    endpoint: Endpoint,
}

impl std::fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anthropic")
            .field("url", &self.endpoint.url)
            .field("model", &self.endpoint.model)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct MessageResponse {
    #[serde(default)]
    model: Option<String>,
    content: Vec<ContentBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    usage: MessageUsage,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct MessageUsage {
    input_tokens: u64,
    output_tokens: u64,
}

impl Anthropic {
    fn body(&self, request: &CompletionRequest) -> Value {
        let mut body = json!({
            "model": self.endpoint.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": request.user}],
            "temperature": request.temperature,
        });
        if !request.system.is_empty() {
            body["system"] = json!(request.system);
        }
        body
    }

    fn parse_success(&self, text: &str) -> Result<Completion, ProviderError> {
        let answer: MessageResponse = serde_json::from_str(text).map_err(|e| {
            ProviderError::new(
                FailureKind::InvalidResponse,
                format!("not a message ({e}): {}", http::clip(text, 300)),
            )
        })?;
        // Text blocks make up the answer; other block kinds (thinking, tool use) are not ours.
        let joined: String =
            answer.content.iter().filter(|b| b.kind == "text").filter_map(|b| b.text.as_deref()).collect();
        if joined.is_empty() && answer.stop_reason.as_deref() == Some("refusal") {
            return Err(ProviderError::new(FailureKind::InvalidResponse, "the model refused to answer"));
        }
        Ok(Completion {
            texts: vec![joined],
            usage: Usage {
                input_tokens: answer.usage.input_tokens,
                output_tokens: answer.usage.output_tokens,
            },
            stop_reason: answer.stop_reason,
            model: answer.model.unwrap_or_else(|| self.endpoint.model.clone()),
        })
    }
}

/// Reads `{"type":"error","error":{"type","message"},"request_id"}`.
pub(crate) fn error_from_body(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> ProviderError {
    let mut kind = http::classify_status(status);
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let error_type = error.and_then(|e| e.get("type")).and_then(Value::as_str);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| http::clip(body, 500));
    match error_type {
        // The error type is what Anthropic documents; a proxy may change the status but
        // rarely the body.
        Some("overloaded_error") => kind = FailureKind::Overloaded,
        Some("rate_limit_error") => kind = FailureKind::RateLimited,
        Some("authentication_error" | "permission_error") => kind = FailureKind::Auth,
        _ => {}
    }
    // A 429 for a spend limit lasts until the month turns; retrying cannot help.
    let spend_limit = error
        .and_then(|e| e.pointer("/details/error_code"))
        .and_then(Value::as_str)
        .is_some_and(|c| c == "enforced_spend_limit_reached");
    if spend_limit {
        kind = FailureKind::QuotaExhausted;
    }
    let request_id = parsed
        .as_ref()
        .and_then(|v| v.get("request_id"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| http::header_string(headers, "request-id"));
    ProviderError {
        kind,
        status: Some(status),
        error_type: error_type.map(str::to_string),
        message,
        retry_after: http::retry_after(headers),
        request_id,
    }
}

#[async_trait]
impl Provider for Anthropic {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn model(&self) -> &str {
        &self.endpoint.model
    }

    fn pricing(&self) -> Pricing {
        self.endpoint.pricing
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.endpoint.policy
    }

    fn max_choices(&self) -> u32 {
        1
    }

    async fn send(&self, request: &CompletionRequest) -> Result<Completion, ProviderError> {
        if request.n != 1 {
            return Err(ProviderError::new(
                FailureKind::InvalidRequest,
                format!("the messages api returns one answer per call, asked for n = {}", request.n),
            ));
        }
        let body = self.body(request);
        let text = self
            .endpoint
            .post(
                &body,
                |call, key| call.header("anthropic-version", ANTHROPIC_VERSION).header("x-api-key", key),
                error_from_body,
            )
            .await?;
        self.parse_success(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn build_names_the_field_that_is_wrong() {
        let config = AnthropicConfig::new("  ");
        assert_eq!(
            config.build_with_env(&no_env).unwrap_err().to_string(),
            "llm.anthropic.model: must not be empty"
        );
        let mut config = AnthropicConfig::new("claude-haiku");
        assert_eq!(config.build_with_env(&no_env).unwrap_err().field, "llm.anthropic.api_key");
        config.api_key_env = Some("ANTHROPIC_KEY".into());
        let env = |n: &str| (n == "ANTHROPIC_KEY").then(|| "sk-ant".to_string());
        let built = config.build_with_env(&env).unwrap();
        assert_eq!(built.endpoint.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(built.endpoint.api_key.as_deref(), Some("sk-ant"));
        config.max_retries = 11;
        assert_eq!(config.build_with_env(&env).unwrap_err().field, "llm.anthropic.max_retries");
    }

    #[test]
    fn errors_read_the_documented_body() {
        let headers = reqwest::header::HeaderMap::new();
        let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        let e = error_from_body(529, &headers, body);
        assert_eq!(
            (e.kind, e.message.as_str(), e.request_id.as_deref()),
            (FailureKind::Overloaded, "Overloaded", Some("req_1"))
        );
        let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"spend","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert_eq!(error_from_body(429, &headers, body).kind, FailureKind::QuotaExhausted);
        let body = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#;
        let e = error_from_body(400, &headers, body);
        assert_eq!(
            (e.kind, e.error_type.as_deref()),
            (FailureKind::InvalidRequest, Some("invalid_request_error"))
        );
    }
}
