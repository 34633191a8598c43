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
//! - **the record home** (on the home partition's core): a [`BatchHome`] per leader term,
//!   numbering its rounds from an epoch it logs first (`Command::ClaimEpoch`, whose index is
//!   above every entry of earlier leaders). It sends intents, appends its stage and decision
//!   through its own log, and answers the requester once a round commits.
//! - **the participants** (on each participant's core): an intent is written through the
//!   partition's log under its transaction lock (so none comes while the coordinator holds
//!   the partition); prevents and resolutions are written at once. Each acknowledgement goes
//!   back to the home with the share's results.
//!
//! Messages between partitions go through the cores' queues ([`CoreQueues::send_rare`]), as
//! the id directory's do: nothing here assumes that two partitions share a process, and a
//! message lost (a full queue) is sent again by the home's timers. Every state the protocol
//! needs after a crash or a leader change is in the logs: a partition that holds an intent
//! longer than [`ASK_AFTER`] asks the transaction's home, whose leader (a new one, after a
//! restart) recovers the transaction from its records and the participants' answers.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use kassa_shard::batch_home::{participant_message, BatchAction, BatchHome, BatchId, CreateBatch};
use kassa_shard::directory::{ClaimAnswer, IdKind, CLAIM_IDS_MAX};
use kassa_shard::intents::{IntentShare, RareEntry, ShareResults};
use kassa_shard::parallel_commit::{HomeCommand, Message, ParticipantCommand, TxnId};
use kassa_shard::shares::ShareEvent;
use kassa_shard::{ledger_partition, Command, Ledger, LocalRun, Reply};

use crate::cores::{CoreQueues, Served};
use crate::id_directory::on_core::monotonic_ms;
use crate::id_directory::Proposer;
use crate::join::join_all;
use crate::NodeError;

/// How often each core runs its homes' timers and looks for intents held long.
pub const RARE_TICK: Duration = Duration::from_millis(10);
/// How long a participant holds an intent before it asks the transaction's home what became
/// of it (and again as long as it holds it): a home restarted, or deposed, recovers it then.
pub const ASK_AFTER: Duration = Duration::from_millis(250);
/// Rounds a home leader numbers from one epoch: `epoch << ROUND_BITS | count`. The leader
/// logs a new epoch when half are used, so its numbers never reach the next epoch's.
const ROUND_BITS: u32 = 24;

/// A message of the rare path between partitions, with the results an intent's
/// acknowledgement carries to its home.
#[derive(Debug)]
pub struct RareMessage {
    pub message: Message<IntentShare>,
    pub results: Option<ShareResults>,
}

impl RareMessage {
    /// Whether the message asks its partition to write an intent (under its lock).
    pub(crate) fn is_intent(&self) -> bool {
        matches!(self.message, Message::Intent { .. })
    }
}

/// Where a home sends a batch's answer: its results in batch order.
pub(crate) type BatchReply = tokio::sync::oneshot::Sender<Result<ShareResults, NodeError>>;

/// A partition's part in the rare path, on its core: the record home's leader state and the
/// intent it holds as a participant.
#[derive(Default)]
pub(crate) struct RareState {
    home: RefCell<HomeState>,
    /// Wakes batches waiting for the home's epoch.
    epoch_logged: tokio::sync::Notify,
    /// The intent this partition holds, and when it last asked its home about it.
    asked: Cell<Option<(TxnId, u64)>>,
    /// Tasks of the rare path in progress here (log writes), to wait for at shutdown.
    tasks: Cell<usize>,
}

#[derive(Default)]
struct HomeState {
    led: Option<Led>,
    logging_epoch: bool,
    renumbering: bool,
    batch_next: BatchId,
    waiting: BTreeMap<BatchId, BatchReply>,
}

/// The home's leader of one term.
struct Led {
    term: u64,
    home: BatchHome,
    /// The first round number of its current epoch.
    epoch_first: u64,
}

