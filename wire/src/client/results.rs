//! Decoding of reply bodies into typed records, once `session.rs` accepted the reply.
//!
//! Invariants: the body is a multi-batch body of the operation's result size with one batch
//! per request batch (checked by `check_reply_to`); creates get exactly one result per event,
//! every status a known one; records are copied out, so the body need not be aligned. A body
//! that breaks these is a [`ProtocolError`], never a panic.

use zerocopy::{FromBytes, TryFromBytes};

use super::error::ProtocolError;
use crate::multi_batch::MultiBatch;
use crate::{Operation, ReplyMismatch};

/// The records of the single batch of `body`, a reply to `operation`.
pub(crate) fn records<T: FromBytes>(
    operation: Operation,
    body: &[u8],
) -> Result<Vec<T>, ProtocolError> {
    let batch = single_batch(operation, body)?;
    Ok(batch
        .chunks_exact(operation.result_size())
        .filter_map(|chunk| T::read_from_bytes(chunk).ok())
        .collect())
}

/// One create result per event, for a request of `events` events.
pub(crate) fn create_results<T: TryFromBytes>(
    operation: Operation,
    body: &[u8],
    events: usize,
) -> Result<Vec<T>, ProtocolError> {
    assert_eq!(operation.result_size(), 16);
    let batch = single_batch(operation, body)?;
    let results = batch.len() / operation.result_size();
    if results != events {
        return Err(ProtocolError::ResultCount {
            operation,
            events,
            results,
        });
    }
    let mut decoded = Vec::with_capacity(events);
    for (index, chunk) in batch.chunks_exact(operation.result_size()).enumerate() {
        let result = T::try_read_from_bytes(chunk).map_err(|_| {
            let status = chunk
                .get(8..12)
                .and_then(|bytes| bytes.try_into().ok())
                .map_or(0, u32::from_le_bytes);
            ProtocolError::UnknownStatus {
                operation,
                index,
                status,
            }
        })?;
        decoded.push(result);
    }
    Ok(decoded)
}

fn single_batch(operation: Operation, body: &[u8]) -> Result<&[u8], ProtocolError> {
    let decoded = MultiBatch::decode(body, operation.result_size(), usize::MAX)
        .map_err(|error| ProtocolError::Reply(ReplyMismatch::Body(error)))?;
    if decoded.batch_count() != 1 {
        return Err(ProtocolError::Reply(ReplyMismatch::BatchCount {
            request: 1,
            reply: decoded.batch_count(),
        }));
    }
    Ok(decoded.payload())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi_batch::encode_to_vec;
    use crate::{CreateTransferResult, CreateTransferStatus};

    #[test]
    fn unknown_statuses_and_missing_results_are_protocol_errors() {
        let mut result = 5u64.to_le_bytes().to_vec();
        result.extend_from_slice(&18u32.to_le_bytes()); // 18 is deprecated, never sent
        result.extend_from_slice(&[0; 4]);
        let body = encode_to_vec(16, &[&result]).unwrap();
        let decoded = create_results::<CreateTransferResult>(Operation::CreateTransfers, &body, 1);
        assert_eq!(
            decoded,
            Err(ProtocolError::UnknownStatus {
                operation: Operation::CreateTransfers,
                index: 0,
                status: 18
            })
        );
        let decoded = create_results::<CreateTransferResult>(Operation::CreateTransfers, &body, 2);
        assert!(matches!(decoded, Err(ProtocolError::ResultCount { .. })));

        result[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let body = encode_to_vec(16, &[&result]).unwrap();
        let decoded =
            create_results::<CreateTransferResult>(Operation::CreateTransfers, &body, 1).unwrap();
        assert_eq!(decoded[0].status, CreateTransferStatus::Created);
        assert_eq!(decoded[0].timestamp, 5);
    }
}
