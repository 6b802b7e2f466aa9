//! Integration tests of the HTTP API through a real server on a real (SQLite) store.

use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use whisperer_api::AppState;
use whisperer_core::{ApiKey, KeyKind, Millis, Workspace, WorkspaceId};
use whisperer_ingest::IngestConfig;
use whisperer_store::{NewKey, Store};
use whisperer_store_sqlite::SqliteStore;

struct TestApp {
    url: String,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct Keys {
    id: WorkspaceId,
    write: String,
    secret: String,
}

async fn spawn_app() -> TestApp {
    spawn_app_with(IngestConfig::default()).await
}

async fn spawn_app_with(config: IngestConfig) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let ingestor = Arc::new(config.build(store.clone(), &mut registry).unwrap());
    let profiles = whisperer_profiles::ProfileEngine::new(
        store.clone(),
        whisperer_profiles::EngineConfig {
            poll_interval: std::time::Duration::from_millis(20),
            ..Default::default()
        },
    );
    tokio::spawn(profiles.clone().run(std::future::pending()));
    let app = whisperer_api::router(AppState::new(store.clone(), ingestor, registry, Some(profiles), None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    TestApp { url: format!("http://{addr}"), store, http: reqwest::Client::new(), _dir: dir }
}

impl TestApp {
    async fn workspace(&self, name: &str) -> Keys {
        let ws = Workspace { id: WorkspaceId::generate(), name: name.into(), created_at: Millis::now() };
        let write = ApiKey::generate(KeyKind::Write);
        let secret = ApiKey::generate(KeyKind::Secret);
        self.store
            .create_workspace(&ws, &[NewKey::of(&write, Millis::now()), NewKey::of(&secret, Millis::now())])
            .await
            .unwrap();
        Keys { id: ws.id, write: write.plaintext, secret: secret.plaintext }
    }

    async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.url)).body(body);
        if let Some(key) = key {
            req = req.basic_auth(key, Some(""));
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}{path}", self.url)).bearer_auth(key).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Events stored from what clients sent (the profile engine adds its own lifecycle events).
    async fn stored(&self, ws: &WorkspaceId) -> usize {
        let events = self.store.events_after(ws, 0, 100_000).await.unwrap();
        events.iter().filter(|e| e.event.name.as_deref() != Some("Lifecycle Stage Changed")).count()
    }
}

fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/../../../shared/fixtures/segment-clients/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn official_client_requests_are_accepted_as_captured() {
    let app = spawn_app().await;
    let ws = app.workspace("Acme").await;
    let mut sent = 0;
    for name in ["py_segment.jsonl", "py_segment_batch.jsonl", "node_segment.jsonl"] {
        for captured in fixture(name) {
            // Replay exactly what the library sent, with our key and the fixture's headers.
            let mut body = captured["body"].clone();
            body["writeKey"] = json!(ws.write);
            let bytes = body.to_string().into_bytes();
            let gzipped = captured["headers"]["Content-Encoding"] == "gzip";
            let mut req = app
                .http
                .post(format!("{}{}", app.url, captured["path"].as_str().unwrap()))
                .header("Content-Type", "application/json")
                .basic_auth(&ws.write, Some(""));
            req = if gzipped {
                req.header("Content-Encoding", "gzip").body(gzip(&bytes))
            } else {
                req.body(bytes)
            };
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{name}");
            let answer: Value = res.json().await.unwrap();
            assert_eq!(answer["success"], true);
            assert_eq!(answer["rejected"], json!([]), "{name}: {answer}");
            sent += body["batch"].as_array().map_or(1, Vec::len);
        }
    }
    assert_eq!(app.stored(&ws.id).await, sent);
    // The Python and Node fixtures both describe user_1; the profile joins them.
    let (status, user) = app.get("/v1/users/user_1", &ws.secret).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!(user["traits"]["email"], "a@example.com");
    assert_eq!(user["eventCounts"]["Order Completed"], 2);
    assert!(user["identities"]["anonymousIds"].as_array().unwrap().contains(&json!("anon_777")), "{user}");
}

