//! Error replies: `{"error": "<code>", "message": "<what and where>"}` with a fitting status.
//!
//! Codes: `invalid_json` (not JSON), `invalid_body` (JSON of the wrong shape: a wrong type,
//! an unknown field, a number where a decimal string belongs, a flag given twice, a limit out
//! of range), `unknown_flag`, `invalid_id` (a path id that is not a decimal u128),
//! `invalid_query` (a bad query parameter), `too_many_records` (more than 8189 in one
//! request), `not_found`, `method_not_allowed`, `body_too_large` (413), `body_timeout` (408);
//! and with a 503: `unavailable` (a partition cannot serve), `shutting_down`,
//! `outcome_unknown` (a write whose outcome a leader change hid; retry with the same ids),
//! `too_many_connections`. A 5xx's message says what, never where on disk: files and OS
//! errors go to the node's log.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Close the connection after this answer (the request's body was not read whole).
    pub close: bool,
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
            close: false,
        }
    }

    /// This error, answered with `connection: close`.
    pub fn closing(self) -> ApiError {
        ApiError {
            close: true,
            ..self
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
        let mut response = (self.status, Json(body)).into_response();
        if self.close {
            let close = axum::http::HeaderValue::from_static("close");
            response
                .headers_mut()
                .insert(axum::http::header::CONNECTION, close);
        }
        response
    }
}

/// A fault of the node answered over HTTP: a 503 with a code and a short message a client
/// can act on. The error itself, with its files and OS errors, goes to the node's log only.
impl From<crate::NodeError> for ApiError {
    fn from(error: crate::NodeError) -> ApiError {
        use crate::NodeError;
        use kassa_raft::PartitionError;
        tracing::warn!(%error, "request failed");
        let (code, message) = match &error {
            NodeError::ShuttingDown | NodeError::Partition(PartitionError::ShuttingDown { .. }) => {
                ("shutting_down", "the node is shutting down".to_string())
            }
            NodeError::Partition(PartitionError::NotLeader { partition, .. }) => (
                "unavailable",
                format!("partition {partition} is not led by this node"),
            ),
            NodeError::Partition(PartitionError::OutcomeUnknown { partition }) => (
                "outcome_unknown",
                format!(
                    "partition {partition} lost its leadership during the write; its outcome \
                     is unknown: retry with the same ids"
                ),
            ),
            NodeError::Partition(error) => (
                "unavailable",
                format!(
                    "partition {} cannot serve; the node's log says why",
                    error.partition()
                ),
            ),
            NodeError::Transaction(_) => (
                "unavailable",
                "the batch could not run; nothing was applied".to_string(),
            ),
            NodeError::Start(_) => ("unavailable", "the node is not ready".to_string()),
            NodeError::ColdRead { partition, .. } => (
                "unavailable",
                format!(
                    "partition {partition} cannot read part of its history; the node's log says \
                     why"
                ),
            ),
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeError;
    use kassa_raft::PartitionError;

    /// A fault's answer names the partition and what to do, never a file or an OS error.
    #[test]
    fn a_fault_answers_what_not_where_on_disk() {
        let storage = kassa_storage::StorageError::Corrupt {
            path: "/srv/kassa/partitions/0003/log/log-00000000000000000000.seg".into(),
            offset: 4096,
            what: "bad checksum",
        };
        let error = NodeError::Partition(PartitionError::Storage {
            partition: 3,
            source: storage,
        });
        let answer = ApiError::from(error);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.code, "unavailable");
        assert!(answer.message.contains("partition 3"), "{}", answer.message);
        assert!(!answer.message.contains("/srv"), "{}", answer.message);
        assert!(!answer.message.contains("checksum"), "{}", answer.message);

        let stopping = ApiError::from(NodeError::ShuttingDown);
        assert_eq!(stopping.code, "shutting_down");
        let failed = ApiError::from(NodeError::Transaction("open /srv/x: EIO".into()));
        assert!(!failed.message.contains("/srv"), "{}", failed.message);
        let cold = kassa_shard::ColdError {
            keyspace: "history",
            key: 7,
            message: "read run /srv/kassa/runs/history-1.run: EIO".into(),
        };
        let unread = ApiError::from(NodeError::ColdRead {
            partition: 5,
            error: cold,
        });
        assert_eq!(unread.code, "unavailable");
        assert!(unread.message.contains("partition 5"), "{}", unread.message);
        assert!(!unread.message.contains("/srv"), "{}", unread.message);
    }
}
