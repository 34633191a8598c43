//! Operation numbers of TigerBeetle 0.17 (`vsr.zig`'s `Operation` below 128, `tigerbeetle.zig`'s
//! `Operation` from 128), which of them Kassa serves, and each served operation's element sizes
//! and per-batch limits (`tigerbeetle.zig`'s `event_size`, `result_size`, `is_batchable`,
//! `event_max`, `result_max`, `result_count_expected`).
//!
//! Invariants: [`Operation`] holds only what Kassa serves: `register` (2) and the eight 0.17
//! multi-batch ledger operations (140–147). Every other number decodes to a typed
//! [`OperationError`] saying what it is: reserved for replication (0–127 except 2), a TigerBeetle
//! operation Kassa does not serve (128–139: `pulse`, the unbatched 0.16 encodings, 0.17's
//! `get_change_events`, the sparse 0.16 creates), or unknown (148–255; Kassa's own operations
//! will take numbers from there). Called by `validate.rs`, `request_body.rs` and `reply.rs`.

use thiserror::Error;

use crate::multi_batch::trailer_size;
use crate::register::{REGISTER_REQUEST_SIZE, REGISTER_RESULT_SIZE};
use crate::MESSAGE_BODY_SIZE_MAX;

/// An operation Kassa serves on the TigerBeetle wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Operation {
    Register = 2,
    LookupAccounts = 140,
    LookupTransfers = 141,
    GetAccountTransfers = 142,
    GetAccountBalances = 143,
    QueryAccounts = 144,
    QueryTransfers = 145,
    CreateAccounts = 146,
    CreateTransfers = 147,
}