#[tokio::test]
async fn write_key_in_the_body_and_any_content_type() {
    let app = spawn_app().await;
    let ws = app.workspace("Acme").await;
    let body = json!({"writeKey": ws.write, "userId": "u1", "event": "Signed Up"}).to_string();
    let res = app
        .http
        .post(format!("{}/v1/track", app.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.stored(&ws.id).await, 1);
}

#[tokio::test]
async fn anonymous_history_counts_for_the_user_after_identify() {
    let app = spawn_app().await;
    let ws = app.workspace("Acme").await;
    let k = Some(ws.write.as_str());
    for i in 0..3 {
        let body = json!({"anonymousId": "visitor-9", "name": format!("Page {i}")});
        assert_eq!(app.post("/v1/page", k, body.to_string()).await.0, StatusCode::OK);
    }
    let identify =
        json!({"userId": "ada", "anonymousId": "visitor-9", "traits": {"plan": "free", "name": "Ada"}});
    assert_eq!(app.post("/v1/identify", k, identify.to_string()).await.0, StatusCode::OK);
    let identify = json!({"userId": "ada", "traits": {"plan": "pro"}});
    assert_eq!(app.post("/v1/identify", k, identify.to_string()).await.0, StatusCode::OK);
    let (status, user) = app.get("/v1/users/ada", &ws.secret).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["typeCounts"]["page"], 3);
    assert_eq!(user["eventCount"], 5);
    assert_eq!(user["traits"], json!({"plan": "pro", "name": "Ada"}));
    assert_eq!(user["identities"]["anonymousIds"], json!(["visitor-9"]));
}

