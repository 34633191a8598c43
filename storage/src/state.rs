//! The log's in-memory state: its segments with the position of every unpurged entry, the
//! pending buffer of frames staged but not yet durable, and the group-commit counters. All
//! mutations are synchronous; `log.rs` and `writer.rs` call them between their awaits.
//!
//! Invariants (checked by [`State::validate`]):
//! - segments are in index order and contiguous: each starts where the previous one ends;
//! - every segment holds at least one unpurged entry, so `first_index` and `last` are simply
//!   the front and back of the deque; entries below `purged_before` are not indexed, so
//!   memory is bounded by what is not purged;
//! - within a segment, frames are contiguous from offset 0 (`base_index`'s frame may follow
//!   purged ones), `durable_end <= staged_end`, and the bytes between them are exactly the
//!   pending bytes of that segment, in order, across the segments that have any;
//! - `durable_total <= staged_total`, and their difference is the pending buffer's length.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use monoio::fs::File;

use crate::aligned::AlignedBuffer;
use crate::files::segment_file_name;
use crate::frame::{self, FrameCheck, ENTRY_PAYLOAD_SIZE_MAX};
use crate::log::{Appendable, LogEntry, LogStats, PENDING_SIZE_MAX};
use crate::StorageError;

/// Where one entry's frame lies in its segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub offset: u64,
    pub term: u64,
    /// The frame's size on disk, padding included.
    pub size: u32,
}

impl Location {
    pub fn end(&self) -> u64 {
        self.offset + self.size as u64
    }
}

/// One segment file and the entries indexed in it.
pub struct Segment {
    /// The index of the file's first frame, as its name says.
    pub first_index: u64,
    pub path: PathBuf,
    /// `None` until the writer creates the file for the segment's first write.
    pub file: Option<Rc<File>>,
    /// The index of `locations[0]`; larger than `first_index` when a purge cut inside.
    pub base_index: u64,
    pub locations: Vec<Location>,
    /// Bytes written durably.
    pub durable_end: u64,
    /// Bytes written or staged; frames past `durable_end` are in the pending buffer.
    pub staged_end: u64,
    /// The file's size as far as this log wrote it (frames, then zeros): flushes below it
    /// overwrite blocks the file holds already.
    pub file_end: u64,
}

impl Segment {
    pub fn new(dir: &Path, first_index: u64) -> Segment {
        Segment {
            first_index,
            path: dir.join(segment_file_name(first_index)),
            file: None,
            base_index: first_index,
            locations: Vec::new(),
            durable_end: 0,
            staged_end: 0,
            file_end: 0,
        }
    }

    pub fn next_index(&self) -> u64 {
        self.base_index + self.locations.len() as u64
    }

    pub fn location(&self, index: u64) -> Option<&Location> {
        let position = index.checked_sub(self.base_index)?;
        self.locations.get(usize::try_from(position).ok()?)
    }

    pub fn pending_size(&self) -> u64 {
        self.staged_end - self.durable_end
    }
}

/// Frames staged for the writer, in log order; durable bytes are dropped from the front.
#[derive(Default)]
pub struct PendingBuffer {
    bytes: Vec<u8>,
    /// Bytes before this were made durable; compacted away lazily.
    start: usize,
}

impl PendingBuffer {
    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Drops the first `size` bytes (they are durable now). Keeps the allocation.
    pub fn consume(&mut self, size: usize) {
        assert!(size <= self.len());
        self.start += size;
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        } else if self.start >= self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Why the log stopped: every later call fails until it is reopened.
#[derive(Clone, Debug)]
pub struct Failure {
    pub operation: &'static str,
    pub path: PathBuf,
    pub kind: std::io::ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn from_error(operation: &'static str, dir: &Path, error: &StorageError) -> Failure {
        match error {
            StorageError::Io {
                operation,
                path,
                source,
            } => Failure {
                operation,
                path: path.clone(),
                kind: source.kind(),
                message: source.to_string(),
            },
            other => Failure {
                operation,
                path: dir.to_path_buf(),
                kind: std::io::ErrorKind::Other,
                message: other.to_string(),
            },
        }
    }

