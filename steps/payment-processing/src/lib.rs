//! Step 4: Payment Processing. Waits for fraud approval, then charges the order through its
//! payment method's provider. On failure it records the error and releases the inventory
//! reservations.
//!
//! Changes to the seed (see the README): bitcoin orders are left to the crypto-payment step; the
//! step waits for the inventory check, so a failure releases the reservations reliably; a
//! failure marks the released stock as released (`inventoryReserved: false`,
//! `inventoryReleased: true`) and asks for a new retry request; a success after an earlier
//! failure clears that failure and has the released stock reserved again; a provider that gave
//! no answer (a `timeout`, or `unavailable` once the connector's retries with the same
//! idempotency key ran out) is not a decline: the charge may have been made, so nothing is
//! released and nobody is told the payment failed, and the order waits with
//! `paymentOutcomeUnknown: true` for a person who checks the provider, clears the flag (giving
//! `payment.transactionIdFound` when the charge was made) and retries the step (see the README).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct PaymentProcessing;

impl Step for PaymentProcessing {
    fn condition() -> Value {
        condition!({
            order: {
                fraudApproved: true,
                // Fix: wait for the inventory check, whose reservations a failure releases.
                inventoryChecked: true,
                payment: {
                    // `String`, except "bitcoin": the crypto-payment step pays those.
                    method: json!({ "$regex": "", "$nin": ["bitcoin"] }),
                    token: String,
                },
                paymentProcessed: null,
                // Fix: a charge whose outcome is unknown waits for a person.
                paymentOutcomeUnknown: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("Processing payment for order: {}", js::text(data, "order.id"));

        // Fix: a person found at the provider the charge whose answer was lost, and retried the
        // step: it is recorded as the provider's answer would have been, and not made again.
        let found = String::from(get_str(data, "order.payment.transactionIdFound"));
        if !found.is_empty() {
            log_info!("Recording the charge a person found at the provider: {found}");
            remove(data, "order.payment.transactionIdFound");
            succeeded(data, &json!({ "transactionId": found }));
            return Ok(());
        }

        // The seed's `try { ... } catch (error) { ... }`.
        match charge(data) {
            Ok(payment_result) => succeeded(data, &payment_result),
            Err(Unpaid::Failed(message)) => failed(data, &message)?,
            Err(Unpaid::OutcomeUnknown(message)) => outcome_unknown(data, &message),
        }
        Ok(())
    }
}

/// Why [`charge`] has no successful payment to show.
#[derive(Debug, PartialEq)]
enum Unpaid {
    /// The provider declined, or the order cannot be charged: the seed's `catch` block.
    Failed(String),
    /// The provider gave no answer, so the charge may or may not have been made.
    OutcomeUnknown(String),
}

impl From<String> for Unpaid {
    fn from(message: String) -> Self {
        Unpaid::Failed(message)
    }
}

impl From<ConnectorError> for Unpaid {
    /// A `timeout`, or `unavailable` after the connector's retries (a `5xx` or an answer cut off
    /// may follow a charge), leaves the outcome unknown; any other error is a failure.
    fn from(e: ConnectorError) -> Self {
        match e.kind {
            ErrorKind::Timeout | ErrorKind::Unavailable => Unpaid::OutcomeUnknown(e.message),
            _ => Unpaid::Failed(e.message),
        }
    }
}

/// The `try` block up to the success check: the provider's answer when it says `success`,
/// else why there is none.
fn charge(data: &Value) -> Result<Value, Unpaid> {
    let method = get_str(data, "order.payment.method");
    let token = js::lookup(data, "order.payment.token").cloned();
    let description = format!("Order {}", js::text(data, "order.id"));

    let payment_result = match method {
        "credit_card" => connectors::call(
            "stripe",
            "charge",
            &js::object([
                ("amount", Some(cents(data))), // Convert to cents
                ("currency", Some(lower_case_currency(data)?)),
                ("source", token),
                ("description", Some(json!(description))),
                (
                    "metadata",
                    Some(js::object([
                        ("orderId", js::lookup(data, "order.id").cloned()),
                        ("customerId", js::read(data, "order.customer.id")?.cloned()),
                        (
                            "customerTier",
                            js::lookup(data, "order.customer.effectiveTier").cloned(),
                        ),
                    ])),
                ),
            ]),
        ),

        "paypal" => connectors::call(
            "paypal",
            "executePayment",
            &js::object([
                ("paymentId", token),
                ("amount", js::lookup(data, "order.total").cloned()),
                ("currency", js::lookup(data, "order.currency").cloned()),
            ]),
        ),

        "apple_pay" => connectors::call(
            "stripe",
            "charge",
            &js::object([
                ("amount", Some(cents(data))),
                ("currency", Some(lower_case_currency(data)?)),
                ("source", token),
                ("description", Some(json!(description))),
                ("metadata", Some(json!({ "paymentMethod": "apple_pay" }))),
            ]),
        ),

        other => return Err(Unpaid::Failed(format!("Unsupported payment method: {other}"))),
    }?;

    if js::truthy(payment_result.get("success")) {
        Ok(payment_result)
    } else {
        // `throw new Error(paymentResult.error || 'Payment failed')`
        Err(Unpaid::Failed(js::string(Some(&js::or(
            payment_result.get("error"),
            "Payment failed",
        )))))
    }
}

/// `Math.round(data.order.total * 100)`
fn cents(data: &Value) -> Value {
    js::to_json(js::round(js::num(data, "order.total") * 100.0))
}

/// `data.order.currency.toLowerCase()`, which throws when there is no currency string.
fn lower_case_currency(data: &Value) -> Result<Value, String> {
    match js::read(data, "order.currency")? {
        Some(Value::String(currency)) => Ok(json!(currency.to_lowercase())),
        None => Err("Cannot read properties of undefined (reading 'toLowerCase')".into()),
        Some(Value::Null) => Err("Cannot read properties of null (reading 'toLowerCase')".into()),
        Some(_) => Err("data.order.currency.toLowerCase is not a function".into()),
    }
}

fn succeeded(data: &mut Value, payment_result: &Value) {
    js::assign(
        data,
        "order.payment.transactionId",
        payment_result.get("transactionId").cloned(),
    );
    set(data, "order.payment.processedAt", task::now());
    set(data, "order.payment.processorFee", js::or(payment_result.get("fee"), 0));
    set(data, "order.paymentProcessed", true);
    set(data, "order.status", "payment_confirmed");

    // Fix: a success after a failed attempt (a person patched in a new token) clears what the
    // failure left, so the data does not say both "paid" and "failed".
    remove(data, "order.paymentFailed");
    remove(data, "order.payment.error");
    remove(data, "order.payment.failedAt");
    remove(data, "order.payment.outcomeUnknownAt");
    // Fix: the failed attempt released the reservations; have inventory management check and
    // reserve the items again (its condition `inventoryChecked: null` matches once more, and
    // the items it looks at now carry the released reservations, so it re-runs).
    if get_bool(data, "order.inventoryReleased") {
        remove(data, "order.inventoryReleased");
        remove(data, "order.inventoryChecked");
    }

    log_info!(
        "Payment successful: {}",
        js::string(payment_result.get("transactionId"))
    );
}

/// Fix: the provider did not answer. The order keeps whatever it holds and waits for a person
/// who looks the charge up at the provider, clears `paymentOutcomeUnknown` (with
/// `payment.transactionIdFound` when the charge was made) and retries the step, which then
/// records the charge found, or charges.
fn outcome_unknown(data: &mut Value, message: &str) {
    log_error!(
        "Payment outcome unknown: {message}. The provider may have charged the order: look it up \
         there, then clear paymentOutcomeUnknown (giving payment.transactionIdFound if it was \
         charged) and retry this step"
    );
    set(data, "order.payment.error", message);
    set(data, "order.payment.outcomeUnknownAt", task::now());
    set(data, "order.paymentOutcomeUnknown", true);
    set(data, "order.status", "payment_outcome_unknown");
}

/// The seed's `catch` block. Releasing a reservation is outside any `try` there: a failing
/// release fails the run.
fn failed(data: &mut Value, message: &str) -> Result<(), ConnectorError> {
    log_error!("Payment processing failed: {message}");

    set(data, "order.payment.error", message);
    set(data, "order.payment.failedAt", task::now());
    set(data, "order.paymentFailed", true);
    set(data, "order.status", "payment_failed");
    // Fix: each failure asks for a new retry request (payment-failure-recovery runs again).
    remove(data, "order.retryRequested");

    // Release inventory reservations
    if js::truthy(js::lookup(data, "order.inventoryReserved")) {
        let reservations: Vec<Value> = get(data, "order.items")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("reservationId"))
            .filter(|id| js::truthy(Some(id)))
            .cloned()
            .collect();
        for reservation_id in reservations {
            connectors::call(
                "inventorySystem",
                "release",
                &json!({ "reservationId": reservation_id }),
            )?;
        }
        // Fix: the stock is no longer held; fulfilment must wait until it is reserved again.
        set(data, "order.inventoryReserved", false);
        set(data, "order.inventoryReleased", true);
    }
    Ok(())
}

export_step!(PaymentProcessing);
whenever_step_sdk::no_std_support!();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cents_round_like_math_round() {
        assert_eq!(cents(&json!({"order": {"total": 1247.99}})), json!(124799));
        assert_eq!(cents(&json!({"order": {"total": 0.015}})), json!(2));
        assert_eq!(cents(&json!({"order": {}})), json!(null));
    }

    #[test]
    fn no_answer_leaves_the_outcome_unknown_and_any_other_error_fails() {
        let error = |kind| ConnectorError {
            kind,
            message: "stripe: no answer".into(),
            connector: "stripe".into(),
            method: "charge".into(),
        };
        let unknown = Unpaid::OutcomeUnknown("stripe: no answer".into());
        let failed = Unpaid::Failed("stripe: no answer".into());
        assert_eq!(Unpaid::from(error(ErrorKind::Timeout)), unknown);
        assert_eq!(Unpaid::from(error(ErrorKind::Unavailable)), unknown);
        assert_eq!(Unpaid::from(error(ErrorKind::Failed)), failed);
        assert_eq!(Unpaid::from(error(ErrorKind::InvalidArgs)), failed);
        assert_eq!(Unpaid::from(error(ErrorKind::NotGranted)), failed);
    }

    #[test]
    fn currency_must_be_a_string() {
        assert_eq!(
            lower_case_currency(&json!({"order": {"currency": "USD"}})),
            Ok(json!("usd"))
        );
        assert!(lower_case_currency(&json!({"order": {}})).is_err());
    }
}
