//! The checks TigerBeetle 0.17's client makes on what a server sends it, restated: framing
//! (`message_buffer.zig`), cluster (`client.zig`'s `on_messages`), `Header.invalid` with
//! `Reply.invalid_header`, `PongClient.invalid_header` and `Eviction.invalid_header`
//! (`vsr/message_header.zig`), the assertions of `Client.on_reply` and `on_pong_client`
//! (`vsr/client.zig`), and the reply decoding of `tb_client/context.zig`.
//!
//! Invariants: a frame that passes [`check_server_frame`] and, for a reply, [`check_reply_to`]
//! is one the real client accepts without dropping it, ignoring it or crashing. The tests run
//! every builder of `reply.rs` through these checks; Kassa's own client will run them on what
//! it receives. Never panics on any bytes.

use thiserror::Error;
use zerocopy::FromBytes;

use crate::client_headers::{
    EvictionHeader, EvictionReason, PongClientHeader, ReplyHeader, RequestHeader,
};
use crate::header::{Command, Release};
use crate::multi_batch::{MultiBatch, MultiBatchError};
use crate::operation::Operation;
use crate::register::{RegisterResult, REGISTER_RESULT_SIZE};
use crate::validate::{
    all_zero, check_frame_common, check_no_body, not_zero_if, zero_if, FrameError, HeaderField,
};
use crate::{BATCH_SIZE_LIMIT_MIN, MESSAGE_BODY_SIZE_MAX, MESSAGE_HEADER_SIZE, REPLICAS_MAX};

/// A frame a server may send, its header validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Reply(ReplyHeader),
    PongClient(PongClientHeader),
    Eviction(EvictionHeader),
}

/// Validates a frame received from a server of cluster `cluster`, as the client does.
pub fn check_server_frame(
    header_bytes: &[u8],
    body: &[u8],
    cluster: u128,
) -> Result<ServerFrame, FrameError> {
    let header = check_frame_common(header_bytes, body, cluster)?;
    if let Some(reply) = ReplyHeader::from_header(&header) {
        check_reply(&reply)?;
        return Ok(ServerFrame::Reply(reply));
    }
    if let Some(pong) = PongClientHeader::from_header(&header) {
        check_pong(&pong)?;
        return Ok(ServerFrame::PongClient(pong));
    }
    if let Some(eviction) = EvictionHeader::from_header(&header) {
        check_eviction(&eviction)?;
        return Ok(ServerFrame::Eviction(eviction));
    }
    let command = header.command().unwrap_or(Command::Reserved);
    Err(FrameError::Misdirected { command })
}

/// `Reply.invalid_header`.
fn check_reply(reply: &ReplyHeader) -> Result<(), FrameError> {
    zero_if(reply.frame.release.0 == 0, HeaderField::Release)?;
    zero_if(reply.client == 0, HeaderField::Client)?;
    not_zero_if(
        reply.request_checksum_padding != 0,
        HeaderField::RequestChecksumPadding,
    )?;
    not_zero_if(reply.context_padding != 0, HeaderField::ContextPadding)?;
    if reply.op != reply.commit {
        return Err(FrameError::OpNotCommit {
            op: reply.op,
            commit: reply.commit,
        });
    }
    zero_if(reply.timestamp == 0, HeaderField::Timestamp)?;
    zero_if(reply.commit == 0, HeaderField::Commit)?;
    if reply.operation == Operation::Register.as_u8() {
        if reply.frame.size as usize != MESSAGE_HEADER_SIZE + REGISTER_RESULT_SIZE {
            return Err(FrameError::RegisterReplySize {
                size: reply.frame.size,
            });
        }
        not_zero_if(reply.request != 0, HeaderField::Request)?;
    } else {
        zero_if(reply.request == 0, HeaderField::Request)?;
    }
    not_zero_if(!all_zero(&reply.reserved), HeaderField::Reserved)
}

/// `PongClient.invalid_header`, and `on_pong_client`'s use of `replica` as an array index.
fn check_pong(pong: &PongClientHeader) -> Result<(), FrameError> {
    check_no_body(&pong.frame)?;
    zero_if(pong.frame.release.0 == 0, HeaderField::Release)?;
    not_zero_if(!all_zero(&pong.reserved), HeaderField::Reserved)?;
    if usize::from(pong.frame.replica) >= REPLICAS_MAX {
        return Err(FrameError::ReplicaOutOfRange {
            replica: pong.frame.replica,
        });
    }
    Ok(())
}

/// `Eviction.invalid_header`.
fn check_eviction(eviction: &EvictionHeader) -> Result<(), FrameError> {
    check_no_body(&eviction.frame)?;
    zero_if(eviction.frame.release.0 == 0, HeaderField::Release)?;
    zero_if(eviction.client == 0, HeaderField::Client)?;
    not_zero_if(!all_zero(&eviction.reserved), HeaderField::Reserved)?;
    if EvictionReason::from_u8(eviction.reason).is_none() {
        return Err(FrameError::EvictionReason {
            reason: eviction.reason,
        });
    }
    Ok(())
}

