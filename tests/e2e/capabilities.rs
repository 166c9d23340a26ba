//! Capabilities: a step may call only the connectors (and, for `http` connectors, the hosts) its
//! manifest grants, the operator's config narrows that further, a step without a manifest gets
//! nothing, and `GET /v1/steps` (`whenever steps`) shows each step's grants.

use std::sync::Arc;

use serde_json::json;
use whenever::Host;
use whenever::catalog::Catalog;
use whenever::config::Config;
use whenever::runtime::{Capabilities, OperatorGrants, Runtime, RuntimeConfig, StepManifest};
use whenever::scheduler::{Scheduler, SchedulerSettings};
use whenever::task::TaskStatus;
use whenever_connectors::Registry;
use whenever_step_artifacts::testing::*;
use whenever_tests::{assert_status, component_of, deploy_as, host_with, host_with_config, run_task};

use crate::service::{encode, options, start_configured};

fn manifest(connectors: &[&str], hosts: &[&str]) -> StepManifest {
    let mut m = StepManifest {
        connectors: connectors.iter().map(|c| c.to_string()).collect(),
        ..StepManifest::default()
    };
    m.http.hosts = hosts.iter().map(|h| h.to_string()).collect();
    m
}

/// The result `ungranted-connector` recorded for its `stripe.charge` call.
async fn charge_as(host: &Host) -> serde_json::Value {
    let task = run_task(host, json!({"tryStripe": true})).await;
    assert_status(&task, TaskStatus::Waiting);
    task.data["stripeResult"].clone()
}

/// A host whose runtime has these capabilities (e.g. a connector that reaches a host over HTTP:
/// the simulators stand in for the services, the check is the same).
fn host_with_capabilities(capabilities: Capabilities) -> Host {
    let config = RuntimeConfig {
        capabilities,
        ..RuntimeConfig::default()
    };
    let runtime = Arc::new(Runtime::new(config).expect("runtime"));
    let scheduler = Scheduler::new(
        runtime,
        Catalog::new(),
        Registry::simulators(),
        SchedulerSettings::default(),
    );
    Host {
        scheduler,
        config: Config::default(),
    }
}

#[tokio::test]
async fn a_third_party_step_without_a_manifest_is_granted_nothing() {
    let host = host_with(&[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("third-party.wasm");
    std::fs::write(&path, component_of(&UNGRANTED_CONNECTOR)).expect("written");
    let step = host
        .scheduler
        .catalog()
        .load_file(host.scheduler.runtime(), &path)
        .await
        .expect("loads");
    assert_eq!(*step.manifest, StepManifest::default(), "no manifest: no grants");

    let result = charge_as(&host).await;
    assert_eq!(result["error"], "not-granted", "{result}");
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("step third-party is not granted the connector \"stripe\""),
        "{message}"
    );
    assert!(host.scheduler.connectors().effects().is_empty(), "no charge happened");
}

#[tokio::test]
async fn a_granted_connector_answers() {
    let host = host_with(&[]).await;
    deploy_as(&host, "charger", &UNGRANTED_CONNECTOR, manifest(&["stripe"], &[]))
        .await
        .expect("loads");
    let result = charge_as(&host).await;
    assert_eq!(result["ok"]["success"], true, "{result}");
    assert_eq!(host.scheduler.connectors().effects().count("stripe", "charge"), 1);
}

#[tokio::test]
async fn the_operator_config_narrows_a_manifest() {
    let (_dir, host) = host_with_config("[steps.charger]\nconnectors = [\"slackCom\"]\n").await;
    let host = host.expect("host starts");
    let step = deploy_as(
        &host,
        "charger",
        &UNGRANTED_CONNECTOR,
        manifest(&["stripe", "slackCom"], &[]),
    )
    .await
    .expect("loads");
    assert_eq!(
        step.manifest.connectors,
        vec!["slackCom".to_string()],
        "the intersection"
    );
    assert_eq!(step.withheld.connectors, vec!["stripe".to_string()]);
    let result = charge_as(&host).await;
    assert_eq!(result["error"], "not-granted", "{result}");
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the host's config withholds it ([steps.charger] connectors)"),
        "{message}"
    );
    assert!(host.scheduler.connectors().effects().is_empty());

    // A step the config does not name keeps its manifest's grants.
    host.scheduler.catalog().remove("charger");
    deploy_as(&host, "other", &UNGRANTED_CONNECTOR, manifest(&["stripe"], &[]))
        .await
        .expect("loads");
    assert_eq!(charge_as(&host).await["ok"]["success"], true);
}

#[tokio::test]
async fn a_config_naming_an_unknown_connector_is_refused() {
    let (_dir, host) = host_with_config("[steps.charger]\nconnectors = [\"strpie\"]\n").await;
    let error = host.expect_err("refused");
    assert!(error.is_bad_input());
    assert!(
        error.to_string().contains("no connector is called \"strpie\""),
        "{error}"
    );
}