impl RareState {
    /// Waits until no task of the rare path runs here (shutdown).
    pub(crate) async fn tasks_done(&self) {
        while self.tasks.get() > 0 {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Runs `future` as a task counted in `served`'s rare-path tasks.
fn spawn_counted(served: &Rc<Served>, future: impl std::future::Future<Output = ()> + 'static) {
    let tasks = &served.rare.tasks;
    tasks.set(tasks.get() + 1);
    let served = served.clone();
    monoio::spawn(async move {
        future.await;
        let tasks = &served.rare.tasks;
        tasks.set(tasks.get() - 1);
    });
}

/// What [`create_in_shares`] did with a batch.
#[derive(Debug)]
pub enum InShares {
    /// The batch ran in shares: its results, in batch order.
    Ran(ShareResults),
    /// The batch cannot run in shares; it is given back, unchanged, for the coordinator.
    NotRunnable(CreateBatch),
}

/// Ids of one kind claimed for one participant (`Proposer::Transaction`).
type Claimed = Vec<(u32, Proposer, IdKind, Vec<u128>)>;

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
    settle(queues, claimed).await;
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
) -> Result<Option<Claimed>, NodeError> {
    let chunks: Vec<(u32, Vec<u128>)> = (claims.iter())
        .flat_map(|(partition, ids)| {
            (ids.chunks(CLAIM_IDS_MAX)).map(move |chunk| (*partition, chunk.to_vec()))
        })
        .collect();
    let asked = chunks.into_iter().map(|(partition, ids)| async move {
        let outcome = queues.claim_for_transaction(partition, kind, ids.clone());
        (partition, ids, outcome.await)
    });
    let mut claimed = Vec::new();
    let mut granted = true;
    let mut failed = None;
    for (partition, ids, outcome) in join_all(asked).await {
        match outcome {
            Ok(outcome) => {
                granted &= outcome.answers.values().all(|a| *a == ClaimAnswer::Granted);
                claimed.push((partition, outcome.proposer, kind, ids));
            }
            Err(error) => failed = Some(error),
        }
    }
    if failed.is_none() && granted {
        return Ok(Some(claimed));
    }
    settle(queues, claimed).await;
    match failed {
        Some(error) => Err(error),
        None => Ok(None),
    }
}

/// The claimed ids are stored, held by an intent, or never will be: no longer proposed.
async fn settle(queues: &CoreQueues, claimed: Claimed) {
    for (partition, proposer, kind, ids) in claimed {
        if let Err(error) = queues.claims_settled(partition, proposer, kind, ids).await {
            tracing::debug!(partition, %error, "claims not settled (the node is stopping)");
        }
    }
}

fn outcome_unknown(partition: u32) -> NodeError {
    NodeError::Partition(kassa_raft::PartitionError::OutcomeUnknown { partition })
}

/// On the home's core: begins `batch` and answers `reply` once it committed.
pub(crate) async fn run_at_home(
    served: &Rc<Served>,
    transport: &Rc<CoreQueues>,
    now: u64,
    batch: CreateBatch,
    partitions: Vec<u32>,
    reply: BatchReply,
) {
    if let Err(error) = lead(served, transport).await {
        let _ = reply.send(Err(error));
        return;
    }
    let mut actions = Vec::new();
    {
        let mut state = served.rare.home.borrow_mut();
        let state = &mut *state;
        let Some(led) = state.led.as_mut() else {
            // Deposed while the epoch was logged.
            let _ = reply.send(Err(outcome_unknown(served.number)));
            return;
        };
        let batch_id = state.batch_next;
        state.batch_next += 1;
        let now_ms = monotonic_ms();
        match (led.home).begin(batch_id, now, &batch, &partitions, now_ms, &mut actions) {
            Ok(()) => {
                state.waiting.insert(batch_id, reply);
            }
            Err(error) => {
                let _ = reply.send(Err(NodeError::Transaction(error.to_string())));
                return;
            }
        }
    }
    perform(served, transport, actions);
}

/// Makes sure this partition's home has a leader of the current term, logging its epoch
/// first. A leader of an earlier term is deposed: its batches are told "outcome unknown".
async fn lead(served: &Rc<Served>, transport: &Rc<CoreQueues>) -> Result<(), NodeError> {
    loop {
        let term = served.partition.status().term;
        let mut actions = Vec::new();
        let logged = {
            let mut state = served.rare.home.borrow_mut();
            match state.led.take() {
                Some(led) if led.term == term => {
                    state.led = Some(led);
                    return Ok(());
                }
                Some(led) => led.home.deposed(&mut actions),
                None => {}
            }
            if state.logging_epoch {
                Some(served.rare.epoch_logged.notified())
            } else {
                state.logging_epoch = true;
                None
            }
        };
        perform(served, transport, actions);
        if let Some(logged) = logged {
            logged.await;
            continue;
        }
        let epoch = log_epoch(served, term).await;
        let mut state = served.rare.home.borrow_mut();
        state.logging_epoch = false;
        served.rare.epoch_logged.notify_waiters();
        let first = epoch? << ROUND_BITS;
        state.led = Some(Led {
            term,
            home: BatchHome::new(served.number, first),
            epoch_first: first,
        });
        return Ok(());
    }
}

/// Logs an epoch entry in `term`; its applied index is above every entry of earlier leaders.
async fn log_epoch(served: &Rc<Served>, term: u64) -> Result<u64, NodeError> {
    let number = served.number;
    match served
        .write_in(number, Command::ClaimEpoch, Some(term))
        .await?
    {
        Reply::ClaimEpoch => {}
        other => unreachable!("a claim epoch answered {other:?}"),
    }
    let applied = served.partition.status().applied_index;
    Ok(applied.expect("the epoch entry was applied"))
}

/// Does what the home asked.
fn perform(served: &Rc<Served>, transport: &Rc<CoreQueues>, actions: Vec<BatchAction>) {
    for action in actions {
        match action {
            BatchAction::Send { to, message } => {
                let message = RareMessage {
                    message,
                    results: None,
                };
                transport.send_rare(to, message);
            }
            BatchAction::Append(command) => {
                let term = served.rare.home.borrow().led.as_ref().map(|led| led.term);
                if let Some(term) = term {
                    let (to, transport) = (served.clone(), transport.clone());
                    spawn_counted(served, async move {
                        append(&to, &transport, term, command).await;
                    });
                }
            }
            BatchAction::Answer { batch, results } => {
                if crate::fault_injection::injected("abort-after-commit") {
                    eprintln!("kassa: KASSA_FAULT=abort-after-commit: aborting after a commit");
                    std::process::abort();
                }
                let reply = served.rare.home.borrow_mut().waiting.remove(&batch);
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(results));
                }
            }
            BatchAction::Unknown { batch } => {
                let reply = served.rare.home.borrow_mut().waiting.remove(&batch);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(outcome_unknown(served.number)));
                }
            }
        }
    }
}

