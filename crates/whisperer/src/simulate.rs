//! `whisperer simulate`: a synthetic SaaS population (`whisperer-sim`) written as JSON lines for
//! `whisperer import`, or sent through the Segment HTTP API to a running server, optionally with
//! the simulator's true churn hazards as of a time (the oracle) written as CSV.
//!
//! The simulation runs on a blocking thread (it is CPU work); over HTTP it hands `/v1/batch`
//! bodies through a bounded channel to concurrent senders, so memory stays flat however many
//! users are simulated. Bodies carry no `sentAt`: the server would take it for clock skew and
//! move the historical timestamps to the present.

use anyhow::{Context, bail};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use whisperer_core::Millis;
use whisperer_core::time::parse_iso8601;
use whisperer_sim::{DAY_MS, Message, SimConfig, Simulation};

#[derive(Clone, Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["output", "url", "campaigns"])))]
pub struct SimulateArgs {
    /// Users who sign up during the simulated window.
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Same seed and options, same messages (byte for byte).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Days simulated, up to --end.
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// When the simulation ends (ISO-8601) [default: today 00:00 UTC].
    #[arg(long, value_parser = parse_time)]
    pub end: Option<Millis>,
    /// Write the messages as JSON lines to this file (`-` for stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Send the messages to this server's Segment API (`POST /v1/batch`).
    #[arg(long, requires = "write_key")]
    pub url: Option<String>,
    /// Run these campaign files (TOML/JSON) against the population in process: decisions,
    /// fatigue rules and learning, with the chosen messages rendered, gated and delivered to
    /// the simulated users.
    #[arg(long, num_args = 1.., conflicts_with_all = ["output", "url", "oracle_out"])]
    pub campaigns: Vec<PathBuf>,
    /// With --campaigns: the message templates (`<id>.json` definitions) the campaigns name
    /// [default: examples/templates, else `templates` beside the campaigns' directory].
    #[arg(long, requires = "campaigns")]
    pub templates: Option<PathBuf>,
    /// With --campaigns: write the closed loop's report (uplift, regret, arms) as JSON here.
    #[arg(long, requires = "campaigns")]
    pub report_json: Option<PathBuf>,
    /// With --campaigns: store the campaigns and every decision (with its outcome) in this
    /// workspace, for `whisperer experiment report` and `decisions` queries.
    #[arg(long, requires = "campaigns")]
    pub record_workspace: Option<String>,
    #[command(flatten)]
    pub store: crate::config::StoreArgs,
    /// The workspace write key, for --url.
    #[arg(long)]
    pub write_key: Option<String>,
    /// Concurrent connections, for --url.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Messages per request, for --url.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Write the oracle's churn hazards as CSV (`user_id,churn_hazard`) to this file.
    #[arg(long, requires = "as_of")]
    pub oracle_out: Option<PathBuf>,
    /// The time the oracle's hazards are computed at (ISO-8601, inside the simulated window).
    #[arg(long, value_parser = parse_time, requires = "oracle_out")]
    pub as_of: Option<Millis>,
    /// The oracle's horizon: a user's hazard is the probability of no events in the
    /// --horizon-days days after --as-of.
    #[arg(long, default_value_t = 14)]
    pub horizon_days: u32,
}

fn parse_time(s: &str) -> Result<Millis, String> {
    parse_iso8601(s).map_err(|e| format!("{e}: {s:?}"))
}

/// Largest `/v1/batch` body sent, well under the server's default request limit (500 KB).
const MAX_BODY_BYTES: usize = 400 * 1024;
/// Attempts per request before giving up on a server that keeps failing.
const MAX_ATTEMPTS: u32 = 8;

/// What the oracle step produced.
struct OracleSummary {
    path: PathBuf,
    users: usize,
    mean: f64,
}

