//! The wire port: TigerBeetle 0.17's client protocol, so TigerBeetle's official clients work
//! against a Kassa node unchanged (`docs/wire-protocol.md`).
//!
//! **One acceptor, connections served by the cores.** A helper thread accepts on the wire
//! address and hands each connection, round-robin, to a core thread, which serves it as a
//! monoio task for its whole life (`connection`). Chosen over a listener per core with
//! SO_REUSEPORT because: a port already in use is then an error at start, whereas with
//! SO_REUSEPORT a second node started on the same port by the same user would bind too and
//! silently take part of the connections; `--wire-address 127.0.0.1:0` needs no bind-then-share
//! dance; and connections spread evenly over the cores whatever the kernel's 4-tuple hash does
//! with a few clients. Accepting is not on the hot path: TigerBeetle's clients keep their
//! connection open.
//!
//! **Where a request runs.** A client's session lives in one partition
//! ([`session_partition`]). A `register` is a log entry there. With one partition every
//! request is one log entry there too, sent over the same bounded core queues the HTTP API
//! uses, so requests from many connections that arrive together share the log's group commit.
//! With more partitions a create request is a cross-partition transaction (the coordinator
//! groups the requests waiting for it), which caches the reply in the session as it commits,
//! and a read runs where its records are and has its reply cached by a log entry in the
//! session's partition (`partitioned`).
//!
//! Limits ([`WireLimits`], from the configuration): at most `connections_max` connections
//! (more are closed at once, logged); a connection that sends no frame for `idle_timeout` is
//! closed, and so is one whose frame, header and body, takes longer than `frame_timeout` from
//! its first byte or whose reply waits longer than `write_timeout` for the client to read it.
//! A body's buffer is allocated only once its header passed the framing checks, and all
//! connections together hold at most [`INCOMPLETE_FRAMES_BYTES_MAX`] in bodies still arriving
//! (a connection waits for room, within its frame timeout), so clients that announce large
//! frames and stall cannot make the node allocate without bound. Refusals are logged at most
//! a few times per peer per window ([`LogLimiter`]).

mod connection;
mod in_shares;
mod partitioned;
mod unrecorded;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kassa_wire::header::Release;

use crate::coordinator::Transactions;
use crate::cores::CoreQueues;
use crate::log_limit::LogLimiter;
use crate::partitioning::partition_of;
use crate::service::{BatchesAcross, Reads, Service};

/// Bytes that frames whose body is still arriving may hold, over all connections: 256 full
/// frames at once.
pub const INCOMPLETE_FRAMES_BYTES_MAX: usize = 256 * kassa_wire::MESSAGE_SIZE_MAX;

/// How the wire port limits its clients (`Config`'s `wire_*` settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireLimits {
    /// Connections served at once.
    pub connections_max: usize,
    /// How long a connection may go without starting a frame.
    pub idle_timeout: Duration,
    /// How long a frame, header and body, may take from its first byte.
    pub frame_timeout: Duration,
    /// How long a reply may wait for the client to read it.
    pub write_timeout: Duration,
}
/// The release this node reports in pongs and evictions: the TigerBeetle release whose
/// protocol it speaks.
pub const RELEASE: Release = Release::new(0, 17, 8);
/// Client releases served: every 0.17.x (older ones are evicted `client_release_too_low`,
/// newer ones `client_release_too_high`, as TigerBeetle does).
pub const CLIENT_RELEASE_MIN: Release = Release::new(0, 17, 0);
pub const CLIENT_RELEASE_MAX: Release = Release::new(0, 17, 255);
/// How long the acceptor pauses after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(10);

impl WireLimits {
    /// The limits `config` sets.
    pub fn from_config(config: &crate::config::Config) -> WireLimits {
        WireLimits {
            connections_max: config.wire_connections_max,
            idle_timeout: Duration::from_millis(config.wire_idle_timeout_ms),
            frame_timeout: Duration::from_millis(config.wire_frame_timeout_ms),
            write_timeout: Duration::from_millis(config.wire_write_timeout_ms),
        }
    }
}

/// The partition that holds `client`'s session. With one partition every request runs there,
/// atomically, in one log entry. With more, a request's records live elsewhere: a create
/// request runs as a transaction that also caches its reply in this partition's session table,
/// a read runs where its records are and its reply is then cached here (`partitioned`).
pub fn session_partition(client: u128, partitions: u32) -> u32 {
    partition_of(client, partitions)
}

