//! The generator: one provider with the cache in front and the budget around it, turning
//! briefs into variants and texts into translations, and recording what every call did.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use whisperer_core::WorkspaceId;

use crate::anthropic::AnthropicConfig;
use crate::brief::{Brief, Variant, parse_translation, translation_prompt};
use crate::budget::{Budget, BudgetConfig, BudgetSnapshot, Reservation, Spend};
use crate::cache::{CacheConfig, CacheKey, PromptCache};
use crate::error::{ConfigError, LlmError, OutputError};
use crate::http::{EnvLookup, process_env};
use crate::openai::OpenAiConfig;
use crate::provider::{Completion, CompletionRequest, Provider, complete};
use crate::tokens::estimate_tokens;

/// Where "now" comes from, so tests and simulations can move days and TTLs.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(now: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(now))
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which provider `[llm]` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    Anthropic,
}

/// `[llm]`: the provider, its settings, budgets, cache and sampling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub provider: ProviderKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openai: Option<OpenAiConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic: Option<AnthropicConfig>,
    #[serde(default)]
    pub budget: BudgetConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    /// Output cap for a variants call; a translation asks for less when its text is short.
    #[serde(default = "default_max_output_tokens")]
    pub max_output_tokens: u32,
    /// Sampling temperature for variants; translations use 0 for faithfulness.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
}

fn default_max_output_tokens() -> u32 {
    1_024
}

fn default_temperature() -> f32 {
    0.7
}

impl LlmConfig {
    /// Validates and builds the generator on the wall clock and the process environment.
    pub fn build(&self) -> Result<Generator, ConfigError> {
        self.build_with(&process_env, Arc::new(SystemClock))
    }

    /// [`build`](Self::build) with the environment and clock given.
    pub fn build_with(&self, env: EnvLookup<'_>, clock: Arc<dyn Clock>) -> Result<Generator, ConfigError> {
        let provider: Arc<dyn Provider> = match self.provider {
            ProviderKind::Openai => Arc::new(
                self.openai
                    .as_ref()
                    .ok_or_else(|| ConfigError::new("llm.openai", "required when llm.provider is openai"))?
                    .build_with_env(env)?,
            ),
            ProviderKind::Anthropic => Arc::new(
                self.anthropic
                    .as_ref()
                    .ok_or_else(|| {
                        ConfigError::new("llm.anthropic", "required when llm.provider is anthropic")
                    })?
                    .build_with_env(env)?,
            ),
        };
        if !(1..=100_000).contains(&self.max_output_tokens) {
            return Err(ConfigError::new("llm.max_output_tokens", "must be between 1 and 100000"));
        }
        if !self.temperature.is_finite() || !(0.0..=2.0).contains(&self.temperature) {
            return Err(ConfigError::new("llm.temperature", "must be between 0 and 2"));
        }
        let settings = Settings { max_output_tokens: self.max_output_tokens, temperature: self.temperature };
        Ok(Generator::new(provider, Budget::new(self.budget.clone()), self.cache.build()?, clock, settings))
    }
}

/// Sampling settings the generator applies to its calls.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub max_output_tokens: u32,
    pub temperature: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_output_tokens: default_max_output_tokens(), temperature: default_temperature() }
    }
}

/// What one generation did, for the caller's records (kept also when it failed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub provider: String,
    /// The model that answered, as the provider named it; the configured one when none did.
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Millionths of a US dollar, from the configured prices.
    pub cost_micros: u64,
    /// Served from the cache: no request, no budget.
    pub cache_hit: bool,
    /// HTTP requests made, retries included; 0 for a cache hit or a refusal before calling.
    pub attempts: u32,
    pub latency_ms: u64,
    pub stop_reason: Option<String>,
    /// Hex SHA-256 of the prompt and settings.
    pub cache_key: String,
}

/// A successful generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation<T> {
    pub output: T,
    pub record: GenerationRecord,
}

/// A failed generation, with what was done before it failed (tokens are charged when the
/// provider answered but the answer was unusable).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct GenerationFailure {
    pub error: LlmError,
    pub record: GenerationRecord,
}

/// Generates content with one provider, a prompt cache and per-workspace budgets.
pub struct Generator {
    provider: Arc<dyn Provider>,
    budget: Mutex<Budget>,
    cache: Mutex<PromptCache>,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("provider", &self.provider.name())
            .field("model", &self.provider.model())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Gives a reservation back if the call is dropped before it settles, so a cancelled call
/// does not hold budget until midnight.
struct Held<'a> {
    generator: &'a Generator,
    reservation: Option<Reservation>,
}

impl Held<'_> {
    fn settle(mut self, actual: Spend) {
        if let Some(reservation) = self.reservation.take() {
            let now = self.generator.clock.now();
            self.generator.budget().settle(reservation, actual, now);
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            let now = self.generator.clock.now();
            self.generator.budget().settle(reservation, Spend::default(), now);
        }
    }
}

