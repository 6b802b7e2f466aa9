//! The Anthropic provider against a loopback server speaking the Messages API: headers, body,
//! text blocks, usage, and which failures are retried (529 overloaded, 429 with retry-after)
//! or not (401, 400).

mod common;

use std::time::{Duration, Instant};

use common::{ANTHROPIC_KEY, ANTHROPIC_MODEL, Server, Step, anthropic_llm, build};
use whisperer_core::{Channel, WorkspaceId};
use whisperer_llm::{Brief, CompletionRequest, FailureKind, LlmError, ProviderError, Spend};

fn request() -> CompletionRequest {
    CompletionRequest {
        system: "You write short greetings.".into(),
        user: "Greet Grace.".into(),
        max_tokens: 128,
        temperature: 0.5,
        n: 1,
    }
}

fn provider_error(e: &LlmError) -> (&ProviderError, u32) {
    match e {
        LlmError::Provider { error, attempts, .. } => (error, *attempts),
        other => panic!("expected a provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn success_sends_the_documented_request_and_joins_text_blocks() {
    let server = Server::anthropic().await;
    server.push(Step::Blocks(vec!["Hello, ".into(), "Grace!".into()]));
    let (generator, _clock) = build(&anthropic_llm(&server));
    let ws = WorkspaceId::generate();

    let done = generator.complete(&ws, &request()).await.expect("completes");

    assert_eq!(done.output.texts, vec!["Hello, Grace!"]);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let sent = &seen[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.headers["x-api-key"], ANTHROPIC_KEY);
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert!(sent.headers.get("authorization").is_none());
    assert_eq!(sent.body["model"], ANTHROPIC_MODEL);
    assert_eq!(sent.body["max_tokens"], 128);
    assert_eq!(sent.body["system"], "You write short greetings.", "system is top-level, not a message");
    assert_eq!(sent.body["messages"], serde_json::json!([{"role": "user", "content": "Greet Grace."}]));
    assert!((sent.body["temperature"].as_f64().unwrap() - 0.5).abs() < 1e-6);

    let (input, output) = sent.usage.unwrap();
    let r = &done.record;
    assert_eq!((r.provider.as_str(), r.model.as_str()), ("anthropic", ANTHROPIC_MODEL));
    assert_eq!((r.input_tokens, r.output_tokens), (input, output));
    // $0.80 and $4.00 per 1k tokens.
    assert_eq!(r.cost_micros, input * 800 + output * 4000);
    assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(r.attempts, 1);
    assert_eq!(generator.spent_today(&ws), Spend { tokens: input + output, cost_micros: r.cost_micros });
}

#[tokio::test]
async fn overloaded_529_is_retried() {
    let server = Server::anthropic().await;
    server.push(Step::fail(529, "overloaded_error", "Overloaded"));
    let (generator, _clock) = build(&anthropic_llm(&server));

    let done = generator.complete(&WorkspaceId::generate(), &request()).await.expect("the retry succeeds");

    assert_eq!(done.record.attempts, 2);
    assert_eq!(server.seen().iter().map(|s| s.status).collect::<Vec<_>>(), vec![529, 200]);
}

#[tokio::test]
async fn overloaded_past_max_retries_says_overloaded() {
    let server = Server::anthropic().await;
    for _ in 0..3 {
        server.push(Step::fail(529, "overloaded_error", "Overloaded"));
    }
    let (generator, _clock) = build(&anthropic_llm(&server));

    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, error.status, attempts), (FailureKind::Overloaded, Some(529), 3));
    assert_eq!(error.error_type.as_deref(), Some("overloaded_error"));
    assert_eq!(error.request_id.as_deref(), Some("req_anthropic_test"));
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let server = Server::anthropic().await;
    server.push(Step::Fail {
        status: 429,
        error_type: "rate_limit_error",
        code: None,
        message: "Number of request tokens has exceeded your per-minute rate limit",
        headers: vec![("retry-after", "1")],
    });
    let (generator, _clock) = build(&anthropic_llm(&server));

    let started = Instant::now();
    let done = generator.complete(&WorkspaceId::generate(), &request()).await.expect("the retry succeeds");

    assert_eq!(done.record.attempts, 2);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_retry_after_longer_than_we_wait_ends_the_retries() {
    let server = Server::anthropic().await;
    server.push(Step::Fail {
        status: 429,
        error_type: "rate_limit_error",
        code: None,
        message: "rate limited",
        headers: vec![("retry-after", "60")],
    });
    let (generator, _clock) = build(&anthropic_llm(&server));

    let started = Instant::now();
    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, attempts), (FailureKind::RateLimited, 1));
    assert_eq!(error.retry_after, Some(Duration::from_secs(60)), "the caller learns when to come back");
    assert!(started.elapsed() < Duration::from_secs(5), "a message is not held for a minute");
}

