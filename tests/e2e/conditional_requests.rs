//! Conditional requests over a real socket: every task answer carries the task's revision as
//! its `ETag`; a read naming it in `If-None-Match` is answered 304 without a body; a patch, a
//! retry or a delete naming another revision in `If-Match` is refused with 412 and changes
//! nothing, so a change repeated after a lost answer is not applied twice.

use reqwest::Method;
use reqwest::header::{ETAG, HeaderMap};
use serde_json::{Value, json};
use whenever_step_artifacts::testing::{RETURNS_ERROR, WAIT_FOR_A};

use crate::service::{Server, db_in, error_message, options, runs, start};

/// Sends `method path` with `headers` (and a JSON body); the answer's status, headers and body.
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, HeaderMap, Value) {
    let mut request = server.http().request(method, format!("{}{path}", server.base()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, body)
}

/// Creates a task over `data` and waits for it to settle: its answer's headers and body.
async fn settled(server: &Server, data: Value) -> (HeaderMap, Value) {
    let (status, headers, task) = send(server, Method::POST, "/v1/tasks?wait=20000", &[], Some(data)).await;
    assert_eq!(status, 201, "{task}");
    assert_ne!(task["status"], "running", "{task}");
    (headers, task)
}

/// A server with `wait-for-a` (in `dir`) and a task waiting for `a`: the server, the task's id,
/// the entity tag its creation was answered with, and the task as answered.
async fn a_waiting_task(dir: &tempfile::TempDir) -> (Server, String, String, Value) {
    let server = start(&db_in(dir), &[WAIT_FOR_A], options()).await;
    let (headers, task) = settled(&server, json!({"start": true})).await;
    assert_eq!(task["status"], "waiting", "{task}");
    let id = task["id"].as_str().expect("id").to_string();
    (server, id, etag(&headers), task)
}

/// The entity tag an answer carries.
fn etag(headers: &HeaderMap) -> String {
    headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("an ETag in {headers:?}"))
        .to_string()
}

