//! The push providers against loopback servers that speak the real protocols.
//!
//! FCM: a fake Google with an OAuth token endpoint that verifies the JWT bearer assertion's
//! RS256 signature with the test key's public half and checks its claims, and an HTTP v1 send
//! endpoint that takes only tokens it issued and answers with FCM's documented bodies.
//!
//! Web Push: a fake push service that verifies the VAPID JWT (ES256 signature with the `k=` key,
//! audience, expiry, subject) and then decrypts the body as the browser would, with the
//! subscription's private key and auth secret (RFC 8291, written out here independently with
//! p256 and HMAC), to get the plaintext back.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SecureRandom;
use serde_json::{Value, json};
use whisperer_channels::push::fcm::{FcmConfig, SCOPE};
use whisperer_channels::push::webpush::{Urgency, WebPushConfig, generate_vapid_keys};
use whisperer_channels::{Channel, FailureKind, Message, MessageKind, Provider, Recipient};

const PRIVATE_KEY_PEM: &str = include_str!("fixtures/fcm-test-private-key.pem");
const PUBLIC_KEY_PEM: &str = include_str!("fixtures/fcm-test-rsa-public.pem");
const CLIENT_EMAIL: &str = "whisperer-test@test-project.iam.gserviceaccount.com";
const PROJECT: &str = "test-project";

fn b64url(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = &pem[pem.find(&begin).unwrap() + begin.len()..pem.find(&end).unwrap()];
    STANDARD.decode(body.split_whitespace().collect::<String>()).unwrap()
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn push_message(recipient: Recipient) -> Message {
    Message {
        id: "msg_push_1".into(),
        workspace: "ws_1".into(),
        person: "p_1".into(),
        user_id: None,
        channel: Channel::Push,
        kind: MessageKind::Marketing,
        recipient,
        subject: Some("Back in stock".into()),
        text: "The shoes you liked are back".into(),
        html: None,
        headers: vec![],
        data: BTreeMap::from([("url".into(), "/p/42".into()), ("decision_id".into(), "dec_1".into())]),
    }
}

// ---------------------------------------------------------------------------------------------
// FCM

#[derive(Clone, Default)]
struct Google {
    token_uri: Arc<Mutex<String>>,
    /// Access tokens currently honoured; clearing it makes FCM answer 401.
    valid: Arc<Mutex<Vec<String>>>,
    token_requests: Arc<Mutex<usize>>,
    sends: Arc<Mutex<Vec<(String, Value)>>>,
}

fn oauth_error(description: &str) -> Response {
    let body = json!({"error": "invalid_grant", "error_description": description});
    (StatusCode::BAD_REQUEST, [("content-type", "application/json")], body.to_string()).into_response()
}

/// Google's token endpoint for the JWT bearer grant.
async fn token(State(google): State<Google>, body: Bytes) -> Response {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("unsupported grant type");
    }
    let Some(assertion) = form.get("assertion") else { return oauth_error("no assertion") };
    let parts: Vec<&str> = assertion.split('.').collect();
    if parts.len() != 3 {
        return oauth_error("not a JWT");
    }
    let header: Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
    if header["alg"] != "RS256" {
        return oauth_error("alg must be RS256");
    }
    let public = pem_der(PUBLIC_KEY_PEM, "RSA PUBLIC KEY");
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public);
    let signing_input = format!("{}.{}", parts[0], parts[1]);
    if key.verify(signing_input.as_bytes(), &b64url(parts[2])).is_err() {
        return oauth_error("Invalid JWT Signature.");
    }
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    let now = chrono::Utc::now().timestamp();
    let iat = claims["iat"].as_i64().unwrap_or_default();
    let claims_ok = claims["iss"] == CLIENT_EMAIL
        && claims["scope"] == SCOPE
        && claims["aud"] == *google.token_uri.lock().unwrap()
        && (iat - now).abs() < 60
        && claims["exp"].as_i64() == Some(iat + 3600);
    if !claims_ok {
        return oauth_error(&format!("Invalid JWT claims: {claims}"));
    }
    let n = {
        let mut count = google.token_requests.lock().unwrap();
        *count += 1;
        *count
    };
    let access_token = format!("ya29.test-{n}");
    google.valid.lock().unwrap().push(access_token.clone());
    Json(json!({"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

fn fcm_error(status: StatusCode, rpc_status: &str, code: &str, message: &str) -> Response {
    let body = json!({"error": {
        "code": status.as_u16(),
        "message": message,
        "status": rpc_status,
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}],
    }});
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn fcm_send(
    State(google): State<Google>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let known =
        bearer.strip_prefix("Bearer ").is_some_and(|t| google.valid.lock().unwrap().iter().any(|v| v == t));
    if !known {
        let body = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.",
            "status": "UNAUTHENTICATED"}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    google.sends.lock().unwrap().push((project.to_string(), body.clone()));
    match body["message"]["token"].as_str().unwrap_or_default() {
        "gone-token" => {
            fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
        }
        "busy-token" => {
            let mut response = fcm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "QUOTA_EXCEEDED",
                "Quota exceeded for quota metric 'Send requests'",
            );
            response.headers_mut().insert("retry-after", "30".parse().unwrap());
            response
        }
        "mismatch-token" => {
            fcm_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch")
        }
        "down-token" => fcm_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "UNAVAILABLE",
            "The service is unavailable.",
        ),
        _ => {
            Json(json!({"name": format!("projects/{project}/messages/0:1700000000000000%31bd1c9631bd1c96")}))
                .into_response()
        }
    }
}

