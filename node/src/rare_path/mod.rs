//! The rare path on the node: a `create_*` batch whose events span partitions under placement
//! by ledger runs in shares, each in its own partition's log, decided by a record home
//! (`docs/transactions.md`, "Step 4 (d): the node's driver").
//!
//! Three parts, each a thin driver around a pure core of `kassa_shard`:
//! - **the requester** ([`create_in_shares`], on whatever thread serves the request): finds
//!   each event's partition, checks with each participant that its share can run there alone
//!   and claims the share's new ids for it (as the fast path does for a whole batch), then
//!   hands the batch to its record home and waits for the answer. A batch that cannot run in
//!   shares (an event without a ledger, an id in two shares, a share naming records of other
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

use kassa_shard::batch_home::CreateBatch;
use kassa_shard::directory::IdKind;
use kassa_shard::intents::ShareResults;
use kassa_shard::shares::ShareEvent;
use kassa_shard::{ledger_partition, Ledger, LocalRun};

use crate::cores::{ClaimedIds, CoreQueues};
use crate::join::join_all;
use crate::NodeError;

pub(crate) mod on_core;

use on_core::outcome_unknown;
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
    let Some(partitions) = event_partitions(&batch, queues.partitions()) else {
        return Ok(InShares::NotRunnable(batch));
    };
    let participants: BTreeSet<u32> = partitions.iter().copied().collect();
    if participants.len() < 2 || !ids_in_one_share(&batch, &partitions) {
        return Ok(InShares::NotRunnable(batch));
    }
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
            Some(run) => claims.push((partition, run.claims)),
            None => return Ok(InShares::NotRunnable(batch)),
        }
    }
    let Some(claimed) = claim(queues, kind, claims).await? else {
        return Ok(InShares::NotRunnable(batch));
    };
    let home = partitions[0];
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = crate::cores::CoreRequest::RunInShares {
        home,
        now,
        batch,
        partitions,
        reply,
    };
    let answered = match queues.sender(home).send(request).await {
        Ok(()) => answer.await.unwrap_or_else(|_| Err(outcome_unknown(home))),
        Err(_) => Err(NodeError::ShuttingDown),
    };
    // The ids are stored now, or in an intent still held (which its partition counts as
    // proposed until it resolves), or never will be.
    queues.settle_claims(claimed).await;
    answered.map(InShares::Ran)
}

/// Each event's partition: its ledger's. `None` when an event names no ledger (a post or
/// void of ledger 0 is placed by its pending transfer: the coordinator finds it) or the batch
/// is imported.
fn event_partitions(batch: &CreateBatch, partitions: u32) -> Option<Vec<u32>> {
    let ledgers: Vec<u32> = match batch {
        CreateBatch::Transfers(events) => {
            if events.first()?.imported() {
                return None;
            }
            events.iter().map(|t| t.ledger).collect()
        }
        CreateBatch::Accounts(events) => {
            if events.first()?.imported() {
                return None;
            }
            events.iter().map(|a| a.ledger).collect()
        }
    };
    (ledgers.iter())
        .map(|ledger| (*ledger != 0).then(|| ledger_partition(*ledger, partitions)))
        .collect()
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

    #[test]
    fn a_batch_runs_in_shares_only_with_every_ledger_named_and_each_id_in_one_share() {
        let other = other_ledger();
        let batch = CreateBatch::Transfers(vec![transfer(1, 1), transfer(2, other)]);
        let partitions = event_partitions(&batch, 16).expect("every ledger named");
        let expected = vec![ledger_partition(1, 16), ledger_partition(other, 16)];
        assert_eq!(partitions, expected);
        assert!(ids_in_one_share(&batch, &partitions));

        let unnamed = CreateBatch::Transfers(vec![transfer(1, 1), transfer(2, 0)]);
        assert_eq!(event_partitions(&unnamed, 16), None);

        let twice = CreateBatch::Transfers(vec![transfer(1, 1), transfer(1, other)]);
        let partitions = event_partitions(&twice, 16).expect("every ledger named");
        assert!(!ids_in_one_share(&twice, &partitions));

        // One id twice in one share is that share's own business (`exists`).
        let same = vec![transfer(1, 1), transfer(1, 1), transfer(2, other)];
        let same = CreateBatch::Transfers(same);
        let partitions = event_partitions(&same, 16).expect("every ledger named");
        assert!(ids_in_one_share(&same, &partitions));

        let mut imported = transfer(1, 1);
        imported.flags.set(TransferFlags::IMPORTED, true);
        let imported = CreateBatch::Transfers(vec![imported, transfer(2, other)]);
        assert_eq!(event_partitions(&imported, 16), None);
    }

    #[test]
    fn a_share_keeps_its_events_in_batch_order() {
        let other = other_ledger();
        let events = vec![transfer(1, 1), transfer(2, other), transfer(3, 1)];
        let batch = CreateBatch::Transfers(events);
        let partitions = event_partitions(&batch, 16).expect("every ledger named");
        let CreateBatch::Transfers(share) = share_of(&batch, &partitions, partitions[0]) else {
            panic!("a transfers share");
        };
        let ids: Vec<u128> = share.iter().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![1, 3]);
    }
}
