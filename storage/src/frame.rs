//! The on-disk frame of one log entry: encoding (by the appender, into the pending buffer) and
//! bounds-checked decoding (by recovery and reads). Pure functions, no I/O.
//!
//! Layout, little-endian, every frame starting at a multiple of [`FRAME_ALIGNMENT`]:
//!
//! | offset | size | field                                                          |
//! |-------:|-----:|----------------------------------------------------------------|
//! | 0      | 4    | magic `KLG1`                                                   |
//! | 4      | 4    | CRC32C of bytes `0..4` then `8..frame_size` (all but itself)   |
//! | 8      | 4    | payload length                                                 |
//! | 12     | 4    | format version, 0                                              |
//! | 16     | 8    | Raft term                                                      |
//! | 24     | 8    | Raft index                                                     |
//! | 32     | n    | payload                                                        |
//! | 32 + n | 0..7 | zero padding up to the next multiple of 8 (covered by the CRC) |
//! | end - 8 | 8   | trailer `KLGE` + four 0xFF bytes (covered by the CRC)           |
//!
//! The trailer keeps the last 512-byte sector of every frame from being all zeros, so that
//! recovery's "a sector that never landed is zero" test cannot mistake a frame ending in zero
//! payload bytes, with a flipped bit elsewhere, for a torn write and cut an acknowledged entry.
//!
//! Decoding never trusts a length before checking it against [`ENTRY_PAYLOAD_SIZE_MAX`] and
//! the bytes actually present, and never returns a payload whose checksum did not match.

/// Marks the start of a frame.
pub const FRAME_MAGIC: [u8; 4] = *b"KLG1";
pub const FRAME_VERSION: u32 = 0;
pub const FRAME_HEADER_SIZE: usize = 32;
/// The last bytes of every frame: never zero.
pub const FRAME_TRAILER: [u8; 8] = *b"KLGE\xff\xff\xff\xff";
/// Frames start at multiples of this, so a scan for "any valid frame after" is bounded.
pub const FRAME_ALIGNMENT: usize = 8;
/// The largest payload one entry may carry (a full 8189-record request is ~1 MiB).
pub const ENTRY_PAYLOAD_SIZE_MAX: usize = 15 * 1024 * 1024;
/// The largest frame: header, largest payload, padding.
pub const FRAME_SIZE_MAX: usize = frame_size(ENTRY_PAYLOAD_SIZE_MAX);

const _: () = assert!(FRAME_HEADER_SIZE % FRAME_ALIGNMENT == 0);
const _: () = assert!(ENTRY_PAYLOAD_SIZE_MAX <= u32::MAX as usize);
const _: () = assert!(FRAME_SIZE_MAX % FRAME_ALIGNMENT == 0);

/// The size on disk of a frame carrying `payload_size` bytes.
pub const fn frame_size(payload_size: usize) -> usize {
    let unpadded = FRAME_HEADER_SIZE + payload_size;
    unpadded.div_ceil(FRAME_ALIGNMENT) * FRAME_ALIGNMENT + FRAME_TRAILER.len()
}

/// The decoded header of a frame whose checksum matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub term: u64,
    pub index: u64,
    pub payload_size: u32,
}

impl FrameHeader {
    pub fn frame_size(&self) -> usize {
        frame_size(self.payload_size as usize)
    }
}

/// What the bytes at a frame position hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// A complete frame with a matching checksum.
    Valid(FrameHeader),
    /// The bytes end before the header, or before the length the header declares.
    Short,
    /// The header is not a frame header (magic, version or length out of range).
    BadHeader(&'static str),
    /// A complete, plausible frame whose checksum does not match.
    BadChecksum { frame_size: usize },
}

