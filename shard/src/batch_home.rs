//! A record home's side of a `create_*` batch that spans partitions under placement by ledger,
//! as a pure core: the rounds of [`Rounds`] run as transactions of
//! [`HomeLeader`] (`docs/transactions.md`, "Step 4").
//!
//! The driver gives it a batch with each event's partition; it splits the batch into shares
//! and begins a round: one transaction whose intents are the shares (with the answers of the
//! chains marked so far). A participant's acknowledgement carries its share's results
//! (`participant_message`). Once every intent is written:
//! - a batch without linked chains across partitions cannot be dropped, so its round was
//!   begun with its stage ([`Staging::WithIntents`]) and commits as soon as every intent and
//!   the stage are durable;
//! - otherwise ([`Staging::AfterIntents`]) the home looks at the results: the round stands
//!   and is staged, or a chain broke in one partition and held in another, and the round is
//!   aborted and the next begun with that chain marked.
//!
//! The committed round's results, in batch order, are the batch's answer
//! ([`BatchAction::Answer`]): exactly one partition's results (the model test checks them).
//! A round aborted by a recovery (an intent prevented, a leader change) is begun again, up to
//! [`ATTEMPTS_MAX`] times; a leader deposed before it knew answers "outcome unknown".
//!
//! Everything a participant sends is input from outside: an acknowledgement whose results do
//! not fit its share is ignored ([`BatchIgnored`]) and changes nothing.

use std::collections::{BTreeMap, VecDeque};

use kassa_wire::multi_batch::encode_to_vec;
use kassa_wire::{
    Account, CreateAccountResult, CreateAccountStatus, CreateTransferResult, CreateTransferStatus,
    Operation, RequestHeader, Transfer,
};
use zerocopy::IntoBytes;

use crate::intents::{
    IntentReply, IntentShare, ParticipantReply, RareEntry, ShareOfBatch, ShareResults,
};
use crate::limits::BATCH_EVENTS_MAX;
use crate::parallel_commit::{
    Action, GaveUp, HomeAnswer, HomeCommand, HomeLeader, Ignored, Message, Outcome,
    ParticipantCommand, Records, Staging, TxnId,
};
use crate::shares::{split, InTheBatch, Rounds, Share, ShareEvent, ShareStatus};
use crate::StagedReply;

/// How many rounds of one batch a recovery may abort before its client is told the outcome is
/// unknown (nothing of it is applied then).
pub const ATTEMPTS_MAX: u32 = 16;

/// How long a round may wait for its intents before the home gives it up
/// (`HomeLeader::give_up`) and runs it again: a participant busy with another transaction's
/// intent may be waiting for one of this round's partitions (a deadlock between two homes).
pub const GIVE_UP_MS: u64 = 1_000;

/// A batch to run in shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateBatch {
    Transfers(Vec<Transfer>),
    Accounts(Vec<Account>),
}

/// The driver's name for a batch (its client request).
pub type BatchId = u64;

/// What the home asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchAction {
    Send {
        to: u32,
        message: Message<IntentShare>,
    },
    /// A home entry to append: a [`HomeCommand`], or a wire round's stage with its reply.
    Append(RareEntry),
    /// The batch committed: its results, in batch order. For a wire request, the stage
    /// sealed and kept its reply in the home (`ForeignRequests`).
    Answer {
        batch: BatchId,
        results: ShareResults,
    },
    /// The outcome is unknown to this leader (deposed, or out of attempts).
    Unknown { batch: BatchId },
}

/// Why [`BatchHome::begin`] refused a batch; nothing was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("a batch of {0} events: between 1 and the batch limit")]
    Size(usize),
    #[error("{partitions} partitions named for {events} events")]
    Partitions { events: usize, partitions: usize },
    #[error("batch {0} is running already")]
    Known(BatchId),
    #[error("a wire request of another operation than its batch's")]
    Operation,
    #[error("a wire request's batches hold {batches} events, not the batch's {events}")]
    Batches { events: usize, batches: usize },
}

/// The wire request a batch is: its header, and how many of the batch's events each batch of
/// its body holds, in order (a multi-batch body run as one batch: `wire::in_shares` runs
/// only those whose batches run alike either way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRequest {
    pub header: RequestHeader,
    pub batches: Vec<u32>,
}

/// Why a participant's message was ignored; it changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchIgnored {
    #[error(transparent)]
    Core(#[from] Ignored),
    #[error(
        "{txn:?}: partition {from} acknowledged its intent without results that fit its share"
    )]
    Results { txn: TxnId, from: u32 },
}

/// A create event kind, as the home runs it.
trait Kind: ShareEvent + Clone {
    type Status: ShareStatus;
    type Result: Copy;
    fn wrap(share: Share<Self>, batch: InTheBatch<Self::Status>) -> ShareOfBatch;
    fn results(results: &ShareResults) -> Option<&[Self::Result]>;
    fn gather(results: Vec<Self::Result>) -> ShareResults;
    fn answer(result: &Self::Result) -> (Self::Status, u64);
}

