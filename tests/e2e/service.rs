//! The service over a real socket: tasks, webhooks, patch, retry, listing, live deploys, errors,
//! auth, and persistence across a restart on the same database file.

use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use whenever::api::{self, ApiOptions, HookOptions, HookSignature};
use whenever::config::{DeliveryKey, SignatureScheme};
use whenever::runtime::StepManifest;
use whenever::service::{Service, ServiceOptions};
use whenever::store::{Store, TaskSave};
use whenever::task::{RunRecord, Task, TaskStatus};
use whenever_step_artifacts::StepFiles;
use whenever_step_artifacts::testing::*;

/// A running server on a loopback port.
pub(crate) struct Server {
    base: String,
    pub(crate) service: Service,
    http: reqwest::Client,
    token: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

pub(crate) fn options() -> ApiOptions {
    ApiOptions {
        max_body_bytes: 64 << 10,
        max_component_bytes: 64 << 20,
        ..ApiOptions::default()
    }
}

pub(crate) async fn start(db: &Path, steps: &[StepFiles], api_options: ApiOptions) -> Server {
    let service_options = ServiceOptions {
        db: db.to_path_buf(),
        no_steps: true,
        ..ServiceOptions::default()
    };
    start_with(&service_options, steps, api_options).await
}

/// Like [`start`], with other service options (a config file).
pub(crate) async fn start_with(
    service_options: &ServiceOptions,
    steps: &[StepFiles],
    api_options: ApiOptions,
) -> Server {
    let service = Service::start(service_options).await.expect("service starts");
    for step in steps {
        let (bytes, manifest) = component(step);
        service
            .deploy_step(step.name, bytes, manifest, None)
            .await
            .expect("test component deploys");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let token = api_options.token.clone();
    let serving = service.clone();
    let handle = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        // As `whenever serve` does: the API on a thread of its own.
        api::serve_on_own_thread(listener, serving, api_options, shutdown)
            .await
            .expect("serves");
    });
    Server {
        base,
        service,
        http: reqwest::Client::new(),
        token,
        stop: Some(stop),
        handle,
    }
}

/// Like [`start`], on a database in `dir` with `config` written as its config file.
pub(crate) async fn start_configured(
    dir: &tempfile::TempDir,
    config: &str,
    steps: &[StepFiles],
    api_options: ApiOptions,
) -> Server {
    let file = dir.path().join("whenever.toml");
    std::fs::write(&file, config).expect("config written");
    let service_options = ServiceOptions {
        db: db_in(dir),
        no_steps: true,
        config: Some(file),
        ..ServiceOptions::default()
    };
    start_with(&service_options, steps, api_options).await
}

pub(crate) fn component(step: &StepFiles) -> (Vec<u8>, StepManifest) {
    let bytes = std::fs::read(step.component).expect("component built");
    let manifest = StepManifest::from_toml(&std::fs::read_to_string(step.manifest).expect("manifest")).expect("valid");
    (bytes, manifest)
}

impl Server {
    /// The server's address, `http://127.0.0.1:PORT`.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The server's address without the scheme, `127.0.0.1:PORT` (for raw connections).
    pub(crate) fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// The client the server's requests go through.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.handle.await;
    }

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body.to_string().into_bytes()))
            .await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body.to_string().into_bytes()))
            .await
    }

    /// Creates a task and waits for it to settle.
    pub(crate) async fn run(&self, data: Value) -> Value {
        let (status, task) = self.post("/v1/tasks?wait=20000", &data).await;
        assert_eq!(status, 201, "{task}");
        task
    }

    /// Polls a task until `done` holds (or 20 s pass).
    pub(crate) async fn until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..400 {
            let (_, task) = self.get(&format!("/v1/tasks/{id}")).await;
            if done(&task) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task {id} never reached the expected state");
    }
}

/// Percent-encodes a query parameter.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub(crate) fn db_in(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("whenever.db")
}

/// The runs of steps in a task's history: its `runs` without the `$patch` and `$retry` entries
/// that record changes made through the API ([`api_entries`]).
pub(crate) fn runs(task: &Value) -> Vec<Value> {
    history(task, |step| !step.starts_with('$'))
}

/// The `$patch` and `$retry` entries of a task's history, in order.
pub(crate) fn api_entries(task: &Value) -> Vec<Value> {
    history(task, |step| step.starts_with('$'))
}

fn history(task: &Value, keep: impl Fn(&str) -> bool) -> Vec<Value> {
    let entries = task["runs"].as_array().map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter(|r| r["step"].as_str().is_some_and(&keep))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_complete_or_wait_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES, WRITE_A], options()).await;
    let done = server.run(json!({"finish": true})).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["data"]["done"], true);
    assert_eq!(done["tags"], json!(["finished", "test"]));

    let waiting = server.run(json!({"start": true})).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["data"]["a"], "A");
    assert_eq!(runs(&waiting)[0]["step"], "write-a");
    assert_eq!(runs(&waiting)[0]["logs"][0]["message"], "writing a");

    // Without ?wait the answer is immediate and the task settles in the background.
    let (status, created) = server.post("/v1/tasks", &json!({"start": true})).await;
    assert_eq!(status, 201);
    // The task as it was stored: its data untouched, with its first wave recorded, starting
    // (stored in the same write, so that a crash re-runs it).
    assert_eq!(created["status"], "running");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["data"], json!({"start": true}));
    assert_eq!(runs(&created).len(), 1, "{created}");
    assert_eq!(runs(&created)[0]["step"], "write-a");
    assert_eq!(runs(&created)[0]["outcome"], Value::Null);
    let id = created["id"].as_str().expect("id").to_string();
    let settled = server.until(&id, |t| t["status"] == "waiting").await;
    assert_eq!(settled["data"]["a"], "A");
    // A host of its own names no host in its runs (a cluster host does).
    assert_eq!(runs(&settled)[0].get("host"), None, "{settled}");

    let (status, _) = server.get("/nowhere/t_1").await;
    assert_eq!(status, 404);
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let text = metrics.as_str().expect("text");
    assert!(text.contains("whenever_tasks{status=\"completed\"} 1"), "{text}");
    // Requests by route template (never a raw path), method and status, and their latency.
    for line in [
        "whenever_http_requests_total{method=\"POST\",route=\"/v1/tasks\",status=\"201\"} 3\n",
        "whenever_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n",
        "whenever_http_request_duration_seconds_count{route=\"/v1/tasks\"} 3\n",
        "whenever_http_request_duration_seconds_bucket{route=\"/v1/tasks\",le=\"+Inf\"} 3\n",
    ] {
        assert!(text.contains(line), "{line}in {text}");
    }
    assert!(
        text.contains("whenever_http_requests_total{method=\"GET\",route=\"/v1/tasks/{id}\",status=\"200\"} "),
        "{text}"
    );
    assert!(!text.contains(&id), "no task id in a label: {text}");
    assert!(
        text.contains("whenever_runs_total{step=\"write-a\",outcome=\"ok\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("whenever_run_duration_seconds_bucket{step=\"completes\",le=\"+Inf\"} 1"),
        "{text}"
    );
    // The store's commits and the drives' saves: counted, each save and commit timed.
    let value = |name: &str| metric(text, name);
    let commits = value("whenever_store_commits_total{outcome=\"committed\"}");
    let writes = value("whenever_store_committed_writes_total");
    assert!(
        commits >= 1 && writes >= commits,
        "{commits} commits of {writes} writes"
    );
    assert_eq!(value("whenever_store_commit_duration_seconds_count"), commits);
    assert_eq!(value("whenever_store_commits_total{outcome=\"rolled_back\"}"), 0);
    // Three tasks created, each saved at least once by its drive.
    let saves = value("whenever_task_save_duration_seconds_count");
    assert!(saves >= 3 && saves <= writes, "{saves} saves of {writes} writes");
    assert_eq!(value("whenever_task_save_duration_seconds_bucket{le=\"+Inf\"}"), saves);
    // The readiness, as `/readyz` answers it.
    assert_eq!(value("whenever_ready"), 1);
    assert_eq!(value("whenever_ready_check{check=\"store\"}"), 1);
    server.stop().await;
}

/// A host of its own shares its store with no other: `GET /v1/hosts` says so, with the format
/// its build writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_of_its_own_lists_no_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES], options()).await;
    let (status, hosts) = server.get("/v1/hosts").await;
    assert_eq!(status, 200, "{hosts}");
    assert_eq!(
        hosts,
        json!({"shared": false, "superseded": false, "format": whenever::store::WRITE_FORMAT, "hosts": []})
    );
    server.stop().await;
}

/// The API serves from a thread of its own; the tasks it creates are driven on the service's
/// runtime. A task created from another runtime (as the API's) that is gone at once still
/// completes: its drive was not spawned there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_from_another_runtime_is_driven_on_the_services() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES], options()).await;
    let service = server.service.clone();
    let id = std::thread::spawn(move || {
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the caller's runtime");
        // The caller's runtime is dropped when this thread ends, right after the task is created.
        caller.block_on(async move {
            service
                .create_task(json!({"finish": true}))
                .await
                .expect("created")
                .task
                .id
        })
    })
    .join()
    .expect("the caller's thread");
    let settled = server
        .service
        .wait_settled(&id, Duration::from_secs(20))
        .await
        .expect("settled");
    assert_eq!(settled.task.status, TaskStatus::Completed, "{:?}", settled.task.message);
    assert_eq!(settled.task.data["done"], true);
    server.stop().await;
}

/// The drives counted in `/metrics` by the thread they ran on (`whenever-drive-N` or `runtime`).
async fn drives_by_thread(server: &Server) -> std::collections::BTreeMap<String, u64> {
    let (status, text) = server.get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    text.as_str()
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("whenever_drives_started_total{thread=\""))
        .filter_map(|rest| {
            let (thread, count) = rest.split_once("\"} ")?;
            Some((thread.to_string(), count.trim().parse().ok()?))
        })
        .collect()
}

/// Every drive runs on the drive threads (`[server] drive_threads`), spread over them, or with
/// `drive_threads = 0` on the runtime's workers; `/metrics` counts where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_run_on_the_drive_threads_or_the_runtime_as_configured() {
    const TASKS: u64 = 24;
    for (threads, expected) in [(3, "whenever-drive-"), (0, "runtime")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!("[server]\ndrive_threads = {threads}\n");
        let server = start_configured(&dir, &config, &[COMPLETES], options()).await;
        for _ in 0..TASKS {
            let task = server.run(json!({"finish": true})).await;
            assert_eq!(task["status"], "completed", "{task}");
        }
        let drives = drives_by_thread(&server).await;
        assert!(drives.keys().all(|t| t.starts_with(expected)), "{drives:?}");
        assert_eq!(drives.values().sum::<u64>(), TASKS, "{drives:?}");
        if threads > 1 {
            assert!(drives.len() > 1, "the tasks spread over the threads: {drives:?}");
        }
        server.stop().await;
    }
}

