//! The same operations on a cluster of partitions: every write runs as a cross-partition
//! transaction (read sets from the partitions, a scratch ledger, effects decided, applied and
//! applied again, as after a redelivery), through the commands' binary encoding. Its results
//! must equal the reference model's exactly, and the union of the partitions must hold the
//! model's state, with every partition's own invariants intact.
//!
//! Every partition is read for every batch, as if the coordinator locked them all: the
//! cluster's clock then equals the model's, so results compare exactly, timestamps included.
//!
//! Half the seeds place records by ledger (`PlacementKind::ByLedger`). There a lone batch that
//! `Ledger::local_transfers` (or `local_accounts`) lets run in one partition, and whose new ids
//! no other partition holds (what the id directory's claims would answer), runs in that
//! partition alone, as the node's fast path runs it. A lone batch that mixes ledgers runs in
//! shares through the rare path (`Cluster::run_through_home`): the record home's `BatchHome`
//! and the participants' intents, over a lossy network, with lost proposals, restarts and
//! lost home leaders. The rest take the global path above.
//! The fast path runs only when the batch's `now` is at or past every partition's clock
//! (each partition keeps its own clock under placement by ledger: with a `now` behind the
//! cluster's newest timestamp, the batch's timestamps would differ from one global clock's).
//! Consecutive create batches run together as one transaction (1 to 3, by seed), as the
//! node's coordinator runs the requests waiting for it: each with its own timestamps, and with
//! the results separate requests would get.

use kassa_shard::batch_home::{
    participant_message, BatchAction, BatchHome, CreateBatch, WireRequest,
};
use kassa_shard::directory::IdKind;
use kassa_shard::intents::{IntentShare, RareEntry, ShareResults};
use kassa_shard::parallel_commit::{HomeCommand, Message, ParticipantCommand, TxnId};
use kassa_shard::share_placement::{
    move_to_holder, place_the_rest, placed_in_the_batch, PlacedEvent,
};
use kassa_shard::shares::{split, InTheBatch, Share, ShareEvent};
use kassa_shard::{
    ledger_partition, partition_of, Command, Effects, Ledger, LedgerConfig, PendingStatus,
    Placement, PlacementKind, Reply, Scratch,
};
use kassa_shard::{
    CheckpointCut, CheckpointIncrement, CheckpointRestore, ColdStore, MemoryColdStore,
};
use kassa_wire::header::{HeaderLayout, Release};
use kassa_wire::multi_batch::{encode_to_vec, MultiBatch};
use kassa_wire::{
    Account, AccountFilter, AccountFilterFlags, AccountId, CreateAccountResult,
    CreateTransferResult, Operation, RequestHeader, Transfer, BATCH_EVENTS_MAX,
};
use std::sync::Arc;
use zerocopy::{IntoBytes, TryFromBytes};

use crate::model::check::{check_sums, same};
use crate::model::harness::{compare_output, Output};
use crate::model::ops::Op;
use crate::model::reference::{Model, Phase};
use crate::model::rng::{mix, Rng};

/// What [`Cluster::shares_runnable`] found.
enum Runnable<E> {
    /// Shares that each run in their partition alone, their new ids held nowhere else.
    Shares(Vec<Share<E>>),
    /// A new id of a share that another partition holds.
    HeldBy { id: u128, holder: u32 },
}

/// A wire client's create request for `batch`, its events cut into 1 to 3 batches of its
/// body (`wire::in_shares` runs such a request as one batch), client `run` + 1 (one client per
/// batch, so each request is its client's first).
fn wire_request(rng: &mut Rng, run: u64, now: u64, batch: &CreateBatch) -> WireRequest {
    let (operation, events, len) = match batch {
        CreateBatch::Transfers(events) => {
            (Operation::CreateTransfers, events.as_bytes(), events.len())
        }
        CreateBatch::Accounts(events) => {
            (Operation::CreateAccounts, events.as_bytes(), events.len())
        }
    };
    let mut cuts: Vec<usize> = (0..rng.below(3))
        .map(|_| rng.below(len as u64) as usize)
        .collect();
    cuts.extend([0, len]);
    cuts.sort_unstable();
    cuts.dedup();
    let batches: Vec<u32> = cuts.windows(2).map(|w| (w[1] - w[0]) as u32).collect();
    let size = operation.event_size();
    let slices: Vec<&[u8]> = cuts
        .windows(2)
        .map(|w| &events[w[0] * size..w[1] * size])
        .collect();
    let body = encode_to_vec(size, &slices).expect("a batch encodes");
    let client = u128::from(run) + 1;
    let mut header = RequestHeader::new(0, client, Release::new(0, 17, 8), operation.as_u8());
    header.session = 1;
    header.request = 1;
    header.parent = u128::from(now);
    header.frame.size = (256 + body.len()) as u32;
    header.seal(&body);
    WireRequest { header, batches }
}

/// The results of the reply `home` keeps for `request`, if it keeps one: a reply sealed for
/// exactly that request, over a body cut into the request's batches.
fn kept_results(home: &Ledger, request: &WireRequest, batch: &CreateBatch) -> Option<ShareResults> {
    let header = &request.header;
    let (reply, body) = home.foreign_requests().latest_reply(header.client)?;
    assert!(reply.valid_checksum() && reply.valid_checksum_body(body));
    assert_eq!(reply.request, header.request);
    assert_eq!(reply.request_checksum, header.frame.checksum);
    assert_eq!(reply.operation, header.operation);
    let decoded = MultiBatch::decode(body, 16, BATCH_EVENTS_MAX).expect("a body");
    let batches: Vec<&[u8]> = decoded.batches().collect();
    let lens: Vec<u32> = batches.iter().map(|b| (b.len() / 16) as u32).collect();
    assert_eq!(
        lens, request.batches,
        "one batch of results per batch of events"
    );
    let results = batches.concat();
    Some(match batch {
        CreateBatch::Transfers(_) => ShareResults::Transfers(
            <[CreateTransferResult]>::try_ref_from_bytes(&results)
                .expect("results")
                .to_vec(),
        ),
        CreateBatch::Accounts(_) => ShareResults::Accounts(
            <[CreateAccountResult]>::try_ref_from_bytes(&results)
                .expect("results")
                .to_vec(),
        ),
    })
}