#[tokio::test]
async fn an_http_connector_needs_its_host_granted() {
    // As if stripe were configured `kind = "http"` with `base_url = "https://payments.internal"`.
    let reaches = || Capabilities::new().connector_host("stripe", "payments.internal");
    let host = host_with_capabilities(reaches());

    deploy_as(&host, "charger", &UNGRANTED_CONNECTOR, manifest(&["stripe"], &[]))
        .await
        .expect("loads");
    let result = charge_as(&host).await;
    assert_eq!(result["error"], "not-granted", "{result}");
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not granted the host payments.internal that connector \"stripe\" reaches")
            && message.contains("[http] hosts"),
        "{message}"
    );

    for hosts in [&["payments.internal"][..], &["*.internal"], &["*"]] {
        deploy_as(&host, "charger", &UNGRANTED_CONNECTOR, manifest(&["stripe"], hosts))
            .await
            .expect("loads");
        assert_eq!(charge_as(&host).await["ok"]["success"], true, "{hosts:?}");
    }
    deploy_as(
        &host,
        "charger",
        &UNGRANTED_CONNECTOR,
        manifest(&["stripe"], &["*.example"]),
    )
    .await
    .expect("loads");
    assert_eq!(charge_as(&host).await["error"], "not-granted");

    // The operator narrows hosts as well.
    let narrowed = reaches().limit_step(
        "charger",
        OperatorGrants {
            connectors: None,
            hosts: Some(vec!["inventory.internal".into()]),
            reads: None,
        },
    );
    let host = host_with_capabilities(narrowed);
    let step = deploy_as(
        &host,
        "charger",
        &UNGRANTED_CONNECTOR,
        manifest(&["stripe"], &["*.internal"]),
    )
    .await
    .expect("loads");
    assert_eq!(step.manifest.http.hosts, vec!["inventory.internal".to_string()]);
    let result = charge_as(&host).await;
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the host's config withholds it ([steps.charger] hosts)"),
        "{message}"
    );
    assert!(host.scheduler.connectors().effects().is_empty(), "no charge happened");
}

