//! The client commands: `create`, `deploy`, `steps`, `tasks`, `task`, `patch`, `retry`, `delete`,
//! `rollback`, `remove`, `hosts`, talking to a running `whenever serve` (`--server URL`, default
//! `$WHENEVER_SERVER` or `http://127.0.0.1:8080`; token from `WHENEVER_TOKEN`, or the file
//! `WHENEVER_TOKEN_FILE`). Output for people by default, the server's JSON with `--json`. Exit 0
//! on success, 2 when the server refused the request (4xx) or the input is bad, 1 when the server
//! is unreachable or failed.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use super::input::read_json;
use super::printable::{printable, say, say_err};
use super::timeline::log_rows;
use super::{EXIT_BAD_INPUT, EXIT_COMPLETED, EXIT_INTERNAL, exit_for};
use crate::runtime::Withheld;
use crate::task::TaskStatus;

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server's base URL (default: `$WHENEVER_SERVER`, else http://127.0.0.1:8080).
    #[arg(long)]
    pub server: Option<String>,
    /// Print the server's JSON instead of text for people.
    #[arg(long)]
    pub json: bool,
    /// A CA certificate (PEM) to trust for an `https://` server besides the usual public ones:
    /// the server's own certificate when it is self-signed (default: `$WHENEVER_CA_CERT`).
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
}

/// `whenever create [TASK.json] [--key KEY] [--wait MS]` (`-` or none reads stdin).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The task data, a JSON object: a file, or `-` for stdin (the default when stdin is not a
    /// terminal: `curl … | whenever create`).
    pub data: Option<PathBuf>,
    /// An idempotency key: running the command again with the same key and data shows the task
    /// the first run created instead of creating another (safe to retry after a timeout).
    #[arg(long)]
    pub key: Option<String>,
    /// Wait up to this many milliseconds for the task to settle; the exit code then says how it
    /// stands: 0 completed, 3 waiting (or still running), 4 failed.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever deploy COMPONENT.wasm [--manifest FILE] [--name NAME]`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The component.
    pub component: PathBuf,
    /// The manifest (default: `NAME.toml` beside the component, if any).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The step's name (default: the component's file name without `.wasm`).
    #[arg(long)]
    pub name: Option<String>,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever steps`.
#[derive(Debug, Args)]
pub struct StepsArgs {
    /// Show this step alone, with its versions and every change to which version serves
    /// (deploys, rollbacks, removals: when, by whom), also once it was removed.
    pub name: Option<String>,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever hosts`.