async fn start_google() -> (SocketAddr, Google) {
    let google = Google::default();
    let app = Router::new()
        .route("/token", post(token))
        .route("/v1/projects/{project}/messages:send", post(fcm_send))
        .with_state(google.clone());
    let addr = serve(app).await;
    *google.token_uri.lock().unwrap() = format!("http://{addr}/token");
    (addr, google)
}

fn service_account(addr: SocketAddr, client_email: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0000000000000000000000000000000000000000",
        "private_key": PRIVATE_KEY_PEM,
        "client_email": client_email,
        "client_id": "100000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("http://{addr}/token"),
    })
    .to_string()
}

fn fcm_config(addr: SocketAddr) -> FcmConfig {
    let mut config = FcmConfig::new(service_account(addr, CLIENT_EMAIL));
    config.base_url = format!("http://{addr}");
    config
}

fn to_token(token: &str) -> Message {
    push_message(Recipient::PushToken { token: token.into() })
}

#[tokio::test]
async fn fcm_sends_with_a_verified_oauth_token_and_reuses_it() {
    let (addr, google) = start_google().await;
    let fcm = fcm_config(addr).build().unwrap();
    let receipt = fcm.send(&to_token("device-token-1")).await.unwrap();
    assert_eq!(
        receipt.provider_message_id.as_deref(),
        Some("projects/test-project/messages/0:1700000000000000%31bd1c9631bd1c96")
    );
    fcm.send(&to_token("device-token-2")).await.unwrap();
    assert_eq!(*google.token_requests.lock().unwrap(), 1, "the access token is cached");

    let sends = google.sends.lock().unwrap().clone();
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].0, PROJECT);
    assert_eq!(
        sends[0].1,
        json!({"message": {
            "token": "device-token-1",
            "notification": {"title": "Back in stock", "body": "The shoes you liked are back"},
            "data": {"decision_id": "dec_1", "url": "/p/42"},
        }})
    );
}

