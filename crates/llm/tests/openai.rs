//! The OpenAI provider against a loopback server speaking Chat Completions: the request it
//! sends, usage accounting, and which failures are retried.

mod common;

use std::time::{Duration, Instant};

use common::{OPENAI_KEY, OPENAI_MODEL, Server, Step, build, openai_llm};
use whisperer_core::WorkspaceId;
use whisperer_llm::{CompletionRequest, FailureKind, LlmError, MaxTokensField, Spend};

fn request() -> CompletionRequest {
    CompletionRequest {
        system: "You write short greetings.".into(),
        user: "Greet Ada.".into(),
        max_tokens: 64,
        temperature: 0.3,
        n: 2,
    }
}

fn provider_error(e: &LlmError) -> (&whisperer_llm::ProviderError, u32) {
    match e {
        LlmError::Provider { error, attempts, .. } => (error, *attempts),
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn success_sends_the_documented_request_and_accounts_usage() {
    let server = Server::openai().await;
    server.push(Step::Reply("Hello, Ada!".into()));
    let (generator, _clock) = build(&openai_llm(&server));
    let ws = WorkspaceId::generate();

    let done = generator.complete(&ws, &request()).await.expect("completes");

    assert_eq!(done.output.texts, vec!["Hello, Ada!", "Hello, Ada!"], "one text per choice");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let sent = &seen[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], format!("Bearer {OPENAI_KEY}").as_str());
    assert_eq!(sent.body["model"], OPENAI_MODEL);
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert_eq!(sent.body["messages"][0]["content"], "You write short greetings.");
    assert_eq!(sent.body["messages"][1]["role"], "user");
    assert_eq!(sent.body["messages"][1]["content"], "Greet Ada.");
    assert_eq!(sent.body["max_completion_tokens"], 64);
    assert!(sent.body.get("max_tokens").is_none());
    assert_eq!(sent.body["n"], 2);
    assert!((sent.body["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);

    let (prompt_tokens, completion_tokens) = sent.usage.expect("the server reported usage");
    let r = &done.record;
    assert_eq!((r.provider.as_str(), r.model.as_str()), ("openai", "gpt-4o-mini-2024-07-18"));
    assert_eq!((r.input_tokens, r.output_tokens), (prompt_tokens, completion_tokens));
    // $0.15 and $0.60 per 1k tokens: 150 and 600 micro-dollars per token, rounded up.
    assert_eq!(r.cost_micros, prompt_tokens * 150 + completion_tokens * 600);
    assert_eq!((r.attempts, r.cache_hit), (1, false));
    assert_eq!(r.stop_reason.as_deref(), Some("stop"));
    assert_eq!(
        generator.spent_today(&ws),
        Spend { tokens: prompt_tokens + completion_tokens, cost_micros: r.cost_micros },
        "the budget is charged with the reported usage, not the estimate"
    );
}

#[tokio::test]
async fn the_older_max_tokens_field_can_be_chosen_for_compatible_servers() {
    let server = Server::openai().await;
    let mut config = openai_llm(&server);
    config.openai.as_mut().unwrap().max_tokens_field = MaxTokensField::MaxTokens;
    let (generator, _clock) = build(&config);
    generator.complete(&WorkspaceId::generate(), &request()).await.expect("completes");
    let body = &server.seen()[0].body;
    assert_eq!(body["max_tokens"], 64);
    assert!(body.get("max_completion_tokens").is_none());
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let server = Server::openai().await;
    server.push(Step::Fail {
        status: 429,
        error_type: "requests",
        code: Some("rate_limit_exceeded"),
        message: "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.",
        headers: vec![("retry-after", "1")],
    });
    let (generator, _clock) = build(&openai_llm(&server));

    let started = Instant::now();
    let done = generator.complete(&WorkspaceId::generate(), &request()).await.expect("the retry succeeds");

    assert_eq!(done.record.attempts, 2);
    assert_eq!(server.count(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "waited as asked, not the 5 ms backoff");
    assert!(done.record.latency_ms >= 1000);
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let server = Server::openai().await;
    for _ in 0..2 {
        server.push(Step::fail(
            500,
            "server_error",
            "The server had an error while processing your request.",
        ));
    }
    let (generator, _clock) = build(&openai_llm(&server));

    let done =
        generator.complete(&WorkspaceId::generate(), &request()).await.expect("third attempt succeeds");

    assert_eq!(done.record.attempts, 3);
    assert_eq!(server.seen().iter().map(|s| s.status).collect::<Vec<_>>(), vec![500, 500, 200]);
}

#[tokio::test]
async fn server_errors_past_max_retries_fail_with_their_kind() {
    let server = Server::openai().await;
    for _ in 0..5 {
        server.push(Step::fail(
            503,
            "server_error",
            "The engine is currently overloaded, please try again later.",
        ));
    }
    let mut config = openai_llm(&server);
    config.openai.as_mut().unwrap().max_retries = 1;
    let (generator, _clock) = build(&config);
    let ws = WorkspaceId::generate();

    let failed = generator.complete(&ws, &request()).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, error.status, attempts), (FailureKind::Server, Some(503), 2));
    assert_eq!(error.message, "The engine is currently overloaded, please try again later.");
    assert_eq!(error.request_id.as_deref(), Some("req_openai_test"));
    assert_eq!(failed.record.attempts, 2);
    assert_eq!(server.count(), 2);
    assert_eq!(generator.spent_today(&ws), Spend::default(), "a failed call charges nothing");
}

#[tokio::test]
async fn a_wrong_key_is_401_and_not_retried() {
    let server = Server::openai().await;
    let mut config = openai_llm(&server);
    config.openai.as_mut().unwrap().api_key = Some("sk-wrong".into());
    let (generator, _clock) = build(&config);

    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, error.status, attempts), (FailureKind::Auth, Some(401), 1));
    assert_eq!(error.error_type.as_deref(), Some("invalid_api_key"));
    assert!(error.message.starts_with("Incorrect API key provided: sk-wrong"), "{}", error.message);
    assert_eq!(server.count(), 1, "auth failures are not retried");
    assert!(
        failed.to_string().starts_with("openai failed after 1 attempt(s): auth (http 401, invalid_api_key)"),
        "{failed}"
    );
}

#[tokio::test]
async fn an_unknown_model_is_an_invalid_request_and_not_retried() {
    let server = Server::openai().await;
    let mut config = openai_llm(&server);
    config.openai.as_mut().unwrap().model = "gpt-nonexistent".into();
    let (generator, _clock) = build(&config);

    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, error.status, attempts), (FailureKind::InvalidRequest, Some(404), 1));
    assert_eq!(error.error_type.as_deref(), Some("model_not_found"));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_used_up_quota_is_not_retried() {
    let server = Server::openai().await;
    server.push(Step::Fail {
        status: 429,
        error_type: "insufficient_quota",
        code: Some("insufficient_quota"),
        message: "You exceeded your current quota, please check your plan and billing details.",
        headers: vec![],
    });
    let (generator, _clock) = build(&openai_llm(&server));

    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();

    assert_eq!(failed.error.failure_kind(), Some(FailureKind::QuotaExhausted));
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_hanging_server_hits_the_timeout_on_every_attempt() {
    let server = Server::openai().await;
    server.push(Step::Hang);
    server.push(Step::Hang);
    let mut config = openai_llm(&server);
    let openai = config.openai.as_mut().unwrap();
    openai.timeout_ms = 300;
    openai.max_retries = 1;
    let (generator, _clock) = build(&config);

    let started = Instant::now();
    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();
    let elapsed = started.elapsed();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, error.status, attempts), (FailureKind::Timeout, None, 2));
    assert_eq!(server.count(), 2);
    assert!(elapsed >= Duration::from_millis(600), "two full timeouts: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "and no longer: {elapsed:?}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_as_a_connection_error() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let server = Server::openai().await;
    let mut config = openai_llm(&server);
    config.openai.as_mut().unwrap().base_url = format!("http://127.0.0.1:{port}/v1");
    let (generator, _clock) = build(&config);

    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, attempts), (FailureKind::Connection, 3), "{error}");
}
