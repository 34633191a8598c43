//! The 256-byte message header of TigerBeetle's protocol (`vsr/message_header.zig`): the 128-byte
//! frame every command shares, the generic [`Header`] whose second half is opaque, the
//! [`Command`] numbers, the [`Release`] triple, and the [`HeaderLayout`] trait that gives every
//! header type its checksum arithmetic.
//!
//! Invariants: every layout is 256 bytes, 16-byte aligned, without padding, little-endian, with
//! each field at TigerBeetle's offset (checked at compile time below and in
//! `tests/t02_header.rs`). `checksum` covers bytes 16..256, so `checksum_body` is set first and
//! `checksum` last ([`HeaderLayout::seal`]). Raw `command` and `operation` bytes stay `u8` in the
//! layouts so that any 256 bytes parse; their meaning is decoded and checked by `validate.rs`.
//! Called by `client_headers.rs` (command-specific layouts), `validate.rs` and `reply.rs`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::checksum::checksum;

/// The size of every header.
pub const HEADER_SIZE: usize = 256;
/// The size of the frame part shared by all commands; the command-specific part follows.
pub const FRAME_SIZE: usize = 128;
/// `checksum` covers the header from this byte on (everything after itself).
pub const CHECKSUM_COVERED_FROM: usize = 16;
/// The protocol version (`vsr.Version`); every client message carries it.
pub const PROTOCOL_VERSION: u16 = 0;

/// A TigerBeetle release `major.minor.patch`, packed as `patch | minor << 8 | major << 16`
/// (`multiversion.zig`'s `ReleaseTriple`), so that numeric order is release order.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    FromBytes,
    IntoBytes,
    Immutable,
    KnownLayout,
)]
#[repr(transparent)]
pub struct Release(pub u32);

impl Release {
    pub const fn new(major: u16, minor: u8, patch: u8) -> Release {
        Release((major as u32) << 16 | (minor as u32) << 8 | patch as u32)
    }
    pub const fn major(self) -> u16 {
        (self.0 >> 16) as u16
    }
    pub const fn minor(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub const fn patch(self) -> u8 {
        self.0 as u8
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major(), self.minor(), self.patch())
    }
}

/// Every command number TigerBeetle 0.17 defines (`vsr.zig`). A Kassa node receives only
/// `Request` and `PingClient` from clients and sends only `Reply`, `PongClient` and `Eviction`;
/// the others are listed so that a known-but-misdirected command is told apart from garbage
/// (TigerBeetle's client crashes on a command number it does not know: never send one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    Reserved = 0,
    Ping = 1,
    Pong = 2,
    PingClient = 3,
    PongClient = 4,
    Request = 5,
    Prepare = 6,
    PrepareOk = 7,
    Reply = 8,
    Commit = 9,
    ExitView = 10,
    JoinView = 11,
    Deprecated12 = 12,
    GetView = 13,
    GetHeaders = 14,
    GetPrepare = 15,
    GetReply = 16,
    Headers = 17,
    Eviction = 18,
    GetBlocks = 19,
    Block = 20,
    Deprecated21 = 21,
    Deprecated22 = 22,
    Deprecated23 = 23,
    View = 24,
}

impl Command {
    /// Every command, in numeric order (the numbers are dense: 0..=24).
    pub const ALL: [Command; 25] = [
        Command::Reserved,
        Command::Ping,
        Command::Pong,
        Command::PingClient,
        Command::PongClient,
        Command::Request,
        Command::Prepare,
        Command::PrepareOk,
        Command::Reply,
        Command::Commit,
        Command::ExitView,
        Command::JoinView,
        Command::Deprecated12,
        Command::GetView,
        Command::GetHeaders,
        Command::GetPrepare,
        Command::GetReply,
        Command::Headers,
        Command::Eviction,
        Command::GetBlocks,
        Command::Block,
        Command::Deprecated21,
        Command::Deprecated22,
        Command::Deprecated23,
        Command::View,
    ];

    /// The command with this number, if TigerBeetle defines one.
    pub fn from_u8(value: u8) -> Option<Command> {
        Command::ALL.get(usize::from(value)).copied()
    }

    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The part of the header every command shares: bytes 0..128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Frame {
    /// Covers header bytes 16..256.
    pub checksum: u128,
    /// Must be zero.
    pub checksum_padding: u128,
    /// Covers the body.
    pub checksum_body: u128,
    /// Must be zero.
    pub checksum_body_padding: u128,
    /// Must be zero (reserved for AEAD).
    pub nonce_reserved: u128,
    pub cluster: u128,
    /// Header plus body, in bytes.
    pub size: u32,
    /// Must be zero.
    pub epoch: u32,
    pub view: u32,
    pub release: Release,
    /// Must be [`PROTOCOL_VERSION`].
    pub protocol: u16,
    /// A [`Command`] number.
    pub command: u8,
    pub replica: u8,
    /// Must be zero.
    pub reserved_frame: [u8; 12],
}

impl Frame {
    /// A frame for `command` with every other field zero and `size` of a bodiless message.
    pub const fn new(command: Command, cluster: u128) -> Frame {
        Frame {
            checksum: 0,
            checksum_padding: 0,
            checksum_body: 0,
            checksum_body_padding: 0,
            nonce_reserved: 0,
            cluster,
            size: HEADER_SIZE as u32,
            epoch: 0,
            view: 0,
            release: Release(0),
            protocol: PROTOCOL_VERSION,
            command: command.as_u8(),
            replica: 0,
            reserved_frame: [0; 12],
        }
    }

