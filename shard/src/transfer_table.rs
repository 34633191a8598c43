//! [`TransferTable`]: a partition's transfers by position. With a cold store attached, the
//! transfers a durable checkpoint holds leave memory (docs/storage.md, "The cold store") and
//! are read back from the store by position; the newer ones, and the older ones still
//! pending, stay in memory.
//!
//! - Positions `cold_below..len` are in memory, in a [`Table`] (appended at the back, released
//!   from the front at `checkpoint_durable`).
//! - Positions below `cold_below` are in the store, except the transfers still pending when
//!   they went cold (*pinned*): posts, voids and expiries read those, and must never wait
//!   for the disk. A pinned transfer resolved since leaves memory at the next durable
//!   checkpoint.
//! - Transfers are in timestamp order, so a search by timestamp is a search by position. The
//!   store keeps the timestamp of every [`SAMPLE_EVERY`]th cold position, keyed by timestamp
//!   ([`Keyspace::TransferTimestamps`]): a search seeks there (an index page and a block),
//!   which narrows it to at most that many positions, read from the store (two blocks at
//!   most). Nothing of it stays in memory. A ledger restored from a checkpoint of format 1
//!   or 2, whose runs have no such keyspace, keeps those samples in memory instead, until
//!   its next restart.

use std::collections::HashMap;

use foldhash::fast::FixedState;
use kassa_wire::{Transfer, TransferId};

use crate::cold::ColdError;
use crate::keyspace::Keyspace;
use crate::statuses::TransferStatuses;
use crate::table::Table;
use crate::{Ledger, PendingStatus};

/// Cold positions whose timestamp is sampled (in the store's timestamp runs): every this many.
pub(crate) const SAMPLE_EVERY: u32 = 32;

/// What memory and the timestamp samples say of a search of the transfers by timestamp
/// ([`Ledger::transfer_partition_search`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimestampSearch {
    /// The point itself.
    Found(usize),
    /// Cold positions (fewer than `SAMPLE_EVERY`) to read: the point is among them, or just
    /// past the last.
    Window(std::ops::Range<u32>),
}

/// See the module documentation.
#[derive(Default)]
pub struct TransferTable {
    /// Positions below this are cold: in the store, unless pinned.
    cold_below: u32,
    /// The transfers at positions `cold_below..`.
    hot: Table<Transfer>,
    /// Cold positions whose transfer was pending when it went cold (or at a restore).
    pinned: HashMap<u32, Transfer, FixedState>,
    /// The timestamps of the cold positions that are multiples of `SAMPLE_EVERY`, in memory
    /// only for a ledger restored from a checkpoint of format 1 or 2; none: in the store.
    samples: Option<Vec<u64>>,
    /// The newest cold transfer's timestamp (0 when none is cold).
    cold_newest: u64,
}

impl TransferTable {
    /// Transfers all in memory (a whole snapshot's; `Ledger::check` checks their order).
    pub(crate) fn in_memory(hot: Table<Transfer>) -> TransferTable {
        TransferTable {
            hot,
            ..TransferTable::default()
        }
    }

