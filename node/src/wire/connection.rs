//! One wire connection on its core thread: read a 256-byte header, check its framing, read the
//! body, validate the frame, answer it; frame after frame, one at a time (a TigerBeetle client
//! has one request in flight, and each client has its own connection).
//!
//! Answers, as TigerBeetle's replica gives them (`kassa_wire::validate`): bad framing or the
//! wrong cluster closes the connection; a bad header field drops the frame; a bad operation or
//! body, a client release out of range, or a session the table does not know is answered with
//! an eviction and the reason. Every refusal is logged with the peer address. Nothing from a
//! refused frame reaches a log: only a frame that passed every check becomes a command, and the
//! command validates it again when it is decoded.
//!
//! A request first meets the session table on its partition's core ([`Sessions::answer_known`]):
//! a retry of a finished request is answered from the cache without a log entry. Otherwise it is
//! proposed; applying checks the session again (so two copies racing through the log — a retry
//! on a new connection while the first is in flight — apply once: the second gets the cached
//! reply, which the client ignores). A write that fails (the node stopping, a lost leadership)
//! is dropped: the client resends the same request and gets the outcome then.
//!
//! [`Sessions::answer_known`]: kassa_shard::Sessions::answer_known

use std::net::SocketAddr;
use std::time::Duration;

use kassa_shard::sessions::BATCH_SIZE_LIMIT;
use kassa_shard::{ClientReply, ClientRequest, Command, PlacementKind, Reply};
use kassa_wire::client_headers::EvictionReason;
use kassa_wire::{
    build_eviction, build_pong, check_header_framing, validate_client_frame, validate_request,
    Account, Answer, ClientFrame, FrameError, Operation, PingClientHeader, RequestHeader, Sender,
    Transfer, HEADER_SIZE,
};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Instant;
use zerocopy::IntoBytes;

use super::in_shares;
use super::unrecorded::{answer_foreign, catch_up_if_behind, check_session, Unrecorded};
use super::{
    peer_warn, session_partition, Context, CLIENT_RELEASE_MAX, CLIENT_RELEASE_MIN, RELEASE,
};
use crate::cores::{realtime_ns, CoreQueues, LocalWrite};
use crate::service::local_partition;

/// Why a connection ends.
enum Closed {
    /// The peer closed it, or a read or write failed.
    Io,
    /// The byte stream cannot be trusted any more.
    BadFrame,
}

/// Serves `stream` until the peer closes it or sends a frame that closes it.
pub(super) async fn serve(stream: std::net::TcpStream, peer: SocketAddr, context: Context) {
    let mut stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%peer, %error, "wire: cannot serve the connection");
            return;
        }
    };
    let mut header = vec![0u8; HEADER_SIZE].into_boxed_slice();
    let mut unrecorded = Unrecorded::default();
    loop {
        match serve_frame(&mut stream, peer, &context, &mut unrecorded, header).await {
            Ok(returned) => header = returned,
            Err(Closed::Io) => return,
            Err(Closed::BadFrame) => return,
        }
    }
}

/// Reads one frame and answers it; returns the header buffer for the next one.
async fn serve_frame(
    stream: &mut TcpStream,
    peer: SocketAddr,
    context: &Context,
    unrecorded: &mut Unrecorded,
    header: Box<[u8]>,
) -> Result<Box<[u8]>, Closed> {
    let (header, deadline) = read_header(stream, peer, context, header).await?;
    let size = match frame_size(&header) {
        Ok(size) => size,
        Err(error) => {
            peer_warn!(context, peer, %error, "wire: closing the connection: bad frame");
            return Err(Closed::BadFrame);
        }
    };
    let body = read_body(stream, peer, context, size - HEADER_SIZE, deadline).await?;
    match validate_client_frame(&header, &body, context.cluster) {
        Err(error) if error.answer() == Answer::CloseConnection => {
            peer_warn!(context, peer, %error, "wire: closing the connection: bad frame");
            return Err(Closed::BadFrame);
        }
        Err(error) => peer_warn!(context, peer, %error, "wire: frame dropped"),
        Ok(ClientFrame::PingClient(ping)) => answer_ping(stream, context, &ping).await?,
        Ok(ClientFrame::Request(request)) => {
            answer_request(stream, peer, context, unrecorded, request, body.into_vec()).await?
        }
    }
    Ok(header)
}

