//! `kassa-raft`: every partition is an openraft group whose log is `kassa-storage`'s
//! [`kassa_storage::PartitionLog`], whose state machine is `kassa-shard`'s [`Ledger`] and whose
//! snapshots are the ledger's snapshots. All openraft types stay inside this crate: the node
//! sees [`Partition`], [`Command`] and [`Reply`] only.
//!
//! A write is acknowledged only once its log entry is committed (fsynced on a quorum: for now
//! the single voter) and applied. (Interface first; the implementation follows.)

use std::path::PathBuf;

pub use kassa_shard::{Command, Ledger, LedgerConfig, Reply};

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
}

/// Why a partition could not open or serve.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition {partition}: storage: {source}")]
    Storage { partition: u32, source: kassa_storage::StorageError },
    #[error("partition {partition}: {what}")]
    Raft { partition: u32, what: String },
    #[error("partition {partition} is shutting down")]
    ShuttingDown { partition: u32 },
}

/// One open partition on its core: a single-voter Raft group for now.
pub struct Partition {
    _private: (),
}

impl Partition {
    /// Opens the partition in `config.dir` (recovering its log and snapshot, and initializing
    /// a single-voter group on first open) and starts its Raft tasks on the current monoio
    /// runtime.
    pub async fn open(config: PartitionConfig) -> Result<Partition, PartitionError> {
        let _ = config;
        todo!()
    }

    /// Proposes `command`, waits until it is committed and applied, and returns its reply.
    pub async fn write(&self, command: Command) -> Result<Reply, PartitionError> {
        let _ = command;
        todo!()
    }

    /// Runs `read` on the applied ledger state.
    pub fn read<R>(&self, read: impl FnOnce(&Ledger) -> R) -> R {
        let _ = read;
        todo!()
    }

    /// Stops the Raft tasks after in-flight writes finish.
    pub async fn shutdown(self) -> Result<(), PartitionError> {
        todo!()
    }
}
