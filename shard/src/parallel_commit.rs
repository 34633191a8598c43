//! Parallel commits over partitions' logs: the rare path of `docs/transactions.md` (design D),
//! for the transactions that span partitions (linked chains across ledgers, batches that mix
//! them), as a pure core. No clock, no I/O: log entries are applied in log order, messages and
//! `now_ms` come in, and the leader returns [`Action`]s for a driver to perform.
//!
//! A transaction has a *record home*: one of its partitions, whose leader coordinates it. The
//! protocol (CockroachDB's parallel commits, over Kassa's partitions):
//!
//! 1. The home sends each participant its **intent** (the effects on its records, which lock
//!    them) and appends `Stage { participants }` to its own log, all at once.
//! 2. The transaction has committed once the stage and every intent are durable. The client
//!    is answered then, and the home appends `Finish(Applied)` and tells the participants to
//!    resolve their intents (apply the effects, unlock).
//! 3. **Recovery**, when the coordinator is gone (a new leader, a participant asking about an
//!    intent it has held too long): the home asks every participant to **prevent** the
//!    intent. A participant that holds it says so; one that does not writes a marker that
//!    refuses the intent forever. All held: the transaction had committed, `Finish(Applied)`.
//!    One prevented: it never can, `Finish(Aborted)`. A home with no stage at all writes
//!    `Finish(Aborted)` first, so that a late stage is refused.
//!
//! Invariants:
//! - A participant's intent and a prevent marker for the same transaction exclude each other:
//!   whichever its log applies first wins. So a recovery and a commit can never both succeed.
//! - The home decides once: its first `Finish` stands, later ones change nothing.
//! - A home decides (or answers "no stage") only once its leader has committed an entry of
//!   its own term: every stage an earlier leader committed is then applied.
//! - A participant applies a transaction's effects at most once, and only after `Applied`.

use std::collections::{BTreeMap, BTreeSet};

/// A transaction: its record home and a number unique there (the home leader's epoch and a
/// count, as claim rounds are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId {
    pub home: u32,
    pub number: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Applied,
    Aborted,
}

/// Entries of a participant's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParticipantCommand<E> {
    /// The transaction's effects on this partition; they lock its records until resolved.
    Intent { txn: TxnId, effects: E },
    /// The home's recovery: refuse the intent from now on, unless it is here already.
    Prevent { txn: TxnId },
    /// The home's decision.
    Resolve { txn: TxnId, outcome: Outcome },
}

/// What a participant's log answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParticipantAnswer<E> {
    /// The intent is held (now or from before).
    Written,
    /// The intent came after a prevent or a resolution: it is refused.
    Refused,
    /// A prevent found the intent held.
    HasIntent,
    /// A prevent found no intent; none will ever be taken.
    Prevented,
    /// The decision: the effects to apply now (`Applied`, the first time), or nothing.
    Resolved { apply: Option<E> },
}

/// How a participant closed a transaction, remembered so that late messages change nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    Prevented,
    Resolved(Outcome),
}

/// A participant's transaction state, changed only by its log.
#[derive(Clone, Debug)]
pub struct Participant<E> {
    intents: BTreeMap<TxnId, E>,
    closed: BTreeMap<TxnId, Closed>,
}

impl<E> Default for Participant<E> {
    fn default() -> Participant<E> {
        Participant {
            intents: BTreeMap::new(),
            closed: BTreeMap::new(),
        }
    }
}

impl<E: Clone> Participant<E> {
    pub fn apply(&mut self, command: ParticipantCommand<E>) -> ParticipantAnswer<E> {
        match command {
            ParticipantCommand::Intent { txn, effects } => {
                if self.intents.contains_key(&txn) {
                    return ParticipantAnswer::Written;
                }
                match self.closed.get(&txn) {
                    Some(Closed::Resolved(Outcome::Applied)) => ParticipantAnswer::Written,
                    Some(_) => ParticipantAnswer::Refused,
                    None => {
                        self.intents.insert(txn, effects);
                        ParticipantAnswer::Written
                    }
                }
            }
            ParticipantCommand::Prevent { txn } => {
                if self.intents.contains_key(&txn) {
                    return ParticipantAnswer::HasIntent;
                }
                match self.closed.get(&txn) {
                    Some(Closed::Resolved(Outcome::Applied)) => ParticipantAnswer::HasIntent,
                    Some(_) => ParticipantAnswer::Prevented,
                    None => {
                        self.closed.insert(txn, Closed::Prevented);
                        ParticipantAnswer::Prevented
                    }
                }
            }
            ParticipantCommand::Resolve { txn, outcome } => {
                let intent = self.intents.remove(&txn);
                let before = self.closed.insert(txn, Closed::Resolved(outcome));
                match (outcome, intent) {
                    (Outcome::Applied, Some(effects)) => ParticipantAnswer::Resolved {
                        apply: Some(effects),
                    },
                    (Outcome::Applied, None) => {
                        assert_eq!(
                            before,
                            Some(Closed::Resolved(Outcome::Applied)),
                            "{txn:?} applied without its intent"
                        );
                        ParticipantAnswer::Resolved { apply: None }
                    }
                    (Outcome::Aborted, _) => {
                        assert_ne!(
                            before,
                            Some(Closed::Resolved(Outcome::Applied)),
                            "{txn:?} aborted after it applied"
                        );
                        ParticipantAnswer::Resolved { apply: None }
                    }
                }
            }
        }
    }

