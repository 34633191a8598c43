//! Validation of a frame received from a client: the checks TigerBeetle's replica makes before
//! it looks at a message (`message_buffer.zig`: header checksum, known command, size bounds,
//! body checksum; `replica.zig`'s `on_messages`: cluster; `Header.invalid` and
//! `Request.invalid_header`/`PingClient.invalid_header` in `vsr/message_header.zig`; the
//! non-zero `timestamp` check of `Replica.on_request`).
//!
//! Invariants: [`validate_client_frame`] never panics on any bytes; it accepts exactly the frames
//! TigerBeetle 0.17's replica accepts from a client (a `request` or a `ping_client`), except that
//! a request's operation below 128 must be `register`, the only one clients send. Each
//! [`FrameError`] says which field is wrong and which [`Answer`] TigerBeetle gives: framing and
//! cluster errors close the connection, field errors drop the message. The operation number
//! and the body's contents are checked afterwards (`request_body.rs`), because their failures
//! are answered with an eviction instead. Called by the node's connection code for every frame.

use thiserror::Error;

use crate::checksum::{checksum, CHECKSUM_EMPTY};
use crate::client_headers::{PingClientHeader, RequestHeader};
use crate::header::{Command, Frame, Header, HeaderLayout, HEADER_SIZE, PROTOCOL_VERSION};
use crate::operation::{Operation, OPERATIONS_RESERVED};
use crate::register::{REGISTER_REQUEST_SIZE, REGISTER_RESULT_SIZE};
use crate::{MESSAGE_SIZE_MAX, REPLICAS_MAX};

/// A frame a client may send, its header validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Request(RequestHeader),
    PingClient(PingClientHeader),
}

/// A header field, as TigerBeetle names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderField {
    ChecksumPadding,
    ChecksumBodyPadding,
    NonceReserved,
    Epoch,
    View,
    Release,
    Replica,
    ReservedFrame,
    Parent,
    ParentPadding,
    Client,
    Session,
    Timestamp,
    Request,
    PreviousRequestLatencyPadding,
    Reserved,
    RequestChecksumPadding,
    ContextPadding,
    Commit,
}

impl std::fmt::Display for HeaderField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            HeaderField::ChecksumPadding => "checksum_padding",
            HeaderField::ChecksumBodyPadding => "checksum_body_padding",
            HeaderField::NonceReserved => "nonce_reserved",
            HeaderField::Epoch => "epoch",
            HeaderField::View => "view",
            HeaderField::Release => "release",
            HeaderField::Replica => "replica",
            HeaderField::ReservedFrame => "reserved_frame",
            HeaderField::Parent => "parent",
            HeaderField::ParentPadding => "parent_padding",
            HeaderField::Client => "client",
            HeaderField::Session => "session",
            HeaderField::Timestamp => "timestamp",
            HeaderField::Request => "request",
            HeaderField::PreviousRequestLatencyPadding => "previous_request_latency_padding",
            HeaderField::Reserved => "reserved",
            HeaderField::RequestChecksumPadding => "request_checksum_padding",
            HeaderField::ContextPadding => "context_padding",
            HeaderField::Commit => "commit",
        };
        f.write_str(name)
    }
}

/// What TigerBeetle does with a frame that fails a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The byte stream cannot be trusted any more: close the connection.
    CloseConnection,
    /// Log it and drop the message; the connection stays.
    Ignore,
}

/// Why a frame from a client is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("header of {size} bytes, not {HEADER_SIZE}")]
    HeaderSize { size: usize },
    #[error("header checksum {carried:#034x}, computed {computed:#034x}")]
    HeaderChecksum { carried: u128, computed: u128 },
    #[error("unknown command {command}")]
    UnknownCommand { command: u8 },
    #[error("size {size} outside {HEADER_SIZE}..={MESSAGE_SIZE_MAX}")]
    SizeOutOfRange { size: u32 },
    #[error("size {size} announces a body of {}, but {body_size} bytes came",
        (*size as usize).saturating_sub(HEADER_SIZE))]
    SizeMismatch { size: u32, body_size: usize },
    #[error("body checksum {carried:#034x}, computed {computed:#034x}")]
    BodyChecksum { carried: u128, computed: u128 },
    #[error("cluster {carried}, this is cluster {expected}")]
    WrongCluster { carried: u128, expected: u128 },
    #[error("protocol {protocol}, not {PROTOCOL_VERSION}")]
    Protocol { protocol: u16 },
    #[error("{field} must be zero")]
    NotZero { field: HeaderField },
    #[error("{field} must not be zero")]
    Zero { field: HeaderField },
    #[error("command {command:?} is not one a client sends")]
    Misdirected { command: Command },
    #[error("operation {operation} is reserved for replicas")]
    ReplicaOperation { operation: u8 },
    #[error("register request of size {size}, not {HEADER_SIZE} + {REGISTER_REQUEST_SIZE}")]
    RegisterSize { size: u32 },
    #[error("{command:?} of size {size} carries a body")]
    BodyNotEmpty { command: Command, size: u32 },
    #[error("{command:?} has checksum_body {carried:#034x}, not the empty body's")]
    BodyChecksumNotEmpty { command: Command, carried: u128 },
    #[error("reply op {op} differs from commit {commit}")]
    OpNotCommit { op: u64, commit: u64 },
    #[error("register reply of size {size}, not {HEADER_SIZE} + {REGISTER_RESULT_SIZE}")]
    RegisterReplySize { size: u32 },
    #[error("eviction reason {reason} is not one of 1..=8")]
    EvictionReason { reason: u8 },
    #[error("replica {replica} is not below {REPLICAS_MAX}")]
    ReplicaOutOfRange { replica: u8 },
}