/// A client waiting for a task (`?wait`) is answered by the task's drive, from memory: the
/// answer must be the task exactly as a read of it shows afterwards (data, runs with their
/// connector calls, progress, revision and `updated_at`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waited_for_is_answered_exactly_as_a_read_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let service_options = ServiceOptions {
        db: db_in(&dir),
        ..ServiceOptions::default()
    };
    let server = start_with(&service_options, &[], options()).await;
    let mut order = whenever::demo::seed_order();
    order["order"]["id"] = json!("ORD-WAITED-1");
    let (status, waited) = server.post("/v1/hooks/shop?wait=20000", &order).await;
    assert_eq!(status, 201, "{waited}");
    assert_eq!(waited["status"], "completed", "{waited}");
    assert_eq!(runs(&waited).len(), 8, "{waited}");
    let id = waited["id"].as_str().expect("id");
    let (status, read) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(waited, read);
    // Waiting on a task that has settled already answers with it as stored.
    let (_, again) = server.get(&format!("/v1/tasks/{id}?wait=20000")).await;
    assert_eq!(again, read);

    // A task that waits for data, patched: the answer is the resumed drive's.
    let (status, created) = server
        .post("/v1/tasks?wait=20000", &json!({"note": "no step matches"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["status"], "waiting", "{created}");
    let id = created["id"].as_str().expect("id");
    let (_, read) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(created, read);
    let (status, patched) = server
        .patch(&format!("/v1/tasks/{id}?wait=20000"), &json!({"note": "still none"}))
        .await;
    assert_eq!(status, 200, "{patched}");
    let (_, read) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(patched, read);
    assert!(patched["revision"].as_u64() > created["revision"].as_u64(), "{patched}");
    server.stop().await;
}

/// `GET /v1/tasks/{id}?wait=MS` answers once the task settles; without `wait`, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn showing_a_task_with_wait_answers_once_it_settles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[], options()).await;
    // Each run of the looping step is under way for 400 ms, then fails at its deadline.
    crate::stopping::deploy_loop(&server.service, 400).await;
    let (status, created) = server.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let (status, now) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!((status, &now["status"]), (200, &json!("running")), "{now}");
    let (status, settled) = server.get(&format!("/v1/tasks/{id}?wait=20000")).await;
    assert_eq!((status, &settled["status"]), (200, &json!("failed")), "{settled}");
    let (status, refused) = server.get(&format!("/v1/tasks/{id}?wait=soon")).await;
    assert_eq!(status, 400, "{refused}");
    server.stop().await;
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_become_tasks_and_signed_hooks_check_the_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api_options = options();
    api_options
        .hooks
        .insert("shop".into(), HookOptions::signed_with(b"s3cret"));
    api_options.hooks.insert("open".into(), HookOptions::default());
    let server = start(&db_in(&dir), &[WRITE_A], api_options).await;

    let body = json!({"start": true, "order": {"id": 7}}).to_string();
    let signed = |signature: Option<String>| {
        let mut request = server
            .http
            .post(format!("{}/v1/hooks/shop?wait=20000", server.base))
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header("X-Whenever-Signature", signature);
        }
        request
    };
    let response = signed(Some(sign(b"s3cret", body.as_bytes())))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    let location = response.headers().get("location").cloned();
    let task: Value = response.json_value().await;
    assert_eq!(task["status"], "waiting");
    assert_eq!(task["data"]["a"], "A");
    // The answer says where the task lives, and that is where it is found.
    let location = location.expect("a Location header");
    let location = location.to_str().expect("ASCII");
    assert_eq!(location, format!("/v1/tasks/{}", task["id"].as_str().expect("id")));
    assert_eq!(server.get(location).await, (200, task.clone()));
    assert_eq!(task["data"]["$via"]["type"], "webhook");
    assert_eq!(task["data"]["$via"]["name"], "shop");
    assert!(
        task["data"]["$via"]["received"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(task["data"]["$via"]["id"].as_str().is_some());

    for bad in [
        None,
        Some(sign(b"wrong", body.as_bytes())),
        Some("sha256=zz".to_string()),
    ] {
        let response = signed(bad).send().await.expect("sent");
        assert_eq!(response.status().as_u16(), 401);
        let error: Value = response.json_value().await;
        assert_eq!(error["error"]["code"], "unauthorized");
    }

    // Where hooks have a secret, a server without tokens takes no delivery to a hook its config
    // does not name (here a misspelt `shop`, unsigned): it would be taken unchecked.
    let (_, before) = server.get("/v1/tasks").await;
    let (status, error) = server.post("/v1/hooks/shpo", &json!({"start": true})).await;
    assert_eq!(status, 404, "{error}");
    assert_eq!(
        error_message(&error),
        "no hook \"shpo\" in this server's config; where hooks have a secret, a server without \
         tokens takes deliveries only to the hooks its config names (open, shop)"
    );
    let (_, after) = server.get("/v1/tasks").await;
    assert_eq!(after["tasks"], before["tasks"], "no task was created");

    // A hook without a secret takes any JSON; a non-object is kept under `payload`.
    let (status, task) = server.post("/v1/hooks/open?wait=20000", &json!([1, 2])).await;
    assert_eq!(status, 201);
    assert_eq!(task["data"]["payload"], json!([1, 2]));
    assert_eq!(task["data"]["$via"]["name"], "open");
    // Kept under `payload` a body is a level deeper, and held to the task data's nesting.
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
    let (status, refused) = server
        .call(reqwest::Method::POST, "/v1/hooks/open", Some(deep(120)))
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        error_message(&refused).starts_with("the task data nests arrays and objects 121 levels deep"),
        "{refused}"
    );
    let (status, taken) = server
        .call(reqwest::Method::POST, "/v1/hooks/open", Some(deep(119)))
        .await;
    assert_eq!(status, 201, "{taken}");
    let (status, read) = server
        .get(&format!("/v1/tasks/{}", taken["id"].as_str().expect("id")))
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["data"]["$via"]["name"], "open", "{read}");

    // Without `?wait` the answer is the task as created, written from it and labelled as JSON.
    let response = server
        .http
        .post(format!("{}/v1/hooks/open", server.base))
        .body(r#"{"start": true}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let created: Value = response.json_value().await;
    assert_eq!(created["status"], "running", "{created}");
    assert_eq!(created["revision"], 1);
    assert_eq!(created["data"]["start"], true);
    assert_eq!(created["data"]["$via"]["name"], "open");
    assert_eq!(runs(&created)[0]["step"], "write-a", "{created}");

    server.stop().await;
}

/// A hook's name is read the same way by the token check and by the handler, decoded: a signed
/// hook whose name needs encoding is reached by its signature alone, and a name that only looks
/// like a signed hook's before decoding is not let through without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_s_name_is_decoded_alike_for_its_token_and_its_signature() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api_options = options();
    api_options.token = Some("admin-secret".into());
    let signed = || HookOptions {
        signed: Some(HookSignature {
            scheme: SignatureScheme::Whenever,
            secrets: whenever::api::secret_files::HookSecrets::fixed(b"s3cret".to_vec()),
        }),
        ..HookOptions::default()
    };
    api_options.hooks.insert("re turns".into(), signed());
    api_options.hooks.insert("x%41".into(), signed());
    let server = start(&db_in(&dir), &[WRITE_A], api_options).await;
    assert_eq!(delivered_signed(&server, "re%20turns", b"s3cret").await, 201);
    assert_eq!(delivered_signed(&server, "x%2541", b"s3cret").await, 201);
    // `x%41` is hook `xA`, which has no secret: signed or not, it needs the token.
    assert_eq!(delivered_signed(&server, "x%41", b"s3cret").await, 401);
    let unsigned = server
        .http()
        .post(format!("{}/v1/hooks/x%41", server.base()))
        .body(r#"{"start": true}"#)
        .send()
        .await
        .expect("answered");
    assert_eq!(unsigned.status().as_u16(), 401);
    server.stop().await;
}

/// A hook configured for a provider's signature scheme takes that provider's deliveries as they
/// come: Stripe's (`Stripe-Signature`, a signed timestamp, its event id as the delivery id) and
/// GitHub's (`X-Hub-Signature-256`). A delivery signed long ago is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_check_their_provider_s_signatures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api_options = options();
    let signed = |scheme| {
        Some(HookSignature {
            scheme,
            secrets: whenever::api::secret_files::HookSecrets::fixed(b"whsec_e2e".to_vec()),
        })
    };
    let stripe = HookOptions {
        signed: signed(SignatureScheme::Stripe {
            tolerance: Duration::from_secs(300),
        }),
        delivery_key: DeliveryKey::Pointer("/id".into()),
    };
    let github = HookOptions {
        signed: signed(SignatureScheme::GitHub),
        ..HookOptions::default()
    };
    api_options.hooks.insert("stripe".into(), stripe);
    api_options.hooks.insert("github".into(), github);
    let server = start(&db_in(&dir), &[WRITE_A], api_options).await;
    let deliver = |hook: &str, header: (&'static str, String), body: &str| {
        server
            .http
            .post(format!("{}/v1/hooks/{hook}", server.base))
            .header(header.0, header.1)
            .body(body.to_string())
            .send()
    };

    let event = json!({"id": "evt_1", "type": "payment_intent.succeeded", "start": true}).to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let stripe = |t: u64| {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_e2e").expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(event.as_bytes());
        (
            "Stripe-Signature",
            format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())),
        )
    };
    let first = deliver("stripe", stripe(now), &event).await.expect("sent");
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json_value().await;
    assert_eq!(first["data"]["$via"]["key"], "evt_1", "{first}");
    // Stripe retries with a fresh timestamp: the same event, the same task.
    let again = deliver("stripe", stripe(now + 5), &event).await.expect("sent");
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.json_value().await["id"], first["id"]);
    // A delivery signed ten minutes ago (a replay of a captured one) is refused.
    let stale = deliver("stripe", stripe(now - 600), &event).await.expect("sent");
    assert_eq!(stale.status().as_u16(), 401);
    let error = stale.json_value().await;
    assert!(error_message(&error).contains("more than the 300 s allowed"), "{error}");

    let push = json!({"ref": "main", "start": true}).to_string();
    let hub = ("X-Hub-Signature-256", sign(b"whsec_e2e", push.as_bytes()));
    let response = deliver("github", hub, &push).await.expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    // Signed as another scheme would sign it: refused, naming the header the hook reads.
    let ours = ("X-Whenever-Signature", sign(b"whsec_e2e", push.as_bytes()));
    let response = deliver("github", ours, &push).await.expect("sent");
    assert_eq!(response.status().as_u16(), 401);
    let error = response.json_value().await;
    assert!(error_message(&error).contains("x-hub-signature-256"), "{error}");
    server.stop().await;
}

/// The message of an API error answer (`{"error": {"message": …}}`); empty if it has none.
pub(crate) fn error_message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or_default()
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let text = self.text().await.expect("body");
        serde_json::from_str(&text).expect("JSON answer")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_resumes_a_waiting_task_and_a_running_task_refuses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[WAIT_FOR_A, INFINITE_LOOP], options()).await;
    let task = server.run(json!({"start": true})).await;
    assert_eq!(task["status"], "waiting");
    assert!(runs(&task).is_empty());
    let id = task["id"].as_str().expect("id");

    let (status, patched) = server
        .patch(&format!("/v1/tasks/{id}?wait=20000"), &json!({"a": "A", "start": null}))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["status"], "waiting");
    assert_eq!(patched["data"], json!({"a": "A", "waited": true}));
    assert_eq!(runs(&patched).len(), 1);
    let entries = api_entries(&patched);
    assert_eq!(entries.len(), 1, "{patched}");
    assert_eq!(entries[0]["step"], "$patch");
    assert_eq!(entries[0]["id"], 0, "before the run it made possible");
    assert_eq!(
        entries[0]["logs"][0]["message"],
        "data patched through the API (2 changes)"
    );
    // A patch that changes nothing (`{}`, or what the data holds already) leaves the task as it
    // is: at its revision (an ETag a client holds stays good), its history without an entry.
    for nothing in [json!({}), json!({"a": "A", "start": null})] {
        let (status, same) = server.patch(&format!("/v1/tasks/{id}?wait=20000"), &nothing).await;
        assert_eq!(status, 200, "{same}");
        assert_eq!(same["revision"], patched["revision"], "{nothing}: {same}");
        assert_eq!(same["runs"], patched["runs"], "{nothing}: {same}");
        assert_eq!(same["status"], "waiting", "{same}");
    }

    // A task with a run in flight (2 s until its deadline) refuses a patch.
    let (status, looping) = server.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201);
    let looping_id = looping["id"].as_str().expect("id");
    let (status, error) = server.patch(&format!("/v1/tasks/{looping_id}"), &json!({"x": 1})).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "conflict");

    let (status, error) = server.patch("/v1/tasks/t_nope", &json!({"x": 1})).await;
    assert_eq!(status, 404, "{error}");
    let (status, error) = server.patch(&format!("/v1/tasks/{id}"), &json!([1])).await;
    assert_eq!(status, 422, "{error}");
    // A JSON Patch is told apart from a merge patch, and nothing is applied.
    let answer = server
        .http()
        .patch(format!("{}/v1/tasks/{id}", server.base()))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op": "add", "path": "/x", "value": 1}]"#)
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status().as_u16(), 415);
    let error: Value = answer.json_value().await;
    assert!(error_message(&error).contains("JSON merge patch"), "{error}");
    server.stop().await;
}

