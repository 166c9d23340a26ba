//! What the connectors keep in memory per call, measured as the process's resident memory:
//! the once-only cache, the effects ledger and the outbox, over a long run of calls with
//! distinct idempotency keys (a long-running host). Prints one table.
//!
//! `cargo bench -p whenever-connectors --bench retention` (Linux: reads `/proc/self/statm`)

use std::time::Instant;

use serde_json::json;
use whenever_connectors::{CallContext, Registry};

/// The allocator the `whenever` binary uses, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Orders per measured stretch, and how many stretches.
const ORDERS_PER_STRETCH: usize = 25_000;
const STRETCHES: usize = 8;

/// The process's resident memory in bytes (0 where `/proc` is not there).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The calls of one order that leave something behind: a fraud check (a result), a charge (a
/// result and an effect), an e-mail and a Slack message (a result, an effect and an outbox entry).
async fn one_order(registry: &Registry, order: usize) {
    let task = format!("order-{order:08}");
    let body = "<p>Thank you for your order. It is being prepared and will ship soon.</p>".repeat(12);
    let calls = [
        (
            "fraudGuard",
            "analyze",
            json!({ "orderId": task, "customerEmail": "a@example.com", "amount": 120.5,
                    "paymentToken": "tok_visa", "shippingAddress": { "country": "US" } }),
        ),
        (
            "stripe",
            "charge",
            json!({ "amount": 12050, "currency": "usd", "source": "tok_visa" }),
        ),
        (
            "eMailSmtpOAuth",
            "sendEmail",
            json!({ "from": "shop@example.com", "to": "a@example.com", "subject": "Your order", "html": body }),
        ),
        (
            "slackCom",
            "send",
            json!({ "channel": "#orders", "text": format!("Order {task} paid") }),
        ),
    ];
    for (number, (connector, method, args)) in calls.into_iter().enumerate() {
        let ctx = CallContext::new(task.as_str(), "bench", format!("{task}:bench:1:{}", number + 1));
        if let Err(e) = registry.call(connector, method, &args, &ctx).await {
            panic!("{connector}.{method} failed: {e}");
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(async {
        let registry = Registry::simulators();
        let start = resident_bytes();
        println!("| orders | calls | resident MiB (growth) | bytes per order, this stretch | calls/s, this stretch |");
        println!("|---:|---:|---:|---:|---:|");
        let mut before = start;
        for stretch in 0..STRETCHES {
            let started = Instant::now();
            for i in 0..ORDERS_PER_STRETCH {
                one_order(&registry, stretch * ORDERS_PER_STRETCH + i).await;
            }
            let took = started.elapsed();
            let now = resident_bytes();
            let orders = (stretch + 1) * ORDERS_PER_STRETCH;
            println!(
                "| {orders} | {} | {:.1} | {:.0} | {:.0} |",
                orders * 4,
                now.saturating_sub(start) as f64 / f64::from(1 << 20),
                now.saturating_sub(before) as f64 / ORDERS_PER_STRETCH as f64,
                (ORDERS_PER_STRETCH * 4) as f64 / took.as_secs_f64(),
            );
            before = now;
        }
        println!(
            "\nkept: {} cached results, {} of {} effects, {} of {} outbox messages",
            registry.idempotency_cache().len(),
            registry.effects().kept(),
            registry.effects().len(),
            registry.outbox().kept(),
            registry.outbox().len()
        );
    });
}
