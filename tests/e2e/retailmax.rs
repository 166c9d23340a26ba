//! The RetailMax automation end to end: the bundled steps (real components), the simulators, and
//! every scenario of the demo, asserted field by field against the seed's logic.

use serde_json::{Value, json};
use whenever::demo::{PersonAction, ScenarioRun, run_scenario, scenarios};
use whenever::task::{RunOutcomeRecord, TaskStatus};
use whenever::{Host, HostOptions};
use whenever_tests::runs_of;

async fn scenario(name: &str) -> (Host, ScenarioRun) {
    let host = Host::start(&HostOptions::default())
        .await
        .expect("host with the bundled steps");
    let scenario = scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .expect("scenario exists");
    let run = run_scenario(&host, &scenario).await;
    assert_eq!(
        run.task.status,
        scenario.expected,
        "{name} ended {} ({:?})\n{}",
        run.task.status,
        run.task.message,
        run.timeline.join("\n")
    );
    // No run of any step failed on any path.
    for record in &run.task.runs {
        assert_eq!(
            record.outcome,
            Some(RunOutcomeRecord::Ok),
            "{name}: {} failed",
            record.step
        );
    }
    (host, run)
}

fn order_of(run: &ScenarioRun) -> &Value {
    &run.task.data["order"]
}

/// (connector, recipient, subject or text) of each outbox message of the task, in order.
fn outbox(host: &Host, run: &ScenarioRun) -> Vec<(String, String, String)> {
    host.scheduler
        .connectors()
        .outbox()
        .for_task(&run.task.id)
        .into_iter()
        .map(|m| {
            (
                m.connector.clone(),
                m.to.clone(),
                m.subject.clone().unwrap_or(m.body.clone()),
            )
        })
        .collect()
}

const FLAGS: [&str; 10] = [
    "tierAnalyzed",
    "fraudChecked",
    "fraudApproved",
    "inventoryChecked",
    "inventoryReserved",
    "paymentProcessed",
    "fulfillmentRouted",
    "customerNotified",
    "internalTeamNotified",
    "orderProcessingComplete",
];

fn assert_completed(run: &ScenarioRun, tier: &str, priority: &str, strategy: &str) {
    let order = order_of(run);
    assert_eq!(run.task.status, TaskStatus::Completed);
    assert_eq!(order["status"], json!("processing_complete"));
    for flag in FLAGS {
        assert_eq!(order[flag], json!(true), "order.{flag}");
    }
    assert_eq!(order["customer"]["effectiveTier"], json!(tier));
    assert_eq!(order["priority"], json!(priority));
    assert_eq!(order["fulfillment"]["strategy"], json!(strategy));
    assert_eq!(run.task.data["orderProcessing"]["status"], json!("completed"));
    assert_eq!(run.task.data["orderProcessing"]["customerTier"], json!(tier));
    assert_eq!(run.task.data["orderProcessing"]["fulfillmentStrategy"], json!(strategy));
    assert_eq!(
        run.task.name.as_deref(),
        Some("Order: ORD-2025-08-18-7892 - Michael Foster ($1247.99)")
    );
    assert_eq!(
        run.task.tags,
        vec!["order_processing", "completed", tier, priority, "website", "value_1000"]
    );
}

