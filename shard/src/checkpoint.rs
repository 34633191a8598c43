//! Checkpoints: the ledger split into its hot state, written whole at every checkpoint, and the
//! keyspaces that grow with history, of which each checkpoint hands over only what was written
//! since the previous one (docs/storage.md). The `raft` crate writes the keyspaces into runs
//! and the hot state into the checkpoint's manifest, and restores a ledger from them through
//! [`CheckpointRestore`]. Nothing here reads a disk: the ledger stays pure.
//!
//! Keyspaces, each of fixed-size values under 128-bit keys:
//! - [`Keyspace::Transfers`]: position → the 128-byte transfer; positions below the cut are in
//!   earlier runs, so an increment is the positions from the cut on.
//! - [`Keyspace::Statuses`]: position → the two-phase status (1 byte), for the transfers of the
//!   increment whose status is not `None` and for older ones whose status changed since the
//!   cut (posted, voided, expired: [`StatusChanges`] remembers which). A later run's entry
//!   replaces an earlier one's.
//! - [`Keyspace::History`]: account position ≪ 32 | transfer position → the 64-byte balances
//!   right after that transfer, for history accounts, for the transfers of the increment.
//! - [`Keyspace::Changes`]: sequence → the 144-byte change entry, from the cut on; runs wholly
//!   below the released sequence are no longer needed.
//! - [`Keyspace::TransferIds`]: transfer id → position (4 bytes), for the transfers of the
//!   increment (from the oldest whose id no durable run holds), sorted by id 65,536 at a
//!   time, then merged.
//! - [`Keyspace::AccountTransfers`]: account position ≪ 32 | transfer position, no value,
//!   for the transfers of the increment (from the oldest no durable run lists).
//! - [`Keyspace::TransferSamples`]: position → timestamp (8 bytes), for the positions that
//!   are multiples of 32: written by format version 2 only, read by its restore into memory.
//! - [`Keyspace::TransferTimestamps`]: timestamp → position (4 bytes), for the positions of
//!   the increment (from the oldest no durable run samples) that are multiples of 32.
//!
//! Ids, lists and samples from format version 2 on: a checkpoint of version 1 had no runs of
//! them, and its restore reads every transfer run to rebuild them in memory; the next
//! checkpoint then writes all three whole. A restore of version 2 with a cold store reads no
//! transfer, id or list run, but its samples (into memory); the next checkpoint writes the
//! timestamps whole, and leaves the sample runs. A restore of version 3 with a cold store
//! reads none of them, but the status runs, whole, to find the pending transfers. A restore
//! of version 4 with a cold store reads no status run either: its hot state lists the
//! statuses memory keeps (the pending ones, and those of the last chunk of positions), so
//! restart time and memory no longer grow with history. From version 4 on, too, the runs of
//! statuses, lists and timestamp samples may be merged in write order (a run then
//! holds a stretch of checkpoints, not one): a binary that reads only up to version 3
//! refuses the hot state rather than misread those runs.
//!
//! Hot state, format version 4 (1 to 3 are read too; little-endian): magic "KASSAHOT" |
//! version u32 | zero u32 | timestamp u64 | change sequence next u64 | first retained change
//! sequence u64 | transfers u64 | held statuses, from version 4 only (count u64, then position
//! u32 and status u8 each, positions ascending) | accounts (count u64, records) | then as in a
//! snapshot: failed ids, expiries, cross expiries, sessions, transactions, id directory,
//! foreign requests, intents | CRC32C u32 of everything before it.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use kassa_wire::{Account, AccountFlags, Balances, Transfer};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::changes::{ChangeEntry, ChangeStream};
use crate::cold::{ColdError, ColdStore};
use crate::history::history_key;
use crate::snapshot::{Reader, SNAPSHOT_FORMAT_VERSION};
use crate::statuses::{held_at_restore, TransferStatuses};
use crate::table::Table;
use crate::transfer_ids::IdGenerations;
use crate::transfer_table::{TransferTable, SAMPLE_EVERY};
use crate::{Ledger, LedgerConfig, PendingStatus, SnapshotError};

pub use crate::keyspace::Keyspace;

/// The hot state's format version.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 4;
/// The first version whose checkpoints have runs of the accounts' transfer lists and of the
/// transfers' timestamp samples.
const LISTS_VERSION: u32 = 2;
/// The first version whose checkpoints keep the timestamp samples in runs keyed by timestamp
/// ([`Keyspace::TransferTimestamps`]), none in memory.
const TIMESTAMPS_VERSION: u32 = 3;
/// The first version whose hot state lists the statuses a restore keeps in memory (the
/// pending transfers', and those of the last, partial chunk of positions), so that a restore
/// with a cold store reads no status run.
const STATUSES_VERSION: u32 = 4;
const HOT_MAGIC: [u8; 8] = *b"KASSAHOT";

/// What the checkpoints made durable so far cover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointCut {
    /// Transfers at positions below this are in runs.
    pub transfers: u32,
    /// Status changes recorded before this count are in runs.
    pub status_changes: u64,
    /// Change entries of sequences below this are in runs (or released).
    pub change_sequence: u64,
}

/// Entries of one keyspace, keys ascending, values `value_size()` bytes each: a chunk of what
/// a checkpoint writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceIncrement {
    pub keyspace: Keyspace,
    pub keys: Vec<u128>,
    pub values: Vec<u8>,
}

impl KeyspaceIncrement {
    pub fn new(keyspace: Keyspace) -> KeyspaceIncrement {
        KeyspaceIncrement {
            keyspace,
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, key: u128, value: &[u8]) {
        debug_assert_eq!(value.len(), self.keyspace.value_size());
        debug_assert!(self.keys.last().is_none_or(|last| *last < key));
        self.keys.push(key);
        self.values.extend_from_slice(value);
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
    }

    /// Entry `at`'s value.
    pub fn value(&self, at: usize) -> &[u8] {
        let size = self.keyspace.value_size();
        &self.values[at * size..(at + 1) * size]
    }
}

/// A checkpoint as taken: what it covers and its hot state. Its keyspaces' entries are read
/// from the live ledger afterwards ([`Ledger::checkpoint_entries`]), chunk by chunk while the
/// runs are written, instead of being copied when it is taken: transfers and history never
/// change once stored, the statuses are kept here as they were, and change entries stay in
/// memory until the checkpoint is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The cut of the last durable checkpoint, where this one starts.
    pub since: CheckpointCut,
    /// What the checkpoints cover once this one is durable.
    pub cut: CheckpointCut,
    /// The hot state, whole.
    pub hot: Vec<u8>,
    /// Change entries below this sequence are released: runs of changes wholly below it are
    /// no longer needed.
    pub changes_released_below: u64,
    /// The statuses to write, as they were when taken, by position: those in memory.
    statuses: Vec<(u32, PendingStatus)>,
    /// Positions whose statuses it writes from the store, but for those in `statuses` (a
    /// full checkpoint of a ledger whose resolved statuses left memory): none of them can
    /// change, as only a pending status changes, and those are in memory.
    statuses_stored: std::ops::Range<u32>,
    /// Accounts when taken: history is read for those.
    accounts: usize,
    /// Transfers from this position on have their ids written by this checkpoint.
    ids_from: u32,
    /// Transfers from this position on are written in their accounts' lists.
    lists_from: u32,
    /// Transfers from this position on have their timestamp samples written.
    timestamps_from: u32,
    /// The ids to write: sorted a chunk per call, then merged; emptied once all were given.
    ids: RefCell<IdSort>,
}

