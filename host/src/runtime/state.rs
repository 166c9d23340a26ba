//! What a run's `Store` holds, and the host side of the step world's imports.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use whenever_connectors::{CallContext, Registry};

use super::bindings::whenever::step::{connectors, log, task};
use super::grants::{Capabilities, Withheld};
use super::json_text::JsonText;
use super::limits::{MemoryLimiter, StepLimits, describe_bytes};
use super::log::{LogLevel, RunLog};
use super::manifest::StepManifest;
use super::run::{ConnectorCallRecord, TaskRequests};
use super::run_clock::RunClock;
use super::view::DataView;
use crate::task::{MAX_NAME_CHARS, MAX_TAG_CHARS, MAX_TAGS};

/// The per-run facts the imports need; absent while the host reads `condition()`.
pub(crate) struct RunContext {
    pub(crate) task_id: String,
    pub(crate) step: String,
    pub(crate) run_number: u32,
    pub(crate) manifest: Arc<StepManifest>,
    pub(crate) withheld: Withheld,
    pub(crate) capabilities: Arc<Capabilities>,
    pub(crate) connectors: Registry,
    pub(crate) replay: Vec<Option<ConnectorCallRecord>>,
    pub(crate) journal: Option<Arc<dyn super::run::CallJournal>>,
    /// What of the task data the step is given, when not all of it (`absent-reads`).
    pub(crate) view: Option<Arc<DataView>>,
}

/// The data of one run's `Store`: WASI with nothing opened, the limiter, the log, and what the
/// step asked of its task.
pub(crate) struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) log: RunLog,
    pub(crate) ctx: Option<RunContext>,
    pub(crate) calls: Vec<ConnectorCallRecord>,
    pub(crate) requests: TaskRequests,
    pub(crate) max_calls: u32,
    pub(crate) call_cap_hit: bool,
    /// The bytes of connector arguments the run may send (and its record keep), all calls
    /// together: `limits.max_output_bytes`.
    max_args_bytes: usize,
    /// The bytes of connector arguments sent so far.
    args_bytes: usize,
    /// The run's own time, which its deadline counts (connector calls are timed here).
    pub(crate) clock: Arc<RunClock>,
    /// Why a connector result could not be journaled, if one could not: the run was stopped by
    /// its host, not by its step ([`super::RunErrorKind::Journal`]).
    pub(crate) journal_failed: Option<String>,
}

impl RunState {
    pub(crate) fn new(log: RunLog, limits: &StepLimits, ctx: Option<RunContext>) -> Self {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(log.stream(LogLevel::Stdout))
            .stderr(log.stream(LogLevel::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        RunState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(limits.memory_bytes()),
            log,
            ctx,
            calls: Vec::new(),
            requests: TaskRequests::default(),
            max_calls: limits.max_connector_calls,
            call_cap_hit: false,
            max_args_bytes: limits.max_output_bytes,
            args_bytes: 0,
            clock: RunClock::new(),
            journal_failed: None,
        }
    }
}

impl RunState {
    /// The resource table, for the `wasi:io` bindings.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl log::Host for RunState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.log.push(level, &message);
        Ok(())
    }
}

fn wit_error(kind: whenever_connectors::ErrorKind, message: String) -> connectors::ConnectorError {
    use whenever_connectors::ErrorKind as K;
    let kind = match kind {
        K::NotGranted => connectors::ErrorKind::NotGranted,
        K::Unknown => connectors::ErrorKind::Unknown,
        K::InvalidArgs => connectors::ErrorKind::InvalidArgs,
        K::Failed => connectors::ErrorKind::Failed,
        K::Unavailable => connectors::ErrorKind::Unavailable,
        K::Timeout => connectors::ErrorKind::Timeout,
    };
    connectors::ConnectorError { kind, message }
}

/// The longest connector or method name a step may call: longer ones are refused, and kept in
/// the run's record cut to this length.
pub(crate) const MAX_CALL_NAME_BYTES: usize = 128;