/// The end of the simulation: the counts of what it did.
struct Finished {
    sim: Simulation,
    oracle: Option<OracleSummary>,
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let end = args.end.unwrap_or_else(|| Millis(Millis::now().0.div_euclid(DAY_MS) * DAY_MS));
    let config = SimConfig { users: args.users, seed: args.seed, ..SimConfig::ending_at(end, args.days) };
    if let Some(as_of) = args.as_of
        && !(config.start..=config.end).contains(&as_of)
    {
        bail!("--as-of {as_of} is outside the simulated window {} .. {}", config.start, config.end);
    }
    if !args.campaigns.is_empty() {
        return run_campaigns(config, &args).await;
    }
    let sim = Simulation::new(config).context("invalid simulation options")?;
    let started = Instant::now();
    let (finished, sent) = match (&args.output, &args.url) {
        (Some(path), _) => {
            let (path, args) = (path.clone(), args.clone());
            let finished = tokio::task::spawn_blocking(move || write_jsonl(sim, &path, &args))
                .await
                .context("simulation thread failed")??;
            (finished, None)
        }
        (None, Some(url)) => {
            let (finished, sent) = send_http(sim, url, &args).await?;
            (finished, Some(sent))
        }
        (None, None) => unreachable!("clap requires --output or --url"),
    };
    print_summary(&args, &finished, sent.as_ref(), started.elapsed());
    if let Some(sent) = &sent
        && sent.rejected > 0
    {
        bail!(
            "the server rejected {} messages; first: {}",
            sent.rejected,
            sent.first_rejection.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

/// `--campaigns`: the closed loop, with its report on stdout (and in `--report-json`).
async fn run_campaigns(config: SimConfig, args: &SimulateArgs) -> anyhow::Result<()> {
    let mut campaigns = crate::closed_loop::load_campaigns(&args.campaigns)?;
    let templates_dir =
        args.templates.clone().unwrap_or_else(|| crate::closed_loop::default_templates_dir(&args.campaigns));
    let templates = crate::closed_loop::load_templates(&templates_dir)?;
    // Open the store first: a wrong workspace fails before the simulation runs.
    let target = match &args.record_workspace {
        Some(ws) => {
            let db = crate::server::open_store(&crate::config::Config::load(&args.store, None)?).await?;
            let ws = crate::admin::existing_workspace(&db, ws).await?;
            for c in &mut campaigns {
                let stored = db.put_campaign(&ws, &c.spec.id, &c.spec.to_json(), Millis::now()).await?;
                c.version = stored.version;
            }
            Some((db, ws))
        }
        None => None,
    };
    let keep = target.is_some();
    let started = Instant::now();
    let days = args.days;
    // CPU work: on a blocking thread, driving the loop's async sends itself.
    let runtime = tokio::runtime::Handle::current();
    let report = tokio::task::spawn_blocking(move || {
        runtime.block_on(crate::closed_loop::run(config, campaigns, templates, keep, |day| {
            if day % 10 == 0 {
                eprintln!("day {day} of {days}");
            }
        }))
    })
    .await
    .context("simulation thread failed")??;
    eprintln!("{}", crate::closed_loop::summary(&report, started.elapsed()));
    if let Some((db, ws)) = &target {
        for chunk in report.records.chunks(5_000) {
            db.insert_decisions(ws, chunk, &[]).await?;
        }
        for chunk in report.outcomes.chunks(5_000) {
            db.record_outcomes(ws, chunk).await?;
        }
        eprintln!("stored {} decisions in workspace {ws}", report.records.len());
    }
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.report_json {
        std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{json}");
    Ok(())
}

/// Runs the whole simulation, stopping at `--as-of` to write the oracle's hazards.
fn drive(
    mut sim: Simulation,
    args: &SimulateArgs,
    mut emit: impl FnMut(&Message<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<Finished> {
    let mut oracle = None;
    if let (Some(as_of), Some(path)) = (args.as_of, &args.oracle_out) {
        sim.try_advance_to(as_of, &mut emit)?;
        oracle = Some(write_oracle(&sim, as_of, args.horizon_days, path)?);
    }
    sim.try_run_to_end(&mut emit)?;
    Ok(Finished { sim, oracle })
}

fn write_oracle(
    sim: &Simulation,
    as_of: Millis,
    horizon_days: u32,
    path: &Path,
) -> anyhow::Result<OracleSummary> {
    let hazards = sim.oracle_churn_hazards(as_of, horizon_days);
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "user_id,churn_hazard")?;
    for (user_id, hazard) in &hazards {
        writeln!(out, "{user_id},{hazard:.6}")?;
    }
    out.flush().with_context(|| format!("cannot write {}", path.display()))?;
    let mean = hazards.iter().map(|(_, p)| p).sum::<f64>() / hazards.len().max(1) as f64;
    Ok(OracleSummary { path: path.to_owned(), users: hazards.len(), mean })
}

fn write_jsonl(sim: Simulation, path: &Path, args: &SimulateArgs) -> anyhow::Result<Finished> {
    let sink: Box<dyn Write> = if path == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?)
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    let mut line = Vec::with_capacity(1024);
    let finished = drive(sim, args, |m| {
        line.clear();
        m.write_json(&mut line);
        line.push(b'\n');
        out.write_all(&line).with_context(|| format!("cannot write {}", path.display()))
    })?;
    out.flush().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(finished)
}

/// What the server said about everything sent.
#[derive(Debug, Default)]
struct Sent {
    requests: u64,
    retries: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    first_rejection: Option<String>,
}

async fn send_http(sim: Simulation, url: &str, args: &SimulateArgs) -> anyhow::Result<(Finished, Sent)> {
    let write_key = args.write_key.clone().context("--url needs --write-key")?;
    let endpoint = format!("{}/v1/batch", url.trim_end_matches('/'));
    let concurrency = args.concurrency.max(1);
    let batch_size = args.batch_size.max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(concurrency * 2);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let failed = Arc::new(AtomicBool::new(false));
    let retries = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (client, rx, failed, retries) = (client.clone(), rx.clone(), failed.clone(), retries.clone());
        let (endpoint, write_key) = (endpoint.clone(), write_key.clone());
        senders.push(tokio::spawn(async move {
            let mut sent = Sent::default();
            while !failed.load(Ordering::Relaxed) {
                let Some(body) = rx.lock().await.recv().await else { break };
                match post_with_retry(&client, &endpoint, &write_key, body, &retries).await {
                    Ok(answer) => {
                        sent.requests += 1;
                        sent.absorb(&answer);
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok(sent)
        }));
    }
    drop(rx);
    let generator_args = args.clone();
    let generator = tokio::task::spawn_blocking(move || {
        let mut body = Vec::with_capacity(MAX_BODY_BYTES + 64 * 1024);
        let mut count = 0u64;
        let ship = |body: &mut Vec<u8>, count: &mut u64| -> anyhow::Result<()> {
            body.extend_from_slice(b"]}");
            *count = 0;
            let full = std::mem::replace(body, Vec::with_capacity(MAX_BODY_BYTES + 64 * 1024));
            tx.blocking_send(full).map_err(|_| anyhow::anyhow!("the senders stopped"))
        };
        let finished = drive(sim, &generator_args, |m| {
            body.extend_from_slice(if count == 0 { b"{\"batch\":[" } else { b"," });
            m.write_json(&mut body);
            count += 1;
            if count as usize >= batch_size || body.len() >= MAX_BODY_BYTES {
                ship(&mut body, &mut count)?;
            }
            Ok(())
        });
        if count > 0 && finished.is_ok() {
            ship(&mut body, &mut count)?;
        }
        finished
    });
    let generated = generator.await.context("simulation thread failed")?;
    let mut total = Sent::default();
    let mut first_error = None;
    for sender in senders {
        match sender.await.context("sender task failed")? {
            Ok(sent) => total.merge(sent),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    total.retries = retries.load(Ordering::Relaxed);
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok((generated?, total))
}

impl Sent {
    fn absorb(&mut self, answer: &serde_json::Value) {
        self.accepted += answer["accepted"].as_u64().unwrap_or(0);
        self.duplicates += answer["duplicates"].as_u64().unwrap_or(0);
        if let Some(rejected) = answer["rejected"].as_array() {
            self.rejected += rejected.len() as u64;
            if self.first_rejection.is_none()
                && let Some(first) = rejected.first()
            {
                self.first_rejection = Some(first.to_string());
            }
        }
    }

    fn merge(&mut self, other: Sent) {
        self.requests += other.requests;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected += other.rejected;
        if self.first_rejection.is_none() {
            self.first_rejection = other.first_rejection;
        }
    }
}

/// Posts one batch; retries connection errors, 5xx and 429 with exponential backoff and jitter.
/// A retry never stores anything twice: the server deduplicates by message id.
async fn post_with_retry(
    client: &reqwest::Client,
    endpoint: &str,
    write_key: &str,
    body: Vec<u8>,
    retries: &AtomicU64,
) -> anyhow::Result<serde_json::Value> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = client
            .post(endpoint)
            .basic_auth(write_key, Some(""))
            .header("content-type", "application/json")
            .body(body.clone()) // a copy of ~40 KB per attempt, to keep the bytes for a retry
            .send()
            .await;
        let retryable = match result {
            Ok(response) if response.status().is_success() => {
                return response.json().await.context("the server's answer is not JSON");
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                if !(status.is_server_error() || status.as_u16() == 429) {
                    bail!("POST {endpoint} failed with HTTP {status}: {text}");
                }
                format!("HTTP {status}: {text}")
            }
            Err(e) => format!("{e}"),
        };
        if attempt >= MAX_ATTEMPTS {
            bail!("POST {endpoint} failed {attempt} times; last: {retryable}");
        }
        retries.fetch_add(1, Ordering::Relaxed);
        let backoff_ms = (100u64 << attempt.min(7)).min(10_000);
        let jitter = rand::random::<u64>() % (backoff_ms / 2 + 1);
        tokio::time::sleep(Duration::from_millis(backoff_ms / 2 + jitter)).await;
    }
}

fn print_summary(args: &SimulateArgs, finished: &Finished, sent: Option<&Sent>, elapsed: Duration) {
    let sim = &finished.sim;
    let stats = sim.stats();
    let config = sim.config();
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "simulated {} users over {} days ({} .. {}), seed {}",
        config.users, args.days, config.start, config.end, config.seed
    );
    eprintln!("  signups       {}", stats.signups);
    eprintln!(
        "  messages      {} in {:.1} s ({:.0} messages/s)",
        stats.messages,
        secs,
        stats.messages as f64 / secs
    );
    for (name, count) in stats.by_name() {
        eprintln!("    {name:<22} {count:>10}");
    }
    eprintln!("  churned       {} times; {} users churned at the end", stats.churns, sim.churned_now());
    eprintln!("  resurrected   {}", stats.resurrections);
    if let Some(oracle) = &finished.oracle {
        eprintln!(
            "  oracle        {} users, mean {}-day churn hazard {:.3} as of {} -> {}",
            oracle.users,
            args.horizon_days,
            oracle.mean,
            args.as_of.map(|t| t.to_string()).unwrap_or_default(),
            oracle.path.display()
        );
    }
    if let Some(sent) = sent {
        eprintln!(
            "  sent          {} requests ({} retries): {} accepted, {} duplicates, {} rejected",
            sent.requests, sent.retries, sent.accepted, sent.duplicates, sent.rejected
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    /// A server whose `/v1/batch` answers `status` for the first `failures` requests, then 200.
    async fn flaky_server(failures: u64, status: StatusCode) -> (String, Arc<AtomicU64>) {
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/v1/batch",
            axum::routing::post(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failures {
                        (status, "try again").into_response()
                    } else {
                        axum::Json(serde_json::json!({"accepted": 2, "duplicates": 0, "rejected": []}))
                            .into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/batch", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits)
    }

    #[tokio::test]
    async fn server_errors_are_retried_client_errors_are_not() {
        let client = reqwest::Client::new();
        let retries = AtomicU64::new(0);
        let (url, hits) = flaky_server(2, StatusCode::SERVICE_UNAVAILABLE).await;
        let answer =
            post_with_retry(&client, &url, "wk", b"{\"batch\":[]}".to_vec(), &retries).await.unwrap();
        assert_eq!(answer["accepted"], 2);
        assert_eq!((hits.load(Ordering::SeqCst), retries.load(Ordering::SeqCst)), (3, 2));

        let (url, hits) = flaky_server(1, StatusCode::UNAUTHORIZED).await;
        let err = post_with_retry(&client, &url, "wk", b"{}".to_vec(), &retries).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "a bad key is not retried");
    }
}