/// Batches run in one partition alone over a whole run (placement by ledger), so the test can
/// check that the fast path was taken at all.
pub static LOCAL_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Batches run in shares over several partitions, and the rounds that marked a chain broken
/// (placement by ledger; see `Cluster::run_shares`).
pub static SHARE_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static SHARE_ROUNDS_AGAIN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Batches whose results the rounds changed: the first round's were not one partition's.
pub static SHARE_ROUNDS_CHANGED: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
/// Record home leaders lost while a batch in shares ran; batches whose outcome was then
/// unknown and that a recovery applied, and those sent again since nothing applied.
pub static LEADERS_LOST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static SHARE_RECOVERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static SHARE_RETRIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Wire requests whose outcome was unknown, applied by a recovery, whose retry got the reply
/// the home kept.
pub static WIRE_RETRIES_ANSWERED: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);
/// Transfers read from the partitions' cold stores (lookups, posts, voids and retries of
/// transfers a durable checkpoint took out of memory).
pub static COLD_TRANSFER_READS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for Cluster {
    fn drop(&mut self) {
        for store in &self.stores {
            count_cold_reads(store);
        }
    }
}

fn count_cold_reads(store: &MemoryColdStore) {
    let reads = store.reads(kassa_shard::Keyspace::Transfers);
    COLD_TRANSFER_READS.fetch_add(reads, std::sync::atomic::Ordering::Relaxed);
}

pub struct Cluster {
    pub count: u32,
    pub partitions: Vec<Ledger>,
    /// Create batches waiting to run as one transaction, with the model's outputs.
    waiting: Vec<(Op, Output)>,
    /// How many batches one transaction takes (1 to 3, by seed).
    group_max: usize,
    /// The imported timestamps of the batch being run.
    timestamps: Vec<u64>,
    hash_seed: u64,
    pub placement: PlacementKind,
    /// Batches that ran in one partition alone (placement by ledger).
    pub local_runs: usize,
    /// Batches that ran in shares over several partitions (placement by ledger).
    pub share_runs: usize,
    /// The last round run in shares: each is one transaction of the rare path, numbered at
    /// its record home.
    share_txns: u64,
    /// Every decision a home's log applied (the home's records forget them once every
    /// participant resolved them).
    home_decisions: std::collections::BTreeMap<TxnId, kassa_shard::parallel_commit::Outcome>,
    /// Per partition, the checkpoints taken so far and the cut of the last one.
    checkpoints: Vec<(CheckpointCut, Vec<CheckpointIncrement>)>,
    /// Restores so far: every other one is from the checkpoints, the others from snapshots.
    restores: u64,
    /// Per partition, the cold store holding its checkpoints' entries: change entries a
    /// durable checkpoint covers are read from there.
    stores: Vec<Arc<MemoryColdStore>>,
}

fn config(partition: u32, count: u32, hash_seed: u64, placement: PlacementKind) -> LedgerConfig {
    LedgerConfig {
        partition,
        partitions: count,
        hash_seed,
        placement,
        ..LedgerConfig::default()
    }
}

impl Cluster {
    pub fn new(seed: u64) -> Cluster {
        let count = 2 + (seed % 4) as u32;
        let placement = if (seed >> 20) & 1 == 1 {
            PlacementKind::ByLedger
        } else {
            PlacementKind::ById
        };
        let stores: Vec<Arc<MemoryColdStore>> = (0..count)
            .map(|_| Arc::new(MemoryColdStore::new()))
            .collect();
        let partitions = (0..count)
            .map(|p| {
                let mut ledger = Ledger::new(config(p, count, seed, placement));
                ledger.attach_cold_store(stores[p as usize].clone());
                ledger
            })
            .collect();
        Cluster {
            count,
            partitions,
            waiting: Vec::new(),
            group_max: 1 + (seed / 4 % 3) as usize,
            timestamps: Vec::new(),
            hash_seed: seed,
            placement,
            local_runs: 0,
            share_runs: 0,
            share_txns: 0,
            home_decisions: Default::default(),
            checkpoints: vec![Default::default(); count as usize],
            restores: 0,
            stores,
        }
    }

    /// Takes a write operation and the model's output for it. Create batches queue up and run
    /// together as one transaction (as the node's coordinator groups waiting requests) once
    /// `group_max` are waiting; an expiry runs alone. Returns whether it took the operation.
    pub fn write(&mut self, op: &Op, expected: &Output) -> bool {
        match op {
            Op::CreateAccounts { .. } | Op::CreateTransfers { .. } => {
                self.waiting.push((op.clone(), expected.clone()));
                if self.waiting.len() >= self.group_max {
                    self.flush();
                }
                true
            }
            Op::ExpirePendingTransfers { now } => {
                self.flush();
                self.timestamps.clear();
                // Due by the cluster's clock, as the scratch ledger will judge them.
                let clock = self.partitions.iter().map(Ledger::timestamp).max();
                let time = clock.unwrap_or(0).max(*now);
                let due: Vec<Transfer> = self
                    .partitions
                    .iter()
                    .flat_map(|p| p.expiries_due(time, BATCH_EVENTS_MAX))
                    .collect();
                let accounts: Vec<u128> = due
                    .iter()
                    .flat_map(|t| [t.debit_account_id.0, t.credit_account_id.0])
                    .collect();
                let ids: Vec<u128> = due.iter().map(|t| t.id.0).collect();
                let mut scratch = self.scratch(&accounts, &ids);
                let expired = scratch.ledger().expire_pending_transfers(*now);
                self.commit(&scratch);
                compare_output("the cluster", expected, &Output::Count(expired));
                true
            }
            _ => false,
        }
    }