#[tokio::test]
async fn fcm_renews_a_refused_token_once_and_retries() {
    let (addr, google) = start_google().await;
    let fcm = fcm_config(addr).build().unwrap();
    fcm.send(&to_token("device-token-1")).await.unwrap();
    // Google revokes the token early: the next send gets 401, renews, and goes through.
    google.valid.lock().unwrap().clear();
    fcm.send(&to_token("device-token-2")).await.unwrap();
    assert_eq!(*google.token_requests.lock().unwrap(), 2);
    assert_eq!(google.sends.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn fcm_errors_decide_what_happens_next() {
    let (addr, google) = start_google().await;
    let fcm = fcm_config(addr).build().unwrap();
    let gone = fcm.send(&to_token("gone-token")).await.unwrap_err();
    assert_eq!((gone.kind, gone.code.as_str()), (FailureKind::Recipient, "UNREGISTERED"));
    let busy = fcm.send(&to_token("busy-token")).await.unwrap_err();
    assert_eq!((busy.kind, busy.code.as_str()), (FailureKind::RateLimited, "QUOTA_EXCEEDED"));
    assert_eq!(busy.retry_after(), Some(Duration::from_secs(30)));
    let mismatch = fcm.send(&to_token("mismatch-token")).await.unwrap_err();
    assert_eq!((mismatch.kind, mismatch.code.as_str()), (FailureKind::Provider, "SENDER_ID_MISMATCH"));
    let down = fcm.send(&to_token("down-token")).await.unwrap_err();
    assert_eq!(down.kind, FailureKind::Transient);
    assert_eq!(google.sends.lock().unwrap().len(), 4, "none of these is retried by the provider");
}

#[tokio::test]
async fn fcm_reads_the_key_file_from_a_path_and_reports_a_refused_grant() {
    let (addr, google) = start_google().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("service-account.json");
    // The token endpoint checks `iss`: a key file naming another account is refused.
    std::fs::write(&path, service_account(addr, "someone-else@test-project.iam.gserviceaccount.com"))
        .unwrap();
    let mut config = FcmConfig::new(path.to_string_lossy());
    config.base_url = format!("http://{addr}");
    let error = config.build().unwrap().send(&to_token("device-token-1")).await.unwrap_err();
    assert_eq!((error.kind, error.code.as_str()), (FailureKind::Provider, "oauth_invalid_grant"));
    assert!(google.sends.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Web Push

const SUBJECT: &str = "mailto:push-ops@example.com";

/// A browser's subscription: its P-256 key pair and auth secret.
struct Browser {
    secret: p256::SecretKey,
    public: Vec<u8>,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let mut scalar = [0u8; 32];
        rng.fill(&mut scalar).unwrap();
        let secret = p256::SecretKey::from_slice(&scalar).unwrap();
        let public = p256::EncodedPoint::from(secret.public_key()).as_bytes().to_vec();
        let mut auth = [0u8; 16];
        rng.fill(&mut auth).unwrap();
        Browser { secret, public, auth }
    }

    fn recipient(&self, endpoint: String) -> Recipient {
        Recipient::WebPush {
            endpoint,
            p256dh: URL_SAFE_NO_PAD.encode(&self.public),
            auth: URL_SAFE_NO_PAD.encode(self.auth),
        }
    }

    /// RFC 8291 §3.4 and RFC 8188 from the receiving side.
    fn decrypt(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        if body.len() < 21 {
            return Err("short body".into());
        }
        let salt = &body[..16];
        let record_size = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
        let id_len = body[20] as usize;
        let sender_key = body.get(21..21 + id_len).ok_or("short key id")?;
        let record = &body[21 + id_len..];
        if record.len() > record_size {
            return Err("more than one record".into());
        }
        let sender = p256::PublicKey::from_sec1_bytes(sender_key).map_err(|e| e.to_string())?;
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), sender.as_affine());
        let info = [b"WebPush: info\0".as_slice(), &self.public, sender_key].concat();
        let ikm = hkdf_one_block(&self.auth, shared.raw_secret_bytes(), &info, 32);
        let cek = hkdf_one_block(salt, &ikm, b"Content-Encoding: aes128gcm\0", 16);
        let nonce = hkdf_one_block(salt, &ikm, b"Content-Encoding: nonce\0", 12);
        let key = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &cek).unwrap(),
        );
        let mut data = record.to_vec();
        let plain = key
            .open_in_place(
                ring::aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                ring::aead::Aad::empty(),
                &mut data,
            )
            .map_err(|_| "aead open failed".to_string())?;
        // Padding is zeros after the delimiter; 2 marks the last record.
        let end = plain.iter().rposition(|&b| b != 0).ok_or("no delimiter")?;
        if plain[end] != 2 {
            return Err(format!("delimiter {} instead of 2", plain[end]));
        }
        Ok(plain[..end].to_vec())
    }
}

/// HKDF-SHA-256 written out with HMAC (RFC 5869), for outputs of at most one hash block.
fn hkdf_one_block(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let prk = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt), ikm);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, prk.as_ref());
    let okm = ring::hmac::sign(&key, &[info, &[1u8]].concat());
    okm.as_ref()[..len].to_vec()
}

/// The headers of one accepted push message and its decrypted payload.
type Received = (BTreeMap<String, String>, Vec<u8>);

#[derive(Clone)]
struct PushService {
    origin: Arc<Mutex<String>>,
    vapid_public: String,
    browser: Arc<Browser>,
    received: Arc<Mutex<Vec<Received>>>,
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// RFC 8292 §2 and §3: the token, its signature under `k`, and its claims.
fn vapid_holds(service: &PushService, authorization: &str) -> Result<(), String> {
    let rest = authorization.strip_prefix("vapid ").ok_or("not the vapid scheme")?;
    let params: BTreeMap<&str, &str> = rest.split(',').filter_map(|p| p.trim().split_once('=')).collect();
    let (token, k) = (params.get("t").ok_or("no t")?, params.get("k").ok_or("no k")?);
    if *k != service.vapid_public {
        return Err("k is not the application server key the subscription was made with".into());
    }
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&b64url(parts[0])).map_err(|e| e.to_string())?;
    if header["alg"] != "ES256" {
        return Err("alg must be ES256".into());
    }
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, b64url(k));
    key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &b64url(parts[2]))
        .map_err(|_| "bad ES256 signature".to_string())?;
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).map_err(|e| e.to_string())?;
    let now = chrono::Utc::now().timestamp();
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if claims["aud"] != *service.origin.lock().unwrap() {
        return Err(format!("aud {} is not this origin", claims["aud"]));
    }
    if exp <= now || exp > now + 24 * 3600 {
        return Err("exp must be within 24 hours".into());
    }
    if claims["sub"] != SUBJECT {
        return Err("wrong sub".into());
    }
    Ok(())
}

