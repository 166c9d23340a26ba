//! Hot deploys of the RetailMax steps while orders flow through the service's webhook over a real
//! socket: no task fails, history records which version ran, and orders waiting for a step that
//! was taken away complete when it is deployed again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use whenever::service::ServiceOptions;
use whenever::task::{RunOutcomeRecord, Task, TaskStatus};

use crate::service::{Server, db_in, encode, options, start_with};

/// The service with the bundled RetailMax steps on a fresh database in `dir`, serving on a
/// loopback port.
async fn start(dir: &tempfile::TempDir) -> Server {
    let service_options = ServiceOptions {
        db: db_in(dir),
        ..ServiceOptions::default()
    };
    start_with(&service_options, &[], options()).await
}

/// Delivers one order through the webhook; returns its task id.
async fn deliver(server: &Server, order: &Value) -> String {
    let (status, task) = server.post("/v1/hooks/checkout", order).await;
    assert_eq!(status, 201, "{task}");
    task["id"].as_str().expect("task id").to_string()
}

/// `PUT /v1/steps/{name}` with the manifest as `?manifest=`.
async fn deploy(server: &Server, name: &str, component: Vec<u8>, manifest: &str) -> Value {
    let path = format!("/v1/steps/{name}?manifest={}", encode(manifest));
    let (status, step) = server.call(reqwest::Method::PUT, &path, Some(component)).await;
    assert_eq!(status, 201, "{step}");
    step
}

/// Every task, once none is running (or 60 s pass).
async fn settled_tasks(server: &Server, ids: &[String]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for id in ids {
        let stored = server
            .service
            .wait_settled(id, Duration::from_secs(60))
            .await
            .expect("task exists");
        tasks.push(stored.task);
    }
    tasks
}

/// A bundled RetailMax step: its component and manifest text.
fn bundled(name: &str) -> (Vec<u8>, &'static str) {
    let step = whenever_step_artifacts::RETAILMAX
        .iter()
        .find(|s| s.name == name)
        .expect("a bundled step");
    (step.component.to_vec(), step.manifest)
}

/// The same component with a trailing custom section: another version of it.
fn another_version(bytes: &[u8], tag: u8) -> Vec<u8> {
    let mut other = bytes.to_vec();
    other.extend_from_slice(&[0, 5, 4, b'v', b'e', b'r', tag]);
    other
}

/// A manifest's text without `path` in its `reads` (which it must hold).
fn without_read(manifest: &str, path: &str) -> String {
    let quoted = format!("\"{path}\", ");
    assert!(manifest.contains(&quoted), "{path} is read: {manifest}");
    manifest.replace(&quoted, "")
}

fn order(i: usize) -> Value {
    let mut order = whenever::demo::seed_order();
    order["order"]["id"] = json!(format!("ORD-HOT-{i:04}"));
    order
}

fn assert_completed(task: &Task) {
    assert_eq!(task.status, TaskStatus::Completed, "{}: {:?}", task.id, task.message);
    assert_eq!(
        task.data["order"]["status"],
        json!("processing_complete"),
        "{}",
        task.id
    );
    for run in &task.runs {
        assert_eq!(
            run.outcome,
            Some(RunOutcomeRecord::Ok),
            "{}: {} failed",
            task.id,
            run.step
        );
    }
}

