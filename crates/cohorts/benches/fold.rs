//! Retention fold speed and memory at scale: `cargo bench -p whisperer-cohorts --bench fold`.
//!
//! Folds 50M events of 1M persons (a year of weekly activity, one identify per person, events
//! in random order so first activities arrive late too) into a weekly report split by a trait,
//! on one thread, from events already in memory: the store's read is not part of it. Prints
//! the median of 3 runs of events per second, and the resident memory per person once the
//! fold holds all of them.

use std::time::Instant;
use whisperer_cohorts::{Collector, RetentionQuery};
use whisperer_core::{EventType, Millis, NewEvent, StoredEvent, WorkspaceId};

const PERSONS: i64 = 1_000_000;
const EVENTS: usize = 50_000_000;
const PAGE: usize = 10_000;
const DAY: i64 = 86_400_000;
const T0: i64 = 1_704_067_200_000; // 2024-01-01

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// xorshift: cheap and deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn event(event_type: EventType, name: Option<&str>, raw: &str) -> StoredEvent {
    StoredEvent {
        seq: 0,
        person_id: 0,
        event: NewEvent {
            workspace_id: WorkspaceId::generate(),
            message_id: "m".into(),
            event_type,
            name: name.map(str::to_owned),
            user_id: None,
            anonymous_id: None,
            previous_id: None,
            timestamp: Millis(T0),
            received_at: Millis(T0),
            raw: raw.into(),
            enrichment: "{}".into(),
        },
    }
}

fn run() -> (f64, f64) {
    let plans = ["free", "starter", "pro", "enterprise"];
    let identifies: Vec<StoredEvent> = plans
        .iter()
        .map(|p| event(EventType::Identify, None, &format!(r#"{{"traits": {{"plan": "{p}"}}}}"#)))
        .collect();
    let tracks: Vec<StoredEvent> = ["Session Started", "Feature Used", "Project Created", "Message Sent"]
        .iter()
        .map(|n| event(EventType::Track, Some(n), "{}"))
        .collect();
    let query = RetentionQuery { split: Some("plan".into()), ..Default::default() };
    let mut collector = Collector::new(query);
    let rss_before = rss_kib();
    let mut rng = Rng(42);
    let mut page: Vec<StoredEvent> = Vec::with_capacity(PAGE);
    let mut fold_time = std::time::Duration::ZERO;
    let mut seq = 0i64;
    let mut folded = 0usize;
    while folded < EVENTS {
        page.clear();
        for _ in 0..PAGE {
            seq += 1;
            let r = rng.next();
            // The first million events identify everyone; then random activity over a year.
            let mut e = if seq <= PERSONS {
                identifies[(r % 4) as usize].clone()
            } else {
                tracks[(r % 4) as usize].clone()
            };
            e.seq = seq;
            e.person_id = if seq <= PERSONS { seq } else { 1 + ((r >> 8) % PERSONS as u64) as i64 };
            e.event.timestamp = Millis(T0 + ((r >> 32) % (365 * DAY as u64 / 1000)) as i64 * 1000);
            page.push(e);
        }
        let fold = Instant::now();
        for e in &page {
            collector.observe(e);
        }
        // Only the fold is timed, not making the events.
        fold_time += fold.elapsed();
        folded += PAGE;
    }
    let per_person = (rss_kib().saturating_sub(rss_before)) as f64 * 1024.0 / PERSONS as f64;
    let report = collector.finish();
    assert_eq!(report.persons, PERSONS as u64);
    std::hint::black_box(report);
    (EVENTS as f64 / fold_time.as_secs_f64(), per_person)
}

fn main() {
    let mut speeds = Vec::new();
    let mut memory = Vec::new();
    for _ in 0..3 {
        let (speed, per_person) = run();
        speeds.push(speed);
        memory.push(per_person);
    }
    speeds.sort_by(f64::total_cmp);
    memory.sort_by(f64::total_cmp);
    println!("retention fold, 1M persons, 50M events, weekly, split by a trait (median of 3, one thread)");
    println!("| events/s | resident bytes per person |");
    println!("|---|---|");
    println!("| {:.0} | {:.0} |", speeds[1], memory[1]);
}
