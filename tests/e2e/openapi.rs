//! The API's OpenAPI document (`GET /v1/openapi.json`) against the server that serves it: every
//! route it describes is served with the methods it lists and no others, every reference in it
//! resolves, and every secured operation documents the 401 it answers without a token.

use std::collections::BTreeSet;

use serde_json::Value;
use whenever::api::ApiOptions;

use crate::service::{db_in, options, start};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `path` with its parameters filled in with names that exist nowhere.
fn concrete(path: &str) -> String {
    path.replace("{id}", "t_none")
        .replace("{name}", "no-such-step")
        .replace("{hook}", "some-hook")
        .replace("{key}", "no-such-key")
}

/// Every `$ref` in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => references(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|inner| references(inner, found)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_the_routes_the_server_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(
        &db_in(&dir),
        &[],
        ApiOptions {
            token: Some("openapi-test".into()),
            ..options()
        },
    )
    .await;
    let (status, document) = server.get("/v1/openapi.json").await;
    assert_eq!(status, 200, "{document}");
    assert_eq!(
        document,
        serde_json::from_str::<Value>(whenever::api::OPENAPI).expect("JSON")
    );
    assert_eq!(document["openapi"], "3.1.0");

    let mut targets = Vec::new();
    references(&document, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{target} is local"));
        assert!(document.pointer(pointer).is_some(), "{target} resolves");
    }

    let paths = document["paths"].as_object().expect("paths");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        let url = concrete(path);
        for method in METHODS {
            let request = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // With the token, and a body that is not JSON: the route answers, if it exists.
            let (status, answer) = server.call(request.clone(), &url, Some(b"{".to_vec())).await;
            let Some(operation) = item.get(method) else {
                assert_eq!(status, 405, "{method} {path} is not described, so not served: {answer}");
                continue;
            };
            operations.insert(format!("{} {path}", method.to_uppercase()));
            assert_ne!(status, 405, "{method} {path} is served");
            assert_ne!(answer["error"]["message"], "no such route", "{method} {path} is served");
            let documented = operation["responses"].as_object().expect("responses");
            assert!(
                documented.contains_key(&status.to_string()),
                "{method} {path} documents the {status} it answered: {answer}"
            );
            // Without the token.
            let anonymous = server
                .http()
                .request(request, format!("{}{url}", server.base()))
                .send()
                .await
                .expect("answered")
                .status()
                .as_u16();
            let secured = operation.get("security").is_none_or(|s| s != &Value::Array(vec![]));
            if secured {
                assert_eq!(anonymous, 401, "{method} {path} needs the token");
                assert!(documented.contains_key("401"), "{method} {path} documents its 401");
            } else {
                assert!(anonymous < 400, "{method} {path} is open: {anonymous}");
            }
        }
    }
    // The routes of `api::router`, as the document should list them.
    let served: BTreeSet<String> = [
        "POST /v1/tasks",
        "GET /v1/tasks",
        "GET /v1/tasks/{id}",
        "PATCH /v1/tasks/{id}",
        "DELETE /v1/tasks/{id}",
        "POST /v1/tasks/{id}/retry",
        "GET /v1/tasks/{id}/conditions",
        "GET /v1/tasks/by-key/{key}",
        "POST /v1/hooks/{hook}",
        "GET /v1/hooks/{hook}/deliveries/{key}",
        "GET /v1/steps",
        "GET /v1/steps/{name}",
        "PUT /v1/steps/{name}",
        "DELETE /v1/steps/{name}",
        "POST /v1/steps/{name}/rollback",
        "GET /v1/steps/{name}/changes",
        "GET /v1/steps/{name}/versions",
        "GET /v1/hosts",
        "GET /v1/openapi.json",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(operations, served);
    server.stop().await;
}