impl Checkpoint {
    /// Transfers from this position on have their timestamp samples written by it.
    pub fn timestamps_from(&self) -> u32 {
        self.timestamps_from
    }

    /// At most how many statuses it writes (a run's filter is sized for them).
    pub fn statuses_at_most(&self) -> u64 {
        self.statuses.len() as u64
            + u64::from(self.statuses_stored.end - self.statuses_stored.start)
    }

    /// How many transfer ids it writes (a run's filter is sized for them).
    pub fn transfer_ids(&self) -> u64 {
        u64::from(self.cut.transfers - self.ids_from)
    }

    /// At most how many entries of `keyspace` it writes, known before they are read: a bound
    /// on its run's size (exact for lists and samples), the same for any replica taking the
    /// same checkpoint of the same ledger.
    pub fn keys_at_most(&self, keyspace: Keyspace) -> u64 {
        let transfers_from = |from: u32| u64::from(self.cut.transfers.saturating_sub(from));
        match keyspace {
            Keyspace::Transfers => transfers_from(self.since.transfers),
            Keyspace::Statuses => self.statuses_at_most(),
            // Each transfer is in its two accounts' lists, and in their histories if kept.
            Keyspace::History => 2 * transfers_from(self.since.transfers),
            Keyspace::AccountTransfers => 2 * transfers_from(self.lists_from),
            Keyspace::TransferIds => self.transfer_ids(),
            Keyspace::TransferSamples => 0,
            Keyspace::TransferTimestamps => {
                let every = u64::from(SAMPLE_EVERY);
                let from = u64::from(self.timestamps_from).next_multiple_of(every);
                u64::from(self.cut.transfers)
                    .saturating_sub(from)
                    .div_ceil(every)
            }
            Keyspace::Changes => {
                let from = self.since.change_sequence.max(self.changes_released_below);
                self.cut.change_sequence.saturating_sub(from)
            }
        }
    }
}

/// A checkpoint's transfer ids on their way into id order: sorted [`ID_SORT_CHUNK`] at a time
/// (a few milliseconds of the core each, so that applies go on between them), then merged.
#[derive(Clone, Debug, Default)]
struct IdSort {
    /// Sorted chunks of `(id, position)`.
    chunks: Vec<Vec<(u128, u32)>>,
    /// The smallest entry not yet given of each chunk that has one, with its chunk.
    heads: BinaryHeap<Reverse<((u128, u32), usize)>>,
    /// Per chunk, the index of its next entry after the one in `heads`.
    next: Vec<usize>,
}

/// A work buffer, not part of what a checkpoint is: any two are equal.
impl PartialEq for IdSort {
    fn eq(&self, _: &IdSort) -> bool {
        true
    }
}

impl Eq for IdSort {}

/// Ids sorted per call of [`Ledger::checkpoint_entries`]: about a millisecond of the core for
/// ids out of order (their records read, then sorted), between two of which applies go on.
const ID_SORT_CHUNK: u32 = 1 << 14;

/// Gives up to `max` ids of `pieces` (each the position of its first id and its ids, all in
/// id order) after the first `skip`, with their positions; returns how many it gave.
fn give_listed(
    pieces: &[(u32, &[u128])],
    mut skip: usize,
    max: usize,
    out: &mut KeyspaceIncrement,
) -> usize {
    let mut taken = 0;
    for (first, ids) in pieces {
        if skip >= ids.len() {
            skip -= ids.len();
            continue;
        }
        for (id, position) in ids.iter().zip(*first..).skip(skip).take(max - taken) {
            out.push(*id, &position.to_le_bytes());
            taken += 1;
        }
        skip = 0;
        if taken == max {
            break;
        }
    }
    taken
}

/// Where the writing of one keyspace of a checkpoint stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointCursor {
    /// The next position, status index, account, sequence or (ids) position to sort.
    next: u64,
    /// For an account's entries, the position to go on from (0: its range's start); for
    /// ids, 1 once all are sorted and they are being merged.
    at: usize,
    /// For the timestamp samples of cold positions, the key to go on from in the store.
    key: u128,
}

/// A checkpoint with all of its entries (tests and tools: the node streams them instead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointIncrement {
    pub cut: CheckpointCut,
    pub hot: Vec<u8>,
    /// Per keyspace, in `Keyspace::ALL` order.
    pub keyspaces: Vec<KeyspaceIncrement>,
    pub changes_released_below: u64,
}

/// Positions of transfers whose status changed after they were stored, in the order of the
/// changes, numbered from `base` on. A checkpoint takes those from its cut on; once it is
/// durable, those before its cut are dropped. A change undone with its linked chain stays
/// listed: a checkpoint then writes the status the transfer has, which is what it had (or
/// nothing, when the chain took back the transfer itself).
#[derive(Debug, Default)]
pub(crate) struct StatusChanges {
    base: u64,
    positions: Vec<u32>,
}

impl StatusChanges {
    pub(crate) fn record(&mut self, position: u32) {
        self.positions.push(position);
    }

    /// The count recorded so far, as a cut counts them.
    fn end(&self) -> u64 {
        self.base + self.positions.len() as u64
    }

    fn since(&self, count: u64) -> &[u32] {
        let from = count
            .saturating_sub(self.base)
            .min(self.positions.len() as u64) as usize;
        &self.positions[from..]
    }

