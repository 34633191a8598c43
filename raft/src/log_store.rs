//! openraft's log storage over `kassa-storage`: [`LogStore`] (the writer, owned by the Raft
//! core) and [`LogReader`] (the state machine worker's and replication's reader), both views of
//! one [`LogShared`] on the partition's core.
//!
//! Protocol order (what must hold for Raft to be safe):
//! - `append` calls openraft's `IOFlushed` callback only after `PartitionLog::append` resolved,
//!   that is after `fdatasync`; the entries are readable once `append` returns. The core awaits
//!   each write, so log writes, vote writes, truncations and purges happen in the order openraft
//!   issues them. While one append is being synced, client writes queue in the core and go out
//!   as the next batch: that is this layer's group commit. (Returning as soon as the entries are
//!   staged, with the callback fired by a task, would let a leader replicate while it syncs;
//!   it needs `save_vote` to wait for in-flight appends first. For multi-voter groups.)
//! - One openraft append can carry thousands of commands of up to a MiB: it goes to storage
//!   in appends of at most [`APPEND_BYTES_MAX`] bytes, in order, one after the other.
//! - `save_vote` returns only after the vote file is durable (`durable_file::write`).
//! - `purge` first makes the new purge point (with its term, which openraft needs and
//!   `kassa-storage` does not keep) durable in the file `purged`, then purges the storage log.
//!   After a crash in between, the log still holds entries at or below the purge point; reads
//!   never return them. Purging past the last entry leaves an empty log that continues after
//!   the purge point.
//! - The committed index is not persisted: on open, `Partition::open` waits until the state
//!   machine has applied the whole log, which a single voter commits as soon as it leads.
//!
//! Layout of a partition's directory: `log/` (segments, owned by `PartitionLog`), `vote`,
//! `purged` and `snapshot` (durable files).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures_util::Stream;
use kassa_shard::limits::BATCH_EVENTS_MAX;
use kassa_storage::{durable_file, Appendable, LogOptions, PartitionLog, Recovery};
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};

use crate::codec::{self, Outgoing};
use crate::types::{log_id, Entry, LogId, TypeConfig, Vote};
use crate::PartitionError;

pub(crate) const VOTE_FILE: &str = "vote";
pub(crate) const PURGED_FILE: &str = "purged";
pub(crate) const LOG_DIR: &str = "log";

/// Most entries one read brings into memory, and most bytes of them (but always one entry):
/// a batch command is a megabyte, a cross-partition decision up to `ENTRY_BYTES_MAX`.
pub(crate) const READ_ENTRIES_MAX: u64 = 64;
pub(crate) const READ_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Most payload bytes one `PartitionLog::append` carries: a quarter of the 64 MiB the storage
/// log buffers (`PENDING_SIZE_MAX`), which it refuses in one append, leaving room for framing.
pub(crate) const APPEND_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The largest entry storage takes (kind byte included): a cross-partition decision of two
/// full batches comes close; a full batch command is 1 + 24 + 8189 × 128 bytes.
pub(crate) const ENTRY_BYTES_MAX: usize = kassa_storage::ENTRY_PAYLOAD_SIZE_MAX;

// An entry always fits one storage append, and so does a full batch command.
const _: () = assert!(ENTRY_BYTES_MAX <= APPEND_BYTES_MAX);
const _: () = assert!(1 + 24 + BATCH_EVENTS_MAX * 128 <= ENTRY_BYTES_MAX);

/// Payload bytes of the latest appended entries kept in memory for the state machine, which
/// applies an entry as soon as it is committed: without them it would read back from disk
/// (and checksum again) what was just written. Older entries are read from the log. The last
/// entry is kept whatever its size. Small on purpose: the state machine trails the appends by
/// an entry or a burst of them, and an entry dropped soon after it was applied frees memory
/// that the next encodings reuse while it is still mapped (32 MiB per partition kept a node's
/// memory growing for the whole of a benchmark run, every encoding faulting in fresh pages).
pub(crate) const RECENT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// What the writer and the readers share: the log, the two small files' current values, and
/// the latest durable entries.
pub(crate) struct LogShared {
    dir: PathBuf,
    log: PartitionLog,
    vote: Cell<Option<Vote>>,
    purged: Cell<Option<LogId>>,
    recent: RefCell<Recent>,
}

/// Consecutive durable entries at the log's end (their payloads shared with openraft's).
#[derive(Default)]
struct Recent {
    entries: VecDeque<Entry>,
    bytes: usize,
}

fn payload_size(entry: &Entry) -> usize {
    match &entry.payload {
        crate::types::Payload::Normal(command) => command.len(),
        _ => 0,
    }
}

