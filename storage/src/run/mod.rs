//! Runs: immutable files of sorted 128-bit keys with fixed-size values, the building block of a
//! partition's on-disk store (docs/storage.md). A run is written once, in key order, by
//! [`RunWriter`], made durable and renamed into place whole; [`Run`] then answers point
//! lookups and key ranges with one 4 KiB read per block, and answers most keys it does not
//! hold from its in-memory [`Filter`] without reading the disk.
//!
//! # File format (version 2, integers little-endian)
//! ```text
//! data blocks  B × 4096 bytes, keys ascending across the whole file:
//!              crc32c u32 (of bytes 4..4096) | entries u16 (≥ 1) | reserved u16 (0)
//!              | block number u64 | entries × (key u128, value) | zeros
//! index        B × first key u128 of each data block, zero-padded to a 4096 multiple
//! filter       the split-block Bloom filter's words, zero-padded to a 4096 multiple
//! page table   for each 4096-byte page of the index: its first key u128 and crc32c u32
//!              (of the whole page); then for each page of the filter: its crc32c u32;
//!              zero-padded to a 4096 multiple (version 2 only)
//! footer       one 4096-byte block: magic "KASSARUN" | version u32 | value size u32
//!              | keys u64 | data blocks u64 | index offset u64 | index size u64
//!              | filter offset u64 | filter size u64 | filter seed u64 | index crc32c u32
//!              | filter crc32c u32 | first key u128 | last key u128
//!              | page table crc32c u32 (version 2; zero in version 1) | reserved (zero)
//!              | footer crc32c u32 (of the footer's bytes before it, at offset 124) | zeros
//! ```
//! The page table lets a reader keep neither the index nor the filter in memory: it reads
//! a page of either when a lookup needs it, checked against the table, which is 20 bytes per
//! 256 data blocks plus 4 bytes per 4096 bytes of filter (`paged.rs`). A version 1 run
//! (no page table) is still read, with its index and filter read whole.
//! Every region starts on a 4096-byte boundary, so the file is read with `O_DIRECT` in whole
//! blocks. The footer's offsets must describe exactly the file's size, and every checksum,
//! count and key order is checked before it is used: a damaged run is
//! [`StorageError::Corrupt`] naming the file and offset, never a wrong answer. A block carries
//! its own number, so a block read from the wrong place is caught too. A dense run (keys every
//! integer from the first to the last) is read without its index, whose contents follow from
//! the footer: damage to that region goes unnoticed because nothing reads it, and every data
//! block is still checked against the index it implies.
//!
//! Runs hold no clock, no randomness and no state beyond their file: the same keys, values,
//! value size and filter settings give byte-identical files, so replicas that write the same
//! state write the same runs.

mod cache;
mod filter;
mod paged;
mod reader;
mod writer;

pub use cache::{BlockCache, CacheStats, Holds, HELD_PAGES_MIN};
pub use filter::{Filter, FILTER_BLOCK_SIZE};
pub use paged::PageBudget;
pub use reader::{
    Block, BlockingRun, Located, Page, Run, MERGE_READ_BLOCKS, PREFETCH_READS_AT_ONCE,
};
pub use writer::{RunOptions, RunWriter};

use std::path::Path;

use crate::aligned::BLOCK_SIZE;
pub use crate::files::sync_directory;
use crate::{files, StorageError};

/// The format version this code writes; it reads this one and version 1.
pub const RUN_VERSION: u32 = 2;
/// The largest value a run holds; a data block holds at least three entries.
pub const RUN_VALUE_SIZE_MAX: usize = 1024;
const MAGIC: [u8; 8] = *b"KASSARUN";
/// Bytes before a data block's first entry.
const BLOCK_HEADER_SIZE: usize = 16;
use paged::INDEX_PAGE_ENTRY_SIZE;
/// Bytes of the footer covered by its checksum; the checksum follows them.
const FOOTER_CHECKED_SIZE: usize = 124;

/// Deletes the run at `path` and makes its removal durable.
pub async fn remove(path: &Path) -> Result<(), StorageError> {
    files::remove(path).await?;
    let dir = path.parent().expect("a run lives in a directory");
    files::sync_directory(dir).await
}

