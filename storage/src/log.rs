//! The partition log: the public API over the in-memory index (`state.rs`), the writer task
//! (`writer.rs`) and recovery (`recovery.rs`). The `raft` crate calls it, one log per
//! partition, on the core thread that owns the partition.
//!
//! # Files
//! A directory per log holds segment files `log-<first index, 20 digits>.seg` and, once a
//! purge happened, the durable file `log-meta` with the purge point. A segment is a sequence
//! of frames (`frame.rs`) from offset 0, with no gaps; after the last frame the file holds
//! only zeros, up to the end of that 4 KiB block or further: the writer zeroes the last
//! segment ahead of its end while its writes are small (`LogOptions::zero_ahead`), so that
//! later writes overwrite blocks the file holds already and their fdatasync has no metadata
//! to commit. Frames are packed, not padded to blocks: each write re-writes the last partial
//! block with the same bytes it already held in front of the new frames (the writer keeps
//! that block in memory).
//! A write that tears can therefore only damage bytes after the durable end, which were zero
//! before it.
//!
//! # Protocol order (persist before you ack)
//! 1. `append` checks the entries, encodes them into the pending buffer, indexes them (they
//!    are readable from memory at once) and takes a ticket: the total of staged bytes.
//! 2. The writer task writes pending frames (at most `FLUSH_SIZE_MAX` bytes at a time) to a
//!    segment file opened `O_DIRECT | O_DSYNC`, so the write completes only once it is durable,
//!    as a write and an `fdatasync` would; a new segment file is created and the directory
//!    fsynced first.
//! 3. Only after that write returned does it advance `durable_total`; an append resolves
//!    when `durable_total` reaches its ticket. Appends staged during a flush share the next
//!    durable write (group commit).
//!
//! `truncate_from` and `purge_before` take an exclusive turn in a FIFO gate (so operations
//! take effect in call order), wait until the writer is idle, change the files durably, and
//! only then change the index. Reads hold the gate shared. An I/O error in the writer, or a
//! truncate or purge that fails or is cancelled half-way, poisons the log: every later call
//! fails with `StorageError::Poisoned` and the node must reopen it (recovery sorts it out).
//!
//! An `append` future dropped after its first poll has staged its entries: they are in the
//! log and get written, only the acknowledgement is lost. The log directory is `flock`ed
//! while a log is open, so two logs (or processes) never write the same files; dropping a log
//! whose writer is idle releases it at once, otherwise the writer does when it is done
//! (`close` waits for that).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::aligned::{AlignedBuffer, BLOCK_SIZE};
use crate::files::{self, WindowReader};
use crate::frame::{self, FrameCheck, FRAME_SIZE_MAX};
use crate::gate::{Gate, Notify};
use crate::state::{Failure, Location, ReadRun, State};
use crate::{recovery, writer, StorageError};

/// The most bytes one write + fdatasync covers: also the largest region a torn write can
/// damage, which recovery relies on.
pub const FLUSH_SIZE_MAX: usize = 16 * 1024 * 1024;
/// The most bytes staged and not yet durable; appends wait for room beyond it.
pub const PENDING_SIZE_MAX: usize = 64 * 1024 * 1024;
/// The smallest `LogOptions::segment_size_max`.
pub const SEGMENT_SIZE_MIN: u64 = BLOCK_SIZE as u64;
/// The largest window `read` and recovery read through at once.
pub const READ_WINDOW_SIZE_MAX: usize = FLUSH_SIZE_MAX;

const _: () = assert!(FLUSH_SIZE_MAX % BLOCK_SIZE == 0);
const _: () = assert!(FRAME_SIZE_MAX + BLOCK_SIZE <= FLUSH_SIZE_MAX);
const _: () = assert!(FRAME_SIZE_MAX <= PENDING_SIZE_MAX);
const _: () = assert!(FRAME_SIZE_MAX + BLOCK_SIZE <= READ_WINDOW_SIZE_MAX);

/// One log entry: Raft's term and index, and the payload bytes the layer above gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub term: u64,
    pub index: u64,
    pub payload: Vec<u8>,
}

/// What an append needs of an entry, borrowed: the layer above may keep its payload (say, to
/// apply it without reading it back), so storage copies the bytes into its frames only.
pub trait Appendable {
    fn term(&self) -> u64;
    fn index(&self) -> u64;
    fn payload(&self) -> &[u8];
}

