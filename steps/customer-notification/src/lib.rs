//! Step 6: Customer Notification. Sends the order confirmation once the order is paid and
//! routed, with an estimated delivery date, worded for the customer's tier.
//!
//! Fix (see the README): when the e-mail cannot be sent, the seed leaves `customerNotified`
//! unset and the internal notification and the completion, which wait for it, never run; the
//! failure now sets `customerNotified: false` beside the error, so it does not block the order.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct CustomerNotification;

impl Step for CustomerNotification {
    fn condition() -> Value {
        condition!({
            order: {
                paymentProcessed: true,
                fulfillmentRouted: true,
                customer: {
                    email: String,
                    effectiveTier: String,
                },
                customerNotified: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!(
            "Sending customer notification for order: {}",
            js::text(data, "order.id")
        );

        // The seed's `try { ... } catch (error) { ... }`.
        match notify(data) {
            Ok(estimated_delivery) => {
                set(data, "order.customerNotified", true);
                set(data, "order.customerNotifiedAt", task::now());
                match estimated_delivery {
                    Some(date) => {
                        set(data, "order.estimatedDelivery", js::iso_string(&date));
                        log_info!("Customer notification sent successfully");
                    }
                    // `toISOString()` throws on an invalid date, after the flags above are set.
                    None => caught(data, "Invalid time value"),
                }
            }
            Err(message) => {
                caught(data, &message);
                // Fix: notification failures don't block order processing.
                set(data, "order.customerNotified", false);
            }
        }
        Ok(())
    }
}

/// The seed's `catch` block.
fn caught(data: &mut Value, message: &str) {
    log_error!("Customer notification failed: {message}");
    set(data, "order.customerNotificationError", message);
}

/// The `try` block up to the e-mail: sends it and returns the estimated delivery date (`None`
/// for JavaScript's invalid date).
fn notify(data: &Value) -> Result<Option<js::Date>, String> {
    // Calculate estimated delivery date
    let base_processing_days = js::number(js::read(data, "order.fulfillment.targetProcessingHours")?) / 24.0;
    let shipping_days = match js::read(data, "order.shipping.method")?.and_then(Value::as_str) {
        Some("overnight") => 1.0,
        Some("expedited") => 2.0,
        _ => 5.0,
    };

    // `new Date()` plus `Math.ceil(baseProcessingDays + shippingDays)` days.
    let estimated_delivery =
        js::parse_date(&task::now()).and_then(|now| js::add_days(&now, js::ceil(base_processing_days + shipping_days)));
    let delivery_date = match &estimated_delivery {
        Some(date) => js::locale_date_string(date),
        None => "Invalid Date".to_string(),
    };

    // Customize email based on customer tier
    let (subject, email_template) = confirmation_email(data, &delivery_date);

    connectors::call(
        "eMailSmtpOAuth",
        "sendEmail",
        &js::object([
            ("from", Some(json!("orders@retailmax.com"))),
            ("to", js::lookup(data, "order.customer.email").cloned()),
            ("subject", Some(json!(subject))),
            ("html", Some(json!(email_template))),
        ]),
    )
    .map_err(|e| e.message)?;

    Ok(estimated_delivery)
}

/// The subject and the HTML of the confirmation, exactly as the seed's template literals.
fn confirmation_email(data: &Value, delivery_date: &str) -> (String, String) {
    let id = js::text(data, "order.id");
    let first_name = js::text(data, "order.customer.firstName");
    let total = js::text(data, "order.total");

    if get_str(data, "order.customer.effectiveTier") == "enterprise" {
        (
            format!("Order Confirmation {id} - Premium Processing Initiated"),
            format!(
                "
        <h2>Thank you for your order, {first_name}!</h2>
        <p>Your enterprise order has been confirmed and is receiving our premium processing treatment.</p>
        <p><strong>Order Details:</strong></p>
        <ul>
          <li>Order ID: {id}</li>
          <li>Total: ${total}</li>
          <li>Processing Priority: Critical</li>
          <li>Estimated Delivery: {delivery_date}</li>
        </ul>
        <p>Your dedicated account manager will provide personalized updates throughout the fulfillment process.</p>
        <p>Questions? Contact your account manager directly or call our enterprise support line.</p>
      "
            ),
        )
    } else {
        (
            format!("Order Confirmation {id}"),
            format!(
                "
        <h2>Thank you for your order, {first_name}!</h2>
        <p>We've received your order and payment has been processed successfully.</p>
        <p><strong>Order Summary:</strong></p>
        <ul>
          <li>Order ID: {id}</li>
          <li>Total: ${total}</li>
          <li>Estimated Delivery: {delivery_date}</li>
        </ul>
        <p>You'll receive tracking information once your order ships.</p>
      "
            ),
        )
    }
}

export_step!(CustomerNotification);
whenever_step_sdk::no_std_support!();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_orders_confirmation() {
        let data = json!({"order": {"id": "ORD-1", "total": 1247.99,
            "customer": {"firstName": "Michael", "effectiveTier": "business"}}});
        let (subject, html) = confirmation_email(&data, "8/21/2025");
        assert_eq!(subject, "Order Confirmation ORD-1");
        assert!(html.starts_with("\n        <h2>Thank you for your order, Michael!</h2>\n"));
        assert!(html.contains("\n          <li>Total: $1247.99</li>\n"));
        assert!(html.contains("<li>Estimated Delivery: 8/21/2025</li>"));
        assert!(html.ends_with("</p>\n      "));
    }
}
