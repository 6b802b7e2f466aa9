//! `whisperer bench ingest`: the ingestion benchmark. Starts `whisperer serve` as a child
//! process on a scratch data directory (or targets a running server), drives Segment traffic
//! at it and prints throughput and latency percentiles.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::loadgen::LoadConfig;

#[derive(Clone, Debug, clap::Args)]
pub struct BenchIngestArgs {
    /// Seconds of load per run.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Messages per request.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Target events/s (paced); without it, as fast as the server answers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// One message per request, each to its type's endpoint (`/v1/track`, `/v1/page`, …).
    #[arg(long)]
    pub single: bool,
    /// Simulated users.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Repeat the run this many times and report each and the median.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Benchmark a running server instead of starting one (needs --write-key).
    #[arg(long, requires = "write_key")]
    pub url: Option<String>,
    #[arg(long)]
    pub write_key: Option<String>,
}

struct ChildServer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `whisperer serve` on a fresh data dir with a fresh workspace; returns its URL and key.
fn start_server() -> anyhow::Result<(ChildServer, String, String)> {
    let dir = tempfile::Builder::new().prefix("whisperer-bench-").tempdir()?;
    let exe = std::env::current_exe()?;
    let created = Command::new(&exe)
        .args(["workspace", "create", "--name", "bench", "--data-dir"])
        .arg(dir.path())
        .output()
        .context("cannot run whisperer workspace create")?;
    if !created.status.success() {
        bail!("workspace create failed: {}", String::from_utf8_lossy(&created.stderr));
    }
    let created: serde_json::Value = serde_json::from_slice(&created.stdout)?;
    let key = created["write_key"].as_str().context("no write key")?.to_owned();
    let mut child = Command::new(&exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("WHISPERER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start whisperer serve")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    if !url.starts_with("http://") {
        let _ = child.kill();
        bail!("server did not report its address: {line:?}");
    }
    Ok((ChildServer { child, _dir: dir }, url, key))
}

pub async fn ingest(args: BenchIngestArgs) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for run in 1..=args.runs.max(1) {
        let (server, url, key) = match (&args.url, &args.write_key) {
            (Some(url), Some(key)) => (None, url.clone(), key.clone()),
            _ => {
                let (server, url, key) = start_server()?;
                (Some(server), url, key)
            }
        };
        let config = LoadConfig {
            base_url: url,
            write_key: key,
            concurrency: args.concurrency,
            batch_size: if args.single { 1 } else { args.batch_size },
            duration: Duration::from_secs(args.seconds),
            rate: args.rate,
            users: args.users,
            single: args.single,
            seed: run as u64,
        };
        let report = crate::loadgen::run(&config).await;
        drop(server);
        println!(
            "run {run}: {:>9.0} events/s  {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  errors {}",
            report.events_per_sec(),
            report.requests_per_sec(),
            report.percentile_ms(0.5),
            report.percentile_ms(0.99),
            report.percentile_ms(1.0),
            report.errors
        );
        if let Some(e) = &report.first_error {
            println!("       first error: {e}");
        }
        results.push(report);
    }
    let median = |f: &dyn Fn(&crate::loadgen::LoadReport) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!();
    println!("| mode | connections | batch | target rate | events/s | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.2} |",
        if args.single { "single-message endpoints" } else { "POST /v1/batch" },
        args.concurrency,
        if args.single { 1 } else { args.batch_size },
        args.rate.map_or("max".to_owned(), |r| format!("{r:.0}/s")),
        median(&|r| r.events_per_sec()),
        median(&|r| r.requests_per_sec()),
        median(&|r| r.percentile_ms(0.5)),
        median(&|r| r.percentile_ms(0.99)),
    );
    println!(
        "(median of {} run(s); {} cores shared by server and load generator)",
        results.len(),
        num_cpus()
    );
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