impl Kind for Transfer {
    type Status = CreateTransferStatus;
    type Result = CreateTransferResult;
    fn wrap(share: Share<Self>, batch: InTheBatch<Self::Status>) -> ShareOfBatch {
        ShareOfBatch::Transfers { share, batch }
    }
    fn results(results: &ShareResults) -> Option<&[Self::Result]> {
        match results {
            ShareResults::Transfers(results) => Some(results),
            ShareResults::Accounts(_) => None,
        }
    }
    fn gather(results: Vec<Self::Result>) -> ShareResults {
        ShareResults::Transfers(results)
    }
    fn answer(result: &Self::Result) -> (Self::Status, u64) {
        (result.status, result.timestamp)
    }
}

impl Kind for Account {
    type Status = CreateAccountStatus;
    type Result = CreateAccountResult;
    fn wrap(share: Share<Self>, batch: InTheBatch<Self::Status>) -> ShareOfBatch {
        ShareOfBatch::Accounts { share, batch }
    }
    fn results(results: &ShareResults) -> Option<&[Self::Result]> {
        match results {
            ShareResults::Accounts(results) => Some(results),
            ShareResults::Transfers(_) => None,
        }
    }
    fn gather(results: Vec<Self::Result>) -> ShareResults {
        ShareResults::Accounts(results)
    }
    fn answer(result: &Self::Result) -> (Self::Status, u64) {
        (result.status, result.timestamp)
    }
}

/// A batch's shares and rounds.
struct PlanOf<E: Kind> {
    shares: Vec<Share<E>>,
    rounds: Rounds<E::Status>,
    batch_len: u32,
    imported: bool,
}

impl<E: Kind> PlanOf<E> {
    fn new(events: &[E], partitions: &[u32]) -> PlanOf<E> {
        PlanOf {
            shares: split(events, partitions),
            rounds: Rounds::new(events, partitions),
            batch_len: events.len() as u32,
            imported: events[0].imported(),
        }
    }

    fn intents(&self, now: u64) -> BTreeMap<u32, IntentShare> {
        let intent = |share: &Share<E>| {
            let batch = InTheBatch {
                batch_len: self.batch_len,
                batch_imported: self.imported,
                forced: self.rounds.forced(share),
            };
            let share = E::wrap(share.clone(), batch);
            (share_partition(&share), IntentShare { now, share })
        };
        self.shares.iter().map(intent).collect()
    }

    fn fits(&self, from: u32, results: &ShareResults) -> bool {
        let share = self.shares.iter().find(|s| s.partition == from);
        let results = E::results(results);
        share
            .zip(results)
            .is_some_and(|(share, results)| share.events.len() == results.len())
    }

    /// The round's results in batch order, if every share has them.
    fn assemble(&self, results: &BTreeMap<u32, ShareResults>) -> Option<Vec<E::Result>> {
        let mut batch: Vec<Option<E::Result>> = vec![None; self.batch_len as usize];
        for share in &self.shares {
            let results = E::results(results.get(&share.partition)?)?;
            for (position, result) in share.positions.iter().zip(results) {
                batch[*position as usize] = Some(*result);
            }
        }
        batch.into_iter().collect()
    }

    fn next(&mut self, results: &BTreeMap<u32, ShareResults>) -> Option<bool> {
        let batch = self.assemble(results)?;
        let answers: Vec<(E::Status, u64)> = batch.iter().map(E::answer).collect();
        self.rounds.next(&answers).ok()
    }
}

fn share_partition(share: &ShareOfBatch) -> u32 {
    match share {
        ShareOfBatch::Transfers { share, .. } => share.partition,
        ShareOfBatch::Accounts { share, .. } => share.partition,
    }
}

enum Plan {
    Transfers(PlanOf<Transfer>),
    Accounts(PlanOf<Account>),
}

impl Plan {
    fn intents(&self, now: u64) -> BTreeMap<u32, IntentShare> {
        match self {
            Plan::Transfers(plan) => plan.intents(now),
            Plan::Accounts(plan) => plan.intents(now),
        }
    }

    fn fits(&self, from: u32, results: &ShareResults) -> bool {
        match self {
            Plan::Transfers(plan) => plan.fits(from, results),
            Plan::Accounts(plan) => plan.fits(from, results),
        }
    }

    fn assemble(&self, results: &BTreeMap<u32, ShareResults>) -> Option<ShareResults> {
        match self {
            Plan::Transfers(plan) => plan.assemble(results).map(Transfer::gather),
            Plan::Accounts(plan) => plan.assemble(results).map(Account::gather),
        }
    }

