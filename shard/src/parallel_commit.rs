//! Parallel commits over partitions' logs: the rare path of `docs/transactions.md` (design D),
//! for the transactions that span partitions (linked chains across ledgers, batches that mix
//! them), as a pure core. No clock, no I/O: log entries are applied in log order, messages and
//! `now_ms` come in, and the leader returns [`Action`]s for a driver to perform.
//!
//! A transaction has a *record home*: one of its partitions, whose leader coordinates it. The
//! protocol (CockroachDB's parallel commits, over Kassa's partitions):
//!
//! 1. The home sends each participant its **intent** (the effects on its records, which lock
//!    them) and appends `Stage { participants }` to its own log, all at once. A round whose
//!    results may make the home drop it (a batch with linked chains across partitions) is
//!    begun with [`Staging::AfterIntents`] instead: the stage is appended only once every
//!    intent is written and the driver has seen their results and kept the round; a dropped
//!    round is aborted and never staged.
//! 2. The transaction has committed once the stage and every intent are durable. The client
//!    is answered then, and the home appends `Finish(Applied)` and tells the participants to
//!    resolve their intents (apply the effects, unlock).
//! 3. **Recovery**, when the coordinator is gone (a new leader, a participant asking about an
//!    intent it has held too long) or an intent was refused: the home asks every participant
//!    to **prevent** the intent. A participant that holds it says so; one that does not writes
//!    a marker that refuses the intent forever. All held: the transaction had committed,
//!    `Finish(Applied)`. One prevented: it never can, `Finish(Aborted)`. A home with no stage
//!    at all writes `Finish(Aborted)` first, so that a late stage is refused.
//!
//! 4. **Forgetting.** Each participant acknowledges the decision (`ResolveAck`); the home sends
//!    it again until all did. A leader numbers its transactions in epochs of its own
//!    ([`HomeLeader::epoch`]) and, in each, forgets every number below the first transaction
//!    not acknowledged everywhere: it logs `Forget` (the records go) and tells the epoch's
//!    participants (their closed transactions go). A late intent in a forgotten range is
//!    refused, and a question about it answered `Aborted`: only a transaction never staged can
//!    still be held there. A new leader adopts what earlier leaders left
//!    ([`HomeLeader::adopt`]) and forgets it the same way.
//!
//! Retries: the leader sends intents and prevents again every [`RESEND_MS`] until they are
//! acknowledged, and appends its stage and its decision again every [`RESEND_MS`] until its
//! log applies them (an append can be lost under the same leader: a dropped proposal). Both
//! entries are idempotent. A decision is sent again until every participant acknowledged it.
//!
//! Invariants:
//! - A participant's intent and a prevent marker for the same transaction exclude each other:
//!   whichever its log applies first wins. So a recovery and a commit can never both succeed.
//! - The home decides once: its first `Finish` stands, later ones change nothing.
//! - A home decides (or answers "no stage") only once its leader has committed an entry of
//!   its own term: every stage an earlier leader committed is then applied.
//! - A participant applies a transaction's effects at most once, and only after `Applied`.
//! - Every transaction a leader begins gets exactly one answer from it: `Applied` once it
//!   has committed, the logged decision once it applies, or, if the leader is
//!   [`deposed`](HomeLeader::deposed) first, "outcome unknown".
//! - Messages, and the participant entries they cause, come from other partitions: they are
//!   input from outside. A misrouted, forged or meaningless one is ignored with a reason
//!   ([`Ignored`]) and changes nothing; it never panics. Assertions check only this
//!   partition's own log (the home's `Stage` and `Finish`, which only its leader appends).

use std::collections::{BTreeMap, BTreeSet};

use crate::decoder::Decoder;

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

/// Why a message, or a participant entry made from one, was ignored: no correct partition
/// sends it so (it was misrouted or forged, or a bug elsewhere). It changed nothing; the
/// driver may count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    #[error("{txn:?}: resolved as applied, but this participant never held its intent")]
    AppliedWithoutIntent { txn: TxnId },
    #[error("{txn:?}: resolved as {outcome:?} after it was resolved as {before:?}")]
    ContraryResolution {
        txn: TxnId,
        outcome: Outcome,
        before: Outcome,
    },
    #[error("{txn:?}: sent to home {home}, which is not its record home")]
    NotThisHome { txn: TxnId, home: u32 },
    #[error("{txn:?}: an answer from partition {from}, which is not one of its participants")]
    NotAParticipant { txn: TxnId, from: u32 },
    #[error("{txn:?}: a message for a participant's log sent to a home's leader")]
    ForAParticipant { txn: TxnId },
    #[error("home {home}: a forget of {from}..{below}: an empty range, or sent to a home")]
    Forget { home: u32, from: u64, below: u64 },
}

/// Why [`HomeLeader::begin`] refused a transaction; it changed nothing and acted on nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BeginError {
    #[error("{txn:?}: begun at home {home}, which is not its record home")]
    NotThisHome { txn: TxnId, home: u32 },
    #[error("{txn:?}: no participants")]
    NoParticipants { txn: TxnId },
    #[error("{txn:?}: this leader knows it already")]
    Known { txn: TxnId },
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
    /// Every transaction of `home` numbered in `from..below` is decided and resolved at every
    /// participant: forget them (a late message about one changes nothing).
    Forget { home: u32, from: u64, below: u64 },
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
    /// The transactions of a range are forgotten.
    Forgot,
    /// A resolution no correct home sends here: the state is unchanged.
    Ignored(Ignored),
}

/// How a participant closed a transaction, remembered so that late messages change nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closed {
    Prevented,
    Resolved(Outcome),
}

/// A participant's transaction state, changed only by its log. A transaction is in at most one
/// of `intents` and `closed`.
#[derive(Clone, Debug)]
pub struct Participant<E> {
    intents: BTreeMap<TxnId, E>,
    closed: BTreeMap<TxnId, Closed>,
    /// Ranges of transactions forgotten: `(home, from) → below`.
    forgotten: Forgotten,
}

impl<E> Default for Participant<E> {
    fn default() -> Participant<E> {
        Participant {
            intents: BTreeMap::new(),
            closed: BTreeMap::new(),
            forgotten: Forgotten::default(),
        }
    }
}

/// `home`'s transactions numbered in `from..below`.
fn txn_range(home: u32, from: u64, below: u64) -> std::ops::Range<TxnId> {
    TxnId { home, number: from }..TxnId {
        home,
        number: below,
    }
}

/// The lowest number in `range` of a transaction in `map`.
fn first_number<V>(map: &BTreeMap<TxnId, V>, range: &std::ops::Range<TxnId>) -> Option<u64> {
    map.range(range.clone()).next().map(|(txn, _)| txn.number)
}

/// Ranges of a home's transaction numbers forgotten (every transaction in them decided and
/// resolved everywhere): `(home, from) → below`. One range per home leader's epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Forgotten(BTreeMap<(u32, u64), u64>);

impl Forgotten {
    /// The ranges are kept disjoint and apart (merged when they overlap or touch), so the one
    /// starting last at or before a number is the only one that can hold it.
    fn contains(&self, txn: TxnId) -> bool {
        let before = self.0.range(..=(txn.home, txn.number)).next_back();
        before.is_some_and(|((home, _), below)| *home == txn.home && txn.number < *below)
    }

    /// Forgets `home`'s transactions numbered in `from..below`: drops them from `map` and
    /// remembers the range.
    fn forget<V>(&mut self, map: &mut BTreeMap<TxnId, V>, home: u32, from: u64, below: u64) {
        let range = txn_range(home, from, below);
        let mut above = map.split_off(&range.start);
        map.append(&mut above.split_off(&range.end));
        self.add(home, from, below);
    }

