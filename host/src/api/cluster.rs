//! `GET /v1/hosts`: the hosts sharing this host's store, for an operator watching a cluster (an
//! upgrade one host at a time: which hosts are live, what format each writes, what each holds).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use super::{ApiError, AppState, to_json};

/// `GET /v1/hosts` ([`crate::service::Hosts`]).
pub(crate) async fn hosts(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    to_json(&state.service.hosts().await?)
}
