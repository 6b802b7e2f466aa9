//! Churn model speed: `cargo bench -p whisperer-models --bench churn [USERS]`.
//!
//! Simulates USERS (default 100,000) users over 60 days, streams their events into a replay
//! (parse + observation, no raw log kept), trains both candidates and picks one, then scores
//! 1M feature rows in batches. Prints each phase's time; training excludes reading the log.

use std::hint::black_box;
use std::time::Instant;
use whisperer_core::{Millis, WorkspaceId};
use whisperer_models::{Replay, train};
use whisperer_sim::{SimConfig, Simulation};

const DAY: i64 = 86_400_000;

fn main() {
    let users: u32 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let end = Millis(1_717_200_000_000);
    let horizon = 14;
    let as_of = end.0;
    let config = SimConfig { users, seed: 3, start: Millis(end.0 - 60 * DAY), end, ..SimConfig::default() };
    let mut sim = Simulation::new(config).expect("valid config");
    let ws = WorkspaceId::generate();
    let mut replay = Replay::empty(as_of);
    let mut seq = 0;
    let started = Instant::now();
    sim.run_to_end(|m| {
        seq += 1;
        replay.push(&m.to_stored_event(&ws, seq));
    });
    let replay = replay.finish();
    let read = started.elapsed();

    let started = Instant::now();
    let model = train(&replay, as_of, horizon).expect("trains");
    let trained = started.elapsed();
    let r = &model.report;

    let (persons, x) = replay.current(&model.spec, as_of);
    let rows = 1_000_000usize;
    let cols = model.spec.width();
    let mut batch = Vec::with_capacity(rows * cols);
    while batch.len() < rows * cols {
        let take = (rows * cols - batch.len()).min(x.len());
        batch.extend_from_slice(&x[..take]);
    }
    let median_rate = |with_reasons: bool| {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            for chunk in batch.chunks(10_000 * cols) {
                if with_reasons {
                    black_box(model.score(chunk, chunk.len() / cols));
                } else {
                    black_box(model.probabilities(chunk, chunk.len() / cols));
                }
            }
            rates.push(rows as f64 / started.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        rates[1]
    };
    let (plain, explained) = (median_rate(false), median_rate(true));

    println!("churn model ({users} simulated users, 60 days; this machine has 2 cores)");
    println!("  events simulated and replayed   {:>10}  in {:>6.1} s", replay.events(), read.as_secs_f64());
    println!(
        "  training (examples, both models, calibration)  {:.1} s: {} training / {} validation examples",
        trained.as_secs_f64(),
        r.train_examples,
        r.validation_examples
    );
    println!(
        "  validation AUC: logistic {:.4}, boosting {:.4}, recency {:.4}; chosen {}",
        r.logistic.auc,
        r.gradient_boosting.auc,
        r.recency_auc,
        r.chosen.as_str()
    );
    println!("  users with features now          {:>10}", persons.len());
    println!("  batch scoring, probabilities     {:>10.0} users/s (median of 3, 1M rows)", plain);
    println!("  batch scoring with top reasons   {:>10.0} users/s (median of 3, 1M rows)", explained);
}