/// The scheduler's `max_task_bytes` holds over the API too: a task created, or patched, past it
/// is refused (422, naming the setting), and a refused patch leaves the stored task as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_created_or_patched_past_its_size_limit_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_configured(&dir, "[scheduler]\nmax_task_bytes = 2048\n", &[WAIT_FOR_A], options()).await;
    let (status, error) = server
        .post("/v1/tasks", &json!({"start": true, "blob": "x".repeat(3000)}))
        .await;
    assert_eq!(status, 422, "{error}");
    let message = error_message(&error);
    assert!(
        message
            .contains("the task data would be 3024 bytes as JSON, over the limit of 2048 ([scheduler] max_task_bytes)"),
        "{message}"
    );

    let task = server.run(json!({"start": true})).await;
    assert_eq!(task["status"], "waiting", "{task}");
    let id = task["id"].as_str().expect("id");
    let (status, error) = server
        .patch(&format!("/v1/tasks/{id}"), &json!({"blob": "x".repeat(2100)}))
        .await;
    assert_eq!(status, 422, "{error}");
    assert!(error_message(&error).contains("max_task_bytes"), "{error}");
    let (_, stored) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(stored["data"], json!({"start": true}), "{stored}");
    assert_eq!(stored["revision"], task["revision"], "nothing saved");
    // A patch within the limit is taken.
    let (status, patched) = server
        .patch(&format!("/v1/tasks/{id}"), &json!({"blob": "x".repeat(1000)}))
        .await;
    assert_eq!(status, 200, "{patched}");

    // Data nested past 120 levels is refused, created or patched: an answer holding it (a
    // history entry's change value sits five levels down) would be past what JSON parsers that
    // stop at 128 read, this host's CLI among them. 120 levels are taken, and read back.
    let nested = |depth: usize| -> Value {
        serde_json::from_str(&format!("{}{}", "[".repeat(depth), "]".repeat(depth))).expect("JSON")
    };
    let (status, error) = server.post("/v1/tasks", &json!({"deep": nested(120)})).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(
        error_message(&error),
        "the task data nests arrays and objects 121 levels deep, past the 120 a task's data may (so \
         that every answer holding it reads in JSON parsers that stop at 128)"
    );
    let (status, error) = server
        .patch(&format!("/v1/tasks/{id}"), &json!({"deep": nested(120)}))
        .await;
    assert_eq!(status, 422, "{error}");
    assert!(
        error_message(&error).contains("as patched nests arrays and objects 121 levels deep"),
        "{error}"
    );
    let (status, patched) = server
        .patch(&format!("/v1/tasks/{id}"), &json!({"deep": nested(119)}))
        .await;
    assert_eq!(status, 200, "{patched}");
    let (status, read) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["data"]["deep"], nested(119), "read back whole");
    server.stop().await;
}

/// A patch of a completed task corrects its data and leaves it completed: no run starts on it
/// once a step completed it, and resuming it left it waiting on nothing, out of retention's reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_of_a_completed_task_keeps_it_completed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES, WRITE_A], options()).await;
    let task = server.run(json!({"finish": true})).await;
    assert_eq!(task["status"], "completed", "{task}");
    let id = task["id"].as_str().expect("id");
    let (status, patched) = server
        .patch(
            &format!("/v1/tasks/{id}?wait=20000"),
            &json!({"note": "gift wrap", "start": true}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["status"], "completed", "{patched}");
    assert_eq!(patched["data"]["note"], "gift wrap");
    assert!(patched["revision"].as_u64() > task["revision"].as_u64(), "{patched}");
    // Recorded; and write-a, whose condition the patch made hold, did not run.
    assert_eq!(api_entries(&patched).len(), 1, "{patched}");
    assert_eq!(runs(&patched).len(), runs(&task).len(), "{patched}");
    let (_, stored) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(stored["status"], "completed", "{stored}");
    assert_eq!(stored["data"]["note"], "gift wrap");
    server.stop().await;
}

/// `GET /v1/tasks/{id}/conditions`: each serving step's condition against the task's data, so a
/// person sees what a waiting task waits on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_s_conditions_say_what_it_waits_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[WAIT_FOR_A, RETURNS_ERROR], options()).await;
    let waiting = server.run(json!({"start": true})).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    let id = waiting["id"].as_str().expect("id");
    let (status, conditions) = server.get(&format!("/v1/tasks/{id}/conditions")).await;
    assert_eq!(status, 200, "{conditions}");
    assert_eq!(conditions["id"], json!(id));
    assert_eq!(conditions["status"], "waiting");
    assert_eq!(conditions["revision"], waiting["revision"]);
    let standing = |answer: &Value, step: &str| -> Value {
        let steps = answer["steps"].as_array().cloned().unwrap_or_default();
        let found = steps.into_iter().find(|s| s["step"] == step);
        found.unwrap_or_else(|| panic!("{step} in {answer}"))
    };
    let wait_for_a = standing(&conditions, "wait-for-a");
    assert_eq!(wait_for_a["state"], "fails", "{conditions}");
    assert_eq!(wait_for_a["reason"], "a: missing", "{conditions}");
    assert!(wait_for_a["version"].is_string(), "{conditions}");
    assert_eq!(standing(&conditions, "returns-error")["reason"], "failPlease: missing");

    // A failed step whose condition still holds ran on these values: it waits for a change.
    let failed = server.run(json!({"failPlease": true})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let failed_id = failed["id"].as_str().expect("id");
    let (status, conditions) = server.get(&format!("/v1/tasks/{failed_id}/conditions")).await;
    assert_eq!(status, 200, "{conditions}");
    assert_eq!(
        standing(&conditions, "returns-error"),
        json!({"step": "returns-error", "version": standing(&conditions, "returns-error")["version"],
               "state": "ran", "runs": 1, "last_failed": true}),
        "{conditions}"
    );

    let (status, error) = server.get("/v1/tasks/t_nope/conditions").await;
    assert_eq!(status, 404, "{error}");
    server.stop().await;
}

/// A patch that leaves a failed step's condition holding leaves the task failed (the step ran on
/// those values); one that makes it false (a person chose another way) no longer fails the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_that_makes_a_failure_moot_resumes_the_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[RETURNS_ERROR, WRITE_A], options()).await;
    let task = server.run(json!({"failPlease": true})).await;
    assert_eq!(task["status"], "failed", "{task}");
    let id = task["id"].as_str().expect("id");

    let (status, still) = server
        .patch(&format!("/v1/tasks/{id}?wait=20000"), &json!({"note": "looked at it"}))
        .await;
    assert_eq!(status, 200, "{still}");
    assert_eq!(
        still["status"], "failed",
        "the failed step's condition still holds: {still}"
    );

    let (status, moved) = server
        .patch(
            &format!("/v1/tasks/{id}?wait=20000"),
            &json!({"failPlease": false, "start": true}),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["status"], "waiting", "{moved}");
    assert!(moved["message"].is_null(), "{moved}");
    assert_eq!(moved["data"]["a"], "A", "the way the patch opened was taken: {moved}");
    server.stop().await;
}

