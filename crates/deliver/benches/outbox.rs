//! The whole delivery path, emails per second: queued outbox messages claimed from a real
//! SQLite store, composed (campaign content → template in the user's locale with their traits,
//! signed tracking links in the HTML, the compliance gate), sent over the SMTP pool to a local
//! sink, and recorded as sent with their `Message Sent` events.
//!
//! `cargo bench -p whisperer-deliver --bench outbox`; `OUTBOX_BENCH_N` messages per run (default
//! 5000), `OUTBOX_BENCH_CONNECTIONS` SMTP connections (default 16); three runs on fresh stores,
//! median printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use whisperer_core::identity::IdKind;
use whisperer_core::{EventType, Millis, NewEvent, Workspace, WorkspaceId};
use whisperer_decide::campaign::CampaignSpec;
use whisperer_deliver::{Composer, InAppHub, Sender, SenderConfig, TemplateDefinition};
use whisperer_store::{DefinitionKind, MessageRecord, MessageStatus, Store};
use whisperer_store_sqlite::SqliteStore;

#[path = "../../channels/benches/support/smtp_sink.rs"]
mod smtp_sink;

const CAMPAIGN: &str = r#"
id = "bench"
trigger = { type = "api" }
holdout_percent = 0
[goal]
event = "Session Started"
within = "1d"
[actions]
channels = ["email"]
contents = [{ id = "a", template = "digest" }]
"#;

const TEMPLATE: &str = r#"{"kind": "marketing", "default_locale": "en", "locales": {
  "en": {"subject": "Your week, {{ traits.name }}",
         "body": "Hi {{ traits.name }}, here is what happened.\nUnsubscribe: {{ unsubscribe_url }}\nAcme Inc., 1 Main St, Springfield",
         "html": "<html><body><h1>Hi {{ traits.name }}</h1><p>See <a href=\"https://app.example/projects\">your projects</a> and <a href=\"https://app.example/settings\">settings</a>.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a> · Acme Inc., 1 Main St, Springfield</p></body></html>"},
  "de": {"subject": "Deine Woche, {{ traits.name }}",
         "body": "Hallo {{ traits.name }}, das ist passiert.\nAbmelden: {{ unsubscribe_url }}\nAcme Inc., 1 Main St, Springfield"}}}"#;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn setup(n: usize, sink_port: u16) -> (Arc<dyn Store>, WorkspaceId, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let ws = Workspace { id: WorkspaceId::generate(), name: "bench".into(), created_at: Millis::now() };
    store.create_workspace(&ws, &[]).await.expect("workspace");
    let ws = ws.id;
    let spec = CampaignSpec::parse(CAMPAIGN).expect("campaign");
    store.put_campaign(&ws, &spec.id, &spec.to_json(), Millis::now()).await.expect("put campaign");
    let template = TemplateDefinition::parse(TEMPLATE).expect("template");
    store
        .put_definition(
            &ws,
            DefinitionKind::Template,
            "digest",
            &template.definition.to_json(),
            Millis::now(),
        )
        .await
        .expect("put template");
    store
        .set_setting(
            &ws,
            "compliance",
            r#"{"postal_address": "Acme Inc., 1 Main St, Springfield"}"#,
            Millis::now(),
        )
        .await
        .expect("rules");
    let connections = env_usize("OUTBOX_BENCH_CONNECTIONS", 16);
    let delivery = format!(
        r#"{{"channels": {{"email": {{"providers": [{{"type": "smtp", "host": "127.0.0.1", "port": {sink_port},
             "tls": "none", "from": "news@acme.example", "max_connections": {connections}}}]}}}},
           "tracking": {{"base_url": "https://t.acme.example"}}}}"#
    );
    store.set_setting(&ws, "delivery", &delivery, Millis::now()).await.expect("delivery");
    let now = Millis::now();
    let events: Vec<NewEvent> = (0..n)
        .map(|i| {
            let locale = if i % 3 == 0 { "de-DE" } else { "en-US" };
            NewEvent {
                workspace_id: ws.clone(),
                message_id: format!("id-{i}"),
                event_type: EventType::Identify,
                name: None,
                user_id: Some(format!("u{i}")),
                anonymous_id: None,
                previous_id: None,
                timestamp: now,
                received_at: now,
                raw: format!(
                    r#"{{"type":"identify","userId":"u{i}","traits":{{"name":"User {i}","email":"u{i}@example.com","locale":"{locale}"}}}}"#
                ),
                enrichment: "{}".into(),
            }
        })
        .collect();
    for chunk in events.chunks(1_000) {
        store.append(chunk.to_vec(), Millis(0)).await.expect("append");
    }
    let mut messages = Vec::with_capacity(n);
    for i in 0..n {
        let person =
            store.find_person(&ws, IdKind::User, &format!("u{i}")).await.expect("read").expect("person").id;
        let job = serde_json::json!({"job": {"decision_id": format!("dec_{i}"), "campaign": "bench", "campaign_version": 1,
            "arm": "email/a/now", "channel": "email", "content": "a", "user_id": format!("u{i}")}});
        messages.push(MessageRecord {
            id: format!("msg_dec_{i}"),
            person,
            channel: "email".into(),
            decision_id: Some(format!("dec_{i}")),
            campaign: Some("bench".into()),
            status: MessageStatus::Queued,
            attempts: 0,
            due_at: now,
            lease_until: None,
            provider: None,
            provider_message_id: None,
            body: job.to_string(),
            error: None,
            created_at: now,
            updated_at: now,
            seen_at: None,
        });
    }
    for chunk in messages.chunks(1_000) {
        store.enqueue_messages(&ws, chunk).await.expect("enqueue");
    }
    (store, ws, dir)
}

async fn run(n: usize) -> f64 {
    let delivered = Arc::new(AtomicU64::new(0));
    let port = smtp_sink::rust_sink(delivered.clone()).await;
    let (store, ws, _dir) = setup(n, port).await;
    let composer = Arc::new(Composer::new(store.clone(), None, None));
    let sender = Sender::new(store.clone(), composer, Arc::new(InAppHub::default()), SenderConfig::default());
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let round = sender.round(&ws).await.expect("round");
        assert_eq!(round.failed + round.dead, 0, "{round:?}");
        sent += round.sent;
        if round.claimed == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(delivered.load(Ordering::Relaxed), n as u64, "the sink got every message once");
    n as f64 / seconds
}

fn main() {
    let n = env_usize("OUTBOX_BENCH_N", 5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let mut rates: Vec<f64> = (0..3).map(|_| runtime.block_on(run(n))).collect();
    for (i, r) in rates.iter().enumerate() {
        println!("run {}: {n} emails composed, gated, sent and recorded in {:.0} emails/s", i + 1, r);
    }
    rates.sort_by(f64::total_cmp);
    println!("outbox → SMTP sink: median {:.0} emails/s ({n} per run)", rates[1]);
}