/// The task's revision, as its answer shows it.
fn revision(task: &Value) -> u64 {
    task["revision"]
        .as_u64()
        .unwrap_or_else(|| panic!("a revision in {task}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_answer_carries_its_revision_and_a_read_naming_it_is_not_modified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, id, tag, created) = a_waiting_task(&dir).await;
    assert_eq!(tag, format!("\"{}\"", revision(&created)));

    let path = format!("/v1/tasks/{id}");
    let (status, headers, read) = send(&server, Method::GET, &path, &[], None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(etag(&headers), tag);
    assert_eq!(read, created);

    // Its own tag, weak or among others, or `*`: not modified, no body.
    let weak = format!("W/{tag}");
    let listed = format!("\"999\", {tag}");
    for held in [tag.as_str(), weak.as_str(), listed.as_str(), "*"] {
        let (status, headers, body) = send(&server, Method::GET, &path, &[("if-none-match", held)], None).await;
        assert_eq!(status, 304, "If-None-Match: {held}");
        assert_eq!(etag(&headers), tag);
        assert_eq!(body, Value::Null, "no body with a 304");
    }
    // With a wait, `*` still answers once the task is settled, as without the header: it names
    // every revision, so waiting for one it does not name would last the whole wait.
    let long = format!("{path}?wait=60000");
    let star = send(&server, Method::GET, &long, &[("if-none-match", "*")], None);
    let (status, _, _) = tokio::time::timeout(std::time::Duration::from_secs(20), star)
        .await
        .expect("answered before its 60 s wait ends");
    assert_eq!(status, 304);
    // Another tag: the task, in full.
    let (status, _, body) = send(&server, Method::GET, &path, &[("if-none-match", "\"999\"")], None).await;
    assert_eq!(status, 200);
    assert_eq!(body, created);

    // Once the task changes, the tag the client holds no longer names it.
    let (status, headers, patched) = send(
        &server,
        Method::PATCH,
        &format!("{path}?wait=20000"),
        &[],
        Some(json!({"a": "A", "start": null})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert!(revision(&patched) > revision(&created), "{patched}");
    assert_eq!(etag(&headers), format!("\"{}\"", revision(&patched)));
    let (status, headers, read) = send(&server, Method::GET, &path, &[("if-none-match", &tag)], None).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["data"], json!({"a": "A", "waited": true}));
    assert_eq!(etag(&headers), format!("\"{}\"", revision(&read)));

    // A header that is not entity tags is refused, naming it.
    let (status, _, error) = send(&server, Method::GET, &path, &[("if-none-match", "7")], None).await;
    assert_eq!(status, 400, "{error}");
    assert!(error_message(&error).contains("if-none-match"), "{error}");
    // An unknown task is not found, whatever the client holds.
    let (status, _, _) = send(
        &server,
        Method::GET,
        "/v1/tasks/t_nope",
        &[("if-none-match", "*")],
        None,
    )
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_naming_another_revision_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, id, _, created) = a_waiting_task(&dir).await;
    let path = format!("/v1/tasks/{id}?wait=20000");
    let read = revision(&created);
    assert!(read >= 2, "created, then settled: {created}");
    let older = format!("\"{}\"", read - 1);
    let current = format!("\"{read}\"");
    let patch = json!({"a": "A", "start": null});

    let (status, _, error) = send(
        &server,
        Method::PATCH,
        &path,
        &[("if-match", &older)],
        Some(patch.clone()),
    )
    .await;
    assert_eq!(status, 412, "{error}");
    assert_eq!(error["error"]["code"], "precondition_failed");
    assert!(
        error_message(&error).contains(&format!("is at revision {read}, not {}", read - 1)),
        "{error}"
    );
    // A weak tag never matches an If-Match, and a malformed one is refused: nothing changes.
    let weak = format!("W/{current}");
    let (status, _, error) = send(
        &server,
        Method::PATCH,
        &path,
        &[("if-match", &weak)],
        Some(patch.clone()),
    )
    .await;
    assert_eq!(status, 412, "{error}");
    let (status, _, error) = send(
        &server,
        Method::PATCH,
        &path,
        &[("if-match", "\"2")],
        Some(patch.clone()),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(error_message(&error).contains("closing quote"), "{error}");
    let (_, _, unchanged) = send(&server, Method::GET, &format!("/v1/tasks/{id}"), &[], None).await;
    assert_eq!(unchanged, created, "refused patches change nothing");

    // Naming the revision read: applied, and the task moves on.
    let (status, headers, patched) = send(
        &server,
        Method::PATCH,
        &path,
        &[("if-match", &current)],
        Some(patch.clone()),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["data"], json!({"a": "A", "waited": true}));
    assert_eq!(runs(&patched).len(), 1);
    let now = etag(&headers);

    // The same request again, as a client whose answer was lost would send it: refused.
    let (status, _, error) = send(&server, Method::PATCH, &path, &[("if-match", &current)], Some(patch)).await;
    assert_eq!(status, 412, "{error}");
    let (_, headers, after) = send(&server, Method::GET, &format!("/v1/tasks/{id}"), &[], None).await;
    assert_eq!(after, patched, "applied once");
    assert_eq!(etag(&headers), now);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_deletes_apply_only_to_the_revision_they_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[RETURNS_ERROR], options()).await;
    let (headers, failed) = settled(&server, json!({"failPlease": true})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let id = failed["id"].as_str().expect("id");
    let tag = etag(&headers);
    let older = format!("\"{}\"", revision(&failed) - 1);
    let retry = format!("/v1/tasks/{id}/retry?wait=20000");

    let (status, _, error) = send(&server, Method::POST, &retry, &[("if-match", &older)], None).await;
    assert_eq!(status, 412, "{error}");
    let (_, _, unchanged) = send(&server, Method::GET, &format!("/v1/tasks/{id}"), &[], None).await;
    assert_eq!(runs(&unchanged).len(), 1, "not retried: {unchanged}");

    // Any tag of a list may name it.
    let listed = format!("{older}, {tag}");
    let (status, headers, retried) = send(&server, Method::POST, &retry, &[("if-match", &listed)], None).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(runs(&retried).len(), 2, "{retried}");
    let now = etag(&headers);

    // A delete naming the revision before the retry leaves the task; naming the current one
    // deletes it.
    let path = format!("/v1/tasks/{id}");
    let (status, _, error) = send(&server, Method::DELETE, &path, &[("if-match", &tag)], None).await;
    assert_eq!(status, 412, "{error}");
    assert_eq!(error["error"]["code"], "precondition_failed");
    let (status, _, kept) = send(&server, Method::GET, &path, &[], None).await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept, retried);
    let (status, _, error) = send(&server, Method::DELETE, &path, &[("if-match", "nonsense")], None).await;
    assert_eq!(status, 400, "{error}");
    let (status, _, _) = send(&server, Method::DELETE, &path, &[("if-match", &now)], None).await;
    assert_eq!(status, 204);
    let (status, _, _) = send(&server, Method::GET, &path, &[], None).await;
    assert_eq!(status, 404);
    let (status, _, _) = send(&server, Method::DELETE, &path, &[("if-match", "*")], None).await;
    assert_eq!(status, 404, "an If-Match does not hide that the task is gone");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waiting_with_the_revision_it_has_answers_once_the_task_moves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, id, tag, waiting) = a_waiting_task(&dir).await;

    // Nothing changes within the wait: not modified, once the wait is over.
    let (status, _, body) = send(
        &server,
        Method::GET,
        &format!("/v1/tasks/{id}?wait=300"),
        &[("if-none-match", &tag)],
        None,
    )
    .await;
    assert_eq!(status, 304, "{body}");

    // A long poll holding the waiting task's revision, then a patch that moves the task on: the
    // poll answers with the task as the patch left it once it settled again (had it answered
    // before the patch, it would have been a 304 or the old data).
    let poll = {
        let (http, url, tag) = (
            server.http().clone(),
            format!("{}/v1/tasks/{id}?wait=60000", server.base()),
            tag.clone(),
        );
        tokio::spawn(async move {
            let response = http
                .get(url)
                .header("if-none-match", tag)
                .send()
                .await
                .expect("answered");
            let status = response.status().as_u16();
            let etag = response.headers().get(ETAG).cloned();
            (status, etag, response.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _, patched) = send(
        &server,
        Method::PATCH,
        &format!("/v1/tasks/{id}"),
        &[],
        Some(json!({"a": "A", "start": null})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    // Woken by the task's settle, long before its 60 s wait would end.
    let (status, polled_tag, polled) = tokio::time::timeout(std::time::Duration::from_secs(20), poll)
        .await
        .expect("answered once the task settled, not at the end of the wait")
        .expect("the poll ends");
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["status"], "waiting", "{polled}");
    assert_eq!(polled["data"], json!({"a": "A", "waited": true}), "{polled}");
    assert!(revision(&polled) > revision(&waiting), "{polled}");
    assert_eq!(
        polled_tag.and_then(|t| t.to_str().ok().map(String::from)),
        Some(format!("\"{}\"", revision(&polled)))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_patches_naming_the_same_revision_exactly_one_applies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, id, tag, _) = a_waiting_task(&dir).await;

    // Eight clients read the task at the same revision and each patches it: one wins; the
    // others, whether they read before or after its save, are told the task changed.
    let patches = (0..8).map(|i| {
        let (http, url, tag) = (
            server.http().clone(),
            format!("{}/v1/tasks/{id}?wait=20000", server.base()),
            tag.clone(),
        );
        tokio::spawn(async move {
            let response = http
                .patch(url)
                .header("if-match", tag)
                .body(json!({"a": "A", "by": i, "start": null}).to_string())
                .send()
                .await
                .expect("answered");
            let status = response.status().as_u16();
            (i, status, response.json::<Value>().await.unwrap_or(Value::Null))
        })
    });
    let mut applied = Vec::new();
    for patch in patches.collect::<Vec<_>>() {
        let (i, status, answer) = patch.await.expect("sent");
        match status {
            200 => applied.push(i),
            412 => assert_eq!(answer["error"]["code"], "precondition_failed", "{answer}"),
            other => panic!("patch {i}: {other} {answer}"),
        }
    }
    assert_eq!(applied.len(), 1, "exactly one patch applies: {applied:?}");
    let (_, _, after) = send(&server, Method::GET, &format!("/v1/tasks/{id}"), &[], None).await;
    assert_eq!(
        after["data"],
        json!({"a": "A", "by": applied[0], "waited": true}),
        "{after}"
    );
    assert_eq!(runs(&after).len(), 1, "one resumed drive, one run: {after}");
    server.stop().await;
}