/// A patch that changes no data still counts when it makes a failure moot: a new version of the
/// failed step whose condition the data does not meet leaves the task failed (a re-evaluation
/// runs no step whose condition fails), and an empty patch settles it as waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_patch_settles_a_failure_a_new_version_made_moot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[RETURNS_ERROR], options()).await;
    let task = server.run(json!({"failPlease": true})).await;
    assert_eq!(task["status"], "failed", "{task}");
    let id = task["id"].as_str().expect("id");
    // Version 2 of returns-error asks for `start`, which the task does not have.
    let (write_b, _) = component(&WRITE_B);
    let (status, v2) = server
        .call(reqwest::Method::PUT, "/v1/steps/returns-error", Some(write_b))
        .await;
    assert_eq!(status, 201, "{v2}");
    let (_, still) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(still["status"], "failed", "{still}");

    let (status, settled) = server.patch(&format!("/v1/tasks/{id}?wait=20000"), &json!({})).await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(settled["status"], "waiting", "{settled}");
    assert!(settled["revision"].as_u64() > still["revision"].as_u64(), "{settled}");
    assert_eq!(api_entries(&settled).len(), 1, "the patch is in the history: {settled}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runs_a_failed_step_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[RETURNS_ERROR, WRITE_A, COMPLETES], options()).await;
    let task = server.run(json!({"failPlease": true})).await;
    assert_eq!(task["status"], "failed");
    assert!(
        task["message"].as_str().is_some_and(|m| m.contains("returns-error")),
        "{task}"
    );
    let id = task["id"].as_str().expect("id");

    let (status, retried) = server
        .post(
            &format!("/v1/tasks/{id}/retry?wait=20000"),
            &json!({"step": "returns-error"}),
        )
        .await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "failed");
    let numbers: Vec<u64> = runs(&retried).iter().filter_map(|r| r["number"].as_u64()).collect();
    assert_eq!(numbers, vec![1, 2]);
    let entries = api_entries(&retried);
    assert_eq!(entries.len(), 1, "{retried}");
    assert_eq!(
        (&entries[0]["step"], &entries[0]["id"]),
        (&json!("$retry"), &json!(1)),
        "between the failed run and its retry: {retried}"
    );

    // An empty body retries every failed step.
    let (status, again) = server
        .call(reqwest::Method::POST, &format!("/v1/tasks/{id}/retry?wait=20000"), None)
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(runs(&again).len(), 3);

    // A misspelt key is refused by name, not read as "retry every failed step".
    let (status, error) = server
        .post(&format!("/v1/tasks/{id}/retry"), &json!({"stepp": "returns-error"}))
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(error_message(&error).contains("unknown field `stepp`"), "{error}");
    let (_, unchanged) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(runs(&unchanged).len(), 3, "nothing ran: {unchanged}");

    let (status, error) = server
        .post(&format!("/v1/tasks/{id}/retry"), &json!({"step": "write-a"}))
        .await;
    assert_eq!(status, 422, "a step that never ran on the task: {error}");
    let (status, _) = server
        .post(&format!("/v1/tasks/{id}/retry"), &json!({"step": "no-such-step"}))
        .await;
    assert_eq!(status, 422);

    // A step whose condition no longer holds would run nothing: its retry is refused, saying why.
    let (status, moved) = server
        .patch(&format!("/v1/tasks/{id}?wait=20000"), &json!({"failPlease": false}))
        .await;
    assert_eq!((status, &moved["status"]), (200, &json!("waiting")), "{moved}");
    let (status, error) = server
        .post(&format!("/v1/tasks/{id}/retry"), &json!({"step": "returns-error"}))
        .await;
    assert_eq!(status, 422, "{error}");
    let message = error_message(&error);
    assert!(
        message.contains("step returns-error would not run") && message.contains("failPlease"),
        "{message}"
    );

    // No step runs on a completed task: a retry is refused and leaves it completed.
    let done = server.run(json!({"finish": true})).await;
    assert_eq!(done["status"], "completed", "{done}");
    let done_id = done["id"].as_str().expect("id");
    let (status, error) = server
        .post(&format!("/v1/tasks/{done_id}/retry"), &json!({"step": "completes"}))
        .await;
    assert_eq!(status, 409, "{error}");
    assert!(error_message(&error).contains("is completed"), "{error}");
    let (_, still) = server.get(&format!("/v1/tasks/{done_id}")).await;
    assert_eq!(
        (&still["status"], &still["revision"]),
        (&done["status"], &done["revision"])
    );

    let (status, _) = server
        .post("/v1/tasks/t_nope/retry", &json!({"step": "returns-error"}))
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_every_failed_step_runs_those_whose_condition_still_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[RETURNS_ERROR, PANICS], options()).await;
    let task = server.run(json!({"failPlease": true, "panic": true})).await;
    assert_eq!(task["status"], "failed", "{task}");
    let id = task["id"].as_str().expect("id");
    // returns-error's condition no longer holds; panics read nothing the patch changed, so the
    // task stays failed by it.
    let (status, patched) = server
        .patch(&format!("/v1/tasks/{id}?wait=20000"), &json!({"failPlease": false}))
        .await;
    assert_eq!((status, &patched["status"]), (200, &json!("failed")), "{patched}");

    let (status, retried) = server
        .call(reqwest::Method::POST, &format!("/v1/tasks/{id}/retry?wait=20000"), None)
        .await;
    assert_eq!(status, 200, "{retried}");
    let ran = |step: &str| runs(&retried).iter().filter(|r| r["step"] == step).count();
    assert_eq!((ran("panics"), ran("returns-error")), (2, 1), "{retried}");
    let entries = api_entries(&retried);
    let said = entries.last().map(|e| e["logs"][0]["message"].clone());
    assert_eq!(
        said,
        Some(json!("retry of panics asked for through the API")),
        "{retried}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_leaves_out_a_failed_step_whose_condition_another_step_made_false() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[FAILS_BEFORE_A, WRITE_A, PANICS], options()).await;
    // fails-before-a and write-a run together; write-a's `a` then makes the failed one's
    // condition false, with no patch to clear its failure.
    let task = server.run(json!({"start": true, "panic": true})).await;
    assert_eq!(
        (&task["status"], &task["data"]["a"]),
        (&json!("failed"), &json!("A")),
        "{task}"
    );
    let id = task["id"].as_str().expect("id");
    let mut failed: Vec<String> = runs(&task)
        .iter()
        .filter(|r| r["outcome"].get("error").is_some())
        .filter_map(|r| r["step"].as_str().map(str::to_string))
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, ["fails-before-a", "panics"], "{task}");

    let (status, retried) = server
        .call(reqwest::Method::POST, &format!("/v1/tasks/{id}/retry?wait=20000"), None)
        .await;
    assert_eq!(status, 200, "{retried}");
    let ran = |step: &str| runs(&retried).iter().filter(|r| r["step"] == step).count();
    assert_eq!(
        (ran("panics"), ran("fails-before-a"), ran("write-a")),
        (2, 1, 1),
        "{retried}"
    );
    let said = api_entries(&retried)
        .last()
        .and_then(|e| e["logs"][0]["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    assert!(
        said.starts_with("retry of panics asked for through the API; left out: step fails-before-a would not run"),
        "{said}"
    );

    // Its failure, moot, no longer fails the task: panics' alone does.
    let stored = server.service.task(id).await.expect("read");
    let failed = |step: &str| stored.task.progress.get(step).map(|p| p.last_failed);
    assert_eq!((failed("fails-before-a"), failed("panics")), (Some(false), Some(true)));

    // Asked for by name, it is refused, and the task is left as it was.
    let (status, error) = server
        .post(&format!("/v1/tasks/{id}/retry"), &json!({"step": "fails-before-a"}))
        .await;
    assert_eq!(status, 422, "{error}");
    assert!(
        error_message(&error).contains("step fails-before-a would not run"),
        "{error}"
    );
    let (_, after) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(after["revision"], retried["revision"], "{after}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_filters_by_status_and_tag_and_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES, WRITE_A], options()).await;
    let mut completed = Vec::new();
    for _ in 0..5 {
        completed.push(
            server.run(json!({"finish": true})).await["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    for _ in 0..3 {
        server.run(json!({"start": true})).await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/tasks?status=completed&limit=2".to_string();
    loop {
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let tasks = page["tasks"].as_array().expect("tasks");
        assert!(tasks.len() <= 2);
        assert!(tasks.iter().all(|t| t["status"] == "completed"));
        seen.extend(tasks.iter().map(|t| t["id"].as_str().expect("id").to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/tasks?status=completed&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    completed.reverse();
    assert_eq!(seen, completed, "newest first, each once");

    let (_, page) = server.get("/v1/tasks?tag=finished&limit=100").await;
    assert_eq!(page["tasks"].as_array().map(Vec::len), Some(5));
    let (_, page) = server.get("/v1/tasks?status=waiting").await;
    assert_eq!(page["tasks"].as_array().map(Vec::len), Some(3));
    let (status, error) = server.get("/v1/tasks?status=bogus").await;
    assert_eq!(status, 400);
    assert!(error_message(&error).contains("bogus"), "{error}");
    let (status, _) = server.get("/v1/tasks?limit=abc").await;
    assert_eq!(status, 400);
    // A cursor past the stores' integers, or not digits, is a bad request, not a missing page.
    for cursor in ["9223372036854775808", "-1", "+5", "x"] {
        let (status, error) = server.get(&format!("/v1/tasks?cursor={}", encode(cursor))).await;
        assert_eq!(status, 400, "{cursor}: {error}");
    }
    let (status, _) = server.get("/v1/tasks?cursor=9223372036854775807").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_deployed_over_http_picks_up_the_tasks_waiting_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[], options()).await;
    let task = server.run(json!({"a": "A"})).await;
    assert_eq!(task["status"], "waiting");
    let id = task["id"].as_str().expect("id");

    let (bytes, _) = component(&WAIT_FOR_A);
    let (status, step) = server
        .call(reqwest::Method::PUT, "/v1/steps/wait-for-a", Some(bytes))
        .await;
    assert_eq!(status, 201, "{step}");
    assert_eq!(step["name"], "wait-for-a");
    let version = step["version"].as_str().expect("version").to_string();

    let resumed = server
        .until(id, |t| t["data"]["waited"] == true && t["status"] == "waiting")
        .await;
    assert_eq!(runs(&resumed)[0]["version"], version.as_str());
    let (_, steps) = server.get("/v1/steps").await;
    assert_eq!(steps["steps"][0]["name"], "wait-for-a");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_component_is_refused_and_the_old_version_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[WRITE_A], options()).await;
    let (_, before) = server.get("/v1/steps/write-a").await;
    let (status, error) = server
        .call(
            reqwest::Method::PUT,
            "/v1/steps/write-a",
            Some(b"\0asm this is not a component".to_vec()),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["code"], "unprocessable");
    assert!(error_message(&error).contains("write-a"), "{error}");
    let (status, error) = server
        .call(
            reqwest::Method::PUT,
            "/v1/steps/write-a?manifest=connectorz%3D1",
            Some(component(&WRITE_A).0),
        )
        .await;
    assert_eq!(status, 422, "a bad manifest: {error}");
    let (_, after) = server.get("/v1/steps/write-a").await;
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["versions"].as_array().map(Vec::len), Some(1));
    let task = server.run(json!({"start": true})).await;
    assert_eq!(task["data"]["a"], "A");
    server.stop().await;
}

/// The same component with a trailing custom section: another version of it.
fn another_version(bytes: &[u8], tag: u8) -> Vec<u8> {
    let mut other = bytes.to_vec();
    other.extend_from_slice(&[0, 5, 4, b'v', b'e', b'r', tag]);
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_deploys_record_versions_keep_runs_in_flight_and_roll_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[], options()).await;
    // Two versions of step `writer` that behave apart, so that each task's data shows which code
    // ran, not only the version its record names: v1 is write-a (writes `a`), v2 write-b
    // (writes `b`); both match `{"start": true}`.
    let (write_a, _) = component(&WRITE_A);
    let (write_b, _) = component(&WRITE_B);
    let (status, v1) = server
        .call(reqwest::Method::PUT, "/v1/steps/writer", Some(write_a.clone()))
        .await;
    assert_eq!(status, 201, "{v1}");
    let first = server.run(json!({"start": true})).await;
    assert_eq!(first["data"], json!({"start": true, "a": "A"}), "v1 ran: {first}");
    let (status, v2) = server
        .call(reqwest::Method::PUT, "/v1/steps/writer", Some(write_b))
        .await;
    assert_eq!(status, 201, "{v2}");
    assert_ne!(v1["version"], v2["version"]);
    let second = server.run(json!({"start": true})).await;
    assert_eq!(second["data"], json!({"start": true, "b": "B"}), "v2 ran: {second}");
    assert_eq!(runs(&first)[0]["version"], v1["version"]);
    assert_eq!(runs(&second)[0]["version"], v2["version"]);
    assert_eq!(v2["versions"].as_array().map(Vec::len), Some(2));

    // Rollback: the first version serves again.
    let (status, rolled) = server
        .post("/v1/steps/writer/rollback", &json!({"version": v1["version"]}))
        .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["version"], v1["version"]);
    let third = server.run(json!({"start": true})).await;
    assert_eq!(third["data"], json!({"start": true, "a": "A"}), "v1 ran again: {third}");
    assert_eq!(runs(&third)[0]["version"], v1["version"]);
    // The version serving already, rolled back to or deployed again, changes nothing: 200, and
    // no change recorded.
    let (_, before) = server.get("/v1/steps/writer/changes").await;
    let (status, again) = server
        .post("/v1/steps/writer/rollback", &json!({"version": v1["version"]}))
        .await;
    assert_eq!((status, &again["version"]), (200, &v1["version"]), "{again}");
    let (status, same) = server
        .call(reqwest::Method::PUT, "/v1/steps/writer", Some(write_a.clone()))
        .await;
    assert_eq!((status, &same["version"]), (200, &v1["version"]), "{same}");
    let (_, after) = server.get("/v1/steps/writer/changes").await;
    assert_eq!(after, before, "nothing recorded");
    // A misspelt key is named, not read as a missing version; nothing changes.
    let (status, refused) = server
        .post("/v1/steps/writer/rollback", &json!({"versoin": v2["version"]}))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(error_message(&refused).contains("versoin"), "{refused}");
    // An array is not read as the fields in order (serde's way with a struct).
    let (status, refused) = server.post("/v1/steps/writer/rollback", &json!([v2["version"]])).await;
    assert_eq!(status, 400, "{refused}");
    assert!(error_message(&refused).contains("it is an array"), "{refused}");
    // An unknown version is answered with the versions there are; an unknown step as such.
    let (status, unknown) = server
        .post("/v1/steps/writer/rollback", &json!({"version": "000000000000"}))
        .await;
    assert_eq!(status, 404, "{unknown}");
    for version in [&v1["version"], &v2["version"]] {
        assert!(
            error_message(&unknown).contains(version.as_str().unwrap_or("?")),
            "{unknown}"
        );
    }
    let (status, unknown) = server
        .post("/v1/steps/nostep/rollback", &json!({"version": "000000000000"}))
        .await;
    assert_eq!(status, 404, "{unknown}");
    assert!(
        error_message(&unknown).contains("step nostep not found: no version of it was ever deployed"),
        "{unknown}"
    );
    let fourth = server.run(json!({"start": true})).await;
    assert_eq!(
        runs(&fourth)[0]["version"],
        v1["version"],
        "the refused rollbacks changed nothing"
    );
    assert_eq!(fourth["data"], json!({"start": true, "a": "A"}), "{fourth}");

    // A run in flight finishes on the version it started with. v1 of `slow` loops until its
    // deadline of 8 s (time enough for v2 to be compiled and swapped in on a loaded machine); v2 is the same loop with a deadline of 100 ms, so that a run of v2 would
    // show in its duration.
    const SLOW_V1_DEADLINE_MS: u64 = 8_000;
    let (looping, _) = component(&INFINITE_LOOP);
    let deploy_slow = async |bytes: Vec<u8>, timeout_ms: u64| {
        let path = format!(
            "/v1/steps/slow?manifest={}",
            encode(&format!("[limits]\ntimeout_ms = {timeout_ms}\n"))
        );
        server.call(reqwest::Method::PUT, &path, Some(bytes)).await
    };
    let (status, slow_v1) = deploy_slow(looping.clone(), SLOW_V1_DEADLINE_MS).await;
    assert_eq!(status, 201, "{slow_v1}");
    // Nothing else is driven now (the re-evaluations of the deploys above are over), so that
    // the next drive to start is the looping task's.
    for _ in 0..400 {
        if server.service.drives_under_way() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(server.service.drives_under_way(), 0, "the writer tasks are settled");
    let (status, task) = server.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().expect("id");
    // The task as created already holds its first run's record (outcome empty): wait for its
    // drive instead, and give the run a moment to begin; that it began before the deploy is
    // checked below from its end and duration.
    for _ in 0..400 {
        if server.service.drives_under_way() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        server.service.drives_under_way() >= 1,
        "the looping task's drive started"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deploying = chrono::Utc::now();
    let (status, slow_v2) = deploy_slow(another_version(&looping, b'2'), 100).await;
    let deployed = chrono::Utc::now();
    assert_eq!(status, 201, "{slow_v2}");
    assert_ne!(slow_v1["version"], slow_v2["version"]);
    let (_, during) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(
        during["status"], "running",
        "still in flight after the deploy: {during}"
    );
    let done = server.until(id, |t| t["status"] != "running").await;
    assert_eq!(done["status"], "failed", "{done}");
    let ran = runs(&done);
    assert_eq!(ran.len(), 1, "one run, not redone on v2: {done}");
    let run = &ran[0];
    assert_eq!(run["version"], slow_v1["version"], "{done}");
    assert_eq!(run["outcome"]["error"]["kind"], "deadline", "{done}");
    let duration_ms = run["duration_ms"].as_f64().expect("duration_ms");
    assert!(
        duration_ms >= SLOW_V1_DEADLINE_MS as f64,
        "it ran to v1's deadline, not v2's: {done}"
    );
    // It ran over the whole deploy: begun before it was asked for, ended after it was made.
    let ended = chrono::DateTime::parse_from_rfc3339(run["ended_at"].as_str().expect("ended_at"))
        .expect("RFC 3339")
        .with_timezone(&chrono::Utc);
    let began = ended - chrono::Duration::microseconds((duration_ms * 1000.0) as i64);
    assert!(
        began < deploying && ended > deployed,
        "ran from {began} to {ended}, deployed from {deploying} to {deployed}"
    );

    let (status, _) = server.call(reqwest::Method::DELETE, "/v1/steps/writer", None).await;
    assert_eq!(status, 204);
    let (status, _) = server.get("/v1/steps/writer").await;
    assert_eq!(status, 404);
    let (status, _) = server.call(reqwest::Method::DELETE, "/v1/steps/writer", None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// The body decides, not its `Content-Type`: JSON sent as a form (`curl -d` without a header)
/// is taken, while a body that is not JSON, sent as another type, is a 415 naming that type, on
/// every route that takes JSON; a malformed body sent as JSON stays a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_as_another_media_type_is_taken_if_it_is_json_and_else_refused_naming_the_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[WRITE_A], options()).await;
    let send = |method: reqwest::Method, path: &str, content_type: &'static str, body: &'static [u8]| {
        let request = server
            .http()
            .request(method, format!("{}{path}", server.base()))
            .header("content-type", content_type)
            .body(body);
        async move {
            let answer = request.send().await.expect("answered");
            let status = answer.status().as_u16();
            (status, answer.json_value().await)
        }
    };
    const FORM: &str = "application/x-www-form-urlencoded";
    let (status, created) = send(reqwest::Method::POST, "/v1/tasks", FORM, br#"{"start": true}"#).await;
    assert_eq!(status, 201, "JSON sent as a form: {created}");
    let id = created["id"].as_str().expect("id").to_string();

    let (status, error) = send(reqwest::Method::POST, "/v1/tasks", FORM, b"start=true&a=1").await;
    assert_eq!(status, 415, "{error}");
    assert_eq!(error["error"]["code"], "unsupported_media_type");
    let message = error_message(&error);
    assert!(
        message.contains("sent as application/x-www-form-urlencoded and is not JSON")
            && message.contains("application/json"),
        "{message}"
    );
    for json_type in [
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/problem+json",
    ] {
        let (status, error) = send(reqwest::Method::POST, "/v1/tasks", json_type, b"start=true").await;
        assert_eq!(status, 400, "malformed, sent as {json_type}: {error}");
        assert!(error_message(&error).contains("malformed JSON"), "{error}");
    }
    // Not UTF-8, which JSON must be.
    let (status, error) = send(reqwest::Method::POST, "/v1/tasks", "text/plain", b"{\"caf\xe9\": 1}").await;
    assert_eq!(status, 415, "Latin-1: {error}");
    let (status, error) = send(reqwest::Method::POST, "/v1/tasks", "text/plain", b"").await;
    assert_eq!(status, 400, "an empty body is empty whatever its type: {error}");

    // The other routes that take JSON, each refusing without a change.
    let patch = format!("/v1/tasks/{id}");
    let retry = format!("/v1/tasks/{id}/retry");
    for (method, path, content_type, body) in [
        (
            reqwest::Method::POST,
            "/v1/hooks/orders",
            "application/xml",
            &b"<order/>"[..],
        ),
        (reqwest::Method::PATCH, patch.as_str(), FORM, &b"x=1"[..]),
        (
            reqwest::Method::POST,
            retry.as_str(),
            "multipart/form-data; boundary=b",
            &b"--b--"[..],
        ),
        (
            reqwest::Method::POST,
            "/v1/steps/write-a/rollback",
            FORM,
            &b"version=v1"[..],
        ),
    ] {
        let (status, error) = send(method, path, content_type, body).await;
        assert_eq!(status, 415, "{path}: {error}");
        let declared = content_type.split(';').next().unwrap_or_default();
        assert!(
            error_message(&error).contains(&format!("sent as {declared} and is not JSON")),
            "{path}: {error}"
        );
    }
    let (status, task) = server.get(&format!("{patch}?wait=10000")).await;
    assert_eq!(status, 200);
    assert_eq!(task["data"], json!({"start": true, "a": "A"}), "nothing patched");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors_with_the_right_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api_options = options();
    api_options.max_body_bytes = 1024;
    let server = start(&db_in(&dir), &[WRITE_A], api_options).await;

    let (status, error) = server.get("/v1/tasks/t_nope").await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, error) = server
        .call(reqwest::Method::POST, "/v1/tasks", Some(b"{\"start\": tru".to_vec()))
        .await;
    assert_eq!(status, 400);
    let message = error_message(&error);
    assert!(
        message.contains("malformed JSON") && message.contains("line 1"),
        "{message}"
    );
    let (status, _) = server.call(reqwest::Method::POST, "/v1/tasks", None).await;
    assert_eq!(status, 400, "an empty body");
    let (status, error) = server.post("/v1/tasks", &json!([1, 2])).await;
    assert_eq!(status, 422, "{error}");
    // An integer beyond 64 bits would be kept rounded: refused, naming it.
    let (status, error) = server
        .call(
            reqwest::Method::POST,
            "/v1/tasks",
            Some(br#"{"start": true, "ref": 123456789012345678901234567890}"#.to_vec()),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(
        error_message(&error)
            .contains("the integer 123456789012345678901234567890 at line 1 column 24 is beyond 64 bits"),
        "{error}"
    );
    let big = json!({"start": true, "blob": "x".repeat(4096)});
    let (status, error) = server.post("/v1/tasks", &big).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let request = server.http().post(format!("{}/v1/tasks", server.base()));
    refused_and_closed(request.body(big.to_string()), 413).await;
    let (status, error) = server.get("/v2/nothing").await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("not_found")));
    // A path parameter that is not UTF-8 once decoded is a bad request, answered in JSON too.
    for path in [
        "/v1/tasks/%FF",
        "/v1/tasks/%FF/conditions",
        "/v1/steps/%C3",
        "/v1/hooks/x/deliveries/%FF",
    ] {
        let (status, error) = server.get(path).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{path}"
        );
        assert!(error_message(&error).contains("UTF-8"), "{path}: {error}");
    }
    let (status, _) = server.call(reqwest::Method::DELETE, "/v1/tasks", None).await;
    assert_eq!(status, 405);
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api_options = options();
    api_options.token = Some("tok-123".into());
    api_options.hooks.insert(
        "shop".into(),
        HookOptions {
            signed: Some(HookSignature {
                scheme: SignatureScheme::Whenever,
                secrets: whenever::api::secret_files::HookSecrets::fixed(b"s3cret".to_vec()),
            }),
            ..HookOptions::default()
        },
    );
    let mut server = start(&db_in(&dir), &[WRITE_A], api_options).await;
    let (status, _) = server.get("/v1/steps").await;
    assert_eq!(status, 200, "with the token");
    // The scheme's case does not matter (RFC 9110); a scheme other than Bearer is no token.
    for (header, status) in [
        ("bearer tok-123", 200),
        ("BEARER tok-123", 200),
        ("Bearer   tok-123", 200),
        ("Basic tok-123", 401),
        ("Bearertok-123", 401),
    ] {
        let answer = reqwest::Client::new()
            .get(format!("{}/v1/steps", server.base))
            .header("authorization", header)
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status().as_u16(), status, "{header}");
    }
    server.token = None;
    let (status, error) = server.get("/v1/steps").await;
    assert_eq!((status, error["error"]["code"].as_str()), (401, Some("unauthorized")));
    // An unsigned delivery to a hook with no secret (a misspelt `shop`) is told so.
    let (status, error) = server.post("/v1/hooks/shpo", &json!({"start": true})).await;
    assert_eq!(status, 401, "{error}");
    assert!(
        error_message(&error).starts_with(
            "hook \"shpo\" has no secret in this server's config, so a delivery to it needs \
             Authorization: Bearer TOKEN (the hooks with a secret: shop)"
        ),
        "{error}"
    );
    server.token = Some("wrong".into());
    let (status, _) = server.post("/v1/tasks", &json!({"start": true})).await;
    assert_eq!(status, 401);
    server.token = None;
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200, "health needs no token");
    let (status, ready) = server.get("/readyz").await;
    assert_eq!(status, 200, "readiness needs no token: {ready}");
    assert_eq!(
        (&ready["status"], &ready["serving"], &ready["store"], &ready["drives"]),
        (&json!("ready"), &json!("ok"), &json!("ok"), &json!("ok"))
    );
    assert!(ready["probe_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{ready}");
    assert!(ready.get("reason").is_none(), "no reason is served: {ready}");
    server.stop().await;
}

/// Sends `request`, which must be refused with `status` before its body is read, and checks
/// that the answer closes the connection (`Connection: close`).
async fn refused_and_closed(request: reqwest::RequestBuilder, status: u16) {
    let refused = request.send().await.expect("answered");
    assert_eq!(refused.status().as_u16(), status);
    assert_eq!(
        refused.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close"),
        "a refusal before the body is read closes the connection"
    );
}

/// A token of `[server.tokens]` may do what its scopes allow and is answered 403 beyond them,
/// naming the scope needed; `WHENEVER_TOKEN` may still do everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_may_do_only_what_their_scopes_allow() {
    use std::collections::BTreeSet;
    use whenever::api::auth::ScopedToken;
    use whenever::config::Scope;
    let dir = tempfile::tempdir().expect("tempdir");
    let scoped = |name: &str, scopes: &[Scope]| ScopedToken {
        name: name.into(),
        secrets: vec![format!("{name}-secret")],
        file: None,
        scopes: scopes.iter().copied().collect::<BTreeSet<_>>(),
        hooks: None,
    };
    let api_options = ApiOptions {
        token: Some("admin-secret".into()),
        scoped: vec![
            scoped("dashboard", &[Scope::Read]),
            scoped("shop", &[Scope::Tasks]),
            scoped("ci", &[Scope::Steps, Scope::Read]),
            ScopedToken {
                hooks: Some(BTreeSet::from(["checkout".to_string()])),
                ..scoped("sender", &[Scope::Deliver])
            },
        ],
        ..options()
    };
    let mut server = start(&db_in(&dir), &[WRITE_A], api_options).await;
    let (bytes, _) = component(&COMPLETES);
    let deploy = "/v1/steps/completes";
    let forbidden = |answer: &(u16, Value), needs: &str| {
        assert_eq!(answer.0, 403, "{}", answer.1);
        assert_eq!(answer.1["error"]["code"], "forbidden", "{}", answer.1);
        let message = error_message(&answer.1);
        assert!(message.contains(&format!("needs the scope `{needs}`")), "{message}");
    };

    // The shop's token creates tasks (and patches them), and reads nothing, deploys nothing.
    // It cannot read the task to see it settle, so the creation waits for that: a patch while
    // the step still runs would be answered 409.
    server.token = Some("shop-secret".into());
    let (status, created) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "waiting", "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    forbidden(&server.get(&format!("/v1/tasks/{id}")).await, "read");
    forbidden(&server.get("/v1/tasks").await, "read");
    forbidden(
        &server.call(reqwest::Method::PUT, deploy, Some(bytes.clone())).await,
        "steps",
    );
    // The client's next request must not go out on the connection of the refused upload,
    // which the server closes (it raced with the close before).
    let upload = server.http().put(format!("{}{deploy}", server.base()));
    refused_and_closed(upload.bearer_auth("shop-secret").body(bytes.clone()), 403).await;
    let patch = json!({"approved": true}).to_string().into_bytes();
    let path = format!("/v1/tasks/{id}?wait=20000");
    let (status, patched) = server.call(reqwest::Method::PATCH, &path, Some(patch)).await;
    assert_eq!(status, 200, "{patched}");

    // The dashboard's reads everything and changes nothing.
    server.token = Some("dashboard-secret".into());
    assert_eq!(server.get(&format!("/v1/tasks/{id}")).await.0, 200);
    assert_eq!(server.get("/metrics").await.0, 200);
    let refused = server.post("/v1/tasks", &json!({"start": true})).await;
    forbidden(&refused, "tasks");
    assert!(
        error_message(&refused.1).contains("the token dashboard"),
        "{}",
        refused.1
    );
    forbidden(
        &server
            .call(reqwest::Method::DELETE, &format!("/v1/tasks/{id}"), None)
            .await,
        "tasks",
    );

    // The webhook sender's delivers to its hook, and does nothing else: it cannot approve the
    // order it delivered, nor read it, nor create a task but through its hook.
    server.token = Some("sender-secret".into());
    let (status, delivered) = server.post("/v1/hooks/checkout", &json!({"start": true})).await;
    assert_eq!(status, 201, "{delivered}");
    let delivered_id = delivered["id"].as_str().expect("id").to_string();
    let elsewhere = server.post("/v1/hooks/refunds", &json!({"start": true})).await;
    assert_eq!(elsewhere.0, 403, "{}", elsewhere.1);
    let message = error_message(&elsewhere.1);
    assert!(
        message.contains("the token sender may not deliver to hook \"refunds\": it may deliver to checkout"),
        "{message}"
    );
    forbidden(&server.post("/v1/tasks", &json!({"start": true})).await, "tasks");
    let approve = json!({"approved": true}).to_string().into_bytes();
    forbidden(
        &server
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/tasks/{delivered_id}"),
                Some(approve),
            )
            .await,
        "tasks",
    );
    forbidden(&server.get(&format!("/v1/tasks/{delivered_id}")).await, "read");
    // The shop's `tasks` covers deliveries, to any hook.
    server.token = Some("shop-secret".into());
    let (status, delivered) = server.post("/v1/hooks/refunds", &json!({"start": true})).await;
    assert_eq!(status, 201, "{delivered}");

    // CI's deploys and reads steps, and creates no task.
    server.token = Some("ci-secret".into());
    let (status, deployed) = server.call(reqwest::Method::PUT, deploy, Some(bytes)).await;
    assert_eq!(status, 201, "{deployed}");
    let (status, shown) = server.get("/v1/steps/completes").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["deployed_by"], "ci", "who deployed it: {shown}");
    assert_eq!(shown["versions"][0]["deployed_by"], "ci", "{shown}");
    forbidden(&server.post("/v1/tasks", &json!({"start": true})).await, "tasks");

    // The full token does all of it; an unknown one nothing (401).
    server.token = Some("admin-secret".into());
    let (status, task) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{task}");
    // The shop's patch is in the task's stored history: what it changed, and whose token.
    let entry = task["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["step"] == "$patch"))
        .unwrap_or_else(|| panic!("no $patch entry: {task}"));
    assert_eq!(
        entry["logs"][0]["message"], "data patched through the API (1 change), by the token shop",
        "{entry}"
    );
    assert_eq!(
        entry["changes"],
        json!([{"op": "set", "path": "/approved", "value": true}]),
        "{entry}"
    );
    // CI deploys a second version and rolls back to the first; the full token removes the step.
    server.token = Some("ci-secret".into());
    let (second, _) = component(&WRITE_A);
    let (status, v2) = server.call(reqwest::Method::PUT, deploy, Some(second)).await;
    assert_eq!(status, 201, "{v2}");
    let rollback = json!({"version": deployed["version"]});
    let (status, rolled) = server.post("/v1/steps/completes/rollback", &rollback).await;
    assert_eq!(status, 200, "{rolled}");
    server.token = Some("admin-secret".into());
    assert_eq!(
        server
            .call(reqwest::Method::DELETE, "/v1/steps/completes", None)
            .await
            .0,
        204
    );
    // The step's changes say who did each, after its removal too; reading them needs `read`.
    server.token = Some("shop-secret".into());
    forbidden(&server.get("/v1/steps/completes/changes").await, "read");
    server.token = Some("dashboard-secret".into());
    let (status, changes) = server.get("/v1/steps/completes/changes").await;
    assert_eq!(status, 200, "{changes}");
    let recorded: Vec<(&str, &str, &str)> = changes["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            let field = |key: &str| c[key].as_str().unwrap_or("-");
            (field("change"), field("version"), field("by"))
        })
        .collect();
    let (first, second) = (
        deployed["version"].as_str().expect("version"),
        v2["version"].as_str().expect("version"),
    );
    assert_eq!(
        recorded,
        vec![
            ("deployed", first, "ci"),
            ("deployed", second, "ci"),
            ("rolled_back", first, "ci"),
            ("removed", "-", "WHENEVER_TOKEN"),
        ],
        "{changes}"
    );
    assert_eq!(server.get("/v1/steps/never-deployed/changes").await.0, 404);
    server.token = Some("nobody".into());
    assert_eq!(server.get("/v1/steps").await.0, 401);
    server.stop().await;

    // Scoped tokens alone turn auth on too (no WHENEVER_TOKEN: nobody may do everything).
    let dir = tempfile::tempdir().expect("tempdir");
    let api_options = ApiOptions {
        scoped: vec![scoped("dashboard", &[Scope::Read])],
        ..options()
    };
    let mut server = start(&db_in(&dir), &[], api_options).await;
    assert_eq!(server.get("/v1/steps").await.0, 401, "no token");
    server.token = Some("dashboard-secret".into());
    assert_eq!(server.get("/v1/steps").await.0, 200);
    server.stop().await;
}

