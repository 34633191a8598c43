//! TigerBeetle's checksum test vectors (`src/vsr/checksum.zig` at 0.17.8), reproduced: the two
//! fixed vectors, the "checksum stability" change detector, the "alignment and sizing" test, and
//! the pure-function/changes-on-mutation fuzz loop (fewer rounds and shorter inputs).

mod common;

use common::{checksum_of_u128s, Prng};
use kassa_wire::{checksum, CHECKSUM_EMPTY};

#[test]
fn fixed_test_vectors() {
    // checksum.zig writes the expected values byte-swapped: `@byteSwap(0xf72a…3a26)`.
    let zeros_16 = 0xf72a_d48d_d05d_d165_6133_101c_d4be_3a26u128.swap_bytes();
    let empty = 0x83cc_600d_c4e3_e7e6_2d40_5582_6174_f149u128.swap_bytes();
    assert_eq!(checksum(&[0u8; 16]), zeros_16);
    assert_eq!(checksum(&[]), empty);
    assert_eq!(empty, CHECKSUM_EMPTY);
    assert_eq!(CHECKSUM_EMPTY >> 96, 0x49F1_7461);
    assert_eq!(CHECKSUM_EMPTY & 0xFFFF, 0xCC83);
}

#[test]
fn checksum_stability() {
    let mut cases: Vec<u128> = Vec::with_capacity(896);
    // Zeros of lengths 0..128.
    for length in 0..128 {
        cases.push(checksum(&vec![0u8; length]));
    }
    // 64 bytes with exactly one bit set.
    for bit in 0..64 * 8 {
        let mut message = [0u8; 64];
        message[bit / 8] = 1 << (bit % 8);
        cases.push(checksum(&message));
    }
    // Pseudo-random data of lengths 13..269 from PRNG seed 92.
    let mut prng = Prng::from_seed(92);
    for subcase in 0..256 {
        let mut message = vec![0u8; subcase + 13];
        prng.fill(&mut message);
        cases.push(checksum(&message));
    }
    assert_eq!(cases.len(), 896);
    for (index, case) in cases.iter().enumerate() {
        assert!(*case != 0 && *case != u128::MAX);
        assert!(!cases[..index].contains(case), "case {index} repeats");
    }
    assert_eq!(
        checksum_of_u128s(&cases),
        0x82dc_aacf_4875_b279_4468_25b6_830d_1263
    );
}

#[test]
fn checksum_alignment_and_sizing() {
    let mut input = vec![0u8; 8 * 1024];
    Prng::from_seed(92).fill(&mut input);
    let mut cases: Vec<u128> = Vec::with_capacity(4112);
    for start in 0..16 {
        cases.push(checksum(&input[start..]));
        for size in 0..256 {
            cases.push(checksum(&input[start..start + size]));
        }
    }
    assert_eq!(cases.len(), 4112);
    assert!(cases.iter().all(|case| *case != 0 && *case != u128::MAX));

    for (index, byte) in input.iter_mut().enumerate() {
        *byte = (index % 2) as u8;
    }
    let window = 256;
    let even = checksum(&input[..window]);
    let odd = checksum(&input[1..1 + window]);
    for start in 0..16 {
        let expected = if start % 2 == 0 { even } else { odd };
        assert_eq!(checksum(&input[start..start + window]), expected);
    }
    assert_eq!(
        checksum_of_u128s(&cases),
        0xC8E7_102D_72CE_9645_8639_F602_7DA0_FBA0
    );
}

#[test]
fn checksum_simple_fuzzing() {
    // checksum.zig: 1000 rounds of up to 1 MiB; here 300 rounds of up to 64 KiB.
    let mut prng = Prng::from_seed(42);
    let mut buffer = vec![0u8; 64 * 1024];
    for _ in 0..300 {
        let length = 1 + prng.below(buffer.len());
        let message = &mut buffer[..length];
        prng.fill(message);
        let first = checksum(message);
        assert_eq!(checksum(message), first, "a pure function");
        let index = prng.below(length);
        message[index] = message[index].wrapping_add(1);
        assert_ne!(checksum(message), first);
    }
}

#[test]
fn the_prng_matches_tigerbeetles_snapshot() {
    // prng.zig's `test next`: 1000 draws from seed 92, counted by `% 8`.
    let mut prng = Prng::from_seed(92);
    let mut distribution = [0u32; 8];
    for _ in 0..1000 {
        distribution[(prng.next_u64() % 8) as usize] += 1;
    }
    assert_eq!(distribution, [134, 134, 117, 121, 117, 128, 131, 118]);
}
