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

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};

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
    index: GenerationIds,
    /// The smallest and largest id inserted (a rollback does not narrow it).
    range: Option<(u128, u128)>,
    /// Opened at a checkpoint's cut, not because the one before was full.
    at_cut: bool,
}

/// A generation's ids: in a list while they come in ascending runs that do not overlap
/// (ids that grow with time, or several clients' batches of such ids arriving a little out
/// of order), else in a hash index.
///
/// The list is written in order (16 bytes per id, no random access, no table to rehash), and
/// its positions follow from the first. Its [`Runs`] tell which stretch of the list may hold
/// an id: a new id in a gap between runs, or above them all, is told apart without a look at
/// the list; an id inside a run's range splits that run. A position out of sequence, or runs
/// too short to pay, move the generation to a hash index (see [`IdGenerations::insert`]).
enum GenerationIds {
    /// Ids at positions `base`, `base + 1`, …, in ascending runs; `room` is the ids the
    /// generation was opened for, which a hash index made from it gets room for.
    Ascending {
        base: u32,
        ids: Vec<u128>,
        runs: Runs,
        room: usize,
    },
    Hashed(IdIndex),
}

/// A list's runs: stretches of consecutive positions whose ids ascend, none overlapping
/// another's id range. With four clients each sending ascending batches, each batch that
/// arrives before the one below it starts a run.
#[derive(Default)]
struct Runs {
    /// In list order: the last is the run the next id may extend.
    in_order: Vec<Run>,
    /// Each run's first id and its index in `in_order`.
    by_first: BTreeMap<u128, usize>,
}

#[derive(Clone, Copy)]
struct Run {
    /// Where the run starts in the list.
    start: u32,
    len: u32,
    first: u128,
    last: u128,
    /// The first id of the run just above it when it started, or when it became the last
    /// again (none: no run above): runs started later are taken back before it can be
    /// extended again, so this stays the bound it may grow to.
    ceiling: Option<u128>,
}

/// Runs a list may have before it is hashed: about this many, and one more per this many ids
/// (a binary search of a long run costs less than a table's miss per insert; runs of a few
/// ids cost more than the table). A new run is refused once it would make this many (a split
/// before it may add one more).
const RUNS_MIN: usize = 16;
const RUN_IDS_MIN: usize = 1024;

impl Runs {
    /// Takes `id` as the next entry of `list`: extends the last run, or starts one in a gap
    /// between runs (splitting a run whose range spans the gap: a run may have grown over
    /// ids that come later). False for an id listed already, or when runs would be too many.
    fn push(&mut self, id: u128, list: &[u128]) -> bool {
        if let Some(open) = self.in_order.last_mut() {
            if id > open.last && open.ceiling.is_none_or(|ceiling| ceiling > id) {
                open.last = id;
                open.len += 1;
                return true;
            }
        }
        if self.in_order.len() + 1 >= RUNS_MIN + list.len() / RUN_IDS_MIN {
            return false;
        }
        if let Some((_, &at)) = self.by_first.range(..=id).next_back() {
            let run = self.in_order[at];
            if id <= run.last {
                let (start, len) = (run.start as usize, run.len as usize);
                let Err(split) = list[start..start + len].binary_search(&id) else {
                    return false;
                };
                assert!(0 < split && split < len, "inside the run's range");
                let upper = Run {
                    start: run.start + split as u32,
                    len: (len - split) as u32,
                    first: list[start + split],
                    last: run.last,
                    ceiling: run.ceiling,
                };
                let lower = &mut self.in_order[at];
                lower.len = split as u32;
                lower.last = list[start + split - 1];
                lower.ceiling = Some(upper.first);
                self.in_order.insert(at + 1, upper);
                for index in self.by_first.values_mut() {
                    if *index > at {
                        *index += 1;
                    }
                }
                self.by_first.insert(upper.first, at + 1);
            }
        }
        let start = u32::try_from(list.len()).expect("a generation's positions fit a u32");
        let above = self.by_first.range((Excluded(id), Unbounded)).next();
        let ceiling = above.map(|(first, _)| *first);
        self.by_first.insert(id, self.in_order.len());
        self.in_order.push(Run {
            start,
            len: 1,
            first: id,
            last: id,
            ceiling,
        });
        true
    }