/// Reads a frame's header: its first bytes within the idle timeout, the rest within the frame
/// timeout of them. Returns it with the time by which its body must have arrived.
async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    context: &Context,
    header: Box<[u8]>,
) -> Result<(Box<[u8]>, Instant), Closed> {
    let limits = &context.limits;
    let Ok((read, header)) = monoio::time::timeout(limits.idle_timeout, stream.read(header)).await
    else {
        tracing::debug!(%peer, "wire: closing an idle connection");
        return Err(Closed::Io);
    };
    let started = Instant::now();
    let deadline = started + limits.frame_timeout;
    let arrived = read.map_err(|_| Closed::Io)?;
    if arrived == 0 {
        return Err(Closed::Io);
    }
    if arrived == header.len() {
        return Ok((header, deadline));
    }
    let rest = header.slice_mut(arrived..);
    let Ok((read, rest)) = monoio::time::timeout_at(deadline, stream.read_exact(rest)).await else {
        peer_warn!(
            context,
            peer,
            "wire: closing the connection: a frame's header did not arrive"
        );
        return Err(Closed::Io);
    };
    read.map_err(|_| Closed::Io)?;
    Ok((rest.into_inner(), deadline))
}

/// Reads a body of `size` bytes by `deadline`, once the node-wide budget of incomplete frames
/// has room for it.
async fn read_body(
    stream: &mut TcpStream,
    peer: SocketAddr,
    context: &Context,
    size: usize,
    deadline: Instant,
) -> Result<Box<[u8]>, Closed> {
    let reserved = loop {
        if let Some(reserved) = context.incomplete.try_reserve(size) {
            break reserved;
        }
        if Instant::now() >= deadline {
            peer_warn!(
                context,
                peer,
                "wire: closing the connection: no room for its frame"
            );
            return Err(Closed::Io);
        }
        monoio::time::sleep(BUDGET_RETRY_DELAY).await;
    };
    let body = vec![0u8; size].into_boxed_slice();
    let Ok((read, body)) = monoio::time::timeout_at(deadline, stream.read_exact(body)).await else {
        peer_warn!(
            context,
            peer,
            "wire: closing the connection: a frame's body did not arrive"
        );
        return Err(Closed::Io);
    };
    read.map_err(|_| Closed::Io)?;
    drop(reserved);
    Ok(body)
}

/// How long a connection waits before it looks again for room in the budget of incomplete
/// frames.
const BUDGET_RETRY_DELAY: Duration = Duration::from_millis(1);

/// The frame's announced size, once the header's checksum, command and size bounds are
/// checked (`kassa_wire::check_header_framing`), so that a garbage header never sizes a buffer.
fn frame_size(header_bytes: &[u8]) -> Result<usize, FrameError> {
    let header = check_header_framing(header_bytes)?;
    Ok(header.frame.size as usize)
}

fn sender(context: &Context) -> Sender {
    Sender {
        cluster: context.cluster,
        replica: 0,
        view: 0,
        release: RELEASE,
    }
}

/// A pong; or an eviction when the ping names a session this node gave and has since evicted.
async fn answer_ping(
    stream: &mut TcpStream,
    context: &Context,
    ping: &PingClientHeader,
) -> Result<(), Closed> {
    if ping.session != 0 {
        let partition = session_partition(ping.client, context.queues.partitions());
        let (client, session) = (ping.client, ping.session);
        let evicted = context.queues.read(partition, move |ledger| {
            ledger.sessions().ping_session_evicted(client, session)
        });
        if evicted.await.unwrap_or(false) {
            return evict(stream, context, ping.client, EvictionReason::NoSession).await;
        }
    }
    let pong = build_pong(sender(context), ping);
    send(stream, context, pong.as_bytes().to_vec()).await
}

async fn answer_request(
    stream: &mut TcpStream,
    peer: SocketAddr,
    context: &Context,
    unrecorded: &mut Unrecorded,
    request: RequestHeader,
    body: Vec<u8>,
) -> Result<(), Closed> {
    let client = request.client;
    let release = request.frame.release;
    let refused = if release < CLIENT_RELEASE_MIN {
        Some(EvictionReason::ClientReleaseTooLow)
    } else if release > CLIENT_RELEASE_MAX {
        Some(EvictionReason::ClientReleaseTooHigh)
    } else if let Err(error) = validate_request(&request, &body, BATCH_SIZE_LIMIT as usize) {
        peer_warn!(context, peer, client, %error, "wire: request refused");
        Some(error.eviction_reason())
    } else {
        None
    };
    if let Some(reason) = refused {
        peer_warn!(context, peer, client, %release, reason = reason.name(), "wire: evicting");
        return evict(stream, context, client, reason).await;
    }
    let request = match ClientRequest::new(request, body) {
        Ok(request) => request,
        Err(error) => {
            // validate_client_frame and validate_request passed: this cannot happen.
            tracing::error!(%peer, client, %error, "wire: request refused after validation");
            return Ok(());
        }
    };
    match propose(context, unrecorded, request).await {
        Some(reply) => answer(stream, peer, context, client, reply).await,
        None => Ok(()),
    }
}