#[tokio::test]
async fn the_seed_order_completes_as_the_seed_describes() {
    let (host, run) = scenario("seed").await;
    assert_completed(&run, "business", "high", "expedited");
    let order = order_of(&run);
    assert_eq!(order["processingTime"], json!(30));
    assert_eq!(order["expeditedProcessing"], json!(true));
    // The seed's rules give 20 (electronics + expedited); its printed sample says 35.
    assert_eq!(order["fraud"]["finalScore"], json!(20));
    assert_eq!(
        order["fraud"]["factors"],
        json!(["electronics_category", "expedited_shipping"])
    );
    assert_eq!(order["fraud"]["recommendation"], json!("approve"));
    for result in order["inventory"]["results"].as_array().expect("results") {
        assert_eq!(result["warehouse"], json!("TX-MAIN"));
        assert!(
            result["reservationId"]
                .as_str()
                .is_some_and(|id| id.starts_with("RES-"))
        );
    }
    assert_eq!(order["inventory"]["allAvailable"], json!(true));
    assert!(
        order["payment"]["transactionId"]
            .as_str()
            .is_some_and(|id| id.starts_with("txn_"))
    );
    assert_eq!(order["payment"]["processorFee"], json!(36.49));
    assert_eq!(order["fulfillment"]["priority"], json!("high"));
    assert_eq!(order["fulfillment"]["targetProcessingHours"], json!(4));
    let ff = order["fulfillment"]["orders"].as_array().expect("orders");
    assert_eq!(ff.len(), 1);
    assert_eq!(ff[0]["warehouse"], json!("TX-MAIN"));
    assert_eq!(
        ff[0]["items"],
        json!([{"sku": "LAPTOP-DELL-XPS13", "quantity": 1}, {"sku": "MOUSE-WIRELESS-PRO", "quantity": 2}])
    );
    let summary = &run.task.data["orderProcessing"];
    assert_eq!(summary["priority"], json!("high"));
    assert_eq!(
        summary["completedSteps"],
        json!([
            "tier_analysis",
            "fraud_detection",
            "inventory_management",
            "payment_processing",
            "fulfillment_routing",
            "customer_notification",
            "internal_notification"
        ])
    );
    assert_eq!(
        summary["metrics"],
        json!({"fraudScore": 20, "inventoryReservations": 2, "fulfillmentOrders": 1, "paymentMethod": "credit_card", "totalValue": 1247.99})
    );
    let messages = outbox(&host, &run);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0].1, "michael.foster@techcorp.com");
    assert_eq!(messages[0].2, "Order Confirmation ORD-2025-08-18-7892");
    assert_eq!(messages[1].1, "#fulfillment-priority");
    assert!(messages[1].2.contains("Strategy: expedited") && messages[1].2.contains("Warehouses: TX-MAIN"));
    // Tier analysis, fraud detection and inventory are in the first wave: their records were
    // made (as starting) before any run finished. That says they were started as one wave, not
    // that they ran at once (a record's `started_at` is set when it is made, before the run
    // launches); `scheduling.rs` checks that the runs of a wave overlap.
    let first_end = run.task.runs.iter().filter_map(|r| r.ended_at).min().expect("ended");
    let started_first: Vec<&str> = run
        .task
        .runs
        .iter()
        .filter(|r| r.started_at <= first_end)
        .map(|r| r.step.as_str())
        .collect();
    for step in ["customer-tier-analysis", "fraud-detection", "inventory-management"] {
        assert!(
            started_first.contains(&step),
            "{step} in the first wave: {started_first:?}"
        );
    }
    // Exactly one charge.
    let effects = host.scheduler.connectors().effects();
    assert_eq!(effects.count_for_task(&run.task.id, "stripe", "charge"), 1);
}

#[tokio::test]
async fn an_enterprise_order_gets_white_glove_fulfilment() {
    let (host, run) = scenario("enterprise").await;
    assert_completed(&run, "enterprise", "critical", "white_glove");
    let order = order_of(&run);
    assert_eq!(order["personalizedService"], json!(true));
    assert_eq!(order["fulfillment"]["packagingType"], json!("premium"));
    assert_eq!(order["fulfillment"]["targetProcessingHours"], json!(2));
    let messages = outbox(&host, &run);
    assert_eq!(
        messages[0].2,
        "Order Confirmation ORD-2025-08-18-7892 - Premium Processing Initiated"
    );
    let channels: Vec<&str> = messages.iter().map(|m| m.1.as_str()).collect();
    assert!(
        channels.contains(&"#enterprise-orders") && channels.contains(&"#fulfillment-priority"),
        "{channels:?}"
    );
}

