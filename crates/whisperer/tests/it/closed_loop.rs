//! `simulate --campaigns` delivering through content and delivery: the example templates are
//! found beside the example campaigns, the report and summary carry the delivery figures, and
//! templates that are missing or do not compile stop the run before it starts.

use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::{run_ok, whisperer};

fn examples(dir: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(dir)
}

fn simulate(extra: &[&std::ffi::OsStr]) -> std::process::Command {
    let mut cmd = whisperer();
    cmd.args(["simulate", "--users", "400", "--days", "45", "--seed", "3", "--end", "2025-03-01T00:00:00Z"])
        .arg("--campaigns")
        .arg(examples("campaigns/win-back.toml"))
        .arg(examples("campaigns/onboarding.toml"))
        .args(extra);
    cmd
}

#[test]
fn simulated_messages_are_rendered_gated_and_delivered() {
    // No --templates: the templates beside the campaigns' directory (the test runs in the
    // crate's directory, where there is no examples/templates).
    let out = run_ok(&mut simulate(&[]));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &r["delivery"];
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v} in {d}"));
    assert_eq!(n(&d["messages"]), n(&r["by_status"]["send"]));
    assert!(n(&d["sent"]) > 100, "{d}");
    assert_eq!(n(&d["blocked"]), 0, "{d}");
    assert!(n(&d["by_provider"]["simulator-email"]["sent"]) > 0, "{d}");
    assert!(n(&d["by_locale"]["de"]) > 0, "{d}");
    assert!(n(&d["simulated_deliveries"]) <= n(&d["sent"]), "{d}");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("delivery: ") && summary.contains("simulator-email"), "{summary}");

    // The same templates named explicitly give the same report.
    let again = run_ok(&mut simulate(&["--templates".as_ref(), examples("templates").as_os_str()]));
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn missing_or_broken_templates_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples("templates")).unwrap() {
        let path = entry.unwrap().path();
        if !path.ends_with("win-back-discount.json") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let out = simulate(&["--templates".as_ref(), dir.path().as_os_str()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("names template \"win-back-discount\""), "{err}");

    std::fs::write(
        dir.path().join("win-back-discount.json"),
        r#"{"locales": {"en": {"subject": "Hi", "body": "{{ unsubscribe_link }}"}}}"#,
    )
    .unwrap();
    let out = simulate(&["--templates".as_ref(), dir.path().as_os_str()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("win-back-discount.json") && err.contains("unsubscribe_link"), "{err}");
}
