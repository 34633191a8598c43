//! Spare buffers for the commands a core proposes: the bytes of entries its logs no longer
//! hold, kept for the next proposals.
//!
//! A create batch's command is a megabyte. A log keeps its newest entries in memory for the
//! state machine and drops the older ones, so a core proposing batches back to back freed a
//! megabyte and asked for a fresh one per batch. The allocator handed out memory never
//! touched as often as not, and each of its pages then cost a page fault: 15% of a partition
//! core's faults with TigerBeetle's benchmark (`perf`). A buffer kept here is written over
//! instead. Buffers are per thread, as the entries holding them are (`Rc`).

use std::cell::RefCell;

/// Buffers kept at most, per thread.
const KEPT_MAX: usize = 8;

/// Buffers smaller than this are not worth keeping: the allocator reuses them well.
const KEPT_CAPACITY_MIN: usize = 64 << 10;

/// Buffers larger than this are given back: a rare multi-megabyte command's room is not held.
const KEPT_CAPACITY_MAX: usize = 16 << 20;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes: a spare one if one is that large.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    let spare = SPARE.with_borrow_mut(|spare| {
        let fits = spare
            .iter()
            .position(|buffer| buffer.capacity() >= capacity)?;
        Some(spare.swap_remove(fits))
    });
    match spare {
        Some(mut buffer) => {
            buffer.clear();
            buffer
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Keeps `buffer` for a later [`take`], if it is worth keeping and there is room.
pub(crate) fn give(buffer: Vec<u8>) {
    if !(KEPT_CAPACITY_MIN..=KEPT_CAPACITY_MAX).contains(&buffer.capacity()) {
        return;
    }
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < KEPT_MAX {
            spare.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty_and_small_or_surplus_ones_are_dropped() {
        let mut buffer = take(1 << 20);
        buffer.extend_from_slice(&[7; 1000]);
        let address = buffer.as_ptr();
        give(buffer);
        let again = take(1000);
        assert_eq!(again.as_ptr(), address, "the same room");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        // Too small for the next request: a fresh one, and the spare stays.
        give(again);
        let larger = take(2 << 20);
        assert_ne!(larger.as_ptr(), address);
        let smaller = take(1);
        assert_eq!(smaller.as_ptr(), address);
        drop((larger, smaller));
        // Small buffers are not kept; at most `KEPT_MAX` are.
        give(Vec::with_capacity(100));
        assert_eq!(SPARE.with_borrow(Vec::len), 0);
        for _ in 0..KEPT_MAX + 3 {
            give(Vec::with_capacity(KEPT_CAPACITY_MIN));
        }
        assert_eq!(SPARE.with_borrow(Vec::len), KEPT_MAX);
    }
}