    /// The error for a caller whose entries were pending when the log failed.
    pub fn to_io_error(&self) -> StorageError {
        let source = std::io::Error::new(self.kind, self.message.clone());
        StorageError::io(self.operation, self.path.clone(), source)
    }

    /// The error for a call made after the failure.
    pub fn to_poisoned(&self) -> StorageError {
        StorageError::Poisoned {
            operation: self.operation,
            path: self.path.clone(),
            cause: self.message.clone(),
        }
    }
}

/// One read, planned synchronously: entries already copied from memory, or frames to read from
/// a segment file up to its durable end.
pub enum ReadRun {
    Memory(Vec<LogEntry>),
    Disk {
        file: Rc<File>,
        path: PathBuf,
        durable_end: u64,
        first_index: u64,
        locations: Vec<Location>,
    },
}

pub struct State {
    pub segments: VecDeque<Segment>,
    pub pending: PendingBuffer,
    /// Entries below this are purged (persisted in the log's meta file); 0 if never purged.
    pub purged_before: u64,
    /// The index the next append must start at; `None` for a log that never held an entry.
    pub next_index: Option<u64>,
    pub staged_total: u64,
    pub durable_total: u64,
    pub flushing: bool,
    /// Set by `close` or drop: the writer exits once nothing is pending.
    pub closed: bool,
    pub writer_running: bool,
    pub failure: Option<Failure>,
    /// The writer's buffer; `None` while a write is in flight. Its first block holds the kept
    /// part of the last block of segment `tail_of`.
    pub write_buffer: Option<AlignedBuffer>,
    pub tail_of: Option<u64>,
    /// A moving average of the writer's recent flush sizes in bytes (each flush weighs a
    /// quarter): zeros ahead are written only while flushes are small.
    pub flush_size_recent: u64,
    pub stats: LogStats,
}

impl State {
    pub fn new(purged_before: u64, write_buffer: AlignedBuffer) -> State {
        State {
            segments: VecDeque::new(),
            pending: PendingBuffer::default(),
            purged_before,
            next_index: None,
            staged_total: 0,
            durable_total: 0,
            flushing: false,
            closed: false,
            writer_running: true,
            failure: None,
            write_buffer: Some(write_buffer),
            tail_of: None,
            flush_size_recent: 0,
            stats: LogStats::default(),
        }
    }

    pub fn first_index(&self) -> Option<u64> {
        self.segments.front().map(|segment| segment.base_index)
    }

    pub fn last(&self) -> Option<(u64, u64)> {
        let segment = self.segments.back()?;
        let location = segment.locations.last()?;
        Some((location.term, segment.next_index() - 1))
    }

    pub fn has_pending(&self) -> bool {
        self.durable_total < self.staged_total
    }

    /// Nothing staged and nothing in flight: the files are the writer's no more.
    pub fn is_idle(&self) -> bool {
        !self.has_pending() && !self.flushing
    }

    pub fn fits(&self, size: u64) -> bool {
        self.pending.len() as u64 + size <= PENDING_SIZE_MAX as u64
    }

    /// Checks an append that does not depend on the log's state; returns its size in frames.
    pub fn check_entries<E: Appendable>(entries: &[E]) -> Result<u64, StorageError> {
        let mut size: u64 = 0;
        for entry in entries {
            let payload_size = entry.payload().len();
            if payload_size > ENTRY_PAYLOAD_SIZE_MAX {
                return Err(StorageError::EntryTooLarge {
                    index: entry.index(),
                    size: payload_size as u64,
                    size_max: ENTRY_PAYLOAD_SIZE_MAX as u64,
                });
            }
            size += frame::frame_size(payload_size) as u64;
        }
        if size > PENDING_SIZE_MAX as u64 {
            return Err(StorageError::AppendTooLarge {
                size,
                size_max: PENDING_SIZE_MAX as u64,
            });
        }
        Ok(size)
    }