    pub fn len(&self) -> usize {
        self.cold_below as usize + self.hot.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positions below this are in the cold store, unless pinned.
    pub fn cold_below(&self) -> u32 {
        self.cold_below
    }

    /// Transfers in memory: those from `cold_below` on, and the pinned ones.
    pub fn count_in_memory(&self) -> usize {
        self.hot.len() + self.pinned.len()
    }

    /// Transfers from `cold_below` on: those the next durable checkpoint takes out of memory
    /// (the pinned ones stay while pending).
    pub fn count_hot(&self) -> usize {
        self.hot.len()
    }

    /// The newest transfer's timestamp.
    pub fn newest_timestamp(&self) -> Option<u64> {
        match self.hot.last() {
            Some(last) => Some(last.timestamp),
            None if self.cold_below > 0 => Some(self.cold_newest),
            None => None,
        }
    }

    /// The transfer at `position` if it is in memory.
    pub(crate) fn get_in_memory(&self, position: u32) -> Option<&Transfer> {
        match position.checked_sub(self.cold_below) {
            Some(hot) => self.hot.get(hot as usize),
            None => self.pinned.get(&position),
        }
    }

    /// The transfer at `position` of a ledger that keeps all of them in memory (no cold
    /// store: a scratch ledger).
    pub(crate) fn held(&self, position: usize) -> &Transfer {
        assert_eq!(self.cold_below, 0, "a ledger without a cold store");
        &self.hot[position]
    }

    /// Every transfer in memory with its position: the pinned ones, then from `cold_below` on.
    pub(crate) fn iter_in_memory(&self) -> impl Iterator<Item = (u32, &Transfer)> {
        let mut pinned: Vec<(u32, &Transfer)> = self.pinned.iter().map(|(p, t)| (*p, t)).collect();
        pinned.sort_unstable_by_key(|(position, _)| *position);
        let hot = (self.cold_below..).zip(self.hot.iter());
        pinned.into_iter().chain(hot)
    }

    /// The in-memory transfers at `start..end`, all from `cold_below` on.
    pub(crate) fn hot_range(
        &self,
        start: u32,
        end: u32,
    ) -> impl DoubleEndedIterator<Item = &Transfer> + ExactSizeIterator {
        assert!(self.cold_below <= start, "hot_range of cold positions");
        let base = self.cold_below;
        self.hot
            .range((start - base) as usize, (end - base) as usize)
    }

    pub(crate) fn push(&mut self, transfer: Transfer) {
        assert!(self
            .newest_timestamp()
            .is_none_or(|newest| newest < transfer.timestamp));
        self.append(transfer);
    }

    /// A scratch ledger's copy of a transfer read from one of several partitions: timestamps
    /// are unique within a partition only, so two read from different ones may be equal (they
    /// are sorted). No order check; the scratch ledger's own transfers come after them all.
    pub(crate) fn push_read(&mut self, transfer: Transfer) {
        assert!(self
            .newest_timestamp()
            .is_none_or(|newest| newest <= transfer.timestamp));
        self.append(transfer);
    }

    fn append(&mut self, transfer: Transfer) {
        Ledger::position_of(self.len());
        self.hot.push(transfer);
    }

    /// Removes the newest transfer, which is in memory (a linked chain only takes back what
    /// it stored, after the last durable checkpoint).
    pub(crate) fn pop(&mut self) -> Option<Transfer> {
        assert!(
            !self.hot.is_empty() || self.cold_below == 0,
            "a transfer taken back below the durable cut"
        );
        self.hot.pop()
    }

    /// The transfers below `cut` leave memory (a durable checkpoint holds them), except those
    /// whose status in `statuses` is pending; pinned ones no longer pending leave too.
    pub(crate) fn make_cold_below(&mut self, cut: u32, statuses: &TransferStatuses) {
        assert!(cut as usize <= self.len(), "a cut beyond the transfers");
        let pending = |position: u32| statuses.in_memory(position) == Some(PendingStatus::Pending);
        self.pinned.retain(|position, _| pending(*position));
        let Some(moved) = cut.checked_sub(self.cold_below) else {
            return;
        };
        // Only the sampled transfers, the newest and the pending ones are read: reading
        // each of millions of 128-byte records stalled the core for tens of milliseconds.
        let from = self.cold_below;
        if self.samples.is_some() {
            // In u64: the next multiple of a position near u32::MAX does not fit a u32.
            let sampled = u64::from(from).next_multiple_of(u64::from(SAMPLE_EVERY));
            for position in (sampled..u64::from(cut)).step_by(SAMPLE_EVERY as usize) {
                let position = position as u32; // below `cut`
                let transfer = self.hot[(position - from) as usize];
                self.samples_note(position, &transfer);
            }
        }
        if moved > 0 {
            let newest = self.hot[(moved - 1) as usize];
            self.cold_newest = newest.timestamp;
        }
        let moving = statuses.not_none_from(from);
        let moving = moving.take_while(|(position, _)| *position < cut);
        for (position, _) in moving.filter(|(_, status)| *status == PendingStatus::Pending) {
            self.pinned
                .insert(position, self.hot[(position - from) as usize]);
        }
        self.hot.release_front(moved as usize);
        self.cold_below = cut;
    }

    /// At a restore of a checkpoint of format 1 or 2: the cold transfers' timestamp samples
    /// are kept in memory, as the store has none of them.
    pub(crate) fn keep_samples_in_memory(&mut self) {
        assert!(
            self.is_empty(),
            "samples kept in memory from the first transfer"
        );
        self.samples = Some(Vec::new());
    }

    /// Whether the cold transfers' timestamp samples are in memory, not in the store.
    pub(crate) fn samples_in_memory(&self) -> bool {
        self.samples.is_some()
    }

    /// At a restore of format 1: the transfer at `position` (the next) is cold.
    pub(crate) fn push_cold(&mut self, transfer: &Transfer) {
        assert!(self.hot.is_empty(), "cold transfers come before hot ones");
        assert!(
            self.samples.is_some(),
            "a restore that reads transfers keeps samples"
        );
        assert!(self.cold_below == 0 || self.cold_newest < transfer.timestamp);
        let position = self.cold_below;
        self.samples_note(position, transfer);
        self.cold_below = position
            .checked_add(1)
            .expect("a partition holds at most u32::MAX - 1 records");
    }

    /// At a restore that reads no transfer: positions `0..count` are all cold, their samples
    /// in the store, or in memory (`samples_in_memory`, format 2) to come
    /// ([`TransferTable::push_sample`]).
    pub(crate) fn all_cold(count: u32, samples_in_memory: bool) -> TransferTable {
        TransferTable {
            cold_below: count,
            samples: samples_in_memory.then(Vec::new),
            ..TransferTable::default()
        }
    }

    /// At a restore that reads no transfer: the next sample, the timestamp at position
    /// `samples × SAMPLE_EVERY`; false when it is out of place or order.
    pub(crate) fn push_sample(&mut self, position: u32, timestamp: u64) -> bool {
        let cold_below = self.cold_below;
        let Some(samples) = &self.samples else {
            return false;
        };
        let next = samples.len() as u64 * u64::from(SAMPLE_EVERY);
        if u64::from(position) < next {
            // A sample written again (by a checkpoint after a restore of format 1).
            return self.sample_at(position) == Some(timestamp);
        }
        let ascending = samples.last().is_none_or(|last| *last < timestamp);
        if u64::from(position) != next || position >= cold_below || !ascending {
            return false;
        }
        self.samples.as_mut().expect("checked").push(timestamp);
        true
    }

    /// At a restore that reads no transfer: every sample is there, and `newest` is the
    /// newest cold transfer's timestamp.
    pub(crate) fn samples_done(&mut self, newest: u64) -> bool {
        self.cold_newest = newest;
        let Some(samples) = &self.samples else {
            return true; // in the store (`CheckpointRestore::finish` checks the newest)
        };
        let expected = self.cold_below.div_ceil(SAMPLE_EVERY) as usize;
        let after_samples = samples.last().is_none_or(|last| *last <= newest);
        samples.len() == expected && after_samples
    }

    /// The timestamp sampled at cold position `position` (a multiple of `SAMPLE_EVERY`), if
    /// samples are kept in memory.
    pub(crate) fn sample_at(&self, position: u32) -> Option<u64> {
        if position % SAMPLE_EVERY != 0 || position >= self.cold_below {
            return None;
        }
        let samples = self.samples.as_ref()?;
        samples.get((position / SAMPLE_EVERY) as usize).copied()
    }

    /// At a restore: a cold transfer still pending stays in memory.
    pub(crate) fn pin(&mut self, position: u32, transfer: Transfer) {
        assert!(position < self.cold_below);
        self.pinned.insert(position, transfer);
    }

    fn samples_note(&mut self, position: u32, transfer: &Transfer) {
        if let Some(samples) = self
            .samples
            .as_mut()
            .filter(|_| position % SAMPLE_EVERY == 0)
        {
            assert_eq!(samples.len(), (position / SAMPLE_EVERY) as usize);
            samples.push(transfer.timestamp);
        }
        self.cold_newest = transfer.timestamp;
    }
}

impl Ledger {
    /// The transfer at `position`, from memory or the cold store.
    pub(crate) fn transfer_at(&self, position: u32) -> Result<Transfer, ColdError> {
        match self.transfers.get_in_memory(position) {
            Some(transfer) => Ok(*transfer),
            None => self.cold_entry(Keyspace::Transfers, u128::from(position)),
        }
    }

