//! Kassa's Rust client (feature `client`): TigerBeetle 0.17's client protocol over TCP, built on
//! this crate's codec. [`Client`] is async (tokio); [`BlockingClient`] wraps it for programs
//! without a runtime.
//!
//! It behaves as TigerBeetle's own client (`vsr/client.zig`) where that matters for
//! correctness: it registers first (request 0), then numbers requests 1, 2, 3, … with the
//! session from the register reply and, as `parent`, the previous reply's `context`; one request
//! is in flight per client; it checks every frame with `check_server_frame` and every reply with
//! `check_reply_to`; on a closed connection, a corrupt frame or a request timeout it reconnects
//! (bounded, doubling backoff) and resends the very same bytes, so the server answers from its
//! reply cache and a request is applied at most once; an eviction ends the client for good.
//!
//! Where it differs, on purpose: each call has an overall deadline (`ClientConfig::deadline`)
//! after which it returns [`ClientError::Timeout`] (TigerBeetle's client retries forever); a
//! reply TigerBeetle's client would crash on is a terminal [`ClientError::Protocol`]; it does not
//! send pings or hedge requests to a second replica; one call is one batch (no merging of
//! concurrent calls), and a batch over the server's `batch_size_limit` is refused with
//! [`ClientError::BatchTooLarge`] rather than split.
//!
//! Parallelism: a client has one request in flight, so applications that want more open
//! several clients (each has its own session); a client is `Send`.
//!
//! Modules: `session` (the protocol state, no I/O), `connection` (framing over TCP), `client`
//! (the driver: connect, send, resend), `results` (typed reply decoding), `blocking`, `config`,
//! `error`.

mod blocking;
#[allow(clippy::module_inception)]
mod client;
mod config;
mod connection;
mod error;
mod results;
mod session;

pub use blocking::BlockingClient;
pub use client::Client;
pub use config::{
    ClientConfig, CLIENT_RELEASE, DEADLINE_DEFAULT, RECONNECT_DELAY_MAX_DEFAULT,
    RECONNECT_DELAY_MIN_DEFAULT, REQUEST_TIMEOUT_DEFAULT, REQUEST_TIMEOUT_MAX_DEFAULT,
};
pub use error::{ClientError, Failure, ProtocolError};
