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
    let (server, url, created) = start_server_with_workspace("")?;
    let key = created["write_key"].as_str().context("no write key")?.to_owned();
    Ok((server, url, key))
}

/// Starts `whisperer serve` on a fresh data dir with `config` as its config file; returns it,
/// its URL and the created workspace (`workspace create`'s JSON).
fn start_server_with_workspace(config: &str) -> anyhow::Result<(ChildServer, String, serde_json::Value)> {
    let dir = tempfile::Builder::new().prefix("whisperer-bench-").tempdir()?;
    let config_file = dir.path().join("bench.toml");
    std::fs::write(&config_file, config)?;
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
    let mut child = Command::new(&exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config_file)
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
    Ok((ChildServer { child, _dir: dir }, url, created))
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

#[derive(Clone, Debug, clap::Args)]
pub struct BenchDecideArgs {
    /// Seconds of load per run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Target decisions/s, paced evenly over the connections.
    #[arg(long, default_value_t = 5_000.0)]
    pub rate: f64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Users, identified before the run (so decisions read real traits and profiles).
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// When the server answers: `stored` (the decision is durable) or `queued` (the server's
    /// `[decide] acknowledge`).
    #[arg(long, default_value = "stored", value_parser = ["stored", "queued"])]
    pub acknowledge: String,
}

/// The campaign the decide benchmark uses: eight arms, Thompson sampling, a holdout, an
/// audience over traits, and the workspace's default fatigue rules (most repeat decisions for
/// a user are suppressed, which still runs every check).
const BENCH_CAMPAIGN: &str = r#"{"id": "bench", "trigger": {"type": "api"}, "audience": "traits.email exists",
  "holdout_percent": 10, "goal": {"event": "Session Started", "within": "3d"},
  "actions": {"channels": ["email", "push"], "contents": [{"id": "a", "template": "a"}, {"id": "b", "template": "b"},
    {"id": "c", "template": "c"}, {"id": "d", "template": "d"}]}}"#;

/// `whisperer bench decide`: `POST /v1/decide` at a fixed rate against a fresh server; every
/// decision is stored before it is answered.
pub async fn decide(args: BenchDecideArgs) -> anyhow::Result<()> {
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut rates = Vec::new();
    for run in 1..=args.runs.max(1) {
        let config = format!("[decide]\nacknowledge = \"{}\"\n", args.acknowledge);
        let (server, url, created) = start_server_with_workspace(&config)?;
        let write = created["write_key"].as_str().context("no write key")?.to_owned();
        let secret = created["secret_key"].as_str().context("no secret key")?.to_owned();
        let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
        // Users first, in batches of identify calls.
        for chunk in (0..args.users).collect::<Vec<_>>().chunks(100) {
            let batch: Vec<serde_json::Value> = chunk
                .iter()
                .map(|i| serde_json::json!({"type": "identify", "userId": format!("user-{i}"), "traits": {"email": format!("u{i}@example.com"), "plan": "pro"}}))
                .collect();
            let res = http
                .post(format!("{url}/v1/batch"))
                .basic_auth(&write, Some(""))
                .json(&serde_json::json!({"batch": batch}))
                .send()
                .await?;
            if !res.status().is_success() {
                bail!("identify batch failed: {}", res.text().await?);
            }
        }
        let res = http
            .put(format!("{url}/v1/campaigns/bench"))
            .bearer_auth(&secret)
            .body(BENCH_CAMPAIGN)
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("campaign failed: {}", res.text().await?);
        }
        // The load runs on a runtime of its own with one thread: fewer threads competing with
        // the server for the two cores, and no hand-offs between workers inside the generator.
        let load = {
            let (url, secret, args) = (url.clone(), secret.clone(), args.clone());
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(drive_decides(&url, &secret, &args))
            })
        };
        let (mut latencies, errors, elapsed) = tokio::task::spawn_blocking(move || load.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the load generator panicked"))??;
        // The server's own view (its latency histogram), apart from the load generator's, which
        // shares the machine.
        let metrics = http.get(format!("{url}/metrics")).send().await?.text().await?;
        let server_p99 = histogram_quantile(&metrics, "/v1/decide", 0.99);
        drop(server);
        latencies.sort_unstable();
        let pct = |q: f64| {
            latencies
                .get(((latencies.len().max(1) - 1) as f64 * q).round() as usize)
                .map_or(0.0, |v| *v as f64 / 1000.0)
        };
        let rate = latencies.len() as f64 / elapsed;
        println!(
            "run {run}: {rate:>7.0} decisions/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  errors {}  (server-side p99 <= {})",
            pct(0.5),
            pct(0.99),
            pct(1.0),
            errors,
            server_p99.map_or("?".to_owned(), |s| format!("{:.2} ms", s * 1000.0)),
        );
        p50s.push(pct(0.5));
        p99s.push(pct(0.99));
        rates.push(rate);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median of {}: {:.0} decisions/s (target {:.0}), p50 {:.2} ms, p99 {:.2} ms ({} users, {} connections, answered when {}; server and load on this machine)",
        args.runs.max(1),
        median(&mut rates),
        args.rate,
        median(&mut p50s),
        median(&mut p99s),
        args.users,
        args.concurrency,
        args.acknowledge
    );
    Ok(())
}

