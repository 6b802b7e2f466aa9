//! In-process decision speed: eligibility (audience), holdout, policy choice with its exact
//! propensity, fatigue checks and the ledger, for the shipped win-back campaign under each
//! policy. `cargo bench -p whisperer-decide --bench decide`; prints the median of 5 runs of
//! throughput and the p50/p99 latency of single decisions.

use std::time::Instant;

use serde_json::{Map, json};
use whisperer_decide::{CampaignSpec, Draw, Engine, FatigueRules, UserContext};
use whisperer_profiles::{Features, Stage};

const USERS: i64 = 100_000;
const DECISIONS: usize = 200_000;

fn features(i: i64) -> Features {
    Features {
        recency_days: Some((i % 40) as f64),
        tenure_days: 30.0 + (i % 300) as f64,
        events_total: (i % 500) as u32,
        events_1d: (i % 3) as u32,
        events_7d: (i % 20) as u32,
        events_30d: (i % 60) as u32,
        events_90d: (i % 150) as u32,
        events_prev_7d: (i % 17) as u32,
        active_days_7d: (i % 7) as u32,
        active_days_30d: (i % 25) as u32,
        active_days_90d: (i % 60) as u32,
        sessions_total: (i % 200) as u32,
        sessions_7d: (i % 9) as u32,
        sessions_30d: (i % 30) as u32,
        distinct_events: (i % 12) as u32,
        distinct_features: (i % 8) as u32,
        trend: ((i % 21) as f64 - 10.0) / 10.0,
        revenue_total: (i % 7) as f64 * 49.0,
        revenue_events: (i % 4) as u32,
        days_since_revenue: None,
        usual_hour: Some((i % 24) as u8),
    }
}

fn main() {
    let text = include_str!("../../../examples/campaigns/win-back.toml");
    let users: Vec<(Features, Map<String, serde_json::Value>, String)> = (0..USERS)
        .map(|i| {
            let plan = ["free", "pro", "internal"][(i % 3) as usize];
            let traits = json!({"email": format!("u{i}@example.com"), "plan": plan});
            (features(i), traits.as_object().unwrap().clone(), format!("user-{i}"))
        })
        .collect();
    let zone: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    for policy in ["thompson", "contextual", "epsilon_greedy", "ab"] {
        let spec =
            CampaignSpec::parse(&text.replace("kind = \"contextual\"", &format!("kind = \"{policy}\"")))
                .unwrap();
        let mut throughput = Vec::new();
        let mut latencies = Vec::with_capacity(DECISIONS);
        for run in 0..5 {
            let mut engine = Engine::new(FatigueRules::default());
            engine.put_campaign(spec.compile(1).unwrap(), None);
            let mut ids: Vec<String> = (0..DECISIONS).map(|i| format!("d{i}")).collect();
            let started = Instant::now();
            let mut sent = 0usize;
            for (n, id) in ids.iter_mut().enumerate() {
                let i = (n as i64 * 7_919) % USERS;
                let (f, traits, unit) = &users[i as usize];
                let user = UserContext {
                    person: i,
                    known: true,
                    traits,
                    features: Some(f),
                    engagement: Some(40.0),
                    stage: Some(Stage::AtRisk),
                    churn: Some(0.4),
                    zone: Some(zone),
                    request: None,
                };
                let t0 = if run == 0 { Some(Instant::now()) } else { None };
                let now = 1_767_261_600_000 + n as i64 * 60_000;
                let u = ((n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
                let d = engine
                    .decide("win-back", &user, Some(unit), Draw { decision_id: id, unit, u, now })
                    .unwrap();
                sent += usize::from(d.deliver_at.is_some());
                if let Some(t0) = t0 {
                    latencies.push(t0.elapsed().as_nanos() as u64);
                }
                if n % 10_000 == 0 {
                    engine.refresh();
                }
            }
            let secs = started.elapsed().as_secs_f64();
            throughput.push(DECISIONS as f64 / secs);
            std::hint::black_box(sent);
        }
        throughput.sort_by(f64::total_cmp);
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)] as f64 / 1000.0
        };
        println!(
            "{policy:>15}: {:>9.0} decisions/s (median of 5, one thread), latency p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            throughput[2],
            pct(0.5),
            pct(0.99),
            *latencies.last().unwrap() as f64 / 1000.0
        );
    }
}