impl Recent {
    /// Adds entries just made durable, right after the last one kept (or starting over).
    fn push(&mut self, appended: &[Entry]) {
        let Some(first) = appended.first() else {
            return;
        };
        let next = self.entries.back().map(|last| last.log_id.index + 1);
        if next != Some(first.log_id.index) {
            self.clear();
        }
        for entry in appended {
            self.bytes += payload_size(entry);
            self.entries.push_back(entry.clone());
        }
        while self.bytes > RECENT_BYTES_MAX && self.entries.len() > 1 {
            let dropped = self.entries.pop_front().expect("more than one");
            self.bytes -= payload_size(&dropped);
        }
    }

    /// Forgets entries from `index` on (a truncation).
    fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= index) {
            let dropped = self.entries.pop_back().expect("checked");
            self.bytes -= payload_size(&dropped);
        }
    }

    /// Forgets entries through `index` (a purge).
    fn purge_through(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= index)
        {
            let dropped = self.entries.pop_front().expect("checked");
            self.bytes -= payload_size(&dropped);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `start..end` if all of them are kept.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.log_id.index;
        let last = self.entries.back()?.log_id.index;
        if start < first || end > last + 1 || start >= end {
            return None;
        }
        let from = (start - first) as usize;
        let range = self.entries.range(from..from + (end - start) as usize);
        Some(range.cloned().collect())
    }
}

/// The Raft core's handle: writes.
pub(crate) struct LogStore {
    shared: Rc<LogShared>,
}

/// A reader's handle, cloned for openraft's tasks.
pub(crate) struct LogReader {
    shared: Rc<LogShared>,
}

fn storage_error(error: kassa_storage::StorageError) -> io::Error {
    io::Error::other(error)
}

