//! What a partition reports: where its Raft group stands ([`crate::Partition::status`]) and,
//! for the node's `/metrics`, what it holds and did ([`crate::Partition::metrics`]). Plain
//! values, gathered on the partition's core and read anywhere.

/// Where a partition's Raft group stands, for metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionStatus {
    pub partition: u32,
    pub term: u64,
    pub leader: bool,
    /// `None` while the Raft core runs; the fatal error (e.g. a failed fdatasync) once it has
    /// stopped, after which the partition serves nothing until the node restarts.
    pub fatal: Option<String>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// The term of the leader that wrote the last applied entry: once it equals `term` on a
    /// leader, no entry of an earlier leader can still commit.
    pub applied_term: Option<u64>,
    /// The last index the latest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// Entries up to this index are purged from the log.
    pub purged_index: Option<u64>,
    /// Run blocks read ahead of applies and of clients' reads by filter, so that they read
    /// cold entries without blocking.
    pub cold_prefetched_blocks: u64,
    /// Run blocks applies read with a blocking read (nothing prefetched them).
    pub cold_blocking_reads: u64,
}

/// What a partition holds and did ([`crate::Partition::metrics`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetrics {
    pub status: PartitionStatus,
    pub store: StoreStatus,
    /// What its memory holds until the next durable checkpoint (`memory`).
    pub memtable_bytes: u64,
    /// Transfers stored, in memory or cold.
    pub transfers: u64,
    /// Transfers in memory: those since the last durable checkpoint, and the pending ones.
    pub transfers_in_memory: u64,
    pub accounts: u64,
    /// Checkpoints asked for because the node was past its memory budget (openraft drops an
    /// ask made while a checkpoint is being written; that one frees the memtable too).
    pub memory_checkpoint_asks: u64,
    /// Writes that waited for a checkpoint to free memory: the node's memtables held more
    /// than twice their limit (the disk did not keep up with the load).
    pub memory_waits: u64,
    /// A fault stopped the partition (not a shutdown on request).
    pub failed: bool,
}

/// What a partition's directory holds: the last durable checkpoint's runs, and the cache of
/// cold blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// The last durable checkpoint's number (1 for the first).
    pub checkpoint: Option<u64>,
    /// The runs it names, by keyspace.
    pub keyspaces: Vec<KeyspaceStatus>,
    pub cache: kassa_storage::run::CacheStats,
}

/// The runs of one keyspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceStatus {
    /// The keyspace's name, as in its runs' file names.
    pub keyspace: &'static str,
    pub runs: u64,
    pub keys: u64,
    /// Their indexes and filters in memory (cold keyspaces' runs are open; others are read
    /// only at a restore).
    pub memory_bytes: u64,
    /// Their file names in the partition's directory.
    pub files: Vec<String>,
}
