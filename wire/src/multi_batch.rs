//! Multi-batch bodies (TigerBeetle 0.17, `vsr/multi_batch.zig`): one request or reply body
//! carries several independent batches of one operation. The layout is
//!
//! ```text
//! [batch 0 payload][batch 1 payload]…[batch n-1 payload][0xFF padding][count n-1]…[count 1][count 0][n]
//! ```
//!
//! Payloads lie back to back, in order; the trailer is one little-endian `u16` element count per
//! batch, written from the end towards the front (the first batch's count sits just before the
//! final `u16` batch count, the "postamble"), padded at its front with `0xFF` bytes so that the
//! trailer size is `ceil((n + 1) × 2 / element_size) × element_size`. One batch of N 128-byte
//! events is therefore `N × 128` bytes, 124 bytes of `0xFF`, `[N: u16][1: u16]`.
//!
//! Invariants: a decoded [`MultiBatch`] has 1..=[`BATCH_COUNT_MAX`] batches whose counts add up
//! exactly to the payload size, and a trailer whose padding is all `0xFF`; decoding never panics
//! on any input (it is fuzzed in `tests/t03_multi_batch.rs`). Element sizes are powers of two
//! from 2 to [`ELEMENT_SIZE_MAX`] (Kassa uses 16, 64 and 128); a different size is a bug and
//! panics. The encoder writes payloads in place and keeps the counts at the end of its buffer
//! until [`MultiBatchEncoder::finish`] moves the trailer behind the last payload, as TigerBeetle's
//! encoder does. Called by `request_body.rs` (requests in), the server's reply path (replies out)
//! and Kassa's own client.

use thiserror::Error;

/// Each trailer entry (a batch's element count, or the batch count) is a `u16`.
pub const TRAILER_ITEM_SIZE: usize = 2;
/// `0xFFFF` is the padding value, so at most 65534 batches.
pub const BATCH_COUNT_MAX: usize = u16::MAX as usize - 1;
/// A batch's element count is a `u16`.
pub const BATCH_ELEMENTS_MAX_ENCODABLE: usize = u16::MAX as usize;
/// The largest element: accounts, transfers, account filters and balances.
pub const ELEMENT_SIZE_MAX: usize = 128;
/// The byte that pads the front of the trailer.
pub const PADDING_BYTE: u8 = 0xFF;

/// Whether `element_size` is one this codec handles: a power of two in `2..=128`.
pub const fn element_size_valid(element_size: usize) -> bool {
    element_size.is_power_of_two() && element_size >= 2 && element_size <= ELEMENT_SIZE_MAX
}

/// The size of the trailer of `batch_count` batches of `element_size`-byte elements, padding
/// included: always a non-zero multiple of `element_size`.
pub const fn trailer_size(element_size: usize, batch_count: usize) -> usize {
    assert!(element_size_valid(element_size));
    assert!(batch_count >= 1 && batch_count <= BATCH_COUNT_MAX);
    let unpadded = (batch_count + 1) * TRAILER_ITEM_SIZE;
    unpadded.div_ceil(element_size) * element_size
}

/// The most batches a body of `batch_size_limit` bytes can hold when each batch has at least
/// `batch_size_min` bytes of payload (TigerBeetle's `multi_batch_count_max`).
pub const fn batch_count_max(batch_size_min: usize, batch_size_limit: usize) -> usize {
    assert!(batch_size_limit > TRAILER_ITEM_SIZE);
    let count = (batch_size_limit - TRAILER_ITEM_SIZE) / (batch_size_min + TRAILER_ITEM_SIZE);
    if count < BATCH_COUNT_MAX {
        count
    } else {
        BATCH_COUNT_MAX
    }
}

/// Why a body is not a valid multi-batch body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum MultiBatchError {
    #[error("body of {body_size} bytes is not a multiple of the {element_size}-byte element")]
    SizeNotMultiple {
        body_size: usize,
        element_size: usize,
    },
    #[error("body is empty: it has no multi-batch trailer")]
    Empty,
    #[error("trailer announces zero batches")]
    ZeroBatches,
    #[error("trailer batch count is 0xFFFF, the padding value")]
    BatchCountReserved,
    #[error(
        "a trailer for {batch_count} batches needs {trailer_size} bytes, the body has {body_size}"
    )]
    TrailerTooLarge {
        batch_count: usize,
        trailer_size: usize,
        body_size: usize,
    },
    #[error("trailer padding at body offset {offset} is {value:#04x}, not 0xff")]
    PaddingNotFf { offset: usize, value: u8 },
    #[error("the batches count {element_count} elements ({payload_expected} bytes) but the payload has {payload_size} bytes")]
    PayloadSizeMismatch {
        element_count: usize,
        payload_expected: usize,
        payload_size: usize,
    },
    #[error("batch {batch_index} has {element_count} elements, more than {elements_max}")]
    TooManyElements {
        batch_index: usize,
        element_count: usize,
        elements_max: usize,
    },
}