#[tokio::test]
async fn the_user_view_includes_the_live_profile() {
    let app = spawn_app().await;
    let ws = app.workspace("Shop").await;
    let k = Some(ws.write.as_str());
    let now = Millis::now().0;
    let day = 86_400_000;
    let mut batch = Vec::new();
    // an anonymous visit, then ten days of orders as a signed-in user, in Tokyo
    batch.push(json!({"type": "page", "anonymousId": "v1", "name": "Pricing", "timestamp": Millis(now - 10 * day).to_rfc3339()}));
    batch.push(json!({"type": "identify", "anonymousId": "v1", "userId": "kim", "timestamp": Millis(now - 10 * day).to_rfc3339()}));
    for d in 0..10 {
        batch.push(json!({
            "type": "track", "userId": "kim", "event": "Order Completed",
            "properties": {"revenue": 10.5, "feature": "checkout"},
            "context": {"timezone": "Asia/Tokyo"},
            "timestamp": Millis(now - d * day).to_rfc3339(),
        }));
    }
    let (status, _) = app.post("/v1/batch", k, json!({"batch": batch}).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let mut user = Value::Null;
    for _ in 0..200 {
        user = app.get("/v1/users/kim", &ws.secret).await.1;
        if user["profile"]["features"]["events"]["total"] == 11 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let p = &user["profile"];
    assert_eq!(p["features"]["events"]["total"], 11, "{user:#}");
    assert_eq!(p["features"]["revenue"], 105.0);
    assert_eq!(p["features"]["activeDays"]["7d"], 7);
    assert_eq!(p["featuresUsed"], json!(["checkout"]));
    assert_eq!(p["timeZone"], "Asia/Tokyo");
    assert_eq!(p["stage"], "engaged");
    assert!(p["engagement"]["score"].as_f64().unwrap() > 55.0);
    assert!(p["lastEngagement"]["web"].is_string());
    let names: Vec<&str> =
        p["eventsByName"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Pricing", "Order Completed"]);
}

#[tokio::test]
async fn duplicates_are_stored_once() {
    let app = spawn_app().await;
    let ws = app.workspace("Acme").await;
    let body = json!({"batch": [
        {"type": "track", "messageId": "m-1", "userId": "u", "event": "A"},
        {"type": "track", "messageId": "m-1", "userId": "u", "event": "A"},
    ]});
    let (status, answer) = app.post("/v1/batch", Some(&ws.write), body.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((answer["accepted"].as_u64(), answer["duplicates"].as_u64()), (Some(1), Some(1)));
    let (_, answer) = app.post("/v1/batch", Some(&ws.write), body.to_string()).await;
    assert_eq!(answer["duplicates"], 2);
    assert_eq!(app.stored(&ws.id).await, 1);
}

#[tokio::test]
async fn a_partly_bad_batch_stores_the_good_and_names_the_bad() {
    let app = spawn_app().await;
    let ws = app.workspace("Acme").await;
    let big = "x".repeat(33 * 1024);
    let body = json!({"batch": [
        {"type": "track", "userId": "u", "event": "Good"},
        {"type": "track", "userId": "u"},
        {"type": "track", "userId": "u", "event": "Big", "properties": {"blob": big}},
        {"type": "identify", "userId": "u", "traits": ["not", "an", "object"]},
        {"type": "page", "anonymousId": "a"},
    ]});
    let (status, answer) = app.post("/v1/batch", Some(&ws.write), body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 2);
    let rejected: Vec<(u64, &str)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["code"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, [(1, "invalid_message"), (2, "message_too_large"), (3, "invalid_message")]);
    assert_eq!(app.stored(&ws.id).await, 2);
}

async fn expect_error(app: &TestApp, response: reqwest::Response, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status, "expected {code}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["code"], code);
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    let _ = app;
}

#[tokio::test]
async fn bad_input_gets_a_stable_4xx_and_stores_nothing() {
    let app = spawn_app_with(IngestConfig { max_request_bytes: 64 * 1024, ..Default::default() }).await;
    let ws = app.workspace("Acme").await;
    let post = |path: &str| app.http.post(format!("{}{path}", app.url)).basic_auth(&ws.write, Some(""));
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (post("/v1/batch").body("{\"batch\": ["), StatusCode::BAD_REQUEST, "malformed_json"),
        (post("/v1/track").body("not json at all"), StatusCode::BAD_REQUEST, "malformed_json"),
        (post("/v1/track").body(vec![b'{', 0xff, 0xfe, b'}']), StatusCode::BAD_REQUEST, "invalid_utf8"),
        (post("/v1/batch").body("{\"batch\": 5}"), StatusCode::BAD_REQUEST, "invalid_batch"),
        (post("/v1/track").body("[]"), StatusCode::BAD_REQUEST, "invalid_batch"),
        (
            post("/v1/track").body(r#"{"userId": 5.5e400, "event": "x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_message",
        ),
        (
            post("/v1/track").body(r#"{"userId": "u", "event": "x", "properties": {"a": 1,}}"#),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            post("/v1/track").body(r#"{"userId": ["u"], "event": "x"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_message",
        ),
        (
            post("/v1/track").body(r#"{"userId": "u", "event": "x", "timestamp": "noon"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_message",
        ),
        (post("/v1/identify").body(r#"{"traits": {}}"#), StatusCode::BAD_REQUEST, "invalid_message"),
        (
            post("/v1/track").body(format!(
                r#"{{"userId":"u","event":"x","properties":{}1{}}}"#,
                "[".repeat(100),
                "]".repeat(100)
            )),
            StatusCode::BAD_REQUEST,
            "nesting_too_deep",
        ),
        (
            post("/v1/track").header("Content-Encoding", "gzip").body("definitely not gzip"),
            StatusCode::BAD_REQUEST,
            "invalid_gzip",
        ),
        (
            post("/v1/track").header("Content-Encoding", "br").body("x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
        ),
        (post("/v1/batch").body(vec![b' '; 65 * 1024]), StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
        (
            post("/v1/batch").header("Content-Encoding", "gzip").body(gzip(&vec![b' '; 1024 * 1024])),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
        ),
        (
            post("/v1/track").body(
                json!({"userId": "u", "event": "x", "properties": {"b": "y".repeat(40_000)}}).to_string(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
        ),
        (
            app.http.post(format!("{}/v1/track", app.url)).body(r#"{"userId":"u","event":"x"}"#),
            StatusCode::UNAUTHORIZED,
            "missing_key",
        ),
        (
            app.http
                .post(format!("{}/v1/track", app.url))
                .basic_auth("wk_wrong", Some(""))
                .body(r#"{"userId":"u","event":"x"}"#),
            StatusCode::UNAUTHORIZED,
            "invalid_key",
        ),
        (
            app.http
                .post(format!("{}/v1/track", app.url))
                .basic_auth(&ws.secret, Some(""))
                .body(r#"{"userId":"u","event":"x"}"#),
            StatusCode::FORBIDDEN,
            "wrong_key_kind",
        ),
        (
            app.http.get(format!("{}/v1/users/u", app.url)).bearer_auth(&ws.write),
            StatusCode::FORBIDDEN,
            "wrong_key_kind",
        ),
        (
            app.http.get(format!("{}/v1/users/nobody", app.url)).bearer_auth(&ws.secret),
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        (app.http.get(format!("{}/v1/nope", app.url)), StatusCode::NOT_FOUND, "route_not_found"),
        (app.http.get(format!("{}/v1/track", app.url)), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        expect_error(&app, request.send().await.unwrap(), status, code).await;
    }
    assert_eq!(app.stored(&ws.id).await, 0, "nothing half-written");
    // The refusals are counted by reason.
    let metrics = app.http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("whisperer_events_rejected_total{reason=\"malformed_json\"}"), "{metrics}");
}

#[tokio::test]
async fn keys_of_one_workspace_never_reach_another() {
    let app = spawn_app().await;
    let a = app.workspace("A").await;
    let b = app.workspace("B").await;
    let track = json!({"userId": "shared-user", "event": "From A", "messageId": "same-id"}).to_string();
    assert_eq!(app.post("/v1/track", Some(&a.write), track.clone()).await.0, StatusCode::OK);
    // B's secret key does not see A's user, events or plan.
    assert_eq!(app.get("/v1/users/shared-user", &b.secret).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/users/shared-user/events", &b.secret).await.0, StatusCode::NOT_FOUND);
    let plan = json!({"mode": "reject", "events": {"From A": {"type": "object", "required": ["x"]}}});
    let res = app
        .http
        .put(format!("{}/v1/tracking-plan", app.url))
        .bearer_auth(&a.secret)
        .body(plan.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.get("/v1/tracking-plan", &b.secret).await.1["events"], json!({}));
    // The same message id in B is a different message, and B's plan is not A's.
    let (status, answer) = app.post("/v1/track", Some(&b.write), track).await;
    assert_eq!((status, answer["accepted"].as_u64()), (StatusCode::OK, Some(1)));
    // A's write key cannot read anything; B's user is B's alone.
    assert_eq!(app.get("/v1/users/shared-user", &a.write).await.0, StatusCode::FORBIDDEN);
    let (_, user_b) = app.get("/v1/users/shared-user", &b.secret).await;
    let (_, user_a) = app.get("/v1/users/shared-user", &a.secret).await;
    assert_ne!(user_a["personId"], user_b["personId"]);
    assert_eq!(app.stored(&a.id).await, 1);
    assert_eq!(app.stored(&b.id).await, 1);
    // Every read endpoint refuses a key of the wrong workspace's kind and a missing key.
    for path in [
        "/v1/users/shared-user",
        "/v1/users/shared-user/events",
        "/v1/tracking-plan",
        "/v1/settings/lifecycle",
    ] {
        let res = app.http.get(format!("{}{path}", app.url)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        let res = app.http.get(format!("{}{path}", app.url)).bearer_auth(&b.write).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Settings are per workspace: A's thresholds are not B's.
    let put = app
        .http
        .put(format!("{}/v1/settings/lifecycle", app.url))
        .bearer_auth(&a.secret)
        .body(r#"{"churned_days": 90}"#);
    assert_eq!(put.send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(app.get("/v1/settings/lifecycle", &a.secret).await.1["churned_days"], 90.0);
    assert_eq!(app.get("/v1/settings/lifecycle", &b.secret).await.1["churned_days"], 30.0);
}

#[tokio::test]
async fn tracking_plan_warn_flags_and_reject_refuses() {
    let app = spawn_app().await;
    let ws = app.workspace("Shop").await;
    let schema =
        json!({"type": "object", "required": ["revenue"], "properties": {"revenue": {"type": "number"}}});
    let set = |mode: &str| {
        let plan = json!({"mode": mode, "events": {"Order Completed": schema}});
        app.http
            .put(format!("{}/v1/tracking-plan", app.url))
            .bearer_auth(&ws.secret)
            .body(plan.to_string())
            .send()
    };
    assert_eq!(set("warn").await.unwrap().status(), StatusCode::OK);
    let bad = json!({"userId": "u", "event": "Order Completed", "properties": {"revenue": "12"}}).to_string();
    assert_eq!(app.post("/v1/track", Some(&ws.write), bad.clone()).await.0, StatusCode::OK);
    let (_, page) = app.get("/v1/users/u/events", &ws.secret).await;
    let violations = &page["events"][0]["enrichment"]["violations"];
    assert!(violations[0].as_str().unwrap().contains("revenue"), "{page}");

    assert_eq!(set("reject").await.unwrap().status(), StatusCode::OK);
    let (status, answer) = app.post("/v1/track", Some(&ws.write), bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "tracking_plan_violation");
    let good = json!({"userId": "u", "event": "Order Completed", "properties": {"revenue": 12}}).to_string();
    assert_eq!(app.post("/v1/track", Some(&ws.write), good).await.0, StatusCode::OK);
    assert_eq!(app.stored(&ws.id).await, 2);

    let invalid = json!({"mode": "reject", "events": {"Broken": {"type": 12}}});
    let res = app
        .http
        .put(format!("{}/v1/tracking-plan", app.url))
        .bearer_auth(&ws.secret)
        .body(invalid.to_string())
        .send()
        .await
        .unwrap();
    expect_error(&app, res, StatusCode::BAD_REQUEST, "invalid_tracking_plan").await;
    let huge = json!({"mode": "warn", "events": {"Big": {"description": "x".repeat(2 * 1024 * 1024)}}});
    let res = app
        .http
        .put(format!("{}/v1/tracking-plan", app.url))
        .bearer_auth(&ws.secret)
        .body(huge.to_string())
        .send()
        .await
        .unwrap();
    expect_error(&app, res, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large").await;
    let unknown = json!({"mode": "strict"});
    let res = app
        .http
        .put(format!("{}/v1/tracking-plan", app.url))
        .bearer_auth(&ws.secret)
        .body(unknown.to_string())
        .send()
        .await
        .unwrap();
    expect_error(&app, res, StatusCode::BAD_REQUEST, "invalid_tracking_plan").await;
}

#[tokio::test]
async fn user_events_paginate_with_a_cursor() {
    let app = spawn_app().await;
    let ws = app.workspace("Acme").await;
    let batch: Vec<Value> = (0..7)
        .map(|i| json!({"type": "track", "userId": "u", "event": format!("E{i}"), "timestamp": format!("2024-01-0{}T00:00:00Z", i + 1)}))
        .collect();
    assert_eq!(
        app.post("/v1/batch", Some(&ws.write), json!({"batch": batch}).to_string()).await.0,
        StatusCode::OK
    );
    let mut names = Vec::new();
    let mut path = "/v1/users/u/events?limit=3".to_owned();
    loop {
        let (status, page) = app.get(&path, &ws.secret).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for e in page["events"].as_array().unwrap() {
            names.push(e["name"].as_str().unwrap().to_owned());
            assert_eq!(e["message"]["userId"], "u");
            assert!(e["messageId"].as_str().unwrap().starts_with("whisperer-"));
        }
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/v1/users/u/events?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(names, ["E6", "E5", "E4", "E3", "E2", "E1", "E0"]);
    for bad in ["?limit=0", "?limit=abc", "?limit=5000"] {
        let (status, body) = app.get(&format!("/v1/users/u/events{bad}"), &ws.secret).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_parameter"))
        );
    }
    for bad in ["?limit=1&limit=2", "?cursor=a&cursor=b"] {
        let (status, body) = app.get(&format!("/v1/users/u/events{bad}"), &ws.secret).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_parameter"))
        );
    }
    let (status, body) = app.get("/v1/users/%FF/events", &ws.secret).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_parameter"))
    );
    let (status, body) = app.get("/v1/users/u/events?cursor=garbage", &ws.secret).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_cursor")));
}

#[tokio::test]
async fn key_changes_take_effect_at_once() {
    let app = spawn_app().await;
    let ws = app.workspace("Acme").await;
    let track = || json!({"userId": "u", "event": "E"}).to_string();
    assert_eq!(app.post("/v1/track", Some(&ws.write), track()).await.0, StatusCode::OK);
    // A key added behind the server's back works on its very next request.
    let fresh = ApiKey::generate(KeyKind::Write);
    app.store.add_key(&ws.id, &NewKey::of(&fresh, Millis::now())).await.unwrap();
    assert_eq!(app.post("/v1/track", Some(&fresh.plaintext), track()).await.0, StatusCode::OK);
    // A revoked key is refused within a second.
    let id = whisperer_core::keys::key_id(&ws.write);
    assert!(app.store.revoke_key(&ws.id, &id, Millis::now()).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(app.post("/v1/track", Some(&ws.write), track()).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.post("/v1/track", Some(&fresh.plaintext), track()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn cohort_retention_from_history_sent_through_the_api() {
    let app = spawn_app().await;
    let ws = app.workspace("Acme").await;
    let other = app.workspace("Other").await;
    // Weeks (Monday starts): W0 2024-01-01, W1 01-08, W2 01-15, W3 01-22. No sentAt, so the
    // timestamps are stored as given.
    let ev = |kind: &str, user: Option<&str>, anon: Option<&str>, name: &str, at: &str, extra: Value| {
        let mut m = json!({"type": kind, "timestamp": at});
        if let Some(u) = user {
            m["userId"] = json!(u);
        }
        if let Some(a) = anon {
            m["anonymousId"] = json!(a);
        }
        match kind {
            "track" => m["event"] = json!(name),
            "page" => m["name"] = json!(name),
            _ => {}
        }
        for (k, v) in extra.as_object().into_iter().flatten() {
            m[k] = v.clone();
        }
        m
    };
    let batch = json!({"batch": [
        // ada: an anonymous page view, then she signs up and identifies.
        ev("page", None, Some("v1"), "Pricing", "2024-01-02T10:00:00Z", json!({})),
        ev("identify", Some("ada"), Some("v1"), "", "2024-01-02T10:05:00Z", json!({"traits": {"plan": "pro"}})),
        ev("track", Some("ada"), None, "Invite Sent", "2024-01-03T10:00:00Z", json!({})),
        ev("track", Some("ada"), None, "Opened", "2024-01-16T10:00:00Z", json!({})),
        // bob: W0 and W1, on the free plan.
        ev("track", Some("bob"), None, "Opened", "2024-01-03T11:00:00Z", json!({})),
        ev("identify", Some("bob"), None, "", "2024-01-03T11:00:00Z", json!({"traits": {"plan": "free"}})),
        ev("track", Some("bob"), None, "Opened", "2024-01-10T11:00:00Z", json!({})),
        // cy: W1 and W3, never identified; a message sent to her is not activity.
        ev("track", Some("cy"), None, "Opened", "2024-01-09T09:00:00Z", json!({})),
        ev("track", Some("cy"), None, "Opened", "2024-01-23T09:00:00Z", json!({})),
        ev("track", Some("cy"), None, "Message Sent", "2024-02-20T09:00:00Z", json!({})),
    ]});
    let (status, answer) = app.post("/v1/batch", Some(&ws.write), batch.to_string()).await;
    assert_eq!((status, answer["accepted"].as_u64()), (StatusCode::OK, Some(10)), "{answer}");
    let theirs =
        json!({"batch": [ev("track", Some("zed"), None, "Opened", "2024-01-01T09:00:00Z", json!({}))]});
    assert_eq!(app.post("/v1/batch", Some(&other.write), theirs.to_string()).await.0, StatusCode::OK);

    let rows = |group: &Value| -> Vec<(String, u64, Vec<Option<u64>>)> {
        group["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let cells = c["cells"].as_array().unwrap().iter().map(|x| x["active"].as_u64()).collect();
                (c["label"].as_str().unwrap().to_owned(), c["size"].as_u64().unwrap(), cells)
            })
            .collect()
    };
    let row = |label: &str, size: u64, cells: &[Option<u64>]| (label.to_owned(), size, cells.to_vec());

    let (status, weekly) = app.get("/v1/cohorts/retention", &ws.secret).await;
    assert_eq!(status, StatusCode::OK, "{weekly}");
    assert_eq!(weekly["period"], "week");
    assert_eq!((weekly["persons"].as_u64(), weekly["periods"].as_u64()), (Some(3), Some(4)), "{weekly}");
    assert_eq!(weekly["asOf"], "2024-01-23T09:00:00.000Z", "system events are not activity");
    let all = &weekly["groups"][0];
    assert_eq!(all["label"], "all");
    assert_eq!(
        rows(all),
        [
            row("2024-01-01", 2, &[Some(2), Some(1), Some(1), Some(0)]),
            row("2024-01-08", 1, &[Some(1), Some(0), Some(1), None])
        ]
    );
    assert_eq!(all["cohorts"][0]["cells"][1]["fraction"], 0.5);
    assert_eq!(all["cohorts"][1]["cells"][3], Value::Null);
    assert_eq!(all["curve"][1], json!({"active": 1, "persons": 3, "fraction": 1.0 / 3.0}));

    let (status, by_plan) = app.get("/v1/cohorts/retention?split=plan&periods=2", &ws.secret).await;
    assert_eq!(status, StatusCode::OK, "{by_plan}");
    let groups = by_plan["groups"].as_array().unwrap();
    let labels: Vec<&str> = groups.iter().map(|g| g["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["plan = free", "plan = pro", "plan (none)"]);
    assert_eq!(groups[1]["trait"], json!({"group": "value", "value": "pro"}));
    assert_eq!(groups[2]["trait"], json!({"group": "none", "value": null}));
    assert_eq!(rows(&groups[0]), [row("2024-01-01", 1, &[Some(1), Some(1)])]);
    assert_eq!(rows(&groups[1]), [row("2024-01-01", 1, &[Some(1), Some(0)])]);
    assert_eq!(rows(&groups[2]), [row("2024-01-08", 1, &[Some(1), Some(0)])]);

    let (status, by_invite) =
        app.get("/v1/cohorts/retention?behavior=Invite%20Sent&within_days=7&period=month", &ws.secret).await;
    assert_eq!(status, StatusCode::OK, "{by_invite}");
    let groups = by_invite["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!((groups[0]["didBehavior"].as_bool(), groups[0]["persons"].as_u64()), (Some(true), Some(1)));
    assert_eq!((groups[1]["didBehavior"].as_bool(), groups[1]["persons"].as_u64()), (Some(false), Some(2)));
    assert_eq!(rows(&groups[1]), [row("2024-01", 2, &[Some(2)])]);

    let (status, bounded) = app.get("/v1/cohorts/retention?from=2024-01-08&to=2024-01-15", &ws.secret).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rows(&bounded["groups"][0]), [row("2024-01-08", 1, &[Some(1), Some(0), Some(1)])]);

    // Tenancy: the other workspace's key sees only its own person.
    let (status, theirs) = app.get("/v1/cohorts/retention", &other.secret).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(theirs["persons"], 1);
    assert_eq!(rows(&theirs["groups"][0]), [row("2024-01-01", 1, &[Some(1)])]);

    for bad in [
        "period=day",
        "periods=0",
        "behavior=Invite%20Sent",
        "within_days=7",
        "from=yesterday",
        "from=2024-02-01&to=2024-01-01",
        "split=a&split=b",
        "perods=3",
    ] {
        let (status, body) = app.get(&format!("/v1/cohorts/retention?{bad}"), &ws.secret).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_parameter")),
            "{bad}"
        );
    }
    let (status, body) = app.get("/v1/cohorts/retention", &ws.write).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_key_kind")));
}

#[tokio::test]
async fn operations_endpoints() {
    let app = spawn_app().await;
    let res = app.http.get(format!("{}/healthz", app.url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("x-request-id"));
    let res =
        app.http.get(format!("{}/readyz", app.url)).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let ws = app.workspace("Acme").await;
    app.post(
        "/v1/batch",
        Some(&ws.write),
        json!({"batch": [{"type": "track", "userId": "u", "event": "E"}]}).to_string(),
    )
    .await;
    let metrics = app.http.get(format!("{}/metrics", app.url)).send().await.unwrap().text().await.unwrap();
    for name in [
        "whisperer_events_accepted_total 1",
        "whisperer_commit_duration_seconds_bucket",
        "whisperer_commit_batch_events_bucket",
        "whisperer_http_requests_total{method=\"POST\",route=\"/v1/batch\",status=\"200\"} 1",
        "whisperer_http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "missing {name} in\n{metrics}");
    }
}