/// `name` cut to [`MAX_CALL_NAME_BYTES`] (at a character's boundary), marked `…` when cut.
fn shortened(mut name: String) -> String {
    if name.len() > MAX_CALL_NAME_BYTES {
        name.truncate(name.floor_char_boundary(MAX_CALL_NAME_BYTES));
        name.push('…');
    }
    name
}

/// How deep `value` nests when that is past [`crate::task::MAX_NESTING`], or `None`: a
/// connector call's arguments and answer sit a few levels down in every answer holding the run's
/// record, which must stay within the 128 levels JSON parsers read.
fn nested_too_deep(value: &serde_json::Value) -> Option<usize> {
    let levels = crate::task::nesting(value);
    (levels > crate::task::MAX_NESTING).then_some(levels)
}

impl connectors::Host for RunState {
    async fn call(
        &mut self,
        connector: String,
        method: String,
        args: String,
    ) -> wasmtime::Result<Result<String, connectors::ConnectorError>> {
        use whenever_connectors::ErrorKind as K;
        let Some(ctx) = self.ctx.as_ref() else {
            return Ok(Err(wit_error(
                K::NotGranted,
                "connectors cannot be called while the host reads condition()".to_string(),
            )));
        };
        let number = self.calls.len();
        if number >= self.max_calls as usize {
            self.call_cap_hit = true;
            return Err(wasmtime::Error::msg(format!(
                "the run made more than {} connector calls",
                self.max_calls
            )));
        }
        let key = idempotency_key(&ctx.task_id, &ctx.step, ctx.run_number, number + 1);
        // No connector has a name of megabytes, and a run's record keeps every call's names: a
        // step calling with such names a thousand times would fill the host's memory.
        let name_refused = (connector.len() > MAX_CALL_NAME_BYTES || method.len() > MAX_CALL_NAME_BYTES).then(|| {
            format!(
                "a connector call named a connector of {} and a method of {}: no connector has a \
                 name longer than {MAX_CALL_NAME_BYTES} bytes, nor a method",
                describe_bytes(connector.len()),
                describe_bytes(method.len())
            )
        });
        let (connector, method) = (shortened(connector), shortened(method));
        let started = Instant::now();
        // The arguments parsed for the connector, and kept as the step wrote them for the record
        // (as a JSON string when they are not JSON). Those past the run's allowance are neither
        // sent nor kept whole.
        let sent = self.args_bytes.saturating_add(args.len());
        let (args_value, args) = if let Some(refused) = name_refused {
            let kept = JsonText::string(&format!("({} not kept)", describe_bytes(args.len())));
            (Err((K::Unknown, refused)), kept)
        } else if sent > self.max_args_bytes {
            let refused = format!(
                "the arguments to {connector}.{method} ({}) would take the run's connector arguments \
                 to {}, over its limit of {} (limits.max_output_bytes): not sent",
                describe_bytes(args.len()),
                describe_bytes(sent),
                describe_bytes(self.max_args_bytes)
            );
            let kept = JsonText::string(&format!("({} not kept)", describe_bytes(args.len())));
            (Err((K::InvalidArgs, refused)), kept)
        } else {
            self.args_bytes = sent;
            match JsonText::parse(args) {
                Ok((value, text)) => match nested_too_deep(&value) {
                    // Kept as a string, which a reader of the run's record can read.
                    Some(levels) => (
                        Err((
                            K::InvalidArgs,
                            format!(
                                "the arguments to {connector}.{method} nest arrays and objects {levels} \
                             levels deep, past the {} a run's record holds: not sent",
                                crate::task::MAX_NESTING
                            ),
                        )),
                        JsonText::string(text.get()),
                    ),
                    None => (Ok(value), text),
                },
                Err((text, e)) => (
                    Err((
                        K::InvalidArgs,
                        format!("the arguments to {connector}.{method} are not JSON: {e}"),
                    )),
                    JsonText::string(&text),
                ),
            }
        };
        let mut replayed = false;
        let mut called = false;
        let result = match args_value {
            Err((kind, ref message)) => Err(whenever_connectors::ConnectorError {
                kind,
                message: message.clone(),
            }),
            Ok(ref value) => {
                // A call made before a crash is answered from the journal before anything else
                // is asked: it happened, whatever the host's config says since (a grant
                // withheld after the restart must not turn a charge made into a failure, and the
                // retry that follows into a second charge).
                if let Some(journaled) = ctx
                    .replay
                    .get(number)
                    .and_then(Option::as_ref)
                    .filter(|r| r.connector == connector && r.method == method)
                {
                    replayed = true;
                    journaled
                        .result
                        .clone()
                        .map_err(|e| whenever_connectors::ConnectorError {
                            kind: e.kind,
                            message: e.message,
                        })
                } else if !ctx.manifest.grants(&connector) && !ctx.connectors.contains(&connector) {
                    // A connector no host config could grant is unknown, not "not granted":
                    // adding it to the manifest would only have the deploy refused. The step is
                    // told its own grants, not every connector of the host.
                    Err(whenever_connectors::ConnectorError {
                        kind: K::Unknown,
                        message: format!(
                            "unknown connector `{connector}`: this host has none of that name (the \
                             step's grants: {})",
                            if ctx.manifest.connectors.is_empty() {
                                "none".to_string()
                            } else {
                                ctx.manifest.connectors.join(", ")
                            }
                        ),
                    })
                } else if let Err(message) =
                    ctx.capabilities
                        .check_call(&ctx.step, &ctx.manifest, &ctx.withheld, &connector)
                {
                    Err(whenever_connectors::ConnectorError {
                        kind: K::NotGranted,
                        message,
                    })
                } else {
                    called = true;
                    let _under_way = self.clock.connector_call();
                    let call = CallContext {
                        task_id: ctx.task_id.clone(),
                        step: ctx.step.clone(),
                        idempotency_key: key.clone(),
                    };
                    let answer = ctx.connectors.call(&connector, &method, value, &call).await;
                    answer.and_then(|value| match nested_too_deep(&value) {
                        Some(levels) => Err(whenever_connectors::ConnectorError {
                            kind: K::Failed,
                            message: format!(
                                "{connector}.{method} answered with arrays and objects nested {levels} \
                                 levels deep, past the {} a run's record holds: the answer is not kept \
                                 nor given to the step",
                                crate::task::MAX_NESTING
                            ),
                        }),
                        None => Ok(JsonText::of(&value)),
                    })
                }
            }
        };
        // What the step gets back: the text the record keeps.
        let reply = match &result {
            Ok(text) => Ok(text.get().to_owned()),
            Err(e) => Err(wit_error(e.kind, e.message.clone())),
        };
        let record = ConnectorCallRecord {
            connector,
            method,
            args,
            result: result.map_err(|e| super::run::CallError {
                kind: e.kind,
                message: e.message,
            }),
            idempotency_key: key,
            duration_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            replayed,
        };
        // A real result is made durable before the step sees it; a replayed one already is. (A
        // refused call is not journaled: the journal is read back by call number, gaps kept.)
        if called
            && !replayed
            && let Some(journal) = ctx.journal.as_ref()
        {
            let journaling = self.clock.connector_call();
            let journaled = journal.record(number, &record).await;
            drop(journaling);
            if let Err(message) = journaled {
                let why = format!(
                    "cannot journal the result of {}.{}: {message}",
                    record.connector, record.method
                );
                self.journal_failed = Some(why.clone());
                return Err(wasmtime::Error::msg(why));
            }
        }
        self.calls.push(record);
        Ok(reply)
    }
}