/// A validated multi-batch body, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiBatch<'a> {
    /// The payloads, back to back.
    payload: &'a [u8],
    /// The used trailer items: `2 × batch_count` bytes, the first batch's count last.
    counts: &'a [u8],
    element_size: usize,
}

impl<'a> MultiBatch<'a> {
    /// Validates `body` as batches of `element_size`-byte elements, each batch holding at most
    /// `batch_elements_max` elements. Never panics on any `body`.
    pub fn decode(
        body: &'a [u8],
        element_size: usize,
        batch_elements_max: usize,
    ) -> Result<MultiBatch<'a>, MultiBatchError> {
        assert!(element_size_valid(element_size));
        let body_size = body.len();
        if body_size % element_size != 0 {
            return Err(MultiBatchError::SizeNotMultiple {
                body_size,
                element_size,
            });
        }
        let (rest, postamble) = split_last_u16(body).ok_or(MultiBatchError::Empty)?;
        let batch_count = usize::from(postamble);
        if batch_count == 0 {
            return Err(MultiBatchError::ZeroBatches);
        }
        if batch_count > BATCH_COUNT_MAX {
            return Err(MultiBatchError::BatchCountReserved);
        }
        let trailer_size = trailer_size(element_size, batch_count);
        let payload_size =
            body_size
                .checked_sub(trailer_size)
                .ok_or(MultiBatchError::TrailerTooLarge {
                    batch_count,
                    trailer_size,
                    body_size,
                })?;
        let (payload, items) = rest.split_at(payload_size);
        let (padding, counts) = items.split_at(items.len() - batch_count * TRAILER_ITEM_SIZE);
        let mut padding_bad = padding
            .iter()
            .enumerate()
            .filter(|(_, byte)| **byte != PADDING_BYTE);
        if let Some((position, value)) = padding_bad.next() {
            return Err(MultiBatchError::PaddingNotFf {
                offset: payload_size + position,
                value: *value,
            });
        }
        let decoded = MultiBatch {
            payload,
            counts,
            element_size,
        };
        decoded.check_counts(batch_elements_max)?;
        Ok(decoded)
    }

    /// Checks that the counts add up to the payload and that no batch is too large.
    fn check_counts(&self, batch_elements_max: usize) -> Result<(), MultiBatchError> {
        let mut element_count: usize = 0;
        for batch_index in 0..self.batch_count() {
            let count = self.element_count(batch_index).unwrap_or(0);
            if count > batch_elements_max {
                return Err(MultiBatchError::TooManyElements {
                    batch_index,
                    element_count: count,
                    elements_max: batch_elements_max,
                });
            }
            // At most 65534 × 65535 < 2^32: no overflow.
            element_count += count;
        }
        let payload_expected = element_count.saturating_mul(self.element_size);
        if payload_expected != self.payload.len() {
            return Err(MultiBatchError::PayloadSizeMismatch {
                element_count,
                payload_expected,
                payload_size: self.payload.len(),
            });
        }
        Ok(())
    }

    /// The number of batches: at least one.
    pub fn batch_count(&self) -> usize {
        self.counts.len() / TRAILER_ITEM_SIZE
    }

    /// The number of elements of batch `batch_index`, if there is such a batch.
    pub fn element_count(&self, batch_index: usize) -> Option<usize> {
        // Batch 0's count is the last item, batch 1's the one before, …
        let end = self
            .counts
            .len()
            .checked_sub(batch_index.checked_mul(TRAILER_ITEM_SIZE)?)?;
        let item = self.counts.get(end.checked_sub(TRAILER_ITEM_SIZE)?..end)?;
        Some(usize::from(u16::from_le_bytes(item.try_into().ok()?)))
    }

    /// All batches' payloads, back to back.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    pub fn element_size(&self) -> usize {
        self.element_size
    }

    /// The batches' payloads, in order; an empty batch yields an empty slice.
    pub fn batches(&self) -> Batches<'a> {
        Batches {
            batch: *self,
            batch_index: 0,
            rest: self.payload,
        }
    }
}

