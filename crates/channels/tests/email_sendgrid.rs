//! The SendGrid provider against an axum server on loopback that checks the wire format of
//! v3 Mail Send and answers as SendGrid documents; and the signed Event Webhook with a key
//! made by ring.

use std::collections::BTreeMap;

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use whisperer_channels::email::SendgridConfig;
use whisperer_channels::email::sendgrid::{p256_spki_from_point, parse_events, verify_event_webhook};
use whisperer_channels::{
    CallbackError, Channel, DeliveryStatus, FailureKind, Message, MessageKind, Provider, Recipient,
};

#[path = "support/recorder.rs"]
mod recorder;
use recorder::serve;

fn config(base_url: &str) -> SendgridConfig {
    SendgridConfig {
        base_url: base_url.to_owned(),
        from_name: Some("Shop News".into()),
        ..SendgridConfig::new("SG.test-key.abc", "news@shop.example")
    }
}

fn message() -> Message {
    Message {
        id: "msg_sg_1".into(),
        workspace: "ws_1".into(),
        person: "p_1".into(),
        user_id: Some("ada".into()),
        channel: Channel::Email,
        kind: MessageKind::Marketing,
        recipient: Recipient::Email { address: "ada@example.com".into(), name: Some("Ada".into()) },
        subject: Some("Your cart misses you".into()),
        text: "Hello Ada".into(),
        html: Some("<p>Hello Ada</p>".into()),
        headers: vec![
            ("List-Unsubscribe".into(), "<https://u.shop.example/u/tok>".into()),
            ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
        ],
        data: BTreeMap::from([("decision_id".into(), "dec_9".into()), ("campaign".into(), "winback".into())]),
    }
}

#[tokio::test]
async fn mail_send_posts_the_documented_body() {
    let (url, server) =
        serve(vec![(202, vec![("x-message-id", "W86EgYT6SQKk0lRflfLRsA")], String::new())]).await;
    let provider = config(&url).build().unwrap();
    let receipt = provider.send(&message()).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("W86EgYT6SQKk0lRflfLRsA"));

    let seen = server.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/v3/mail/send");
    assert_eq!(seen.headers["authorization"], "Bearer SG.test-key.abc");
    assert_eq!(seen.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body,
        json!({
            "personalizations": [{"to": [{"email": "ada@example.com", "name": "Ada"}]}],
            "from": {"email": "news@shop.example", "name": "Shop News"},
            "subject": "Your cart misses you",
            "content": [
                {"type": "text/plain", "value": "Hello Ada"},
                {"type": "text/html", "value": "<p>Hello Ada</p>"}
            ],
            "headers": {
                "List-Unsubscribe": "<https://u.shop.example/u/tok>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"
            },
            "custom_args": {"whisperer_message_id": "msg_sg_1", "decision_id": "dec_9", "campaign": "winback"}
        })
    );
}

#[tokio::test]
async fn refusals_map_to_what_happens_next() {
    let errors = r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#;
    let (url, _server) = serve(vec![
        (429, vec![("retry-after", "7")], r#"{"errors":[{"message":"too many requests"}]}"#.into()),
        (400, vec![], errors.into()),
        (401, vec![], r#"{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]}"#.into()),
        (500, vec![], "oops".into()),
    ])
    .await;
    let provider = config(&url).build().unwrap();

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::RateLimited, "429"), "{err}");
    assert_eq!(err.retry_after_ms, Some(7_000));

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Provider, "400"), "{err}");
    assert_eq!(err.message, "from: The from address does not match a verified Sender Identity.");

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Provider, "{err}");
    assert!(err.message.contains("authorization grant is invalid"), "{err}");

    let err = provider.send(&message()).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Transient, "500"), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err =
        config(&format!("http://127.0.0.1:{port}")).build().unwrap().send(&message()).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Transient, "io"), "{err}");
}