/// Entries of `value_size` bytes that fit one data block.
pub fn entries_per_block(value_size: usize) -> usize {
    assert!(value_size <= RUN_VALUE_SIZE_MAX);
    (BLOCK_SIZE - BLOCK_HEADER_SIZE) / (16 + value_size)
}

/// What a run's footer says of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    pub version: u32,
    pub value_size: u32,
    pub keys: u64,
    pub data_blocks: u64,
    pub index_offset: u64,
    pub index_size: u64,
    pub filter_offset: u64,
    pub filter_size: u64,
    pub filter_seed: u64,
    pub index_crc: u32,
    pub filter_crc: u32,
    /// The smallest and largest key (both 0 in a run of no keys).
    pub first_key: u128,
    pub last_key: u128,
    /// The page table's checksum (version 2; 0 in version 1).
    pub pages_crc: u32,
}

impl Footer {
    /// 4096-byte pages of the index region.
    pub fn index_pages(&self) -> u64 {
        self.index_size.div_ceil(BLOCK_SIZE as u64)
    }

    /// 4096-byte pages of the filter region.
    pub fn filter_pages(&self) -> u64 {
        self.filter_size.div_ceil(BLOCK_SIZE as u64)
    }

    /// Where the page table starts: right after the filter.
    pub fn pages_offset(&self) -> u64 {
        self.filter_offset + align(self.filter_size)
    }

    /// Bytes of the page table (none in version 1).
    pub fn pages_size(&self) -> u64 {
        match self.version {
            1 => 0,
            _ => self.index_pages() * INDEX_PAGE_ENTRY_SIZE + self.filter_pages() * 4,
        }
    }

    fn encode(&self) -> [u8; BLOCK_SIZE] {
        let mut out = [0u8; BLOCK_SIZE];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..16].copy_from_slice(&self.value_size.to_le_bytes());
        let words = [
            self.keys,
            self.data_blocks,
            self.index_offset,
            self.index_size,
            self.filter_offset,
            self.filter_size,
            self.filter_seed,
        ];
        for (at, word) in words.iter().enumerate() {
            out[16 + at * 8..24 + at * 8].copy_from_slice(&word.to_le_bytes());
        }
        out[72..76].copy_from_slice(&self.index_crc.to_le_bytes());
        out[76..80].copy_from_slice(&self.filter_crc.to_le_bytes());
        out[80..96].copy_from_slice(&self.first_key.to_le_bytes());
        out[96..112].copy_from_slice(&self.last_key.to_le_bytes());
        out[112..116].copy_from_slice(&self.pages_crc.to_le_bytes());
        let crc = crc32c::crc32c(&out[..FOOTER_CHECKED_SIZE]);
        out[FOOTER_CHECKED_SIZE..FOOTER_CHECKED_SIZE + 4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The footer in `block`, found at `offset` of `path`, with every field checked against
    /// the others and against the file's `size`.
    fn decode(path: &Path, offset: u64, block: &[u8], size: u64) -> Result<Footer, StorageError> {
        let corrupt = |what| corrupt(path, offset, what);
        if block[0..8] != MAGIC {
            return Err(corrupt("not a run: bad magic in the footer"));
        }
        let crc = crc32c::crc32c(&block[..FOOTER_CHECKED_SIZE]);
        if read_u32(block, FOOTER_CHECKED_SIZE) != crc {
            return Err(corrupt("run footer checksum mismatch"));
        }
        let version = read_u32(block, 8);
        if !(1..=RUN_VERSION).contains(&version) {
            return Err(corrupt("unknown run format version"));
        }
        if block[116..FOOTER_CHECKED_SIZE]
            .iter()
            .any(|byte| *byte != 0)
            || (version == 1 && read_u32(block, 112) != 0)
        {
            return Err(corrupt("run footer's reserved bytes are not zero"));
        }
        let word = |at: usize| read_u64(block, 16 + at * 8);
        let footer = Footer {
            version,
            value_size: read_u32(block, 12),
            keys: word(0),
            data_blocks: word(1),
            index_offset: word(2),
            index_size: word(3),
            filter_offset: word(4),
            filter_size: word(5),
            filter_seed: word(6),
            index_crc: read_u32(block, 72),
            filter_crc: read_u32(block, 76),
            first_key: read_u128(block, 80),
            last_key: read_u128(block, 96),
            pages_crc: read_u32(block, 112),
        };
        footer.check(size).map_err(corrupt)?;
        Ok(footer)
    }

    /// Whether the fields agree with each other and with a file of `size` bytes.
    fn check(&self, size: u64) -> Result<(), &'static str> {
        if self.value_size as usize > RUN_VALUE_SIZE_MAX {
            return Err("run value size out of range");
        }
        let per_block = entries_per_block(self.value_size as usize) as u64;
        let blocks_min = self.keys.div_ceil(per_block);
        if self.data_blocks < blocks_min || self.data_blocks > self.keys {
            return Err("run block count does not fit its key count");
        }
        let data_end = self.data_blocks.checked_mul(BLOCK_SIZE as u64);
        if data_end != Some(self.index_offset) || self.index_size != self.data_blocks * 16 {
            return Err("run index does not follow its data blocks");
        }
        let index_end = self.index_offset + align(self.index_size);
        let filter_end = index_end.checked_add(align(self.filter_size));
        if self.filter_offset != index_end
            || self.filter_size == 0
            || self.filter_size % FILTER_BLOCK_SIZE as u64 != 0
        {
            return Err("run filter does not follow its index");
        }
        let pages_end = filter_end.and_then(|end| end.checked_add(align(self.pages_size())));
        if pages_end.and_then(|end| end.checked_add(BLOCK_SIZE as u64)) != Some(size) {
            return Err("run footer does not describe the file's size");
        }
        if self.keys > 0 && self.first_key > self.last_key {
            return Err("run key range is reversed");
        }
        Ok(())
    }
}

