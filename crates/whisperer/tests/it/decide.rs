//! The decision engine through the binary: campaign files applied to a store, and the closed
//! loop of `simulate --campaigns` with its report.

use serde_json::Value;
use std::path::PathBuf;

use crate::helpers::{create_workspace, run_ok, whisperer};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/campaigns").join(name)
}

#[test]
fn campaign_apply_versions_definitions_and_names_bad_fields() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "campaigns");
    let apply = |file: &std::path::Path| {
        whisperer()
            .args(["campaign", "apply"])
            .arg(file)
            .args(["--workspace", &ws.id, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let json = |out: std::process::Output| -> Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let win_back = example("win-back.toml");
    assert_eq!(json(apply(&win_back)), serde_json::json!({"id": "win-back", "version": 1}));
    assert_eq!(
        json(apply(&win_back)),
        serde_json::json!({"id": "win-back", "version": 1}),
        "unchanged: same version"
    );
    let changed = dir.path().join("changed.toml");
    let text =
        std::fs::read_to_string(&win_back).unwrap().replace("holdout_percent = 20", "holdout_percent = 25");
    std::fs::write(&changed, text).unwrap();
    assert_eq!(json(apply(&changed)), serde_json::json!({"id": "win-back", "version": 2}));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "id = \"x\"\ntrigger = { type = \"api\" }\n[goal]\nevent = \"Session Started\"\nwithin = \"3days\"\n",
    )
    .unwrap();
    let out = apply(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("goal.within: unknown unit \"days\"") && err.contains("actions: is required"),
        "{err}"
    );

    let out =
        run_ok(whisperer().args(["campaign", "list", "--workspace", &ws.id, "--data-dir"]).arg(dir.path()));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["definition"]["holdout_percent"], 25.0);
}