    /// `Some(true)`: the round stands; `Some(false)`: run the next; `None`: results that no
    /// partition computes.
    fn next(&mut self, results: &BTreeMap<u32, ShareResults>) -> Option<bool> {
        match self {
            Plan::Transfers(plan) => plan.next(results),
            Plan::Accounts(plan) => plan.next(results),
        }
    }

    fn staging(&self) -> Staging {
        let spans = match self {
            Plan::Transfers(plan) => plan.rounds.spans_a_chain(),
            Plan::Accounts(plan) => plan.rounds.spans_a_chain(),
        };
        if spans {
            Staging::AfterIntents
        } else {
            Staging::WithIntents
        }
    }
}

struct Running {
    now: u64,
    plan: Plan,
    /// The wire request the batch is, whose reply its stage commits.
    request: Option<WireRequest>,
    /// Rounds a recovery aborted.
    attempts: u32,
}

struct Round {
    batch: BatchId,
    /// When it began, to give it up if its intents take too long.
    begun_ms: u64,
    /// Each participant's results, from its acknowledgement.
    results: BTreeMap<u32, ShareResults>,
    /// Dropped by the rounds: its abort answers nobody.
    dropped: bool,
    /// A wire round's reply, once its results stand: its stage carries it.
    reply: Option<Box<StagedReply>>,
}

/// A record home leader's batches in progress, in memory only (as its [`HomeLeader`]'s): a new
/// leader starts with none, and recovers the rounds the participants ask about.
pub struct BatchHome {
    home: u32,
    leader: HomeLeader<IntentShare>,
    /// The next round's number; the driver starts it above every earlier leader's.
    number_next: u64,
    batches: BTreeMap<BatchId, Running>,
    rounds: BTreeMap<TxnId, Round>,
}

impl BatchHome {
    /// A leader of `home` numbering its rounds from `number_first` (above every number an
    /// earlier leader of `home` used: its epoch, as claim rounds are numbered).
    pub fn new(home: u32, number_first: u64) -> BatchHome {
        let mut leader = HomeLeader::new(home);
        leader.epoch(number_first);
        BatchHome {
            home,
            leader,
            number_next: number_first,
            batches: BTreeMap::new(),
            rounds: BTreeMap::new(),
        }
    }

