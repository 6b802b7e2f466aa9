//! The webhook provider against a loopback receiver that does what the documented contract
//! asks of customers: checks `Whisperer-Signature` (with its own HMAC and with the crate's
//! `verify`), dedupes on `Idempotency-Key`, and answers 2xx, 410 or 500.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use whisperer_channels::webhook::{self, WebhookConfig};
use whisperer_channels::{Channel, FailureKind, Message, MessageKind, Provider, Recipient};

const SECRET: &str = "whsec-test-only-0123456789";

#[derive(Clone, Default)]
struct Receiver {
    /// Bodies accepted, one per idempotency key.
    accepted: Arc<Mutex<Vec<serde_json::Value>>>,
    keys: Arc<Mutex<BTreeSet<String>>>,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    requests: Arc<Mutex<usize>>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Checks the signature the way a receiver in another language would: parse `t` and `v1`,
/// HMAC-SHA256 over `"{t}.{body}"`, compare.
fn signature_holds(headers: &HeaderMap, body: &[u8]) -> bool {
    let value = header(headers, "whisperer-signature");
    let parts: BTreeMap<&str, &str> = value.split(',').filter_map(|p| p.split_once('=')).collect();
    let (Some(t), Some(v1)) = (parts.get("t"), parts.get("v1")) else { return false };
    let Ok(t) = t.parse::<i64>() else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 60 {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let signed = [format!("{t}.").as_bytes(), body].concat();
    hex::encode(ring::hmac::sign(&key, &signed).as_ref()) == *v1
}

async fn hooks(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *receiver.requests.lock().unwrap() += 1;
    receiver.headers.lock().unwrap().push(headers.clone());
    if !signature_holds(&headers, &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let crate_says = webhook::verify(
        SECRET.as_bytes(),
        header(&headers, "whisperer-signature"),
        &body,
        chrono::Utc::now(),
        Duration::from_secs(300),
    );
    if crate_says.is_err() || header(&headers, "content-type") != "application/json" {
        return StatusCode::BAD_REQUEST;
    }
    let key = header(&headers, "idempotency-key").to_string();
    if key.is_empty() || header(&headers, "whisperer-message-id") != key {
        return StatusCode::BAD_REQUEST;
    }
    if !receiver.keys.lock().unwrap().insert(key) {
        // Seen before: acknowledge without acting again.
        return StatusCode::OK;
    }
    let Ok(json) = serde_json::from_slice(&body) else { return StatusCode::BAD_REQUEST };
    receiver.accepted.lock().unwrap().push(json);
    StatusCode::NO_CONTENT
}

async fn start() -> (SocketAddr, Receiver) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/hooks", post(hooks))
        .route("/gone", post(|| async { StatusCode::GONE }))
        .route("/broken", post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database is down") }))
        .route("/slow-down", post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "3")], "") }))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, receiver)
}

fn message() -> Message {
    Message {
        id: "msg_wh_1".into(),
        workspace: "ws_1".into(),
        person: "p_1".into(),
        user_id: Some("ada".into()),
        channel: Channel::Webhook,
        kind: MessageKind::Marketing,
        recipient: Recipient::Person,
        subject: Some("We miss you".into()),
        text: "20% off this week".into(),
        html: None,
        headers: vec![],
        data: BTreeMap::from([("campaign".into(), "winback".into())]),
    }
}

#[tokio::test]
async fn a_signed_payload_reaches_the_receiver_once_per_idempotency_key() {
    let (addr, receiver) = start().await;
    let mut config = WebhookConfig::new(format!("http://{addr}/hooks"), SECRET);
    config.headers.insert("X-Customer-Token".into(), "abc".into());
    let hook = config.build().unwrap();
    assert!(hook.deduplicates());

    assert_eq!(hook.send(&message()).await.unwrap().provider_message_id, None);
    // A repeat of the same message (a retry after a lost answer) is acknowledged, not acted on.
    hook.send(&message()).await.unwrap();
    assert_eq!(*receiver.requests.lock().unwrap(), 2);

    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1);
    let body = &accepted[0];
    assert_eq!(body["id"], "msg_wh_1");
    assert_eq!(body["workspace"], "ws_1");
    assert_eq!(body["person"], "p_1");
    assert_eq!(body["userId"], "ada");
    assert_eq!(body["channel"], "webhook");
    assert_eq!(body["kind"], "marketing");
    assert_eq!(body["subject"], "We miss you");
    assert_eq!(body["text"], "20% off this week");
    assert_eq!(body["data"]["campaign"], "winback");
    let sent_at = chrono::DateTime::parse_from_rfc3339(body["sentAt"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - sent_at.to_utc()).num_seconds().abs() < 60);
    assert_eq!(header(&receiver.headers.lock().unwrap()[0], "x-customer-token"), "abc");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_receiver() {
    let (addr, receiver) = start().await;
    let hook = WebhookConfig::new(format!("http://{addr}/hooks"), "some-other-secret-16b").build().unwrap();
    let error = hook.send(&message()).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_str()), (FailureKind::Provider, "401"));
    assert!(receiver.accepted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn gone_is_a_recipient_failure_and_errors_are_classified() {
    let (addr, _receiver) = start().await;
    let send = |path: &'static str| async move {
        let hook = WebhookConfig::new(format!("http://{addr}{path}"), SECRET).build().unwrap();
        hook.send(&message()).await.unwrap_err()
    };
    assert_eq!(send("/gone").await.kind, FailureKind::Recipient);
    let broken = send("/broken").await;
    assert_eq!((broken.kind, broken.code.as_str()), (FailureKind::Transient, "500"));
    assert!(broken.message.contains("database is down"));
    let throttled = send("/slow-down").await;
    assert_eq!(throttled.kind, FailureKind::RateLimited);
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(send("/missing").await.kind, FailureKind::Provider);
}

#[tokio::test]
async fn deduplication_follows_the_config() {
    let mut config = WebhookConfig::new("http://127.0.0.1:9/hooks", SECRET);
    config.receiver_deduplicates = false;
    assert!(!config.build().unwrap().deduplicates());
}
