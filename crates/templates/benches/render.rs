//! Renders a realistic email (subject + 20-line body, 6 variables, an `if`, a `for` over 3 items)
//! single-threaded and prints renders/s, the median of 5 runs.
//!
//! `cargo bench -p whisperer-templates --bench render [-- ITERATIONS]` (default 1,000,000).

use std::time::Instant;

use serde_json::json;
use whisperer_templates::{Schema, TemplateSet};

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

fn main() {
    let iterations: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
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
    let sample = set.render("de-AT", &ctx).expect("renders");
    assert_eq!(sample.body.lines().count(), 20, "{}", sample.body);
    println!("subject: {}\n{}", sample.subject, sample.body);

    let mut rates = Vec::with_capacity(5);
    for run in 1..=5 {
        let start = Instant::now();
        let mut bytes = 0usize;
        for _ in 0..iterations {
            let r = set.render("de-AT", &ctx).expect("renders");
            bytes += r.body.len();
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = iterations as f64 / secs;
        println!("run {run}: {iterations} renders in {secs:.2}s = {rate:.0} renders/s ({bytes} bytes)");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("median: {:.0} renders/s (single thread)", rates[2]);
}
