//! `kassa-shard`: the ledger state machine of one partition.
//!
//! A [`Ledger`] holds one partition's accounts and transfers in memory and applies batches of
//! events to them with TigerBeetle 0.17's semantics: double-entry accounts, single-phase and
//! two-phase (pending, post, void, expiry) transfers, linked chains that succeed or fail as one,
//! balancing and closing transfers, balance limits, imported events and idempotent retries.
//!
//! It is pure and deterministic: it never reads a clock, a random source, a disk or a network.
//! Time comes in as the `now` argument of each write (nanoseconds from the caller's clock); the
//! ledger turns it into strictly increasing event timestamps. The same history of calls gives
//! the same results, the same state and byte-identical [`Ledger::snapshot`]s, on any machine.
//!
//! Invariants (checked by [`Ledger::validate`]):
//! - per ledger, the sum of `debits_posted` equals the sum of `credits_posted`, and the sum of
//!   `debits_pending` equals the sum of `credits_pending`;
//! - accounts and transfers are stored in strictly increasing timestamp order;
//! - every pending transfer's reserved amount is counted in both its accounts' pending balances
//!   until it is posted, voided or expired;
//! - the change stream's sequence numbers are dense;
//! - the wire protocol's session table holds sealed cached replies (`sessions`).
//!
//! Partitions: a cluster splits its ledger into `P` partitions (`LedgerConfig::partitions`).
//! A partition's ledger holds the accounts it owns (`partition_of(account id, P)`), and every
//! transfer that is homed in it (`partition_of(transfer id, P)`) or touches one of its
//! accounts, with the ids that failed here. A batch whose records all live in one partition
//! runs on that ledger directly; a batch spanning partitions runs on a [`Scratch`] ledger built
//! from what the partitions read out ([`ReadSet`]), and its [`Effects`] are applied to each
//! partition through its log (see `docs/cross-partition.md`). With `P = 1` the one ledger holds
//! everything and the per-ledger balance invariant is checked on it directly.
//!
//! Callers: the partition's Raft state machine (`kassa-raft`) applies committed log entries;
//! tests and benchmarks drive it directly.

pub mod batch_home;
mod changes;
pub mod checkpoint;
mod client_requests;
pub mod cold;
mod cold_reads;
mod command;
mod create;
mod create_accounts;
mod create_transfers;
mod decoder;
pub mod directory;
mod expiry;
mod foreign_requests;
mod history;
mod id_index;
pub mod intents;
mod keyspace;
mod ledger;
mod local_run;
mod memory;
mod memory_cold_store;
pub mod parallel_commit;
mod partitioning;
mod post_or_void;
mod prefetch;
mod queries;
mod rollback;
pub mod sessions;
pub mod share_placement;
pub mod shares;
mod snapshot;
mod statuses;
mod table;
#[cfg(test)]
mod test_partitions;
mod transfer_ids;
mod transfer_table;
mod txn;
mod validate;

/// The README's example compiles and runs.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExample;

pub use checkpoint::{
    Checkpoint, CheckpointCursor, CheckpointCut, CheckpointIncrement, CheckpointRestore, Keyspace,
    KeyspaceIncrement, CHECKPOINT_FORMAT_VERSION,
};
pub use client_requests::seal_reply;
pub use cold::{ColdError, ColdStore};
pub use cold_reads::{ClientRead, ColdRange, ColdReads};
pub use command::{Command, CommandDecodeError, Reply, NOW_MAX};
pub use foreign_requests::{ForeignAnswer, ForeignRequests, StagedReply, FOREIGN_REQUESTS_MAX};
pub use ledger::{Ledger, LedgerConfig};
pub use local_run::LocalRun;
pub use memory_cold_store::MemoryColdStore;
pub use partitioning::{ledger_partition, partition_of, Placement, PlacementKind};
pub use sessions::{ClientReply, ClientRequest, ClientRequestError, Sessions, CLIENT_SESSIONS_MAX};
pub use snapshot::{SnapshotError, SNAPSHOT_FORMAT_VERSION};
pub use statuses::PendingStatus;
pub use table::Table;
pub use transfer_table::TransferTable;
pub use txn::{ClientAnswer, Created, CreatedBalances, Decision, Effects, ReadSet, Scratch};

/// Limits of the state machine, named once.
pub mod limits {
    /// Most events in one `create_*` or lookup batch.
    pub const BATCH_EVENTS_MAX: usize = kassa_wire::BATCH_EVENTS_MAX;
    /// Most results one query returns, whatever its `limit` (a reply must fit one message).
    pub const QUERY_RESULTS_MAX: usize = kassa_wire::BATCH_EVENTS_MAX;
    /// Most pending transfers one [`crate::Ledger::expire_pending_transfers`] call expires.
    pub const EXPIRE_BATCH_MAX: usize = kassa_wire::BATCH_EVENTS_MAX;
    /// Most accounts and most transfers one partition holds (positions are `u32`).
    pub const RECORDS_MAX: usize = u32::MAX as usize;
    /// Most partitions a cluster may have.
    pub const PARTITIONS_MAX: u32 = 1024;
}
