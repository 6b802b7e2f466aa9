//! A load generator speaking the Segment HTTP API, used by the demo and the ingest benchmark.
//!
//! Traffic looks like a SaaS product's: visitors browse anonymously, sign in (identify links
//! their anonymous id), then use features; messages carry browser user agents and IPs and are
//! about 400 bytes each. Every message id is unique, so nothing is dropped as a duplicate.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub base_url: String,
    pub write_key: String,
    /// Concurrent connections.
    pub concurrency: usize,
    /// Messages per request (1 with `single`).
    pub batch_size: usize,
    pub duration: Duration,
    /// Target events per second across all connections; None: as fast as the server answers.
    pub rate: Option<f64>,
    /// Distinct users in the population.
    pub users: usize,
    /// One message per request to its type's endpoint (`/v1/track`, `/v1/page`, …) instead of `/v1/batch`.
    pub single: bool,
    pub seed: u64,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub requests: u64,
    pub events: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Request latencies in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl LoadReport {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency percentile in milliseconds (`q` in 0..=1).
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.61",
];
const FEATURES: &[&str] =
    &["dashboard", "reports", "export", "alerts", "integrations", "billing", "api-keys", "search"];
const PAGES: &[&str] = &["Home", "Pricing", "Docs", "Blog", "Changelog", "Careers"];
const PLANS: &[&str] = &["free", "starter", "pro", "enterprise"];

/// Makes the messages of one connection. Users are split among connections so each user's
/// story (anonymous visit, sign-in, activity) is told in order.
pub struct Generator {
    rng: SmallRng,
    worker: usize,
    workers: usize,
    users: usize,
    identified: Vec<bool>,
    counter: u64,
}

