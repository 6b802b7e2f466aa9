//! The SMTP provider against a real SMTP server: aiosmtpd (`tests/smtp/sink.py`) on loopback,
//! installed into `.test-deps/venv` by `scripts/setup-test-deps`. Each test starts its own
//! sink and reads what it received: envelope, raw message, TLS, AUTH, every RCPT.
//!
//! Without the venv the tests print `skipping: …` and pass, unless
//! `WHISPERER_REQUIRE_CLIENTS=1`, when they fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use whisperer_channels::email::{SmtpConfig, SmtpTls};
use whisperer_channels::{Channel, FailureKind, Message, MessageKind, Provider, Recipient};

#[path = "support/aiosmtpd.rs"]
mod aiosmtpd;
use aiosmtpd::{Sink, python};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

impl Sink {
    fn config(&self, tls: SmtpTls) -> SmtpConfig {
        SmtpConfig {
            port: Some(self.port),
            tls,
            from_name: Some("Shop News".into()),
            timeout_ms: 5_000,
            ..SmtpConfig::new("127.0.0.1", "news@shop.example")
        }
    }
}

fn message(id: &str, to: &str) -> Message {
    Message {
        id: id.into(),
        workspace: "ws_1".into(),
        person: "p_1".into(),
        user_id: Some("ada".into()),
        channel: Channel::Email,
        kind: MessageKind::Marketing,
        recipient: Recipient::Email { address: to.into(), name: Some("Ada Lovelace".into()) },
        subject: Some("Your cart misses you".into()),
        text: "Hello Ada,\nyour cart is waiting.".into(),
        html: Some("<p>Hello <b>Ada</b>, your cart is waiting.</p>".into()),
        headers: vec![
            ("List-Unsubscribe".into(), "<https://u.shop.example/u/tok123>, <mailto:u@shop.example>".into()),
            ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
        ],
        data: BTreeMap::new(),
    }
}

/// The header block of a raw message, unfolded, as (lowercase name, value).
fn headers(raw: &str) -> Vec<(String, String)> {
    let head = raw.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ").replace("\r\n\t", " ");
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect()
}

fn header<'a>(all: &'a [(String, String)], name: &str) -> &'a str {
    let found: Vec<_> = all.iter().filter(|(n, _)| n == name).collect();
    assert_eq!(found.len(), 1, "one {name} header in {all:?}");
    &found[0].1
}

#[tokio::test]
async fn plain_delivery_writes_the_mime_message_and_headers() {
    let Some(python) = python() else { return };
    let sink = Sink::start(&python, &[]).await;
    let provider = sink.config(SmtpTls::None).build().unwrap();
    let receipt = provider.send(&message("msg_001", "ada@example.com")).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("<msg_001@shop.example>"));

    let got = sink.messages(1).await;
    let m = &got[0];
    assert_eq!(m["mail_from"], "news@shop.example");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["ada@example.com"]));
    assert_eq!(m["tls"], false);
    let raw = m["data"].as_str().unwrap();
    let h = headers(raw);
    assert_eq!(header(&h, "message-id"), "<msg_001@shop.example>");
    assert_eq!(header(&h, "from"), "\"Shop News\" <news@shop.example>");
    assert_eq!(header(&h, "to"), "\"Ada Lovelace\" <ada@example.com>");
    assert_eq!(header(&h, "subject"), "Your cart misses you");
    assert_eq!(header(&h, "mime-version"), "1.0");
    assert_eq!(header(&h, "list-unsubscribe"), "<https://u.shop.example/u/tok123>, <mailto:u@shop.example>");
    assert_eq!(header(&h, "list-unsubscribe-post"), "List-Unsubscribe=One-Click");
    assert!(header(&h, "date").contains("+0000"), "{h:?}");
    let content_type = header(&h, "content-type");
    assert!(content_type.starts_with("multipart/alternative; boundary="), "{content_type}");
    let boundary = content_type.split("boundary=").nth(1).unwrap().trim_matches('"');
    let parts: Vec<&str> = raw.split(&format!("--{boundary}")).collect();
    // preamble, text, html, closing "--"
    assert_eq!(parts.len(), 4, "{raw}");
    assert!(parts[1].contains("Content-Type: text/plain; charset=utf-8"), "{}", parts[1]);
    assert!(parts[1].contains("your cart is waiting."), "{}", parts[1]);
    assert!(parts[2].contains("Content-Type: text/html; charset=utf-8"), "{}", parts[2]);
    assert!(parts[2].contains("<b>Ada</b>"), "{}", parts[2]);
    assert!(parts[3].starts_with("--"), "{}", parts[3]);
}

#[tokio::test]
async fn text_only_messages_are_a_single_text_part() {
    let Some(python) = python() else { return };
    let sink = Sink::start(&python, &[]).await;
    let provider = sink.config(SmtpTls::None).build().unwrap();
    let mut m = message("msg_text", "ada@example.com");
    m.html = None;
    provider.send(&m).await.unwrap();
    let raw = sink.messages(1).await[0]["data"].as_str().unwrap().to_owned();
    assert_eq!(header(&headers(&raw), "content-type"), "text/plain; charset=utf-8");
    assert!(!raw.contains("multipart"), "{raw}");
}

