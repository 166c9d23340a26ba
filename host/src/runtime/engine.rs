//! The engine: wasmtime configured once (pooling allocator, epoch interruption), the linker with
//! exactly the interfaces a step may import, the epoch ticker, and loading and running steps.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};
use whenever_condition::Condition;

use super::bindings::{Step, StepPre};
use super::cache::{CompileCache, digest};
use super::error::{LoadError, RuntimeError};
use super::grants::Capabilities;
use super::limits::{LimitCeilings, StepLimits, describe_bytes};
use super::log::{LogLevel, RunLog};
use super::manifest::StepManifest;
use super::run::{RunError, RunErrorKind, RunInput, RunOutput, RunReport};
use super::run_clock::{Counted, RunClock, counting_waits};
use super::state::{RunContext, RunState};
use super::step::LoadedStep;
use super::view::DataView;

/// How often the epoch ticker advances: how often a run that computes checks its deadline and
/// yields its thread to the other runs.
const TICK: Duration = Duration::from_millis(10);
/// The largest memory any step may be configured for (the pooling allocator's slot size).
const MAX_MEMORY_MIB: u64 = 512;

/// How many instances may exist at once unless `[runtime] max_instances` says.
pub const DEFAULT_MAX_INSTANCES: u32 = 1_000;

/// The share of a limited address space the instance pool may take, in quarters: the rest is for
/// the heap, the threads' stacks, SQLite and the compiled code.
const POOL_SHARE_QUARTERS: u64 = 3;

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (fast per-run instances); off only for comparison.
    pub pooling: bool,
    /// How many instances may exist at once (pooling); a run beyond that waits for a running one
    /// to finish rather than failing. Each reserves address space (not memory) for its linear
    /// memories: about 8 GiB.
    pub max_instances: u32,
    /// Where the process's address space is limited (`ulimit -v`) and a pool of
    /// `max_instances` would not fit in three quarters of it, use fewer (halving until it fits)
    /// rather than fail to start; said on stderr. Off when the operator chose the number.
    pub fit_to_address_space: bool,
    /// The operator's narrowing of step grants and the hosts `http` connectors reach.
    pub capabilities: Capabilities,
    /// The most a step's manifest may ask for its runs' limits.
    pub max_limits: LimitCeilings,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: default_cache_dir(),
            pooling: true,
            max_instances: DEFAULT_MAX_INSTANCES,
            fit_to_address_space: true,
            capabilities: Capabilities::default(),
            max_limits: LimitCeilings::default(),
        }
    }
}

/// `$WHENEVER_CACHE_DIR`, else `$XDG_CACHE_HOME/whenever`, else `~/.cache/whenever`.
fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WHENEVER_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("whenever"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("whenever"))
}

/// `WHENEVER_PERF_MAP=1` makes the engine write `/tmp/perf-PID.map`, so that `perf report` names
/// the steps' compiled functions instead of showing bare addresses.
fn perf_map_wanted() -> bool {
    std::env::var_os("WHENEVER_PERF_MAP").is_some_and(|v| v == "1")
}

/// The wasm runtime shared by every task and step.
pub struct Runtime {
    engine: Engine,
    /// One permit per instance the pool holds: a run waits for a free slot (under load, runs
    /// suspended on connector calls hold theirs) instead of failing to instantiate.
    slots: Arc<Semaphore>,
    linker: Linker<RunState>,
    cache: Option<CompileCache>,
    capabilities: Arc<Capabilities>,
    max_limits: LimitCeilings,
    ticker_stop: Arc<AtomicBool>,
    compiled: AtomicU64,
    from_cache: AtomicU64,
}

/// How components were obtained since the runtime started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileStats {
    /// Components compiled from their bytes.
    pub compiled: u64,
    /// Components loaded from the on-disk cache, without compiling.
    pub from_cache: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache.as_ref().map(|c| c.dir().to_path_buf()))
            .finish()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The pooling allocator's settings for `instances` instances at once.
