//! Size limits of the client protocol, and the relations between them, checked at compile time.

/// Every message starts with a 256-byte header.
pub const MESSAGE_HEADER_SIZE: usize = 256;
/// A message, header included, is at most 1 MiB.
pub const MESSAGE_SIZE_MAX: usize = 1024 * 1024;
/// The body of a message is what remains after the header.
pub const MESSAGE_BODY_SIZE_MAX: usize = MESSAGE_SIZE_MAX - MESSAGE_HEADER_SIZE;

/// The most events (accounts, transfers) one batch may carry: 128-byte events plus the smallest
/// multi-batch trailer (one 128-byte element) fill a message body exactly.
pub const BATCH_EVENTS_MAX: usize = 8189;

/// Timestamps are nanoseconds in `[TIMESTAMP_MIN, TIMESTAMP_MAX]`; the top bit stays clear.
pub const TIMESTAMP_MIN: u64 = 1;
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;

const RECORD_SIZE: usize = 128;
const _: () = assert!(BATCH_EVENTS_MAX * RECORD_SIZE + RECORD_SIZE <= MESSAGE_BODY_SIZE_MAX);
const _: () = assert!((BATCH_EVENTS_MAX + 2) * RECORD_SIZE > MESSAGE_BODY_SIZE_MAX);