/// What every connection shares.
#[derive(Clone)]
pub(crate) struct Context {
    pub queues: CoreQueues,
    pub cluster: u128,
    /// Reads routed to their partitions (used with more than one partition).
    pub reads: Reads,
    /// The transaction coordinator, with more than one partition.
    pub transactions: Option<Transactions>,
    /// Create requests across partitions, run in shares or by the coordinator.
    pub across: Arc<BatchesAcross>,
    pub limits: WireLimits,
    /// Bytes held by bodies still arriving, over all connections.
    pub incomplete: Arc<IncompleteFrames>,
    /// Rate limits for the warnings a peer causes.
    pub log_limiter: Arc<Mutex<LogLimiter>>,
}

impl Context {
    /// Whether a warning caused by `peer` may be logged now: `Some(lines left out before it)`.
    pub fn log_allowed(&self, peer: SocketAddr) -> Option<u64> {
        let mut limiter = self.log_limiter.lock().unwrap_or_else(|e| e.into_inner());
        limiter.admit(Some(peer.ip()), std::time::Instant::now())
    }
}

/// Logs a warning caused by a peer, unless that peer caused too many lately.
macro_rules! peer_warn {
    ($context:expr, $peer:expr, $($rest:tt)+) => {
        if let Some(suppressed) = $context.log_allowed($peer) {
            let peer = $peer;
            tracing::warn!(%peer, suppressed, $($rest)+);
        }
    };
}
pub(crate) use peer_warn;

/// The node-wide budget of bytes held by frame bodies still arriving.
#[derive(Debug)]
pub(crate) struct IncompleteFrames {
    held: AtomicUsize,
    max: usize,
}

/// Bytes reserved in [`IncompleteFrames`]; given back when dropped.
pub(crate) struct Reserved<'a> {
    budget: &'a IncompleteFrames,
    bytes: usize,
}

impl IncompleteFrames {
    pub fn new(max: usize) -> IncompleteFrames {
        IncompleteFrames {
            held: AtomicUsize::new(0),
            max,
        }
    }

    /// Reserves `bytes` if they fit now.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reserved<'_>> {
        assert!(bytes <= self.max, "a frame is smaller than the budget");
        let reserve = |held: usize| held.checked_add(bytes).filter(|total| *total <= self.max);
        let updated = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, reserve);
        updated.ok().map(|_| Reserved {
            budget: self,
            bytes,
        })
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Binds `address` and starts accepting; returns the bound address (the chosen port for
/// `:0`). Connections are served until the process exits.
pub fn start(
    address: SocketAddr,
    service: &Service,
    cluster: u128,
    limits: WireLimits,
) -> std::io::Result<SocketAddr> {
    assert!(limits.connections_max > 0);
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    let context = Context {
        queues: service.cores.queues(),
        cluster,
        reads: service.reads.clone(),
        transactions: service.transactions(),
        across: service.across.clone(),
        limits,
        incomplete: Arc::new(IncompleteFrames::new(INCOMPLETE_FRAMES_BYTES_MAX)),
        log_limiter: Arc::new(Mutex::new(LogLimiter::new())),
    };
    std::thread::Builder::new()
        .name("kassa-wire-accept".into())
        .spawn(move || accept_loop(listener, context))?;
    Ok(bound)
}

fn accept_loop(listener: TcpListener, context: Context) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut next_core = 0usize;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) => {
                let mut limiter = context
                    .log_limiter
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(suppressed) = limiter.admit(None, std::time::Instant::now()) {
                    tracing::warn!(%error, suppressed, "wire: accept failed");
                }
                drop(limiter);
                std::thread::sleep(ACCEPT_RETRY_DELAY);
                continue;
            }
        };
        let max = context.limits.connections_max;
        if open.load(Ordering::Relaxed) >= max {
            peer_warn!(context, peer, "wire: closing a new connection: {max} open");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let guard = ConnectionGuard::new(open.clone());
        let connection_context = context.clone();
        let run = move || {
            monoio::spawn(async move {
                let _guard = guard;
                connection::serve(stream, peer, connection_context).await;
            });
        };
        if context.queues.run_on(next_core, run).is_err() {
            return; // The node is stopping.
        }
        next_core = (next_core + 1) % context.queues.cores();
    }
}

/// Counts a connection as open until dropped.
struct ConnectionGuard(Arc<AtomicUsize>);

impl ConnectionGuard {
    fn new(open: Arc<AtomicUsize>) -> ConnectionGuard {
        open.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(open)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
