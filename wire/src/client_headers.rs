//! The command-specific header layouts a client and a server exchange (`vsr/message_header.zig`):
//! `request` (5) and `ping_client` (3) from the client; `reply` (8), `pong_client` (4) and
//! `eviction` (18) from the server; and the eviction reasons.
//!
//! Invariants: each type is the 128-byte [`Frame`] followed by the command's fields at
//! TigerBeetle's byte offsets (asserted at compile time below), 256 bytes in all, no padding;
//! reserved bytes are carried as arrays so that validation can require them zero. A generic
//! [`Header`] converts into the type of its command only when the command byte matches.
//! Called by `validate.rs` (incoming client frames), `reply.rs` (building answers) and, later,
//! Kassa's own client.

use std::mem::offset_of;

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::header::{Command, Frame, Header, HeaderLayout, Release, FRAME_SIZE, HEADER_SIZE};

/// Implements [`HeaderLayout`] and the conversions from and to [`Header`] for one command's
/// layout, and checks its size and alignment.
macro_rules! command_header {
    ($name:ident, $command:expr) => {
        impl HeaderLayout for $name {
            fn frame(&self) -> &Frame {
                &self.frame
            }
            fn frame_mut(&mut self) -> &mut Frame {
                &mut self.frame
            }
        }

        impl $name {
            /// The command this layout belongs to.
            pub const COMMAND: Command = $command;

            /// `header` read as this layout, if its command byte is [`Self::COMMAND`].
            pub fn from_header(header: &Header) -> Option<$name> {
                (header.frame.command == Self::COMMAND.as_u8())
                    .then(|| zerocopy::transmute!(*header))
            }

            /// The same 256 bytes as a generic header.
            pub fn into_header(self) -> Header {
                zerocopy::transmute!(self)
            }
        }

        const _: () = assert!(size_of::<$name>() == HEADER_SIZE);
        const _: () = assert!(align_of::<$name>() == 16);
    };
}

/// A client's request (command 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct RequestHeader {
    pub frame: Frame,
    /// Zero for `register`; afterwards the `context` of the previous reply (the hash chain).
    pub parent: u128,
    /// Must be zero.
    pub parent_padding: u128,
    /// The client's random, non-zero id.
    pub client: u128,
    /// Zero for `register`; afterwards the `commit` of the register reply.
    pub session: u64,
    /// Zero, except during TigerBeetle's AOF recovery.
    pub timestamp: u64,
    /// Zero for `register`, then 1, 2, 3, … one in flight at a time.
    pub request: u32,
    /// An operation number (see `operation.rs`).
    pub operation: u8,
    /// Must be zero.
    pub previous_request_latency_padding: [u8; 3],
    /// Microseconds from building the previous request to receiving its reply.
    pub previous_request_latency: u32,
    /// Must be zero.
    pub reserved: [u8; 52],
}

command_header!(RequestHeader, Command::Request);

impl RequestHeader {
    /// A request header with every field zero except the ones given (the way the client starts
    /// one); the caller sets `parent`, `session`, `request`, `view`, then seals it with the body.
    pub fn new(cluster: u128, client: u128, release: Release, operation: u8) -> RequestHeader {
        let mut header = RequestHeader::new_zeroed();
        header.frame = Frame::new(Command::Request, cluster);
        header.frame.release = release;
        header.client = client;
        header.operation = operation;
        header
    }
}

/// The server's reply to a request (command 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ReplyHeader {
    pub frame: Frame,
    /// The `checksum` of the request answered.
    pub request_checksum: u128,
    /// Must be zero.
    pub request_checksum_padding: u128,
    /// The next request's `parent`: the header checksum computed once, with `context` zero.
    pub context: u128,
    /// Must be zero.
    pub context_padding: u128,
    pub client: u128,
    /// Equal to `commit`, non-zero.
    pub op: u64,
    /// Non-zero; for `register`, the client's new session number.
    pub commit: u64,
    /// Non-zero: the timestamp the request was executed at.
    pub timestamp: u64,
    pub request: u32,
    pub operation: u8,
    /// Must be zero.
    pub reserved: [u8; 19],
}

command_header!(ReplyHeader, Command::Reply);

/// A client's keep-alive and view probe (command 3). No body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PingClientHeader {
    pub frame: Frame,
    pub client: u128,
    /// The client's monotonic clock, echoed in the pong.
    pub ping_timestamp_monotonic: u64,
    /// The client's session (zero before registering; zero from clients before 0.17.6).
    pub session: u64,
    /// Must be zero.
    pub reserved: [u8; 96],
}

command_header!(PingClientHeader, Command::PingClient);

/// The server's answer to a ping (command 4). No body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct PongClientHeader {
    pub frame: Frame,
    /// Copied from the ping.
    pub ping_timestamp_monotonic: u64,
    /// Must be zero.
    pub reserved: [u8; 120],
}

command_header!(PongClientHeader, Command::PongClient);

/// The server ends a client's session (command 18). No body. The client fails every request
/// and stops for good: the last resort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct EvictionHeader {
    pub frame: Frame,
    pub client: u128,
    /// Must be zero.
    pub reserved: [u8; 111],
    /// An [`EvictionReason`] number.
    pub reason: u8,
}