/// A version an earlier host stored under the id it gave then (the first 12 hex digits of the
/// component's SHA-256, before ids named the manifest too) is known at start by its component
/// and manifest: the same files deploy nothing new, and the stored id serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_an_earlier_host_stored_is_not_deployed_again_at_start() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let (bytes, manifest) = component(&WRITE_A);
    let digest = hex::encode(Sha256::digest(&bytes));
    let earlier = digest[..12].to_string();
    let store = whenever::store::sqlite::SqliteStore::open(&db, Default::default()).expect("store");
    let stored = whenever::store::StepVersion {
        name: "write-a".into(),
        version: earlier.clone(),
        digest,
        component: bytes,
        manifest,
        deployed_at: chrono::Utc::now(),
        deployed_by: Some("an earlier host".into()),
    };
    store.put_step_version(&stored, true).await.expect("stored");
    drop(store);
    let steps = dir.path().join("steps");
    std::fs::create_dir(&steps).expect("steps folder");
    std::fs::copy(WRITE_A.component, steps.join("write-a.wasm")).expect("component");
    std::fs::copy(WRITE_A.manifest, steps.join("write-a.toml")).expect("manifest");
    let service_options = ServiceOptions {
        db,
        steps: vec![steps],
        ..ServiceOptions::default()
    };
    let server = start_with(&service_options, &[], options()).await;
    assert_eq!(server.service.step("write-a").await.expect("serving").version, earlier);
    let changes = server.service.step_changes("write-a").await.expect("changes");
    assert_eq!(changes.len(), 1, "the earlier host's deploy only: {changes:?}");
    server.stop().await;
}

