//! The rare path on the node: a `create_*` batch whose events span partitions under placement
//! by ledger runs in shares, each in its own partition's log, decided by a record home
//! (`docs/transactions.md`, "Step 4 (d): the node's driver").
//!
//! Three parts, each a thin driver around a pure core of `kassa_shard`:
//! - **the requester** ([`create_in_shares`], on whatever thread serves the request): finds
//!   each event's partition (`kassa_shard::share_placement`), checks with each participant
//!   that its share can run there alone and claims the share's new ids for it (as the fast
//!   path does for a whole batch), then hands the batch to its record home and waits for the
//!   answer. An id another partition holds takes its events to that partition, and the
//!   claims are made again. A batch that cannot run in shares (imported, a pending transfer
//!   stored nowhere, an id in two shares, a share naming accounts or pending transfers of
//!   other partitions, an id claimed by a batch still running elsewhere) comes back, for the
//!   coordinator.
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
use kassa_shard::directory::{ClaimAnswer, IdKind};
use kassa_shard::intents::ShareResults;
use kassa_shard::share_placement::{
    move_to_holder, of_ledger_0, place_the_rest, placed_in_the_batch, Place, PlacedEvent,
};
use kassa_shard::{Command, ForeignAnswer, Ledger, LocalRun, Reply};
use kassa_wire::TransferId;

use crate::cores::{ClaimedIds, CoreQueues, LocalWrite};
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
    /// Every event of the batch ran in one partition (its events of ledger 0 placed there,
    /// or its ids' holder): its results, in batch order.
    RanAlone(ShareResults),
    /// The batch cannot run in shares; it is given back, unchanged, for the coordinator.
    NotRunnable(CreateBatch),
}

/// Runs `batch` (placement by ledger, not one ledger's partition's alone) in shares, or in
/// the one partition its events turn out to be placed in, or gives it back when it cannot
/// run so. See the module.
pub async fn create_in_shares(
    queues: &CoreQueues,
    now: u64,
    batch: CreateBatch,
) -> Result<InShares, NodeError> {
    match run_in_shares(queues, now, batch, None).await? {
        Requested::Answered(RoundAnswer::Results(results)) => Ok(InShares::Ran(results)),
        Requested::Answered(RoundAnswer::Request(_)) => Err(NodeError::Transaction(
            "an HTTP batch answered with a wire reply".into(),
        )),
        Requested::Alone(batch, partition) => run_alone(queues, now, batch, partition).await,
        Requested::NotRunnable(batch) => Ok(InShares::NotRunnable(batch)),
    }
}

/// Writes `batch` in `partition` alone, through its fast path (which checks and claims
/// again), or gives it back if that path refuses it now.
async fn run_alone(
    queues: &CoreQueues,
    now: u64,
    batch: CreateBatch,
    partition: u32,
) -> Result<InShares, NodeError> {
    let command = match batch {
        CreateBatch::Transfers(transfers) => Command::CreateTransfers { now, transfers },
        CreateBatch::Accounts(accounts) => Command::CreateAccounts { now, accounts },
    };
    match queues.write_local(partition, command).await? {
        LocalWrite::Written(Reply::CreateTransfers(results)) => {
            Ok(InShares::RanAlone(ShareResults::Transfers(results)))
        }
        LocalWrite::Written(Reply::CreateAccounts(results)) => {
            Ok(InShares::RanAlone(ShareResults::Accounts(results)))
        }
        LocalWrite::NotLocal(Command::CreateTransfers { transfers, .. }) => {
            Ok(InShares::NotRunnable(CreateBatch::Transfers(transfers)))
        }
        LocalWrite::NotLocal(Command::CreateAccounts { accounts, .. }) => {
            Ok(InShares::NotRunnable(CreateBatch::Accounts(accounts)))
        }
        other => Err(NodeError::Transaction(format!(
            "a create batch written alone answered {other:?}"
        ))),
    }
}

/// What the requester made of a batch.
enum Requested {
    /// Its home answered a round.
    Answered(RoundAnswer),
    /// Its events are all placed in one partition: for that partition's fast path.
    Alone(CreateBatch, u32),
    /// It cannot run in shares: back, unchanged, for the coordinator.
    NotRunnable(CreateBatch),
}

