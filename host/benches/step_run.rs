//! Cost of one step run, measured in one process and printed as one table:
//! (a) the whole run as the host does it (match, fresh instance, content, diff, merge, history),
//! (b) the bare floor (fresh store, instantiate, content call),
//! (c) the same step logic as native Rust,
//! and the throughput of (a) with both cores busy.
//!
//! `cargo bench -p whenever --bench step_run`

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use whenever::catalog::Catalog;
use whenever::connectors::Registry;
use whenever::runtime::{Runtime, RuntimeConfig, StepManifest};
use whenever::scheduler::{Scheduler, SchedulerSettings};
use whenever::task::{Task, TaskStatus};
use whenever_step_artifacts::testing::ORDER_SCORING;

/// The allocator the `whenever` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../steps/testing/order-scoring/src/logic.rs"]
mod logic;

const ORDER: &str = include_str!("order-3k.json");
const WARMUP: usize = 300;
const SAMPLES: usize = 3_000;

fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn main() {
    // As the `whenever` binary does (whenever::allocator).
    whenever::allocator::configure();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(bench());
}

async fn bench() {
    let order: Value = serde_json::from_str(ORDER).expect("order JSON");
    let order_text = order.to_string();
    let engine = Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: None,
            ..RuntimeConfig::default()
        })
        .expect("runtime"),
    );
    let bytes = std::fs::read(ORDER_SCORING.component).expect("component");
    let step = engine
        .load("order-scoring", &bytes, StepManifest::default())
        .await
        .expect("loads");
    let catalog = Catalog::new();
    catalog.insert(step.clone());
    let scheduler = Scheduler::new(
        engine.clone(),
        catalog,
        Registry::simulators(),
        SchedulerSettings::default(),
    );

    // (a) the whole run as the host does it.
    let mut whole = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let mut task = Task::with_id(format!("bench-{i}"), order.clone());
        let started = Instant::now();
        let status = scheduler.drive(&mut task, &mut |_| {}).await;
        let took = started.elapsed();
        assert_eq!(status, TaskStatus::Waiting);
        assert_eq!(task.runs.len(), 1, "exactly one run");
        if i >= WARMUP {
            whole.push(took);
        }
    }

    // (b) the bare floor.
    let mut bare = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let started = Instant::now();
        let out = engine
            .bare_content(&step, &order_text)
            .await
            .expect("no trap")
            .expect("content ok");
        let took = started.elapsed();
        assert!(out.len() > order_text.len());
        if i >= WARMUP {
            bare.push(took);
        }
    }

    // (a') the runtime's whole run alone (limits, log, output size check), without the scheduler.
    let mut runtime_only = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let input = whenever::runtime::RunInput {
            task_id: format!("rt-{i}"),
            data: order_text.clone(),
            run_number: 1,
            connectors: Registry::simulators(),
            replay: Vec::new(),
            journal: None,
        };
        let started = Instant::now();
        let report = engine.run(&step, input).await;
        let took = started.elapsed();
        assert!(report.outcome.is_ok());
        if i >= WARMUP {
            runtime_only.push(took);
        }
    }

    // The host's own JSON work per run, natively: snapshot clone and text, output diffed as it is
    // parsed, apply.
    let output: Value = serde_json::from_str(
        &engine
            .bare_content(&step, &order_text)
            .await
            .expect("no trap")
            .expect("content ok"),
    )
    .expect("json");
    let output_text = output.to_string();
    let mut json_work = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let started = Instant::now();
        let snapshot = order.clone();
        let text = snapshot.to_string();
        let changes = whenever::scheduler::output_diff::diff_output(&snapshot, &output_text).expect("json object");
        let mut current = snapshot.clone();
        whenever::scheduler::merge::apply(&mut current, &changes);
        let took = started.elapsed();
        assert!(!text.is_empty() && !changes.is_empty());
        if i >= WARMUP {
            json_work.push(took);
        }
    }

    // (c) the same logic as native Rust (parse, score, serialize, as the guest does).
    let mut native = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let started = Instant::now();
        let mut data: Value = serde_json::from_str(&order_text).expect("json");
        logic::score(&mut data, "2025-08-18T16:45:00.000Z");
        let out = serde_json::to_string(&data).expect("json");
        let took = started.elapsed();
        assert!(out.len() > order_text.len());
        if i >= WARMUP {
            native.push(took);
        }
    }

    // Throughput of (a) with both cores busy: 4 concurrent drivers for a fixed time.
    let drivers = 4;
    let window = Duration::from_secs(3);
    let started = Instant::now();
    let mut handles = Vec::new();
    for d in 0..drivers {
        let scheduler = scheduler.clone();
        let order = order.clone();
        handles.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < window {
                let mut task = Task::with_id(format!("tp-{d}-{done}"), order.clone());
                scheduler.drive(&mut task, &mut |_| {}).await;
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.expect("driver");
    }
    let throughput = total as f64 / started.elapsed().as_secs_f64();

    let (a50, a99) = stats(whole);
    let (b50, b99) = stats(bare);
    let (c50, c99) = stats(native);
    let (r50, r99) = stats(runtime_only);
    let (j50, j99) = stats(json_work);
    println!(
        "order: {} bytes; {SAMPLES} samples each after {WARMUP} warm-up",
        order_text.len()
    );
    println!("| measure | median µs | p99 µs |");
    println!("|---|---|---|");
    println!("| (a) whole run (match, fresh instance, content, diff, merge, history) | {a50:.1} | {a99:.1} |");
    println!("| (b) bare floor (fresh Store, instantiate, content) | {b50:.1} | {b99:.1} |");
    println!("| (c) same logic, native Rust | {c50:.1} | {c99:.1} |");
    println!("| (a') Runtime::run alone (limits, log, output size check; no scheduler) | {r50:.1} | {r99:.1} |");
    println!("| host JSON work natively (snapshot, text, output diffed while parsed, apply) | {j50:.1} | {j99:.1} |");
    println!();
    println!("(a)/(b) median ratio: {:.2}x; (b)/(c): {:.2}x", a50 / b50, b50 / c50);
    println!("throughput of (a), 2 worker threads, {drivers} concurrent drivers: {throughput:.0} runs/s");
}