impl Appendable for LogEntry {
    fn term(&self) -> u64 {
        self.term
    }
    fn index(&self) -> u64 {
        self.index
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
}

#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment file is closed and a new one started once it is at least this large.
    pub segment_size_max: u64,
    /// Bytes of zeros the writer writes at a time past the last segment's end, whenever less
    /// than half of that is left before a small flush (a multiple of 4 KiB, at most
    /// `ZERO_AHEAD_MAX`; 0 turns it off), and only while the log's recent flushes average at
    /// most `ZERO_AHEAD_FLUSH_SIZE_MAX`. Flushes then overwrite blocks the file holds already,
    /// so their fdatasync has no file size or extents to commit: on ext4 with many logs
    /// syncing at once that halves its latency.
    pub zero_ahead: u64,
}

/// The largest `LogOptions::zero_ahead`: one write of the writer's buffer past its kept block.
pub const ZERO_AHEAD_MAX: u64 = (FLUSH_SIZE_MAX - BLOCK_SIZE) as u64;

/// Zeros ahead pay for themselves while flushes are small: each byte of the log is written
/// twice (once as zeros), to save each flush the commit of a file size and extents. A log
/// whose recent flushes average more than this (a busy partition writing megabyte batches)
/// appends instead.
pub const ZERO_AHEAD_FLUSH_SIZE_MAX: u64 = 256 * 1024;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size_max: 64 * 1024 * 1024,
            zero_ahead: 4 * 1024 * 1024,
        }
    }
}

/// What opening the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Entries in the log after recovery (not counting purged ones).
    pub entries: u64,
    pub torn_tail: Option<TornTail>,
}

/// A partial last write that was cut off on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: std::path::PathBuf,
    /// Where the last complete frame ends: the file is cut here.
    pub offset: u64,
    /// Bytes of the file that were past `offset`.
    pub bytes_discarded: u64,
}

/// Counters, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Entries made durable by the writer.
    pub entries_appended: u64,
    pub writes: u64,
    /// Durable writes of frames (each segment write is `O_DSYNC`: its own fdatasync).
    pub fdatasyncs: u64,
    pub bytes_written: u64,
    /// The most entries one write + fdatasync made durable.
    pub flush_entries_max: u64,
    pub segments_created: u64,
    pub segments_removed: u64,
    /// Writes of zeros ahead of the durable end (`LogOptions::zero_ahead`), each with its
    /// fdatasync; not counted in `writes`, `fdatasyncs` or `bytes_written`.
    pub zero_fills: u64,
    pub bytes_zeroed: u64,
}

/// A partition's log: segment files in one directory. See the crate documentation.
pub struct PartitionLog {
    shared: Rc<Shared>,
}