/// Rounds of claims the requester makes before it gives a batch up: the first finds every
/// id held elsewhere, whose events then claim nothing; more are needed only when ids were
/// stored elsewhere meanwhile.
const CLAIM_ROUNDS_MAX: usize = 3;

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
        Requested::Answered(RoundAnswer::Request(answer)) => Ok(RequestInShares::Answered(answer)),
        Requested::Answered(RoundAnswer::Results(_)) => Err(NodeError::Transaction(
            "a wire request answered with an HTTP batch's results".into(),
        )),
        // A request's reply must be kept with its batch: one partition alone runs it as a
        // request of its own (`run_by_ledger`), which its first ledger's partition decided.
        Requested::Alone(batch, _) | Requested::NotRunnable(batch) => {
            Ok(RequestInShares::NotRunnable(batch))
        }
    }
}

/// Runs `batch` in shares (as the wire request `request` homed in its partition, if given):
/// its home's answer, or the batch back when it cannot run so, or with the one partition
/// its events are all placed in.
async fn run_in_shares(
    queues: &CoreQueues,
    now: u64,
    batch: CreateBatch,
    request: Option<(u32, WireRequest)>,
) -> Result<Requested, NodeError> {
    let Some(mut partitions) = event_partitions(queues, &batch).await? else {
        return Ok(Requested::NotRunnable(batch));
    };
    let kind = match &batch {
        CreateBatch::Transfers(_) => IdKind::Transfer,
        CreateBatch::Accounts(_) => IdKind::Account,
    };
    let mut rounds = 0;
    let claimed = loop {
        rounds += 1;
        if rounds > CLAIM_ROUNDS_MAX || !ids_in_one_share(&batch, &partitions) {
            return Ok(Requested::NotRunnable(batch));
        }
        let Some((claims, elsewhere)) = share_claims(queues, &batch, &partitions).await? else {
            return Ok(Requested::NotRunnable(batch));
        };
        // The ids of events that can run only where their id is held are claimed too: a
        // claim answered `OwnedBy` says where; one granted says nowhere, and then the event
        // cannot run in shares.
        match claim(queues, kind, claims).await? {
            Claimed::Granted(claimed) if elsewhere.is_empty() => break claimed,
            Claimed::Granted(claimed) => {
                queues.settle_claims(claimed).await;
                return Ok(Requested::NotRunnable(batch));
            }
            Claimed::OwnedBy(owned) => {
                let held = |id: &u128| owned.iter().any(|(owned, _)| owned == id);
                if !elsewhere.iter().all(held) {
                    return Ok(Requested::NotRunnable(batch));
                }
                for (id, holder) in owned {
                    move_events(&batch, &mut partitions, id, holder);
                }
            }
            Claimed::Contested => return Ok(Requested::NotRunnable(batch)),
        }
    };
    let participants: BTreeSet<u32> = partitions.iter().copied().collect();
    let home = match (&request, participants.len()) {
        (_, 0) => unreachable!("a placed batch has events"),
        (_, 1) => {
            queues.settle_claims(claimed).await;
            return Ok(Requested::Alone(batch, partitions[0]));
        }
        // A wire request's home is the one its copies reach first, a participant (its
        // first ledger's); an HTTP batch's is its first event's partition.
        (Some((home, _)), _) if participants.contains(home) => *home,
        (Some(_), _) => {
            queues.settle_claims(claimed).await;
            return Ok(Requested::NotRunnable(batch));
        }
        (None, _) => partitions[0],
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
    answered.map(Requested::Answered)
}

/// Each share's ids to claim, if it can run in its partition alone once its events listed
/// elsewhere ([`LocalRun::elsewhere`], whose ids are claimed too and returned apart) move to
/// their ids' holders. Whether a share can run only grows true (records are never removed),
/// so it still holds when the intent is written.
#[allow(clippy::type_complexity)]
async fn share_claims(
    queues: &CoreQueues,
    batch: &CreateBatch,
    partitions: &[u32],
) -> Result<Option<(Vec<(u32, Vec<u128>)>, Vec<u128>)>, NodeError> {
    let participants: BTreeSet<u32> = partitions.iter().copied().collect();
    let checks = participants.iter().map(|participant| {
        let share = share_of(batch, partitions, *participant);
        let partition = *participant;
        async move {
            // The check looks the share's transfer ids (and pending ids) up, cold ones in the
            // runs: they are read ahead, as for the fast path's check.
            let run = match &share {
                CreateBatch::Transfers(transfers) => {
                    let command = Command::CreateTransfers {
                        now: 0,
                        transfers: transfers.clone(),
                    };
                    let check = move |ledger: &Ledger| local_run(ledger, &share);
                    queues.read_checking_ids(partition, command, check).await
                }
                CreateBatch::Accounts(_) => {
                    (queues.read(partition, move |ledger| local_run(ledger, &share))).await
                }
            };
            (partition, run)
        }
    });
    let mut claims: Vec<(u32, Vec<u128>)> = Vec::new();
    let mut elsewhere: Vec<u128> = Vec::new();
    for (partition, run) in join_all(checks).await {
        let Some(run) = run? else {
            return Ok(None);
        };
        // An id twice in one share is that share's own business (`exists`); it is claimed
        // once.
        let mut ids = run.claims;
        ids.extend_from_slice(&run.elsewhere);
        ids.sort_unstable();
        ids.dedup();
        claims.push((partition, ids));
        elsewhere.extend(run.elsewhere);
    }
    Ok(Some((claims, elsewhere)))
}

/// Moves the events of `id` (and the posts and voids of ledger 0 that follow them) to
/// `holder`, which holds that id.
fn move_events(batch: &CreateBatch, partitions: &mut [u32], id: u128, holder: u32) {
    match batch {
        CreateBatch::Transfers(events) => move_to_holder(events, partitions, id, holder),
        CreateBatch::Accounts(events) => move_to_holder(events, partitions, id, holder),
    }
}

/// Each event's partition (`kassa_shard::share_placement`). A post or void of ledger 0 whose
/// pending transfer no earlier event creates goes where that transfer is stored, asked of
/// every partition (a transfer never moves, so the answer stays true). `None` when such a
/// pending transfer is nowhere yet, or when the batch is imported.
async fn event_partitions(
    queues: &CoreQueues,
    batch: &CreateBatch,
) -> Result<Option<Vec<u32>>, NodeError> {
    match batch {
        CreateBatch::Transfers(events) => placed(queues, events).await,
        CreateBatch::Accounts(events) => placed(queues, events).await,
    }
}

async fn placed<E: PlacedEvent>(
    queues: &CoreQueues,
    events: &[E],
) -> Result<Option<Vec<u32>>, NodeError> {
    let count = queues.partitions();
    let Some(places) = placed_in_the_batch(events, count) else {
        return Ok(None);
    };
    let unplaced: Vec<(usize, u128)> = (places.iter().enumerate())
        .filter_map(|(index, place)| match place {
            Place::Stored(pending) => Some((index, *pending)),
            _ => None,
        })
        .collect();
    let mut stored_in: Vec<Option<u32>> = vec![None; events.len()];
    if !unplaced.is_empty() {
        let pendings: Vec<u128> = unplaced.iter().map(|(_, p)| *p).collect();
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
                    stored_in[*index] = Some(partition);
                }
            }
        }
    }
    let leased_in = leases_of_ledger_0(queues, events).await?;
    Ok(place_the_rest(
        events,
        &places,
        |index| stored_in[index],
        |index| leased_in[index],
    ))
}