/// The batches of a [`MultiBatch`], in order.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    batch: MultiBatch<'a>,
    batch_index: usize,
    rest: &'a [u8],
}

impl<'a> Iterator for Batches<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let count = self.batch.element_count(self.batch_index)?;
        self.batch_index += 1;
        // Decoding checked that the counts add up to the payload: this always splits.
        let (batch, rest) = self
            .rest
            .split_at_checked(count * self.batch.element_size)?;
        self.rest = rest;
        Some(batch)
    }
}

/// `bytes` without its last two bytes, and those two as a little-endian `u16`.
fn split_last_u16(bytes: &[u8]) -> Option<(&[u8], u16)> {
    let (rest, last) = bytes.split_at_checked(bytes.len().checked_sub(TRAILER_ITEM_SIZE)?)?;
    Some((rest, u16::from_le_bytes(last.try_into().ok()?)))
}

/// Why a multi-batch body could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("buffer of {buffer_size} bytes cannot hold even an empty batch ({needed} bytes)")]
    BufferTooSmall { buffer_size: usize, needed: usize },
    #[error("batch of {batch_size} bytes is not a multiple of the {element_size}-byte element")]
    NotElementMultiple {
        batch_size: usize,
        element_size: usize,
    },
    #[error("batch of {element_count} elements: a count is a u16")]
    TooManyElements { element_count: usize },
    #[error("batch {batch_index} does not fit: {needed} bytes needed, {available} available")]
    NoRoom {
        batch_index: usize,
        needed: usize,
        available: usize,
    },
    #[error("no batch was added")]
    NoBatches,
}

/// Writes a multi-batch body into a caller's buffer, one batch at a time, without allocating.
#[derive(Debug)]
pub struct MultiBatchEncoder<'a> {
    /// The buffer, its length rounded down to a whole trailer item.
    buffer: &'a mut [u8],
    element_size: usize,
    payload_size: usize,
    batch_count: usize,
}

impl<'a> MultiBatchEncoder<'a> {
    pub fn new(buffer: &'a mut [u8], element_size: usize) -> Result<Self, EncodeError> {
        assert!(element_size_valid(element_size));
        let needed = trailer_size(element_size, 1);
        if buffer.len() < needed {
            return Err(EncodeError::BufferTooSmall {
                buffer_size: buffer.len(),
                needed,
            });
        }
        let aligned = buffer.len() - buffer.len() % TRAILER_ITEM_SIZE;
        Ok(MultiBatchEncoder {
            buffer: &mut buffer[..aligned],
            element_size,
            payload_size: 0,
            batch_count: 0,
        })
    }

    /// The bytes the next batch may use, a whole number of elements (possibly none), or `None`
    /// when not even an empty batch fits any more.
    pub fn writable(&mut self) -> Option<&mut [u8]> {
        let room = self.room()?;
        let size = room - room % self.element_size;
        self.buffer
            .get_mut(self.payload_size..self.payload_size + size)
    }

    /// Records that the next batch's payload, `batch_size` bytes, was written to the start of
    /// [`Self::writable`].
    pub fn commit(&mut self, batch_size: usize) -> Result<(), EncodeError> {
        if batch_size % self.element_size != 0 {
            return Err(EncodeError::NotElementMultiple {
                batch_size,
                element_size: self.element_size,
            });
        }
        let element_count = batch_size / self.element_size;
        let count = u16::try_from(element_count)
            .map_err(|_| EncodeError::TooManyElements { element_count })?;
        let available = self.room().unwrap_or(0);
        if self.batch_count >= BATCH_COUNT_MAX || batch_size > available {
            return Err(EncodeError::NoRoom {
                batch_index: self.batch_count,
                needed: batch_size,
                available,
            });
        }
        // The count goes into its final place relative to the buffer's end.
        let end = self.buffer.len() - TRAILER_ITEM_SIZE * (self.batch_count + 1);
        self.buffer[end - TRAILER_ITEM_SIZE..end].copy_from_slice(&count.to_le_bytes());
        self.payload_size += batch_size;
        self.batch_count += 1;
        Ok(())
    }