impl FrameError {
    /// What TigerBeetle does with such a frame.
    pub fn answer(&self) -> Answer {
        match self {
            FrameError::HeaderSize { .. }
            | FrameError::HeaderChecksum { .. }
            | FrameError::UnknownCommand { .. }
            | FrameError::SizeOutOfRange { .. }
            | FrameError::SizeMismatch { .. }
            | FrameError::BodyChecksum { .. }
            | FrameError::WrongCluster { .. } => Answer::CloseConnection,
            _ => Answer::Ignore,
        }
    }
}

/// Validates a frame from a client of cluster `cluster`: `header_bytes` (exactly 256) and the
/// `body` that followed them on the stream. Never panics.
pub fn validate_client_frame(
    header_bytes: &[u8],
    body: &[u8],
    cluster: u128,
) -> Result<ClientFrame, FrameError> {
    let header = check_frame_common(header_bytes, body, cluster)?;
    if let Some(request) = RequestHeader::from_header(&header) {
        check_request(&request)?;
        return Ok(ClientFrame::Request(request));
    }
    if let Some(ping) = PingClientHeader::from_header(&header) {
        check_ping(&ping)?;
        return Ok(ClientFrame::PingClient(ping));
    }
    // check_framing decoded the command.
    let command = header.command().unwrap_or(Command::Reserved);
    Err(FrameError::Misdirected { command })
}

/// The checks every frame passes, from a client or a server: framing (sizes, checksums,
/// command), the cluster, and the common header fields.
pub(crate) fn check_frame_common(
    header_bytes: &[u8],
    body: &[u8],
    cluster: u128,
) -> Result<Header, FrameError> {
    let header = check_framing(header_bytes, body)?;
    if header.frame.cluster != cluster {
        return Err(FrameError::WrongCluster {
            carried: header.frame.cluster,
            expected: cluster,
        });
    }
    check_frame_fields(&header)?;
    Ok(header)
}

/// The header's framing checks, before its body is read: checksum, command and size bounds,
/// in `MessageBuffer`'s order, so that a garbage header never sizes a buffer. A server reads
/// `header.frame.size - HEADER_SIZE` body bytes after this passes.
pub fn check_header_framing(header_bytes: &[u8]) -> Result<Header, FrameError> {
    let header = Header::read(header_bytes).ok_or(FrameError::HeaderSize {
        size: header_bytes.len(),
    })?;
    let computed = header.calculate_checksum();
    if header.frame.checksum != computed {
        return Err(FrameError::HeaderChecksum {
            carried: header.frame.checksum,
            computed,
        });
    }
    if header.command().is_none() {
        return Err(FrameError::UnknownCommand {
            command: header.frame.command,
        });
    }
    let size = header.frame.size;
    if !(HEADER_SIZE..=MESSAGE_SIZE_MAX).contains(&(size as usize)) {
        return Err(FrameError::SizeOutOfRange { size });
    }
    Ok(header)
}

/// The checks that make the byte stream trustworthy, in `MessageBuffer`'s order.
pub(crate) fn check_framing(header_bytes: &[u8], body: &[u8]) -> Result<Header, FrameError> {
    let header = check_header_framing(header_bytes)?;
    let size = header.frame.size;
    if size as usize != HEADER_SIZE + body.len() {
        return Err(FrameError::SizeMismatch {
            size,
            body_size: body.len(),
        });
    }
    let computed = checksum(body);
    if header.frame.checksum_body != computed {
        return Err(FrameError::BodyChecksum {
            carried: header.frame.checksum_body,
            computed,
        });
    }
    Ok(header)
}