    fn drop_before(&mut self, count: u64) {
        let drop = count
            .saturating_sub(self.base)
            .min(self.positions.len() as u64) as usize;
        self.positions.drain(..drop);
        self.base += drop as u64;
    }
}

impl Ledger {
    /// Takes a checkpoint starting from `since` (the cut of the last durable checkpoint): the
    /// hot state and what it covers, at once; its entries are read with
    /// [`Ledger::checkpoint_entries`] from this same ledger until it is durable. The ids
    /// stored from now on go to a new generation, which this checkpoint does not cover.
    pub fn checkpoint(&mut self, since: CheckpointCut) -> Checkpoint {
        assert!(self.rollback_is_idle(), "checkpoint inside a linked chain");
        let count = Ledger::position_of(self.transfers.len());
        assert!(since.transfers <= count, "a cut beyond the ledger");
        let cut = CheckpointCut {
            transfers: count,
            status_changes: self.status_changes.end(),
            change_sequence: self.changes.sequence_next,
        };
        if self.cold.is_some() {
            self.transfer_positions.seal(count);
        }
        Checkpoint {
            since,
            cut,
            hot: self.encode_hot(),
            changes_released_below: self.changes.sequence_first(),
            statuses: self.statuses_since(since),
            statuses_stored: {
                // Only a full checkpoint starts below the released statuses: it writes them
                // all, from 0. An incremental one starts at the last durable cut, past them.
                let released = self.transfer_status.released_below();
                let full = since.transfers < released;
                0..(if full { released } else { 0 })
            },
            accounts: self.accounts.len(),
            ids_from: self.ids_durable_below.min(since.transfers),
            lists_from: self.lists_durable_below.min(since.transfers),
            timestamps_from: self.timestamps_durable_below.min(since.transfers),
            ids: RefCell::default(),
        }
    }

    /// Puts in `out` (cleared first) up to `max` more entries of `out.keyspace` that
    /// `checkpoint` writes, from where `cursor` stands; returns whether more may follow
    /// (`out` may then be empty: the ids are sorted a chunk per call before any is given).
    pub fn checkpoint_entries(
        &self,
        checkpoint: &Checkpoint,
        cursor: &mut CheckpointCursor,
        out: &mut KeyspaceIncrement,
        max: usize,
    ) -> Result<bool, ColdError> {
        assert!(max > 0);
        out.clear();
        match out.keyspace {
            Keyspace::Transfers => {
                let end = checkpoint.cut.transfers as u64;
                let start = cursor.next.max(u64::from(checkpoint.since.transfers));
                let stop = end.min(start + max as u64) as u32;
                let mut next = start as u32;
                // A full checkpoint of a ledger restored from another's reads the transfers
                // older than that one's cut from its cold store.
                while next < stop.min(self.transfers.cold_below()) {
                    out.push(u128::from(next), self.transfer_at(next)?.as_bytes());
                    next += 1;
                }
                if next < stop {
                    let records = self.transfers.hot_range(next, stop);
                    for (position, transfer) in (next..).zip(records) {
                        out.push(u128::from(position), transfer.as_bytes());
                    }
                }
                cursor.next = u64::from(stop.max(next));
            }
            Keyspace::Statuses => {
                // The stored range (from 0, `max` positions a call, from `cursor.key` on),
                // then those in memory past it (`cursor.next` of them given so far).
                let (stored, listed) = (&checkpoint.statuses_stored, &checkpoint.statuses);
                let mut position = u64::from(stored.start).max(cursor.key as u64);
                let stop = u64::from(stored.end).min(position + max as u64);
                while position < stop && out.keys.len() < max {
                    let at = position as u32;
                    let status = match listed.binary_search_by_key(&at, |(p, _)| *p) {
                        Ok(found) => listed[found].1,
                        Err(_) => self.transfer_status_at(at)?,
                    };
                    if status != PendingStatus::None {
                        out.push(u128::from(at), &[status as u8]);
                    }
                    position += 1;
                }
                cursor.key = u128::from(position);
                if position < u64::from(stored.end) {
                    return Ok(true);
                }
                let past = listed.partition_point(|(p, _)| *p < stored.end);
                let room = max - out.keys.len().min(max);
                let taken = &listed[(past + cursor.next as usize).min(listed.len())..];
                for (position, status) in taken.iter().take(room) {
                    out.push(u128::from(*position), &[*status as u8]);
                }
                cursor.next += taken.len().min(room) as u64;
            }
            Keyspace::History => {
                let positions = checkpoint.since.transfers..checkpoint.cut.transfers;
                self.account_entries(checkpoint, positions, true, cursor, out, max)?
            }
            Keyspace::TransferIds => return self.id_entries(checkpoint, cursor, out, max),
            Keyspace::AccountTransfers => {
                let positions = checkpoint.lists_from..checkpoint.cut.transfers;
                self.account_entries(checkpoint, positions, false, cursor, out, max)?
            }
            Keyspace::TransferSamples => {} // format 2's: `TransferTimestamps` replaces them
            Keyspace::TransferTimestamps => {
                // From where no durable run samples: a checkpoint after a restore of format
                // 1 or 2, which had no timestamp runs, writes them all (from the samples in
                // memory), as does a full one (those of cold positions from the store's).
                let every = u64::from(SAMPLE_EVERY);
                let since = u64::from(checkpoint.timestamps_from).next_multiple_of(every);
                let mut next = cursor.next.max(since);
                let end = u64::from(checkpoint.cut.transfers);
                let cold = u64::from(self.transfers.cold_below());
                if next < end.min(cold) && !self.transfers.samples_in_memory() {
                    next = self.cold_samples(cursor, next, end.min(cold), out, max)?;
                }
                while next < end && out.keys.len() < max {
                    let position = next as u32;
                    let timestamp = match self.transfers.sample_at(position) {
                        Some(timestamp) => timestamp,
                        None => self.transfer_at(position)?.timestamp,
                    };
                    out.push(u128::from(timestamp), &position.to_le_bytes());
                    next += every;
                }
                cursor.next = next;
            }
            Keyspace::Changes => {
                let start = cursor.next.max(checkpoint.since.change_sequence);
                let start = start.max(checkpoint.changes_released_below);
                let stop = checkpoint.cut.change_sequence.min(start + max as u64);
                let mut next = start;
                // A full checkpoint of a ledger restored from another's reads the entries
                // older than that one's cut from its cold store.
                while next < stop.min(self.changes.kept_first()) {
                    let entry = self.cold_change(next)?;
                    out.push(u128::from(next), entry.as_bytes());
                    next += 1;
                }
                for (sequence, entry) in self.changes.kept_range(next, stop) {
                    assert_eq!(
                        sequence, next,
                        "a checkpoint's change entries stay in memory"
                    );
                    out.push(u128::from(sequence), entry.as_bytes());
                    next += 1;
                }
                assert_eq!(
                    next,
                    stop.max(start),
                    "a checkpoint's change entries stay in memory"
                );
                cursor.next = next;
            }
        }
        Ok(!out.keys.is_empty())
    }

