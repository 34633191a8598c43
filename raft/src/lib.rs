//! `kassa-raft`: every partition is an openraft group whose log is `kassa-storage`'s
//! [`kassa_storage::PartitionLog`], whose state machine is `kassa-shard`'s [`Ledger`] and whose
//! snapshots are the ledger's checkpoints (a manifest and runs). All openraft types stay inside this crate: the node
//! sees [`Partition`], [`Command`] and [`Reply`] only.
//!
//! A write is acknowledged only once its log entry is committed (fsynced on a quorum: for now
//! the single voter) and applied. Each partition is a single-voter group for now: it elects
//! itself, needs no network (`network`'s peers are unreachable by design) and commits an
//! entry as soon as its own log made it durable.
//!
//! How the pieces map onto openraft (0.10 alpha, `single-threaded`, monoio runtime):
//! - `types`: the type configuration (standard leader ids, so a committed leader id is the
//!   `u64` term `kassa-storage` keeps per entry; commands travel as their encoded bytes);
//! - `log_store`: `RaftLogStorage`/`RaftLogReader` over `PartitionLog` and durable files
//!   for the vote and the purge point;
//! - `state_machine`: `RaftStateMachine`/`RaftSnapshotBuilder` over the ledger, snapshots
//!   taken as checkpoints;
//! - `checkpoint`: a checkpoint's files: runs per keyspace and the manifest naming them;
//! - `merge`: the tiers in which a checkpoint merges id runs into its own, and the merge;
//! - `cold_runs`: the runs the ledger reads its cold entries from, and their read-ahead;
//! - `yield_now`: a turn for the core's other tasks during long work on it;
//! - `codec`: the bytes of everything stored;
//! - `partition`: [`Partition`], which opens, initializes on first open, waits until the
//!   whole log is applied, turns writes into `client_write` calls and shuts down;
//! - `network`: a `RaftNetworkFactory` without peers;
//! - `conformance` (tests only): openraft's storage suite run against the two adapters.
//!
//! Everything is `!Send`: a partition lives on the monoio thread (with timers enabled) that
//! opened it. Callers: the node's core threads; the tests in `tests/` (`t01_single_voter`,
//! `t02_restart` with crashes by SIGKILL of a child process, `t03_snapshot`, `t04_memory`).
//!
//! `memory`: the node's bound on its partitions' memtables ([`MemoryBudget`]), past which a
//! partition asks for a checkpoint.

mod checkpoint;
mod codec;
mod cold_runs;
#[cfg(test)]
mod conformance;
mod log_store;
mod memory;
mod merge;
mod metrics;
mod network;
mod partition;
mod state_machine;
#[cfg(test)]
mod test_support;
mod types;
mod yield_now;

use std::path::PathBuf;
use std::sync::Arc;

pub use codec::CodecError;
pub use cold_runs::CACHE_BLOCKS_DEFAULT;
pub use kassa_shard::{
    ClientRead, Command, CommandDecodeError, Ledger, LedgerConfig, Reply, SnapshotError,
};
pub use kassa_storage::LogOptions;
pub use memory::{
    checkpoint_for_memory, memory_wait, writes_wait_for_memory, MemoryBudget, MemoryWait,
    MEMTABLE_WAIT_FACTOR,
};
pub use metrics::{KeyspaceStatus, PartitionMetrics, PartitionStatus, StoreStatus};
pub use partition::Partition;
pub use state_machine::ColdHolds;

/// The named limits and timings of a partition's Raft group.
pub mod limits {
    pub use crate::partition::{
        API_CHANNEL_SIZE, ELECTION_TIMEOUT_MAX_MS, ELECTION_TIMEOUT_MIN_MS, HEARTBEAT_INTERVAL_MS,
        OPEN_READY_TIMEOUT_MS, SHUTDOWN_WAIT_MS_MAX, STOP_CHECKPOINT_LOG_BYTES,
        STOP_CHECKPOINT_WAIT_MS, WRITE_ATTEMPTS_MAX, WRITE_RETRY_DELAY_MS,
    };
}

