//! What both HTTP providers share: the client with its timeout, config checks for base URLs,
//! keys, prices and retries, reading `Retry-After`, and the retry loop with exponential
//! backoff and full jitter.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::{ConfigError, FailureKind, ProviderError};

/// A client whose every request (connect, send, read the whole body) ends by `timeout`.
pub(crate) fn client(field: &str, timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("whisperer/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::new(field, format!("cannot build the http client: {e}")))
}

/// An absolute http(s) URL without query or fragment; the trailing slash is dropped so paths
/// are appended with `format!("{base}/chat/completions")`.
pub(crate) fn base_url(field: &str, value: &str) -> Result<String, ConfigError> {
    let parsed =
        url::Url::parse(value).map_err(|e| ConfigError::new(field, format!("not a url ({e}): {value:?}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::new(field, format!("scheme must be http or https: {value:?}")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::new(field, "must not have a query or fragment"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// Reads an environment variable; injected so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The connection settings every provider's config has, borrowed for [`Endpoint::build`].
pub(crate) struct ConnectionFields<'a> {
    pub base_url: &'a str,
    pub model: &'a str,
    pub api_key: Option<&'a str>,
    pub api_key_env: Option<&'a str>,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub usd_per_1k_input_tokens: f64,
    pub usd_per_1k_output_tokens: f64,
}

/// A checked provider endpoint: what every provider is made of besides its wire format.
pub(crate) struct Endpoint {
    client: reqwest::Client,
    pub url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub pricing: Pricing,
    pub policy: RetryPolicy,
}

impl Endpoint {
    /// Checks the connection settings of the config at `prefix` (`llm.openai`) and makes the
    /// endpoint `{base_url}{path}`; a key is required only at `official_base`.
    pub(crate) fn build(
        prefix: &str,
        official_base: &str,
        path: &str,
        f: ConnectionFields<'_>,
        env: EnvLookup<'_>,
    ) -> Result<Endpoint, ConfigError> {
        let base_url = base_url(&format!("{prefix}.base_url"), f.base_url)?;
        let model = f.model.trim();
        if model.is_empty() {
            return Err(ConfigError::new(format!("{prefix}.model"), "must not be empty"));
        }
        let api_key = api_key(prefix, f.api_key, f.api_key_env, base_url == official_base, env)?;
        if !(1..=600_000).contains(&f.timeout_ms) {
            return Err(ConfigError::new(format!("{prefix}.timeout_ms"), "must be between 1 and 600000"));
        }
        let policy = RetryPolicy::from_config(prefix, f.max_retries, f.backoff_base_ms, f.backoff_max_ms)?;
        let pricing =
            Pricing::from_usd_per_1k(prefix, f.usd_per_1k_input_tokens, f.usd_per_1k_output_tokens)?;
        Ok(Endpoint {
            client: client(prefix, Duration::from_millis(f.timeout_ms))?,
            url: format!("{base_url}{path}"),
            api_key,
            model: model.to_string(),
            pricing,
            policy,
        })
    }

    /// POSTs `body`, the key sent the provider's way (`authorize`); the text of a 2xx answer,
    /// else the provider's error as `error_from_body` reads it.
    pub(crate) async fn post(
        &self,
        body: &serde_json::Value,
        authorize: impl FnOnce(reqwest::RequestBuilder, &str) -> reqwest::RequestBuilder,
        error_from_body: fn(u16, &reqwest::header::HeaderMap, &str) -> ProviderError,
    ) -> Result<String, ProviderError> {
        let mut call = self.client.post(&self.url).json(body);
        if let Some(key) = &self.api_key {
            call = authorize(call, key);
        }
        let response = call.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(transport_error)?;
        if !(200..300).contains(&status) {
            return Err(error_from_body(status, &headers, &text));
        }
        Ok(text)
    }
}

/// The process environment, for [`EnvLookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The API key from `api_key` or the variable named by `api_key_env`. Local servers (Ollama,
/// vLLM) take no key, so a key is required only where `required`.
pub(crate) fn api_key(
    prefix: &str,
    api_key: Option<&str>,
    api_key_env: Option<&str>,
    required: bool,
    env: EnvLookup<'_>,
) -> Result<Option<String>, ConfigError> {
    let key = match (api_key, api_key_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                format!("{prefix}.api_key"),
                "set either api_key or api_key_env, not both",
            ));
        }
        (Some(key), None) => {
            if key.trim().is_empty() {
                return Err(ConfigError::new(format!("{prefix}.api_key"), "must not be empty"));
            }
            Some(key.to_string())
        }
        (None, Some(var)) => {
            let field = format!("{prefix}.api_key_env");
            if var.trim().is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
            match env(var) {
                Some(key) if !key.trim().is_empty() => Some(key.trim().to_string()),
                Some(_) => {
                    return Err(ConfigError::new(field, format!("environment variable {var} is empty")));
                }
                None => {
                    return Err(ConfigError::new(field, format!("environment variable {var} is not set")));
                }
            }
        }
        (None, None) => None,
    };
    if key.is_none() && required {
        return Err(ConfigError::new(
            format!("{prefix}.api_key"),
            "required for the official endpoint (set api_key or api_key_env)",
        ));
    }
    Ok(key)
}

/// Price of tokens, in millionths of a US dollar per million tokens so that prices far below a
/// micro-dollar per token still add up exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pricing {
    pub input_micros_per_million: u64,
    pub output_micros_per_million: u64,
}