    /// Puts in `out` the samples of cold positions from `next` (a multiple of 32) to `stop`,
    /// up to `max` entries in all, from the store's timestamp runs, scanned from
    /// `cursor.key`; returns the position it stopped at.
    fn cold_samples(
        &self,
        cursor: &mut CheckpointCursor,
        mut next: u64,
        stop: u64,
        out: &mut KeyspaceIncrement,
        max: usize,
    ) -> Result<u64, ColdError> {
        let Some(store) = &self.cold else {
            unreachable!("samples leave memory only for a cold store")
        };
        let keyspace = Keyspace::TransferTimestamps;
        let mut out_of_place = None;
        let keys = cursor.key..u128::MAX;
        store.scan(keyspace, keys, false, &mut |key, value| {
            let position =
                <[u8; 4]>::try_from(value).map(|bytes| u64::from(u32::from_le_bytes(bytes)));
            match position {
                Ok(position) if position < next => return true, // written before
                Ok(position) if position == next => {}
                _ => {
                    out_of_place = Some(key);
                    return false;
                }
            }
            out.push(key, value);
            cursor.key = key + 1;
            next += u64::from(SAMPLE_EVERY);
            next < stop && out.keys.len() < max
        })?;
        if let Some(key) = out_of_place {
            return Err(ColdError::new(keyspace, key, "a sample out of place"));
        }
        if next < stop && out.keys.len() < max {
            let missing = "the timestamp runs lack the sample of a cold position";
            return Err(ColdError::new(keyspace, u128::from(next), missing));
        }
        Ok(next)
    }

    /// The transfer ids `checkpoint` writes, by id. Ids listed in ascending order in memory
    /// are given from the list, up to `max` per call. Otherwise, while `cursor.at` is 0, each
    /// call sorts the ids of the next [`ID_SORT_CHUNK`] positions from `cursor.next` and gives
    /// none; then they are merged, up to `max` per call. Returns whether more may follow.
    fn id_entries(
        &self,
        checkpoint: &Checkpoint,
        cursor: &mut CheckpointCursor,
        out: &mut KeyspaceIncrement,
        max: usize,
    ) -> Result<bool, ColdError> {
        let mut sort = checkpoint.ids.borrow_mut();
        let sort = &mut *sort;
        let end = checkpoint.cut.transfers;
        if cursor.at == 0 {
            if cursor.next == 0 {
                *sort = IdSort::default();
            }
            let start = (checkpoint.ids_from as u64).max(cursor.next) as u32;
            // Ids listed in memory are given from the list, nothing sorted, nothing
            // allocated: those that came in ascending order, in one generation's run (in
            // position order: an id after the cut may add a run to that list, or turn it into
            // a table, on the way; the rest is then sorted below, all of it above what was
            // given); or several clients' batches, in the runs of a sealed generation, in
            // order of first id (`cursor.next` then counts the ids given from `ids_from` on;
            // a sealed generation never changes, so every call sees the same).
            if sort.chunks.is_empty() {
                let from = checkpoint.ids_from;
                let listed = match self.transfer_positions.listed(start..end) {
                    Some(ids) => Some((vec![(start, ids)], 0)),
                    None => (self.transfer_positions.listed_in_runs(from..end))
                        .map(|pieces| (pieces, (start - from) as usize)),
                };
                if let Some((pieces, skip)) = listed {
                    let taken = give_listed(&pieces, skip, max, out);
                    assert!(
                        taken > 0 || max == 0 || start == end,
                        "the list covers the range"
                    );
                    let taken = u32::try_from(taken).expect("at most a range of positions");
                    cursor.next = u64::from(start + taken);
                    return Ok(start + taken < end);
                }
            }
            let stop = end.min(start.saturating_add(ID_SORT_CHUNK));
            if start < stop {
                let mut chunk = Vec::with_capacity((stop - start) as usize);
                for position in start..stop {
                    let id = match self.transfers.get_in_memory(position) {
                        Some(transfer) => transfer.id.0,
                        None => self.transfer_at(position)?.id.0,
                    };
                    chunk.push((id, position));
                }
                chunk.sort_unstable();
                sort.chunks.push(chunk);
                cursor.next = u64::from(stop);
            }
            if stop < end {
                return Ok(true);
            }
            for (at, chunk) in sort.chunks.iter().enumerate() {
                sort.heads.push(Reverse((chunk[0], at)));
            }
            sort.next = vec![1; sort.chunks.len()];
            cursor.at = 1;
        }
        while out.keys.len() < max {
            let Some(Reverse(((id, position), at))) = sort.heads.pop() else {
                *sort = IdSort::default(); // all given: the memory goes
                return Ok(false);
            };
            out.push(id, &position.to_le_bytes());
            if let Some(entry) = sort.chunks[at].get(sort.next[at]) {
                sort.heads.push(Reverse((*entry, at)));
                sort.next[at] += 1;
            }
        }
        Ok(true)
    }

