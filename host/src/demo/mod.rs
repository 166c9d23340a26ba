//! `whenever demo`: the RetailMax scenarios on the bundled steps and simulators, each printed as a
//! timeline (parallel runs visible, how long each took), the final state and the outbox.
//!
//! The same scenarios drive the end-to-end tests in `tests/e2e/retailmax.rs`.

mod scenarios;

use std::fmt::Write as _;

use serde_json::Value;

pub use scenarios::{PersonAction, Scenario, scenarios, seed_order};

use crate::Host;
use crate::cli::timeline::Timeline;
use crate::task::{Task, TaskStatus};

/// What running one scenario produced.
#[derive(Debug)]
pub struct ScenarioRun {
    /// The task in its final state.
    pub task: Task,
    /// The status after each drive (the first, then one per person action).
    pub statuses: Vec<TaskStatus>,
    /// The printed timeline lines, person actions included.
    pub timeline: Vec<String>,
}

/// Runs a scenario: the order as a new task, then each person action as a data patch (only
/// while the task waits), driving the task after each.
pub async fn run_scenario(host: &Host, scenario: &Scenario) -> ScenarioRun {
    let mut task = Task::new(scenario.order.clone());
    let mut timeline = Timeline::collecting();
    let mut statuses = vec![host.scheduler.drive(&mut task, &mut |e| timeline.event(&e)).await];
    let mut lines: Vec<String> = timeline.lines().to_vec();
    for action in &scenario.actions {
        if task.status != TaskStatus::Waiting {
            break;
        }
        let retry = action.retry.map(|step| format!(", retry {step}")).unwrap_or_default();
        lines.push(format!("{:>9}  👤 {}: patch {}{retry}", "", action.note, action.patch));
        action.apply(&mut task);
        let mut timeline = Timeline::collecting();
        statuses.push(host.scheduler.drive(&mut task, &mut |e| timeline.event(&e)).await);
        lines.extend(timeline.lines().iter().cloned());
    }
    ScenarioRun {
        task,
        statuses,
        timeline: lines,
    }
}

/// The demo: every scenario, printed for people. Returns the process exit code.
pub async fn main() -> u8 {
    let host = match Host::start(&Default::default()).await {
        Ok(host) => host,
        Err(e) => {
            eprintln!("whenever demo: {e}");
            return crate::cli::EXIT_INTERNAL;
        }
    };
    let steps = host.scheduler.catalog().snapshot();
    println!("Whenever demo: RetailMax order processing");
    println!(
        "{} steps deployed (sandboxed wasm32-wasip2 components), connectors simulated.",
        steps.len()
    );
    println!("No flowchart: each step runs when the order data matches its condition.\n");
    let mut all_ok = true;
    for (index, scenario) in scenarios().iter().enumerate() {
        let run = run_scenario(&host, scenario).await;
        all_ok &= run.task.status == scenario.expected;
        print!("{}", render(index + 1, scenario, &run, &host));
    }
    let outbox = host.scheduler.connectors().outbox().messages();
    println!("All scenarios done: {} messages in the outbox.", outbox.len());
    if all_ok {
        crate::cli::EXIT_COMPLETED
    } else {
        crate::cli::EXIT_FAILED
    }
}

fn render(number: usize, scenario: &Scenario, run: &ScenarioRun, host: &Host) -> String {
    let task = &run.task;
    let mut out = String::new();
    let rule = "─".repeat(78);
    let _ = writeln!(
        out,
        "{rule}\n{number}. {}\n   {}\n{rule}",
        scenario.title, scenario.story
    );
    for line in &run.timeline {
        let _ = writeln!(out, "{line}");
    }
    let order = &task.data["order"];
    let _ = writeln!(out, "\n  status     {}{}", task.status, expectation(scenario, task));
    if let Some(name) = &task.name {
        let _ = writeln!(out, "  name       {name}");
    }
    if !task.tags.is_empty() {
        let _ = writeln!(out, "  tags       {}", task.tags.join(", "));
    }
    let _ = writeln!(
        out,
        "  order      status={} tier={} priority={}",
        text(&order["status"]),
        text(&order["customer"]["effectiveTier"]),
        text(&order["priority"])
    );
    let fraud = &order["fraud"];
    if !fraud.is_null() {
        let _ = writeln!(
            out,
            "  fraud      score={} → {} {}",
            text(&fraud["finalScore"]),
            text(&fraud["recommendation"]),
            fraud["factors"]
        );
    }
    let payment = &order["payment"];
    if !payment["error"].is_null() {
        let _ = writeln!(out, "  payment    failed: {}", text(&payment["error"]));
    } else if !payment["transactionId"].is_null() {
        let fee = match &payment["processorFee"] {
            Value::Null => String::new(),
            fee => format!(", fee {}", text(fee)),
        };
        let _ = writeln!(out, "  payment    {}{fee}", text(&payment["transactionId"]));
    }
    if !order["fulfillment"].is_null() {
        let orders = order["fulfillment"]["orders"].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            out,
            "  fulfilment {} ({orders} {})",
            text(&order["fulfillment"]["strategy"]),
            if orders == 1 { "order" } else { "orders" }
        );
    }
    let messages = host.scheduler.connectors().outbox().for_task(&task.id);
    if !messages.is_empty() {
        let _ = writeln!(out, "  outbox");
        for message in messages {
            let subject = message.subject.clone().unwrap_or_else(|| first_line(&message.body));
            let _ = writeln!(out, "    {:<14} → {:<30} {}", message.connector, message.to, subject);
        }
    }
    out.push('\n');
    out
}

fn expectation(scenario: &Scenario, task: &Task) -> String {
    if task.status == scenario.expected {
        String::new()
    } else {
        format!("  (expected {}!)", scenario.expected)
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn first_line(body: &str) -> String {
    let line = body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    line.chars().take(60).collect()
}