#[tokio::test]
async fn a_wrong_key_is_401_and_not_retried() {
    let server = Server::anthropic().await;
    let mut config = anthropic_llm(&server);
    config.anthropic.as_mut().unwrap().api_key = Some("sk-ant-wrong".into());
    let (generator, _clock) = build(&config);

    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, error.status, attempts), (FailureKind::Auth, Some(401), 1));
    assert_eq!(error.error_type.as_deref(), Some("authentication_error"));
    assert_eq!(error.message, "invalid x-api-key");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn an_out_of_range_temperature_is_a_400_and_not_retried() {
    let server = Server::anthropic().await;
    let (generator, _clock) = build(&anthropic_llm(&server));
    let mut hot = request();
    hot.temperature = 1.5;

    let failed = generator.complete(&WorkspaceId::generate(), &hot).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, error.status, attempts), (FailureKind::InvalidRequest, Some(400), 1));
    assert_eq!(error.message, "temperature: Input should be less than or equal to 1");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn a_hanging_server_hits_the_timeout() {
    let server = Server::anthropic().await;
    server.push(Step::Hang);
    let mut config = anthropic_llm(&server);
    let anthropic = config.anthropic.as_mut().unwrap();
    anthropic.timeout_ms = 250;
    anthropic.max_retries = 0;
    let (generator, _clock) = build(&config);

    let started = Instant::now();
    let failed = generator.complete(&WorkspaceId::generate(), &request()).await.unwrap_err();

    let (error, attempts) = provider_error(&failed.error);
    assert_eq!((error.kind, attempts), (FailureKind::Timeout, 1));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn more_than_one_answer_is_refused_without_a_request() {
    let server = Server::anthropic().await;
    let (generator, _clock) = build(&anthropic_llm(&server));
    let mut two = request();
    two.n = 2;

    let failed = generator.complete(&WorkspaceId::generate(), &two).await.unwrap_err();

    assert_eq!(
        failed.error,
        LlmError::InvalidRequest("n: anthropic returns one answer per call, asked for 2".into())
    );
    assert_eq!(failed.record.attempts, 0);
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn variants_come_through_the_messages_api() {
    let server = Server::anthropic().await;
    // The JSON split across two text blocks, fenced as models tend to.
    server.push(Step::Blocks(vec![
        "```json\n{\"variants\":[{\"subject\":\"\",\"body\":\"Your beans miss you. ".into(),
        "Reply STOP to opt out\"}]}\n```".into(),
    ]));
    let (generator, _clock) = build(&anthropic_llm(&server));
    let brief = Brief {
        goal: "win back paused subscribers".into(),
        audience: "coffee subscribers".into(),
        tone: "playful".into(),
        channel: Channel::Sms,
        max_length: None,
        locale: "en-US".into(),
        required_elements: vec!["Reply STOP to opt out".into()],
    };

    let done = generator.generate_variants(&WorkspaceId::generate(), &brief, 1).await.expect("parses");

    assert_eq!(done.output[0].body, "Your beans miss you. Reply STOP to opt out");
    assert_eq!(done.output[0].subject, "");
    let sent = &server.seen()[0].body;
    assert!(sent["system"].as_str().unwrap().contains("exactly 1 items"));
    assert!(sent["messages"][0]["content"].as_str().unwrap().contains("- Reply STOP to opt out"));
}
