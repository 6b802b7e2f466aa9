//! Loopback HTTP servers that speak the OpenAI Chat Completions and Anthropic Messages wire
//! formats: they check the path, the auth headers and the JSON body the way the real APIs do,
//! answer with the documented success and error bodies, and follow a script of failures.
// Each test file uses some of these helpers; the checks return the API's error response as
// their error, which is big but built only on the failure path.
#![allow(dead_code, clippy::result_large_err)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use whisperer_llm::{AnthropicConfig, OpenAiConfig};

pub const OPENAI_KEY: &str = "sk-test-openai";
pub const ANTHROPIC_KEY: &str = "sk-ant-test";
pub const OPENAI_MODEL: &str = "gpt-4o-mini";
pub const ANTHROPIC_MODEL: &str = "claude-3-5-haiku-latest";

/// What the server does with the next valid request.
#[derive(Clone, Debug)]
pub enum Step {
    /// Answer with this text (each choice the same, for OpenAI `n`).
    Reply(String),
    /// Answer with several text blocks (Anthropic) that together make the answer.
    Blocks(Vec<String>),
    /// Answer with the API's error body: status, error type, code (OpenAI), message, and
    /// extra headers.
    Fail {
        status: u16,
        error_type: &'static str,
        code: Option<&'static str>,
        message: &'static str,
        headers: Vec<(&'static str, &'static str)>,
    },
    /// Never answer in time.
    Hang,
}

impl Step {
    pub fn fail(status: u16, error_type: &'static str, message: &'static str) -> Step {
        Step::Fail { status, error_type, code: None, message, headers: Vec::new() }
    }
}

/// One request as the server saw it, and the usage it reported for it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub status: u16,
    pub usage: Option<(u64, u64)>,
}

type Responder = Box<dyn Fn(&Value) -> String + Send + Sync>;

struct Shared {
    script: Mutex<VecDeque<Step>>,
    seen: Mutex<Vec<Seen>>,
    responder: Mutex<Responder>,
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    OpenAi,
    Anthropic,
}

/// A running fake API on 127.0.0.1.
pub struct Server {
    pub base_url: String,
    shared: Arc<Shared>,
}

impl Server {
    /// Chat Completions under `{base_url}` = `http://127.0.0.1:port/v1`.
    pub async fn openai() -> Server {
        let (addr, shared) = start(Api::OpenAi).await;
        Server { base_url: format!("http://{addr}/v1"), shared }
    }

    /// Messages under `{base_url}` = `http://127.0.0.1:port`.
    pub async fn anthropic() -> Server {
        let (addr, shared) = start(Api::Anthropic).await;
        Server { base_url: format!("http://{addr}"), shared }
    }

    pub fn push(&self, step: Step) {
        self.shared.script.lock().unwrap().push_back(step);
    }

    /// How valid requests are answered once the script is used up.
    pub fn respond_with(&self, f: impl Fn(&Value) -> String + Send + Sync + 'static) {
        *self.shared.responder.lock().unwrap() = Box::new(f);
    }

    /// Every request that reached the server, valid or not.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.seen.lock().unwrap().len()
    }

    pub fn openai_config(&self) -> OpenAiConfig {
        let mut c = OpenAiConfig::new(OPENAI_MODEL);
        c.base_url = self.base_url.clone();
        c.api_key = Some(OPENAI_KEY.into());
        c.timeout_ms = 5_000;
        c.max_retries = 2;
        c.backoff_base_ms = 5;
        c.backoff_max_ms = 2_000;
        c.usd_per_1k_input_tokens = 0.15;
        c.usd_per_1k_output_tokens = 0.6;
        c
    }

    pub fn anthropic_config(&self) -> AnthropicConfig {
        let mut c = AnthropicConfig::new(ANTHROPIC_MODEL);
        c.base_url = self.base_url.clone();
        c.api_key = Some(ANTHROPIC_KEY.into());
        c.timeout_ms = 5_000;
        c.max_retries = 2;
        c.backoff_base_ms = 5;
        c.backoff_max_ms = 2_000;
        c.usd_per_1k_input_tokens = 0.8;
        c.usd_per_1k_output_tokens = 4.0;
        c
    }
}

