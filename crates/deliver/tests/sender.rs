//! The outbox sender against a real store and real providers on loopback: a decision becomes
//! a rendered, signed webhook; the primary provider is down and the backup takes it; the
//! compliance gate blocks a message; a gone recipient bounces; a sender that died mid-send
//! is recovered without sending twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use whisperer_core::{EventType, Millis, NewEvent, Workspace, WorkspaceId};
use whisperer_decide::campaign::CampaignSpec;
use whisperer_decide::service::{DecideRequest, DecisionService};
use whisperer_deliver::{Composer, Sender, SenderConfig, TemplateDefinition};
use whisperer_store::{DefinitionKind, MessageStatus, Store};
use whisperer_store_sqlite::SqliteStore;

const SECRET: &str = "0123456789abcdef-test-secret";

/// A webhook receiver: records (headers, body) and answers 410 for user `gone`.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let state = r.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let gone = String::from_utf8_lossy(&body).contains(r#""userId":"gone""#);
                state.got.lock().unwrap().push((headers, body));
                if gone { StatusCode::GONE } else { StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

/// A port nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn identify(ws: &WorkspaceId, user: &str, traits: &str) -> NewEvent {
    let now = Millis::now();
    NewEvent {
        workspace_id: ws.clone(),
        message_id: format!("id-{user}"),
        event_type: EventType::Identify,
        name: None,
        user_id: Some(user.into()),
        anonymous_id: None,
        previous_id: None,
        timestamp: Millis(now.0 - 60_000),
        received_at: now,
        raw: format!(r#"{{"type":"identify","userId":"{user}","traits":{traits}}}"#),
        enrichment: "{}".into(),
    }
}

const CAMPAIGN: &str = r#"
id = "hello"
trigger = { type = "api" }
holdout_percent = 0
defer_in_quiet_hours = false
[goal]
event = "Session Started"
within = "1d"
[actions]
channels = ["webhook"]
contents = [{ id = "a", template = "greeting" }]
"#;

struct World {
    store: Arc<dyn Store>,
    ws: WorkspaceId,
    decisions: DecisionService,
    sender: Sender,
    _guard: Box<dyn std::any::Any>,
}

async fn world(providers: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    world_on(store, providers, Box::new(dir)).await
}

/// The same world on PostgreSQL, when a test database is configured.
async fn pg_world(providers: &str) -> Option<World> {
    let (store, schema) = whisperer_store_postgres::testing::fresh().await?;
    Some(world_on(Arc::new(store), providers, Box::new(schema)).await)
}

async fn world_on(store: Arc<dyn Store>, providers: &str, guard: Box<dyn std::any::Any>) -> World {
    let ws = Workspace { id: WorkspaceId::generate(), name: "deliver".into(), created_at: Millis::now() };
    store.create_workspace(&ws, &[]).await.unwrap();
    let ws = ws.id;
    let spec = CampaignSpec::parse(CAMPAIGN).unwrap();
    store.put_campaign(&ws, &spec.id, &spec.to_json(), Millis::now()).await.unwrap();
    let template = TemplateDefinition::parse(
        r#"{"locales": {
            "en": {"subject": "Hi {{ traits.name }}", "body": "Hello {{ traits.name }}, from {{ decision.campaign }}. {% if traits.offer is defined %}{{ traits.offer }}{% endif %}"},
            "de": {"subject": "Hallo {{ traits.name }}", "body": "Hallo {{ traits.name }}, schön dass du da bist."}}}"#,
    )
    .unwrap();
    store
        .put_definition(
            &ws,
            DefinitionKind::Template,
            "greeting",
            &template.definition.to_json(),
            Millis::now(),
        )
        .await
        .unwrap();
    store.set_setting(&ws, "fatigue", r#"{"quiet_hours": null}"#, Millis::now()).await.unwrap();
    store.set_setting(&ws, "delivery", providers, Millis::now()).await.unwrap();
    store.set_setting(&ws, "compliance", r#"{"banned_words": ["free money"]}"#, Millis::now()).await.unwrap();
    let decisions = DecisionService::new(store.clone(), None, None);
    let composer = Arc::new(Composer::new(store.clone(), None, None));
    let config = SenderConfig { lease: Duration::from_millis(300), ..SenderConfig::default() };
    let sender =
        Sender::new(store.clone(), composer, Arc::new(whisperer_deliver::InAppHub::default()), config);
    World { store, ws, decisions, sender, _guard: guard }
}

impl World {
    async fn decide(&self, user: &str, traits: &str) -> String {
        self.store.append(vec![identify(&self.ws, user, traits)], Millis(0)).await.unwrap();
        let req = DecideRequest { user_id: user, campaign: "hello", context: None, deliver: true };
        let d = self.decisions.decide(&self.ws, req).await.unwrap();
        assert_eq!(d.status.as_str(), "send", "{d:?}");
        format!("msg_{}", d.id)
    }

    async fn status(&self, id: &str) -> (MessageStatus, serde_json::Value, Option<String>) {
        let m = self.store.message(&self.ws, id).await.unwrap().unwrap();
        let error = m.error.as_deref().map(|e| serde_json::from_str(e).unwrap()).unwrap_or_default();
        (m.status, error, m.provider)
    }

    async fn events(&self, name: &str) -> Vec<serde_json::Value> {
        let events = self.store.events_after(&self.ws, 0, 1_000).await.unwrap();
        events
            .into_iter()
            .filter(|e| e.event.name.as_deref() == Some(name))
            .map(|e| serde_json::from_str::<serde_json::Value>(&e.event.raw).unwrap())
            .collect()
    }
}

fn webhooks(urls: &[(&str, &str, bool)]) -> String {
    let providers: Vec<String> = urls
        .iter()
        .map(|(name, url, dedup)| {
            format!(r#"{{"type": "webhook", "name": "{name}", "url": "{url}", "secret": "{SECRET}", "receiver_deduplicates": {dedup}}}"#)
        })
        .collect();
    format!(
        r#"{{"channels": {{"webhook": {{"providers": [{}]}}}}, "retry": {{"max_attempts": 3, "base_ms": 10, "max_ms": 50}}}}"#,
        providers.join(",")
    )
}

#[tokio::test]
async fn a_decision_is_rendered_signed_and_delivered_through_the_backup_when_the_primary_is_down() {
    let (url, rx) = receiver().await;
    let down = closed_port().await;
    let config = webhooks(&[("primary", &down, true), ("backup", &url, true)]);
    delivered_through_the_backup(world(&config).await, &rx).await;
    let (url, rx) = receiver().await;
    let config = webhooks(&[("primary", &down, true), ("backup", &url, true)]);
    if let Some(w) = pg_world(&config).await {
        delivered_through_the_backup(w, &rx).await;
    }
}

async fn delivered_through_the_backup(w: World, rx: &Receiver) {
    let id = w.decide("ada", r#"{"name": "Ada", "locale": "de-AT"}"#).await;

    let round = w.sender.round(&w.ws).await.unwrap();
    assert_eq!((round.claimed, round.sent), (1, 1), "{round:?}");
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let signature = headers["whisperer-signature"].to_str().unwrap();
    whisperer_channels::webhook::verify(
        SECRET.as_bytes(),
        signature,
        body,
        chrono::Utc::now(),
        Duration::from_secs(300),
    )
    .expect("signed with the workspace's secret");
    assert_eq!(headers["idempotency-key"].to_str().unwrap(), id);
    let payload: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["text"], "Hallo Ada, schön dass du da bist.", "de-AT falls back to de: {payload}");
    assert_eq!(payload["subject"], "Hallo Ada");

    let (status, error, provider) = w.status(&id).await;
    assert_eq!((status, provider.as_deref()), (MessageStatus::Sent, Some("backup")));
    assert_eq!(error["code"], "failed_over", "{error}");
    assert_eq!(error["tries"][0]["result"], "transient");
    let sent = w.events("Message Sent").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["properties"]["message_id"], id.as_str());
    assert_eq!(sent[0]["userId"], "ada");

    // Nothing is sent twice: the next round finds nothing due.
    assert_eq!(w.sender.round(&w.ws).await.unwrap().claimed, 0);
    assert_eq!(rx.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_gate_blocks_a_message_and_a_gone_recipient_bounces() {
    let (url, rx) = receiver().await;
    let w = world(&webhooks(&[("hook", &url, true)])).await;
    let blocked = w.decide("eve", r#"{"name": "Eve", "offer": "Free money inside"}"#).await;
    let gone = w.decide("gone", r#"{"name": "Gone"}"#).await;
    let round = w.sender.round(&w.ws).await.unwrap();
    assert_eq!((round.claimed, round.failed), (2, 2), "{round:?}");

    let (status, error, _) = w.status(&blocked).await;
    assert_eq!(status, MessageStatus::Failed);
    assert_eq!(error["code"], "compliance");
    assert_eq!(error["violations"][0]["rule"], "banned_word");
    assert_eq!(error["violations"][0]["offending"], "Free money", "{error}");
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "only the gone user's message reached the provider");

    let (status, error, _) = w.status(&gone).await;
    assert_eq!((status, error["code"].as_str()), (MessageStatus::Failed, Some("undeliverable")));
    let bounced = w.events("Message Bounced").await;
    assert_eq!(bounced.len(), 1);
    assert_eq!(bounced[0]["properties"]["channel"], "webhook");
    assert_eq!(bounced[0]["properties"]["type"], "hard");
}

#[tokio::test]
async fn transient_failures_retry_with_backoff_then_become_dead_letters() {
    let down = closed_port().await;
    let w = world(&webhooks(&[("only", &down, true)])).await;
    let id = w.decide("ada", r#"{"name": "Ada"}"#).await;
    let mut attempts = 0;
    for _ in 0..50 {
        let round = w.sender.round(&w.ws).await.unwrap();
        attempts += round.claimed;
        if round.dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(attempts, 3, "max_attempts");
    let (status, error, _) = w.status(&id).await;
    assert_eq!((status, error["code"].as_str()), (MessageStatus::Dead, Some("retries_exhausted")));
}

#[tokio::test]
async fn a_sender_that_died_mid_send_is_recovered_without_sending_twice() {
    let (url, rx) = receiver().await;
    // One route whose receiver drops duplicates, one whose receiver does not.
    let w = world(&webhooks(&[("hook", &url, false)])).await;
    let id = w.decide("ada", r#"{"name": "Ada"}"#).await;
    // A sender claims the message and dies before recording anything.
    let now = Millis::now();
    let claimed = w.store.claim_messages(&w.ws, now, Millis(now.0 + 50), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let round = w.sender.round(&w.ws).await.unwrap();
    assert_eq!((round.recovered, round.claimed), (1, 0));
    let (status, error, _) = w.status(&id).await;
    assert_eq!((status, error["code"].as_str()), (MessageStatus::Dead, Some("outcome_unknown")));
    assert!(rx.got.lock().unwrap().is_empty(), "not sent again without an operator");

    let dedup = world(&webhooks(&[("hook", &url, true)])).await;
    let id = dedup.decide("bob", r#"{"name": "Bob"}"#).await;
    let now = Millis::now();
    dedup.store.claim_messages(&dedup.ws, now, Millis(now.0 + 50), 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let round = dedup.sender.round(&dedup.ws).await.unwrap();
    assert_eq!((round.recovered, round.claimed, round.sent), (1, 1, 1), "{round:?}");
    assert_eq!(dedup.status(&id).await.0, MessageStatus::Sent);
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0["idempotency-key"].to_str().unwrap(),
        id,
        "the receiver can drop a repeat by its key"
    );
}

/// `{{ … }}` and `{% … %}` in order of appearance.
fn placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(['{']) {
        let tail = &rest[start..];
        let close = if tail.starts_with("{{") {
            "}}"
        } else if tail.starts_with("{%") {
            "%}"
        } else {
            rest = &tail[1..];
            continue;
        };
        let Some(end) = tail.find(close) else { break };
        found.push(tail[..end + 2].to_owned());
        rest = &tail[end + 2..];
    }
    found
}

/// An OpenAI-format chat completions server whose answer text is set per test; counts calls.
async fn llm_server(answer: Arc<Mutex<(u16, String)>>, calls: Arc<Mutex<usize>>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |body: Bytes| {
            let (answer, calls) = (answer.clone(), calls.clone());
            async move {
                *calls.lock().unwrap() += 1;
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(request["model"], "gpt-test");
                let (status, mut text) = answer.lock().unwrap().clone();
                if let Some(french) = text.strip_prefix("TRANSLATE:") {
                    // A translator that keeps every placeholder of the text, in order.
                    let prompt = request["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap();
                    text = format!("{french} {}", placeholders(prompt).join(" "));
                }
                if status != 200 {
                    let error = serde_json::json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}});
                    return (StatusCode::from_u16(status).unwrap(), axum::Json(error));
                }
                let body = serde_json::json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1_741_000_000, "model": "gpt-test",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
                });
                (StatusCode::OK, axum::Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn briefs_are_written_by_the_llm_and_fall_back_to_the_template_with_the_reason() {
    let answer = Arc::new(Mutex::new((200, String::new())));
    let calls = Arc::new(Mutex::new(0));
    let llm_url = llm_server(answer.clone(), calls.clone()).await;
    let w = world(r#"{"channels": {"in_app": {"providers": [{"type": "in_app"}]}}}"#).await;
    let campaign = CAMPAIGN
        .replace(r#"id = "hello""#, r#"id = "written""#)
        .replace(r#"channels = ["webhook"]"#, r#"channels = ["in_app"]"#)
        .replace(
            r#"{ id = "a", template = "greeting" }"#,
            r#"{ id = "a", brief = "welcome them back", template = "greeting" }"#,
        );
    let spec = CampaignSpec::parse(&campaign).unwrap();
    w.store.put_campaign(&w.ws, &spec.id, &spec.to_json(), Millis::now()).await.unwrap();
    let llm = serde_json::json!({
        "provider": "openai",
        "openai": {"model": "gpt-test", "base_url": llm_url, "max_retries": 0, "timeout_ms": 2000},
        "cache": {"capacity": 0, "ttl_secs": 1},
    });
    w.store.set_setting(&w.ws, "llm", &llm.to_string(), Millis::now()).await.unwrap();
    let decide = |user: &'static str| {
        let w = &w;
        async move {
            w.store
                .append(vec![identify(&w.ws, user, &format!(r#"{{"name": "{user}"}}"#))], Millis(0))
                .await
                .unwrap();
            let req = DecideRequest { user_id: user, campaign: "written", context: None, deliver: true };
            format!("msg_{}", w.decisions.decide(&w.ws, req).await.unwrap().id)
        }
    };
    let sent = |id: String| {
        let w = &w;
        async move {
            let m = w.store.message(&w.ws, &id).await.unwrap().unwrap();
            assert_eq!(m.status, MessageStatus::Sent);
            serde_json::from_str::<serde_json::Value>(&m.body).unwrap()["message"].clone()
        }
    };

    // The model's variant is rendered as a template for the user.
    answer.lock().unwrap().1 = r#"{"variants": [{"subject": "Welcome back", "body": "Good to see you again, {{ traits.name }}. Your projects are waiting for you."}]}"#.into();
    let id = decide("ann").await;
    assert_eq!(w.sender.round(&w.ws).await.unwrap().sent, 1);
    let p = sent(id).await;
    assert_eq!(p["text"], "Good to see you again, ann. Your projects are waiting for you.", "{p}");
    assert_eq!(p["data"]["content_source"], "llm", "{p}");

    // Output the gate refuses: the template goes out instead, and says why.
    answer.lock().unwrap().1 = r#"{"variants": [{"subject": "Free money", "body": "Free money for you, {{ traits.name }}, if you come back to your projects today."}]}"#.into();
    let id = decide("ben").await;
    assert_eq!(w.sender.round(&w.ws).await.unwrap().sent, 1);
    let p = sent(id).await;
    assert_eq!(p["text"], "Hello ben, from written. ", "{p}");
    assert_eq!(p["data"]["content_source"], "template");
    assert!(p["data"]["content_fallback"].as_str().unwrap().contains("banned_word"), "{p}");

    // The provider fails: the template again, with the failure.
    answer.lock().unwrap().0 = 500;
    let id = decide("cat").await;
    assert_eq!(w.sender.round(&w.ws).await.unwrap().sent, 1);
    let p = sent(id).await;
    assert!(p["data"]["content_fallback"].as_str().unwrap().starts_with("llm failed"), "{p}");
    assert_eq!(*calls.lock().unwrap(), 3);
    // The budget's spending is kept for the next start.
    assert!(w.store.setting(&w.ws, "llm_budget").await.unwrap().is_some());

    // A user whose language the template lacks gets it translated, placeholders kept.
    let translating = r#"{"channels": {"in_app": {"providers": [{"type": "in_app"}]}}, "content": {"translate_missing_locales": true}}"#;
    w.store.set_setting(&w.ws, "delivery", translating, Millis::now()).await.unwrap();
    let campaign = CAMPAIGN
        .replace(r#"id = "hello""#, r#"id = "plain""#)
        .replace(r#"channels = ["webhook"]"#, r#"channels = ["in_app"]"#);
    let spec = CampaignSpec::parse(&campaign).unwrap();
    w.store.put_campaign(&w.ws, &spec.id, &spec.to_json(), Millis::now()).await.unwrap();
    *answer.lock().unwrap() =
        (200, "TRANSLATE:Bonjour, nous sommes ravis de vous revoir parmi nous aujourd'hui.".into());
    w.store
        .append(vec![identify(&w.ws, "dan", r#"{"name": "Dan", "locale": "fr-CA"}"#)], Millis(0))
        .await
        .unwrap();
    let req = DecideRequest { user_id: "dan", campaign: "plain", context: None, deliver: true };
    let id = format!("msg_{}", w.decisions.decide(&w.ws, req).await.unwrap().id);
    tokio::time::sleep(Duration::from_millis(1_100)).await; // the sender reloads settings each second
    assert_eq!(w.sender.round(&w.ws).await.unwrap().sent, 1);
    let p = sent(id).await;
    assert_eq!(
        p["text"], "Bonjour, nous sommes ravis de vous revoir parmi nous aujourd'hui. Dan plain ",
        "{p}"
    );
    assert_eq!(p["data"]["translated_to"], "fr-CA", "{p}");
}

/// A webhook receiver that answers 503 while `down` is set.
async fn switchable() -> (String, Arc<std::sync::atomic::AtomicBool>, Arc<Mutex<usize>>) {
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(0));
    let (d, c) = (down.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let (d, c) = (d.clone(), c.clone());
            async move {
                *c.lock().unwrap() += 1;
                if d.load(std::sync::atomic::Ordering::SeqCst) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, down, calls)
}

#[tokio::test]
async fn the_primary_going_down_mid_run_fails_over_and_its_circuit_opens() {
    let (primary, down, primary_calls) = switchable().await;
    let (backup, backup_rx) = receiver().await;
    let providers = webhooks(&[("primary", &primary, true), ("backup", &backup, true)]);
    let config =
        providers.replace(r#""retry":"#, r#""breaker": {"failures": 2, "cool_down_ms": 60000}, "retry":"#);
    let w = world(&config).await;
    let mut first = Vec::new();
    for i in 0..4 {
        first.push(w.decide(&format!("early{i}"), r#"{"name": "Early"}"#).await);
    }
    assert_eq!(w.sender.round(&w.ws).await.unwrap().sent, 4);
    for id in &first {
        assert_eq!(w.status(id).await.2.as_deref(), Some("primary"));
    }

    // The primary goes down: the next messages fail over; after two failures its circuit opens
    // and it is not called again.
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut later = Vec::new();
    for i in 0..6 {
        later.push(w.decide(&format!("late{i}"), r#"{"name": "Late"}"#).await);
    }
    // One at a time, so the breaker sees each failure before the next send.
    let composer = Arc::new(Composer::new(w.store.clone(), None, None));
    let one_by_one = SenderConfig { batch: 1, ..SenderConfig::default() };
    let sender =
        Sender::new(w.store.clone(), composer, Arc::new(whisperer_deliver::InAppHub::default()), one_by_one);
    let mut sent = 0;
    for _ in 0..20 {
        sent += sender.round(&w.ws).await.unwrap().sent;
        if sent == 6 {
            break;
        }
    }
    assert_eq!(sent, 6);
    for id in &later {
        let (status, _, provider) = w.status(id).await;
        assert_eq!((status, provider.as_deref()), (MessageStatus::Sent, Some("backup")));
    }
    assert_eq!(backup_rx.got.lock().unwrap().len(), 6);
    let primary_total = *primary_calls.lock().unwrap();
    assert!(primary_total <= 4 + 2 + 6, "{primary_total}");
    let notes: Vec<serde_json::Value> = {
        let mut out = Vec::new();
        for id in &later {
            out.push(w.status(id).await.1);
        }
        out
    };
    let skipped = notes.iter().filter(|e| e["tries"][0]["result"] == "circuit_open").count();
    assert!(skipped >= 1, "the open circuit skipped the primary: {notes:?}");
    assert_eq!(primary_total, 4 + (6 - skipped), "the primary is called only while its circuit is closed");
}

#[tokio::test]
async fn the_locale_comes_from_traits_then_the_latest_context_then_the_workspace_default() {
    let (url, rx) = receiver().await;
    let config = webhooks(&[("hook", &url, true)])
        .replace(r#""retry":"#, r#""content": {"default_locale": "de"}, "retry":"#);
    let w = world(&config).await;
    // No locale trait, but the device said de-CH on the latest event.
    w.store.append(vec![identify(&w.ws, "kim", r#"{"name": "Kim"}"#)], Millis(0)).await.unwrap();
    let mut event = identify(&w.ws, "kim", "{}");
    event.message_id = "kim-page".into();
    event.event_type = EventType::Page;
    event.timestamp = Millis::now();
    event.raw = r#"{"type":"page","userId":"kim","context":{"locale":"de-CH"}}"#.into();
    w.store.append(vec![event], Millis(0)).await.unwrap();
    let req = DecideRequest { user_id: "kim", campaign: "hello", context: None, deliver: true };
    w.decisions.decide(&w.ws, req).await.unwrap();
    // French is not among the template's locales: the workspace's default (de) before the
    // template's own (en).
    w.decide("lou", r#"{"name": "Lou", "locale": "fr"}"#).await;
    // English is: the user's language wins.
    w.decide("max", r#"{"name": "Max", "locale": "en-GB"}"#).await;
    assert_eq!(w.sender.round(&w.ws).await.unwrap().sent, 3);
    let mut texts: Vec<String> = rx
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<serde_json::Value>(body).unwrap()["text"].as_str().unwrap().to_owned()
        })
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        ["Hallo Kim, schön dass du da bist.", "Hallo Lou, schön dass du da bist.", "Hello Max, from hello. "]
    );
}
