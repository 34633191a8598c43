//! [`Filter`]: a split-block Bloom filter over 128-bit keys, kept in memory beside each run so
//! that a key the run does not hold is answered without reading the disk.
//!
//! The filter is an array of 32-byte blocks of eight 32-bit words. A key's 64-bit hash picks
//! one block with its upper half and one bit in each of the block's eight words with its
//! lower half (eight odd multipliers, as in Parquet's split-block filter), so a lookup touches
//! one cache line. At 10 bits per key about 1% of absent keys pass.
//!
//! The hash is seeded; the seed is stored with the filter, so a filter read back answers as
//! the one written. Everything is deterministic: the same keys, size and seed give the same
//! bytes.

/// Bytes of one block: eight 32-bit words.
pub const FILTER_BLOCK_SIZE: usize = 32;

/// The multipliers that spread a key's lower hash bits over the eight words of its block.
const SALTS: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    blocks: Vec<[u32; 8]>,
    seed: u64,
}

impl Filter {
    /// An empty filter sized for `keys` keys at `bits_per_key` bits each (at least one block).
    pub fn new(keys: u64, bits_per_key: u32, seed: u64) -> Filter {
        let bits = keys.saturating_mul(u64::from(bits_per_key));
        let blocks = bits.div_ceil(FILTER_BLOCK_SIZE as u64 * 8).max(1);
        assert!(
            blocks <= u64::from(u32::MAX),
            "a filter of at most 2^32 blocks"
        );
        Filter {
            blocks: vec![[0; 8]; blocks as usize],
            seed,
        }
    }

    /// A filter every key passes: for runs read by range, where a filter would cost its
    /// hashing and rule nothing out.
    pub fn passing_all(seed: u64) -> Filter {
        Filter {
            blocks: vec![[u32::MAX; 8]],
            seed,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of 32-byte blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// Bytes the filter takes in memory and on disk.
    pub fn size(&self) -> usize {
        self.blocks.len() * FILTER_BLOCK_SIZE
    }

    pub fn insert(&mut self, key: u128) {
        let hash = hash(self.seed, key);
        let at = self.block_of(hash);
        let block = &mut self.blocks[at];
        for (word, salt) in block.iter_mut().zip(SALTS) {
            *word |= bit(hash, salt);
        }
    }

    /// False when `key` was never inserted; true when it was, and for about 1% of other keys
    /// at 10 bits per key.
    pub fn may_contain(&self, key: u128) -> bool {
        let hash = hash(self.seed, key);
        let block = &self.blocks[self.block_of(hash)];
        block
            .iter()
            .zip(SALTS)
            .all(|(word, salt)| word & bit(hash, salt) != 0)
    }

    fn block_of(&self, hash: u64) -> usize {
        block_of(hash, self.blocks.len() as u64) as usize
    }
}

/// Where `key` falls in a filter of `blocks` blocks seeded `seed`: the block, and the hash
/// that [`block_passes`] tests it with. For a filter read a page at a time.
pub(super) fn probe(seed: u64, blocks: u64, key: u128) -> (u64, u64) {
    let hash = hash(seed, key);
    (block_of(hash, blocks), hash)
}

/// Whether a key of `hash` may be in the filter whose block (as [`Filter::encode`] wrote it)
/// is the four little-endian 64-bit words `block`, read as numbers.
#[inline]
pub(super) fn block_passes(block: [u64; 4], hash: u64) -> bool {
    let mut passes = true;
    for (at, pair) in block.iter().enumerate() {
        passes &= (*pair as u32) & bit(hash, SALTS[2 * at]) != 0;
        passes &= ((*pair >> 32) as u32) & bit(hash, SALTS[2 * at + 1]) != 0;
    }
    passes
}

fn block_of(hash: u64, blocks: u64) -> u64 {
    ((hash >> 32) * blocks) >> 32
}

impl Filter {
    /// The blocks as little-endian bytes, `size()` of them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.size());
        for word in self.blocks.iter().flatten() {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// A filter from `encode`'s bytes, or `None` if they are not whole blocks.
    pub fn decode(bytes: &[u8], seed: u64) -> Option<Filter> {
        if bytes.is_empty() || bytes.len() % FILTER_BLOCK_SIZE != 0 {
            return None;
        }
        let blocks = bytes
            .chunks_exact(FILTER_BLOCK_SIZE)
            .map(|block| {
                let mut words = [0u32; 8];
                for (word, bytes) in words.iter_mut().zip(block.chunks_exact(4)) {
                    *word = u32::from_le_bytes(bytes.try_into().expect("four bytes"));
                }
                words
            })
            .collect();
        Some(Filter { blocks, seed })
    }
}

fn bit(hash: u64, salt: u32) -> u32 {
    1 << ((hash as u32).wrapping_mul(salt) >> 27)
}

/// A seeded 64-bit hash of a 128-bit key (two rounds of MurmurHash3's finalizer).
pub fn hash(seed: u64, key: u128) -> u64 {
    let low = key as u64;
    let high = (key >> 64) as u64;
    mix(mix(low ^ seed) ^ high.rotate_left(29))
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(seed: u64, count: usize) -> Vec<u128> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                (u128::from(mix(state)) << 64) | u128::from(mix(state ^ 0xabcd))
            })
            .collect()
    }

    #[test]
    fn every_inserted_key_passes_and_few_others_do() {
        let inserted = keys(1, 100_000);
        let mut filter = Filter::new(inserted.len() as u64, 10, 7);
        for &key in &inserted {
            filter.insert(key);
        }
        assert!(inserted.iter().all(|&key| filter.may_contain(key)));
        let passed = keys(2, 100_000)
            .into_iter()
            .filter(|&key| filter.may_contain(key))
            .count();
        // About 1% at 10 bits per key; 2% leaves room for the seed's luck.
        assert!(passed < 2_000, "{passed} of 100,000 absent keys passed");
        assert!(passed > 100, "a filter that passes nothing is suspect");
    }

    #[test]
    fn small_and_sequential_keys_spread_too() {
        let mut filter = Filter::new(10_000, 10, 0);
        for key in 0..10_000u128 {
            filter.insert(key);
        }
        assert!((0..10_000u128).all(|key| filter.may_contain(key)));
        let passed = (10_000..110_000u128)
            .filter(|&key| filter.may_contain(key))
            .count();
        assert!(passed < 2_000, "{passed} of 100,000 absent keys passed");
    }

    #[test]
    fn encoding_round_trips_and_refuses_partial_blocks() {
        let mut filter = Filter::new(1_000, 10, 42);
        for key in keys(3, 1_000) {
            filter.insert(key);
        }
        let mut bytes = Vec::new();
        filter.encode(&mut bytes);
        assert_eq!(bytes.len(), filter.size());
        assert_eq!(Filter::decode(&bytes, 42), Some(filter.clone()));
        assert_eq!(Filter::decode(&bytes[..bytes.len() - 1], 42), None);
        assert_eq!(Filter::decode(&[], 42), None);
    }

    #[test]
    fn a_filter_passing_all_passes_every_key() {
        let filter = Filter::passing_all(3);
        assert!(keys(4, 1_000)
            .into_iter()
            .all(|key| filter.may_contain(key)));
        assert_eq!(filter.size(), FILTER_BLOCK_SIZE);
    }

    #[test]
    fn an_empty_filter_has_one_block_and_passes_nothing() {
        let filter = Filter::new(0, 10, 0);
        assert_eq!(filter.blocks(), 1);
        assert!(!filter.may_contain(5));
    }
}
