//! Conventions checked on every test run: module docs, no stray debugging, reasons on
//! `#[ignore]`, and formatting.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "node_modules" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn source_files_follow_the_conventions() {
    let root = root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    if root.join("fuzz").exists() {
        rust_files(&root.join("fuzz"), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let mut problems = Vec::new();
    let dbg = ["dbg", "!("].concat();
    let bare_ignore = ["#[", "ignore]"].concat();
    let todo = ["todo", "!("].concat();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        if file.ends_with("tests/it/tidy.rs") {
            continue; // it names the patterns it looks for
        }
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{rel}: starts without a //! module doc"));
        }
        for (n, line) in text.lines().enumerate() {
            if line.contains(&dbg) {
                problems.push(format!("{rel}:{}: leftover dbg!", n + 1));
            }
            if line.contains(&bare_ignore) {
                problems
                    .push(format!("{rel}:{}: #[ignore] without a reason (use #[ignore = \"why\"])", n + 1));
            }
            if line.contains(&todo) {
                problems.push(format!("{rel}:{}: todo!", n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "convention problems:\n{}", problems.join("\n"));
}

#[test]
fn code_is_formatted() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(root())
        .output()
        .expect("cargo fmt runs");
    assert!(out.status.success(), "run `cargo fmt --all`:\n{}", String::from_utf8_lossy(&out.stdout));
}