    /// Every entry `checkpoint` writes, per keyspace in `Keyspace::ALL` order.
    pub fn checkpoint_keyspaces(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<Vec<KeyspaceIncrement>, ColdError> {
        Keyspace::ALL
            .into_iter()
            .map(|keyspace| {
                let mut all = KeyspaceIncrement::new(keyspace);
                let mut chunk = KeyspaceIncrement::new(keyspace);
                let mut cursor = CheckpointCursor::default();
                loop {
                    let more =
                        self.checkpoint_entries(checkpoint, &mut cursor, &mut chunk, 4096)?;
                    all.keys.extend_from_slice(&chunk.keys);
                    all.values.extend_from_slice(&chunk.values);
                    if !more {
                        break Ok(all);
                    }
                }
            })
            .collect()
    }

    /// A checkpoint with all of its entries, read at once.
    pub fn checkpoint_increment(
        &mut self,
        since: CheckpointCut,
    ) -> Result<CheckpointIncrement, ColdError> {
        let checkpoint = self.checkpoint(since);
        let keyspaces = self.checkpoint_keyspaces(&checkpoint)?;
        Ok(CheckpointIncrement {
            cut: checkpoint.cut,
            hot: checkpoint.hot,
            keyspaces,
            changes_released_below: checkpoint.changes_released_below,
        })
    }

    /// A checkpoint with `cut` is durable: the status changes and released change entries it
    /// covers are forgotten, and with a cold store every entry of a cold keyspace it covers
    /// leaves memory (the store must hold this checkpoint's entries by now), but for the
    /// transfers still pending.
    pub fn checkpoint_durable(&mut self, cut: CheckpointCut) {
        self.status_changes.drop_before(cut.status_changes);
        self.changes.keep_from(cut.change_sequence);
        self.checkpoint_written(cut);
        self.account_transfers_durable(cut.transfers);
        if self.cold.is_some() {
            self.transfers
                .make_cold_below(cut.transfers, &self.transfer_status);
            self.transfer_positions.drop_below(cut.transfers);
            // The statuses changed since this checkpoint stay, until the next one.
            let changed: std::collections::HashSet<u32> =
                self.status_changes.positions.iter().copied().collect();
            (self.transfer_status).release_below(cut.transfers, |p| changed.contains(&p));
        }
    }

    /// A checkpoint with `cut` is durable, whether or not its runs could be opened for reads
    /// yet: the next checkpoint writes the ids and account lists from its cut on (runs of
    /// the same entries twice would break an account's scan, which reads runs in order).
    pub fn checkpoint_written(&mut self, cut: CheckpointCut) {
        self.ids_durable_below = self.ids_durable_below.max(cut.transfers);
        self.lists_durable_below = self.lists_durable_below.max(cut.transfers);
        self.timestamps_durable_below = self.timestamps_durable_below.max(cut.transfers);
    }

    /// The statuses a checkpoint from `since` writes: of the transfers stored since, those
    /// not `None`, and of older ones, those that changed since.
    fn statuses_since(&self, since: CheckpointCut) -> Vec<(u32, PendingStatus)> {
        let count = Ledger::position_of(self.transfers.len());
        let changed = self.status_changes.since(since.status_changes).iter();
        // A change of a transfer its linked chain then took back is listed past the end.
        let mut positions: Vec<u32> = changed.copied().filter(|p| *p < count).collect();
        let stored = self.transfer_status.not_none_from(since.transfers);
        let stored = stored.take_while(|(position, _)| *position < count);
        positions.extend(stored.map(|(position, _)| position));
        positions.sort_unstable();
        positions.dedup();
        let statuses = positions.into_iter();
        statuses.map(|p| (p, self.transfer_status.get(p))).collect()
    }

    /// Per account then position, the accounts' transfers in `positions` (no value), or
    /// with `history` the balances after them, of the history accounts: `cursor.next` is the
    /// account, `cursor.at` the position to go on from (0: the range's start).
    fn account_entries(
        &self,
        checkpoint: &Checkpoint,
        positions: std::ops::Range<u32>,
        history: bool,
        cursor: &mut CheckpointCursor,
        out: &mut KeyspaceIncrement,
        max: usize,
    ) -> Result<(), ColdError> {
        while (cursor.next as usize) < checkpoint.accounts && out.keys.len() < max {
            let account = cursor.next as usize;
            if history && !self.accounts[account].flags.contains(AccountFlags::HISTORY) {
                cursor.next += 1;
                continue;
            }
            let from = positions.start.max(cursor.at as u32);
            let mut full = false;
            // Entries older than the last durable checkpoint (a full checkpoint of a ledger
            // installed from elsewhere) come from the cold store.
            self.account_transfers_in(account, from..positions.end, false, |listed| {
                if out.keys.len() == max {
                    full = true;
                    cursor.at = listed.position as usize;
                    return Ok(false);
                }
                let key = history_key(account, listed.position);
                if history {
                    out.push(key, self.history_at(account, listed)?.as_bytes());
                } else {
                    out.push(key, &[]);
                }
                Ok(true)
            })?;
            if !full {
                cursor.next += 1;
                cursor.at = 0;
            }
        }
        Ok(())
    }

    fn encode_hot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let put_u64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(&HOT_MAGIC);
        out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        put_u64(&mut out, self.timestamp);
        put_u64(&mut out, self.changes.sequence_next);
        put_u64(&mut out, self.changes.sequence_first());
        put_u64(&mut out, self.transfers.len() as u64);
        let held = self.transfer_status.restored_in_memory();
        put_u64(&mut out, held.len() as u64);
        for (position, status) in held {
            out.extend_from_slice(&position.to_le_bytes());
            out.push(status as u8);
        }
        put_u64(&mut out, self.accounts.len() as u64);
        out.extend_from_slice(self.accounts.as_bytes());
        self.encode_failed_and_expiries(&mut out);
        self.encode_tail(&mut out);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Rebuilds a ledger from a checkpoint: the hot state, then every run's entries, keyspace by
/// keyspace in `Keyspace::ALL` order and run by run in the order they were written.
pub struct CheckpointRestore {
    ledger: Ledger,
    transfers: u64,
    change_first: u64,
    change_next: u64,
    /// The keyspace being read; earlier ones are done.
    phase: Keyspace,
    /// Per history account, how many of its transfers have their balances restored.
    history_restored: Vec<usize>,
    /// Where the restored ledger reads its cold entries (none: they are pushed).
    cold: Option<Arc<dyn ColdStore>>,
    /// The hot state's format version: from `LISTS_VERSION` on, the runs hold the accounts'
    /// transfer lists.
    version: u32,
    /// From `STATUSES_VERSION` on: the statuses the hot state lists (the pending ones, and
    /// those of the last, partial chunk), ascending. With a cold store they replace the status
    /// runs; without one the runs are read and must agree.
    held_statuses: Option<Vec<(u32, PendingStatus)>>,
}

impl CheckpointRestore {
    /// Starts from the hot state, refusing a damaged one.
    pub fn new(config: LedgerConfig, hot: &[u8]) -> Result<CheckpointRestore, SnapshotError> {
        if hot.len() < HOT_MAGIC.len() + 4 || hot[..HOT_MAGIC.len()] != HOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let (hot, crc) = hot.split_at(hot.len() - 4);
        if crc32c::crc32c(hot).to_le_bytes() != crc {
            return Err(SnapshotError::BodyChecksum);
        }
        let mut reader = Reader {
            bytes: hot,
            offset: HOT_MAGIC.len(),
        };
        let version = reader.u32()?;
        if !(1..=CHECKPOINT_FORMAT_VERSION).contains(&version) || reader.u32()? != 0 {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                supported: CHECKPOINT_FORMAT_VERSION,
            });
        }
        let timestamp = reader.u64()?;
        let change_next = reader.u64()?;
        let change_first = reader.u64()?;
        let transfers = reader.u64()?;
        if change_first > change_next || transfers >= crate::limits::RECORDS_MAX as u64 {
            return Err(reader.malformed("change sequences or transfer count out of range"));
        }
        let held_statuses = if version >= STATUSES_VERSION {
            Some(decode_held_statuses(&mut reader, transfers)?)
        } else {
            None
        };
        let mut ledger = Ledger::new(config);
        if version < TIMESTAMPS_VERSION {
            ledger.transfers.keep_samples_in_memory();
        }
        ledger.timestamp = timestamp;
        ledger.accounts = reader.records::<Account>()?;
        ledger.decode_failed_and_expiries(&mut reader)?;
        ledger.decode_tail(&mut reader, SNAPSHOT_FORMAT_VERSION)?;
        if reader.offset != hot.len() {
            return Err(reader.malformed("trailing bytes"));
        }
        ledger.index_accounts()?;
        ledger.changes = ChangeStream::with_entries(Table::new(), change_first);
        Ok(CheckpointRestore {
            ledger,
            transfers,
            change_first,
            change_next,
            phase: Keyspace::Transfers,
            history_restored: Vec::new(),
            cold: None,
            version,
            held_statuses,
        })
    }