/// A reply that passed [`check_server_frame`] but that the client would refuse for the request
/// it has in flight (most of these make TigerBeetle's client panic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ReplyMismatch {
    #[error("reply for client {reply}, request from client {request}")]
    Client { request: u128, reply: u128 },
    #[error("reply to request {reply}, request {request} in flight")]
    Request { request: u32, reply: u32 },
    #[error("reply release {reply}, request release {request}")]
    Release { request: Release, reply: Release },
    #[error("reply names request checksum {reply:#034x}, the request's is {request:#034x}")]
    RequestChecksum { request: u128, reply: u128 },
    #[error("reply operation {reply}, request operation {request}")]
    Operation { request: u8, reply: u8 },
    #[error("reply body: {0}")]
    Body(MultiBatchError),
    #[error("reply has {reply} batches, the request {request}")]
    BatchCount { request: usize, reply: usize },
    #[error("reply batch {batch_index} has {results} results, at most {expected} were asked for")]
    TooManyResults {
        batch_index: usize,
        results: usize,
        expected: usize,
    },
    #[error("register result announces batch_size_limit {batch_size_limit}")]
    RegisterLimit { batch_size_limit: u32 },
}

/// The client's checks of `reply` (header and `body`) against the `request` (header and
/// `request_body`) it has in flight.
pub fn check_reply_to(
    request: &RequestHeader,
    request_body: &[u8],
    reply: &ReplyHeader,
    body: &[u8],
) -> Result<(), ReplyMismatch> {
    check_reply_echo(request, reply)?;
    match Operation::from_u8(request.operation) {
        Ok(Operation::Register) => check_register_result(body),
        Ok(operation) => check_reply_batches(operation, request_body, body),
        // The client sends only operations it knows; Kassa serves a subset of them.
        Err(_) => Ok(()),
    }
}

fn check_reply_echo(request: &RequestHeader, reply: &ReplyHeader) -> Result<(), ReplyMismatch> {
    if reply.client != request.client {
        return Err(ReplyMismatch::Client {
            request: request.client,
            reply: reply.client,
        });
    }
    if reply.request != request.request {
        return Err(ReplyMismatch::Request {
            request: request.request,
            reply: reply.request,
        });
    }
    if reply.frame.release != request.frame.release {
        return Err(ReplyMismatch::Release {
            request: request.frame.release,
            reply: reply.frame.release,
        });
    }
    if reply.request_checksum != request.frame.checksum {
        return Err(ReplyMismatch::RequestChecksum {
            request: request.frame.checksum,
            reply: reply.request_checksum,
        });
    }
    if reply.operation != request.operation {
        return Err(ReplyMismatch::Operation {
            request: request.operation,
            reply: reply.operation,
        });
    }
    Ok(())
}

/// `on_reply` for `register`: a limit the client can compute its batch limits from.
fn check_register_result(body: &[u8]) -> Result<(), ReplyMismatch> {
    let batch_size_limit =
        RegisterResult::read_from_bytes(body).map_or(0, |result| result.batch_size_limit);
    let limit = batch_size_limit as usize;
    if !(BATCH_SIZE_LIMIT_MIN..=MESSAGE_BODY_SIZE_MAX).contains(&limit) {
        return Err(ReplyMismatch::RegisterLimit { batch_size_limit });
    }
    Ok(())
}

/// `client_result_callback`: the reply decodes into as many batches as the request had, each
/// with no more results than its request batch asked for.
fn check_reply_batches(
    operation: Operation,
    request_body: &[u8],
    body: &[u8],
) -> Result<(), ReplyMismatch> {
    let unlimited = usize::MAX;
    let requests = MultiBatch::decode(request_body, operation.event_size(), unlimited)
        .map_err(ReplyMismatch::Body)?;
    let replies = MultiBatch::decode(body, operation.result_size(), unlimited)
        .map_err(ReplyMismatch::Body)?;
    if requests.batch_count() != replies.batch_count() {
        return Err(ReplyMismatch::BatchCount {
            request: requests.batch_count(),
            reply: replies.batch_count(),
        });
    }
    let result_max = operation.result_max(MESSAGE_BODY_SIZE_MAX);
    let pairs = requests.batches().zip(replies.batches()).enumerate();
    for (batch_index, (request_batch, reply_batch)) in pairs {
        let expected = operation
            .result_count_expected(request_batch)
            .min(result_max);
        let results = reply_batch.len() / operation.result_size();
        if results > expected {
            return Err(ReplyMismatch::TooManyResults {
                batch_index,
                results,
                expected,
            });
        }
    }
    Ok(())
}
