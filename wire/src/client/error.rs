//! The client's errors: what a call returns when it cannot return results.
//!
//! Invariants: [`ClientError::Evicted`] and [`ClientError::Protocol`] are terminal: the client
//! keeps returning the same error from every later call, because its session is gone (evicted)
//! or its hash chain with the server can no longer be trusted (a reply TigerBeetle's client
//! would crash on). [`ClientError::Timeout`] is not terminal: the request stays in flight and
//! the next call resends it before its own (see `client.rs`). Every other variant is raised
//! before anything was sent.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::{EvictionReason, FrameError, Operation, ReplyMismatch};

/// Why a call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server ended the session; the client is unusable (as TigerBeetle's is).
    #[error("session evicted by the server: {reason}")]
    Evicted { reason: EvictionReason },
    /// No reply before the call's deadline. The request may or may not have been applied;
    /// it stays in flight and the next call on this client resends it (same bytes) first.
    #[error(
        "no reply within {} ms ({attempts} sends); last failure: {last_failure}",
        deadline.as_millis()
    )]
    Timeout {
        deadline: Duration,
        /// How many times the request was sent (at least once unless every connect failed).
        attempts: u32,
        last_failure: Failure,
    },
    /// A local I/O failure outside the connection (starting the blocking client's runtime,
    /// drawing a random client id).
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: io::Error,
    },
    /// The server broke the protocol in a way that leaves the session untrustworthy.
    #[error("protocol violation by the server: {0}")]
    Protocol(#[from] ProtocolError),
    /// A batch larger than the server accepts in one request; nothing was sent. Kassa's client
    /// does not split batches: a split would break linked chains and the batch's atomicity.
    #[error("{operation}: {events} events in one batch, the server accepts at most {events_max}")]
    BatchTooLarge {
        operation: Operation,
        events: usize,
        events_max: usize,
    },
    /// The configuration cannot work (no address, zero timeouts, a zero client id).
    #[error("invalid client configuration: {0}")]
    Config(&'static str),
}

/// Why one attempt to get a reply failed (the client then reconnects and resends).
#[derive(Debug, Error)]
pub enum Failure {
    #[error("connecting to {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("connection to {address}: {source}")]
    Connection {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("{address} closed the connection")]
    Closed { address: SocketAddr },
    /// A frame whose bytes cannot be trusted (checksum, size, cluster): TigerBeetle's client
    /// drops the connection on these, and so does this one.
    #[error("{address} sent a bad frame: {error}")]
    Frame {
        address: SocketAddr,
        error: FrameError,
    },
    #[error("no reply from {address} within {} ms", timeout.as_millis())]
    NoReply {
        address: SocketAddr,
        timeout: Duration,
    },
    #[error("no connection to {address} within the deadline")]
    ConnectTimeout { address: SocketAddr },
}

/// A reply the client cannot accept for the request it has in flight. TigerBeetle's client
/// asserts on these (crashes); Kassa's client fails the call and closes for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Reply(#[from] ReplyMismatch),
    #[error("reply to request {reply}, but the client has sent only up to {sent}")]
    ReplyFromTheFuture { reply: u32, sent: u32 },
    #[error("{operation}: {results} results for {events} events")]
    ResultCount {
        operation: Operation,
        events: usize,
        results: usize,
    },
    #[error("{operation}: result {index} has unknown status {status}")]
    UnknownStatus {
        operation: Operation,
        index: usize,
        status: u32,
    },
}