/// Appends a home entry of leader term `term` and hands the applied entry to that leader.
/// A failed append is appended again by the home's timers.
async fn append(served: &Rc<Served>, transport: &Rc<CoreQueues>, term: u64, command: HomeCommand) {
    let entry = Command::Rare(Box::new(RareEntry::Home(command.clone())));
    let answer = match served.write_in(served.number, entry, Some(term)).await {
        Ok(Reply::Home(answer)) => answer,
        Ok(other) => unreachable!("a home entry answered {other:?}"),
        Err(error) => {
            tracing::debug!(partition = served.number, %error, "a home entry was not appended");
            return;
        }
    };
    let mut actions = Vec::new();
    {
        let mut state = served.rare.home.borrow_mut();
        let Some(led) = state.led.as_mut().filter(|led| led.term == term) else {
            return;
        };
        let now_ms = monotonic_ms();
        served.partition.read(|ledger| {
            let records = ledger.home_records();
            led.home
                .applied(&command, answer, records, now_ms, &mut actions);
        });
    }
    perform(served, transport, actions);
}

/// A message of the rare path for this partition, from another's core (or its own). An
/// intent must have been admitted through the partition's lock by the caller, with no await
/// since: the write counts as admitted from its first poll.
pub(crate) async fn received(served: &Rc<Served>, transport: &Rc<CoreQueues>, rare: RareMessage) {
    let command = match rare.message {
        Message::Intent { txn, effects } => ParticipantCommand::Intent { txn, effects },
        Message::Prevent { txn } => ParticipantCommand::Prevent { txn },
        Message::Resolve { txn, outcome } => ParticipantCommand::Resolve { txn, outcome },
        Message::Forget { home, from, below } => ParticipantCommand::Forget { home, from, below },
        message => return home_received(served, transport, message, rare.results).await,
    };
    let entry = Command::Rare(Box::new(RareEntry::Participant(command.clone())));
    let reply = match served.write(served.number, entry).await {
        Ok(Reply::Participant(reply)) => reply,
        Ok(other) => unreachable!("a participant's entry answered {other:?}"),
        Err(error) => {
            // The home sends it again, or this partition asks.
            tracing::debug!(partition = served.number, %error, "a participant's entry failed");
            return;
        }
    };
    if let Some((home, message, results)) = participant_message(served.number, &command, &reply) {
        transport.send_rare(home, RareMessage { message, results });
    }
}

