//! `kassa-wire`: the fixed, little-endian record layouts that Kassa's clients and server share.
//!
//! Every ledger record is a `#[repr(C)]` struct whose layout is byte-for-byte the one of
//! TigerBeetle release 0.17 (`Account`, `Transfer`, `AccountFilter`, `AccountBalance`: 128 bytes;
//! `QueryFilter`: 64 bytes; create results: 16 bytes), so that a batch received from the network
//! is read in place with `zerocopy` and no copy. Layout sizes and alignments are checked at
//! compile time. This crate knows nothing of ledger semantics: `kassa-shard` gives the records
//! their meaning.
//!
//! It also holds the client protocol's codec, pure code without I/O: the 256-byte message
//! header and its command layouts (`header`, `client_headers`), the AEGIS-128L checksum
//! (`checksum`), multi-batch bodies (`multi_batch`), operations and their limits (`operation`,
//! `limits`), the register bodies (`register`), validation of client frames and request bodies
//! (`validate`, `request_body`), the builders of replies, pongs and evictions (`reply`), and the
//! checks TigerBeetle's client makes on them (`client_checks`). See `shared/CLIENT_PROTOCOL.md`.
//!
//! With the `client` feature, `client` is Kassa's Rust client (async on tokio, and blocking)
//! speaking that protocol with this codec.

mod account;
mod balance;
mod change;
pub mod checksum;
#[cfg(feature = "client")]
pub mod client;
pub mod client_checks;
pub mod client_headers;
mod filter;
mod flags;
pub mod header;
mod ids;
mod limits;
pub mod multi_batch;
pub mod operation;
pub mod register;
pub mod reply;
pub mod request_body;
mod status;
mod transfer;
pub mod validate;

pub use account::Account;
pub use balance::{AccountBalance, Balances};
pub use change::{ChangeEvent, ChangeKind};
pub use filter::{AccountFilter, AccountFilterFlags, QueryFilter, QueryFilterFlags};
pub use flags::{AccountFlags, TransferFlags};
pub use ids::{AccountId, TransferId, ID_INT_MAX};
pub use limits::{
    BATCH_EVENTS_MAX, BATCH_SIZE_LIMIT_MIN, MESSAGE_BODY_SIZE_MAX, MESSAGE_HEADER_SIZE,
    MESSAGE_SIZE_MAX, REPLICAS_MAX, TIMESTAMP_MAX, TIMESTAMP_MIN, TRAILER_SIZE_MIN,
};
pub use status::{
    CreateAccountResult, CreateAccountStatus, CreateTransferResult, CreateTransferStatus,
};
pub use transfer::Transfer;

pub use checksum::{checksum, CHECKSUM_EMPTY};
pub use client_checks::{check_reply_to, check_server_frame, ReplyMismatch, ServerFrame};
pub use client_headers::{
    EvictionHeader, EvictionReason, PingClientHeader, PongClientHeader, ReplyHeader, RequestHeader,
};
pub use header::{Command, Frame, Header, HeaderLayout, Release, HEADER_SIZE, PROTOCOL_VERSION};
pub use multi_batch::{EncodeError, MultiBatch, MultiBatchEncoder, MultiBatchError};
pub use operation::{Operation, OperationError};
pub use register::{RegisterRequest, RegisterResult};
pub use reply::{build_eviction, build_pong, build_reply, reply_in_view, ReplyFields, Sender};
pub use request_body::{
    validate_request, validate_request_body, BodyError, RequestBody, RequestError,
};
pub use validate::{
    check_header_framing, validate_client_frame, Answer, ClientFrame, FrameError, HeaderField,
};
