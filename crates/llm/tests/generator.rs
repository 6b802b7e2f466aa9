//! The generator end to end on a loopback OpenAI-format server: budgets refuse before any
//! request, the cache answers without one, variants and translations are parsed and checked,
//! and every outcome carries its record.

mod common;

use chrono::Duration as Days;
use common::{Server, Step, build, openai_llm};
use serde_json::{Value, json};
use whisperer_core::{Channel, WorkspaceId};
use whisperer_llm::{Brief, BudgetLimits, BudgetSnapshot, ConfigError, LlmConfig, LlmError, OutputError};

fn brief(channel: Channel) -> Brief {
    Brief {
        goal: "bring back customers who have not ordered in 60 days".into(),
        audience: "lapsed customers of a coffee subscription".into(),
        tone: "warm and brief".into(),
        channel,
        max_length: None,
        locale: "en-GB".into(),
        required_elements: vec!["{{ unsubscribe_url }}".into()],
    }
}

fn variants_json(n: usize) -> String {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"subject": format!("We saved your seat #{i}"), "body": format!("Your favourite roast is back. {{{{ unsubscribe_url }}}} #{i}")}))
        .collect();
    json!({"variants": items}).to_string()
}

fn user_message(body: &Value) -> String {
    body["messages"].as_array().unwrap().iter().find(|m| m["role"] == "user").unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

fn limited(server: &Server, limits: BudgetLimits) -> LlmConfig {
    let mut config = openai_llm(server);
    config.budget.default = limits;
    config
}

#[tokio::test]
async fn over_budget_is_refused_without_a_request_until_the_next_utc_day() {
    let server = Server::openai().await;
    // Long bodies, so that what one call really spends (about 1,100 tokens) plus the next
    // call's estimate (prompt plus 512 output tokens, about 850) is over the limit, while one
    // estimate alone is under it.
    server.respond_with(|_| {
        let body = format!("{} {{{{ unsubscribe_url }}}}", "Your favourite roast is back. ".repeat(50));
        json!({"variants": [{"subject": "A", "body": body}, {"subject": "B", "body": body}]}).to_string()
    });
    let config = limited(&server, BudgetLimits { tokens_per_day: Some(1_500), cost_micros_per_day: None });
    let (generator, clock) = build(&config);
    let ws = WorkspaceId::generate();

    let first = generator.generate_variants(&ws, &brief(Channel::Email), 2).await.expect("within budget");
    assert_eq!(server.count(), 1);
    let spent = generator.spent_today(&ws);
    assert_eq!(spent.tokens, first.record.input_tokens + first.record.output_tokens);

    let mut other = brief(Channel::Email);
    other.goal = "announce the spring blend".into();
    let refused = generator.generate_variants(&ws, &other, 2).await.unwrap_err();
    match &refused.error {
        LlmError::OverBudget(e) => {
            assert_eq!((e.what, e.used, e.limit), ("tokens", spent.tokens, 1_500));
            assert!(e.needed > 512, "the estimate covers prompt and max_tokens: {}", e.needed);
        }
        other => panic!("expected over budget, got {other:?}"),
    }
    assert_eq!(server.count(), 1, "no request reached the server");
    assert_eq!((refused.record.attempts, refused.record.input_tokens), (0, 0));
    assert_eq!(generator.spent_today(&ws), spent, "a refusal costs nothing");

    let elsewhere = WorkspaceId::generate();
    generator.generate_variants(&elsewhere, &other, 2).await.expect("another workspace has its own budget");
    assert_eq!(server.count(), 2);

    clock.advance(Days::hours(12));
    let mut third = brief(Channel::Email);
    third.goal = "thank loyal customers".into();
    generator.generate_variants(&ws, &third, 2).await.expect("a new utc day");
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn a_cost_budget_refuses_with_the_configured_prices() {
    let server = Server::openai().await;
    // 512 output tokens at 600 micro-dollars each exceed 100,000 micro-dollars.
    let config = limited(&server, BudgetLimits { tokens_per_day: None, cost_micros_per_day: Some(100_000) });
    let (generator, _clock) = build(&config);

    let refused =
        generator.generate_variants(&WorkspaceId::generate(), &brief(Channel::Push), 1).await.unwrap_err();

    match refused.error {
        LlmError::OverBudget(e) => assert_eq!(e.what, "cost_micros"),
        other => panic!("expected over budget, got {other:?}"),
    }
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn budget_counters_survive_a_restart_through_the_snapshot() {
    let server = Server::openai().await;
    server.respond_with(|_| variants_json(1));
    let config = limited(&server, BudgetLimits { tokens_per_day: Some(1_000), cost_micros_per_day: None });
    let (first, _clock) = build(&config);
    let ws = WorkspaceId::generate();
    first.generate_variants(&ws, &brief(Channel::Sms), 1).await.expect("within budget");
    let saved = serde_json::to_string(&first.budget_snapshot()).unwrap();

    let (second, _clock) = build(&config);
    second.restore_budget(serde_json::from_str::<BudgetSnapshot>(&saved).unwrap());

    assert_eq!(second.spent_today(&ws), first.spent_today(&ws));
    let refused = second.generate_variants(&ws, &brief(Channel::Push), 1).await.unwrap_err();
    assert!(matches!(refused.error, LlmError::OverBudget(_)), "{refused}");
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn an_identical_prompt_is_served_from_the_cache_without_a_request() {
    let server = Server::openai().await;
    server.respond_with(|_| variants_json(3));
    let (generator, clock) = build(&openai_llm(&server));
    let ws = WorkspaceId::generate();

    let first = generator.generate_variants(&ws, &brief(Channel::Email), 3).await.unwrap();
    let spent = generator.spent_today(&ws);
    let second = generator.generate_variants(&ws, &brief(Channel::Email), 3).await.unwrap();

    assert_eq!(server.count(), 1, "the second call made no request");
    assert_eq!(second.output, first.output);
    assert!(second.record.cache_hit && !first.record.cache_hit);
    assert_eq!(second.record.cache_key, first.record.cache_key);
    assert_eq!((second.record.attempts, second.record.input_tokens, second.record.cost_micros), (0, 0, 0));
    assert_eq!(generator.spent_today(&ws), spent, "a hit costs no budget");

    generator.generate_variants(&ws, &brief(Channel::Email), 2).await.unwrap_err();
    assert_eq!(server.count(), 2, "another n is another prompt");

    clock.advance(Days::hours(25));
    let expired = generator.generate_variants(&ws, &brief(Channel::Email), 3).await.unwrap();
    assert!(!expired.record.cache_hit, "past the ttl the prompt is asked again");
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn a_cache_hit_is_served_even_when_the_budget_is_spent() {
    let server = Server::openai().await;
    server.respond_with(|_| variants_json(1));
    let config = limited(&server, BudgetLimits { tokens_per_day: Some(1_000), cost_micros_per_day: None });
    let (generator, _clock) = build(&config);
    let ws = WorkspaceId::generate();
    generator.generate_variants(&ws, &brief(Channel::Push), 1).await.unwrap();

    let again = generator.generate_variants(&ws, &brief(Channel::Push), 1).await.expect("cached, so free");

    assert!(again.record.cache_hit);
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn variants_in_code_fences_are_parsed_and_the_prompt_asks_for_strict_json() {
    let server = Server::openai().await;
    server.push(Step::Reply(format!("```json\n{}\n```", variants_json(2))));
    let (generator, _clock) = build(&openai_llm(&server));

    let done =
        generator.generate_variants(&WorkspaceId::generate(), &brief(Channel::Email), 2).await.unwrap();

    assert_eq!(done.output.len(), 2);
    assert_eq!(done.output[1].subject, "We saved your seat #1");
    assert!(done.output.iter().all(|v| v.body.contains("{{ unsubscribe_url }}")));
    let sent = &server.seen()[0].body;
    assert_eq!(sent["n"], 1, "all variants come in one answer");
    assert_eq!(sent["max_completion_tokens"], 512);
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains(r#"{"variants":[{"subject":"...","body":"..."}]}"#), "{system}");
    assert!(system.contains("exactly 2 items"));
    assert!(system.contains("at most 78 characters"));
    let user = user_message(sent);
    assert!(user.contains("Goal: bring back customers who have not ordered in 60 days"), "{user}");
    assert!(user.contains("Locale: en-GB"));
    assert!(user.contains("- {{ unsubscribe_url }}"));
}

#[tokio::test]
async fn an_answer_that_is_not_json_fails_charged_and_uncached() {
    let server = Server::openai().await;
    server.respond_with(|_| "Sure! Here are some ideas for your campaign: be warm, be brief.".into());
    let (generator, _clock) = build(&openai_llm(&server));
    let ws = WorkspaceId::generate();

    let failed = generator.generate_variants(&ws, &brief(Channel::Email), 2).await.unwrap_err();

    assert!(matches!(failed.error, LlmError::Output(OutputError::NotJson { .. })), "{:?}", failed.error);
    assert!(failed.to_string().starts_with("the answer is not JSON"), "{failed}");
    let (input, output) = server.seen()[0].usage.unwrap();
    assert_eq!(
        (failed.record.input_tokens, failed.record.output_tokens, failed.record.attempts),
        (input, output, 1)
    );
    assert_eq!(
        generator.spent_today(&ws).tokens,
        input + output,
        "the provider was paid, so the budget is too"
    );
    generator.generate_variants(&ws, &brief(Channel::Email), 2).await.unwrap_err();
    assert_eq!(server.count(), 2, "a bad answer is not cached");
}

#[tokio::test]
async fn the_wrong_number_of_variants_is_rejected() {
    let server = Server::openai().await;
    server.push(Step::Reply(variants_json(2)));
    let (generator, _clock) = build(&openai_llm(&server));

    let failed =
        generator.generate_variants(&WorkspaceId::generate(), &brief(Channel::Email), 3).await.unwrap_err();

    assert_eq!(failed.error, LlmError::Output(OutputError::WrongCount { expected: 3, got: 2 }));
    assert_eq!(failed.to_string(), "asked for 3 variants, got 2");
}

#[tokio::test]
async fn a_push_title_over_65_characters_is_rejected() {
    let server = Server::openai().await;
    let title = "A very long push notification title that will be cut off on lock screens";
    server.push(Step::Reply(
        json!({"variants": [{"subject": title, "body": "Come back {{ unsubscribe_url }}"}]}).to_string(),
    ));
    let (generator, _clock) = build(&openai_llm(&server));

    let failed =
        generator.generate_variants(&WorkspaceId::generate(), &brief(Channel::Push), 1).await.unwrap_err();

    assert_eq!(
        failed.to_string(),
        format!("variants[0].subject: {} characters, the push limit is 65", title.len())
    );
}

#[tokio::test]
async fn a_missing_field_is_named() {
    let server = Server::openai().await;
    server.push(Step::Reply(r#"{"variants":[{"title":"Hi","body":"x {{ unsubscribe_url }}"}]}"#.into()));
    let (generator, _clock) = build(&openai_llm(&server));

    let failed =
        generator.generate_variants(&WorkspaceId::generate(), &brief(Channel::Email), 1).await.unwrap_err();

    assert_eq!(failed.error, LlmError::Output(OutputError::Shape("variants[0].subject: missing".into())));
}

#[tokio::test]
async fn an_invalid_brief_is_refused_without_a_request() {
    let server = Server::openai().await;
    let (generator, _clock) = build(&openai_llm(&server));
    let mut bad = brief(Channel::Email);
    bad.tone = String::new();

    let failed = generator.generate_variants(&WorkspaceId::generate(), &bad, 1).await.unwrap_err();

    assert_eq!(failed.to_string(), "invalid request: brief.tone: must not be empty");
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn translate_sends_the_text_and_keeps_placeholders() {
    let server = Server::openai().await;
    server.respond_with(|body| {
        // A tiny phrasebook standing in for the model: it translates what it was sent.
        let source = user_message(body);
        source.replace("Hello", "Bonjour").replace("your order has shipped", "votre commande est partie")
    });
    let (generator, _clock) = build(&openai_llm(&server));
    let text = "Hello {{ first_name }}, your order has shipped.";

    let done = generator.translate(&WorkspaceId::generate(), text, "en-GB", "fr-FR").await.unwrap();

    assert_eq!(done.output, "Bonjour {{ first_name }}, votre commande est partie.");
    let sent = &server.seen()[0].body;
    assert_eq!(user_message(sent), text);
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("from en-GB to fr-FR"), "{system}");
    assert_eq!(sent["temperature"], 0.0);
    assert!(sent["max_completion_tokens"].as_u64().unwrap() < 512, "a short text asks for fewer tokens");
    assert!(done.record.output_tokens > 0);
}

#[tokio::test]
async fn a_translation_that_drops_a_placeholder_is_rejected() {
    let server = Server::openai().await;
    server.push(Step::Reply("Bonjour {{ prénom }}, votre commande est partie.".into()));
    let (generator, _clock) = build(&openai_llm(&server));

    let failed = generator
        .translate(&WorkspaceId::generate(), "Hello {{ first_name }}, your order has shipped.", "en", "fr")
        .await
        .unwrap_err();

    assert_eq!(failed.error, LlmError::Output(OutputError::PlaceholderLost("{{ first_name }}".into())));
    assert_eq!(failed.record.attempts, 1);
}

#[test]
fn config_is_data_and_build_names_what_is_wrong() {
    let config: LlmConfig = serde_json::from_value(json!({
        "provider": "openai",
        "openai": {"model": "gpt-4o-mini", "base_url": "http://127.0.0.1:11434/v1"},
        "budget": {"default": {"tokens_per_day": 100000}},
        "cache": {"capacity": 10},
    }))
    .unwrap();
    assert_eq!(config.budget.default.tokens_per_day, Some(100_000));
    assert_eq!(config.cache.ttl_secs, 86_400);
    config.build().expect("a local server needs no key");

    let missing: LlmConfig = serde_json::from_value(json!({"provider": "anthropic"})).unwrap();
    assert_eq!(
        missing.build().unwrap_err(),
        ConfigError::new("llm.anthropic", "required when llm.provider is anthropic")
    );
    let unknown = serde_json::from_value::<LlmConfig>(json!({"provider": "openai", "temprature": 1}));
    assert!(unknown.unwrap_err().to_string().contains("unknown field `temprature`"));
    let mut hot = config.clone();
    hot.temperature = 3.0;
    assert_eq!(hot.build().unwrap_err().field, "llm.temperature");
    let empty_env: LlmConfig = serde_json::from_value(json!({
        "provider": "openai",
        "openai": {"model": "gpt-4o-mini", "api_key_env": "WHISPERER_TEST_SURELY_UNSET_KEY"},
    }))
    .unwrap();
    assert_eq!(
        empty_env.build().unwrap_err().to_string(),
        "llm.openai.api_key_env: environment variable WHISPERER_TEST_SURELY_UNSET_KEY is not set"
    );
}

#[tokio::test]
async fn calls_in_flight_hold_their_estimate_and_give_it_back_when_they_end() {
    let server = Server::openai().await;
    server.push(Step::Hang);
    server.push(Step::Hang);
    server.respond_with(|_| variants_json(1));
    // One estimate (about 850 tokens) fits, two do not.
    let mut config =
        limited(&server, BudgetLimits { tokens_per_day: Some(1_300), cost_micros_per_day: None });
    let openai = config.openai.as_mut().unwrap();
    openai.timeout_ms = 400;
    openai.max_retries = 0;
    let (generator, _clock) = build(&config);
    let ws = WorkspaceId::generate();
    let first = brief(Channel::Email);
    let mut other = brief(Channel::Email);
    other.goal = "announce the spring blend".into();

    // While the first call hangs, the second is refused on the first one's reservation.
    let (hanging, refused) = tokio::join!(generator.generate_variants(&ws, &first, 1), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        generator.generate_variants(&ws, &other, 1).await
    });
    assert_eq!(hanging.unwrap_err().error.failure_kind(), Some(whisperer_llm::FailureKind::Timeout));
    assert!(matches!(refused.unwrap_err().error, LlmError::OverBudget(_)));
    assert_eq!(server.count(), 1);

    // A call abandoned by its caller gives its reservation back too.
    let abandoned = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        generator.generate_variants(&ws, &first, 1),
    )
    .await;
    assert!(abandoned.is_err(), "the caller gave up first");
    assert_eq!(server.count(), 2);

    generator.generate_variants(&ws, &other, 1).await.expect("nothing is held any more");
    assert_eq!(server.count(), 3);
}

#[test]
fn the_documented_toml_example_parses_and_builds() {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let example: String = lib
        .lines()
        .skip_while(|l| *l != "//! ```toml")
        .skip(1)
        .take_while(|l| *l != "//! ```")
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start_matches(' ')))
        .collect();
    assert!(example.contains("[llm.openai]"), "the example is in the crate docs");
    #[derive(serde::Deserialize)]
    struct File {
        llm: LlmConfig,
    }
    let file: File = toml::from_str(&example).unwrap();
    assert_eq!(file.llm.budget.default.cost_micros_per_day, Some(5_000_000));
    let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "sk-doc".to_string());
    let clock = std::sync::Arc::new(whisperer_llm::SystemClock);
    let generator = file.llm.build_with(&env, clock).expect("the example builds");
    assert_eq!(generator.provider().model(), "gpt-4o-mini");
    assert_eq!(generator.provider().pricing().cost_micros(1_000, 1_000), 750);
}