#[tokio::test]
async fn starttls_with_auth_against_a_private_root() {
    let Some(python) = python() else { return };
    let cert = fixture("smtp-server.pem");
    let key = fixture("smtp-server.key");
    let sink = Sink::start(
        &python,
        &[
            "--tls",
            "starttls",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--auth",
            "ada:s3cret",
        ],
    )
    .await;
    let config = SmtpConfig {
        root_certificate: Some(fixture("smtp-ca.pem")),
        username: Some("ada".into()),
        password: Some("s3cret".into()),
        ..sink.config(SmtpTls::StarttlsRequired)
    };
    let provider = config.build().unwrap();
    provider.send(&message("msg_tls", "bob@example.com")).await.unwrap();
    let got = sink.messages(1).await;
    assert_eq!(got[0]["tls"], true, "{}", got[0]);
    assert_eq!(got[0]["login"], "ada");

    let wrong = SmtpConfig { password: Some("wrong".into()), ..config };
    let err = wrong.build().unwrap().send(&message("msg_tls2", "bob@example.com")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Provider, "{err}");
    assert!(err.code.starts_with("535"), "{err}");
    assert_eq!(sink.messages(1).await.len(), 1, "nothing delivered with a wrong password");
}

#[tokio::test]
async fn implicit_tls_is_verified_against_the_configured_root() {
    let Some(python) = python() else { return };
    let cert = fixture("smtp-server.pem");
    let key = fixture("smtp-server.key");
    let sink = Sink::start(
        &python,
        &["--tls", "implicit", "--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()],
    )
    .await;
    let config =
        SmtpConfig { root_certificate: Some(fixture("smtp-ca.pem")), ..sink.config(SmtpTls::Implicit) };
    config.build().unwrap().send(&message("msg_465", "ada@example.com")).await.unwrap();
    assert_eq!(sink.messages(1).await[0]["tls"], true);

    // Without the private root the certificate is unknown: this relay is unusable.
    let untrusted = SmtpConfig { root_certificate: None, ..config };
    let err = untrusted.build().unwrap().send(&message("msg_465b", "ada@example.com")).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Provider, "tls"), "{err}");
    assert_eq!(sink.messages(1).await.len(), 1);
}

#[tokio::test]
async fn starttls_required_refuses_a_server_without_it() {
    let Some(python) = python() else { return };
    let sink = Sink::start(&python, &[]).await;
    let err = sink
        .config(SmtpTls::StarttlsRequired)
        .build()
        .unwrap()
        .send(&message("msg_nostarttls", "ada@example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Provider, "{err}");
    // Opportunistic STARTTLS goes on in plain text.
    sink.config(SmtpTls::Starttls)
        .build()
        .unwrap()
        .send(&message("msg_opp", "ada@example.com"))
        .await
        .unwrap();
    let got = sink.messages(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["tls"], false);
}

#[tokio::test]
async fn unknown_mailbox_is_the_recipients_failure_and_is_sent_once() {
    let Some(python) = python() else { return };
    let sink = Sink::start(
        &python,
        &[
            "--reject",
            "gone@example.com=550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown",
            "--reject",
            "busy@example.com=451 4.3.0 Mailbox temporarily unavailable",
        ],
    )
    .await;
    let provider = sink.config(SmtpTls::None).build().unwrap();
    let err = provider.send(&message("msg_gone", "gone@example.com")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Recipient, "{err}");
    assert_eq!(err.code, "550 5.1.1");
    assert!(err.message.contains("User unknown"), "{err}");
    let rcpts: Vec<Value> =
        sink.all("rcpt").into_iter().filter(|r| r["address"] == "gone@example.com").collect();
    assert_eq!(rcpts.len(), 1, "no retry of a dead mailbox: {rcpts:?}");

    let err = provider.send(&message("msg_busy", "busy@example.com")).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Transient, "451 4.3.0"), "{err}");

    // The pool recovers: the next message goes through.
    provider.send(&message("msg_after", "ada@example.com")).await.unwrap();
    let got = sink.messages(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["rcpt_tos"], serde_json::json!(["ada@example.com"]));
}

#[tokio::test]
async fn many_concurrent_sends_share_a_small_pool() {
    let Some(python) = python() else { return };
    let sink = Sink::start(&python, &[]).await;
    let provider = Arc::new(SmtpConfig { max_connections: 3, ..sink.config(SmtpTls::None) }.build().unwrap());
    let sends: Vec<_> = (0..30)
        .map(|i| {
            let provider = Arc::clone(&provider);
            tokio::spawn(async move { provider.send(&message(&format!("msg_{i}"), "ada@example.com")).await })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    let got = sink.messages(30).await;
    let mut ids: Vec<String> =
        got.iter().map(|m| header(&headers(m["data"].as_str().unwrap()), "message-id").to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "every message once");
}

#[tokio::test]
async fn connection_refused_is_transient() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config =
        SmtpConfig { port: Some(port), tls: SmtpTls::None, ..SmtpConfig::new("127.0.0.1", "a@shop.example") };
    let err = config.build().unwrap().send(&message("msg_refused", "ada@example.com")).await.unwrap_err();
    assert_eq!((err.kind, err.code.as_str()), (FailureKind::Transient, "io"), "{err}");
}