fn pool(instances: u32) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(2))
        .total_stacks(instances)
        .max_memory_size(usize::try_from(MAX_MEMORY_MIB << 20).unwrap_or(usize::MAX))
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(16 << 20)
        .async_stack_keep_resident(512 << 10)
        .table_keep_resident(1 << 20);
    pool
}

/// The engine with a pool of `instances` instances, or with `fit`, of as many as fit the
/// process's address-space limit (see [`RuntimeConfig::fit_to_address_space`]), and how many
/// that is. A pool that cannot be reserved is an error naming the limit and the setting.
fn pooled_engine(wasm: &mut Config, asked: u32, fit: bool) -> Result<(Engine, u32), RuntimeError> {
    let limit = address_space::limit();
    let before = address_space::reserved();
    let mut instances = asked.max(1);
    loop {
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(instances)));
        let built = Engine::new(wasm);
        let taken = address_space::reserved()
            .zip(before)
            .map(|(after, before)| after.saturating_sub(before));
        let fits = |taken: u64| limit.is_none_or(|limit| taken <= limit / 4 * POOL_SHARE_QUARTERS);
        match built {
            Ok(engine) if !fit || instances == 1 || taken.is_none_or(fits) => {
                if instances < asked {
                    eprintln!(
                        "whenever: this process may reserve {} of address space (ulimit -v): the step pool holds \
                         {instances} instances instead of {asked}, so at most {instances} runs go at once (each \
                         instance reserves about {} of address space, not of memory); raise the limit, or set \
                         `[runtime] max_instances`",
                        address_space::gib(limit.unwrap_or_default()),
                        address_space::gib(taken.unwrap_or_default() / u64::from(instances)),
                    );
                }
                return Ok((engine, instances));
            }
            // Reserved, but too much of the limit to leave room for the rest.
            Ok(_) => instances /= 2,
            Err(_) if fit && limit.is_some() && instances > 1 => instances /= 2,
            Err(e) => {
                let Some(limit) = limit else {
                    return Err(RuntimeError::Engine(e.to_string()));
                };
                return Err(RuntimeError::Engine(format!(
                    "cannot reserve the address space of the step pool ({instances} instances, about 8 GiB each, of \
                     address space, not of memory): {e}; this process may reserve {} of address space (ulimit -v): \
                     raise that, or lower `[runtime] max_instances`",
                    address_space::gib(limit)
                )));
            }
        }
    }
}

/// The process's address space: its limit and what it has reserved (Linux).
mod address_space {
    /// The soft limit of the address space this process may reserve (`RLIMIT_AS`), in bytes;
    /// `None` when unlimited.
    pub(super) fn limit() -> Option<u64> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `getrlimit` writes the limit into the struct it is given, nothing else.
        let read = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0;
        (read && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
    }

    /// The address space this process has reserved now (`VmSize`), in bytes; `None` where
    /// `/proc/self/status` does not say.
    pub(super) fn reserved() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("VmSize:"))?;
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    }

    /// `bytes` in GiB, for people.
    pub(super) fn gib(bytes: u64) -> String {
        format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
    }
}

impl Runtime {
    /// Sets up the engine, the linker and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true);
        wasm.epoch_interruption(true);
        if perf_map_wanted() {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let (engine, max_instances) = if config.pooling {
            pooled_engine(&mut wasm, config.max_instances, config.fit_to_address_space)?
        } else {
            let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(e.to_string()))?;
            (engine, config.max_instances)
        };