    /// The body size the frame announces, if `size` covers at least a header.
    pub fn body_size(&self) -> Option<usize> {
        usize::try_from(self.size).ok()?.checked_sub(HEADER_SIZE)
    }
}

/// A header of any command: the frame and 128 opaque bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Header {
    pub frame: Frame,
    /// Laid out by the command: see `client_headers.rs`.
    pub reserved_command: [u8; 128],
}

/// What every 256-byte header type has: its frame, and the checksums over it.
pub trait HeaderLayout: FromBytes + IntoBytes + Immutable + KnownLayout + Sized {
    fn frame(&self) -> &Frame;
    fn frame_mut(&mut self) -> &mut Frame;

    /// The checksum the header should carry: over bytes 16..256, `checksum_body` included.
    fn calculate_checksum(&self) -> u128 {
        let bytes = self.as_bytes();
        // Every implementor is a 256-byte layout (asserted beside each), so this cannot panic.
        assert_eq!(bytes.len(), HEADER_SIZE);
        checksum(&bytes[CHECKSUM_COVERED_FROM..])
    }

    fn valid_checksum(&self) -> bool {
        self.frame().checksum == self.calculate_checksum()
    }

    fn valid_checksum_body(&self, body: &[u8]) -> bool {
        self.frame().checksum_body == checksum(body)
    }

    /// Sets `size` and `checksum_body` for `body`, then `checksum`: the header is ready to send.
    /// No field may change afterwards (or seal again).
    fn seal(&mut self, body: &[u8]) {
        let size = HEADER_SIZE + body.len();
        assert!(
            size <= crate::MESSAGE_SIZE_MAX,
            "body of {} bytes",
            body.len()
        );
        self.frame_mut().size = size as u32;
        self.frame_mut().checksum_body = checksum(body);
        self.reseal();
    }

    /// Recomputes `checksum` alone, after a change to a header field (never to the body).
    fn reseal(&mut self) {
        self.frame_mut().checksum = self.calculate_checksum();
        assert!(self.valid_checksum());
    }
}

impl HeaderLayout for Header {
    fn frame(&self) -> &Frame {
        &self.frame
    }
    fn frame_mut(&mut self) -> &mut Frame {
        &mut self.frame
    }
}

impl Header {
    /// The header in `bytes`, which must be exactly [`HEADER_SIZE`] long; copied, so `bytes`
    /// need not be aligned.
    pub fn read(bytes: &[u8]) -> Option<Header> {
        Header::read_from_bytes(bytes).ok()
    }

    /// The command, if TigerBeetle defines its number.
    pub fn command(&self) -> Option<Command> {
        Command::from_u8(self.frame.command)
    }
}

const _: () = assert!(size_of::<Frame>() == FRAME_SIZE);
const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(align_of::<Header>() == 16);
const _: () = assert!(std::mem::offset_of!(Frame, checksum) == 0);
const _: () = assert!(std::mem::offset_of!(Frame, checksum_padding) == 16);
const _: () = assert!(std::mem::offset_of!(Frame, checksum_body) == 32);
const _: () = assert!(std::mem::offset_of!(Frame, checksum_body_padding) == 48);
const _: () = assert!(std::mem::offset_of!(Frame, nonce_reserved) == 64);
const _: () = assert!(std::mem::offset_of!(Frame, cluster) == 80);
const _: () = assert!(std::mem::offset_of!(Frame, size) == 96);
const _: () = assert!(std::mem::offset_of!(Frame, epoch) == 100);
const _: () = assert!(std::mem::offset_of!(Frame, view) == 104);
const _: () = assert!(std::mem::offset_of!(Frame, release) == 108);
const _: () = assert!(std::mem::offset_of!(Frame, protocol) == 112);
const _: () = assert!(std::mem::offset_of!(Frame, command) == 114);
const _: () = assert!(std::mem::offset_of!(Frame, replica) == 115);
const _: () = assert!(std::mem::offset_of!(Frame, reserved_frame) == 116);
const _: () = assert!(std::mem::offset_of!(Header, reserved_command) == FRAME_SIZE);

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn command_numbers_are_dense_and_round_trip() {
        for (number, command) in Command::ALL.iter().enumerate() {
            assert_eq!(usize::from(command.as_u8()), number);
            assert_eq!(Command::from_u8(command.as_u8()), Some(*command));
        }
        assert_eq!(Command::from_u8(25), None);
        assert_eq!(Command::from_u8(255), None);
    }

    #[test]
    fn release_packs_like_tigerbeetle() {
        let release = Release::new(0, 17, 8);
        assert_eq!(release.0, 0x0000_1108);
        assert_eq!(release.to_string(), "0.17.8");
        assert!(Release::new(0, 16, 99) < Release::new(0, 17, 0));
        assert!(Release::new(1, 0, 0) > Release::new(0, 255, 255));
    }

    #[test]
    fn seal_sets_both_checksums() {
        let mut header = Header::new_zeroed();
        header.frame = Frame::new(Command::Request, 7);
        header.seal(b"body");
        assert_eq!(header.frame.size, 260);
        assert!(header.valid_checksum());
        assert!(header.valid_checksum_body(b"body"));
        assert!(!header.valid_checksum_body(b"bodz"));
        header.frame.view = 1;
        assert!(!header.valid_checksum());
    }
}