async fn start(api: Api) -> (std::net::SocketAddr, Arc<Shared>) {
    let shared = Arc::new(Shared {
        script: Mutex::new(VecDeque::new()),
        seen: Mutex::new(Vec::new()),
        responder: Mutex::new(Box::new(|_| "ok".to_string())),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = match api {
        Api::OpenAi => Router::new().fallback(openai).with_state(shared.clone()),
        Api::Anthropic => Router::new().fallback(anthropic).with_state(shared.clone()),
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, shared)
}

/// Rough tokens of a text, deterministic so tests can compare what was reported.
pub fn tokens_of(text: &str) -> u64 {
    text.chars().count() as u64 / 4 + 1
}

fn respond(status: u16, headers: &[(&str, &str)], body: Value) -> Response {
    let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    response
}

fn record(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> usize {
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut seen = shared.seen.lock().unwrap();
    seen.push(Seen {
        method: method.clone(),
        path: uri.path().to_string(),
        headers: headers.clone(),
        body,
        status: 0,
        usage: None,
    });
    seen.len() - 1
}

fn finish(shared: &Shared, index: usize, status: u16, usage: Option<(u64, u64)>) {
    let mut seen = shared.seen.lock().unwrap();
    seen[index].status = status;
    seen[index].usage = usage;
}

fn next_step(shared: &Shared, body: &Value) -> Step {
    match shared.script.lock().unwrap().pop_front() {
        Some(step) => step,
        None => Step::Reply((shared.responder.lock().unwrap())(body)),
    }
}

// ---- OpenAI Chat Completions ----

fn openai_error(
    status: u16,
    message: &str,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    respond(
        status,
        &[("x-request-id", "req_openai_test")],
        json!({"error": {"message": message, "type": error_type, "param": param, "code": code}}),
    )
}

fn openai_check(headers: &HeaderMap, body: &Value) -> Result<(), Response> {
    let bad = |message: String, param: Option<&str>| {
        Err(openai_error(400, &message, "invalid_request_error", param, None))
    };
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None => {
            return Err(openai_error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
                None,
            ));
        }
        Some(value) if value != format!("Bearer {OPENAI_KEY}") => {
            let shown = value.trim_start_matches("Bearer ");
            return Err(openai_error(
                401,
                &format!(
                    "Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com/account/api-keys."
                ),
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ));
        }
        Some(_) => {}
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return bad("Content-Type must be application/json".into(), None);
    }
    let Some(object) = body.as_object() else {
        return bad("We could not parse the JSON body of your request.".into(), None);
    };
    for key in object.keys() {
        if !["model", "messages", "max_tokens", "max_completion_tokens", "temperature", "n", "stream"]
            .contains(&key.as_str())
        {
            return bad(format!("Unrecognized request argument supplied: {key}"), None);
        }
    }
    let model = body["model"].as_str().unwrap_or_default();
    if model.is_empty() {
        return bad("you must provide a model parameter".into(), Some("model"));
    }
    if model != OPENAI_MODEL {
        return Err(openai_error(
            404,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ));
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return bad("[] is too short - 'messages'".into(), Some("messages"));
    };
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if !["system", "developer", "user", "assistant"].contains(&role) {
            return bad(
                format!("Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user'."),
                Some(&format!("messages[{i}].role")),
            );
        }
        if !message["content"].is_string() {
            return bad(
                format!("Invalid type for 'messages[{i}].content'"),
                Some(&format!("messages[{i}].content")),
            );
        }
    }
    if object.contains_key("max_tokens") && object.contains_key("max_completion_tokens") {
        return bad("max_tokens and max_completion_tokens cannot both be set".into(), Some("max_tokens"));
    }
    for key in ["max_tokens", "max_completion_tokens"] {
        if let Some(v) = object.get(key)
            && v.as_u64().is_none_or(|n| n == 0)
        {
            return bad(format!("Invalid '{key}': expected a positive integer"), Some(key));
        }
    }
    if let Some(t) = object.get("temperature")
        && t.as_f64().is_none_or(|t| !(0.0..=2.0).contains(&t))
    {
        return bad(
            format!(
                "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got {t} instead."
            ),
            Some("temperature"),
        );
    }
    if let Some(n) = object.get("n")
        && n.as_u64().is_none_or(|n| !(1..=128).contains(&n))
    {
        return bad("Invalid 'n'".into(), Some("n"));
    }
    Ok(())
}

