//! OpenAI Chat Completions (`POST {base_url}/chat/completions`), and every server that speaks
//! it: Ollama, vLLM, LM Studio, llama.cpp's server, gateways.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{ConfigError, FailureKind, ProviderError};
use crate::http::{self, ConnectionFields, Endpoint, EnvLookup, Pricing, RetryPolicy};
use crate::provider::{Completion, CompletionRequest, Provider, Usage};
use crate::tokens::estimate_tokens;

/// The official endpoint; the paths below it are appended.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

const PREFIX: &str = "llm.openai";

/// Which body field carries the output limit: OpenAI deprecated `max_tokens` for
/// `max_completion_tokens` (reasoning models refuse the old one), while some compatible servers
/// only know `max_tokens`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxTokensField {
    #[default]
    MaxCompletionTokens,
    MaxTokens,
}

impl MaxTokensField {
    fn as_str(self) -> &'static str {
        match self {
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
            MaxTokensField::MaxTokens => "max_tokens",
        }
    }
}

/// `[llm.openai]`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
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
    #[serde(default)]
    pub max_tokens_field: MaxTokensField,
}

fn default_base_url() -> String {
    OPENAI_BASE_URL.to_string()
}

pub(crate) mod defaults {
    pub fn timeout_ms() -> u64 {
        30_000
    }
    pub fn max_retries() -> u32 {
        2
    }
    pub fn backoff_base_ms() -> u64 {
        500
    }
    pub fn backoff_max_ms() -> u64 {
        10_000
    }
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
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
            .field("max_tokens_field", &self.max_tokens_field)
            .finish()
    }
}

impl OpenAiConfig {
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
            max_tokens_field: MaxTokensField::default(),
        }
    }

    /// Validates and builds the provider, reading `api_key_env` from the process environment.
    pub fn build(&self) -> Result<OpenAi, ConfigError> {
        self.build_with_env(&http::process_env)
    }

    /// [`build`](Self::build) with the environment given.
    pub fn build_with_env(&self, env: EnvLookup<'_>) -> Result<OpenAi, ConfigError> {
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
        Ok(OpenAi {
            endpoint: Endpoint::build(PREFIX, OPENAI_BASE_URL, "/chat/completions", fields, env)?,
            max_tokens_field: self.max_tokens_field,
        })
    }
}

