//! New step (a fix, see the README): Fraud Review Alert. The seed's internal team notification
//! sent the "Manual Review Required" alert, but only once the customer had been notified, which
//! needs the payment, which needs the approval the review is for: the alert could never come in
//! time. This step sends the seed's alert to #fraud-review as soon as fraud detection asks for a
//! manual review. The task then waits for a person to patch `order.fraudApproved: true` (payment
//! and the rest of the order follow) or `order.fraudRejected: true` (order-rejection ends it).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::ToString;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct FraudReviewAlert;

impl Step for FraudReviewAlert {
    fn condition() -> Value {
        condition!({
            order: {
                requiresManualReview: true,
                fraudReviewAlerted: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!(
            "Requesting a manual fraud review for order: {}",
            js::text(data, "order.id")
        );

        // The seed's message. When the fraud check itself failed there is no score and no factor
        // list (the seed would throw on `factors.join`); the error is shown instead.
        let fraud_score = match js::lookup(data, "order.fraud.finalScore") {
            None => "N/A".to_string(),
            score => js::string(score),
        };
        let risk_factors = match js::lookup(data, "order.fraud.factors") {
            Some(Value::Array(factors)) => js::join(factors, ", "),
            _ => format!("fraud check failed: {}", js::text(data, "order.fraud.error")),
        };
        let fraud_message = format!(
            "⚠️ Manual Review Required\n\
             Order: {}\n\
             Fraud Score: {fraud_score}\n\
             Risk Factors: {risk_factors}\n\
             Customer: {}\n\
             Action Required: Review and approve/reject",
            js::text(data, "order.id"),
            js::text(data, "order.customer.email")
        );

        // A failed alert fails the run (nobody would know about the review otherwise): the task
        // shows as failed and an operator can retry the step.
        connectors::call(
            "slackCom",
            "send",
            &json!({
                "channel": "#fraud-review",
                "text": fraud_message,
            }),
        )?;

        set(data, "order.fraudReviewAlerted", true);
        set(data, "order.fraudReviewAlertedAt", task::now());
        set(data, "order.status", "awaiting_fraud_review");
        task::add_tags(&["fraud_review"]);
        Ok(())
    }
}

export_step!(FraudReviewAlert);
whenever_step_sdk::no_std_support!();
