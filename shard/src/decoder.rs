//! [`Decoder`]: the bounds-checked little-endian reader that every binary encoding of the crate
//! decodes with (log entries, snapshots, transaction state). It never panics on bad input:
//! every read past the end, and every count larger than the bytes left, is an error.

use zerocopy::{FromBytes, IntoBytes};

/// A bounds-checked little-endian reader.
pub struct Decoder<'a> {
    bytes: &'a [u8],
    pub(crate) offset: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes, offset: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.offset == self.bytes.len()
    }

    pub(crate) fn take(&mut self, size: usize) -> Result<&'a [u8], &'static str> {
        let end = self
            .offset
            .checked_add(size)
            .filter(|e| *e <= self.bytes.len());
        let end = end.ok_or("truncated")?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    pub fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }

    pub(crate) fn u128(&mut self) -> Result<u128, &'static str> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().expect("16")))
    }

    /// A count of items of `item_size` bytes, checked against the bytes left.
    pub(crate) fn count(&mut self, item_size: usize) -> Result<usize, &'static str> {
        let count = self.u64()?;
        let left = (self.bytes.len() - self.offset) as u64;
        if count.checked_mul(item_size as u64).is_none_or(|s| s > left) {
            return Err("count larger than the bytes left");
        }
        Ok(count as usize)
    }

    pub(crate) fn records<T: FromBytes + IntoBytes + Copy>(
        &mut self,
    ) -> Result<Vec<T>, &'static str> {
        let count = self.count(size_of::<T>())?;
        self.records_exact(count)
    }

    /// `count` fixed-size records (no count prefix).
    pub(crate) fn records_exact<T: FromBytes + IntoBytes + Copy>(
        &mut self,
        count: usize,
    ) -> Result<Vec<T>, &'static str> {
        let bytes = self.take(count * size_of::<T>())?;
        // Record by record: no zeroed buffer to copy over (decisions run to megabytes).
        let records = bytes.chunks_exact(size_of::<T>().max(1));
        Ok(records
            .take(count)
            .map(|record| T::read_from_bytes(record).expect("a record's size"))
            .collect())
    }
}