    /// Checks that `entries` continue the log.
    pub fn check_contiguous<E: Appendable>(&self, entries: &[E]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let start = self.next_index.unwrap_or(first.index());
        for (offset, entry) in entries.iter().enumerate() {
            // An index of u64::MAX would leave no next index: refuse it as not contiguous.
            let expected = start
                .checked_add(offset as u64)
                .filter(|&index| index < u64::MAX);
            if expected != Some(entry.index()) {
                let last = expected.unwrap_or(u64::MAX).wrapping_sub(1);
                return Err(StorageError::NotContiguous {
                    index: entry.index(),
                    last,
                });
            }
        }
        Ok(())
    }

    /// Encodes `entries` into the pending buffer and indexes them, starting a new segment
    /// whenever the current one reached `segment_size_max`. Returns the ticket: the append is
    /// durable once `durable_total` reaches it.
    pub fn stage<E: Appendable>(
        &mut self,
        dir: &Path,
        segment_size_max: u64,
        entries: &[E],
    ) -> u64 {
        for entry in entries {
            let (term, index) = (entry.term(), entry.index());
            let full = self
                .segments
                .back()
                .is_none_or(|last| last.staged_end >= segment_size_max);
            if full {
                self.segments.push_back(Segment::new(dir, index));
            }
            let segment = self.segments.back_mut().expect("a segment to stage into");
            assert_eq!(segment.next_index(), index);
            let before = self.pending.bytes.len();
            frame::encode(&mut self.pending.bytes, term, index, entry.payload());
            let size = (self.pending.bytes.len() - before) as u32;
            let location = Location {
                offset: segment.staged_end,
                term,
                size,
            };
            segment.locations.push(location);
            segment.staged_end += size as u64;
            self.staged_total += size as u64;
        }
        if let Some(last) = entries.last() {
            self.next_index = Some(last.index() + 1);
        }
        self.staged_total
    }

    /// Where a read from `start` should stop so that it holds at most `bytes_max` bytes of
    /// frames (but always one entry): the end (exclusive, at most `end`) of that run.
    pub fn read_end_within(&self, start: u64, end: u64, bytes_max: u64) -> u64 {
        let mut index = start;
        let mut bytes: u64 = 0;
        while index < end {
            let Some(position) = self.segment_of(index) else {
                break;
            };
            let segment = &self.segments[position];
            let location = &segment.locations[(index - segment.base_index) as usize];
            bytes += u64::from(location.size);
            if bytes > bytes_max && index > start {
                break;
            }
            index += 1;
        }
        index
    }

    /// The deque position of the segment holding `index`, if the log holds it.
    pub fn segment_of(&self, index: u64) -> Option<usize> {
        let after = self
            .segments
            .partition_point(|segment| segment.base_index <= index);
        let position = after.checked_sub(1)?;
        (index < self.segments[position].next_index()).then_some(position)
    }

    /// Where the pending bytes of the segment at `position` start in the pending buffer.
    fn pending_start_of(&self, position: usize) -> usize {
        let earlier = self.segments.range(..position).rev();
        let before: u64 = earlier
            .take_while(|segment| segment.pending_size() > 0)
            .map(Segment::pending_size)
            .sum();
        before as usize
    }

