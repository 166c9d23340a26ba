//! The RetailMax scenarios: the seed's order and the variations that take every path.

use serde_json::{Value, json};

use crate::scheduler::merge::merge_patch;
use crate::task::{Task, TaskStatus};

/// Something a person does while the task waits: a merge patch on the task data, and maybe a
/// retry of a step (`POST /v1/tasks/{id}/retry`).
#[derive(Debug, Clone)]
pub struct PersonAction {
    /// What the person does, for the timeline.
    pub note: &'static str,
    /// The JSON merge patch applied to the data.
    pub patch: Value,
    /// The step the person then asks to run again, if any.
    pub retry: Option<&'static str>,
}

impl PersonAction {
    /// Does it to `task`, as the API would before the task is driven again: patches the data,
    /// and has the retried step run again.
    pub fn apply(&self, task: &mut Task) {
        merge_patch(&mut task.data, &self.patch);
        if let Some(step) = self.retry {
            task.progress.entry(step.to_string()).or_default().redo = true;
        }
    }
}

/// One order and what happens to it.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// A short identifier.
    pub name: &'static str,
    /// The heading.
    pub title: &'static str,
    /// One line on what the order is and which path it takes.
    pub story: &'static str,
    /// The initial task data.
    pub order: Value,
    /// What people do while the task waits.
    pub actions: Vec<PersonAction>,
    /// How the task ends.
    pub expected: TaskStatus,
}

/// The seed's initial task data (`../shared/seed/retailmax.md`).
pub fn seed_order() -> Value {
    serde_json::from_str(include_str!("seed-order.json")).unwrap_or(Value::Null)
}

fn order_with(patch: Value) -> Value {
    let mut order = seed_order();
    merge_patch(&mut order, &patch);
    order
}

fn person(note: &'static str, patch: Value) -> PersonAction {
    PersonAction {
        note,
        patch,
        retry: None,
    }
}

/// The seed's order with one item replaced or the list replaced: a camera with no stock anywhere.
fn camera() -> Value {
    json!({"sku": "CAMERA-CANON-R5", "name": "Canon EOS R5 Camera", "quantity": 1, "price": 248.0,
        "category": "electronics", "weight": 1.6, "requiresSignature": true})
}