    /// The intents held, oldest transaction first: each must be asked about in time.
    pub fn unresolved(&self) -> impl Iterator<Item = TxnId> + '_ {
        self.intents.keys().copied()
    }

    /// How the participant closed `txn`, if it did.
    pub fn outcome(&self, txn: TxnId) -> Option<Outcome> {
        match self.closed.get(&txn) {
            Some(Closed::Resolved(outcome)) => Some(*outcome),
            _ => None,
        }
    }
}

/// Entries of a record home's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeCommand {
    Stage { txn: TxnId, participants: Vec<u32> },
    Finish { txn: TxnId, outcome: Outcome },
}

/// What a home's log answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HomeAnswer {
    Staged,
    /// A stage after the transaction was finished (a recovery aborted it first).
    Refused,
    /// The decision that stands (the first `Finish`).
    Finished(Outcome),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub participants: Vec<u32>,
    pub outcome: Option<Outcome>,
}

/// A record home's transaction records, changed only by its log.
#[derive(Clone, Debug, Default)]
pub struct Records {
    records: BTreeMap<TxnId, Record>,
}

impl Records {
    /// Applies one entry of the home's log. A stage after a `Finish` is refused: under Raft's
    /// order it cannot happen (a leader appends a stage once, and an earlier leader's stage that
    /// commits is applied before the next leader decides), so this only guards the invariant.
    pub fn apply(&mut self, command: &HomeCommand) -> HomeAnswer {
        match command {
            HomeCommand::Stage { txn, participants } => match self.records.get(txn) {
                Some(Record {
                    outcome: Some(_), ..
                }) => HomeAnswer::Refused,
                Some(_) => HomeAnswer::Staged,
                None => {
                    let record = Record {
                        participants: participants.clone(),
                        outcome: None,
                    };
                    self.records.insert(*txn, record);
                    HomeAnswer::Staged
                }
            },
            HomeCommand::Finish { txn, outcome } => {
                let record = self.records.entry(*txn).or_insert(Record {
                    participants: Vec::new(),
                    outcome: None,
                });
                let decided = *record.outcome.get_or_insert(*outcome);
                HomeAnswer::Finished(decided)
            }
        }
    }

    pub fn get(&self, txn: TxnId) -> Option<&Record> {
        self.records.get(&txn)
    }
}

/// Messages between a home's leader and the participants' leaders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<E> {
    /// Home → participant: hold this intent.
    Intent { txn: TxnId, effects: E },
    /// Participant → home: the intent is held (`true`) or refused.
    IntentAck {
        txn: TxnId,
        from: u32,
        written: bool,
    },
    /// Home → participant: prevent the intent unless held.
    Prevent { txn: TxnId },
    /// Participant → home: the intent is held (`true`) or now prevented.
    PreventAck {
        txn: TxnId,
        from: u32,
        has_intent: bool,
    },
    /// Home → participant: the decision.
    Resolve { txn: TxnId, outcome: Outcome },
    /// Participant → home: what became of the transaction whose intent it holds?
    Ask { txn: TxnId, from: u32 },
}

/// What a home's leader asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<E> {
    Send {
        to: u32,
        message: Message<E>,
    },
    Append(HomeCommand),
    /// Tell the client: committed (`Applied`) or certainly not (`Aborted`).
    Answer {
        txn: TxnId,
        outcome: Outcome,
    },
}

/// How long a home waits for acknowledgements before it sends again.
pub const RESEND_MS: u64 = 100;

struct Coordinating<E> {
    effects: BTreeMap<u32, E>,
    written: BTreeSet<u32>,
    staged: bool,
    resend_ms: u64,
}