    /// The run whose id range holds `id`, if any.
    #[inline]
    fn holder(&self, id: u128) -> Option<&Run> {
        let (_, at) = self.by_first.range(..=id).next_back()?;
        let run = &self.in_order[*at];
        (id <= run.last).then_some(run)
    }

    /// Where `id` is in `list` (whose runs these are), if it is listed.
    #[inline]
    fn find(&self, list: &[u128], id: u128) -> Option<usize> {
        let run = self.holder(id)?;
        let start = run.start as usize;
        let at = list[start..start + run.len as usize]
            .binary_search(&id)
            .ok()?;
        Some(start + at)
    }

    /// Takes back the list's last entry; `last` is the entry before it, if any.
    fn pop(&mut self, last: Option<u128>) {
        let open = self.in_order.last_mut().expect("a run");
        open.len -= 1;
        if open.len == 0 {
            let first = open.first;
            self.in_order.pop();
            self.by_first.remove(&first);
            // The run before is open again: its bound is the run now just above it, which
            // may be higher than when it started (the run taken back may have split it).
            if let Some(open) = self.in_order.last() {
                let above = self
                    .by_first
                    .range((Excluded(open.first), Unbounded))
                    .next();
                let ceiling = above.map(|(first, _)| *first);
                self.in_order.last_mut().expect("a run").ceiling = ceiling;
            }
        } else {
            open.last = last.expect("the run keeps an entry");
        }
    }
}

impl GenerationIds {
    fn len(&self) -> usize {
        match self {
            GenerationIds::Ascending { ids, .. } => ids.len(),
            GenerationIds::Hashed(index) => index.len(),
        }
    }

    /// Bytes the process has touched for it (see [`IdIndex::resident_bytes`]).
    fn resident_bytes(&self) -> u64 {
        match self {
            GenerationIds::Ascending { ids, runs, .. } => {
                (ids.len() * size_of::<u128>() + runs.in_order.len() * 2 * size_of::<Run>()) as u64
            }
            GenerationIds::Hashed(index) => index.resident_bytes(),
        }
    }

    #[inline]
    fn prefetch(&self, id: u128) {
        if let GenerationIds::Hashed(index) = self {
            index.prefetch(id);
        }
    }

    #[inline]
    fn get(&self, id: u128) -> Option<u32> {
        match self {
            GenerationIds::Ascending {
                base, ids, runs, ..
            } => Some(base + runs.find(ids, id)? as u32),
            GenerationIds::Hashed(index) => index.get(id),
        }
    }

    /// Appends `id` at `position` to the list if it goes there: its position following the
    /// list's (an empty list starts at `position`), and `id` in a run (see [`Runs::push`]).
    /// False for a table.
    fn push_ascending(&mut self, id: u128, position: u32) -> bool {
        let GenerationIds::Ascending {
            base, ids, runs, ..
        } = self
        else {
            return false;
        };
        if ids.is_empty() {
            *base = position;
        } else if position as usize != *base as usize + ids.len() {
            return false;
        }
        if !runs.push(id, ids) {
            return false;
        }
        ids.push(id);
        true
    }

    /// The list's ids in a hash index with room for twice as many, and for as many as the
    /// generation was opened for: a table grown step by step would rehash every id at each
    /// step.
    fn hashed(base: u32, ids: &[u128], room: usize, seed: u64) -> IdIndex {
        let capacity = (2 * ids.len() + 16).max(room);
        let mut index = IdIndex::with_capacity(capacity, seed);
        for (at, id) in ids.iter().enumerate() {
            index.insert(*id, base + at as u32);
        }
        index
    }

    fn remove(&mut self, id: u128) -> Option<u32> {
        match self {
            GenerationIds::Ascending {
                base, ids, runs, ..
            } => {
                let at = runs.find(ids, id)?;
                // A rollback takes back the newest ids, one by one from the last.
                assert_eq!(at + 1, ids.len(), "an id removed before a newer one");
                ids.pop();
                runs.pop(ids.last().copied());
                Some(*base + at as u32)
            }
            GenerationIds::Hashed(index) => index.remove(id),
        }
    }
}

