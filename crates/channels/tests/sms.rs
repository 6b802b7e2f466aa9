//! The Twilio provider against a loopback server that speaks the Messages API: Basic auth, the
//! form body, the idempotency header, and Twilio's documented success and error bodies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use whisperer_channels::sms::{self, TwilioConfig};
use whisperer_channels::{
    CallbackError, Channel, DeliveryStatus, FailureKind, Message, MessageKind, Provider, Recipient,
};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "test-auth-token-not-real";
const API_KEY: &str = "SKfedcba9876543210fedcba9876543210";
const API_SECRET: &str = "test-api-key-secret";
const FROM: &str = "+15005550006";

/// Twilio's magic test numbers: 0001 is invalid (21211); the others are this fake's own.
const INVALID: &str = "+15005550001";
const THROTTLED: &str = "+15005550777";
const DOWN: &str = "+15005550888";

#[derive(Clone, Debug)]
struct Seen {
    account: String,
    form: BTreeMap<String, String>,
    idempotency_token: Option<String>,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn messages(
    State(fake): State<Fake>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Twilio takes the account SID with its auth token, or an API key SID with its secret.
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected_token = format!("Basic {}", STANDARD.encode(format!("{ACCOUNT}:{TOKEN}")));
    let expected_key = format!("Basic {}", STANDARD.encode(format!("{API_KEY}:{API_SECRET}")));
    if account != ACCOUNT || (auth != expected_token && auth != expected_key) {
        return twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-www-form-urlencoded")
    {
        return twilio_error(StatusCode::BAD_REQUEST, 20001, "expected a form body");
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let idempotency_token =
        headers.get("i-twilio-idempotency-token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let to = form.get("To").cloned().unwrap_or_default();
    fake.seen.lock().unwrap().push(Seen { account, form: form.clone(), idempotency_token });
    if !form.contains_key("Body") || !(form.contains_key("From") || form.contains_key("MessagingServiceSid"))
    {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    }
    match to.as_str() {
        INVALID => twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        ),
        THROTTLED => {
            let mut response = twilio_error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            response.headers_mut().insert("retry-after", "7".parse().unwrap());
            response
        }
        DOWN => twilio_error(StatusCode::SERVICE_UNAVAILABLE, 20500, "Internal Server Error"),
        _ => {
            let body = json!({
                "sid": "SM0123456789abcdef0123456789abcdef",
                "account_sid": ACCOUNT,
                "to": to,
                "from": form.get("From"),
                "body": form.get("Body"),
                "status": "queued",
                "error_code": null,
                "error_message": null,
            });
            (StatusCode::CREATED, [("content-type", "application/json")], body.to_string()).into_response()
        }
    }
}

async fn start() -> (SocketAddr, Fake) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/2010-04-01/Accounts/{account}/Messages.json", post(messages))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, fake)
}

fn config(addr: SocketAddr) -> TwilioConfig {
    let mut config = TwilioConfig::new(ACCOUNT, TOKEN, FROM);
    config.base_url = format!("http://{addr}");
    config.status_callback = Some("https://hooks.example.com/twilio/status".into());
    config
}

fn sms_to(number: &str) -> Message {
    Message {
        id: "msg_sms_1".into(),
        workspace: "ws_1".into(),
        person: "p_1".into(),
        user_id: None,
        channel: Channel::Sms,
        kind: MessageKind::Transactional,
        recipient: Recipient::Phone { number: number.into() },
        subject: None,
        text: "Your code is 123456 & expires soon".into(),
        html: None,
        headers: vec![],
        data: BTreeMap::new(),
    }
}

#[tokio::test]
async fn a_message_is_posted_as_twilio_documents_and_its_sid_comes_back() {
    let (addr, fake) = start().await;
    let twilio = config(addr).build().unwrap();
    assert!(twilio.deduplicates());
    let receipt = twilio.send(&sms_to("+4915112345678")).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("SM0123456789abcdef0123456789abcdef"));

    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].account, ACCOUNT);
    assert_eq!(seen[0].form["To"], "+4915112345678");
    assert_eq!(seen[0].form["From"], FROM);
    assert_eq!(seen[0].form["Body"], "Your code is 123456 & expires soon");
    assert_eq!(seen[0].form["StatusCallback"], "https://hooks.example.com/twilio/status");
    assert_eq!(seen[0].idempotency_token.as_deref(), Some("msg_sms_1"));
}

