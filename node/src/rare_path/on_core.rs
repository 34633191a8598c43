//! The rare path on a partition's core: its record home's leader and its participant (see
//! the parent module). Generic over the partition it serves ([`RareHost`]) and the way to
//! other partitions ([`RareTransport`]), so the cores reach it and it reaches nothing of
//! theirs back.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use kassa_raft::Partition;
use kassa_shard::batch_home::{
    participant_message, BatchAction, BatchHome, BatchId, CreateBatch, WireRequest,
};
use kassa_shard::intents::{IntentReply, IntentShare, ParticipantReply, RareEntry, ShareResults};
use kassa_shard::parallel_commit::{Message, ParticipantCommand, TxnId};
use kassa_shard::sessions::DropReason;
use kassa_shard::{Command, ForeignAnswer, Ledger, Reply};
use kassa_wire::RequestHeader;

use crate::id_directory::on_core::monotonic_ms;
use crate::NodeError;

/// A partition as the rare path sees it on its core.
pub(crate) trait RareHost: 'static {
    /// The partition's number in the cluster.
    fn number(&self) -> u32;
    /// Its Raft group: its status, and reads of its applied ledger.
    fn partition(&self) -> &Partition;
    fn rare(&self) -> &RareState;
    /// Writes `command` through the partition's log in leader term `term` (`None`: whatever
    /// term leads); a log that can no longer be written stops the process.
    fn write_in(
        &self,
        command: Command,
        term: Option<u64>,
    ) -> impl std::future::Future<Output = Result<Reply, NodeError>>;
}

/// How a partition's core reaches the others: a message lost is sent again by the protocol.
pub(crate) trait RareTransport: 'static {
    fn send_rare(&self, partition: u32, message: RareMessage);
}

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

/// Where a home sends a batch's answer.
pub(crate) type BatchReply = tokio::sync::oneshot::Sender<Result<RoundAnswer, NodeError>>;

/// A home's answer to a batch that committed.
#[derive(Clone, Debug)]
pub enum RoundAnswer {
    /// An HTTP batch's results, in batch order.
    Results(ShareResults),
    /// A wire request's reply, sealed and kept here by the stage that committed it (or kept
    /// before: a copy of a request run here already).
    Request(ForeignAnswer),
}

/// A partition's part in the rare path, on its core: the record home's leader state and the
/// intent it holds as a participant.
#[derive(Default)]
pub(crate) struct RareState {
    home: RefCell<HomeState>,
    /// Wakes batches waiting for the home's epoch.
    epoch_logged: tokio::sync::Notify,
    /// The intent this partition holds, and when it last asked its home about it.
    asked: Cell<Option<(TxnId, u64)>>,
    /// Intents kept out by another's, waiting for the partition's release.
    pub(crate) busy: BusyIntents,
    /// Tasks of the rare path in progress here (log writes), to wait for at shutdown.
    tasks: Cell<usize>,
}

#[derive(Default)]
struct HomeState {
    led: Option<Led>,
    logging_epoch: bool,
    renumbering: bool,
    batch_next: BatchId,
    waiting: BTreeMap<BatchId, Waiter>,
    /// The wire requests running here, by client: a copy that reaches this partition joins
    /// its request's batch ([`join_request`]).
    requests: BTreeMap<u128, BatchId>,
}