#[derive(Debug, Args)]
pub struct HostsArgs {
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever tasks [--status S] [--tag T] [--limit N] [--cursor C]`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only tasks with this status (running, waiting, completed, failed).
    #[arg(long)]
    pub status: Option<String>,
    /// Only tasks with this tag.
    #[arg(long)]
    pub tag: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Continue from the cursor printed by the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever task ID`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// The task's id.
    pub id: String,
    /// Keep printing the task each time it settles at a new revision (a waiting order once a
    /// person's patch moved it on, say), until it is completed (exit code 0) or failed (4).
    /// With `--json`, one JSON document per line.
    #[arg(long)]
    pub follow: bool,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `--if-revision N`, for the commands that change a task.
#[derive(Debug, Args)]
pub struct IfRevision {
    /// Act only while the task is at this revision (as `whenever task` shows it): sent as
    /// `If-Match`, so a task that moved on since it was read is left alone (exit code 2).
    #[arg(long, value_name = "REVISION")]
    pub if_revision: Option<u64>,
}

/// `whenever patch ID [PATCH.json]` (`-` or none reads stdin).
#[derive(Debug, Args)]
pub struct PatchArgs {
    /// The task's id.
    pub id: String,
    /// A JSON merge patch of the task data: a file, or `-` for stdin (the default when stdin is
    /// not a terminal: `echo '{"order": {"fraudApproved": true}}' | whenever patch ID`).
    pub patch: Option<PathBuf>,
    /// Wait up to this many milliseconds for the task to settle; the exit code then says how it
    /// stands: 0 completed, 3 waiting (or still running), 4 failed.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// Only while the task is at the revision read.
    #[command(flatten)]
    pub condition: IfRevision,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever retry ID [--step NAME]`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The task's id.
    pub id: String,
    /// The step to run again (default: every step whose latest run failed).
    #[arg(long)]
    pub step: Option<String>,
    /// Wait up to this many milliseconds for the task to settle; the exit code then says how it
    /// stands: 0 completed, 3 waiting (or still running), 4 failed.
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
    /// Only while the task is at the revision read.
    #[command(flatten)]
    pub condition: IfRevision,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever delete ID`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The task's id (a settled task: waiting, failed or completed).
    pub id: String,
    /// Only while the task is at the revision read.
    #[command(flatten)]
    pub condition: IfRevision,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever rollback NAME VERSION`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The step's name.
    pub name: String,
    /// The earlier version to serve again: its id, or the start of it (4 characters or more,
    /// one version's only), as `whenever steps NAME` lists them.
    pub version: String,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `whenever remove NAME`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The step's name.
    pub name: String,
    /// Server and output.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A failed client command: the message and the exit code.
#[derive(Debug)]
struct Failure(String, u8);

fn bad(message: impl Into<String>) -> Failure {
    Failure(message.into(), EXIT_BAD_INPUT)
}

/// The bearer token to send: `WHENEVER_TOKEN`, or the first line of the file
/// `WHENEVER_TOKEN_FILE` names (the server's own setting, so one environment serves both);
/// both set is refused, as the server refuses it, rather than one silently chosen.
fn token_from_environment() -> Result<Option<String>, Failure> {
    let token = std::env::var("WHENEVER_TOKEN").ok().filter(|t| !t.is_empty());
    let file = std::env::var_os("WHENEVER_TOKEN_FILE").filter(|f| !f.is_empty());
    let file = match (token, file) {
        (Some(_), Some(_)) => return Err(bad("WHENEVER_TOKEN and WHENEVER_TOKEN_FILE are both set; keep one")),
        (Some(token), None) => return Ok(Some(token)),
        (None, None) => return Ok(None),
        (None, Some(file)) => file,
    };
    let tokens = crate::api::secret_files::read(std::path::Path::new(&file))
        .map_err(|e| bad(format!("WHENEVER_TOKEN_FILE: {e}")))?;
    Ok(tokens.into_iter().next())
}

struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client of the server `args` name, trusting the CA certificate they (or
    /// `$WHENEVER_CA_CERT`) name; a certificate file that does not load is bad input.
    fn new(args: &ClientArgs) -> Result<Client, Failure> {
        Client::waiting(args, Some(READ_TIMEOUT))
    }

    /// [`Client::new`] for a request that uploads a component: reqwest's read timeout counts
    /// from the request's start, its upload and the server's compile included, so none is set
    /// (the request has [`DEPLOY_TIMEOUT`] in all).
    fn uploading(args: &ClientArgs) -> Result<Client, Failure> {
        Client::waiting(args, None)
    }

    /// [`Client::new`], giving up on a server silent for `read_timeout` from the request's
    /// start (and on a connection not made within [`CONNECT_TIMEOUT`]).
    fn waiting(args: &ClientArgs, read_timeout: Option<Duration>) -> Result<Client, Failure> {
        let base = args
            .server
            .clone()
            .or_else(|| std::env::var("WHENEVER_SERVER").ok())
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
        let ca_cert = args.ca_cert.clone().or_else(|| {
            std::env::var_os("WHENEVER_CA_CERT")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        // A server that is no URL would fail every request as a "builder error".
        match reqwest::Url::parse(&base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => {
                return Err(bad(format!(
                    "the server {base:?} (--server, or WHENEVER_SERVER) is no http:// or https:// URL; give one such \
                     as http://127.0.0.1:8080"
                )));
            }
        }
        let mut http = reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT);
        if let Some(timeout) = read_timeout {
            http = http.read_timeout(timeout);
        }
        if let Some(path) = ca_cert {
            let pem = std::fs::read(&path)
                .map_err(|e| bad(format!("cannot read the CA certificate {}: {e}", path.display())))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| bad(format!("{} holds no PEM certificate", path.display())))?;
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http
            .build()
            .map_err(|e| Failure(format!("cannot set up the HTTP client: {e}"), EXIT_INTERNAL))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http,
            token: token_from_environment()?,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, Failure> {
        self.exchange(request).await.map(|answer| answer.value)
    }

    /// [`Client::send`], with the answer's status and headers. A `503` (the server's store cannot take
    /// writes now, and nothing was done) is sent again after its `Retry-After`, for up to
    /// [`UNAVAILABLE_PATIENCE`] in all.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Answer, Failure> {
        let mut request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let started = std::time::Instant::now();
        loop {
            // Every request of this client has its body in memory, so it can be sent again.
            let again = request.try_clone();
            let answer = self.exchange_once(request).await;
            match (answer, again) {
                (Err(Unavailable { message, retry_after }), Some(next))
                    if started.elapsed().saturating_add(retry_after) <= UNAVAILABLE_PATIENCE =>
                {
                    say_err!(
                        "whenever: the server cannot store anything now ({message}); trying again in {} s",
                        retry_after.as_secs_f64()
                    );
                    tokio::time::sleep(retry_after).await;
                    request = next;
                }
                (Err(Unavailable { message, .. }), _) => {
                    return Err(Failure(
                        format!("the server answered 503 Service Unavailable: {message}"),
                        EXIT_INTERNAL,
                    ));
                }
                (Ok(answer), _) => return answer,
            }
        }
    }

    /// Sends `request` once: the answer (or why it failed), or [`Unavailable`] for a `503`.
    async fn exchange_once(&self, request: reqwest::RequestBuilder) -> Result<Result<Answer, Failure>, Unavailable> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Ok(Err(self.unreachable(&e))),
        };
        let status = response.status();
        let headers = response.headers().clone();
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => return Ok(Err(Failure(format!("cannot read the answer: {e}"), EXIT_INTERNAL))),
        };
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        // A 304 (not modified: a conditional read) is an answer, without a body.
        if status.is_success() || status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Ok(Answer { value, status, headers }));
        }
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs);
            return Err(Unavailable { message, retry_after });
        }
        let code = if status.is_client_error() {
            EXIT_BAD_INPUT
        } else {
            EXIT_INTERNAL
        };
        // The server's words are for any client; this one says where its token comes from.
        let hint = match (status, &self.token) {
            (reqwest::StatusCode::UNAUTHORIZED, None) => {
                " (set WHENEVER_TOKEN, or WHENEVER_TOKEN_FILE, to the server's token)"
            }
            (reqwest::StatusCode::UNAUTHORIZED, Some(_)) => {
                " (the token sent came from WHENEVER_TOKEN or WHENEVER_TOKEN_FILE)"
            }
            _ => "",
        };
        Ok(Err(Failure(
            format!("the server answered {status}: {message}{hint}"),
            code,
        )))
    }

    /// Why the server could not be reached, with the causes (and a hint for a certificate that
    /// rustls takes for a CA's).
    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        let mut why = whenever_connectors::error::with_causes(e);
        if why.contains("CaUsedAsEndEntity") {
            why.push_str(
                " (the server's certificate is marked as a CA, as `openssl req -x509` makes \
                     them unless told `-addext basicConstraints=critical,CA:FALSE`; rustls takes a \
                     self-signed certificate as the server's own only without that mark)",
            );
        } else if why.contains("UnknownIssuer") {
            why.push_str(
                " (a certificate no CA this client trusts signed, such as a self-signed one: give \
                 the CA that signed it, or the certificate itself, with --ca-cert FILE or \
                 WHENEVER_CA_CERT)",
            );
        } else if self.base.starts_with("http://") && why.contains("invalid HTTP version") {
            why.push_str(" (the server may speak HTTPS: try https:// in --server or WHENEVER_SERVER)");
        } else if e.is_timeout() {
            why.push_str(
                " (it took the connection, or the request, and said nothing more for that long: \
                 an overloaded server, or one that is not Whenever's)",
            );
        }
        Failure(
            format!("cannot reach the server at {}: {why}", self.base),
            EXIT_INTERNAL,
        )
    }
}

/// How long the client waits for a connection to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the client waits for the server's answer from a request's start (and then between
/// pieces of it): longer than the longest wait a request may ask (`wait`, at most 60 s).
const READ_TIMEOUT: Duration = Duration::from_secs(90);

/// How long `whenever deploy` waits for its answer in all, upload and compile included: a
/// server that took the component and then hangs does not hold the command (a CI job) for ever.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How long the client keeps sending a request again while the server answers 503.
const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(30);

/// A successful answer of the server: its JSON (`Null` for none), status and headers.
struct Answer {
    value: Value,
    status: reqwest::StatusCode,
    headers: reqwest::header::HeaderMap,
}

/// A 503: the server's store cannot take writes now; nothing was done.
struct Unavailable {
    message: String,
    retry_after: Duration,
}

impl Client {
    /// The URL of `path` on the server.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn finish(command: &str, result: Result<(), Failure>) -> u8 {
    finish_with(command, result.map(|()| EXIT_COMPLETED))
}

/// [`finish`] for a command whose success has an exit code of its own.
fn finish_with(command: &str, result: Result<u8, Failure>) -> u8 {
    match result {
        Ok(code) => code,
        Err(Failure(message, code)) => {
            say_err!("whenever {command}: {message}");
            code
        }
    }
}

/// The exit code of a command that sent a task request: 0 when it did not wait; after a wait
/// (`--wait MS`), how the task stands, as `whenever run` says it ([`exit_for`]; a status it
/// cannot read counts as still running).
fn waited_exit(task: &Value, waited: bool) -> u8 {
    if !waited {
        return EXIT_COMPLETED;
    }
    exit_for(status_of(task).unwrap_or(TaskStatus::Running))
}

/// The status of a task as the API answers it.
fn status_of(task: &Value) -> Option<TaskStatus> {
    serde_json::from_value(task["status"].clone()).ok()
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("-")
}

/// The strings of the array at `value` (tags, steps, grants); nothing if it is not one.
fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A time of the server's (RFC 3339, UTC) for people: to the second, `2026-12-06 20:52:49`;
/// anything else as it came.
fn time(value: &Value, key: &str) -> String {
    let raw = text(value, key);
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| raw.to_string())
}

impl IfRevision {
    /// `request` made conditional on the task being at the revision (an `If-Match`), if one
    /// is given.
    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.if_revision {
            Some(revision) => request.header(reqwest::header::IF_MATCH, format!("\"{revision}\"")),
            None => request,
        }
    }
}

/// `task` as `--json` asks: pretty JSON for scripts, else for people ([`print_task_for_people`]).
async fn show_task(client: &Client, task: &Value, json: bool) {
    if json {
        print_json(task)
    } else {
        print_task_for_people(client, task).await
    }
}

/// The task for people ([`print_task`]), and, while it waits, what it waits on ([`waiting_on`],
/// from `GET /v1/tasks/{id}/conditions`).
async fn print_task_for_people(client: &Client, task: &Value) {
    print_task(task);
    if task["status"] != "waiting" {
        return;
    }
    let path = format!("/v1/tasks/{}/conditions", text(task, "id"));
    match client.send(client.http.get(client.url(&path))).await {
        Ok(conditions) => print!("{}", waiting_on(&conditions)),
        Err(Failure(message, _)) => say!("waiting on: the steps' conditions could not be read ({message})"),
    }
}

/// What a waiting task waits on, for people: each serving step's standing from `GET
/// /v1/tasks/{id}/conditions`, the steps whose condition fails first (the first failing path and
/// why), then those that ran on these values, each group by name. `whenever run` prints it too.
pub(super) fn waiting_on(conditions: &Value) -> String {
    let steps: Vec<&Value> = conditions["steps"].as_array().into_iter().flatten().collect();
    if steps.is_empty() {
        return "waiting on: no step serves\n".to_string();
    }
    // A step whose condition fails on what its own latest run wrote is done: named on one line
    // after what the task waits on, not told path by path.
    let (done, pending): (Vec<&Value>, Vec<&Value>) = steps.into_iter().partition(|step| text(step, "state") == "done");
    let mut rows: Vec<(u8, &str, String)> = pending
        .into_iter()
        .map(|step| {
            let (rank, why) = match text(step, "state") {
                "fails" => (0, text(step, "reason").to_string()),
                "ran" => (1, ran(step["runs"].as_u64().unwrap_or(0), step["last_failed"] == true)),
                "eligible" => (2, "its condition holds; it starts".to_string()),
                other => (3, other.to_string()),
            };
            (rank, text(step, "step"), why)
        })
        .collect();
    rows.sort();
    let width = rows.iter().map(|(_, step, _)| step.chars().count()).max().unwrap_or(0);
    let mut out = "waiting on (each step's condition against the data)\n".to_string();
    for (_, step, why) in rows {
        // A reason names the data's keys: a third party's text (see `printable`).
        out.push_str(&format!("  {step:<width$}  {}\n", printable(&why)));
    }
    if !done.is_empty() {
        let names: Vec<&str> = done.iter().map(|step| text(step, "step")).collect();
        out.push_str(&format!(
            "  done (they ran, and their conditions no longer hold): {}\n",
            printable(&names.join(", "))
        ));
    }
    out
}

/// What [`waiting_on`] says of a step whose condition holds and that ran on these values.
fn ran(runs: u64, last_failed: bool) -> String {
    let times = match runs {
        1 => "once".to_string(),
        n => format!("{n} times"),
    };
    let failed = if last_failed { " (its last run failed)" } else { "" };
    format!("its condition holds; it ran {times}, the last on these values{failed}, and runs again when they change")
}

fn print_task(task: &Value) {
    say!("{}  {}", text(task, "id"), text(task, "status"));
    if let Some(revision) = task["revision"].as_u64() {
        say!("revision {revision}");
    }
    say!("created  {} UTC", time(task, "created_at"));
    if task["updated_at"].is_string() {
        say!("updated  {} UTC", time(task, "updated_at"));
    }
    if let Some(name) = task["name"].as_str() {
        say!("name     {name}");
    }
    let tags = strings(&task["tags"]);
    if !tags.is_empty() {
        say!("tags     {}", tags.join(", "));
    }
    if let Some(message) = task["message"].as_str() {
        say!("message  {message}");
    }
    say!(
        "data     {}",
        serde_json::to_string_pretty(&task["data"]).unwrap_or_default()
    );
    if let Some(runs) = task["runs"].as_array() {
        say!("runs     {}", runs.len());
        for run in runs {
            // A patch or retry made through the API: what was asked and by whom, when.
            if text(run, "step").starts_with('$') {
                say!(
                    "  #{:<3} {:<28} {}  {}",
                    run["id"].as_u64().unwrap_or_default(),
                    text(run, "step"),
                    time(run, "started_at"),
                    run["logs"][0]["message"].as_str().unwrap_or_default()
                );
                continue;
            }
            let outcome = match &run["outcome"] {
                Value::Null => "running".to_string(),
                Value::String(s) => s.clone(),
                other => format!("error: {}", other["error"]["message"].as_str().unwrap_or("?")),
            };
            say!(
                "  #{:<3} {:<28} {:<12} {:>8.1} ms  {}",
                run["id"].as_u64().unwrap_or_default(),
                text(run, "step"),
                text(run, "version"),
                run["duration_ms"].as_f64().unwrap_or_default(),
                outcome
            );
            if run["restarted_at"].is_string() {
                say!(
                    "       re-run from its start at {} (UTC): the host stopped under it; calls it \
                     had made were replayed, not made again",
                    time(run, "restarted_at")
                );
            }
            let logs = run["logs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|log| (text(log, "level"), text(log, "message")));
            for row in log_rows(logs, run["logs_truncated"] == true) {
                say!("       {row}");
            }
            for call in run["connector_calls"].as_array().into_iter().flatten() {
                say!("       {}", call_line(call));
            }
            for conflict in run["conflicts"].as_array().into_iter().flatten() {
                say!("       {}", conflict_line(text(run, "step"), conflict));
            }
        }
    }
}

/// The most of a connector's answer a call's line shows, in characters.
const ANSWER_SHOWN: usize = 60;

/// A connector call a run made, for people: which, how long, and what it returned (its start)
/// or why it failed; whether the answer was replayed from the journal after a crash. A server
/// built before 2026-12-07 answers `result: {"Ok": …}` / `{"Err": …}` instead; read alike.
fn call_line(call: &Value) -> String {
    let earlier = |key: &str| call.get("result").and_then(|result| result.get(key));
    let returned = call.get("returned").or_else(|| earlier("Ok"));
    let error = call.get("error").or_else(|| earlier("Err"));
    let outcome = match (returned, error) {
        (Some(returned), _) => {
            let text = returned.to_string();
            match text.char_indices().nth(ANSWER_SHOWN) {
                Some((end, _)) => format!("returned {}…", &text[..end]),
                None => format!("returned {text}"),
            }
        }
        (None, Some(error)) => format!("{}: {}", text(error, "kind"), text(error, "message")),
        (None, None) => "no result recorded".to_string(),
    };
    let replayed = if call["replayed"] == Value::Bool(true) {
        " (replayed from the journal)"
    } else {
        ""
    };
    format!(
        "call {}.{} {:.1} ms{replayed}: {outcome}",
        text(call, "connector"),
        text(call, "method"),
        call["duration_us"].as_f64().unwrap_or_default() / 1000.0
    )
}

/// A conflict a run recorded, for people: where, with which other steps, whose value stayed.
fn conflict_line(step: &str, conflict: &Value) -> String {
    let others: Vec<&str> = strings(&conflict["steps"])
        .into_iter()
        .filter(|other| *other != step)
        .collect();
    let kept = match conflict["winner"].as_str() {
        Some(winner) if winner == step => "this run's value kept".to_string(),
        Some(winner) => format!("{winner}'s value kept"),
        None => "no value kept".to_string(),
    };
    format!(
        "conflict at {} with {}: {kept}",
        text(conflict, "path"),
        if others.is_empty() {
            "another run".to_string()
        } else {
            others.join(", ")
        }
    )
}

/// `whenever deploy`.
pub(crate) async fn deploy(args: DeployArgs) -> u8 {
    let result = async {
        // An upload of many megabytes, and its compile, may take the server longer than the
        // other requests' silence allows: the server answers once the step serves.
        let client = Client::uploading(&args.client)?;
        let bytes = crate::catalog::read_component(&args.component).map_err(|e| bad(e.to_string()))?;
        let name = match &args.name {
            Some(name) => name.clone(),
            None => args
                .component
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string(),
        };
        if !crate::runtime::is_step_name(&name) {
            return Err(bad(crate::runtime::LoadError::InvalidName(name).to_string()));
        }
        let manifest_path = args.manifest.clone().or_else(|| {
            let beside = args.component.with_extension("toml");
            beside.is_file().then_some(beside)
        });
        let mut request = client
            .http
            .put(client.url(&format!("/v1/steps/{name}")))
            .timeout(DEPLOY_TIMEOUT)
            .body(bytes);
        if let Some(path) = manifest_path {
            let manifest =
                std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
            request = request.query(&[("manifest", manifest)]);
        }
        let answer = client.exchange(request).await?;
        let step = answer.value;
        if args.client.json {
            print_json(&step);
        } else if answer.status == reqwest::StatusCode::OK {
            // 200, not 201: nothing was deployed.
            say!(
                "{} version {} serves already; nothing changed",
                text(&step, "name"),
                text(&step, "version")
            );
        } else {
            say!("deployed {} version {}", text(&step, "name"), text(&step, "version"));
        }
        Ok(())
    }
    .await;
    finish("deploy", result)
}

/// `whenever steps`.
pub(crate) async fn steps(args: StepsArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        if let Some(name) = &args.name {
            return show_step(&client, name, args.client.json).await;
        }
        let answer = client.send(client.http.get(client.url("/v1/steps"))).await?;
        if args.client.json {
            print_json(&answer);
            return Ok(());
        }
        for step in answer["steps"].as_array().into_iter().flatten() {
            let versions = step["versions"].as_array().map(Vec::len).unwrap_or_default();
            let reads = match step["reads"].as_array().map(Vec::len) {
                Some(1) => "1 data path".to_string(),
                Some(paths) => format!("{paths} data paths"),
                None => "all data".to_string(),
            };
            say!(
                "{:<30} {:<12} {versions} {}  reads: {}  grants: {}",
                text(step, "name"),
                text(step, "version"),
                if versions == 1 { "version " } else { "versions" },
                reads,
                grants(step)
            );
        }
        Ok(())
    }
    .await;
    finish("steps", result)
}

/// `whenever steps NAME`: the step if it serves, its versions, and its changes (a name never
/// deployed is the server's 404).
async fn show_step(client: &Client, name: &str, json: bool) -> Result<(), Failure> {
    let changes = client
        .send(client.http.get(client.url(&format!("/v1/steps/{name}/changes"))))
        .await?;
    // From the list rather than `GET /v1/steps/{name}`: a removed step is not an error here.
    let serving = client.send(client.http.get(client.url("/v1/steps"))).await?;
    let step = serving["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or(Value::Null);
    // A removed step's too: the versions a rollback may serve again. A server older than that
    // route (in an upgrade) has only the serving step's.
    let versions = match client
        .send(client.http.get(client.url(&format!("/v1/steps/{name}/versions"))))
        .await
    {
        Err(Failure(message, _)) if message.starts_with("the server answered 404") => {
            serde_json::json!({"versions": step["versions"]})
        }
        answer => answer?,
    };
    if json {
        print_json(&serde_json::json!({
            "step": step,
            "versions": versions["versions"],
            "changes": changes["changes"],
        }));
        return Ok(());
    }
    if step.is_null() {
        say!("{name}  not serving");
    } else {
        say!("{name}  serving {}  grants: {}", text(&step, "version"), grants(&step));
        // As `whenever match --condition` reads it, to try it on a task's data.
        say!("condition  {}", step["condition"]);
        let reads = strings(&step["reads"]);
        say!(
            "reads      {}",
            if step["reads"].is_array() {
                reads.join(", ")
            } else {
                "all data".to_string()
            }
        );
        let limits = &step["limits"];
        if limits.is_object() {
            say!(
                "limits     {} ms, {} MiB of memory, {} bytes of output, {} connector calls, {} bytes of log",
                limits["timeout_ms"],
                limits["memory_mib"],
                limits["max_output_bytes"],
                limits["max_connector_calls"],
                limits["max_log_bytes"]
            );
        }
    }
    say!("versions");
    for version in versions["versions"].as_array().into_iter().flatten() {
        say!(
            "  {:<12}  {}  {:>9} bytes  {}{}",
            text(version, "version"),
            time(version, "deployed_at"),
            version["size"].as_u64().unwrap_or_default(),
            text(version, "deployed_by"),
            if version["current"] == true { "  (serving)" } else { "" }
        );
    }
    say!("changes");
    for change in changes["changes"].as_array().into_iter().flatten() {
        say!(
            "  {}  {:<11}  {:<12}  by {}",
            time(change, "at"),
            text(change, "change"),
            text(change, "version"),
            change["by"].as_str().unwrap_or("(not known)")
        );
    }
    Ok(())
}

/// A step's grants for people: `stripe, fraudGuard (hosts: fraud.internal)`, `-` for none, and
/// what the host's config withholds.
fn grants(step: &Value) -> String {
    let connectors = strings(&step["connectors"]);
    let hosts = strings(&step["hosts"]);
    let mut out = if connectors.is_empty() {
        "-".to_string()
    } else {
        connectors.join(", ")
    };
    if !hosts.is_empty() {
        out.push_str(&format!(" (hosts: {})", hosts.join(", ")));
    }
    // Absent when nothing is withheld; fields a newer server adds are passed over. Joined as
    // the server's log joins them: a limit's text has a comma of its own.
    let given = &step["withheld"];
    let read = match given {
        Value::Null => Ok(Withheld::default()),
        given => Withheld::deserialize(given),
    };
    // What a newer server withholds that this client has no words for: a field not empty that
    // the `Withheld` read does not write back.
    let more = match (given.as_object(), read.as_ref().map(serde_json::to_value)) {
        (Some(fields), Ok(Ok(Value::Object(known)))) => fields.iter().any(|(field, value)| {
            let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
            !empty && !known.contains_key(field)
        }),
        _ => false,
    };
    let said = match read {
        Ok(withheld) => withheld.to_string(),
        Err(e) => format!("(not readable here: {e})"),
    };
    match (said.is_empty(), more) {
        (true, false) => {}
        (true, true) => out.push_str("  withheld by config: (what this client cannot show)"),
        (false, false) => out.push_str(&format!("  withheld by config: {said}")),
        (false, true) => out.push_str(&format!(
            "  withheld by config: {said}; and what this client cannot show"
        )),
    }
    out
}

/// `whenever hosts`.
pub(crate) async fn hosts(args: HostsArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        let answer = client.send(client.http.get(client.url("/v1/hosts"))).await?;
        if args.client.json {
            print_json(&answer);
        } else {
            print!("{}", host_table(&answer));
        }
        Ok(())
    }
    .await;
    finish("hosts", result)
}

/// `GET /v1/hosts` for people: a header, then a line per host: what it is to the server asked
/// (a newer host makes it stand aside; an older one stands aside for it), how long ago the store
/// saw it, the format it writes and the tasks it holds.
fn host_table(answer: &Value) -> String {
    if answer["shared"] != true {
        return "this server's store is its own: no other host shares it\n".to_string();
    }
    let own = answer["format"].as_u64().unwrap_or_default();
    let mut rows = vec![["HOST", "STATE", "SEEN", "FORMAT", "TASKS"].map(str::to_string)];
    rows.extend(answer["hosts"].as_array().into_iter().flatten().map(|host| {
        let format = host["format"].as_u64().unwrap_or_default();
        let this = host["this"] == true;
        let state = match (host["live"] == true, format) {
            (false, _) => "gone",
            (true, _) if this && answer["superseded"] == true => "stands aside",
            (true, 0) => "starting, or an old build",
            (true, format) if format > own => "newer",
            (true, format) if format < own => "older: stands aside",
            (true, _) => "live",
        };
        let name = cell(text(host, "host_id"), HOST_CELL);
        [
            if this { format!("{name} (this server)") } else { name },
            state.to_string(),
            format!("{} ms ago", host["seen_ms_ago"].as_u64().unwrap_or_default()),
            format.to_string(),
            host["tasks"].as_u64().unwrap_or_default().to_string(),
        ]
    }));
    table(&rows)
}

/// `whenever tasks`.
pub(crate) async fn tasks(args: TasksArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(status) = &args.status {
            query.push(("status", status.clone()));
        }
        if let Some(tag) = &args.tag {
            query.push(("tag", tag.clone()));
        }
        if let Some(limit) = args.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(cursor) = &args.cursor {
            query.push(("cursor", cursor.clone()));
        }
        let page = client
            .send(client.http.get(client.url("/v1/tasks")).query(&query))
            .await?;
        if args.client.json {
            print_json(&page);
            return Ok(());
        }
        print!(
            "{}",
            task_table(page["tasks"].as_array().map_or(&[][..], Vec::as_slice), &args)
        );
        if let Some(cursor) = page["next_cursor"].as_str() {
            say!("more: --cursor {cursor}");
        }
        Ok(())
    }
    .await;
    finish("tasks", result)
}

/// The most characters of a task's name the table shows (`whenever task ID` shows it whole).
const NAME_CELL: usize = 48;

/// The most characters of a host's id `whenever hosts` shows.
const HOST_CELL: usize = 64;

/// The most characters of a task's tags the table shows.
const TAGS_CELL: usize = 64;

/// `text` as a table cell: escaped as [`printable`] does, and cut to `most` characters with `…`.
fn cell(text: &str, most: usize) -> String {
    let shown = printable(text);
    match shown.char_indices().nth(most) {
        Some((end, _)) => format!("{}…", &shown[..end]),
        None => shown.into_owned(),
    }
}

/// A page of `whenever tasks` for people: a header, then a task a line (id, status, creation,
/// last change, name, tags), in columns as wide as their widest cell; or what matched nothing.
fn task_table(tasks: &[Value], args: &TasksArgs) -> String {
    if tasks.is_empty() {
        let mut none = "no tasks".to_string();
        if let Some(status) = &args.status {
            none.push_str(&format!(" with status {status}"));
        }
        if let Some(tag) = &args.tag {
            none.push_str(&format!(" tagged {tag}"));
        }
        if args.cursor.is_some() {
            none.push_str(" after that cursor");
        }
        return none + "\n";
    }
    // Listed in the order of creation, which the first time column shows.
    let mut rows = vec![["ID", "STATUS", "CREATED (UTC)", "UPDATED (UTC)", "NAME", "TAGS"].map(str::to_string)];
    rows.extend(tasks.iter().map(|task| {
        [
            text(task, "id").to_string(),
            text(task, "status").to_string(),
            time(task, "created_at"),
            time(task, "updated_at"),
            cell(task["name"].as_str().unwrap_or(""), NAME_CELL),
            cell(&strings(&task["tags"]).join(","), TAGS_CELL),
        ]
    }));
    table(&rows)
}

/// `rows` (a header first) in columns as wide as their widest cell, a line each.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|column| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `whenever task`.
pub(crate) async fn task(args: TaskArgs) -> u8 {
    let path = format!("/v1/tasks/{}", args.id);
    let result = async {
        let client = Client::new(&args.client)?;
        let task = client.send(client.http.get(client.url(&path))).await?;
        if args.follow {
            return follow(&client, &path, task, args.client.json).await;
        }
        show_task(&client, &task, args.client.json).await;
        Ok(EXIT_COMPLETED)
    }
    .await;
    match result {
        Ok(code) => code,
        Err(failure) => finish("task", Err(failure)),
    }
}

/// How long one long poll of `whenever task --follow` waits for a change (the server's most).
const FOLLOW_POLL_MS: u64 = 60_000;

/// `whenever task --follow`: prints `task`, then the task each time it settles at a new
/// revision (long polls naming the revision it has: `?wait` with `If-None-Match`), until it is
/// completed or failed; the exit code says which. A server that goes away meanwhile (a restart,
/// a rolling upgrade) is asked again every second for up to [`UNAVAILABLE_PATIENCE`] in a row:
/// the polls change nothing, so asking again is safe.
async fn follow(client: &Client, path: &str, mut task: Value, json: bool) -> Result<u8, Failure> {
    loop {
        if json {
            println!("{task}");
        } else {
            print_task_for_people(client, &task).await;
        }
        if let Some(settled @ (TaskStatus::Completed | TaskStatus::Failed)) = status_of(&task) {
            return Ok(exit_for(settled));
        }
        let held = task["revision"].as_u64().unwrap_or_default();
        let mut lost: Option<std::time::Instant> = None;
        loop {
            let request = client
                .http
                .get(client.url(path))
                .query(&[("wait", FOLLOW_POLL_MS)])
                .header(reqwest::header::IF_NONE_MATCH, format!("\"{held}\""));
            let answer = match client.exchange(request).await {
                Ok(answer) => answer.value,
                Err(failure) if failure.1 == EXIT_INTERNAL => {
                    let since = *lost.get_or_insert_with(|| {
                        say_err!(
                            "whenever task: {}; asking again every second for up to {} s",
                            failure.0,
                            UNAVAILABLE_PATIENCE.as_secs()
                        );
                        std::time::Instant::now()
                    });
                    if since.elapsed() >= UNAVAILABLE_PATIENCE {
                        return Err(failure);
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                Err(failure) => return Err(failure),
            };
            lost = None;
            // No body: not modified within the wait; ask again.
            if !answer.is_null() {
                task = answer;
                break;
            }
        }
        if !json {
            say!();
        }
    }
}

/// `whenever create`.
pub(crate) async fn create(args: CreateArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        let (data, _) = read_json(args.data.as_deref(), "the task data").map_err(bad)?;
        // Without a wait the answer is the task as stored, its first runs starting.
        let mut request = client
            .http
            .post(client.url("/v1/tasks"))
            .header("content-type", "application/json")
            .body(data.to_string());
        if args.wait > 0 {
            request = request.query(&[("wait", args.wait)]);
        }
        if let Some(key) = &args.key {
            request = request.header(crate::api::IDEMPOTENCY_KEY_HEADER, key);
        }
        let Answer {
            value: task, headers, ..
        } = client.exchange(request).await?;
        if args.client.json {
            print_json(&task);
        } else {
            if headers.get(crate::api::REPLAYED_HEADER).is_some_and(|v| v == "true") {
                say!("an earlier request with this key created the task; it is shown as it is now");
            }
            print_task_for_people(&client, &task).await;
        }
        Ok(waited_exit(&task, args.wait > 0))
    }
    .await;
    finish_with("create", result)
}

/// `whenever patch`.
pub(crate) async fn patch(args: PatchArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        let (merge, _) = read_json(args.patch.as_deref(), "the merge patch").map_err(bad)?;
        let request = client
            .http
            .patch(client.url(&format!("/v1/tasks/{}", args.id)))
            .query(&[("wait", args.wait)])
            .header("content-type", "application/merge-patch+json")
            .body(merge.to_string());
        let request = args.condition.apply(request);
        let task = client.send(request).await?;
        show_task(&client, &task, args.client.json).await;
        Ok(waited_exit(&task, args.wait > 0))
    }
    .await;
    finish_with("patch", result)
}

/// `whenever retry`.
pub(crate) async fn retry(args: RetryArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        let body = match &args.step {
            Some(step) => serde_json::json!({"step": step}).to_string(),
            None => String::new(),
        };
        let request = client
            .http
            .post(client.url(&format!("/v1/tasks/{}/retry", args.id)))
            .query(&[("wait", args.wait)])
            .header("content-type", "application/json")
            .body(body);
        let request = args.condition.apply(request);
        let task = client.send(request).await?;
        show_task(&client, &task, args.client.json).await;
        Ok(waited_exit(&task, args.wait > 0))
    }
    .await;
    finish_with("retry", result)
}

