//! `Table`: an append-only sequence of records kept in fixed-size chunks, for the ledger's
//! transfers.
//!
//! A `Vec` that is full allocates twice its room, copies every record across and frees the old
//! room. A partition stores each transfer of its accounts (128 bytes each), so its transfers
//! run to tens of megabytes, and every doubling copied all of them and faulted in twice as many
//! fresh pages, inside one transaction's apply. Under a uniform load all partitions double at
//! about the same transaction, which then stalls for tens of milliseconds. A table grows one
//! chunk at a time instead: a record never moves once pushed, and each page is touched once.
//!
//! Positions are `usize` indexes as in a `Vec`; a chunk holds [`CHUNK_RECORDS`] records.

use std::ops::{Index, IndexMut};

/// Records per chunk: a power of two, so that a position splits into chunk and offset with a
/// shift and a mask. 2 MiB chunks for 128-byte transfers.
pub const CHUNK_RECORDS: usize = 1 << CHUNK_SHIFT;
const CHUNK_SHIFT: u32 = 14;
const CHUNK_MASK: usize = CHUNK_RECORDS - 1;

/// See the module documentation.
pub struct Table<T> {
    /// Every chunk but the last is full (`CHUNK_RECORDS` records); the last is not empty.
    /// Each was allocated with room for exactly `CHUNK_RECORDS`, so none ever reallocates.
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Table<T> {
    fn default() -> Table<T> {
        Table::new()
    }
}

impl<T> Table<T> {
    pub fn new() -> Table<T> {
        Table {
            chunks: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, record: T) {
        if self.len & CHUNK_MASK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK_RECORDS));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        debug_assert!(last.len() < CHUNK_RECORDS);
        last.push(record);
        self.len += 1;
    }

    pub fn pop(&mut self) -> Option<T> {
        let last = self.chunks.last_mut()?;
        let record = last.pop().expect("the last chunk is not empty");
        if last.is_empty() {
            self.chunks.pop();
        }
        self.len -= 1;
        Some(record)
    }

    pub fn get(&self, position: usize) -> Option<&T> {
        if position < self.len {
            Some(&self.chunks[position >> CHUNK_SHIFT][position & CHUNK_MASK])
        } else {
            None
        }
    }

    pub fn last(&self) -> Option<&T> {
        self.chunks.last().and_then(|chunk| chunk.last())
    }

    /// The records in order, as the contiguous slices they are stored in.
    pub fn chunks(&self) -> impl Iterator<Item = &[T]> {
        self.chunks.iter().map(Vec::as_slice)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.chunks.iter().flatten()
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

    pub fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.iter().cloned().collect()
    }
}

impl<T> From<Vec<T>> for Table<T> {
    fn from(records: Vec<T>) -> Table<T> {
        let mut table = Table::new();
        for record in records {
            table.push(record);
        }
        table
    }
}

impl<T> Index<usize> for Table<T> {
    type Output = T;

    #[inline]
    fn index(&self, position: usize) -> &T {
        assert!(position < self.len, "position {position} of {}", self.len);
        &self.chunks[position >> CHUNK_SHIFT][position & CHUNK_MASK]
    }
}

impl<T> IndexMut<usize> for Table<T> {
    #[inline]
    fn index_mut(&mut self, position: usize) -> &mut T {
        assert!(position < self.len, "position {position} of {}", self.len);
        &mut self.chunks[position >> CHUNK_SHIFT][position & CHUNK_MASK]
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
        assert_eq!(table[1], 99);
        while table.pop().is_some() {}
        assert!(table.is_empty() && table.last().is_none() && table.chunks().count() == 0);
        assert_eq!(Table::from(model.clone()).to_vec(), model);
    }
}
