//! What README.md shows is what a newcomer copies first: its example step and manifest (the test
//! component `readme-example` holds them word for word, and runs here against the fraudGuard
//! simulator), its TOML blocks, and its condition.

use std::path::Path;

use serde_json::json;
use whenever::condition::Condition;
use whenever::config::Config;
use whenever::runtime::StepManifest;
use whenever::task::TaskStatus;
use whenever_step_artifacts::testing::README_EXAMPLE;
use whenever_tests::{assert_status, host_with, run_task, runs_of};

/// README.md's text.
fn readme() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    std::fs::read_to_string(root.join("README.md")).expect("README.md")
}

/// The fenced blocks of `language` in `text`, each with the line its fence opens on.
fn blocks(text: &str, language: &str) -> Vec<(usize, String)> {
    let fence = format!("```{language}");
    let mut found = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        match &mut open {
            None if line == fence => open = Some((number + 1, String::new())),
            None => {}
            Some(_) if line == "```" => found.extend(open.take()),
            Some((_, block)) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    found
}

/// The first fenced block of `language` after `heading` in README.md.
fn readme_block(heading: &str, language: &str) -> String {
    let readme = readme();
    let after = readme
        .find(heading)
        .map(|at| &readme[at..])
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"));
    blocks(after, language)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {language} block after {heading:?}"))
        .1
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

/// The example's `?` on a failed call fails the run with which call failed and how: the
/// connector's message alone (`customerEmail` is required) named neither.
#[tokio::test]
async fn a_failed_call_the_example_passes_on_with_a_question_mark_is_named() {
    let host = host_with(&[README_EXAMPLE]).await;
    let order = json!({"order": {"id": "o-2", "total": 80, "payment": {"method": "card", "token": "tok_visa"}}});
    let task = run_task(&host, order).await;
    assert_status(&task, TaskStatus::Failed);
    let error = whenever_tests::error_of(&task, "readme-example");
    assert!(
        error.message.starts_with("fraudGuard.analyze invalid-args: ") && error.message.contains("customerEmail"),
        "{}",
        error.message
    );
}

/// Each TOML block README.md shows is a step manifest or a host config file that the host takes
/// as it stands: a key renamed in the code and not in the README fails here.
#[test]
fn every_toml_block_in_the_readme_is_a_manifest_or_a_config_the_host_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut manifests, mut configs) = (0, 0);
    for (line, block) in blocks(&readme(), "toml") {
        let as_manifest = match StepManifest::from_toml(&block) {
            Ok(_) => {
                manifests += 1;
                continue;
            }
            Err(e) => e,
        };
        let path = dir.path().join(format!("line-{line}.toml"));
        std::fs::write(&path, &block).expect("write");
        match Config::load(&path) {
            Ok(_) => configs += 1,
            Err(as_config) => {
                panic!("README.md line {line}: neither a manifest ({as_manifest}) nor a config ({as_config}):\n{block}")
            }
        }
    }
    assert!(manifests > 0 && configs > 0, "{manifests} manifests, {configs} configs");
}

/// The condition README.md gives as JSON means what it says it means.
#[test]
fn the_readme_condition_matches_an_order_over_500_not_yet_checked() {
    let readme = readme();
    let said = "`{\"order\": {\"total\": {\"$gt\": 500}, \"fraudChecked\": null}}` matches an order over 500 not yet\nchecked for fraud";
    assert!(readme.contains(said), "README.md no longer says {said:?}");
    let condition = Condition::parse(&json!({"order": {"total": {"$gt": 500}, "fraudChecked": null}})).expect("valid");
    assert!(condition.matches(&json!({"order": {"total": 900}})));
    assert!(!condition.matches(&json!({"order": {"total": 400}})));
    assert!(!condition.matches(&json!({"order": {"total": 900, "fraudChecked": true}})));
}