/// Splits one openraft append (up to `api_batch_capacity` commands of up to a MiB each) into
/// storage appends of at most [`APPEND_BYTES_MAX`] payload bytes, in order. An entry larger
/// than that would go alone (never: see [`ENTRY_BYTES_MAX`]).
fn chunks<E: Appendable>(batch: Vec<E>) -> Vec<Vec<E>> {
    let mut chunks = Vec::new();
    let (mut chunk, mut chunk_bytes) = (Vec::new(), 0);
    for entry in batch {
        let bytes = entry.payload().len();
        if !chunk.is_empty() && chunk_bytes + bytes > APPEND_BYTES_MAX {
            chunks.push(std::mem::take(&mut chunk));
            chunk_bytes = 0;
        }
        chunk_bytes += bytes;
        chunk.push(entry);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// `range` as `start..end`, end exclusive.
fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(start) => *start,
        Bound::Excluded(start) => start.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(end) => end.saturating_add(1),
        Bound::Excluded(end) => *end,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl LogStore {
    /// Opens the log in `dir/log` and loads the vote and purge point.
    pub(crate) async fn open(
        partition: u32,
        dir: &Path,
        options: LogOptions,
    ) -> Result<(LogStore, Recovery), PartitionError> {
        let storage = |source| PartitionError::Storage { partition, source };
        let damaged = |file, source| PartitionError::Damaged {
            partition,
            file,
            source,
        };
        let (log, recovery) = PartitionLog::open(&dir.join(LOG_DIR), options)
            .await
            .map_err(storage)?;
        let vote = match durable_file::read(dir, VOTE_FILE).await.map_err(storage)? {
            Some(bytes) => Some(codec::decode_vote(&bytes).map_err(|e| damaged(VOTE_FILE, e))?),
            None => None,
        };
        let purged = match durable_file::read(dir, PURGED_FILE)
            .await
            .map_err(storage)?
        {
            Some(bytes) => Some(codec::decode_purged(&bytes).map_err(|e| damaged(PURGED_FILE, e))?),
            None => None,
        };
        if let Some(first) = log.first_index() {
            let first_expected_max = purged.map_or(0, |purged| purged.index + 1);
            if first > first_expected_max {
                return Err(PartitionError::LogGap {
                    partition,
                    first,
                    purged: purged.map(|purged| purged.index),
                });
            }
        }
        let shared = LogShared {
            dir: dir.to_path_buf(),
            log,
            vote: Cell::new(vote),
            purged: Cell::new(purged),
            recent: RefCell::new(Recent::default()),
        };
        let store = LogStore {
            shared: Rc::new(shared),
        };
        Ok((store, recovery))
    }

    /// The last index the log was purged through, if any.
    pub(crate) fn purged_index(&self) -> Option<u64> {
        self.shared().purged.get().map(|purged| purged.index)
    }

    /// No vote, no entry, nothing purged: this partition was never initialized.
    pub(crate) fn is_pristine(&self) -> bool {
        let shared = &self.shared;
        shared.vote.get().is_none() && shared.purged.get().is_none() && shared.log.last().is_none()
    }

    /// The shared log, which `Partition::shutdown` closes once openraft let go of it.
    pub(crate) fn shared(&self) -> Rc<LogShared> {
        self.shared.clone()
    }

    /// The last index in the log (or the purge point when the log is empty).
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.shared.last_log_id().map(|id| id.index)
    }
}

impl LogShared {
    /// Closes the log once nothing else holds it: waits for its writer to finish and release
    /// the directory lock.
    pub(crate) async fn close(self) -> Result<(), kassa_storage::StorageError> {
        self.log.close().await
    }

    /// The last entry's id, or the purge point if it is later (everything purged).
    fn last_log_id(&self) -> Option<LogId> {
        let last = self.log.last().map(|(term, index)| log_id(term, index));
        last.max(self.purged.get())
    }

    /// Entries `start..end` still in the log (not purged), in order, at most
    /// [`READ_ENTRIES_MAX`] entries and about [`READ_BYTES_MAX`] bytes. Missing entries may only
    /// be cut off at either end.
    async fn read_entries(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        let (Some(first), Some((_, last))) = (self.log.first_index(), self.log.last()) else {
            return Ok(Vec::new());
        };
        let unpurged = self.purged.get().map_or(0, |purged| purged.index + 1);
        let start = start.max(first).max(unpurged);
        let end = end
            .min(last + 1)
            .min(start.saturating_add(READ_ENTRIES_MAX));
        if start >= end {
            return Ok(Vec::new());
        }
        if let Some(kept) = self.recent.borrow().get(start, end) {
            return Ok(kept);
        }
        let end = self.log.read_end_within(start, end, READ_BYTES_MAX);
        let stored = self.log.read(start, end).await.map_err(storage_error)?;
        let mut entries = Vec::with_capacity(stored.len());
        for (expected, entry) in (start..end).zip(stored) {
            if entry.index != expected {
                return Err(io::Error::other(format!(
                    "log read {start}..{end}: found index {} where {expected} belongs",
                    entry.index
                )));
            }
            entries.push(codec::decode_entry(entry)?);
        }
        if entries.len() as u64 != end - start {
            let found = entries.len();
            return Err(io::Error::other(format!(
                "log read {start}..{end}: {found} entries, a hole in the log"
            )));
        }
        Ok(entries)
    }

    async fn read_all(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut next = start;
        while next < end {
            let chunk = self.read_entries(next, end).await?;
            let Some(last) = chunk.last() else { break };
            next = last.log_id.index + 1;
            entries.extend(chunk);
        }
        Ok(entries)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = bounds(&range);
        self.shared.read_all(start, end).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.shared.vote.get())
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        self.shared.read_entries(start, end).await
    }

    /// Reads chunk by chunk as the state machine applies, so that replaying a long log after a
    /// restart never holds more than [`READ_ENTRIES_MAX`] entries.
    async fn entries_stream<RB>(
        &mut self,
        range: RB,
    ) -> impl Stream<Item = Result<Entry, io::Error>>
    where
        RB: RangeBounds<u64> + Clone + Debug,
    {
        let (start, end) = bounds(&range);
        let state = (self.shared.clone(), start, end, VecDeque::new());
        futures_util::stream::unfold(state, |(shared, next, end, mut buffered)| async move {
            if let Some(entry) = buffered.pop_front() {
                return Some((Ok(entry), (shared, next, end, buffered)));
            }
            if next >= end {
                return None;
            }
            match shared.read_entries(next, end).await {
                Ok(chunk) => {
                    let next = chunk.last()?.log_id.index + 1;
                    let mut buffered = VecDeque::from(chunk);
                    let entry = buffered.pop_front()?;
                    Some((Ok(entry), (shared, next, end, buffered)))
                }
                Err(error) => Some((Err(error), (shared, end, end, buffered))),
            }
        })
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        Ok(LogState {
            last_purged_log_id: self.shared.purged.get(),
            last_log_id: self.shared.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = codec::encode_vote(vote);
        durable_file::write(&self.shared.dir, VOTE_FILE, &bytes)
            .await
            .map_err(storage_error)?;
        self.shared.vote.set(Some(*vote));
        Ok(())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry>,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let batch: Vec<Outgoing> = entries.iter().map(codec::encode_entry).collect();
        for chunk in chunks(batch) {
            if let Err(error) = self.shared.log.append(chunk).await {
                // What was kept may no longer continue the log: read it from storage.
                self.shared.recent.borrow_mut().clear();
                callback.io_completed(Err(io::Error::other(error.to_string())));
                return Err(storage_error(error));
            }
        }
        self.shared.recent.borrow_mut().push(&entries);
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let purged_through = self.shared.purged.get().map(|id| id.index);
        assert!(
            purged_through.is_none_or(|purged| from > purged),
            "truncating purged entries: from {from}, purged through {purged_through:?}"
        );
        self.shared.recent.borrow_mut().truncate_from(from);
        self.shared
            .log
            .truncate_from(from)
            .await
            .map_err(storage_error)
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let shared = &self.shared;
        assert!(
            shared.purged.get() <= Some(upto),
            "the purge point moves forward only"
        );
        let bytes = codec::encode_purged(&upto);
        durable_file::write(&shared.dir, PURGED_FILE, &bytes)
            .await
            .map_err(storage_error)?;
        shared.purged.set(Some(upto));
        shared.recent.borrow_mut().purge_through(upto.index);
        // Past the last entry, the storage log starts empty at `upto + 1`: appends go on there.
        shared
            .log
            .purge_before(upto.index + 1)
            .await
            .map_err(storage_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_storage::LogEntry;

    #[test]
    fn appends_split_by_bytes_in_order() {
        let entry = |index: u64, size: usize| LogEntry {
            term: 1,
            index,
            payload: vec![0; size],
        };
        let big = 1 + 24 + BATCH_EVENTS_MAX * 128;
        let batch: Vec<LogEntry> = (1..=40).map(|index| entry(index, big)).collect();
        let chunks = chunks(batch);
        let per_chunk = APPEND_BYTES_MAX / big;
        assert_eq!(chunks.len(), 40usize.div_ceil(per_chunk));
        let indexes: Vec<u64> = chunks.iter().flatten().map(|e| e.index).collect();
        assert_eq!(indexes, (1..=40).collect::<Vec<_>>());
        for chunk in &chunks {
            let bytes: usize = chunk.iter().map(|e| e.payload.len()).sum();
            assert!(bytes <= APPEND_BYTES_MAX);
        }
        assert_eq!(super::chunks(vec![entry(1, 1), entry(2, 1)]).len(), 1);
        assert!(super::chunks(Vec::<LogEntry>::new()).is_empty());
    }

    #[test]
    fn recent_entries_follow_appends_truncations_and_purges() {
        use crate::types::{CommandBytes, Payload, ENTRY_KIND_NORMAL};
        use openraft::entry::RaftEntry;
        let entry = |index: u64, size: usize| {
            let bytes = CommandBytes::from_payload(vec![ENTRY_KIND_NORMAL; size]);
            Entry::new(log_id(1, index), Payload::Normal(bytes))
        };
        let indexes = |entries: Option<Vec<Entry>>| {
            entries.map(|e| e.iter().map(|e| e.log_id.index).collect::<Vec<_>>())
        };
        let mut recent = Recent::default();
        recent.push(&(1..=5).map(|i| entry(i, 10)).collect::<Vec<_>>());
        assert_eq!(indexes(recent.get(2, 4)), Some(vec![2, 3]));
        assert_eq!(indexes(recent.get(1, 6)), Some(vec![1, 2, 3, 4, 5]));
        assert_eq!(indexes(recent.get(0, 2)), None, "before the first kept");
        assert_eq!(indexes(recent.get(4, 7)), None, "past the last kept");
        recent.truncate_from(4);
        assert_eq!(indexes(recent.get(3, 5)), None);
        recent.push(&[entry(4, 10)]);
        assert_eq!(indexes(recent.get(3, 5)), Some(vec![3, 4]));
        recent.purge_through(2);
        assert_eq!(indexes(recent.get(2, 4)), None);
        assert_eq!(indexes(recent.get(3, 4)), Some(vec![3]));
        // A gap (entries appended elsewhere) starts over rather than keep a hole.
        recent.push(&[entry(9, 10)]);
        assert_eq!(indexes(recent.get(3, 4)), None);
        assert_eq!(indexes(recent.get(9, 10)), Some(vec![9]));
        // Past the byte budget the oldest go, but the newest entry always stays.
        let big = RECENT_BYTES_MAX / 2;
        recent.push(&[entry(10, big), entry(11, big), entry(12, big)]);
        assert_eq!(indexes(recent.get(9, 10)), None);
        assert_eq!(indexes(recent.get(11, 13)), Some(vec![11, 12]));
        assert!(recent.bytes <= RECENT_BYTES_MAX);
        recent.clear();
        assert_eq!(indexes(recent.get(12, 13)), None);
    }

    #[test]
    fn ranges_become_half_open() {
        assert_eq!(bounds(&(3..7)), (3, 7));
        assert_eq!(bounds(&(3..=7)), (3, 8));
        assert_eq!(bounds(&(3..)), (3, u64::MAX));
        assert_eq!(bounds(&..), (0, u64::MAX));
        assert_eq!(bounds(&(0..=u64::MAX)), (0, u64::MAX));
    }
}
