//! `AlignedBuffer`: a heap buffer whose address and capacity are multiples of [`BLOCK_SIZE`],
//! as `O_DIRECT` reads and writes require, handed to io_uring through monoio's `IoBuf` and
//! `IoBufMut`.
//!
//! Invariants: the allocation is zeroed when made, so every byte up to the capacity is always
//! initialized; `len <= capacity`; `capacity` is a non-zero multiple of `BLOCK_SIZE`. The
//! log's writer owns one for its whole life (no allocation on the append path); reads and
//! recovery allocate their own.
//!
//! A buffer of [`MAPPED_SIZE_MIN`] or more is mapped from the kernel (anonymous `mmap`), whose
//! pages are zero until first written and resident only from then on: the allocator would
//! zero an aligned allocation by writing it whole, so each partition's 16 MiB flush buffer
//! was resident from the start (about 260 MB for a node of 16 partitions that held nothing).

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// The unit of `O_DIRECT` I/O: offsets, lengths and buffer addresses are multiples of it.
pub const BLOCK_SIZE: usize = 4096;
/// Buffers of this many bytes or more are mapped from the kernel, not taken from the heap.
pub const MAPPED_SIZE_MIN: usize = 1 << 20;

/// A zeroed, `BLOCK_SIZE`-aligned byte buffer with a length (the initialized prefix that
/// `IoBuf` writes) and a fixed capacity.
pub struct AlignedBuffer {
    pointer: NonNull<u8>,
    len: usize,
    capacity: usize,
}

impl AlignedBuffer {
    /// A zeroed buffer of `capacity` bytes (rounded up to a block) and length 0.
    pub fn new(capacity: usize) -> AlignedBuffer {
        let capacity = align_up(capacity.max(1) as u64) as usize;
        let layout = Self::layout(capacity);
        let pointer = if capacity >= MAPPED_SIZE_MIN {
            // SAFETY: an anonymous private mapping of a non-zero length touches no memory of
            // ours; the kernel's pages are zero and aligned to a page (a multiple of a block).
            let mapped = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    capacity,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if mapped == libc::MAP_FAILED {
                alloc::handle_alloc_error(layout);
            }
            mapped.cast::<u8>()
        } else {
            // SAFETY: the layout has a non-zero size (capacity >= BLOCK_SIZE).
            unsafe { alloc::alloc_zeroed(layout) }
        };
        let Some(pointer) = NonNull::new(pointer) else {
            alloc::handle_alloc_error(layout);
        };
        assert_eq!(pointer.as_ptr() as usize % BLOCK_SIZE, 0);
        AlignedBuffer {
            pointer,
            len: 0,
            capacity,
        }
    }

    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity, BLOCK_SIZE).expect("aligned buffer layout")
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sets the length; the bytes stay as they are (always initialized, see the invariants).
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity);
        self.len = len;
    }

    /// The first `len` bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the pointer is valid for `capacity` initialized bytes and `len <= capacity`;
        // the borrow of `self` keeps the allocation alive and unaliased by `&mut`.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.len) }
    }

    /// All `capacity` bytes as 64-bit words (native endian) that threads read and write
    /// atomically through a shared reference: for a buffer filled piece by piece by whichever
    /// reader gets there first.
    ///
    /// # Safety
    /// While any view this returns is alive or in use by another thread, the buffer must not
    /// be read as bytes ([`AlignedBuffer::as_slice`]) nor handed to io_uring: a store through
    /// the view would change memory behind a shared byte slice.
    pub unsafe fn as_atomic_words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: the pointer is valid for `capacity` initialized bytes, a multiple of 8, and
        // aligned to a block (so to 8); `AtomicU64` has the size, alignment and bit validity of
        // `u64`, so any initialized bytes are valid words. Writes through the atomics are not
        // data races; the borrow of `self` keeps the allocation alive and excludes `&mut`, and
        // the caller keeps byte views away (see `# Safety`).
        unsafe {
            std::slice::from_raw_parts(
                self.pointer.as_ptr().cast::<std::sync::atomic::AtomicU64>(),
                self.capacity / 8,
            )
        }
    }

    /// All `capacity` bytes, whatever the length.
    pub fn as_mut_slice_full(&mut self) -> &mut [u8] {
        // SAFETY: the pointer is valid for `capacity` initialized bytes, and `&mut self`
        // guarantees no other reference into the allocation exists.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.capacity) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        if self.capacity >= MAPPED_SIZE_MIN {
            // SAFETY: the pointer and length are those of the mapping `new` made, unmapped
            // once, here. It fails only for arguments that are not a mapping.
            let unmapped = unsafe { libc::munmap(self.pointer.as_ptr().cast(), self.capacity) };
            assert_eq!(unmapped, 0, "munmap of an aligned buffer");
        } else {
            // SAFETY: the pointer came from `alloc_zeroed` with exactly this layout and is
            // freed once, here.
            unsafe { alloc::dealloc(self.pointer.as_ptr(), Self::layout(self.capacity)) }
        }
    }
}

// SAFETY: `read_ptr` returns the start of a heap allocation that does not move when the
// `AlignedBuffer` value moves and stays valid until drop; `bytes_init` is `len`, and all bytes
// up to the capacity are initialized.
unsafe impl monoio::buf::IoBuf for AlignedBuffer {
    fn read_ptr(&self) -> *const u8 {
        self.pointer.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }
}

// SAFETY: as for `IoBuf`: a stable pointer to `capacity` writable bytes owned by the buffer.
unsafe impl monoio::buf::IoBufMut for AlignedBuffer {
    fn write_ptr(&mut self) -> *mut u8 {
        self.pointer.as_ptr()
    }

    fn bytes_total(&mut self) -> usize {
        self.capacity
    }

    unsafe fn set_init(&mut self, pos: usize) {
        // Every byte is initialized from allocation on, so any `pos <= capacity` is valid.
        assert!(pos <= self.capacity);
        self.len = pos;
    }
}

/// `offset` rounded down to a block boundary.
pub fn align_down(offset: u64) -> u64 {
    offset - offset % BLOCK_SIZE as u64
}

/// `offset` rounded up to a block boundary.
pub fn align_up(offset: u64) -> u64 {
    align_down(offset + BLOCK_SIZE as u64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        let mut buffer = AlignedBuffer::new(5000);
        assert_eq!(buffer.capacity(), 2 * BLOCK_SIZE);
        assert_eq!(buffer.as_mut_slice_full().as_ptr() as usize % BLOCK_SIZE, 0);
        assert!(buffer.as_mut_slice_full().iter().all(|&byte| byte == 0));
        buffer.as_mut_slice_full()[..3].copy_from_slice(b"abc");
        buffer.set_len(3);
        assert_eq!(buffer.as_slice(), b"abc");
    }

    #[test]
    fn large_buffers_are_mapped_zeroed_and_unmapped() {
        for capacity in [MAPPED_SIZE_MIN - 1, MAPPED_SIZE_MIN, 16 << 20] {
            let mut buffer = AlignedBuffer::new(capacity);
            assert_eq!(buffer.capacity(), align_up(capacity as u64) as usize);
            let bytes = buffer.as_mut_slice_full();
            assert_eq!(bytes.as_ptr() as usize % BLOCK_SIZE, 0);
            assert!(bytes.iter().step_by(997).all(|&byte| byte == 0));
            let last = bytes.len() - 1;
            bytes[last] = 7;
            bytes[0] = 9;
            buffer.set_len(1);
            assert_eq!(buffer.as_slice(), [9]);
        }
    }

    #[test]
    fn alignment_arithmetic() {
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(8192), 8192);
    }
}