    fn add(&mut self, home: u32, from: u64, below: u64) {
        let (mut from, mut below) = (from, below);
        let touching: Vec<(u64, u64)> = (self.0.range((home, 0)..=(home, below)))
            .filter(|(_, end)| **end >= from)
            .map(|((_, start), end)| (*start, *end))
            .collect();
        for (start, end) in touching {
            self.0.remove(&(home, start));
            from = from.min(start);
            below = below.max(end);
        }
        self.0.insert((home, from), below);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u64).to_le_bytes());
        for ((home, from), below) in &self.0 {
            out.extend_from_slice(&home.to_le_bytes());
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&below.to_le_bytes());
        }
    }

    fn decode(reader: &mut Decoder<'_>) -> Result<Forgotten, &'static str> {
        let mut forgotten = Forgotten::default();
        for _ in 0..reader.count(20)? {
            let (home, from, below) = (reader.u32()?, reader.u64()?, reader.u64()?);
            let apart = (forgotten.0.range(..(home, from)).next_back())
                .is_none_or(|((h, _), end)| *h != home || *end < from);
            if from >= below || !apart || forgotten.0.insert((home, from), below).is_some() {
                return Err("a forgotten range empty, twice or overlapping another");
            }
        }
        Ok(forgotten)
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
                    // Decided and resolved everywhere: a late copy is never taken.
                    None if self.forgotten.contains(txn) => ParticipantAnswer::Refused,
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
                    // A late copy: no recovery of a decided transaction waits for it.
                    None if self.forgotten.contains(txn) => ParticipantAnswer::Prevented,
                    None => {
                        self.closed.insert(txn, Closed::Prevented);
                        ParticipantAnswer::Prevented
                    }
                }
            }
            ParticipantCommand::Resolve { txn, outcome } => self.resolve(txn, outcome),
            ParticipantCommand::Forget { home, from, below } => self.forget(home, from, below),
        }
    }

    /// Forgets the closed transactions of `home` numbered in `from..below` (an empty range is
    /// refused). An intent held in it stays until resolved: it can only be of a transaction
    /// never staged (a correct home forgets a staged one only once every participant
    /// resolved it), which its home answers `Aborted` when asked.
    fn forget(&mut self, home: u32, from: u64, below: u64) -> ParticipantAnswer<E> {
        if from >= below {
            return ParticipantAnswer::Ignored(Ignored::Forget { home, from, below });
        }
        self.forgotten.forget(&mut self.closed, home, from, below);
        ParticipantAnswer::Forgot
    }

    /// The home's decision, from a message: checked before anything changes, since a
    /// misrouted or forged one must leave the state as it was.
    fn resolve(&mut self, txn: TxnId, outcome: Outcome) -> ParticipantAnswer<E> {
        if let Some(Closed::Resolved(before)) = self.closed.get(&txn) {
            if *before != outcome {
                let before = *before;
                let ignored = Ignored::ContraryResolution {
                    txn,
                    outcome,
                    before,
                };
                return ParticipantAnswer::Ignored(ignored);
            }
            return ParticipantAnswer::Resolved { apply: None };
        }
        if !self.intents.contains_key(&txn) && self.forgotten.contains(txn) {
            // A late copy of a decision resolved here and forgotten.
            return ParticipantAnswer::Resolved { apply: None };
        }
        if outcome == Outcome::Applied && !self.intents.contains_key(&txn) {
            // Never held here (or prevented): marking it applied would let a later intent
            // pass as applied without its effects.
            return ParticipantAnswer::Ignored(Ignored::AppliedWithoutIntent { txn });
        }
        let intent = self.intents.remove(&txn);
        self.closed.insert(txn, Closed::Resolved(outcome));
        let apply = match outcome {
            Outcome::Applied => intent,
            Outcome::Aborted => None,
        };
        ParticipantAnswer::Resolved { apply }
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

impl<E> Participant<E> {
    /// The intent held for `txn`, if any.
    pub fn intent(&self, txn: TxnId) -> Option<&E> {
        self.intents.get(&txn)
    }

    /// The intents held, oldest transaction first.
    pub fn intents(&self) -> impl Iterator<Item = (TxnId, &E)> + '_ {
        self.intents.iter().map(|(txn, e)| (*txn, e))
    }

    /// How many transactions are remembered closed (forgotten ones are not).
    pub fn closed_count(&self) -> usize {
        self.closed.len()
    }

    /// How many ranges of transactions are forgotten.
    pub fn forgotten_ranges(&self) -> usize {
        self.forgotten.len()
    }

    /// Whether `txn` is in a range the participant forgot (decided and resolved everywhere):
    /// a late intent of it is refused, never taken.
    pub fn forgot(&self, txn: TxnId) -> bool {
        !self.intents.contains_key(&txn)
            && !self.closed.contains_key(&txn)
            && self.forgotten.contains(txn)
    }

    /// Whether the participant closed `txn` (prevented or resolved it): a later intent is
    /// then answered from that, never taken.
    pub fn closed(&self, txn: TxnId) -> Option<ClosedAs> {
        self.closed.get(&txn).map(|closed| match closed {
            Closed::Prevented => ClosedAs::Prevented,
            Closed::Resolved(outcome) => ClosedAs::Resolved(*outcome),
        })
    }

    /// Encodes the state for a snapshot: the intents with `encode`, then the closed
    /// transactions.
    pub(crate) fn encode(&self, out: &mut Vec<u8>, encode: impl Fn(&E, &mut Vec<u8>)) {
        out.extend_from_slice(&(self.intents.len() as u64).to_le_bytes());
        for (txn, e) in &self.intents {
            txn.encode(out);
            encode(e, out);
        }
        out.extend_from_slice(&(self.closed.len() as u64).to_le_bytes());
        for (txn, closed) in &self.closed {
            txn.encode(out);
            let tag: u32 = match closed {
                Closed::Prevented => 0,
                Closed::Resolved(outcome) => outcome.to_u32(),
            };
            out.extend_from_slice(&tag.to_le_bytes());
        }
        self.forgotten.encode(out);
    }

    /// Decodes what [`Participant::encode`] wrote, refusing duplicates and a transaction both
    /// held and closed. `forgotten`: the snapshot has the forgotten ranges (format 9).
    pub(crate) fn decode(
        reader: &mut Decoder<'_>,
        decode: impl Fn(&mut Decoder<'_>) -> Result<E, &'static str>,
        forgotten: bool,
    ) -> Result<Participant<E>, &'static str> {
        let mut participant = Participant::default();
        for _ in 0..reader.count(TXN_ID_SIZE)? {
            let txn = TxnId::decode(reader)?;
            let e = decode(reader)?;
            if participant.intents.insert(txn, e).is_some() {
                return Err("an intent held twice");
            }
        }
        for _ in 0..reader.count(TXN_ID_SIZE + 4)? {
            let txn = TxnId::decode(reader)?;
            let closed = match reader.u32()? {
                0 => Closed::Prevented,
                tag => Closed::Resolved(Outcome::from_u32(tag).ok_or("unknown outcome")?),
            };
            if participant.intents.contains_key(&txn) {
                return Err("a transaction both held and closed");
            }
            if participant.closed.insert(txn, closed).is_some() {
                return Err("a transaction closed twice");
            }
        }
        if forgotten {
            participant.forgotten = Forgotten::decode(reader)?;
        }
        Ok(participant)
    }
}

/// How a participant closed a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosedAs {
    Prevented,
    Resolved(Outcome),
}

/// The encoded size of a [`TxnId`].
pub(crate) const TXN_ID_SIZE: usize = 12;

impl TxnId {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.home.to_le_bytes());
        out.extend_from_slice(&self.number.to_le_bytes());
    }

    pub(crate) fn decode(reader: &mut Decoder<'_>) -> Result<TxnId, &'static str> {
        Ok(TxnId {
            home: reader.u32()?,
            number: reader.u64()?,
        })
    }
}

impl Outcome {
    /// The outcome as a number in entries and snapshots (0 is never an outcome).
    pub(crate) fn to_u32(self) -> u32 {
        match self {
            Outcome::Applied => 1,
            Outcome::Aborted => 2,
        }
    }

    pub(crate) fn from_u32(value: u32) -> Option<Outcome> {
        match value {
            1 => Some(Outcome::Applied),
            2 => Some(Outcome::Aborted),
            _ => None,
        }
    }
}

/// Entries of a record home's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HomeCommand {
    Stage {
        txn: TxnId,
        participants: Vec<u32>,
    },
    Finish {
        txn: TxnId,
        outcome: Outcome,
    },
    /// Every transaction of `home` (this home) numbered in `from..below` is decided and
    /// resolved at every participant: its record goes.
    Forget {
        home: u32,
        from: u64,
        below: u64,
    },
}

/// What a home's log answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HomeAnswer {
    Staged,
    /// A stage after the transaction was finished (a recovery aborted it first).
    Refused,
    /// The decision that stands (the first `Finish`).
    Finished(Outcome),
    /// The records of a range are forgotten.
    Forgot,
    /// A stage or decision of a transaction forgotten already: nothing changed. (A correct
    /// leader appends neither for a transaction it has not seen resolved everywhere.)
    Forgotten,
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
    forgotten: Forgotten,
}

