//! Storage faults: typed, with the file and offset they concern.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{operation} {path}: {source}")]
    Io { operation: &'static str, path: PathBuf, source: std::io::Error },
    #[error("corrupt log: {path} at offset {offset}: {what}")]
    Corrupt { path: PathBuf, offset: u64, what: &'static str },
    #[error("entry index {index} does not follow the log's last index {last}")]
    NotContiguous { index: u64, last: u64 },
}