        let mut linker: Linker<RunState> = Linker::new(&engine);
        link_wasi(&mut linker).map_err(|e| RuntimeError::Link(e.to_string()))?;
        Step::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |state| state)
            .map_err(|e| RuntimeError::Link(e.to_string()))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("whenever-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch ticker: {e}")))?;

        let cache = config.cache_dir.map(|dir| CompileCache::new(dir, &engine));
        Ok(Runtime {
            engine,
            slots: Arc::new(Semaphore::new(max_instances as usize)),
            linker,
            cache,
            capabilities: Arc::new(config.capabilities),
            max_limits: config.max_limits,
            ticker_stop,
            compiled: AtomicU64::new(0),
            from_cache: AtomicU64::new(0),
        })
    }

    /// Compiles (or loads from the cache), links and checks a component as step `name`, and
    /// reads its condition once. The manifest's grants are narrowed by the operator's
    /// [`Capabilities`]. Any problem is a [`LoadError`] naming it. Its version is
    /// [`version_id`] of the two.
    pub async fn load(&self, name: &str, bytes: &[u8], manifest: StepManifest) -> Result<LoadedStep, LoadError> {
        self.load_as(name, bytes, manifest, None).await
    }

    /// [`Runtime::load`] of a version read back from a store, under the version id stored with
    /// it (one an earlier host stored may have been worked out otherwise).
    pub async fn load_stored(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: StepManifest,
        version: &str,
    ) -> Result<LoadedStep, LoadError> {
        self.load_as(name, bytes, manifest, Some(version)).await
    }

    async fn load_as(
        &self,
        name: &str,
        bytes: &[u8],
        manifest: StepManifest,
        stored_version: Option<&str>,
    ) -> Result<LoadedStep, LoadError> {
        if !is_step_name(name) {
            return Err(LoadError::InvalidName(name.to_string()));
        }
        if manifest.limits.memory_mib > MAX_MEMORY_MIB {
            return Err(LoadError::Manifest {
                step: name.to_string(),
                message: format!(
                    "limits.memory_mib = {} is above the host's maximum of {MAX_MEMORY_MIB}",
                    manifest.limits.memory_mib
                ),
            });
        }
        manifest.validate().map_err(|e| LoadError::Manifest {
            step: name.to_string(),
            message: e.to_string(),
        })?;
        // A new version asking more than the host allows is refused; one stored before the
        // ceilings were lowered runs within them.
        if stored_version.is_none()
            && let Some(excess) = self.max_limits.excess(&manifest.limits)
        {
            return Err(LoadError::Manifest {
                step: name.to_string(),
                message: excess,
            });
        }
        let digest = digest(bytes);
        let version = match stored_version {
            Some(version) => version.to_string(),
            None => version_id(&digest, &manifest),
        };
        let (mut manifest, mut withheld) = self.capabilities.narrow(name, manifest);
        withheld.limits = self.max_limits.lowered(&manifest.limits);
        manifest.limits = self.max_limits.clamp(manifest.limits);
        let component = self.compile(name, bytes, &digest).await?;
        check_world(&self.engine, name, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| unlinkable(name, &e))?;
        let pre = StepPre::new(pre).map_err(|e| LoadError::WrongWorld {
            step: name.to_string(),
            message: format!("its exports do not have the step world's types: {e:#}"),
        })?;
        let condition = self.read_condition(name, &pre, &manifest.limits).await?;
        let view = manifest.reads.as_deref().map(|reads| {
            let view = DataView::new(reads, &condition);
            // The operator's `reads` bound the condition's paths too.
            match self.capabilities.reads_limit(name) {
                Some(allowed) => Arc::new(view.within(allowed)),
                None => Arc::new(view),
            }
        });
        Ok(LoadedStep {
            name: name.to_string(),
            version,
            digest,
            manifest: Arc::new(manifest),
            withheld,
            condition: Arc::new(condition),
            view,
            size: bytes.len(),
            pre,
        })
    }

    async fn compile(&self, name: &str, bytes: &[u8], digest: &str) -> Result<Component, LoadError> {
        if let Some(component) = self.cache.as_ref().and_then(|c| c.load(&self.engine, digest)) {
            self.from_cache.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        // One compile per component at a time in this process: hosts started together (tests,
        // several services) wait for the first compile and then load its result from the cache.
        let gate = compile_gate(digest);
        let _compiling = gate.lock().await;
        if let Some(component) = self.cache.as_ref().and_then(|c| c.load(&self.engine, digest)) {
            self.from_cache.fetch_add(1, Ordering::Relaxed);
            return Ok(component);
        }
        let engine = self.engine.clone();
        let owned = bytes.to_vec();
        if let Some(message) = not_a_component(bytes) {
            return Err(LoadError::NotAComponent {
                step: name.to_string(),
                message,
            });
        }
        let compiled = tokio::task::spawn_blocking(move || Component::new(&engine, owned))
            .await
            .map_err(|e| LoadError::NotAComponent {
                step: name.to_string(),
                message: e.to_string(),
            })?;
        let component = compiled.map_err(|e| LoadError::NotAComponent {
            step: name.to_string(),
            message: format!("{e:#}"),
        })?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.cache {
            cache.store(digest, &component);
        }
        Ok(component)
    }

    /// Waits for a free instance slot; the permit is held until the run's store is dropped.
    /// (`None` only if the semaphore were closed, which it never is: instantiating then reports
    /// the pool's own error.)
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    fn new_store(&self, limits: &StepLimits, log: RunLog, ctx: Option<RunContext>) -> Store<RunState> {
        let state = RunState::new(log, limits, ctx);
        let clock = state.clock.clone();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // At every tick a run that computes is stopped if its own time is up, or else yields
        // its thread to the other runs.
        let allowed = Duration::from_millis(limits.timeout_ms);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if clock.own() >= allowed {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    async fn read_condition(
        &self,
        name: &str,
        pre: &StepPre<RunState>,
        limits: &StepLimits,
    ) -> Result<Condition, LoadError> {
        let invalid = |message: String| LoadError::InvalidCondition {
            step: name.to_string(),
            message,
        };
        let log = RunLog::new(limits.max_log_bytes);
        let _slot = self.slot().await;
        let mut store = self.new_store(limits, log, None);
        let clock = store.data().clock.clone();
        let instance = match counting_waits(clock.clone(), pre.instantiate_async(&mut store)).await {
            Ok(instance) => instance,
            // Its memory starts larger than the manifest lets it grow: no run could start.
            Err(_) if store.data().limiter.hit => {
                return Err(LoadError::Manifest {
                    step: name.to_string(),
                    message: format!(
                        "limits.memory_mib = {} is less than the component's memory takes when it \
                         starts ({} MiB, rounded up): no run could start; give it more",
                        limits.memory_mib,
                        store.data().limiter.refused_bytes.div_ceil(1 << 20)
                    ),
                });
            }
            Err(e) => return Err(invalid(format!("cannot instantiate: {e:#}"))),
        };
        let text = match within_deadline(limits, &clock, instance.call_condition(&mut store)).await {
            Ok(text) => text,
            Err(e) => {
                let error = classify(e, store.data(), limits);
                return Err(invalid(match error.kind {
                    RunErrorKind::Deadline => format!(
                        "condition() did not return within the deadline of {} ms and was stopped \
                         (it must return its pattern, not compute)",
                        limits.timeout_ms
                    ),
                    _ => format!("condition() failed: {}", error.message),
                }));
            }
        };
        if text.len() > limits.max_output_bytes {
            return Err(invalid(format!(
                "condition() returned {} bytes, over the limit of {} (limits.max_output_bytes, which \
                 bounds the condition as well as the output)",
                text.len(),
                describe_bytes(limits.max_output_bytes)
            )));
        }
        let pattern: Value = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "condition() did not return JSON ({e}): it returned {}",
                snippet(&text)
            ))
        })?;
        Condition::parse(&pattern).map_err(|e| {
            let at = if e.path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("at {}", e.path)
            };
            invalid(format!("{at}: {} (condition() returned {})", e.message, snippet(&text)))
        })
    }

    /// Runs the step's `content` once on `input` in a fresh sandbox and reports what happened.
    /// Never panics on guest misbehaviour: every failure becomes a [`RunError`].
    pub async fn run(&self, step: &LoadedStep, input: RunInput) -> RunReport {
        let started = Instant::now();
        let limits = step.manifest.limits;
        let log = RunLog::new(limits.max_log_bytes);
        let ctx = RunContext {
            task_id: input.task_id,
            step: step.name.clone(),
            run_number: input.run_number,
            manifest: step.manifest.clone(),
            withheld: step.withheld.clone(),
            capabilities: self.capabilities.clone(),
            connectors: input.connectors,
            replay: input.replay,
            journal: input.journal,
            view: step.view.clone(),
        };
        let _slot = self.slot().await;
        let mut store = self.new_store(&limits, log.clone(), Some(ctx));
        let clock = store.data().clock.clone();
        let outcome = match counting_waits(clock.clone(), step.pre.instantiate_async(&mut store)).await {
            Err(e) => Err(RunError {
                kind: RunErrorKind::Instantiate,
                message: format!("cannot instantiate step {}: {e:#}", step.name),
            }),
            Ok(instance) => {
                match within_deadline(&limits, &clock, instance.call_content(&mut store, &input.data)).await {
                    Err(e) => Err(classify(e, store.data(), &limits)),
                    Ok(Err(message)) => Err(RunError {
                        kind: RunErrorKind::StepError,
                        message: kept_error(message),
                    }),
                    Ok(Ok(output)) => checked_output(output, &limits),
                }
            }
        };
        let state = store.into_data();
        let (logs, logs_truncated) = log.take();
        RunReport {
            outcome,
            logs,
            logs_truncated,
            calls: state.calls,
            requests: state.requests,
            duration: started.elapsed(),
        }
    }

    /// The bare floor of a run, for benchmarks: a fresh store, instantiate and the `content` call,
    /// with no log capture, limits, deadline bookkeeping or output checks.
    #[doc(hidden)]
    pub async fn bare_content(&self, step: &LoadedStep, data: &str) -> wasmtime::Result<Result<String, String>> {
        let unbounded = StepLimits {
            memory_mib: u64::MAX,
            max_connector_calls: u32::MAX,
            max_output_bytes: usize::MAX,
            ..StepLimits::default()
        };
        let state = RunState::new(RunLog::new(1 << 20), &unbounded, None);
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = step.pre.instantiate_async(&mut store).await?;
        instance.call_content(&mut store, data).await
    }

    /// How many components were compiled and how many came from the disk cache.
    pub fn compile_stats(&self) -> CompileStats {
        CompileStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            from_cache: self.from_cache.load(Ordering::Relaxed),
        }
    }

    /// The wasmtime engine (for benchmarks comparing against the bare floor).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The step's output, refused when it is over the output limit.