impl Generator {
    pub fn new(
        provider: Arc<dyn Provider>,
        budget: Budget,
        cache: PromptCache,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Generator {
        Generator { provider, budget: Mutex::new(budget), cache: Mutex::new(cache), clock, settings }
    }

    pub fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    // A panic while holding these locks leaves counters that are still consistent numbers,
    // so a poisoned lock is used rather than propagated.
    fn budget(&self) -> MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache(&self) -> MutexGuard<'_, PromptCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The budget counters to persist.
    pub fn budget_snapshot(&self) -> BudgetSnapshot {
        self.budget().snapshot()
    }

    /// Restores persisted counters.
    pub fn restore_budget(&self, snapshot: BudgetSnapshot) {
        self.budget().restore(snapshot)
    }

    /// What `workspace` has spent today.
    pub fn spent_today(&self, workspace: &WorkspaceId) -> Spend {
        self.budget().spent(workspace, self.clock.now())
    }

    /// One completion, cached and budgeted; the texts are returned unchecked.
    pub async fn complete(
        &self,
        workspace: &WorkspaceId,
        request: &CompletionRequest,
    ) -> Result<Generation<Completion>, GenerationFailure> {
        self.run(workspace, request, |c| Ok(c.clone())).await
    }

    /// `n` variants of a message for `brief`, checked against its channel.
    pub async fn generate_variants(
        &self,
        workspace: &WorkspaceId,
        brief: &Brief,
        n: usize,
    ) -> Result<Generation<Vec<Variant>>, GenerationFailure> {
        let (system, user) = brief.prompt(n).map_err(|error| self.refused(error))?;
        let request = CompletionRequest {
            system,
            user,
            max_tokens: self.settings.max_output_tokens,
            temperature: self.settings.temperature,
            // All variants come in one answer so the model makes them differ.
            n: 1,
        };
        self.run(workspace, &request, |c| brief.parse_variants(&c.texts[0], n, c.stop_reason.as_deref()))
            .await
    }

    /// `text` translated from one locale to another, placeholders kept.
    pub async fn translate(
        &self,
        workspace: &WorkspaceId,
        text: &str,
        from_locale: &str,
        to_locale: &str,
    ) -> Result<Generation<String>, GenerationFailure> {
        let (system, user) =
            translation_prompt(text, from_locale, to_locale).map_err(|error| self.refused(error))?;
        // Room for a target language that takes three times the tokens of the source.
        let wanted = estimate_tokens(text).saturating_mul(3).saturating_add(64);
        let request = CompletionRequest {
            system,
            user,
            max_tokens: wanted.min(self.settings.max_output_tokens as u64) as u32,
            temperature: 0.0,
            n: 1,
        };
        self.run(workspace, &request, |c| parse_translation(text, &c.texts[0], c.stop_reason.as_deref()))
            .await
    }

    fn record(&self) -> GenerationRecord {
        GenerationRecord {
            provider: self.provider.name().to_string(),
            model: self.provider.model().to_string(),
            ..GenerationRecord::default()
        }
    }

    fn refused(&self, error: LlmError) -> GenerationFailure {
        GenerationFailure { error, record: self.record() }
    }

    /// Cache, then budget, then provider; `check` turns the answer into the output, and only
    /// answers that pass it are cached.
    async fn run<T>(
        &self,
        workspace: &WorkspaceId,
        request: &CompletionRequest,
        check: impl Fn(&Completion) -> Result<T, OutputError>,
    ) -> Result<Generation<T>, GenerationFailure> {
        let provider = self.provider.as_ref();
        let key = CacheKey::new(provider.name(), provider.model(), request);
        let mut record = GenerationRecord { cache_key: key.to_hex(), ..self.record() };
        if request.n == 0 || request.n > provider.max_choices() {
            let message = match provider.max_choices() {
                1 => format!("n: {} returns one answer per call, asked for {}", provider.name(), request.n),
                max => format!("n: must be between 1 and {max}, got {}", request.n),
            };
            return Err(GenerationFailure { error: LlmError::InvalidRequest(message), record });
        }
        let now = self.clock.now();

        let cached = self.cache().get(&key, now);
        if let Some(completion) = cached {
            match check(&completion) {
                Ok(output) => {
                    record.cache_hit = true;
                    record.model = completion.model;
                    record.stop_reason = completion.stop_reason;
                    return Ok(Generation { output, record });
                }
                // Only checked answers are stored, so this is a check that changed; ask anew.
                Err(_) => self.cache().remove(&key),
            }
        }

        let input_estimate = estimate_tokens(&request.system).saturating_add(estimate_tokens(&request.user));
        let output_estimate = u64::from(request.max_tokens).saturating_mul(u64::from(request.n.max(1)));
        let estimate = Spend {
            tokens: input_estimate.saturating_add(output_estimate),
            cost_micros: provider.pricing().cost_micros(input_estimate, output_estimate),
        };
        let reservation = self
            .budget()
            .reserve(workspace, estimate, now)
            .map_err(|e| GenerationFailure { error: e.into(), record: record.clone() })?;
        let held = Held { generator: self, reservation: Some(reservation) };

        let outcome = complete(provider, request).await;
        record.attempts = outcome.attempts;
        record.latency_ms = outcome.latency.as_millis() as u64;
        let completion = match outcome.result {
            Ok(completion) => completion,
            Err(error) => {
                held.settle(Spend::default());
                tracing::warn!(provider = provider.name(), kind = %error.kind, attempts = outcome.attempts, "llm call failed");
                let error = LlmError::Provider {
                    provider: provider.name().to_string(),
                    attempts: outcome.attempts,
                    error,
                };
                return Err(GenerationFailure { error, record });
            }
        };
        let usage = completion.usage;
        let cost_micros = provider.pricing().cost_micros(usage.input_tokens, usage.output_tokens);
        held.settle(Spend { tokens: usage.total(), cost_micros });
        record.input_tokens = usage.input_tokens;
        record.output_tokens = usage.output_tokens;
        record.cost_micros = cost_micros;
        record.model = completion.model.clone();
        record.stop_reason = completion.stop_reason.clone();
        if completion.texts.is_empty() {
            return Err(GenerationFailure {
                error: OutputError::Shape("no text in the answer".into()).into(),
                record,
            });
        }
        match check(&completion) {
            Ok(output) => {
                self.cache().put(key, completion, self.clock.now());
                Ok(Generation { output, record })
            }
            Err(error) => Err(GenerationFailure { error: error.into(), record }),
        }
    }
}
