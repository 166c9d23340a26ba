//! Task routes: create, show, list, patch, retry, delete.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};

use super::path::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::auth::Caller;
use super::preconditions::{self, IfNoneMatch};
use super::{
    ApiError, AppState, WaitParam, body, client_gone, idempotency, json_body, strict_body, to_json,
    while_the_client_waits,
};
use crate::request_key::RequestKey;
use crate::service::{Created, Service};
use crate::store::{StoredTask, TaskQuery};
use crate::task::{Task, TaskStatus};

/// A task as the API shows it: the task with its history, its revision and last write. It is
/// written straight from the task, not built as a JSON value first (a copy of the whole task).
#[derive(Debug, Serialize)]
struct TaskAnswer<'a> {
    #[serde(flatten)]
    task: &'a Task,
    revision: u64,
    /// Written as every other time the API answers (`Z`, chrono's `Serialize`), not as
    /// `to_rfc3339`'s `+00:00`, which this field alone once used.
    #[serde(serialize_with = "crate::rfc3339::serialize")]
    updated_at: DateTime<Utc>,
}

impl<'a> TaskAnswer<'a> {
    /// The answer for `stored`, borrowing its task.
    fn of(stored: &'a StoredTask) -> Self {
        TaskAnswer {
            task: &stored.task,
            revision: stored.revision,
            updated_at: stored.updated_at,
        }
    }
}

/// `stored` as the API shows it, answered with `status` and its revision as the entity tag.
/// `Json` writes the body at once, so the answer borrows the task rather than copying it.
pub(crate) fn task_response(status: StatusCode, stored: &StoredTask) -> Response {
    let tag = [(header::ETAG, preconditions::etag(stored.revision))];
    (status, tag, Json(TaskAnswer::of(stored))).into_response()
}