/// Sends `POST /v1/decide` at the paced rate over `args.concurrency` keep-alive connections;
/// returns every answered call's latency in µs, the failures, and the seconds it took.
async fn drive_decides(
    url: &str,
    secret: &str,
    args: &BenchDecideArgs,
) -> anyhow::Result<(Vec<u32>, u64, f64)> {
    let per_worker = Duration::from_secs_f64(args.concurrency as f64 / args.rate);
    let deadline = std::time::Instant::now() + Duration::from_secs(args.seconds);
    let errors = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let local = tokio::task::LocalSet::new();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let errors = errors.clone();
        let mut connection = RawConnection::connect(url, secret).await?;
        let users = args.users.max(1);
        let offset = per_worker.mul_f64(w as f64 / args.concurrency as f64);
        workers.push(local.spawn_local(async move {
            let mut latencies = Vec::new();
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, per_worker);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = w;
            while std::time::Instant::now() < deadline {
                tick.tick().await;
                n += 7_919;
                let body = format!(r#"{{"userId": "user-{}", "campaign": "bench"}}"#, n % users);
                let started = std::time::Instant::now();
                match connection.post("/v1/decide", &body).await {
                    Ok((200, _)) => latencies.push(started.elapsed().as_micros() as u32),
                    Ok(_) => errors.set(errors.get() + 1),
                    Err(e) => {
                        errors.set(errors.get() + 1);
                        eprintln!("decide request failed: {e:#}");
                        break;
                    }
                }
            }
            latencies
        }));
    }
    let started = std::time::Instant::now();
    let latencies = local
        .run_until(async {
            let mut all: Vec<u32> = Vec::new();
            for w in workers {
                all.extend(w.await?);
            }
            anyhow::Ok(all)
        })
        .await?;
    Ok((latencies, errors.get(), started.elapsed().as_secs_f64()))
}

/// A keep-alive HTTP/1.1 connection that does only what the decide benchmark needs: the load
/// generator shares the two cores with the server, so it must cost as little CPU per request
/// as it can (a reqwest request costs several times this one's).
struct RawConnection {
    stream: tokio::net::TcpStream,
    head: String,
    buf: Vec<u8>,
}

impl RawConnection {
    async fn connect(url: &str, auth: &str) -> anyhow::Result<Self> {
        let addr = url.strip_prefix("http://").context("the benchmark speaks plain http")?;
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let head = format!(
            "Host: {addr}\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json\r\nContent-Length: "
        );
        Ok(RawConnection { stream, head, buf: Vec::with_capacity(8192) })
    }

    /// Sends a POST and reads the whole answer; returns its status and body.
    async fn post(&mut self, path: &str, body: &str) -> anyhow::Result<(u16, &[u8])> {
        use tokio::io::AsyncWriteExt;
        let request = format!("POST {path} HTTP/1.1\r\n{}{}\r\n\r\n{body}", self.head, body.len());
        self.stream.write_all(request.as_bytes()).await?;
        self.buf.clear();
        let (status, body_start, length) = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])?;
                let status: u16 = head.get(9..12).context("short status line")?.parse()?;
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .context("answer without content-length")?;
                break (status, end + 4, length);
            }
            self.read_more().await?;
        };
        while self.buf.len() < body_start + length {
            self.read_more().await?;
        }
        Ok((status, &self.buf[body_start..body_start + length]))
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("server closed the connection");
        }
        Ok(())
    }
}

/// The upper bound of the histogram bucket holding quantile `q` of a route's request durations,
/// from the server's OpenMetrics text.
fn histogram_quantile(metrics: &str, route: &str, q: f64) -> Option<f64> {
    let prefix = "whisperer_http_request_duration_seconds_bucket{";
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&format!("route=\"{route}\"")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    buckets.into_iter().find(|(_, c)| *c >= q * total).map(|(le, _)| le)
}
