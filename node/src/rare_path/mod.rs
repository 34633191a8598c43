//! The rare path on the node: a `create_*` batch whose events span partitions under placement
//! by ledger runs in shares, each in its own partition's log, decided by a record home
//! (`docs/transactions.md`, "Step 4 (d): the node's driver").
//!
//! Three parts, each a thin driver around a pure core of `kassa_shard`:
//! - **the requester** ([`create_in_shares`], on whatever thread serves the request): finds
//!   each event's partition, checks with each participant that its share can run there alone
//!   and claims the share's new ids for it (as the fast path does for a whole batch), then
//!   hands the batch to its record home and waits for the answer. A batch that cannot run in
//!   shares (an event placed nowhere, an id in two shares, a share naming records of other
//!   partitions, an id held elsewhere) comes back, for the coordinator.
//! - **the record home** (on the home partition's core): a `BatchHome` per leader term,
//!   numbering its rounds from an epoch it logs first (`Command::ClaimEpoch`, whose index is
//!   above every entry of earlier leaders). It sends intents, appends its stage and decision
//!   through its own log, and answers the requester once a round commits.
//! - **the participants** (on each participant's core): an intent is written through the
//!   partition's log under its transaction lock (so none comes while the coordinator holds
//!   the partition); prevents and resolutions are written at once. Each acknowledgement goes
//!   back to the home with the share's results.
//!
//! Messages between partitions go through the cores' queues (`on_core::RareTransport`), as
//! the id directory's do: nothing here assumes that two partitions share a process, and a
//! message lost (a full queue) is sent again by the home's timers. Every state the protocol
//! needs after a crash or a leader change is in the logs: a partition that holds an intent
//! longer than [`ASK_AFTER`] asks the transaction's home, whose leader (a new one, after a
//! restart) recovers the transaction from its records and the participants' answers.

use std::collections::BTreeSet;

use kassa_shard::batch_home::{CreateBatch, WireRequest};
use kassa_shard::directory::IdKind;
use kassa_shard::intents::ShareResults;
use kassa_shard::shares::ShareEvent;
use kassa_shard::{ledger_partition, ForeignAnswer, Ledger, LocalRun};
use kassa_wire::{Transfer, TransferId};

use crate::cores::{ClaimedIds, CoreQueues};
use crate::join::join_all;
use crate::NodeError;

pub(crate) mod on_core;

use on_core::{outcome_unknown, RoundAnswer};
pub use on_core::{RareMessage, ASK_AFTER, RARE_TICK};

/// What [`create_in_shares`] did with a batch.
#[derive(Debug)]
pub enum InShares {
    /// The batch ran in shares: its results, in batch order.
    Ran(ShareResults),
    /// The batch cannot run in shares; it is given back, unchanged, for the coordinator.
    NotRunnable(CreateBatch),
}

/// Runs `batch` (placement by ledger, events of several partitions) in shares, or gives it
/// back when it cannot run so. See the module.
pub async fn create_in_shares(
    queues: &CoreQueues,
    now: u64,
    batch: CreateBatch,
) -> Result<InShares, NodeError> {
    match run_in_shares(queues, now, batch, None).await? {
        Ok(RoundAnswer::Results(results)) => Ok(InShares::Ran(results)),
        Ok(RoundAnswer::Request(_)) => Err(NodeError::Transaction(
            "an HTTP batch answered with a wire reply".into(),
        )),
        Err(batch) => Ok(InShares::NotRunnable(batch)),
    }
}

/// What [`request_in_shares`] did with a wire request's batch.
#[derive(Debug)]
pub enum RequestInShares {
    /// The request ran in shares (now, or before: a copy): the reply its home sealed and
    /// kept, or why it was dropped.
    Answered(ForeignAnswer),
    /// The batch cannot run in shares; it is given back, unchanged, for the coordinator.
    NotRunnable(CreateBatch),
}

/// Runs `batch`, the events of the wire create request `request` (its batches as one), in
/// shares with `home` (the partition of its first ledger, which every copy of the request
/// reaches first) as its record home, or gives it back when it cannot run so. The round's
/// stage carries the reply, so the entry that commits the batch also keeps its reply in
/// `home` for every copy of the request (`docs/transactions.md`, "Wire requests in shares").
pub async fn request_in_shares(
    queues: &CoreQueues,
    now: u64,
    batch: CreateBatch,
    home: u32,
    request: WireRequest,
) -> Result<RequestInShares, NodeError> {
    match run_in_shares(queues, now, batch, Some((home, request))).await? {
        Ok(RoundAnswer::Request(answer)) => Ok(RequestInShares::Answered(answer)),
        Ok(RoundAnswer::Results(_)) => Err(NodeError::Transaction(
            "a wire request answered with an HTTP batch's results".into(),
        )),
        Err(batch) => Ok(RequestInShares::NotRunnable(batch)),
    }
}

