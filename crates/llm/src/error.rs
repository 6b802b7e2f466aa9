//! Typed errors: what went wrong with the configuration, one provider call, the budget, or
//! the model's output, each saying which kind so the caller can decide to retry, wait, or fall
//! back to a template.

use std::time::Duration;

/// A configuration value that cannot be used, named by its full path (`llm.openai.model`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Why one provider call failed. Only the transient kinds are retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The request did not finish within the configured timeout (or the server answered 408).
    Timeout,
    /// The connection could not be made or broke before an answer came.
    Connection,
    /// 429: too many requests or tokens per minute; wait and retry.
    RateLimited,
    /// Anthropic's 529 `overloaded_error`: the API is busy for everyone.
    Overloaded,
    /// Any other 5xx.
    Server,
    /// 401 or 403: the key is wrong, revoked or lacks permission.
    Auth,
    /// 400, 404, 413, 422: the request itself is wrong (unknown model, too long, bad field).
    InvalidRequest,
    /// The account's quota or spend limit is used up; waiting minutes will not help.
    QuotaExhausted,
    /// Another 4xx the provider gives no retry semantics for.
    Rejected,
    /// A success status whose body is not the documented answer.
    InvalidResponse,
}

impl FailureKind {
    /// Whether another attempt can succeed without changing the request.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FailureKind::Timeout
                | FailureKind::Connection
                | FailureKind::RateLimited
                | FailureKind::Overloaded
                | FailureKind::Server
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Connection => "connection",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Overloaded => "overloaded",
            FailureKind::Server => "server",
            FailureKind::Auth => "auth",
            FailureKind::InvalidRequest => "invalid_request",
            FailureKind::QuotaExhausted => "quota_exhausted",
            FailureKind::Rejected => "rejected",
            FailureKind::InvalidResponse => "invalid_response",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed provider attempt, as the provider described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError {
    pub kind: FailureKind,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The provider's own error type or code (`rate_limit_error`, `invalid_api_key`, …).
    pub error_type: Option<String>,
    pub message: String,
    /// How long the provider asked us to wait (`Retry-After`, `retry-after-ms`).
    pub retry_after: Option<Duration>,
    /// The provider's request id, for support tickets.
    pub request_id: Option<String>,
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        match (self.status, &self.error_type) {
            (Some(status), Some(t)) => write!(f, " (http {status}, {t})")?,
            (Some(status), None) => write!(f, " (http {status})")?,
            (None, Some(t)) => write!(f, " ({t})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ProviderError {}

impl ProviderError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: None,
            error_type: None,
            message: message.into(),
            retry_after: None,
            request_id: None,
        }
    }
}

/// A daily budget that the call would exceed; no request was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "workspace {workspace} is over its daily {what} budget for {day}: {used} used + {needed} needed > {limit}"
)]
pub struct BudgetExceeded {
    pub workspace: String,
    /// `tokens` or `cost_micros`.
    pub what: &'static str,
    pub day: chrono::NaiveDate,
    /// Already spent plus reserved by calls in flight.
    pub used: u64,
    /// This call's estimate.
    pub needed: u64,
    pub limit: u64,
}

/// The model answered, but not with what was asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("the answer is not JSON: {message}{}", hint_truncated(stop_reason.as_deref()))]
    NotJson { message: String, stop_reason: Option<String> },
    #[error("the answer does not have the asked shape: {0}")]
    Shape(String),
    #[error("asked for {expected} variants, got {got}")]
    WrongCount { expected: usize, got: usize },
    #[error("variants[{variant}].{field}: must not be empty")]
    Empty { variant: usize, field: &'static str },
    #[error("variants[{variant}].{field}: {chars} characters, the {channel} limit is {max}")]
    TooLong { variant: usize, field: &'static str, chars: usize, max: usize, channel: String },
    #[error("variants[{variant}].body: the required element {element:?} is missing")]
    MissingElement { variant: usize, element: String },
    #[error("the answer was cut off at max_tokens")]
    Truncated,
    #[error("the translation is empty")]
    EmptyTranslation,
    #[error("the translation lost the placeholder {0:?}")]
    PlaceholderLost(String),
}

fn hint_truncated(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "length") => " (the answer was cut off at max_tokens)",
        _ => "",
    }
}

/// Everything a generation can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// The provider failed, after retries where the failure was transient.
    #[error("{provider} failed after {attempts} attempt(s): {error}")]
    Provider { provider: String, attempts: u32, error: ProviderError },
    /// Refused before any request: the workspace's daily budget would be exceeded.
    #[error(transparent)]
    OverBudget(#[from] BudgetExceeded),
    /// The model's answer was unusable.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The brief or request cannot be turned into a prompt.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl LlmError {
    /// The provider failure kind, when this is a provider failure.
    pub fn failure_kind(&self) -> Option<FailureKind> {
        match self {
            LlmError::Provider { error, .. } => Some(error.kind),
            _ => None,
        }
    }
}
