//! Sending through a channel's providers in priority order: circuit breakers, rate limits,
//! failover, and what to do when every provider failed.
//!
//! The router makes one pass over the providers per call. Retries over time (exponential
//! backoff with full jitter) belong to the caller, which keeps the message durable between
//! attempts; [`RetryPolicy`] computes the waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{Channel, FailureKind, Message, Provider, Receipt, SendError};

/// When to stop sending to a failing provider, and when to try it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures (transient or provider errors) that open the circuit.
    pub failures: u32,
    /// How long an open circuit refuses sends before one probe is let through.
    pub cool_down_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures: 5, cool_down_ms: 30_000 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else waits for its result.
    HalfOpen,
}

/// A circuit breaker for one provider.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

/// How a circuit breaker stands, for metrics and the status API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerStatus {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker { config, state: BreakerState::Closed { failures: 0 } }
    }

    /// Whether a send may go to the provider now (an open circuit past its cool-down lets one
    /// probe through).
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    pub fn success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    pub fn failure(&mut self, now: Instant) {
        let open = BreakerState::Open { until: now + Duration::from_millis(self.config.cool_down_ms) };
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.config.failures.max(1) => {
                BreakerState::Closed { failures: failures + 1 }
            }
            _ => open,
        };
    }

    /// Gives back a half-open probe that was not used, so the next send may probe.
    fn release_probe(&mut self, now: Instant) {
        if self.state == BreakerState::HalfOpen {
            self.state = BreakerState::Open { until: now };
        }
    }

    pub fn status(&self) -> BreakerStatus {
        match self.state {
            BreakerState::Closed { .. } => BreakerStatus::Closed,
            BreakerState::Open { .. } => BreakerStatus::Open,
            BreakerState::HalfOpen => BreakerStatus::HalfOpen,
        }
    }
}

/// A token bucket: `rate` sends per second on average, bursts up to `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_second: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        TokenBucket { rate: rate_per_second.max(f64::MIN_POSITIVE), burst, tokens: burst, at: now }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// A rate limit from config.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    /// Defaults to one second's worth.
    #[serde(default)]
    pub burst: Option<f64>,
}

impl RateLimit {
    fn bucket(&self, now: Instant) -> TokenBucket {
        TokenBucket::new(self.per_second, self.burst.unwrap_or(self.per_second), now)
    }
}

/// How long to wait before the next attempt of a message whose attempts all failed
/// transiently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts (passes over the providers) before the message becomes a dead letter.
    pub max_attempts: u32,
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 6, base_ms: 2_000, max_ms: 600_000 }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(max, base · 2^(attempt−1))], never less than the wait a
    /// provider asked for. `unit` is a uniform number in [0, 1).
    pub fn backoff(&self, attempt: u32, unit: f64, asked: Option<Duration>) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let cap = self.base_ms.saturating_mul(1 << exp).min(self.max_ms);
        let wait = Duration::from_millis((cap as f64 * unit.clamp(0.0, 1.0)) as u64);
        wait.max(asked.unwrap_or_default())
    }
}

/// One provider with its breaker and optional rate limit.
pub struct Slot {
    pub provider: Arc<dyn Provider>,
    breaker: Mutex<CircuitBreaker>,
    limit: Option<Mutex<TokenBucket>>,
}

impl Slot {
    pub fn new(provider: Arc<dyn Provider>, breaker: BreakerConfig, limit: Option<RateLimit>) -> Self {
        let now = Instant::now();
        Slot {
            provider,
            breaker: Mutex::new(CircuitBreaker::new(breaker)),
            limit: limit.map(|l| Mutex::new(l.bucket(now))),
        }
    }

    pub fn breaker_status(&self) -> BreakerStatus {
        lock(&self.breaker).status()
    }
}

/// A channel's providers in priority order with the channel's own rate limit.
pub struct Route {
    pub slots: Vec<Slot>,
    limit: Option<Mutex<TokenBucket>>,
}

