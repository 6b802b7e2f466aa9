//! `whisperer demo`: the product on a laptop in under a minute, no services needed.
//!
//! Starts a server on a scratch data directory, creates a workspace, sends a simulated SaaS
//! population through the real Segment HTTP API, and prints what Whisperer made of it: the
//! ingestion rate, live profiles (engagement, lifecycle stages), a churn model trained on the
//! workspace's own past and scored on the simulator's future against its oracle, and a
//! retention table.

use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use whisperer_core::{Millis, WorkspaceId};
use whisperer_models::metrics::auc;
use whisperer_profiles::observation::is_activity;
use whisperer_profiles::profile::DAY_MS;
use whisperer_profiles::{Engagement, ProfileEngine, Stage};
use whisperer_store::Store;

use crate::churn::Trained;
use crate::config::Config;
use crate::server::{Server, open_store, shutdown_signal};
use crate::simulate::SimulateArgs;
use whisperer_sim::SimConfig;

#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep the server running after the summary, until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Address for the server [default: a free port on 127.0.0.1, or 127.0.0.1:8080 with --serve].
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Simulated users signing up over the window.
    #[arg(long, default_value_t = 1500)]
    pub users: u32,
    /// Simulated days of history, ending today.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Churn horizon in days: the model predicts no activity in this many days.
    #[arg(long, default_value_t = 14)]
    pub horizon_days: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
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
    let ws = created.workspace.id.clone();
    let server = Server::bind(&config, store.clone()).await?;
    let profiles = server.profiles();
    let base_url = format!("http://{}", server.addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let end = Millis(Millis::now().0.div_euclid(DAY_MS) * DAY_MS);
    let as_of = Millis(end.0 - args.horizon_days as i64 * DAY_MS);
    println!("Whisperer demo");
    println!("  server     {base_url}  (data in {})", scratch.path().display());
    println!("  workspace  {ws}  ({})", created.workspace.name);
    println!(
        "  traffic    {} simulated users over {} days, sent as Segment batches of 100 on 8 connections",
        args.users, args.days
    );
    println!();

    let oracle_file = scratch.path().join("oracle.csv");
    let sim = SimulateArgs {
        users: args.users,
        seed: args.seed,
        days: args.days,
        end: Some(end),
        output: None,
        url: Some(base_url.clone()),
        write_key: Some(created.write_key.plaintext.clone()),
        concurrency: 8,
        batch_size: 100,
        oracle_out: Some(oracle_file.clone()),
        as_of: Some(as_of),
        horizon_days: args.horizon_days,
        campaigns: Vec::new(),
        templates: None,
        report_json: None,
        record_workspace: None,
        store: Default::default(),
    };
    let started = Instant::now();
    crate::simulate::run(sim).await.context("the simulated traffic failed")?;
    let elapsed = started.elapsed();
    let stats = store.workspace_stats(&ws).await?;
    println!("Ingestion (durable commits; server and simulator share this machine)");
    println!("  events stored     {:>10}", stats.events);
    println!("  events/s          {:>10.0}", stats.events as f64 / elapsed.as_secs_f64());
    println!("  people            {:>10}  ({} identified)", stats.persons, stats.identified_persons);
    println!();

    // The profile engine follows the log: wait until it has folded everything in and swept
    // the stages as of now (it does once it catches up).
    let waiting = Instant::now();
    let mut caught_up_at = None;
    loop {
        let checkpoint = profiles.with_workspace(&ws, |w| w.checkpoint).unwrap_or(0);
        let caught_up = checkpoint > 0 && store.events_after(&ws, checkpoint, 1).await?.is_empty();
        if caught_up && caught_up_at.is_none() {
            caught_up_at = Some(profiles.sweeps());
        }
        let swept = caught_up_at.is_some_and(|n| profiles.sweeps() > n);
        if swept || waiting.elapsed() > Duration::from_secs(60) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print_profiles(&profiles, &ws, end.0);

    churn_quality(&store, &ws, as_of, args.horizon_days, &oracle_file).await?;
    println!();
    let started = Instant::now();
    let query = whisperer_cohorts::RetentionQuery { periods: Some(10), ..Default::default() };
    let report = whisperer_cohorts::retention(store.as_ref(), &ws, &query).await?;
    println!("Retention (GET /v1/cohorts/retention, `whisperer cohorts retention`)");
    print!("{}", crate::cohorts::render(&report, started.elapsed()));
    println!();
    closed_loop(&args, end).await?;

    if args.serve {
        println!();
        println!("Serving on {base_url} until Ctrl-C");
        println!("  write key   {}", created.write_key.plaintext);
        println!("  secret key  {}", created.secret_key.plaintext);
        println!(
            "  try: curl -H 'Authorization: Bearer {}' {base_url}/v1/users/user-0",
            created.secret_key.plaintext
        );
        shutdown_signal().await;
    }
    let _ = stop.send(());
    serving.await.context("server task failed")??;
    if stats.events == 0 {
        anyhow::bail!("the demo stored no events");
    }
    Ok(())
}

fn print_profiles(profiles: &ProfileEngine, ws: &WorkspaceId, now: i64) {
    let (scores, stages) = profiles
        .with_workspace(ws, |w| {
            let mut scores = Vec::new();
            let mut stages: HashMap<Stage, usize> = HashMap::new();
            for p in w.profiles.values().filter(|p| p.last_active().is_some()) {
                scores.push(Engagement::of(&p.features(now)).score);
                *stages.entry(p.stage()).or_default() += 1;
            }
            (scores, stages)
        })
        .unwrap_or_default();
    println!("Live profiles ({} active users; as of today)", scores.len());
    println!("  engagement score");
    let buckets = [(0.0, 20.0), (20.0, 40.0), (40.0, 60.0), (60.0, 80.0), (80.0, 100.1)];
    for (lo, hi) in buckets {
        let n = scores.iter().filter(|s| **s >= lo && **s < hi).count();
        let share = n as f64 / scores.len().max(1) as f64;
        println!(
            "    {:>3.0}–{:<3.0} {:>6}  {}",
            lo,
            hi.min(100.0),
            n,
            "█".repeat((share * 50.0).round() as usize)
        );
    }
    println!("  lifecycle stage");
    for stage in Stage::ALL {
        println!("    {:<12} {:>6}", stage.as_str(), stages.get(&stage).copied().unwrap_or(0));
    }
    println!();
}

/// Trains on the past up to `as_of`, scores at `as_of`, and compares with what the simulator
/// did next and with its oracle.
async fn churn_quality(
    store: &Arc<dyn Store>,
    ws: &WorkspaceId,
    as_of: Millis,
    horizon_days: u32,
    oracle_file: &std::path::Path,
) -> anyhow::Result<()> {
    println!("Churn model (trained on events up to {as_of}, judged on the {horizon_days} days after)");
    let mut report = Vec::new();
    let Trained { model, replay } =
        match crate::churn::train(store, ws, as_of, horizon_days, &mut report).await {
            Ok(trained) => trained,
            Err(e) => {
                println!("  not trained: {e:#}");
                return Ok(());
            }
        };
    for line in String::from_utf8_lossy(&report).lines().skip(1) {
        println!("  {line}");
    }
    let (persons, x) = replay.current(&model.spec, as_of.0);
    let scores = model.score(&x, persons.len());

    // What happened next: activity in (as_of, as_of + horizon].
    let horizon_end = as_of.0 + horizon_days as i64 * DAY_MS;
    let mut active_after = HashSet::new();
    whisperer_store::scan_log(store.as_ref(), ws, 10_000, |page| -> anyhow::Result<()> {
        for e in page {
            let t = e.event.timestamp.0;
            if is_activity(e.event.event_type, e.event.name.as_deref()) && t > as_of.0 && t <= horizon_end {
                active_after.insert(e.person_id);
            }
        }
        Ok(())
    })
    .await?;
    let oracle: HashMap<String, f64> = std::fs::read_to_string(oracle_file)?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (id, p) = l.split_once(',')?;
            Some((id.to_owned(), p.parse().ok()?))
        })
        .collect();
    let cols = model.spec.width();
    let (mut p, mut o, mut recency, mut y) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, person) in persons.iter().enumerate() {
        // users active in the 30 days before as_of, as in training
        if x[i * cols] >= 30.0 {
            continue;
        }
        let Some(h) = replay.names.get(person).and_then(|name| oracle.get(name)) else { continue };
        p.push(scores[i].probability);
        o.push(*h);
        recency.push(x[i * cols]);
        y.push(!active_after.contains(person));
    }
    let show = |v: Option<f64>| v.map_or("-".to_owned(), |a| format!("{a:.3}"));
    let (model_auc, oracle_auc) = (auc(&p, &y), auc(&o, &y));
    println!(
        "  on the simulator's future ({} active users, {:.1}% churned):",
        y.len(),
        100.0 * y.iter().filter(|c| **c).count() as f64 / y.len().max(1) as f64
    );
    println!("    AUC chosen model  {}", show(model_auc));
    println!("    AUC recency only  {}", show(auc(&recency, &y)));
    println!("    AUC oracle        {}  (true hazard from the hidden state)", show(oracle_auc));
    if let (Some(m), Some(o)) = (model_auc, oracle_auc) {
        println!("    model / oracle    {:.3}", m / o);
    }
    let mean_p = p.iter().sum::<f64>() / p.len().max(1) as f64;
    println!(
        "    mean predicted {:.1}% vs churned {:.1}%",
        100.0 * mean_p,
        100.0 * y.iter().filter(|c| **c).count() as f64 / y.len().max(1) as f64
    );
    Ok(())
}

/// The decision engine's closed loop on a fresh population (in process, the example campaigns
/// and templates): decisions, holdout, fatigue and learning, judged by the simulator's oracle,
/// with every message rendered, gated and delivered to the simulated users.
async fn closed_loop(args: &DemoArgs, end: Millis) -> anyhow::Result<()> {
    // Built in, so the demo needs no files beside the binary.
    let texts = [
        include_str!("../../../examples/campaigns/win-back.toml"),
        include_str!("../../../examples/campaigns/onboarding.toml"),
    ];
    let campaigns = texts
        .iter()
        .map(|t| Ok(whisperer_decide::CampaignSpec::parse(t)?.compile(1)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = SimConfig { users: args.users * 2, seed: args.seed, ..SimConfig::ending_at(end, args.days) };
    let started = Instant::now();
    let templates = crate::closed_loop::example_templates()?;
    let report = crate::closed_loop::run(config, campaigns, templates, false, |_| {}).await?;
    println!("Decision engine and delivery (`whisperer simulate --campaigns examples/campaigns/*.toml`)");
    for line in crate::closed_loop::summary(&report, started.elapsed()).lines() {
        println!("  {line}");
    }
    Ok(())
}