    /// The transfer at `position` for an event being applied (`cold::applied`).
    pub(crate) fn transfer_applied(&self, position: u32) -> Transfer {
        crate::cold::applied(self.transfer_at(position))
    }

    /// The transfer of `id`, if it exists; an older one is read from the cold store.
    pub fn transfer(&self, id: TransferId) -> Result<Option<Transfer>, ColdError> {
        match self.transfer_position(id.0)? {
            Some(position) => self.transfer_at(position).map(Some),
            None => Ok(None),
        }
    }

    /// Transfer ids in memory: those stored since the last durable checkpoint (all of them
    /// without a cold store).
    pub fn transfer_ids_in_memory(&self) -> usize {
        self.transfer_positions.len()
    }

    /// Whether a transfer of `id` is stored here (an old id is looked up in the store's id
    /// runs, which read no disk for most ids never used).
    pub fn contains_transfer(&self, id: TransferId) -> Result<bool, ColdError> {
        Ok(self.transfer_position(id.0)?.is_some())
    }

    /// Every transfer, oldest first, the cold ones read from the store (tests and whole
    /// snapshots).
    pub fn all_transfers(&self) -> Result<Vec<Transfer>, ColdError> {
        let count = Ledger::position_of(self.transfers.len());
        (0..count).map(|p| self.transfer_at(p)).collect()
    }