/// An operation number Kassa does not serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum OperationError {
    #[error("operation {code} ({name}) is reserved for TigerBeetle's replication protocol")]
    ProtocolReserved { code: u8, name: &'static str },
    #[error("operation {code} ({name}) is a TigerBeetle operation Kassa does not serve")]
    Unsupported { code: u8, name: &'static str },
    #[error("operation {code} is unknown")]
    Unknown { code: u8 },
}

/// TigerBeetle's operations from 128 that Kassa does not serve, by number.
const UNSUPPORTED: [&str; 12] = [
    "pulse",
    "deprecated_create_accounts_unbatched",
    "deprecated_create_transfers_unbatched",
    "deprecated_lookup_accounts_unbatched",
    "deprecated_lookup_transfers_unbatched",
    "deprecated_get_account_transfers_unbatched",
    "deprecated_get_account_balances_unbatched",
    "deprecated_query_accounts_unbatched",
    "deprecated_query_transfers_unbatched",
    "get_change_events",
    "deprecated_create_accounts_sparse",
    "deprecated_create_transfers_sparse",
];

/// The first number available to a state machine (`constants.vsr_operations_reserved`).
pub const OPERATIONS_RESERVED: u8 = 128;

/// The named replication operations below 128 (`vsr.Operation`); `register` is served.
const PROTOCOL_RESERVED: [&str; 7] = [
    "reserved",
    "root",
    "register",
    "reconfigure",
    "pulse",
    "upgrade",
    "noop",
];

impl Operation {
    pub const ALL: [Operation; 9] = [
        Operation::Register,
        Operation::LookupAccounts,
        Operation::LookupTransfers,
        Operation::GetAccountTransfers,
        Operation::GetAccountBalances,
        Operation::QueryAccounts,
        Operation::QueryTransfers,
        Operation::CreateAccounts,
        Operation::CreateTransfers,
    ];

    /// The operation with this number, or what the number is instead.
    pub fn from_u8(code: u8) -> Result<Operation, OperationError> {
        if let Some(operation) = Operation::ALL.iter().find(|op| **op as u8 == code) {
            return Ok(*operation);
        }
        if code < OPERATIONS_RESERVED {
            let name = PROTOCOL_RESERVED.get(usize::from(code)).copied();
            return Err(OperationError::ProtocolReserved {
                code,
                name: name.unwrap_or("unnamed"),
            });
        }
        match UNSUPPORTED.get(usize::from(code - OPERATIONS_RESERVED)) {
            Some(name) => Err(OperationError::Unsupported { code, name }),
            None => Err(OperationError::Unknown { code }),
        }
    }

    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The name TigerBeetle's clients use.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::LookupAccounts => "lookup_accounts",
            Operation::LookupTransfers => "lookup_transfers",
            Operation::GetAccountTransfers => "get_account_transfers",
            Operation::GetAccountBalances => "get_account_balances",
            Operation::QueryAccounts => "query_accounts",
            Operation::QueryTransfers => "query_transfers",
            Operation::CreateAccounts => "create_accounts",
            Operation::CreateTransfers => "create_transfers",
        }
    }

    /// Whether request and reply bodies are multi-batch encoded (all but `register`).
    pub const fn is_multi_batch(self) -> bool {
        !matches!(self, Operation::Register)
    }

    /// Whether a batch holds many events (creates, lookups) rather than exactly one filter.
    pub const fn is_batchable(self) -> bool {
        matches!(
            self,
            Operation::CreateAccounts
                | Operation::CreateTransfers
                | Operation::LookupAccounts
                | Operation::LookupTransfers
        )
    }

    /// The size of one request element: `Account`/`Transfer`/`AccountFilter` 128, `QueryFilter`
    /// 64, an id 16; for `register`, the whole `RegisterRequest`.
    pub const fn event_size(self) -> usize {
        match self {
            Operation::Register => REGISTER_REQUEST_SIZE,
            Operation::LookupAccounts | Operation::LookupTransfers => 16,
            Operation::QueryAccounts | Operation::QueryTransfers => 64,
            Operation::GetAccountTransfers
            | Operation::GetAccountBalances
            | Operation::CreateAccounts
            | Operation::CreateTransfers => 128,
        }
    }

    /// The size of one reply element: create results 16, records 128; for `register`, the
    /// whole `RegisterResult`.
    pub const fn result_size(self) -> usize {
        match self {
            Operation::Register => REGISTER_RESULT_SIZE,
            Operation::CreateAccounts | Operation::CreateTransfers => 16,
            Operation::LookupAccounts
            | Operation::LookupTransfers
            | Operation::GetAccountTransfers
            | Operation::GetAccountBalances
            | Operation::QueryAccounts
            | Operation::QueryTransfers => 128,
        }
    }

    /// The most events one batch may carry when request bodies are at most `batch_size_limit`
    /// bytes: bounded by the request body and by the reply body (one result per event).
    pub const fn event_max(self, batch_size_limit: usize) -> usize {
        assert!(self.is_multi_batch());
        assert!(batch_size_limit <= MESSAGE_BODY_SIZE_MAX);
        let request_trailer = trailer_size(self.event_size(), 1);
        let reply_trailer = trailer_size(self.result_size(), 1);
        assert!(batch_size_limit > request_trailer && batch_size_limit > reply_trailer);
        let by_request = (batch_size_limit - request_trailer) / self.event_size();
        let by_reply = (MESSAGE_BODY_SIZE_MAX - reply_trailer) / self.result_size();
        if by_request < by_reply {
            by_request
        } else {
            by_reply
        }
    }

    /// The most results one batch's reply may carry.
    pub const fn result_max(self, batch_size_limit: usize) -> usize {
        if self.is_batchable() {
            return self.event_max(batch_size_limit);
        }
        assert!(self.is_multi_batch());
        let reply_trailer = trailer_size(self.result_size(), 1);
        (MESSAGE_BODY_SIZE_MAX - reply_trailer) / self.result_size()
    }

    /// How many results one (valid) batch asks for: one per event for creates and lookups; the
    /// filter's `limit` for queries (read from its last 8 bytes: `limit` u32, `flags` u32).
    pub fn result_count_expected(self, batch: &[u8]) -> usize {
        assert!(self.is_multi_batch());
        if self.is_batchable() {
            return batch.len() / self.event_size();
        }
        let limit_offset = self.event_size() - 8;
        batch
            .get(limit_offset..limit_offset + 4)
            .and_then(|bytes| bytes.try_into().ok())
            .map_or(0, |bytes| u32::from_le_bytes(bytes) as usize)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const _: () = assert!(std::mem::offset_of!(crate::AccountFilter, limit) == 128 - 8);
const _: () = assert!(std::mem::offset_of!(crate::QueryFilter, limit) == 64 - 8);
const _: () = assert!(Operation::CreateTransfers.event_max(MESSAGE_BODY_SIZE_MAX) == 8189);
const _: () = assert!(Operation::LookupAccounts.event_max(MESSAGE_BODY_SIZE_MAX) == 8189);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_decodes_to_something() {
        for code in 0..=u8::MAX {
            match Operation::from_u8(code) {
                Ok(operation) => assert_eq!(operation.as_u8(), code),
                Err(OperationError::ProtocolReserved { code: c, .. }) => assert!(c < 128),
                Err(OperationError::Unsupported { code: c, .. }) => {
                    assert!((128..=139).contains(&c))
                }
                Err(OperationError::Unknown { code: c }) => assert!(c >= 148),
            }
        }
        assert_eq!(
            Operation::from_u8(137),
            Err(OperationError::Unsupported {
                code: 137,
                name: "get_change_events"
            })
        );
        assert_eq!(
            Operation::from_u8(6),
            Err(OperationError::ProtocolReserved {
                code: 6,
                name: "noop"
            })
        );
    }

    #[test]
    fn limits_match_tigerbeetles_event_max() {
        let body_max = MESSAGE_BODY_SIZE_MAX;
        assert_eq!(Operation::CreateAccounts.event_max(body_max), 8189);
        assert_eq!(Operation::LookupTransfers.event_max(body_max), 8189);
        // Queries: one filter per batch; replies up to 8189 records.
        assert_eq!(Operation::QueryAccounts.result_max(body_max), 8189);
        assert_eq!(Operation::GetAccountBalances.result_max(body_max), 8189);
        // A smaller announced limit bounds the request side only.
        assert_eq!(Operation::CreateTransfers.event_max(256), 1);
    }
}