fn checked_output(output: String, limits: &StepLimits) -> Result<RunOutput, RunError> {
    if output.len() > limits.max_output_bytes {
        return Err(RunError {
            kind: RunErrorKind::OutputTooLarge,
            message: format!(
                "the step's output is {} ({} bytes), over the output limit of {} (limits.max_output_bytes); \
                 nothing was applied",
                describe_bytes(output.len()),
                output.len(),
                describe_bytes(limits.max_output_bytes)
            ),
        });
    }
    Ok(RunOutput { text: output })
}

/// The per-component lock that serialises compiles of the same bytes within this process.
fn compile_gate(digest: &str) -> Arc<tokio::sync::Mutex<()>> {
    static GATES: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut gates = GATES.lock().unwrap_or_else(|p| p.into_inner());
    gates.entry(digest.to_string()).or_default().clone()
}

/// Awaits a call into the guest for at most its deadline of the run's own time ([`RunClock`]:
/// not its connector calls, which have timeouts of their own, nor the time it was ready to go on
/// while its thread ran other runs or its drive's own work). The epoch ticks stop wasm that
/// computes; this stops a guest that waits in the host otherwise (a WASI sleep, a poll), which
/// the ticks never see. Dropping the call's future abandons the guest, whose store is not used
/// again; the error is the one an epoch interrupt gives.
async fn within_deadline<T>(
    limits: &StepLimits,
    clock: &Arc<RunClock>,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    // A deadline past what an `Instant` holds (an operator's ceiling of u64::MAX ms) is a year.
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    let allowed = Duration::from_millis(limits.timeout_ms);
    let mut call = std::pin::pin!(call);
    let mut call = Counted::new(call.as_mut(), clock.clone());
    loop {
        // Time not the run's own moves the deadline on by as much.
        let left = allowed.saturating_sub(clock.own());
        if left.is_zero() {
            return Err(wasmtime::Error::new(Trap::Interrupt));
        }
        // No sooner than a tick (the deadline's precision): while a connector call holds the
        // run's time still, the timer would otherwise fire again and again for nothing.
        if let Ok(result) = tokio::time::timeout(left.clamp(TICK, YEAR), &mut call).await {
            return result;
        }
    }
}