    /// Copies `batch` in as the next batch.
    pub fn push(&mut self, batch: &[u8]) -> Result<(), EncodeError> {
        if batch.len() % self.element_size != 0 {
            return Err(EncodeError::NotElementMultiple {
                batch_size: batch.len(),
                element_size: self.element_size,
            });
        }
        let batch_index = self.batch_count;
        let available = self.room().unwrap_or(0);
        let target = self
            .writable()
            .and_then(|writable| writable.get_mut(..batch.len()))
            .ok_or(EncodeError::NoRoom {
                batch_index,
                needed: batch.len(),
                available,
            })?;
        target.copy_from_slice(batch);
        self.commit(batch.len())
    }

    /// Payload bytes left for the next batch, if its trailer entry still fits.
    fn room(&self) -> Option<usize> {
        if self.batch_count >= BATCH_COUNT_MAX {
            return None;
        }
        let trailer = trailer_size(self.element_size, self.batch_count + 1);
        self.buffer.len().checked_sub(self.payload_size + trailer)
    }

    /// Writes the trailer behind the last payload; returns the body size.
    pub fn finish(self) -> Result<usize, EncodeError> {
        if self.batch_count == 0 {
            return Err(EncodeError::NoBatches);
        }
        let trailer = trailer_size(self.element_size, self.batch_count);
        let end = self.buffer.len();
        let counts_start = end - TRAILER_ITEM_SIZE * (self.batch_count + 1);
        self.buffer[end - trailer..counts_start].fill(PADDING_BYTE);
        let batch_count = self.batch_count as u16;
        self.buffer[end - TRAILER_ITEM_SIZE..].copy_from_slice(&batch_count.to_le_bytes());
        self.buffer
            .copy_within(end - trailer..end, self.payload_size);
        let body_size = self.payload_size + trailer;
        assert_eq!(body_size % self.element_size, 0);
        debug_assert!(MultiBatch::decode(
            &self.buffer[..body_size],
            self.element_size,
            BATCH_ELEMENTS_MAX_ENCODABLE
        )
        .is_ok());
        Ok(body_size)
    }
}

/// Encodes `batches` (each a whole number of `element_size`-byte elements) into a new vector.
pub fn encode_to_vec(element_size: usize, batches: &[&[u8]]) -> Result<Vec<u8>, EncodeError> {
    let batch_count = batches.len().clamp(1, BATCH_COUNT_MAX);
    let payload_size: usize = batches.iter().map(|batch| batch.len()).sum();
    let mut buffer = vec![0; payload_size + trailer_size(element_size, batch_count)];
    let mut encoder = MultiBatchEncoder::new(&mut buffer, element_size)?;
    for batch in batches {
        encoder.push(batch)?;
    }
    let body_size = encoder.finish()?;
    buffer.truncate(body_size);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_sizes_follow_tigerbeetle() {
        assert_eq!(trailer_size(128, 1), 128);
        assert_eq!(trailer_size(128, 63), 128);
        assert_eq!(trailer_size(128, 64), 256);
        assert_eq!(trailer_size(64, 31), 64);
        assert_eq!(trailer_size(64, 32), 128);
        assert_eq!(trailer_size(16, 7), 16);
        assert_eq!(trailer_size(16, 8), 32);
        assert_eq!(trailer_size(2, 1), 4);
    }

    #[test]
    fn the_documented_four_batch_example() {
        // multi_batch.zig's example: batches of 8, 1, 0 and 4 elements of 128 bytes.
        let batches: Vec<Vec<u8>> = [8, 1, 0, 4].iter().map(|n| vec![7; n * 128]).collect();
        let refs: Vec<&[u8]> = batches.iter().map(Vec::as_slice).collect();
        let body = encode_to_vec(128, &refs).unwrap();
        assert_eq!(body.len(), 13 * 128 + 128);
        let tail: Vec<u16> = body[body.len() - 10..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(tail, [4, 0, 1, 8, 4]);
        let decoded = MultiBatch::decode(&body, 128, 8189).unwrap();
        let sizes: Vec<usize> = decoded.batches().map(<[u8]>::len).collect();
        assert_eq!(sizes, [8 * 128, 128, 0, 4 * 128]);
    }
}