#[test]
fn closed_loop_reports_uplift_and_regret() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let run = |out_file: &std::path::Path| {
        run_ok(
            whisperer()
                .args([
                    "simulate",
                    "--users",
                    "600",
                    "--days",
                    "60",
                    "--seed",
                    "5",
                    "--end",
                    "2025-03-01T00:00:00Z",
                ])
                .arg("--campaigns")
                .arg(example("win-back.toml"))
                .arg(example("onboarding.toml"))
                .arg("--report-json")
                .arg(out_file),
        )
    };
    let out = run(&report);
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let stdout: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r, stdout, "the report file and stdout agree");
    let num = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {r}"));
    let (uplift, lo, hi) = (num("uplift"), num("uplift_ci_low"), num("uplift_ci_high"));
    assert!(lo <= uplift && uplift <= hi && hi - lo > 0.0, "{lo} {uplift} {hi}");
    assert!(num("regret_policy") >= 0.0 && num("regret_random") > 0.0);
    assert!(r["treated"]["decisions"].as_u64().unwrap() > 100, "{r}");
    assert!(r["holdout"]["decisions"].as_u64().unwrap() > 10, "{r}");
    assert_eq!(r["campaigns"], serde_json::json!(["win-back", "onboarding"]));
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("uplift") && summary.contains("regret"), "{summary}");
    // Same seed, same run.
    let again = dir.path().join("again.json");
    run(&again);
    assert_eq!(std::fs::read(&report).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn recorded_decisions_feed_the_experiment_report() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "experiments");
    run_ok(
        whisperer()
            .args([
                "simulate",
                "--users",
                "1500",
                "--days",
                "60",
                "--seed",
                "9",
                "--end",
                "2025-03-01T00:00:00Z",
            ])
            .arg("--campaigns")
            .arg(example("upgrade-ab.toml"))
            .args(["--record-workspace", &ws.id, "--data-dir"])
            .arg(dir.path()),
    );
    let report = |campaign: &str| {
        whisperer()
            .args(["experiment", "report", campaign, "--workspace", &ws.id, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = report("upgrade-ab");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["control"], "holdout");
    assert_eq!(r["policy"], "ab");
    let groups = r["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4, "holdout and three arms: {r}");
    let settled: u64 = groups.iter().map(|g| g["decisions"].as_u64().unwrap()).sum();
    assert_eq!(settled, r["settled"].as_u64().unwrap());
    assert!(settled > 100, "{r}");
    for c in r["comparisons"].as_array().unwrap() {
        for key in [
            "conversion",
            "p_value_holm",
            "always_valid_p",
            "always_valid_ci",
            "prob_beats_control",
            "expected_loss",
        ] {
            assert!(!c[key].is_null(), "{key} missing in {c}");
        }
        let (p, holm, avp) = (
            c["conversion"]["p_value"].as_f64().unwrap(),
            c["p_value_holm"].as_f64().unwrap(),
            c["always_valid_p"].as_f64().unwrap(),
        );
        assert!(p <= holm && holm <= 1.0 && (0.0..=1.0).contains(&avp), "{c}");
    }
    // A fixed split: every group's share is known, and the split holds.
    assert_eq!(r["sample_ratio"]["mismatch"], false, "{r}");
    let out = report("nope");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown campaign \"nope\""));

    // Off-policy evaluation on the same log: the logging policy's own estimate is the observed
    // mean; a fixed arm is estimated with an interval; a bad spec is named.
    let evaluate = |policy: &str| {
        whisperer()
            .args([
                "policy",
                "evaluate",
                "--campaign",
                "upgrade-ab",
                "--policy",
                policy,
                "--workspace",
                &ws.id,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let ope = |policy: &str| -> Value {
        let out = evaluate(policy);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let logged = ope("logged");
    let observed = logged["observed_mean_reward"].as_f64().unwrap();
    for estimator in ["ips", "snips", "doubly_robust"] {
        assert!((logged[estimator]["value"].as_f64().unwrap() - observed).abs() < 1e-9, "{logged}");
    }
    let arm = ope("arm:email/discount");
    for estimator in ["ips", "snips", "doubly_robust"] {
        let e = &arm[estimator];
        let (v, lo, hi) = (
            e["value"].as_f64().unwrap(),
            e["ci"]["lower"].as_f64().unwrap(),
            e["ci"]["upper"].as_f64().unwrap(),
        );
        assert!(lo <= v && v <= hi && hi > lo, "{arm}");
    }
    let out = evaluate("arm:fax");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy \"arm:fax\""));
}

/// The decision engine in a running server: a campaign applied with the CLI is decided on at
/// once over HTTP, the user's next session is attributed by the learner and teaches the policy,
/// and all of it survives a hard kill.
#[tokio::test]
async fn a_running_server_decides_learns_and_remembers() {
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "live");
    let mut server = crate::helpers::ServerProcess::start(dir.path());
    let http = reqwest::Client::new();
    let (status, _) = server
        .post_json(
            "/v1/identify",
            &ws.write_key,
            &serde_json::json!({"userId": "ada", "traits": {"email": "ada@example.com"}}),
        )
        .await;
    assert_eq!(status, 200);
    let res = http
        .put(format!("{}/v1/settings/fatigue", server.url))
        .bearer_auth(&ws.secret_key)
        .body(r#"{"quiet_hours": null}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let campaign = dir.path().join("nudge.toml");
    std::fs::write(
        &campaign,
        "id = \"nudge\"\ntrigger = { type = \"api\" }\naudience = 'traits.email exists'\n[goal]\nevent = \"Session Started\"\nwithin = \"1d\"\n[actions]\nchannels = [\"in_app\", \"email\"]\ncontents = [{ id = \"tip\", template = \"t\" }]\n",
    )
    .unwrap();
    run_ok(
        whisperer()
            .args(["campaign", "apply"])
            .arg(&campaign)
            .args(["--workspace", &ws.id, "--data-dir"])
            .arg(dir.path()),
    );
    let decide = serde_json::json!({"userId": "ada", "campaign": "nudge"});
    let (status, d) = server.post_json("/v1/decide", &ws.secret_key, &decide).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"], "send", "{d}");
    let arm = d["arm"].as_str().unwrap().to_owned();

    let (status, _) = server
        .post_json(
            "/v1/track",
            &ws.write_key,
            &serde_json::json!({"userId": "ada", "event": "Session Started"}),
        )
        .await;
    assert_eq!(status, 200);
    let mut record = Value::Null;
    for _ in 0..100 {
        let page = server.get_json("/v1/decisions?userId=ada", &ws.secret_key).await;
        record = page["decisions"][0].clone();
        if record["outcome"] == "converted" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(record["outcome"], "converted", "the learner attributes the session: {record}");

    server.kill_hard();
    let server = crate::helpers::ServerProcess::start(dir.path());
    let page = server.get_json("/v1/decisions?userId=ada", &ws.secret_key).await;
    assert_eq!(page["decisions"][0]["outcome"], "converted");
    // Another user: the policy remembers what it learned before the kill.
    let bob = serde_json::json!({"userId": "bob", "traits": {"email": "bob@example.com"}});
    assert_eq!(server.post_json("/v1/identify", &ws.write_key, &bob).await.0, 200);
    let (status, d) = server
        .post_json("/v1/decide", &ws.secret_key, &serde_json::json!({"userId": "bob", "campaign": "nudge"}))
        .await;
    assert_eq!(status, 200, "{d}");
    let arms = d["explanation"]["arms"].as_array().unwrap();
    let learned = arms.iter().find(|a| a["arm"] == arm.as_str()).unwrap();
    assert_eq!((learned["trials"].as_f64(), learned["successes"].as_f64()), (Some(1.0), Some(1.0)), "{d}");
}

/// Decisions are acknowledged from the decision journal and reach the database behind it: a
/// server killed with `kill -9` while decide calls stream in still has, after its restart,
/// every decision it answered (the journal is replayed at start), each exactly once.
#[tokio::test]
async fn a_hard_kill_under_decide_load_loses_no_answered_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, ws) = pulse_server(dir.path(), &[]).await;
    let http = reqwest::Client::new();

    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut callers = Vec::new();
    for c in 0..8 {
        let (http, url, key, answered) =
            (http.clone(), server.url.clone(), ws.secret_key.clone(), answered.clone());
        callers.push(tokio::spawn(async move {
            for n in 0.. {
                let body =
                    serde_json::json!({"userId": format!("u{}", (c * 5 + n) % 40), "campaign": "pulse"});
                let Ok(res) =
                    http.post(format!("{url}/v1/decide")).bearer_auth(&key).json(&body).send().await
                else {
                    return;
                };
                if res.status().as_u16() != 200 {
                    return;
                }
                let Ok(d) = res.json::<Value>().await else { return };
                answered.lock().unwrap().push(d["decision_id"].as_str().unwrap().to_owned());
            }
        }));
    }
    while answered.lock().unwrap().len() < 600 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill_hard();
    for caller in callers {
        caller.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();

    let server = crate::helpers::ServerProcess::start(dir.path());
    let stored = pulse_decisions(&server, &ws).await;
    let distinct: std::collections::HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "no decision is stored twice");
    let lost: Vec<&String> = answered.iter().filter(|id| !distinct.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered decisions lost, e.g. {:?}",
        lost.len(),
        answered.len(),
        lost.first()
    );
}

/// With `[decide] acknowledge = "queued"` the server answers before the decision is durable;
/// the decisions reach the audit trail right behind the answers.
#[tokio::test]
async fn queued_acknowledgement_answers_first_and_stores_right_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("queued.toml");
    std::fs::write(&config, "[decide]\nacknowledge = \"queued\"\n").unwrap();
    let (server, ws) = pulse_server(dir.path(), &["--config", config.to_str().unwrap()]).await;
    let mut answered = Vec::new();
    for n in 0..30 {
        let body = serde_json::json!({"userId": format!("u{}", n % 40), "campaign": "pulse"});
        let (status, d) = server.post_json("/v1/decide", &ws.secret_key, &body).await;
        assert_eq!(status, 200, "{d}");
        answered.push(d["decision_id"].as_str().unwrap().to_owned());
    }
    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = pulse_decisions(&server, &ws).await;
        if stored.len() >= answered.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stored.sort();
    answered.sort();
    assert_eq!(stored, answered);
}

