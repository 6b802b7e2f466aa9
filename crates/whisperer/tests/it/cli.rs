//! The command line: workspaces, keys, config precedence, export and import.

use crate::helpers::*;
use serde_json::{Value, json};
use std::time::Duration;

#[test]
fn workspace_create_prints_one_json_object_and_list_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Acme Inc");
    assert!(ws.id.starts_with("ws_"));
    assert!(ws.write_key.starts_with("wk_") && ws.secret_key.starts_with("sk_"));
    let out = run_ok(whisperer().args(["workspace", "list", "--data-dir"]).arg(dir.path()));
    let listed: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["id"].as_str(), listed[0]["name"].as_str()),
        (Some(ws.id.as_str()), Some("Acme Inc"))
    );
    // Keys are stored hashed: the plaintext never appears in the database file.
    let db = std::fs::read(dir.path().join("whisperer.sqlite3")).unwrap();
    let wal = std::fs::read(dir.path().join("whisperer.sqlite3-wal")).unwrap_or_default();
    for haystack in [db, wal] {
        assert!(!haystack.windows(ws.write_key.len()).any(|w| w == ws.write_key.as_bytes()));
    }
}

#[test]
fn bad_names_and_unknown_workspaces_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = whisperer()
        .args(["workspace", "create", "--name", "  ", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not be empty"));
    let out = whisperer()
        .args(["key", "rotate", "--kind", "write", "--workspace", "ws_0123456789abcdef", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no workspace"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_precedence_is_defaults_file_env_flags() {
    let root = tempfile::tempdir().unwrap();
    let (from_file, from_env, from_flag) =
        (root.path().join("file"), root.path().join("env"), root.path().join("flag"));
    let config = root.path().join("whisperer.toml");
    std::fs::write(&config, format!("data_dir = {:?}\n", from_file.to_str().unwrap())).unwrap();
    let create = |envs: &[(&str, &std::path::Path)], flag: Option<&std::path::Path>| {
        let mut cmd = whisperer();
        cmd.args(["workspace", "create", "--name", "p", "--config"]).arg(&config);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(flag) = flag {
            cmd.arg("--data-dir").arg(flag);
        }
        run_ok(&mut cmd);
    };
    create(&[], None);
    assert!(from_file.join("whisperer.sqlite3").exists(), "file beats defaults");
    create(&[("WHISPERER_DATA_DIR", &from_env)], None);
    assert!(from_env.join("whisperer.sqlite3").exists(), "env beats file");
    create(&[("WHISPERER_DATA_DIR", &from_env)], Some(&from_flag));
    assert!(from_flag.join("whisperer.sqlite3").exists(), "flag beats env");

    std::fs::write(&config, "data_dir = \"x\"\n[ingest]\nmax_mesage_bytes = 10\n").unwrap();
    let out = whisperer().args(["workspace", "list", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_mesage_bytes"), "the unknown key is named: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_commands_apply_to_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "keys");
    let server = ServerProcess::start(dir.path());
    let client = reqwest::Client::new();
    let track = |key: String| {
        let client = client.clone();
        let url = format!("{}/v1/track", server.url);
        async move {
            client
                .post(url)
                .basic_auth(key, Some(""))
                .json(&json!({"userId": "u", "event": "E"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(track(ws.write_key.clone()).await, 200);
    let out = run_ok(
        whisperer()
            .args(["key", "rotate", "--kind", "write", "--workspace", &ws.id, "--data-dir"])
            .arg(dir.path()),
    );
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["revoked"], 1);
    assert_eq!(track(new_key.clone()).await, 200, "a new key works on the next request");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(track(ws.write_key.clone()).await, 401, "the rotated-out key is refused within a second");

    let id = rotated["key_id"].as_str().unwrap();
    run_ok(
        whisperer().args(["key", "revoke", "--workspace", &ws.id, "--key", id, "--data-dir"]).arg(dir.path()),
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(track(new_key).await, 401);
    let out = run_ok(whisperer().args(["key", "list", "--workspace", &ws.id, "--data-dir"]).arg(dir.path()));
    let keys: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.get("hash").is_none() && k.get("key").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_round_trips_and_historical_import_keeps_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let source = create_workspace(dir.path(), "source");
    let server = ServerProcess::start(dir.path());
    let batch: Vec<Value> = (0..30)
        .map(|i| json!({"type": "track", "userId": format!("u{}", i % 3), "event": "Order Completed", "properties": {"revenue": i}}))
        .collect();
    let res = reqwest::Client::new()
        .post(format!("{}/v1/batch", server.url))
        .basic_auth(&source.write_key, Some(""))
        .json(&json!({"batch": batch}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    drop(server);

    let exported = export(dir.path(), &source.id);
    assert_eq!(exported.len(), 30);
    assert!(exported.iter().all(|e| e["messageId"].is_string() && e["enrichment"]["receivedAt"].is_string()));
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, exported.iter().map(|e| e.to_string() + "\n").collect::<String>()).unwrap();

    let target = create_workspace(dir.path(), "target");
    let import = |path: &std::path::Path| -> Value {
        let out = run_ok(
            whisperer()
                .arg("import")
                .arg(path)
                .args(["--workspace", &target.id, "--data-dir"])
                .arg(dir.path()),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let summary = import(&file);
    assert_eq!(
        (summary["accepted"].as_u64(), summary["rejected"].as_u64()),
        (Some(30), Some(0)),
        "{summary}"
    );
    let summary = import(&file);
    assert_eq!(summary["duplicates"], 30, "importing twice stores nothing twice");
    let copied = export(dir.path(), &target.id);
    let ids = |events: &[Value]| -> Vec<String> {
        events.iter().map(|e| e["messageId"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&copied), ids(&exported));
    assert_eq!(copied[0]["timestamp"], exported[0]["timestamp"]);

    // History from years ago, with a bad line in the middle.
    let history = dir.path().join("history.jsonl");
    std::fs::write(
        &history,
        [
            json!({"type": "identify", "userId": "old", "traits": {"plan": "legacy"}, "timestamp": "2019-03-01T10:00:00Z"}).to_string(),
            "{not json".to_owned(),
            json!({"type": "track", "userId": "old", "event": "Signed Up", "timestamp": "2019-03-01T10:00:05Z"}).to_string(),
            json!({"type": "track", "event": "No User"}).to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    let summary = import(&history);
    assert_eq!((summary["accepted"].as_u64(), summary["rejected"].as_u64()), (Some(2), Some(2)), "{summary}");
    let errors = summary["errors"].to_string();
    assert!(errors.contains("line 2") && errors.contains("line 4"), "{errors}");
    let old: Vec<Value> =
        export(dir.path(), &target.id).into_iter().filter(|e| e["userId"] == "old").collect();
    assert_eq!(old[1]["timestamp"], "2019-03-01T10:00:05.000Z");
    assert_eq!(old[1]["enrichment"]["historical"], true);
}
