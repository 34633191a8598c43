//! A wire create request whose batch spans partitions under placement by ledger, run in
//! shares (`rare_path::request_in_shares`; `docs/transactions.md`, "Wire requests in
//! shares").
//!
//! Its record home is its first ledger's partition `L`, which every copy of the request
//! reaches first (`connection::run_by_ledger` asks `L` before any other path). The round's
//! stage carries the reply: once every intent is written, `L` appends the stage with the
//! request and the reply's body, and applying it commits the batch, seals the reply and keeps
//! it in `L`'s foreign requests. So a committed batch always has its reply, and a copy of the
//! request (a retry after a crash, a resend on a new connection) gets that reply: from `L`'s
//! foreign requests once it is kept, or by joining the running batch before. The session
//! partition records the reply after, in the background (`Unrecorded`), as for a request run
//! in `L` alone.
//!
//! A request of several batches runs as one batch when that gives the same results
//! ([`as_one_batch`]); its reply is cut into its batches again. One that cannot, or whose
//! batch cannot run in shares, goes to the coordinator (`partitioned`).

use kassa_shard::batch_home::{CreateBatch, WireRequest};
use kassa_shard::shares::ShareEvent;
use kassa_shard::{ClientReply, ClientRequest};
use kassa_wire::multi_batch::MultiBatch;
use kassa_wire::{Account, Operation, Transfer};
use zerocopy::{FromBytes, IntoBytes};

use super::partitioned::records;
use super::unrecorded::{answer_foreign, Unrecorded};
use super::Context;
use crate::cores::realtime_ns;
use crate::rare_path::{request_in_shares, RequestInShares};

/// Runs `request` (whose session lives in `session`) in shares with `home` as its record
/// home: `Ok` with the reply (`None` when the outcome is unknown or a write failed: the
/// client retries, and its retry finds the reply kept or runs the batch again), or the
/// request back for the coordinator. The caller checked the request against its session.
pub(super) async fn run(
    context: &Context,
    unrecorded: &mut Unrecorded,
    session: u32,
    home: u32,
    request: ClientRequest,
) -> Result<Option<ClientReply>, ClientRequest> {
    let Some((batch, batches)) = as_one_batch(&request) else {
        return Err(request);
    };
    let queues = &context.queues;
    let header = *request.header();
    let wire = WireRequest { header, batches };
    let answer = match request_in_shares(queues, realtime_ns(), batch, home, wire).await {
        Ok(RequestInShares::Answered(answer)) => answer,
        Ok(RequestInShares::NotRunnable(_)) => return Err(request),
        Err(error) => {
            tracing::warn!(home, client = header.client, %error, "wire: request in shares not answered; the client will retry");
            return Ok(None);
        }
    };
    context.across.count(true);
    Ok(answer_foreign(queues, unrecorded, session, header, answer).await)
}

/// A create request's events as one batch, with the events each batch of its body holds,
/// when running them as one batch gives exactly the results of running its batches one
/// after another, as a partition does (`Ledger::execute_batches`): no event is imported, and
/// no batch but the last ends in an open linked chain (which would run on into the next
/// batch). Timestamps agree too: a batch of `n` events written at `now` ends at
/// `max(last, now) + n`, so batches in a row end where their concatenation ends.
fn as_one_batch(request: &ClientRequest) -> Option<(CreateBatch, Vec<u32>)> {
    match request.operation() {
        Operation::CreateAccounts => {
            let (events, batches) = events_of::<Account>(request)?;
            Some((CreateBatch::Accounts(events), batches))
        }
        Operation::CreateTransfers => {
            let (events, batches) = events_of::<Transfer>(request)?;
            Some((CreateBatch::Transfers(events), batches))
        }
        _ => None,
    }
}

fn events_of<E: ShareEvent + FromBytes + IntoBytes + Copy>(
    request: &ClientRequest,
) -> Option<(Vec<E>, Vec<u32>)> {
    let operation = request.operation();
    let event_max = operation.event_max(kassa_shard::sessions::BATCH_SIZE_LIMIT as usize);
    let decoded = MultiBatch::decode(request.body(), operation.event_size(), event_max).ok()?;
    let mut events: Vec<E> = Vec::new();
    let mut batches = Vec::new();
    let mut open_chain = false;
    for batch in decoded.batches() {
        if open_chain {
            return None;
        }
        let batch: Vec<E> = records(batch);
        if batch.iter().any(ShareEvent::imported) {
            return None;
        }
        open_chain = batch.last().is_some_and(ShareEvent::linked);
        batches.push(batch.len() as u32);
        events.extend(batch);
    }
    Some((events, batches))
}
