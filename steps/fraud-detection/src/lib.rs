//! Step 2: Fraud Detection. Runs in parallel with tier analysis and inventory management on every
//! order with a payment token, and approves it, sends it to manual review, or rejects it.
//!
//! The seed's note "Fraud threshold logic (total > 500) implemented in step content" is not
//! implemented in its content either, and must not be put into the condition: payment waits for
//! `fraudApproved`, so an order this step skipped would never be charged (see the README).
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use retailmax_js as js;
use whenever_step_sdk::prelude::*;

struct FraudDetection;

impl Step for FraudDetection {
    fn condition() -> Value {
        condition!({
            order: {
                total: Number,
                payment: {
                    method: String,
                    token: String,
                },
                fraudChecked: null,
            }
        })
    }

    fn content(data: &mut Value) -> Result<(), StepError> {
        log_info!("Running fraud detection for order: {}", js::text(data, "order.id"));

        // The seed's `try { ... } catch (error) { ... }`: any error inside, a connector error or
        // a TypeError on a missing object, sends the order to manual review.
        if let Err(message) = assess(data) {
            log_error!("Fraud detection failed: {message}");
            set(
                data,
                "order.fraud",
                json!({
                    "error": message,
                    "recommendation": "review",
                    "checkedAt": task::now(),
                }),
            );
            set(data, "order.requiresManualReview", true);
            set(data, "order.fraudChecked", true);
        }
        Ok(())
    }
}

/// Calculates the internal risk factors: the score and the factor names.
fn internal_risk(data: &Value) -> Result<(f64, Vec<&'static str>), String> {
    let mut risk_score = 0.0;
    let mut factors = Vec::new();

    // High-value order risk
    if js::num(data, "order.total") > 2000.0 {
        risk_score += 20.0;
        factors.push("high_value_order");
    }

    // New customer risk (a missing count is `undefined < 3`: false)
    if js::number(js::read(data, "order.customer.totalOrders")?) < 3.0 {
        risk_score += 15.0;
        factors.push("new_customer");
    }

    // Electronics category risk
    let items = js::array(data, "order.items", "some")?;
    let has_electronics = items
        .iter()
        .any(|item| item.get("category").and_then(Value::as_str) == Some("electronics"));
    if has_electronics {
        risk_score += 10.0;
        factors.push("electronics_category");
    }

    // Expedited shipping risk
    let shipping_method = js::read(data, "order.shipping.method")?.and_then(Value::as_str);
    if shipping_method == Some("expedited") || shipping_method == Some("overnight") {
        risk_score += 10.0;
        factors.push("expedited_shipping");
    }

    Ok((risk_score, factors))
}

/// The seed's `try` block.
fn assess(data: &mut Value) -> Result<(), String> {
    let (mut risk_score, factors) = internal_risk(data)?;

    // External fraud API check for high-risk orders
    if risk_score > 30.0 {
        let fraud_result = connectors::call(
            "fraudGuard",
            "analyze",
            &js::object([
                ("orderId", js::lookup(data, "order.id").cloned()),
                ("customerEmail", js::read(data, "order.customer.email")?.cloned()),
                ("amount", js::lookup(data, "order.total").cloned()),
                ("paymentToken", js::lookup(data, "order.payment.token").cloned()),
                ("shippingAddress", js::read(data, "order.shipping.address")?.cloned()),
            ]),
        )
        .map_err(|e| e.message)?;

        set(
            data,
            "order.fraud",
            js::object([
                ("externalScore", fraud_result.get("score").cloned()),
                ("externalRecommendation", fraud_result.get("recommendation").cloned()),
                ("externalChecked", Some(json!(true))),
            ]),
        );

        // As in the seed, the external score is added to the internal one (and `internalScore`
        // below therefore includes it).
        risk_score += js::number(fraud_result.get("score"));
    }

    // Final fraud assessment: `{ ...data.order.fraud, internalScore, ... }`
    let recommendation = recommendation(risk_score);
    let mut fraud = match get(data, "order.fraud") {
        Value::Object(fraud) => fraud.clone(),
        _ => Map::new(),
    };
    fraud.insert("internalScore".into(), js::to_json(risk_score));
    fraud.insert("factors".into(), json!(factors));
    fraud.insert("finalScore".into(), js::to_json(risk_score));
    fraud.insert("recommendation".into(), json!(recommendation));
    fraud.insert("checkedAt".into(), json!(task::now()));
    set(data, "order.fraud", Value::Object(fraud));

    match recommendation {
        "approve" => set(data, "order.fraudApproved", true),
        "review" => set(data, "order.requiresManualReview", true),
        _ => set(data, "order.fraudRejected", true),
    }

    set(data, "order.fraudChecked", true);

    log_info!(
        "Fraud check complete: {recommendation} (score: {})",
        js::number_string(risk_score)
    );
    Ok(())
}

/// `riskScore > 60 ? 'reject' : riskScore > 40 ? 'review' : 'approve'`
fn recommendation(risk_score: f64) -> &'static str {
    if risk_score > 60.0 {
        "reject"
    } else if risk_score > 40.0 {
        "review"
    } else {
        "approve"
    }
}

export_step!(FraudDetection);
whenever_step_sdk::no_std_support!();

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_order() -> Value {
        json!({"order": {
            "total": 1247.99,
            "items": [{"category": "electronics"}, {"category": "accessories"}],
            "customer": {"totalOrders": 23},
            "shipping": {"method": "expedited", "address": {"country": "US"}}
        }})
    }

    #[test]
    fn the_seed_order_scores_20_not_35() {
        // The seed's sample shows 35 with [high_value_order, electronics_category], but its own
        // rules give 20: 1247.99 is not over 2000, and expedited shipping counts.
        let (score, factors) = internal_risk(&seed_order()).expect("no TypeError");
        assert_eq!(score, 20.0);
        assert_eq!(factors, ["electronics_category", "expedited_shipping"]);
        assert_eq!(recommendation(score), "approve");
    }

    #[test]
    fn thresholds() {
        assert_eq!(recommendation(40.0), "approve");
        assert_eq!(recommendation(41.0), "review");
        assert_eq!(recommendation(60.0), "review");
        assert_eq!(recommendation(61.0), "reject");
        assert_eq!(recommendation(f64::NAN), "approve"); // as in JavaScript
    }

    #[test]
    fn missing_objects_are_type_errors_and_a_missing_count_is_not_new() {
        let mut order = seed_order();
        order["order"]["customer"] = json!({});
        let (score, factors) = internal_risk(&order).expect("undefined < 3 is false");
        assert_eq!((score, factors.len()), (20.0, 2));
        order["order"].as_object_mut().map(|o| o.remove("shipping"));
        assert_eq!(
            internal_risk(&order).map(|_| ()),
            Err("Cannot read properties of undefined (reading 'method')".to_string())
        );
    }
}