#[tokio::test]
async fn loyal_and_standard_customers_get_standard_fulfilment() {
    let (host, run) = scenario("loyal").await;
    assert_completed(&run, "loyal", "normal", "standard");
    assert_eq!(order_of(&run)["loyaltyPerks"], json!(true));
    assert_eq!(order_of(&run)["fulfillment"]["packagingType"], json!("eco"));
    assert_eq!(outbox(&host, &run).len(), 1, "only the confirmation");

    let (_, run) = scenario("standard").await;
    assert_completed(&run, "standard", "normal", "standard");
    assert_eq!(order_of(&run)["processingTime"], json!(120));
}

#[tokio::test]
async fn a_fraud_review_waits_for_a_person_then_completes() {
    let (host, run) = scenario("fraud-review").await;
    assert_eq!(run.statuses, vec![TaskStatus::Waiting, TaskStatus::Completed]);
    let order = order_of(&run);
    assert_eq!(order["fraud"]["recommendation"], json!("review"));
    assert_eq!(order["fraud"]["finalScore"], json!(50));
    assert_eq!(order["fraud"]["externalScore"], json!(15));
    assert_eq!(order["requiresManualReview"], json!(true));
    assert_eq!(order["fraudReviewAlerted"], json!(true));
    assert_eq!(order["status"], json!("processing_complete"));
    assert_eq!(run.task.data["orderProcessing"]["metrics"]["fraudScore"], json!(50));
    assert!(run.task.tags.contains(&"fraud_review".to_string()));
    let messages = outbox(&host, &run);
    assert_eq!(messages[0].1, "#fraud-review");
    assert!(messages[0].2.contains("Manual Review Required") && messages[0].2.contains("Fraud Score: 50"));
    assert_eq!(
        host.scheduler
            .connectors()
            .effects()
            .count_for_task(&run.task.id, "stripe", "charge"),
        1
    );
}

/// How many effects `connector.method` had for the task (charges, reservation releases).
fn effects(host: &Host, task: &whenever::task::Task, connector: &str, method: &str) -> usize {
    host.scheduler
        .connectors()
        .effects()
        .count_for_task(&task.id, connector, method)
}

