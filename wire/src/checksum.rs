//! The checksum of TigerBeetle's client protocol: AEGIS-128L used as a MAC with a zero key and a
//! zero nonce, the data passed as associated data and the message empty; the 128-bit tag is read
//! as a little-endian `u128`. (TigerBeetle's `vsr/checksum.zig`; its `Aegis128LMac_128` absorbs
//! the input as associated data and finalises with a zero message length, which is exactly an
//! AEGIS-128L encryption of an empty message. The `aegis` crate's own `Aegis128LMac` type follows
//! the later AEGIS-MAC specification and gives other values: it must not be used here.)
//!
//! Invariants: the function is pure and total (any input length, including empty); the value is
//! set in stone by TigerBeetle's clients, and `tests/t01_checksum.rs` pins it with TigerBeetle's
//! own test vectors. Called by the header code (`checksum` over header bytes 16..256,
//! `checksum_body` over the body) and by nothing else.

use aegis::aegis128l::Aegis128L;

/// The AEGIS-128L key: all zero, since this is a checksum, not a MAC.
const KEY: [u8; 16] = [0; 16];
/// The AEGIS-128L nonce: all zero.
const NONCE: [u8; 16] = [0; 16];
/// The tag is 128 bits.
const TAG_SIZE: usize = 16;

/// The checksum of empty input: `checksum_body` of every message without a body (ping, pong,
/// eviction). TigerBeetle hard-codes the same value for its compile-time checksums.
pub const CHECKSUM_EMPTY: u128 = 0x49F1_7461_8255_402D_E6E7_E3C4_0D60_CC83;

/// The protocol checksum of `data`.
pub fn checksum(data: &[u8]) -> u128 {
    let cipher = Aegis128L::<TAG_SIZE>::new(&KEY, &NONCE);
    // The message is empty: nothing is encrypted, `data` is only authenticated.
    let tag = cipher.encrypt_in_place(&mut [], data);
    u128::from_le_bytes(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_has_the_hard_coded_value() {
        assert_eq!(checksum(&[]), CHECKSUM_EMPTY);
    }

    #[test]
    fn one_changed_byte_changes_the_checksum() {
        let mut data = [7u8; 300];
        let before = checksum(&data);
        data[299] ^= 1;
        assert_ne!(checksum(&data), before);
    }
}
