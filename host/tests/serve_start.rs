//! What `whenever serve` refuses or warns of as it starts: a SQLite file another host has open, a
//! `--db` meant as a PostgreSQL URL but mistyped, a port in use (before any database is made), a
//! config section for a step it does not serve.

mod support;

use std::process::Command;

use support::{ServeProcess, refused, whenever_binary};

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