impl Route {
    pub fn new(slots: Vec<Slot>, limit: Option<RateLimit>) -> Self {
        Route { slots, limit: limit.map(|l| Mutex::new(l.bucket(Instant::now()))) }
    }

    /// Most sends the route carries at once: its first choice's capacity (failover is the
    /// exception, not the pace).
    pub fn capacity(&self) -> Option<usize> {
        self.slots.first().and_then(|s| s.provider.capacity())
    }

    /// Whether every provider of the route drops duplicates by message id (so a send whose
    /// outcome a crash hid may be repeated).
    pub fn deduplicates(&self) -> bool {
        !self.slots.is_empty() && self.slots.iter().all(|s| s.provider.deduplicates())
    }
}

/// What one attempt did with one provider.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Try {
    pub provider: String,
    /// `sent`, `circuit_open`, `rate_limited` (our limit), or a [`FailureKind`].
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<SendError>,
}

/// The result of one pass over a channel's providers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Sent {
        provider: String,
        receipt: Receipt,
        tries: Vec<Try>,
    },
    /// Worth another pass later (a transient failure, a provider's or our rate limit, open
    /// circuits), not before `after`.
    Retry {
        after: Duration,
        tries: Vec<Try>,
    },
    /// The recipient cannot get it: no retry anywhere, suppress the channel for the user.
    Undeliverable {
        error: SendError,
        tries: Vec<Try>,
    },
    /// Every provider refused it for its own reasons (or none is configured): a dead letter.
    Refused {
        tries: Vec<Try>,
    },
}

/// Routes messages to their channel's providers.
#[derive(Default)]
pub struct Router {
    routes: HashMap<Channel, Route>,
}

impl Router {
    pub fn new(routes: HashMap<Channel, Route>) -> Self {
        Router { routes }
    }

    pub fn route(&self, channel: Channel) -> Option<&Route> {
        self.routes.get(&channel)
    }

    /// The smallest capacity of any route, when one is limited.
    pub fn capacity(&self) -> Option<usize> {
        self.routes.values().filter_map(Route::capacity).min()
    }

    /// One pass: the first provider (in priority order) whose circuit is closed and whose rate
    /// limit has room gets the message; on a transient, rate-limit or provider failure the
    /// next one does. A recipient failure ends the pass, since no provider can help.
    pub async fn send(&self, message: &Message) -> Outcome {
        let Some(route) = self.routes.get(&message.channel).filter(|r| !r.slots.is_empty()) else {
            return Outcome::Refused {
                tries: vec![Try {
                    provider: String::new(),
                    result: "no_provider".into(),
                    error: Some(SendError::new(
                        FailureKind::Provider,
                        "no_provider",
                        format!("no provider is configured for channel {}", message.channel),
                    )),
                }],
            };
        };
        if let Some(limit) = &route.limit
            && let Err(wait) = lock(limit).take(Instant::now())
        {
            let tries = vec![Try { provider: String::new(), result: "rate_limited".into(), error: None }];
            return Outcome::Retry { after: wait, tries };
        }
        let mut tries = Vec::new();
        let mut retry_after: Option<Duration> = None;
        let mut retryable = false;
        for slot in &route.slots {
            let name = slot.provider.name().to_owned();
            let now = Instant::now();
            if !lock(&slot.breaker).allow(now) {
                tries.push(Try { provider: name, result: "circuit_open".into(), error: None });
                retryable = true;
                continue;
            }
            if let Some(limit) = &slot.limit
                && let Err(wait) = lock(limit).take(now)
            {
                tries.push(Try { provider: name, result: "rate_limited".into(), error: None });
                retry_after = Some(retry_after.map_or(wait, |w| w.min(wait)));
                retryable = true;
                // A probe let through by a half-open breaker was not used: let the next one go.
                lock(&slot.breaker).release_probe(now);
                continue;
            }
            match slot.provider.send(message).await {
                Ok(receipt) => {
                    lock(&slot.breaker).success();
                    tries.push(Try { provider: name.clone(), result: "sent".into(), error: None });
                    return Outcome::Sent { provider: name, receipt, tries };
                }
                Err(error) => {
                    let kind = error.kind;
                    match kind {
                        FailureKind::Recipient => lock(&slot.breaker).success(),
                        FailureKind::RateLimited => lock(&slot.breaker).release_probe(Instant::now()),
                        FailureKind::Transient | FailureKind::Provider => {
                            lock(&slot.breaker).failure(Instant::now())
                        }
                    }
                    if let Some(wait) = error.retry_after() {
                        retry_after = Some(retry_after.map_or(wait, |w| w.max(wait)));
                    }
                    let result = kind.as_str().to_owned();
                    tries.push(Try { provider: name, result, error: Some(error.clone()) });
                    match kind {
                        FailureKind::Recipient => return Outcome::Undeliverable { error, tries },
                        FailureKind::Transient | FailureKind::RateLimited => retryable = true,
                        FailureKind::Provider => {}
                    }
                }
            }
        }
        if retryable {
            Outcome::Retry { after: retry_after.unwrap_or_default(), tries }
        } else {
            Outcome::Refused { tries }
        }
    }
}

