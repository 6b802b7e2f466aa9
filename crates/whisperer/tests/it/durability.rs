//! Crash safety: `kill -9` under load loses no acknowledged event, and a restart recovers.

use crate::helpers::*;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sends unique batches until the server stops answering; returns the acknowledged ids.
async fn load(url: String, key: String, worker: usize, round: usize) -> Vec<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut acked = Vec::new();
    for n in 0.. {
        let ids: Vec<String> = (0..50).map(|i| format!("r{round}-w{worker}-b{n}-m{i}")).collect();
        let batch: Vec<_> = ids
            .iter()
            .map(|id| {
                json!({"type": "track", "messageId": id, "userId": format!("u{}", n % 20), "event": "Tick",
                              "properties": {"n": n, "pad": "x".repeat(200)}})
            })
            .collect();
        let sent = client
            .post(format!("{url}/v1/batch"))
            .basic_auth(&key, Some(""))
            .json(&json!({"batch": batch}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["accepted"].as_u64().unwrap() + body["duplicates"].as_u64().unwrap(), 50);
                acked.extend(ids);
            }
            // The server died mid-request: this batch was never acknowledged.
            _ => break,
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "crash");
    let mut all_acked = HashSet::new();
    for (round, kill_after_ms) in [(0, 700u64), (1, 1300), (2, 400)] {
        let mut server = ServerProcess::start(dir.path());
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for w in 0..4 {
            let (url, key, acked) = (server.url.clone(), ws.write_key.clone(), acked.clone());
            workers.push(tokio::spawn(async move {
                let ids = load(url, key, w, round).await;
                acked.lock().unwrap().extend(ids);
            }));
        }
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        server.kill_hard();
        for w in workers {
            w.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(!acked.is_empty(), "round {round}: the server acknowledged nothing before the kill");
        all_acked.extend(acked);
    }

    // A restart recovers on its own and serves again.
    let server = ServerProcess::start(dir.path());
    let client = reqwest::Client::new();
    let ok = client
        .post(format!("{}/v1/track", server.url))
        .basic_auth(&ws.write_key, Some(""))
        .json(&json!({"userId": "after", "event": "Restarted", "messageId": "after-restart"}))
        .send()
        .await
        .unwrap();
    assert!(ok.status().is_success());
    drop(server);

    let stored = export(dir.path(), &ws.id);
    let stored_ids: Vec<String> =
        stored.iter().map(|e| e["messageId"].as_str().unwrap().to_owned()).collect();
    let unique: HashSet<&String> = stored_ids.iter().collect();
    assert_eq!(unique.len(), stored_ids.len(), "an event was stored twice");
    let missing: Vec<_> = all_acked.iter().filter(|id| !unique.contains(id)).take(5).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?} ({} acked)", all_acked.len());
    assert!(unique.contains(&"after-restart".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "drain");
    let server = ServerProcess::start(dir.path());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (url, key, acked) = (server.url.clone(), ws.write_key.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            let ids = load(url, key, w, 9).await;
            acked.lock().unwrap().extend(ids);
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let pid = server.child.id().to_string();
    run_ok(std::process::Command::new("kill").args(["-TERM", &pid]));
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status:?}");
    for w in workers {
        w.await.unwrap();
    }
    let stored: HashSet<String> =
        export(dir.path(), &ws.id).iter().map(|e| e["messageId"].as_str().unwrap().to_owned()).collect();
    let acked = acked.lock().unwrap();
    assert!(!acked.is_empty());
    assert!(acked.iter().all(|id| stored.contains(id)), "an acknowledged event was lost on SIGTERM");
}