/// `whenever delete`.
pub(crate) async fn delete(args: DeleteArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        let request = client.http.delete(client.url(&format!("/v1/tasks/{}", args.id)));
        let request = args.condition.apply(request);
        client.send(request).await?;
        if args.client.json {
            print_json(&serde_json::json!({"deleted": args.id}));
        } else {
            say!("task {} deleted with its history", args.id);
        }
        Ok(())
    }
    .await;
    finish("delete", result)
}

/// `whenever rollback`.
pub(crate) async fn rollback(args: RollbackArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        let request = client
            .http
            .post(client.url(&format!("/v1/steps/{}/rollback", args.name)))
            .header("content-type", "application/json")
            .body(serde_json::json!({"version": args.version}).to_string());
        let step = client.send(request).await?;
        if args.client.json {
            print_json(&step);
        } else {
            say!("{} now serves version {}", text(&step, "name"), text(&step, "version"));
        }
        Ok(())
    }
    .await;
    finish("rollback", result)
}

/// `whenever remove`.
pub(crate) async fn remove(args: RemoveArgs) -> u8 {
    let result = async {
        let client = Client::new(&args.client)?;
        let request = client.http.delete(client.url(&format!("/v1/steps/{}", args.name)));
        client.send(request).await?;
        if args.client.json {
            print_json(&serde_json::json!({"removed": args.name}));
        } else {
            say!(
                "{name} no longer serves; its versions are kept (`whenever steps {name}` lists them, `whenever \
                 rollback {name} VERSION` serves one again)",
                name = args.name
            );
        }
        Ok(())
    }
    .await;
    finish("remove", result)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A server at a local port that reads each request and, after `delay`, answers `answer`
    /// (or, given `None`, never answers and keeps the connection open).
    async fn server_answering(answer: Option<&'static str>, delay: Duration) -> ClientArgs {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    tokio::time::sleep(delay).await;
                    match answer {
                        Some(answer) => {
                            let _ = socket.write_all(answer.as_bytes()).await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                });
            }
        });
        ClientArgs {
            server: Some(format!("http://{address}")),
            json: false,
            ca_cert: None,
        }
    }

    #[tokio::test]
    async fn a_server_that_takes_the_request_and_says_nothing_is_given_up_on() {
        let args = server_answering(None, Duration::ZERO).await;
        let client = Client::waiting(&args, Some(Duration::from_millis(300))).expect("client");
        let Err(Failure(message, code)) = client.send(client.http.get(client.url("/v1/steps"))).await else {
            panic!("an answer from a silent server");
        };
        assert_eq!(code, EXIT_INTERNAL);
        assert!(
            message.starts_with(&format!("cannot reach the server at {}", client.base))
                && message
                    .ends_with("said nothing more for that long: an overloaded server, or one that is not Whenever's)"),
            "{message}"
        );
    }

    /// A `Retry-After` longer than any clock holds, on a 503 that took over a second, is not
    /// waited for: the answer is told (adding it to the time spent used to overflow and panic).
    #[tokio::test]
    async fn a_503_asking_for_an_endless_wait_is_told_not_waited_for() {
        let args = server_answering(
            Some(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 18446744073709551615\r\n\
                 Content-Type: application/json\r\nContent-Length: 46\r\n\r\n\
                 {\"error\":{\"code\":\"unavailable\",\"message\":\"x\"}}",
            ),
            Duration::from_millis(1100),
        )
        .await;
        let client = Client::new(&args).expect("client");
        let Err(Failure(message, _)) = client.send(client.http.get(client.url("/v1/steps"))).await else {
            panic!("a 503 taken for an answer");
        };
        assert_eq!(message, "the server answered 503 Service Unavailable: x");
    }

    #[test]
    fn grants_for_people_name_what_the_config_withholds() {
        let step = json!({
            "connectors": ["slackCom"],
            "hosts": ["hooks.internal"],
            "withheld": {"connectors": ["stripe"], "hosts": ["*.internal"], "reads": ["order.lines"], "limits": ["timeout_ms = 60000, held to 10000"]}
        });
        assert_eq!(
            grants(&step),
            "slackCom (hosts: hooks.internal)  withheld by config: stripe; host *.internal; reads order.lines; limits.timeout_ms = 60000, held to 10000"
        );
        assert_eq!(grants(&json!({})), "-");
        // A newer server's field is told of, not shown as nothing withheld; so is a shape this
        // client cannot read.
        let newer = json!({"connectors": ["stripe"], "withheld": {"connectors": ["paypal"], "queues": ["q"]}});
        assert_eq!(
            grants(&newer),
            "stripe  withheld by config: paypal; and what this client cannot show"
        );
        let only_newer = json!({"connectors": ["stripe"], "withheld": {"queues": ["q"], "topics": []}});
        assert_eq!(
            grants(&only_newer),
            "stripe  withheld by config: (what this client cannot show)"
        );
        let nothing = json!({"connectors": ["stripe"], "withheld": {"topics": []}});
        assert_eq!(grants(&nothing), "stripe");
        let odd = json!({"connectors": ["stripe"], "withheld": {"connectors": "paypal"}});
        assert!(
            grants(&odd).starts_with("stripe  withheld by config: (not readable here: "),
            "{}",
            grants(&odd)
        );
    }

    #[test]
    fn a_host_table_says_what_each_host_is_to_the_server_asked() {
        let host = |id: &str, live: bool, format: u64, this: bool| json!({"host_id": id, "live": live, "seen_ms_ago": 120, "lease_ms": 3000, "format": format, "tasks": 2, "this": this});
        let long = "worker-pod-7f9c6d5b8-abcde-12345-0a1b2";
        let answer = json!({"shared": true, "superseded": false, "format": 1, "hosts": [
            host(long, true, 1, true),
            host("web-2", true, 2, false),
            host("web-3", true, 0, false),
            host("web-4", false, 1, false),
        ]});
        let table = host_table(&answer);
        let lines: Vec<&str> = table.lines().collect();
        // Each column starts where its header does, however long a host's name.
        let state_at = lines[0].find("STATE").expect("a header");
        let state = |line: &str| line[state_at..].split("  ").next().map(str::trim).map(str::to_string);
        assert!(lines[1].starts_with(&format!("{long} (this server)")), "{table}");
        assert_eq!(state(lines[1]).as_deref(), Some("live"), "{table}");
        assert_eq!(state(lines[2]).as_deref(), Some("newer"), "{table}");
        assert_eq!(state(lines[3]).as_deref(), Some("starting, or an old build"), "{table}");
        assert_eq!(state(lines[4]).as_deref(), Some("gone"), "{table}");
        assert!(lines[1].ends_with("120 ms ago  1       2"), "{table}");
        let older = json!({"shared": true, "format": 2, "hosts": [host("web-5", true, 1, false)]});
        assert!(host_table(&older).contains("older: stands aside"));
        let aside = json!({"shared": true, "superseded": true, "format": 1, "hosts": [host("web-1", true, 1, true)]});
        assert!(
            host_table(&aside)
                .lines()
                .nth(1)
                .is_some_and(|l| l.contains("stands aside"))
        );
        assert_eq!(
            host_table(&json!({"shared": false, "format": 1, "hosts": []})),
            "this server's store is its own: no other host shares it\n"
        );
    }

    fn filters(status: Option<&str>, tag: Option<&str>) -> TasksArgs {
        TasksArgs {
            status: status.map(str::to_string),
            tag: tag.map(str::to_string),
            limit: None,
            cursor: None,
            client: ClientArgs {
                server: None,
                json: false,
                ca_cert: None,
            },
        }
    }

    #[test]
    fn a_task_page_for_people_is_a_table_with_a_header_or_says_nothing_matched() {
        let tasks = [
            json!({"id": "t_01a24d217cbe7ff5eea74d7c", "status": "waiting", "name": null, "tags": [],
                   "created_at": "2026-12-06T20:52:49.1Z", "updated_at": "2026-12-06T20:52:49.984101632Z"}),
            json!({"id": "t_01", "status": "completed", "name": "order A1", "tags": ["vip", "eu"],
                   "created_at": "2026-12-06T20:52:50Z", "updated_at": "2026-12-06T20:53:02Z"}),
        ];
        assert_eq!(
            task_table(&tasks, &filters(None, None)),
            "ID                          STATUS     CREATED (UTC)        UPDATED (UTC)        NAME      TAGS\n\
             t_01a24d217cbe7ff5eea74d7c  waiting    2026-12-06 20:52:49  2026-12-06 20:52:49\n\
             t_01                        completed  2026-12-06 20:52:50  2026-12-06 20:53:02  order A1  vip,eu\n"
        );
        assert_eq!(task_table(&[], &filters(None, None)), "no tasks\n");
        // A name of any length fits a cell (one of 70,000 characters broke the listing).
        let long = [
            json!({"id": "t_1", "status": "waiting", "name": "n".repeat(70_000), "tags": ["\u{1b}[2J"],
                           "created_at": "2026-12-06T20:52:50Z", "updated_at": "2026-12-06T20:53:02Z"}),
        ];
        let table = task_table(&long, &filters(None, None));
        assert!(
            table.ends_with(&format!("{}…  \\u{{1b}}[2J\n", "n".repeat(NAME_CELL))),
            "{table}"
        );
        assert_eq!(
            task_table(&[], &filters(Some("failed"), Some("vip"))),
            "no tasks with status failed tagged vip\n"
        );
    }

    #[test]
    fn a_call_for_people_says_what_it_returned_or_why_it_failed() {
        let paid = json!({"connector": "stripe", "method": "charge", "args": {},
            "returned": {"success": true, "transactionId": "txn_1"}, "idempotency_key": "k", "duration_us": 1260});
        assert_eq!(
            call_line(&paid),
            r#"call stripe.charge 1.3 ms: returned {"success":true,"transactionId":"txn_1"}"#
        );
        let declined = json!({"connector": "stripe", "method": "charge", "args": {},
            "error": {"kind": "failed", "message": "card declined"}, "idempotency_key": "k",
            "duration_us": 300, "replayed": true});
        assert_eq!(
            call_line(&declined),
            "call stripe.charge 0.3 ms (replayed from the journal): failed: card declined"
        );
        // As a server built before `returned` and `error` answers.
        let earlier = json!({"connector": "stripe", "method": "charge", "args": {},
            "result": {"Err": {"kind": "timeout", "message": "no answer in 5 s"}}, "idempotency_key": "k",
            "duration_us": 5000000});
        assert_eq!(
            call_line(&earlier),
            "call stripe.charge 5000.0 ms: timeout: no answer in 5 s"
        );
        let earlier = json!({"connector": "crm", "method": "get", "args": {}, "result": {"Ok": 7},
            "idempotency_key": "k", "duration_us": 100});
        assert_eq!(call_line(&earlier), "call crm.get 0.1 ms: returned 7");
        let long = json!({"connector": "crm", "method": "get", "args": {}, "returned": "é".repeat(100),
            "idempotency_key": "k", "duration_us": 0});
        let line = call_line(&long);
        assert!(
            line.ends_with(&format!("returned \"{}…", "é".repeat(ANSWER_SHOWN - 1))),
            "{line}"
        );
    }

    #[test]
    fn a_conflict_for_people_names_the_other_steps_and_whose_value_stayed() {
        let conflict = json!({"path": "/order/discount", "steps": ["tiers", "discount"], "winner": "discount"});
        assert_eq!(
            conflict_line("tiers", &conflict),
            "conflict at /order/discount with discount: discount's value kept"
        );
        assert_eq!(
            conflict_line("discount", &conflict),
            "conflict at /order/discount with tiers: this run's value kept"
        );
    }

    #[test]
    fn what_a_waiting_task_waits_on_is_told_failing_steps_first() {
        let conditions = json!({"id": "t_1", "status": "waiting", "revision": 3, "steps": [
            {"step": "fraud-detection", "version": "97e9b5f37de9", "state": "ran", "runs": 1, "last_failed": false},
            {"step": "payment-processing", "version": "874292580ecb", "state": "fails",
             "reason": "order.fraudApproved: missing"},
            {"step": "retrier", "version": "1", "state": "ran", "runs": 2, "last_failed": true},
            {"step": "vip", "version": "2", "state": "fails", "reason": "order.total: expected a number > 1000, found 900"},
            {"step": "tiers", "version": "3", "state": "done", "runs": 1, "reason": "order.tierAnalyzed: expected absent or null, found true"},
            {"step": "checker", "version": "4", "state": "done", "runs": 2, "reason": "order.checked: expected absent or null, found true"},
            {"step": "lowered", "version": "5", "state": "fails", "runs": 1, "reason": "order.total: expected a number > 500, found 400"}
        ]});
        assert_eq!(
            waiting_on(&conditions),
            "waiting on (each step's condition against the data)\n\
             \x20 lowered             order.total: expected a number > 500, found 400\n\
             \x20 payment-processing  order.fraudApproved: missing\n\
             \x20 vip                 order.total: expected a number > 1000, found 900\n\
             \x20 fraud-detection     its condition holds; it ran once, the last on these values, and runs again when they change\n\
             \x20 retrier             its condition holds; it ran 2 times, the last on these values (its last run failed), and runs again when they change\n\
             \x20 done (they ran, and their conditions no longer hold): tiers, checker\n"
        );
        assert_eq!(waiting_on(&json!({"steps": []})), "waiting on: no step serves\n");
    }

    #[test]
    fn times_for_people_are_to_the_second_and_anything_else_is_kept() {
        let value = json!({"at": "2026-12-06T20:52:46.818529616Z", "odd": "yesterday"});
        assert_eq!(time(&value, "at"), "2026-12-06 20:52:46");
        assert_eq!(time(&value, "odd"), "yesterday");
        assert_eq!(time(&value, "missing"), "-");
    }
}