/// Who waits for a batch: its requester, and for a wire request, copies that joined it.
struct Waiter {
    replies: Vec<BatchReply>,
    request: Option<RequestHeader>,
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
fn spawn_counted<H: RareHost>(
    served: &Rc<H>,
    future: impl std::future::Future<Output = ()> + 'static,
) {
    let tasks = &served.rare().tasks;
    tasks.set(tasks.get() + 1);
    let served = served.clone();
    monoio::spawn(async move {
        future.await;
        let tasks = &served.rare().tasks;
        tasks.set(tasks.get() - 1);
    });
}

/// On the home's core: begins `batch` (the batch of the wire request `request`, if given)
/// and answers `reply` once it committed. A wire request this partition ran already, or is
/// running, is not begun again: it gets the reply kept here, or joins the running batch.
pub(crate) async fn run_at_home<H: RareHost, T: RareTransport>(
    served: &Rc<H>,
    transport: &Rc<T>,
    now: u64,
    batch: CreateBatch,
    partitions: Vec<u32>,
    request: Option<WireRequest>,
    reply: BatchReply,
) {
    if let Err(error) = lead(served, transport).await {
        let _ = reply.send(Err(error));
        return;
    }
    let header = request.as_ref().map(|request| request.header);
    let reply = match &header {
        Some(header) => match copy_of_request(served, header, reply) {
            Some(reply) => reply,
            None => return,
        },
        None => reply,
    };
    let mut actions = Vec::new();
    {
        let mut state = served.rare().home.borrow_mut();
        let state = &mut *state;
        let Some(led) = state.led.as_mut() else {
            // Deposed while the epoch was logged.
            let _ = reply.send(Err(outcome_unknown(served.number())));
            return;
        };
        let batch_id = state.batch_next;
        state.batch_next += 1;
        let now_ms = monotonic_ms();
        let home = &mut led.home;
        let begun = home.begin(
            batch_id,
            request,
            now,
            &batch,
            &partitions,
            now_ms,
            &mut actions,
        );
        if let Err(error) = begun {
            let _ = reply.send(Err(NodeError::Transaction(error.to_string())));
            return;
        }
        let waiter = Waiter {
            replies: vec![reply],
            request: header,
        };
        state.waiting.insert(batch_id, waiter);
        if let Some(header) = header {
            state.requests.insert(header.client, batch_id);
        }
    }
    perform(served, transport, actions);
}

/// A copy of the wire request `request` that this partition ran already (its reply kept,
/// `ForeignRequests`) or runs now: answered from the reply kept, or joined to the running
/// batch (`None`: `reply` is taken care of). `Some(reply)` for a request new here.
fn copy_of_request<H: RareHost>(
    served: &Rc<H>,
    request: &RequestHeader,
    reply: BatchReply,
) -> Option<BatchReply> {
    let known = (served.partition()).read(|ledger| ledger.foreign_requests().known(request));
    if let Some(answer) = known {
        let _ = reply.send(Ok(RoundAnswer::Request(answer)));
        return None;
    }
    join(served, request, reply).err()
}

/// Joins `reply` to the batch of `request` running here: it waits for that batch's answer
/// (or is answered at once, dropped, when the client's request of that number runs with
/// another checksum). `Err(reply)` if the request does not run here.
fn join<H: RareHost>(
    served: &Rc<H>,
    request: &RequestHeader,
    reply: BatchReply,
) -> Result<(), BatchReply> {
    let mut state = served.rare().home.borrow_mut();
    let Some(batch) = state.requests.get(&request.client).copied() else {
        return Err(reply);
    };
    let Some(waiter) = state.waiting.get_mut(&batch) else {
        return Err(reply);
    };
    match waiter.request {
        Some(running) if running.request == request.request => {
            if running.frame.checksum == request.frame.checksum {
                waiter.replies.push(reply);
            } else {
                let dropped = ForeignAnswer::Dropped(DropReason::RequestCollision);
                let _ = reply.send(Ok(RoundAnswer::Request(dropped)));
            }
            Ok(())
        }
        _ => Err(reply),
    }
}

/// On the core of a wire request's first ledger's partition, before anything else runs it
/// there: if a copy of it runs here as a batch in shares, waits for that batch's answer
/// (`None` if none runs here).
pub(crate) async fn join_request<H: RareHost>(
    served: &Rc<H>,
    request: &RequestHeader,
) -> Option<Result<ForeignAnswer, NodeError>> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    join(served, request, reply).ok()?;
    let answered = answer
        .await
        .unwrap_or_else(|_| Err(outcome_unknown(served.number())));
    Some(answered.and_then(|answer| match answer {
        RoundAnswer::Request(answer) => Ok(answer),
        RoundAnswer::Results(_) => Err(NodeError::Transaction(
            "a wire request answered with an HTTP batch's results".into(),
        )),
    }))
}

