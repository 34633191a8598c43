//! Header layouts: each field written with a distinct value lands at the byte offset
//! TigerBeetle's `vsr/message_header.zig` (0.17.8) gives it, and nowhere else.

use kassa_wire::{
    Command, EvictionHeader, Frame, Header, HeaderLayout, PingClientHeader, PongClientHeader,
    Release, ReplyHeader, RequestHeader,
};
use zerocopy::{FromZeros, IntoBytes};

fn le(bytes: &[u8], offset: usize, width: usize) -> u128 {
    let mut buffer = [0u8; 16];
    buffer[..width].copy_from_slice(&bytes[offset..offset + width]);
    u128::from_le_bytes(buffer)
}

/// Checks `expected` fields (offset, width, value) and that every other byte is zero.
fn assert_layout(bytes: &[u8], expected: &[(usize, usize, u128)]) {
    assert_eq!(bytes.len(), 256);
    let mut covered = [false; 256];
    for (offset, width, value) in expected {
        assert_eq!(le(bytes, *offset, *width), *value, "field at {offset}");
        covered[*offset..offset + width].fill(true);
    }
    for (index, byte) in bytes.iter().enumerate() {
        if !covered[index] {
            assert_eq!(*byte, 0, "byte {index} should be zero");
        }
    }
}

fn frame(command: Command) -> Frame {
    let mut frame = Frame::new(command, 0x0101_0202_0303_0404_0505_0606_0707_0808);
    frame.checksum = 0x1111_1111_1111_1111_1111_1111_1111_1111;
    frame.checksum_body = 0x2222_2222_2222_2222_2222_2222_2222_2222;
    frame.size = 0x0000_0444;
    frame.view = 0x5555_5555;
    frame.release = Release::new(0, 17, 8);
    frame.replica = 3;
    frame
}

fn frame_fields(command: Command) -> Vec<(usize, usize, u128)> {
    vec![
        (0, 16, 0x1111_1111_1111_1111_1111_1111_1111_1111),
        (32, 16, 0x2222_2222_2222_2222_2222_2222_2222_2222),
        (80, 16, 0x0101_0202_0303_0404_0505_0606_0707_0808),
        (96, 4, 0x444),
        (104, 4, 0x5555_5555),
        (108, 4, 0x0000_1108),
        (112, 2, 0),
        (114, 1, u128::from(command.as_u8())),
        (115, 1, 3),
    ]
}

#[test]
fn frame_fields_sit_at_their_offsets() {
    let mut header = Header::new_zeroed();
    header.frame = frame(Command::Request);
    header.frame.checksum_padding = 0xAA;
    header.frame.checksum_body_padding = 0xBB;
    header.frame.nonce_reserved = 0xCC;
    header.frame.epoch = 0xDD;
    header.frame.protocol = 0xEE;
    header.frame.reserved_frame = [0xFF; 12];
    let bytes = header.as_bytes();
    assert_eq!(le(bytes, 16, 16), 0xAA);
    assert_eq!(le(bytes, 48, 16), 0xBB);
    assert_eq!(le(bytes, 64, 16), 0xCC);
    assert_eq!(le(bytes, 100, 4), 0xDD);
    assert_eq!(le(bytes, 112, 2), 0xEE);
    assert!(bytes[116..128].iter().all(|b| *b == 0xFF));
    assert_eq!(bytes[114], 5);
}

#[test]
fn request_layout() {
    let mut request = RequestHeader::new_zeroed();
    request.frame = frame(Command::Request);
    request.parent = 0x3333_3333_3333_3333_3333_3333_3333_3333;
    request.client = 0x4444_4444_4444_4444_4444_4444_4444_4444;
    request.session = 0x6666_6666_6666_6666;
    request.timestamp = 0x7777_7777_7777_7777;
    request.request = 0x8888_8888;
    request.operation = 147;
    request.previous_request_latency = 0x9999_9999;
    let mut expected = frame_fields(Command::Request);
    expected.extend([
        (128, 16, request.parent),
        (160, 16, request.client),
        (176, 8, 0x6666_6666_6666_6666),
        (184, 8, 0x7777_7777_7777_7777),
        (192, 4, 0x8888_8888),
        (196, 1, 147),
        (200, 4, 0x9999_9999),
    ]);
    assert_layout(request.as_bytes(), &expected);
}