    /// The first position whose transfer's timestamp is not below `before` (as
    /// `slice::partition_point`). Cold transfers are searched through the samples, then at
    /// most `SAMPLE_EVERY` reads.
    pub(crate) fn transfer_partition_point(&self, before: u64) -> Result<usize, ColdError> {
        let (mut low, mut high) = match self.transfer_partition_search(before)? {
            TimestampSearch::Found(point) => return Ok(point),
            TimestampSearch::Window(window) => (window.start, window.end),
        };
        while low < high {
            let middle = low + (high - low) / 2;
            if self.transfer_at(middle)?.timestamp < before {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low as usize)
    }

    /// [`Ledger::transfer_partition_point`] as far as memory and the samples answer it: the
    /// point, or the cold positions (fewer than `SAMPLE_EVERY`, between two samples) its
    /// search reads to find it there. Samples in the store are sought there: an index page
    /// and a block of the newest run holding one below `before`.
    pub(crate) fn transfer_partition_search(
        &self,
        before: u64,
    ) -> Result<TimestampSearch, ColdError> {
        let table = &self.transfers;
        let cold = table.cold_below;
        let hot_first = table.hot.get(0).map(|t| t.timestamp);
        if cold == 0 || hot_first.is_some_and(|first| first < before) {
            let hot = table.hot.partition_point(|t| t.timestamp < before);
            return Ok(TimestampSearch::Found(cold as usize + hot));
        }
        // The point is at or below `cold`: the last sample below `before`, if any.
        let sampled = match &table.samples {
            Some(samples) => match samples.partition_point(|t| *t < before) {
                0 => None,
                sampled => Some((sampled as u32 - 1) * SAMPLE_EVERY),
            },
            None => self.cold_sample_below(before)?,
        };
        let Some(sampled) = sampled else {
            return Ok(TimestampSearch::Found(0));
        };
        // Positions up to that sample are below `before`; the next sample is not.
        let low = sampled + 1;
        let high = sampled.saturating_add(SAMPLE_EVERY).min(cold);
        Ok(TimestampSearch::Window(low..high))
    }

    /// Whether memory answers a search for `before` (`transfer_partition_search` seeks no
    /// sample in the store): no transfer is cold, samples are in memory, or the point is
    /// among the transfers in memory.
    pub(crate) fn transfers_searched_in_memory(&self, before: u64) -> bool {
        let table = &self.transfers;
        let hot_first = table.hot.get(0).map(|t| t.timestamp);
        table.cold_below == 0
            || table.samples.is_some()
            || hot_first.is_some_and(|first| first < before)
    }

    /// A restore's check of its store: a search finds the newest cold transfer (at
    /// `newest`) through the samples in the store (none to check when they are in memory).
    pub(crate) fn check_newest_sampled(&self, newest: u32) -> Result<(), ColdError> {
        if self.transfers.samples_in_memory() {
            return Ok(());
        }
        let sampled = newest / SAMPLE_EVERY * SAMPLE_EVERY;
        let timestamp = self.transfer_at(sampled)?.timestamp;
        match self.cold_sample_below(timestamp + 1)? {
            Some(found) if found == sampled => Ok(()),
            found => Err(ColdError::new(
                Keyspace::TransferTimestamps,
                u128::from(timestamp),
                format!("finds {found:?}, not the newest sample, at position {sampled}"),
            )),
        }
    }

    /// The position of the newest sample in the store whose timestamp is below `before`.
    fn cold_sample_below(&self, before: u64) -> Result<Option<u32>, ColdError> {
        let Some(store) = &self.cold else {
            unreachable!("samples leave memory only for a cold store")
        };
        let keyspace = Keyspace::TransferTimestamps;
        let mut found = None;
        store.scan(keyspace, 0..u128::from(before), true, &mut |key, value| {
            found = Some((key, <[u8; 4]>::try_from(value).map(u32::from_le_bytes)));
            false
        })?;
        let Some((key, position)) = found else {
            return Ok(None);
        };
        match position {
            Ok(position)
                if position % SAMPLE_EVERY == 0 && position < self.transfers.cold_below =>
            {
                Ok(Some(position))
            }
            _ => Err(ColdError::new(
                keyspace,
                key,
                "a sample out of place: not a cold position that is a multiple of 32",
            )),
        }
    }

    /// The position of the transfer with `timestamp`, if any.
    pub(crate) fn transfer_at_timestamp(&self, timestamp: u64) -> Result<Option<u32>, ColdError> {
        if timestamp == 0 {
            return Ok(None); // no record has it (a live event's, in an intent)
        }
        let position = self.transfer_partition_point(timestamp)?;
        if position == self.transfers.len() {
            return Ok(None);
        }
        let position = Ledger::position_of(position);
        let found = self.transfer_at(position)?.timestamp == timestamp;
        Ok(found.then_some(position))
    }

    /// Transfers held in memory (the newest, and older ones still pending): with a cold store
    /// only those since the last durable checkpoint and the open pending ones.
    pub fn transfers_in_memory(&self) -> usize {
        self.transfers.count_in_memory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timestamps are unique within a partition only: a transaction reading transfers of two
    /// partitions may read two with the same one (imported with it), and its scratch ledger
    /// takes both.
    #[test]
    fn a_scratch_ledger_takes_transfers_of_two_partitions_that_share_a_timestamp() {
        let read = |id: u128| crate::ReadSet {
            timestamp: 100,
            transfers: vec![(
                Transfer {
                    id: TransferId(id),
                    timestamp: 50,
                    ..Transfer::default()
                },
                PendingStatus::None,
            )],
            ..crate::ReadSet::default()
        };
        let placement = crate::Placement::new(crate::PlacementKind::ById, 2);
        let mut scratch = crate::Scratch::new(placement, &[read(1), read(2)]);
        assert_eq!(scratch.ledger().transfers().len(), 2);
    }

    fn transfer(position: u32) -> Transfer {
        Transfer {
            id: TransferId(u128::from(position) + 1),
            timestamp: 10 + 3 * u64::from(position),
            ..Transfer::default()
        }
    }

    #[test]
    fn cold_transfers_keep_pins_and_samples_of_an_old_format_and_release_the_rest() {
        let mut table = TransferTable::default();
        let mut samples_in_store = TransferTable::default();
        table.keep_samples_in_memory();
        let mut statuses = TransferStatuses::default();
        for position in 0..100 {
            table.push(transfer(position));
            let pending = position % 7 == 0;
            statuses.push(if pending {
                PendingStatus::Pending
            } else {
                PendingStatus::None
            });
        }
        for position in 0..100 {
            samples_in_store.push(transfer(position));
        }
        table.make_cold_below(70, &statuses);
        samples_in_store.make_cold_below(70, &statuses);
        assert_eq!(table.len(), 100);
        assert_eq!(table.cold_below(), 70);
        assert_eq!(table.samples, Some(vec![10, 10 + 3 * 32, 10 + 3 * 64]));
        assert_eq!(samples_in_store.samples, None);
        assert_eq!(samples_in_store.sample_at(32), None);
        assert_eq!(table.cold_newest, transfer(69).timestamp);
        assert_eq!(table.pinned.len(), 10); // 0, 7, ..., 63
        assert_eq!(table.get_in_memory(63), Some(&transfer(63)));
        assert_eq!(table.get_in_memory(64), None);
        assert_eq!(table.get_in_memory(70), Some(&transfer(70)));
        assert_eq!(table.count_in_memory(), 30 + 10);
        statuses.set(7, PendingStatus::Posted);
        table.make_cold_below(100, &statuses);
        assert!(table.get_in_memory(7).is_none());
        assert_eq!(table.pinned.len(), 9 + 5); // 70, 77, ..., 98 join
        assert_eq!(table.newest_timestamp(), Some(transfer(99).timestamp));
        table.push(transfer(100));
        assert_eq!(table.pop(), Some(transfer(100)));
        assert_eq!(
            table.iter_in_memory().map(|(p, _)| p).collect::<Vec<_>>(),
            [0, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 91, 98]
        );
    }
}