struct Recovering {
    participants: Vec<u32>,
    held: BTreeSet<u32>,
    prevented: bool,
    deciding: bool,
    resend_ms: u64,
}

/// A home leader's transactions in progress, in memory only: a new leader starts with none
/// and recovers what the participants ask about.
pub struct HomeLeader<E> {
    home: u32,
    coordinating: BTreeMap<TxnId, Coordinating<E>>,
    recovering: BTreeMap<TxnId, Recovering>,
}

impl<E: Clone> HomeLeader<E> {
    pub fn new(home: u32) -> HomeLeader<E> {
        HomeLeader {
            home,
            coordinating: BTreeMap::new(),
            recovering: BTreeMap::new(),
        }
    }

    /// Starts `txn` with its effects per participant (this home may be one of them).
    pub fn begin(
        &mut self,
        txn: TxnId,
        effects: BTreeMap<u32, E>,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) {
        assert_eq!(txn.home, self.home);
        assert!(!effects.is_empty());
        for (to, effects) in &effects {
            let message = Message::Intent {
                txn,
                effects: effects.clone(),
            };
            actions.push(Action::Send { to: *to, message });
        }
        let participants = effects.keys().copied().collect();
        actions.push(Action::Append(HomeCommand::Stage { txn, participants }));
        let coordinating = Coordinating {
            effects,
            written: BTreeSet::new(),
            staged: false,
            resend_ms: now_ms + RESEND_MS,
        };
        self.coordinating.insert(txn, coordinating);
    }

    /// This home's log applied `command` with `answer`; `records` is its state after it.
    pub fn applied(
        &mut self,
        command: &HomeCommand,
        answer: HomeAnswer,
        records: &Records,
        actions: &mut Vec<Action<E>>,
    ) {
        match (command, answer) {
            (HomeCommand::Stage { txn, .. }, HomeAnswer::Staged) => {
                if let Some(coordinating) = self.coordinating.get_mut(txn) {
                    coordinating.staged = true;
                }
                self.maybe_committed(*txn, actions);
            }
            (HomeCommand::Stage { txn, .. }, HomeAnswer::Refused) => {
                // A recovery finished it first: its decision stands.
                self.coordinating.remove(txn);
                self.resolve_all(*txn, records, actions);
            }
            (HomeCommand::Finish { txn, .. }, HomeAnswer::Finished(outcome)) => {
                if self.coordinating.remove(txn).is_some() && outcome == Outcome::Aborted {
                    actions.push(Action::Answer { txn: *txn, outcome });
                }
                self.recovering.remove(txn);
                self.resolve_all(*txn, records, actions);
            }
            (command, answer) => unreachable!("{command:?} answered {answer:?}"),
        }
    }

    fn maybe_committed(&mut self, txn: TxnId, actions: &mut Vec<Action<E>>) {
        let Some(coordinating) = self.coordinating.get(&txn) else {
            return;
        };
        let all_written = coordinating.written.len() == coordinating.effects.len();
        if coordinating.staged && all_written {
            self.coordinating.remove(&txn);
            let outcome = Outcome::Applied;
            actions.push(Action::Answer { txn, outcome });
            actions.push(Action::Append(HomeCommand::Finish { txn, outcome }));
        }
    }

    fn resolve_all(&self, txn: TxnId, records: &Records, actions: &mut Vec<Action<E>>) {
        let record = records
            .get(txn)
            .expect("a finished transaction has a record");
        let outcome = record.outcome.expect("finished");
        for to in &record.participants {
            let message = Message::Resolve { txn, outcome };
            actions.push(Action::Send { to: *to, message });
        }
    }

