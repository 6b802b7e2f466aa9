//! `whisperer simulate`: JSON lines that `whisperer import` takes as they are, the same messages
//! through the real Segment HTTP API of a running server, and the oracle's CSV.

use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::helpers::{ServerProcess, create_workspace, export, run_ok, whisperer};

const SIM: &[&str] = &["simulate", "--users", "150", "--days", "30", "--end", "2024-06-01T00:00:00Z"];

fn simulate_to(file: &Path, seed: &str, extra: &[&str]) -> String {
    let out = run_ok(whisperer().args(SIM).args(["--seed", seed, "--output"]).arg(file).args(extra));
    String::from_utf8(out.stderr).unwrap()
}

fn lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn simulated_jsonl_is_deterministic_and_imports_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"), dir.path().join("c.jsonl"));
    let oracle = dir.path().join("oracle.csv");
    let summary = simulate_to(&a, "3", &["--oracle-out", oracle.to_str().unwrap(), "--as-of", "2024-05-18"]);
    simulate_to(&b, "3", &[]);
    simulate_to(&c, "4", &[]);
    let (bytes_a, bytes_b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(bytes_a == bytes_b, "same seed, same bytes (the oracle step must not change them)");
    assert!(bytes_a != std::fs::read(&c).unwrap(), "another seed, other messages");
    for part in ["signups", "Session Started", "churned", "resurrected", "messages/s", "oracle"] {
        assert!(summary.contains(part), "summary lacks {part}: {summary}");
    }

    let messages = lines(&a);
    assert!(messages.len() > 3000, "{} messages", messages.len());
    let csv = std::fs::read_to_string(&oracle).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("user_id,churn_hazard"));
    let hazards: Vec<(String, f64)> = rows
        .map(|r| {
            let (id, p) = r.split_once(',').unwrap();
            (id.to_owned(), p.parse().unwrap())
        })
        .collect();
    assert!(hazards.len() > 50 && hazards.len() < 150, "only users signed up by --as-of: {}", hazards.len());
    assert!(hazards.iter().all(|(id, p)| id.starts_with("user-") && (0.0..=1.0).contains(p)));

    let ws = create_workspace(dir.path(), "sim");
    let out =
        run_ok(whisperer().arg("import").arg(&a).args(["--workspace", &ws.id, "--data-dir"]).arg(dir.path()));
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["accepted"].as_u64(), Some(messages.len() as u64), "{imported}");
    assert_eq!(imported["rejected"], 0);
    let stored: Vec<Value> = export(dir.path(), &ws.id)
        .into_iter()
        .filter(|e| e["messageId"].as_str().unwrap().starts_with("sim-"))
        .collect();
    assert_eq!(stored.len(), messages.len());
    // Historical timestamps are kept as simulated.
    let first = messages.iter().map(|m| m["timestamp"].as_str().unwrap()).min().unwrap();
    assert_eq!(stored.iter().map(|e| e["timestamp"].as_str().unwrap()).min().unwrap(), first);
    assert!(first.starts_with("2024-05-0"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_users_arrive_through_the_http_api() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.jsonl");
    simulate_to(&reference, "5", &[]);
    let messages = lines(&reference);

    let ws = create_workspace(dir.path(), "sim");
    let server = ServerProcess::start(dir.path());
    let out = run_ok(whisperer().args(SIM).args([
        "--seed",
        "5",
        "--url",
        &server.url,
        "--write-key",
        &ws.write_key,
        "--concurrency",
        "4",
    ]));
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(summary.contains(&format!("{} accepted", messages.len())), "{summary}");

    // The same messages as the file, with the simulated timestamps (no sentAt, so no skew fix).
    // (The server adds events of its own, such as lifecycle stage changes: only ours count.)
    let stored: Vec<Value> = export(dir.path(), &ws.id)
        .into_iter()
        .filter(|e| e["messageId"].as_str().unwrap().starts_with("sim-"))
        .collect();
    let ids = |events: &[Value]| -> HashSet<String> {
        events.iter().map(|e| e["messageId"].as_str().unwrap().to_owned()).collect()
    };
    let (stored_ids, sent_ids) = (ids(&stored), ids(&messages));
    assert_eq!(stored.len(), messages.len());
    assert!(stored_ids == sent_ids, "{} ids differ", stored_ids.symmetric_difference(&sent_ids).count());
    let sent_at: HashMap<&str, &str> = messages
        .iter()
        .map(|m| (m["messageId"].as_str().unwrap(), m["timestamp"].as_str().unwrap()))
        .collect();
    assert!(
        stored.iter().all(|e| sent_at[e["messageId"].as_str().unwrap()] == e["timestamp"].as_str().unwrap())
    );

    // One user as the API sees them: anonymous browsing merged into the signed-up user.
    let user = messages.iter().find_map(|m| m["userId"].as_str()).unwrap().to_owned();
    let anonymous = messages
        .iter()
        .find(|m| m["userId"] == user.as_str())
        .and_then(|m| m["anonymousId"].as_str())
        .unwrap()
        .to_owned();
    let theirs: Vec<&Value> = messages.iter().filter(|m| m["anonymousId"] == anonymous.as_str()).collect();
    let view = server.get_json(&format!("/v1/users/{user}"), &ws.secret_key).await;
    for name in ["Session Started", "Feature Used"] {
        let expected = theirs.iter().filter(|m| m["event"] == name).count() as u64;
        assert_eq!(view["eventCounts"][name].as_u64().unwrap_or(0), expected, "{name}: {view}");
    }
    let pages = theirs.iter().filter(|m| m["type"] == "page").count() as u64;
    assert_eq!(view["typeCounts"]["page"].as_u64(), Some(pages), "{view}");
    assert_eq!(view["firstSeen"], theirs[0]["timestamp"], "the first anonymous page view is the user's");
    assert!(view["identities"]["anonymousIds"].to_string().contains(&anonymous));
    assert!(view["traits"]["email"].as_str().unwrap().ends_with("@example.com"));

    // Sending again stores nothing twice: message ids are deterministic.
    let out = run_ok(whisperer().args(SIM).args([
        "--seed",
        "5",
        "--url",
        &server.url,
        "--write-key",
        &ws.write_key,
    ]));
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(summary.contains(&format!("0 accepted, {} duplicates", messages.len())), "{summary}");
}

#[test]
fn bad_simulate_options_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.jsonl");
    let out = whisperer().args(SIM).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--output"), "a target is required");
    let out = whisperer()
        .args(SIM)
        .arg("--output")
        .arg(&file)
        .args(["--oracle-out", "o.csv", "--as-of", "2023-01-01"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the simulated window"));
    let out = whisperer().args(SIM).args(["--url", "http://127.0.0.1:9", "--write-key"]).output().unwrap();
    assert!(!out.status.success());
}