/// `stored` answered as just created: 201, with where it lives (`Location`, so a client that
/// created it need not build the path itself). A repeat of a keyed request keeps the header.
fn created_response(stored: &StoredTask) -> Response {
    let mut response = task_response(StatusCode::CREATED, stored);
    // A task id is `t_` and hex digits ([`crate::task::new_task_id`], [`RequestKey::task_id`]),
    // so the path needs no escaping; an id that somehow did is left without the header.
    if let Ok(location) = header::HeaderValue::from_str(&format!("/v1/tasks/{}", stored.task.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
}

/// Task `id` once it settled, or as it is when `timeout` ends; a wait the client no longer
/// awaits (it went away) ends at once ([`while_the_client_waits`]).
async fn settled_for_the_client(
    service: &Service,
    id: &str,
    timeout: std::time::Duration,
) -> Result<StoredTask, ApiError> {
    Ok(while_the_client_waits(service.wait_settled(id, timeout))
        .await
        .ok_or_else(client_gone)??)
}

/// The task after an optional wait for it to settle.
pub(crate) async fn answer(service: &Service, id: &str, wait: &WaitParam) -> Result<Response, ApiError> {
    let stored = match wait.duration() {
        Some(timeout) => settled_for_the_client(service, id, timeout).await?,
        None => service.task(id).await?,
    };
    Ok(task_response(StatusCode::OK, &stored))
}

/// Creates a task over `data` and answers 201 with it: with `?wait`, as it settled (or as it is
/// when the wait ends); without, as stored then, written from the task itself before its drive
/// takes it (not read back: under load that read cost as much as a step run; and not copied: the
/// copy was about 1% of the CPU of the HTTP bench row). A request carrying `key` creates at most
/// one task: a repeat is answered 200 with that task ([`idempotency::answer`]).
pub(crate) async fn create_and_answer(
    service: &Service,
    data: Value,
    key: Option<RequestKey>,
    wait: &WaitParam,
) -> Result<Response, ApiError> {
    let Some(timeout) = wait.duration() else {
        let answered = match key {
            None => Created::New(service.create_task_then(data, created_response).await?),
            Some(key) => service.create_for_request_then(key, data, created_response).await?,
        };
        return Ok(idempotency::answer(answered));
    };
    let id_of = |stored: &StoredTask| stored.task.id.clone();
    let id = match key {
        None => Created::New(service.create_task_then(data, id_of).await?),
        Some(key) => service.create_for_request_then(key, data, id_of).await?,
    };
    let settled = settled_for_the_client(service, id.get(), timeout).await?;
    Ok(idempotency::answer(id.map(|_| created_response(&settled))))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    wait: Result<Query<WaitParam>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = query(wait)?;
    let raw = body(raw, state.options.max_body_bytes)?;
    let key = idempotency::of_request(&headers, &raw)?;
    let data = json_body(&headers, &raw)?;
    create_and_answer(&state.service, data, key, &wait).await
}

/// `GET /v1/tasks/{id}[?wait=MS]`: the task, after an optional wait for it to settle; `304`
/// without a body when the request's `If-None-Match` names its revision. With both, the wait
/// lasts until the task settles at a revision the header does not name.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    wait: Result<Query<WaitParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    let unless = IfNoneMatch::of(&headers)?;
    // With a wait, the answer comes once the task settled at a revision the client does not
    // have yet (a long poll), or when the wait ends.
    let stored = match query(wait)?.duration() {
        Some(timeout) => {
            state
                .service
                .wait_settled_beyond(&id, timeout, |revision| unless.lists(revision))
                .await?
        }
        None => state.service.task(&id).await?,
    };
    if unless.names(stored.revision) {
        let tag = [(header::ETAG, preconditions::etag(stored.revision))];
        return Ok((StatusCode::NOT_MODIFIED, tag).into_response());
    }
    Ok(task_response(StatusCode::OK, &stored))
}

/// `GET /v1/tasks/{id}/conditions`: where each serving step stands on the task, so a person (or
/// a UI) sees what a waiting task waits on.
pub(crate) async fn conditions(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    to_json(&state.service.conditions(&id).await?)
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    status: Option<String>,
    tag: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let params = query(params)?;
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            serde_json::from_value::<TaskStatus>(Value::String(text.into())).map_err(|_| {
                ApiError::BadRequest(format!(
                    "unknown status {text:?}: use running, waiting, completed or failed"
                ))
            })?,
        ),
    };
    // A cursor is a row's sequence number: digits, within the stores' 64-bit signed integers.
    if let Some(cursor) = &params.cursor
        && !(cursor.bytes().all(|b| b.is_ascii_digit()) && cursor.parse::<i64>().is_ok())
    {
        return Err(ApiError::BadRequest(format!("invalid cursor {cursor:?}")));
    }
    let limit = params.limit.unwrap_or(50);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::BadRequest("limit must be between 1 and 1000".into()));
    }
    let page = state
        .service
        .tasks(&TaskQuery {
            status,
            tag: params.tag.filter(|t| !t.is_empty()),
            limit,
            cursor: params.cursor,
        })
        .await?;
    Ok(Json(
        serde_json::to_value(&page).map_err(|e| ApiError::Internal(e.to_string()))?,
    ))
}

/// `PATCH /v1/tasks/{id}[?wait=MS]`: a merge patch of the data; the task resumes. With an
/// `If-Match`, only a task still at a revision it names (412 otherwise).
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    caller: Caller,
    wait: Result<Query<WaitParam>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = query(wait)?;
    let revisions = preconditions::if_match(&headers)?;
    // A JSON Patch (RFC 6902) is a list of operations: read as a merge patch it would be refused
    // as "not an object", which says nothing of the mix-up.
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json-patch+json")
        })
    {
        return Err(ApiError::UnsupportedMediaType(
            "this route takes a JSON merge patch (RFC 7396: application/merge-patch+json or \
             application/json, an object of the fields to set, null to remove), not a JSON Patch \
             (RFC 6902)"
                .into(),
        ));
    }
    let merge = json_body(&headers, &body(raw, state.options.max_body_bytes)?)?;
    state
        .service
        .patch_task(&id, &merge, revisions.as_deref(), caller.name())
        .await?;
    answer(&state.service, &id, &wait).await
}

