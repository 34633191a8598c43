//! Helpers shared by the integration tests: TigerBeetle's test PRNG (`stdx/prng.zig`:
//! xoshiro256++ seeded through splitmix64), so that TigerBeetle's checksum test vectors that
//! hash pseudo-random data can be reproduced byte for byte, and the seeded fuzz loops are
//! deterministic without a `rand` dependency.

#![allow(dead_code)]

/// TigerBeetle's `stdx.PRNG`.
pub struct Prng {
    s: [u64; 4],
}

impl Prng {
    /// `PRNG.from_seed`: four splitmix64 outputs.
    pub fn from_seed(seed: u64) -> Prng {
        let mut state = seed;
        let mut split_mix_64 = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Prng {
            s: [
                split_mix_64(),
                split_mix_64(),
                split_mix_64(),
                split_mix_64(),
            ],
        }
    }

    /// `PRNG.next`: xoshiro256++.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// `PRNG.fill`: little-endian 8-byte words; a partial last word uses its low bytes.
    pub fn fill(&mut self, target: &mut [u8]) {
        let mut chunks = target.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let word = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&word[..rest.len()]);
        }
    }

    /// A number in `0..bound` (bound > 0); slightly biased, fine for tests.
    pub fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0);
        (self.next_u64() % bound as u64) as usize
    }

    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.next_u64() % denominator < numerator
    }
}

/// `checksum` of the concatenated little-endian bytes of `values`, as TigerBeetle's tests hash
/// an array of u128 (`mem.sliceAsBytes`).
pub fn checksum_of_u128s(values: &[u128]) -> u128 {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    kassa_wire::checksum(&bytes)
}
