//! README.md's example step and manifest are what a newcomer copies first: the test component
//! `readme-example` holds them word for word, and here it runs against the fraudGuard simulator.

use std::path::Path;

use serde_json::json;
use whenever::task::TaskStatus;
use whenever_step_artifacts::testing::README_EXAMPLE;
use whenever_tests::{assert_status, host_with, run_task, runs_of};

/// The first fenced block of `language` after `heading` in README.md.
fn readme_block(heading: &str, language: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let after = readme
        .find(heading)
        .map(|at| &readme[at..])
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    let fence = format!("```{language}\n");
    let start = after
        .find(&fence)
        .unwrap_or_else(|| panic!("no {language} block after {heading:?}"))
        + fence.len();
    let end = after[start..].find("```\n").expect("the block ends") + start;
    after[start..end].to_string()
}

#[test]
fn the_readme_example_is_the_test_component_word_for_word() {
    let source = std::fs::read_to_string(Path::new(README_EXAMPLE.manifest).with_file_name("src/lib.rs"))
        .expect("the example's source");
    let code: String = source
        .lines()
        .skip_while(|line| line.starts_with("//!"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        code,
        readme_block("## Writing a step", "rust"),
        "README.md's example step and steps/testing/readme-example/src/lib.rs differ"
    );
    let manifest = std::fs::read_to_string(README_EXAMPLE.manifest).expect("the example's manifest");
    assert_eq!(
        manifest,
        readme_block("The manifest:", "toml"),
        "README.md's manifest and steps/testing/readme-example/step.toml differ"
    );
}

#[tokio::test]
async fn the_readme_example_scores_an_order_with_the_simulator() {
    let host = host_with(&[README_EXAMPLE]).await;
    let order = json!({"order": {
        "id": "o-1",
        "total": 120.5,
        "customer": {"email": "ann@shop.test"},
        "payment": {"method": "card", "token": "tok_visa"},
        "shipping": {"country": "DE", "city": "Berlin"},
    }});
    let task = run_task(&host, order).await;
    // No step completes the task: it waits, scored (30 for a `.test` address, 15 outside the US).
    assert_status(&task, TaskStatus::Waiting);
    assert_eq!(runs_of(&task, "readme-example").len(), 1);
    assert_eq!(task.data["order"]["fraud"], json!({"score": 45}), "{}", task.data);
    assert_eq!(task.data["order"]["fraudChecked"], json!(true));
}
