//! `whisperer churn train|score` on simulated history, and the score in `GET /v1/users/{id}`.

use crate::helpers::{ServerProcess, create_workspace, run_ok, whisperer};

const END: &str = "2024-06-01T00:00:00Z";

#[tokio::test]
async fn train_score_and_serve_a_churn_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let ws = create_workspace(dir.path(), "sim");
    let store = ["--workspace", ws.id.as_str(), "--data-dir", data];

    // Before any model: a clear error, not an empty CSV.
    let out = whisperer().args(["churn", "score", "--as-of", END]).args(store).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no churn model"), "{out:?}");
    // Too little history to train on.
    let file = dir.path().join("sim.jsonl");
    let sim = ["simulate", "--users", "600", "--days", "90", "--seed", "9", "--end", END, "--output"];
    run_ok(
        whisperer().args(["simulate", "--users", "50", "--days", "10", "--end", END, "--output"]).arg(&file),
    );
    run_ok(whisperer().arg("import").arg(&file).args(store));
    let out = whisperer()
        .args(["churn", "train", "--as-of", END, "--horizon-days", "14"])
        .args(store)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too little history"), "{out:?}");

    // Three months of a product: train, then score.
    let ws = create_workspace(dir.path(), "product");
    let store = ["--workspace", ws.id.as_str(), "--data-dir", data];
    run_ok(whisperer().args(sim).arg(&file));
    run_ok(whisperer().arg("import").arg(&file).args(store));
    let out =
        run_ok(whisperer().args(["churn", "train", "--as-of", END, "--horizon-days", "14"]).args(store));
    let report = String::from_utf8(out.stdout).unwrap();
    for part in
        ["logistic regression", "gradient boosting", "recency only", "AUC", "log-loss", "Brier", "version 1"]
    {
        assert!(report.contains(part), "{part}: {report}");
    }
    let out = run_ok(whisperer().args(["churn", "score", "--as-of", END]).args(store));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("user_id,churn_probability,top_reasons"));
    let rows: Vec<_> = rows.collect();
    assert!(rows.len() > 400, "{} rows", rows.len());
    let mut with_reasons = 0;
    for row in &rows {
        let mut fields = row.splitn(3, ',');
        let (user, p, reasons) =
            (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap_or(""));
        assert!(user.starts_with("user-") || user.starts_with("anon-"), "{row}");
        let p: f64 = p.parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{row}");
        with_reasons += reasons.contains('=') as usize;
    }
    assert!(with_reasons > rows.len() / 2);

    // A server on the same store puts the score into the user view.
    let server = ServerProcess::start(dir.path());
    let user = rows.iter().find(|r| r.starts_with("user-")).unwrap().split(',').next().unwrap().to_owned();
    let mut view = serde_json::Value::Null;
    for _ in 0..300 {
        view = server.get_json(&format!("/v1/users/{user}"), &ws.secret_key).await;
        if view["profile"]["churn"].is_object() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let churn = &view["profile"]["churn"];
    assert_eq!(churn["modelVersion"], 1, "{view:#}");
    assert!((0.0..=1.0).contains(&churn["probability"].as_f64().unwrap()));
    assert!(view["profile"]["stage"].is_string());
}

#[test]
fn lifecycle_thresholds_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let ws = create_workspace(dir.path(), "shop");
    let store = ["--workspace", ws.id.as_str(), "--data-dir", data];
    let out = run_ok(whisperer().args(["lifecycle", "get"]).args(store));
    let defaults: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(defaults["churned_days"], 30.0);
    let file = dir.path().join("lifecycle.json");
    std::fs::write(&file, r#"{"at_risk_days": 20, "dormant_days": 40, "churned_days": 90}"#).unwrap();
    run_ok(whisperer().args(["lifecycle", "set"]).arg(&file).args(store));
    let out = run_ok(whisperer().args(["lifecycle", "get"]).args(store));
    let set: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((set["churned_days"].as_f64(), set["activation_active_days"].as_u64()), (Some(90.0), Some(3)));
    std::fs::write(&file, r#"{"dormant_days": 400}"#).unwrap();
    let out = whisperer().args(["lifecycle", "set"]).arg(&file).args(store).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dormant_days < churned_days"), "{out:?}");
}