#[tokio::test]
async fn a_charge_without_an_answer_keeps_the_stock_and_waits_for_a_person_who_records_it() {
    let (host, run) = scenario("payment-outcome-unknown").await;
    assert_eq!(run.statuses, vec![TaskStatus::Waiting, TaskStatus::Completed]);
    let order = order_of(&run);
    assert_eq!(order["status"], json!("processing_complete"));
    assert_eq!(order["payment"]["transactionId"], json!("txn_found_at_stripe"));
    assert_eq!(order["inventoryReserved"], json!(true));
    for never in [
        "paymentFailed",
        "paymentOutcomeUnknown",
        "inventoryReleased",
        "retryRequested",
    ] {
        assert!(order.get(never).is_none(), "{never}: {}", order[never]);
    }
    assert_eq!(effects(&host, &run.task, "stripe", "charge"), 1);
    assert_eq!(effects(&host, &run.task, "inventorySystem", "release"), 0);
    // Once without an answer, once retried by the person: recording, not charging.
    assert_eq!(runs_of(&run.task, "payment-processing").len(), 2);
    assert_eq!(runs_of(&run.task, "payment-failure-recovery").len(), 0);
    assert!(order["payment"].get("transactionIdFound").is_none(), "{order}");
    let messages = outbox(&host, &run);
    assert!(
        messages.iter().all(|m| !m.2.contains("Payment Issue")),
        "nobody is told the payment failed: {messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.2.starts_with("Order Confirmation")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_charge_without_an_answer_is_made_again_only_when_a_person_retries_the_step() {
    let host = Host::start(&HostOptions::default()).await.expect("host");
    let order = scenarios()
        .into_iter()
        .find(|s| s.name == "payment-outcome-unknown")
        .expect("scenario")
        .order;
    let mut task = whenever::task::Task::new(order);
    assert_eq!(host.scheduler.drive(&mut task, &mut |_| {}).await, TaskStatus::Waiting);
    let waiting = task.data["order"].clone();
    assert_eq!(waiting["status"], json!("payment_outcome_unknown"));
    assert_eq!(waiting["paymentOutcomeUnknown"], json!(true));
    assert!(
        waiting["payment"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer in time")),
        "{}",
        waiting["payment"]
    );
    assert!(waiting["payment"]["outcomeUnknownAt"].is_string());
    assert_eq!(waiting["inventoryReserved"], json!(true));
    assert!(waiting.get("paymentFailed").is_none());
    assert_eq!(effects(&host, &task, "stripe", "charge"), 1);
    assert_eq!(effects(&host, &task, "inventorySystem", "release"), 0);
    assert_eq!(runs_of(&task, "payment-processing").len(), 1);
    assert!(host.scheduler.connectors().outbox().for_task(&task.id).is_empty());
    let failed_runs: Vec<_> = task
        .runs
        .iter()
        .filter(|r| r.outcome != Some(RunOutcomeRecord::Ok))
        .collect();
    assert!(failed_runs.is_empty(), "{failed_runs:?}");

    // Nothing runs again by itself: driving the waiting task changes nothing, nor does clearing
    // the flag alone (the step's matched data is as when it last started).
    let before = task.data.clone();
    assert_eq!(host.scheduler.drive(&mut task, &mut |_| {}).await, TaskStatus::Waiting);
    assert_eq!(task.data, before);
    let clear = PersonAction {
        note: "no charge found",
        patch: json!({"order": {"paymentOutcomeUnknown": null}}),
        retry: None,
    };
    clear.apply(&mut task);
    assert_eq!(host.scheduler.drive(&mut task, &mut |_| {}).await, TaskStatus::Waiting);
    assert_eq!(runs_of(&task, "payment-processing").len(), 1);

    // The person found no charge at Stripe and retries the step: it charges again (and Stripe's
    // answer is lost again).
    let retry = PersonAction {
        retry: Some("payment-processing"),
        ..clear
    };
    retry.apply(&mut task);
    assert_eq!(host.scheduler.drive(&mut task, &mut |_| {}).await, TaskStatus::Waiting);
    assert_eq!(
        (
            effects(&host, &task, "stripe", "charge"),
            runs_of(&task, "payment-processing").len()
        ),
        (2, 2)
    );
    assert_eq!(task.data["order"]["paymentOutcomeUnknown"], json!(true));

    // This time the charge is at Stripe: given its id, the retried step records it, charging
    // nothing.
    PersonAction {
        note: "charge found",
        patch: json!({"order": {"paymentOutcomeUnknown": null, "payment": {"transactionIdFound": "txn_2"}}}),
        retry: Some("payment-processing"),
    }
    .apply(&mut task);
    assert_eq!(
        host.scheduler.drive(&mut task, &mut |_| {}).await,
        TaskStatus::Completed
    );
    let order = &task.data["order"];
    assert_eq!(order["paymentProcessed"], json!(true));
    assert_eq!(order["payment"]["transactionId"], json!("txn_2"));
    for gone in ["error", "outcomeUnknownAt", "transactionIdFound"] {
        assert!(order["payment"].get(gone).is_none(), "{gone}: {}", order["payment"]);
    }
    assert_eq!(
        (
            effects(&host, &task, "stripe", "charge"),
            runs_of(&task, "payment-processing").len()
        ),
        (2, 3)
    );
}

/// A charge declined first releases the stock; a second card's charge whose answer is lost,
/// once a person records it, has the stock reserved again as any success after a failure does.
#[tokio::test]
async fn a_charge_recorded_after_an_earlier_decline_has_the_stock_reserved_again() {
    let host = Host::start(&HostOptions::default()).await.expect("host");
    let order = whenever::demo::seed_order();
    let mut task = whenever::task::Task::new(order);
    let steps = [
        (
            "the card is declined",
            json!({"order": {"payment": {"token": "tok_chargeDeclined"}}}),
            None,
        ),
        (
            "a second card, Stripe's answer lost",
            json!({"order": {"payment": {"token": "tok_chargeTimeout"}}}),
            None,
        ),
        (
            "the charge found at Stripe",
            json!({"order": {"paymentOutcomeUnknown": null, "payment": {"transactionIdFound": "txn_found"}}}),
            Some("payment-processing"),
        ),
    ];
    for (note, patch, retry) in steps {
        PersonAction { note, patch, retry }.apply(&mut task);
        let status = host.scheduler.drive(&mut task, &mut |_| {}).await;
        let order = &task.data["order"];
        match note {
            "the card is declined" => {
                assert_eq!(
                    (status, &order["inventoryReleased"]),
                    (TaskStatus::Waiting, &json!(true)),
                    "{order}"
                )
            }
            "a second card, Stripe's answer lost" => {
                assert_eq!(status, TaskStatus::Waiting, "{order}");
                assert_eq!(order["status"], json!("payment_outcome_unknown"), "{order}");
            }
            _ => {
                assert_eq!(status, TaskStatus::Completed, "{order}");
                assert_eq!(order["inventoryReserved"], json!(true), "{order}");
                for gone in ["paymentFailed", "inventoryReleased", "paymentOutcomeUnknown"] {
                    assert!(order.get(gone).is_none(), "{gone}: {order}");
                }
                assert_eq!(order["payment"]["transactionId"], json!("txn_found"));
            }
        }
    }
    // The declined attempt made no charge; the lost answer's charge is the only one.
    assert_eq!(effects(&host, &task, "stripe", "charge"), 1);
}

#[tokio::test]
async fn a_rejected_review_releases_stock_and_completes_as_rejected() {
    let (host, run) = scenario("fraud-review-rejected").await;
    let order = order_of(&run);
    assert_eq!(order["status"], json!("rejected"));
    assert_eq!(order["orderRejected"], json!(true));
    assert_eq!(order["inventoryReleased"], json!(true));
    assert_eq!(order["inventoryReserved"], json!(false));
    assert!(order.get("paymentProcessed").is_none(), "never charged");
    assert_eq!(run.task.data["orderProcessing"]["status"], json!("rejected"));
    assert!(run.task.name.as_deref().unwrap_or("").ends_with("- rejected"));
    let effects = host.scheduler.connectors().effects();
    assert_eq!(effects.count_for_task(&run.task.id, "stripe", "charge"), 0);
    assert_eq!(effects.count_for_task(&run.task.id, "inventorySystem", "release"), 2);
    let messages = outbox(&host, &run);
    assert_eq!(
        messages.last().map(|m| m.2.as_str()),
        Some("Order Cancelled - ORD-2025-08-18-7892")
    );
}

#[tokio::test]
async fn a_high_risk_order_is_rejected_without_payment() {
    let (host, run) = scenario("fraud-rejected").await;
    let order = order_of(&run);
    assert_eq!(order["fraud"]["recommendation"], json!("reject"));
    assert_eq!(order["fraud"]["finalScore"], json!(80));
    assert_eq!(order["fraudRejected"], json!(true));
    assert_eq!(order["status"], json!("rejected"));
    assert_eq!(
        host.scheduler
            .connectors()
            .effects()
            .count_for_task(&run.task.id, "stripe", "charge"),
        0
    );
    assert_eq!(outbox(&host, &run).len(), 1, "only the cancellation e-mail");
}

#[tokio::test]
async fn a_declined_card_recovers_with_a_new_token() {
    let (host, run) = scenario("payment-declined").await;
    assert_eq!(run.statuses, vec![TaskStatus::Waiting, TaskStatus::Completed]);
    let order = order_of(&run);
    assert_eq!(order["status"], json!("processing_complete"));
    assert_eq!(order["paymentRetryAttempts"], json!(1));
    assert!(order.get("paymentFailed").is_none());
    assert!(order["payment"].get("error").is_none());
    assert_eq!(order["inventoryReserved"], json!(true));
    let effects = host.scheduler.connectors().effects();
    assert_eq!(
        effects.count_for_task(&run.task.id, "stripe", "charge"),
        1,
        "one successful charge"
    );
    let messages = outbox(&host, &run);
    assert_eq!(messages[0].2, "Payment Issue - Order ORD-2025-08-18-7892");
    assert_eq!(messages[1].1, "#customer-service");
    assert!(messages[1].2.contains("Attempt: 1/3"));
    // Payment processing ran twice: once per token.
    assert_eq!(
        run.task.runs.iter().filter(|r| r.step == "payment-processing").count(),
        2
    );
}

#[tokio::test]
async fn backorders_are_handled_and_the_task_waits_for_the_customer() {
    let (host, run) = scenario("partial-backorder").await;
    let order = order_of(&run);
    assert_eq!(order["status"], json!("inventory_shortage_handled"));
    assert_eq!(order["hasBackorders"], json!(true));
    assert_eq!(order["inventoryShortageHandled"], json!(true));
    assert_eq!(order["partialShipment"]["items"].as_array().map(Vec::len), Some(1));
    let messages = outbox(&host, &run);
    assert_eq!(messages[0].2, "Partial Shipment Available - Order ORD-2025-08-18-7892");
    assert_eq!(messages[1].1, "#inventory-alerts");
    assert!(messages[1].2.contains("1 items backordered"));

    let (host, run) = scenario("full-backorder").await;
    let full = order_of(&run);
    assert_eq!(full["status"], json!("inventory_shortage_handled"));
    assert!(full.get("partialShipment").is_none());
    assert_eq!(outbox(&host, &run)[0].2, "Order Update - ORD-2025-08-18-7892");
}

#[tokio::test]
async fn paypal_approved_and_declined() {
    let (host, run) = scenario("paypal").await;
    assert_completed(&run, "business", "high", "expedited");
    assert!(
        order_of(&run)["payment"]["transactionId"]
            .as_str()
            .is_some_and(|id| id.starts_with("pp_"))
    );
    assert_eq!(
        run.task.data["orderProcessing"]["metrics"]["paymentMethod"],
        json!("paypal")
    );
    assert_eq!(
        host.scheduler
            .connectors()
            .effects()
            .count_for_task(&run.task.id, "stripe", "charge"),
        0
    );

    let (_, run) = scenario("paypal-declined").await;
    let declined = order_of(&run);
    assert_eq!(declined["paymentFailed"], json!(true));
    assert_eq!(declined["payment"]["error"], json!("INSTRUMENT_DECLINED"));
    assert_eq!(declined["status"], json!("payment_retry_requested"));
}

#[tokio::test]
async fn a_bitcoin_order_is_paid_through_coinbase() {
    let (host, run) = scenario("crypto").await;
    let order = order_of(&run);
    assert_eq!(order["cryptoPaymentProcessed"], json!(true));
    assert_eq!(order["paymentProcessed"], json!(true));
    assert!(
        order["payment"]["blockchainTxId"]
            .as_str()
            .is_some_and(|id| id.starts_with("cb_"))
    );
    assert_eq!(order["status"], json!("processing_complete"));
    assert_eq!(
        run.task.data["orderProcessing"]["metrics"]["paymentMethod"],
        json!("bitcoin")
    );
    assert_eq!(
        host.scheduler
            .connectors()
            .effects()
            .count_for_task(&run.task.id, "coinbase", "processPayment"),
        1
    );
}

#[tokio::test]
async fn a_big_spender_becomes_vip_after_the_tier_analysis() {
    let (_, run) = scenario("vip").await;
    let order = order_of(&run);
    assert_eq!(order["customer"]["effectiveTier"], json!("vip"));
    assert_eq!(order["priority"], json!("critical"));
    assert_eq!(order["personalShopper"], json!(true));
    assert_eq!(order["vipProcessingTriggered"], json!(true));
    assert_eq!(order["status"], json!("processing_complete"));
    assert!(run.task.tags.contains(&"vip".to_string()));
    let tier = run
        .task
        .runs
        .iter()
        .find(|r| r.step == "customer-tier-analysis")
        .expect("tier ran");
    let vip = run
        .task
        .runs
        .iter()
        .find(|r| r.step == "vip-detection")
        .expect("vip ran");
    assert!(
        vip.started_at >= tier.ended_at.expect("ended"),
        "VIP runs after the tier analysis"
    );
}

#[tokio::test]
async fn a_bounced_confirmation_does_not_block_completion() {
    let (host, run) = scenario("bounce").await;
    let order = order_of(&run);
    assert_eq!(run.task.status, TaskStatus::Completed);
    assert_eq!(order["customerNotified"], json!(false));
    assert!(
        order["customerNotificationError"]
            .as_str()
            .unwrap_or("")
            .contains("mailbox unavailable")
    );
    assert_eq!(order["orderProcessingComplete"], json!(true));
    let messages = outbox(&host, &run);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1, "#fulfillment-priority");
}

/// The interfaces a component imports, by name.
fn imports_of(component: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::ComponentImportSection(section) = payload.expect("a valid component") {
            for import in section {
                names.push(import.expect("an import").name.name.to_string());
            }
        }
    }
    names
}

