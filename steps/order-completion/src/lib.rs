//! Step 8: Order Completion. Finalizes the order: status, processing time, the `orderProcessing`
//! summary, the task's tags and name; then completes the task.
//!
//! Change to the seed (see the README): the condition waits for `customerNotified` and
//! `internalTeamNotified` to be `true` or `false`, so a failed notification does not block it.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct OrderCompletion;

impl Step for OrderCompletion {
    fn condition() -> Value {
        condition!({
            order: {
                paymentProcessed: true,
                fulfillmentRouted: true,
                customerNotified: Boolean,
                internalTeamNotified: Boolean,
                orderProcessingComplete: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("Completing order processing for: {}", js::text(data, "order.id"));

        // Calculate total processing time
        let now = task::now();
        let start_time = js::date(js::lookup(data, "timestamp"));
        let end_time = js::parse_date(&now);
        let processing_time_ms = js::millis_between(start_time, end_time);
        let processing_time_seconds = js::round(processing_time_ms / 1000.0);

        // Update final order status
        set(data, "order.status", "processing_complete");
        set(data, "order.processingCompletedAt", now);
        set(data, "order.totalProcessingTimeMs", js::to_json(processing_time_ms));
        set(
            data,
            "order.totalProcessingTimeSeconds",
            js::to_json(processing_time_seconds),
        );

        // Create processing summary (`undefined` metrics are left out, as JSON leaves them out)
        let summary = js::object([
            ("status", Some(json!("completed"))),
            (
                "customerTier",
                js::lookup(data, "order.customer.effectiveTier").cloned(),
            ),
            ("priority", js::lookup(data, "order.priority").cloned()),
            (
                "fulfillmentStrategy",
                js::read(data, "order.fulfillment.strategy")?.cloned(),
            ),
            ("processingTime", Some(js::to_json(processing_time_seconds))),
            (
                "completedSteps",
                Some(json!([
                    "tier_analysis",
                    "fraud_detection",
                    "inventory_management",
                    "payment_processing",
                    "fulfillment_routing",
                    "customer_notification",
                    "internal_notification"
                ])),
            ),
            (
                "metrics",
                Some(js::object([
                    ("fraudScore", js::lookup(data, "order.fraud.finalScore").cloned()),
                    (
                        "inventoryReservations",
                        length(js::lookup(data, "order.inventory.results")),
                    ),
                    (
                        "fulfillmentOrders",
                        length(js::lookup(data, "order.fulfillment.orders")),
                    ),
                    ("paymentMethod", js::read(data, "order.payment.method")?.cloned()),
                    ("totalValue", js::lookup(data, "order.total").cloned()),
                ])),
            ),
        ]);
        set(data, "orderProcessing", summary);

        // Set task metadata for analytics (a missing value adds no tag)
        let value_bucket = format!(
            "value_{}", // Value buckets: 0, 500, 1000, etc.
            js::number_string(js::floor(js::num(data, "order.total") / 500.0) * 500.0)
        );
        let tags: Vec<String> = [
            Some("order_processing".to_string()),
            Some("completed".to_string()),
            tag(data, "order.customer.effectiveTier"),
            tag(data, "order.priority"),
            tag(data, "order.channel"),
            Some(value_bucket),
        ]
        .into_iter()
        .flatten()
        .collect();
        task::add_tags(&tags.iter().map(String::as_str).collect::<Vec<_>>());

        task::set_name(&format!(
            "Order: {} - {} {} (${})",
            js::text(data, "order.id"),
            js::text(data, "order.customer.firstName"),
            js::text(data, "order.customer.lastName"),
            js::text(data, "order.total")
        ));

        log_info!(
            "Order processing completed in {} seconds",
            js::number_string(processing_time_seconds)
        );

        set(data, "order.orderProcessingComplete", true);
        task::complete();
        Ok(())
    }
}

/// `x?.length`
fn length(value: Option<&Value>) -> Option<Value> {
    match value? {
        Value::Array(items) => Some(json!(items.len())),
        Value::String(text) => Some(json!(text.encode_utf16().count())),
        _ => None,
    }
}

/// A tag from the data: its text, or none for a missing value.
fn tag(data: &Value, path: &str) -> Option<String> {
    match js::lookup(data, path) {
        None | Some(Value::Null) => None,
        value => Some(js::string(value)),
    }
}

export_step!(OrderCompletion);
whenever_step_sdk::no_std_support!();
