//! `[server] api_threads`: the API serves from that many threads of its own, named
//! `whenever-api`. A test binary of its own, so that the process holds no other server's
//! threads and they are counted exactly (in the end-to-end binary, the servers of the tests
//! running beside this one add theirs).

use std::time::Duration;

use serde_json::{Value, json};
use whenever::api::{self, ApiOptions};
use whenever::runtime::StepManifest;
use whenever::service::{Service, ServiceOptions};
use whenever_step_artifacts::testing::COMPLETES;

/// The threads of this process named `whenever-api`.
fn api_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("the process's threads")
        .filter_map(Result::ok)
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "whenever-api"))
        .count()
}

/// Polls until `api_threads() == count` (or 10 s pass); returns the count seen last.
async fn until_api_threads(count: usize) -> usize {
    for _ in 0..200 {
        if api_threads() == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api_threads()
}

/// Serves the API as `whenever serve` does, from `threads` threads, with `completes` deployed;
/// checks the threads it serves from, and that 24 requests made at once are all answered.
async fn serve_from(threads: usize) {
    assert_eq!(until_api_threads(0).await, 0, "no API serves yet");
    let dir = tempfile::tempdir().expect("tempdir");
    let service = Service::start(&ServiceOptions {
        db: dir.path().join("whenever.db"),
        no_steps: true,
        ..ServiceOptions::default()
    })
    .await
    .expect("service starts");
    let bytes = std::fs::read(COMPLETES.component).expect("component");
    let manifest = StepManifest::from_toml(&std::fs::read_to_string(COMPLETES.manifest).expect("manifest"))
        .expect("valid manifest");
    service
        .deploy_step(COMPLETES.name, bytes, manifest, None)
        .await
        .expect("deploys");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ApiOptions {
        threads,
        max_body_bytes: 64 << 10,
        ..ApiOptions::default()
    };
    let serving = tokio::spawn(api::serve_on_own_thread(
        listener,
        service.clone(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();

    // Answered once the API's runtime runs (built, with its workers, before it serves). This
    // route reads nothing: no thread of the runtime's blocking pool (named alike) is started.
    let answer = http.get(format!("{base}/nowhere")).send().await.expect("answered");
    assert_eq!(answer.status().as_u16(), 404);
    // The thread that owns the API's runtime, and with more than one, the runtime's workers (one
    // thread runs a single-threaded runtime itself).
    let expected = if threads > 1 { threads + 1 } else { 1 };
    assert_eq!(
        api_threads(),
        expected,
        "threads named whenever-api with {threads} API thread(s)"
    );

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let request = http.post(format!("{base}/v1/tasks?wait=20000"));
        requests.spawn(request.body(json!({"finish": true}).to_string()).send());
    }
    while let Some(answer) = requests.join_next().await {
        let response = answer.expect("joined").expect("answered");
        assert_eq!(response.status().as_u16(), 201);
        let task: Value = serde_json::from_str(&response.text().await.expect("body")).expect("a task");
        assert_eq!(task["status"], "completed", "{task}");
    }
    // The store's reads add threads of the runtime's blocking pool, named alike.
    assert!(api_threads() >= expected, "{} threads", api_threads());

    let _ = stop.send(());
    serving.await.expect("joined").expect("served");
    // Every one of them was the API's: none is left once it stopped.
    assert_eq!(until_api_threads(0).await, 0, "the API's threads end with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_from_as_many_threads_as_configured() {
    // One after the other: the threads counted are one server's.
    serve_from(3).await;
    serve_from(1).await;
    serve_from(2).await;
}