#[tokio::test]
async fn an_api_key_and_a_messaging_service_work_instead_of_token_and_number() {
    let (addr, fake) = start().await;
    let mut config = config(addr);
    config.auth_token = None;
    config.api_key_sid = Some(API_KEY.into());
    config.api_key_secret = Some(API_SECRET.into());
    config.from = None;
    config.messaging_service_sid = Some("MG0123456789abcdef0123456789abcdef".into());
    config.build().unwrap().send(&sms_to("+4915112345678")).await.unwrap();
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[0].form["MessagingServiceSid"], "MG0123456789abcdef0123456789abcdef");
    assert!(!seen[0].form.contains_key("From"));
}

#[tokio::test]
async fn an_invalid_number_is_a_recipient_failure_sent_once() {
    let (addr, fake) = start().await;
    let error = config(addr).build().unwrap().send(&sms_to(INVALID)).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::Recipient);
    assert_eq!(error.code, "21211");
    assert!(error.message.contains("not a valid phone number"), "{}", error.message);
    assert_eq!(fake.seen.lock().unwrap().len(), 1, "a recipient failure is not retried");
}

#[tokio::test]
async fn throttling_carries_retry_after_and_outages_are_transient() {
    let (addr, _fake) = start().await;
    let twilio = config(addr).build().unwrap();
    let throttled = twilio.send(&sms_to(THROTTLED)).await.unwrap_err();
    assert_eq!(throttled.kind, FailureKind::RateLimited);
    assert_eq!(throttled.code, "20429");
    assert_eq!(throttled.retry_after(), Some(std::time::Duration::from_secs(7)));
    let down = twilio.send(&sms_to(DOWN)).await.unwrap_err();
    assert_eq!(down.kind, FailureKind::Transient);
}

#[tokio::test]
async fn refused_credentials_are_a_provider_failure() {
    let (addr, _fake) = start().await;
    let mut config = config(addr);
    config.auth_token = Some("wrong-token".into());
    let error = config.build().unwrap().send(&sms_to("+4915112345678")).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_str()), (FailureKind::Provider, "20003"));
}

#[tokio::test]
async fn a_closed_port_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = config(addr).build().unwrap().send(&sms_to("+4915112345678")).await.unwrap_err();
    assert_eq!(error.kind, FailureKind::Transient);
}

/// A status callback as Twilio posts it, signed here with HMAC-SHA1 directly (not through the
/// crate), then checked and read by the crate.
#[test]
fn a_signed_status_callback_verifies_and_reads() {
    let url = "https://hooks.example.com/twilio/status?ws=ws_1";
    let body = "SmsSid=SM01&SmsStatus=undelivered&MessageStatus=undelivered&To=%2B4915112345678\
                &MessageSid=SM01&AccountSid=AC0123456789abcdef0123456789abcdef&From=%2B15005550006\
                &ErrorCode=30005&ApiVersion=2010-04-01";
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let mut sorted = params.clone();
    sorted.sort();
    let signed: String =
        std::iter::once(url.to_string()).chain(sorted.iter().map(|(k, v)| format!("{k}{v}"))).collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TOKEN.as_bytes());
    let header = STANDARD.encode(ring::hmac::sign(&key, signed.as_bytes()).as_ref());

    assert_eq!(sms::verify_signature(TOKEN, url, &params, Some(&header)), Ok(()));
    assert_eq!(
        sms::verify_signature(TOKEN, "https://hooks.example.com/twilio/status", &params, Some(&header)),
        Err(CallbackError::BadSignature)
    );
    let event = sms::parse_status_callback(&params).unwrap().unwrap();
    assert_eq!(event.status, DeliveryStatus::Bounced);
    assert_eq!(event.provider_message_id.as_deref(), Some("SM01"));
    assert_eq!(event.detail["error_code"], "30005");
}