async fn push(
    State(service): State<PushService>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = vapid_holds(&service, &header(&headers, "authorization")) {
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    match id.as_str() {
        "gone" => return (StatusCode::GONE, "push subscription has unsubscribed or expired").into_response(),
        "busy" => return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "5")], "").into_response(),
        "huge" => return (StatusCode::PAYLOAD_TOO_LARGE, "").into_response(),
        _ => {}
    }
    if header(&headers, "content-encoding") != "aes128gcm" || header(&headers, "ttl").is_empty() {
        return (StatusCode::BAD_REQUEST, "content-encoding and ttl are required").into_response();
    }
    let plaintext = match service.browser.decrypt(&body) {
        Ok(plaintext) => plaintext,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let seen: BTreeMap<String, String> = ["ttl", "urgency", "topic", "content-type"]
        .into_iter()
        .map(|name| (name.to_string(), header(&headers, name)))
        .collect();
    service.received.lock().unwrap().push((seen, plaintext));
    (StatusCode::CREATED, [("location", "/messages/m-1")]).into_response()
}

async fn start_push_service(vapid_public: &str) -> (SocketAddr, PushService) {
    let service = PushService {
        origin: Arc::new(Mutex::new(String::new())),
        vapid_public: vapid_public.to_string(),
        browser: Arc::new(Browser::new()),
        received: Arc::default(),
    };
    let app = Router::new().route("/push/{id}", post(push)).with_state(service.clone());
    let addr = serve(app).await;
    *service.origin.lock().unwrap() = format!("http://{addr}");
    (addr, service)
}

#[tokio::test]
async fn webpush_delivers_a_payload_only_the_browser_can_read() {
    let keys = generate_vapid_keys().unwrap();
    let (addr, service) = start_push_service(&keys.public_key).await;
    let mut config = WebPushConfig::new(&keys.private_key, SUBJECT);
    config.ttl_secs = 3600;
    config.urgency = Some(Urgency::High);
    config.topic = Some("restock".into());
    let webpush = config.build().unwrap();

    let message = push_message(service.browser.recipient(format!("http://{addr}/push/ok")));
    let receipt = webpush.send(&message).await.unwrap();
    assert_eq!(receipt.provider_message_id.as_deref(), Some("/messages/m-1"));

    let received = service.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, plaintext) = &received[0];
    assert_eq!(headers["ttl"], "3600");
    assert_eq!(headers["urgency"], "high");
    assert_eq!(headers["topic"], "restock");
    let payload: Value = serde_json::from_slice(plaintext).unwrap();
    assert_eq!(
        payload,
        json!({"id": "msg_push_1", "title": "Back in stock", "body": "The shoes you liked are back",
            "data": {"decision_id": "dec_1", "url": "/p/42"}})
    );
}

#[tokio::test]
async fn webpush_with_another_vapid_key_is_refused() {
    let keys = generate_vapid_keys().unwrap();
    let (addr, service) = start_push_service(&keys.public_key).await;
    let other = generate_vapid_keys().unwrap();
    let webpush = WebPushConfig::new(&other.private_key, SUBJECT).build().unwrap();
    let error =
        webpush.send(&push_message(service.browser.recipient(format!("http://{addr}/push/ok")))).await;
    assert_eq!(error.unwrap_err().kind, FailureKind::Provider);
    assert!(service.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn webpush_answers_decide_what_happens_next() {
    let keys = generate_vapid_keys().unwrap();
    let (addr, service) = start_push_service(&keys.public_key).await;
    let webpush = WebPushConfig::new(&keys.private_key, SUBJECT).build().unwrap();
    let to = |id: &str| push_message(service.browser.recipient(format!("http://{addr}/push/{id}")));
    let send = |id: &'static str| {
        let message = to(id);
        let webpush = &webpush;
        async move { webpush.send(&message).await }
    };
    let gone = send("gone").await.unwrap_err();
    assert_eq!((gone.kind, gone.code.as_str()), (FailureKind::Recipient, "410"));
    let busy = send("busy").await.unwrap_err();
    assert_eq!(busy.kind, FailureKind::RateLimited);
    assert_eq!(busy.retry_after(), Some(Duration::from_secs(5)));
    assert_eq!(send("huge").await.unwrap_err().kind, FailureKind::Provider);

    // A subscription whose keys are not keys cannot be sent to by anyone.
    let broken = Recipient::WebPush {
        endpoint: format!("http://{addr}/push/ok"),
        p256dh: "AAAA".into(),
        auth: "AAAA".into(),
    };
    assert_eq!(webpush.send(&push_message(broken)).await.unwrap_err().kind, FailureKind::Recipient);
}
