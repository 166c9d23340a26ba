//! API errors: every failure becomes `{"error": {"code", "message"}}` with its status, here and
//! nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thiserror::Error;

use crate::service::ServiceError;
use crate::store::StoreError;

/// A request failed.
#[derive(Debug, Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, bad query (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token or webhook signature (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but its scopes do not cover the request (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such task, step or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The method is not allowed on this path (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The client stopped sending the request's body (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// The request conflicts with the resource's state (409).
    #[error("{0}")]
    Conflict(String),
    /// The task is not at a revision the request's `If-Match` names (412).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The body is larger than the configured limit (413).
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is of a kind this route does not take (415): a JSON Patch where a merge patch is
    /// read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but not acceptable: an invalid component, a non-object task (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The host failed (500).
    #[error("{0}")]
    Internal(String),
    /// The store cannot take writes now (a full disk, a lost database connection); nothing was
    /// done, and the same request may succeed later (503, with `Retry-After`).
    #[error("{0}")]
    Unavailable(String),
}

/// The seconds a client is told to wait before it sends again a request refused with 503.
const RETRY_AFTER_SECONDS: &str = "1";

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Conflict(_) => "conflict",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(m) => ApiError::NotFound(m),
            ServiceError::Conflict(m) => ApiError::Conflict(m),
            ServiceError::Changed(m) => ApiError::PreconditionFailed(m),
            ServiceError::Invalid(m) => ApiError::Unprocessable(m),
            ServiceError::Load(e) => ApiError::Unprocessable(e.to_string()),
            ServiceError::Setup(e) => ApiError::Internal(e.to_string()),
            ServiceError::Store(e @ StoreError::Unavailable(_)) => ApiError::Unavailable(e.to_string()),
            ServiceError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number of each variant: a new variant fails to compile here until it is listed in
    /// the test below.
    fn variant(error: &ApiError) -> usize {
        match error {
            ApiError::BadRequest(_) => 0,
            ApiError::Unauthorized(_) => 1,
            ApiError::Forbidden(_) => 2,
            ApiError::NotFound(_) => 3,
            ApiError::MethodNotAllowed => 4,
            ApiError::RequestTimeout(_) => 5,
            ApiError::Conflict(_) => 6,
            ApiError::PreconditionFailed(_) => 7,
            ApiError::PayloadTooLarge(_) => 8,
            ApiError::UnsupportedMediaType(_) => 9,
            ApiError::Unprocessable(_) => 10,
            ApiError::Internal(_) => 11,
            ApiError::Unavailable(_) => 12,
        }
    }

    /// The OpenAPI document's error schema lists every code the API answers, in order (an API
    /// fuzzer found the 412's code missing from it).
    #[test]
    fn the_openapi_document_lists_every_error_code() {
        let all = [
            ApiError::BadRequest(String::new()),
            ApiError::Unauthorized(String::new()),
            ApiError::Forbidden(String::new()),
            ApiError::NotFound(String::new()),
            ApiError::MethodNotAllowed,
            ApiError::RequestTimeout(String::new()),
            ApiError::Conflict(String::new()),
            ApiError::PreconditionFailed(String::new()),
            ApiError::PayloadTooLarge(0),
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::Unprocessable(String::new()),
            ApiError::Internal(String::new()),
            ApiError::Unavailable(String::new()),
        ];
        assert!(all.iter().map(variant).eq(0..13), "every variant, once, in order");
        let document: serde_json::Value = serde_json::from_str(crate::api::OPENAPI).expect("JSON");
        let listed: Vec<&str> = document
            .pointer("/components/schemas/Error/properties/error/properties/code/enum")
            .and_then(|codes| codes.as_array())
            .expect("the error codes")
            .iter()
            .filter_map(|code| code.as_str())
            .collect();
        let answered: Vec<&str> = all.iter().map(ApiError::code).collect();
        assert_eq!(listed, answered);
    }
}
