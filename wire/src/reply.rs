//! Builders for the headers a server sends a client: `reply`, `pong_client` and `eviction`,
//! sealed (both checksums set) and satisfying every check TigerBeetle's client makes
//! (`vsr/client.zig`'s `on_reply`, `on_pong_client`, `on_eviction`, `Header.invalid`; see
//! `client_checks.rs`, which restates those checks and which the tests run on every builder).
//!
//! Invariants: a reply echoes the request's cluster, release, client, request number, operation
//! and checksum; `op == commit > 0`; `timestamp > 0`; a register reply carries exactly a
//! `RegisterResult`; `context` is the header checksum computed once, with `context` zero (as
//! TigerBeetle's replica computes it), so that it stays stable when a cached reply is resent in
//! a newer view ([`reply_in_view`]). A pong's `replica` is below `REPLICAS_MAX` (the client
//! indexes an array with it); pongs and evictions have no body. Violations are bugs in the
//! caller and panic. Called by the node's reply path and its session table.

use zerocopy::FromZeros;

use crate::client_headers::{
    EvictionHeader, EvictionReason, PingClientHeader, PongClientHeader, ReplyHeader, RequestHeader,
};
use crate::header::{Command, Frame, HeaderLayout, Release};
use crate::operation::Operation;
use crate::register::REGISTER_RESULT_SIZE;
use crate::REPLICAS_MAX;

/// Who sends a pong or an eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sender {
    pub cluster: u128,
    /// This node's index in the client's address list, below `REPLICAS_MAX`.
    pub replica: u8,
    /// The view the client should learn (its `view % n` picks the node it sends to first).
    pub view: u32,
    /// The server's release; non-zero.
    pub release: Release,
}

/// The server-chosen fields of a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyFields {
    pub view: u32,
    pub replica: u8,
    /// The commit number (= op) of the request; non-zero. For `register`, the new session.
    pub commit: u64,
    /// When the request was executed; non-zero.
    pub timestamp: u64,
}

/// The sealed header of the reply to `request` with `body` (a `RegisterResult` for `register`,
/// else a multi-batch body of results).
pub fn build_reply(request: &RequestHeader, fields: ReplyFields, body: &[u8]) -> ReplyHeader {
    assert!(request.valid_checksum(), "reply to an unsealed request");
    assert!(request.client != 0 && request.frame.release.0 != 0);
    assert!(fields.commit > 0 && fields.timestamp > 0);
    let operation = Operation::from_u8(request.operation);
    assert!(
        operation.is_ok(),
        "reply to operation {}",
        request.operation
    );
    if operation == Ok(Operation::Register) {
        assert_eq!(request.request, 0);
        assert_eq!(body.len(), REGISTER_RESULT_SIZE);
    } else {
        assert!(request.request > 0);
    }

    let mut reply = ReplyHeader::new_zeroed();
    reply.frame = Frame::new(Command::Reply, request.frame.cluster);
    reply.frame.view = fields.view;
    reply.frame.replica = fields.replica;
    reply.frame.release = request.frame.release;
    reply.request_checksum = request.frame.checksum;
    reply.client = request.client;
    reply.op = fields.commit;
    reply.commit = fields.commit;
    reply.timestamp = fields.timestamp;
    reply.request = request.request;
    reply.operation = request.operation;

    reply.seal(body);
    // The context is the checksum with `context` still zero; sealing again covers it.
    reply.context = reply.calculate_checksum();
    reply.reseal();
    reply
}

/// `reply` as sent again in a newer `view`: the same body, the same `context`, a new checksum.
pub fn reply_in_view(reply: &ReplyHeader, view: u32) -> ReplyHeader {
    assert!(reply.valid_checksum());
    assert!(view >= reply.frame.view);
    let mut resent = *reply;
    resent.frame.view = view;
    resent.reseal();
    resent
}

/// The sealed pong answering `ping`.
pub fn build_pong(sender: Sender, ping: &PingClientHeader) -> PongClientHeader {
    assert!(usize::from(sender.replica) < REPLICAS_MAX);
    assert!(sender.release.0 != 0);
    assert_eq!(sender.cluster, ping.frame.cluster);
    let mut pong = PongClientHeader::new_zeroed();
    pong.frame = Frame::new(Command::PongClient, sender.cluster);
    pong.frame.view = sender.view;
    pong.frame.replica = sender.replica;
    pong.frame.release = sender.release;
    pong.ping_timestamp_monotonic = ping.ping_timestamp_monotonic;
    pong.seal(&[]);
    pong
}

/// The sealed eviction of `client`'s session.
pub fn build_eviction(sender: Sender, client: u128, reason: EvictionReason) -> EvictionHeader {
    assert!(sender.release.0 != 0);
    assert!(client != 0);
    let mut eviction = EvictionHeader::new_zeroed();
    eviction.frame = Frame::new(Command::Eviction, sender.cluster);
    eviction.frame.view = sender.view;
    eviction.frame.replica = sender.replica;
    eviction.frame.release = sender.release;
    eviction.client = client;
    eviction.reason = reason as u8;
    eviction.seal(&[]);
    eviction
}