impl Records {
    /// Applies one entry of the home's log. A stage after a `Finish` is refused: under Raft's
    /// order it cannot happen (a leader appends its stage, again if it was lost, only while it
    /// coordinates the transaction, before it decides anything about it; and an earlier
    /// leader's stage that commits is applied before the next leader decides), so this only
    /// guards the invariant.
    pub fn apply(&mut self, command: &HomeCommand) -> HomeAnswer {
        match command {
            HomeCommand::Stage { txn, .. } | HomeCommand::Finish { txn, .. }
                if self.forgotten.contains(*txn) =>
            {
                HomeAnswer::Forgotten
            }
            HomeCommand::Forget { home, from, below } => {
                assert!(from < below, "a leader forgets a range of numbers");
                (self.forgotten).forget(&mut self.records, *home, *from, *below);
                HomeAnswer::Forgot
            }
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

    /// Every transaction recorded, in order.
    pub fn iter(&self) -> impl Iterator<Item = (TxnId, &Record)> + '_ {
        self.records.iter().map(|(txn, record)| (*txn, record))
    }

    /// Whether `txn` is in a range forgotten: decided and resolved everywhere, its record gone.
    pub fn is_forgotten(&self, txn: TxnId) -> bool {
        self.forgotten.contains(txn)
    }

    /// How many transactions are recorded (forgotten ones are not).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encodes the records for a snapshot.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        for (txn, record) in &self.records {
            txn.encode(out);
            let outcome = record.outcome.map_or(0, Outcome::to_u32);
            out.extend_from_slice(&outcome.to_le_bytes());
            out.extend_from_slice(&(record.participants.len() as u32).to_le_bytes());
            for participant in &record.participants {
                out.extend_from_slice(&participant.to_le_bytes());
            }
        }
        self.forgotten.encode(out);
    }

    /// Decodes what [`Records::encode`] wrote. `forgotten`: the snapshot has the forgotten
    /// ranges (format 9).
    pub(crate) fn decode(
        reader: &mut Decoder<'_>,
        forgotten: bool,
    ) -> Result<Records, &'static str> {
        let mut records = Records::default();
        for _ in 0..reader.count(TXN_ID_SIZE + 8)? {
            let txn = TxnId::decode(reader)?;
            let outcome = match reader.u32()? {
                0 => None,
                tag => Some(Outcome::from_u32(tag).ok_or("unknown outcome")?),
            };
            let count = reader.u32()? as usize;
            if count > crate::limits::PARTITIONS_MAX as usize {
                return Err("a transaction of more participants than partitions");
            }
            let participants = (0..count)
                .map(|_| reader.u32())
                .collect::<Result<Vec<u32>, _>>()?;
            let record = Record {
                participants,
                outcome,
            };
            if records.records.insert(txn, record).is_some() {
                return Err("a transaction recorded twice");
            }
        }
        if forgotten {
            records.forgotten = Forgotten::decode(reader)?;
        }
        Ok(records)
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
    /// Participant → home: the decision is applied here.
    ResolveAck { txn: TxnId, from: u32 },
    /// Home → participant: every transaction of `home` numbered in `from..below` is decided
    /// and resolved at every participant; forget them.
    Forget { home: u32, from: u64, below: u64 },
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
    /// Tell the client the outcome is unknown: the leader that began the transaction was
    /// deposed before it knew (the node's `outcome_unknown`). A later leader still decides it
    /// if any of its intents was written.
    AnswerUnknown {
        txn: TxnId,
    },
    /// Every intent of `txn`, begun with [`Staging::AfterIntents`], is written: the driver
    /// looks at their results and calls [`HomeLeader::stage`] (the round stands) or
    /// [`HomeLeader::abort`] (it is dropped).
    Written {
        txn: TxnId,
    },
}

/// When a transaction's stage is appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staging {
    /// With the intents, all at once (parallel commits): the transaction has committed once
    /// the stage and every intent are durable. For a transaction whose intents' results
    /// cannot change its fate.
    WithIntents,
    /// Once every intent is written and the driver has seen their results: a round of a batch
    /// whose linked chains span partitions, which must be dropped if a chain broke in one
    /// partition and held in another (`shares::Rounds`). Until its stage is appended the
    /// transaction can only abort: a recovery finds no stage and aborts it, so a dropped
    /// round is never applied. One more durable write on the way to the client, for the
    /// rare batches that need it.
    AfterIntents,
}

/// What [`HomeLeader::give_up`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// Not staged: aborted for certain (the client is answered once the decision applies).
    Aborted,
    /// Staged: being recovered. It may still commit, if every intent was written after all;
    /// its client is answered with the recovery's decision.
    Recovering,
}

/// Why [`HomeLeader::stage`] or [`HomeLeader::abort`] did nothing: this leader is not waiting
/// for that decision on `txn` (it did not begin it with [`Staging::AfterIntents`], its
/// intents are not all written, it was decided already, or a recovery took it over).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{txn:?}: not waiting for the driver's decision")]
pub struct NotWaiting {
    pub txn: TxnId,
}

/// How long a home waits for acknowledgements, or for its log to apply an entry it appended,
/// before it sends or appends again.
pub const RESEND_MS: u64 = 100;

struct Coordinating<E> {
    effects: BTreeMap<u32, E>,
    written: BTreeSet<u32>,
    /// The stage was appended (with the intents, or once the driver asked).
    stage_appended: bool,
    /// The log applied the stage.
    staged: bool,
    /// [`Action::Written`] was given (for [`Staging::AfterIntents`]).
    written_told: bool,
    resend_ms: u64,
}

struct Recovering {
    participants: Vec<u32>,
    held: BTreeSet<u32>,
    resend_ms: u64,
}

/// A decision appended whose `Finish` the log has not applied yet.
struct Deciding {
    outcome: Outcome,
    resend_ms: u64,
}

/// A decision applied, sent to the participants that have not acknowledged it yet.
struct Resolving {
    outcome: Outcome,
    waiting: BTreeSet<u32>,
    resend_ms: u64,
}

/// A range of round numbers this leader gives out (`HomeLeader::epoch`), and how far its
/// transactions are forgotten.
struct Epoch {
    /// Above every number begun in it.
    next: u64,
    /// Every number below is forgotten (a `Forget` appended and sent).
    forgotten_below: u64,
    /// Every participant of its transactions, to tell what is forgotten.
    participants: BTreeSet<u32>,
    /// When its last `Forget` went, and how often it is sent again (a lost one would leave
    /// the participants remembering what they may forget).
    forget_ms: u64,
    resends_left: u32,
}

/// How long a leader lets resolved transactions gather before it forgets them, unless
/// `FORGET_STEP` of them have.
pub const FORGET_MS: u64 = 1_000;
/// How many resolved transactions make a leader forget them at once.
pub const FORGET_STEP: u64 = 256;
/// How often a leader sends its last `Forget` of an epoch again.
const FORGET_RESENDS: u32 = 3;

/// A home leader's transactions in progress, in memory only: a new leader starts with none
/// and recovers what the participants ask about. A transaction is in at most one of
/// `coordinating`, `recovering` and `deciding`, and in `unanswered` until its client is told.
pub struct HomeLeader<E> {
    home: u32,
    coordinating: BTreeMap<TxnId, Coordinating<E>>,
    recovering: BTreeMap<TxnId, Recovering>,
    deciding: BTreeMap<TxnId, Deciding>,
    resolving: BTreeMap<TxnId, Resolving>,
    /// The transactions this leader began whose client has not been answered.
    unanswered: BTreeSet<TxnId>,
    /// The participants of the transactions this leader began and has not seen resolved
    /// everywhere (a decision without a stage has no participants in its record).
    began: BTreeMap<TxnId, Vec<u32>>,
    /// The ranges it numbers its rounds in, by their first number; the last is current. Key
    /// 0, once adopted, holds every number below its own (earlier leaders').
    epochs: BTreeMap<u64, Epoch>,
    /// Whether it took over what earlier leaders left (`adopt`).
    adopted: bool,
}

impl<E: Clone> HomeLeader<E> {
    pub fn new(home: u32) -> HomeLeader<E> {
        HomeLeader {
            home,
            coordinating: BTreeMap::new(),
            recovering: BTreeMap::new(),
            deciding: BTreeMap::new(),
            resolving: BTreeMap::new(),
            unanswered: BTreeSet::new(),
            began: BTreeMap::new(),
            epochs: BTreeMap::new(),
            adopted: false,
        }
    }