/// A Chat Completions client for one model.
pub struct OpenAi {
    endpoint: Endpoint,
    max_tokens_field: MaxTokensField,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAi")
            .field("url", &self.endpoint.url)
            .field("model", &self.endpoint.model)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl OpenAi {
    fn body(&self, request: &CompletionRequest) -> Value {
        let mut messages = Vec::with_capacity(2);
        if !request.system.is_empty() {
            messages.push(json!({"role": "system", "content": request.system}));
        }
        messages.push(json!({"role": "user", "content": request.user}));
        let mut body = json!({
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": request.temperature,
            "n": request.n,
        });
        body[self.max_tokens_field.as_str()] = json!(request.max_tokens);
        body
    }

    fn parse_success(&self, request: &CompletionRequest, text: &str) -> Result<Completion, ProviderError> {
        let answer: ChatResponse = serde_json::from_str(text).map_err(|e| {
            ProviderError::new(
                FailureKind::InvalidResponse,
                format!("not a chat completion ({e}): {}", http::clip(text, 300)),
            )
        })?;
        let mut choices = answer.choices;
        if choices.is_empty() {
            return Err(ProviderError::new(FailureKind::InvalidResponse, "no choices in the answer"));
        }
        choices.sort_by_key(|c| c.index);
        let stop_reason = choices[0].finish_reason.clone();
        let mut texts = Vec::with_capacity(choices.len());
        for choice in choices {
            match choice.message.content {
                Some(content) => texts.push(content),
                None => {
                    let why = choice.message.refusal.unwrap_or_else(|| "no content".to_string());
                    return Err(ProviderError::new(
                        FailureKind::InvalidResponse,
                        format!("choices[{}].message.content is null: {why}", choice.index),
                    ));
                }
            }
        }
        let usage = match answer.usage {
            Some(u) => Usage { input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens },
            // Some compatible servers omit usage; an estimate keeps budgets from reading zero.
            None => Usage {
                input_tokens: estimate_tokens(&request.system) + estimate_tokens(&request.user),
                output_tokens: texts.iter().map(|t| estimate_tokens(t)).sum(),
            },
        };
        Ok(Completion {
            texts,
            usage,
            stop_reason,
            model: answer.model.unwrap_or_else(|| self.endpoint.model.clone()),
        })
    }
}

/// Reads `{"error":{"message","type","param","code"}}`; anything else becomes the message.
pub(crate) fn error_from_body(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> ProviderError {
    let mut kind = http::classify_status(status);
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| http::clip(body, 500));
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
    let error_type = error.and_then(|e| e.get("type")).and_then(Value::as_str);
    // A 429 for a used-up quota or billing limit will not pass by waiting.
    if status == 429
        && matches!(code.or(error_type), Some("insufficient_quota" | "billing_hard_limit_reached"))
    {
        kind = FailureKind::QuotaExhausted;
    }
    ProviderError {
        kind,
        status: Some(status),
        error_type: code.or(error_type).map(str::to_string),
        message,
        retry_after: http::retry_after(headers),
        request_id: http::header_string(headers, "x-request-id"),
    }
}

#[async_trait]
impl Provider for OpenAi {
    fn name(&self) -> &str {
        "openai"
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

    async fn send(&self, request: &CompletionRequest) -> Result<Completion, ProviderError> {
        let body = self.body(request);
        let text = self.endpoint.post(&body, |call, key| call.bearer_auth(key), error_from_body).await?;
        self.parse_success(request, &text)
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
        let mut config = OpenAiConfig::new("");
        config.api_key = Some("sk".into());
        assert_eq!(
            config.build_with_env(&no_env).unwrap_err().to_string(),
            "llm.openai.model: must not be empty"
        );
        config.model = "gpt-4o-mini".into();
        config.api_key = None;
        assert_eq!(config.build_with_env(&no_env).unwrap_err().field, "llm.openai.api_key");
        config.base_url = "http://127.0.0.1:11434/v1/".into();
        let local = config.build_with_env(&no_env).expect("a local server takes no key");
        assert_eq!(local.endpoint.url, "http://127.0.0.1:11434/v1/chat/completions");
        config.timeout_ms = 0;
        assert_eq!(config.build_with_env(&no_env).unwrap_err().field, "llm.openai.timeout_ms");
        config.timeout_ms = 1000;
        config.base_url = "ftp://x".into();
        assert_eq!(config.build_with_env(&no_env).unwrap_err().field, "llm.openai.base_url");
    }

    #[test]
    fn config_rejects_unknown_fields_and_fills_defaults() {
        let config: OpenAiConfig = serde_json::from_value(json!({"model": "m", "api_key": "sk"})).unwrap();
        assert_eq!(config.base_url, OPENAI_BASE_URL);
        assert_eq!(config.max_retries, 2);
        let e = serde_json::from_value::<OpenAiConfig>(json!({"model": "m", "modle": "x"})).unwrap_err();
        assert!(e.to_string().contains("unknown field `modle`"), "{e}");
        assert!(!format!("{config:?}").contains("sk\""), "the key is not printed");
    }

    #[test]
    fn errors_read_the_documented_body() {
        let headers = reqwest::header::HeaderMap::new();
        let body = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let e = error_from_body(429, &headers, body);
        assert_eq!(e.kind, FailureKind::QuotaExhausted);
        assert_eq!(e.message, "You exceeded your current quota");
        let e = error_from_body(502, &headers, "<html>bad gateway</html>");
        assert_eq!(e.kind, FailureKind::Server);
        assert_eq!(e.message, "<html>bad gateway</html>");
    }
}