/// A participant's acknowledgement or question, for this partition's home leader.
async fn home_received(
    served: &Rc<Served>,
    transport: &Rc<CoreQueues>,
    message: Message<IntentShare>,
    results: Option<ShareResults>,
) {
    // A question may come to a home with no leader yet (after a restart): one is made, and
    // recovers the transaction. Acknowledgements are for the leader that sent the intents.
    if matches!(message, Message::Ask { .. }) && lead(served, transport).await.is_err() {
        return;
    }
    let term = served.partition.status().term;
    let mut actions = Vec::new();
    {
        let mut state = served.rare.home.borrow_mut();
        let Some(led) = state.led.as_mut().filter(|led| led.term == term) else {
            return;
        };
        let now_ms = monotonic_ms();
        let received = served.partition.read(|ledger| {
            let records = ledger.home_records();
            // The leader's epoch is applied in its term: every earlier entry is too.
            (led.home).received(message, results, records, true, now_ms, &mut actions)
        });
        if let Err(ignored) = received {
            tracing::debug!(partition = served.number, %ignored, "a rare-path message ignored");
        }
    }
    perform(served, transport, actions);
}

/// Every `RARE_TICK`: runs each home's timers (resends, appends again, gives up rounds
/// waiting too long), deposes a home leader whose term ended, and has each partition holding
/// an intent longer than `ASK_AFTER` ask its home.
pub(crate) async fn rare_loop(
    partitions: Vec<Rc<Served>>,
    stop: Rc<Cell<bool>>,
    transport: Rc<CoreQueues>,
) {
    while !stop.get() {
        monoio::time::sleep(RARE_TICK).await;
        let now_ms = monotonic_ms();
        for served in &partitions {
            tick(served, &transport, now_ms);
            ask_if_held(served, &transport, now_ms);
        }
    }
    // Batches still waiting cannot be answered by this process.
    for served in &partitions {
        let waiting = std::mem::take(&mut served.rare.home.borrow_mut().waiting);
        for (_, reply) in waiting {
            let _ = reply.send(Err(outcome_unknown(served.number)));
        }
    }
}

fn tick(served: &Rc<Served>, transport: &Rc<CoreQueues>, now_ms: u64) {
    let term = served.partition.status().term;
    let mut actions = Vec::new();
    let mut renumber = false;
    {
        let mut state = served.rare.home.borrow_mut();
        let state = &mut *state;
        match state.led.take() {
            None => {}
            Some(led) if led.term != term => led.home.deposed(&mut actions),
            Some(mut led) => {
                served.partition.read(|ledger| {
                    let records = ledger.home_records();
                    led.home.tick(records, true, now_ms, &mut actions);
                });
                let used = led.home.number_next() - led.epoch_first;
                if used >= 1 << (ROUND_BITS - 1) && !state.renumbering {
                    state.renumbering = true;
                    renumber = true;
                }
                state.led = Some(led);
            }
        }
    }
    perform(served, transport, actions);
    if renumber {
        let to = served.clone();
        spawn_counted(served, async move {
            let epoch = log_epoch(&to, term).await;
            let mut state = to.rare.home.borrow_mut();
            state.renumbering = false;
            if let (Ok(epoch), Some(led)) = (epoch, state.led.as_mut()) {
                if led.term == term {
                    led.epoch_first = epoch << ROUND_BITS;
                    led.home.renumber(led.epoch_first);
                }
            }
        });
    }
}

fn ask_if_held(served: &Rc<Served>, transport: &Rc<CoreQueues>, now_ms: u64) {
    let holder = served.partition.read(Ledger::holder);
    let asked = &served.rare.asked;
    let ask_after = ASK_AFTER.as_millis() as u64;
    match (holder, asked.get()) {
        (None, _) => asked.set(None),
        (Some(txn), Some((held, at))) if held == txn => {
            if now_ms >= at + ask_after {
                asked.set(Some((txn, now_ms)));
                let message = Message::Ask {
                    txn,
                    from: served.number,
                };
                let message = RareMessage {
                    message,
                    results: None,
                };
                transport.send_rare(txn.home, message);
            }
        }
        (Some(txn), _) => asked.set(Some((txn, now_ms))),
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
