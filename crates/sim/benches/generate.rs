//! Generation benchmark: a population (default 1M users × 30 days) streamed as Segment JSON to a
//! sink, with the oracle computed part-way, reporting messages/s and peak memory.
//!
//! `cargo bench -p whisperer-sim --bench generate [-- --users N --days D --runs R]`

use std::time::Instant;

use whisperer_core::Millis;
use whisperer_sim::{DAY_MS, SimConfig, Simulation};

/// Peak resident set size in MB (VmHWM), where /proc exists.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct Run {
    init_s: f64,
    generate_s: f64,
    messages: u64,
    bytes: u64,
    oracle_s: f64,
    oracle_users: usize,
}

fn run(users: u32, days: i64) -> Run {
    // A fixed end keeps runs comparable (and independent of the day they run).
    let end = Millis(1_717_200_000_000);
    let config =
        SimConfig { users, seed: 1, start: Millis(end.0 - days * DAY_MS), end, ..SimConfig::default() };
    let started = Instant::now();
    let mut sim = Simulation::new(config).expect("valid config");
    let init_s = started.elapsed().as_secs_f64();
    // The sink: each message is written as JSON into a reused buffer, as a file writer would.
    let mut buf = Vec::with_capacity(1024);
    let mut bytes = 0u64;
    let mut sink = |m: &whisperer_sim::Message<'_>| {
        buf.clear();
        m.write_json(&mut buf);
        bytes += buf.len() as u64 + 1;
    };
    let as_of = Millis(end.0 - 14.min(days / 2) * DAY_MS);
    let generating = Instant::now();
    sim.advance_to(as_of, &mut sink);
    let mut generate_s = generating.elapsed().as_secs_f64();
    let oracle = Instant::now();
    let hazards = sim.oracle_churn_hazards(as_of, 14);
    let oracle_s = oracle.elapsed().as_secs_f64();
    let generating = Instant::now();
    sim.run_to_end(&mut sink);
    generate_s += generating.elapsed().as_secs_f64();
    Run { init_s, generate_s, messages: sim.stats().messages, bytes, oracle_s, oracle_users: hazards.len() }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: i64| -> i64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
            .unwrap_or(default)
    };
    let users = arg("--users", 1_000_000) as u32;
    let days = arg("--days", 30);
    let runs = arg("--runs", 1).max(1) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("whisperer-sim: {users} users x {days} days to a JSON sink, {runs} run(s), {cores} cores");
    let mut results: Vec<Run> = (0..runs).map(|_| run(users, days)).collect();
    results.sort_by(|a, b| a.generate_s.total_cmp(&b.generate_s));
    let median = &results[results.len() / 2];
    let rss = peak_rss_mb();
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| population drawn | {:.2} s |", median.init_s);
    println!(
        "| messages | {} ({:.1} per user) |",
        median.messages,
        median.messages as f64 / f64::from(users)
    );
    println!("| generation (incl. JSON) | {:.2} s |", median.generate_s);
    println!("| messages/s | {:.0} |", median.messages as f64 / median.generate_s);
    println!("| JSON MB/s | {:.0} |", median.bytes as f64 / 1e6 / median.generate_s);
    println!("| mean message size | {} bytes |", median.bytes / median.messages.max(1));
    println!(
        "| oracle (14-day hazard, {} users) | {:.2} s, {:.0} users/s |",
        median.oracle_users,
        median.oracle_s,
        median.oracle_users as f64 / median.oracle_s
    );
    println!("| state per user | {} bytes |", Simulation::memory_per_user());
    if let Some(rss) = rss {
        println!(
            "| peak RSS (VmHWM) | {rss:.0} MB ({:.0} bytes/user) |",
            rss * 1024.0 * 1024.0 / f64::from(users)
        );
    }
    println!();
    println!("(medians of {runs} run(s) by generation time; {cores} cores shared with whatever else runs)");
}