    /// Numbers the next transactions from `first`, in a range no other leader of this home
    /// numbers in (an epoch: a log index of this leader's, shifted). Transactions of an epoch
    /// are forgotten (records and participants' memories) once each is decided and resolved
    /// at every participant. Without an epoch nothing is forgotten.
    pub fn epoch(&mut self, first: u64) {
        let above = self.epochs.values().map(|e| e.next).max().unwrap_or(0);
        assert!(first >= above, "epochs are numbered upwards");
        let epoch = Epoch {
            next: first,
            forgotten_below: first,
            participants: BTreeSet::new(),
            forget_ms: 0,
            resends_left: 0,
        };
        self.epochs.insert(first, epoch);
    }

    /// Starts `txn` with its effects per participant (this home may be one of them). Refused,
    /// with nothing done, if it is not this home's, has no participants or is known already.
    pub fn begin(
        &mut self,
        txn: TxnId,
        effects: BTreeMap<u32, E>,
        staging: Staging,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) -> Result<(), BeginError> {
        if txn.home != self.home {
            let home = self.home;
            return Err(BeginError::NotThisHome { txn, home });
        }
        if effects.is_empty() {
            return Err(BeginError::NoParticipants { txn });
        }
        let known = self.coordinating.contains_key(&txn)
            || self.recovering.contains_key(&txn)
            || self.deciding.contains_key(&txn)
            || self.resolving.contains_key(&txn)
            || self.began.contains_key(&txn)
            || self.unanswered.contains(&txn);
        if known {
            return Err(BeginError::Known { txn });
        }
        for (to, effects) in &effects {
            let message = Message::Intent {
                txn,
                effects: effects.clone(),
            };
            actions.push(Action::Send { to: *to, message });
        }
        let stage_appended = staging == Staging::WithIntents;
        if stage_appended {
            let participants = effects.keys().copied().collect();
            actions.push(Action::Append(HomeCommand::Stage { txn, participants }));
        }
        let coordinating = Coordinating {
            effects,
            written: BTreeSet::new(),
            stage_appended,
            staged: false,
            written_told: false,
            resend_ms: now_ms + RESEND_MS,
        };
        if let Some((first, epoch)) = self.epochs.iter_mut().next_back() {
            if txn.number >= *first {
                epoch.next = epoch.next.max(txn.number + 1);
                epoch.participants.extend(coordinating.effects.keys());
            }
        }
        self.began
            .insert(txn, coordinating.effects.keys().copied().collect());
        self.coordinating.insert(txn, coordinating);
        self.unanswered.insert(txn);
        Ok(())
    }

    /// This home's log applied `command` with `answer`; `records` is its state after it.
    pub fn applied(
        &mut self,
        command: &HomeCommand,
        answer: HomeAnswer,
        records: &Records,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) {
        match (command, answer) {
            (HomeCommand::Stage { txn, .. }, HomeAnswer::Staged) => {
                if let Some(coordinating) = self.coordinating.get_mut(txn) {
                    coordinating.staged = true;
                }
                self.maybe_committed(*txn, now_ms, actions);
            }
            // Refused: a recovery finished it first, and its decision stands.
            (HomeCommand::Stage { txn, .. }, HomeAnswer::Refused)
            | (HomeCommand::Finish { txn, .. }, HomeAnswer::Finished(_)) => {
                self.finished(*txn, records, actions);
            }
            (HomeCommand::Forget { .. }, HomeAnswer::Forgot) => {}
            // A transaction this leader learned of only after it forgot its range (an earlier
            // leader's, never staged, asked about late): it can never commit, and whoever
            // holds it asks again and is answered `Aborted`.
            (
                HomeCommand::Stage { txn, .. } | HomeCommand::Finish { txn, .. },
                HomeAnswer::Forgotten,
            ) => {
                self.coordinating.remove(txn);
                self.recovering.remove(txn);
                self.deciding.remove(txn);
                self.began.remove(txn);
                self.answer(*txn, Outcome::Aborted, actions);
            }
            // An invariant of this partition's own log, not input from outside: home entries
            // are appended only by this home's leader, which forgets only transactions
            // resolved everywhere, and `Records::apply` answers a stage `Staged` or
            // `Refused` and a finish `Finished`.
            (command, answer) => unreachable!("{command:?} answered {answer:?}"),
        }
    }

    fn maybe_committed(&mut self, txn: TxnId, now_ms: u64, actions: &mut Vec<Action<E>>) {
        let Some(coordinating) = self.coordinating.get_mut(&txn) else {
            return;
        };
        let all_written = coordinating.written.len() == coordinating.effects.len();
        if all_written && !coordinating.stage_appended && !coordinating.written_told {
            coordinating.written_told = true;
            actions.push(Action::Written { txn });
        }
        if coordinating.staged && all_written {
            // No recovery can prevent an intent now: the decision can only be `Applied`.
            self.coordinating.remove(&txn);
            self.answer(txn, Outcome::Applied, actions);
            self.decide(txn, Outcome::Applied, now_ms, actions);
        }
    }

    /// The driver saw the results of `txn`'s intents (after [`Action::Written`]) and the round
    /// stands: the stage is appended, and the transaction commits once it applies.
    pub fn stage(
        &mut self,
        txn: TxnId,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) -> Result<(), NotWaiting> {
        let coordinating = self.waiting(txn)?;
        coordinating.stage_appended = true;
        coordinating.resend_ms = now_ms + RESEND_MS;
        let participants = coordinating.effects.keys().copied().collect();
        actions.push(Action::Append(HomeCommand::Stage { txn, participants }));
        Ok(())
    }

    /// The driver saw the results of `txn`'s intents (after [`Action::Written`]) and drops the
    /// round: it is aborted and its participants told at once (no stage was appended, so no
    /// leader can commit it); its client is answered `Aborted` once the decision applies.
    pub fn abort(
        &mut self,
        txn: TxnId,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) -> Result<(), NotWaiting> {
        self.waiting(txn)?;
        self.abort_unstaged(txn, now_ms, actions);
        Ok(())
    }

    /// Aborts a coordinated transaction whose stage was never appended: no leader can commit
    /// it, so its participants are told at once. The client is answered once the decision
    /// applies, as every decision is.
    fn abort_unstaged(&mut self, txn: TxnId, now_ms: u64, actions: &mut Vec<Action<E>>) {
        let coordinating = self.coordinating.remove(&txn).expect("coordinating");
        assert!(!coordinating.stage_appended);
        for to in coordinating.effects.keys() {
            let outcome = Outcome::Aborted;
            let message = Message::Resolve { txn, outcome };
            actions.push(Action::Send { to: *to, message });
        }
        self.decide(txn, Outcome::Aborted, now_ms, actions);
    }

    /// The driver gives up waiting for `txn`'s intents (a participant busy with another
    /// transaction's intent, which may wait for one of ours: a deadlock). Not staged yet: it
    /// is aborted at once, as [`abort`](Self::abort) does. Staged and applied: it is
    /// recovered, so each participant that has not written its intent prevents it (it
    /// commits only if every intent was written after all). Staged but not applied yet, or
    /// not coordinated: nothing is done (`NotWaiting`); the driver tries again later.
    pub fn give_up(
        &mut self,
        txn: TxnId,
        records: &Records,
        term_committed: bool,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) -> Result<GaveUp, NotWaiting> {
        let Some(coordinating) = self.coordinating.get(&txn) else {
            return Err(NotWaiting { txn });
        };
        if !coordinating.stage_appended {
            self.abort_unstaged(txn, now_ms, actions);
            return Ok(GaveUp::Aborted);
        }
        if !coordinating.staged || !term_committed {
            return Err(NotWaiting { txn });
        }
        self.coordinating.remove(&txn);
        self.recover(txn, records, term_committed, now_ms, actions);
        Ok(GaveUp::Recovering)
    }

    /// `txn`'s coordination, if it waits for the driver's decision.
    fn waiting(&mut self, txn: TxnId) -> Result<&mut Coordinating<E>, NotWaiting> {
        match self.coordinating.get_mut(&txn) {
            Some(c) if c.written_told && !c.stage_appended => Ok(c),
            _ => Err(NotWaiting { txn }),
        }
    }