/// What a stopped run's wall time held that its deadline did not count, for the error (nothing
/// when under a millisecond): a step's author reading "deadline of 1000 ms" after three seconds
/// learns why.
fn not_counted(clock: &RunClock) -> String {
    let calls = clock.in_connectors().as_millis();
    let waits = clock.waiting_for_a_thread().as_millis();
    if calls + waits == 0 {
        return String::new();
    }
    format!(
        " ({} ms after it began: {calls} ms in connector calls and {waits} ms ready to go on while \
         its thread ran other work are not counted)",
        clock.elapsed().as_millis()
    )
}

/// The most of a step's error message kept (in the run's record and the task's message both).
const ERROR_MESSAGE_BYTES: usize = 64 << 10;

/// A step's error message as kept: whole, or its first [`ERROR_MESSAGE_BYTES`] and how much more
/// there was (an error is for people; a step that returns megabytes as one would be stored twice).
fn kept_error(mut message: String) -> String {
    if message.len() <= ERROR_MESSAGE_BYTES {
        return message;
    }
    let cut = message.floor_char_boundary(ERROR_MESSAGE_BYTES);
    let more = message.len() - cut;
    message.truncate(cut);
    message.push_str(&format!("… ({more} more bytes not kept)"));
    message
}

/// Whether `name` can name a step: 1 to 128 ASCII letters, digits, `-` and `_` (it is a URL path
/// segment and a file name).
pub fn is_step_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Names why a call into the guest failed.
fn classify(error: wasmtime::Error, state: &RunState, limits: &StepLimits) -> RunError {
    if let Some(why) = &state.journal_failed {
        return RunError {
            kind: RunErrorKind::Journal,
            message: why.clone(),
        };
    }
    if state.call_cap_hit {
        return RunError {
            kind: RunErrorKind::TooManyConnectorCalls,
            message: format!(
                "the run tried to make more than {} connector calls (limits.max_connector_calls) and \
                 was stopped at call {}",
                limits.max_connector_calls,
                u64::from(limits.max_connector_calls) + 1
            ),
        };
    }
    let trap = error.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return RunError {
            kind: RunErrorKind::Deadline,
            message: format!(
                "the run exceeded its deadline of {} ms and was stopped{}",
                limits.timeout_ms,
                not_counted(&state.clock)
            ),
        };
    }
    if state.limiter.hit {
        return RunError {
            kind: RunErrorKind::Memory,
            message: format!(
                "the run tried to use more than its memory limit of {} MiB (limits.memory_mib) and was stopped",
                limits.memory_mib
            ),
        };
    }
    if trap == Some(Trap::StackOverflow) {
        return RunError {
            kind: RunErrorKind::StackOverflow,
            message: "the step overflowed its stack (recursion too deep) and was stopped".to_string(),
        };
    }
    if let Some(panic) = panic_message(&state.log) {
        return RunError {
            kind: RunErrorKind::Panic,
            message: format!("the step panicked: {panic}"),
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return RunError {
            kind: RunErrorKind::Trap,
            message: format!(
                "the step exited the process (std::process::exit, as a {}) instead of returning from \
                 its content; a step that fails returns an error",
                if exit.0 == 0 { "success" } else { "failure" }
            ),
        };
    }
    match trap {
        Some(trap) => RunError {
            kind: RunErrorKind::Trap,
            message: format!("the step trapped: {trap}"),
        },
        None => RunError {
            kind: RunErrorKind::Trap,
            message: format!("the step failed: {error:#}"),
        },
    }
}