impl Pricing {
    /// From configured US dollars per 1,000 tokens.
    pub(crate) fn from_usd_per_1k(prefix: &str, input: f64, output: f64) -> Result<Pricing, ConfigError> {
        let convert = |field: &str, usd: f64| {
            if !usd.is_finite() || !(0.0..=1_000.0).contains(&usd) {
                return Err(ConfigError::new(
                    format!("{prefix}.{field}"),
                    format!("must be a price between 0 and 1000 usd, got {usd}"),
                ));
            }
            // usd per 1k tokens * 1e6 micros per usd * 1e3 thousands per million
            Ok((usd * 1e9).round() as u64)
        };
        Ok(Pricing {
            input_micros_per_million: convert("usd_per_1k_input_tokens", input)?,
            output_micros_per_million: convert("usd_per_1k_output_tokens", output)?,
        })
    }

    /// Cost in micro-dollars, rounded up so a budget is never undercounted.
    pub fn cost_micros(&self, input_tokens: u64, output_tokens: u64) -> u64 {
        let total = input_tokens as u128 * self.input_micros_per_million as u128
            + output_tokens as u128 * self.output_micros_per_million as u128;
        total.div_ceil(1_000_000).min(u64::MAX as u128) as u64
    }
}

/// How many times and how long to wait between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// The first backoff ceiling; it doubles with each retry.
    pub base_delay: Duration,
    /// No single wait is longer; a `Retry-After` beyond it ends the retries instead.
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub(crate) fn from_config(
        prefix: &str,
        max_retries: u32,
        base_ms: u64,
        max_ms: u64,
    ) -> Result<RetryPolicy, ConfigError> {
        if max_retries > 10 {
            return Err(ConfigError::new(format!("{prefix}.max_retries"), "must be at most 10"));
        }
        if base_ms == 0 {
            return Err(ConfigError::new(format!("{prefix}.backoff_base_ms"), "must be positive"));
        }
        if max_ms < base_ms {
            return Err(ConfigError::new(
                format!("{prefix}.backoff_max_ms"),
                format!("must be at least backoff_base_ms ({base_ms})"),
            ));
        }
        Ok(RetryPolicy {
            max_retries,
            base_delay: Duration::from_millis(base_ms),
            max_delay: Duration::from_millis(max_ms),
        })
    }

    /// The wait before retry number `retry` (0 for the first), or `None` when the provider
    /// asked for a longer wait than we are willing to hold a message for.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if let Some(asked) = retry_after {
            return (asked <= self.max_delay).then_some(asked);
        }
        // Full jitter: uniform in [0, min(max, base * 2^retry)], so clients that failed together
        // do not come back together.
        let ceiling =
            self.base_delay.saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX)).min(self.max_delay);
        let millis = ceiling.as_millis() as u64;
        Some(Duration::from_millis(rand::rng().random_range(0..=millis)))
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the retries are spent. Returns the
/// outcome and how many attempts were made.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    mut attempt: F,
) -> (Result<T, ProviderError>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match attempt().await {
            Ok(value) => return (Ok(value), attempts),
            Err(error) => error,
        };
        let retry = attempts - 1;
        if !error.kind.is_transient() || retry >= policy.max_retries {
            return (Err(error), attempts);
        }
        let Some(wait) = policy.delay(retry, error.retry_after) else {
            return (Err(error), attempts);
        };
        tracing::debug!(kind = %error.kind, attempt = attempts, wait_ms = wait.as_millis() as u64, "llm call failed, retrying");
        tokio::time::sleep(wait).await;
    }
}

