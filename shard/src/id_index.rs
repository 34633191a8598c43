//! `IdIndex`: the map from an account or transfer id to the record's position in its table.
//!
//! An open-addressing hash table with linear probing, built for the write path of a batch:
//! the batch loop first calls [`IdIndex::prefetch`] for every event's id, so the cache misses
//! of thousands of lookups overlap instead of coming one after the other, and then looks each
//! id up while the lines are in cache. Slots are 32 bytes (two per cache line); the table is
//! kept at most half full, so a probe rarely leaves the first line. Id 0 is never a valid id
//! and marks an empty slot. The hash is keyed with the ledger's seed; results never depend on
//! the table's order.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use zerocopy::FromZeros;

#[derive(Clone, Copy, Default, FromZeros)]
#[repr(C, align(32))]
struct Slot {
    id: u128,
    position: u32,
}

const _: () = assert!(size_of::<Slot>() == 32);

/// Smallest table, in slots.
const SLOTS_MIN: usize = 16;

pub(crate) struct IdIndex {
    slots: Vec<Slot>,
    /// `slots.len() - 1`; `slots.len()` is a power of two.
    mask: usize,
    len: usize,
    hasher: FixedState,
}

impl IdIndex {
    /// An index with room for `capacity` ids before it grows.
    pub(crate) fn with_capacity(capacity: usize, seed: u64) -> IdIndex {
        let slots_count = (capacity.saturating_mul(2))
            .max(SLOTS_MIN)
            .next_power_of_two();
        IdIndex {
            slots: zeroed_slots(slots_count),
            mask: slots_count - 1,
            len: 0,
            hasher: FixedState::with_seed(seed),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of its table the process has touched: the slots are allocated zeroed (pages
    /// the kernel maps on first write), so each id inserted touches at most one page.
    pub(crate) fn resident_bytes(&self) -> u64 {
        const PAGE: u64 = 4096;
        let table = (self.slots.len() * size_of::<Slot>()) as u64;
        table.min(self.len as u64 * PAGE)
    }

    fn home(&self, id: u128) -> usize {
        self.hasher.hash_one(id) as usize & self.mask
    }

    /// Asks the CPU to bring the slot `id` would be found at into cache.
    #[inline]
    pub(crate) fn prefetch(&self, id: u128) {
        #[cfg(target_arch = "x86_64")]
        {
            let slot: *const Slot = &self.slots[self.home(id)];
            // SAFETY: prefetching is a hint that never faults; `slot` points into `slots`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    slot.cast::<i8>(),
                );
            }
        }
    }

    /// Where `id` is, if indexed.
    #[inline]
    pub(crate) fn get(&self, id: u128) -> Option<u32> {
        if id == 0 {
            return None; // Never indexed: it marks empty slots.
        }
        let mut index = self.home(id);
        loop {
            let slot = &self.slots[index];
            if slot.id == id {
                return Some(slot.position);
            }
            if slot.id == 0 {
                return None;
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Indexes `id` at `position`; `id` must not be indexed yet.
    pub(crate) fn insert(&mut self, id: u128, position: u32) {
        assert!(id != 0);
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mut index = self.home(id);
        loop {
            let slot = &mut self.slots[index];
            assert!(slot.id != id, "id indexed twice");
            if slot.id == 0 {
                *slot = Slot { id, position };
                self.len += 1;
                return;
            }
            index = (index + 1) & self.mask;
        }
    }

    /// Removes `id`, returning its position. Later slots of the probe run move back so that
    /// every remaining id is still found from its home slot.
    pub(crate) fn remove(&mut self, id: u128) -> Option<u32> {
        assert!(id != 0);
        let mut hole = self.home(id);
        loop {
            let slot = self.slots[hole];
            if slot.id == 0 {
                return None;
            }
            if slot.id == id {
                break;
            }
            hole = (hole + 1) & self.mask;
        }
        let position = self.slots[hole].position;
        let mut next = hole;
        loop {
            next = (next + 1) & self.mask;
            let slot = self.slots[next];
            if slot.id == 0 {
                break;
            }
            // The slot may fill the hole if its home is not cyclically within (hole, next].
            let home = self.home(slot.id);
            let distance_home = next.wrapping_sub(home) & self.mask;
            let distance_hole = next.wrapping_sub(hole) & self.mask;
            if distance_home >= distance_hole {
                self.slots[hole] = slot;
                hole = next;
            }
        }
        self.slots[hole] = Slot::default();
        self.len -= 1;
        Some(position)
    }

    fn grow(&mut self) {
        let slots_count = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, zeroed_slots(slots_count));
        self.mask = slots_count - 1;
        self.len = 0;
        for slot in old.into_iter().filter(|slot| slot.id != 0) {
            self.insert(slot.id, slot.position);
        }
    }
}

/// `count` empty slots, allocated zeroed: the pages of a large table are zeroed by the kernel
/// as they are first touched, instead of all at once (a new checkpoint interval's generation
/// of millions of slots would otherwise stall the core for tens of milliseconds).
fn zeroed_slots(count: usize) -> Vec<Slot> {
    let slots = <[Slot]>::new_box_zeroed_with_elems(count);
    slots.expect("the id index's allocation").into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_agree_with_a_map_through_growth() {
        let mut index = IdIndex::with_capacity(0, 7);
        let mut model = std::collections::BTreeMap::new();
        let mut state = 1u64;
        for step in 0..20_000u32 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // A small id space, so that probe runs collide and removals shift them.
            let id = u128::from(state >> 52) + 1;
            if state % 3 == 0 {
                assert_eq!(index.remove(id), model.remove(&id), "step {step}");
            } else if let std::collections::btree_map::Entry::Vacant(entry) = model.entry(id) {
                entry.insert(step);
                index.insert(id, step);
            }
            assert_eq!(index.len(), model.len());
        }
        for id in 1..=4096u128 {
            assert_eq!(index.get(id), model.get(&id).copied(), "id {id}");
        }
    }
}
