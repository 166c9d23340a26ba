//! The step crates' own unit tests (the SDK's condition macro and data helpers, the JavaScript
//! semantics helpers, the RetailMax steps' logic) live in the `steps/` workspace, which builds for
//! `wasm32-wasip2`; their tests run natively. This runs them from the main workspace's
//! `cargo test`, so they cannot rot unnoticed.

use std::path::Path;
use std::process::Command;

#[test]
fn the_step_crates_unit_tests_pass_natively() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root.join("steps"))
        .args(["test", "--workspace", "--quiet"])
        // Its own target directory: the outer cargo may hold the workspace's.
        .env("CARGO_TARGET_DIR", root.join("target").join("steps-native"));
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        command.env_remove(var);
    }
    let output = command.output().expect("runs cargo test in steps/");
    assert!(
        output.status.success(),
        "the step crates' unit tests failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let passed: usize = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed > 0, "no step crate test ran:\n{stdout}");
}
