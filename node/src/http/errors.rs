//! Error replies: `{"error": "<code>", "message": "<what and where>"}` with a fitting status.
//!
//! Codes: `invalid_json` (not JSON), `invalid_body` (JSON of the wrong shape: a wrong type,
//! an unknown field, a number where a decimal string belongs), `unknown_flag`, `invalid_id`
//! (a path id that is not a decimal u128), `invalid_query` (a bad query parameter),
//! `too_many_records` (more than 8189 in one request), `not_found`, `unavailable` (the node
//! is shutting down or a partition cannot serve).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::NodeError> for ApiError {
    fn from(error: crate::NodeError) -> ApiError {
        tracing::warn!(%error, "request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            error.to_string(),
        )
    }
}
