//! Error handling: Payment Failure Recovery. After a failed payment, asks the customer for a new
//! payment method and alerts customer service; the task then waits for a person to patch in a new
//! token (`order.payment.token`), which makes payment processing try again.
//!
//! Fix (see the README): the seed waits for `paymentRetryAttempts: Number`, which nothing sets,
//! so it never ran. This step counts the attempts itself (as its content already did) and its
//! condition carries the seed's limit, "attempts < 3", which its content never checked: a missing
//! count or one below 3. Payment processing removes `retryRequested` on each new failure, so
//! every failure up to the third is handled once.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct PaymentFailureRecovery;

impl Step for PaymentFailureRecovery {
    fn condition() -> Value {
        condition!({
            order: {
                paymentFailed: true,
                paymentRetryAttempts: not(gte(3)),
                retryRequested: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("Handling payment failure for order: {}", js::text(data, "order.id"));

        // Increment retry counter: `(data.order.paymentRetryAttempts || 0) + 1`
        let attempts = js::number(Some(&js::or(js::lookup(data, "order.paymentRetryAttempts"), 0))) + 1.0;
        set(data, "order.paymentRetryAttempts", js::to_json(attempts));

        let id = js::text(data, "order.id");
        let email = js::read(data, "order.customer.email")?.cloned();

        // Send payment failure notification to customer (outside any `try` in the seed: a
        // failure fails the run, and nothing of it is applied, the count included)
        connectors::call(
            "eMailSmtpOAuth",
            "sendEmail",
            &js::object([
                ("from", Some(json!("orders@retailmax.com"))),
                ("to", email.clone()),
                ("subject", Some(json!(format!("Payment Issue - Order {id}")))),
                (
                    "html",
                    Some(json!(format!(
                        "
      <h2>Payment Issue with Your Order</h2>
      <p>We encountered an issue processing your payment for order {id}.</p>
      <p>Please update your payment method or try a different payment option.</p>
      <p><a href=\"https://retailmax.com/orders/{id}/retry-payment\">Update Payment Method</a></p>
    "
                    ))),
                ),
            ]),
        )?;

        // Alert customer service team
        connectors::call(
            "slackCom",
            "send",
            &json!({
                "channel": "#customer-service",
                "text": format!(
                    "💳 Payment failed for order {id}. Customer: {}. Attempt: {}/3",
                    js::string(email.as_ref()),
                    js::number_string(attempts)
                ),
            }),
        )?;

        set(data, "order.retryRequested", true);
        set(data, "order.status", "payment_retry_requested");
        Ok(())
    }
}

export_step!(PaymentFailureRecovery);
whenever_step_sdk::no_std_support!();