    /// The restored ledger reads its cold entries (`Keyspace::is_cold`) from `store`, which
    /// holds every run's: none is pushed, and none is read into memory.
    pub fn with_cold_store(mut self, store: Arc<dyn ColdStore>) -> CheckpointRestore {
        self.cold = Some(store);
        self
    }

    /// A ledger from checkpoints whose entries are all at hand: the runs of `increments`, in
    /// the order they were taken, and the last one's hot state.
    /// With a `cold` store (which holds the increments' entries), cold entries stay there.
    pub fn from_increments(
        config: LedgerConfig,
        increments: &[&CheckpointIncrement],
        cold: Option<Arc<dyn ColdStore>>,
    ) -> Result<(Ledger, CheckpointCut), SnapshotError> {
        let last = increments.last().expect("at least one checkpoint");
        let mut restore = CheckpointRestore::new(config, &last.hot)?;
        if let Some(store) = cold {
            restore = restore.with_cold_store(store);
        }
        for keyspace in Keyspace::ALL {
            if !restore.reads(keyspace) {
                continue;
            }
            let runs = increments.iter().flat_map(|increment| &increment.keyspaces);
            for run in runs.filter(|run| run.keyspace == keyspace) {
                for (at, key) in run.keys.iter().enumerate() {
                    restore.push(keyspace, *key, run.value(at))?;
                }
            }
        }
        restore.finish()
    }

    /// Adds one run's entry. Entries of a keyspace come after those of the keyspaces before it.
    pub fn push(
        &mut self,
        keyspace: Keyspace,
        key: u128,
        value: &[u8],
    ) -> Result<(), SnapshotError> {
        let inconsistent = |what: &str| Err(SnapshotError::Inconsistent(what.to_string()));
        if value.len() != keyspace.value_size() || keyspace < self.phase {
            return inconsistent("a run entry out of its keyspace's order or size");
        }
        if !self.reads(keyspace) {
            return inconsistent("a cold entry pushed to a restore that reads them from its store");
        }
        while self.phase < keyspace {
            self.end_phase()?;
        }
        match keyspace {
            Keyspace::Transfers => self.push_transfer(key, value),
            Keyspace::Statuses => self.push_status(key, value),
            Keyspace::History => self.push_history(key, value),
            Keyspace::Changes => self.push_change(key, value),
            Keyspace::TransferIds => self.push_transfer_id(key, value),
            Keyspace::AccountTransfers => self.push_account_transfer(key),
            Keyspace::TransferSamples => self.push_sample(key, value),
            Keyspace::TransferTimestamps => self.push_timestamp(key, value),
        }
    }

    /// Whether this restore reads the runs of `keyspace`: with a cold store, the cold
    /// keyspaces stay there, and so do the transfers unless the runs predate the samples and
    /// lists (the ids and lists are then rebuilt from the transfers).
    pub fn reads(&self, keyspace: Keyspace) -> bool {
        match keyspace {
            Keyspace::Transfers => !self.cold_lists(),
            Keyspace::TransferSamples => self.version < TIMESTAMPS_VERSION,
            // Up to format 3, read whole to find the pending transfers (the resolved ones
            // then leave); from format 4 the hot state lists those.
            Keyspace::Statuses => self.cold.is_none() || self.version < STATUSES_VERSION,
            _ => self.cold.is_none() || !keyspace.is_cold(),
        }
    }

    /// Whether the accounts' transfer lists (and the transfers) stay in the store's runs.
    fn cold_lists(&self) -> bool {
        self.cold.is_some() && self.version >= LISTS_VERSION
    }

