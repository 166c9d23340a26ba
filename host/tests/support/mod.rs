//! A real `whenever serve` process for the tests of this folder: started on a free loopback port,
//! its address read from its first lines on stderr, talked to over HTTP, and stopped (or killed
//! with SIGKILL) by its process id.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use whenever::runtime::ConnectorCallRecord;
use whenever::task::{RunOutcomeRecord, Task};
use whenever_step_artifacts::StepFiles;

/// A running `whenever serve` child process.
pub struct ServeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` (`https://` when the server has a certificate).
    pub base: String,
    /// Everything the server wrote on stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// A client for the server.
    pub http: reqwest::Client,
    /// The bearer token the server was started with, sent with every call.
    pub token: Option<String>,
}

/// Copies these test steps (component and manifest) into `DIR/steps`, writes `config` into
/// `DIR/whenever.toml`, and returns the `whenever serve` arguments naming both.
pub fn steps_and_config(dir: &Path, steps: &[StepFiles], config: &str) -> Vec<String> {
    let folder = dir.join("steps");
    std::fs::create_dir_all(&folder).expect("steps dir");
    for step in steps {
        std::fs::copy(step.component, folder.join(format!("{}.wasm", step.name))).expect("component");
        std::fs::copy(step.manifest, folder.join(format!("{}.toml", step.name))).expect("manifest");
    }
    let file = dir.join("whenever.toml");
    std::fs::write(&file, config).expect("config");
    vec![
        "--steps".into(),
        folder.display().to_string(),
        "--config".into(),
        file.display().to_string(),
    ]
}

/// The `whenever` binary built for these tests.
pub fn whenever_binary() -> &'static str {
    env!("CARGO_BIN_EXE_whenever")
}

impl ServeProcess {
    /// Starts `whenever serve --listen 127.0.0.1:0 --db DB ARGS...` and waits (up to 60 s) until
    /// it listens.
    pub fn start<S: AsRef<OsStr>>(db: &Path, args: &[S]) -> ServeProcess {
        ServeProcess::start_with_token(db, args, None)
    }

    /// Like [`ServeProcess::start`], with `WHENEVER_TOKEN` set to `token` for the server (and
    /// sent by [`ServeProcess::call`]).
    pub fn start_with_token<S: AsRef<OsStr>>(db: &Path, args: &[S], token: Option<&str>) -> ServeProcess {
        ServeProcess::start_with_env(db, args, token, &[])
    }

    /// Like [`ServeProcess::start_with_token`], with these environment variables set for the
    /// server too.
    pub fn start_with_env<S: AsRef<OsStr>>(
        db: &Path,
        args: &[S],
        token: Option<&str>,
        env: &[(&str, &OsStr)],
    ) -> ServeProcess {
        ServeProcess::start_listening("127.0.0.1:0", db, args, token, env)
    }

    /// Like [`ServeProcess::start_with_env`], listening on `listen` (a port a test serves on
    /// again after a restart).
    pub fn start_listening<S: AsRef<OsStr>>(
        listen: &str,
        db: &Path,
        args: &[S],
        token: Option<&str>,
        env: &[(&str, &OsStr)],
    ) -> ServeProcess {
        let mut command = Command::new(whenever_binary());
        command
            .arg("serve")
            .args(["--listen", listen, "--db"])
            .arg(db)
            .args(args)
            .env_remove("WHENEVER_TOKEN")
            .env_remove("WHENEVER_TOKEN_FILE")
            .envs(env.iter().copied());
        if let Some(token) = token {
            command.env("WHENEVER_TOKEN", token);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("whenever serve starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = std::sync::mpsc::channel::<String>();
        let lines = log.clone();
        // Drain stderr for the process's whole life, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1)
                    && (rest.starts_with("http://") || rest.starts_with("https://"))
                {
                    let url = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = found.send(url);
                }
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let base = match address.recv_timeout(Duration::from_secs(300)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "whenever serve did not start listening: {:?}",
                    log.lock().unwrap_or_else(|p| p.into_inner())
                );
            }
        };
        ServeProcess {
            child,
            base,
            log,
            http: reqwest::Client::new(),
            token: token.map(str::to_string),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (`Child::kill` is SIGKILL on Unix), then reaps the process.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL delivered");
        let status = self.child.wait().expect("reaped");
        assert!(!status.success(), "the server was killed, not stopped: {status:?}");
    }

    /// The server's stderr so far, one string.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// One request; the status and the JSON answer (a string when it is not JSON).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// POST of a JSON value.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body.to_string().into_bytes()))
            .await
    }