/// An Event Webhook post in SendGrid's documented shape: one event of each kind, custom args
/// at the top level of each event.
fn events_body() -> String {
    let base = |event: &str, ts: i64| {
        json!({
            "email": "ada@example.com",
            "timestamp": ts,
            "event": event,
            "sg_event_id": format!("ev-{event}"),
            "sg_message_id": "W86EgYT6SQKk0lRflfLRsA.filterdrecv-5645d9c87f-6r2ch-1-62E9E2A4-3.0",
            "smtp-id": "<W86EgYT6SQKk0lRflfLRsA@ismtpd0001p1lon1.sendgrid.net>",
            "category": ["winback"],
            "whisperer_message_id": "msg_sg_1",
            "decision_id": "dec_9"
        })
    };
    let mut events = vec![base("processed", 1_669_651_000), base("delivered", 1_669_651_001)];
    let mut e = base("delivered", 1_669_651_001);
    e["response"] = json!("250 OK");
    events[1] = e;
    events.push(base("open", 1_669_651_100));
    let mut click = base("click", 1_669_651_200);
    click["url"] = json!("https://shop.example/cart?utm=x");
    events.push(click);
    let mut bounce = base("bounce", 1_669_651_300);
    bounce["type"] = json!("bounce");
    bounce["reason"] = json!("550 5.1.1 The email account that you tried to reach does not exist");
    bounce["status"] = json!("5.1.1");
    bounce["bounce_classification"] = json!("Invalid Address");
    events.push(bounce);
    let mut blocked = base("bounce", 1_669_651_301);
    blocked["type"] = json!("blocked");
    blocked["reason"] = json!("550 5.7.1 blocked by policy");
    events.push(blocked);
    let mut dropped = base("dropped", 1_669_651_302);
    dropped["reason"] = json!("Bounced Address");
    events.push(dropped);
    let mut deferred = base("deferred", 1_669_651_303);
    deferred["response"] = json!("400 try again later");
    deferred["attempt"] = json!("5");
    events.push(deferred);
    events.push(base("spamreport", 1_669_651_400));
    events.push(base("unsubscribe", 1_669_651_500));
    let mut group = base("group_unsubscribe", 1_669_651_501);
    group["asm_group_id"] = json!(42);
    events.push(group);
    serde_json::to_string(&events).unwrap()
}

#[test]
fn signed_event_webhook_verifies_and_parses() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public_key = STANDARD.encode(p256_spki_from_point(pair.public_key().as_ref()));
    let body = events_body();
    let timestamp = "1669651500";
    let signed = [timestamp.as_bytes(), body.as_bytes()].concat();
    let signature = STANDARD.encode(pair.sign(&rng, &signed).unwrap());

    assert_eq!(verify_event_webhook(&public_key, &signature, timestamp, body.as_bytes()), Ok(()));
    let tampered = body.replace("\"bounce\",", "\"delivered\",");
    assert_ne!(tampered, body);
    assert_eq!(
        verify_event_webhook(&public_key, &signature, timestamp, tampered.as_bytes()),
        Err(CallbackError::BadSignature)
    );
    assert_eq!(
        verify_event_webhook(&public_key, &signature, "1669651501", body.as_bytes()),
        Err(CallbackError::BadSignature)
    );

    let events = parse_events(body.as_bytes()).unwrap();
    let statuses: Vec<DeliveryStatus> = events.iter().map(|e| e.status).collect();
    use DeliveryStatus::*;
    assert_eq!(
        statuses,
        [
            Delivered,
            Opened,
            Clicked,
            Bounced,
            Deferred,
            Failed,
            Deferred,
            Complained,
            Unsubscribed,
            Unsubscribed
        ],
        "processed is skipped"
    );
    for e in &events {
        assert_eq!(e.message_id.as_deref(), Some("msg_sg_1"));
        assert_eq!(e.provider_message_id.as_deref(), Some("W86EgYT6SQKk0lRflfLRsA"), "matches X-Message-Id");
    }
    assert_eq!(events[0].at, 1_669_651_001_000);
    assert_eq!(events[2].detail["url"], "https://shop.example/cart?utm=x");
    assert_eq!(events[3].detail["type"], "bounce");
    assert_eq!(events[3].detail["status"], "5.1.1");
    assert_eq!(events[4].detail["type"], "blocked");
    assert_eq!(events[6].detail["attempt"], "5");
    assert_eq!(events[9].detail["asm_group_id"], "42");

    assert!(matches!(parse_events(b"{\"event\":\"open\"}"), Err(CallbackError::Malformed(_))));
    assert!(matches!(parse_events(b"[{\"event\":\"open\"}]"), Err(CallbackError::Malformed(_))));
}