#[test]
fn reply_layout() {
    let mut reply = ReplyHeader::new_zeroed();
    reply.frame = frame(Command::Reply);
    reply.request_checksum = 0x3333_3333_3333_3333_3333_3333_3333_3333;
    reply.context = 0x4444_4444_4444_4444_4444_4444_4444_4444;
    reply.client = 0x6666_6666_6666_6666_6666_6666_6666_6666;
    reply.op = 0x7777_7777_7777_7777;
    reply.commit = 0x8888_8888_8888_8888;
    reply.timestamp = 0x9999_9999_9999_9999;
    reply.request = 0xABAB_ABAB;
    reply.operation = 146;
    let mut expected = frame_fields(Command::Reply);
    expected.extend([
        (128, 16, reply.request_checksum),
        (160, 16, reply.context),
        (192, 16, reply.client),
        (208, 8, 0x7777_7777_7777_7777),
        (216, 8, 0x8888_8888_8888_8888),
        (224, 8, 0x9999_9999_9999_9999),
        (232, 4, 0xABAB_ABAB),
        (236, 1, 146),
    ]);
    assert_layout(reply.as_bytes(), &expected);
}

#[test]
fn ping_pong_eviction_layouts() {
    let mut ping = PingClientHeader::new_zeroed();
    ping.frame = frame(Command::PingClient);
    ping.client = 0x4444_4444_4444_4444_4444_4444_4444_4444;
    ping.ping_timestamp_monotonic = 0x6666_6666_6666_6666;
    ping.session = 0x7777_7777_7777_7777;
    let mut expected = frame_fields(Command::PingClient);
    expected.extend([
        (128, 16, ping.client),
        (144, 8, 0x6666_6666_6666_6666),
        (152, 8, 0x7777_7777_7777_7777),
    ]);
    assert_layout(ping.as_bytes(), &expected);

    let mut pong = PongClientHeader::new_zeroed();
    pong.frame = frame(Command::PongClient);
    pong.ping_timestamp_monotonic = 0x6666_6666_6666_6666;
    let mut expected = frame_fields(Command::PongClient);
    expected.push((128, 8, 0x6666_6666_6666_6666));
    assert_layout(pong.as_bytes(), &expected);

    let mut eviction = EvictionHeader::new_zeroed();
    eviction.frame = frame(Command::Eviction);
    eviction.client = 0x4444_4444_4444_4444_4444_4444_4444_4444;
    eviction.reason = 6;
    let mut expected = frame_fields(Command::Eviction);
    expected.extend([(128, 16, eviction.client), (255, 1, 6)]);
    assert_layout(eviction.as_bytes(), &expected);
}

#[test]
fn command_numbers_match_tigerbeetle() {
    assert_eq!(Command::PingClient.as_u8(), 3);
    assert_eq!(Command::PongClient.as_u8(), 4);
    assert_eq!(Command::Request.as_u8(), 5);
    assert_eq!(Command::Reply.as_u8(), 8);
    assert_eq!(Command::Eviction.as_u8(), 18);
}

#[test]
fn checksum_covers_bytes_16_to_256_and_not_the_checksum() {
    let mut header = Header::new_zeroed();
    header.frame = Frame::new(Command::Request, 1);
    header.seal(&[1, 2, 3]);
    let sealed = header;
    // Changing the checksum field itself does not change what it should be.
    header.frame.checksum = 0;
    assert_eq!(header.calculate_checksum(), sealed.frame.checksum);
    // Every byte from 16 on is covered.
    for index in 16..256 {
        let mut bytes = sealed.as_bytes().to_vec();
        bytes[index] ^= 0x40;
        let changed = Header::read(&bytes).unwrap();
        assert!(!changed.valid_checksum(), "byte {index} not covered");
    }
    // `checksum_body` is covered: set it first, then `checksum`.
    assert_eq!(sealed.frame.checksum_body, kassa_wire::checksum(&[1, 2, 3]));
    assert_eq!(
        sealed.frame.checksum,
        kassa_wire::checksum(&sealed.as_bytes()[16..])
    );
}