/// The bundled steps are `#![no_std]`: they import the host's `whenever:step` interfaces and no
/// WASI interface, which `std` would bring into each component for the host to link at each run.
#[test]
fn the_bundled_steps_import_no_wasi_interface() {
    for step in whenever_step_artifacts::RETAILMAX {
        let imports = imports_of(step.component);
        assert!(!imports.is_empty(), "{} imports the host's interfaces", step.name);
        assert!(
            imports.iter().all(|name| name.starts_with("whenever:step/")),
            "{}: {imports:?}",
            step.name
        );
    }
    // A step that uses `std` (a test step) does import WASI: the check above can tell.
    let with_std = std::fs::read(whenever_step_artifacts::testing::PANICS.component).expect("component");
    assert!(imports_of(&with_std).iter().any(|name| name.starts_with("wasi:cli/")));
}

/// The bundled steps as their manifests were before they listed what they read: each is given
/// the whole task data.
async fn host_giving_steps_the_whole_data() -> Host {
    let host = whenever_tests::host_with(&[]).await;
    for step in whenever_step_artifacts::RETAILMAX {
        let mut manifest = whenever::runtime::StepManifest::from_toml(step.manifest).expect("manifest");
        assert!(manifest.reads.is_some(), "{} lists what it reads", step.name);
        manifest.reads = None;
        let loaded = host
            .scheduler
            .runtime()
            .load(step.name, step.component, manifest)
            .await
            .expect("loads");
        host.scheduler.catalog().insert(loaded);
    }
    host
}

