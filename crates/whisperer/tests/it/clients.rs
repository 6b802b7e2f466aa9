//! The official Segment and RudderStack client libraries (Python and Node), unchanged but for
//! their host, against a real server. They are installed by `scripts/setup-test-deps`.

use crate::helpers::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_libraries_work_unchanged() {
    let root = repo_root();
    let deps =
        std::env::var_os("WHISPERER_TEST_DEPS").map(PathBuf::from).unwrap_or_else(|| root.join(".test-deps"));
    let python = deps.join("venv/bin/python");
    if !python.exists() || !deps.join("node/node_modules").exists() {
        assert!(
            !required("WHISPERER_REQUIRE_CLIENTS"),
            "client libraries are missing in {}: run scripts/setup-test-deps",
            deps.display()
        );
        eprintln!("skipping: official client libraries not installed (run scripts/setup-test-deps)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = create_workspace(dir.path(), "clients");
    let server = ServerProcess::start(dir.path());
    let run_id = format!("{:x}", rand_id());
    let mut reported = Vec::new();
    for (program, script) in [(python.clone(), "send_python.py"), (PathBuf::from("node"), "send_node.mjs")] {
        let out = Command::new(&program)
            .arg(root.join("tests/clients").join(script))
            .env("WHISPERER_HOST", &server.url)
            .env("WHISPERER_WRITE_KEY", &ws.write_key)
            .env("RUN_ID", &run_id)
            .env("WHISPERER_TEST_DEPS", &deps)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            reported.push(serde_json::from_str::<Value>(line).unwrap());
        }
    }
    let libraries: Vec<&str> = reported.iter().map(|r| r["library"].as_str().unwrap()).collect();
    assert_eq!(libraries, ["segment-py", "rudder-py", "segment-node", "rudder-node"]);

    for r in &reported {
        let user = r["userId"].as_str().unwrap();
        let profile = server.get_json(&format!("/v1/users/{user}"), &ws.secret_key).await;
        let lib = r["library"].as_str().unwrap();
        // Whisperer's own lifecycle events join the user's history as the stage moves.
        let lifecycle = profile["eventCounts"]["Lifecycle Stage Changed"].as_u64().unwrap_or(0);
        assert_eq!(profile["eventCount"].as_u64().unwrap() - lifecycle, 7, "{lib}: {profile}");
        assert_eq!(profile["eventCounts"]["Order Completed"], 1, "{lib}");
        assert_eq!(profile["eventCounts"]["Landing Viewed"], 1, "{lib}: the anonymous event joined the user");
        for t in ["identify", "page", "screen", "group", "alias"] {
            assert_eq!(profile["typeCounts"][t], 1, "{lib}: {t}");
        }
        assert_eq!(profile["traits"]["plan"], "pro", "{lib}: {profile}");
        let anon = profile["identities"]["anonymousIds"].to_string();
        assert!(anon.contains(r["anonymousId"].as_str().unwrap()), "{lib}: {anon}");
        assert!(anon.contains(&format!("{lib}-{run_id}-old")), "{lib}: alias previousId linked: {anon}");
    }
}

fn rand_id() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}