async fn openai(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = record(&shared, &method, &uri, &headers, &body);
    let reply = |status: u16, usage: Option<(u64, u64)>, response: Response| {
        finish(&shared, index, status, usage);
        response
    };
    if method != Method::POST || uri.path() != "/v1/chat/completions" {
        let message = format!("Invalid URL ({method} {})", uri.path());
        return reply(404, None, openai_error(404, &message, "invalid_request_error", None, None));
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(response) = openai_check(&headers, &parsed) {
        let status = response.status().as_u16();
        return reply(status, None, response);
    }
    let text = match next_step(&shared, &parsed) {
        Step::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return reply(200, None, respond(200, &[], json!({})));
        }
        Step::Fail { status, error_type, code, message, headers } => {
            let mut response = openai_error(status, message, error_type, None, code);
            for (name, value) in headers {
                response.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_static(value));
            }
            return reply(status, None, response);
        }
        Step::Reply(text) => text,
        Step::Blocks(blocks) => blocks.concat(),
    };
    let n = parsed["n"].as_u64().unwrap_or(1);
    let prompt: String =
        parsed["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    let prompt_tokens = tokens_of(&prompt);
    let completion_tokens = tokens_of(&text) * n;
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop",
            })
        })
        .collect();
    let body = json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_741_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_test",
    });
    reply(
        200,
        Some((prompt_tokens, completion_tokens)),
        respond(200, &[("x-request-id", "req_openai_test")], body),
    )
}

// ---- Anthropic Messages ----

fn anthropic_error(status: u16, error_type: &str, message: &str) -> Response {
    respond(
        status,
        &[("request-id", "req_anthropic_test")],
        json!({"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_anthropic_test"}),
    )
}

fn anthropic_check(headers: &HeaderMap, body: &Value) -> Result<(), Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("x-api-key") != Some(ANTHROPIC_KEY) {
        return Err(anthropic_error(401, "authentication_error", "invalid x-api-key"));
    }
    if header("authorization").is_some() {
        return Err(anthropic_error(
            400,
            "invalid_request_error",
            "authorization header is not used with x-api-key",
        ));
    }
    match header("anthropic-version") {
        None => {
            return Err(anthropic_error(
                400,
                "invalid_request_error",
                "anthropic-version: header is required",
            ));
        }
        Some("2023-06-01") => {}
        Some(other) => {
            return Err(anthropic_error(
                400,
                "invalid_request_error",
                &format!("anthropic-version: invalid version {other}"),
            ));
        }
    }
    if header("content-type") != Some("application/json") {
        return Err(anthropic_error(400, "invalid_request_error", "content-type must be application/json"));
    }
    let bad = |message: String| Err(anthropic_error(400, "invalid_request_error", &message));
    let Some(object) = body.as_object() else {
        return bad("There was an issue with your request body".into());
    };
    for key in object.keys() {
        if ![
            "model",
            "max_tokens",
            "messages",
            "system",
            "temperature",
            "top_p",
            "top_k",
            "stop_sequences",
            "metadata",
            "stream",
        ]
        .contains(&key.as_str())
        {
            return bad(format!("{key}: Extra inputs are not permitted"));
        }
    }
    let model = body["model"].as_str().unwrap_or_default();
    if model.is_empty() {
        return bad("model: Field required".into());
    }
    if model != ANTHROPIC_MODEL {
        return Err(anthropic_error(404, "not_found_error", &format!("model: {model}")));
    }
    match object.get("max_tokens").map(|v| v.as_u64()) {
        None => return bad("max_tokens: Field required".into()),
        Some(None | Some(0)) => return bad("max_tokens: Input should be greater than or equal to 1".into()),
        Some(Some(_)) => {}
    }
    if object.get("system").is_some_and(|s| !s.is_string() && !s.is_array()) {
        return bad("system: Input should be a valid string".into());
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        return bad("messages: at least one message is required".into());
    };
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if !["user", "assistant"].contains(&role) {
            return bad(format!("messages.{i}.role: Input should be 'user' or 'assistant'"));
        }
        if !message["content"].is_string() && !message["content"].is_array() {
            return bad(format!("messages.{i}.content: Input should be a valid list"));
        }
    }
    if messages[0]["role"] != "user" {
        return bad("messages: first message must use the \"user\" role".into());
    }
    if let Some(t) = object.get("temperature")
        && t.as_f64().is_none_or(|t| !(0.0..=1.0).contains(&t))
    {
        return bad("temperature: Input should be less than or equal to 1".into());
    }
    Ok(())
}

