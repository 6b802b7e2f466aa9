//! LLM content generation for messages.
//!
//! Two wire formats behind one [`Provider`] trait: OpenAI Chat Completions (and the servers
//! that speak it, such as Ollama, vLLM and LM Studio) and Anthropic Messages. A [`Generator`]
//! puts a prompt cache in front of the provider and a per-workspace daily [`Budget`] around
//! it, retries transient failures with jittered backoff, turns a [`Brief`] into checked
//! [`Variant`]s and translates texts, and returns a [`GenerationRecord`] of what every call did,
//! also when it failed, so the caller can say why it fell back to a template.
//!
//! Configuration is data ([`LlmConfig`], every table `deny_unknown_fields`); `build()` checks
//! it and names the field at fault (`llm.openai.model: must not be empty`):
//!
//! ```toml
//! [llm]
//! provider = "openai"            # or "anthropic"
//! max_output_tokens = 1024
//! temperature = 0.7
//!
//! [llm.openai]
//! model = "gpt-4o-mini"
//! api_key_env = "OPENAI_API_KEY" # or api_key; neither for a local server
//! # base_url = "http://127.0.0.1:11434/v1"   # Ollama, vLLM, LM Studio
//! # max_tokens_field = "max_tokens"          # for servers that lack max_completion_tokens
//! timeout_ms = 30000
//! max_retries = 2
//! backoff_base_ms = 500
//! backoff_max_ms = 10000         # a longer Retry-After ends the retries instead
//! usd_per_1k_input_tokens = 0.00015
//! usd_per_1k_output_tokens = 0.0006
//!
//! [llm.budget.default]
//! tokens_per_day = 2000000
//! cost_micros_per_day = 5000000  # 5 usd
//!
//! [llm.cache]
//! capacity = 1000
//! ttl_secs = 86400
//! ```

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
