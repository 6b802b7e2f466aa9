//! The provider trait every LLM API sits behind, and the request and answer it speaks.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ProviderError;
use crate::http::{Pricing, RetryPolicy, with_retries};

/// One chat completion to make: a system prompt, one user message and sampling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    pub system: String,
    pub user: String,
    /// Upper bound on generated tokens, per choice.
    pub max_tokens: u32,
    pub temperature: f32,
    /// How many independent answers (OpenAI `n`); Anthropic supports only 1.
    pub n: u32,
}

/// Tokens the provider reports it used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// A provider's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// One text per choice, in choice order.
    pub texts: Vec<String>,
    pub usage: Usage,
    /// Why generation stopped (`stop`, `length`, `end_turn`, `max_tokens`), for the first choice.
    pub stop_reason: Option<String>,
    /// The model that answered, as the provider names it.
    pub model: String,
}

/// An LLM API. `send` makes exactly one HTTP request; [`complete`] adds the retries.
#[async_trait]
pub trait Provider: Send + Sync {
    /// `openai` or `anthropic`; part of the cache key and the result record.
    fn name(&self) -> &str;
    /// The configured model.
    fn model(&self) -> &str;
    fn pricing(&self) -> Pricing;
    fn retry_policy(&self) -> RetryPolicy;
    /// Most answers one call can return (`n`).
    fn max_choices(&self) -> u32 {
        128
    }
    async fn send(&self, request: &CompletionRequest) -> Result<Completion, ProviderError>;
}

/// What one call with retries did.
#[derive(Debug)]
pub struct CallOutcome {
    pub result: Result<Completion, ProviderError>,
    pub attempts: u32,
    /// Wall time of all attempts and the waits between them.
    pub latency: Duration,
}

/// Calls the provider, retrying transient failures per its [`RetryPolicy`].
pub async fn complete(provider: &dyn Provider, request: &CompletionRequest) -> CallOutcome {
    let started = Instant::now();
    let policy = provider.retry_policy();
    let (result, attempts) = with_retries(&policy, || provider.send(request)).await;
    CallOutcome { result, attempts, latency: started.elapsed() }
}
