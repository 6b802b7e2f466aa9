//! The OpenAPI document (`openapi.json`) against the real API: it is a well-formed OpenAPI 3.1
//! document, it documents exactly the routes of the router and every error code with its
//! status, its message schemas agree with the ingestion decoder, and real responses of a real
//! server validate against the schema it gives for their operation and status.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use whisperer_api::AppState;
use whisperer_api::error::ErrorCode;
use whisperer_core::identity::IdKind;
use whisperer_core::{ApiKey, KeyKind, Millis, Workspace, WorkspaceId};
use whisperer_ingest::{Endpoint, IngestConfig, Limits};
use whisperer_store::{MessageRecord, MessageStatus, NewKey, Store};
use whisperer_store_sqlite::SqliteStore;

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn doc() -> Value {
    serde_json::from_str(whisperer_api::OPENAPI).expect("openapi.json is valid JSON")
}

/// Every operation of the document: (method, path template, operation object).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, op) in item.as_object().expect("path item is an object") {
            if HTTP_METHODS.contains(&method.as_str()) {
                ops.push((method.clone(), path.clone(), op));
            }
        }
    }
    ops
}

/// Follows a local `$ref` (`#/…`) if `value` is one.
fn deref<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => deref(doc, resolve(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}"))),
        None => value,
    }
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    // The discriminator mapping holds references too.
                    ("mapping", Value::Object(m)) => {
                        out.extend(m.values().filter_map(|r| r.as_str().map(str::to_owned)))
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A validator for `schema` (a Schema Object of the document), with the document's components
/// in reach so that `#/components/schemas/…` references resolve.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let wrapper = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&wrapper)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}\n{schema:#}"))
}

fn errors_of(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("at {:?}: {e}", e.instance_path().to_string())).collect()
}

