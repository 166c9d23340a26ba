//! What `whenever serve` refuses or warns of as it starts: a SQLite file another host has open, a
//! `--db` meant as a PostgreSQL URL but mistyped, a port in use (before any database is made), a
//! config section for a step it does not serve; and what it says of the tasks a crash left.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{ServeProcess, refused, steps_and_config, whenever_binary};
use whenever_step_artifacts::testing::SLEEPS;

/// A start after `kill -9` says how many unfinished tasks it resumes (and they finish); a start
/// after a stop that let its drives finish says nothing of the kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_after_a_crash_says_how_many_unfinished_tasks_it_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let args = steps_and_config(dir.path(), &[SLEEPS], "");
    // A deadline past the sleep: each run ends well, when it is let to.
    std::fs::write(
        dir.path().join("steps").join("sleeps.toml"),
        "connectors = []\n[limits]\ntimeout_ms = 30000\n",
    )
    .expect("manifest");
    let server = ServeProcess::start(&db, &args);
    for _ in 0..2 {
        let (status, task) = server.post("/v1/tasks", &json!({"sleepMs": 3000})).await;
        assert_eq!(status, 201, "{task}");
    }
    assert_eq!(server.count("running").await, 2, "killed while both run");
    server.kill();

    let mut again = ServeProcess::start(&db, &args);
    again.until_logged("whenever serve: resuming 2 unfinished tasks (the runs a crash interrupted run again");
    again
        .until("both tasks to settle", Duration::from_secs(30), || async {
            again.count("running").await == 0
        })
        .await;
    let (_, listed) = again.get("/v1/tasks").await;
    let tasks = listed["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 2, "{listed}");
    for task in tasks {
        let (_, task) = again
            .get(&format!("/v1/tasks/{}", task["id"].as_str().expect("id")))
            .await;
        assert_eq!(task["data"]["slept"], true, "{task}");
    }
    again.signal("TERM");
    assert!(again.wait_exit(Duration::from_secs(30)).success());

    // Started, it has said all it says of resuming (that comes before it listens).
    let third = ServeProcess::start(&db, &args);
    assert!(!third.stderr().contains("resuming"), "{}", third.stderr());
    third.kill();
}

#[test]
fn a_database_in_use_a_mistyped_url_or_a_port_in_use_is_refused_and_an_unknown_step_section_warned_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("whenever.db");
    let config = dir.path().join("whenever.toml");
    std::fs::write(&config, "[steps.fraud-detecton]\nconnectors = []\n").expect("config");
    let config = config.display().to_string();
    let server = ServeProcess::start(&db, &["--config", config.as_str()]);
    server.until_logged(
        "whenever serve: warning: the config's [steps.fraud-detecton] names no step this host serves \
         (it has crypto-payment, customer-notification",
    );

    // A second host on the same file would drive the same tasks again: refused.
    let second = Command::new(whenever_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_remove("WHENEVER_TOKEN")
        .output()
        .expect("whenever serve runs");
    refused(
        &second,
        2,
        &format!(
            "{} is in use by another process (a `whenever serve` on the same file?): a SQLite store \
             serves one host",
            db.display()
        ),
    );

    // A PostgreSQL URL missing its `:` is no path to make folders of.
    let mistyped = Command::new(whenever_binary())
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            "postgresql//app:s3cret@127.0.0.1/orders",
        ])
        .env_remove("WHENEVER_TOKEN")
        .output()
        .expect("whenever serve runs");
    refused(
        &mistyped,
        2,
        "--db postgresql//app:***@127.0.0.1/orders: this is no PostgreSQL URL",
    );
    assert!(!dir.path().join("postgresql").exists(), "no folders made of it");

    // A port in use is told before any database is made.
    let port = server.base.trim_start_matches("http://").to_string();
    let other = dir.path().join("other.db");
    let taken = Command::new(whenever_binary())
        .args(["serve", "--listen", port.as_str(), "--db"])
        .arg(&other)
        .env_remove("WHENEVER_TOKEN")
        .output()
        .expect("whenever serve runs");
    refused(&taken, 1, &format!("cannot listen on {port}"));
    assert!(!other.exists(), "no database made");
    server.kill();
}