    /// How many tasks have this status, read from `/metrics`: a count in the store, cheap however
    /// many tasks there are. (Listing them took long enough under load for a restarted server to
    /// finish all its resumed tasks between two polls, so a kill meant for mid-load came too late.)
    /// The count is left out of an answer while the store cannot give it within 2 s (a slow
    /// machine under load): it is asked again, for up to a minute.
    pub async fn count(&self, status: &str) -> usize {
        let series = format!("whenever_tasks{{status=\"{status}\"}}");
        for _ in 0..60 {
            let found = self.metric_series(&series).await;
            if let Some((_, value)) = found.iter().find(|(rest, _)| rest.is_empty()) {
                return *value as usize;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        self.metric(&series).await as usize
    }

    /// How many tasks the server is driving now, read from `/metrics`.
    pub async fn drives_under_way(&self) -> usize {
        self.metric("whenever_drives_under_way").await as usize
    }

    /// The value of one series of `/metrics` (`name`, or `name{labels}` as the server writes
    /// them), or a panic naming it.
    pub async fn metric(&self, series: &str) -> i64 {
        let found = self.metric_series(series).await;
        match found.iter().find(|(rest, _)| rest.is_empty()) {
            Some((_, value)) => *value,
            None => panic!("/metrics has no {series}: {found:?}"),
        }
    }

    /// Every series of `/metrics` whose name and labels start with `prefix`: what follows the
    /// prefix, and the value.
    pub async fn metric_series(&self, prefix: &str) -> Vec<(String, i64)> {
        let (code, metrics) = self.get("/metrics").await;
        assert_eq!(code, 200, "{metrics}");
        let text = metrics.as_str().unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (series, value) = line.strip_prefix(prefix)?.rsplit_once(' ')?;
                Some((series.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// Sends the process a signal by name (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} failed: {sent:?}");
    }

    /// Waits until the process exits and returns how (it is killed after `timeout`, and the test
    /// fails).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the server did not exit within {timeout:?}; its log:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 5 s) until the server's log holds `text` (its last lines are read after it
    /// exits), or panics.
    pub fn until_logged(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the log never said {text:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until `done` holds, or panics after `timeout`.
    pub async fn until<F, Fut>(&self, what: &str, timeout: Duration, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        while !done().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; server log:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        // A test that panicked leaves no server behind (this process's own child, by its id).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The successful calls of `connector.method` in a task's history, by idempotency key.
pub fn successful_calls<'a>(
    task: &'a Task,
    connector: &str,
    method: &str,
) -> BTreeMap<&'a str, &'a ConnectorCallRecord> {
    task.runs
        .iter()
        .flat_map(|run| &run.connector_calls)
        .filter(|call| call.connector == connector && call.method == method)
        .filter(|call| call.result.as_ref().is_ok_and(|r| r.value()["success"] != json!(false)))
        .map(|call| (call.idempotency_key.as_str(), call))
        .collect()
}

/// Asserts that every run of `task` succeeded and no step was started twice on it (an
/// interrupted run re-ran in place); `what` names the order in the messages.
pub fn assert_each_step_ran_once_ok(task: &Task, what: &str) {
    let mut steps = BTreeSet::new();
    for run in &task.runs {
        assert_eq!(
            run.outcome,
            Some(RunOutcomeRecord::Ok),
            "{what}: run {} of {}",
            run.id,
            run.step
        );
        assert!(
            steps.insert(run.step.as_str()),
            "{what}: step {} started twice",
            run.step
        );
    }
}

/// The process's file size limit (`RLIMIT_FSIZE`): `Some(bytes)` makes every write beyond that
/// size fail, as a full disk fails them; `None` lifts it to the hard limit.
pub fn set_file_size_limit(pid: u32, bytes: Option<u64>) {
    let pid = libc::pid_t::try_from(pid).expect("pid");
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid rlimit to write into, and no new limit is passed.
    let read = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old) };
    assert_eq!(read, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: bytes.map_or(old.rlim_max, |b| b.min(old.rlim_max)),
        rlim_max: old.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit, and the old one is not asked for.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The size of the largest file in `dir`.
pub fn largest_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("the database's folder")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.len())
        .max()
        .unwrap_or_default()
}

/// `output` ended with exit code `code` (2: a refusal) and its stderr says `says`.
pub fn refused(output: &Output, code: i32, says: &str) {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(says), "stderr should say {says:?}: {stderr}");
}

/// An inventory service for connector `inventorySystem` (kind `http`), started by a test that
/// needs a run held at a known point: every item in stock at TX-MAIN, a reservation's id derived
/// from its idempotency key (the same for every attempt of a call). A server configured with
/// `base_url = http://ADDRESS/held` has its next `hold` reservations held unanswered (counted in
/// `held`) until [`FakeInventory::let_go`]; any other first path segment is answered at once.
/// The crash and takeover tests kill a server while a run waits there, its stock check
/// journaled (a kill timed by the load alone rarely lands while a run has journaled results).
#[derive(Clone, Default)]
pub struct FakeInventory {
    /// How many more reservations to hold.
    pub hold: Arc<std::sync::atomic::AtomicUsize>,
    /// How many were held so far.
    pub held: Arc<std::sync::atomic::AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
}

impl FakeInventory {
    /// Serves the fake on a loopback port; answers its address.
    pub async fn start(&self) -> std::net::SocketAddr {
        let router = axum::Router::new()
            .route("/{segment}/{method}", axum::routing::post(fake_inventory))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    }

    /// Answers the reservations held, and holds no more.
    pub fn let_go(&self) {
        self.hold.store(0, std::sync::atomic::Ordering::SeqCst);
        self.release.notify_waiters();
    }
}

async fn fake_inventory(
    axum::extract::State(fake): axum::extract::State<FakeInventory>,
    axum::extract::Path((segment, method)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> axum::Json<Value> {
    use sha2::Digest as _;
    use std::sync::atomic::Ordering;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    axum::Json(match method.as_str() {
        "checkStock" => json!({"available": true, "warehouse": "TX-MAIN"}),
        "reserve" => {
            if segment == "held"
                && fake
                    .hold
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                let released = fake.release.notified();
                fake.held.fetch_add(1, Ordering::SeqCst);
                released.await;
            }
            let id = format!("RES-{}", &hex::encode(sha2::Sha256::digest(key.as_bytes()))[..12]);
            let expires = chrono::Utc::now() + chrono::TimeDelta::seconds(900);
            json!({"id": id, "expiresAt": expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)})
        }
        "release" => json!({"released": true}),
        other => panic!("the inventory fake was asked for {other}"),
    })
}

/// The running tasks of the SQLite store at `db` (a killed server's, or a copy of one), each
/// with its runs started and not finished: what a server started on it resumes.
pub async fn under_way(db: &Path) -> Vec<(String, Vec<whenever::store::InterruptedRun>)> {
    use whenever::store::Store as _;
    let store = whenever::store::sqlite::SqliteStore::open(db, whenever::store::sqlite::SqliteOptions::default())
        .expect("the store opens");
    let query = whenever::store::TaskQuery {
        status: Some(whenever::task::TaskStatus::Running),
        tag: None,
        limit: 1000,
        cursor: None,
    };
    let page = store.list_tasks(&query).await.expect("lists");
    let mut running = Vec::new();
    for task in page.tasks {
        let runs = store.interrupted_runs(&task.id).await.expect("reads");
        running.push((task.id, runs));
    }
    running
}
