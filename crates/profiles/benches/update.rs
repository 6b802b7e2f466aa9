//! Profile update speed and memory: `cargo bench -p whisperer-profiles --bench update`.
//!
//! Prints, as medians of 5 runs on one thread:
//! - folds per second of ready observations into 1M profiles (`Profile::apply`);
//! - the same through `Tracker::step` from stored events (JSON read + fold + lifecycle);
//! - resident memory per profile with 1M profiles in the engine's table.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;
use whisperer_core::{EventType, Millis, NewEvent, StoredEvent, WorkspaceId};
use whisperer_profiles::{Dictionary, Observation, Profile, ProfileTable, Tracker};

const USERS: usize = 1_000_000;
const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_000_000_000;

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// xorshift: cheap, deterministic, no allocation.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rss_before = rss_kib("VmRSS:");
    let dict = Dictionary::default();
    let mut profiles = ProfileTable::default();
    // Every user gets a first event, so the table is full before timing starts.
    for u in 0..USERS {
        profiles.get_or_default(u as i64).apply(&Observation::activity(T0, Some(0)), &dict);
    }
    let rss_full = rss_kib("VmRSS:");
    let per_profile = (rss_full.saturating_sub(rss_before)) as f64 * 1024.0 / USERS as f64;

    let n = 10_000_000usize;
    let mut rng = Rng(42);
    let observations: Vec<(i64, Observation)> = (0..n)
        .map(|i| {
            let r = rng.next();
            let mut o = Observation::activity(T0 + (i as i64) * (90 * DAY / n as i64), Some((r % 12) as u16));
            o.feature = r.is_multiple_of(3).then_some((r >> 8) as u16 % 20);
            o.local_hour = Some((r >> 16) as u8 % 24);
            o.revenue = r.is_multiple_of(50).then_some(9.99);
            ((r >> 24) as usize % USERS, o)
        })
        .map(|(u, o)| (u as i64, o))
        .collect();
    let mut apply_rates = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        for (u, o) in &observations {
            profiles.get_mut(u).expect("present").apply(o, &dict);
        }
        apply_rates.push(n as f64 / start.elapsed().as_secs_f64());
    }
    black_box(&profiles);

    // Through the tracker: JSON of a ~400-byte track call read per event, lifecycle included.
    let ws = WorkspaceId::generate();
    let events: Vec<StoredEvent> = (0..200_000)
        .map(|i| {
            let raw = format!(
                r#"{{"type":"track","event":"Feature Used","userId":"user-{u}","messageId":"m-{i}","timestamp":"2024-01-01T00:00:00.000Z","properties":{{"feature":"reports","revenue":{rev},"plan":"pro","seats":4}},"context":{{"timezone":"Europe/Berlin","library":{{"name":"analytics-python","version":"2.4.0"}},"ip":"203.0.113.9","userAgent":"Mozilla/5.0 (X11; Linux x86_64)"}}}}"#,
                u = i % 20_000,
                rev = i % 7,
            );
            StoredEvent {
                seq: i,
                person_id: i % 20_000,
                event: NewEvent {
                    workspace_id: ws.clone(),
                    message_id: format!("m-{i}"),
                    event_type: EventType::Track,
                    name: Some("Feature Used".into()),
                    user_id: Some(format!("user-{}", i % 20_000)),
                    anonymous_id: None,
                    previous_id: None,
                    timestamp: Millis(T0 + i * 60_000),
                    received_at: Millis(T0 + i * 60_000),
                    raw,
                    enrichment: r#"{"geo":{"timeZone":"Europe/Berlin"}}"#.into(),
                },
            }
        })
        .collect();
    let mut step_rates = Vec::new();
    for _ in 0..5 {
        let mut tracker = Tracker::default();
        let mut profiles: HashMap<i64, Profile> = HashMap::new();
        let mut transitions = Vec::new();
        let start = Instant::now();
        for e in &events {
            tracker.step(profiles.entry(e.person_id).or_default(), e, &mut transitions);
        }
        step_rates.push(events.len() as f64 / start.elapsed().as_secs_f64());
        black_box((&profiles, &transitions));
    }

    println!("profile update (1 thread; this machine has 2 cores)");
    println!("  Profile::apply, 1M profiles, 10M events   {:>12.0} events/s", median(apply_rates));
    println!("  Tracker::step from stored JSON events      {:>12.0} events/s", median(step_rates));
    println!("  resident memory per profile (1M profiles)  {:>12.0} bytes", per_profile);
    println!("  size of Profile                            {:>12} bytes", std::mem::size_of::<Profile>());
    println!("  peak RSS                                   {:>12} MiB", rss_kib("VmHWM:") / 1024);
}
