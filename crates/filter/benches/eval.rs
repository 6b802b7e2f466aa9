//! `cargo bench -p whisperer-filter`: evaluation speed of a bound 6-clause audience.
//!
//! Prints the median ns/eval over 5 runs of 1M evaluations, cycling through 4096
//! pseudo-random profiles so that short-circuiting and branches vary as in production.

use std::hint::black_box;
use std::time::Instant;

use whisperer_filter::{Value, parse};

const SRC: &str = r#"(stage in ["at_risk", "dormant"] or scores.churn > 0.6)
    and features.sessions_7d >= 1
    and not (traits.plan in ["enterprise", "internal"])
    and traits.email exists
    and traits.name starts_with "A""#;

const FIELDS: [&str; 6] =
    ["stage", "scores.churn", "features.sessions_7d", "traits.plan", "traits.email", "traits.name"];

const EVALS: usize = 1_000_000;
const RUNS: usize = 5;

fn main() {
    let expr = parse(SRC).expect("benchmark expression parses");
    let bound = expr
        .bind(|p| {
            let name = p.to_string();
            FIELDS.iter().position(|f| *f == name).ok_or_else(|| format!("unknown path {name}"))
        })
        .expect("benchmark expression binds");

    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let stages = ["at_risk", "dormant", "active", "new"];
    let plans = ["free", "pro", "enterprise", "internal", "team"];
    let names = ["Alice", "Bob", "Anna", "Zed", "Aaron", "Carla"];
    let profiles: Vec<[Value<'static>; 6]> = (0..4096)
        .map(|_| {
            let r = next();
            [
                Value::Str(stages[(r % 4) as usize]),
                Value::Number((r >> 8 & 0xff) as f64 / 255.0),
                Value::Number((r >> 16 & 0x3) as f64),
                Value::Str(plans[(r >> 20) as usize % plans.len()]),
                if r >> 24 & 1 == 0 { Value::Str("someone@example.com") } else { Value::Null },
                Value::Str(names[(r >> 28) as usize % names.len()]),
            ]
        })
        .collect();

    let mut per_eval = Vec::with_capacity(RUNS);
    let mut hits = 0;
    for _ in 0..RUNS {
        hits = 0;
        let start = Instant::now();
        for i in 0..EVALS {
            let profile = black_box(&profiles[i & 4095]);
            if bound.eval(|k: &usize| profile[*k]) {
                hits += 1;
            }
        }
        black_box(hits);
        per_eval.push(start.elapsed().as_nanos() as f64 / EVALS as f64);
    }
    per_eval.sort_by(f64::total_cmp);
    println!(
        "eval: {:.1} ns/eval (median of {RUNS} runs x {EVALS} evaluations; runs {:.1}..{:.1} ns; {:.1}% matched)",
        per_eval[RUNS / 2],
        per_eval[0],
        per_eval[RUNS - 1],
        100.0 * hits as f64 / EVALS as f64
    );

    let start = Instant::now();
    let n = 20_000;
    for _ in 0..n {
        let e = parse(black_box(SRC)).expect("parses");
        black_box(e.bind(|_| Ok(0usize)).expect("binds"));
    }
    println!("parse + bind: {:.2} µs per expression", start.elapsed().as_secs_f64() * 1e6 / n as f64);
}
