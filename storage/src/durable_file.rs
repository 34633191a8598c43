//! Small files that must survive a crash whole or not at all: the Raft vote, snapshots,
//! cluster metadata. (Interface first; the implementation follows.)
//!
//! `write` puts the bytes, framed with their length and a CRC32C, into a temporary file,
//! fsyncs it, renames it over the old one and fsyncs the directory. `read` returns the bytes of
//! the last complete write, `None` if there was never one, and an error if the file is damaged.

use std::path::Path;

use crate::StorageError;

/// Replaces `dir/name` with `bytes`, durably and atomically.
pub async fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let _ = (dir, name, bytes);
    todo!()
}

/// The bytes last written to `dir/name`, or `None` if it does not exist.
pub async fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let _ = (dir, name);
    todo!()
}
