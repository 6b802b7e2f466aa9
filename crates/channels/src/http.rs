//! What every HTTP provider shares: one client per provider with timeouts, and one reading of
//! status codes into [`FailureKind`]s.

use std::time::Duration;

use crate::{ConfigError, FailureKind, SendError};

/// Request timeout for provider calls unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client with connect and request timeouts and a connection pool, for one provider.
pub fn client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("whisperer/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::new("http", format!("cannot build the HTTP client: {e}")))
}

/// A base URL from config: absolute http(s), no query; the trailing slash is dropped so paths
/// can be appended with `format!("{base}/v3/mail/send")`.
pub fn base_url(field: &str, value: &str) -> Result<String, ConfigError> {
    let parsed =
        url::Url::parse(value).map_err(|e| ConfigError::new(field, format!("not a URL ({e}): {value:?}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::new(field, format!("scheme must be http or https: {value:?}")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(ConfigError::new(field, "must not have a query or fragment"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// The failure kind of an HTTP status that is not a success: 429 is rate limiting, 408 and
/// 5xx are transient, other 4xx mean this provider refuses the request.
pub fn classify_status(status: u16) -> FailureKind {
    match status {
        429 => FailureKind::RateLimited,
        408 | 500..=599 => FailureKind::Transient,
        _ => FailureKind::Provider,
    }
}

/// A [`SendError`] from a non-success response: kind from the status, `Retry-After` (seconds
/// or an HTTP date) when present, the body (clipped) as the message.
pub async fn error_from_response(response: reqwest::Response) -> SendError {
    let status = response.status().as_u16();
    let retry_after_ms = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
        .map(|d| d.as_millis() as u64);
    let body = response.text().await.unwrap_or_default();
    SendError {
        kind: classify_status(status),
        code: status.to_string(),
        message: clip(&body, 500),
        retry_after_ms,
    }
}

/// A [`SendError`] from a transport failure: timeouts and connection errors are transient.
pub fn error_from_transport(error: reqwest::Error) -> SendError {
    let code = if error.is_timeout() { "timeout" } else { "io" };
    SendError::new(FailureKind::Transient, code, error.to_string())
}

pub use whisperer_core::time::parse_retry_after;

pub(crate) use whisperer_core::text::clip;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_the_caller_does_next() {
        assert_eq!(classify_status(429), FailureKind::RateLimited);
        assert_eq!(classify_status(503), FailureKind::Transient);
        assert_eq!(classify_status(408), FailureKind::Transient);
        assert_eq!(classify_status(401), FailureKind::Provider);
        assert_eq!(classify_status(400), FailureKind::Provider);
    }

    #[test]
    fn base_urls_are_checked_and_normalised() {
        assert_eq!(base_url("x", "http://127.0.0.1:9/").unwrap(), "http://127.0.0.1:9");
        assert_eq!(base_url("sendgrid.base_url", "ftp://a").unwrap_err().field, "sendgrid.base_url");
        assert!(base_url("x", "http://a/?q=1").is_err());
        assert!(base_url("x", "not a url").is_err());
    }
}