    /// Runs `batch`, each event in the partition `partitions` names for it. The batch of a
    /// wire request (`request`) has its rounds staged after their intents, and the stage
    /// carries the reply (the results, cut into the request's batches), so the entry that
    /// commits the round also keeps its reply for every copy of the request.
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        &mut self,
        batch: BatchId,
        request: Option<WireRequest>,
        now: u64,
        events: &CreateBatch,
        partitions: &[u32],
        now_ms: u64,
        actions: &mut Vec<BatchAction>,
    ) -> Result<(), BatchError> {
        let operation = match events {
            CreateBatch::Transfers(_) => Operation::CreateTransfers,
            CreateBatch::Accounts(_) => Operation::CreateAccounts,
        };
        if (request.as_ref()).is_some_and(|r| r.header.operation != operation.as_u8()) {
            return Err(BatchError::Operation);
        }
        let events_len = match events {
            CreateBatch::Transfers(events) => events.len(),
            CreateBatch::Accounts(events) => events.len(),
        };
        if let Some(request) = &request {
            let batches = request.batches.iter().map(|b| *b as usize).sum();
            if batches != events_len {
                let events = events_len;
                return Err(BatchError::Batches { events, batches });
            }
        }
        if events_len == 0 || events_len > BATCH_EVENTS_MAX {
            return Err(BatchError::Size(events_len));
        }
        if partitions.len() != events_len {
            let partitions = partitions.len();
            let events = events_len;
            return Err(BatchError::Partitions { events, partitions });
        }
        if self.batches.contains_key(&batch) {
            return Err(BatchError::Known(batch));
        }
        let plan = match events {
            CreateBatch::Transfers(events) => Plan::Transfers(PlanOf::new(events, partitions)),
            CreateBatch::Accounts(events) => Plan::Accounts(PlanOf::new(events, partitions)),
        };
        let running = Running {
            now,
            plan,
            request,
            attempts: 0,
        };
        self.batches.insert(batch, running);
        let mut core = Vec::new();
        self.start_round(batch, now_ms, &mut core);
        self.perform(core, now_ms, actions);
        Ok(())
    }

    fn start_round(&mut self, batch: BatchId, now_ms: u64, core: &mut Vec<Action<IntentShare>>) {
        let running = &self.batches[&batch];
        let txn = TxnId {
            home: self.home,
            number: self.number_next,
        };
        self.number_next += 1;
        let intents = running.plan.intents(running.now);
        let staging = match running.request {
            Some(_) => Staging::AfterIntents,
            None => running.plan.staging(),
        };
        let begun = self.leader.begin(txn, intents, staging, now_ms, core);
        begun.expect("a fresh round of this home with participants");
        let round = Round {
            batch,
            begun_ms: now_ms,
            results: BTreeMap::new(),
            dropped: false,
            reply: None,
        };
        self.rounds.insert(txn, round);
    }

    /// A participant's message, with the results its intent acknowledgement carries.
    pub fn received(
        &mut self,
        message: Message<IntentShare>,
        results: Option<ShareResults>,
        records: &Records,
        term_committed: bool,
        now_ms: u64,
        actions: &mut Vec<BatchAction>,
    ) -> Result<(), BatchIgnored> {
        if let Message::IntentAck {
            txn,
            from,
            written: true,
        } = &message
        {
            // A dropped round stays until its abort is answered; its batch runs in a later
            // round meanwhile, and may be answered and gone: its results are not needed.
            let live = (self.rounds.get_mut(txn)).filter(|round| !round.dropped);
            let running = live.and_then(|round| Some((self.batches.get(&round.batch)?, round)));
            if let Some((running, round)) = running {
                let plan = &running.plan;
                match results {
                    Some(results) if plan.fits(*from, &results) => {
                        round.results.insert(*from, results);
                    }
                    // Without results, the round could not be judged or answered.
                    _ => {
                        return Err(BatchIgnored::Results {
                            txn: *txn,
                            from: *from,
                        })
                    }
                }
            }
        }
        let mut core = Vec::new();
        let received = self
            .leader
            .received(message, records, term_committed, now_ms, &mut core);
        self.perform(core, now_ms, actions);
        Ok(received?)
    }

    /// This home's log applied `command` with `answer`; `records` is its state after it.
    pub fn applied(
        &mut self,
        command: &HomeCommand,
        answer: HomeAnswer,
        records: &Records,
        now_ms: u64,
        actions: &mut Vec<BatchAction>,
    ) {
        let mut core = Vec::new();
        self.leader
            .applied(command, answer, records, now_ms, &mut core);
        self.perform(core, now_ms, actions);
    }

    /// Sends and appends again what was not acknowledged or applied in time, and gives up
    /// rounds whose intents took longer than [`GIVE_UP_MS`] (each is then run again).
    pub fn tick(
        &mut self,
        records: &Records,
        term_committed: bool,
        now_ms: u64,
        actions: &mut Vec<BatchAction>,
    ) {
        let mut core = Vec::new();
        self.leader
            .adopt(records, term_committed, now_ms, &mut core);
        self.leader.tick(now_ms, &mut core);
        let late: Vec<TxnId> = (self.rounds.iter())
            .filter(|(_, round)| !round.dropped && now_ms >= round.begun_ms + GIVE_UP_MS)
            .map(|(txn, _)| *txn)
            .collect();
        for txn in late {
            // Not waiting: committed meanwhile, recovering, or its stage not applied yet.
            let given_up = self
                .leader
                .give_up(txn, records, term_committed, now_ms, &mut core);
            if given_up == Ok(GaveUp::Aborted) {
                // Certainly aborted: its abort answers nobody here, the batch runs again now.
                let round = self.rounds.get_mut(&txn).expect("late");
                round.dropped = true;
                let batch = round.batch;
                self.again(batch, now_ms, &mut core, actions);
            }
            // Recovering: it may still commit; its decision answers the batch, or runs it
            // again if aborted.
        }
        self.perform(core, now_ms, actions);
    }

    /// This leader was deposed: every batch it has not answered is told "outcome unknown".
    pub fn deposed(mut self, actions: &mut Vec<BatchAction>) {
        let mut core = Vec::new();
        let leader = std::mem::replace(&mut self.leader, HomeLeader::new(self.home));
        leader.deposed(&mut core);
        self.perform(core, 0, actions);
    }

    /// Batches running.
    pub fn running(&self) -> usize {
        self.batches.len()
    }

    /// The number the next round would take.
    pub fn number_next(&self) -> u64 {
        self.number_next
    }

    /// Numbers the next rounds from `number_first`, a new epoch's (the driver logs one before
    /// its rounds reach the next epoch's numbers).
    pub fn renumber(&mut self, number_first: u64) {
        assert!(
            number_first >= self.number_next,
            "rounds are numbered upwards"
        );
        self.leader.epoch(number_first);
        self.number_next = number_first;
    }

    fn perform(
        &mut self,
        core: Vec<Action<IntentShare>>,
        now_ms: u64,
        actions: &mut Vec<BatchAction>,
    ) {
        let mut queue = VecDeque::from(core);
        while let Some(action) = queue.pop_front() {
            let mut more = Vec::new();
            match action {
                Action::Send { to, message } => actions.push(BatchAction::Send { to, message }),
                Action::Append(command) => actions.push(BatchAction::Append(self.entry(command))),
                Action::Written { txn } => self.written(txn, now_ms, &mut more, actions),
                Action::Answer {
                    txn,
                    outcome: Outcome::Applied,
                } => {
                    let Some(round) = self.rounds.remove(&txn) else {
                        continue;
                    };
                    let Some(running) = self.batches.remove(&round.batch) else {
                        continue;
                    };
                    let batch = round.batch;
                    // Every intent was acknowledged with results that fit, or it would not
                    // have committed under this leader.
                    match running.plan.assemble(&round.results) {
                        Some(results) => actions.push(BatchAction::Answer { batch, results }),
                        None => actions.push(BatchAction::Unknown { batch }),
                    }
                }
                Action::Answer {
                    txn,
                    outcome: Outcome::Aborted,
                } => {
                    let Some(round) = self.rounds.remove(&txn) else {
                        continue;
                    };
                    if !round.dropped {
                        self.again(round.batch, now_ms, &mut more, actions);
                    }
                }
                Action::AnswerUnknown { txn } => {
                    let Some(round) = self.rounds.remove(&txn) else {
                        continue;
                    };
                    if !round.dropped && self.batches.remove(&round.batch).is_some() {
                        actions.push(BatchAction::Unknown { batch: round.batch });
                    }
                }
            }
            queue.extend(more);
        }
    }

    /// Every intent of a round staged after them is written: judge its results.
    fn written(
        &mut self,
        txn: TxnId,
        now_ms: u64,
        core: &mut Vec<Action<IntentShare>>,
        actions: &mut Vec<BatchAction>,
    ) {
        let Some(round) = self.rounds.get_mut(&txn) else {
            return;
        };
        let Some(running) = self.batches.get_mut(&round.batch) else {
            return;
        };
        match running.plan.next(&round.results) {
            Some(true) => {
                if let Some(request) = &running.request {
                    let results = running.plan.assemble(&round.results);
                    let results = results.expect("the round's results stand");
                    round.reply = Some(Box::new(StagedReply {
                        request: request.header,
                        now: running.now,
                        body: reply_body(&results, &request.batches),
                    }));
                }
                let staged = self.leader.stage(txn, now_ms, core);
                staged.expect("the leader told the round written");
            }
            Some(false) => {
                round.dropped = true;
                let batch = round.batch;
                let aborted = self.leader.abort(txn, now_ms, core);
                aborted.expect("the leader told the round written");
                self.start_round(batch, now_ms, core);
            }
            None => {
                // Results no partition computes: the round is aborted and run again.
                let batch = round.batch;
                round.dropped = true;
                let aborted = self.leader.abort(txn, now_ms, core);
                aborted.expect("the leader told the round written");
                self.again(batch, now_ms, core, actions);
            }
        }
    }

    /// The entry that appends `command`: a wire round's stage carries its reply.
    fn entry(&self, command: HomeCommand) -> RareEntry {
        let HomeCommand::Stage { txn, participants } = command else {
            return RareEntry::Home(command);
        };
        match self.rounds.get(&txn).and_then(|round| round.reply.clone()) {
            Some(reply) => RareEntry::WireStage {
                txn,
                participants,
                reply,
            },
            None => RareEntry::Home(HomeCommand::Stage { txn, participants }),
        }
    }

    /// A recovery aborted the batch's round: run it again, unless out of attempts.
    fn again(
        &mut self,
        batch: BatchId,
        now_ms: u64,
        core: &mut Vec<Action<IntentShare>>,
        actions: &mut Vec<BatchAction>,
    ) {
        let Some(running) = self.batches.get_mut(&batch) else {
            return;
        };
        running.attempts += 1;
        if running.attempts >= ATTEMPTS_MAX {
            self.batches.remove(&batch);
            actions.push(BatchAction::Unknown { batch });
            return;
        }
        self.start_round(batch, now_ms, core);
    }
}