/// Makes sure this partition's home has a leader of the current term, logging its epoch
/// first. A leader of an earlier term is deposed: its batches are told "outcome unknown".
async fn lead<H: RareHost, T: RareTransport>(
    served: &Rc<H>,
    transport: &Rc<T>,
) -> Result<(), NodeError> {
    loop {
        let term = served.partition().status().term;
        let mut actions = Vec::new();
        let logged = {
            let mut state = served.rare().home.borrow_mut();
            match state.led.take() {
                Some(led) if led.term == term => {
                    state.led = Some(led);
                    return Ok(());
                }
                Some(led) => led.home.deposed(&mut actions),
                None => {}
            }
            if state.logging_epoch {
                Some(served.rare().epoch_logged.notified())
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
        let mut state = served.rare().home.borrow_mut();
        state.logging_epoch = false;
        served.rare().epoch_logged.notify_waiters();
        let first = epoch? << ROUND_BITS;
        state.led = Some(Led {
            term,
            home: BatchHome::new(served.number(), first),
            epoch_first: first,
        });
        return Ok(());
    }
}

/// Logs an epoch entry in `term`; its applied index is above every entry of earlier leaders.
async fn log_epoch<H: RareHost>(served: &Rc<H>, term: u64) -> Result<u64, NodeError> {
    match served.write_in(Command::ClaimEpoch, Some(term)).await? {
        Reply::ClaimEpoch => {}
        other => unreachable!("a claim epoch answered {other:?}"),
    }
    let applied = served.partition().status().applied_index;
    Ok(applied.expect("the epoch entry was applied"))
}

/// Does what the home asked.
fn perform<H: RareHost, T: RareTransport>(
    served: &Rc<H>,
    transport: &Rc<T>,
    actions: Vec<BatchAction>,
) {
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
                let term = served.rare().home.borrow().led.as_ref().map(|led| led.term);
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
                let Some(waiter) = finished(served, batch) else {
                    continue;
                };
                let answer = match &waiter.request {
                    None => Some(RoundAnswer::Results(results)),
                    // The stage that committed the round sealed and kept the reply.
                    Some(request) => served.partition().read(|ledger| {
                        match ledger.foreign_requests().known(request) {
                            Some(answer) => Some(RoundAnswer::Request(answer)),
                            None => {
                                // Its stage keeps it: an invariant of this partition's log.
                                tracing::error!(
                                    partition = served.number(),
                                    client = request.client,
                                    request = request.request,
                                    "a wire request committed in shares without its reply kept"
                                );
                                None
                            }
                        }
                    }),
                };
                answer_all(waiter, || {
                    (answer.clone()).ok_or_else(|| outcome_unknown(served.number()))
                });
            }
            BatchAction::Unknown { batch } => {
                tracing::debug!(
                    partition = served.number(),
                    batch,
                    "a batch's outcome is unknown"
                );
                if let Some(waiter) = finished(served, batch) {
                    answer_all(waiter, || Err(outcome_unknown(served.number())));
                }
            }
        }
    }
}

/// The waiters of `batch`, which its home answered; its request no longer runs here.
fn finished<H: RareHost>(served: &Rc<H>, batch: BatchId) -> Option<Waiter> {
    let mut state = served.rare().home.borrow_mut();
    let waiter = state.waiting.remove(&batch)?;
    if let Some(request) = &waiter.request {
        if state.requests.get(&request.client) == Some(&batch) {
            state.requests.remove(&request.client);
        }
    }
    Some(waiter)
}

/// Sends each of `waiter`'s replies an answer made by `answer`.
fn answer_all(waiter: Waiter, answer: impl Fn() -> Result<RoundAnswer, NodeError>) {
    for reply in waiter.replies {
        let _ = reply.send(answer());
    }
}