    /// Appends the decision; [`tick`](Self::tick) appends it again until it applies.
    fn decide(&mut self, txn: TxnId, outcome: Outcome, now_ms: u64, actions: &mut Vec<Action<E>>) {
        self.recovering.remove(&txn);
        actions.push(Action::Append(HomeCommand::Finish { txn, outcome }));
        let resend_ms = now_ms + RESEND_MS;
        self.deciding.insert(txn, Deciding { outcome, resend_ms });
    }

    /// Tells `txn`'s client `outcome`, if this leader began it and has not told it yet.
    fn answer(&mut self, txn: TxnId, outcome: Outcome, actions: &mut Vec<Action<E>>) {
        if self.unanswered.remove(&txn) {
            actions.push(Action::Answer { txn, outcome });
        }
    }

    /// `txn`'s decision applied (or a stage met it): forget the transaction, answer its client
    /// if it is owed an answer, and tell the participants.
    fn finished(&mut self, txn: TxnId, records: &Records, actions: &mut Vec<Action<E>>) {
        // An invariant of this partition's own log, not input from outside: `applied` is
        // given the entries this home's log applied, and a `Finish`, or a stage refused
        // because of one, leaves a record with its decision.
        let record = records
            .get(txn)
            .expect("a finished transaction has a record");
        let outcome = record
            .outcome
            .expect("a finished transaction has a decision");
        self.coordinating.remove(&txn);
        self.recovering.remove(&txn);
        self.deciding.remove(&txn);
        self.answer(txn, outcome, actions);
        let began = self.began.remove(&txn).unwrap_or_default();
        let waiting: BTreeSet<u32> = record.participants.iter().chain(&began).copied().collect();
        for to in &waiting {
            let message = Message::Resolve { txn, outcome };
            actions.push(Action::Send { to: *to, message });
        }
        if !waiting.is_empty() && !self.resolving.contains_key(&txn) {
            let resend_ms = 0; // Set by the next tick.
            let resolving = Resolving {
                outcome,
                waiting,
                resend_ms,
            };
            self.resolving.insert(txn, resolving);
        }
    }

    /// A message from a participant. `term_committed`: this leader has applied an entry of its
    /// own term, so `records` holds every stage an earlier leader committed. A message that no
    /// correct participant sends to this home is ignored, with nothing done.
    pub fn received(
        &mut self,
        message: Message<E>,
        records: &Records,
        term_committed: bool,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) -> Result<(), Ignored> {
        match message {
            Message::IntentAck { txn, from, written } => {
                self.check_home(txn)?;
                let Some(coordinating) = self.coordinating.get_mut(&txn) else {
                    return Ok(()); // Late or duplicated: committed, recovering or decided.
                };
                if !coordinating.effects.contains_key(&from) {
                    return Err(Ignored::NotAParticipant { txn, from });
                }
                if written {
                    coordinating.written.insert(from);
                    self.maybe_committed(txn, now_ms, actions);
                } else if term_committed {
                    // Prevented before it arrived: it can never commit. (Before the term has
                    // committed, the intent sent again brings the refusal again.)
                    self.coordinating.remove(&txn);
                    self.recover(txn, records, term_committed, now_ms, actions);
                }
                Ok(())
            }
            Message::PreventAck {
                txn,
                from,
                has_intent,
            } => {
                self.check_home(txn)?;
                self.prevent_acknowledged(txn, from, has_intent, now_ms, actions)
            }
            Message::ResolveAck { txn, from } => {
                self.check_home(txn)?;
                if let Some(resolving) = self.resolving.get_mut(&txn) {
                    resolving.waiting.remove(&from);
                    if resolving.waiting.is_empty() {
                        self.resolving.remove(&txn);
                    }
                }
                Ok(())
            }
            Message::Ask { txn, from } if records.is_forgotten(txn) => {
                // Forgotten: every participant of a staged transaction resolved it, so one
                // still holding it holds a transaction never staged, which can never commit
                // (a late question from one that resolved it ignores the answer).
                self.check_home(txn)?;
                let outcome = Outcome::Aborted;
                let message = Message::Resolve { txn, outcome };
                actions.push(Action::Send { to: from, message });
                Ok(())
            }
            Message::Ask { txn, from } => {
                self.check_home(txn)?;
                match records.get(txn).and_then(|r| r.outcome) {
                    Some(outcome) => {
                        let message = Message::Resolve { txn, outcome };
                        actions.push(Action::Send { to: from, message });
                    }
                    None if self.coordinating.contains_key(&txn) => {}
                    None => self.recover(txn, records, term_committed, now_ms, actions),
                }
                Ok(())
            }
            Message::Intent { txn, .. }
            | Message::Prevent { txn }
            | Message::Resolve { txn, .. } => Err(Ignored::ForAParticipant { txn }),
            Message::Forget { home, from, below } => Err(Ignored::Forget { home, from, below }),
        }
    }

    fn check_home(&self, txn: TxnId) -> Result<(), Ignored> {
        if txn.home == self.home {
            Ok(())
        } else {
            let home = self.home;
            Err(Ignored::NotThisHome { txn, home })
        }
    }

    fn prevent_acknowledged(
        &mut self,
        txn: TxnId,
        from: u32,
        has_intent: bool,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) -> Result<(), Ignored> {
        let Some(recovering) = self.recovering.get_mut(&txn) else {
            return Ok(()); // Late or duplicated: decided already, or another leader's.
        };
        if !recovering.participants.contains(&from) {
            return Err(Ignored::NotAParticipant { txn, from });
        }
        let outcome = if !has_intent {
            Some(Outcome::Aborted)
        } else {
            recovering.held.insert(from);
            let all_held = recovering.held.len() == recovering.participants.len();
            all_held.then_some(Outcome::Applied)
        };
        if let Some(outcome) = outcome {
            self.decide(txn, outcome, now_ms, actions);
        }
        Ok(())
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
        let busy = self.recovering.contains_key(&txn) || self.deciding.contains_key(&txn);
        if !term_committed || busy {
            return;
        }
        let Some(record) = records.get(txn) else {
            // Never staged (the stage of an earlier leader would be applied by now).
            self.decide(txn, Outcome::Aborted, now_ms, actions);
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
            resend_ms: now_ms + RESEND_MS,
        };
        self.recovering.insert(txn, recovering);
    }