/// The start of a guest's text, quoted, for messages.
fn snippet(text: &str) -> String {
    const MAX: usize = 120;
    if text.len() <= MAX {
        return format!("{text:?}");
    }
    let cut = text.floor_char_boundary(MAX);
    format!("{:?}... ({} bytes)", &text[..cut], text.len())
}

/// Why `bytes` cannot be a component, when that is plain from the header: a core module, or not
/// WebAssembly at all. `None` leaves the rest to wasmtime.
fn not_a_component(bytes: &[u8]) -> Option<String> {
    let Some(header) = bytes.get(..8) else {
        return Some(format!(
            "the file is {} bytes, too short for a WebAssembly component",
            bytes.len()
        ));
    };
    if &header[..4] != b"\0asm" {
        return Some("the file is not WebAssembly (it does not start with the \\0asm magic)".to_string());
    }
    // The version field: 1 with layer 0 is a core module; a component is version 0x0d, layer 1.
    if header[4..8] == [1, 0, 0, 0] {
        return Some(
            "the file is a core WebAssembly module, not a component: build the step for the \
             wasm32-wasip2 target (or wrap a module with `wasm-tools component new`)"
                .to_string(),
        );
    }
    None
}

/// The interfaces a step may import (what `link_wasi` and the step world provide).
const ALLOWED_IMPORTS: &[&str] = &[
    "whenever:step/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
];

