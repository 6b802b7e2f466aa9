//! Append throughput of the embedded store alone (no HTTP, no decoding): events/s for group
//! commits of several sizes, each commit durable (fsync). Run with
//! `cargo bench -p whisperer-store-sqlite --bench append`.

use std::time::Instant;
use whisperer_core::{ApiKey, EventType, KeyKind, Millis, NewEvent, Workspace, WorkspaceId};
use whisperer_store::{NewKey, Store};
use whisperer_store_sqlite::SqliteStore;

fn event(ws: &WorkspaceId, n: u64, users: u64) -> NewEvent {
    let user = format!("user-{:06}", n * 7919 % users);
    let raw = format!(
        r#"{{"type":"track","messageId":"m-{n}","userId":"{user}","anonymousId":"anon-{user}","event":"Feature Used","properties":{{"feature":"reports","duration_ms":{n}}},"timestamp":"2026-11-24T12:00:00.000Z","context":{{"ip":"203.0.113.9","userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36","library":{{"name":"bench","version":"1"}}}}}}"#
    );
    NewEvent {
        workspace_id: ws.clone(),
        message_id: format!("m-{n}"),
        event_type: EventType::Track,
        name: Some("Feature Used".into()),
        user_id: Some(user.clone()),
        anonymous_id: Some(format!("anon-{user}")),
        previous_id: None,
        timestamp: Millis(1_790_000_000_000 + n as i64),
        received_at: Millis(1_790_000_000_000 + n as i64),
        raw,
        enrichment: r#"{"receivedAt":"2026-11-24T12:00:00.000Z","ip":"203.0.113.9","userAgent":{"browser":"Chrome","browserVersion":"120.0","os":"Windows","osVersion":"10","deviceType":"desktop"}}"#.into(),
    }
}

#[tokio::main]
async fn main() {
    const USERS: u64 = 10_000;
    println!("| group size | events | events/s | ms per commit |");
    println!("|---|---|---|---|");
    for group in [100usize, 1000, 5000] {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let ws = Workspace { id: WorkspaceId::generate(), name: "bench".into(), created_at: Millis::now() };
        let key = ApiKey::generate(KeyKind::Write);
        store.create_workspace(&ws, &[NewKey::of(&key, Millis::now())]).await.unwrap();
        let total = 200_000u64;
        // Warm up: every user exists before timing starts, as in steady state.
        let warm: Vec<_> = (0..USERS).map(|n| event(&ws.id, total + n, USERS)).collect();
        store.append(warm, Millis(0)).await.unwrap();
        let started = Instant::now();
        let mut n = 0;
        let mut commits = 0;
        while n < total {
            let batch: Vec<_> = (n..n + group as u64).map(|i| event(&ws.id, i, USERS)).collect();
            store.append(batch, Millis(0)).await.unwrap();
            n += group as u64;
            commits += 1;
        }
        let secs = started.elapsed().as_secs_f64();
        println!("| {group} | {n} | {:.0} | {:.2} |", n as f64 / secs, secs * 1000.0 / commits as f64);
    }
}