/// Under placement by ledger, runs a create request in its ledger's partition `L` alone when
/// it can run there (`CoreQueues::write_local`): `Ok` with the reply (`None` when a write
/// failed; the client retries), or the request back for the usual path.
///
/// If `L` is the session's partition `session`, the request is an ordinary `Request` there.
/// Otherwise the request is checked against the session (by `session`, or by this
/// connection's own chain, `Unrecorded::admits`), `L` runs it as a `ForeignRequest` (once: a
/// copy gets the same reply) and seals its reply, the client gets that reply at once, and
/// `session` caches it with a `SealedAnswer` written in the background (`unrecorded`).
async fn run_by_ledger(
    context: &Context,
    unrecorded: &mut Unrecorded,
    session: u32,
    request: ClientRequest,
) -> Result<Option<ClientReply>, ClientRequest> {
    let queues = &context.queues;
    let ledger = match request.operation() {
        Operation::CreateAccounts => {
            let mut events = request.records::<Account>();
            events.find(|a| a.ledger != 0).map(|a| a.ledger)
        }
        Operation::CreateTransfers => {
            let mut events = request.records::<Transfer>();
            events.find(|t| t.ledger != 0).map(|t| t.ledger)
        }
        _ => None,
    };
    let Some(partition) = ledger.and_then(|ledger| local_partition(queues.placement(), [ledger]))
    else {
        return Err(request);
    };
    if partition == session {
        // An ordinary request of the session's partition: the session checks it in its apply,
        // so it must have every answer this connection sent, or catch up.
        unrecorded.settle().await;
        catch_up_if_behind(queues, session, request.header()).await;
        let header = *request.header();
        let command = Command::Request {
            now: realtime_ns(),
            request,
        };
        return match queues.write_local(partition, command).await {
            Ok(LocalWrite::Written(Reply::Client(reply))) => Ok(Some(reply)),
            // A copy of a request running here in shares joined it.
            Ok(LocalWrite::Written(Reply::Foreign(answer))) => {
                Ok(answer_foreign(queues, unrecorded, session, header, answer).await)
            }
            Ok(LocalWrite::NotLocal(Command::Request { request, .. })) => {
                // Its batch spans partitions: checked against the session here, then run in
                // shares (which keeps the reply here, in the foreign requests, for copies).
                if let Err(answer) = new_to_session(queues, session, &header).await {
                    return Ok(answer);
                }
                in_shares::run(context, unrecorded, session, partition, request).await
            }
            Ok(other) => unreachable!("a client request answered {other:?}"),
            Err(error) => {
                tracing::warn!(partition, %error, "wire: request not written; the client will retry");
                Ok(None)
            }
        };
    }
    let header = *request.header();
    if !unrecorded.admits(&header) {
        unrecorded.settle().await;
        if let Err(answer) = new_to_session(queues, session, &header).await {
            return Ok(answer);
        }
    }
    let command = Command::ForeignRequest {
        now: realtime_ns(),
        request,
    };
    match queues.write_local(partition, command).await {
        Ok(LocalWrite::Written(Reply::Foreign(answer))) => {
            Ok(answer_foreign(queues, unrecorded, session, header, answer).await)
        }
        // Its batch spans partitions: run in shares, homed here; or, if it cannot run so, the
        // global path, which checks the session itself (`propose` settles first).
        Ok(LocalWrite::NotLocal(Command::ForeignRequest { request, .. })) => {
            in_shares::run(context, unrecorded, session, partition, request).await
        }
        Ok(other) => unreachable!("a foreign request answered {other:?}"),
        Err(error) => {
            tracing::warn!(partition, %error, "wire: request not written; the client will retry");
            Ok(None)
        }
    }
}