/// The version of a step deployed as the component of SHA-256 `digest` with `manifest` (as
/// deployed, before the operator's config narrows it): 12 hex digits of a SHA-256 over both, so
/// that a change of grants or limits alone is a version of its own, recorded, shown in each
/// run's history and rolled back like any other.
pub fn version_id(digest: &str, manifest: &StepManifest) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    hash.update(digest.as_bytes());
    hash.update(b"\n");
    // A manifest is plain data: its JSON cannot fail, and is the same for equal manifests.
    hash.update(serde_json::to_vec(manifest).unwrap_or_default());
    hex::encode(hash.finalize())[..12].to_string()
}

/// [`version_id`] of a component's bytes with its manifest: the version deploying them would
/// make, to tell whether it serves already.
pub(crate) fn version_of(bytes: &[u8], manifest: &StepManifest) -> String {
    version_id(&digest(bytes), manifest)
}

/// Checks the component against the step world before linking, so a refusal names the cause: it
/// imports something a step may not use (files, sockets, ...), or it does not export the step
/// world's functions (a command, or a component for another world).
fn check_world(engine: &Engine, name: &str, component: &Component) -> Result<(), LoadError> {
    use wasmtime::component::types::ComponentItem;
    let wrong = |message: String| LoadError::WrongWorld {
        step: name.to_string(),
        message,
    };
    let ty = component.component_type();
    let forbidden: Vec<&str> = ty
        .imports(engine)
        .map(|(import, _)| import)
        .filter(|import| !ALLOWED_IMPORTS.iter().any(|allowed| import.starts_with(allowed)))
        .collect();
    if !forbidden.is_empty() {
        return Err(wrong(format!(
            "it imports {}, which a step may not use: a step gets the step world (log, connectors, \
             task) and WASI streams, clocks, random, stdio and an empty environment; no filesystem \
             and no sockets",
            forbidden.join(", ")
        )));
    }
    let exports: Vec<(&str, bool)> = ty
        .exports(engine)
        .map(|(export, item)| (export, matches!(item.ty, ComponentItem::ComponentFunc(_))))
        .collect();
    let missing: Vec<&str> = ["condition", "content"]
        .into_iter()
        .filter(|wanted| !exports.iter().any(|(export, is_func)| export == wanted && *is_func))
        .collect();
    if !missing.is_empty() {
        let found: Vec<&str> = exports.iter().map(|(export, _)| *export).collect();
        // What it is instead, as far as its exports tell.
        let what = if found.is_empty() {
            "an empty component, or one built without the step world's exports"
        } else if found.iter().any(|export| export.starts_with("wasi:cli/run")) {
            "a command (a binary with fn main)"
        } else {
            "a component built for another world"
        };
        return Err(wrong(format!(
            "it does not export the step world's {} function{} (it exports {}): it is {what}; a \
             step is a cdylib built against wit/step.wit (see whenever-step-sdk)",
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(" and "),
            if missing.len() > 1 { "s" } else { "" },
            if found.is_empty() {
                "nothing".to_string()
            } else {
                found.join(", ")
            }
        )));
    }
    Ok(())
}