    /// The ledger, once every run was read; checked whole, as a restored snapshot is.
    pub fn finish(mut self) -> Result<(Ledger, CheckpointCut), SnapshotError> {
        while self.phase < Keyspace::TransferTimestamps {
            self.end_phase()?;
        }
        let (cold_lists, read_transfers) = (self.cold_lists(), self.reads(Keyspace::Transfers));
        let count = Ledger::position_of(self.ledger.transfers.len());
        // From format 2 on, the runs hold every id and list entry: the next checkpoint
        // writes them from here.
        if self.version >= LISTS_VERSION {
            self.ledger.ids_durable_below = count;
            self.ledger.lists_durable_below = count;
        }
        if self.version >= TIMESTAMPS_VERSION {
            self.ledger.timestamps_durable_below = count;
        }
        if cold_lists {
            self.ledger.lists_cold_below = count;
        }

        if let Some(store) = self.cold.take() {
            self.ledger.changes = ChangeStream::all_cold(self.change_first, self.change_next);
            self.ledger.cold = Some(store);
            // The transfers are all in the store, and their samples were read.
            if !read_transfers {
                let newest = count
                    .checked_sub(1)
                    .map(|newest| self.ledger.transfer_at(newest));
                let newest = newest.transpose().map_err(|error| {
                    SnapshotError::Inconsistent(format!("the transfer runs: {error}"))
                })?;
                let newest = newest.map_or(0, |transfer| transfer.timestamp);
                if !self.ledger.transfers.samples_done(newest) {
                    return Err(SnapshotError::Inconsistent(
                        "the timestamp samples do not cover the transfers".to_string(),
                    ));
                }
                if let Some(newest) = count.checked_sub(1) {
                    self.ledger.check_newest_sampled(newest).map_err(|error| {
                        SnapshotError::Inconsistent(format!("the timestamp runs: {error}"))
                    })?;
                }
            }
            // Every history entry is in the store (none in memory), and so are the accounts'
            // transfers unless the runs predate their runs: the newest transfer's are there.
            if let Some(newest) = count.checked_sub(1) {
                self.ledger.check_newest_listed(newest).map_err(|error| {
                    SnapshotError::Inconsistent(format!("the account runs: {error}"))
                })?;
            }
            // The oldest and newest retained entries are there, as the cut says.
            let retained = self.change_first..self.change_next;
            for sequence in [retained.start, retained.end.wrapping_sub(1)] {
                if retained.contains(&sequence) {
                    self.ledger.cold_change(sequence).map_err(|error| {
                        SnapshotError::Inconsistent(format!("the change runs: {error}"))
                    })?;
                }
            }
        }
        if cold_lists {
            // The newest transfer's id is in the id runs, at its position.
            if let Some(newest) = count.checked_sub(1) {
                let id = self.ledger.transfer_at(newest).map(|t| t.id.0);
                let found = id.and_then(|id| self.ledger.cold_transfer_position(id));
                if found != Ok(Some(newest)) {
                    return Err(SnapshotError::Inconsistent(format!(
                        "the id runs do not find the newest transfer: {found:?}"
                    )));
                }
            }
        }
        let ledger = &mut self.ledger;
        if ledger.changes.sequence_next != self.change_next {
            return Err(SnapshotError::Inconsistent(
                "the change runs do not reach the change sequence".to_string(),
            ));
        }
        ledger.check().map_err(SnapshotError::Inconsistent)?;
        let cut = CheckpointCut {
            transfers: Ledger::position_of(ledger.transfers.len()),
            status_changes: 0,
            change_sequence: self.change_next,
        };
        Ok((self.ledger, cut))
    }

    /// Closes the keyspace being read and opens the next.
    fn end_phase(&mut self) -> Result<(), SnapshotError> {
        match self.phase {
            Keyspace::Transfers => {
                if !self.reads(Keyspace::Transfers) {
                    let count = Ledger::position_of(self.transfers as usize);
                    let in_memory = self.version < TIMESTAMPS_VERSION;
                    self.ledger.transfers = TransferTable::all_cold(count, in_memory);
                }
                if self.ledger.transfers.len() as u64 != self.transfers {
                    return Err(SnapshotError::Inconsistent(
                        "the transfer runs do not hold every transfer".to_string(),
                    ));
                }
                // With a store, the statuses of all but the last chunk of positions are
                // released from the start: memory keeps only the pending ones of them.
                let count = self.transfers as usize;
                self.ledger.transfer_status = match self.cold {
                    Some(_) => TransferStatuses::restoring_released(count),
                    None => TransferStatuses::with_len(count),
                };
                if let Some(store) = self.cold.as_ref().filter(|_| self.cold_lists()) {
                    // The ids are in the store's runs: memory holds the ones to come.
                    let range = store.key_range(Keyspace::TransferIds);
                    let (capacity, seed) = (
                        self.ledger.config.transfers_capacity,
                        self.ledger.config.hash_seed,
                    );
                    let first = self.transfers as u32;
                    let mut ids = IdGenerations::new(first, capacity, seed);
                    ids.set_cold_range(range);
                    self.ledger.transfer_positions = ids;
                }
                self.history_restored = vec![0; self.ledger.accounts.len()];
                self.phase = Keyspace::Statuses;
            }
            Keyspace::Statuses => {
                self.hold_statuses()?;
                self.pin_pending()?;
                self.phase = Keyspace::History;
            }
            Keyspace::History => self.phase = Keyspace::Changes,
            Keyspace::Changes => self.phase = Keyspace::TransferIds,
            Keyspace::TransferIds => self.phase = Keyspace::AccountTransfers,
            Keyspace::AccountTransfers => self.phase = Keyspace::TransferSamples,
            Keyspace::TransferSamples => self.phase = Keyspace::TransferTimestamps,
            Keyspace::TransferTimestamps => unreachable!("the last keyspace has no next"),
        }
        Ok(())
    }

    fn push_transfer(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let transfers = &self.ledger.transfers;
        let transfer = Transfer::read_from_bytes(value).expect("a transfer's bytes");
        let newest = transfers.newest_timestamp();
        if key != transfers.len() as u128
            || key >= u128::from(self.transfers)
            || newest.is_some_and(|newest| newest >= transfer.timestamp)
        {
            return Err(SnapshotError::Inconsistent(
                "transfer runs out of position or timestamp order".to_string(),
            ));
        }
        // Read only to rebuild the ids and lists (without a store, or from format 1).
        if key == 0 {
            // Sized for the transfers to come: an id index doubling its way there would zero
            // and rehash twice the memory it ends with (a third of a restart's time).
            let capacity = (self.ledger.config.transfers_capacity).max(self.transfers as usize);
            let seed = self.ledger.config.hash_seed;
            self.ledger.transfer_positions = IdGenerations::new(0, capacity, seed);
        }
        self.ledger.index_transfer(key as u32, &transfer)?;
        // With a cold store the transfers stay there, but for the pending ones (`pin_pending`).
        if self.cold.is_some() {
            self.ledger.transfers.push_cold(&transfer);
        } else {
            self.ledger.transfers.push(transfer);
        }
        Ok(())
    }

    /// From format 4, once the statuses' phase is over: with a cold store, the statuses the hot
    /// state lists are the ones memory holds (no status run was read); without one, the
    /// runs were read whole, and what memory would hold of them must be what the list says.
    fn hold_statuses(&mut self) -> Result<(), SnapshotError> {
        let Some(held) = self.held_statuses.take() else {
            return Ok(());
        };
        let statuses = &mut self.ledger.transfer_status;
        if self.cold.is_some() {
            for (position, status) in held {
                statuses.restore(position, status);
            }
        } else if statuses.restored_in_memory() != held {
            return Err(SnapshotError::Inconsistent(
                "the status runs differ from the statuses the hot state lists".to_string(),
            ));
        }
        Ok(())
    }