/// The bundled steps are what a store serving none of its own starts with: a start without
/// steps folders on a store that serves someone's steps leaves them alone, until asked for
/// the bundled ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_steps_adds_no_bundled_step_to_a_store_serving_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let steps = dir.path().join("steps");
    std::fs::create_dir(&steps).expect("steps folder");
    std::fs::copy(WRITE_A.component, steps.join("write-a.wasm")).expect("component");
    std::fs::copy(WRITE_A.manifest, steps.join("write-a.toml")).expect("manifest");
    let serving = |server: Server| async move {
        let names: Vec<String> = server
            .service
            .steps()
            .await
            .expect("steps")
            .into_iter()
            .map(|s| s.name)
            .collect();
        server.stop().await;
        names
    };
    let with = |steps: Vec<std::path::PathBuf>, with_bundled: bool| ServiceOptions {
        db: db.clone(),
        steps,
        with_bundled,
        ..ServiceOptions::default()
    };
    let first = start_with(&with(vec![steps.clone()], false), &[], options()).await;
    assert_eq!(serving(first).await, ["write-a"]);
    let bare = start_with(&with(Vec::new(), false), &[], options()).await;
    assert_eq!(serving(bare).await, ["write-a"], "no bundled step added");
    let asked = start_with(&with(Vec::new(), true), &[], options()).await;
    assert_eq!(serving(asked).await.len(), 1 + whenever_step_artifacts::RETAILMAX.len());
    // A store of no steps of its own gets the bundled ones by default, as ever.
    let fresh = tempfile::tempdir().expect("tempdir");
    let default = ServiceOptions {
        db: db_in(&fresh),
        ..ServiceOptions::default()
    };
    let server = start_with(&default, &[], options()).await;
    assert_eq!(serving(server).await.len(), whenever_step_artifacts::RETAILMAX.len());
}

/// A deploy is stored before the tasks are re-evaluated against it, in the background: a host
/// that dies between the two (here: a version put in the store while no host ran) leaves that
/// work to its next start, which re-evaluates every waiting and failed task. A step that failed
/// on a version that no longer serves runs again; one that failed on the version serving does
/// not, however often the host restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_re_evaluates_the_tasks_a_deploy_did_not_reach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let server = start(&db, &[RETURNS_ERROR, PANICS, INVALID_JSON], options()).await;
    // Re-evaluated newest first: at each start, every task but the one a new version fixes is
    // re-evaluated before it, so its outcome is known once that one's is.
    let second = server.run(json!({"invalidJson": true})).await;
    let first = server.run(json!({"panic": true})).await;
    let never = server.run(json!({"failPlease": true})).await;
    for task in [&second, &first, &never] {
        assert_eq!(task["status"], "failed", "{task}");
    }
    server.stop().await;

    // Each task's revision as last seen: a task re-evaluated to no effect is not written.
    let mut seen: Vec<(String, Value)> = [&second, &first, &never]
        .iter()
        .map(|t| (t["id"].as_str().expect("id").to_string(), t["revision"].clone()))
        .collect();
    for (fixed, step_files) in [(&first, PANICS), (&second, INVALID_JSON)] {
        let new = store_a_new_version(&db, &step_files).await;
        let server = start(&db, &[], options()).await;
        let id = fixed["id"].as_str().expect("id");
        let mut task = server.get(&format!("/v1/tasks/{id}")).await.1;
        for _ in 0..400 {
            if runs(&task).len() == 2 && task["status"] != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            task = server.get(&format!("/v1/tasks/{id}")).await.1;
        }
        let versions: Vec<Value> = runs(&task).iter().map(|r| r["version"].clone()).collect();
        assert_eq!(versions.len(), 2, "{} ran again: {task}", step_files.name);
        assert_eq!(versions[1], json!(new), "{task}");
        assert_eq!(task["status"], "failed", "{task}");
        // The tasks re-evaluated before it (every other, at the second start) are as they were.
        for (other, revision) in seen.iter_mut() {
            let (_, now) = server.get(&format!("/v1/tasks/{other}")).await;
            if other == id {
                *revision = now["revision"].clone();
            } else if *other != second["id"] || step_files.name == INVALID_JSON.name {
                assert_eq!(&now["revision"], revision, "re-evaluated again at this start: {now}");
            }
        }
        server.stop().await;
    }
}

/// Puts a new version of `step` into the store at `db` as the one serving, as a deploy does
/// before it re-evaluates the tasks; answers its version.
async fn store_a_new_version(db: &Path, step: &StepFiles) -> String {
    use sha2::Digest as _;
    let (mut bytes, manifest) = component(step);
    bytes.extend_from_slice(&[0, 5, 4, b'v', b'e', b'r', b'2']);
    let digest = hex::encode(Sha256::digest(&bytes));
    let version = whenever::runtime::version_id(&digest, &manifest);
    let store = whenever::store::sqlite::SqliteStore::open(db, Default::default()).expect("store");
    let new = whenever::store::StepVersion {
        name: step.name.into(),
        version: version.clone(),
        digest,
        component: bytes,
        manifest,
        deployed_at: chrono::Utc::now(),
        deployed_by: Some("a host that died before it re-evaluated".into()),
    };
    store.put_step_version(&new, true).await.expect("stored");
    version
}