/// Why a component that fits the step world's shape could not be linked: it imports a function
/// this host does not provide, or with other types (wasmtime's `error` names which).
fn unlinkable(name: &str, error: &wasmtime::Error) -> LoadError {
    LoadError::WrongWorld {
        step: name.to_string(),
        message: format!(
            "it imports what this host does not provide ({error:#}): this host provides \
             the whenever:step world as its wit/step.wit has it; was the step built with a newer \
             whenever-step-sdk or WIT than this host's?"
        ),
    }
}

/// The message of a Rust panic and where it happened: `std`'s panic hook prints them to stderr
/// (`thread '<unnamed>' panicked at src/lib.rs:9:9:`, then the message); the step SDK's panic
/// handler in a `#![no_std]` step logs them as one error line (`panicked at src/lib.rs:9:9:`, a
/// line break and the message).
fn panic_message(log: &RunLog) -> Option<String> {
    let (lines, _) = log.finish();
    let Some(at) = lines
        .iter()
        .position(|l| l.level == LogLevel::Stderr && l.message.contains("panicked at"))
    else {
        let logged = lines
            .iter()
            .rev()
            .filter(|l| l.level == LogLevel::Error)
            .find_map(|l| l.message.strip_prefix("panicked at "))?;
        let (location, message) = logged.split_once(":\n")?;
        return Some(format!("{} (at {location})", message.trim()));
    };
    let location = lines[at]
        .message
        .split("panicked at")
        .nth(1)
        .unwrap_or("")
        .trim()
        .trim_end_matches(':');
    let message: Vec<&str> = lines[at + 1..]
        .iter()
        .filter(|l| l.level == LogLevel::Stderr && !l.message.starts_with("note:"))
        .map(|l| l.message.as_str())
        .collect();
    Some(format!("{} (at {location})", message.join(" ")))
}

/// Gives the `wasi:io` bindings the store's resource table.
struct IoTable;

impl wasmtime::component::HasData for IoTable {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

/// Links the WASI interfaces a step may use: I/O, stdio, clocks, random, exit and an empty
/// environment. No filesystem and no sockets: a component importing them is refused at load.
fn link_wasi(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, io, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

    let l = linker;
    io::error::add_to_linker::<RunState, IoTable>(l, RunState::table)?;
    io::poll::add_to_linker::<RunState, IoTable>(l, RunState::table)?;
    io::streams::add_to_linker::<RunState, IoTable>(l, RunState::table)?;
    clocks::wall_clock::add_to_linker::<RunState, WasiClocks>(l, RunState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<RunState, WasiClocks>(l, RunState::clocks)?;
    random::random::add_to_linker::<RunState, WasiRandom>(l, RunState::random)?;
    random::insecure::add_to_linker::<RunState, WasiRandom>(l, RunState::random)?;
    random::insecure_seed::add_to_linker::<RunState, WasiRandom>(l, RunState::random)?;
    cli::exit::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::environment::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::stdin::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::stdout::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::stderr::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::terminal_input::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::terminal_output::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::terminal_stdin::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::terminal_stdout::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    cli::terminal_stderr::add_to_linker::<RunState, WasiCli>(l, RunState::cli)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_error_says_what_the_deadline_did_not_count() {
        let clock = RunClock::new();
        assert_eq!(not_counted(&clock), "", "nothing to say of a run that only computed");
        let call = clock.connector_call();
        std::thread::sleep(Duration::from_millis(5));
        drop(call);
        let said = not_counted(&clock);
        assert!(said.contains(" ms after it began: "), "{said}");
        assert!(!said.contains(": 0 ms in connector calls"), "{said}");
        assert!(
            said.contains(" and 0 ms ready to go on while its thread ran other work are not counted)"),
            "{said}"
        );
    }

    #[test]
    fn a_long_error_message_is_kept_to_its_cap_on_a_character_boundary() {
        assert_eq!(kept_error("declined".into()), "declined");
        let long = format!("{}é{}", "a".repeat(ERROR_MESSAGE_BYTES - 1), "b".repeat(100));
        assert_eq!(
            kept_error(long),
            format!("{}… (102 more bytes not kept)", "a".repeat(ERROR_MESSAGE_BYTES - 1))
        );
    }
}
