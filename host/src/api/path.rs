//! The path parameters of a route (`{id}`, `{name}`, `{hook}`), refused as every other bad
//! request is: a JSON error (400) naming the problem, where axum's own `Path` answers plain text
//! (a parameter that is not UTF-8 once percent-decoded, `%FF`).

use axum::extract::FromRequestParts;
use axum::extract::rejection::PathRejection;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A route's path parameters, as axum's `Path` extracts them.
pub(crate) struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(rejection)) => Err(ApiError::BadRequest(format!(
                "the request's path {:?}: {}",
                parts.uri.path(),
                rejection.body_text()
            ))),
            // A route without the parameters its handler takes: the server's mistake.
            Err(rejection) => Err(ApiError::Internal(rejection.body_text())),
        }
    }
}