/// Appends a home entry of leader term `term` and hands the applied entry to that leader.
/// A failed append is appended again by the home's timers.
async fn append<H: RareHost, T: RareTransport>(
    served: &Rc<H>,
    transport: &Rc<T>,
    term: u64,
    entry: RareEntry,
) {
    let command = entry.home_command().expect("a home appends home entries");
    let entry = Command::Rare(Box::new(entry));
    let answer = match served.write_in(entry, Some(term)).await {
        Ok(Reply::Home(answer)) => answer,
        Ok(other) => unreachable!("a home entry answered {other:?}"),
        Err(error) => {
            tracing::debug!(partition = served.number(), %error, "a home entry was not appended");
            return;
        }
    };
    let mut actions = Vec::new();
    {
        let mut state = served.rare().home.borrow_mut();
        let Some(led) = state.led.as_mut().filter(|led| led.term == term) else {
            return;
        };
        let now_ms = monotonic_ms();
        served.partition().read(|ledger| {
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
///
/// An intent another transaction's intent kept out (`IntentReply::Busy`) comes back, for the
/// caller to propose again once the partition is released ([`BusyIntents`]); the home's
/// resends would bring it only every `RESEND_MS`.
pub(crate) async fn received<H: RareHost, T: RareTransport>(
    served: &Rc<H>,
    transport: &Rc<T>,
    rare: RareMessage,
) -> Option<RareMessage> {
    let command = match rare.message {
        Message::Intent { txn, effects } => ParticipantCommand::Intent { txn, effects },
        Message::Prevent { txn } => ParticipantCommand::Prevent { txn },
        Message::Resolve { txn, outcome } => ParticipantCommand::Resolve { txn, outcome },
        Message::Forget { home, from, below } => ParticipantCommand::Forget { home, from, below },
        message => {
            home_received(served, transport, message, rare.results).await;
            return None;
        }
    };
    let entry = Command::Rare(Box::new(RareEntry::Participant(command.clone())));
    let reply = match served.write_in(entry, None).await {
        Ok(Reply::Participant(reply)) => reply,
        Ok(other) => unreachable!("a participant's entry answered {other:?}"),
        Err(error) => {
            // The home sends it again, or this partition asks.
            tracing::debug!(partition = served.number(), %error, "a participant's entry failed");
            return None;
        }
    };
    match (command, &reply) {
        (
            ParticipantCommand::Intent { txn, effects },
            ParticipantReply::Intent(IntentReply::Busy { .. }),
        ) => {
            let message = Message::Intent { txn, effects };
            return Some(RareMessage {
                message,
                results: None,
            });
        }
        (command, reply) => {
            if let Some((home, message, results)) =
                participant_message(served.number(), &command, reply)
            {
                transport.send_rare(home, RareMessage { message, results });
            }
        }
    }
    None
}

/// The intents a partition waits to propose while another transaction's intent holds it, in
/// the order they came, and whether one must give way.
///
/// When the holder resolves, only the first waiter proposes, and the others wait for its
/// proposal. Every home sends its intents to all its participants at once over ordered
/// queues, so each partition sees one home's rounds in the same order and grants them in
/// that order: two rounds of one home never each take half of the other's partitions. Rounds
/// of different homes can still reach two partitions in opposite orders, each holding one
/// and waiting for the other. So the waits follow age (wait-die): an intent may wait as long
/// as it likes for younger transactions, but one kept out by an older transaction (the
/// holder, or a waiter ahead) waits at most [`DIE_AFTER`], then gives way: it is refused here
/// for good (a `Prevent` written in this partition's log) and its home aborts the round and
/// runs the batch again, as old as before. Every wait that lasts is an older transaction
/// waiting for a younger one, so none is part of a cycle for longer than `DIE_AFTER`.
///
/// A resend of an intent already waiting is dropped and keeps its place; a wait lasts at most
/// [`BUSY_WAIT`], when the home gives the round up.
#[derive(Default)]
pub(crate) struct BusyIntents(RefCell<Waiting>);

#[derive(Default)]
struct Waiting {
    next: u64,
    by_arrival: BTreeMap<u64, IntentOrder>,
    /// The latest intents proposed here, newest last: the holder's age, when it is one.
    proposed: VecDeque<IntentOrder>,
}

/// How many proposed intents' ages a partition remembers (proposals in flight at once).
const PROPOSED_KEPT: usize = 64;

/// An intent's age: its batch's `now` (the same in every round and partition), then its
/// transaction. Smaller is older.
pub(crate) type IntentOrder = (u64, TxnId);

/// How long an intent waits here for its partition: as long as its home waits for it
/// (`batch_home::GIVE_UP_MS`), then the home gives the round up.
pub const BUSY_WAIT: Duration = Duration::from_millis(kassa_shard::batch_home::GIVE_UP_MS);

/// How long an intent kept out by an older transaction waits before it gives way: long enough
/// for a holder to resolve (its intent, stage, decision and resolution are a few writes), short
/// against the home's give-up.
pub const DIE_AFTER: Duration = Duration::from_millis(20);

/// What a waiting intent may do now (`BusyIntents::turn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Propose: the partition is free and it is first.
    Propose,
    /// Wait; `true` if an older transaction keeps it out (it gives way after `DIE_AFTER`).
    Wait { behind_older: bool },
}

impl BusyIntents {
    /// Queues `order`: its place, or `None` if its transaction waits already.
    pub(crate) fn wait(&self, order: IntentOrder) -> Option<u64> {
        let mut waiting = self.0.borrow_mut();
        if waiting.by_arrival.values().any(|(_, txn)| *txn == order.1) {
            return None;
        }
        let place = waiting.next;
        waiting.next += 1;
        waiting.by_arrival.insert(place, order);
        Some(place)
    }

    /// Whether the intent at `place` (of age `order`) may propose, with `holder` the
    /// transaction whose intent holds the partition. A holder of unknown age (held since
    /// before a restart, whose home recovers it without waiting for anything) is waited for.
    pub(crate) fn turn(&self, place: u64, order: IntentOrder, holder: Option<TxnId>) -> Turn {
        let waiting = self.0.borrow();
        let first = waiting.by_arrival.keys().next() == Some(&place);
        if holder.is_none() && first {
            return Turn::Propose;
        }
        let holder_older = holder.is_some_and(|holder| {
            let mut proposed = waiting.proposed.iter().rev();
            proposed
                .find(|(_, txn)| *txn == holder)
                .is_some_and(|proposed| *proposed < order)
        });
        let ahead_older = (waiting.by_arrival.range(..place)).any(|(_, ahead)| *ahead < order);
        Turn::Wait {
            behind_older: holder_older || ahead_older,
        }
    }

    /// The intent of age `order` is being proposed.
    pub(crate) fn proposing(&self, order: IntentOrder) {
        let proposed = &mut self.0.borrow_mut().proposed;
        if proposed.len() == PROPOSED_KEPT {
            proposed.pop_front();
        }
        proposed.push_back(order);
    }

    pub(crate) fn done(&self, place: u64) {
        self.0.borrow_mut().by_arrival.remove(&place);
    }
}

impl RareMessage {
    /// An intent's age: `Some` for a message that asks its partition to write an intent
    /// (under its lock).
    pub(crate) fn intent_order(&self) -> Option<IntentOrder> {
        match &self.message {
            Message::Intent { txn, effects } => Some((effects.now, *txn)),
            _ => None,
        }
    }
}

/// An intent that gives way (`BusyIntents`): refused in this partition for good (a `Prevent`
/// entry, which a later copy of the intent cannot pass), and its home told it was refused, so
/// that it aborts the round now rather than at its give-up.
pub(crate) async fn give_way<H: RareHost, T: RareTransport>(
    served: &Rc<H>,
    transport: &Rc<T>,
    txn: TxnId,
) {
    let command = ParticipantCommand::Prevent { txn };
    let entry = Command::Rare(Box::new(RareEntry::Participant(command)));
    match served.write_in(entry, None).await {
        Ok(Reply::Participant(ParticipantReply::Prevent { has_intent: false })) => {}
        // Held after all (a copy got in first): that copy's answer told the home.
        Ok(Reply::Participant(ParticipantReply::Prevent { has_intent: true })) => return,
        Ok(other) => unreachable!("a prevent answered {other:?}"),
        Err(error) => {
            tracing::debug!(partition = served.number(), %error, "a participant's entry failed");
            return;
        }
    }
    let message = Message::IntentAck {
        txn,
        from: served.number(),
        written: false,
    };
    let results = None;
    transport.send_rare(txn.home, RareMessage { message, results });
}

/// A participant's acknowledgement or question, for this partition's home leader.
async fn home_received<H: RareHost, T: RareTransport>(
    served: &Rc<H>,
    transport: &Rc<T>,
    message: Message<IntentShare>,
    results: Option<ShareResults>,
) {
    // A question may come to a home with no leader yet (after a restart): one is made, and
    // recovers the transaction. Acknowledgements are for the leader that sent the intents.
    if matches!(message, Message::Ask { .. }) && lead(served, transport).await.is_err() {
        return;
    }
    let term = served.partition().status().term;
    let mut actions = Vec::new();
    {
        let mut state = served.rare().home.borrow_mut();
        let Some(led) = state.led.as_mut().filter(|led| led.term == term) else {
            return;
        };
        let now_ms = monotonic_ms();
        let received = served.partition().read(|ledger| {
            let records = ledger.home_records();
            // The leader's epoch is applied in its term: every earlier entry is too.
            (led.home).received(message, results, records, true, now_ms, &mut actions)
        });
        if let Err(ignored) = received {
            tracing::debug!(partition = served.number(), %ignored, "a rare-path message ignored");
        }
    }
    perform(served, transport, actions);
}

/// Every `RARE_TICK`: runs each home's timers (resends, appends again, gives up rounds
/// waiting too long), deposes a home leader whose term ended, and has each partition holding
/// an intent longer than `ASK_AFTER` ask its home.
pub(crate) async fn rare_loop<H: RareHost, T: RareTransport>(
    partitions: Vec<Rc<H>>,
    stop: Rc<Cell<bool>>,
    transport: Rc<T>,
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
        let waiting = std::mem::take(&mut served.rare().home.borrow_mut().waiting);
        for (_, waiter) in waiting {
            answer_all(waiter, || Err(outcome_unknown(served.number())));
        }
    }
}

fn tick<H: RareHost, T: RareTransport>(served: &Rc<H>, transport: &Rc<T>, now_ms: u64) {
    let mut actions = Vec::new();
    let mut renumber = false;
    let term;
    {
        let mut state = served.rare().home.borrow_mut();
        let state = &mut *state;
        // Most partitions lead no home: nothing to do, not even reading the Raft status,
        // unless earlier leaders left records (after a restart, decided transactions not yet
        // forgotten): a leader is made then, which adopts them and forgets what it may
        // (`HomeLeader::adopt`), instead of waiting for the next batch or question here.
        let Some(led) = state.led.take() else {
            let left = !state.logging_epoch
                && served
                    .partition()
                    .read(|ledger| !ledger.home_records().is_empty());
            if left && served.partition().status().leader {
                let (to, transport) = (served.clone(), transport.clone());
                spawn_counted(served, async move {
                    if let Err(error) = lead(&to, &transport).await {
                        tracing::debug!(partition = to.number(), %error, "no home leader made");
                    }
                });
            }
            return;
        };
        term = served.partition().status().term;
        match led {
            led if led.term != term => led.home.deposed(&mut actions),
            mut led => {
                served.partition().read(|ledger| {
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
            let mut state = to.rare().home.borrow_mut();
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

fn ask_if_held<H: RareHost, T: RareTransport>(served: &Rc<H>, transport: &Rc<T>, now_ms: u64) {
    let holder = served.partition().read(Ledger::holder);
    let asked = &served.rare().asked;
    let ask_after = ASK_AFTER.as_millis() as u64;
    match (holder, asked.get()) {
        (None, _) => asked.set(None),
        (Some(txn), Some((held, at))) if held == txn => {
            if now_ms >= at + ask_after {
                asked.set(Some((txn, now_ms)));
                let message = Message::Ask {
                    txn,
                    from: served.number(),
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

pub(crate) fn outcome_unknown(partition: u32) -> NodeError {
    NodeError::Partition(kassa_raft::PartitionError::OutcomeUnknown { partition })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(number: u64) -> TxnId {
        TxnId { home: 3, number }
    }

    /// An intent of age `now` (smaller is older).
    fn order(now: u64, number: u64) -> IntentOrder {
        (now, txn(number))
    }

    #[test]
    fn busy_intents_are_granted_in_the_order_they_came_and_a_resend_keeps_its_place() {
        let busy = BusyIntents::default();
        let (a, b, c) = (order(30, 9), order(10, 2), order(20, 5));
        let first = busy.wait(a).expect("new");
        let second = busy.wait(b).expect("new");
        let third = busy.wait(c).expect("new");
        // The home's resend of a waiting intent is dropped: it keeps its place.
        assert_eq!(busy.wait((99, txn(2))), None);
        assert_eq!(busy.turn(first, a, None), Turn::Propose);
        assert!(matches!(busy.turn(second, b, None), Turn::Wait { .. }));
        busy.done(first);
        assert_eq!(busy.turn(second, b, None), Turn::Propose);
        assert!(matches!(busy.turn(third, c, None), Turn::Wait { .. }));
        // Gone from the queue (proposed, or out of time), it may wait again, last.
        busy.done(second);
        let again = busy.wait(b).expect("waits again");
        assert_eq!(busy.turn(third, c, None), Turn::Propose);
        busy.done(third);
        assert_eq!(busy.turn(again, b, None), Turn::Propose);
    }

    #[test]
    fn an_intent_kept_out_by_an_older_transaction_must_give_way_and_one_kept_by_younger_ones_waits()
    {
        let busy = BusyIntents::default();
        let (old, young) = (order(10, 1), order(20, 2));
        // The holder was proposed here: its age is known.
        busy.proposing(young);
        let place = busy.wait(old).expect("new");
        let behind = |place, order, holder| match busy.turn(place, order, holder) {
            Turn::Wait { behind_older } => behind_older,
            Turn::Propose => panic!("the partition is held"),
        };
        assert!(
            !behind(place, old, Some(young.1)),
            "the old waits for the young"
        );
        busy.done(place);
        busy.proposing(old);
        let place = busy.wait(young).expect("new");
        assert!(
            behind(place, young, Some(old.1)),
            "the young gives way to the old"
        );
        // A holder of unknown age (held since before a restart) is waited for: its home
        // recovers it without waiting for anything.
        assert!(!behind(place, young, Some(txn(77))));
        busy.done(place);
        // An older waiter ahead keeps it out too, even with the partition free.
        let ahead = busy.wait(old).expect("new");
        let behind_it = busy.wait(young).expect("new");
        assert_eq!(busy.turn(ahead, old, None), Turn::Propose);
        assert_eq!(
            busy.turn(behind_it, young, None),
            Turn::Wait { behind_older: true }
        );
        let younger_still = busy.wait(order(30, 3)).expect("new");
        busy.done(ahead);
        assert_eq!(
            busy.turn(younger_still, order(30, 3), None),
            Turn::Wait { behind_older: true },
            "behind the young one, older than it"
        );
    }
}
