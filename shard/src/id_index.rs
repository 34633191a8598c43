//! `IdIndex`: the map from an account or transfer id to the record's position in its table.
//!
//! An open-addressing hash table with linear probing, built for the write path of a batch:
//! the batch loop first calls [`IdIndex::prefetch`] for every event's id, so the cache misses
//! of thousands of lookups overlap instead of coming one after the other, and then looks each
//! id up while the lines are in cache. Slots are 32 bytes (two per cache line); the table is
//! kept at most half full, so a probe rarely leaves the first line. Id 0 is never a valid id
//! and marks an empty slot. The hash is keyed with the ledger's seed; results never depend on
//! the table's order.

use std::alloc::{self, Layout};
use std::hash::BuildHasher;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

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
    slots: ZeroedSlots,
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
            slots: ZeroedSlots::new(slots_count),
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
        crate::prefetch::line::<Slot>(&self.slots[self.home(id)]);
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

    /// Slots in the table (twice the ids it holds before it grows, or more).
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Whether the next insert grows the table (rehashing every id into one twice as large).
    pub(crate) fn is_full(&self) -> bool {
        (self.len + 1) * 2 > self.slots.len()
    }

    /// Indexes `id` at `position`; `id` must not be indexed yet.
    pub(crate) fn insert(&mut self, id: u128, position: u32) {
        assert!(id != 0);
        if self.is_full() {
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
        let old = std::mem::replace(&mut self.slots, ZeroedSlots::new(slots_count));
        self.mask = slots_count - 1;
        self.len = 0;
        for slot in old.iter().filter(|slot| slot.id != 0) {
            self.insert(slot.id, slot.position);
        }
    }
}

/// A table of empty slots, allocated zeroed so that the pages of a large one are zeroed by
/// the kernel as they are first touched, not all at once: a new checkpoint interval's
/// generation of millions of slots would otherwise stall its core for as long as it takes to
/// write hundreds of megabytes, and make them resident before a single id lands there.
///
/// The allocator gives zeroed memory without writing it (fresh pages of its own) only for an
/// alignment it provides by itself, which is less than a slot's 32 bytes (the slot's own
/// alignment keeps two slots to a cache line). So the table is allocated with 16-byte
/// alignment and half a slot more, and starts at the first 32-byte boundary inside.
struct ZeroedSlots {
    /// The first slot, at a 32-byte boundary inside the allocation.
    slots: NonNull<Slot>,
    len: usize,
    allocation: NonNull<u8>,
    layout: Layout,
}

/// The alignment the allocator gives zeroed memory at without writing it.
const ALLOCATION_ALIGN: usize = 16;

impl ZeroedSlots {
    fn new(len: usize) -> ZeroedSlots {
        assert!(len > 0);
        let size = len
            .checked_mul(size_of::<Slot>())
            .and_then(|size| size.checked_add(align_of::<Slot>() - ALLOCATION_ALIGN))
            .expect("an id index's size fits in memory");
        let layout = Layout::from_size_align(size, ALLOCATION_ALIGN).expect("a valid layout");
        // SAFETY: the layout's size is not zero.
        let allocation = unsafe { alloc::alloc_zeroed(layout) };
        let Some(allocation) = NonNull::new(allocation) else {
            alloc::handle_alloc_error(layout);
        };
        let offset = allocation.as_ptr().align_offset(align_of::<Slot>());
        assert!(offset <= align_of::<Slot>() - ALLOCATION_ALIGN);
        // SAFETY: `offset` leaves room for `len` slots inside the allocation (its size has
        // the extra bytes an alignment of 16 can need to reach 32).
        let slots = unsafe { allocation.add(offset) }.cast::<Slot>();
        ZeroedSlots {
            slots,
            len,
            allocation,
            layout,
        }
    }
}

impl Deref for ZeroedSlots {
    type Target = [Slot];

    fn deref(&self) -> &[Slot] {
        // SAFETY: `slots` is aligned, points to `len` slots inside the allocation this owns,
        // and all-zero bytes are a valid (empty) slot.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr(), self.len) }
    }
}

impl DerefMut for ZeroedSlots {
    fn deref_mut(&mut self) -> &mut [Slot] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_ptr(), self.len) }
    }
}

impl Drop for ZeroedSlots {
    fn drop(&mut self) {
        // SAFETY: the allocation came from `alloc_zeroed` with exactly this layout.
        unsafe { alloc::dealloc(self.allocation.as_ptr(), self.layout) }
    }
}

// SAFETY: the table owns its allocation outright, like a `Vec<Slot>`, and `Slot` is plain data.
unsafe impl Send for ZeroedSlots {}
// SAFETY: shared access only reads, as through a `&[Slot]`.
unsafe impl Sync for ZeroedSlots {}

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

    /// Pages of this process in memory, from `/proc/self/statm`.
    fn resident_pages() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let resident = statm.split_whitespace().nth(1).expect("a resident field");
        resident.parse().expect("a page count")
    }

    #[test]
    fn a_large_table_is_aligned_zero_and_not_resident_until_used() {
        const SLOTS: usize = 1 << 24; // 512 MiB
        let before = resident_pages();
        let mut index = IdIndex::with_capacity(SLOTS / 2, 7);
        assert_eq!(index.slots.len(), SLOTS);
        assert_eq!(index.slots.as_ptr().align_offset(align_of::<Slot>()), 0);
        for id in 1..=1000u128 {
            index.insert(id, id as u32);
        }
        let grown = resident_pages().saturating_sub(before) * 4096;
        // 1,000 ids touch at most 1,000 pages; the table's other 127,000 stay unmapped.
        // (Other tests of this binary may allocate meanwhile, hence the wide margin.)
        assert!(grown < 128 << 20, "{grown} bytes became resident");
        assert!((1..=1000u128).all(|id| index.get(id) == Some(id as u32)));
        assert_eq!(index.get(1001), None);
        let slot = &index.slots[SLOTS - 1];
        assert!(slot.id == 0 || slot.position <= 1000);
    }
}
