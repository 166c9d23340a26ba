//! `whenever new NAME`: a step crate of one's own, outside this repository, that builds, tests
//! and runs with the commands it names.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::refused;

/// `whenever` in `dir`, where cargo builds into the crate's own `target/` (as in the test's
/// `cargo` below), whatever target folder the test itself was built with.
fn whenever(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_whenever"))
        .current_dir(dir)
        .args(args)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .output()
        .expect("whenever runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_new_step_crate_builds_and_runs_as_it_says() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();
    let output = whenever(dir, &["new", "order-announcer"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("cargo build --release --target wasm32-wasip2\n  whenever run task.json --steps steps"),
        "{said}"
    );
    let crate_dir = dir.join("order-announcer");
    for file in ["Cargo.toml", "src/lib.rs", "steps/order-announcer.toml", "task.json"] {
        assert!(crate_dir.join(file).is_file(), "{file} was written");
    }

    // What was written is never written over, and bad names and SDKs are refused by name.
    refused(
        &whenever(dir, &["new", "order-announcer"]),
        2,
        "exists and is not empty: nothing was written",
    );
    std::fs::write(dir.join("a-file"), "").expect("write");
    refused(
        &whenever(dir, &["new", "other", "--dir", "a-file"]),
        2,
        "a-file exists and is not a folder",
    );
    refused(
        &whenever(dir, &["new", "Order Announcer"]),
        2,
        "invalid step name \"Order Announcer\"",
    );
    refused(
        &whenever(dir, &["new", "other", "--sdk", "/nowhere"]),
        2,
        "no step SDK at /nowhere (--sdk)",
    );
    assert!(!dir.join("other").exists(), "nothing is written for a refused command");

    // The next two commands it names, and `cargo test` for the logic's unit test (natively).
    // Offline: the SDK's dependencies were fetched when this repository's steps were built,
    // before this test.
    let cargo = |args: &[&str]| {
        let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        command
            .current_dir(&crate_dir)
            .args(args)
            .args(["--offline", "--quiet"]);
        for var in [
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET_DIR",
            "CARGO_BUILD_TARGET",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
        ] {
            command.env_remove(var);
        }
        let output = command.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "cargo {args:?} failed in the new crate:\n{}",
            stderr(&output)
        );
        output
    };
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    let tested = cargo(&["test"]);
    let said = String::from_utf8_lossy(&tested.stdout);
    assert!(said.contains("test result: ok. 1 passed"), "{said}");
    let output = whenever(&crate_dir, &["run", "task.json", "--steps", "steps"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let task: Value = serde_json::from_slice(&output.stdout).expect("the task as JSON");
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["data"]["order"]["announced"], json!(true), "{task}");
    let run = &task["runs"][0];
    assert_eq!(run["step"], "order-announcer", "{task}");
    assert_eq!(run["connector_calls"][0]["connector"], "slackCom", "{task}");
    assert!(run["connector_calls"][0]["returned"]["ok"] == json!(true), "{task}");
}