/// `DELETE /v1/tasks/{id}`: a settled task goes with its history (204); 409 while it runs; with
/// an `If-Match`, only a task still at a revision it names (412 otherwise).
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let revisions = preconditions::if_match(&headers)?;
    state.service.delete_task(&id, revisions.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/tasks/{id}/retry[?wait=MS]`: runs a step again (body `{"step": NAME}`, or empty:
/// every failed step). With an `If-Match`, only a task still at a revision it names.
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    caller: Caller,
    wait: Result<Query<WaitParam>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let wait = query(wait)?;
    let revisions = preconditions::if_match(&headers)?;
    let raw = body(raw, state.options.max_body_bytes)?;
    let step = if raw.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        // Strict: a misspelt key would otherwise retry whichever step failed, not the one meant.
        strict_body::<RetryBody>(json_body(&headers, &raw)?, "{\"step\": NAME}")?.step
    };
    state
        .service
        .retry_task(&id, step.as_deref(), revisions.as_deref(), caller.name())
        .await?;
    answer(&state.service, &id, &wait).await
}

/// The body of `POST /v1/tasks/{id}/retry` (none, `{}` or `"step": null`: every failed step).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    /// The step to run again.
    #[serde(default)]
    step: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::task::{RunRecord, StepProgress};

    /// The answer is the task's own fields, then its revision and last write: what the API
    /// answered when it built the task as a JSON value and added those two to it. Both times
    /// are written alike, with `Z`, as the task listing writes them.
    /// The retry body is read strictly: each mistake is named after the shape it must have,
    /// and an absent or null step means every failed step.
    #[test]
    fn a_retry_body_names_what_is_wrong_with_it() {
        let read = |body: Value| strict_body::<RetryBody>(body, "{\"step\": NAME}").map(|b| b.step);
        assert_eq!(read(json!({"step": "payment"})).ok(), Some(Some("payment".to_string())));
        assert_eq!(read(json!({})).ok(), Some(None));
        assert_eq!(read(json!({"step": null})).ok(), Some(None));
        for (body, says) in [
            (json!({"stepp": "payment"}), "unknown field `stepp`, expected `step`"),
            (json!({"step": 5}), "invalid type: integer `5`, expected a string"),
        ] {
            let Err(ApiError::BadRequest(message)) = read(body.clone()) else {
                panic!("{body} was not refused as a bad request");
            };
            assert_eq!(
                message,
                format!("the body must be {{\"step\": NAME}}: {says}"),
                "{body}"
            );
        }
        // Not an object: serde alone would read an array's items as the fields in order.
        for (body, found) in [(json!(["payment"]), "an array"), (json!("payment"), "a string")] {
            let Err(ApiError::BadRequest(message)) = read(body.clone()) else {
                panic!("{body} was not refused as a bad request");
            };
            assert_eq!(
                message,
                format!("the body must be {{\"step\": NAME}}, an object; it is {found}")
            );
        }
    }

    #[test]
    fn a_task_answer_is_the_task_then_its_revision_and_last_write() {
        let mut task = Task::new(json!({"order": {"id": "A-1", "total": 12.5, "items": [{"sku": "x"}]}}));
        task.name = Some("order A-1".into());
        task.tags.push("vip".into());
        task.runs
            .push(RunRecord::starting(0, "tier-analysis", "0123456789ab", 1));
        task.progress.insert("tier-analysis".into(), StepProgress::default());
        let stored = StoredTask {
            task,
            revision: 3,
            updated_at: Utc::now(),
        };

        let mut built = serde_json::to_value(&stored.task).expect("a task is JSON");
        if let Value::Object(map) = &mut built {
            map.insert("revision".into(), Value::from(stored.revision));
            map.insert(
                "updated_at".into(),
                serde_json::to_value(stored.updated_at).expect("a time is JSON"),
            );
        }
        let written = serde_json::to_string(&TaskAnswer::of(&stored)).expect("an answer is JSON");

        assert_eq!(written, built.to_string());
        let keys: Vec<String> = match serde_json::from_str::<Value>(&written) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            other => panic!("not an object: {other:?}"),
        };
        assert_eq!(keys.last().map(String::as_str), Some("updated_at"));
        assert!(keys.iter().any(|k| k == "runs") && keys.iter().any(|k| k == "revision"));
        let times: Value = serde_json::from_str(&written).expect("an answer is JSON");
        for key in ["created_at", "updated_at"] {
            let text = times[key].as_str().unwrap_or_default();
            assert!(text.ends_with('Z') && !text.contains("+00:00"), "{key} is {text:?}");
        }
    }
}
