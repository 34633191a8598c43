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
//! Limits: at most [`WIRE_CONNECTIONS_MAX`] connections (more are closed at once, logged); a
//! frame's body must arrive within [`FRAME_BODY_TIMEOUT`] of its header.

mod connection;
mod partitioned;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kassa_wire::header::Release;

use crate::coordinator::Transactions;
use crate::cores::CoreQueues;
use crate::partitioning::partition_of;
use crate::service::{Reads, Service};

/// Most wire connections a node serves at once.
pub const WIRE_CONNECTIONS_MAX: usize = 4096;
/// How long a frame's body may take to arrive after its header.
pub const FRAME_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The release this node reports in pongs and evictions: the TigerBeetle release whose
/// protocol it speaks.
pub const RELEASE: Release = Release::new(0, 17, 8);
/// Client releases served: every 0.17.x (older ones are evicted `client_release_too_low`,
/// newer ones `client_release_too_high`, as TigerBeetle does).
pub const CLIENT_RELEASE_MIN: Release = Release::new(0, 17, 0);
pub const CLIENT_RELEASE_MAX: Release = Release::new(0, 17, 255);
/// How long the acceptor pauses after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(10);

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
}

/// Binds `address` and starts accepting; returns the bound address (the chosen port for
/// `:0`). Connections are served until the process exits.
pub fn start(address: SocketAddr, service: &Service, cluster: u128) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let bound = listener.local_addr()?;
    let context = Context {
        queues: service.cores.queues(),
        cluster,
        reads: service.reads.clone(),
        transactions: service.transactions(),
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
                tracing::warn!(%error, "wire: accept failed");
                std::thread::sleep(ACCEPT_RETRY_DELAY);
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= WIRE_CONNECTIONS_MAX {
            tracing::warn!(%peer, "wire: closing: {WIRE_CONNECTIONS_MAX} connections open");
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