/// A serving version this host refuses to load (one an earlier whenever took, before a rule was
/// made stricter) keeps only that step from serving, not the service from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_version_that_no_longer_loads_keeps_only_its_step_from_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let store = whenever::store::sqlite::SqliteStore::open(&db, Default::default()).expect("store");
    let refused = whenever::store::StepVersion {
        name: "old-step".into(),
        version: "0123456789ab".into(),
        digest: "00".repeat(32),
        component: b"not a component any more".to_vec(),
        manifest: StepManifest::default(),
        deployed_at: chrono::Utc::now(),
        deployed_by: Some("an earlier host".into()),
    };
    store.put_step_version(&refused, true).await.expect("stored");
    drop(store);
    let server = start(&db, &[WRITE_A], options()).await;
    assert!(server.service.step("old-step").await.is_err(), "not serving");
    let task = server.run(json!({"start": true})).await;
    assert_eq!(task["data"]["a"], "A", "the other steps serve: {task}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_steps_survive_a_restart_and_unfinished_tasks_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let server = start(&db, &[WRITE_A, COMPLETES], options()).await;
    let waiting = server.run(json!({"start": true})).await;
    let done = server.run(json!({"finish": true})).await;
    let write_a = server.service.scheduler().catalog().get("write-a").expect("deployed");
    server.stop().await;

    // Simulate a crash: a task stored as running, with run 0 of write-a started and never
    // finished (its input recorded), and another task stored but never driven.
    let store = whenever::store::sqlite::SqliteStore::open(&db, Default::default()).expect("store");
    let mut interrupted = Task::new(json!({"start": true, "other": 1}));
    store.create_task(&interrupted).await.expect("created");
    let progress = interrupted.progress.entry("write-a".into()).or_default();
    progress.runs = 1;
    progress.last_projection = Some(write_a.condition.projection(&interrupted.data).digest());
    interrupted
        .runs
        .push(RunRecord::starting(0, "write-a", &write_a.version, 1));
    let input = interrupted.data.clone();
    let save = TaskSave {
        task: &interrupted,
        expected_revision: 1,
        runs: &[0],
        starting: &[0],
        input: Some(&input),
        data_text: None,
        applied: None,
    };
    store.save_task(save).await.expect("saved");
    let never_driven = Task::new(json!({"finish": true}));
    store.create_task(&never_driven).await.expect("created");
    drop(store);

    let server = start(&db, &[], options()).await;
    let (_, steps) = server.get("/v1/steps").await;
    let names: Vec<&str> = steps["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["completes", "write-a"],
        "steps deployed before the restart still serve"
    );
    for before in [&waiting, &done] {
        let (status, after) = server
            .get(&format!("/v1/tasks/{}", before["id"].as_str().expect("id")))
            .await;
        assert_eq!(status, 200);
        assert_eq!(after["status"], before["status"]);
        assert_eq!(after["data"], before["data"]);
        assert_eq!(after["runs"], before["runs"], "history with logs and changes persists");
    }
    let resumed = server.until(&interrupted.id, |t| t["status"] != "running").await;
    assert_eq!(resumed["status"], "waiting", "{resumed}");
    assert_eq!(resumed["data"]["a"], "A");
    assert_eq!(
        runs(&resumed).len(),
        1,
        "the interrupted run was re-run in place, not started again"
    );
    assert_eq!(runs(&resumed)[0]["outcome"], "ok");
    let finished = server.until(&never_driven.id, |t| t["status"] != "running").await;
    assert_eq!(finished["status"], "completed");
    let (_, page) = server.get("/v1/tasks?status=running").await;
    assert_eq!(page["tasks"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        server
            .service
            .store()
            .count_tasks()
            .await
            .expect("counts")
            .get(&TaskStatus::Completed),
        Some(&2)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_results_are_journaled_and_replayed_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let (bytes, _) = component(&UNGRANTED_CONNECTOR);
    let granted = StepManifest {
        connectors: vec!["stripe".into()],
        ..StepManifest::default()
    };

    // A live run: the charge happens once, is recorded in history, and no journal is left over.
    let server = start(&db, &[], options()).await;
    let step = server
        .service
        .deploy_step("charger", bytes.clone(), granted.clone(), None)
        .await
        .expect("deploys");
    let task = server.run(json!({"tryStripe": true})).await;
    let id = task["id"].as_str().expect("id");
    assert_eq!(task["data"]["stripeResult"]["ok"]["success"], true, "{task}");
    let call = &runs(&task)[0]["connector_calls"][0];
    assert_eq!(call["connector"], "stripe");
    // What the connector answered is the call's `returned` (a failure would be its `error`).
    assert_eq!(call["returned"]["success"], true, "{call}");
    assert!(call.get("result").is_none() && call.get("error").is_none(), "{call}");
    let effects = server.service.scheduler().connectors().effects();
    assert_eq!(effects.count_for_task(id, "stripe", "charge"), 1);
    assert!(
        server
            .service
            .store()
            .interrupted_runs(id)
            .await
            .expect("read")
            .is_empty()
    );
    server.stop().await;

    // A crash after the charge was journaled and before the run finished: the restarted host
    // re-runs the step with the journaled result and charges nothing, even where its config
    // withholds the connector since: the charge happened.
    let config = dir.path().join("withholds.toml");
    std::fs::write(&config, "[steps.charger]\nconnectors = []\n").expect("config");
    for withheld in [None, Some(config)] {
        let id = crash_after_a_journaled_charge(&db, &granted, &step.version).await;
        let service_options = ServiceOptions {
            db: db.clone(),
            no_steps: true,
            config: withheld.clone(),
            ..ServiceOptions::default()
        };
        let server = start_with(&service_options, &[], options()).await;
        let resumed = server.until(&id, |t| t["status"] != "running").await;
        assert_eq!(
            resumed["data"]["stripeResult"]["ok"]["transactionId"], "txn_journaled",
            "withheld since: {withheld:?}: {resumed}"
        );
        assert_eq!(runs(&resumed).len(), 1);
        assert_eq!(
            runs(&resumed)[0]["connector_calls"][0]["replayed"],
            true,
            "history marks the replayed call"
        );
        assert_eq!(
            runs(&resumed)[0]["connector_calls"][0]["returned"]["transactionId"],
            "txn_journaled",
            "{resumed}"
        );
        let effects = server.service.scheduler().connectors().effects();
        assert_eq!(effects.count_for_task(&id, "stripe", "charge"), 0, "no second charge");
        server.stop().await;
    }
}

/// Leaves in the store at `db` a task whose run of `charger` (at `version`, granted as
/// `manifest`) was under way when its host crashed, its charge journaled; answers its id.
async fn crash_after_a_journaled_charge(db: &Path, manifest: &StepManifest, version: &str) -> String {
    let store = whenever::store::sqlite::SqliteStore::open(db, Default::default()).expect("store");
    let charger = whenever::store::Store::current_steps(&store).await.expect("steps");
    assert_eq!(&charger[0].manifest, manifest);
    let mut crashed = Task::new(json!({"tryStripe": true}));
    store.create_task(&crashed).await.expect("created");
    crashed.progress.entry("charger".into()).or_default().runs = 1;
    crashed.runs.push(RunRecord::starting(0, "charger", version, 1));
    let input = crashed.data.clone();
    let save = TaskSave {
        task: &crashed,
        expected_revision: 1,
        runs: &[0],
        starting: &[0],
        input: Some(&input),
        data_text: None,
        applied: None,
    };
    store.save_task(save).await.expect("saved");
    let journaled = whenever::runtime::ConnectorCallRecord {
        connector: "stripe".into(),
        method: "charge".into(),
        args: whenever::runtime::JsonText::of(&json!({"amount": 100, "currency": "usd", "source": "tok_visa"})),
        result: Ok(whenever::runtime::JsonText::of(
            &json!({"success": true, "transactionId": "txn_journaled"}),
        )),
        idempotency_key: format!("{}:charger:1:1", crashed.id),
        duration_us: 5,
        replayed: false,
    };
    store
        .journal_call(&crashed.id, 0, 0, &journaled)
        .await
        .expect("journaled");
    crashed.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_waiting_for_their_commits_never_hold_each_other_up() {
    // A commit may wait (here up to ten minutes) while drives are at work towards their next
    // save; each drive stops counting as at work when it saves, so orders flowing together still
    // complete at once, their saves grouped.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("whenever.toml");
    std::fs::write(&config, "[store]\ncommit_delay_ms = 600000\n").expect("written");
    let service_options = ServiceOptions {
        db: db_in(&dir),
        config: Some(config),
        ..ServiceOptions::default()
    };
    let service = Service::start(&service_options).await.expect("service starts");
    let orders = async {
        let mut ids = Vec::new();
        for i in 0..12 {
            let mut order = whenever::demo::seed_order();
            order["order"]["id"] = json!(format!("ORD-GROUP-{i:02}"));
            ids.push(service.create_task(order).await.expect("created").task.id);
        }
        let mut settled = Vec::new();
        for id in &ids {
            settled.push(service.wait_settled(id, Duration::from_secs(60)).await.expect("exists"));
        }
        settled
    };
    // A deadline, not a measurement: a held commit would take ten minutes.
    let settled = tokio::time::timeout(Duration::from_secs(60), orders)
        .await
        .expect("the orders settled without waiting out the commit delay");
    for stored in settled {
        assert_eq!(
            stored.task.status,
            TaskStatus::Completed,
            "{}: {:?}",
            stored.task.id,
            stored.task.message
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_task_is_deleted_with_its_history_and_a_running_one_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES, WRITE_A, INFINITE_LOOP], options()).await;
    let done = server.run(json!({"finish": true})).await;
    let waiting = server.run(json!({"start": true})).await;
    let kept = server.run(json!({"finish": true, "keep": true})).await;
    for task in [&done, &waiting] {
        let id = task["id"].as_str().expect("id");
        let (status, body) = server
            .call(reqwest::Method::DELETE, &format!("/v1/tasks/{id}"), None)
            .await;
        assert_eq!(status, 204, "{body}");
        let (status, error) = server.get(&format!("/v1/tasks/{id}")).await;
        assert_eq!(status, 404, "{error}");
        let (status, error) = server
            .call(reqwest::Method::DELETE, &format!("/v1/tasks/{id}"), None)
            .await;
        assert_eq!(status, 404, "deleted once: {error}");
        assert_eq!(error["error"]["code"], "not_found");
    }
    let (_, kept_after) = server
        .get(&format!("/v1/tasks/{}", kept["id"].as_str().expect("id")))
        .await;
    assert_eq!(kept_after["runs"], kept["runs"], "another task keeps its history");

    // A long poll on a task (until it moves past the revision the client holds) is answered 404
    // when the task is deleted, not when its wait (the server's cap, a minute) runs out.
    let kept_id = kept["id"].as_str().expect("id").to_string();
    let poll = server
        .http()
        .get(format!("{}/v1/tasks/{kept_id}?wait=600000", server.base()))
        .header("if-none-match", format!("\"{}\"", kept_after["revision"]))
        .send();
    let poll = tokio::spawn(poll);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = server
        .call(reqwest::Method::DELETE, &format!("/v1/tasks/{kept_id}"), None)
        .await;
    assert_eq!(status, 204);
    let answered = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("answered at the delete")
        .expect("joined")
        .expect("sent");
    assert_eq!(answered.status().as_u16(), 404);

    // A task with a run in flight (2 s until its deadline) is not deleted.
    let (status, looping) = server.post("/v1/tasks", &json!({"loopForever": true})).await;
    assert_eq!(status, 201);
    let looping_id = looping["id"].as_str().expect("id");
    let (status, error) = server
        .call(reqwest::Method::DELETE, &format!("/v1/tasks/{looping_id}"), None)
        .await;
    assert_eq!(status, 409, "{error}");
    assert!(error_message(&error).contains("is running"), "{error}");
    let (status, _) = server.get(&format!("/v1/tasks/{looping_id}")).await;
    assert_eq!(status, 200);

    let (_, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().expect("text");
    assert!(
        text.contains("whenever_tasks_deleted_total{reason=\"request\"} 3"),
        "{text}"
    );
    assert!(text.contains("whenever_tasks{status=\"completed\"} 0"), "{text}");
    server.service.stop(Duration::from_millis(10)).await;
    server.stop().await;
}

/// Reads from `stream` until the server closes it, for at most `limit`; answers what it read,
/// or `None` when the connection was still open at the end.
pub(crate) async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(read),
            Ok(Ok(n)) => read.extend_from_slice(&buffer[..n]),
        }
    }
}

/// A request's headers are due within `header_timeout` of the connection being ready for them:
/// a client that connects and sends nothing, one that sends its headers a line at a time
/// (slowloris) and a kept-alive connection left idle are closed, so none holds a connection for
/// long. An answer that takes longer than that (a long poll) is not cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_request_in_time_are_closed_and_long_answers_are_not() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_impatient(&dir).await;
    let address = server.address();
    let limit = Duration::from_secs(10);

    let mut silent = tokio::net::TcpStream::connect(&address).await.expect("connected");
    let said = read_until_closed(&mut silent, limit).await;
    assert!(said.is_some(), "a silent connection is closed");

    let mut slow = tokio::net::TcpStream::connect(&address).await.expect("connected");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: whenever\r\n")
        .await
        .expect("sent");
    let started = tokio::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < limit {
        if slow.write_all(b"X-Slow: a\r\n").await.is_err() {
            closed = true;
            break;
        }
        if let Some(said) = read_until_closed(&mut slow, Duration::from_millis(100)).await {
            assert!(!said.starts_with(b"HTTP/1.1 200"), "never answered as if complete");
            closed = true;
            break;
        }
    }
    assert!(closed, "a connection sending its headers a line at a time is closed");

    let mut idle = tokio::net::TcpStream::connect(&address).await.expect("connected");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: whenever\r\n\r\n")
        .await
        .expect("sent");
    let said = read_until_closed(&mut idle, limit).await.expect("closed once idle");
    let said = String::from_utf8_lossy(&said);
    assert!(
        said.starts_with("HTTP/1.1 200") && said.contains(r#"{"status":"ok"}"#),
        "answered first: {said}"
    );

    // A long poll lasts three times the header deadline and is answered.
    let (status, task) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!((status, &task["status"]), (201, &json!("waiting")), "{task}");
    let id = task["id"].as_str().expect("id");
    let etag = format!("\"{}\"", task["revision"]);
    let started = std::time::Instant::now();
    let answer = server
        .http()
        .get(format!("{}/v1/tasks/{id}?wait=1500", server.base()))
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status().as_u16(), 304);
    assert!(started.elapsed() >= Duration::from_millis(1500), "it waited");
    server.stop().await;
}

/// A request's body may pause for the header timeout at most: a client that sends part of its
/// body and then nothing (a signed hook reads its body before the signature, so no token is
/// needed for that) is answered 408 and its connection closed, and no task is created; a body
/// that keeps arriving, in pieces 100 ms apart for longer than the timeout, is read whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408_and_one_that_keeps_arriving_is_read() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_impatient(&dir).await;
    let address = server.address();
    let body = br#"{"start": true, "note": "sent a piece at a time"}"#;
    let head = post_head("/v1/tasks", body.len());

    let mut stalled = tokio::net::TcpStream::connect(&address).await.expect("connected");
    stalled.write_all(head.as_bytes()).await.expect("sent");
    stalled.write_all(&body[..10]).await.expect("sent");
    let said = read_until_closed(&mut stalled, Duration::from_secs(10))
        .await
        .expect("answered and closed");
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.to_ascii_lowercase().contains("connection: close"), "{said}");
    assert!(
        said.contains(r#""code":"request_timeout""#)
            && said.contains("the request body stopped arriving: nothing of it came for 500 ms"),
        "{said}"
    );
    let (_, listed) = server.get("/v1/tasks").await;
    assert_eq!(listed["tasks"], json!([]), "no task was created");

    let mut steady = tokio::net::TcpStream::connect(&address).await.expect("connected");
    steady.write_all(head.as_bytes()).await.expect("sent");
    for piece in body.chunks(6) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        steady.write_all(piece).await.expect("sent");
    }
    let said = read_until_closed(&mut steady, Duration::from_secs(10))
        .await
        .expect("answered, then closed once idle");
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 201"), "{said}");
    let (_, listed) = server.get("/v1/tasks").await;
    assert_eq!(listed["tasks"].as_array().map(Vec::len), Some(1), "{listed}");
    server.stop().await;
}