async fn anthropic(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let index = record(&shared, &method, &uri, &headers, &body);
    let reply = |status: u16, usage: Option<(u64, u64)>, response: Response| {
        finish(&shared, index, status, usage);
        response
    };
    if method != Method::POST || uri.path() != "/v1/messages" {
        return reply(404, None, anthropic_error(404, "not_found_error", "Not found"));
    }
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(response) = anthropic_check(&headers, &parsed) {
        let status = response.status().as_u16();
        return reply(status, None, response);
    }
    let blocks = match next_step(&shared, &parsed) {
        Step::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return reply(200, None, respond(200, &[], json!({})));
        }
        Step::Fail { status, error_type, message, headers, .. } => {
            let mut response = anthropic_error(status, error_type, message);
            for (name, value) in headers {
                response.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_static(value));
            }
            return reply(status, None, response);
        }
        Step::Reply(text) => vec![text],
        Step::Blocks(blocks) => blocks,
    };
    let mut prompt = parsed["system"].as_str().unwrap_or_default().to_string();
    for message in parsed["messages"].as_array().unwrap() {
        prompt.push_str(message["content"].as_str().unwrap_or_default());
    }
    let input_tokens = tokens_of(&prompt);
    let output_tokens = tokens_of(&blocks.concat());
    let content: Vec<Value> = blocks.iter().map(|b| json!({"type": "text", "text": b})).collect();
    let body = json!({
        "id": "msg_01test",
        "type": "message",
        "role": "assistant",
        "model": parsed["model"],
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    });
    reply(
        200,
        Some((input_tokens, output_tokens)),
        respond(200, &[("request-id", "req_anthropic_test")], body),
    )
}

// ---- generators on these servers ----

use chrono::{DateTime, TimeZone, Utc};
use whisperer_llm::{BudgetConfig, CacheConfig, Generator, LlmConfig, ManualClock, ProviderKind};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

pub fn no_env(_: &str) -> Option<String> {
    None
}

pub fn openai_llm(server: &Server) -> LlmConfig {
    LlmConfig {
        provider: ProviderKind::Openai,
        openai: Some(server.openai_config()),
        anthropic: None,
        budget: BudgetConfig::default(),
        cache: CacheConfig::default(),
        max_output_tokens: 512,
        temperature: 0.7,
    }
}

pub fn anthropic_llm(server: &Server) -> LlmConfig {
    LlmConfig {
        provider: ProviderKind::Anthropic,
        openai: None,
        anthropic: Some(server.anthropic_config()),
        budget: BudgetConfig::default(),
        cache: CacheConfig::default(),
        max_output_tokens: 512,
        temperature: 0.7,
    }
}

/// The generator of `config` on a manual clock at [`t0`].
pub fn build(config: &LlmConfig) -> (Generator, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let generator = config.build_with(&no_env, clock.clone()).expect("config builds");
    (generator, clock)
}
