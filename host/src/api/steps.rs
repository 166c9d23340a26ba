//! Step routes: list, show, deploy (the component as the body, the manifest as `?manifest=`
//! URL-encoded TOML), rollback, remove, and the record of those changes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};

use super::path::Path;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::auth::Caller;
use super::tasks::query;
use super::{ApiError, AppState, body, json_body, strict_body, to_json};
use crate::runtime::StepManifest;

pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    to_json(&serde_json::json!({"steps": state.service.steps().await?}))
}

pub(crate) async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    to_json(&state.service.step(&name).await?)
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeployParams {
    manifest: Option<String>,
}

pub(crate) async fn deploy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
    params: Result<Query<DeployParams>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let params = query(params)?;
    let bytes = body(raw, state.options.max_component_bytes)?;
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "the request body must be the component's bytes".into(),
        ));
    }
    let manifest = match params.manifest.as_deref() {
        None => StepManifest::default(),
        Some(text) => {
            StepManifest::from_toml(text).map_err(|e| ApiError::Unprocessable(format!("step {name}: {e}")))?
        }
    };
    let (info, changed) = state
        .service
        .deploy_step_telling(&name, bytes.to_vec(), manifest, Some(caller.step_changer()))
        .await?;
    if changed {
        eprintln!(
            "whenever serve: deployed {name} version {} through the API, by {}",
            info.version,
            caller.step_changer()
        );
    }
    // 201 when the deploy made a version serve; 200 when it was serving already.
    let status = if changed { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, to_json(&info)?))
}

/// `GET /v1/steps/{name}/versions`: every stored version, serving or not (a removed step's too).
pub(crate) async fn versions(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    to_json(&serde_json::json!({"versions": state.service.step_versions(&name).await?}))
}

/// `GET /v1/steps/{name}/changes`: who deployed, rolled back or removed the step, and when.
pub(crate) async fn changes(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    to_json(&serde_json::json!({"changes": state.service.step_changes(&name).await?}))
}

pub(crate) async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    caller: Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    // Strict: a misspelt key is named rather than read as a missing version.
    let request: RollbackBody = strict_body(
        json_body(&headers, &body(raw, state.options.max_body_bytes)?)?,
        "{\"version\": V}",
    )?;
    let (info, changed) = state
        .service
        .rollback_step_telling(&name, &request.version, Some(caller.step_changer()))
        .await?;
    if changed {
        eprintln!(
            "whenever serve: rolled {name} back to version {} through the API, by {}",
            info.version,
            caller.step_changer()
        );
    }
    to_json(&info)
}

/// The body of `POST /v1/steps/{name}/rollback`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The earlier version to serve again.
    version: String,
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    state.service.remove_step(&name, Some(caller.step_changer())).await?;
    eprintln!(
        "whenever serve: removed {name} through the API (its versions are kept), by {}",
        caller.step_changer()
    );
    Ok(StatusCode::NO_CONTENT)
}
