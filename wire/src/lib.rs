//! `kassa-wire`: the fixed, little-endian record layouts that Kassa's clients and server share.
//!
//! Every ledger record is a `#[repr(C)]` struct whose layout is byte-for-byte the one of
//! TigerBeetle release 0.17 (`Account`, `Transfer`, `AccountFilter`, `AccountBalance`: 128 bytes;
//! `QueryFilter`: 64 bytes; create results: 16 bytes), so that a batch received from the network
//! is read in place with `zerocopy` and no copy. Layout sizes and alignments are checked at
//! compile time. This crate knows nothing of ledger semantics: `kassa-shard` gives the records
//! their meaning. Frames, checksums and the client arrive with the client protocol.

mod account;
mod balance;
mod change;
mod filter;
mod flags;
mod ids;
mod limits;
mod status;
mod transfer;

pub use account::Account;
pub use balance::{AccountBalance, Balances};
pub use change::{ChangeEvent, ChangeKind};
pub use filter::{AccountFilter, AccountFilterFlags, QueryFilter, QueryFilterFlags};
pub use flags::{AccountFlags, TransferFlags};
pub use ids::{AccountId, TransferId, ID_INT_MAX};
pub use limits::{
    BATCH_EVENTS_MAX, MESSAGE_BODY_SIZE_MAX, MESSAGE_HEADER_SIZE, MESSAGE_SIZE_MAX, TIMESTAMP_MAX,
    TIMESTAMP_MIN,
};
pub use status::{
    CreateAccountResult, CreateAccountStatus, CreateTransferResult, CreateTransferStatus,
};
pub use transfer::Transfer;