/// How to open one partition.
#[derive(Clone, Debug)]
pub struct PartitionConfig {
    /// The partition's number, `0..P`.
    pub partition: u32,
    /// Its own directory: log segments, vote, snapshots.
    pub dir: PathBuf,
    pub ledger: LedgerConfig,
    /// Take a snapshot (and purge the log before it) after this many applied entries.
    pub snapshot_entries: u64,
    /// Blocks (4 KiB each) of cold runs the partition keeps in its cache.
    pub cache_blocks: usize,
    /// The node's bound on its partitions' memtables, which this one shares: past it, the
    /// partition checkpoints (`memory`).
    pub memory: Arc<MemoryBudget>,
}

/// Why a partition could not open or serve.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition {partition}: storage: {source}")]
    Storage {
        partition: u32,
        source: kassa_storage::StorageError,
    },
    #[error("partition {partition}: {what}")]
    Raft { partition: u32, what: String },
    #[error("partition {partition} is shutting down")]
    ShuttingDown { partition: u32 },
    #[error("partition {partition}: bad configuration: {what}")]
    Config { partition: u32, what: String },
    #[error("partition {partition}: file {file} is damaged: {source}")]
    Damaged {
        partition: u32,
        file: &'static str,
        source: CodecError,
    },
    #[error("partition {partition}: the snapshot does not restore: {source}")]
    Snapshot {
        partition: u32,
        source: SnapshotError,
    },
    #[error(
        "partition {partition}: the log starts at index {first} but was purged only through \
         {purged:?}: entries are missing"
    )]
    LogGap {
        partition: u32,
        first: u64,
        purged: Option<u64>,
    },
    #[error(
        "partition {partition}: the log was purged through index {purged} but the checkpoint \
         covers only {snapshot:?}: the checkpoint file is missing or older than the purge"
    )]
    SnapshotBehindPurge {
        partition: u32,
        purged: u64,
        snapshot: Option<u64>,
    },
    #[error("partition {partition}: a command carries {events} events, more than {events_max}")]
    BatchTooLarge {
        partition: u32,
        events: usize,
        events_max: usize,
    },
    #[error("partition {partition}: the committed entry is not a command: {source}")]
    Rejected {
        partition: u32,
        source: CommandDecodeError,
    },
    #[error("partition {partition}: this node does not lead it (leader: {leader:?})")]
    NotLeader { partition: u32, leader: Option<u64> },
    #[error(
        "partition {partition}: the write's outcome is unknown: its entry was replaced by \
         another leader's log; retry only with the same ids (idempotent)"
    )]
    OutcomeUnknown { partition: u32 },
    #[error("partition {partition}: not ready after {waited_ms} ms: {what}")]
    NotReady {
        partition: u32,
        waited_ms: u64,
        what: String,
    },
}

impl PartitionError {
    /// Whether a write that failed with this error was refused before its entry reached the
    /// log, so it will never commit. Any other failed write's entry may still commit.
    pub fn refused_before_append(&self) -> bool {
        matches!(
            self,
            PartitionError::BatchTooLarge { .. } | PartitionError::NotLeader { .. }
        )
    }

    /// The partition the error is about.
    pub fn partition(&self) -> u32 {
        match self {
            PartitionError::Storage { partition, .. }
            | PartitionError::Raft { partition, .. }
            | PartitionError::ShuttingDown { partition }
            | PartitionError::Config { partition, .. }
            | PartitionError::Damaged { partition, .. }
            | PartitionError::Snapshot { partition, .. }
            | PartitionError::LogGap { partition, .. }
            | PartitionError::SnapshotBehindPurge { partition, .. }
            | PartitionError::BatchTooLarge { partition, .. }
            | PartitionError::Rejected { partition, .. }
            | PartitionError::NotLeader { partition, .. }
            | PartitionError::OutcomeUnknown { partition }
            | PartitionError::NotReady { partition, .. } => *partition,
        }
    }
}
