//! Configuration: defaults < TOML file < `WHISPERER_*` environment < command-line flags.
//!
//! The file is strict: an unknown key is an error that names it. Secrets (the database URL's
//! password) are never printed; [`Config::storage_label`] shows storage without them.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use whisperer_core::time::HumanDuration;
use whisperer_ingest::IngestConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// PostgreSQL instead of the embedded store.
    pub database_url: Option<String>,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: HumanDuration,
    pub log: LogConfig,
    pub ingest: IngestConfig,
    pub delivery: DeliverySection,
    pub decide: DecideSection,
}

/// How `POST /v1/decide` behaves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecideSection {
    /// `stored` (default): answer once the decision is durable. `queued`: answer once it is
    /// queued for storing, a few milliseconds earlier; a crash in between loses it from the
    /// audit trail.
    pub acknowledge: whisperer_decide::service::Acknowledge,
}

/// How the outbox sender runs (providers are per workspace, in its `delivery` setting).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    /// How long a claimed message is held; a sender that has not recorded the outcome by then
    /// is presumed dead (its message is resent where providers deduplicate, else dead-lettered).
    pub lease: HumanDuration,
    /// Most messages claimed per round and workspace.
    pub batch: usize,
    /// Most sends in flight per workspace.
    pub concurrency: usize,
}

impl Default for DeliverySection {
    fn default() -> Self {
        let d = whisperer_deliver::SenderConfig::default();
        Self {
            lease: HumanDuration::from_secs(d.lease.as_secs() as i64),
            batch: d.batch,
            concurrency: d.concurrency,
        }
    }
}

impl DeliverySection {
    pub fn sender_config(&self) -> whisperer_deliver::SenderConfig {
        whisperer_deliver::SenderConfig {
            lease: self.lease.as_std(),
            batch: self.batch.max(1),
            concurrency: self.concurrency.max(1),
            ..whisperer_deliver::SenderConfig::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./whisperer-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            shutdown_grace: HumanDuration::from_secs(30),
            log: LogConfig::default(),
            ingest: IngestConfig::default(),
            delivery: DeliverySection::default(),
            decide: DecideSection::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `json` (one object per line) or `text`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `whisperer_api=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Json, level: "info".into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// Values given on the command line or in the environment; `None` leaves the file's value.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct StoreArgs {
    /// Config file (TOML).
    #[arg(long, env = "WHISPERER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./whisperer-data].
    #[arg(long, env = "WHISPERER_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user:pass@host/db); replaces the embedded store.
    #[arg(long, env = "WHISPERER_DATABASE_URL", global = true, conflicts_with = "data_dir")]
    pub database_url: Option<String>,
}

impl Config {
    /// Reads the file if one is given and lays the command-line/environment values over it.
    pub fn load(args: &StoreArgs, listen: Option<SocketAddr>) -> anyhow::Result<Self> {
        let mut config = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        if let Some(dir) = &args.data_dir {
            config.data_dir = dir.clone();
            // An explicit data dir means the embedded store, even if the file names a database.
            config.database_url = None;
        }
        if let Some(url) = &args.database_url {
            config.database_url = Some(url.clone());
        }
        if let Some(listen) = listen {
            config.listen = listen;
        }
        Ok(config)
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Where events go, for logs and summaries, without credentials.
    pub fn storage_label(&self) -> String {
        match &self.database_url {
            Some(url) => redact_url(url),
            None => format!("sqlite:{}", self.data_dir.display()),
        }
    }
}

/// Removes the password from a URL such as `postgres://user:secret@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "<database url>".into() };
    let (authority, tail) = rest.split_once('/').map_or((rest, ""), |(a, t)| (a, t));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let user = authority.rsplit_once('@').map(|(creds, _)| creds.split(':').next().unwrap_or(""));
    match user {
        Some(user) => format!("{scheme}://{user}@{host}/{tail}"),
        None => format!("{scheme}://{host}/{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_apply_and_unknown_keys_are_named() {
        let c = Config::from_toml(
            "listen = \"0.0.0.0:9000\"\n[ingest]\ndedup_window = \"1d\"\nanonymize_ip = true\n",
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.ingest.dedup_window, HumanDuration::from_secs(86_400));
        assert!(c.ingest.anonymize_ip);
        assert_eq!(c.data_dir, PathBuf::from("./whisperer-data"));
        let err = format!("{:#}", Config::from_toml("lisen = \"x\"").unwrap_err());
        assert!(err.contains("lisen"), "{err}");
        let err = format!("{:#}", Config::from_toml("[ingest]\nmax_bytes = 1").unwrap_err());
        assert!(err.contains("max_bytes"), "{err}");
        let err = format!("{:#}", Config::from_toml("[ingest]\ndedup_window = \"7 weeks\"").unwrap_err());
        assert!(err.contains("7 weeks"), "{err}");
    }

    #[test]
    fn decisions_are_answered_once_stored_unless_the_file_says_queued() {
        use whisperer_decide::service::Acknowledge;
        assert_eq!(Config::default().decide.acknowledge, Acknowledge::Stored);
        let c = Config::from_toml("[decide]\nacknowledge = \"queued\"\n").unwrap();
        assert_eq!(c.decide.acknowledge, Acknowledge::Queued);
        let err = format!("{:#}", Config::from_toml("[decide]\nacknowledge = \"later\"").unwrap_err());
        assert!(err.contains("later"), "{err}");
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(&path, "data_dir = \"/from/file\"\nlisten = \"127.0.0.1:1111\"\n").unwrap();
        let args = StoreArgs { config: Some(path.clone()), ..Default::default() };
        let c = Config::load(&args, None).unwrap();
        assert_eq!((c.data_dir.to_str().unwrap(), c.listen.port()), ("/from/file", 1111));
        let args = StoreArgs { config: Some(path), data_dir: Some("/from/flag".into()), database_url: None };
        let c = Config::load(&args, Some("127.0.0.1:2222".parse().unwrap())).unwrap();
        assert_eq!((c.data_dir.to_str().unwrap(), c.listen.port()), ("/from/flag", 2222));
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact_url("postgres://me:hunter2@db:5432/app"), "postgres://me@db:5432/app");
        assert_eq!(redact_url("postgres://db/app"), "postgres://db/app");
        assert!(!redact_url("garbage:hunter2").contains("hunter2"));
    }
}