/// A list of ids this long or longer that meets an id out of order is followed by a new,
/// hashed generation rather than rehashed (the stall of a large rehash, as for a split).
const ASCENDING_KEPT_MIN: usize = SPLIT_SLOTS_MIN / 2;

impl Generation {
    /// An empty generation from `first` on, with room for `capacity` ids.
    fn new(first: u32, capacity: usize, at_cut: bool) -> Generation {
        Generation {
            first,
            index: GenerationIds::Ascending {
                base: first,
                ids: Vec::with_capacity(capacity),
                runs: Runs::default(),
                room: capacity,
            },
            range: None,
            at_cut,
        }
    }

    /// Whether `id` is within the generation's range, so that its table may hold it.
    #[inline]
    fn may_hold(&self, id: u128) -> bool {
        self.range
            .is_some_and(|(low, high)| low <= id && id <= high)
    }
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
        let open = Generation::new(first, capacity, true);
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

    /// Asks the CPU to bring into cache the slots `id` would be found at, and the slot it
    /// would be inserted at in the open generation's table.
    #[inline]
    pub(crate) fn prefetch(&self, id: u128) {
        let count = self.generations.len();
        for (at, generation) in self.generations.iter().enumerate() {
            if at + 1 == count || generation.may_hold(id) {
                generation.index.prefetch(id);
            }
        }
    }

    /// The ids of the transfers at positions `range`, in position order, if one generation
    /// lists them all in one run (ids that came in ascending order): a checkpoint's ids,
    /// already sorted.
    pub(crate) fn listed(&self, range: std::ops::Range<u32>) -> Option<&[u128]> {
        self.generations.iter().find_map(|generation| {
            let GenerationIds::Ascending {
                base, ids, runs, ..
            } = &generation.index
            else {
                return None;
            };
            if runs.in_order.len() > 1 {
                return None;
            }
            let from = range.start.checked_sub(*base)? as usize;
            let to = range.end.checked_sub(*base)? as usize;
            ids.get(from..to)
        })
    }

    /// The ids of the transfers at positions `range` in id order, if a sealed generation
    /// lists them all in runs: pieces of its runs, each with the position of its first id.
    /// Runs are disjoint, so their pieces in order of first id are in id order: a checkpoint's
    /// ids, sorted without a sort. Sealed: a later generation was opened at a cut, which no
    /// rollback removes, so no id goes to this one again and every call gives the same.
    pub(crate) fn listed_in_runs(
        &self,
        range: std::ops::Range<u32>,
    ) -> Option<Vec<(u32, &[u128])>> {
        let sealed = (self.generations.iter())
            .rposition(|generation| generation.at_cut)
            .unwrap_or(0);
        self.generations.iter().take(sealed).find_map(|generation| {
            let GenerationIds::Ascending {
                base, ids, runs, ..
            } = &generation.index
            else {
                return None;
            };
            let from = range.start.checked_sub(*base)? as usize;
            let to = range.end.checked_sub(*base)? as usize;
            if from > to || to > ids.len() {
                return None;
            }
            let pieces = runs.by_first.values().filter_map(|at| {
                let run = &runs.in_order[*at];
                let start = (run.start as usize).max(from);
                let end = (run.start as usize + run.len as usize).min(to);
                (start < end).then(|| (base + start as u32, &ids[start..end]))
            });
            Some(pieces.collect())
        })
    }

    /// Where `id` is, if its position is at or past [`IdGenerations::first`]. Only the
    /// generations whose id range holds `id` are probed: a new id that grows with time (as
    /// TigerBeetle recommends) probes none, so its existence check touches no table.
    #[inline]
    pub(crate) fn get(&self, id: u128) -> Option<u32> {
        self.generations
            .iter()
            .rev()
            .filter(|generation| generation.may_hold(id))
            .find_map(|generation| generation.index.get(id))
    }

