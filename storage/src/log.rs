//! The partition log. (Interface first; the implementation follows.)

use std::path::Path;

use crate::StorageError;

/// One log entry: Raft's term and index, and the payload bytes the layer above gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub term: u64,
    pub index: u64,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment file is closed and a new one started once it is at least this large.
    pub segment_size_max: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_size_max: 64 * 1024 * 1024 }
    }
}

/// What opening the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub entries: u64,
    pub torn_tail: Option<TornTail>,
}

/// A partial last write that was cut off on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: std::path::PathBuf,
    pub offset: u64,
    pub bytes_discarded: u64,
}

/// Counters, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub entries_appended: u64,
    pub writes: u64,
    pub fdatasyncs: u64,
    pub bytes_written: u64,
}

/// A partition's log: segment files in one directory. See the crate documentation.
pub struct PartitionLog {
    _private: (),
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir` and recovers it.
    pub async fn open(
        dir: &Path,
        options: LogOptions,
    ) -> Result<(PartitionLog, Recovery), StorageError> {
        let _ = (dir, options);
        todo!()
    }

    /// Appends entries whose indexes continue the log; resolves once they are durable.
    /// Concurrent calls are written and synced together (group commit).
    pub async fn append(&self, entries: Vec<LogEntry>) -> Result<(), StorageError> {
        let _ = entries;
        todo!()
    }

    /// The first index still in the log, if any.
    pub fn first_index(&self) -> Option<u64> {
        todo!()
    }

    /// The last entry's term and index, if any.
    pub fn last(&self) -> Option<(u64, u64)> {
        todo!()
    }

    /// Entries with `start <= index < end`, in order.
    pub async fn read(&self, start: u64, end: u64) -> Result<Vec<LogEntry>, StorageError> {
        let _ = (start, end);
        todo!()
    }

    /// Removes every entry with index `>= index` (a conflicting suffix); durable on return.
    pub async fn truncate_from(&self, index: u64) -> Result<(), StorageError> {
        let _ = index;
        todo!()
    }

    /// Removes the segments whose entries all have index `< index` (a snapshot covers them).
    pub async fn purge_before(&self, index: u64) -> Result<(), StorageError> {
        let _ = index;
        todo!()
    }

    pub fn stats(&self) -> LogStats {
        todo!()
    }
}
