//! Validation of a request's body for its operation, after the frame itself was validated
//! (`validate.rs`): TigerBeetle's `Replica.ignore_request_message` size check, and
//! `StateMachine.input_valid`/`batch_valid` (`state_machine.zig`).
//!
//! Invariants: a body that passes is a well-formed `RegisterRequest`, or a multi-batch body
//! whose batches each hold a whole number of events, at most `event_max` of them (exactly one
//! filter for queries), and whose replies, at most `result_max` per batch, fit one reply body.
//! Each failure names the eviction reason TigerBeetle answers it with. Never panics on any body.
//! Called by the node's request path before a request is admitted.

use thiserror::Error;
use zerocopy::FromBytes;

use crate::client_headers::{EvictionReason, RequestHeader};
use crate::multi_batch::{trailer_size, MultiBatch, MultiBatchError};
use crate::operation::{Operation, OperationError};
use crate::register::{RegisterRequest, REGISTER_REQUEST_SIZE};
use crate::MESSAGE_BODY_SIZE_MAX;

/// A validated request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody<'a> {
    /// A `RegisterRequest`, all zero as a client sends it (so nothing to carry).
    Register,
    Batches(MultiBatch<'a>),
}

/// Why a request body is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum BodyError {
    #[error("body of {body_size} bytes exceeds the batch size limit of {batch_size_limit}")]
    TooLarge {
        body_size: usize,
        batch_size_limit: usize,
    },
    #[error("register body of {body_size} bytes, not {REGISTER_REQUEST_SIZE}")]
    RegisterSize { body_size: usize },
    #[error("register body announces batch_size_limit {batch_size_limit}; a client sends 0")]
    RegisterLimitNotZero { batch_size_limit: u32 },
    #[error("register body has non-zero reserved bytes")]
    RegisterReservedNotZero,
    #[error("{operation}: {source}")]
    MultiBatch {
        operation: Operation,
        source: MultiBatchError,
    },
    #[error("{operation}: batch {batch_index} has {event_count} filters, not exactly one")]
    NotOneFilter {
        operation: Operation,
        batch_index: usize,
        event_count: usize,
    },
    #[error(
        "{operation}: the replies would need {reply_size} bytes, more than {MESSAGE_BODY_SIZE_MAX}"
    )]
    ReplyTooLarge {
        operation: Operation,
        reply_size: usize,
    },
}

impl BodyError {
    /// The eviction TigerBeetle answers this with (a Kassa node may first answer a too-old
    /// client release with `client_release_too_low`, as TigerBeetle does).
    pub fn eviction_reason(&self) -> EvictionReason {
        match self {
            BodyError::TooLarge { .. } | BodyError::RegisterSize { .. } => {
                EvictionReason::InvalidRequestBodySize
            }
            _ => EvictionReason::InvalidRequestBody,
        }
    }
}

/// Why a request is answered with an eviction: its operation or its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error(transparent)]
    Operation(#[from] OperationError),
    #[error(transparent)]
    Body(#[from] BodyError),
}

impl RequestError {
    /// The eviction TigerBeetle answers this with.
    pub fn eviction_reason(&self) -> EvictionReason {
        match self {
            RequestError::Operation(_) => EvictionReason::InvalidRequestOperation,
            RequestError::Body(body) => body.eviction_reason(),
        }
    }
}

/// Checks a request whose frame `validate_client_frame` accepted, in `on_request`'s order: the
/// body size against `batch_size_limit`, then the operation, then the body's contents.
pub fn validate_request<'a>(
    header: &RequestHeader,
    body: &'a [u8],
    batch_size_limit: usize,
) -> Result<(Operation, RequestBody<'a>), RequestError> {
    assert_eq!(
        header.frame.size as usize,
        crate::MESSAGE_HEADER_SIZE + body.len()
    );
    if body.len() > batch_size_limit {
        return Err(RequestError::Body(BodyError::TooLarge {
            body_size: body.len(),
            batch_size_limit,
        }));
    }
    let operation = Operation::from_u8(header.operation)?;
    let body = validate_request_body(operation, body, batch_size_limit)?;
    Ok((operation, body))
}

/// Validates `body` for `operation`, where requests may carry at most `batch_size_limit` body
/// bytes (the limit this server announced at registration).
pub fn validate_request_body(
    operation: Operation,
    body: &[u8],
    batch_size_limit: usize,
) -> Result<RequestBody<'_>, BodyError> {
    assert!(batch_size_limit <= MESSAGE_BODY_SIZE_MAX);
    if body.len() > batch_size_limit {
        return Err(BodyError::TooLarge {
            body_size: body.len(),
            batch_size_limit,
        });
    }
    if operation == Operation::Register {
        return validate_register(body).map(|_| RequestBody::Register);
    }
    validate_batches(operation, body, batch_size_limit).map(RequestBody::Batches)
}