/// For each event of ledger 0 that posts nothing, the partition holding a lease that covers
/// its id, if any: the event's id is claimed where it runs, and a claim by another partition
/// would end that lease for good (`kassa_shard::directory`).
async fn leases_of_ledger_0<E: PlacedEvent>(
    queues: &CoreQueues,
    events: &[E],
) -> Result<Vec<Option<u32>>, NodeError> {
    let mut leased_in: Vec<Option<u32>> = vec![None; events.len()];
    let positions = of_ledger_0(events);
    if positions.is_empty() {
        return Ok(leased_in);
    }
    let kind = E::KIND;
    let ids: Vec<u128> = positions.iter().map(|index| events[*index].id()).collect();
    let asked = (0..queues.partitions()).map(|partition| {
        let ids = ids.clone();
        async move { (partition, queues.leases_cover(partition, kind, ids).await) }
    });
    for (partition, covered) in join_all(asked).await {
        for (index, covered) in positions.iter().zip(covered?) {
            if covered {
                leased_in[*index] = Some(partition);
            }
        }
    }
    Ok(leased_in)
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
        CreateBatch::Transfers(events) => ledger.share_transfers(events.iter().copied()),
        CreateBatch::Accounts(events) => ledger.share_accounts(events.iter().copied()),
    }
}

