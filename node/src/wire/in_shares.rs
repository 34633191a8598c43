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
//! A request of several batches, or one whose batch cannot run in shares, goes to the
//! coordinator (`partitioned`).

use kassa_shard::batch_home::CreateBatch;
use kassa_shard::{ClientReply, ClientRequest};
use kassa_wire::multi_batch::MultiBatch;
use kassa_wire::{Account, Operation, Transfer};

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
    let Some(batch) = one_batch(&request) else {
        return Err(request);
    };
    let queues = &context.queues;
    let header = *request.header();
    let answer = match request_in_shares(queues, realtime_ns(), batch, home, header).await {
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

/// The batch of a create request with exactly one batch in its body.
fn one_batch(request: &ClientRequest) -> Option<CreateBatch> {
    let operation = request.operation();
    if !matches!(
        operation,
        Operation::CreateAccounts | Operation::CreateTransfers
    ) {
        return None;
    }
    let event_max = operation.event_max(kassa_shard::sessions::BATCH_SIZE_LIMIT as usize);
    let decoded = MultiBatch::decode(request.body(), operation.event_size(), event_max).ok()?;
    let mut batches = decoded.batches();
    let batch = batches.next()?;
    if batches.next().is_some() {
        return None;
    }
    Some(match operation {
        Operation::CreateAccounts => CreateBatch::Accounts(records::<Account>(batch)),
        _ => CreateBatch::Transfers(records::<Transfer>(batch)),
    })
}
