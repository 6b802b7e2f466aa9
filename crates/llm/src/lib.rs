//! LLM content generation for messages.
//!
//! Two wire formats behind one [`Provider`] trait: OpenAI Chat Completions (and the servers
//! that speak it, such as Ollama, vLLM and LM Studio) and Anthropic Messages. A [`Generator`]
//! puts a prompt cache in front of the provider and a per-workspace daily [`Budget`] around
//! it, retries transient failures with jittered backoff, turns a [`Brief`] into checked
//! [`Variant`]s and translates texts, and returns a [`GenerationRecord`] of what every call did,
//! also when it failed, so the caller can say why it fell back to a template.

pub mod anthropic;
pub mod brief;
pub mod budget;
pub mod cache;
pub mod error;
pub mod generator;
pub mod http;
pub mod openai;
pub mod provider;
pub mod tokens;

pub use anthropic::{ANTHROPIC_BASE_URL, ANTHROPIC_VERSION, Anthropic, AnthropicConfig};
pub use brief::{Brief, ChannelLimits, MAX_VARIANTS, Variant, channel_limits};
pub use budget::{Budget, BudgetConfig, BudgetLimits, BudgetSnapshot, DaySpend, Reservation, Spend};
pub use cache::{CacheConfig, CacheKey, PromptCache};
pub use error::{BudgetExceeded, ConfigError, FailureKind, LlmError, OutputError, ProviderError};
pub use generator::{
    Clock, Generation, GenerationFailure, GenerationRecord, Generator, LlmConfig, ManualClock, ProviderKind,
    Settings, SystemClock,
};
pub use http::{Pricing, RetryPolicy};
pub use openai::{MaxTokensField, OPENAI_BASE_URL, OpenAi, OpenAiConfig};
pub use provider::{CallOutcome, Completion, CompletionRequest, Provider, Usage, complete};