/// Runs a scenario as `run_scenario` does, on a task with a fixed id (connector results depend
/// on it through the idempotency keys).
async fn run_with_id(host: &Host, scenario: &whenever::demo::Scenario) -> whenever::task::Task {
    let mut task = whenever::task::Task::with_id(format!("views-{}", scenario.name), scenario.order.clone());
    host.scheduler.drive(&mut task, &mut |_| {}).await;
    for action in &scenario.actions {
        if task.status != TaskStatus::Waiting {
            break;
        }
        action.apply(&mut task);
        host.scheduler.drive(&mut task, &mut |_| {}).await;
    }
    task
}

/// `data` without what depends on the clock or on which of two parallel runs finished first:
/// RFC 3339 times, the elapsed-time figures (`totalProcessingTime*`, the summary's
/// `processingTime` in seconds), and the tier in a card charge's metadata (payment does not
/// wait for the tier analysis or the VIP detection, as in the seed, so the tier it sends is
/// whichever was written when it ran).
fn without_clock_and_races(data: &Value) -> Value {
    match data {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !(*key == "customerTier" && map.contains_key("customerId")))
                .map(|(key, value)| {
                    let elapsed = key.starts_with("totalProcessingTime")
                        || (key == "processingTime" && map.contains_key("completedSteps"));
                    let value = if elapsed {
                        json!("<elapsed>")
                    } else {
                        without_clock_and_races(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_clock_and_races).collect()),
        Value::String(text) if chrono::DateTime::parse_from_rfc3339(text).is_ok() => json!("<time>"),
        Value::String(text) => Value::String(without_times_inside(text)),
        other => other.clone(),
    }
}

/// `text` with every time written inside it (`YYYY-MM-DDTHH:MM:SS`, as an e-mail's expected date)
/// replaced by `<time>`: two runs a second apart write different ones.
fn without_times_inside(text: &str) -> String {
    const SHAPE: &[u8; 19] = b"dddd-dd-ddTdd:dd:dd";
    let bytes = text.as_bytes();
    let at = |i: usize| {
        bytes.get(i..i + SHAPE.len()).is_some_and(|window| {
            window
                .iter()
                .zip(SHAPE)
                .all(|(b, s)| if *s == b'd' { b.is_ascii_digit() } else { b == s })
        })
    };
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if at(i) {
            out.push_str(&text[copied..i]);
            out.push_str("<time>");
            i += SHAPE.len();
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The guard on every step's `reads` list: a path a step reads but does not list would read as
/// absent, and some scenario would end differently.
#[tokio::test]
async fn every_scenario_ends_the_same_whether_steps_are_given_views_or_the_whole_data() {
    let views = Host::start(&HostOptions::default()).await.expect("host");
    let whole = host_giving_steps_the_whole_data().await;
    for scenario in scenarios() {
        let given_views = run_with_id(&views, &scenario).await;
        let given_whole = run_with_id(&whole, &scenario).await;
        let name = scenario.name;
        assert_eq!(
            given_views.status, scenario.expected,
            "{name}: {:?}",
            given_views.message
        );
        // Nor does any run read a path it was not given (the SDK warns of each).
        let unlisted: Vec<&str> = given_views
            .runs
            .iter()
            .flat_map(|run| &run.logs)
            .map(|line| line.message.as_str())
            .filter(|message| message.contains("which this step is not given"))
            .collect();
        assert_eq!(unlisted, Vec::<&str>::new(), "{name}");
        assert_eq!(given_views.status, given_whole.status, "{name}");
        assert_eq!(given_views.name, given_whole.name, "{name}");
        assert_eq!(given_views.tags, given_whole.tags, "{name}");
        // Each step's runs, with the connector calls they made and their arguments.
        let runs = |task: &whenever::task::Task| -> Vec<(String, Option<RunOutcomeRecord>, Vec<Value>)> {
            let mut runs: Vec<_> = task
                .runs
                .iter()
                .map(|r| {
                    let calls = r
                        .connector_calls
                        .iter()
                        .map(|c| json!([c.connector, c.method, without_clock_and_races(&c.args.value())]))
                        .collect();
                    (r.step.clone(), r.outcome.clone(), calls)
                })
                .collect();
            runs.sort_by(|a, b| a.0.cmp(&b.0));
            runs
        };
        assert_eq!(
            runs(&given_views),
            runs(&given_whole),
            "{name}: the same runs and calls"
        );
        assert_eq!(
            without_clock_and_races(&given_views.data),
            without_clock_and_races(&given_whole.data),
            "{name}: the same data"
        );
    }
}
