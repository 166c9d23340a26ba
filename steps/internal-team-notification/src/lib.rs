//! Step 7: Internal Team Notification. Alerts the teams an order concerns on Slack once the
//! customer has been told.
//!
//! Changes to the seed (see the README): the fraud-review alert moved to the fraud-review-alert
//! step, which sends it when the review is needed, not after the order is through; the condition
//! waits for `customerNotified` to be `true` or `false` (a bounced confirmation does not block
//! the order); a failure sets `internalTeamNotified: false` beside the error for the same reason.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct InternalTeamNotification;

impl Step for InternalTeamNotification {
    fn condition() -> Value {
        condition!({
            order: {
                customerNotified: Boolean,
                customer: {
                    effectiveTier: String,
                },
                priority: String,
                internalTeamNotified: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!(
            "Sending internal team notifications for order: {}",
            js::text(data, "order.id")
        );

        // The seed's `try { ... } catch (error) { ... }`.
        match notify_teams(data) {
            Ok(notifications) => {
                set(
                    data,
                    "order.internalNotifications",
                    json!({
                        "teams": notifications,
                        "sentAt": task::now(),
                    }),
                );

                set(data, "order.internalTeamNotified", true);

                log_info!("Internal notifications sent to: {}", notifications.join(", "));
            }
            Err(message) => {
                log_error!("Internal team notification failed: {message}");
                set(data, "order.internalNotificationError", message);
                // Fix: notification failures don't block order processing.
                set(data, "order.internalTeamNotified", false);
            }
        }
        Ok(())
    }
}

/// The `try` block: sends the alerts and returns the teams notified.
fn notify_teams(data: &Value) -> Result<Vec<&'static str>, String> {
    let mut notifications = Vec::new();
    let id = js::text(data, "order.id");
    let customer = format!(
        "{} {}",
        js::text(data, "order.customer.firstName"),
        js::text(data, "order.customer.lastName")
    );
    let total = js::text(data, "order.total");
    let priority = js::text(data, "order.priority");

    // Enterprise customer notification
    if get_str(data, "order.customer.effectiveTier") == "enterprise" {
        let enterprise_message = format!(
            "🏢 Enterprise Order Alert\n\
             Order: {id}\n\
             Customer: {customer}\n\
             Value: ${total}\n\
             Priority: {priority}\n\
             Fulfillment Strategy: {}\n\
             ⚡ Requires white-glove processing",
            js::string(js::read(data, "order.fulfillment.strategy")?)
        );

        send("#enterprise-orders", &enterprise_message)?;

        notifications.push("enterprise-team");
    }

    // High-value order notification
    if js::num(data, "order.total") > 2000.0 {
        // `${data.order.fraud?.finalScore || 'N/A'}`
        let fraud_score = js::or(js::lookup(data, "order.fraud.finalScore"), "N/A");
        let high_value_message = format!(
            "💰 High-Value Order: ${total}\n\
             Order: {id}\n\
             Customer: {customer} ({})\n\
             Fraud Score: {}",
            js::text(data, "order.customer.effectiveTier"),
            js::string(Some(&fraud_score))
        );

        send("#high-value-orders", &high_value_message)?;

        notifications.push("high-value-team");
    }

    // (The seed's "Fraud review notification" to #fraud-review is sent by the fraud-review-alert
    // step as soon as the review is needed.)

    // Fulfillment team notification for priority orders
    if priority == "critical" || priority == "high" {
        let target_processing_hours = js::string(js::read(data, "order.fulfillment.targetProcessingHours")?);
        let strategy = js::string(js::read(data, "order.fulfillment.strategy")?);
        // `data.order.fulfillment.orders.map(o => o.warehouse).join(', ')`
        let warehouses: Vec<Value> = js::array(data, "order.fulfillment.orders", "map")?
            .iter()
            .map(|o| o.get("warehouse").cloned().unwrap_or(Value::Null))
            .collect();
        let fulfillment_message = format!(
            "📦 Priority Fulfillment Alert\n\
             Order: {id}\n\
             Priority: {priority}\n\
             Target Processing: {target_processing_hours} hours\n\
             Strategy: {strategy}\n\
             Warehouses: {}",
            js::join(&warehouses, ", ")
        );

        send("#fulfillment-priority", &fulfillment_message)?;

        notifications.push("fulfillment-team");
    }

    Ok(notifications)
}

fn send(channel: &str, text: &str) -> Result<Value, String> {
    connectors::call("slackCom", "send", &json!({ "channel": channel, "text": text })).map_err(|e| e.message)
}

export_step!(InternalTeamNotification);
whenever_step_sdk::no_std_support!();
