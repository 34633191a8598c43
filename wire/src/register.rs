//! The bodies of the `register` operation (`vsr.zig`): the client's 256-byte [`RegisterRequest`]
//! and the server's 64-byte [`RegisterResult`], which tells the client how large a request
//! body it may send.
//!
//! Invariants: layouts are TigerBeetle's, little-endian, no padding; a client's request carries
//! `batch_size_limit == 0` and zero reserved bytes (checked by `request_body.rs`); a result
//! carries a limit in `BATCH_SIZE_LIMIT_MIN..=MESSAGE_BODY_SIZE_MAX` (asserted by
//! `reply.rs` when it builds the register reply). The client uses
//! `min(batch_size_limit, 1 MiB − 256)` as its request body limit.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{BATCH_SIZE_LIMIT_MIN, MESSAGE_BODY_SIZE_MAX};

/// The body of a client's `register` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RegisterRequest {
    /// Zero from clients (TigerBeetle's primary fills it in when it prepares the request).
    pub batch_size_limit: u32,
    /// Must be zero.
    pub reserved: [u8; 252],
}

/// The body of the reply to `register`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RegisterResult {
    /// The largest request body the client may send.
    pub batch_size_limit: u32,
    /// Must be zero.
    pub reserved: [u8; 60],
}

impl RegisterRequest {
    /// What a client sends.
    pub const fn new() -> RegisterRequest {
        RegisterRequest {
            batch_size_limit: 0,
            reserved: [0; 252],
        }
    }
}

impl Default for RegisterRequest {
    fn default() -> Self {
        Self::new()
    }
}

impl RegisterResult {
    /// A result announcing `batch_size_limit`, which must lie in
    /// `BATCH_SIZE_LIMIT_MIN..=MESSAGE_BODY_SIZE_MAX` (a server configuration, not input).
    pub fn new(batch_size_limit: u32) -> RegisterResult {
        let limit = batch_size_limit as usize;
        assert!((BATCH_SIZE_LIMIT_MIN..=MESSAGE_BODY_SIZE_MAX).contains(&limit));
        RegisterResult {
            batch_size_limit,
            reserved: [0; 60],
        }
    }
}

/// The size of [`RegisterRequest`].
pub const REGISTER_REQUEST_SIZE: usize = size_of::<RegisterRequest>();
/// The size of [`RegisterResult`].
pub const REGISTER_RESULT_SIZE: usize = size_of::<RegisterResult>();

const _: () = assert!(REGISTER_REQUEST_SIZE == 256);
const _: () = assert!(REGISTER_RESULT_SIZE == 64);
const _: () = assert!(REGISTER_REQUEST_SIZE <= MESSAGE_BODY_SIZE_MAX);
const _: () = assert!(MESSAGE_BODY_SIZE_MAX <= u32::MAX as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_bytes_are_little_endian_limit_then_zeros() {
        let result = RegisterResult::new(1024 * 1024 - 256);
        let bytes = result.as_bytes();
        assert_eq!(bytes.len(), 64);
        assert_eq!(bytes[..4], (1_048_320u32).to_le_bytes());
        assert!(bytes[4..].iter().all(|b| *b == 0));
        assert_eq!(RegisterRequest::new().as_bytes(), &[0u8; 256][..]);
    }

    #[test]
    #[should_panic]
    fn result_limit_below_the_minimum_is_a_bug() {
        RegisterResult::new(128);
    }
}