fn version_of(step: &Value) -> String {
    step["version"].as_str().expect("version").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_redeployed_under_load_fails_no_task_and_history_records_each_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Arc::new(start(&dir).await);
    let name = "customer-notification";
    let v1 = server.service.step(name).await.expect("bundled").version;

    // Four senders deliver orders until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::Mutex::new(Vec::<(String, DateTime<Utc>)>::new()));
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..4 {
        let (server, stop, sent) = (server.clone(), stop.clone(), sent.clone());
        senders.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = deliver(&server, &order(sender * 1000 + i)).await;
                sent.lock().unwrap_or_else(|p| p.into_inner()).push((id, Utc::now()));
                i += 1;
            }
        });
    }
    let sent_count = || sent.lock().unwrap_or_else(|p| p.into_inner()).len();
    let notified = || async {
        let ids: Vec<String> = sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        let mut count = 0;
        for id in ids {
            let task = server.service.task(&id).await.expect("stored").task;
            count += usize::from(task.runs.iter().any(|r| r.step == name));
        }
        count
    };
    for _ in 0..600 {
        if notified().await >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(notified().await >= 8, "orders reached {name} before the deploy");

    // Version 2, with a changed manifest, deployed while the orders flow. It no longer reads
    // the customer's first name, so that its e-mails greet "undefined" (JavaScript's way with a
    // missing value): each order's e-mail shows which version ran, not only its run's record.
    let (component, manifest) = bundled(name);
    let manifest_v2 = without_read(
        &format!("{manifest}\n# version 2\n").replace("Step 6:", "Step 6 (v2):"),
        "order.customer.firstName",
    );
    let before_deploy = Utc::now();
    let v2_step = deploy(&server, name, another_version(&component, b'2'), &manifest_v2).await;
    let after_deploy = Utc::now();
    let v2 = version_of(&v2_step);
    assert_ne!(v1, v2);
    assert_eq!(v2_step["versions"].as_array().map(Vec::len), Some(2));

    // More orders after the deploy, then the senders stop.
    let at_deploy = sent_count();
    for _ in 0..600 {
        if sent_count() >= at_deploy + 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = senders.join_next().await {
        done.expect("sender");
    }

    let sent = sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let ids: Vec<String> = sent.iter().map(|(id, _)| id.clone()).collect();
    let tasks = settled_tasks(&server, &ids).await;
    let serving: std::collections::BTreeMap<String, String> = server
        .service
        .steps()
        .await
        .expect("steps")
        .into_iter()
        .map(|s| (s.name, s.version))
        .collect();
    let mut seen = BTreeSet::new();
    let mut created_after = 0;
    for task in &tasks {
        assert_completed(task);
        let run = task
            .runs
            .iter()
            .find(|r| r.step == name)
            .expect("the order was notified");
        seen.insert(run.version.clone());
        assert!(
            run.version == v1 || run.version == v2,
            "{}: unknown version {}",
            task.id,
            run.version
        );
        // What ran is the version recorded: its e-mail greets as that version's manifest lets it.
        let greeting = if run.version == v1 { "Michael" } else { "undefined" };
        let emails: Vec<Value> = run
            .connector_calls
            .iter()
            .filter(|c| c.connector == "eMailSmtpOAuth" && c.method == "sendEmail")
            .map(|c| c.args.value())
            .collect();
        assert_eq!(
            emails.len(),
            1,
            "{}: one e-mail sent: {:?}",
            task.id,
            run.connector_calls
        );
        let html = emails[0]["html"].as_str().unwrap_or_default();
        assert!(
            html.contains(&format!("Thank you for your order, {greeting}!")),
            "{}: version {} sent {html}",
            task.id,
            run.version
        );
        // A run started before the deploy began ran version 1; every order created after the deploy
        // was answered ran version 2.
        if run.started_at < before_deploy {
            assert_eq!(run.version, v1, "{}: started before the deploy", task.id);
        }
        if task.created_at > after_deploy {
            assert_eq!(run.version, v2, "{}: created after the deploy", task.id);
            created_after += 1;
        }
        // The other steps kept their version.
        for other in task.runs.iter().filter(|r| r.step != name) {
            assert_eq!(
                Some(&other.version),
                serving.get(&other.step),
                "{}: {}",
                task.id,
                other.step
            );
        }
    }
    assert!(
        created_after >= 10,
        "orders were created after the deploy: {created_after}"
    );
    assert_eq!(seen, BTreeSet::from([v1.clone(), v2.clone()]), "both versions ran");
    let counts = server.service.store().count_tasks().await.expect("counts");
    assert_eq!(counts.get(&TaskStatus::Failed), None, "no task failed: {counts:?}");
    assert_eq!(counts.get(&TaskStatus::Completed), Some(&(tasks.len() as u64)));

    // The new manifest serves and persists with the version.
    let (status, step) = server.get(&format!("/v1/steps/{name}")).await;
    assert_eq!(status, 200);
    assert_eq!(step["version"], json!(v2));
    let stored = server
        .service
        .store()
        .step_version(name, &v2)
        .await
        .expect("reads")
        .expect("stored");
    assert_eq!(
        stored
            .manifest
            .description
            .as_deref()
            .map(|d| d.starts_with("Step 6 (v2):")),
        Some(true)
    );
    match Arc::try_unwrap(server) {
        Ok(server) => server.stop().await,
        Err(_) => panic!("the senders are done"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_waiting_for_a_removed_step_complete_when_it_is_deployed_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&dir).await;
    let name = "order-completion";
    let v1 = server.service.step(name).await.expect("bundled").version;
    let (status, _) = server
        .call(reqwest::Method::DELETE, &format!("/v1/steps/{name}"), None)
        .await;
    assert_eq!(status, 204);

    // Without the completion step the orders go all the way and then wait.
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(deliver(&server, &order(i)).await);
    }
    for task in settled_tasks(&server, &ids).await {
        assert_eq!(task.status, TaskStatus::Waiting, "{}: {:?}", task.id, task.message);
        assert_eq!(task.data["order"]["customerNotified"], json!(true));
        assert_eq!(task.data["order"]["internalTeamNotified"], json!(true));
        assert!(task.runs.iter().all(|r| r.step != name));
    }

    // A new version of the step is deployed: the waiting orders resume and complete on it. It
    // no longer reads the customer's last name, so that the name it gives each task shows it
    // ran: "undefined" (JavaScript's way with a missing value) where v1 writes "Foster".
    let (component, manifest) = bundled(name);
    let manifest_v2 = without_read(manifest, "order.customer.lastName");
    let v2 = version_of(&deploy(&server, name, another_version(&component, b'2'), &manifest_v2).await);
    assert_ne!(v1, v2);
    for id in &ids {
        let mut task = server.service.task(id).await.expect("stored").task;
        for _ in 0..400 {
            if task.status == TaskStatus::Completed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            task = server.service.task(id).await.expect("stored").task;
        }
        assert_completed(&task);
        let runs: Vec<&str> = task
            .runs
            .iter()
            .filter(|r| r.step == name)
            .map(|r| r.version.as_str())
            .collect();
        assert_eq!(
            runs,
            vec![v2.as_str()],
            "{id}: the redeployed step ran once, in its new version"
        );
        let order_id = task.data["order"]["id"].as_str().unwrap_or_default();
        assert_eq!(
            task.name.as_deref(),
            Some(format!("Order: {order_id} - Michael undefined ($1247.99)").as_str()),
            "{id}: named by the new version"
        );
    }
    server.stop().await;
}

/// A change of grants alone is a version of its own: recorded as a deploy, shown apart, and
/// undone by a rollback; the version serving deployed again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_change_alone_is_a_version_that_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&dir).await;
    let name = "vip-detection";
    let (component, _) = bundled(name);
    let narrow = deploy(&server, name, component.clone(), "connectors = []\n").await;
    let wide = deploy(
        &server,
        name,
        component.clone(),
        "connectors = [\"stripe\", \"paypal\"]\n",
    )
    .await;
    let (narrow, wide) = (version_of(&narrow), version_of(&wide));
    assert_ne!(narrow, wide, "grants changed: another version");
    // The version serving already, deployed again: 200, nothing changes.
    let path = format!(
        "/v1/steps/{name}?manifest={}",
        encode("connectors = [\"stripe\", \"paypal\"]\n")
    );
    let (status, again) = server.call(reqwest::Method::PUT, &path, Some(component.clone())).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(version_of(&again), wide);
    // After the bundled version's deploy at start: the two, and not the same version again.
    let changes = server.service.step_changes(name).await.expect("changes");
    let deployed: Vec<Option<&str>> = changes.iter().skip(1).map(|c| c.version.as_deref()).collect();
    assert_eq!(
        deployed,
        vec![Some(narrow.as_str()), Some(wide.as_str())],
        "{changes:?}"
    );

    let (status, rolled) = server
        .call(
            reqwest::Method::POST,
            &format!("/v1/steps/{name}/rollback"),
            Some(json!({"version": narrow}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    let serving = server.service.step(name).await.expect("serving");
    assert_eq!(serving.version, narrow);
    assert!(serving.connectors.is_empty(), "the grants rolled back: {serving:?}");
}

/// A manifest granting a connector the host does not have (a typo) is refused at deploy,
/// naming it and the host's connectors, and the version serving keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_of_an_unknown_connector_is_refused_and_the_old_version_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&dir).await;
    let name = "vip-detection";
    let serving = server.service.step(name).await.expect("serving").version;
    let (component, _) = bundled(name);
    let path = format!(
        "/v1/steps/{name}?manifest={}",
        encode("connectors = [\"slackCom\", \"strpie\"]\n")
    );
    let (status, error) = server.call(reqwest::Method::PUT, &path, Some(component)).await;
    assert_eq!(status, 422, "{error}");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`strpie` is no connector of this host") && message.contains("stripe"),
        "{error}"
    );
    assert_eq!(server.service.step(name).await.expect("serving").version, serving);
}

/// A step file dropped into the watched folder while the store cannot take writes (a database
/// another writer holds past the busy timeout here; a full disk alike) is tried again, and
/// serves once the store takes writes: the watcher used to count it handled whatever came of
/// the deploy, and the file then waited until it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_file_the_store_could_not_take_is_deployed_once_it_can() {
    use whenever::service::{Service, StepsSeen};
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = tempfile::tempdir().expect("steps folder");
    let db = db_in(&dir);
    let service_options = ServiceOptions {
        db: db.clone(),
        no_steps: true,
        ..ServiceOptions::default()
    };
    let service = Service::start(&service_options).await.expect("service starts");
    let watched = vec![folder.path().to_path_buf()];
    let watching = service.watch_steps(watched.clone(), Duration::from_millis(100), StepsSeen::now(&watched));
    // The start's own writes (the re-evaluation's mark) done first: queued behind the held
    // database, they would take its busy timeout in the deploy's stead.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let blocker = rusqlite::Connection::open(&db).expect("opened");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("the database held");

    let step = whenever_step_artifacts::testing::WRITE_A;
    for (from, to) in [(step.component, "write-a.wasm"), (step.manifest, "write-a.toml")] {
        let staged = folder.path().join(format!(".{to}.tmp"));
        std::fs::write(&staged, std::fs::read(from).expect("step file")).expect("written");
        std::fs::rename(&staged, folder.path().join(to)).expect("in place");
    }
    // The deploy waits out the store's busy timeout (10 s) and is refused as unavailable.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        service.serving_version("write-a"),
        None,
        "not deployed while the store is held"
    );
    blocker.execute_batch("COMMIT").expect("the database freed");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while service.serving_version("write-a").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the file was never deployed again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watching.abort();
    service.stop(Duration::from_secs(1)).await;
}
