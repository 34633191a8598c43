//! Transfer ids: the map from a transfer's id to its position (docs/storage.md, "Cold ids").
//!
//! The ids of transfers stored since the last durable checkpoint are in memory, in
//! [`IdGenerations`]: one [`IdIndex`] per checkpoint interval. Each checkpoint writes the ids
//! of its interval, sorted, into a run of [`Keyspace::TransferIds`] with a filter; once it is
//! durable and a cold store is attached, the generations it covers are dropped whole (no
//! slot-by-slot deletion of millions of ids), and those ids are found in the runs. A lookup
//! probes the generations in memory, then the store, whose runs' filters answer most ids that
//! were never used without reading the disk. A ledger without a cold store keeps every
//! generation.

use std::collections::VecDeque;

use crate::cold::ColdError;
use crate::id_index::IdIndex;
use crate::keyspace::Keyspace;
use crate::Ledger;

/// Generations opened at checkpoints at most: the open one and two sealed (a checkpoint
/// being written, and one durable whose runs are not followed yet).
const GENERATIONS_MAX: usize = 3;

/// Generations opened because the open one was full: none is opened once this many
/// generations (of either kind) are in memory; the open one then grows in place.
const SPLITS_MAX: usize = 10;

/// A full open generation of this many slots or more is not grown but followed by a new one
/// twice its size: growing rehashes every id into a new table, whose pages the kernel maps
/// one by one on first touch, and at millions of ids that stalled the core for hundreds of
/// milliseconds inside one batch. A smaller one grows in place (a millisecond or two; the
/// allocator may hand a table under 32 MiB out of its heap and zero it there, which costs
/// as much).
const SPLIT_SLOTS_MIN: usize = 1 << 16;

/// See the module documentation.
pub(crate) struct IdGenerations {
    /// Oldest first; the last is the open one, where ids are inserted. Never empty.
    generations: VecDeque<Generation>,
    seed: u64,
    /// The smallest and largest id in the runs (none: no id is cold): an id outside needs no
    /// look at the store. Ids that grow with time (as TigerBeetle recommends) are all
    /// outside, so a new one costs no filter probe.
    cold_range: Option<(u128, u128)>,
}

struct Generation {
    /// The first position this generation may hold; it holds ids of positions from here to
    /// the next generation's `first`.
    first: u32,
    index: IdIndex,
    /// The smallest and largest id inserted (a rollback does not narrow it).
    range: Option<(u128, u128)>,
    /// Opened at a checkpoint's cut, not because the one before was full.
    at_cut: bool,
}