/// The failure kind of a non-success status: 408 is a timeout, 429 rate limiting, 529
/// Anthropic's overload, other 5xx transient; 4xx say the request or key is wrong.
pub(crate) fn classify_status(status: u16) -> FailureKind {
    match status {
        408 => FailureKind::Timeout,
        429 => FailureKind::RateLimited,
        529 => FailureKind::Overloaded,
        500..=599 => FailureKind::Server,
        401 | 403 => FailureKind::Auth,
        400 | 404 | 413 | 422 => FailureKind::InvalidRequest,
        _ => FailureKind::Rejected,
    }
}

/// A transport failure: timeouts and connection errors are transient.
pub(crate) fn transport_error(error: reqwest::Error) -> ProviderError {
    let kind = if error.is_timeout() { FailureKind::Timeout } else { FailureKind::Connection };
    ProviderError::new(kind, error_chain(&error))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How long the answer asks us to wait: `retry-after-ms` (OpenAI) first, then `Retry-After`
/// in seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_millis(ms as u64));
    }
    parse_retry_after(header("retry-after")?)
}

pub use whisperer_core::time::parse_retry_after;

pub(crate) fn header_string(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

pub(crate) use whisperer_core::text::clip;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds_and_only_transient_ones_retry() {
        assert_eq!(classify_status(429), FailureKind::RateLimited);
        assert_eq!(classify_status(529), FailureKind::Overloaded);
        assert_eq!(classify_status(503), FailureKind::Server);
        assert_eq!(classify_status(408), FailureKind::Timeout);
        assert_eq!(classify_status(401), FailureKind::Auth);
        assert_eq!(classify_status(400), FailureKind::InvalidRequest);
        assert_eq!(classify_status(409), FailureKind::Rejected);
        for status in [408, 429, 500, 502, 503, 529] {
            assert!(classify_status(status).is_transient(), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 413, 422] {
            assert!(!classify_status(status).is_transient(), "{status}");
        }
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_ceiling() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let mut seen_different = false;
        for retry in 0..6 {
            let ceiling = Duration::from_millis((100u64 << retry).min(1000));
            let first = policy.delay(retry, None).unwrap();
            for _ in 0..50 {
                let d = policy.delay(retry, None).unwrap();
                assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
                seen_different |= d != first;
            }
        }
        assert!(seen_different, "the delay is random");
        assert_eq!(policy.delay(0, Some(Duration::from_millis(700))), Some(Duration::from_millis(700)));
        assert_eq!(policy.delay(0, Some(Duration::from_secs(5))), None, "too long a wait gives up");
        assert!(policy.delay(40, None).unwrap() <= Duration::from_millis(1000), "no overflow");
    }

    #[test]
    fn prices_add_up_in_micro_dollars_rounded_up() {
        let p = Pricing::from_usd_per_1k("llm.openai", 0.00015, 0.0006).unwrap();
        assert_eq!(p.input_micros_per_million, 150_000);
        assert_eq!(p.cost_micros(1_000_000, 0), 150_000);
        assert_eq!(p.cost_micros(1_000, 1_000), 750);
        assert_eq!(p.cost_micros(1, 0), 1, "a fraction of a micro-dollar rounds up");
        assert_eq!(Pricing::default().cost_micros(1_000, 1_000), 0);
        let e = Pricing::from_usd_per_1k("llm.openai", -1.0, 0.0).unwrap_err();
        assert_eq!(e.field, "llm.openai.usd_per_1k_input_tokens");
        assert!(Pricing::from_usd_per_1k("x", 0.0, f64::NAN).is_err());
    }

    #[test]
    fn keys_come_from_config_or_the_named_variable() {
        let env = |name: &str| (name == "KEY").then(|| "sk-env".to_string());
        let env: EnvLookup<'_> = &env;
        assert_eq!(api_key("p", Some("sk"), None, true, env).unwrap().as_deref(), Some("sk"));
        assert_eq!(api_key("p", None, Some("KEY"), true, env).unwrap().as_deref(), Some("sk-env"));
        assert_eq!(api_key("p", None, None, false, env).unwrap(), None);
        let e = api_key("p", None, Some("MISSING"), true, env).unwrap_err();
        assert_eq!(e.to_string(), "p.api_key_env: environment variable MISSING is not set");
        assert_eq!(api_key("p", None, None, true, env).unwrap_err().field, "p.api_key");
        assert_eq!(api_key("p", Some("a"), Some("KEY"), true, env).unwrap_err().field, "p.api_key");
    }
}