    /// Sends again what was not acknowledged in time, and appends again a stage or a decision
    /// that the log has not applied in time (its append was lost: a dropped proposal). A
    /// decision whose append was lost with the leader is made again by the next recovery.
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
            if coordinating.stage_appended && !coordinating.staged {
                // A second stage changes nothing; one after a `Finish` is refused.
                let participants = coordinating.effects.keys().copied().collect();
                let stage = HomeCommand::Stage {
                    txn: *txn,
                    participants,
                };
                actions.push(Action::Append(stage));
            }
        }
        for (txn, recovering) in &mut self.recovering {
            if now_ms < recovering.resend_ms {
                continue;
            }
            recovering.resend_ms = now_ms + RESEND_MS;
            for to in &recovering.participants {
                if !recovering.held.contains(to) {
                    let message = Message::Prevent { txn: *txn };
                    actions.push(Action::Send { to: *to, message });
                }
            }
        }
        for (txn, deciding) in &mut self.deciding {
            if now_ms < deciding.resend_ms {
                continue;
            }
            deciding.resend_ms = now_ms + RESEND_MS;
            // The first `Finish` stands: a second changes nothing.
            let outcome = deciding.outcome;
            actions.push(Action::Append(HomeCommand::Finish { txn: *txn, outcome }));
        }
        for (txn, resolving) in &mut self.resolving {
            if now_ms < resolving.resend_ms {
                continue;
            }
            if resolving.resend_ms != 0 {
                for to in &resolving.waiting {
                    let outcome = resolving.outcome;
                    let message = Message::Resolve { txn: *txn, outcome };
                    actions.push(Action::Send { to: *to, message });
                }
            }
            resolving.resend_ms = now_ms + RESEND_MS;
        }
        self.forget(now_ms, actions);
    }

    /// Takes over what earlier leaders of this home left, once this leader's term has
    /// committed (every stage they committed is in `records`): recovers their transactions
    /// staged and undecided, sends their decisions again until every participant has
    /// acknowledged them, and then forgets every number below its own epochs. Does this once.
    pub fn adopt(
        &mut self,
        records: &Records,
        term_committed: bool,
        now_ms: u64,
        actions: &mut Vec<Action<E>>,
    ) {
        let Some(own) = self.epochs.keys().next().copied() else {
            return;
        };
        if !term_committed || own == 0 || self.adopted {
            return;
        }
        self.adopted = true;
        let mut participants = BTreeSet::new();
        let earlier: Vec<(TxnId, Record)> = (records.iter())
            .filter(|(txn, _)| txn.home == self.home && txn.number < own)
            .map(|(txn, record)| (txn, record.clone()))
            .collect();
        for (txn, record) in earlier {
            participants.extend(record.participants.iter().copied());
            match record.outcome {
                None => self.recover(txn, records, term_committed, now_ms, actions),
                Some(outcome) if !record.participants.is_empty() => {
                    let waiting = record.participants.iter().copied().collect();
                    let resolving = Resolving {
                        outcome,
                        waiting,
                        resend_ms: 0,
                    };
                    self.resolving.entry(txn).or_insert(resolving);
                }
                Some(_) => {}
            }
        }
        let earlier_epochs = Epoch {
            next: own,
            forgotten_below: 0,
            participants,
            forget_ms: 0,
            resends_left: 0,
        };
        self.epochs.insert(0, earlier_epochs);
    }

    /// The lowest number in `from..below` of a transaction this leader has not seen resolved
    /// everywhere.
    fn unresolved_in(&self, from: u64, below: u64) -> Option<u64> {
        let range = txn_range(self.home, from, below);
        [
            first_number(&self.coordinating, &range),
            first_number(&self.recovering, &range),
            first_number(&self.deciding, &range),
            first_number(&self.resolving, &range),
            first_number(&self.began, &range),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Forgets, in each epoch, the transactions below the first one not resolved everywhere:
    /// appends a `Forget` and tells the epoch's participants (in steps of `FORGET_STEP`, or
    /// after `FORGET_MS`), and sends the last one again a few times.
    fn forget(&mut self, now_ms: u64, actions: &mut Vec<Action<E>>) {
        let current = self.epochs.keys().next_back().copied();
        let firsts: Vec<u64> = self.epochs.keys().copied().collect();
        for first in firsts {
            let next = self.epochs[&first].next;
            let below = self.unresolved_in(first, next).unwrap_or(next);
            let epoch = self.epochs.get_mut(&first).expect("an epoch");
            // A transaction below what is forgotten can still be recovered here: an earlier
            // leader's, never staged, asked about late (it is answered `Aborted` either way).
            let gathered = below.saturating_sub(epoch.forgotten_below);
            let due = now_ms >= epoch.forget_ms + FORGET_MS;
            if gathered > 0 && (gathered >= FORGET_STEP || due) {
                epoch.forgotten_below = below;
                epoch.resends_left = FORGET_RESENDS;
            } else if due && epoch.resends_left > 0 {
                epoch.resends_left -= 1;
            } else {
                let done = epoch.forgotten_below == next && epoch.resends_left == 0;
                if Some(first) != current && done {
                    self.epochs.remove(&first);
                }
                continue;
            }
            epoch.forget_ms = now_ms;
            let below = epoch.forgotten_below;
            if below == first {
                continue;
            }
            let home = self.home;
            let forget = HomeCommand::Forget {
                home,
                from: first,
                below,
            };
            actions.push(Action::Append(forget));
            for to in &epoch.participants {
                let message = Message::Forget {
                    home,
                    from: first,
                    below,
                };
                actions.push(Action::Send { to: *to, message });
            }
        }
    }

    /// This leader learned it was deposed: its memory goes, and every client it began a
    /// transaction for and has not answered is told the outcome is unknown.
    pub fn deposed(self, actions: &mut Vec<Action<E>>) {
        for txn in self.unanswered {
            actions.push(Action::AnswerUnknown { txn });
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
        (ParticipantCommand::Resolve { txn, .. }, ParticipantAnswer::Resolved { .. }) => {
            let message = Message::ResolveAck {
                txn: *txn,
                from: participant,
            };
            Some((txn.home, message))
        }
        (ParticipantCommand::Resolve { .. }, _) | (ParticipantCommand::Forget { .. }, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: TxnId = TxnId { home: 0, number: 1 };

    /// A home leader at partition 0 that has begun `T` over participants 0 and 1.
    fn begun() -> (HomeLeader<u64>, Records, Vec<Action<u64>>) {
        let (mut leader, mut actions) = (HomeLeader::new(0), Vec::new());
        let effects = BTreeMap::from([(0, 5), (1, 7)]);
        leader
            .begin(T, effects, Staging::WithIntents, 0, &mut actions)
            .unwrap();
        (leader, Records::default(), actions)
    }

    /// Applies `command` to the home's log, as the driver does, and returns what it asked for.
    fn apply(
        leader: &mut HomeLeader<u64>,
        records: &mut Records,
        command: HomeCommand,
    ) -> Vec<Action<u64>> {
        let (answer, mut actions) = (records.apply(&command), Vec::new());
        leader.applied(&command, answer, records, 0, &mut actions);
        actions
    }

    fn receive(
        leader: &mut HomeLeader<u64>,
        records: &Records,
        message: Message<u64>,
    ) -> (Result<(), Ignored>, Vec<Action<u64>>) {
        let mut actions = Vec::new();
        let result = leader.received(message, records, true, 0, &mut actions);
        (result, actions)
    }

    fn answers(actions: &[Action<u64>]) -> Vec<&Action<u64>> {
        let answer =
            |a: &&Action<u64>| matches!(a, Action::Answer { .. } | Action::AnswerUnknown { .. });
        actions.iter().filter(answer).collect()
    }

    const ACK_0: Message<u64> = Message::IntentAck {
        txn: T,
        from: 0,
        written: true,
    };
    const REFUSED_1: Message<u64> = Message::IntentAck {
        txn: T,
        from: 1,
        written: false,
    };

    #[test]
    fn a_round_staged_after_its_intents_waits_for_the_driver_then_stages_or_aborts() {
        for keep in [true, false] {
            let (mut leader, mut records, mut actions) =
                (HomeLeader::new(0), Records::default(), Vec::new());
            let effects = BTreeMap::from([(0, 5), (1, 7)]);
            leader
                .begin(T, effects, Staging::AfterIntents, 0, &mut actions)
                .unwrap();
            assert!(
                !actions.iter().any(|a| matches!(a, Action::Append(_))),
                "no stage yet"
            );
            // Not every intent is written: the driver cannot decide yet.
            assert_eq!(leader.stage(T, 0, &mut actions), Err(NotWaiting { txn: T }));
            let (_, actions) = receive(&mut leader, &records, ACK_0);
            assert!(actions.is_empty());
            let ack_1 = Message::IntentAck {
                txn: T,
                from: 1,
                written: true,
            };
            let (_, actions) = receive(&mut leader, &records, ack_1.clone());
            assert_eq!(actions, vec![Action::Written { txn: T }]);
            // Told once, even when an acknowledgement comes again.
            let (_, actions) = receive(&mut leader, &records, ack_1);
            assert!(actions.is_empty());
            let mut actions = Vec::new();
            if keep {
                leader.stage(T, 0, &mut actions).unwrap();
                let participants = vec![0, 1];
                let stage = HomeCommand::Stage {
                    txn: T,
                    participants,
                };
                assert_eq!(actions, vec![Action::Append(stage.clone())]);
                let actions = apply(&mut leader, &mut records, stage);
                let applied = Action::Answer {
                    txn: T,
                    outcome: Outcome::Applied,
                };
                assert_eq!(actions[0], applied);
            } else {
                leader.abort(T, 0, &mut actions).unwrap();
                let resolve = |to| Action::Send {
                    to,
                    message: Message::Resolve {
                        txn: T,
                        outcome: Outcome::Aborted,
                    },
                };
                let finish = HomeCommand::Finish {
                    txn: T,
                    outcome: Outcome::Aborted,
                };
                let expected = vec![resolve(0), resolve(1), Action::Append(finish.clone())];
                assert_eq!(actions, expected);
                let actions = apply(&mut leader, &mut records, finish);
                let aborted = Action::Answer {
                    txn: T,
                    outcome: Outcome::Aborted,
                };
                // The decision, applied, goes again to the participants, until each
                // acknowledges it (then the transaction can be forgotten).
                assert_eq!(actions, vec![aborted, resolve(0), resolve(1)]);
            }
            // Decided: neither can be asked again.
            let mut actions = Vec::new();
            assert_eq!(leader.abort(T, 0, &mut actions), Err(NotWaiting { txn: T }));
            assert_eq!(leader.stage(T, 0, &mut actions), Err(NotWaiting { txn: T }));
            assert!(actions.is_empty());
        }
    }

    #[test]
    fn a_resolution_without_its_intent_is_ignored_and_changes_nothing() {
        let mut participant = Participant::default();
        let applied = ParticipantCommand::Resolve {
            txn: T,
            outcome: Outcome::Applied,
        };
        let ignored = ParticipantAnswer::Ignored(Ignored::AppliedWithoutIntent { txn: T });
        assert_eq!(participant.apply(applied.clone()), ignored);
        assert_eq!(participant.outcome(T), None);
        let intent = ParticipantCommand::Intent { txn: T, effects: 3 };
        assert_eq!(participant.apply(intent), ParticipantAnswer::Written);
        // After a prevent marker, too.
        let other = TxnId { home: 0, number: 2 };
        let prevent = ParticipantCommand::Prevent { txn: other };
        assert_eq!(participant.apply(prevent), ParticipantAnswer::Prevented);
        let applied_other = ParticipantCommand::Resolve {
            txn: other,
            outcome: Outcome::Applied,
        };
        let answer = participant.apply(applied_other);
        let ignored = Ignored::AppliedWithoutIntent { txn: other };
        assert_eq!(answer, ParticipantAnswer::Ignored(ignored));
        let intent_other = ParticipantCommand::Intent {
            txn: other,
            effects: 4,
        };
        assert_eq!(participant.apply(intent_other), ParticipantAnswer::Refused);
    }

    #[test]
    fn a_resolution_contrary_to_one_applied_is_ignored() {
        let mut participant = Participant::default();
        participant.apply(ParticipantCommand::Intent { txn: T, effects: 3 });
        let resolve = |outcome| ParticipantCommand::Resolve { txn: T, outcome };
        let answer = participant.apply(resolve(Outcome::Applied));
        assert_eq!(answer, ParticipantAnswer::Resolved { apply: Some(3) });
        let answer = participant.apply(resolve(Outcome::Aborted));
        let ignored = Ignored::ContraryResolution {
            txn: T,
            outcome: Outcome::Aborted,
            before: Outcome::Applied,
        };
        assert_eq!(answer, ParticipantAnswer::Ignored(ignored));
        assert_eq!(participant.outcome(T), Some(Outcome::Applied));
        let answer = participant.apply(resolve(Outcome::Applied));
        assert_eq!(answer, ParticipantAnswer::Resolved { apply: None });
        // And the other way round.
        let mut participant = Participant::<u64>::default();
        participant.apply(resolve(Outcome::Aborted));
        let answer = participant.apply(resolve(Outcome::Applied));
        let ignored = Ignored::ContraryResolution {
            txn: T,
            outcome: Outcome::Applied,
            before: Outcome::Aborted,
        };
        assert_eq!(answer, ParticipantAnswer::Ignored(ignored));
    }

    #[test]
    fn a_home_ignores_what_no_participant_sends_it() {
        let (mut leader, records, _) = begun();
        for message in [
            Message::Intent { txn: T, effects: 1 },
            Message::Prevent { txn: T },
            Message::Resolve {
                txn: T,
                outcome: Outcome::Applied,
            },
        ] {
            let ignored = Err(Ignored::ForAParticipant { txn: T });
            assert_eq!(receive(&mut leader, &records, message), (ignored, vec![]));
        }
        let elsewhere = TxnId { home: 3, number: 1 };
        let ask = Message::Ask {
            txn: elsewhere,
            from: 1,
        };
        let ignored = Err(Ignored::NotThisHome {
            txn: elsewhere,
            home: 0,
        });
        assert_eq!(receive(&mut leader, &records, ask), (ignored, vec![]));
        // A refusal from a non-participant does not turn the transaction to recovery.
        let stranger = Message::IntentAck {
            txn: T,
            from: 2,
            written: false,
        };
        let ignored = Err(Ignored::NotAParticipant { txn: T, from: 2 });
        assert_eq!(receive(&mut leader, &records, stranger), (ignored, vec![]));
        assert!(leader.coordinating.contains_key(&T));
    }

    #[test]
    fn a_recovery_ignores_prevent_answers_from_non_participants() {
        // A new leader finds `T` staged by the one before and is asked about it.
        let (mut leader, mut records) = (HomeLeader::new(0), Records::default());
        let stage = HomeCommand::Stage {
            txn: T,
            participants: vec![0, 1],
        };
        apply(&mut leader, &mut records, stage);
        let (result, actions) = receive(&mut leader, &records, Message::Ask { txn: T, from: 1 });
        assert_eq!(result, Ok(()));
        let prevent = |to| Action::Send {
            to,
            message: Message::Prevent { txn: T },
        };
        assert_eq!(actions, vec![prevent(0), prevent(1)]);
        let stranger = Message::PreventAck {
            txn: T,
            from: 2,
            has_intent: false,
        };
        let ignored = Err(Ignored::NotAParticipant { txn: T, from: 2 });
        assert_eq!(receive(&mut leader, &records, stranger), (ignored, vec![]));
    }

    #[test]
    fn begin_refuses_without_acting() {
        let (mut leader, _, _) = begun();
        let mut actions = Vec::new();
        let elsewhere = TxnId { home: 1, number: 9 };
        let effects = BTreeMap::from([(1, 1)]);
        let result = leader.begin(
            elsewhere,
            effects.clone(),
            Staging::WithIntents,
            0,
            &mut actions,
        );
        let error = BeginError::NotThisHome {
            txn: elsewhere,
            home: 0,
        };
        assert_eq!(result, Err(error));
        let other = TxnId { home: 0, number: 2 };
        let result = leader.begin(
            other,
            BTreeMap::new(),
            Staging::WithIntents,
            0,
            &mut actions,
        );
        assert_eq!(result, Err(BeginError::NoParticipants { txn: other }));
        let result = leader.begin(T, effects, Staging::WithIntents, 0, &mut actions);
        assert_eq!(result, Err(BeginError::Known { txn: T }));
        assert_eq!(actions, vec![]);
    }

    #[test]
    fn a_refused_intent_aborts_the_transaction_and_its_client_is_told_once() {
        let (mut leader, mut records, _) = begun();
        let stage = HomeCommand::Stage {
            txn: T,
            participants: vec![0, 1],
        };
        apply(&mut leader, &mut records, stage.clone());
        assert_eq!(receive(&mut leader, &records, ACK_0).0, Ok(()));
        let (result, actions) = receive(&mut leader, &records, REFUSED_1);
        assert_eq!(result, Ok(()));
        assert_eq!(answers(&actions), Vec::<&Action<u64>>::new());
        for from in [0, 1] {
            let has_intent = from == 0;
            let message = Message::PreventAck {
                txn: T,
                from,
                has_intent,
            };
            assert_eq!(receive(&mut leader, &records, message).0, Ok(()));
        }
        let finish = HomeCommand::Finish {
            txn: T,
            outcome: Outcome::Aborted,
        };
        let actions = apply(&mut leader, &mut records, finish.clone());
        let aborted = Action::Answer {
            txn: T,
            outcome: Outcome::Aborted,
        };
        assert_eq!(answers(&actions), vec![&aborted]);
        // A second `Finish`, or a late stage, answers nobody again.
        let actions = apply(&mut leader, &mut records, finish);
        assert_eq!(answers(&actions), Vec::<&Action<u64>>::new());
        let actions = apply(&mut leader, &mut records, stage);
        assert_eq!(answers(&actions), Vec::<&Action<u64>>::new());
    }

    #[test]
    fn an_intent_refused_before_the_stage_applied_is_answered_aborted() {
        let (mut leader, mut records, _) = begun();
        let (_, actions) = receive(&mut leader, &records, REFUSED_1);
        let finish = HomeCommand::Finish {
            txn: T,
            outcome: Outcome::Aborted,
        };
        assert_eq!(actions, vec![Action::Append(finish.clone())]);
        let stage = HomeCommand::Stage {
            txn: T,
            participants: vec![0, 1],
        };
        apply(&mut leader, &mut records, stage);
        let actions = apply(&mut leader, &mut records, finish);
        let aborted = Action::Answer {
            txn: T,
            outcome: Outcome::Aborted,
        };
        assert_eq!(answers(&actions), vec![&aborted]);
    }

    #[test]
    fn a_refusal_before_the_term_committed_keeps_the_transaction_until_it_can_be_decided() {
        let (mut leader, records, _) = begun();
        let mut actions = Vec::new();
        let result = leader.received(REFUSED_1, &records, false, 0, &mut actions);
        assert_eq!((result, actions), (Ok(()), vec![]));
        // Still coordinated: the intent is sent again, and its refusal comes again.
        let mut actions = Vec::new();
        leader.tick(RESEND_MS, &mut actions);
        let intent = Message::Intent { txn: T, effects: 7 };
        assert!(actions.contains(&Action::Send {
            to: 1,
            message: intent
        }));
        let (_, actions) = receive(&mut leader, &records, REFUSED_1);
        let finish = HomeCommand::Finish {
            txn: T,
            outcome: Outcome::Aborted,
        };
        assert_eq!(actions, vec![Action::Append(finish)]);
    }

    #[test]
    fn a_deposed_leader_tells_its_unanswered_clients_the_outcome_is_unknown() {
        let (mut leader, _, mut actions) = begun();
        let committed = TxnId { home: 0, number: 2 };
        let effects = BTreeMap::from([(0, 1)]);
        leader
            .begin(committed, effects, Staging::WithIntents, 0, &mut actions)
            .unwrap();
        let mut records = Records::default();
        let stage = HomeCommand::Stage {
            txn: committed,
            participants: vec![0],
        };
        apply(&mut leader, &mut records, stage);
        let ack = Message::IntentAck {
            txn: committed,
            from: 0,
            written: true,
        };
        let (_, actions) = receive(&mut leader, &records, ack);
        let applied = Action::Answer {
            txn: committed,
            outcome: Outcome::Applied,
        };
        assert_eq!(answers(&actions), vec![&applied]);
        let mut actions = Vec::new();
        leader.deposed(&mut actions);
        assert_eq!(actions, vec![Action::AnswerUnknown { txn: T }]);
    }

    #[test]
    fn a_lost_decision_is_appended_again_until_it_applies() {
        let (mut leader, mut records, _) = begun();
        // The decision after an intent refused; its append is lost.
        let (_, actions) = receive(&mut leader, &records, REFUSED_1);
        let finish = HomeCommand::Finish {
            txn: T,
            outcome: Outcome::Aborted,
        };
        assert_eq!(actions, vec![Action::Append(finish.clone())]);
        let mut actions = Vec::new();
        leader.tick(RESEND_MS - 1, &mut actions);
        assert_eq!(actions, vec![]);
        leader.tick(RESEND_MS, &mut actions);
        assert_eq!(actions, vec![Action::Append(finish.clone())]);
        let actions = apply(&mut leader, &mut records, finish);
        assert_eq!(answers(&actions).len(), 1);
        let mut actions = Vec::new();
        leader.tick(3 * RESEND_MS, &mut actions);
        assert_eq!(actions, vec![]);
    }

    #[test]
    fn a_lost_stage_is_appended_again_until_it_applies() {
        let (mut leader, mut records, _) = begun();
        assert_eq!(receive(&mut leader, &records, ACK_0).0, Ok(()));
        let mut actions = Vec::new();
        leader.tick(RESEND_MS, &mut actions);
        let stage = HomeCommand::Stage {
            txn: T,
            participants: vec![0, 1],
        };
        let intent = Message::Intent { txn: T, effects: 7 };
        let resent = vec![
            Action::Send {
                to: 1,
                message: intent,
            },
            Action::Append(stage.clone()),
        ];
        assert_eq!(actions, resent);
        apply(&mut leader, &mut records, stage);
        let mut actions = Vec::new();
        leader.tick(2 * RESEND_MS, &mut actions);
        assert!(!actions.iter().any(|a| matches!(a, Action::Append(_))));
    }

    /// A transaction is forgotten (its record and the participants' memory of it) only once
    /// every participant acknowledged its decision; a late message about it then changes
    /// nothing, and a question about it is answered `Aborted` (only a transaction never
    /// staged can still be held).
    #[test]
    fn a_transaction_is_forgotten_once_every_participant_acknowledged_its_decision() {
        const FIRST: u64 = 1 << 24;
        let txn = TxnId {
            home: 0,
            number: FIRST,
        };
        let (mut leader, mut records) = (HomeLeader::<u64>::new(0), Records::default());
        leader.epoch(FIRST);
        let mut actions = Vec::new();
        let effects = BTreeMap::from([(0, 5), (1, 7)]);
        leader
            .begin(txn, effects, Staging::WithIntents, 0, &mut actions)
            .unwrap();
        let mut participants = [Participant::default(), Participant::default()];
        for (p, participant) in participants.iter_mut().enumerate() {
            let intent = ParticipantCommand::Intent { txn, effects: 1 };
            assert_eq!(participant.apply(intent), ParticipantAnswer::Written);
            let ack = Message::IntentAck {
                txn,
                from: p as u32,
                written: true,
            };
            receive(&mut leader, &records, ack).0.unwrap();
        }
        let stage = HomeCommand::Stage {
            txn,
            participants: vec![0, 1],
        };
        apply(&mut leader, &mut records, stage);
        let finish = HomeCommand::Finish {
            txn,
            outcome: Outcome::Applied,
        };
        apply(&mut leader, &mut records, finish);
        // Participant 0 resolves and acknowledges; 1 has not yet: nothing is forgotten.
        let resolve = ParticipantCommand::Resolve {
            txn,
            outcome: Outcome::Applied,
        };
        let answer = participants[0].apply(resolve.clone());
        let (to, ack) = participant_reply(0, &resolve, &answer).expect("an acknowledgement");
        assert_eq!(to, 0);
        receive(&mut leader, &records, ack).0.unwrap();
        let mut actions = Vec::new();
        leader.tick(10 * FORGET_MS, &mut actions);
        let forgets = |actions: &[Action<u64>]| {
            (actions.iter())
                .filter(|a| {
                    matches!(a, Action::Append(HomeCommand::Forget { .. }))
                        || matches!(
                            a,
                            Action::Send {
                                message: Message::Forget { .. },
                                ..
                            }
                        )
                })
                .count()
        };
        assert_eq!(forgets(&actions), 0);
        // The decision goes again to 1 until it acknowledges.
        leader.tick(10 * FORGET_MS + RESEND_MS, &mut actions);
        let resent = Action::Send {
            to: 1,
            message: Message::Resolve {
                txn,
                outcome: Outcome::Applied,
            },
        };
        assert!(actions.contains(&resent));
        let answer = participants[1].apply(resolve.clone());
        let (_, ack) = participant_reply(1, &resolve, &answer).expect("an acknowledgement");
        receive(&mut leader, &records, ack).0.unwrap();
        let mut actions = Vec::new();
        leader.tick(20 * FORGET_MS, &mut actions);
        let forget = HomeCommand::Forget {
            home: 0,
            from: FIRST,
            below: FIRST + 1,
        };
        assert!(actions.contains(&Action::Append(forget.clone())));
        assert_eq!(forgets(&actions), 3, "{actions:?}");
        apply(&mut leader, &mut records, forget);
        assert!(records.get(txn).is_none() && records.is_forgotten(txn));
        let told = ParticipantCommand::Forget {
            home: 0,
            from: FIRST,
            below: FIRST + 1,
        };
        assert_eq!(participants[1].apply(told), ParticipantAnswer::Forgot);
        assert_eq!(participants[1].closed_count(), 0);
        // Late copies change nothing: an intent is refused, a decision acknowledged again.
        let late = ParticipantCommand::Intent { txn, effects: 1 };
        assert_eq!(participants[1].apply(late), ParticipantAnswer::Refused);
        let again = participants[1].apply(resolve);
        assert_eq!(again, ParticipantAnswer::Resolved { apply: None });
        // A question about it (only a transaction never staged can still be held) is
        // answered `Aborted`.
        let ask = Message::Ask { txn, from: 1 };
        let (received, actions) = receive(&mut leader, &records, ask);
        received.unwrap();
        let aborted = Action::Send {
            to: 1,
            message: Message::Resolve {
                txn,
                outcome: Outcome::Aborted,
            },
        };
        assert_eq!(actions, vec![aborted]);
        // An empty range is refused.
        let empty = ParticipantCommand::Forget {
            home: 0,
            from: 5,
            below: 5,
        };
        assert!(matches!(
            participants[0].apply(empty),
            ParticipantAnswer::Ignored(Ignored::Forget { .. })
        ));
    }
}