/// `size` rounded up to whole blocks.
fn align(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE as u64) * BLOCK_SIZE as u64
}

fn corrupt(path: &Path, offset: u64, what: &'static str) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        what,
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

fn read_u128(bytes: &[u8], at: usize) -> u128 {
    u128::from_le_bytes(bytes[at..at + 16].try_into().expect("sixteen bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer() -> Footer {
        Footer {
            version: RUN_VERSION,
            value_size: 4,
            keys: 300,
            data_blocks: 2,
            index_offset: 2 * 4096,
            index_size: 32,
            filter_offset: 3 * 4096,
            filter_size: 384,
            filter_seed: 9,
            index_crc: 1,
            filter_crc: 2,
            first_key: 5,
            last_key: 1 << 100,
            pages_crc: 3,
        }
    }

    #[test]
    fn footer_round_trips_and_every_byte_is_checked() {
        let path = Path::new("run-test");
        // Data, index, filter, page table, footer.
        let size = 6 * 4096;
        let bytes = footer().encode();
        assert_eq!(Footer::decode(path, 0, &bytes, size).unwrap(), footer());
        for at in 0..FOOTER_CHECKED_SIZE + 4 {
            let mut damaged = bytes;
            damaged[at] ^= 0x10;
            assert!(
                Footer::decode(path, 0, &damaged, size).is_err(),
                "byte {at}"
            );
        }
        assert!(Footer::decode(path, 0, &bytes, size + 4096).is_err());
    }

    #[test]
    fn inconsistent_footers_are_refused() {
        let size = 6 * 4096;
        let cases: [fn(&mut Footer); 7] = [
            |f| f.version = 1,
            |f| f.data_blocks = 1,
            |f| f.index_size = 16,
            |f| f.filter_offset += 4096,
            |f| f.filter_size = 0,
            |f| f.value_size = 5000,
            |f| (f.first_key, f.last_key) = (10, 9),
        ];
        for change in cases {
            let mut bad = footer();
            change(&mut bad);
            assert!(bad.check(size).is_err(), "{bad:?}");
        }
        assert_eq!(footer().check(size), Ok(()));
    }

    #[test]
    fn block_capacity_follows_the_value_size() {
        assert_eq!(entries_per_block(0), 255);
        assert_eq!(entries_per_block(4), 204);
        assert_eq!(entries_per_block(64), 51);
        assert!(entries_per_block(RUN_VALUE_SIZE_MAX) >= 3);
    }
}
