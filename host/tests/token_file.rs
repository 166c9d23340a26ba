//! `WHENEVER_TOKEN_FILE`: `whenever serve` reads the token that may do everything from a file and
//! reads it again when it changes, so it is rotated without a restart; the client commands read
//! the same variable; a server given both it and `WHENEVER_TOKEN` refuses to start.

mod support;

use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

use support::{ServeProcess, whenever_binary};

/// The status of `GET /v1/steps` with bearer `token`.
async fn status_with(server: &ServeProcess, token: &str) -> u16 {
    let answer = server
        .http
        .get(format!("{}/v1/steps", server.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("answered");
    answer.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_token_kept_in_a_file_is_rotated_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admin.token");
    std::fs::write(&file, "admin-old\n").expect("written");
    let server = ServeProcess::start_with_env(
        &dir.path().join("whenever.db"),
        &[] as &[&str],
        None,
        &[("WHENEVER_TOKEN_FILE", file.as_os_str())],
    );
    assert_eq!(status_with(&server, "admin-old").await, 200);
    assert_eq!(status_with(&server, "admin-new").await, 401);
    let deploy = server
        .http
        .put(format!("{}/v1/steps/write-a", server.base))
        .bearer_auth("admin-old")
        .body(std::fs::read(whenever_step_artifacts::testing::WRITE_A.component).expect("component"))
        .send()
        .await
        .expect("answered");
    assert_eq!(deploy.status().as_u16(), 201, "the file's token may do everything");

    // The client commands read the same variable.
    let steps = Command::new(whenever_binary())
        .args(["steps", "--json", "--server", &server.base])
        .env_remove("WHENEVER_TOKEN")
        .env("WHENEVER_TOKEN_FILE", &file)
        .output()
        .expect("whenever runs");
    assert!(steps.status.success(), "{}", String::from_utf8_lossy(&steps.stderr));
    assert!(String::from_utf8_lossy(&steps.stdout).contains("write-a"));

    std::fs::write(&file, "admin-new\n").expect("written");
    server
        .until("the new token to be accepted", Duration::from_secs(10), || async {
            status_with(&server, "admin-new").await == 200
        })
        .await;
    assert_eq!(status_with(&server, "admin-old").await, 401, "the old one is revoked");
    // The log names the file's secrets by fingerprint: `printf %s admin-new | sha256sum`.
    server.until_logged("token WHENEVER_TOKEN (secrets 600fbd64) read again from its file");
}

#[test]
fn a_server_or_a_client_given_both_token_variables_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("admin.token");
    std::fs::write(&file, "admin\n").expect("written");
    let db = dir.path().join("whenever.db").display().to_string();
    // The client refuses before it sends anything (no server listens on port 9).
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--db", &db][..],
        &["tasks", "--server", "http://127.0.0.1:9"][..],
    ] {
        let output = Command::new(whenever_binary())
            .args(args)
            .env("WHENEVER_TOKEN", "other")
            .env("WHENEVER_TOKEN_FILE", OsStr::new(&file))
            .output()
            .expect("whenever runs");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("WHENEVER_TOKEN and WHENEVER_TOKEN_FILE are both set"),
            "{args:?}: {output:?}"
        );
    }
}