/// A client that goes away while its request's write waits to commit (the database held by
/// another writer here; a slow disk, a busy group elsewhere) does not leave half of it done: the
/// task it created, committed once the database is free, is driven and settles, rather than
/// staying `running` with nothing driving it until the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_client_goes_away_mid_write_is_still_driven() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db_in(&dir);
    let server = start(&db, &[WRITE_A], options()).await;
    let blocker = rusqlite::Connection::open(&db).expect("opened");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("the database held");

    // The request waits on the held database; its client gives up and goes.
    post_and_go(&server, "/v1/tasks", br#"{"start": true}"#).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.execute_batch("COMMIT").expect("the database freed");

    eventually("the task the request created settles", || async {
        let (_, listed) = server.get("/v1/tasks").await;
        listed["tasks"]
            .as_array()
            .is_some_and(|tasks| tasks.len() == 1 && tasks[0]["status"] == "waiting")
    })
    .await;
    server.stop().await;
}

/// A create that waits for its task (`?wait=`) stops waiting once its client goes away: run
/// apart from its connection so that its work is finished, it must not go on waiting for nobody
/// (clients that open and drop such requests would otherwise pile up waiters). The task itself
/// is driven to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_whose_client_went_away_stops_waiting_and_its_task_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[], options()).await;
    // Given the time to sleep its three seconds.
    let (bytes, mut manifest) = component(&SLEEPS);
    manifest.limits.timeout_ms = 10_000;
    server
        .service
        .deploy_step("sleeps", bytes, manifest, None)
        .await
        .expect("deployed");
    post_and_go(&server, "/v1/tasks?wait=20000", br#"{"sleepMs": 3000}"#).await;
    // Answered (to nobody) well before the task settles, three seconds after it started.
    let gone = "whenever_http_requests_total{method=\"POST\",route=\"/v1/tasks\",status=\"408\"} 1\n";
    let started = std::time::Instant::now();
    loop {
        let (_, metrics) = server.get("/metrics").await;
        let text = metrics.as_str().unwrap_or_default().to_string();
        if text.contains(gone) {
            break;
        }
        assert!(started.elapsed() < Duration::from_millis(1500), "still waiting: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("the task settles all the same", || async {
        let (_, listed) = server.get("/v1/tasks").await;
        listed["tasks"][0]["status"] == "waiting"
    })
    .await;
    server.stop().await;
}

/// The head of an HTTP/1.1 `POST` to `target` of a JSON body of `length` bytes.
fn post_head(target: &str, length: usize) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: whenever\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Sends `body` to `target` over a connection of its own, then, 500 ms later (the request under
/// way), closes it without reading the answer: a client that went away.
async fn post_and_go(server: &Server, target: &str, body: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let mut client = tokio::net::TcpStream::connect(server.address())
        .await
        .expect("connected");
    client
        .write_all(post_head(target, body.len()).as_bytes())
        .await
        .expect("sent");
    client.write_all(body).await.expect("sent");
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// A server (with [`WRITE_A`]) whose clients have 500 ms to send a request's headers.
pub(crate) async fn start_impatient(dir: &tempfile::TempDir) -> Server {
    let api_options = ApiOptions {
        header_timeout: Some(Duration::from_millis(500)),
        ..options()
    };
    start(&db_in(dir), &[WRITE_A], api_options).await
}

/// The value of the sample `name` (with its labels) in the Prometheus text `text`.
pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The status of `GET /v1/steps` with bearer `token`.
async fn status_with(server: &Server, token: &str) -> u16 {
    let answer = server
        .http()
        .get(format!("{}/v1/steps", server.base()))
        .bearer_auth(token)
        .send()
        .await
        .expect("answered");
    answer.status().as_u16()
}

/// Waits up to 10 s until `check` holds, asking every 100 ms; `what` names it when it never does.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never: {what}");
}

/// [`options`] with `WHENEVER_TOKEN` `admin-secret` and a read-only token `dashboard` whose
/// secrets are in `file`.
fn with_dashboard_token_from(file: &std::path::Path) -> ApiOptions {
    use whenever::config::{Scope, TokenSection};
    let sections = std::collections::BTreeMap::from([(
        "dashboard".to_string(),
        TokenSection {
            env: None,
            file: Some(file.to_path_buf()),
            scopes: vec![Scope::Read],
            hooks: None,
        },
    )]);
    let scoped = whenever::api::auth::scoped_tokens(&sections, Some("admin-secret"), |_| None).expect("valid");
    ApiOptions {
        token: Some("admin-secret".into()),
        scoped,
        ..options()
    }
}

/// `options` with hook `checkout` signed (the default scheme) with the secrets in `file`.
fn checkout_signed_from(file: &std::path::Path, mut options: ApiOptions) -> ApiOptions {
    let signed = HookSignature {
        scheme: SignatureScheme::Whenever,
        secrets: whenever::api::secret_files::HookSecrets::from_file(file).expect("loads"),
    };
    options.hooks.insert(
        "checkout".into(),
        HookOptions {
            signed: Some(signed),
            ..HookOptions::default()
        },
    );
    options
}

/// The status of a delivery to hook `hook`, signed with `secret`.
async fn delivered_signed(server: &Server, hook: &str, secret: &[u8]) -> u16 {
    let body = json!({"start": true}).to_string();
    let answer = server
        .http()
        .post(format!("{}/v1/hooks/{hook}", server.base()))
        .header("X-Whenever-Signature", sign(secret, body.as_bytes()))
        .body(body)
        .send()
        .await
        .expect("answered");
    answer.status().as_u16()
}

/// A webhook secret kept in a file is rotated without a restart: with the new secret as a second
/// line, deliveries signed with either are accepted; once the old line is gone, those signed
/// with the old secret are refused. An empty file leaves the secret as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_secret_kept_in_a_file_is_rotated_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("checkout.secret");
    std::fs::write(&file, "whsec_old\n").expect("written");
    let server = start(&db_in(&dir), &[WRITE_A], checkout_signed_from(&file, options())).await;
    assert_eq!(delivered_signed(&server, "checkout", b"whsec_old").await, 201);
    assert_eq!(delivered_signed(&server, "checkout", b"whsec_new").await, 401);

    std::fs::write(&file, "whsec_old\nwhsec_new\n").expect("written");
    eventually("the new secret accepted", || async {
        delivered_signed(&server, "checkout", b"whsec_new").await == 201
    })
    .await;
    assert_eq!(
        delivered_signed(&server, "checkout", b"whsec_old").await,
        201,
        "both meanwhile"
    );

    std::fs::write(&file, "whsec_new\n").expect("written");
    eventually("the old secret refused", || async {
        delivered_signed(&server, "checkout", b"whsec_old").await == 401
    })
    .await;
    std::fs::write(&file, "\n").expect("written");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(delivered_signed(&server, "checkout", b"whsec_new").await, 201, "kept");
    server.stop().await;
}

/// A scoped token kept in a file is rotated without a restart: a second line makes a second
/// token valid beside the first, removing the first line revokes it, within a couple of
/// seconds. A change that would not load (an empty file, the secret of `WHENEVER_TOKEN`) leaves
/// the tokens in use as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_kept_in_a_file_is_rotated_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard.token");
    std::fs::write(&file, "old-secret\n").expect("written");
    let api_options = with_dashboard_token_from(&file);
    let server = start(&db_in(&dir), &[], api_options).await;
    assert_eq!(status_with(&server, "old-secret").await, 200);
    assert_eq!(status_with(&server, "new-secret").await, 401);

    std::fs::write(&file, "old-secret\nnew-secret\n").expect("written");
    eventually("the new token accepted", || async {
        status_with(&server, "new-secret").await == 200
    })
    .await;
    assert_eq!(
        status_with(&server, "old-secret").await,
        200,
        "both during the rotation"
    );

    std::fs::write(&file, "new-secret\n").expect("written");
    eventually("the old token refused", || async {
        status_with(&server, "old-secret").await == 401
    })
    .await;
    assert_eq!(status_with(&server, "new-secret").await, 200);

    for broken in ["\n", "admin-secret\n"] {
        std::fs::write(&file, broken).expect("written");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            status_with(&server, "new-secret").await,
            200,
            "after {broken:?} the token stays"
        );
    }
    server.stop().await;
}

/// Which secret each request used is counted in `/metrics` by the secret's fingerprint (the
/// first 8 hex digits of its SHA-256), so that an operator rotating a secret sees when the old
/// one is no longer used: tokens by name (a use refused for its scope counts, an unknown token
/// does not), webhook secrets by hook (a delivery with a bad signature does not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_secret_s_uses_are_counted_by_its_fingerprint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("dashboard.token");
    std::fs::write(&token_file, "old-secret\nnew-secret\n").expect("written");
    let hook_file = dir.path().join("checkout.secret");
    std::fs::write(&hook_file, "whsec_old\nwhsec_new\n").expect("written");
    let api_options = with_dashboard_token_from(&token_file);
    let server = start(&db_in(&dir), &[WRITE_A], checkout_signed_from(&hook_file, api_options)).await;
    assert_eq!(status_with(&server, "old-secret").await, 200);
    assert_eq!(status_with(&server, "old-secret").await, 200);
    assert_eq!(status_with(&server, "new-secret").await, 200);
    assert_eq!(status_with(&server, "unknown-secret").await, 401);
    let refused = server
        .http()
        .post(format!("{}/v1/tasks", server.base()))
        .bearer_auth("new-secret")
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status().as_u16(), 403, "a read-only token");
    assert_eq!(delivered_signed(&server, "checkout", b"whsec_old").await, 201);
    assert_eq!(delivered_signed(&server, "checkout", b"whsec_new").await, 201);
    assert_eq!(delivered_signed(&server, "checkout", b"whsec_new").await, 201);
    assert_eq!(delivered_signed(&server, "checkout", b"whsec_other").await, 401);

    let metrics = server
        .http()
        .get(format!("{}/metrics", server.base()))
        .bearer_auth("admin-secret")
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    // Each fingerprint as `printf %s SECRET | sha256sum | cut -c1-8` prints it.
    for line in [
        r#"whenever_secret_uses_total{kind="token",name="dashboard",fingerprint="5d865dea"} 2"#,
        r#"whenever_secret_uses_total{kind="token",name="dashboard",fingerprint="fc97bb52"} 2"#,
        r#"whenever_secret_uses_total{kind="token",name="WHENEVER_TOKEN",fingerprint="16175223"} 1"#,
        r#"whenever_secret_uses_total{kind="hook",name="checkout",fingerprint="3d269a69"} 1"#,
        r#"whenever_secret_uses_total{kind="hook",name="checkout",fingerprint="06626a5e"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let counted = metrics
        .lines()
        .filter(|l| l.starts_with("whenever_secret_uses_total{"))
        .count();
    assert_eq!(counted, 5, "no other secret counted: {metrics}");
    let last_uses = metrics
        .lines()
        .filter(|l| l.starts_with("whenever_secret_last_use_timestamp_seconds{"))
        .count();
    assert_eq!(last_uses, 5, "{metrics}");
    server.stop().await;
}

/// At most `max_connections` connections are served at once: past it, a new one waits (in the
/// kernel's queue) until one closes, and is then answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let api_options = ApiOptions {
        max_connections: Some(2),
        header_timeout: Some(Duration::from_secs(30)),
        ..options()
    };
    let server = start(&db_in(&dir), &[], api_options).await;
    let address = server.address();
    let first = tokio::net::TcpStream::connect(&address).await.expect("connected");
    let _second = tokio::net::TcpStream::connect(&address).await.expect("connected");
    // Give the server the time to take both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = tokio::net::TcpStream::connect(&address)
        .await
        .expect("queued by the kernel");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: whenever\r\nConnection: close\r\n\r\n")
        .await
        .expect("sent");
    let early = read_until_closed(&mut third, Duration::from_millis(700)).await;
    assert!(early.is_none(), "answered past the limit: {early:?}");
    drop(first);
    let said = read_until_closed(&mut third, Duration::from_secs(10))
        .await
        .expect("answered once a connection closed");
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    // `/metrics` tells how close to the limit the API is, and that it held connections back.
    let (status, metrics) = server.get("/metrics").await;
    assert_eq!(status, 200);
    let text = metrics.as_str().expect("text");
    let value = |name: &str| metric(text, name);
    assert_eq!(value("whenever_http_connections_max"), 2);
    assert!(value("whenever_http_connections_held_back_total") >= 1, "{text}");
    assert!(value("whenever_http_connections_total") >= 4, "{text}");
    // The silent second and the one asking now; the first and the third are closed.
    assert_eq!(value("whenever_http_connections_open"), 2, "{text}");
    server.stop().await;
}