/// Runs `batch` in shares (as the wire request `request` homed in its partition, if given):
/// its home's answer, or the batch back when it cannot run so.
async fn run_in_shares(
    queues: &CoreQueues,
    now: u64,
    batch: CreateBatch,
    request: Option<(u32, WireRequest)>,
) -> Result<Result<RoundAnswer, CreateBatch>, NodeError> {
    let Some(partitions) = event_partitions(queues, &batch).await? else {
        return Ok(Err(batch));
    };
    let participants: BTreeSet<u32> = partitions.iter().copied().collect();
    if participants.len() < 2 || !ids_in_one_share(&batch, &partitions) {
        return Ok(Err(batch));
    }
    // An HTTP batch's home is its first event's partition; a wire request's is the one its
    // copies reach first, a participant (its first ledger's).
    let home = match &request {
        Some((home, _)) if participants.contains(home) => *home,
        Some(_) => return Ok(Err(batch)),
        None => partitions[0],
    };
    let kind = match &batch {
        CreateBatch::Transfers(_) => IdKind::Transfer,
        CreateBatch::Accounts(_) => IdKind::Account,
    };
    // Each share's new ids, if it can run in its partition alone. Whether it can only grows
    // true (records are never removed), so it still holds when the intent is written.
    let checks = participants.iter().map(|participant| {
        let share = share_of(&batch, &partitions, *participant);
        let partition = *participant;
        async move {
            let run = queues.read(partition, move |ledger| local_run(ledger, &share));
            (partition, run.await)
        }
    });
    let mut claims: Vec<(u32, Vec<u128>)> = Vec::new();
    for (partition, run) in join_all(checks).await {
        match run? {
            Some(run) => {
                // An id twice in one share is that share's own business (`exists`); it is
                // claimed once.
                let mut ids = run.claims;
                ids.sort_unstable();
                ids.dedup();
                claims.push((partition, ids));
            }
            None => return Ok(Err(batch)),
        }
    }
    let Some(claimed) = claim(queues, kind, claims).await? else {
        return Ok(Err(batch));
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = crate::cores::CoreRequest::RunInShares {
        home,
        now,
        batch,
        partitions,
        request: request.map(|(_, request)| request),
        reply,
    };
    let answered = match queues.sender(home).send(request).await {
        Ok(()) => answer.await.unwrap_or_else(|_| Err(outcome_unknown(home))),
        Err(_) => Err(NodeError::ShuttingDown),
    };
    // The ids are stored now, or in an intent still held (which its partition counts as
    // proposed until it resolves), or never will be.
    queues.settle_claims(claimed).await;
    answered.map(Ok)
}

/// Each event's partition: its ledger's. A post or void of ledger 0 goes where its pending
/// transfer is: with an earlier event of the batch creating it, or in the partition that
/// stores it, asked of every partition (a transfer never moves, so the answer stays true).
/// `None` when an event names no ledger otherwise (an account, or a transfer that is no post
/// or void: its own fields fail it), when a pending transfer is nowhere yet, or when the batch
/// is imported.
async fn event_partitions(
    queues: &CoreQueues,
    batch: &CreateBatch,
) -> Result<Option<Vec<u32>>, NodeError> {
    let count = queues.partitions();
    let events = match batch {
        CreateBatch::Accounts(events) => {
            let placed = match events.first() {
                Some(first) if !first.imported() => (events.iter())
                    .map(|a| (a.ledger != 0).then(|| ledger_partition(a.ledger, count)))
                    .collect(),
                _ => None,
            };
            return Ok(placed);
        }
        CreateBatch::Transfers(events) => events,
    };
    if events.first().is_none_or(|first| first.imported()) {
        return Ok(None);
    }
    let Some((mut placed, unplaced)) = placed_in_the_batch(events, count) else {
        return Ok(None);
    };
    if !unplaced.is_empty() {
        let pendings: Vec<u128> = unplaced.iter().map(|(_, pending)| *pending).collect();
        let found = (0..count).map(|partition| {
            let pendings = pendings.clone();
            let read = queues.read(partition, move |ledger| {
                let stored = |id: &u128| ledger.contains_transfer(TransferId(*id));
                pendings
                    .iter()
                    .map(stored)
                    .collect::<Result<Vec<bool>, _>>()
            });
            async move { (partition, read.await) }
        });
        for (partition, stored) in join_all(found).await {
            let stored = stored?.map_err(|error| NodeError::ColdRead { partition, error })?;
            for ((index, _), stored) in unplaced.iter().zip(stored) {
                if stored {
                    placed[*index] = Some(partition);
                }
            }
        }
    }
    Ok(placed.into_iter().collect())
}

/// Each event's partition as far as the batch tells it (`None` at a post or void of ledger 0
/// whose pending transfer no earlier event creates), and those posts and voids with their
/// pending ids. `None` for an event of ledger 0 that is no post or void.
#[allow(clippy::type_complexity)]
fn placed_in_the_batch(
    events: &[Transfer],
    count: u32,
) -> Option<(Vec<Option<u32>>, Vec<(usize, u128)>)> {
    let mut placed: Vec<Option<u32>> = Vec::with_capacity(events.len());
    let mut unplaced = Vec::new();
    for (index, t) in events.iter().enumerate() {
        if t.ledger != 0 {
            placed.push(Some(ledger_partition(t.ledger, count)));
            continue;
        }
        let pending = t.pending_id.0;
        if pending == 0 {
            return None;
        }
        // An id in two partitions' shares sends the batch to the coordinator anyway
        // (`ids_in_one_share`), so the first earlier event of that id tells.
        match events[..index].iter().position(|e| e.id.0 == pending) {
            Some(earlier) => placed.push(placed[earlier]),
            None => {
                placed.push(None);
                unplaced.push((index, pending));
            }
        }
    }
    Some((placed, unplaced))
}

/// Whether every id of the batch is in one share only (two partitions creating one id would
/// each claim it; the coordinator answers such a batch).
fn ids_in_one_share(batch: &CreateBatch, partitions: &[u32]) -> bool {
    let ids: Vec<u128> = match batch {
        CreateBatch::Transfers(events) => events.iter().map(|t| t.id.0).collect(),
        CreateBatch::Accounts(events) => events.iter().map(|a| a.id.0).collect(),
    };
    let mut placed: Vec<(u128, u32)> = ids.into_iter().zip(partitions.iter().copied()).collect();
    placed.sort_unstable();
    placed.dedup();
    placed.windows(2).all(|pair| pair[0].0 != pair[1].0)
}

/// The events of `batch` placed in `partition`, as a batch of their own.
fn share_of(batch: &CreateBatch, partitions: &[u32], partition: u32) -> CreateBatch {
    fn pick<E: Copy>(events: &[E], partitions: &[u32], partition: u32) -> Vec<E> {
        (events.iter().zip(partitions))
            .filter(|(_, p)| **p == partition)
            .map(|(e, _)| *e)
            .collect()
    }
    match batch {
        CreateBatch::Transfers(events) => {
            CreateBatch::Transfers(pick(events, partitions, partition))
        }
        CreateBatch::Accounts(events) => CreateBatch::Accounts(pick(events, partitions, partition)),
    }
}

/// Whether `share` can run in `ledger`'s partition alone, and the ids it must claim.
fn local_run(ledger: &Ledger, share: &CreateBatch) -> Option<LocalRun> {
    match share {
        CreateBatch::Transfers(events) => ledger.local_transfers(events.iter().copied()),
        CreateBatch::Accounts(events) => ledger.local_accounts(events.iter().copied()),
    }
}

/// Claims each participant's new ids for it. `None` (with nothing left claimed) when an id is
/// held or claimed elsewhere: the batch then takes the coordinator's path, which answers it.
async fn claim(
    queues: &CoreQueues,
    kind: IdKind,
    claims: Vec<(u32, Vec<u128>)>,
) -> Result<Option<Vec<ClaimedIds>>, NodeError> {
    let claims = (claims.into_iter())
        .map(|(partition, ids)| (partition, kind, ids))
        .collect();
    let answer = queues.claim_all_for_transaction(claims).await;
    if answer.failed.is_none() && answer.refused.is_none() {
        return Ok(Some(answer.claimed));
    }
    queues.settle_claims(answer.claimed).await;
    match answer.failed {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

/// The results of a transfers batch run in shares.
pub fn transfer_results(
    results: ShareResults,
) -> Result<Vec<kassa_wire::CreateTransferResult>, NodeError> {
    match results {
        ShareResults::Transfers(results) => Ok(results),
        ShareResults::Accounts(_) => Err(NodeError::Transaction(
            "a transfers batch answered account results".into(),
        )),
    }
}

/// The results of an accounts batch run in shares.
pub fn account_results(
    results: ShareResults,
) -> Result<Vec<kassa_wire::CreateAccountResult>, NodeError> {
    match results {
        ShareResults::Accounts(results) => Ok(results),
        ShareResults::Transfers(_) => Err(NodeError::Transaction(
            "an accounts batch answered transfer results".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_wire::{AccountId, Transfer, TransferFlags, TransferId};

    fn transfer(id: u128, ledger: u32) -> Transfer {
        Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(1),
            credit_account_id: AccountId(2),
            amount: 1,
            ledger,
            code: 1,
            ..Transfer::default()
        }
    }

    /// A ledger placed in another partition of 16 than ledger 1.
    fn other_ledger() -> u32 {
        (2..)
            .find(|l| ledger_partition(*l, 16) != ledger_partition(1, 16))
            .expect("a ledger in another partition")
    }

    /// The partitions the batch tells, every event placed.
    fn placed(events: &[Transfer]) -> Option<Vec<u32>> {
        let (placed, unplaced) = placed_in_the_batch(events, 16)?;
        assert!(unplaced.is_empty(), "{unplaced:?}");
        placed.into_iter().collect()
    }

    #[test]
    fn a_batch_runs_in_shares_only_with_every_event_placed_and_each_id_in_one_share() {
        let other = other_ledger();
        let events = vec![transfer(1, 1), transfer(2, other)];
        let partitions = placed(&events).expect("every ledger named");
        let expected = vec![ledger_partition(1, 16), ledger_partition(other, 16)];
        assert_eq!(partitions, expected);
        assert!(ids_in_one_share(
            &CreateBatch::Transfers(events),
            &partitions
        ));

        // Ledger 0 on an event that is no post or void: its own fields fail it.
        assert_eq!(
            placed_in_the_batch(&[transfer(1, 1), transfer(2, 0)], 16),
            None
        );

        let twice = CreateBatch::Transfers(vec![transfer(1, 1), transfer(1, other)]);
        let partitions = vec![ledger_partition(1, 16), ledger_partition(other, 16)];
        assert!(!ids_in_one_share(&twice, &partitions));

        // One id twice in one share is that share's own business (`exists`).
        let same = vec![transfer(1, 1), transfer(1, 1), transfer(2, other)];
        let partitions = placed(&same).expect("every ledger named");
        assert!(ids_in_one_share(&CreateBatch::Transfers(same), &partitions));
    }

    #[test]
    fn a_post_or_void_of_ledger_0_goes_where_its_pending_transfer_is() {
        let other = other_ledger();
        let mut pending = transfer(1, other);
        pending.flags.set(TransferFlags::PENDING, true);
        let mut post = transfer(2, 0);
        post.pending_id = TransferId(1);
        post.flags.set(TransferFlags::POST_PENDING_TRANSFER, true);
        let mut void = transfer(3, 0);
        void.pending_id = TransferId(77);
        void.flags.set(TransferFlags::VOID_PENDING_TRANSFER, true);
        // Created earlier in the batch: its partition. Not in the batch: to be asked.
        let events = [transfer(9, 1), pending, post, void];
        let (placed, unplaced) = placed_in_the_batch(&events, 16).expect("posts and voids");
        let (here, there) = (ledger_partition(1, 16), ledger_partition(other, 16));
        assert_eq!(placed, vec![Some(here), Some(there), Some(there), None]);
        assert_eq!(unplaced, vec![(3, 77)]);
    }

    #[test]
    fn a_share_keeps_its_events_in_batch_order() {
        let other = other_ledger();
        let events = vec![transfer(1, 1), transfer(2, other), transfer(3, 1)];
        let partitions = placed(&events).expect("every ledger named");
        let batch = CreateBatch::Transfers(events);
        let CreateBatch::Transfers(share) = share_of(&batch, &partitions, partitions[0]) else {
            panic!("a transfers share");
        };
        let ids: Vec<u128> = share.iter().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![1, 3]);
    }
}