/// The idempotency key of call number `call` (1-based) of run `run` of `step` on `task`:
/// `task:step:run:call`. Written piece by piece rather than through `format!`, whose machinery
/// was 0.6% of the CPU of the HTTP bench row (perf) for this one line.
fn idempotency_key(task: &str, step: &str, run: u32, call: usize) -> String {
    let mut digits = itoa::Buffer::new();
    let mut key = String::with_capacity(task.len() + step.len() + 24);
    key.push_str(task);
    key.push(':');
    key.push_str(step);
    key.push(':');
    key.push_str(digits.format(run));
    key.push(':');
    key.push_str(digits.format(call));
    key
}

/// The warning for a read at `path` that found nothing where the step was not given the data.
fn not_given(path: &str) -> String {
    format!(
        "read `{path}`, which this step is not given: it reads as absent whatever the task holds. A \
         step whose manifest lists what it `reads` is given those paths and the ones its condition \
         tests (as the operator's config narrows them); list it, or a path above it"
    )
}

impl task::Host for RunState {
    fn id(&mut self) -> wasmtime::Result<String> {
        Ok(self.ctx.as_ref().map(|c| c.task_id.clone()).unwrap_or_default())
    }

    fn now(&mut self) -> wasmtime::Result<String> {
        Ok(crate::rfc3339::text(&chrono::Utc::now(), chrono::SecondsFormat::Millis))
    }

