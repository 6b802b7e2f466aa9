//! `whisperer demo`: the whole spine on a laptop in under a minute, no services needed.
//!
//! Starts a server on a scratch data directory, creates a workspace, drives generated
//! traffic through the real HTTP API, and prints what the server took in.

use anyhow::Context;
use std::time::Duration;

use crate::config::Config;
use crate::loadgen::{Generator, LoadConfig};
use crate::server::{Server, open_store, shutdown_signal};

#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the server running after the summary, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Seconds of generated traffic.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Address for the server [default: a free port on 127.0.0.1, or 127.0.0.1:8080 with --serve].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Simulated users.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let scratch =
        tempfile::Builder::new().prefix("whisperer-demo-").tempdir().context("cannot make a scratch dir")?;
    let mut config = Config { data_dir: scratch.path().to_owned(), ..Config::default() };
    config.listen = args
        .listen
        .unwrap_or_else(|| if args.serve { config.listen } else { "127.0.0.1:0".parse().expect("valid") });
    let store = open_store(&config).await?;
    let created = crate::admin::create_workspace(&store, "Demo").await?;
    let server = Server::bind(&config, store.clone()).await?;
    let base_url = format!("http://{}", server.addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    println!("Whisperer demo");
    println!("  server     {base_url}  (data in {})", scratch.path().display());
    println!("  workspace  {}  ({})", created.workspace.id, created.workspace.name);
    println!(
        "  traffic    {} s of Segment batches from {} simulated users, 8 connections, 100 messages per request",
        args.seconds, args.users
    );
    println!();

    let load = LoadConfig {
        base_url: base_url.clone(),
        write_key: created.write_key.plaintext.clone(),
        concurrency: 8,
        batch_size: 100,
        duration: Duration::from_secs(args.seconds),
        rate: None,
        users: args.users,
        single: false,
        seed: 7,
    };
    let report = crate::loadgen::run(&load).await;
    let stats = store.workspace_stats(&created.workspace.id).await?;

    println!("Ingestion (durable commits, server and load generator share this machine)");
    println!("  events accepted   {:>10}", report.events);
    println!("  events/s          {:>10.0}", report.events_per_sec());
    println!("  requests/s        {:>10.0}", report.requests_per_sec());
    println!("  latency p50/p99   {:>7.1} / {:.1} ms", report.percentile_ms(0.5), report.percentile_ms(0.99));
    println!("  failed requests   {:>10}", report.errors);
    if let Some(e) = &report.first_error {
        println!("  first failure     {e}");
    }
    println!();
    println!("Stored");
    println!("  events            {:>10}", stats.events);
    println!("  people            {:>10}", stats.persons);
    println!("  identified users  {:>10}", stats.identified_persons);
    println!();

    let client = reqwest::Client::new();
    println!("A few profiles (GET /v1/users/{{userId}} with the secret key)");
    for n in [0, 1, 2] {
        let user = Generator::user_id(n);
        let response = client
            .get(format!("{base_url}/v1/users/{user}"))
            .bearer_auth(&created.secret_key.plaintext)
            .send()
            .await?;
        if !response.status().is_success() {
            println!("  {user}: HTTP {}", response.status());
            continue;
        }
        let profile: serde_json::Value = response.json().await?;
        let mut counts: Vec<(String, u64)> = profile["eventCounts"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default();
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        let top: Vec<String> = counts.iter().take(3).map(|(k, v)| format!("{k} ×{v}")).collect();
        println!(
            "  {user}  plan={} ids={} events={} first={} last={}  top: {}",
            profile["traits"]["plan"].as_str().unwrap_or("?"),
            profile["identities"]["userIds"].as_array().map_or(0, Vec::len)
                + profile["identities"]["anonymousIds"].as_array().map_or(0, Vec::len),
            profile["eventCount"],
            profile["firstSeen"].as_str().unwrap_or("-"),
            profile["lastSeen"].as_str().unwrap_or("-"),
            top.join(", ")
        );
    }

    if args.serve {
        println!();
        println!("Serving on {base_url} until Ctrl-C");
        println!("  write key   {}", created.write_key.plaintext);
        println!("  secret key  {}", created.secret_key.plaintext);
        println!(
            "  try: curl -u {}: {base_url}/v1/track -d '{{\"userId\":\"me\",\"event\":\"Hello\"}}'",
            created.write_key.plaintext
        );
        shutdown_signal().await;
    }
    let _ = stop.send(());
    serving.await.context("server task failed")??;
    if report.events == 0 {
        anyhow::bail!("the demo stored no events: {}", report.first_error.unwrap_or_default());
    }
    Ok(())
}
