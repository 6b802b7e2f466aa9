//! Running the real binary: workspaces through the CLI, servers as child processes.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub fn whisperer() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_whisperer"));
    // Tests choose their own store; a developer's environment must not leak in.
    for var in ["WHISPERER_DATA_DIR", "WHISPERER_DATABASE_URL", "WHISPERER_CONFIG", "WHISPERER_LISTEN"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs the binary and returns its output, failing the test with stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("whisperer runs");
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub struct Workspace {
    pub id: String,
    pub write_key: String,
    pub secret_key: String,
}

pub fn create_workspace(data_dir: &Path, name: &str) -> Workspace {
    create_workspace_in(&["--data-dir", data_dir.to_str().unwrap()], name)
}

/// `store` is `--data-dir DIR` or `--database-url URL`.
pub fn create_workspace_in(store: &[&str], name: &str) -> Workspace {
    let out = run_ok(whisperer().args(["workspace", "create", "--name", name]).args(store));
    let v: Value = serde_json::from_slice(&out.stdout).expect("workspace create prints JSON");
    Workspace {
        id: v["id"].as_str().unwrap().to_owned(),
        write_key: v["write_key"].as_str().unwrap().to_owned(),
        secret_key: v["secret_key"].as_str().unwrap().to_owned(),
    }
}

/// A `whisperer serve` child process; killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
}

impl ServerProcess {
    pub fn start(data_dir: &Path) -> Self {
        Self::start_on(&["--data-dir", data_dir.to_str().unwrap()])
    }

    /// `store` is `--data-dir DIR` or `--database-url URL`.
    pub fn start_on(store: &[&str]) -> Self {
        let mut child = whisperer()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(store)
            .env("WHISPERER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("whisperer serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "unexpected first line {line:?}");
        Self { child, url }
    }

    /// `GET path` with a secret key; the JSON body.
    pub async fn get_json(&self, path: &str, secret_key: &str) -> Value {
        let res =
            reqwest::Client::new().get(format!("{}{path}", self.url)).bearer_auth(secret_key).send().await;
        res.unwrap().json().await.unwrap()
    }

    /// `POST path` of a JSON body with a write key; the status and JSON body.
    pub async fn post_json(&self, path: &str, write_key: &str, body: &Value) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .basic_auth(write_key, Some(""))
            .json(body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    pub fn kill_hard(&mut self) {
        // SIGKILL: no chance to flush or clean up.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every event of a workspace as exported by the CLI.
pub fn export(data_dir: &Path, workspace: &str) -> Vec<Value> {
    export_from(&["--data-dir", data_dir.to_str().unwrap()], workspace)
}

/// `store` is `--data-dir DIR` or `--database-url URL`.
pub fn export_from(store: &[&str], workspace: &str) -> Vec<Value> {
    let out = run_ok(whisperer().args(["export", "events", "--workspace", workspace]).args(store));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The PostgreSQL test database, or None after saying why the test skips.
pub fn postgres_url() -> Option<String> {
    match std::env::var("WHISPERER_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(!required("WHISPERER_REQUIRE_SERVICES"), "WHISPERER_TEST_POSTGRES_URL is not set");
            eprintln!("skipping: WHISPERER_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// Whether tests that need an optional part must run instead of skipping.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}
