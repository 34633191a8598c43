//! `kassa-storage`: each partition's segmented, checksummed, append-only log and its durable
//! small files (Raft vote, snapshots), written with io_uring through monoio. It knows nothing
//! of ledgers or Raft: entries carry a term, an index and opaque payload bytes.
//!
//! Durability contract: a future returned by [`PartitionLog::append`] resolves only after the
//! entries' bytes reached the disk (segment files are written `O_DSYNC`: a write completes
//! once durable, as after `fdatasync`); entries appended while a flush is in flight are
//! written together by the next one (group commit). On open, a torn tail
//! (a partial last write) is truncated and reported; a bad checksum anywhere before the tail is
//! corruption, and the log refuses to open, naming the file and offset. The file format, the
//! protocol order and the recovery rules are documented in `log.rs`, `frame.rs` and
//! `recovery.rs`.
//!
//! Everything here is `!Send` by design: a log lives on the core that owns its partition.
//! It sits at the bottom of the dependency graph beside `kassa-wire`.

mod aligned;
pub mod durable_file;
mod error;
mod files;
mod frame;
mod gate;
mod log;
mod recovery;
pub mod run;
mod state;
mod truncate;
mod writer;

pub use aligned::BLOCK_SIZE;
pub use error::StorageError;
pub use frame::{frame_size, ENTRY_PAYLOAD_SIZE_MAX, FRAME_HEADER_SIZE, FRAME_SIZE_MAX};
pub use log::{
    Appendable, LogEntry, LogOptions, LogStats, PartitionLog, Recovery, TornTail, FLUSH_SIZE_MAX,
    PENDING_SIZE_MAX, READ_WINDOW_SIZE_MAX, SEGMENT_SIZE_MIN, ZERO_AHEAD_FLUSH_SIZE_MAX,
    ZERO_AHEAD_MAX,
};
pub use recovery::{META_FILE_NAME, SECTOR_SIZE};
