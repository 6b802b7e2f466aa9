//! Email throughput: messages rendered from a template (`whisperer-templates`) and delivered
//! over SMTP through the provider's connection pool to a local sink, emails per second.
//!
//! Two sinks: a minimal SMTP server written here on tokio (so the figure is the provider's,
//! not the sink's), and aiosmtpd (`tests/smtp/sink.py`) when `scripts/setup-test-deps` has
//! installed it. Each is measured three times; the median is printed.
//!
//! `cargo bench -p whisperer-channels --bench email`; `EMAIL_BENCH_N` messages per run
//! (default 6000), `EMAIL_BENCH_CONNECTIONS` pool size (default 16).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use whisperer_channels::email::{SmtpConfig, SmtpProvider, SmtpTls};
use whisperer_channels::{Channel, Message, MessageKind, Provider, Recipient};
use whisperer_templates::{Schema, TemplateSet};

#[path = "support/smtp_sink.rs"]
mod smtp_sink;
use smtp_sink::rust_sink;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn templates() -> TemplateSet {
    let mut set = TemplateSet::new("en");
    set.insert(
        "en",
        "{{ traits.first_name }}, your cart misses you",
        "Hi {{ traits.first_name }},\n\nyou left {{ traits.items }} items in your cart.\n\
         Unsubscribe: {{ unsubscribe_url }}\n",
        Some(
            "<html><body><p>Hi {{ traits.first_name }},</p><p>you left <b>{{ traits.items }}</b> items \
             in your cart.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>",
        ),
        &Schema::messages::<&str>(&[]),
    )
    .expect("bench templates are valid");
    set
}

/// Renders and builds message `i`.
fn message(set: &TemplateSet, i: usize) -> Message {
    let unsubscribe = format!("https://u.shop.example/u/tok{i}");
    let ctx = json!({
        "traits": {"first_name": format!("Ada{i}"), "items": i % 7 + 1},
        "unsubscribe_url": unsubscribe,
    });
    let rendered = set.render("en", &ctx).expect("bench render");
    Message {
        id: format!("bench_{i}"),
        workspace: "ws_bench".into(),
        person: format!("p_{i}"),
        user_id: None,
        channel: Channel::Email,
        kind: MessageKind::Marketing,
        recipient: Recipient::Email { address: format!("user{i}@example.com"), name: None },
        subject: Some(rendered.subject),
        text: rendered.body,
        html: rendered.html,
        headers: vec![
            ("List-Unsubscribe".into(), format!("<{unsubscribe}>")),
            ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
        ],
        data: BTreeMap::new(),
    }
}

/// One run: `n` messages rendered and sent by `workers` tasks; emails per second.
async fn run(provider: Arc<SmtpProvider>, set: Arc<TemplateSet>, n: usize, workers: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (provider, set, next) = (Arc::clone(&provider), Arc::clone(&set), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let m = message(&set, i);
                    if let Err(e) = provider.send(&m).await {
                        panic!("send {i} failed: {e}");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("bench worker");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

async fn measure(label: &str, port: u16, n: usize, connections: u32) -> f64 {
    let config = SmtpConfig {
        port: Some(port),
        tls: SmtpTls::None,
        max_connections: connections,
        hello_name: Some("bench.client".into()),
        ..SmtpConfig::new("127.0.0.1", "news@shop.example")
    };
    let provider = Arc::new(config.build().expect("bench config"));
    let set = Arc::new(templates());
    // Warm the pool so the runs measure sending, not connecting.
    run(Arc::clone(&provider), Arc::clone(&set), connections as usize * 4, connections as usize * 2).await;
    let mut rates = Vec::new();
    for r in 1..=3 {
        let rate = run(Arc::clone(&provider), Arc::clone(&set), n, connections as usize * 2).await;
        println!("{label}: run {r}: {n} emails in {:.2}s = {rate:.0} emails/s", n as f64 / rate);
        rates.push(rate);
    }
    let m = median(rates);
    println!("{label}: median {m:.0} emails/s ({connections} pooled connections)");
    m
}

async fn aiosmtpd_port() -> Option<(u16, tokio::process::Child)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let deps =
        std::env::var_os("WHISPERER_TEST_DEPS").map(PathBuf::from).unwrap_or_else(|| root.join(".test-deps"));
    let python = deps.join("venv/bin/python");
    if !python.exists() {
        println!("aiosmtpd: skipped, not installed (run scripts/setup-test-deps)");
        return None;
    }
    let mut child = tokio::process::Command::new(python)
        .arg(root.join("tests/smtp/sink.py"))
        .args(["--port", "0", "--quiet"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.ok()?.ok()??;
    let ready: serde_json::Value = serde_json::from_str(&first).ok()?;
    Some((ready["port"].as_u64()? as u16, child))
}

fn main() {
    let n = env_usize("EMAIL_BENCH_N", 6000);
    let connections = env_usize("EMAIL_BENCH_CONNECTIONS", 16) as u32;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "email bench: {n} messages per run, {} cpus",
            std::thread::available_parallelism().map_or(0, |p| p.get())
        );
        let delivered = Arc::new(AtomicU64::new(0));
        let port = rust_sink(Arc::clone(&delivered)).await;
        measure("rust sink", port, n, connections).await;
        let expected = (n * 3 + connections as usize * 4) as u64;
        assert_eq!(delivered.load(Ordering::Relaxed), expected, "the sink received every message");

        if let Some((port, child)) = aiosmtpd_port().await {
            let n = (n / 3).max(500);
            measure("aiosmtpd", port, n, connections).await;
            drop(child);
        }
    });
}
