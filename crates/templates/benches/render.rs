//! Renders a realistic email (subject + 20-line body, 6 variables, an `if`, a `for` over 3 items)
//! single-threaded and prints renders/s, the median of 5 runs, for three ways of passing the
//! context:
//!
//! * `context`: a [`RenderContext`] built per render from the user's typed data (traits map,
//!   features, scores, decision, links), as a caller sending one message per user does. The
//!   traits map is shared through an `Arc` the way a caller hands over the profile it loaded;
//!   the decision is built from owned strings each time; the arm's content and the brand block are
//!   converted once and shared, as a caller sending a campaign does. This is the headline.
//! * `context-reused`: one context rendered over and over (the template cost alone).
//! * `json`: [`TemplateSet::render`] with a `serde_json::Value` (converted whole each render).
//!
//! `cargo bench -p whisperer-templates --bench render [-- ITERATIONS] [MODE…]` (default
//! 1,000,000 iterations, all modes).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use whisperer_templates::{
    Decision, JsonMap, RenderContext, Schema, Scores, TemplateSet, Value, value_from_json,
};

const SUBJECT: &str = "{{ traits.first_name|title }}, your {{ brand.name }} picks for this week";

const BODY: &str = "Hi {{ traits.first_name|title }},

Thanks for being with {{ brand.name }} since {{ traits.signup_date|date('%B %Y') }}.
{% if scores.churn > 0.5 -%}
We miss you! Here is 20% off your next order.
{% else -%}
Good to see you again this week.
{% endif -%}
Your picks:
{% for item in decision.content -%}
  - {{ item.title }}: {{ item.price|money('EUR') }}
{% endfor -%}
See all picks in your account.

Your plan: {{ stage|upper }}
You have {{ features.sessions_7d }} sessions in the last 7 days.

Questions? Just reply to this email.

Cheers,
The {{ brand.name }} team

You get this email because you signed up at our store.
Unsubscribe: {{ unsubscribe_url }}
";

fn context(traits: &Arc<JsonMap>, content: &Value, brand: &Value) -> RenderContext {
    RenderContext::new()
        .traits(Arc::clone(traits))
        .features([("sessions_7d", 12.0)])
        .scores(Scores { engagement: 0.7, churn: 0.62, stage: "active".to_owned() })
        .decision(Decision {
            id: "d1".to_owned(),
            campaign: "weekly".to_owned(),
            arm: "a".to_owned(),
            channel: Some("email".to_owned()),
            content: Some(content.clone()),
        })
        .var("brand", brand.clone())
        .var("unsubscribe_url", "https://example.com/u/abc")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let iterations: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let modes: Vec<&str> = args.iter().filter(|a| a.parse::<u64>().is_err()).map(String::as_str).collect();
    let modes = if modes.is_empty() { vec!["context", "context-reused", "json"] } else { modes };

    let mut set = TemplateSet::new("en");
    set.insert("en", SUBJECT, BODY, None, &Schema::messages(&["sessions_7d"])).expect("templates are valid");
    let ctx = json!({
        "traits": {"first_name": "ada", "signup_date": "2024-05-17T09:00:00Z", "plan": "pro"},
        "brand": {"name": "Acme"},
        "scores": {"engagement": 0.7, "churn": 0.62},
        "stage": "active",
        "features": {"sessions_7d": 12},
        "decision": {"id": "d1", "campaign": "weekly", "arm": "a", "channel": "email", "content": [
            {"title": "Blue mug", "price": 1299},
            {"title": "Tea sampler", "price": 2450},
            {"title": "Kettle", "price": 5999}
        ]},
        "user": {"id": "u1", "locale": "en", "time_zone": "Europe/Vienna"},
        "unsubscribe_url": "https://example.com/u/abc"
    });
    let traits = Arc::new(ctx["traits"].as_object().cloned().expect("traits are a map"));
    // the arm's content and the workspace's brand are converted once and shared by all users
    let content = value_from_json(&ctx["decision"]["content"]);
    let brand = value_from_json(&ctx["brand"]);
    let reused = context(&traits, &content, &brand);

    let sample = set.render("de-AT", &ctx).expect("renders");
    assert_eq!(sample.body.lines().count(), 20, "{}", sample.body);
    println!("subject: {}\n{}", sample.subject, sample.body);
    let typed = set.render_context("de-AT", &reused).expect("renders");
    // features are f64 in the typed context, integers in the JSON one
    assert_eq!(typed.body.replace("12.0 sessions", "12 sessions"), sample.body);
    assert_eq!(typed.subject, sample.subject);

    for mode in modes {
        let render = |set: &TemplateSet| match mode {
            "context" => set.render_context("de-AT", &context(&traits, &content, &brand)),
            "context-reused" => set.render_context("de-AT", &reused),
            "json" => set.render("de-AT", &ctx),
            other => panic!("unknown mode {other}: context, context-reused or json"),
        };
        let mut rates = Vec::with_capacity(5);
        for run in 1..=5 {
            let start = Instant::now();
            let mut bytes = 0usize;
            for _ in 0..iterations {
                let r = render(&set).expect("renders");
                bytes += r.body.len();
            }
            let secs = start.elapsed().as_secs_f64();
            let rate = iterations as f64 / secs;
            println!(
                "{mode} run {run}: {iterations} renders in {secs:.2}s = {rate:.0} renders/s ({bytes} bytes)"
            );
            rates.push(rate);
        }
        rates.sort_by(f64::total_cmp);
        println!("{mode} median: {:.0} renders/s (single thread)", rates[2]);
    }
}
