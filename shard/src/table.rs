//! `Table`: a sequence of records kept in fixed-size chunks, appended at the back and released
//! from the front, for the ledger's transfers and its change stream.
//!
//! A `Vec` that is full allocates twice its room, copies every record across and frees the old
//! room. A partition stores each transfer of its accounts (128 bytes each), so its transfers
//! run to tens of megabytes, and every doubling copied all of them and faulted in twice as many
//! fresh pages, inside one transaction's apply. Under a uniform load all partitions double at
//! about the same transaction, which then stalls for tens of milliseconds. A table grows one
//! chunk at a time instead: a record never moves once pushed, and each page is touched once.
//!
//! Positions are `usize` indexes from the first record kept, as in a `VecDeque`; a chunk holds
//! [`CHUNK_RECORDS`] records. Records released from the front stay in their chunk's memory
//! until the whole chunk is released, hence `T: Copy`.

use std::collections::VecDeque;
use std::ops::{Index, IndexMut};

/// Records per chunk: a power of two, so that a position splits into chunk and offset with a
/// shift and a mask. 2 MiB chunks for 128-byte transfers.
pub const CHUNK_RECORDS: usize = 1 << CHUNK_SHIFT;
const CHUNK_SHIFT: u32 = 14;
const CHUNK_MASK: usize = CHUNK_RECORDS - 1;

/// See the module documentation.
pub struct Table<T: Copy> {
    /// Every chunk but the last is full (`CHUNK_RECORDS` records); the last is not empty.
    /// Each was allocated with room for exactly `CHUNK_RECORDS`, so none ever reallocates.
    chunks: VecDeque<Vec<T>>,
    /// Records released from the front of the first chunk, less than `CHUNK_RECORDS`.
    head: usize,
    len: usize,
}

impl<T: Copy> Default for Table<T> {
    fn default() -> Table<T> {
        Table::new()
    }
}

impl<T: Copy> Table<T> {
    pub fn new() -> Table<T> {
        Table {
            chunks: VecDeque::new(),
            head: 0,
            len: 0,
        }
    }

    /// Where the record at `position` is stored: its chunk and its offset there.
    #[inline]
    fn locate(&self, position: usize) -> (usize, usize) {
        let stored = self.head + position;
        (stored >> CHUNK_SHIFT, stored & CHUNK_MASK)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, record: T) {
        if (self.head + self.len) & CHUNK_MASK == 0 {
            self.chunks.push_back(Vec::with_capacity(CHUNK_RECORDS));
        }
        let last = self.chunks.back_mut().expect("a chunk with room");
        debug_assert!(last.len() < CHUNK_RECORDS);
        last.push(record);
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let last = self.chunks.back_mut().expect("a record is kept");
        let record = last.pop().expect("the last chunk is not empty");
        self.len -= 1;
        if self.len == 0 {
            self.clear();
        } else if last.is_empty() {
            self.chunks.pop_back();
        }
        Some(record)
    }

    /// Keeps the first `len` records (all of them if there are fewer).
    pub fn truncate(&mut self, len: usize) {
        while self.len > len {
            self.pop();
        }
    }

    /// Releases the first `count` records (all of them if there are fewer); the record at
    /// position `count` becomes the first. Chunks left empty are freed.
    pub fn release_front(&mut self, count: usize) {
        let count = count.min(self.len);
        if count == self.len {
            self.clear();
            return;
        }
        self.head += count;
        self.len -= count;
        while self.head >= CHUNK_RECORDS {
            self.chunks.pop_front();
            self.head -= CHUNK_RECORDS;
        }
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.head = 0;
        self.len = 0;
    }

    pub fn get(&self, position: usize) -> Option<&T> {
        if position < self.len {
            let (chunk, offset) = self.locate(position);
            Some(&self.chunks[chunk][offset])
        } else {
            None
        }
    }

    pub fn last(&self) -> Option<&T> {
        self.len.checked_sub(1).and_then(|last| self.get(last))
    }

    /// The records in order, as the contiguous slices they are stored in.
    pub fn chunks(&self) -> impl DoubleEndedIterator<Item = &[T]> {
        let head = self.head;
        self.chunks.iter().enumerate().map(move |(index, chunk)| {
            if index == 0 {
                &chunk[head..]
            } else {
                chunk.as_slice()
            }
        })
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.chunks().flatten()
    }

