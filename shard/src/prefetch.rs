//! Cache prefetch hints for the batch loop.
//!
//! A batch's events touch records at random: two accounts, the tails of their transfer lists
//! and histories. Each is a cache miss that the loop would wait for one after another. The
//! loop asks for an event's records ahead of it, in three steps [`AHEAD`] events apart: the
//! id index slots of its accounts; once those are likely in cache, the accounts and the
//! headers of their lists; then the lists' tails. The misses of several events overlap.

/// Events between the steps of an event's prefetch, and between the last step and the
/// event.
pub(crate) const AHEAD: usize = 8;

/// Asks the CPU to bring the cache line holding `place` into its caches; a hint that never
/// faults, whatever the address.
#[inline(always)]
pub(crate) fn line<T>(place: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint: it never faults and reads nothing the program sees.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(place.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = place;
}

/// Asks for every cache line `record` spans.
#[inline(always)]
pub(crate) fn record<T>(record: &T) {
    const LINE: usize = 64;
    let start = std::ptr::from_ref(record).cast::<u8>();
    let mut offset = 0;
    while offset < size_of::<T>() {
        line(start.wrapping_add(offset));
        offset += LINE;
    }
    line(start.wrapping_add(size_of::<T>().saturating_sub(1)));
}

/// Asks for the line where the next element pushed onto `list` goes.
#[inline(always)]
pub(crate) fn tail<T>(list: &[T]) {
    line(list.as_ptr().wrapping_add(list.len()));
}
