//! Size limits of the client protocol, and the relations between them, checked at compile time.
//! Values are TigerBeetle 0.17's (`constants.zig`, `config.zig`, `vsr/multi_batch.zig`,
//! `tigerbeetle.zig`'s `event_max`); every other module takes its limits from here.

use crate::multi_batch::{trailer_size, BATCH_COUNT_MAX, ELEMENT_SIZE_MAX};

/// Every message starts with a 256-byte header.
pub const MESSAGE_HEADER_SIZE: usize = 256;
/// A message, header included, is at most 1 MiB (`config.cluster.message_size_max`).
pub const MESSAGE_SIZE_MAX: usize = 1024 * 1024;
/// The body of a message is what remains after the header.
pub const MESSAGE_BODY_SIZE_MAX: usize = MESSAGE_SIZE_MAX - MESSAGE_HEADER_SIZE;

/// The size of the records that fill a body most densely (`Account`, `Transfer`, filters).
const RECORD_SIZE: usize = ELEMENT_SIZE_MAX;

/// The smallest multi-batch trailer for 128-byte elements: one batch, 124 bytes of padding.
pub const TRAILER_SIZE_MIN: usize = trailer_size(RECORD_SIZE, 1);

/// The most events (accounts, transfers) one batch may carry: 128-byte events plus the smallest
/// trailer fill a body exactly. (`event_max` also bounds by the reply, whose 16-byte results
/// allow far more; for lookups, 16-byte ids in, 128-byte records out, the reply gives the same
/// 8189.)
pub const BATCH_EVENTS_MAX: usize = (MESSAGE_BODY_SIZE_MAX - TRAILER_SIZE_MIN) / RECORD_SIZE;

/// The smallest `batch_size_limit` Kassa announces in a register reply: one 128-byte event and
/// its trailer. (TigerBeetle's client needs more than 128 to compute its limits at all.)
pub const BATCH_SIZE_LIMIT_MIN: usize = RECORD_SIZE + TRAILER_SIZE_MIN;

/// Replica indexes run below this (`constants.replicas_max`): the client indexes an array of
/// this size with a pong's `replica`, so a larger one would crash it.
pub const REPLICAS_MAX: usize = 6;

/// Timestamps are nanoseconds in `[TIMESTAMP_MIN, TIMESTAMP_MAX]`; the top bit stays clear.
pub const TIMESTAMP_MIN: u64 = 1;
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;

const _: () = assert!(MESSAGE_HEADER_SIZE == crate::header::HEADER_SIZE);
const _: () = assert!(MESSAGE_SIZE_MAX <= u32::MAX as usize);
const _: () = assert!(TRAILER_SIZE_MIN == 128);
const _: () = assert!(BATCH_EVENTS_MAX == 8189);
const _: () = assert!(BATCH_EVENTS_MAX * RECORD_SIZE + TRAILER_SIZE_MIN == MESSAGE_BODY_SIZE_MAX);
const _: () =
    assert!((BATCH_EVENTS_MAX + 1) * RECORD_SIZE + TRAILER_SIZE_MIN > MESSAGE_BODY_SIZE_MAX);
// Element counts are u16 in the trailer: the densest batch (16-byte ids) must fit one.
const _: () = assert!((MESSAGE_BODY_SIZE_MAX - trailer_size(16, 1)) / 16 <= u16::MAX as usize);
// Batch counts are u16 too, 0xFFFF being padding.
const _: () = assert!(BATCH_COUNT_MAX == 65534);
const _: () = assert!(BATCH_SIZE_LIMIT_MIN <= MESSAGE_BODY_SIZE_MAX);
