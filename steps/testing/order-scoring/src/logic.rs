//! The benchmark step's logic, plain serde_json and no host calls, so the benchmark can compile
//! the very same code natively: the seed's tier analysis plus its internal fraud factors.

use serde_json::{Value, json};

/// Scores an order in place, as the seed's steps 1 and 2 do (without the external fraud call).
pub fn score(data: &mut Value, now: &str) {
    let total = data["order"]["total"].as_f64().unwrap_or(0.0);
    let customer = &data["order"]["customer"];
    let tier = customer["tier"].as_str().unwrap_or("").to_string();
    let total_spent = customer["totalSpent"].as_f64().unwrap_or(0.0);
    let total_orders = customer["totalOrders"].as_f64().unwrap_or(0.0);
    let lifetime = total_spent + total;
    let (effective, priority, minutes) = if lifetime > 50000.0 || tier == "enterprise" {
        ("enterprise", "critical", 15)
    } else if lifetime > 10000.0 || tier == "business" {
        ("business", "high", 30)
    } else if total_orders > 10.0 {
        ("loyal", "normal", 60)
    } else {
        ("standard", "normal", 120)
    };

    let mut risk = 0;
    let mut factors = Vec::new();
    if total > 2000.0 {
        risk += 20;
        factors.push("high_value_order");
    }
    if total_orders < 3.0 {
        risk += 15;
        factors.push("new_customer");
    }
    let electronics = data["order"]["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i["category"] == "electronics"));
    if electronics {
        risk += 10;
        factors.push("electronics_category");
    }
    let shipping = data["order"]["shipping"]["method"].as_str().unwrap_or("");
    if shipping == "expedited" || shipping == "overnight" {
        risk += 10;
        factors.push("expedited_shipping");
    }
    let recommendation = if risk > 60 {
        "reject"
    } else if risk > 40 {
        "review"
    } else {
        "approve"
    };

    let order = &mut data["order"];
    order["customer"]["effectiveTier"] = json!(effective);
    order["priority"] = json!(priority);
    order["processingTime"] = json!(minutes);
    order["fraud"] = json!({
        "internalScore": risk,
        "factors": factors,
        "finalScore": risk,
        "recommendation": recommendation,
        "checkedAt": now,
    });
    order["scored"] = json!(true);
    order["scoredAt"] = json!(now);
}
