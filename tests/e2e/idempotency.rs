//! Idempotent creation over a real socket: a create carrying an idempotency key (the
//! `Idempotency-Key` header, or the delivery id a hook's config names) makes one task however
//! often it is sent, at once or later, across a restart; a repeat is answered 200 with that
//! task, the same key with another body 422, a bad key 400; the task is found by its key.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use whenever::api::{ApiOptions, HookOptions};
use whenever::config::DeliveryKey;
use whenever_step_artifacts::testing::*;

use crate::service::{Server, db_in, error_message, options, start};

/// Sends `body` to `path` with `headers`; answers the status, the replay header and the body.
async fn send(server: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, bool, Value) {
    let mut request = server.http().post(format!("{}{path}", server.base()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body.to_string()).send().await.expect("sent");
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let text = response.text().await.expect("body");
    (
        status,
        replayed,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn task_count(server: &Server) -> usize {
    let (status, page) = server.get("/v1/tasks?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    page["tasks"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_sent_again_with_its_key_is_answered_with_the_first_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES], options()).await;
    let body = r#"{"finish": true, "order": 1}"#;
    let key = [("Idempotency-Key", "order-1")];

    let (status, replayed, first) = send(&server, "/v1/tasks?wait=20000", &key, body).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["idempotency"]["key"], "order-1", "{first}");
    assert_eq!(first["idempotency"]["scope"], "tasks", "{first}");
    let id = first["id"].as_str().expect("id").to_string();

    // Sent again, with or without a wait: the same task as it is now, answered 200.
    for path in ["/v1/tasks?wait=20000", "/v1/tasks"] {
        let (status, replayed, again) = send(&server, path, &key, body).await;
        assert_eq!((status, replayed), (200, true), "{again}");
        assert_eq!(again, server.get(&format!("/v1/tasks/{id}")).await.1);
    }
    assert_eq!(task_count(&server).await, 1);

    // The same key with another body is a client's mistake: refused, naming the task.
    let (status, _, refused) = send(&server, "/v1/tasks", &key, r#"{"finish": true, "order": 2}"#).await;
    assert_eq!(status, 422, "{refused}");
    let message = error_message(&refused);
    assert!(message.contains("\"order-1\"") && message.contains(&id), "{message}");

    // Keys that cannot identify a request.
    let long = "k".repeat(256);
    for bad in ["  ", long.as_str()] {
        let (status, _, refused) = send(&server, "/v1/tasks", &[("Idempotency-Key", bad)], body).await;
        assert_eq!(status, 400, "{refused}");
        assert!(error_message(&refused).contains("idempotency key"), "{refused}");
    }
    // Without a key, every request is a task of its own; another key, another task.
    for headers in [&[][..], &[][..], &[("Idempotency-Key", "order-2")][..]] {
        let (status, replayed, _) = send(&server, "/v1/tasks", headers, body).await;
        assert_eq!((status, replayed), (201, false));
    }
    assert_eq!(task_count(&server).await, 4);
    let (_, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().expect("text");
    assert!(text.contains("whenever_requests_replayed_total 2\n"), "{text}");
    // A repeat, too, says where its task lives.
    let response = server.http().post(format!("{}/v1/tasks", server.base()));
    let response = response
        .header(key[0].0, key[0].1)
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let location = response.headers().get("location").and_then(|v| v.to_str().ok());
    assert_eq!(location, Some(format!("/v1/tasks/{id}").as_str()));

    // The task a key created can be looked up by the key (not by another scope's).
    let (status, found) = server.get("/v1/tasks/by-key/order-1").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found, server.get(&format!("/v1/tasks/{id}")).await.1);
    for missing in ["/v1/tasks/by-key/order-9", "/v1/hooks/shop/deliveries/order-1"] {
        let (status, error) = server.get(missing).await;
        assert_eq!(status, 404, "{missing}: {error}");
    }

    // The key is kept with the task: after a restart a repeat still finds it ...
    server.stop().await;
    let server = start(&db_in(&dir), &[COMPLETES], options()).await;
    let (status, replayed, again) = send(&server, "/v1/tasks", &key, body).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["id"], id.as_str());
    // ... and once the task is deleted the key makes a new one.
    let (status, _) = server
        .call(reqwest::Method::DELETE, &format!("/v1/tasks/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, replayed, anew) = send(&server, "/v1/tasks?wait=20000", &key, body).await;
    assert_eq!((status, replayed), (201, false), "{anew}");
    assert_eq!(anew["status"], "completed", "{anew}");
    server.stop().await;
}

/// A webhook delivered many times at once (a sender's retries racing the first delivery)
/// makes one task; every delivery is answered with it. Keys are scoped: the same key sent to
/// another hook, or to `POST /v1/tasks`, makes a task of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_of_one_webhook_racing_each_other_make_one_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES], options()).await;
    let body = r#"{"finish": true, "order": {"id": "ORD-1"}}"#;
    let mut deliveries = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let request = server
            .http()
            .post(format!("{}/v1/hooks/shop?wait=20000", server.base()))
            .header("Idempotency-Key", "evt-1")
            .body(body);
        deliveries.spawn(async move {
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            let task: Value = serde_json::from_str(&response.text().await.expect("body")).expect("a task");
            (status, task)
        });
    }
    let mut statuses = Vec::new();
    let mut ids = BTreeSet::new();
    while let Some(answer) = deliveries.join_next().await {
        let (status, task) = answer.expect("joined");
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(task["data"]["$via"]["key"], "evt-1", "{task}");
        statuses.push(status);
        ids.insert(task["id"].as_str().expect("id").to_string());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [vec![200; 15], vec![201]].concat());
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(task_count(&server).await, 1);
    // What became of delivery evt-1, looked up by its id.
    let (status, delivered) = server.get("/v1/hooks/shop/deliveries/evt-1").await;
    assert_eq!(status, 200, "{delivered}");
    assert!(ids.contains(delivered["id"].as_str().expect("id")), "{delivered}");

    let key = [("Idempotency-Key", "evt-1")];
    for path in ["/v1/hooks/refunds", "/v1/tasks"] {
        let (status, replayed, task) = send(&server, path, &key, body).await;
        assert_eq!((status, replayed), (201, false), "{path}: {task}");
        assert!(!ids.contains(task["id"].as_str().expect("id")));
    }
    assert_eq!(task_count(&server).await, 3);
    server.stop().await;
}

/// A hook configured with the header its provider puts the delivery id in (GitHub's
/// `X-GitHub-Delivery`), or with the place of the id in the body (Stripe's event `id`), takes
/// its key from there, and refuses a delivery without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_takes_its_delivery_id_from_where_its_config_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut api_options: ApiOptions = options();
    for (hook, delivery_key) in [
        ("github", DeliveryKey::Header("x-github-delivery".into())),
        ("stripe", DeliveryKey::Pointer("/data/id".into())),
    ] {
        let options = HookOptions {
            delivery_key,
            ..HookOptions::default()
        };
        api_options.hooks.insert(hook.into(), options);
    }
    let server = start(&db_in(&dir), &[COMPLETES], api_options).await;

    let push = r#"{"finish": true, "ref": "main"}"#;
    let delivery = |id: &'static str| [("X-GitHub-Delivery", id), ("Idempotency-Key", "ignored")];
    let (status, _, first) = send(&server, "/v1/hooks/github", &delivery("d-1"), push).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["data"]["$via"]["key"], "d-1");
    let (status, replayed, again) = send(&server, "/v1/hooks/github", &delivery("d-1"), push).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    // The configured header decides, not `Idempotency-Key`.
    let (status, _, other) = send(&server, "/v1/hooks/github", &delivery("d-2"), push).await;
    assert_eq!(status, 201, "{other}");
    let (status, _, refused) = send(&server, "/v1/hooks/github", &[("Idempotency-Key", "k")], push).await;
    assert_eq!(status, 400, "{refused}");
    assert!(error_message(&refused).contains("x-github-delivery"), "{refused}");

    let event = |id: Value| json!({"finish": true, "type": "charge.succeeded", "data": {"id": id}}).to_string();
    let (status, _, first) = send(&server, "/v1/hooks/stripe", &[], &event(json!("evt_1"))).await;
    assert_eq!(status, 201, "{first}");
    let (status, replayed, again) = send(&server, "/v1/hooks/stripe", &[], &event(json!("evt_1"))).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    let (status, _, numbered) = send(&server, "/v1/hooks/stripe", &[], &event(json!(42))).await;
    assert_eq!(status, 201, "{numbered}");
    assert_eq!(numbered["data"]["$via"]["key"], "42");
    for (bad, named) in [
        (event(json!({"nested": true})), "/data/id"),
        (json!({"finish": true}).to_string(), "nothing there"),
    ] {
        let (status, _, refused) = send(&server, "/v1/hooks/stripe", &[], &bad).await;
        assert_eq!(status, 400, "{refused}");
        assert!(error_message(&refused).contains(named), "{refused}");
    }
    assert_eq!(task_count(&server).await, 4);
    server.stop().await;
}