/// A server on `dir` (`args` follow the data dir) with 40 identified users and `pulse`, an
/// API-triggered campaign with two email arms.
async fn pulse_server(
    dir: &std::path::Path,
    args: &[&str],
) -> (crate::helpers::ServerProcess, crate::helpers::Workspace) {
    let ws = create_workspace(dir, "pulse");
    let mut store = vec!["--data-dir", dir.to_str().unwrap()];
    store.extend_from_slice(args);
    let server = crate::helpers::ServerProcess::start_on(&store);
    let users: Vec<Value> = (0..40)
        .map(|i| serde_json::json!({"type": "identify", "userId": format!("u{i}"), "traits": {"email": format!("u{i}@example.com")}}))
        .collect();
    let (status, body) =
        server.post_json("/v1/batch", &ws.write_key, &serde_json::json!({"batch": users})).await;
    assert_eq!(status, 200, "{body}");
    let res = reqwest::Client::new()
        .put(format!("{}/v1/campaigns/pulse", server.url))
        .bearer_auth(&ws.secret_key)
        .body(r#"{"id": "pulse", "trigger": {"type": "api"}, "goal": {"event": "Session Started", "within": "1d"},
                  "actions": {"channels": ["email"], "contents": [{"id": "a", "template": "a"}, {"id": "b", "template": "b"}]}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{}", res.text().await.unwrap());
    (server, ws)
}

/// The ids of every stored decision of `pulse`, page by page.
async fn pulse_decisions(
    server: &crate::helpers::ServerProcess,
    ws: &crate::helpers::Workspace,
) -> Vec<String> {
    let mut stored = Vec::new();
    let mut cursor = String::new();
    loop {
        let page =
            server.get_json(&format!("/v1/decisions?campaign=pulse&limit=500{cursor}"), &ws.secret_key).await;
        stored.extend(
            page["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["decision_id"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    stored
}