/// A wire reply's body: `results` cut into the request's `batches` (events per batch), as a
/// partition running the request alone encodes them (`Ledger::execute_batches`).
fn reply_body(results: &ShareResults, batches: &[u32]) -> Vec<u8> {
    let (bytes, size) = match results {
        ShareResults::Transfers(results) => {
            (results.as_bytes(), Operation::CreateTransfers.result_size())
        }
        ShareResults::Accounts(results) => {
            (results.as_bytes(), Operation::CreateAccounts.result_size())
        }
    };
    let mut slices = Vec::with_capacity(batches.len());
    let mut rest = bytes;
    for events in batches {
        let (batch, after) = rest.split_at(*events as usize * size);
        slices.push(batch);
        rest = after;
    }
    assert!(rest.is_empty(), "the batches hold every result");
    encode_to_vec(size, &slices).expect("a request's results fit one message")
}

/// A participant leader's part: its log's reply to a rare-path entry made from a home's
/// message, as the message to send back with the results it carries. A busy intent is not
/// acknowledged (the home sends it again); a malformed one is refused.
pub fn participant_message(
    participant: u32,
    command: &ParticipantCommand<IntentShare>,
    reply: &ParticipantReply,
) -> Option<(u32, Message<IntentShare>, Option<ShareResults>)> {
    match (command, reply) {
        (ParticipantCommand::Intent { txn, .. }, ParticipantReply::Intent(reply)) => {
            let (written, results) = match reply {
                IntentReply::Written { results } => (true, results.clone()),
                IntentReply::Refused | IntentReply::Malformed(_) => (false, None),
                IntentReply::Busy { .. } => return None,
            };
            let message = Message::IntentAck {
                txn: *txn,
                from: participant,
                written,
            };
            Some((txn.home, message, results))
        }
        (ParticipantCommand::Prevent { txn }, ParticipantReply::Prevent { has_intent }) => {
            let message = Message::PreventAck {
                txn: *txn,
                from: participant,
                has_intent: *has_intent,
            };
            Some((txn.home, message, None))
        }
        (ParticipantCommand::Resolve { txn, .. }, ParticipantReply::Resolved { .. }) => {
            let message = Message::ResolveAck {
                txn: *txn,
                from: participant,
            };
            Some((txn.home, message, None))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_wire::{AccountId, TransferFlags, TransferId};

    fn transfer(id: u128, ledger: u32, linked: bool) -> Transfer {
        let mut flags = TransferFlags::default();
        flags.set(TransferFlags::LINKED, linked);
        Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(1),
            credit_account_id: AccountId(2),
            amount: 1,
            ledger,
            code: 1,
            flags,
            ..Transfer::default()
        }
    }

    fn created(count: usize) -> ShareResults {
        let result = CreateTransferResult {
            timestamp: 1,
            status: CreateTransferStatus::Created,
            reserved: 0,
        };
        ShareResults::Transfers(vec![result; count])
    }

    /// A home at partition 0 running batch 7: events 0 and 2 in partition 1, 1 in partition 2.
    fn begun(linked: bool) -> (BatchHome, Vec<BatchAction>) {
        let mut home = BatchHome::new(0, 100);
        let events = vec![
            transfer(1, 1, linked),
            transfer(2, 2, false),
            transfer(3, 1, false),
        ];
        let mut actions = Vec::new();
        let batch = CreateBatch::Transfers(events);
        home.begin(7, None, 50, &batch, &[1, 2, 1], 0, &mut actions)
            .expect("begins");
        (home, actions)
    }

    fn ack(from: u32) -> Message<IntentShare> {
        let txn = TxnId {
            home: 0,
            number: 100,
        };
        Message::IntentAck {
            txn,
            from,
            written: true,
        }
    }

    /// A wire request's round is staged only after its intents (even without a chain across
    /// partitions), and its stage carries the reply: the round's results, in batch order, cut
    /// into the request's batches. A request of another operation than its batch's, or whose
    /// batches do not hold the batch's events, is refused.
    #[test]
    fn a_wire_requests_stage_carries_its_reply() {
        let mut header = RequestHeader::new(0, 9, kassa_wire::header::Release::new(0, 17, 8), 0);
        let batch = CreateBatch::Transfers(vec![
            transfer(1, 1, false),
            transfer(2, 2, false),
            transfer(3, 1, false),
        ]);
        let mut home = BatchHome::new(0, 100);
        let mut actions = Vec::new();
        let request = |header, batches: &[u32]| {
            Some(WireRequest {
                header,
                batches: batches.to_vec(),
            })
        };
        let partitions = [1, 2, 1];
        header.operation = Operation::CreateAccounts.as_u8();
        let wrong = request(header, &[3]);
        let refused = home.begin(7, wrong, 50, &batch, &partitions, 0, &mut actions);
        assert_eq!(refused, Err(BatchError::Operation));
        header.operation = Operation::CreateTransfers.as_u8();
        let short = request(header, &[2]);
        let refused = home.begin(7, short, 50, &batch, &partitions, 0, &mut actions);
        let batches = BatchError::Batches {
            events: 3,
            batches: 2,
        };
        assert_eq!(refused, Err(batches));
        // Two batches in the request's body: the first two events, then the third.
        let two = request(header, &[2, 1]);
        let begun = home.begin(7, two, 50, &batch, &partitions, 0, &mut actions);
        begun.expect("begins");
        assert!(
            actions
                .iter()
                .all(|a| matches!(a, BatchAction::Send { .. })),
            "no stage with the intents: {actions:?}"
        );
        let records = Records::default();
        let mut actions = Vec::new();
        let (first, second) = (created(2), created(1));
        home.received(ack(1), Some(first), &records, true, 0, &mut actions)
            .unwrap();
        home.received(ack(2), Some(second), &records, true, 0, &mut actions)
            .unwrap();
        let [BatchAction::Append(RareEntry::WireStage {
            participants,
            reply,
            ..
        })] = actions.as_slice()
        else {
            panic!("a wire stage: {actions:?}");
        };
        assert_eq!(participants, &vec![1, 2]);
        assert_eq!((reply.request, reply.now), (header, 50));
        assert_eq!(reply.body, reply_body(&created(3), &[2, 1]));
        let decoded = kassa_wire::multi_batch::MultiBatch::decode(&reply.body, 16, 8189);
        let lens: Vec<usize> = decoded
            .expect("a body")
            .batches()
            .map(<[u8]>::len)
            .collect();
        assert_eq!(lens, [32, 16]);
    }

    #[test]
    fn batches_that_cannot_run_are_refused() {
        let mut home = BatchHome::new(0, 1);
        let mut actions = Vec::new();
        let empty = CreateBatch::Transfers(Vec::new());
        let refused = home.begin(1, None, 50, &empty, &[], 0, &mut actions);
        assert_eq!(refused, Err(BatchError::Size(0)));
        let one = CreateBatch::Transfers(vec![transfer(1, 1, false)]);
        let refused = home.begin(1, None, 50, &one, &[1, 2], 0, &mut actions);
        let mismatch = BatchError::Partitions {
            events: 1,
            partitions: 2,
        };
        assert_eq!(refused, Err(mismatch));
        home.begin(1, None, 50, &one, &[1], 0, &mut actions)
            .unwrap();
        let again = home.begin(1, None, 50, &one, &[1], 0, &mut actions);
        assert_eq!(again, Err(BatchError::Known(1)));
        assert_eq!(home.running(), 1);
    }

    #[test]
    fn a_batch_without_chains_across_partitions_stages_with_its_intents() {
        for linked in [false, true] {
            let (_, actions) = begun(linked);
            let sends = (actions.iter())
                .filter(|a| matches!(a, BatchAction::Send { .. }))
                .count();
            assert_eq!(sends, 2, "one intent per partition");
            let stage = actions.iter().any(|a| matches!(a, BatchAction::Append(_)));
            // Event 0's chain (0, 1) spans partitions 1 and 2 when linked.
            assert_eq!(stage, !linked);
        }
    }

    #[test]
    fn acknowledgements_without_fitting_results_are_ignored() {
        let (mut home, _) = begun(true);
        let records = Records::default();
        let mut actions = Vec::new();
        let txn = TxnId {
            home: 0,
            number: 100,
        };
        let unfit = BatchIgnored::Results { txn, from: 1 };
        let received = home.received(ack(1), None, &records, true, 0, &mut actions);
        assert_eq!(received, Err(unfit));
        let received = home.received(ack(1), Some(created(1)), &records, true, 0, &mut actions);
        assert_eq!(received, Err(unfit));
        let accounts = ShareResults::Accounts(Vec::new());
        let received = home.received(ack(1), Some(accounts), &records, true, 0, &mut actions);
        assert_eq!(received, Err(unfit));
        assert!(actions.is_empty());
        // Fitting results from both: every intent is written; the chain held everywhere, so
        // the round is staged.
        home.received(ack(1), Some(created(2)), &records, true, 0, &mut actions)
            .unwrap();
        assert!(actions.is_empty());
        home.received(ack(2), Some(created(1)), &records, true, 0, &mut actions)
            .unwrap();
        let stage = HomeCommand::Stage {
            txn,
            participants: vec![1, 2],
        };
        assert_eq!(actions, vec![BatchAction::Append(RareEntry::Home(stage))]);
    }

    #[test]
    fn a_round_whose_intents_take_too_long_is_given_up() {
        let records = Records::default();
        let sends = |actions: &[BatchAction]| -> Vec<Message<IntentShare>> {
            let send = |a: &BatchAction| match a {
                BatchAction::Send { message, .. } => Some(message.clone()),
                _ => None,
            };
            actions.iter().filter_map(send).collect()
        };
        // Staged after its intents (a chain spans partitions): aborted, and run again.
        let (mut home, _) = begun(true);
        let mut actions = Vec::new();
        home.tick(&records, true, GIVE_UP_MS - 1, &mut actions);
        assert!(!sends(&actions)
            .iter()
            .any(|m| matches!(m, Message::Resolve { .. })));
        let mut actions = Vec::new();
        home.tick(&records, true, GIVE_UP_MS, &mut actions);
        let sent = sends(&actions);
        let aborted = |m: &&Message<IntentShare>| matches!(m, Message::Resolve { txn, outcome: Outcome::Aborted } if txn.number == 100);
        assert_eq!(sent.iter().filter(aborted).count(), 2);
        let next_round = |m: &&Message<IntentShare>| matches!(m, Message::Intent { txn, .. } if txn.number == 101);
        assert_eq!(sent.iter().filter(next_round).count(), 2);
        assert_eq!(home.running(), 1);
        // Staged with its intents: recovered once its stage applied, never run again while
        // it may still commit.
        let (mut home, actions) = begun(false);
        let stage = actions.iter().find_map(|a| match a {
            BatchAction::Append(stage) => stage.home_command(),
            _ => None,
        });
        let stage = stage.expect("staged with its intents");
        let mut actions = Vec::new();
        home.tick(&records, true, GIVE_UP_MS, &mut actions);
        assert!(sends(&actions)
            .iter()
            .all(|m| matches!(m, Message::Intent { .. })));
        let mut records = Records::default();
        let answer = records.apply(&stage);
        home.applied(&stage, answer, &records, GIVE_UP_MS, &mut actions);
        let mut actions = Vec::new();
        home.tick(&records, true, GIVE_UP_MS + 1, &mut actions);
        let sent = sends(&actions);
        assert_eq!(sent.len(), 2);
        assert!(sent.iter().all(|m| matches!(m, Message::Prevent { .. })));
    }

    /// A round given up stays until its abort is answered. A late acknowledgement of it,
    /// once the batch's next round committed and answered it, changes nothing.
    #[test]
    fn a_late_acknowledgement_of_a_dropped_round_after_the_batch_was_answered_is_harmless() {
        let (mut home, _) = begun(true);
        let mut records = Records::default();
        let mut actions = Vec::new();
        home.tick(&records, true, GIVE_UP_MS, &mut actions);
        let next = |from| {
            let txn = TxnId {
                home: 0,
                number: 101,
            };
            Message::IntentAck {
                txn,
                from,
                written: true,
            }
        };
        let mut actions = Vec::new();
        home.received(
            next(1),
            Some(created(2)),
            &records,
            true,
            GIVE_UP_MS,
            &mut actions,
        )
        .unwrap();
        home.received(
            next(2),
            Some(created(1)),
            &records,
            true,
            GIVE_UP_MS,
            &mut actions,
        )
        .unwrap();
        let stage = actions.iter().find_map(|a| match a {
            BatchAction::Append(stage) => stage.home_command(),
            _ => None,
        });
        let stage = stage.expect("the next round is staged");
        let answer = records.apply(&stage);
        let mut actions = Vec::new();
        home.applied(&stage, answer, &records, GIVE_UP_MS, &mut actions);
        assert!(actions
            .iter()
            .any(|a| matches!(a, BatchAction::Answer { batch: 7, .. })));
        assert_eq!(home.running(), 0);
        let mut actions = Vec::new();
        let late = home.received(
            ack(1),
            Some(created(2)),
            &records,
            true,
            GIVE_UP_MS,
            &mut actions,
        );
        assert!(
            late.is_ok() || matches!(late, Err(BatchIgnored::Core(_))),
            "{late:?}"
        );
        assert!(!actions
            .iter()
            .any(|a| matches!(a, BatchAction::Answer { .. } | BatchAction::Unknown { .. })));
    }

    #[test]
    fn a_deposed_leader_answers_its_batches_outcome_unknown() {
        let (home, _) = begun(false);
        let mut actions = Vec::new();
        home.deposed(&mut actions);
        assert_eq!(actions, vec![BatchAction::Unknown { batch: 7 }]);
    }

    #[test]
    fn participants_acknowledge_with_their_results_and_busy_intents_wait() {
        let txn = TxnId { home: 3, number: 9 };
        let (share, batch) = (
            Share {
                partition: 1,
                positions: vec![0],
                events: vec![transfer(1, 1, false)],
                linked: vec![false],
            },
            InTheBatch {
                batch_len: 1,
                batch_imported: false,
                forced: Vec::new(),
            },
        );
        let effects = IntentShare {
            now: 5,
            share: ShareOfBatch::Transfers { share, batch },
        };
        let intent = ParticipantCommand::Intent { txn, effects };
        let written = ParticipantReply::Intent(IntentReply::Written {
            results: Some(created(1)),
        });
        let (to, message, results) = participant_message(1, &intent, &written).unwrap();
        assert_eq!((to, results), (3, Some(created(1))));
        let acked = Message::IntentAck {
            txn,
            from: 1,
            written: true,
        };
        assert_eq!(message, acked);
        let busy = ParticipantReply::Intent(IntentReply::Busy { holder: txn });
        assert_eq!(participant_message(1, &intent, &busy), None);
        let refused = ParticipantReply::Intent(IntentReply::Refused);
        let (_, message, _) = participant_message(1, &intent, &refused).unwrap();
        assert!(matches!(message, Message::IntentAck { written: false, .. }));
    }
}
