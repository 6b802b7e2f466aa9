//! A real SMTP server for tests: aiosmtpd (`tests/smtp/sink.py`) on loopback, from the venv
//! `scripts/setup-test-deps` installs. Shared by the channels tests and the binary's delivery
//! tests (included by path). Without the venv, `python()` says why and returns None, unless
//! `WHISPERER_REQUIRE_CLIENTS=1`, when it fails the test.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python, or `None` (after saying so) when the sink is not installed.
pub fn python() -> Option<PathBuf> {
    let deps = std::env::var_os("WHISPERER_TEST_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".test-deps"));
    let python = deps.join("venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var("WHISPERER_REQUIRE_CLIENTS").as_deref() != Ok("1"),
        "aiosmtpd is missing in {}: run scripts/setup-test-deps",
        deps.display()
    );
    eprintln!("skipping: aiosmtpd not installed (run scripts/setup-test-deps)");
    None
}

/// A running `sink.py` and everything it has printed so far.
pub struct Sink {
    pub port: u16,
    events: Arc<Mutex<Vec<Value>>>,
    _child: Child,
}

impl Sink {
    pub async fn start(python: &PathBuf, args: &[&str]) -> Sink {
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/smtp/sink.py"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start sink.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("sink.py did not start in time")
            .unwrap()
            .expect("sink.py exited before listening");
        let ready: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(ready["event"], "ready", "{first}");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(serde_json::from_str::<Value>(&line).unwrap());
            }
        });
        Sink { port: ready["port"].as_u64().unwrap() as u16, events, _child: child }
    }

    /// Every line printed so far of one kind (`message`, `rcpt`, `auth`).
    pub fn all(&self, event: &str) -> Vec<Value> {
        self.events.lock().unwrap().iter().filter(|e| e["event"] == event).cloned().collect()
    }

    /// The messages received so far.
    pub fn received(&self) -> Vec<Value> {
        self.all("message")
    }

    /// Waits (up to 20 s) for at least `n` received messages.
    pub async fn messages(&self, n: usize) -> Vec<Value> {
        for _ in 0..800 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("sink received {} messages, wanted {n}", self.received().len());
    }
}
