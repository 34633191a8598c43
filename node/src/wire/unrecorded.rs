//! Replies a connection sent before its client's session partition recorded them (placement
//! by ledger; `docs/transactions.md`, "The session's answer off the latency path").
//!
//! A create request of one ledger runs in that ledger's partition `L`, which seals its reply
//! and keeps it (`kassa_shard::ForeignRequests`). The client gets the reply as soon as `L`'s
//! entry is durable; the session partition `S` records it after, with a `SealedAnswer`
//! written in the background. Two things keep the session right meanwhile:
//!
//! - **This connection's own chain.** The client's next request names the reply it got as its
//!   `parent`. [`Unrecorded::admits`] checks it against the reply this connection sent, as
//!   `S` would once the answer is recorded, so the next request need not wait for `S`. The
//!   answers are written in order (each waits for the one before), at most
//!   [`RECORDING_MAX`] at once.
//! - **Catching up.** A request that reaches `S` while `S` lacks the replies before it (their
//!   answers lost in a crash, or still in flight on a connection that closed) looks like one
//!   from the future to `S` (`NewerRequest`). [`check_session`] then looks for the reply the
//!   request names in every partition's foreign requests and moves the session to it with a
//!   `CatchUp` entry, which `S` applies only if the reply is the one the request names.
//!
//! Any other request (one that is not the next in this connection's chain, or one that takes
//! another path) first waits until every answer this connection started is recorded.

use std::cell::Cell;
use std::rc::Rc;

use kassa_shard::sessions::DropReason;
use kassa_shard::{ClientReply, Command, ForeignAnswer, Reply};
use kassa_wire::client_headers::{ReplyHeader, RequestHeader};
use monoio::task::JoinHandle;

use crate::cores::{realtime_ns, CoreQueues};
use crate::fault_injection;
use crate::join::join_all;
use crate::NodeError;

/// Most `SealedAnswer`s one connection writes at once; past it, the next request waits for
/// them (a session partition that writes slowly slows its clients, not the node's memory).
pub const RECORDING_MAX: usize = 2;

/// What one connection sent that its client's session partition may not have recorded yet.
#[derive(Default)]
pub(super) struct Unrecorded {
    /// The session number named by the latest request run in a ledger's partition, and the
    /// reply sent for it.
    latest: Option<(u64, ReplyHeader)>,
    /// The newest answer's write: it waits for the ones before, so it ends after all of them.
    recording: Option<JoinHandle<()>>,
    /// Answers being written.
    in_flight: Rc<Cell<usize>>,
    /// An answer was not recorded (a failed write, an evicted session): the session is
    /// behind the chain, so the next request goes to it (and catches it up, or is refused as
    /// the session says).
    broken: Rc<Cell<bool>>,
}

impl Unrecorded {
    /// Whether `request` is the next one of this connection's chain: its client's session,
    /// release and next request number, naming as its parent the reply this connection sent
    /// last. `S` would admit it once that reply is recorded, and nothing else can have moved
    /// the session meanwhile (the client has one request in flight).
    pub(super) fn admits(&self, request: &RequestHeader) -> bool {
        let Some((session, last)) = &self.latest else {
            return false;
        };
        self.in_flight.get() < RECORDING_MAX
            && !self.broken.get()
            && last.client == request.client
            && *session == request.session
            && last.frame.release == request.frame.release
            && last.request.checked_add(1) == Some(request.request)
            && last.context == request.parent
    }

    /// Waits until every answer this connection started is written (recorded, or refused by
    /// the session, in which case a later request catches the session up).
    pub(super) async fn settle(&mut self) {
        self.latest = None;
        if let Some(recording) = self.recording.take() {
            recording.await;
        }
        debug_assert_eq!(self.in_flight.get(), 0);
        self.broken.set(false);
    }

    /// Records `reply` (with `body`), sent to the client for `request`, in `session` in the
    /// background (a `SealedAnswer`), after the answers before it.
    pub(super) fn record(
        &mut self,
        queues: &CoreQueues,
        session: u32,
        request: RequestHeader,
        reply: Box<ReplyHeader>,
        body: Vec<u8>,
    ) {
        self.latest = Some((request.session, *reply));
        let answer = Command::SealedAnswer {
            request: Box::new(request),
            reply,
            body,
        };
        let before = self.recording.take();
        let queues = queues.clone();
        let (in_flight, broken) = (self.in_flight.clone(), self.broken.clone());
        in_flight.set(in_flight.get() + 1);
        self.recording = Some(monoio::spawn(async move {
            if let Some(before) = before {
                before.await;
            }
            if fault_injection::injected("abort-before-answer-recorded") {
                // Long enough for the reply to reach the client.
                monoio::time::sleep(std::time::Duration::from_millis(500)).await;
                eprintln!(
                    "kassa: KASSA_FAULT=abort-before-answer-recorded: aborting before the session recorded a reply sent"
                );
                std::process::abort();
            }
            match queues.write(session, answer).await {
                Ok(Reply::Client(ClientReply::Reply { .. })) => {}
                Ok(other) => {
                    broken.set(true);
                    tracing::debug!(session, ?other, "wire: an answer was not recorded");
                }
                Err(error) => {
                    broken.set(true);
                    tracing::warn!(session, %error, "wire: an answer was not recorded; the session catches up later");
                }
            }
            in_flight.set(in_flight.get() - 1);
        }));
    }
}