    /// A message from a participant. `term_committed`: this leader has applied an entry of its
    /// own term, so `records` holds every stage an earlier leader committed.
    pub fn received(
        &mut self,
        message: Message<E>,
        records: &Records,
        term_committed: bool,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) {
        match message {
            Message::IntentAck { txn, from, written } => {
                if let Some(coordinating) = self.coordinating.get_mut(&txn) {
                    if written {
                        if coordinating.effects.contains_key(&from) {
                            coordinating.written.insert(from);
                        }
                        self.maybe_committed(txn, actions);
                    } else {
                        // Prevented before it arrived: it can never commit.
                        self.coordinating.remove(&txn);
                        self.recover(txn, records, term_committed, now_ms, actions);
                    }
                }
            }
            Message::PreventAck {
                txn,
                from,
                has_intent,
            } => {
                let Some(recovering) = self.recovering.get_mut(&txn) else {
                    return;
                };
                if !recovering.participants.contains(&from) || recovering.deciding {
                    return;
                }
                if has_intent {
                    recovering.held.insert(from);
                } else {
                    recovering.prevented = true;
                }
                let outcome = if recovering.prevented {
                    Some(Outcome::Aborted)
                } else if recovering.held.len() == recovering.participants.len() {
                    Some(Outcome::Applied)
                } else {
                    None
                };
                if let Some(outcome) = outcome {
                    recovering.deciding = true;
                    actions.push(Action::Append(HomeCommand::Finish { txn, outcome }));
                }
            }
            Message::Ask { txn, from } => {
                if txn.home != self.home {
                    return;
                }
                match records.get(txn).and_then(|r| r.outcome) {
                    Some(outcome) => {
                        let message = Message::Resolve { txn, outcome };
                        actions.push(Action::Send { to: from, message });
                    }
                    None if self.coordinating.contains_key(&txn) => {}
                    None => self.recover(txn, records, term_committed, now_ms, actions),
                }
            }
            Message::Intent { .. } | Message::Prevent { .. } | Message::Resolve { .. } => {
                unreachable!("a participant's message sent to a home")
            }
        }
    }

    /// Recovers `txn`: prevents its intents, or aborts it outright if it was never staged.
    fn recover(
        &mut self,
        txn: TxnId,
        records: &Records,
        term_committed: bool,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) {
        if !term_committed || self.recovering.contains_key(&txn) {
            return;
        }
        let Some(record) = records.get(txn) else {
            // Never staged (the stage of an earlier leader would be applied by now).
            let outcome = Outcome::Aborted;
            actions.push(Action::Append(HomeCommand::Finish { txn, outcome }));
            let recovering = Recovering {
                participants: Vec::new(),
                held: BTreeSet::new(),
                prevented: true,
                deciding: true,
                resend_ms: now_ms + RESEND_MS,
            };
            self.recovering.insert(txn, recovering);
            return;
        };
        if record.outcome.is_some() {
            return;
        }
        for to in &record.participants {
            let message = Message::Prevent { txn };
            actions.push(Action::Send { to: *to, message });
        }
        let recovering = Recovering {
            participants: record.participants.clone(),
            held: BTreeSet::new(),
            prevented: false,
            deciding: false,
            resend_ms: now_ms + RESEND_MS,
        };
        self.recovering.insert(txn, recovering);
    }

    /// Sends again what was not acknowledged in time; a decision whose append was lost (a
    /// leader change) is made again by the next recovery.
    pub fn tick(&mut self, now_ms: u64, actions: &mut Vec<Action<E>>) {
        for (txn, coordinating) in &mut self.coordinating {
            if now_ms < coordinating.resend_ms {
                continue;
            }
            coordinating.resend_ms = now_ms + RESEND_MS;
            for (to, effects) in &coordinating.effects {
                if !coordinating.written.contains(to) {
                    let message = Message::Intent {
                        txn: *txn,
                        effects: effects.clone(),
                    };
                    actions.push(Action::Send { to: *to, message });
                }
            }
        }
        for (txn, recovering) in &mut self.recovering {
            if now_ms < recovering.resend_ms {
                continue;
            }
            recovering.resend_ms = now_ms + RESEND_MS;
            if recovering.deciding {
                continue;
            }
            for to in &recovering.participants {
                if !recovering.held.contains(to) {
                    let message = Message::Prevent { txn: *txn };
                    actions.push(Action::Send { to: *to, message });
                }
            }
        }
    }
}

/// A participant leader's part: its log's answer to a home's message, as the message to send
/// back (`None` for a resolution, which is not acknowledged).
pub fn participant_reply<E>(
    participant: u32,
    command: &ParticipantCommand<E>,
    answer: &ParticipantAnswer<E>,
) -> Option<(u32, Message<E>)> {
    match (command, answer) {
        (ParticipantCommand::Intent { txn, .. }, answer) => {
            let written = matches!(answer, ParticipantAnswer::Written);
            let message = Message::IntentAck {
                txn: *txn,
                from: participant,
                written,
            };
            Some((txn.home, message))
        }
        (ParticipantCommand::Prevent { txn }, answer) => {
            let has_intent = matches!(answer, ParticipantAnswer::HasIntent);
            let message = Message::PreventAck {
                txn: *txn,
                from: participant,
                has_intent,
            };
            Some((txn.home, message))
        }
        (ParticipantCommand::Resolve { .. }, _) => None,
    }
}