#[tokio::test]
async fn a_manifest_with_a_bad_host_is_refused_at_deploy() {
    let host = host_with(&[]).await;
    let error = deploy_as(
        &host,
        "charger",
        &UNGRANTED_CONNECTOR,
        manifest(&["stripe"], &["https://payments.internal/"]),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(error, whenever::runtime::LoadError::Manifest { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("not a host name pattern"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_listing_shows_each_steps_grants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_configured(
        &dir,
        "[steps.charger]\nconnectors = [\"stripe\", \"fraudGuard\"]\nhosts = [\"fraud.internal\"]\n",
        &[WRITE_A],
        options(),
    )
    .await;

    let asked = "connectors = [\"stripe\", \"paypal\", \"fraudGuard\"]\n[http]\nhosts = [\"fraud.internal\", \"shop.internal\"]\n";
    let path = format!("/v1/steps/charger?manifest={}", encode(asked));
    let (status, deployed) = server
        .call(reqwest::Method::PUT, &path, Some(component_of(&UNGRANTED_CONNECTOR)))
        .await;
    assert_eq!(status, 201, "{deployed}");
    let (status, third) = server
        .call(
            reqwest::Method::PUT,
            "/v1/steps/third-party",
            Some(component_of(&UNGRANTED_CONNECTOR)),
        )
        .await;
    assert_eq!(status, 201, "{third}");

    let (status, listing) = server.get("/v1/steps").await;
    assert_eq!(status, 200);
    let steps = listing["steps"].as_array().expect("steps");
    let find = |name: &str| steps.iter().find(|s| s["name"] == name).cloned().unwrap_or_default();
    let charger = find("charger");
    assert_eq!(charger["connectors"], json!(["stripe", "fraudGuard"]), "{charger}");
    assert_eq!(charger["hosts"], json!(["fraud.internal"]));
    assert_eq!(
        charger["withheld"],
        json!({"connectors": ["paypal"], "hosts": ["shop.internal"]})
    );
    let third = find("third-party");
    assert_eq!(
        third["connectors"],
        json!([]),
        "a step deployed without a manifest: {third}"
    );
    assert_eq!(third["hosts"], json!([]));
    assert!(third.get("withheld").is_none(), "{third}");
    let write_a = find("write-a");
    assert_eq!(write_a["connectors"], json!([]));

    // The stored manifest is the step's own: the narrowing is the config's, applied on load.
    let stored = server
        .service
        .store()
        .step_version("charger", deployed["version"].as_str().expect("version"))
        .await;
    let stored = stored.expect("read").expect("stored");
    assert_eq!(stored.manifest.connectors, vec!["stripe", "paypal", "fraudGuard"]);
    server.stop().await;
}

/// A local service answering `POST /charge` as a payment service would, after `answers_after`;
/// counts the requests.
async fn payment_service(answers_after: std::time::Duration) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    payment_service_answering(answers_after, json!({"success": true, "transactionId": "txn_local"})).await
}

/// A local service answering `POST /charge` with `answer`, after `answers_after`; counts the
/// requests.
async fn payment_service_answering(
    answers_after: std::time::Duration,
    answer: serde_json::Value,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    let app = axum::Router::new().route(
        "/charge",
        axum::routing::post(move || {
            let (counted, answer) = (counted.clone(), answer.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(answers_after).await;
                axum::Json(answer)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, requests)
}

/// Deploys `charger` granted `stripe` and the host of the local services the tests start.
async fn deploy_charger_reaching_local_services(host: &Host) {
    deploy_as(
        host,
        "charger",
        &UNGRANTED_CONNECTOR,
        manifest(&["stripe"], &["127.0.0.1"]),
    )
    .await
    .expect("loads");
}

/// A host whose `stripe` is configured `kind = "http"`, reaching `base`.
async fn host_with_stripe_at(base: &str) -> (tempfile::TempDir, Host) {
    let (dir, host) = host_with_config(&format!(
        "[connectors.stripe]\nkind = \"http\"\nbase_url = \"{base}\"\n"
    ))
    .await;
    (dir, host.expect("host starts"))
}

#[tokio::test]
async fn a_real_http_connector_is_called_only_with_its_host_granted() {
    use std::sync::atomic::Ordering;
    let (base, requests) = payment_service(std::time::Duration::ZERO).await;
    let (_dir, host) = host_with_stripe_at(&base).await;

    // Granted the connector but not the host: refused before anything leaves the host.
    deploy_as(&host, "charger", &UNGRANTED_CONNECTOR, manifest(&["stripe"], &[]))
        .await
        .expect("loads");
    let result = charge_as(&host).await;
    assert_eq!(result["error"], "not-granted", "{result}");
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("host 127.0.0.1 that connector \"stripe\" reaches"),
        "{message}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0, "no request was sent");

    // With the host granted, the service answers.
    deploy_charger_reaching_local_services(&host).await;
    let result = charge_as(&host).await;
    assert_eq!(result["ok"]["transactionId"], "txn_local", "{result}");
    assert_eq!(requests.load(Ordering::SeqCst), 1);
}

/// A connector's answer sits a few levels down in every answer holding the run's record, so one
/// nested past the 120 levels a task's data may is not kept nor given to the step: the call
/// fails, naming how deep the answer was, and the step decides what to do.
#[tokio::test]
async fn a_connector_answer_nested_past_the_limit_fails_the_call() {
    let deep = (1..120).fold(json!([]), |inner, _| json!([inner]));
    let (base, requests) =
        payment_service_answering(std::time::Duration::ZERO, json!({"success": true, "deep": deep})).await;
    let (_dir, host) = host_with_stripe_at(&base).await;
    deploy_charger_reaching_local_services(&host).await;
    let result = charge_as(&host).await;
    assert_eq!(result["error"], "failed", "{result}");
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("stripe.charge answered with arrays and objects nested 121 levels deep, past the 120"),
        "{message}"
    );
    assert_eq!(
        requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the call was made"
    );
}

/// The time a run waits on a connector does not count against its deadline (the connector has
/// its own timeout): a payment answered after 1.5 s completes a step whose deadline is 1 s.
#[tokio::test]
async fn a_slow_connector_does_not_spend_the_runs_deadline() {
    let (base, requests) = payment_service(std::time::Duration::from_millis(1500)).await;
    let (_dir, host) = host_with_stripe_at(&base).await;
    let mut short = manifest(&["stripe"], &["127.0.0.1"]);
    short.limits.timeout_ms = 1000;
    deploy_as(&host, "charger", &UNGRANTED_CONNECTOR, short)
        .await
        .expect("loads");
    let result = charge_as(&host).await;
    assert_eq!(result["ok"]["transactionId"], "txn_local", "{result}");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Many connector calls spend none of the deadline either, however many epoch ticks pass while
/// they are under way: 40 payments answered after 25 ms each (a second in all) complete a step
/// whose deadline is 300 ms. (Counting a tick for every call that spanned one stopped it.)
#[tokio::test]
async fn many_connector_calls_do_not_spend_the_runs_deadline() {
    let (base, requests) = payment_service(std::time::Duration::from_millis(25)).await;
    let (_dir, host) = host_with_stripe_at(&base).await;
    let mut short = manifest(&["stripe"], &["127.0.0.1"]);
    short.limits.timeout_ms = 300;
    deploy_as(&host, "charger", &UNGRANTED_CONNECTOR, short)
        .await
        .expect("loads");
    let task = run_task(&host, json!({"tryStripe": true, "chargeTimes": 40})).await;
    assert_status(&task, TaskStatus::Waiting);
    let result = &task.data["stripeResult"];
    assert_eq!(result["ok"]["transactionId"], "txn_local", "{result}");
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 40);
}