    /// The records at `start..end`, in order (and reversible).
    pub fn range(
        &self,
        start: usize,
        end: usize,
    ) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        assert!(start <= end && end <= self.len);
        (start..end).map(move |position| &self[position])
    }

    /// The first position whose record does not satisfy `before`, for records ordered so that
    /// all that satisfy it come first (as `slice::partition_point`).
    pub fn partition_point(&self, before: impl Fn(&T) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len);
        while low < high {
            let middle = low + (high - low) / 2;
            if before(&self[middle]) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// As `slice::binary_search_by_key`, for records in ascending order of `key` with no two
    /// alike.
    pub fn binary_search_by_key<K: Ord>(
        &self,
        key: &K,
        f: impl Fn(&T) -> K,
    ) -> Result<usize, usize> {
        let position = self.partition_point(|record| f(record) < *key);
        match self.get(position) {
            Some(record) if f(record) == *key => Ok(position),
            _ => Err(position),
        }
    }

    pub fn to_vec(&self) -> Vec<T> {
        self.iter().copied().collect()
    }
}

impl<T: Copy> Index<usize> for Table<T> {
    type Output = T;

    #[inline]
    fn index(&self, position: usize) -> &T {
        assert!(position < self.len, "position {position} of {}", self.len);
        let (chunk, offset) = self.locate(position);
        &self.chunks[chunk][offset]
    }
}

impl<T: Copy> IndexMut<usize> for Table<T> {
    #[inline]
    fn index_mut(&mut self, position: usize) -> &mut T {
        assert!(position < self.len, "position {position} of {}", self.len);
        let (chunk, offset) = self.locate(position);
        &mut self.chunks[chunk][offset]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_reads_back_what_a_vec_would_across_chunk_boundaries() {
        let mut table = Table::new();
        let mut model = Vec::new();
        // Grow past three chunks, shrink back into the first, grow again: every boundary
        // crossed both ways.
        let steps: [(bool, usize); 4] = [
            (true, 3 * CHUNK_RECORDS + 5),
            (false, 2 * CHUNK_RECORDS + 7),
            (true, CHUNK_RECORDS + 1),
            (false, 3),
        ];
        let mut next = 0u64;
        for (grow, count) in steps {
            for _ in 0..count {
                if grow {
                    table.push(next);
                    model.push(next);
                    next += 1;
                } else {
                    assert_eq!(table.pop(), model.pop());
                }
            }
            assert_eq!(table.len(), model.len());
            assert_eq!(table.last(), model.last());
            assert_eq!(table.to_vec(), model);
            assert_eq!(table.chunks().map(<[u64]>::len).sum::<usize>(), model.len());
            assert!(table.chunks().all(|chunk| !chunk.is_empty()));
            for probe in [0, CHUNK_RECORDS - 1, CHUNK_RECORDS, model.len() - 1] {
                assert_eq!(table.get(probe), model.get(probe));
            }
            assert_eq!(table.get(model.len()), None);
            let middle = model.len() / 2;
            assert_eq!(
                table.range(middle, model.len()).rev().collect::<Vec<_>>(),
                model[middle..].iter().rev().collect::<Vec<_>>()
            );
            let pivot = model[middle];
            assert_eq!(
                table.partition_point(|r| *r < pivot),
                model.partition_point(|r| *r < pivot)
            );
        }
        table[1] = 99;
        model[1] = 99;
        assert_eq!(table[1], 99);
        // Release from the front inside a chunk, across chunk boundaries, then everything.
        let mut model: VecDeque<u64> = model.into();
        for release in [3, CHUNK_RECORDS, CHUNK_RECORDS / 2 + 5, 1] {
            table.release_front(release);
            model.drain(..release);
            assert_eq!(table.len(), model.len());
            assert_eq!(table.to_vec(), model.iter().copied().collect::<Vec<_>>());
            assert_eq!(table.iter().next_back(), model.back());
            assert_eq!(table.get(0), model.front());
            assert!(table.chunks().all(|chunk| !chunk.is_empty()));
            table.push(next);
            model.push_back(next);
            next += 1;
            assert_eq!(table.last(), model.back());
        }
        table.truncate(2);
        model.truncate(2);
        assert_eq!(table.to_vec(), model.iter().copied().collect::<Vec<_>>());
        table.release_front(10);
        assert!(table.is_empty());
        let model: Vec<u64> = (0..10).collect();
        while table.pop().is_some() {}
        assert!(table.is_empty() && table.last().is_none() && table.chunks().count() == 0);
        for record in &model {
            table.push(*record);
        }
        assert_eq!(table.to_vec(), model);
    }
}