    /// Whether every operation taken has run.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Runs the waiting create batches as one transaction and compares their results.
    pub fn flush(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.waiting);
        if let [(op, expected)] = &waiting[..] {
            if self.run_local(op, expected) {
                self.local_runs += 1;
                LOCAL_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::model::stats::note(|| "cluster: batch run in its ledger's partition".into());
                return;
            }
            if self.run_shares(op, expected) {
                self.share_runs += 1;
                SHARE_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                crate::model::stats::note(|| "cluster: batch run in shares".into());
                return;
            }
            if self.placement == PlacementKind::ByLedger {
                crate::model::stats::note(|| "cluster: by ledger, global path".into());
            }
        }
        let mut accounts = Vec::new();
        let mut transfers = Vec::new();
        self.timestamps.clear();
        for (op, _) in &waiting {
            match op {
                Op::CreateAccounts { events, .. } => {
                    accounts.extend(events.iter().map(|a| a.id.0));
                    self.timestamps.extend(events.iter().map(|a| a.timestamp));
                }
                Op::CreateTransfers { events, .. } => {
                    for t in events {
                        accounts.extend([t.debit_account_id.0, t.credit_account_id.0]);
                        transfers.extend([t.id.0, t.pending_id.0]);
                        self.timestamps.push(t.timestamp);
                    }
                }
                _ => unreachable!("only create batches wait"),
            }
        }
        transfers.retain(|id| *id != 0);
        // A second round for the accounts of the pending transfers named.
        let found = self.read(&[], &transfers);
        for (t, _) in found.iter().flat_map(|r| &r.transfers) {
            accounts.extend([t.debit_account_id.0, t.credit_account_id.0]);
        }
        let mut scratch = self.scratch(&accounts, &transfers);
        let mut outputs = Vec::new();
        for (op, _) in &waiting {
            outputs.push(match op {
                Op::CreateAccounts { now, events } => {
                    let mut results: Vec<CreateAccountResult> = Vec::new();
                    scratch.ledger().create_accounts(*now, events, &mut results);
                    Output::AccountResults(results)
                }
                Op::CreateTransfers { now, events } => {
                    let mut results: Vec<CreateTransferResult> = Vec::new();
                    scratch
                        .ledger()
                        .create_transfers(*now, events, &mut results);
                    Output::TransferResults(results)
                }
                _ => unreachable!("only create batches wait"),
            });
        }
        self.commit(&scratch);
        for ((_, expected), actual) in waiting.iter().zip(&outputs) {
            compare_output("the cluster", expected, actual);
        }
    }

    /// Runs a lone batch in one partition, as the node's fast path does under placement by
    /// ledger, if it can run there; `false` when it takes the global path.
    fn run_local(&mut self, op: &Op, expected: &Output) -> bool {
        if self.placement != PlacementKind::ByLedger {
            return false;
        }
        let clock = self.partitions.iter().map(Ledger::timestamp).max();
        let (now, kind) = match op {
            Op::CreateAccounts { now, .. } => (*now, IdKind::Account),
            Op::CreateTransfers { now, .. } => (*now, IdKind::Transfer),
            _ => return false,
        };
        if now < clock.unwrap_or(0) {
            return false;
        }
        // The partition the batch goes to: its first ledger's, else its first pending
        // transfer's holder, else any (its events then fail on their own fields).
        let named_ledger = match op {
            Op::CreateAccounts { events, .. } => events.iter().map(|a| a.ledger).find(|l| *l != 0),
            Op::CreateTransfers { events, .. } => events.iter().map(|t| t.ledger).find(|l| *l != 0),
            _ => None,
        };
        let holder_of_pending = || match op {
            Op::CreateTransfers { events, .. } => events.iter().find_map(|t| {
                let id = kassa_wire::TransferId(t.pending_id.0);
                (0..self.count).find(|p| {
                    self.partitions[*p as usize]
                        .contains_transfer(id)
                        .expect("in memory or the store")
                })
            }),
            _ => None,
        };
        let partition = match named_ledger {
            Some(ledger) => ledger_partition(ledger, self.count),
            None => holder_of_pending().unwrap_or(0),
        };
        let ledger = &self.partitions[partition as usize];
        let run = match op {
            Op::CreateAccounts { events, .. } if !events.is_empty() => {
                ledger.local_accounts(events.iter().copied())
            }
            Op::CreateTransfers { events, .. } if !events.is_empty() => {
                ledger.local_transfers(events.iter().copied())
            }
            _ => None,
        };
        let Some(run) = run else {
            return false;
        };
        // The claims: an id another partition holds is owned there.
        let others = self
            .partitions
            .iter()
            .filter(|p| p.config().partition != partition);
        let others: Vec<&Ledger> = others.collect();
        if (run.claims.iter()).any(|id| others.iter().any(|p| p.holds(kind, *id))) {
            return false;
        }
        let command = match op.clone() {
            Op::CreateAccounts { now, events } => Command::CreateAccounts {
                now,
                accounts: events,
            },
            Op::CreateTransfers { now, events } => Command::CreateTransfers {
                now,
                transfers: events,
            },
            _ => unreachable!("a create batch"),
        };
        let output = match self.partitions[partition as usize].apply(round_trip(command)) {
            Reply::CreateAccounts(results) => Output::AccountResults(results),
            Reply::CreateTransfers(results) => Output::TransferResults(results),
            other => panic!("a create batch answered {other:?}"),
        };
        compare_output("the cluster's local run", expected, &output);
        true
    }

    /// Runs a lone batch that mixes ledgers as step 4's rare path will (`kassa_shard::shares`):
    /// each partition runs the events of its ledgers on its own records, in rounds until every
    /// chain across partitions held everywhere or was marked broken. `false` when the batch
    /// is not one for it; it then takes the global path.
    ///
    /// The events are placed as the node's requester places them ([`Cluster::placed_shares`]),
    /// and the same conditions as the fast path's hold for each share: its events can run in
    /// its partition alone (`local_transfers`), their new ids are held nowhere else, and no
    /// new id is in two shares (what the participants' claims would answer). Imported batches
    /// and posts or voids of ledger 0 whose pending transfer is nowhere keep to the global
    /// path, and so does a `now` behind a partition's clock.
    fn run_shares(&mut self, op: &Op, expected: &Output) -> bool {
        if self.placement != PlacementKind::ByLedger {
            return false;
        }
        let clock = self.partitions.iter().map(Ledger::timestamp).max();
        let output = match op {
            Op::CreateTransfers { now, events } if *now >= clock.unwrap_or(0) => {
                let run = |ledger: &Ledger, share: &Share<Transfer>| {
                    ledger.share_transfers(share.events.iter().copied())
                };
                let Some((partitions, shares)) = self.placed_shares(events, IdKind::Transfer, run)
                else {
                    return false;
                };
                let first = self.first_round(&shares, |ledger, share, batch| {
                    ledger.create_transfers_intent(*now, share, batch)
                });
                let batch = CreateBatch::Transfers(events.clone());
                let Some(results) = self.run_through_home(*now, &batch, &partitions) else {
                    return true; // Applied by a recovery: its results were never told.
                };
                let ShareResults::Transfers(results) = results else {
                    panic!("a transfers batch answered other results");
                };
                note_rounds(first != results);
                Output::TransferResults(results)
            }
            Op::CreateAccounts { now, events } if *now >= clock.unwrap_or(0) => {
                let run = |ledger: &Ledger, share: &Share<Account>| {
                    ledger.share_accounts(share.events.iter().copied())
                };
                let Some((partitions, shares)) = self.placed_shares(events, IdKind::Account, run)
                else {
                    return false;
                };
                let first = self.first_round(&shares, |ledger, share, batch| {
                    ledger.create_accounts_intent(*now, share, batch)
                });
                let batch = CreateBatch::Accounts(events.clone());
                let Some(results) = self.run_through_home(*now, &batch, &partitions) else {
                    return true; // Applied by a recovery: its results were never told.
                };
                let ShareResults::Accounts(results) = results else {
                    panic!("an accounts batch answered other results");
                };
                note_rounds(first != results);
                Output::AccountResults(results)
            }
            _ => return false,
        };
        compare_output("the cluster's shares", expected, &output);
        true
    }

    /// Each event's partition and the batch's shares, as the node's requester places them
    /// (`kassa_shard::share_placement`): by ledger, a post or void of ledger 0 with its pending
    /// transfer, other events of ledger 0 with their chain, and an id another partition holds
    /// moved to that partition (what the id directory's claims answer). `None` when the batch
    /// is not one for the shares: imported, a pending transfer stored nowhere, a share its
    /// partition cannot run alone, an id in two shares, or all in one partition.
    fn placed_shares<E: PlacedEvent>(
        &self,
        events: &[E],
        kind: IdKind,
        local: impl Fn(&Ledger, &Share<E>) -> Option<kassa_shard::LocalRun>,
    ) -> Option<(Vec<u32>, Vec<Share<E>>)> {
        let places = placed_in_the_batch(events, self.count)?;
        let stored = |index: usize| {
            let id = kassa_wire::TransferId(events[index].pending_of_ledger_0());
            (0..self.count).find(|p| {
                self.partitions[*p as usize]
                    .contains_transfer(id)
                    .expect("in memory or the store")
            })
        };
        // No leases here: every claim is a claim of the partition's own.
        let mut partitions = place_the_rest(events, &places, stored, |_| None)?;
        // Each move takes every event of one id to the partition holding it, where it needs
        // no claim (unless a post follows both its own id and its pending id).

        for _ in 0..=events.len() {
            match self.shares_runnable(events, &partitions, kind, &local)? {
                Runnable::Shares(shares) => return Some((partitions, shares)),
                Runnable::HeldBy { id, holder } => {
                    crate::model::stats::note(|| {
                        "cluster: an id's events moved to its holder".into()
                    });
                    move_to_holder(events, &mut partitions, id, holder);
                }
            }
        }
        // Moves that take turns (a post whose own id and pending id are held in two
        // partitions): the node gives such a batch up after `CLAIM_ROUNDS_MAX` too.
        crate::model::stats::note(|| "cluster: placement did not settle".into());
        None
    }

    /// The batch's shares, if there are several and each can run in its partition alone, or
    /// an id one of them must claim that another partition holds.
    fn shares_runnable<E: ShareEvent>(
        &self,
        events: &[E],
        partitions: &[u32],
        kind: IdKind,
        local: impl Fn(&Ledger, &Share<E>) -> Option<kassa_shard::LocalRun>,
    ) -> Option<Runnable<E>> {
        let shares = split(events, partitions);
        let mut claimed: Vec<(u128, u32)> = Vec::new();
        for share in &shares {
            let run = local(&self.partitions[share.partition as usize], share)?;
            // An event listed elsewhere runs where its id is held, or not in shares at all.
            if let Some(id) = run.elsewhere.first() {
                let holder = (self.partitions.iter()).find(|p| p.holds(kind, *id))?;
                let holder = holder.config().partition;
                return Some(Runnable::HeldBy { id: *id, holder });
            }
            for id in run.claims {
                let others =
                    (self.partitions.iter()).filter(|p| p.config().partition != share.partition);
                if let Some(holder) = others.clone().find(|p| p.holds(kind, id)) {
                    let holder = holder.config().partition;
                    return Some(Runnable::HeldBy { id, holder });
                }
                claimed.push((id, share.partition));
            }
        }
        claimed.sort_unstable();
        claimed.dedup();
        if claimed.windows(2).any(|w| w[0].0 == w[1].0) || shares.len() < 2 {
            return None;
        }
        Some(Runnable::Shares(shares))
    }

    /// Runs a batch spanning partitions through the record home's pure core (`BatchHome`) and
    /// the participants' log entries (`kassa_shard::intents`), as a client would: when the
    /// home's leader is lost and the outcome is unknown, the batch either applied (a recovery
    /// found its round staged and every intent held: `None`, its results never told) or did
    /// not, and then the client sends it again. Returns the results when answered.
    fn run_through_home(
        &mut self,
        now: u64,
        batch: &CreateBatch,
        partitions: &[u32],
    ) -> Option<ShareResults> {
        let seed = mix(self.hash_seed ^ self.share_runs as u64);
        let mut rng = Rng::new(seed);
        // Half the batches are a wire client's request: their stage carries the reply, which
        // the home keeps for every copy (the client's retries below).
        let run = self.share_runs as u64;
        let wire = rng.chance(50);
        let request = wire.then(|| wire_request(&mut rng, run, now, batch));
        for attempt in 0.. {
            let first_number = self.share_txns + 1;
            // The third attempt keeps its leader, so the batch ends.
            let (answer, home_partition) = self.attempt(
                &mut rng,
                now,
                batch,
                partitions,
                request.clone(),
                attempt < 2,
            );
            let home = &self.partitions[home_partition as usize];
            let kept = (request.as_ref()).and_then(|request| kept_results(home, request, batch));
            if let (Some(answer), Some(request)) = (&answer, &request) {
                // The reply kept is the answer, sealed.
                let kept = kept
                    .clone()
                    .expect("a committed wire round keeps its reply");
                assert_eq!(&kept, answer, "seed {seed}: {request:?} kept other results");
            }
            if answer.is_some() {
                return answer;
            }
            let applied = (first_number..self.share_txns)
                .filter(|number| {
                    let txn = TxnId {
                        home: home_partition,
                        number: *number,
                    };
                    let decided = self.home_decisions.get(&txn);
                    decided == Some(&kassa_shard::parallel_commit::Outcome::Applied)
                })
                .count();
            assert!(applied <= 1, "seed {seed}: a batch applied {applied} times");
            if request.is_some() {
                // The home keeps a reply exactly when a round of the request committed.
                assert_eq!(
                    kept.is_some(),
                    applied == 1,
                    "seed {seed}: a reply kept wrongly"
                );
            }
            if applied == 1 {
                SHARE_RECOVERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if kept.is_some() {
                    // A wire client's retry gets the reply the home kept: the results of the
                    // round that committed, checked against the reference like any answer.
                    WIRE_RETRIES_ANSWERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                return kept;
            }
            SHARE_RETRIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            assert!(
                attempt < 2,
                "seed {seed}: the last attempt's leader was kept"
            );
        }
        unreachable!()
    }

    /// One attempt of [`Cluster::run_through_home`]: the home's leader is lost now and then
    /// (if `may_lose_leader`), each entry it appended but its log had not applied committing
    /// or vanishing, and a new leader takes over with no memory. Messages are dropped,
    /// doubled, delayed and reordered, proposals lost now and then in every log, and
    /// participants restart from their snapshots while they hold an intent. Runs until the
    /// batch is answered or its outcome is unknown, nothing is in flight and no intent is
    /// held. Every entry goes through its encoding. Returns the answer, if any, and the home.
    fn attempt(
        &mut self,
        rng: &mut Rng,
        now: u64,
        batch: &CreateBatch,
        partitions: &[u32],
        request: Option<WireRequest>,
        may_lose_leader: bool,
    ) -> (Option<ShareResults>, u32) {
        let home_partition = partitions[rng.below(partitions.len() as u64) as usize];
        let first_number = self.share_txns + 1;
        let mut home = BatchHome::new(home_partition, first_number);
        let mut net = Network::default();
        let mut actions = Vec::new();
        let mut now_ms = 0;
        home.begin(BATCH, request, now, batch, partitions, now_ms, &mut actions)
            .expect("a batch split by ledger begins");
        let mut home_log: Vec<RareEntry> = Vec::new();
        let mut answer: Option<ShareResults> = None;
        let mut unknown = false;
        let mut held_since: std::collections::BTreeMap<u32, u64> = Default::default();
        for step in 0.. {
            assert!(step < 20_000, "the batch never settled");
            for action in std::mem::take(&mut actions) {
                match action {
                    BatchAction::Send { to, message } => net.send(rng, now_ms, to, message, None),
                    BatchAction::Append(command) => {
                        if !rng.chance(5) {
                            home_log.push(command);
                        }
                    }
                    BatchAction::Answer { batch, results } => {
                        assert_eq!(batch, BATCH);
                        assert!(answer.replace(results).is_none(), "answered twice");
                    }
                    BatchAction::Unknown { batch } => {
                        assert_eq!(batch, BATCH);
                        assert!(answer.is_none() && !unknown, "answered twice");
                        unknown = true;
                    }
                }
            }
            if may_lose_leader && answer.is_none() && !unknown && rng.chance(3) {
                // The leader is lost: what it appended commits or vanishes, and the next
                // leader numbers its rounds above every number used.
                let next = BatchHome::new(home_partition, home.number_next());
                std::mem::replace(&mut home, next).deposed(&mut actions);
                for entry in std::mem::take(&mut home_log) {
                    if rng.chance(50) {
                        self.apply_home_entry(
                            &mut home,
                            home_partition,
                            entry,
                            now_ms,
                            &mut actions,
                        );
                    }
                }
                LEADERS_LOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let settled = (answer.is_some() || unknown)
                && net.is_empty()
                && self.partitions.iter().all(|p| p.holder().is_none());
            if settled {
                break;
            }
            now_ms += 10;
            // The home's log applies what its leader appended.
            for entry in std::mem::take(&mut home_log) {
                self.apply_home_entry(&mut home, home_partition, entry, now_ms, &mut actions);
            }
            for (to, message, results) in net.due(now_ms) {
                let command = match message {
                    Message::Intent { txn, effects } => ParticipantCommand::Intent { txn, effects },
                    Message::Prevent { txn } => ParticipantCommand::Prevent { txn },
                    Message::Resolve { txn, outcome } => {
                        ParticipantCommand::Resolve { txn, outcome }
                    }
                    Message::Forget { home, from, below } => {
                        ParticipantCommand::Forget { home, from, below }
                    }
                    message => {
                        assert_eq!(to, home_partition);
                        let records = self.partitions[home_partition as usize].home_records();
                        let received =
                            home.received(message, results, records, true, now_ms, &mut actions);
                        received.expect("correct partitions send what the home takes");
                        continue;
                    }
                };
                if rng.chance(5) {
                    continue; // A lost proposal: the home sends again, or the participant asks.
                }
                let reply = self.rare(to, RareEntry::Participant(command.clone()));
                let Reply::Participant(reply) = reply else {
                    panic!("a participant entry answered {reply:?}");
                };
                if let Some((home_to, message, results)) = participant_message(to, &command, &reply)
                {
                    net.send(rng, now_ms, home_to, message, results);
                }
            }
            let records = self.partitions[home_partition as usize].home_records();
            home.tick(records, true, now_ms, &mut actions);
            // A participant holding an intent long asks its home; now and then one restarts.
            for p in 0..self.count {
                let Some(txn) = self.partitions[p as usize].holder() else {
                    held_since.remove(&p);
                    continue;
                };
                if rng.chance(2) {
                    self.check_held(p, txn, now);
                }
                let since = *held_since.entry(p).or_insert(now_ms);
                if now_ms >= since + ASK_AFTER_MS {
                    held_since.insert(p, now_ms);
                    net.send(rng, now_ms, txn.home, Message::Ask { txn, from: p }, None);
                }
            }
        }
        assert_eq!(home.running(), 0);
        self.share_txns = home.number_next();
        if answer.is_some() && first_number + 1 < home.number_next() {
            // Rounds dropped for a chain that broke across partitions (or aborted by a recovery).
            let again = home.number_next() - first_number - 1;
            SHARE_ROUNDS_AGAIN.fetch_add(again, std::sync::atomic::Ordering::Relaxed);
        }
        (answer, home_partition)
    }

    /// The home's log applies `entry`, and its leader `home` learns what it answered.
    fn apply_home_entry(
        &mut self,
        home: &mut BatchHome,
        home_partition: u32,
        entry: RareEntry,
        now_ms: u64,
        actions: &mut Vec<BatchAction>,
    ) {
        let command = entry.home_command().expect("a home appends home entries");
        let reply = self.rare(home_partition, entry);
        let Reply::Home(applied) = reply else {
            panic!("a home entry answered {reply:?}");
        };
        let records = self.partitions[home_partition as usize].home_records();
        home.applied(&command, applied, records, now_ms, actions);
    }

    /// What the first round's results would be (no chain marked), computed on the
    /// partitions as they are, to count the batches whose rounds changed them.
    fn first_round<E: Clone, S, R: Copy>(
        &self,
        shares: &[Share<E>],
        intent: impl Fn(&Ledger, &Share<E>, &InTheBatch<S>) -> Intent<R>,
    ) -> Vec<R> {
        let batch_len: usize = shares.iter().map(|s| s.events.len()).sum();
        let mut results: Vec<Option<R>> = vec![None; batch_len];
        for share in shares {
            let batch = InTheBatch {
                batch_len: batch_len as u32,
                batch_imported: false,
                forced: Vec::new(),
            };
            let ledger = &self.partitions[share.partition as usize];
            let (out, _) = intent(ledger, share, &batch).expect("a share split from a batch runs");
            for (position, result) in share.positions.iter().zip(out) {
                results[*position as usize] = Some(result);
            }
        }
        results.into_iter().map(|r| r.expect("a result")).collect()
    }

    /// Applies a rare-path entry to `partition`'s ledger as its log would carry it.
    fn rare(&mut self, partition: u32, entry: RareEntry) -> Reply {
        let command = round_trip(Command::Rare(Box::new(entry.clone())));
        let reply = self.partitions[partition as usize].apply(command);
        use kassa_shard::parallel_commit::HomeAnswer;
        if let (
            RareEntry::Home(HomeCommand::Finish { txn, .. }),
            Reply::Home(HomeAnswer::Finished(outcome)),
        ) = (&entry, &reply)
        {
            let before = *self.home_decisions.entry(*txn).or_insert(*outcome);
            assert_eq!(before, *outcome, "{txn:?} decided twice");
        }
        reply
    }

    /// While `txn`'s intent holds `partition`: writes are refused and change nothing, another
    /// transaction's intent is busy, and a restart from a snapshot keeps the intent.
    fn check_held(&mut self, partition: u32, txn: TxnId, now: u64) {
        let index = partition as usize;
        assert_eq!(self.partitions[index].holder(), Some(txn));
        let mut before = Vec::new();
        self.partitions[index].snapshot(&mut before);
        let write = round_trip(Command::CreateTransfers {
            now,
            transfers: Vec::new(),
        });
        let pulse = Command::ExpirePendingTransfers { now };
        for command in [write, pulse] {
            let held = Reply::Held {
                holder: txn,
                command: Box::new(command.clone()),
            };
            assert_eq!(self.partitions[index].apply(command), held);
        }
        let mut after = Vec::new();
        self.partitions[index].snapshot(&mut after);
        assert!(before == after, "a refused write changed the partition");
        let config = config(partition, self.count, self.hash_seed, self.placement);
        let restored = Ledger::restore(config, &after).expect("a held partition restores");
        assert_eq!(restored.holder(), Some(txn));
        assert_eq!(
            restored.participant().intent(txn),
            self.partitions[index].participant().intent(txn)
        );
        self.partitions[index] = restored;
        self.restarted_from_snapshot(index);
    }

    /// Applies a decided transaction's effects on `partition`, then again as a redelivery,
    /// which must change nothing.
    fn apply_twice(&mut self, partition: u32, decider: u32, txn: u64, effects: Effects) {
        let apply = round_trip(Command::Apply {
            decider,
            txn,
            effects,
        });
        let ledger = &mut self.partitions[partition as usize];
        let fresh = Reply::Applied {
            client_replies: Some(Vec::new()),
        };
        assert_eq!(ledger.apply(apply.clone()), fresh);
        let again = Reply::Applied {
            client_replies: None,
        };
        assert_eq!(ledger.apply(apply), again);
    }

    fn read(&self, accounts: &[u128], transfers: &[u128]) -> Vec<kassa_shard::ReadSet> {
        let reads = self.partitions.iter();
        let timestamps = &self.timestamps;
        reads
            .map(|p| {
                p.read_set(accounts, transfers, timestamps)
                    .expect("cold reads")
            })
            .collect()
    }

    fn scratch(&self, accounts: &[u128], transfers: &[u128]) -> Scratch {
        let placement = Placement::new(self.placement, self.count);
        Scratch::new(placement, &self.read(accounts, transfers))
    }

    /// Decides at partition 0 (the lowest locked), applies everywhere twice, then `Done`.
    fn commit(&mut self, scratch: &Scratch) {
        let decider = 0;
        let decision = scratch.decision(decider);
        let shares = decision.shares_except(decider);
        let decide = round_trip(Command::Decide {
            decision: std::sync::Arc::new(decision),
        });
        let Reply::Decided { txn, .. } = self.partitions[decider as usize].apply(decide) else {
            panic!("Decide answered something else");
        };
        // A snapshot keeps the decision until `Done` (a restart before the applies).
        let mut bytes = Vec::new();
        self.partitions[decider as usize].snapshot(&mut bytes);
        let config = config(decider, self.count, self.hash_seed, self.placement);
        let restored = Ledger::restore(config, &bytes);
        self.partitions[decider as usize] = restored.expect("the decider restores");
        self.restarted_from_snapshot(decider as usize);
        // What a restart would redeliver is exactly what the coordinator delivers.
        let undelivered = self.partitions[decider as usize].undelivered_decisions();
        if shares.is_empty() {
            assert!(undelivered.is_empty());
        } else {
            assert_eq!(undelivered, vec![(txn, shares.clone())]);
        }
        for (partition, effects) in shares {
            self.apply_twice(partition, decider, txn, effects);
        }
        let done = round_trip(Command::Done { txn });
        assert_eq!(self.partitions[decider as usize].apply(done), Reply::Done);
        assert!(self.partitions[decider as usize]
            .undelivered_decisions()
            .is_empty());
    }

    /// A partition restored from a whole snapshot starts a new chain of checkpoints: its
    /// first is full, as a node's after it installs a snapshot.
    fn restarted_from_snapshot(&mut self, index: usize) {
        self.checkpoints[index] = Default::default();
        let store = Arc::new(MemoryColdStore::new());
        self.partitions[index].attach_cold_store(store.clone());
        count_cold_reads(&self.stores[index]);
        self.stores[index] = store;
    }

    /// Snapshots and checkpoints every partition and continues on the restored copies
    /// (restore checks them): every other time restored from the chain of checkpoints taken
    /// so far, the other times from the snapshot. Either must give the snapshot's bytes.
    pub fn snapshot_restore(&mut self, hash_seed: u64) {
        let mut bytes = Vec::new();
        self.restores += 1;
        let from_checkpoints = self.restores % 2 == 0;
        for (p, ledger) in self.partitions.iter_mut().enumerate() {
            let (durable, increments) = &mut self.checkpoints[p];
            let increment = ledger.checkpoint_increment(*durable).expect("cold reads");
            // The store holds a checkpoint's entries before it counts as durable, and the
            // change entries it covers then leave memory.
            let store = &self.stores[p];
            store.add(&increment);
            ledger.checkpoint_durable(increment.cut);
            increments.push(increment);
            ledger.snapshot(&mut bytes);
            let config = config(p as u32, self.count, hash_seed, self.placement);
            let restored = if from_checkpoints {
                let chain: Vec<&CheckpointIncrement> = increments.iter().collect();
                let cold: Arc<dyn ColdStore> = store.clone();
                let restored = CheckpointRestore::from_increments(config, &chain, Some(cold));
                restored.map(|(ledger, _)| ledger)
            } else {
                Ledger::restore(config, &bytes).map(|mut ledger| {
                    ledger.attach_cold_store(store.clone());
                    ledger
                })
            };
            *ledger = restored.unwrap_or_else(|e| panic!("partition {p}: restore: {e}"));
            let mut again = Vec::new();
            ledger.snapshot(&mut again);
            assert!(again == bytes, "partition {p}: the restored ledger differs");
            // The restored ledger starts a new list of status changes.
            let last = increments.last().expect("taken").cut;
            *durable = CheckpointCut {
                status_changes: 0,
                ..last
            };
        }
    }

    /// The union of the partitions is the model's state, and each partition is valid.
    pub fn check(&self, model: &Model) {
        for ledger in &self.partitions {
            ledger.validate();
        }
        let clock = self.partitions.iter().map(Ledger::timestamp).max();
        assert_eq!(clock, Some(model.timestamp), "cluster clock");
        let mut accounts: Vec<Account> = self
            .partitions
            .iter()
            .flat_map(|p| p.accounts().to_vec())
            .collect();
        accounts.sort_by_key(|a| a.timestamp);
        same("cluster accounts", &model.accounts, &accounts);
        check_sums("cluster", &accounts);
        let mut homed: Vec<(Transfer, PendingStatus)> = Vec::new();
        for ledger in &self.partitions {
            let transfers = ledger.all_transfers().expect("cold reads");
            for t in transfers.iter().filter(|t| ledger.owns(t.id.0)) {
                let status = ledger.pending_status(t.id).expect("cold reads");
                let status = status.expect("stored");
                homed.push((*t, status));
            }
        }
        homed.sort_by_key(|(t, _)| t.timestamp);
        let expected: Vec<(Transfer, PendingStatus)> = model
            .transfers
            .iter()
            .map(|s| (s.record, status_of(s.phase)))
            .collect();
        same("cluster transfers", &expected, &homed);
        for id in &model.failed {
            let id = kassa_wire::TransferId(*id);
            let holders = self.partitions.iter().filter(|p| p.transfer_id_failed(id));
            let holders: Vec<u32> = holders.map(|p| p.config().partition).collect();
            match self.placement {
                PlacementKind::ById => {
                    assert_eq!(holders, vec![partition_of(id.0, self.count)], "failed {id}")
                }
                // Kept by the partition that ran its batch.
                PlacementKind::ByLedger => assert_eq!(holders.len(), 1, "failed {id}"),
            }
        }
        let placement = Placement::new(self.placement, self.count);
        for account in &model.accounts {
            let owner = &self.partitions[placement.account(account) as usize];
            let filter = all_of(account.id);
            let mut transfers = Vec::new();
            owner
                .get_account_transfers(&filter, &mut transfers)
                .expect("cold reads");
            same(
                "account transfers",
                &model.get_account_transfers(&filter),
                &transfers,
            );
            let mut balances = Vec::new();
            owner
                .get_account_balances(&filter, &mut balances)
                .expect("cold reads");
            same(
                "account balances",
                &model.get_account_balances(&filter),
                &balances,
            );
        }
    }
}

/// What a share's intent would hold: its results and its partition's effects.
type Intent<R> = Result<(Vec<R>, kassa_shard::Effects), kassa_shard::shares::ShareError>;

/// The model's batch id in the record home (one batch at a time).
const BATCH: u64 = 1;
/// A participant holding an intent this long asks its home.
const ASK_AFTER_MS: u64 = 200;

/// Counts a batch run in shares whose rounds changed its results (the first round's were not
/// one partition's).
fn note_rounds(changed: bool) {
    if changed {
        SHARE_ROUNDS_CHANGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::model::stats::note(|| "cluster: shares, a chain across partitions broke".into());
    }
}

/// A message delivered: to whom, and the results an intent acknowledgement carries.
type Delivery = (u32, Message<IntentShare>, Option<ShareResults>);

/// Messages between the record home and the participants, with their faults: each is lost
/// one time in ten, doubled one in twenty, and delivered 1 to 40 ms later (one in twenty up to
/// 300 ms: reordered).
#[derive(Default)]
struct Network {
    /// (due, sequence) → what is delivered then.
    queue: std::collections::BTreeMap<(u64, u64), Delivery>,
    sent: u64,
}

impl Network {
    fn send(
        &mut self,
        rng: &mut Rng,
        now_ms: u64,
        to: u32,
        message: Message<IntentShare>,
        results: Option<ShareResults>,
    ) {
        if rng.chance(10) {
            return;
        }
        let copies = if rng.chance(5) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = if rng.chance(5) {
                rng.range(40, 300)
            } else {
                rng.range(1, 40)
            };
            self.sent += 1;
            let entry = (to, message.clone(), results.clone());
            self.queue.insert((now_ms + delay, self.sent), entry);
        }
    }

    fn due(&mut self, now_ms: u64) -> Vec<Delivery> {
        let later = self.queue.split_off(&(now_ms + 1, 0));
        let due = std::mem::replace(&mut self.queue, later);
        due.into_values().collect()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

fn all_of(id: AccountId) -> AccountFilter {
    let flags = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
    AccountFilter::new(id, BATCH_EVENTS_MAX as u32, flags)
}

fn status_of(phase: Phase) -> PendingStatus {
    match phase {
        Phase::None => PendingStatus::None,
        Phase::Pending => PendingStatus::Pending,
        Phase::Posted => PendingStatus::Posted,
        Phase::Voided => PendingStatus::Voided,
        Phase::Expired => PendingStatus::Expired,
    }
}

/// The command as the log would carry it: encoded, decoded, and equal.
fn round_trip(command: Command) -> Command {
    let mut bytes = Vec::new();
    command.encode(&mut bytes);
    let decoded = Command::decode(&bytes).expect("a command decodes");
    assert_eq!(decoded, command);
    decoded
}
