//! Storage faults: typed, with the file, offset or index they concern.
//!
//! An operating fault (a failed syscall, bad bytes on disk, a caller's request that does not fit
//! the log) is one of these; a bug in this crate is an assertion instead. Every variant carries
//! structured fields so callers (the `raft` crate, the node's health checks) can act on them
//! without parsing messages.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt data: {path} at offset {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: &'static str,
    },
    #[error("entry index {index} does not follow the log's last index {last}")]
    NotContiguous { index: u64, last: u64 },
    #[error("entry {index} has a payload of {size} bytes, more than {size_max}")]
    EntryTooLarge {
        index: u64,
        size: u64,
        size_max: u64,
    },
    #[error("one append of {size} bytes is more than the {size_max} bytes a log may buffer")]
    AppendTooLarge { size: u64, size_max: u64 },
    #[error("entry {index} is purged; the log starts at {first}")]
    Purged { index: u64, first: u64 },
    #[error("cannot truncate from {index}: the log starts at {first} (a snapshot covers it)")]
    TruncateBeforeFirst { index: u64, first: u64 },
    #[error("the log in {path} failed earlier ({operation}: {cause}) and must be reopened")]
    Poisoned {
        operation: &'static str,
        path: PathBuf,
        /// What the failure was, as first reported.
        cause: String,
    },
    #[error("the log in {path} is open already (by this process or another)")]
    Locked { path: PathBuf },
    #[error("invalid log options: {what}")]
    InvalidOptions { what: &'static str },
}

impl StorageError {
    /// An `Io` error for `operation` on `path`.
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> StorageError {
        StorageError::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}
