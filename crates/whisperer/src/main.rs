//! The `whisperer` binary: command line, configuration and the wiring of every part.

mod admin;
mod bench;
mod churn;
mod closed_loop;
mod cohorts;
mod config;
mod delivery_cli;
mod demo;
mod loadgen;
mod policy_eval;
mod server;
mod simulate;
mod transfer;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use whisperer_core::{KeyKind, Millis};
use whisperer_profiles::{LIFECYCLE_SETTING, LifecycleConfig};

use crate::config::{Config, LogFormat, StoreArgs};

#[derive(Parser)]
#[command(
    name = "whisperer",
    version,
    about = "Autonomous customer engagement: Segment-compatible ingestion and more"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "WHISPERER_LISTEN")]
        listen: Option<SocketAddr>,
        /// Log format [default: json].
        #[arg(long, env = "WHISPERER_LOG_FORMAT")]
        log_format: Option<LogFormat>,
    },
    /// Start a server on a scratch dir, send it generated traffic and show what it stored.
    Demo(demo::DemoArgs),
    /// Manage workspaces.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Set or show a workspace's tracking plan.
    TrackingPlan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Export data.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Load historical Segment messages (JSON lines) into a workspace.
    Import {
        /// File with one Segment message per line (or `export events` output).
        file: PathBuf,
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Simulate a SaaS population (with hidden ground truth) into a JSON-lines file or a server.
    Simulate(simulate::SimulateArgs),
    /// Set or show a workspace's lifecycle thresholds.
    Lifecycle {
        #[command(subcommand)]
        command: LifecycleCommand,
    },
    /// Campaigns of the decision engine: create or update one from a TOML/JSON file, list them.
    Campaign {
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// Message templates: create or update one from a JSON file, list them.
    Template {
        #[command(subcommand)]
        command: delivery_cli::TemplateCommand,
    },
    /// The outbox: list messages (and dead letters), re-drive dead letters.
    Messages {
        #[command(subcommand)]
        command: delivery_cli::MessagesCommand,
    },
    /// Experiments: how a campaign's arms did against its holdout.
    Experiment {
        #[command(subcommand)]
        command: ExperimentCommand,
    },
    /// Off-policy evaluation of candidate policies on a campaign's logged decisions.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Churn prediction: train a workspace's model, score its users.
    Churn {
        #[command(subcommand)]
        command: ChurnCommand,
    },
    /// Retention cohorts of a workspace, as a table (or JSON).
    Cohorts {
        #[command(subcommand)]
        command: cohorts::CohortsCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace; prints its id and keys as JSON (the keys are shown only once).
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List workspaces as JSON lines.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a new key of a kind and revoke the workspace's other keys of that kind.
    Rotate {
        #[arg(long)]
        workspace: String,
        #[arg(long, value_parser = parse_kind)]
        kind: KeyKind,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke one key, given whole or by its id.
    Revoke {
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a workspace's keys (ids only) as JSON lines.
    List {
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Set the plan from a JSON file: {"mode": "warn"|"reject", "events": {"Name": <JSON Schema>}}.
    Set {
        file: PathBuf,
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the plan.
    Get {
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Every stored event of a workspace as JSON lines, in log order.
    Events {
        #[arg(long)]
        workspace: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum LifecycleCommand {
    /// Set thresholds from a JSON file, e.g. {"at_risk_days": 14, "churned_days": 60}; missing
    /// ones take their defaults. A running server applies them within two seconds.
    Set {
        file: PathBuf,
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the thresholds in force.
    Get {
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Create or update a campaign from a TOML or JSON file (checked field by field); prints
    /// `{"id": …, "version": …}`. An unchanged definition keeps its version.
    Apply {
        file: PathBuf,
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print every campaign of a workspace (current versions) as JSON.
    List {
        #[arg(long)]
        workspace: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum ExperimentCommand {
    /// Conversion per arm with confidence intervals, two-proportion and Welch tests against the
    /// holdout (Holm-corrected), always-valid p-values and intervals, probability to beat the
    /// holdout and expected loss, and a sample-ratio check; from the settled decisions.
    Report {
        campaign: String,
        #[arg(long)]
        workspace: String,
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Estimate a candidate policy's goal rate on the logged decisions (IPS, self-normalised
    /// IPS, doubly robust, with confidence intervals). POLICY: uniform, logged, greedy,
    /// greedy:EPSILON, arm:NAME.
    Evaluate {
        #[arg(long)]
        campaign: String,
        #[arg(long)]
        policy: String,
        #[arg(long)]
        workspace: String,
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum ChurnCommand {
    /// Train on the workspace's log up to --as-of and store the model as its new version;
    /// prints validation AUC, log-loss and Brier score of each candidate and the chosen one.
    Train {
        #[arg(long)]
        workspace: String,
        /// Use only events up to this time (ISO-8601) [default: now].
        #[arg(long, value_parser = parse_time)]
        as_of: Option<Millis>,
        /// Churned = no activity within this many days after a cut-off.
        #[arg(long, default_value_t = 14)]
        horizon_days: u32,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// CSV `user_id,churn_probability,top_reasons` for every user seen up to --as-of, from
    /// events up to then, with the newest model trained on data up to then.
    Score {
        #[arg(long)]
        workspace: String,
        #[arg(long, value_parser = parse_time)]
        as_of: Option<Millis>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn parse_time(s: &str) -> Result<Millis, String> {
    whisperer_core::time::parse_iso8601(s).map_err(|e| format!("{e}: {s:?}"))
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Ingestion throughput and latency through the HTTP API.
    Ingest(bench::BenchIngestArgs),
    /// POST /v1/decide at a fixed rate against a fresh server: decisions/s and latency.
    Decide(bench::BenchDecideArgs),
}

fn parse_kind(s: &str) -> Result<KeyKind, String> {
    KeyKind::parse(s).ok_or_else(|| format!("kind must be write or secret, not {s:?}"))
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHISPERER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.init(),
    }
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { store, listen, log_format } => {
            let config = Config::load(&store, listen)?;
            init_logging(log_format.unwrap_or(config.log.format), &config.log.level);
            let db = server::open_store(&config).await?;
            let server = server::Server::bind(&config, db).await?;
            tracing::info!(addr = %server.addr, storage = %config.storage_label(), "listening");
            println!("whisperer listening on http://{}", server.addr);
            std::io::stdout().flush()?;
            server.run(server::shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::Demo(args) => {
            init_logging(LogFormat::Text, "warn");
            demo::run(args).await?;
        }
        Command::Workspace { command } => {
            init_logging(LogFormat::Text, "warn");
            match command {
                WorkspaceCommand::Create { name, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    print_json(&admin::create_workspace(&db, &name).await?.to_json())?;
                }
                WorkspaceCommand::List { store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    for w in db.list_workspaces().await? {
                        print_json(
                            &serde_json::json!({"id": w.id, "name": w.name, "created_at": w.created_at.to_rfc3339()}),
                        )?;
                    }
                }
            }
        }
        Command::Key { command } => {
            init_logging(LogFormat::Text, "warn");
            match command {
                KeyCommand::Rotate { workspace, kind, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    print_json(&admin::rotate_key(&db, &ws, kind).await?)?;
                }
                KeyCommand::Revoke { workspace, key, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    print_json(&admin::revoke_key(&db, &ws, &key).await?)?;
                }
                KeyCommand::List { workspace, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    for k in db.list_keys(&ws).await? {
                        print_json(&serde_json::to_value(&k)?)?;
                    }
                }
            }
        }
        Command::TrackingPlan { command } => {
            init_logging(LogFormat::Text, "warn");
            match command {
                PlanCommand::Set { file, workspace, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let text =
                        std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                    let plan = whisperer_api::parse_tracking_plan(&text)
                        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                    db.set_tracking_plan(&ws, &plan).await?;
                    print_json(&serde_json::to_value(&plan)?)?;
                }
                PlanCommand::Get { workspace, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    print_json(&serde_json::to_value(db.tracking_plan(&ws).await?.unwrap_or_default())?)?;
                }
            }
        }
        Command::Export { command: ExportCommand::Events { workspace, output, store } } => {
            init_logging(LogFormat::Text, "warn");
            let db = server::open_store(&Config::load(&store, None)?).await?;
            let ws = admin::existing_workspace(&db, &workspace).await?;
            let written = match output {
                Some(path) => {
                    let mut file = std::fs::File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    transfer::export_events(&db, &ws, &mut file).await?
                }
                None => transfer::export_events(&db, &ws, &mut std::io::stdout().lock()).await?,
            };
            eprintln!("exported {written} events");
        }
        Command::Lifecycle { command } => {
            init_logging(LogFormat::Text, "warn");
            match command {
                LifecycleCommand::Set { file, workspace, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let config = LifecycleConfig::from_json(&text)?;
                    db.set_setting(&ws, LIFECYCLE_SETTING, &serde_json::to_string(&config)?, Millis::now())
                        .await?;
                    print_json(&serde_json::to_value(&config)?)?;
                }
                LifecycleCommand::Get { workspace, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let config = match db.setting(&ws, LIFECYCLE_SETTING).await? {
                        Some(text) => LifecycleConfig::from_json(&text)?,
                        None => LifecycleConfig::default(),
                    };
                    print_json(&serde_json::to_value(&config)?)?;
                }
            }
        }
        Command::Campaign { command } => {
            init_logging(LogFormat::Text, "warn");
            match command {
                CampaignCommand::Apply { file, workspace, store } => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let spec = whisperer_decide::CampaignSpec::parse(&text)
                        .map_err(|e| anyhow::anyhow!("{}: invalid campaign: {e}", file.display()))?;
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let record = db.put_campaign(&ws, &spec.id, &spec.to_json(), Millis::now()).await?;
                    print_json(&serde_json::json!({ "id": record.id, "version": record.version }))?;
                }
                CampaignCommand::List { workspace, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let mut out = Vec::new();
                    for c in db.campaigns(&ws).await? {
                        let definition: serde_json::Value = serde_json::from_str(&c.definition)?;
                        out.push(serde_json::json!({
                            "id": c.id,
                            "version": c.version,
                            "updatedAt": c.created_at.to_string(),
                            "definition": definition,
                        }));
                    }
                    print_json(&serde_json::Value::Array(out))?;
                }
            }
        }
        Command::Template { command } => {
            init_logging(LogFormat::Text, "warn");
            delivery_cli::template(command).await?;
        }
        Command::Messages { command } => {
            init_logging(LogFormat::Text, "warn");
            delivery_cli::messages(command).await?;
        }
        Command::Experiment { command } => {
            init_logging(LogFormat::Text, "warn");
            match command {
                ExperimentCommand::Report { campaign, workspace, confidence, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let report =
                        whisperer_decide::report::campaign_report(db.as_ref(), &ws, &campaign, confidence)
                            .await?;
                    print_json(&report)?;
                }
            }
        }
        Command::Policy { command } => {
            init_logging(LogFormat::Text, "warn");
            match command {
                PolicyCommand::Evaluate { campaign, policy, workspace, confidence, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let report =
                        policy_eval::evaluate(db.as_ref(), &ws, &campaign, &policy, confidence).await?;
                    print_json(&report)?;
                }
            }
        }
        Command::Churn { command } => {
            init_logging(LogFormat::Text, "warn");
            match command {
                ChurnCommand::Train { workspace, as_of, horizon_days, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let as_of = as_of.unwrap_or_else(Millis::now);
                    churn::train(&db, &ws, as_of, horizon_days, &mut std::io::stdout().lock()).await?;
                }
                ChurnCommand::Score { workspace, as_of, store } => {
                    let db = server::open_store(&Config::load(&store, None)?).await?;
                    let ws = admin::existing_workspace(&db, &workspace).await?;
                    let as_of = as_of.unwrap_or_else(Millis::now);
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    churn::score(&db, &ws, as_of, &mut out).await?;
                    out.flush()?;
                }
            }
        }
        Command::Import { file, workspace, store } => {
            init_logging(LogFormat::Text, "warn");
            let config = Config::load(&store, None)?;
            let db = server::open_store(&config).await?;
            let ws = admin::existing_workspace(&db, &workspace).await?;
            let mut registry = prometheus_client::registry::Registry::default();
            let ingestor = config.ingest.build(db, &mut registry)?;
            let summary = transfer::import_file(&ingestor, &ws, &file, true).await?;
            print_json(&serde_json::to_value(&summary)?)?;
            if summary.rejected > 0 {
                eprintln!("{} of {} lines were rejected (see errors)", summary.rejected, summary.lines);
            }
        }
        Command::Simulate(args) => {
            init_logging(LogFormat::Text, "warn");
            simulate::run(args).await?;
        }
        Command::Cohorts { command } => {
            init_logging(LogFormat::Text, "warn");
            cohorts::run(command).await?;
        }
        Command::Bench { command: BenchCommand::Ingest(args) } => {
            init_logging(LogFormat::Text, "warn");
            bench::ingest(args).await?;
        }
        Command::Bench { command: BenchCommand::Decide(args) } => {
            init_logging(LogFormat::Text, "warn");
            bench::decide(args).await?;
        }
    }
    Ok(())
}