fn component(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `{user_id}` in an axum path is `{userId}` in the document.
fn doc_path(axum_path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    let mut upper = false;
    for c in axum_path.chars() {
        match c {
            '{' => in_param = true,
            '}' => in_param = false,
            '_' if in_param => {
                upper = true;
                continue;
            }
            _ => {}
        }
        if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The text of the balanced parenthesis group starting at `open` (which is `(`), skipping
/// string literals.
fn balanced(src: &str, open: usize) -> &str {
    let bytes = src.as_bytes();
    assert_eq!(bytes[open], b'(');
    let (mut depth, mut i, mut in_string) = (0usize, open, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return &src[open + 1..i];
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    panic!("unbalanced parentheses after byte {open}");
}

/// Identifiers directly followed by `(` outside string literals: the calls in a Rust snippet.
fn calls(snippet: &str) -> Vec<&str> {
    let bytes = snippet.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            if bytes.get(i) == Some(&b'(') {
                out.push(&snippet[start..i]);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every (method, path) the router registers, read from the router's source text, with paths
/// spelled as in the document.
fn router_routes() -> BTreeSet<(String, String)> {
    let routes = routes_in(include_str!("../src/lib.rs"));
    assert!(routes.len() >= 10, "read only {routes:?} from the router");
    routes
}

/// The (method, document path) of every `.route(…)` call in Rust source text.
fn routes_in(src: &str) -> BTreeSet<(String, String)> {
    for unsupported in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        assert!(!src.contains(unsupported), "the router uses {unsupported}; teach this test to read it");
    }
    let mut routes = BTreeSet::new();
    for (at, _) in src.match_indices(".route(") {
        let args = balanced(src, at + ".route".len());
        let path = args.split('"').nth(1).expect("a route's first argument is a string literal");
        let handler = &args[args.find(',').expect("route has a handler") + 1..];
        let mut methods = BTreeSet::new();
        for call in calls(handler) {
            match call {
                "get" | "post" | "put" | "delete" | "patch" | "head" | "options" | "trace" => {
                    methods.insert(call.to_owned());
                }
                // `ingest_route(endpoint)` is `post(…)` around the ingestion handler.
                "ingest_route" => {
                    methods.insert("post".to_owned());
                }
                _ => {}
            }
        }
        assert!(!methods.is_empty(), "cannot tell the HTTP methods of route {path}: teach this test");
        for method in methods {
            routes.insert((method, doc_path(path)));
        }
    }
    routes
}

#[test]
fn the_route_reader_reads_methods_across_lines() {
    let src = r#"
        Router::new()
            .route("/v1/batch", ingest_route(Endpoint::Batch))
            .route("/v1/things/{thing_id}/sub_items", get(list).post(add))
            .route(
                "/x",
                get(|| async { ([(header::CONTENT_TYPE, "text/plain (really)")], "get(") }).put(change),
            )
            .route("/v1/users/{user_id}", get(get_user))
    "#;
    let routes: Vec<(String, String)> = routes_in(src).into_iter().collect();
    let expected = [
        ("get", "/v1/things/{thingId}/sub_items"),
        ("get", "/v1/users/{userId}"),
        ("get", "/x"),
        ("post", "/v1/batch"),
        ("post", "/v1/things/{thingId}/sub_items"),
        ("put", "/x"),
    ];
    assert_eq!(routes, expected.map(|(m, p)| (m.to_owned(), p.to_owned())));
}

#[test]
fn is_openapi_3_1_with_resolvable_refs_and_responses() {
    let doc = doc();
    let version = doc["openapi"].as_str().expect("openapi field");
    assert!(version.starts_with("3.1"), "openapi is {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "only {} refs", refs.len());
    for r in &refs {
        assert!(r.starts_with("#/"), "{r} is not a local reference");
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve inside the document");
    }

    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    assert_eq!(schemes["writeKey"]["type"], "http");
    assert_eq!(schemes["writeKey"]["scheme"], "basic");
    assert_eq!(schemes["secretKey"]["type"], "http");
    assert_eq!(schemes["secretKey"]["scheme"], "bearer");

    let mut operation_ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(operation_ids.insert(id.to_owned()), "operationId {id} twice");
        assert!(op["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path}: no description");
        let security = op["security"].as_array().unwrap_or_else(|| panic!("{method} {path}: no security"));
        for requirement in security {
            for scheme in requirement.as_object().expect("security requirement object").keys() {
                assert!(schemes.contains_key(scheme), "{method} {path}: unknown scheme {scheme}");
            }
        }
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{method} {path}: no responses");
        assert!(success_status(op).is_some(), "{method} {path}: no 200 (or redirect) response");
        for (status, response) in responses {
            let response = deref(&doc, response);
            assert!(response["description"].is_string(), "{method} {path} {status}: no description");
            assert!(
                response["headers"]["X-Request-Id"].is_object(),
                "{method} {path} {status}: X-Request-Id"
            );
            // Only a redirect has no body.
            if status.starts_with('3') && response.get("content").is_none() {
                assert!(response["headers"]["Location"].is_object(), "{method} {path} {status}: Location");
                continue;
            }
            let content = response["content"].as_object().expect("every response has content");
            for (media, body) in content {
                let schema = body.get("schema").unwrap_or_else(|| panic!("{method} {path} {status} {media}"));
                validator(&doc, schema);
            }
        }
        // Every path parameter is declared.
        let params: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|p| p.iter().map(|p| deref(&doc, p)).collect())
            .unwrap_or_default();
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            assert!(
                params.iter().any(|p| p["in"] == "path" && p["name"] == name && p["required"] == true),
                "{method} {path}: path parameter {name} is not declared"
            );
        }
    }

    // Every component schema compiles, and every example validates against its schema.
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        let v = validator(&doc, &component(name));
        for example in schema["examples"].as_array().into_iter().flatten() {
            let errors = errors_of(&v, example);
            assert!(errors.is_empty(), "example of {name} is invalid: {errors:?}\n{example:#}");
        }
    }
    let mut examples = 0;
    for (method, path, op) in operations(&doc) {
        let mut bodies: Vec<&Value> =
            op["requestBody"]["content"].as_object().into_iter().flat_map(|c| c.values()).collect();
        for response in op["responses"].as_object().into_iter().flat_map(|r| r.values()) {
            bodies.extend(deref(&doc, response)["content"].as_object().into_iter().flat_map(|c| c.values()));
        }
        for body in bodies {
            let v = validator(&doc, &body["schema"]);
            for (name, example) in body["examples"].as_object().into_iter().flatten() {
                let errors = errors_of(&v, &example["value"]);
                assert!(errors.is_empty(), "{method} {path} example {name} is invalid: {errors:?}");
                examples += 1;
            }
        }
    }
    assert!(examples >= 10, "only {examples} examples");
}

/// The status an operation answers when it works: 200, or 302 for a redirect.
fn success_status(op: &Value) -> Option<u16> {
    let responses = op["responses"].as_object()?;
    ["200", "302"].into_iter().find(|s| responses.contains_key(*s)).map(|s| s.parse().expect("numeric"))
}

#[test]
fn documents_exactly_the_routes_of_the_router() {
    let doc = doc();
    let documented: BTreeSet<(String, String)> =
        operations(&doc).into_iter().map(|(m, p, _)| (m, p)).collect();
    let routed = router_routes();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty(), "routes missing from openapi.json: {undocumented:?}");
    assert!(unrouted.is_empty(), "openapi.json documents routes the router lacks: {unrouted:?}");
}

/// The codes an error response of an operation is documented to carry.
fn response_codes(doc: &Value, response: &Value) -> Vec<String> {
    let schema = &deref(doc, response)["content"]["application/json"]["schema"];
    let codes = schema["properties"]["code"]["enum"].as_array().expect("error responses list their codes");
    assert_eq!(
        schema["properties"]["error"]["properties"]["code"]["enum"],
        schema["properties"]["code"]["enum"]
    );
    codes.iter().map(|c| c.as_str().expect("code").to_owned()).collect()
}

#[test]
fn every_error_code_is_documented_with_its_status() {
    let doc = doc();
    let all: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let schema = &doc["components"]["schemas"]["ErrorCode"];
    let documented: BTreeSet<&str> =
        schema["enum"].as_array().expect("ErrorCode enum").iter().filter_map(Value::as_str).collect();
    assert_eq!(documented, all, "the ErrorCode schema must list exactly ErrorCode::ALL");
    assert_eq!(
        doc["components"]["schemas"]["Error"]["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    // The error table (in the ErrorCode schema and the API description) states each status.
    let table = schema["description"].as_str().expect("ErrorCode description");
    let intro = doc["info"]["description"].as_str().expect("info description");
    for code in ErrorCode::ALL {
        let row = format!("| `{}` | {} |", code.as_str(), code.status().as_u16());
        assert!(table.contains(&row), "ErrorCode table lacks {row}");
        assert!(intro.contains(&row), "info description lacks {row}");
    }

    // Each operation's error responses list codes of exactly that status, and the codes in the
    // operation's description are those of its responses.
    let status_of: BTreeMap<&str, u16> =
        ErrorCode::ALL.iter().map(|c| (c.as_str(), c.status().as_u16())).collect();
    let mut used = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let mut codes = BTreeSet::new();
        for (status, response) in op["responses"].as_object().expect("responses") {
            let status: u16 = status.parse().expect("numeric status");
            if status < 400 {
                continue;
            }
            for code in response_codes(&doc, response) {
                assert_eq!(
                    status_of.get(code.as_str()),
                    Some(&status),
                    "{method} {path}: {code} under {status}"
                );
                let description = deref(&doc, response)["description"].as_str().unwrap_or_default();
                assert!(
                    description.contains(&format!("`{code}`")),
                    "{method} {path} {status}: {code} not described"
                );
                codes.insert(code);
            }
        }
        let description = op["description"].as_str().unwrap_or_default();
        let listed: BTreeSet<String> = description
            .split("Error codes: ")
            .nth(1)
            .map(|list| {
                list.split(", ")
                    .map(|item| item.split('`').nth(1).expect("`code` (status)").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(listed, codes, "{method} {path}: the description's error codes differ from its responses");
        used.extend(codes);
    }
    // Only the fallbacks' codes belong to no operation, and `route_not_found` is also the
    // answer of a provider callback for an unknown workspace.
    let unused: BTreeSet<&str> = all.iter().copied().filter(|c| !used.contains(*c)).collect();
    assert_eq!(unused, BTreeSet::from(["method_not_allowed"]));
}

#[test]
fn message_schemas_agree_with_the_decoder() {
    let doc = doc();
    let message = validator(&doc, &component("BatchMessage"));
    let long = "u".repeat(600);
    let cases: Vec<(Value, bool)> = vec![
        (json!({"type": "track", "userId": "u", "event": "E"}), true),
        (json!({"type": "track", "anonymousId": "a", "event": "E", "properties": null}), true),
        (json!({"type": "track", "userId": "", "anonymousId": "a", "event": "E"}), true),
        (json!({"type": "identify", "userId": 42, "traits": {"a": 1}}), true),
        (
            json!({"type": "identify", "userId": "u", "anonymousId": null, "context": null, "integrations": {}}),
            true,
        ),
        (json!({"type": "page", "anonymousId": "a"}), true),
        (json!({"type": "screen", "userId": "u", "name": "Home"}), true),
        (json!({"type": "group", "userId": "u", "groupId": "g", "traits": {"n": 1}}), true),
        (json!({"type": "group", "userId": "u", "groupId": 7}), true),
        (json!({"type": "alias", "userId": "u", "previousId": "p"}), true),
        (
            json!({"type": "track", "userId": "u", "event": "E",
                "timestamp": "2024-01-02T03:04:05.123456+00:00", "sentAt": "2024-01-02 03:04:05"}),
            true,
        ),
        (
            json!({"type": "track", "userId": "u", "event": "E", "timestamp": "2024-01-02T03:04:05+0100"}),
            true,
        ),
        (json!({"type": "track", "userId": "u", "event": "E", "originalTimestamp": "2024-01-02"}), true),
        (json!({"type": "track", "userId": "u", "event": "E", "timestamp": ""}), true),
        (
            json!({"type": "track", "userId": "u", "event": "E", "custom": {"x": [1, 2]}, "_metadata": {}}),
            true,
        ),
        (json!({"userId": "u", "event": "E"}), false),
        (json!({"type": "bogus", "userId": "u"}), false),
        (json!("not an object"), false),
        (json!({"type": "track", "event": "E"}), false),
        (json!({"type": "track", "userId": "", "event": "E"}), false),
        (json!({"type": "track", "userId": null, "event": "E"}), false),
        (json!({"type": "track", "userId": "u"}), false),
        (json!({"type": "track", "userId": "u", "event": ""}), false),
        (json!({"type": "track", "userId": "u", "event": null}), false),
        (json!({"type": "track", "userId": "u", "event": 5}), false),
        (json!({"type": "track", "userId": 1.5, "event": "E"}), false),
        (json!({"type": "track", "userId": {"x": 1}, "event": "E"}), false),
        (json!({"type": "track", "userId": long, "event": "E"}), false),
        (json!({"type": "track", "userId": "u", "event": "E", "properties": []}), false),
        (json!({"type": "identify", "userId": "u", "traits": "pro"}), false),
        (json!({"type": "track", "userId": "u", "event": "E", "context": 1}), false),
        (json!({"type": "track", "userId": "u", "event": "E", "integrations": "all"}), false),
        (json!({"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"}), false),
        (json!({"type": "track", "userId": "u", "event": "E", "timestamp": 1_700_000_000}), false),
        (json!({"type": "identify", "userId": "u", "name": 7}), false),
        (json!({"type": "page", "userId": "u", "groupId": [1]}), false),
        (json!({"type": "group", "userId": "u"}), false),
        (json!({"type": "alias", "userId": "u"}), false),
        (json!({"type": "alias", "anonymousId": "a", "previousId": "p"}), false),
    ];
    for (case, valid) in &cases {
        let body = json!({"batch": [case]}).to_string();
        let decoded = whisperer_ingest::decode::decode(Endpoint::Batch, body.as_bytes(), &Limits::default())
            .expect("the batch itself is well formed");
        let decoder_ok = decoded.messages[0].is_ok();
        assert_eq!(decoder_ok, *valid, "decoder on {case}: {:?}", decoded.messages[0]);
        let errors = errors_of(&message, case);
        assert_eq!(errors.is_empty(), *valid, "BatchMessage schema on {case}: {errors:?}");
    }

    // The batch envelope: what the schema allows is exactly what decodes.
    let batch = validator(&doc, &component("BatchRequest"));
    let message = json!({"type": "track", "userId": "u", "event": "E"});
    let envelopes: Vec<(Value, bool)> = vec![
        (json!({"batch": []}), true),
        (json!({"batch": [message], "writeKey": "wk_x", "sentAt": "2024-01-02T03:04:05Z"}), true),
        (json!({"batch": [message], "context": {"ip": "203.0.113.7", "userAgent": "curl/8"}}), true),
        (json!({"batch": [], "context": null, "sentAt": null, "writeKey": null}), true),
        (json!({"batch": [], "unknown": 1}), true),
        (json!({}), false),
        (json!([]), false),
        (json!({"batch": null}), false),
        (json!({"batch": {}}), false),
        (json!({"batch": [], "context": 1}), false),
        (json!({"batch": [], "sentAt": "noon"}), false),
    ];
    for (case, valid) in &envelopes {
        let decoded = whisperer_ingest::decode::decode(
            Endpoint::Batch,
            case.to_string().as_bytes(),
            &Limits::default(),
        );
        assert_eq!(decoded.is_ok(), *valid, "decoder on {case}: {decoded:?}");
        let errors = errors_of(&batch, case);
        assert_eq!(errors.is_empty(), *valid, "BatchRequest schema on {case}: {errors:?}");
    }

    // What official Segment libraries send is a valid batch.
    let dir = format!("{}/../../../shared/fixtures/segment-clients", env!("CARGO_MANIFEST_DIR"));
    let mut bodies = 0;
    for name in ["py_segment.jsonl", "py_segment_batch.jsonl", "node_segment.jsonl"] {
        let text = std::fs::read_to_string(format!("{dir}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"));
        for line in text.lines() {
            let captured: Value = serde_json::from_str(line).expect("fixture line");
            let errors = errors_of(&batch, &captured["body"]);
            assert!(errors.is_empty(), "{name}: {errors:?}");
            bodies += 1;
        }
    }
    assert!(bodies >= 8);
}

// ---------------------------------------------------------------------------------------------
// A real server

struct TestApp {
    url: String,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    doc: Value,
    /// (method, path, status) of every response checked against the document.
    seen: Mutex<BTreeSet<(String, String, u16)>>,
    _dir: tempfile::TempDir,
}

struct Keys {
    id: WorkspaceId,
    write: String,
    secret: String,
}

async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let ingestor = Arc::new(IngestConfig::default().build(store.clone(), &mut registry).unwrap());
    let profiles = whisperer_profiles::ProfileEngine::new(
        store.clone(),
        whisperer_profiles::EngineConfig {
            poll_interval: std::time::Duration::from_millis(20),
            ..Default::default()
        },
    );
    tokio::spawn(profiles.clone().run(std::future::pending()));
    let churn = Arc::new(whisperer_models::ChurnModels::new(store.clone()));
    tokio::spawn(churn.clone().run(std::time::Duration::from_millis(50), std::future::pending()));
    let state = AppState::new(store.clone(), ingestor, registry, Some(profiles), Some(churn));
    let app = whisperer_api::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    TestApp {
        url: format!("http://{addr}"),
        store,
        // Redirects are answers to check, not to follow.
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        doc: doc(),
        seen: Mutex::new(BTreeSet::new()),
        _dir: dir,
    }
}

impl TestApp {
    async fn workspace(&self) -> Keys {
        let ws = Workspace { id: WorkspaceId::generate(), name: "Acme".into(), created_at: Millis::now() };
        let write = ApiKey::generate(KeyKind::Write);
        let secret = ApiKey::generate(KeyKind::Secret);
        self.store
            .create_workspace(&ws, &[NewKey::of(&write, Millis::now()), NewKey::of(&secret, Millis::now())])
            .await
            .unwrap();
        Keys { id: ws.id, write: write.plaintext, secret: secret.plaintext }
    }

    fn request(&self, method: &str, url_path: &str) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        self.http.request(method, format!("{}{url_path}", self.url))
    }

    /// Sends a request for the operation `method template` and checks the response against the
    /// document: its status is documented for the operation, its content type is the documented
    /// one, it has an `X-Request-Id`, and its body validates against the documented schema.
    async fn call(
        &self,
        method: &str,
        template: &str,
        request: reqwest::RequestBuilder,
    ) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(response.headers().contains_key("x-request-id"), "{method} {template}: no x-request-id");
        let text = response.text().await.unwrap();
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        let documented = op["responses"].get(status.as_str()).unwrap_or_else(|| {
            panic!("{method} {template} answered {status}, which is not documented: {text}")
        });
        let documented = deref(&self.doc, documented);
        if status.is_redirection() && documented.get("content").is_none() {
            assert!(text.is_empty(), "{method} {template} {status}: a redirect with a body: {text}");
            self.seen.lock().unwrap().insert((method.to_owned(), template.to_owned(), status.as_u16()));
            return (status, Value::Null);
        }
        let media = documented["content"].get(&content_type).unwrap_or_else(|| {
            panic!("{method} {template} {status}: content type {content_type:?} is not documented")
        });
        let body: Value = if content_type == "application/json" {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {template}: {e}: {text}"))
        } else {
            Value::String(text)
        };
        let errors = errors_of(&validator(&self.doc, &media["schema"]), &body);
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: the body does not match the documented schema: {errors:#?}\n{body:#}"
        );
        self.seen.lock().unwrap().insert((method.to_owned(), template.to_owned(), status.as_u16()));
        (status, body)
    }

    /// An undocumented route's answer: the documented `Error` shape with `code`.
    async fn fallback(&self, request: reqwest::RequestBuilder, status: StatusCode, code: &str) {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        let errors = errors_of(&validator(&self.doc, &component("Error")), &body);
        assert!(errors.is_empty(), "{errors:?}: {body}");
        assert_eq!(body["code"], code);
    }

    /// The first example of an operation's request body.
    fn example(&self, method: &str, template: &str) -> Value {
        let examples =
            &self.doc["paths"][template][method]["requestBody"]["content"]["application/json"]["examples"];
        examples.as_object().and_then(|e| e.values().next()).expect("an example")["value"].clone()
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn real_responses_match_the_documented_schemas() {
    let app = spawn_app().await;
    let ws = app.workspace().await;

    // Operations endpoints.
    let (status, _) = app.call("get", "/healthz", app.request("get", "/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = app.call("get", "/readyz", app.request("get", "/readyz")).await;
    assert_eq!((status, ready["storage"].as_str()), (StatusCode::OK, Some("sqlite")));
    let (status, served) = app.call("get", "/openapi.json", app.request("get", "/openapi.json")).await;
    assert_eq!((status, &served), (StatusCode::OK, &app.doc), "the document is served verbatim");

    // Each single-message endpoint takes its documented example, with the key in the header
    // or (for track) in the body.
    for kind in ["track", "identify", "page", "screen", "group", "alias"] {
        let path = format!("/v1/{kind}");
        let example = app.example("post", &path);
        let (status, answer) = app
            .call(
                "post",
                &path,
                app.request("post", &path).basic_auth(&ws.write, Some("")).body(example.to_string()),
            )
            .await;
        assert_eq!((status, answer["accepted"].as_u64()), (StatusCode::OK, Some(1)), "{kind}: {answer}");
    }
    let mut in_body = app.example("post", "/v1/track");
    in_body["writeKey"] = json!(ws.write);
    in_body["messageId"] = json!("body-key-1");
    let (status, _) =
        app.call("post", "/v1/track", app.request("post", "/v1/track").body(in_body.to_string())).await;
    assert_eq!(status, StatusCode::OK);

    // The documented batch, gzipped, then again through /v1/import: all duplicates.
    let batch = app.example("post", "/v1/batch");
    let request = app
        .request("post", "/v1/batch")
        .bearer_auth(&ws.write)
        .header("content-encoding", "gzip")
        .body(gzip(batch.to_string().as_bytes()));
    let (status, answer) = app.call("post", "/v1/batch", request).await;
    assert_eq!((status, answer["accepted"].as_u64()), (StatusCode::OK, Some(3)), "{answer}");
    let request = app.request("post", "/v1/import").basic_auth(&ws.write, Some("")).body(batch.to_string());
    let (status, answer) = app.call("post", "/v1/import", request).await;
    assert_eq!((status, answer["duplicates"].as_u64()), (StatusCode::OK, Some(3)), "{answer}");

    // A partly bad batch: 200 with the refusals.
    let big = "x".repeat(33 * 1024);
    let partly = json!({"batch": [
        {"type": "track", "userId": "user_1", "event": "Good", "messageId": "partly-1"},
        {"type": "track", "userId": "user_1"},
        {"type": "track", "userId": "user_1", "event": "Big", "properties": {"blob": big}},
    ]});
    let post_batch =
        |body: String| app.request("post", "/v1/batch").basic_auth(&ws.write, Some("")).body(body);
    let (status, answer) = app.call("post", "/v1/batch", post_batch(partly.to_string())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["rejected"].as_array().map(Vec::len), Some(2), "{answer}");

    // Batches where every message is refused: the first refusal's status, and the list.
    let all_bad = json!({"batch": [{"type": "track", "userId": "u"}, {"type": "nope", "userId": "u"}]});
    let (status, answer) = app.call("post", "/v1/batch", post_batch(all_bad.to_string())).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::BAD_REQUEST, "invalid_message"));
    assert_eq!(answer["rejected"].as_array().map(Vec::len), Some(2));
    let all_big =
        json!({"batch": [{"type": "track", "userId": "u", "event": "E", "properties": {"b": big}}]});
    let (status, answer) = app.call("post", "/v1/import", post_batch(all_big.to_string())).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"));

    // Bad requests.
    let track =
        |body: &str| app.request("post", "/v1/track").basic_auth(&ws.write, Some("")).body(body.to_owned());
    let bad: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (track("{\"userId\": "), StatusCode::BAD_REQUEST, "malformed_json"),
        (track("[]"), StatusCode::BAD_REQUEST, "invalid_batch"),
        (track(r#"{"userId": "u"}"#), StatusCode::BAD_REQUEST, "invalid_message"),
        (
            track(r#"{"userId": "u", "event": "x", "timestamp": "noon"}"#),
            StatusCode::BAD_REQUEST,
            "invalid_message",
        ),
        (
            track("{}").header("content-encoding", "br"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
        ),
        (track("{}").header("content-encoding", "gzip"), StatusCode::BAD_REQUEST, "invalid_gzip"),
        (
            app.request("post", "/v1/track").body(r#"{"userId": "u", "event": "x"}"#),
            StatusCode::UNAUTHORIZED,
            "missing_key",
        ),
        (
            app.request("post", "/v1/track").bearer_auth("wk_nope").body(r#"{"userId": "u", "event": "x"}"#),
            StatusCode::UNAUTHORIZED,
            "invalid_key",
        ),
        (
            app.request("post", "/v1/track").bearer_auth(&ws.secret).body(r#"{"userId": "u", "event": "x"}"#),
            StatusCode::FORBIDDEN,
            "wrong_key_kind",
        ),
    ];
    for (request, status, code) in bad {
        let (got, body) = app.call("post", "/v1/track", request).await;
        assert_eq!((got, error_code(&body)), (status, code), "{body}");
    }
    let (status, body) = app.call("post", "/v1/batch", post_batch(" ".repeat(600 * 1024))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"));
    let (status, body) = app.call("post", "/v1/batch", post_batch(json!({"batch": 5}).to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_batch"));

    // Reads with the secret key.
    let get = |path: &str| app.request("get", path).bearer_auth(&ws.secret);
    let (status, user) = app.call("get", "/v1/users/{userId}", get("/v1/users/user_1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["identities"]["anonymousIds"], json!(["anon_1"]), "{user}");
    // Once the profile engine has caught up, the live profile is there too (and checked).
    let mut user = user;
    for _ in 0..200 {
        if !user["profile"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        user = app.call("get", "/v1/users/{userId}", get("/v1/users/user_1")).await.1;
    }
    assert!(user["profile"]["engagement"]["score"].is_number(), "{user}");
    let basic = app.request("get", "/v1/users/user_1").basic_auth(&ws.secret, Some(""));
    assert_eq!(
        app.call("get", "/v1/users/{userId}", basic).await.0,
        StatusCode::OK,
        "Basic works with a secret key"
    );
    let (status, body) = app.call("get", "/v1/users/{userId}", get("/v1/users/nobody")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));
    let (status, body) = app.call("get", "/v1/users/{userId}", app.request("get", "/v1/users/user_1")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing_key"));
    let wrong = app.request("get", "/v1/users/user_1").basic_auth(&ws.write, Some(""));
    let (status, body) = app.call("get", "/v1/users/{userId}", wrong).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "wrong_key_kind"));

    let events = "/v1/users/{userId}/events";
    let mut path = "/v1/users/user_1/events?limit=3".to_owned();
    let mut seen = 0;
    loop {
        let (status, page) = app.call("get", events, get(&path)).await;
        assert_eq!(status, StatusCode::OK);
        seen += page["events"].as_array().unwrap().len();
        match page["nextCursor"].as_str() {
            Some(cursor) => path = format!("/v1/users/user_1/events?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert!(seen >= 8, "user_1 has {seen} events");
    let (status, body) = app.call("get", events, get("/v1/users/user_1/events?limit=0")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app.call("get", events, get("/v1/users/user_1/events?cursor=garbage")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_cursor"));
    let (status, body) = app.call("get", events, get("/v1/users/nobody/events")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));

    // Retention cohorts, split by a trait and by a behaviour.
    let cohorts = "/v1/cohorts/retention";
    let query = "/v1/cohorts/retention?split=plan&behavior=Order%20Completed&within_days=7&periods=4";
    let (status, report) = app.call("get", cohorts, get(query)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(report["persons"].as_u64() > Some(0), "{report}");
    let (status, body) = app.call("get", cohorts, get("/v1/cohorts/retention?period=day")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app.call("get", cohorts, app.request("get", cohorts)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing_key"));

    // The tracking plan: empty, then set in warn mode (events are flagged), then reject mode.
    let plan = "/v1/tracking-plan";
    let (status, empty) = app.call("get", plan, get(plan)).await;
    assert_eq!((status, empty), (StatusCode::OK, json!({"mode": "warn", "events": {}})));
    let mut example = app.example("put", plan);
    example["mode"] = json!("warn");
    let put = |body: String| app.request("put", plan).bearer_auth(&ws.secret).body(body);
    let (status, stored) = app.call("put", plan, put(example.to_string())).await;
    assert_eq!((status, &stored), (StatusCode::OK, &example));
    let breaking = json!({"userId": "flagged", "event": "Order Completed", "properties": {"revenue": "12"},
        "context": {"userAgent": "curl/8.0"}});
    assert_eq!(app.call("post", "/v1/track", track(&breaking.to_string())).await.0, StatusCode::OK);
    let (status, page) = app.call("get", events, get("/v1/users/flagged/events")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page["events"][0]["enrichment"]["violations"][0].is_string(), "{page}");
    let (status, stored) = app.call("put", plan, put(app.example("put", plan).to_string())).await;
    assert_eq!((status, stored["mode"].as_str()), (StatusCode::OK, Some("reject")));
    let (status, got) = app.call("get", plan, get(plan)).await;
    assert_eq!((status, got), (StatusCode::OK, app.example("put", plan)));
    let (status, body) = app.call("post", "/v1/track", track(&breaking.to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "tracking_plan_violation"));
    let mixed = json!({"batch": [
        {"type": "track", "userId": "u", "event": "Order Completed", "properties": {"revenue": 1}},
        {"type": "track", "userId": "u", "event": "Order Completed", "properties": {}},
    ]});
    let (status, answer) = app.call("post", "/v1/batch", post_batch(mixed.to_string())).await;
    assert_eq!(
        (status, answer["rejected"][0]["code"].as_str()),
        (StatusCode::OK, Some("tracking_plan_violation"))
    );
    let (status, body) = app.call("put", plan, put(json!({"mode": "strict"}).to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_tracking_plan"));
    let (status, body) = app.call("put", plan, put(json!({"events": {"E": {"type": 12}}}).to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_tracking_plan"));
    let (status, body) = app.call("get", plan, app.request("get", plan)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing_key"));
    let wrong = app.request("put", plan).basic_auth(&ws.write, Some("")).body("{}");
    let (status, body) = app.call("put", plan, wrong).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "wrong_key_kind"));

    // Lifecycle thresholds: defaults, then the example, then refusals that name the problem.
    let lifecycle = "/v1/settings/lifecycle";
    let (status, defaults) = app.call("get", lifecycle, get(lifecycle)).await;
    assert_eq!((status, defaults["churned_days"].as_f64()), (StatusCode::OK, Some(30.0)));
    let put = |body: String| app.request("put", lifecycle).bearer_auth(&ws.secret).body(body);
    let (status, set) = app.call("put", lifecycle, put(app.example("put", lifecycle).to_string())).await;
    assert_eq!(
        (status, set["churned_days"].as_f64(), set["at_risk_days"].as_f64()),
        (StatusCode::OK, Some(60.0), Some(14.0))
    );
    assert_eq!(app.call("get", lifecycle, get(lifecycle)).await.1, set);
    for bad in [json!({"churn_days": 3}), json!({"churned_days": 5}), json!({"engaged_score": "high"})] {
        let (status, body) = app.call("put", lifecycle, put(bad.to_string())).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_setting"),
            "{bad}: {body}"
        );
    }
    assert_eq!(app.call("get", lifecycle, get(lifecycle)).await.1, set, "a refused update changes nothing");
    let (status, body) = app.call("get", lifecycle, app.request("get", lifecycle)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing_key"));

    // Decisions: fatigue rules, a campaign from the document's example, a decision for a known
    // user and one for an unknown campaign, the audit trail with its filters and cursor.
    let fatigue = "/v1/settings/fatigue";
    let (status, rules) = app.call("get", fatigue, get(fatigue)).await;
    assert_eq!((status, rules["min_gap_minutes"].as_u64()), (StatusCode::OK, Some(240)));
    let put_rules = |body: String| app.request("put", fatigue).bearer_auth(&ws.secret).body(body);
    // No quiet hours: the wall clock must not decide whether the message is sent.
    let (status, rules) = app.call("put", fatigue, put_rules(json!({"quiet_hours": null}).to_string())).await;
    assert_eq!(
        (status, &rules["quiet_hours"], rules["caps"]["per_day"].as_u64()),
        (StatusCode::OK, &Value::Null, Some(2))
    );
    let (status, body) =
        app.call("put", fatigue, put_rules(json!({"caps": {"per_day": 9, "per_week": 2}}).to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_setting"), "{body}");
    let campaign = "/v1/campaigns/{campaignId}";
    let put_campaign =
        |body: String| app.request("put", "/v1/campaigns/win-back").bearer_auth(&ws.secret).body(body);
    let mut definition = app.example("put", campaign);
    definition["audience"] = json!("true");
    let (status, stored) = app.call("put", campaign, put_campaign(definition.to_string())).await;
    assert_eq!((status, stored["version"].as_i64()), (StatusCode::OK, Some(1)), "{stored}");
    let (_, again) = app.call("put", campaign, put_campaign(definition.to_string())).await;
    assert_eq!(again["version"].as_i64(), Some(1), "an unchanged definition keeps its version");
    let mut wrong = definition.clone();
    wrong["goal"]["within"] = json!("3 days");
    wrong["colour"] = json!("blue");
    let (status, body) = app.call("put", campaign, put_campaign(wrong.to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_campaign"));
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("goal.within") && message.contains("colour: unknown field"), "{message}");
    let (status, list) = app.call("get", "/v1/campaigns", get("/v1/campaigns")).await;
    assert_eq!((status, list["campaigns"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    let (status, one) = app.call("get", campaign, get("/v1/campaigns/win-back")).await;
    assert_eq!((status, one["definition"]["holdout_percent"].as_f64()), (StatusCode::OK, Some(20.0)));
    let (status, body) = app.call("get", campaign, get("/v1/campaigns/nope")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "campaign_not_found"));

    let decide =
        |body: Value| app.request("post", "/v1/decide").bearer_auth(&ws.secret).body(body.to_string());
    let mut held_out = 0;
    for i in 0..12 {
        let (status, d) = app
            .call("post", "/v1/decide", decide(json!({"userId": format!("u{i}"), "campaign": "win-back"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{d}");
        let p = d["propensity"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0);
        if d["holdout"] == true {
            held_out += 1;
            assert!(d["arm"].is_null());
        }
    }
    assert!(held_out < 12, "some users are treated");
    let (status, d) = app.call("post", "/v1/decide", decide(app.example("post", "/v1/decide"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["campaign"], "win-back");
    let (status, body) =
        app.call("post", "/v1/decide", decide(json!({"userId": "ada", "campaign": "nope"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "campaign_not_found"));
    let (status, body) = app.call("post", "/v1/decide", decide(json!({"campaign": "win-back"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app
        .call("post", "/v1/decide", app.request("post", "/v1/decide").bearer_auth(&ws.secret).body("{"))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "malformed_json"));
    let (status, page) =
        app.call("get", "/v1/decisions", get("/v1/decisions?limit=5&campaign=win-back")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["decisions"].as_array().map(Vec::len), Some(5));
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let (_, rest) =
        app.call("get", "/v1/decisions", get(&format!("/v1/decisions?limit=100&cursor={cursor}"))).await;
    assert_eq!(rest["decisions"].as_array().map(Vec::len), Some(8), "13 decisions in all");
    let (status, body) = app.call("get", "/v1/decisions", get("/v1/decisions?cursor=zzz")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_cursor"));
    let (status, body) = app.call("get", "/v1/decisions", get("/v1/decisions?status=maybe")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));

    // The experiment report answers (waiting: no decision has settled yet), and names problems.
    let experiment = "/v1/campaigns/{campaignId}/experiment";
    let (status, report) = app.call("get", experiment, get("/v1/campaigns/win-back/experiment")).await;
    assert_eq!(
        (status, report["status"].as_str(), report["pending"].as_u64()),
        (StatusCode::OK, Some("waiting"), Some(13)),
        "{report}"
    );
    let (status, body) =
        app.call("get", experiment, get("/v1/campaigns/win-back/experiment?confidence=2")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app.call("get", experiment, get("/v1/campaigns/nope/experiment")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "campaign_not_found"));

    content_and_delivery(&app, &ws).await;
    llm_settings_and_variants(&app, &ws).await;

    // Metrics last, so every route above has been counted.
    let (status, metrics) = app.call("get", "/metrics", app.request("get", "/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.as_str().unwrap().contains("whisperer_http_requests_total"));

    // The fallbacks answer the documented Error shape.
    app.fallback(app.request("get", "/v1/nope"), StatusCode::NOT_FOUND, "route_not_found").await;
    app.fallback(app.request("get", "/v1/track"), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;

    // Every operation's success answer was checked against the document, except SendGrid's
    // callback: its success needs an ECDSA signature, which this test has no signer for (its
    // refusals are checked above).
    let seen = app.seen.lock().unwrap().clone();
    for (method, path, op) in operations(&app.doc) {
        if path == "/v1/callbacks/sendgrid/{workspaceId}" {
            continue;
        }
        let status = success_status(op).expect("a success status");
        assert!(
            seen.contains(&(method.clone(), path.clone(), status)),
            "{method} {path}: no {status} checked"
        );
    }
}

/// A shop whose customers order at their own pace until they stop; once a churn model is
/// trained on it, the user view carries a score that must match the documented `ChurnScore`.
#[tokio::test]
async fn churn_scores_match_the_documented_schema() {
    let app = spawn_app().await;
    let ws = app.workspace().await;
    let day = 86_400_000;
    let now = Millis::now().0;
    let mut orders = Vec::new();
    for customer in 0..300i64 {
        let every = 1 + customer % 5;
        let stops = now - (customer * 13 % 120) * day;
        let mut t = now - 150 * day + (customer % 11) * day;
        while t < stops {
            orders.push(json!({
                "type": "track", "userId": format!("c{customer}"), "event": "Order Completed",
                "properties": {"revenue": 10 + customer % 40}, "timestamp": Millis(t).to_rfc3339(),
            }));
            t += every * day + customer * 997 % day;
        }
    }
    for batch in orders.chunks(100) {
        let request = app
            .request("post", "/v1/batch")
            .basic_auth(&ws.write, Some(""))
            .body(json!({"batch": batch}).to_string());
        assert_eq!(app.call("post", "/v1/batch", request).await.0, StatusCode::OK);
    }
    let id = app.store.list_workspaces().await.unwrap()[0].id.clone();
    let mut replay = whisperer_models::Replay::empty(now);
    whisperer_store::scan_log(
        app.store.as_ref(),
        &id,
        10_000,
        |page| -> Result<(), whisperer_store::StoreError> {
            page.iter().for_each(|e| replay.push(e));
            Ok(())
        },
    )
    .await
    .unwrap();
    let model = whisperer_models::train(&replay.finish(), now, 14).unwrap();
    let metrics = serde_json::to_string(&model.report).unwrap();
    app.store
        .save_model(
            &id,
            whisperer_models::CHURN_MODEL_KIND,
            Millis(now),
            Millis(now),
            &metrics,
            &model.to_bytes(),
        )
        .await
        .unwrap();

    let path = "/v1/users/{userId}";
    let mut user = Value::Null;
    for _ in 0..300 {
        let request = app.request("get", "/v1/users/c7").bearer_auth(&ws.secret);
        user = app.call("get", path, request).await.1;
        if user["profile"]["churn"].is_object() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let churn = &user["profile"]["churn"];
    assert_eq!(churn["modelVersion"], 1, "{user:#}");
    assert!(churn["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{user:#}");
}

/// Templates, delivery and compliance settings, the outbox, the inbox, tracking links and
/// provider callbacks, each answer checked against the document.
async fn content_and_delivery(app: &TestApp, ws: &Keys) {
    let get = |path: &str| app.request("get", path).bearer_auth(&ws.secret);
    let send =
        |method: &str, path: &str, body: String| app.request(method, path).bearer_auth(&ws.secret).body(body);

    // A user to render for, identified through the API.
    let identify =
        json!({"userId": "ada", "traits": {"email": "ada@example.com", "first_name": "Ada", "locale": "de"}});
    let request =
        app.request("post", "/v1/identify").basic_auth(&ws.write, Some("")).body(identify.to_string());
    assert_eq!(app.call("post", "/v1/identify", request).await.0, StatusCode::OK);

    // Templates: the documented example (en and de), versions, strict checks.
    let template = "/v1/templates/{templateId}";
    let definition = app.example("put", template);
    let (status, saved) =
        app.call("put", template, send("put", "/v1/templates/win-back", definition.to_string())).await;
    assert_eq!((status, saved["version"].as_i64()), (StatusCode::OK, Some(1)), "{saved}");
    assert!(saved["warnings"].is_array(), "{saved}");
    let (_, again) =
        app.call("put", template, send("put", "/v1/templates/win-back", definition.to_string())).await;
    assert_eq!(again["version"].as_i64(), Some(1), "an unchanged definition keeps its version");
    let mut changed = definition.clone();
    changed["locales"]["en"]["subject"] = json!("Come back, {{ traits.first_name | default('friend') }}");
    let (status, v2) =
        app.call("put", template, send("put", "/v1/templates/win-back", changed.to_string())).await;
    assert_eq!((status, v2["version"].as_i64()), (StatusCode::OK, Some(2)));
    let (status, v1) = app.call("get", template, get("/v1/templates/win-back?version=1")).await;
    assert_eq!((status, &v1["definition"]["locales"]["de"]), (StatusCode::OK, &definition["locales"]["de"]));
    let (status, current) = app.call("get", template, get("/v1/templates/win-back")).await;
    assert_eq!((status, current["version"].as_i64()), (StatusCode::OK, Some(2)));
    let (status, list) = app.call("get", "/v1/templates", get("/v1/templates")).await;
    assert_eq!((status, list["templates"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    let (status, body) = app.call("get", template, get("/v1/templates/win-back?version=9")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "template_not_found"));
    let (status, body) = app.call("get", template, get("/v1/templates/win-back?version=0")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app.call("get", template, get("/v1/templates/nope")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "template_not_found"));
    let misspelt = json!({"locales": {"en": {"subject": "Hi", "body": "Hello\n  {{ frist_name }}"}}});
    let (status, body) =
        app.call("put", template, send("put", "/v1/templates/bad", misspelt.to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_template"));
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("locales.en.body") && message.contains("line 2, column"), "{message}");
    let (status, body) =
        app.call("put", template, send("put", "/v1/templates/b%20d", definition.to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app.call("get", "/v1/templates", app.request("get", "/v1/templates")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing_key"));

    // Callbacks before any delivery setting: no key to verify them with.
    let sendgrid = "/v1/callbacks/sendgrid/{workspaceId}";
    let twilio = "/v1/callbacks/twilio/{workspaceId}";
    let sendgrid_url = format!("/v1/callbacks/sendgrid/{}", ws.id.as_str());
    let twilio_url = format!("/v1/callbacks/twilio/{}", ws.id.as_str());
    let events =
        json!([{"event": "delivered", "timestamp": 1_718_000_000, "sg_message_id": "x"}]).to_string();
    let request = app
        .request("post", &sendgrid_url)
        .header("x-twilio-email-event-webhook-signature", "MEUCIQ==")
        .header("x-twilio-email-event-webhook-timestamp", Millis::now().0 / 1000)
        .body(events.clone());
    let (status, body) = app.call("post", sendgrid, request).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_signature"), "{body}");
    let form = "MessageSid=SM123&MessageStatus=delivered";
    let request = app.request("post", &twilio_url).header("x-twilio-signature", "AAAA").body(form);
    let (status, body) = app.call("post", twilio, request).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_signature"), "{body}");
    let stranger = format!("/v1/callbacks/sendgrid/{}", WorkspaceId::generate().as_str());
    let (status, body) = app.call("post", sendgrid, app.request("post", &stranger).body(events)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "route_not_found"));

    // Delivery: none yet, the documented example is accepted, then a loopback webhook (building
    // providers does not connect) with in-app, tracking and a Twilio token; secrets masked.
    let delivery = "/v1/settings/delivery";
    let (status, none) = app.call("get", delivery, get(delivery)).await;
    assert_eq!((status, none), (StatusCode::OK, json!({})));
    let (status, stored) =
        app.call("put", delivery, send("put", delivery, app.example("put", delivery).to_string())).await;
    assert_eq!(
        (status, &stored["channels"]["email"]["providers"][0]["password"]),
        (StatusCode::OK, &json!("********"))
    );
    let base_url = "https://whisperer.acme.example";
    let setting = json!({
        "channels": {
            "webhook": {"providers": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "0123456789abcdef"}],
                        "rate_limit": {"per_second": 5}},
            "in_app": {"providers": [{"type": "in_app"}]},
        },
        "retry": {"max_attempts": 3, "base_ms": 1000, "max_ms": 60_000},
        "breaker": {"failures": 3, "cool_down_ms": 10_000},
        "tracking": {"base_url": base_url},
        "callbacks": {"twilio_auth_token": "twilio-token"},
    });
    let (status, stored) = app.call("put", delivery, send("put", delivery, setting.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["channels"]["webhook"]["providers"][0]["secret"], "********");
    assert_eq!(stored["callbacks"]["twilio_auth_token"], "********");
    let (status, got) = app.call("get", delivery, get(delivery)).await;
    assert_eq!((status, got), (StatusCode::OK, stored));
    let mut short = setting.clone();
    short["channels"]["webhook"]["providers"][0]["secret"] = json!("short");
    let (status, body) = app.call("put", delivery, send("put", delivery, short.to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_setting"));
    assert!(body["message"].as_str().unwrap().contains("channels.webhook.providers[0].secret"), "{body}");

    // Compliance rules: defaults, the documented example, a pattern that does not compile.
    let compliance = "/v1/settings/compliance";
    let (status, rules) = app.call("get", compliance, get(compliance)).await;
    assert_eq!((status, rules["max_length"]["sms_segments"].as_u64()), (StatusCode::OK, Some(3)));
    let (status, rules) = app
        .call("put", compliance, send("put", compliance, app.example("put", compliance).to_string()))
        .await;
    assert_eq!((status, rules["max_length"]["sms_segments"].as_u64()), (StatusCode::OK, Some(2)));
    assert_eq!(
        rules["max_length"]["email_subject"].as_u64(),
        Some(200),
        "missing limits keep their defaults"
    );
    assert_eq!(app.call("get", compliance, get(compliance)).await.1, rules);
    let (status, body) = app
        .call("put", compliance, send("put", compliance, json!({"banned_patterns": ["(x"]}).to_string()))
        .await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_setting"));
    let (status, body) =
        app.call("put", compliance, send("put", compliance, json!({"banned": []}).to_string())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_setting"));

    // Previews: in the user's locale, in another, blocked by the gate, and refusals.
    let preview = "/v1/templates/{templateId}/preview";
    let post_preview =
        |id: &str, body: Value| send("post", &format!("/v1/templates/{id}/preview"), body.to_string());
    let (status, shown) = app.call("post", preview, post_preview("win-back", json!({"userId": "ada"}))).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(
        (shown["locale"].as_str(), shown["subject"].as_str()),
        (Some("de"), Some("Wir vermissen dich, Ada"))
    );
    assert_eq!(shown["blocked"], json!(!shown["violations"].as_array().unwrap().is_empty()));
    assert!(shown["body"].as_str().unwrap().contains(&format!("{base_url}/t/u/")), "{shown}");
    assert_eq!(shown["headers"][1]["value"], "List-Unsubscribe=One-Click", "{shown}");
    let (status, shown) =
        app.call("post", preview, post_preview("win-back", app.example("post", preview))).await;
    assert_eq!((status, shown["locale"].as_str()), (StatusCode::OK, Some("de")));
    let (_, shown) =
        app.call("post", preview, post_preview("win-back", json!({"userId": "ada", "locale": "en"}))).await;
    assert_eq!(shown["subject"].as_str(), Some("Come back, Ada"), "{shown}");
    let promo = json!({"locales": {"en": {"subject": "Guaranteed savings", "body": "Guaranteed. {{ unsubscribe_url }}"}}});
    assert_eq!(
        app.call("put", template, send("put", "/v1/templates/promo", promo.to_string())).await.0,
        StatusCode::OK
    );
    let (status, shown) =
        app.call("post", preview, post_preview("promo", json!({"userId": "ada", "channel": "in_app"}))).await;
    assert_eq!((status, shown["blocked"].as_bool()), (StatusCode::OK, Some(true)), "{shown}");
    assert_eq!(shown["violations"][0]["rule"], "banned_word");
    assert_eq!(shown["recipient"], json!({"type": "person"}));
    let strict =
        json!({"kind": "transactional", "locales": {"en": {"body": "Your plan: {{ traits.plan }}"}}});
    assert_eq!(
        app.call("put", template, send("put", "/v1/templates/plan", strict.to_string())).await.0,
        StatusCode::OK
    );
    let (status, body) = app.call("post", preview, post_preview("plan", json!({"userId": "ada"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "render_failed"), "{body}");
    for (id, body, status, code) in [
        ("win-back", json!({"userId": "nobody"}), StatusCode::NOT_FOUND, "user_not_found"),
        ("nope", json!({"userId": "ada"}), StatusCode::NOT_FOUND, "template_not_found"),
        (
            "win-back",
            json!({"userId": "ada", "channel": "fax"}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        ),
        ("win-back", json!({"user": "ada"}), StatusCode::BAD_REQUEST, "invalid_parameter"),
    ] {
        let (got, answer) = app.call("post", preview, post_preview(id, body)).await;
        assert_eq!((got, error_code(&answer)), (status, code), "{answer}");
    }
    let (status, body) =
        app.call("post", preview, send("post", "/v1/templates/win-back/preview", "{".into())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "malformed_json"));

    // The outbox: empty, unknown messages, then a dead letter and a sent in-app message.
    let messages = "/v1/messages";
    let message = "/v1/messages/{messageId}";
    let redrive = "/v1/messages/{messageId}/redrive";
    let (status, page) = app.call("get", messages, get(messages)).await;
    assert_eq!((status, page), (StatusCode::OK, json!({"messages": [], "nextCursor": null})));
    let (status, body) = app.call("get", message, get("/v1/messages/msg_nope")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "message_not_found"));
    let (status, body) =
        app.call("post", redrive, send("post", "/v1/messages/msg_nope/redrive", String::new())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "message_not_found"));
    let (status, body) = app.call("get", messages, get("/v1/messages?status=lost")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app.call("get", messages, get("/v1/messages?cursor=zzz")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_cursor"));

    let inbox = "/v1/inbox";
    let (status, token) = app
        .call(
            "post",
            "/v1/inbox/token",
            send("post", "/v1/inbox/token", app.example("post", "/v1/inbox/token").to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = token["token"].as_str().unwrap().to_owned();
    let by_token = |token: &str| app.request("get", &format!("/v1/inbox?token={token}"));
    let (status, empty) = app.call("get", inbox, by_token(&token)).await;
    assert_eq!((status, empty), (StatusCode::OK, json!({"messages": []})));

    let person = app.store.find_person(&ws.id, IdKind::User, "ada").await.unwrap().expect("ada").id;
    let now = Millis::now();
    let record = |id: &str, status: MessageStatus, error: Option<Value>| {
        MessageRecord {
        id: id.into(),
        person,
        channel: "in_app".into(),
        decision_id: Some(format!("dec_{id}")),
        campaign: Some("welcome".into()),
        status,
        attempts: 1,
        due_at: now,
        lease_until: None,
        provider: Some("in_app".into()),
        provider_message_id: Some(format!("SM_{id}")),
        body: json!({"message": {"id": id, "user_id": "ada", "subject": "Welcome", "text": "Glad you are here."}}).to_string(),
        error: error.map(|e| e.to_string()),
        created_at: now,
        updated_at: now,
        seen_at: None,
    }
    };
    let unknown = json!({"code": "outcome_unknown", "message": "the sender stopped mid-send"});
    let outbox = [
        record("msg_dead", MessageStatus::Dead, Some(unknown)),
        record("msg_sent", MessageStatus::Sent, None),
    ];
    assert_eq!(app.store.enqueue_messages(&ws.id, &outbox).await.unwrap(), 2);
    let (status, page) = app.call("get", messages, get("/v1/messages?limit=1")).await;
    assert_eq!((status, page["messages"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    let (_, rest) = app.call("get", messages, get(&format!("/v1/messages?limit=1&cursor={cursor}"))).await;
    assert_eq!(rest["messages"].as_array().map(Vec::len), Some(1));
    let (status, dead) = app.call("get", messages, get("/v1/messages?status=dead&userId=ada")).await;
    assert_eq!((status, dead["messages"][0]["id"].as_str()), (StatusCode::OK, Some("msg_dead")));
    let (status, one) = app.call("get", message, get("/v1/messages/msg_dead")).await;
    assert_eq!(
        (status, one["error"]["code"].as_str(), one["userId"].as_str()),
        (StatusCode::OK, Some("outcome_unknown"), Some("ada"))
    );
    let (status, queued) =
        app.call("post", redrive, send("post", "/v1/messages/msg_dead/redrive", String::new())).await;
    assert_eq!(
        (status, queued["status"].as_str(), queued["attempts"].as_i64()),
        (StatusCode::OK, Some("queued"), Some(0))
    );
    let (status, body) =
        app.call("post", redrive, send("post", "/v1/messages/msg_dead/redrive", String::new())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "not_redrivable"));
    let (status, body) =
        app.call("post", redrive, send("post", "/v1/messages/msg_sent/redrive", String::new())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "not_redrivable"));

    // The inbox, by token and by key; refusals.
    let (status, listed) = app.call("get", inbox, by_token(&token)).await;
    assert_eq!(
        (status, listed["messages"][0]["id"].as_str()),
        (StatusCode::OK, Some("msg_sent")),
        "{listed}"
    );
    let (status, listed) = app.call("get", inbox, get("/v1/inbox?userId=ada")).await;
    assert_eq!((status, listed["messages"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    let (status, body) = app.call("get", inbox, by_token("x.y")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "invalid_link"));
    let (status, body) = app.call("get", inbox, get(inbox)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app.call("get", inbox, app.request("get", "/v1/inbox?userId=ada")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "missing_key"));
    let (status, body) =
        app.call("post", "/v1/inbox/token", send("post", "/v1/inbox/token", "{}".into())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));

    // Seen messages leave the inbox (and count as opened); `all=true` still lists them.
    let seen = "/v1/inbox/seen";
    let mark =
        |body: Value| app.request("post", &format!("/v1/inbox/seen?token={token}")).body(body.to_string());
    let (status, body) = app.call("post", seen, mark(json!({"ids": ["msg_sent", "msg_unknown"]}))).await;
    assert_eq!((status, &body["seen"]), (StatusCode::OK, &json!(["msg_sent"])), "{body}");
    let (status, body) = app.call("post", seen, mark(json!({"ids": ["msg_sent"]}))).await;
    assert_eq!((status, &body["seen"]), (StatusCode::OK, &json!([])), "seen once");
    let (status, listed) = app.call("get", inbox, by_token(&token)).await;
    assert_eq!((status, listed["messages"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    let (status, listed) = app.call("get", inbox, get("/v1/inbox?userId=ada&all=true")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed["messages"][0]["seenAt"].is_string(), "{listed}");
    let (status, body) = app.call("post", seen, mark(json!({"ids": []}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    let (status, body) = app.call("get", inbox, get("/v1/inbox?userId=ada&all=yes")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));

    // The live stream answers with an event stream (read no further: it stays open).
    let stream = "/v1/inbox/stream";
    let response = app.request("get", &format!("/v1/inbox/stream?token={token}")).send().await.unwrap();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!((response.status(), content_type.as_str()), (StatusCode::OK, "text/event-stream"));
    assert!(response.headers().contains_key("x-request-id"));
    assert!(app.doc["paths"][stream]["get"]["responses"]["200"]["content"][&content_type].is_object());
    drop(response);
    app.seen.lock().unwrap().insert(("get".into(), stream.into(), 200));
    let (status, body) = app.call("get", stream, app.request("get", "/v1/inbox/stream?token=x.y")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "invalid_link"));

    // Tracking links: forged ones, then links signed as the sender signs them.
    let (status, body) = app.call("get", "/t/c/{token}", app.request("get", "/t/c/x.y")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "invalid_link"));
    let (status, _) = app.call("get", "/t/o/{token}", app.request("get", "/t/o/x.y")).await;
    assert_eq!(status, StatusCode::OK, "a forged pixel is still a pixel");
    let (status, body) = app.call("get", "/t/u/{token}", app.request("get", "/t/u/x.y")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "invalid_link"));
    let (status, body) = app.call("post", "/t/u/{token}", app.request("post", "/t/u/x.y")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "invalid_link"));
    let key = whisperer_deliver::sender::tracking_key(app.store.as_ref(), &ws.id).await.unwrap();
    let claims = whisperer_deliver::tracking::Claims {
        w: ws.id.as_str().into(),
        m: "msg_sent".into(),
        u: Some("ada".into()),
        c: "in_app".into(),
        d: Some("dec_msg_sent".into()),
        k: Some("welcome".into()),
        l: None,
    };
    let link = key.sign(&claims);
    let target = "https://shop.example.com/spring?utm=whisperer";
    let click = key.sign(&whisperer_deliver::tracking::Claims { l: Some(target.into()), ..claims });
    let response = app.request("get", &format!("/t/c/{click}")).send().await.unwrap();
    assert_eq!(response.headers()["location"], target);
    let (status, _) = app.call("get", "/t/c/{token}", app.request("get", &format!("/t/c/{click}"))).await;
    assert_eq!(status, StatusCode::FOUND);
    let (status, body) = app.call("get", "/t/c/{token}", app.request("get", &format!("/t/c/{link}"))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "invalid_link"),
        "a link without a target"
    );
    let (status, _) = app.call("get", "/t/o/{token}", app.request("get", &format!("/t/o/{link}"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, page) = app.call("get", "/t/u/{token}", app.request("get", &format!("/t/u/{link}"))).await;
    assert!(status == StatusCode::OK && page.as_str().unwrap().contains("method=\"post\""), "{page}");
    let one_click = app.request("post", &format!("/t/u/{link}")).body("List-Unsubscribe=One-Click");
    let (status, page) = app.call("post", "/t/u/{token}", one_click).await;
    assert!(status == StatusCode::OK && page.as_str().unwrap().contains("unsubscribed"), "{page}");

    // A Twilio status callback signed with the workspace's token, naming the sent message.
    let params = vec![
        ("MessageSid".to_owned(), "SM_msg_sent".to_owned()),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    let signature =
        whisperer_channels::sms::signature("twilio-token", &format!("{base_url}{twilio_url}"), &params);
    let request = app
        .request("post", &twilio_url)
        .header("x-twilio-signature", signature)
        .body("MessageSid=SM_msg_sent&MessageStatus=delivered");
    let (status, answer) = app.call("post", twilio, request).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"received": 1, "matched": 1})));
    let request = app
        .request("post", &twilio_url)
        .header("x-twilio-signature", "AAAA")
        .body("MessageSid=SM_msg_sent&MessageStatus=read");
    let (status, body) = app.call("post", twilio, request).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_signature"));
}

/// An OpenAI-format server on loopback whose every answer is two variants, one of which the
/// workspace's gate refuses.
async fn fake_openai() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            let variants = json!({"variants": [
                {"subject": "Your projects miss you", "body": "Pick up where you left off. {{ unsubscribe_url }}"},
                {"subject": "Free money", "body": "Free money if you come back today. {{ unsubscribe_url }}"},
            ]});
            axum::Json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 1_741_000_000, "model": "gpt-test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": variants.to_string()},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 30, "total_tokens": 70},
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn llm_settings_and_variants(app: &TestApp, ws: &Keys) {
    let path = "/v1/settings/llm";
    let get = || app.request("get", path).bearer_auth(&ws.secret);
    let put = |body: Value| app.request("put", path).bearer_auth(&ws.secret).body(body.to_string());
    let (status, none) = app.call("get", path, get()).await;
    assert_eq!((status, &none["llm"]), (StatusCode::OK, &Value::Null));
    let variants = "/v1/templates/{templateId}/variants";
    let ask = |n: u64| {
        let brief = json!({"goal": "bring users back", "audience": "free plan teams", "tone": "warm",
                           "channel": "in_app", "locale": "en"});
        app.request("post", "/v1/templates/comeback/variants")
            .bearer_auth(&ws.secret)
            .body(json!({"brief": brief, "n": n}).to_string())
    };
    let (status, body) = app.call("post", variants, ask(2)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_setting"), "no llm yet");

    let (status, body) =
        app.call("put", path, put(json!({"provider": "openai", "openai": {"model": ""}}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_setting"));
    assert!(body["message"].as_str().unwrap().contains("model"), "{body}");
    let url = fake_openai().await;
    let config = json!({"provider": "openai", "openai": {"model": "gpt-test", "base_url": url, "api_key": "sk-local"}});
    let (status, stored) = app.call("put", path, put(config)).await;
    assert_eq!(
        (status, &stored["llm"]["openai"]["api_key"]),
        (StatusCode::OK, &json!("********")),
        "{stored}"
    );
    let (status, read) = app.call("get", path, get()).await;
    assert_eq!((status, &read["llm"]["openai"]["model"]), (StatusCode::OK, &json!("gpt-test")));

    // Two variants: the one the gate passes is saved, the one with a banned word is not.
    let rules = json!({"banned_words": ["free money"], "postal_address": null});
    let request =
        app.request("put", "/v1/settings/compliance").bearer_auth(&ws.secret).body(rules.to_string());
    assert_eq!(app.call("put", "/v1/settings/compliance", request).await.0, StatusCode::OK);
    let (status, body) = app.call("post", variants, ask(2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = body["variants"].as_array().unwrap();
    assert_eq!((got[0]["saved"].as_bool(), got[1]["saved"].as_bool()), (Some(true), Some(false)), "{body}");
    assert_eq!(got[1]["violations"][0]["rule"], "banned_word");
    let request = app.request("get", "/v1/templates/comeback-1").bearer_auth(&ws.secret);
    let (status, saved) = app.call("get", "/v1/templates/{templateId}", request).await;
    assert_eq!(
        (status, &saved["definition"]["locales"]["en"]["subject"]),
        (StatusCode::OK, &json!("Your projects miss you"))
    );
    // The model answered two variants where three were asked: an unusable answer.
    let (status, body) = app.call("post", variants, ask(3)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_GATEWAY, "llm_failed"), "{body}");
    let (status, body) = app.call("post", variants, ask(0)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "invalid_parameter"));
}