/// `Header.invalid`'s checks of the frame part (the size bounds were checked with the framing).
pub(crate) fn check_frame_fields(header: &Header) -> Result<(), FrameError> {
    let frame = &header.frame;
    not_zero_if(frame.checksum_padding != 0, HeaderField::ChecksumPadding)?;
    not_zero_if(
        frame.checksum_body_padding != 0,
        HeaderField::ChecksumBodyPadding,
    )?;
    not_zero_if(frame.nonce_reserved != 0, HeaderField::NonceReserved)?;
    not_zero_if(frame.epoch != 0, HeaderField::Epoch)?;
    not_zero_if(!all_zero(&frame.reserved_frame), HeaderField::ReservedFrame)?;
    if frame.protocol != PROTOCOL_VERSION {
        return Err(FrameError::Protocol {
            protocol: frame.protocol,
        });
    }
    Ok(())
}

/// `Request.invalid_header`, plus `on_request`'s `timestamp == 0` (Kassa has no AOF recovery).
fn check_request(request: &RequestHeader) -> Result<(), FrameError> {
    zero_if(request.frame.release.0 == 0, HeaderField::Release)?;
    not_zero_if(request.parent_padding != 0, HeaderField::ParentPadding)?;
    not_zero_if(request.frame.replica != 0, HeaderField::Replica)?;
    zero_if(request.client == 0, HeaderField::Client)?;
    if request.operation == Operation::Register.as_u8() {
        not_zero_if(request.parent != 0, HeaderField::Parent)?;
        not_zero_if(request.session != 0, HeaderField::Session)?;
        not_zero_if(request.request != 0, HeaderField::Request)?;
        // A body-less register (clients up to 0.15.3) passes here, to be answered with an
        // eviction by the body check rather than dropped.
        let size = request.frame.size as usize;
        if size != HEADER_SIZE && size != HEADER_SIZE + REGISTER_REQUEST_SIZE {
            return Err(FrameError::RegisterSize {
                size: request.frame.size,
            });
        }
    } else if request.operation < OPERATIONS_RESERVED {
        return Err(FrameError::ReplicaOperation {
            operation: request.operation,
        });
    } else {
        zero_if(request.session == 0, HeaderField::Session)?;
        zero_if(request.request == 0, HeaderField::Request)?;
    }
    not_zero_if(request.timestamp != 0, HeaderField::Timestamp)?;
    not_zero_if(
        !all_zero(&request.previous_request_latency_padding),
        HeaderField::PreviousRequestLatencyPadding,
    )?;
    not_zero_if(!all_zero(&request.reserved), HeaderField::Reserved)
}

/// `PingClient.invalid_header`.
fn check_ping(ping: &PingClientHeader) -> Result<(), FrameError> {
    check_no_body(&ping.frame)?;
    zero_if(ping.frame.release.0 == 0, HeaderField::Release)?;
    not_zero_if(ping.frame.replica != 0, HeaderField::Replica)?;
    not_zero_if(ping.frame.view != 0, HeaderField::View)?;
    zero_if(ping.client == 0, HeaderField::Client)?;
    not_zero_if(!all_zero(&ping.reserved), HeaderField::Reserved)
}

/// A ping, pong or eviction has no body, and says so twice: in `size` and in `checksum_body`.
pub(crate) fn check_no_body(frame: &Frame) -> Result<(), FrameError> {
    let command = Command::from_u8(frame.command).unwrap_or(Command::Reserved);
    if frame.size as usize != HEADER_SIZE {
        return Err(FrameError::BodyNotEmpty {
            command,
            size: frame.size,
        });
    }
    if frame.checksum_body != CHECKSUM_EMPTY {
        return Err(FrameError::BodyChecksumNotEmpty {
            command,
            carried: frame.checksum_body,
        });
    }
    Ok(())
}

pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| *byte == 0)
}

/// `Err(NotZero)` when `bad`: the field should have been zero.
pub(crate) fn not_zero_if(bad: bool, field: HeaderField) -> Result<(), FrameError> {
    if bad {
        return Err(FrameError::NotZero { field });
    }
    Ok(())
}

/// `Err(Zero)` when `bad`: the field should not have been zero.
pub(crate) fn zero_if(bad: bool, field: HeaderField) -> Result<(), FrameError> {
    if bad {
        return Err(FrameError::Zero { field });
    }
    Ok(())
}