fn widen(range: Option<(u128, u128)>, other: Option<(u128, u128)>) -> Option<(u128, u128)> {
    match (range, other) {
        (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
        (range, None) => range,
        (None, other) => other,
    }
}

impl IdGenerations {
    /// One open generation for positions from `first` on, with room for `capacity` ids.
    pub(crate) fn new(first: u32, capacity: usize, seed: u64) -> IdGenerations {
        let open = Generation {
            first,
            index: IdIndex::with_capacity(capacity, seed),
            range: None,
            at_cut: true,
        };
        IdGenerations {
            generations: VecDeque::from([open]),
            seed,
            cold_range: None,
        }
    }

    /// Whether the runs may hold `id`: it is within the range of the cold ids.
    #[inline]
    pub(crate) fn may_be_cold(&self, id: u128) -> bool {
        self.cold_range
            .is_some_and(|(low, high)| low <= id && id <= high)
    }

    /// Bytes of the generations' tables in memory (see [`IdIndex::resident_bytes`]).
    pub(crate) fn resident_bytes(&self) -> u64 {
        let generations = self.generations.iter();
        generations
            .map(|generation| generation.index.resident_bytes())
            .sum()
    }

    /// Whether any id is cold.
    pub(crate) fn any_cold(&self) -> bool {
        self.cold_range.is_some()
    }

    /// At a restore: the runs hold ids from `low` to `high`.
    pub(crate) fn set_cold_range(&mut self, range: Option<(u128, u128)>) {
        self.cold_range = range;
    }

    /// The first position whose id is in memory: ids of positions below it are in runs only.
    pub(crate) fn first(&self) -> u32 {
        self.generations.front().expect("never empty").first
    }

    /// Ids in memory.
    pub(crate) fn len(&self) -> usize {
        self.generations.iter().map(|g| g.index.len()).sum()
    }

    /// Generations in memory (the open one included).
    #[cfg(test)]
    fn count(&self) -> usize {
        self.generations.len()
    }

    /// Asks the CPU to bring into cache the slots `id` would be found at.
    #[inline]
    pub(crate) fn prefetch(&self, id: u128) {
        for generation in &self.generations {
            generation.index.prefetch(id);
        }
    }

    /// Where `id` is, if its position is at or past [`IdGenerations::first`].
    #[inline]
    pub(crate) fn get(&self, id: u128) -> Option<u32> {
        self.generations
            .iter()
            .rev()
            .find_map(|generation| generation.index.get(id))
    }

    /// Indexes `id` at `position`, which must be in the open generation's range; `id` must
    /// not be indexed yet.
    pub(crate) fn insert(&mut self, id: u128, position: u32) {
        let count = self.generations.len();
        let open = self.generations.back_mut().expect("never empty");
        assert!(position >= open.first, "an id older than its generation");
        let split = open.index.is_full()
            && open.index.slots() >= SPLIT_SLOTS_MIN
            && count < GENERATIONS_MAX + SPLITS_MAX;
        if split {
            // Twice the slots, as growing would give; the full one keeps its ids until a
            // durable checkpoint covers its positions.
            let slots = open.index.slots();
            self.generations.push_back(Generation {
                first: position,
                index: IdIndex::with_capacity(slots, self.seed),
                range: None,
                at_cut: false,
            });
        }
        let open = self.generations.back_mut().expect("never empty");
        open.index.insert(id, position);
        open.range = widen(open.range, Some((id, id)));
    }

    /// Removes `id` (a linked chain's rollback of the transfers it stored), returning its
    /// position.
    pub(crate) fn remove(&mut self, id: u128) -> Option<u32> {
        let generations = self.generations.iter_mut().rev();
        let removed = generations.into_iter().find_map(|g| g.index.remove(id));
        // A rollback takes back the newest positions, which are then used again: a
        // generation split off at one of them and left empty goes, or the next id (at a
        // position below its first) would have no generation to go to.
        while self.generations.len() > 1 {
            let open = self.generations.back().expect("never empty");
            if open.at_cut || open.index.len() > 0 {
                break;
            }
            self.generations.pop_back();
        }
        removed
    }

    /// A checkpoint was taken at `cut` (the transfers it covers): later ids go to a new
    /// generation, which a later durable checkpoint drops on its own. An empty open
    /// generation is reused.
    pub(crate) fn seal(&mut self, cut: u32) {
        // The next interval's first table is as large as this whole interval, so that a
        // steady load needs no split.
        let capacity = self.interval_ids();
        let sealed = self.generations.iter().skip(1).filter(|g| g.at_cut).count();
        let open = self.generations.back_mut().expect("never empty");
        assert!(cut >= open.first, "a checkpoint's cut behind the ids");
        if open.index.len() == 0 {
            open.first = cut;
            open.at_cut = true;
            return;
        }
        if sealed + 1 >= GENERATIONS_MAX {
            // Checkpoints taken but not made durable (a failed write, a declined one): the
            // open generation goes on and is dropped at a later cut past its end, so that
            // a lookup never probes more than this many (and the splits).
            return;
        }
        self.generations.push_back(Generation {
            first: cut,
            index: IdIndex::with_capacity(capacity, self.seed),
            range: None,
            at_cut: true,
        });
    }

    /// Ids in the generations opened since the last one opened at a cut, that one included:
    /// those of the current checkpoint interval (and of the one before, if its seal was
    /// declined).
    fn interval_ids(&self) -> usize {
        let mut ids = 0;
        for generation in self.generations.iter().rev() {
            ids += generation.index.len();
            if generation.at_cut {
                break;
            }
        }
        ids
    }

    /// The ids of positions below `cut` are in durable runs: the generations wholly below it
    /// leave memory.
    pub(crate) fn drop_below(&mut self, cut: u32) {
        while self.generations.len() > 1 && self.generations[1].first <= cut {
            let dropped = self.generations.pop_front().expect("two or more");
            self.cold_range = widen(self.cold_range, dropped.range);
        }
        let only = self.generations.len() == 1;
        let oldest = self.generations.front_mut().expect("never empty");
        if only && oldest.index.len() == 0 && oldest.first < cut {
            oldest.first = cut;
        }
    }
}

impl Ledger {
    /// The position of the transfer of `id`, if one is stored here: from memory, or for an
    /// id older than the last durable checkpoint, from the cold store (which reads no disk
    /// for most ids that were never used: its runs' filters rule them out).
    pub(crate) fn transfer_position(&self, id: u128) -> Result<Option<u32>, ColdError> {
        if let Some(position) = self.transfer_positions.get(id) {
            return Ok(Some(position));
        }
        self.cold_transfer_position(id)
    }

    /// The position of the transfer of `id`, for an event being applied (`cold::applied`).
    pub(crate) fn transfer_position_applied(&self, id: u128) -> Option<u32> {
        crate::cold::applied(self.transfer_position(id))
    }

    /// The position of `id` in the cold store's id runs, for an id not in memory.
    pub(crate) fn cold_transfer_position(&self, id: u128) -> Result<Option<u32>, ColdError> {
        let Some(store) = &self.cold else {
            return Ok(None);
        };
        if id == 0 || !self.transfer_positions.may_be_cold(id) {
            return Ok(None);
        }
        let mut value = [0u8; 4];
        if !store.read(Keyspace::TransferIds, id, &mut value)? {
            return Ok(None);
        }
        let position = u32::from_le_bytes(value);
        if position >= self.transfer_positions.first() {
            let message = format!("an id run names position {position}, which is not cold");
            return Err(ColdError::new(Keyspace::TransferIds, id, message));
        }
        Ok(Some(position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_sealed_at_cuts_and_dropped_whole() {
        let mut ids = IdGenerations::new(0, 0, 7);
        for position in 0..10u32 {
            ids.insert(1000 + u128::from(position), position);
        }
        ids.seal(10);
        for position in 10..25u32 {
            ids.insert(1000 + u128::from(position), position);
        }
        assert_eq!((ids.count(), ids.len(), ids.first()), (2, 25, 0));
        assert_eq!(ids.get(1003), Some(3));
        assert_eq!(ids.get(1020), Some(20));
        // A cut inside the open generation drops nothing of it.
        ids.drop_below(5);
        assert_eq!((ids.count(), ids.first()), (2, 0));
        ids.drop_below(10);
        assert_eq!((ids.count(), ids.len(), ids.first()), (1, 15, 10));
        assert_eq!(ids.get(1003), None);
        assert!(ids.may_be_cold(1000) && ids.may_be_cold(1009));
        assert!(!ids.may_be_cold(999) && !ids.may_be_cold(1010));
        assert_eq!(ids.remove(1024), Some(24));
        // Sealing an empty open generation moves it instead of adding one.
        ids.seal(24);
        ids.seal(24);
        assert_eq!(ids.count(), 2);
        ids.drop_below(24);
        assert_eq!((ids.count(), ids.len(), ids.first()), (1, 0, 24));
        // An empty oldest generation follows the cut.
        ids.drop_below(30);
        assert_eq!(ids.first(), 30);
        ids.insert(2000, 30);
        assert_eq!(ids.get(2000), Some(30));
        // Checkpoints never made durable add at most two sealed generations.
        for cut in 31..40 {
            ids.insert(2000 + u128::from(cut), cut);
            ids.seal(cut + 1);
        }
        assert_eq!(ids.count(), GENERATIONS_MAX);
        assert_eq!(ids.get(2039), Some(39));
        // The open one went on from 33: it stays until a later checkpoint seals past it.
        ids.drop_below(40);
        assert_eq!((ids.count(), ids.len(), ids.first()), (1, 7, 33));
        ids.seal(40);
        ids.drop_below(40);
        assert_eq!((ids.count(), ids.len(), ids.first()), (1, 0, 40));
    }

    #[test]
    fn a_full_large_generation_is_followed_by_a_new_one_not_grown() {
        let mut ids = IdGenerations::new(0, 0, 7);
        let count = (SPLIT_SLOTS_MIN * 3) as u32;
        for position in 0..count {
            ids.insert(5000 + u128::from(position), position);
        }
        // Grown in place up to SPLIT_SLOTS_MIN slots (half of them ids), then split twice:
        // tables of 2^16, 2^17 and 2^18 slots.
        assert_eq!(ids.count(), 3);
        assert_eq!(ids.len(), count as usize);
        let firsts: Vec<u32> = ids.generations.iter().map(|g| g.first).collect();
        let half = (SPLIT_SLOTS_MIN / 2) as u32;
        assert_eq!(firsts, [0, half, half + SPLIT_SLOTS_MIN as u32]);
        assert!((0..count).all(|p| ids.get(5000 + u128::from(p)) == Some(p)));
        assert_eq!(ids.get(5000 + u128::from(count)), None);
        // A checkpoint's cut seals; its next table is as large as the whole interval.
        ids.seal(count);
        let open = ids.generations.back().expect("open");
        assert!(open.at_cut && open.index.slots() >= 2 * count as usize);
        // The splits count as one interval: two more checkpoints never made durable are
        // still sealed (ids of the intervals between them go to their own tables).
        ids.insert(1, count);
        ids.seal(count + 1);
        ids.insert(2, count + 1);
        ids.seal(count + 2);
        assert_eq!(ids.count(), 5);
        // A durable cut drops the split generations below it with the rest.
        ids.drop_below(count);
        assert_eq!((ids.count(), ids.len(), ids.first()), (2, 2, count));
        assert!(ids.may_be_cold(5000) && ids.may_be_cold(5000 + u128::from(count - 1)));
        assert_eq!(ids.get(1), Some(count));
    }

    #[test]
    fn a_rollback_across_a_split_leaves_the_positions_to_the_generation_before() {
        let mut ids = IdGenerations::new(0, 0, 7);
        let split_at = (SPLIT_SLOTS_MIN / 2) as u32;
        // A linked chain opened at position `chain` and ran past the split.
        let chain = split_at - 10;
        for position in 0..split_at + 20 {
            ids.insert(9000 + u128::from(position), position);
        }
        assert_eq!(ids.count(), 2);
        for position in (chain..split_at + 20).rev() {
            assert_eq!(ids.remove(9000 + u128::from(position)), Some(position));
        }
        assert_eq!((ids.count(), ids.len()), (1, chain as usize));
        // The positions taken back are used again, and a checkpoint may cut there.
        ids.insert(1, chain);
        ids.seal(chain + 1);
        ids.insert(2, chain + 1);
        assert_eq!((ids.get(1), ids.get(2)), (Some(chain), Some(chain + 1)));
        assert_eq!(ids.get(9000 + u128::from(chain)), None);
    }
}