/// Every scenario, in demo order.
pub fn scenarios() -> Vec<Scenario> {
    let mut partial_items = seed_order()["order"]["items"].as_array().cloned().unwrap_or_default();
    if let Some(second) = partial_items.get_mut(1) {
        *second = camera();
    }
    let review = json!({"order": {"customer": {"totalOrders": 1}, "shipping": {"address": {"country": "CA"}}}});
    vec![
        Scenario {
            name: "seed",
            title: "The seed's order: business customer, card, expedited",
            story: "Tier analysis, fraud detection and inventory run in parallel; payment waits for fraud approval, fulfilment for payment and stock.",
            order: seed_order(),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "enterprise",
            title: "Enterprise customer: white-glove fulfilment",
            story: "The same order from an enterprise account gets critical priority, premium handling and the enterprise team.",
            order: order_with(json!({"order": {"customer": {"tier": "enterprise"}}})),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "loyal",
            title: "Loyal customer",
            story: "Lifetime value under $10k but more than 10 orders: loyalty perks, normal priority, standard fulfilment.",
            order: order_with(json!({"order": {"customer": {"tier": "standard", "totalSpent": 2000}}})),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "standard",
            title: "Standard customer",
            story: "Five orders and $500 spent: standard tier, eco packaging, a plain confirmation.",
            order: order_with(
                json!({"order": {"customer": {"tier": "standard", "totalSpent": 500, "totalOrders": 5}}}),
            ),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "fraud-review",
            title: "Fraud review, then a person approves",
            story: "A first order shipped to Canada scores 50: #fraud-review is alerted at once and the task waits for a person.",
            order: order_with(review.clone()),
            actions: vec![person(
                "the fraud team approves the order",
                json!({"order": {"fraudApproved": true}}),
            )],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "fraud-review-rejected",
            title: "Fraud review, then a person rejects",
            story: "The same order; the fraud team rejects it: reservations are released and the customer is told.",
            order: order_with(review),
            actions: vec![person(
                "the fraud team rejects the order",
                json!({"order": {"fraudRejected": true}}),
            )],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "fraud-rejected",
            title: "Fraud rejection",
            story: "A $6,000 first order to Canada scores 80 with FraudGuard: rejected without payment.",
            order: order_with(
                json!({"order": {"total": 6000, "customer": {"totalOrders": 1}, "shipping": {"address": {"country": "CA"}}}}),
            ),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "payment-declined",
            title: "Card declined, recovery, then a new card succeeds",
            story: "Stripe declines the card: stock is released, recovery writes to the customer and waits; a new token makes payment run again.",
            order: order_with(json!({"order": {"payment": {"token": "tok_chargeDeclined"}}})),
            actions: vec![person(
                "the customer enters a new card",
                json!({"order": {"payment": {"token": "tok_visa"}}}),
            )],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "payment-outcome-unknown",
            title: "Stripe's answer is lost, a person records the charge",
            story: "Stripe charges the card but its answer never arrives: nothing is released and nobody is told the payment failed; a person finds the charge at Stripe, gives its id and retries the step, which records it.",
            order: order_with(json!({"order": {"payment": {"token": "tok_chargeTimeout"}}})),
            actions: vec![PersonAction {
                note: "a person finds the charge in Stripe's dashboard, gives its id and retries payment processing",
                patch: json!({"order": {"paymentOutcomeUnknown": null,
                    "payment": {"transactionIdFound": "txn_found_at_stripe"}}}),
                retry: Some("payment-processing"),
            }],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "partial-backorder",
            title: "Partial backorder",
            story: "The camera has no stock anywhere: the customer is offered a partial shipment and the inventory team is alerted.",
            order: order_with(json!({"order": {"items": partial_items}})),
            actions: vec![],
            expected: TaskStatus::Waiting,
        },
        Scenario {
            name: "full-backorder",
            title: "Full backorder",
            story: "Nothing in the order is in stock: the customer chooses between waiting, substitution or a refund.",
            order: order_with(json!({"order": {"items": [camera()]}})),
            actions: vec![],
            expected: TaskStatus::Waiting,
        },
        Scenario {
            name: "paypal",
            title: "PayPal, approved",
            story: "Payment goes through PayPal instead of Stripe.",
            order: order_with(
                json!({"order": {"payment": {"method": "paypal", "provider": "paypal", "token": "PAY-5XY12345AB678901C", "last4": null}}}),
            ),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "paypal-declined",
            title: "PayPal, declined",
            story: "PayPal declines the instrument: recovery takes over and the task waits for a new payment.",
            order: order_with(
                json!({"order": {"payment": {"method": "paypal", "provider": "paypal", "token": "PAY-DECLINED-5XY12345", "last4": null}}}),
            ),
            actions: vec![],
            expected: TaskStatus::Waiting,
        },
        Scenario {
            name: "crypto",
            title: "Bitcoin payment",
            story: "A crypto order is paid through Coinbase by a step added later, without touching the others.",
            order: order_with(
                json!({"order": {"payment": {"method": "bitcoin", "provider": "coinbase", "walletAddress": "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh", "token": null, "last4": null}}}),
            ),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "vip",
            title: "VIP customer",
            story: "A customer who has spent over $100,000 becomes VIP with a personal shopper, right after the tier analysis.",
            order: order_with(json!({"order": {"customer": {"totalSpent": 150000}}})),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
        Scenario {
            name: "bounce",
            title: "The confirmation e-mail bounces",
            story: "The customer's mailbox is unavailable: the failure is recorded and the order still completes.",
            order: order_with(json!({"order": {"customer": {"email": "michael.foster@bounce.test"}}})),
            actions: vec![],
            expected: TaskStatus::Completed,
        },
    ]
}