/// Breakers and buckets are plain data: a panic elsewhere cannot leave them inconsistent, so a
/// poisoned lock is taken over.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::{MessageKind, Recipient};

    /// A provider that answers from a script, one answer per call, and counts calls.
    struct Scripted {
        name: String,
        answers: Mutex<Vec<Result<Receipt, SendError>>>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(name: &str, answers: Vec<Result<Receipt, SendError>>) -> Arc<Scripted> {
            Arc::new(Scripted { name: name.into(), answers: Mutex::new(answers), calls: AtomicUsize::new(0) })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait::async_trait]
    impl Provider for Scripted {
        fn name(&self) -> &str {
            &self.name
        }
        fn channel(&self) -> Channel {
            Channel::Email
        }
        async fn send(&self, _: &Message) -> Result<Receipt, SendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.answers.lock().unwrap();
            if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() }
        }
    }

    fn ok(id: &str) -> Result<Receipt, SendError> {
        Ok(Receipt { provider_message_id: Some(id.into()) })
    }

    fn err(kind: FailureKind) -> Result<Receipt, SendError> {
        Err(SendError::new(kind, "x", "scripted failure"))
    }

    fn message() -> Message {
        Message {
            id: "m1".into(),
            workspace: "ws".into(),
            person: "1".into(),
            user_id: None,
            channel: Channel::Email,
            kind: MessageKind::Marketing,
            recipient: Recipient::Email { address: "a@example.com".into(), name: None },
            subject: Some("s".into()),
            text: "t".into(),
            html: None,
            headers: Vec::new(),
            data: BTreeMap::new(),
        }
    }

    fn router(slots: Vec<Slot>) -> Router {
        Router::new(HashMap::from([(Channel::Email, Route::new(slots, None))]))
    }

    fn slot(p: &Arc<Scripted>) -> Slot {
        Slot::new(p.clone(), BreakerConfig { failures: 2, cool_down_ms: 1_000 }, None)
    }

    #[tokio::test(start_paused = true)]
    async fn fails_over_on_transient_and_provider_errors_but_not_on_recipient_errors() {
        let primary = Scripted::new("primary", vec![err(FailureKind::Transient)]);
        let backup = Scripted::new("backup", vec![ok("b-1")]);
        let r = router(vec![slot(&primary), slot(&backup)]);
        match r.send(&message()).await {
            Outcome::Sent { provider, receipt, tries } => {
                assert_eq!(provider, "backup");
                assert_eq!(receipt.provider_message_id.as_deref(), Some("b-1"));
                assert_eq!(
                    tries.iter().map(|t| t.result.as_str()).collect::<Vec<_>>(),
                    ["transient", "sent"]
                );
            }
            other => panic!("{other:?}"),
        }

        let primary = Scripted::new("primary", vec![err(FailureKind::Recipient)]);
        let backup = Scripted::new("backup", vec![ok("b-1")]);
        let r = router(vec![slot(&primary), slot(&backup)]);
        assert!(matches!(r.send(&message()).await, Outcome::Undeliverable { .. }));
        assert_eq!(backup.calls(), 0, "no provider can deliver to a bad address");
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_consecutive_failures_and_probes_after_the_cool_down() {
        let primary =
            Scripted::new("primary", vec![err(FailureKind::Transient), err(FailureKind::Transient), ok("p")]);
        let backup = Scripted::new("backup", vec![ok("b")]);
        let r = router(vec![slot(&primary), slot(&backup)]);
        for _ in 0..2 {
            assert!(
                matches!(r.send(&message()).await, Outcome::Sent { ref provider, .. } if provider == "backup")
            );
        }
        assert_eq!(r.route(Channel::Email).unwrap().slots[0].breaker_status(), BreakerStatus::Open);
        // Open: the primary is skipped without a call.
        assert!(
            matches!(r.send(&message()).await, Outcome::Sent { ref provider, .. } if provider == "backup")
        );
        assert_eq!(primary.calls(), 2);
        // After the cool-down one probe goes through; it succeeds and closes the circuit.
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(
            matches!(r.send(&message()).await, Outcome::Sent { ref provider, .. } if provider == "primary")
        );
        assert_eq!(r.route(Channel::Email).unwrap().slots[0].breaker_status(), BreakerStatus::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn all_transient_is_a_retry_honouring_retry_after_and_all_refused_is_a_dead_letter() {
        let mut limited = SendError::new(FailureKind::RateLimited, "429", "slow down");
        limited.retry_after_ms = Some(7_000);
        let a = Scripted::new("a", vec![Err(limited)]);
        let b = Scripted::new("b", vec![err(FailureKind::Transient)]);
        match router(vec![slot(&a), slot(&b)]).send(&message()).await {
            Outcome::Retry { after, tries } => {
                assert_eq!(after, Duration::from_secs(7));
                assert_eq!(tries.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        let a = Scripted::new("a", vec![err(FailureKind::Provider)]);
        assert!(matches!(router(vec![slot(&a)]).send(&message()).await, Outcome::Refused { .. }));
        assert!(matches!(Router::default().send(&message()).await, Outcome::Refused { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_hold_sends_back() {
        let a = Scripted::new("a", vec![ok("a")]);
        let b = Scripted::new("b", vec![ok("b")]);
        let limited =
            Slot::new(a.clone(), BreakerConfig::default(), Some(RateLimit { per_second: 1.0, burst: None }));
        let r = router(vec![limited, slot(&b)]);
        assert!(matches!(r.send(&message()).await, Outcome::Sent { ref provider, .. } if provider == "a"));
        // a's bucket is empty: the next send fails over to b rather than waiting.
        assert!(matches!(r.send(&message()).await, Outcome::Sent { ref provider, .. } if provider == "b"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(r.send(&message()).await, Outcome::Sent { ref provider, .. } if provider == "a"));

        let channel_limited = Router::new(HashMap::from([(
            Channel::Email,
            Route::new(vec![slot(&b)], Some(RateLimit { per_second: 2.0, burst: Some(1.0) })),
        )]));
        assert!(matches!(channel_limited.send(&message()).await, Outcome::Sent { .. }));
        match channel_limited.send(&message()).await {
            Outcome::Retry { after, .. } => assert_eq!(after, Duration::from_millis(500)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_up_to_the_cap() {
        let p = RetryPolicy { max_attempts: 5, base_ms: 1_000, max_ms: 10_000 };
        assert_eq!(p.backoff(1, 0.999_999, None), Duration::from_millis(999));
        assert_eq!(p.backoff(3, 0.5, None), Duration::from_millis(2_000));
        assert_eq!(p.backoff(9, 1.0, None), Duration::from_millis(10_000), "capped");
        assert_eq!(p.backoff(2, 0.0, None), Duration::ZERO, "full jitter reaches zero");
        assert_eq!(
            p.backoff(2, 0.0, Some(Duration::from_secs(3))),
            Duration::from_secs(3),
            "the provider's wait wins"
        );
    }
}