impl Generator {
    pub fn new(seed: u64, worker: usize, workers: usize, users: usize) -> Self {
        let mine = users.div_ceil(workers.max(1));
        Self {
            rng: SmallRng::seed_from_u64(seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            worker,
            workers: workers.max(1),
            users: users.max(1),
            identified: vec![false; mine.max(1)],
            counter: 0,
        }
    }

    pub fn user_id(n: usize) -> String {
        format!("user-{n:06}")
    }

    /// Appends the next message to `out` and returns how many it wrote: 1, or 2 (comma
    /// separated) for a first contact, which is an anonymous page view and then the sign-in.
    pub fn message(&mut self, out: &mut String) -> u64 {
        let slot = self.rng.random_range(0..self.identified.len());
        let user = (slot * self.workers + self.worker) % self.users;
        self.counter += 1;
        let message_id = format!("lg-{}-{}-{:x}", self.worker, self.counter, self.rng.random::<u32>());
        let agent = AGENTS[user % AGENTS.len()];
        let ip = format!("203.0.{}.{}", (user / 250) % 250, user % 250 + 1);
        let user_id = Self::user_id(user);
        let anon = format!("anon-{user:06}");
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let context = format!(
            r#""context":{{"ip":"{ip}","userAgent":"{agent}","library":{{"name":"whisperer-loadgen","version":"1"}},"locale":"en-US"}}"#
        );
        if !self.identified[slot] {
            // First contact: an anonymous page view, then sign-in.
            self.identified[slot] = true;
            let page = PAGES[self.rng.random_range(0..PAGES.len())];
            let _ = write!(
                out,
                r#"{{"type":"page","messageId":"{message_id}-p","anonymousId":"{anon}","name":"{page}","properties":{{"url":"https://example.com/{page}","referrer":"https://www.google.com/"}},"timestamp":"{now}",{context}}},"#
            );
            let plan = PLANS[user % PLANS.len()];
            let _ = write!(
                out,
                r#"{{"type":"identify","messageId":"{message_id}","userId":"{user_id}","anonymousId":"{anon}","traits":{{"email":"{user_id}@example.com","plan":"{plan}","company":"Company {}"}},"timestamp":"{now}",{context}}}"#,
                user % 97
            );
            return 2;
        }
        let roll = self.rng.random_range(0..100);
        if roll < 15 {
            let page = PAGES[self.rng.random_range(0..PAGES.len())];
            let _ = write!(
                out,
                r#"{{"type":"page","messageId":"{message_id}","userId":"{user_id}","anonymousId":"{anon}","name":"{page}","properties":{{"url":"https://example.com/{page}","title":"{page} | Example"}},"timestamp":"{now}",{context}}}"#
            );
        } else {
            let (event, properties) = match roll {
                15..=39 => ("Session Started", r#"{"source":"web"}"#.to_owned()),
                40..=84 => {
                    let f = FEATURES[self.rng.random_range(0..FEATURES.len())];
                    (
                        "Feature Used",
                        format!(r#"{{"feature":"{f}","duration_ms":{}}}"#, self.rng.random_range(10..5000)),
                    )
                }
                85..=92 => {
                    ("Project Created", format!(r#"{{"project_id":"p-{}"}}"#, self.rng.random::<u16>()))
                }
                93..=97 => ("Invite Sent", r#"{"role":"editor"}"#.to_owned()),
                _ => (
                    "Order Completed",
                    format!(r#"{{"revenue":{}.99,"currency":"USD"}}"#, self.rng.random_range(9..300)),
                ),
            };
            let _ = write!(
                out,
                r#"{{"type":"track","messageId":"{message_id}","userId":"{user_id}","anonymousId":"{anon}","event":"{event}","properties":{properties},"timestamp":"{now}",{context}}}"#
            );
        }
        1
    }

    /// A `/v1/batch` body of about `n` messages (a first contact adds one extra message).
    pub fn batch(&mut self, n: usize) -> (String, u64) {
        let mut body = String::with_capacity(n * 450 + 64);
        body.push_str(r#"{"batch":["#);
        let mut count = 0;
        for i in 0..n {
            if i > 0 {
                body.push(',');
            }
            count += self.message(&mut body);
        }
        let _ = write!(
            body,
            r#"],"sentAt":"{}"}}"#,
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        (body, count)
    }
}

/// Drives load as configured and measures it.
pub async fn run(config: &LoadConfig) -> LoadReport {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(config.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client builds");
    let started = Instant::now();
    let deadline = started + config.duration;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..config.concurrency {
        let (client, config, errors) = (client.clone(), config.clone(), errors.clone());
        tasks.push(tokio::spawn(async move { worker_loop(worker, client, config, deadline, errors).await }));
    }
    let mut report = LoadReport::default();
    for task in tasks {
        if let Ok((requests, events, latencies, first_error)) = task.await {
            report.requests += requests;
            report.events += events;
            report.latencies_us.extend(latencies);
            if report.first_error.is_none() {
                report.first_error = first_error;
            }
        }
    }
    report.elapsed = started.elapsed();
    report.errors = errors.load(Ordering::Relaxed);
    report.latencies_us.sort_unstable();
    report
}

async fn worker_loop(
    worker: usize,
    client: reqwest::Client,
    config: LoadConfig,
    deadline: Instant,
    errors: Arc<AtomicU64>,
) -> (u64, u64, Vec<u32>, Option<String>) {
    let mut generator = Generator::new(config.seed, worker, config.concurrency, config.users);
    let per_request = if config.single { 1 } else { config.batch_size.max(1) };
    let interval = config
        .rate
        .map(|rate| Duration::from_secs_f64(per_request as f64 * config.concurrency as f64 / rate));
    let url = if config.single {
        format!("{}/v1/track", config.base_url)
    } else {
        format!("{}/v1/batch", config.base_url)
    };
    let (mut requests, mut events, mut latencies, mut first_error) = (0u64, 0u64, Vec::new(), None);
    // Stagger paced workers so their requests do not arrive in lockstep.
    let mut next_send = Instant::now()
        + interval.map_or(Duration::ZERO, |i| i.mul_f64(worker as f64 / config.concurrency as f64));
    while Instant::now() < deadline {
        if interval.is_some() {
            tokio::time::sleep_until(next_send.into()).await;
        }
        let (body, count, target) = if config.single {
            let mut body = String::with_capacity(512);
            let count = generator.message(&mut body);
            if count > 1 {
                // A first contact made two messages; send them as a batch to keep the story.
                (format!(r#"{{"batch":[{body}]}}"#), count, format!("{}/v1/batch", config.base_url))
            } else {
                // Each message goes to the endpoint of its type, as a Segment library would send it.
                let kind = body
                    .strip_prefix(r#"{"type":""#)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or("track");
                let target = format!("{}/v1/{kind}", config.base_url);
                (body, 1, target)
            }
        } else {
            let (body, count) = generator.batch(per_request);
            (body, count, url.clone())
        };
        let sent = Instant::now();
        let result = client.post(&target).basic_auth(&config.write_key, Some("")).body(body).send().await;
        let ok = match result {
            Ok(response) if response.status().is_success() => {
                let _ = response.bytes().await;
                true
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                first_error.get_or_insert_with(|| format!("HTTP {status}: {text}"));
                false
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
                false
            }
        };
        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        requests += 1;
        if ok {
            events += count;
        } else {
            errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(interval) = interval {
            next_send += interval;
        }
    }
    (requests, events, latencies, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_valid_segment_json_of_realistic_size() {
        let mut g = Generator::new(1, 0, 2, 100);
        for _ in 0..20 {
            let (body, count) = g.batch(100);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let batch = v["batch"].as_array().unwrap();
            assert_eq!(batch.len() as u64, count);
            let avg = body.len() / batch.len();
            assert!((250..=600).contains(&avg), "average message size {avg}");
            assert!(batch.iter().all(|m| m["messageId"].is_string() && m["type"].is_string()));
        }
    }
}