/// Appends the frame for one entry to `out`.
pub fn encode(out: &mut Vec<u8>, term: u64, index: u64, payload: &[u8]) {
    assert!(payload.len() <= ENTRY_PAYLOAD_SIZE_MAX);
    let start = out.len();
    let size = frame_size(payload.len());
    out.extend_from_slice(&FRAME_MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&FRAME_VERSION.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(start + size - FRAME_TRAILER.len(), 0);
    out.extend_from_slice(&FRAME_TRAILER);
    let crc = checksum(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(
        check(&out[start..]),
        FrameCheck::Valid(header(&out[start..]))
    );
}

/// Checks the frame that starts at `bytes[0]`; `bytes` runs to the end of what is available.
pub fn check(bytes: &[u8]) -> FrameCheck {
    if bytes.len() < FRAME_HEADER_SIZE {
        return FrameCheck::Short;
    }
    let Some(payload_size) = declared_payload_size(bytes) else {
        return FrameCheck::BadHeader(header_fault(bytes));
    };
    let size = frame_size(payload_size);
    if bytes.len() < size {
        return FrameCheck::Short;
    }
    if read_u32(bytes, 4) != checksum(&bytes[..size]) {
        return FrameCheck::BadChecksum { frame_size: size };
    }
    FrameCheck::Valid(header(bytes))
}

/// The payload size a plausible header (magic, version, length in range) declares, if the
/// bytes start with one; says nothing about the checksum.
pub fn declared_payload_size(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < FRAME_HEADER_SIZE || bytes[0..4] != FRAME_MAGIC {
        return None;
    }
    let payload_size = read_u32(bytes, 8) as usize;
    let plausible = read_u32(bytes, 12) == FRAME_VERSION && payload_size <= ENTRY_PAYLOAD_SIZE_MAX;
    plausible.then_some(payload_size)
}

/// The payload of a frame that [`check`] found valid.
pub fn payload<'a>(bytes: &'a [u8], header: &FrameHeader) -> &'a [u8] {
    &bytes[FRAME_HEADER_SIZE..FRAME_HEADER_SIZE + header.payload_size as usize]
}

/// What is wrong with a header that `declared_payload_size` rejected.
fn header_fault(bytes: &[u8]) -> &'static str {
    if bytes[0..4] != FRAME_MAGIC {
        "bad frame magic"
    } else if read_u32(bytes, 12) != FRAME_VERSION {
        "unknown frame version"
    } else {
        "frame payload length out of range"
    }
}

/// The header fields; only call on at least `FRAME_HEADER_SIZE` bytes.
fn header(bytes: &[u8]) -> FrameHeader {
    FrameHeader {
        term: read_u64(bytes, 16),
        index: read_u64(bytes, 24),
        payload_size: read_u32(bytes, 8),
    }
}

/// CRC32C of a whole frame except its checksum field.
fn checksum(frame: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&frame[0..4]), &frame[8..])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, 7, 42, payload);
        out
    }

    #[test]
    fn round_trip_and_padding() {
        for size in [0, 1, 7, 8, 9, 100] {
            let expected: Vec<u8> = (0..size).map(|i| i as u8 ^ 0x5a).collect();
            let bytes = encoded(&expected);
            assert_eq!(bytes.len(), frame_size(size));
            assert_eq!(bytes.len() % FRAME_ALIGNMENT, 0);
            let FrameCheck::Valid(header) = check(&bytes) else {
                panic!("not valid")
            };
            assert_eq!((header.term, header.index), (7, 42));
            assert_eq!(payload(&bytes, &header), &expected[..]);
        }
    }

    #[test]
    fn every_prefix_is_short_and_every_flip_is_caught() {
        let bytes = encoded(b"hello, frame");
        for cut in 0..bytes.len() {
            assert_eq!(check(&bytes[..cut]), FrameCheck::Short, "cut {cut}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(
                !matches!(check(&damaged), FrameCheck::Valid(_)),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn lengths_are_checked_before_use() {
        let mut bytes = encoded(b"x");
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(check(&bytes), FrameCheck::BadHeader(_)));
        assert!(matches!(check(&[0; 64]), FrameCheck::BadHeader(_)));
    }
}
