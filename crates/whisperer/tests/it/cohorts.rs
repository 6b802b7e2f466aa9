//! `whisperer cohorts retention`: history imported with past timestamps, then the table, the
//! JSON, a split, a behaviour, and clear errors for bad parameters and unknown workspaces.

use crate::helpers::*;
use serde_json::{Value, json};

fn history() -> String {
    // Weeks (Monday starts): W0 2024-01-01, W1 01-08, W2 01-15.
    let track = |user: &str, event: &str, at: &str| json!({"type": "track", "userId": user, "event": event, "timestamp": at});
    let lines = [
        track("ada", "Opened", "2024-01-02T10:00:00Z"),
        json!({"type": "identify", "userId": "ada", "traits": {"plan": "pro"}, "timestamp": "2024-01-02T10:00:00Z"}),
        track("ada", "Invite Sent", "2024-01-03T10:00:00Z"),
        track("ada", "Opened", "2024-01-16T10:00:00Z"),
        track("bob", "Opened", "2024-01-03T11:00:00Z"),
        json!({"type": "identify", "userId": "bob", "traits": {"plan": "free"}, "timestamp": "2024-01-03T11:00:00Z"}),
        track("bob", "Opened", "2024-01-10T11:00:00Z"),
        track("cy", "Opened", "2024-01-09T09:00:00Z"),
        track("cy", "Opened", "2024-01-17T09:00:00Z"),
    ];
    lines.iter().map(|l| l.to_string() + "\n").collect()
}

fn retention(dir: &std::path::Path, workspace: &str, extra: &[&str]) -> std::process::Output {
    whisperer()
        .args(["cohorts", "retention", "--workspace", workspace, "--data-dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("whisperer runs")
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn retention_prints_a_table_and_the_api_json() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Acme");
    let file = dir.path().join("history.jsonl");
    std::fs::write(&file, history()).unwrap();
    run_ok(whisperer().arg("import").arg(&file).args(["--workspace", &ws.id, "--data-dir"]).arg(dir.path()));

    let table = stdout_of(&retention(dir.path(), &ws.id, &[]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("retention by week (Monday to Monday, UTC): 3 persons"), "{table}");
    let rows: Vec<Vec<&str>> = lines[2..].iter().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["all", "(3", "persons)"],
            vec!["cohort", "size", "0", "1", "2"],
            vec!["2024-01-01", "2", "100.0%", "50.0%", "50.0%"],
            vec!["2024-01-08", "1", "100.0%", "100.0%"],
            vec!["all", "3", "100.0%", "66.7%", "50.0%"],
        ],
        "{table}"
    );
    // Columns line up: every percentage ends where its header does.
    let header_end = lines[3].len();
    assert_eq!(lines[4].len(), header_end, "{table}");

    let json: Value = serde_json::from_str(&stdout_of(&retention(dir.path(), &ws.id, &["--json"]))).unwrap();
    assert_eq!((json["persons"].as_u64(), json["periods"].as_u64()), (Some(3), Some(3)));
    assert_eq!(
        json["groups"][0]["cohorts"][1]["cells"],
        json!([{"active": 1, "fraction": 1.0}, {"active": 1, "fraction": 1.0}, null])
    );

    let split = stdout_of(&retention(dir.path(), &ws.id, &["--split", "plan", "--period", "month"]));
    for title in ["plan = free (1 persons)", "plan = pro (1 persons)", "plan (none) (1 persons)"] {
        assert!(split.contains(title), "{title} in\n{split}");
    }
    let behaviour =
        stdout_of(&retention(dir.path(), &ws.id, &["--behavior", "Invite Sent", "--within-days", "7"]));
    assert!(behaviour.contains("did Invite Sent within 7d (1 persons)"), "{behaviour}");
    assert!(behaviour.contains("did not do Invite Sent within 7d (2 persons)"), "{behaviour}");
}

#[test]
fn bad_parameters_and_unknown_workspaces_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "Acme");
    let empty = stdout_of(&retention(dir.path(), &ws.id, &[]));
    assert!(empty.contains("0 persons") && empty.contains("no activity"), "{empty}");
    for (args, message) in [
        (&["--period", "day"][..], "period must be week or month"),
        (&["--periods", "0"][..], "periods must be an integer from 1 to 520"),
        (&["--from", "2024-02-01", "--to", "2024-01-01"][..], "must be before to"),
        (&["--behavior", "X", "--within-days", "0"][..], "within_days must be an integer"),
    ] {
        let out = retention(dir.path(), &ws.id, args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let out = retention(dir.path(), "ws_0123456789abcdef", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workspace"));
}