/// What the log's callers and its writer task share on the log's thread.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub options: LogOptions,
    pub state: RefCell<State>,
    pub gate: Gate,
    /// Wakes the writer when frames are staged or the log closes.
    pub work: Notify,
    /// Wakes appenders and exclusive operations after every flush or failure.
    pub durable: Notify,
    /// The directory's `flock`, released once no write can happen any more: when the log is
    /// dropped with the writer idle, or when the writer exits.
    pub lock: RefCell<Option<std::fs::File>>,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir` and recovers it.
    pub async fn open(
        dir: &Path,
        options: LogOptions,
    ) -> Result<(PartitionLog, Recovery), StorageError> {
        if options.segment_size_max < SEGMENT_SIZE_MIN {
            return Err(StorageError::InvalidOptions {
                what: "segment_size_max below 4 KiB",
            });
        }
        if options.zero_ahead > ZERO_AHEAD_MAX || options.zero_ahead % BLOCK_SIZE as u64 != 0 {
            return Err(StorageError::InvalidOptions {
                what: "zero_ahead not a multiple of 4 KiB up to ZERO_AHEAD_MAX",
            });
        }
        recovery::ensure_directory(dir).await?;
        let lock = files::lock_directory(dir)?;
        let buffer = AlignedBuffer::new(FLUSH_SIZE_MAX);
        let (state, recovery) = recovery::recover(dir, buffer).await?;
        if cfg!(debug_assertions) {
            state.validate();
        }
        let shared = Rc::new(Shared {
            dir: dir.to_path_buf(),
            options,
            state: RefCell::new(state),
            gate: Gate::default(),
            work: Notify::default(),
            durable: Notify::default(),
            lock: RefCell::new(Some(lock)),
        });
        monoio::spawn(writer::run(shared.clone()));
        Ok((PartitionLog { shared }, recovery))
    }

    /// Appends entries whose indexes continue the log; resolves once they are durable.
    /// Concurrent calls are written and synced together (group commit).
    pub async fn append<E: Appendable>(&self, entries: Vec<E>) -> Result<(), StorageError> {
        let shared = &*self.shared;
        shared.check_usable()?;
        let size = State::check_entries(&entries)?;
        if entries.is_empty() {
            return Ok(());
        }
        let ticket = if shared.gate.is_idle() && shared.state.borrow().fits(size) {
            shared.stage(&entries)?
        } else {
            let _turn = shared.gate.turn().await;
            shared
                .durable
                .wait_until(|| {
                    let state = shared.state.borrow();
                    state.fits(size) || state.failure.is_some()
                })
                .await;
            shared.check_usable()?;
            shared.stage(&entries)?
        };
        shared
            .durable
            .wait_until(|| {
                let state = shared.state.borrow();
                state.durable_total >= ticket || state.failure.is_some()
            })
            .await;
        let state = shared.state.borrow();
        match &state.failure {
            Some(failure) if state.durable_total < ticket => Err(failure.to_io_error()),
            _ => Ok(()),
        }
    }

    /// The first index still in the log, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.shared.state.borrow().first_index()
    }

    /// The last entry's term and index, if any. Includes entries whose append has not
    /// resolved yet (they are readable, not yet durable).
    pub fn last(&self) -> Option<(u64, u64)> {
        self.shared.state.borrow().last()
    }

    /// Where a read from `start` (to at most `end`) should stop to hold at most `bytes_max`
    /// bytes of frames; always past at least one entry, if the log holds `start`.
    pub fn read_end_within(&self, start: u64, end: u64, bytes_max: u64) -> u64 {
        self.shared
            .state
            .borrow()
            .read_end_within(start, end, bytes_max)
    }

    /// Entries with `start <= index < end`, in order. The range is cut at the log's end;
    /// `start` below the first index is `StorageError::Purged`.
    pub async fn read(&self, start: u64, end: u64) -> Result<Vec<LogEntry>, StorageError> {
        let shared = &*self.shared;
        shared.check_usable()?;
        if start >= end {
            return Ok(Vec::new());
        }
        let _hold = shared.gate.shared().await;
        shared.check_usable()?;
        let runs = shared.state.borrow().plan_read(start, end)?;
        let mut entries = Vec::new();
        for run in runs {
            match run {
                ReadRun::Memory(mut copied) => entries.append(&mut copied),
                ReadRun::Disk {
                    file,
                    path,
                    durable_end,
                    first_index,
                    locations,
                } => {
                    let mut reader =
                        WindowReader::new(&file, &path, durable_end, read_window_size(&locations));
                    read_frames(&mut reader, &path, first_index, &locations, &mut entries).await?;
                }
            }
        }
        Ok(entries)
    }

    /// Removes every entry with index `>= index` (a conflicting suffix); durable on return.
    /// Appends then continue from `index`. Truncating below the purge point (entries a
    /// snapshot covers) is `StorageError::TruncateBeforeFirst`.
    pub async fn truncate_from(&self, index: u64) -> Result<(), StorageError> {
        let shared = &*self.shared;
        let _turn = shared.exclusive().await?;
        {
            let state = shared.state.borrow();
            if state.next_index.is_none_or(|next| index >= next) {
                return Ok(());
            }
            if index < state.purged_before {
                let first = state.first_index().unwrap_or(state.purged_before);
                return Err(StorageError::TruncateBeforeFirst { index, first });
            }
        }
        let mut guard = PoisonOnDrop {
            shared,
            operation: "truncate",
            armed: true,
        };
        crate::truncate::truncate_from(shared, index).await?;
        guard.armed = false;
        Ok(())
    }

    /// Removes the segments whose entries all have index `< index` (a snapshot covers them).
    /// The log then starts at `index` (persisted): reads below it fail with `Purged`, and if
    /// `index` is past the last entry the next append must carry `index`.
    pub async fn purge_before(&self, index: u64) -> Result<(), StorageError> {
        let shared = &*self.shared;
        let _turn = shared.exclusive().await?;
        {
            let state = shared.state.borrow();
            let start = state.first_index().or(state.next_index);
            if start.is_some_and(|start| index <= start) || index <= state.purged_before {
                return Ok(());
            }
        }
        let mut guard = PoisonOnDrop {
            shared,
            operation: "purge",
            armed: true,
        };
        crate::truncate::purge_before(shared, index).await?;
        guard.armed = false;
        Ok(())
    }

    /// Lets the writer finish what is staged and stop, then closes the files. Dropping the
    /// log does the same in the background; `close` is for callers that reopen the same
    /// directory at once and must not overlap the old writer.
    pub async fn close(self) -> Result<(), StorageError> {
        let shared = &*self.shared;
        shared.state.borrow_mut().closed = true;
        shared.work.notify_all();
        shared
            .durable
            .wait_until(|| !shared.state.borrow().writer_running)
            .await;
        shared.check_usable()
    }

    pub fn stats(&self) -> LogStats {
        self.shared.state.borrow().stats
    }

    /// Asserts the in-memory invariants (O(entries); for tests).
    pub fn validate(&self) {
        self.shared.state.borrow().validate();
    }
}

impl Drop for PartitionLog {
    /// The writer finishes what was staged, then exits and closes the files.
    fn drop(&mut self) {
        let mut state = self.shared.state.borrow_mut();
        state.closed = true;
        if state.is_idle() {
            // Nothing can be written any more: another open of the directory may start now.
            self.shared.lock.borrow_mut().take();
        }
        drop(state);
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn check_usable(&self) -> Result<(), StorageError> {
        match &self.state.borrow().failure {
            Some(failure) => Err(failure.to_poisoned()),
            None => Ok(()),
        }
    }

    /// Stages entries (the caller holds the gate or found it idle) and wakes the writer.
    fn stage<E: Appendable>(&self, entries: &[E]) -> Result<u64, StorageError> {
        let mut state = self.state.borrow_mut();
        state.check_contiguous(entries)?;
        let ticket = state.stage(&self.dir, self.options.segment_size_max, entries);
        drop(state);
        self.work.notify_all();
        Ok(ticket)
    }

    /// An exclusive turn, once every earlier append is durable and no read runs.
    async fn exclusive(&self) -> Result<crate::gate::Turn<'_>, StorageError> {
        self.check_usable()?;
        let turn = self.gate.exclusive().await;
        self.durable
            .wait_until(|| {
                let state = self.state.borrow();
                state.is_idle() || state.failure.is_some()
            })
            .await;
        self.check_usable()?;
        Ok(turn)
    }
}

/// Poisons the log if a truncate or purge stops half-way (error or cancellation): the files
/// and the index may disagree until the log is reopened.
struct PoisonOnDrop<'a> {
    shared: &'a Shared,
    operation: &'static str,
    armed: bool,
}

impl Drop for PoisonOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.shared.state.borrow_mut();
        state.failure.get_or_insert_with(|| Failure {
            operation: self.operation,
            path: self.shared.dir.clone(),
            kind: std::io::ErrorKind::Interrupted,
            message: format!("{} stopped half-way", self.operation),
        });
        drop(state);
        self.shared.work.notify_all();
        self.shared.durable.notify_all();
    }
}

/// A window that holds the run's largest frame from any block offset, and the whole run if
/// it is small.
fn read_window_size(locations: &[Location]) -> usize {
    let span = match (locations.first(), locations.last()) {
        (Some(first), Some(last)) => (last.end() - first.offset) as usize,
        _ => 0,
    };
    let largest = locations
        .iter()
        .map(|location| location.size as usize)
        .max()
        .unwrap_or(0);
    (span + BLOCK_SIZE)
        .min(READ_WINDOW_SIZE_MAX)
        .max(largest + BLOCK_SIZE)
}

/// Reads and checks the frames at `locations` (entries `first_index..`).
async fn read_frames(
    reader: &mut WindowReader<'_>,
    path: &Path,
    first_index: u64,
    locations: &[Location],
    entries: &mut Vec<LogEntry>,
) -> Result<(), StorageError> {
    for (index, location) in (first_index..).zip(locations) {
        let bytes = reader
            .bytes(location.offset, location.size as usize)
            .await?;
        let corrupt = |what| StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: location.offset,
            what,
        };
        let header = match frame::check(bytes) {
            FrameCheck::Valid(header) => header,
            FrameCheck::Short => return Err(corrupt("frame cut short")),
            FrameCheck::BadHeader(what) => return Err(corrupt(what)),
            FrameCheck::BadChecksum { .. } => return Err(corrupt("checksum mismatch")),
        };
        if header.index != index || header.term != location.term {
            return Err(corrupt("frame holds another entry than the index says"));
        }
        let payload = frame::payload(bytes, &header).to_vec();
        entries.push(LogEntry {
            term: header.term,
            index,
            payload,
        });
    }
    Ok(())
}