    fn set_name(&mut self, name: String) -> wasmtime::Result<()> {
        let chars = name.chars().count();
        let refused = if name.trim().is_empty() {
            "a blank name".to_string()
        } else if chars > MAX_NAME_CHARS {
            format!("a name of {chars} characters (at most {MAX_NAME_CHARS})")
        } else {
            self.requests.name = Some(name);
            return Ok(());
        };
        self.log.push(
            LogLevel::Warn,
            &format!("task.set-name: {refused} is not set; the task keeps its name"),
        );
        Ok(())
    }

    fn add_tags(&mut self, tags: Vec<String>) -> wasmtime::Result<()> {
        for tag in tags {
            let chars = tag.chars().count();
            let refused = if tag.trim().is_empty() {
                // A blank tag could be listed by no filter (`?tag=` is no filter).
                format!("the blank tag {tag:?} is not added")
            } else if chars > MAX_TAG_CHARS {
                format!("a tag of {chars} characters is not added (at most {MAX_TAG_CHARS})")
            } else if self.requests.tags.contains(&tag) {
                continue;
            } else if self.requests.tags.len() >= MAX_TAGS {
                format!("the task holds at most {MAX_TAGS} tags; the rest are not added")
            } else {
                self.requests.tags.push(tag);
                continue;
            };
            self.log.push(LogLevel::Warn, &format!("task.add-tags: {refused}"));
            if self.requests.tags.len() >= MAX_TAGS {
                break;
            }
        }
        Ok(())
    }

    fn complete(&mut self) -> wasmtime::Result<()> {
        self.requests.complete = true;
        Ok(())
    }

    fn redo(&mut self) -> wasmtime::Result<()> {
        self.requests.redo = true;
        Ok(())
    }

    fn absent_reads(&mut self, reads: Vec<task::AbsentRead>) -> wasmtime::Result<()> {
        let Some(view) = self.ctx.as_ref().and_then(|c| c.view.clone()) else {
            return Ok(());
        };
        // A set: a step may report millions of paths in this one call.
        let mut warned: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for read in &reads {
            if view.gives_read(&read.path, read.found as usize) || !warned.insert(&read.path) {
                continue;
            }
            self.log.push(LogLevel::Warn, &not_given(&read.path));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::idempotency_key;

    #[test]
    fn idempotency_keys_read_task_step_run_and_call() {
        assert_eq!(
            idempotency_key("t_0123", "payment-processing", 1, 1),
            "t_0123:payment-processing:1:1"
        );
        assert_eq!(
            idempotency_key("t", "s", u32::MAX, 1234),
            format!("t:s:{}:1234", u32::MAX)
        );
        assert_eq!(idempotency_key("", "", 0, 0), "::0:0");
    }
}