/// `Ok` if `header` is new to its session in `session` (`check_session`); else what to
/// answer: the session's own answer (a cached reply, a drop), or `None` when the session
/// could not be asked (the client retries).
async fn new_to_session(
    queues: &CoreQueues,
    session: u32,
    header: &RequestHeader,
) -> Result<(), Option<ClientReply>> {
    match check_session(queues, session, header).await {
        Ok(None) => Ok(()),
        Ok(Some(reply)) => Err(Some(reply)),
        Err(error) => {
            tracing::debug!(%error, "wire: session check failed; the client will retry");
            Err(None)
        }
    }
}

/// Runs `request` in its session's partition: answered from the session table if it is a
/// retry, else written through the log. `None` when the write failed (the client retries).
async fn propose(
    context: &Context,
    unrecorded: &mut Unrecorded,
    request: ClientRequest,
) -> Option<ClientReply> {
    let queues = &context.queues;
    let partition = session_partition(request.header().client, queues.partitions());
    // Under placement by ledger, a create request of one ledger runs in its partition alone.
    let request = match run_by_ledger(context, unrecorded, partition, request).await {
        Ok(reply) => return reply,
        Err(request) => request,
    };
    // Every other path checks the session itself: it must have every answer sent, or catch
    // up (placed by ledger, requests may have run elsewhere).
    unrecorded.settle().await;
    let placement = queues.placement();
    let by_ledger = placement.kind == PlacementKind::ByLedger && placement.partitions > 1;
    if by_ledger && request.operation() != Operation::Register {
        catch_up_if_behind(queues, partition, request.header()).await;
    }
    if let (Some(transactions), false) = (
        &context.transactions,
        request.operation() == Operation::Register,
    ) {
        // No session check first: the transaction checks it under its locks (a create) or
        // the `Answer` does (a read). Checking here would wait for the session partition's
        // lock, that is for the transaction running now, and the request would only join
        // the one after the next.
        let client = request.header().client;
        if matches!(
            request.operation(),
            Operation::CreateAccounts | Operation::CreateTransfers
        ) {
            context.across.count(false);
        }
        let ran = super::partitioned::run(context, transactions, partition, request).await;
        return match ran {
            Ok(reply) => Some(reply),
            Err(error) => {
                tracing::warn!(partition, client, %error, "wire: request not run; the client will retry");
                None
            }
        };
    }
    let header = *request.header();
    let known = queues.read(partition, move |ledger| {
        ledger.sessions().answer_known(&header)
    });
    match known.await {
        Ok(Some(reply)) => return Some(reply),
        Ok(None) => {}
        Err(error) => {
            tracing::debug!(%error, "wire: session check failed; the client will retry");
            return None;
        }
    }
    let now = realtime_ns();
    let command = if request.operation() == Operation::Register {
        Command::Register { now, request }
    } else {
        Command::Request { now, request }
    };
    match queues.write(partition, command).await {
        Ok(Reply::Client(reply)) => Some(reply),
        Ok(other) => unreachable!("a client command answered {other:?}"),
        Err(error) => {
            tracing::warn!(partition, %error, "wire: request not written; the client will retry");
            None
        }
    }
}

async fn answer(
    stream: &mut TcpStream,
    peer: SocketAddr,
    context: &Context,
    client: u128,
    reply: ClientReply,
) -> Result<(), Closed> {
    match reply {
        ClientReply::Reply { header, body } => {
            let mut frame = Vec::with_capacity(HEADER_SIZE + body.len());
            frame.extend_from_slice(header.as_bytes());
            frame.extend_from_slice(&body);
            send(stream, context, frame).await
        }
        ClientReply::Dropped(reason) => {
            tracing::debug!(%peer, client, ?reason, "wire: request dropped");
            Ok(())
        }
        ClientReply::Evicted(reason) => {
            peer_warn!(
                context,
                peer,
                client,
                reason = reason.name(),
                "wire: evicting"
            );
            evict(stream, context, client, reason).await
        }
    }
}

async fn evict(
    stream: &mut TcpStream,
    context: &Context,
    client: u128,
    reason: EvictionReason,
) -> Result<(), Closed> {
    let eviction = build_eviction(sender(context), client, reason);
    send(stream, context, eviction.as_bytes().to_vec()).await
}

/// Sends `frame`; a client that does not read it within the write timeout is closed.
async fn send(stream: &mut TcpStream, context: &Context, frame: Vec<u8>) -> Result<(), Closed> {
    let timeout = context.limits.write_timeout;
    let Ok((written, _)) = monoio::time::timeout(timeout, stream.write_all(frame)).await else {
        tracing::debug!("wire: closing a connection that does not read its replies");
        return Err(Closed::Io);
    };
    written.map(|_| ()).map_err(|_| Closed::Io)
}