    /// With a cold store, once the statuses are read: the transfers still pending come back
    /// into memory, read from the store.
    fn pin_pending(&mut self) -> Result<(), SnapshotError> {
        let Some(store) = &self.cold else {
            return Ok(());
        };
        let ledger = &mut self.ledger;
        let pending = ledger.transfer_status.not_none();
        let pending: Vec<u32> = pending
            .filter(|(_, status)| *status == PendingStatus::Pending)
            .map(|(position, _)| position)
            .collect();
        for position in pending {
            let mut transfer = Transfer::new_zeroed();
            let read = store.read(
                Keyspace::Transfers,
                position as u128,
                transfer.as_mut_bytes(),
            );
            match read {
                Ok(true) => ledger.transfers.pin(position, transfer),
                Ok(false) => {
                    return Err(SnapshotError::Inconsistent(format!(
                        "the transfer runs lack pending transfer {position}"
                    )))
                }
                Err(error) => {
                    return Err(SnapshotError::Inconsistent(format!(
                        "the transfer runs: {error}"
                    )))
                }
            }
        }
        Ok(())
    }

    fn push_status(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let status = PendingStatus::from_u8(value[0]);
        let statuses = &mut self.ledger.transfer_status;
        let position = u32::try_from(key)
            .ok()
            .filter(|position| (*position as usize) < statuses.len());
        match (position, status) {
            (Some(position), Some(status)) => {
                statuses.restore(position, status);
                Ok(())
            }
            _ => Err(SnapshotError::Inconsistent(
                "a status of a missing transfer, or an unknown status".to_string(),
            )),
        }
    }

    /// Balances after a transfer: the next of its account's transfers still without them.
    fn push_history(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let account = (key >> 32) as usize;
        let position = key as u32;
        let ledger = &mut self.ledger;
        let restored = self.history_restored.get_mut(account);
        let expected = restored.as_ref().and_then(|restored| {
            let listed = &ledger.account_transfers[account];
            listed.get(**restored).copied()
        });
        let (Some(restored), Some(expected)) = (restored, expected) else {
            return Err(SnapshotError::Inconsistent(
                "history of a missing account or transfer".to_string(),
            ));
        };
        if key >> 64 != 0 || expected != position {
            return Err(SnapshotError::Inconsistent(
                "history out of its account's transfer order".to_string(),
            ));
        }
        let balances = Balances::read_from_bytes(value).expect("balances' bytes");
        ledger.account_history[account].push(balances);
        *restored += 1;
        Ok(())
    }

    /// An id run's entry, read only without a store: it must name the transfer indexed there.
    fn push_transfer_id(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let position = u32::from_le_bytes(value.try_into().expect("4 bytes"));
        if self.ledger.transfer_positions.get(key) != Some(position) {
            return Err(SnapshotError::Inconsistent(format!(
                "an id run names transfer {key} at {position}, which holds another"
            )));
        }
        Ok(())
    }

    /// An account list's entry, read only without a store: the list rebuilt from the
    /// transfers must hold it.
    fn push_account_transfer(&mut self, key: u128) -> Result<(), SnapshotError> {
        let (account, position) = ((key >> 32) as usize, key as u32);
        let listed = self.ledger.account_transfers.get(account);
        if key >> 64 != 0 || listed.is_none_or(|list| list.binary_search(&position).is_err()) {
            return Err(SnapshotError::Inconsistent(format!(
                "an account run lists transfer {position} for account {account}, which has no such transfer"
            )));
        }
        Ok(())
    }

    /// A timestamp sample: the next of a restore that reads no transfer, or one to check
    /// against the transfers read.
    fn push_sample(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let timestamp = u64::from_le_bytes(value.try_into().expect("8 bytes"));
        let read_transfers = self.reads(Keyspace::Transfers);
        let transfers = &mut self.ledger.transfers;
        let in_place = u32::try_from(key).is_ok_and(|position| {
            if !read_transfers {
                return transfers.push_sample(position, timestamp);
            }
            let read = transfers.sample_at(position);
            let read = read.or_else(|| transfers.get_in_memory(position).map(|t| t.timestamp));
            position % SAMPLE_EVERY == 0 && read == Some(timestamp)
        });
        if !in_place {
            return Err(SnapshotError::Inconsistent(format!(
                "a timestamp sample of position {key} out of place or order"
            )));
        }
        Ok(())
    }

    /// A timestamp run's entry, read only without a store: the transfer read at its position
    /// has its timestamp.
    fn push_timestamp(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let position = u32::from_le_bytes(value.try_into().expect("4 bytes"));
        let read = self.ledger.transfers.get_in_memory(position);
        if position % SAMPLE_EVERY != 0 || read.map(|t| u128::from(t.timestamp)) != Some(key) {
            return Err(SnapshotError::Inconsistent(format!(
                "a timestamp run samples position {position} at {key}, which holds another"
            )));
        }
        Ok(())
    }

    fn push_change(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        if key < u128::from(self.change_first) {
            return Ok(()); // released since that run was written
        }
        let changes = &mut self.ledger.changes;
        if key != u128::from(changes.sequence_next) || changes.sequence_next >= self.change_next {
            return Err(SnapshotError::Inconsistent(
                "change runs out of sequence order".to_string(),
            ));
        }
        let entry = ChangeEntry::read_from_bytes(value).expect("a change entry's bytes");
        changes.push_entry(entry);
        Ok(())
    }
}

/// The statuses a format 4 hot state lists: count u64, then position u32 and status u8 each,
/// positions ascending and below `transfers`, none of them `None`, and all pending below the
/// last chunk (`TransferStatuses::restored_in_memory`).
fn decode_held_statuses(
    reader: &mut Reader,
    transfers: u64,
) -> Result<Vec<(u32, PendingStatus)>, SnapshotError> {
    let count = reader.count(5)?;
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let position = reader.u32()?;
        let status = reader.take(1, "truncated status")?[0];
        let status = PendingStatus::from_u8(status).filter(|s| *s != PendingStatus::None);
        let ascending = held.last().is_none_or(|(last, _)| *last < position);
        let in_range = u64::from(position) < transfers;
        match status {
            Some(status)
                if ascending
                    && in_range
                    && held_at_restore(transfers as usize, position, status) =>
            {
                held.push((position, status))
            }
            _ => return Err(reader.malformed("a held status out of order, place or range")),
        }
    }
    Ok(held)
}