/// The reply to `request`, whose session lives in `session`, from the answer the ledger's
/// partition that ran it gave (`ForeignAnswer`): a sealed reply goes to the client at once and
/// is recorded in the session in the background (`unrecorded`); a body sealed by no one (kept
/// before replies were sealed) is answered by the session itself. `None` when that write
/// failed: the client retries.
pub(super) async fn answer_foreign(
    queues: &CoreQueues,
    unrecorded: &mut Unrecorded,
    session: u32,
    request: RequestHeader,
    answer: ForeignAnswer,
) -> Option<ClientReply> {
    let answer = match answer {
        ForeignAnswer::Sealed { reply, body } => {
            let given = ClientReply::Reply {
                header: reply.clone(),
                body: body.clone(),
            };
            unrecorded.record(queues, session, request, reply, body);
            return Some(given);
        }
        ForeignAnswer::Dropped(reason) => return Some(ClientReply::Dropped(reason)),
        // Run before `L` kept sealed replies (restored from an older snapshot): `S` seals.
        ForeignAnswer::Body(body) => Command::Answer {
            now: realtime_ns(),
            request: Box::new(request),
            body,
        },
    };
    unrecorded.settle().await;
    match queues.write(session, answer).await {
        Ok(Reply::Client(reply)) => Some(reply),
        Ok(other) => unreachable!("an answer answered {other:?}"),
        Err(error) => {
            tracing::warn!(session, %error, "wire: reply not recorded; the client will retry");
            None
        }
    }
}

/// The answer `session` gives `request` without a log entry (a cached reply, a drop, an
/// eviction), `None` if it is new. A request the session sees as ahead of it
/// (`NewerRequest`) catches the session up first, if some partition ran the request it names
/// as its parent, or the request itself.
pub(super) async fn check_session(
    queues: &CoreQueues,
    session: u32,
    request: &RequestHeader,
) -> Result<Option<ClientReply>, NodeError> {
    let header = *request;
    let known = queues.read(session, move |ledger| {
        ledger.sessions().answer_known(&header)
    });
    let known = known.await?;
    if known != Some(ClientReply::Dropped(DropReason::NewerRequest)) {
        return Ok(known);
    }
    let Some((reply, body)) = named_reply(queues, request).await? else {
        return Ok(known);
    };
    let catch_up = Command::CatchUp {
        request: Box::new(header),
        reply: Box::new(reply),
        body,
    };
    let caught = queues.write(session, catch_up).await?;
    tracing::debug!(
        session,
        client = header.client,
        ?caught,
        "wire: a session caught up"
    );
    let known = queues.read(session, move |ledger| {
        ledger.sessions().answer_known(&header)
    });
    known.await
}

/// Catches `session` up if it is behind `request` (see [`check_session`]), before a path that
/// checks the session itself (an ordinary request of the session's partition, a read, the
/// global path): those would otherwise drop a request whose session missed the answers of
/// requests run elsewhere (placement by ledger) for good. A failure is left to that path.
pub(super) async fn catch_up_if_behind(queues: &CoreQueues, session: u32, request: &RequestHeader) {
    if let Err(error) = check_session(queues, session, request).await {
        tracing::debug!(session, %error, "wire: the session check before a request failed");
    }
}

/// The reply some partition sealed to the request `request` names as its parent, or to
/// `request` itself, from every partition's foreign requests.
async fn named_reply(
    queues: &CoreQueues,
    request: &RequestHeader,
) -> Result<Option<(ReplyHeader, Vec<u8>)>, NodeError> {
    let (client, header) = (request.client, *request);
    let reads = (0..queues.partitions()).map(|partition| {
        queues.read(partition, move |ledger| {
            let (reply, body) = ledger.foreign_requests().latest_reply(client)?;
            let parent = reply.request.checked_add(1) == Some(header.request)
                && reply.context == header.parent;
            let itself =
                reply.request == header.request && reply.request_checksum == header.frame.checksum;
            (parent || itself).then(|| (*reply, body.to_vec()))
        })
    });
    let mut found = Vec::new();
    for read in join_all(reads).await {
        found.extend(read?);
    }
    Ok(found.into_iter().max_by_key(|(reply, _)| reply.request))
}