    /// Plans `read(start, end)`: checks the range, copies entries that are still pending and
    /// lists the frames to read from disk, all at this instant.
    pub fn plan_read(&self, start: u64, end: u64) -> Result<Vec<ReadRun>, StorageError> {
        let Some(first) = self.first_index() else {
            if start < self.purged_before {
                return Err(StorageError::Purged {
                    index: start,
                    first: self.purged_before,
                });
            }
            return Ok(Vec::new());
        };
        if start < first {
            return Err(StorageError::Purged {
                index: start,
                first,
            });
        }
        let end = end.min(self.next_index.unwrap_or(0));
        let mut runs = Vec::new();
        let mut index = start;
        while index < end {
            let Some(position) = self.segment_of(index) else {
                break;
            };
            let segment = &self.segments[position];
            let stop = end.min(segment.next_index());
            let durable_stop = self.durable_stop(segment, index, stop);
            if index < durable_stop {
                runs.push(self.plan_disk_run(segment, index, durable_stop));
            }
            if durable_stop < stop {
                runs.push(ReadRun::Memory(self.copy_pending(
                    position,
                    durable_stop,
                    stop,
                )));
            }
            index = stop;
        }
        Ok(runs)
    }

    /// The first index in `[index, stop)` of `segment` that is not durable yet (or `stop`).
    fn durable_stop(&self, segment: &Segment, index: u64, stop: u64) -> u64 {
        let from = (index - segment.base_index) as usize;
        let to = (stop - segment.base_index) as usize;
        let durable = segment.locations[from..to]
            .partition_point(|location| location.end() <= segment.durable_end);
        index + durable as u64
    }

    fn plan_disk_run(&self, segment: &Segment, index: u64, stop: u64) -> ReadRun {
        let from = (index - segment.base_index) as usize;
        let to = (stop - segment.base_index) as usize;
        ReadRun::Disk {
            file: segment
                .file
                .clone()
                .expect("a segment with durable entries has a file"),
            path: segment.path.clone(),
            durable_end: segment.durable_end,
            first_index: index,
            locations: segment.locations[from..to].to_vec(),
        }
    }

    /// Decodes the pending frames of `[index, stop)` in the segment at `position`.
    fn copy_pending(&self, position: usize, index: u64, stop: u64) -> Vec<LogEntry> {
        let segment = &self.segments[position];
        let base = self.pending_start_of(position) as u64;
        let pending = self.pending.as_slice();
        let mut entries = Vec::with_capacity((stop - index) as usize);
        for index in index..stop {
            let location = segment.location(index).expect("an indexed entry");
            let at = (base + location.offset - segment.durable_end) as usize;
            let bytes = &pending[at..at + location.size as usize];
            let FrameCheck::Valid(header) = frame::check(bytes) else {
                panic!("pending frame {index} does not decode");
            };
            assert_eq!((header.index, header.term), (index, location.term));
            let payload = frame::payload(bytes, &header).to_vec();
            entries.push(LogEntry {
                term: header.term,
                index,
                payload,
            });
        }
        entries
    }

    /// Asserts the invariants in the module documentation. O(entries): tests and debug only.
    pub fn validate(&self) {
        let mut previous_next: Option<u64> = None;
        let mut pending_size = 0;
        for segment in &self.segments {
            assert!(!segment.locations.is_empty(), "a segment without entries");
            assert!(segment.base_index >= segment.first_index);
            assert!(segment.base_index >= self.purged_before || previous_next.is_some());
            if let Some(next) = previous_next {
                assert_eq!(segment.first_index, next);
                assert_eq!(segment.base_index, segment.first_index);
            }
            for pair in segment.locations.windows(2) {
                assert_eq!(pair[0].end(), pair[1].offset);
            }
            let last = segment.locations.last().expect("non-empty");
            assert_eq!(last.end(), segment.staged_end);
            assert!(segment.durable_end <= segment.staged_end);
            assert!(segment.file.is_none() || segment.durable_end <= segment.file_end);
            pending_size += segment.pending_size();
            previous_next = Some(segment.next_index());
        }
        assert_eq!(pending_size, self.pending.len() as u64);
        assert_eq!(self.staged_total - self.durable_total, pending_size);
        if let Some(next) = previous_next {
            assert_eq!(self.next_index, Some(next));
        }
    }
}
