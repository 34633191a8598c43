//! `kassa-node`: the `kassa` process. It starts one thread per core, each owning its partitions
//! (`cores`), the HTTP API on a helper thread (`http`) and TigerBeetle's client protocol on the
//! core threads (`wire`), and routes every request to the
//! partition that owns its records. It uses every other Kassa crate; nothing depends on it.
//!
//! Partitions: a cluster has `P` partitions, fixed when its data directory is formatted
//! (`meta`); an account lives in partition `partition_of(id, P)` (`partitioning`). Batches that
//! span partitions run as atomic transactions (`coordinator`); `service` is the one place
//! that routes every operation.

pub mod clock;
pub mod config;
pub mod coordinator;
pub mod cores;
pub mod descriptors;
pub mod fail_stop;
mod fault_injection;
pub mod http;
pub mod id_directory;
mod join;
pub mod log_limit;
pub mod meta;
pub mod partitioning;
pub mod rare_path;
pub mod service;
pub mod wire;

/// Faults of the node, as the APIs report them.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Partition(#[from] kassa_raft::PartitionError),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("transaction failed: {0}")]
    Transaction(String),
    #[error("start: {0}")]
    Start(String),
    /// A read met an entry of the partition's history it could not read from its runs (an
    /// I/O error, a damaged block).
    #[error("partition {partition}: {error}")]
    ColdRead {
        partition: u32,
        error: kassa_shard::ColdError,
    },
}