/// What [`claim`] got.
enum Claimed {
    /// Every id, for its share's partition: settle them once the batch is answered.
    Granted(Vec<ClaimedIds>),
    /// Ids other partitions hold, `(id, holder)` (nothing left claimed): their events run
    /// there.
    OwnedBy(Vec<(u128, u32)>),
    /// An id another batch claimed and may still store (nothing left claimed): the batch
    /// takes the coordinator's path, which answers it once that batch is done.
    Contested,
}

/// Claims each participant's new ids for it.
async fn claim(
    queues: &CoreQueues,
    kind: IdKind,
    claims: Vec<(u32, Vec<u128>)>,
) -> Result<Claimed, NodeError> {
    let claims = (claims.into_iter())
        .map(|(partition, ids)| (partition, kind, ids))
        .collect();
    let answer = queues.claim_all_for_transaction(claims).await;
    if answer.failed.is_none() && answer.refused.is_empty() {
        return Ok(Claimed::Granted(answer.claimed));
    }
    queues.settle_claims(answer.claimed).await;
    if let Some(error) = answer.failed {
        return Err(error);
    }
    let owned = (answer.refused.iter()).map(|(_, id, refusal)| match refusal {
        ClaimAnswer::OwnedBy(holder) => Some((*id, *holder)),
        _ => None,
    });
    Ok(match owned.collect::<Option<Vec<_>>>() {
        Some(owned) => Claimed::OwnedBy(owned),
        None => Claimed::Contested,
    })
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
    use kassa_shard::ledger_partition;
    use kassa_wire::{AccountId, Transfer, TransferId};

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
    fn placed(events: &[Transfer]) -> Vec<u32> {
        let places = placed_in_the_batch(events, 16).expect("placed");
        place_the_rest(events, &places, |_| unreachable!(), |_| None).expect("placed")
    }

    #[test]
    fn a_batch_runs_in_shares_only_with_each_id_in_one_share() {
        let other = other_ledger();
        let events = vec![transfer(1, 1), transfer(2, other)];
        let partitions = placed(&events);
        let expected = vec![ledger_partition(1, 16), ledger_partition(other, 16)];
        assert_eq!(partitions, expected);
        assert!(ids_in_one_share(
            &CreateBatch::Transfers(events),
            &partitions
        ));

        let twice = CreateBatch::Transfers(vec![transfer(1, 1), transfer(1, other)]);
        let partitions = vec![ledger_partition(1, 16), ledger_partition(other, 16)];
        assert!(!ids_in_one_share(&twice, &partitions));

        // One id twice in one share is that share's own business (`exists`).
        let same = vec![transfer(1, 1), transfer(1, 1), transfer(2, other)];
        let partitions = placed(&same);
        assert!(ids_in_one_share(&CreateBatch::Transfers(same), &partitions));
    }

    #[test]
    fn an_id_held_elsewhere_moves_its_events_to_the_holder() {
        let other = other_ledger();
        let batch = CreateBatch::Transfers(vec![transfer(1, 1), transfer(2, 1), transfer(1, 1)]);
        let CreateBatch::Transfers(events) = &batch else {
            unreachable!()
        };
        let mut partitions = placed(events);
        let (here, there) = (ledger_partition(1, 16), ledger_partition(other, 16));
        assert_eq!(partitions, vec![here; 3]);
        move_events(&batch, &mut partitions, 1, there);
        assert_eq!(partitions, vec![there, here, there]);
        assert!(ids_in_one_share(&batch, &partitions));
    }

    #[test]
    fn a_share_keeps_its_events_in_batch_order() {
        let other = other_ledger();
        let events = vec![transfer(1, 1), transfer(2, other), transfer(3, 1)];
        let partitions = placed(&events);
        let batch = CreateBatch::Transfers(events);
        let CreateBatch::Transfers(share) = share_of(&batch, &partitions, partitions[0]) else {
            panic!("a transfers share");
        };
        let ids: Vec<u128> = share.iter().map(|t| t.id.0).collect();
        assert_eq!(ids, vec![1, 3]);
    }
}