command_header!(EvictionHeader, Command::Eviction);

/// Why a session was evicted (`Header.Eviction.Reason`). Zero is reserved, never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EvictionReason {
    NoSession = 1,
    ClientReleaseTooLow = 2,
    ClientReleaseTooHigh = 3,
    InvalidRequestOperation = 4,
    InvalidRequestBody = 5,
    InvalidRequestBodySize = 6,
    SessionTooLow = 7,
    SessionReleaseMismatch = 8,
}

impl EvictionReason {
    pub const ALL: [EvictionReason; 8] = [
        EvictionReason::NoSession,
        EvictionReason::ClientReleaseTooLow,
        EvictionReason::ClientReleaseTooHigh,
        EvictionReason::InvalidRequestOperation,
        EvictionReason::InvalidRequestBody,
        EvictionReason::InvalidRequestBodySize,
        EvictionReason::SessionTooLow,
        EvictionReason::SessionReleaseMismatch,
    ];

    /// The reason with this number; `None` for 0 (reserved) and unknown numbers.
    pub fn from_u8(value: u8) -> Option<EvictionReason> {
        EvictionReason::ALL
            .iter()
            .copied()
            .find(|reason| *reason as u8 == value)
    }

    /// The name TigerBeetle logs.
    pub const fn name(self) -> &'static str {
        match self {
            EvictionReason::NoSession => "no_session",
            EvictionReason::ClientReleaseTooLow => "client_release_too_low",
            EvictionReason::ClientReleaseTooHigh => "client_release_too_high",
            EvictionReason::InvalidRequestOperation => "invalid_request_operation",
            EvictionReason::InvalidRequestBody => "invalid_request_body",
            EvictionReason::InvalidRequestBodySize => "invalid_request_body_size",
            EvictionReason::SessionTooLow => "session_too_low",
            EvictionReason::SessionReleaseMismatch => "session_release_mismatch",
        }
    }
}

impl std::fmt::Display for EvictionReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const F: usize = FRAME_SIZE;
const _: () = assert!(offset_of!(RequestHeader, parent) == F);
const _: () = assert!(offset_of!(RequestHeader, parent_padding) == 144);
const _: () = assert!(offset_of!(RequestHeader, client) == 160);
const _: () = assert!(offset_of!(RequestHeader, session) == 176);
const _: () = assert!(offset_of!(RequestHeader, timestamp) == 184);
const _: () = assert!(offset_of!(RequestHeader, request) == 192);
const _: () = assert!(offset_of!(RequestHeader, operation) == 196);
const _: () = assert!(offset_of!(RequestHeader, previous_request_latency_padding) == 197);
const _: () = assert!(offset_of!(RequestHeader, previous_request_latency) == 200);
const _: () = assert!(offset_of!(RequestHeader, reserved) == 204);

const _: () = assert!(offset_of!(ReplyHeader, request_checksum) == F);
const _: () = assert!(offset_of!(ReplyHeader, request_checksum_padding) == 144);
const _: () = assert!(offset_of!(ReplyHeader, context) == 160);
const _: () = assert!(offset_of!(ReplyHeader, context_padding) == 176);
const _: () = assert!(offset_of!(ReplyHeader, client) == 192);
const _: () = assert!(offset_of!(ReplyHeader, op) == 208);
const _: () = assert!(offset_of!(ReplyHeader, commit) == 216);
const _: () = assert!(offset_of!(ReplyHeader, timestamp) == 224);
const _: () = assert!(offset_of!(ReplyHeader, request) == 232);
const _: () = assert!(offset_of!(ReplyHeader, operation) == 236);
const _: () = assert!(offset_of!(ReplyHeader, reserved) == 237);

const _: () = assert!(offset_of!(PingClientHeader, client) == F);
const _: () = assert!(offset_of!(PingClientHeader, ping_timestamp_monotonic) == 144);
const _: () = assert!(offset_of!(PingClientHeader, session) == 152);
const _: () = assert!(offset_of!(PingClientHeader, reserved) == 160);

const _: () = assert!(offset_of!(PongClientHeader, ping_timestamp_monotonic) == F);
const _: () = assert!(offset_of!(PongClientHeader, reserved) == 136);

const _: () = assert!(offset_of!(EvictionHeader, client) == F);
const _: () = assert!(offset_of!(EvictionHeader, reserved) == 144);
const _: () = assert!(offset_of!(EvictionHeader, reason) == 255);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_reasons_are_one_to_eight() {
        for (index, reason) in EvictionReason::ALL.iter().enumerate() {
            assert_eq!(usize::from(*reason as u8), index + 1);
            assert_eq!(EvictionReason::from_u8(*reason as u8), Some(*reason));
        }
        assert_eq!(EvictionReason::from_u8(0), None);
        assert_eq!(EvictionReason::from_u8(9), None);
    }

    #[test]
    fn conversion_requires_the_matching_command() {
        let request = RequestHeader::new(1, 2, Release::new(0, 17, 8), 147);
        let header = request.into_header();
        assert_eq!(RequestHeader::from_header(&header), Some(request));
        assert_eq!(ReplyHeader::from_header(&header), None);
    }
}