fn validate_register(body: &[u8]) -> Result<RegisterRequest, BodyError> {
    let request = RegisterRequest::read_from_bytes(body).map_err(|_| BodyError::RegisterSize {
        body_size: body.len(),
    })?;
    if request.batch_size_limit != 0 {
        return Err(BodyError::RegisterLimitNotZero {
            batch_size_limit: request.batch_size_limit,
        });
    }
    if request.reserved.iter().any(|byte| *byte != 0) {
        return Err(BodyError::RegisterReservedNotZero);
    }
    Ok(request)
}

fn validate_batches(
    operation: Operation,
    body: &[u8],
    batch_size_limit: usize,
) -> Result<MultiBatch<'_>, BodyError> {
    let events_max = if operation.is_batchable() {
        operation.event_max(batch_size_limit)
    } else {
        1
    };
    let batches = MultiBatch::decode(body, operation.event_size(), events_max)
        .map_err(|source| BodyError::MultiBatch { operation, source })?;
    let result_max = operation.result_max(MESSAGE_BODY_SIZE_MAX);
    let mut result_count: usize = 0;
    for (batch_index, batch) in batches.batches().enumerate() {
        let event_count = batch.len() / operation.event_size();
        if !operation.is_batchable() && event_count != 1 {
            return Err(BodyError::NotOneFilter {
                operation,
                batch_index,
                event_count,
            });
        }
        // Before 0.17 clients capped query limits rather than refusing them: so does the server.
        let expected = operation.result_count_expected(batch).min(result_max);
        result_count = result_count.saturating_add(expected);
    }
    let reply_trailer = trailer_size(operation.result_size(), batches.batch_count());
    let reply_size = result_count
        .saturating_mul(operation.result_size())
        .saturating_add(reply_trailer);
    if reply_size > MESSAGE_BODY_SIZE_MAX {
        return Err(BodyError::ReplyTooLarge {
            operation,
            reply_size,
        });
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi_batch::encode_to_vec;

    const LIMIT: usize = MESSAGE_BODY_SIZE_MAX;

    #[test]
    fn register_body_must_be_256_zero_bytes() {
        let ok = [0u8; 256];
        assert!(validate_request_body(Operation::Register, &ok, LIMIT).is_ok());
        let error = validate_request_body(Operation::Register, &[], LIMIT).unwrap_err();
        assert_eq!(error, BodyError::RegisterSize { body_size: 0 });
        assert_eq!(
            error.eviction_reason(),
            EvictionReason::InvalidRequestBodySize
        );
        let mut limit = ok;
        limit[0] = 1;
        assert_eq!(
            validate_request_body(Operation::Register, &limit, LIMIT),
            Err(BodyError::RegisterLimitNotZero {
                batch_size_limit: 1
            })
        );
        let mut reserved = ok;
        reserved[255] = 1;
        assert_eq!(
            validate_request_body(Operation::Register, &reserved, LIMIT),
            Err(BodyError::RegisterReservedNotZero)
        );
    }

    #[test]
    fn queries_take_exactly_one_filter_per_batch() {
        let filter = crate::QueryFilter::new(10, crate::QueryFilterFlags::default());
        let one = zerocopy::IntoBytes::as_bytes(&filter);
        let body = encode_to_vec(64, &[one, one]).unwrap();
        assert!(validate_request_body(Operation::QueryAccounts, &body, LIMIT).is_ok());
        let empty = encode_to_vec(64, &[one, &[]]).unwrap();
        assert_eq!(
            validate_request_body(Operation::QueryAccounts, &empty, LIMIT),
            Err(BodyError::NotOneFilter {
                operation: Operation::QueryAccounts,
                batch_index: 1,
                event_count: 0
            })
        );
    }

    #[test]
    fn replies_must_fit_one_body() {
        // Two queries each asking for the maximum fill more than one reply.
        let filter = crate::QueryFilter::new(u32::MAX, crate::QueryFilterFlags::default());
        let one = zerocopy::IntoBytes::as_bytes(&filter);
        let body = encode_to_vec(64, &[one]).unwrap();
        assert!(validate_request_body(Operation::QueryTransfers, &body, LIMIT).is_ok());
        let body = encode_to_vec(64, &[one, one]).unwrap();
        let error = validate_request_body(Operation::QueryTransfers, &body, LIMIT).unwrap_err();
        assert!(matches!(error, BodyError::ReplyTooLarge { .. }));
        assert_eq!(error.eviction_reason(), EvictionReason::InvalidRequestBody);
    }

    #[test]
    fn body_over_the_announced_limit_is_a_size_error() {
        let body = encode_to_vec(128, &[&[0u8; 128 * 2]]).unwrap();
        let error = validate_request_body(Operation::CreateTransfers, &body, 256).unwrap_err();
        assert_eq!(
            error,
            BodyError::TooLarge {
                body_size: 384,
                batch_size_limit: 256
            }
        );
    }
}