    /// Indexes `id` at `position`, which must be in the open generation's range; `id` must
    /// not be indexed yet.
    pub(crate) fn insert(&mut self, id: u128, position: u32) {
        let count = self.generations.len();
        let seed = self.seed;
        let open = self.generations.back_mut().expect("never empty");
        assert!(position >= open.first, "an id older than its generation");
        if open.index.push_ascending(id, position) {
            open.range = widen(open.range, Some((id, id)));
            return;
        }
        let may_split = count < GENERATIONS_MAX + SPLITS_MAX;
        // A long list stays as it is, and later ids are hashed in a generation of their own;
        // a short one is rehashed in place. A full table is followed by one of twice its
        // slots, as growing would give; a long list by one with room for the rest of the ids
        // it was opened for (and at least as many as it holds). The one before keeps its ids
        // until a durable checkpoint covers its positions.
        let split = match &open.index {
            GenerationIds::Ascending {
                ids, room: opened, ..
            } => (ids.len() >= ASCENDING_KEPT_MIN)
                .then(|| opened.saturating_sub(ids.len()).max(ids.len())),
            GenerationIds::Hashed(index) => {
                (index.is_full() && index.slots() >= SPLIT_SLOTS_MIN).then(|| index.slots())
            }
        };
        match (split.filter(|_| may_split), &open.index) {
            (Some(capacity), _) => self.generations.push_back(Generation {
                first: position,
                index: GenerationIds::Hashed(IdIndex::with_capacity(capacity, seed)),
                range: None,
                at_cut: false,
            }),
            (
                None,
                GenerationIds::Ascending {
                    base, ids, room, ..
                },
            ) => {
                let index = GenerationIds::hashed(*base, ids, *room, seed);
                open.index = GenerationIds::Hashed(index);
            }
            (None, GenerationIds::Hashed(_)) => {}
        }
        let open = self.generations.back_mut().expect("never empty");
        let GenerationIds::Hashed(index) = &mut open.index else {
            unreachable!("an id out of order is hashed")
        };
        index.insert(id, position);
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
        self.generations
            .push_back(Generation::new(cut, capacity, true));
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

    /// A seeded xorshift generator: the tests' ids and steps, the same in every run.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

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

    /// Ids a generation has room for before its list or table grows.
    fn room(generation: &Generation) -> usize {
        match &generation.index {
            GenerationIds::Ascending { ids, .. } => ids.capacity(),
            GenerationIds::Hashed(index) => index.slots() / 2,
        }
    }

    #[test]
    fn a_full_large_generation_is_followed_by_a_new_one_not_grown() {
        let mut ids = IdGenerations::new(0, 0, 7);
        let count = (SPLIT_SLOTS_MIN * 3) as u32;
        // Descending ids: each is out of order, so they are hashed.
        let id_at = |position: u32| 5000 + u128::from(count - position);
        for position in 0..count {
            ids.insert(id_at(position), position);
        }
        // Grown in place up to SPLIT_SLOTS_MIN slots (half of them ids), then split twice:
        // tables of 2^16, 2^17 and 2^18 slots.
        assert_eq!(ids.count(), 3);
        assert_eq!(ids.len(), count as usize);
        let firsts: Vec<u32> = ids.generations.iter().map(|g| g.first).collect();
        let half = (SPLIT_SLOTS_MIN / 2) as u32;
        assert_eq!(firsts, [0, half, half + SPLIT_SLOTS_MIN as u32]);
        assert!((0..count).all(|p| ids.get(id_at(p)) == Some(p)));
        assert_eq!(ids.get(id_at(count)), None);
        // A checkpoint's cut seals; its next generation has room for the whole interval.
        ids.seal(count);
        let open = ids.generations.back().expect("open");
        assert!(open.at_cut && room(open) >= count as usize);
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
        assert!(ids.may_be_cold(id_at(0)) && ids.may_be_cold(id_at(count - 1)));
        assert_eq!(ids.get(1), Some(count));
    }

    #[test]
    fn a_rollback_across_a_split_leaves_the_positions_to_the_generation_before() {
        let mut ids = IdGenerations::new(0, 0, 7);
        let split_at = (SPLIT_SLOTS_MIN / 2) as u32;
        // Descending ids, hashed. A linked chain opened at position `chain` and ran past the
        // split.
        let id_at = |position: u32| 1_000_000 - u128::from(position);
        let chain = split_at - 10;
        for position in 0..split_at + 20 {
            ids.insert(id_at(position), position);
        }
        assert_eq!(ids.count(), 2);
        for position in (chain..split_at + 20).rev() {
            assert_eq!(ids.remove(id_at(position)), Some(position));
        }
        assert_eq!((ids.count(), ids.len()), (1, chain as usize));
        // The positions taken back are used again, and a checkpoint may cut there.
        ids.insert(1, chain);
        ids.seal(chain + 1);
        ids.insert(2, chain + 1);
        assert_eq!((ids.get(1), ids.get(2)), (Some(chain), Some(chain + 1)));
        assert_eq!(ids.get(id_at(chain)), None);
    }

    #[test]
    fn ascending_ids_are_listed_until_their_runs_are_too_many() {
        let is_listed = |ids: &IdGenerations, at: usize| {
            matches!(ids.generations[at].index, GenerationIds::Ascending { .. })
        };
        // An id in a gap of a run splits it, and the list goes on.
        let mut ids = IdGenerations::new(0, 0, 7);
        for position in 0..100u32 {
            ids.insert(10 + 2 * u128::from(position), position);
        }
        assert!(is_listed(&ids, 0));
        assert_eq!(
            (ids.get(10), ids.get(208), ids.get(11)),
            (Some(0), Some(99), None)
        );
        ids.insert(11, 100);
        ids.insert(13, 101);
        assert_eq!(ids.count(), 1);
        assert!(is_listed(&ids, 0));
        assert!((0..100u32).all(|p| ids.get(10 + 2 * u128::from(p)) == Some(p)));
        assert_eq!(
            (ids.get(11), ids.get(13), ids.get(15)),
            (Some(100), Some(101), None)
        );
        // A run taken back gives the run before it its full bound again: 15 splits the run
        // of 10 and 20; once 15 and 20 are taken back, 30 extends the run of 10.
        let mut ids = IdGenerations::new(0, 0, 7);
        for (at, id) in [10u128, 20, 15].into_iter().enumerate() {
            ids.insert(id, at as u32);
        }
        assert_eq!((ids.remove(15), ids.remove(20)), (Some(2), Some(1)));
        ids.insert(30, 1);
        let GenerationIds::Ascending { runs, .. } = &ids.generations[0].index else {
            panic!("a list")
        };
        assert_eq!(runs.in_order.len(), 1, "extended, not a new run");
        assert_eq!(
            (ids.get(10), ids.get(30), ids.get(20)),
            (Some(0), Some(1), None)
        );
        // Ids that each start a run: a short list is rehashed in place once they are too
        // many.
        let runs_max = |len: usize| RUNS_MIN + len / RUN_IDS_MIN - 1;
        let mut ids = IdGenerations::new(0, 0, 7);
        let mut at = 0u32;
        while is_listed(&ids, 0) {
            ids.insert(1000 - u128::from(at), at);
            at += 1;
        }
        assert_eq!((ids.count(), at as usize), (1, runs_max(0) + 1));
        assert!((0..at).all(|p| ids.get(1000 - u128::from(p)) == Some(p)));
        // A long list stays, and the ids from the first that would make too many runs on
        // are hashed in a generation of their own; a rollback across both goes back to the
        // list.
        let long = ASCENDING_KEPT_MIN as u32;
        let mut ids = IdGenerations::new(0, 0, 7);
        for position in 0..long {
            ids.insert(1000 + u128::from(position), position);
        }
        let mut at = long;
        while ids.count() == 1 {
            ids.insert(999 - u128::from(at - long), at);
            at += 1;
        }
        assert!(is_listed(&ids, 0) && !is_listed(&ids, 1));
        assert_eq!((at - long) as usize, runs_max(long as usize));
        assert_eq!(
            (
                ids.get(999),
                ids.get(1000 - u128::from(at - long)),
                ids.get(1000)
            ),
            (Some(long), Some(at - 1), Some(0))
        );
        while at > long - 1 {
            at -= 1;
            let id = if at >= long {
                999 - u128::from(at - long)
            } else {
                1000 + u128::from(at)
            };
            assert_eq!(ids.remove(id), Some(at));
        }
        assert_eq!((ids.count(), ids.len()), (1, long as usize - 1));
        // A long list opened for many more ids is followed by a table with room for the
        // rest of them.
        let mut opened = IdGenerations::new(0, 10 * ASCENDING_KEPT_MIN, 7);
        for position in 0..long {
            opened.insert(1000 + u128::from(position), position);
        }
        let mut at = long;
        while opened.count() == 1 {
            opened.insert(999 - u128::from(at - long), at);
            at += 1;
        }
        assert!(room(&opened.generations[1]) >= 9 * ASCENDING_KEPT_MIN);
        // The list goes on at the position taken back.
        ids.insert(1_000_000, long - 1);
        assert!(is_listed(&ids, 0));
        assert_eq!(ids.get(1_000_000), Some(long - 1));
        // A list opened for many ids and rehashed early gets a table with room for them
        // all, not one grown step by step.
        let mut ids = IdGenerations::new(0, 1000, 7);
        ids.insert(7, 0);
        ids.insert(9, 2);
        assert!(!is_listed(&ids, 0) && room(&ids.generations[0]) >= 1000);
        // A list gives the ids of its positions, and nothing past them; a table none.
        assert_eq!((ids.listed(0..0), ids.listed(0..1)), (None, None));
        let mut listed = IdGenerations::new(5, 0, 7);
        for position in 5..10u32 {
            listed.insert(100 + u128::from(position), position);
        }
        assert_eq!(listed.listed(6..8), Some(&[106, 107][..]));
        assert_eq!(listed.listed(10..10), Some(&[][..]));
        assert_eq!((listed.listed(4..6), listed.listed(8..11)), (None, None));
        // A position that does not follow the list's is hashed too.
        let mut ids = IdGenerations::new(0, 0, 7);
        ids.insert(1, 0);
        ids.insert(2, 2);
        assert!(!is_listed(&ids, 0));
        assert_eq!((ids.get(1), ids.get(2)), (Some(0), Some(2)));
    }

    /// Four clients' batches of growing ids, each a little out of order: every batch that
    /// comes before the one below it starts a run, and the list stays a list.
    #[test]
    fn batches_of_ascending_ids_out_of_order_stay_listed_in_runs() {
        let batch = 2048u32;
        let mut ids = IdGenerations::new(0, 0, 7);
        let mut position = 0u32;
        let mut model = Vec::new();
        // Batches 1, 0, 2, 4, 3, 5, …: the ids of batch `b` are 10_000 + b * batch + i.
        let order: Vec<u32> = (0..12u32)
            .map(|b| {
                if b % 3 == 1 {
                    b - 1
                } else if b % 3 == 0 {
                    b + 1
                } else {
                    b
                }
            })
            .collect();
        for b in order {
            for i in 0..batch {
                let id = 10_000 + u128::from(b * batch + i);
                assert_eq!(ids.get(id), None, "new");
                ids.insert(id, position);
                model.push(id);
                position += 1;
            }
        }
        assert_eq!(ids.count(), 1);
        assert!(matches!(
            ids.generations[0].index,
            GenerationIds::Ascending { .. }
        ));
        for (at, id) in model.iter().enumerate() {
            assert_eq!(ids.get(*id), Some(at as u32));
        }
        // Gaps and the outside find nothing; a checkpoint sorts them (no single run).
        assert_eq!((ids.get(9_999), ids.get(10_000 + 13 * 2048)), (None, None));
        assert_eq!(ids.listed(0..position), None);
        // Sealed at a cut, its runs give the ids in id order with their positions.
        assert!(ids.listed_in_runs(0..position).is_none(), "still open");
        let mut sealed = IdGenerations::new(0, 0, 7);
        for (at, id) in model.iter().enumerate() {
            sealed.insert(*id, at as u32);
        }
        sealed.seal(position);
        let pieces = sealed.listed_in_runs(0..position).expect("sealed, in runs");
        let given: Vec<(u128, u32)> = (pieces.iter())
            .flat_map(|(first, piece)| piece.iter().copied().zip(*first..))
            .collect();
        let mut expected: Vec<(u128, u32)> = model.iter().copied().zip(0..).collect();
        expected.sort_unstable();
        assert_eq!(given, expected);
        let inner = sealed.listed_in_runs(100..3000).expect("part of it");
        assert!(inner
            .iter()
            .all(|(first, piece)| (100..3000).contains(first)
                && *first as usize + piece.len() <= 3000));
        // A rollback through a run's start goes back to the run before, which grows again.
        for _ in 0..batch + 1 {
            let id = model.pop().expect("kept");
            assert_eq!(ids.remove(id), Some(model.len() as u32));
        }
        let last = *model.last().expect("kept");
        ids.insert(last + 1, model.len() as u32);
        assert_eq!(ids.get(last + 1), Some(model.len() as u32));
    }

    /// Batches of growing ids with gaps, arriving out of order by up to three, through
    /// rollbacks and seals: every lookup agrees with a map, whether runs split, the list
    /// becomes a table, or a generation splits.
    #[test]
    fn lookups_agree_with_a_map_for_batches_out_of_order() {
        let mut random = xorshift(0x2545_f491_4f6c_dd1d);
        let mut next = move |below: u64| random() % below;
        for round in 0..20u64 {
            let mut ids = IdGenerations::new(0, 0, round);
            let mut model: Vec<u128> = Vec::new();
            let mut cut = 0;
            // Batches numbered in order, each taking ids 1000 * b + (a sparse ascending set).
            let mut pending: Vec<u64> = Vec::new();
            let mut b_next = 0u64;
            for _ in 0..300 {
                while pending.len() < 4 {
                    pending.push(b_next);
                    b_next += 1;
                }
                let batch = pending.remove(next(pending.len() as u64) as usize);
                let mut id = 1_000_000 * u128::from(batch);
                for _ in 0..next(200) + 1 {
                    id += u128::from(next(3) + 1) * u128::from(1 + round % 3);
                    if next(50) == 0 && model.len() > cut {
                        let taken = model.pop().expect("kept");
                        assert_eq!(ids.remove(taken), Some(model.len() as u32));
                    }
                    if model.contains(&id) {
                        continue;
                    }
                    assert_eq!(ids.get(id), None, "round {round}");
                    ids.insert(id, model.len() as u32);
                    model.push(id);
                }
                if next(40) == 0 {
                    cut = model.len();
                    ids.seal(cut as u32);
                }
                for (position, id) in model.iter().enumerate().rev().take(300) {
                    assert_eq!(ids.get(*id), Some(position as u32), "round {round}");
                }
            }
            for (position, id) in model.iter().enumerate() {
                assert_eq!(ids.get(*id), Some(position as u32), "round {round}");
                assert_eq!(ids.get(*id + 1_000_000_000_000), None);
            }
        }
    }

    /// Ids of both orders (growing, and scattered over the whole range) through splits,
    /// seals and rollbacks: every lookup agrees with a map, so probing only the generations
    /// whose range holds an id misses none.
    #[test]
    fn lookups_agree_with_a_map_for_growing_and_scattered_ids() {
        let mut ids = IdGenerations::new(0, 0, 11);
        let mut model: Vec<u128> = Vec::new();
        // Checkpoints cut between batches, so a rollback never goes below the last cut.
        let mut cut = 0;
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for step in 0..200_000u32 {
            let roll = next() % 1000;
            if roll < 2 && model.len() > cut {
                // A linked chain's rollback takes back the newest positions.
                let back = (next() % 5 + 1).min((model.len() - cut) as u64) as usize;
                for _ in 0..back {
                    let id = model.pop().expect("kept");
                    assert_eq!(ids.remove(id), Some(model.len() as u32));
                }
            } else if roll < 3 {
                cut = model.len();
                ids.seal(cut as u32);
            } else {
                let id = if step % 3 == 0 {
                    u128::from(next()) << 20 | u128::from(step)
                } else {
                    1_000_000 + u128::from(step)
                };
                if model.contains(&id) {
                    continue;
                }
                ids.insert(id, model.len() as u32);
                model.push(id);
            }
            if step % 10_000 == 0 {
                for (position, id) in model.iter().enumerate() {
                    assert_eq!(ids.get(*id), Some(position as u32), "step {step}");
                }
                assert_eq!(ids.get(u128::from(next()) << 21 | 1), None);
            }
        }
        assert!(ids.count() > 1);
        for (position, id) in model.iter().enumerate() {
            assert_eq!(ids.get(*id), Some(position as u32));
        }
    }
}
