//! A partition's part in transactions across partitions under placement by ledger, as entries
//! of its log (`docs/transactions.md`, "Step 4"). The entries and their rules are
//! [`parallel_commit`](crate::parallel_commit)'s; this module gives them their payload and
//! applies them to the ledger:
//!
//! - as a **participant**, an `Intent` carries the partition's share of a batch
//!   ([`IntentShare`]: its events with their batch positions and chain pieces, and the answers
//!   of chains an earlier round found broken). Applied, it runs the share on this partition's
//!   own records without changing them ([`Ledger::create_transfers_intent`]) and holds the
//!   results and effects ([`Held`]) until `Resolve`: `Applied` stores the effects, `Aborted`
//!   forgets them. `Prevent` is the home's recovery.
//! - as a **record home**, `Stage` and `Finish` record the transaction and its decision.
//!
//! An intent holds its partition **whole** until it resolves: every entry that would change
//! or read records (a batch, a client request, an expiry pulse, a coordinator's decision) is
//! refused with [`Reply::Held`](crate::Reply::Held) and changes nothing, and another
//! transaction's intent is answered [`IntentReply::Busy`]. The node proposes them again after
//! the resolution (busy intents wait in their partition, in the order they came). So the intent's effects, computed when it was taken, still fit when they
//! are stored, and nothing newer is stored before its records (today's tables are kept in
//! timestamp order by appending; record locks come with issue 21's store).
//!
//! Everything an intent entry carries comes from another partition: a malformed share, one
//! for another partition or one under placement by id is answered
//! [`IntentReply::Malformed`] and changes nothing. Decoding checks the encoding; applying
//! checks the meaning.

use kassa_wire::header::HeaderLayout;
use kassa_wire::{
    Account, CreateAccountResult, CreateAccountStatus, CreateTransferResult, CreateTransferStatus,
    Operation, RequestHeader, Transfer, HEADER_SIZE, MESSAGE_BODY_SIZE_MAX,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::decoder::Decoder;
use crate::limits::{BATCH_EVENTS_MAX, PARTITIONS_MAX};
use crate::parallel_commit::{
    ClosedAs, HomeAnswer, HomeCommand, Ignored, Outcome, Participant, ParticipantAnswer,
    ParticipantCommand, Records, TxnId, TXN_ID_SIZE,
};
use crate::share_placement::PlacedEvent;
use crate::shares::{Forced, InTheBatch, Share, ShareError};
use crate::{Effects, Ledger, PlacementKind, StagedReply};

/// A participant's share of a `create_*` batch, as the home sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareOfBatch {
    Transfers {
        share: Share<Transfer>,
        batch: InTheBatch<CreateTransferStatus>,
    },
    Accounts {
        share: Share<Account>,
        batch: InTheBatch<CreateAccountStatus>,
    },
}

/// What an `Intent` entry carries: the share and the `now` the home chose for the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntentShare {
    pub now: u64,
    pub share: ShareOfBatch,
}

/// A share's results, one per event of the share, in its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareResults {
    Transfers(Vec<CreateTransferResult>),
    Accounts(Vec<CreateAccountResult>),
}

/// What a held intent holds until its transaction resolves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub results: ShareResults,
    /// This partition's effects, stored if the transaction applies.
    pub effects: Effects,
}

/// Why an intent's share cannot be taken here; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("{0}")]
    Share(#[from] ShareError),
    #[error("a share without events")]
    Empty,
    #[error("intents need placement by ledger: a transfer's accounts are then in one partition")]
    NotByLedger,
    #[error("a share for partition {0}, sent to another")]
    OtherPartition(u32),
    #[error("the share's event at batch position {0} is stored in another partition")]
    Elsewhere(u32),
}

/// What applying an `Intent` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntentReply {
    /// The intent is held, now or from before, with its share's results; `None` if the
    /// transaction was resolved as applied already (its home needs no results then).
    Written { results: Option<ShareResults> },
    /// Prevented or aborted before it arrived: it can never be taken.
    Refused,
    /// Another transaction's intent holds the partition; nothing changed. Propose it again
    /// once `holder` resolves.
    Busy { holder: TxnId },
    /// The share cannot run here; nothing changed.
    Malformed(IntentError),
}

/// What applying a participant's entry answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParticipantReply {
    Intent(IntentReply),
    /// A prevent: whether the intent is held (or was resolved as applied). `false`: it is now
    /// refused forever.
    Prevent {
        has_intent: bool,
    },
    /// A resolution: `applied` is `true` when it stored the intent's effects now.
    Resolved {
        applied: bool,
    },
    /// Closed transactions of a range are forgotten.
    Forgot,
    /// A resolution or forget no correct home sends here; nothing changed.
    Ignored(Ignored),
}

/// A partition's state in transactions across partitions: part of its snapshot.
#[derive(Clone, Debug, Default)]
pub(crate) struct IntentState {
    pub(crate) participant: Participant<Held>,
    pub(crate) home: Records,
    /// Intents whose effects this ledger stored since it was opened (not in the snapshot): a
    /// read of several partitions that saw none stored in any of them while it read saw
    /// whole transactions ([`Ledger::resolutions`]).
    pub(crate) resolutions: u64,
}

impl Ledger {
    /// The transaction whose intent holds this partition, if any. While one does, reads of
    /// its records must wait for the resolution, and writes are refused
    /// ([`Reply::Held`](crate::Reply::Held)).
    pub fn holder(&self) -> Option<TxnId> {
        self.intents
            .participant
            .intents()
            .next()
            .map(|(txn, _)| txn)
    }

    /// This partition's participant state: the intents it holds and the transactions it
    /// closed.
    pub fn participant(&self) -> &Participant<Held> {
        &self.intents.participant
    }

    /// How many intents' effects this ledger stored since it was opened. A reader of several
    /// partitions notes it in each before and after reading: if no partition stored an
    /// intent's effects meanwhile, the reads saw whole transactions (an intent written after
    /// one partition was read and resolved before another was would have been stored in the
    /// first by the time it is noted again, since its reads wait for the resolution).
    pub fn resolutions(&self) -> u64 {
        self.intents.resolutions
    }

    /// This partition's records as a record home.
    pub fn home_records(&self) -> &Records {
        &self.intents.home
    }

    pub(crate) fn apply_participant(
        &mut self,
        command: ParticipantCommand<IntentShare>,
    ) -> ParticipantReply {
        match command {
            ParticipantCommand::Intent { txn, effects } => {
                ParticipantReply::Intent(self.apply_intent(txn, &effects))
            }
            ParticipantCommand::Prevent { txn } => {
                let answer = self
                    .intents
                    .participant
                    .apply(ParticipantCommand::Prevent { txn });
                let has_intent = matches!(answer, ParticipantAnswer::HasIntent);
                ParticipantReply::Prevent { has_intent }
            }
            ParticipantCommand::Resolve { txn, outcome } => {
                let resolve = ParticipantCommand::Resolve { txn, outcome };
                match self.intents.participant.apply(resolve) {
                    ParticipantAnswer::Resolved { apply: Some(held) } => {
                        let replies = self.apply_effects(&held.effects);
                        assert!(replies.is_empty(), "an intent answers no client itself");
                        self.intents.resolutions += 1;
                        ParticipantReply::Resolved { applied: true }
                    }
                    ParticipantAnswer::Resolved { apply: None } => {
                        ParticipantReply::Resolved { applied: false }
                    }
                    ParticipantAnswer::Ignored(ignored) => ParticipantReply::Ignored(ignored),
                    other => unreachable!("a resolution answered {other:?}"),
                }
            }
            ParticipantCommand::Forget { home, from, below } => {
                let forget = ParticipantCommand::Forget { home, from, below };
                match self.intents.participant.apply(forget) {
                    ParticipantAnswer::Forgot => ParticipantReply::Forgot,
                    ParticipantAnswer::Ignored(ignored) => ParticipantReply::Ignored(ignored),
                    other => unreachable!("a forget answered {other:?}"),
                }
            }
        }
    }

    fn apply_intent(&mut self, txn: TxnId, intent: &IntentShare) -> IntentReply {
        let participant = &self.intents.participant;
        if let Some(held) = participant.intent(txn) {
            let results = Some(held.results.clone());
            return IntentReply::Written { results };
        }
        match participant.closed(txn) {
            Some(ClosedAs::Resolved(Outcome::Applied)) => {
                return IntentReply::Written { results: None }
            }
            Some(_) => return IntentReply::Refused,
            // A late copy of an intent resolved everywhere and forgotten: never taken.
            None if participant.forgot(txn) => return IntentReply::Refused,
            None => {}
        }
        if let Some(holder) = self.holder() {
            return IntentReply::Busy { holder };
        }
        let held = match self.intent_of(intent) {
            Ok(held) => held,
            Err(error) => return IntentReply::Malformed(error),
        };
        let results = Some(held.results.clone());
        let taken = ParticipantCommand::Intent { txn, effects: held };
        let answer = self.intents.participant.apply(taken);
        assert_eq!(answer, ParticipantAnswer::Written);
        IntentReply::Written { results }
    }

    /// Runs an intent's share on this partition's records, changing nothing.
    fn intent_of(&self, intent: &IntentShare) -> Result<Held, IntentError> {
        let config = self.config();
        if config.partitions > 1 && config.placement != PlacementKind::ByLedger {
            return Err(IntentError::NotByLedger);
        }
        let placement = config.placement();
        let partition = if self.is_whole() { 0 } else { config.partition };
        let here = |position: &u32, stored_in: u32| {
            (stored_in == partition || self.is_whole())
                .then_some(())
                .ok_or(IntentError::Elsewhere(*position))
        };
        match &intent.share {
            ShareOfBatch::Transfers { share, batch } => {
                check_share(share, partition)?;
                for (index, (position, t)) in share.positions.iter().zip(&share.events).enumerate()
                {
                    // A post or void of ledger 0 goes with its pending transfer, stored here
                    // or created earlier in the share.
                    let pending_here = t.ledger == 0
                        && (self.transfer_position_applied(t.pending_id.0).is_some()
                            || share.events[..index].iter().any(|e| e.id == t.pending_id));
                    // Any other event of ledger 0, and one answered here whatever its ledger
                    // (`share_placement`), may be in any share.
                    let anywhere = t.runs_anywhere() || self.transfer_answered_here_applied(t);
                    if !pending_here && !anywhere {
                        for stored in placement.transfer_partitions(t) {
                            here(position, stored)?;
                        }
                    }
                }
                let (results, effects) = self.create_transfers_intent(intent.now, share, batch)?;
                let results = ShareResults::Transfers(results);
                Ok(Held { results, effects })
            }
            ShareOfBatch::Accounts { share, batch } => {
                check_share(share, partition)?;
                for (position, account) in share.positions.iter().zip(&share.events) {
                    if !account.runs_anywhere() && !self.account_answered_here(account) {
                        here(position, placement.account(account))?;
                    }
                }
                let (results, effects) = self.create_accounts_intent(intent.now, share, batch)?;
                let results = ShareResults::Accounts(results);
                Ok(Held { results, effects })
            }
        }
    }

    pub(crate) fn apply_home(&mut self, command: &HomeCommand) -> HomeAnswer {
        self.intents.home.apply(command)
    }

    /// A wire round's stage: applied as a stage; staged, it also seals and keeps the reply
    /// (refused or forgotten, the round did not commit by it, and nothing is kept).
    pub(crate) fn apply_wire_stage(
        &mut self,
        txn: TxnId,
        participants: Vec<u32>,
        reply: &StagedReply,
    ) -> HomeAnswer {
        let answer = self.apply_home(&HomeCommand::Stage { txn, participants });
        if answer == HomeAnswer::Staged {
            self.record_staged_reply(reply);
        }
        answer
    }
}

/// A wire stage's request and reply body: a sealed create request, a body that fits a
/// message.
fn decode_staged_reply(
    now: u64,
    body_size: u32,
    reader: &mut Decoder,
) -> Result<StagedReply, &'static str> {
    let request = RequestHeader::read_from_bytes(reader.take(HEADER_SIZE)?).expect("256 bytes");
    let creates = [
        Operation::CreateAccounts.as_u8(),
        Operation::CreateTransfers.as_u8(),
    ];
    if !request.valid_checksum() || !creates.contains(&request.operation) {
        return Err("a wire stage's request is not a sealed create request");
    }
    if body_size as usize > MESSAGE_BODY_SIZE_MAX {
        return Err("a wire stage's reply is larger than a message");
    }
    let body = reader.take(body_size as usize)?.to_vec();
    Ok(StagedReply { request, now, body })
}

fn check_share<E>(share: &Share<E>, partition: u32) -> Result<(), IntentError> {
    if share.events.is_empty() {
        return Err(IntentError::Empty);
    }
    if share.partition != partition {
        return Err(IntentError::OtherPartition(share.partition));
    }
    if share.positions.len() != share.events.len() || share.linked.len() != share.events.len() {
        return Err(ShareError::Positions.into());
    }
    Ok(())
}

// Entries. Header (`command.rs`): `tag u8 | reserved [u8; 7] | now u64 | count u32 | reserved
// u32`; then a body of:
// - intent (`now` the batch's, `count` its events): `txn (home u32, number u64) | kind u32 (1
//   transfers, 2 accounts) | partition u32 | batch_len u32 | imported u32 (0 or 1) | forced
//   u32`, then `count` 128-byte events, `count` positions (`u32`), `count` chain-piece links
//   (`u8`, 0 or 1) and `forced` answers (`position u32 | status u32 | found u64`, 0: none);
// - prevent, resolve and finish: `txn | outcome u32` (0 for a prevent);
// - stage (`count` participants): `txn | reserved u32`, then `count` participants (`u32`,
//   strictly ascending);
// - a wire round's stage (`now` the request's clock, `count` participants): `txn | body size
//   u32`, the participants as a stage's, the request's 256-byte header, then the reply body.

pub(crate) const TAG_INTENT: u8 = 18;
pub(crate) const TAG_PREVENT: u8 = 19;
pub(crate) const TAG_RESOLVE: u8 = 20;
pub(crate) const TAG_STAGE: u8 = 21;
pub(crate) const TAG_FINISH: u8 = 22;
pub(crate) const TAG_FORGET_PARTICIPANT: u8 = 23;
pub(crate) const TAG_FORGET_HOME: u8 = 24;
pub(crate) const TAG_WIRE_STAGE: u8 = 25;

const KIND_TRANSFERS: u32 = 1;
const KIND_ACCOUNTS: u32 = 2;
const INTENT_HEADER_SIZE: usize = TXN_ID_SIZE + 20;
const FORCED_SIZE: usize = 16;
const OUTCOME_BODY_SIZE: usize = TXN_ID_SIZE + 4;

/// An entry of the rare path, as the log carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RareEntry {
    Participant(ParticipantCommand<IntentShare>),
    Home(HomeCommand),
    /// A wire round's stage ([`HomeCommand::Stage`]) with the reply it commits: applied
    /// `Staged`, the home seals the reply and keeps it (`Ledger::record_staged_reply`).
    WireStage {
        txn: TxnId,
        participants: Vec<u32>,
        reply: Box<StagedReply>,
    },
}

impl RareEntry {
    /// The transfers of this entry's share, if it is an intent of a `create_transfers` batch:
    /// applied, it reads the records they name (`Ledger::create_transfers_intent`).
    pub(crate) fn intent_transfers(&self) -> Option<&[Transfer]> {
        match self {
            RareEntry::Participant(ParticipantCommand::Intent { effects, .. }) => {
                match &effects.share {
                    ShareOfBatch::Transfers { share, .. } => Some(&share.events),
                    ShareOfBatch::Accounts { .. } => None,
                }
            }
            _ => None,
        }
    }

    /// The home's command this entry is, if it is one (a wire stage is a stage).
    pub fn home_command(&self) -> Option<HomeCommand> {
        match self {
            RareEntry::Participant(_) => None,
            RareEntry::Home(command) => Some(command.clone()),
            RareEntry::WireStage {
                txn, participants, ..
            } => Some(HomeCommand::Stage {
                txn: *txn,
                participants: participants.clone(),
            }),
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            RareEntry::Participant(ParticipantCommand::Intent { effects, .. }) => {
                let (events, forced) = match &effects.share {
                    ShareOfBatch::Transfers { share, batch } => {
                        (share.events.len(), batch.forced.len())
                    }
                    ShareOfBatch::Accounts { share, batch } => {
                        (share.events.len(), batch.forced.len())
                    }
                };
                INTENT_HEADER_SIZE + events * (128 + 4 + 1) + forced * FORCED_SIZE
            }
            RareEntry::Home(HomeCommand::Stage { participants, .. }) => {
                OUTCOME_BODY_SIZE + 4 * participants.len()
            }
            RareEntry::WireStage {
                participants,
                reply,
                ..
            } => OUTCOME_BODY_SIZE + 4 * participants.len() + HEADER_SIZE + reply.body.len(),
            RareEntry::Participant(ParticipantCommand::Forget { .. })
            | RareEntry::Home(HomeCommand::Forget { .. }) => TXN_ID_SIZE + 8,
            _ => OUTCOME_BODY_SIZE,
        }
    }

    /// `(tag, now, count)` for the header, and the body appended to `out`.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> (u8, u64, u32) {
        let put_u32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        match self {
            RareEntry::Participant(ParticipantCommand::Intent { txn, effects }) => {
                txn.encode(out);
                let count = match &effects.share {
                    ShareOfBatch::Transfers { share, batch } => {
                        encode_share(KIND_TRANSFERS, share, batch, |s| *s as u32, out)
                    }
                    ShareOfBatch::Accounts { share, batch } => {
                        encode_share(KIND_ACCOUNTS, share, batch, |s| *s as u32, out)
                    }
                };
                (TAG_INTENT, effects.now, count)
            }
            RareEntry::Participant(ParticipantCommand::Prevent { txn }) => {
                txn.encode(out);
                put_u32(out, 0);
                (TAG_PREVENT, 0, 0)
            }
            RareEntry::Participant(ParticipantCommand::Resolve { txn, outcome }) => {
                txn.encode(out);
                put_u32(out, outcome.to_u32());
                (TAG_RESOLVE, 0, 0)
            }
            RareEntry::Home(HomeCommand::Finish { txn, outcome }) => {
                txn.encode(out);
                put_u32(out, outcome.to_u32());
                (TAG_FINISH, 0, 0)
            }
            RareEntry::Participant(ParticipantCommand::Forget { home, from, below })
            | RareEntry::Home(HomeCommand::Forget { home, from, below }) => {
                TxnId {
                    home: *home,
                    number: *from,
                }
                .encode(out);
                out.extend_from_slice(&below.to_le_bytes());
                let tag = match self {
                    RareEntry::Participant(_) => TAG_FORGET_PARTICIPANT,
                    _ => TAG_FORGET_HOME,
                };
                (tag, 0, 0)
            }
            RareEntry::Home(HomeCommand::Stage { txn, participants }) => {
                txn.encode(out);
                put_u32(out, 0);
                for participant in participants {
                    put_u32(out, *participant);
                }
                (TAG_STAGE, 0, participants.len() as u32)
            }
            RareEntry::WireStage {
                txn,
                participants,
                reply,
            } => {
                txn.encode(out);
                put_u32(out, reply.body.len() as u32);
                for participant in participants {
                    put_u32(out, *participant);
                }
                out.extend_from_slice(reply.request.as_bytes());
                out.extend_from_slice(&reply.body);
                (TAG_WIRE_STAGE, reply.now, participants.len() as u32)
            }
        }
    }

    /// Decodes a body written by [`RareEntry::encode_body`], refusing anything it would not
    /// write.
    pub(crate) fn decode(
        tag: u8,
        now: u64,
        count: u32,
        body: &[u8],
    ) -> Result<RareEntry, &'static str> {
        let mut reader = Decoder::new(body);
        let txn = TxnId::decode(&mut reader)?;
        if tag != TAG_INTENT && tag != TAG_WIRE_STAGE && now != 0 {
            return Err("a clock in an entry that has none");
        }
        let entry = match tag {
            TAG_INTENT => {
                let effects = decode_intent(now, count, &mut reader)?;
                RareEntry::Participant(ParticipantCommand::Intent { txn, effects })
            }
            TAG_STAGE | TAG_WIRE_STAGE => {
                if count == 0 || count > PARTITIONS_MAX {
                    return Err("a stage of no participants, or more than partitions");
                }
                let body_size = reader.u32()?;
                if tag == TAG_STAGE && body_size != 0 {
                    return Err("reserved bytes are not zero");
                }
                let participants = (0..count)
                    .map(|_| reader.u32())
                    .collect::<Result<Vec<u32>, _>>()?;
                if !participants.windows(2).all(|w| w[0] < w[1]) {
                    return Err("a stage's participants must be strictly ascending");
                }
                if tag == TAG_STAGE {
                    RareEntry::Home(HomeCommand::Stage { txn, participants })
                } else {
                    let reply = decode_staged_reply(now, body_size, &mut reader)?;
                    RareEntry::WireStage {
                        txn,
                        participants,
                        reply: Box::new(reply),
                    }
                }
            }
            TAG_FORGET_PARTICIPANT | TAG_FORGET_HOME => {
                let (home, from, below) = (txn.home, txn.number, reader.u64()?);
                if count != 0 || from >= below {
                    return Err("a forget of an empty range, or with a count");
                }
                if tag == TAG_FORGET_HOME {
                    RareEntry::Home(HomeCommand::Forget { home, from, below })
                } else {
                    RareEntry::Participant(ParticipantCommand::Forget { home, from, below })
                }
            }
            _ => {
                if count != 0 {
                    return Err("a count in an entry that has none");
                }
                let outcome = reader.u32()?;
                match (tag, Outcome::from_u32(outcome)) {
                    (TAG_PREVENT, _) if outcome == 0 => {
                        RareEntry::Participant(ParticipantCommand::Prevent { txn })
                    }
                    (TAG_RESOLVE, Some(outcome)) => {
                        RareEntry::Participant(ParticipantCommand::Resolve { txn, outcome })
                    }
                    (TAG_FINISH, Some(outcome)) => {
                        RareEntry::Home(HomeCommand::Finish { txn, outcome })
                    }
                    _ => return Err("an unknown outcome"),
                }
            }
        };
        if !reader.is_done() {
            return Err("trailing bytes");
        }
        Ok(entry)
    }
}

fn encode_share<E: IntoBytes + zerocopy::Immutable, S>(
    kind: u32,
    share: &Share<E>,
    batch: &InTheBatch<S>,
    status: impl Fn(&S) -> u32,
    out: &mut Vec<u8>,
) -> u32 {
    let put_u32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    assert_eq!(share.positions.len(), share.events.len());
    assert_eq!(share.linked.len(), share.events.len());
    assert!(share.events.len() <= BATCH_EVENTS_MAX);
    put_u32(out, kind);
    put_u32(out, share.partition);
    put_u32(out, batch.batch_len);
    put_u32(out, u32::from(batch.batch_imported));
    put_u32(out, batch.forced.len() as u32);
    out.extend_from_slice(share.events.as_bytes());
    for position in &share.positions {
        put_u32(out, *position);
    }
    out.extend(share.linked.iter().map(|l| u8::from(*l)));
    for forced in &batch.forced {
        put_u32(out, forced.position);
        put_u32(out, status(&forced.status));
        out.extend_from_slice(&forced.found.unwrap_or(0).to_le_bytes());
    }
    share.events.len() as u32
}

fn decode_intent(
    now: u64,
    count: u32,
    reader: &mut Decoder<'_>,
) -> Result<IntentShare, &'static str> {
    let count = count as usize;
    if count == 0 || count > BATCH_EVENTS_MAX {
        return Err("an intent of no events, or more than a batch");
    }
    let kind = reader.u32()?;
    let partition = reader.u32()?;
    if partition >= PARTITIONS_MAX {
        return Err("a share for a partition beyond the limit");
    }
    let batch_len = reader.u32()?;
    if batch_len as usize > BATCH_EVENTS_MAX || (batch_len as usize) < count {
        return Err("a batch shorter than its share, or longer than the limit");
    }
    let batch_imported = match reader.u32()? {
        0 => false,
        1 => true,
        _ => return Err("an import flag that is neither 0 nor 1"),
    };
    let forced_count = reader.u32()? as usize;
    if forced_count > count {
        return Err("more forced answers than events");
    }
    let share = match kind {
        KIND_TRANSFERS => ShareOfBatch::Transfers {
            share: decode_share(partition, count, reader)?,
            batch: decode_batch(batch_len, batch_imported, forced_count, reader, |s| {
                CreateTransferStatus::from_u32(s)
            })?,
        },
        KIND_ACCOUNTS => ShareOfBatch::Accounts {
            share: decode_share(partition, count, reader)?,
            batch: decode_batch(batch_len, batch_imported, forced_count, reader, |s| {
                CreateAccountStatus::from_u32(s)
            })?,
        },
        _ => return Err("an intent of an unknown kind"),
    };
    Ok(IntentShare { now, share })
}

fn decode_share<E: zerocopy::FromBytes + IntoBytes + Copy>(
    partition: u32,
    count: usize,
    reader: &mut Decoder<'_>,
) -> Result<Share<E>, &'static str> {
    let events = reader.records_exact::<E>(count)?;
    let positions = (0..count)
        .map(|_| reader.u32())
        .collect::<Result<Vec<u32>, _>>()?;
    let linked = reader.take(count)?;
    if linked.iter().any(|l| *l > 1) {
        return Err("a chain-piece link that is neither 0 nor 1");
    }
    let linked = linked.iter().map(|l| *l == 1).collect();
    Ok(Share {
        partition,
        positions,
        events,
        linked,
    })
}

fn decode_batch<S>(
    batch_len: u32,
    batch_imported: bool,
    forced_count: usize,
    reader: &mut Decoder<'_>,
    status: impl Fn(u32) -> Option<S>,
) -> Result<InTheBatch<S>, &'static str> {
    let mut forced = Vec::with_capacity(forced_count);
    for _ in 0..forced_count {
        let position = reader.u32()?;
        let status = status(reader.u32()?).ok_or("a forced answer of an unknown status")?;
        let found = match reader.u64()? {
            0 => None,
            timestamp => Some(timestamp),
        };
        forced.push(Forced {
            position,
            status,
            found,
        });
    }
    Ok(InTheBatch {
        batch_len,
        batch_imported,
        forced,
    })
}

// Snapshots: the participant's intents (each with its results and effects) and closed
// transactions, then the home's records.

impl IntentState {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.participant.encode(out, |held, out| {
            let (kind, count, bytes) = match &held.results {
                ShareResults::Transfers(r) => (KIND_TRANSFERS, r.len(), r.as_bytes()),
                ShareResults::Accounts(r) => (KIND_ACCOUNTS, r.len(), r.as_bytes()),
            };
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&(count as u64).to_le_bytes());
            out.extend_from_slice(bytes);
            held.effects.encode(out);
        });
        self.home.encode(out);
    }

    /// Decodes the state from the start of `bytes`; returns it and the bytes read.
    /// `forgotten`: the snapshot has the forgotten ranges (format 9).
    pub(crate) fn decode(
        bytes: &[u8],
        forgotten: bool,
    ) -> Result<(IntentState, usize), &'static str> {
        let mut reader = Decoder::new(bytes);
        let participant = Participant::decode(
            &mut reader,
            |reader| {
                let kind = reader.u32()?;
                let count = reader.count(16)?;
                if count == 0 || count > BATCH_EVENTS_MAX {
                    return Err("an intent of no results, or more than a batch");
                }
                let results = match kind {
                    KIND_TRANSFERS => ShareResults::Transfers(decode_results(
                        reader,
                        count,
                        CreateTransferStatus::from_u32,
                        |timestamp, status| CreateTransferResult {
                            timestamp,
                            status,
                            reserved: 0,
                        },
                    )?),
                    KIND_ACCOUNTS => ShareResults::Accounts(decode_results(
                        reader,
                        count,
                        CreateAccountStatus::from_u32,
                        |timestamp, status| CreateAccountResult {
                            timestamp,
                            status,
                            reserved: 0,
                        },
                    )?),
                    _ => return Err("an intent of an unknown kind"),
                };
                let effects = Effects::decode(reader)?;
                Ok(Held { results, effects })
            },
            forgotten,
        )?;
        if participant.intents().count() > 1 {
            return Err("more than one intent holds the partition");
        }
        let home = Records::decode(&mut reader, forgotten)?;
        let state = IntentState {
            participant,
            home,
            resolutions: 0,
        };
        Ok((state, reader.offset))
    }
}

fn decode_results<S, R>(
    reader: &mut Decoder<'_>,
    count: usize,
    status: impl Fn(u32) -> Option<S>,
    result: impl Fn(u64, S) -> R,
) -> Result<Vec<R>, &'static str> {
    (0..count)
        .map(|_| {
            let timestamp = reader.u64()?;
            let status = status(reader.u32()?).ok_or("a result of an unknown status")?;
            if reader.u32()? != 0 {
                return Err("reserved bytes are not zero");
            }
            Ok(result(timestamp, status))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, ForeignAnswer, Reply};
    use kassa_wire::{AccountId, TransferId};

    use crate::test_partitions::{account, ledger_of, partition};

    const T1: TxnId = TxnId { home: 3, number: 1 };
    const T2: TxnId = TxnId { home: 3, number: 2 };

    fn transfer(id: u128, ledger: u32) -> Transfer {
        Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(1),
            credit_account_id: AccountId(2),
            amount: 5,
            ledger,
            code: 1,
            ..Transfer::default()
        }
    }

    /// Partition 1 with accounts 1 and 2 of its ledger.
    fn funded() -> (Ledger, u32) {
        let here = ledger_of(1);
        let mut ledger = partition(1, PlacementKind::ByLedger);
        let accounts = vec![account(1, here), account(2, here)];
        let Reply::CreateAccounts(results) =
            ledger.apply(Command::CreateAccounts { now: 10, accounts })
        else {
            panic!("accounts answered something else");
        };
        assert!(results
            .iter()
            .all(|r| r.status == CreateAccountStatus::Created));
        (ledger, here)
    }

    /// An intent for positions 1 and 3 of a batch of 4 transfers.
    fn intent(txn: TxnId, partition: u32, events: Vec<Transfer>) -> Command {
        let share = Share {
            partition,
            positions: vec![1, 3][..events.len()].to_vec(),
            linked: vec![false; events.len()],
            events,
        };
        let batch = InTheBatch {
            batch_len: 4,
            batch_imported: false,
            forced: Vec::new(),
        };
        let effects = IntentShare {
            now: 100,
            share: ShareOfBatch::Transfers { share, batch },
        };
        let entry = RareEntry::Participant(ParticipantCommand::Intent { txn, effects });
        Command::Rare(Box::new(entry))
    }

    fn participant(txn: TxnId, command: fn(TxnId) -> ParticipantCommand<IntentShare>) -> Command {
        Command::Rare(Box::new(RareEntry::Participant(command(txn))))
    }

    fn resolve(txn: TxnId, outcome: Outcome) -> Command {
        let command = ParticipantCommand::Resolve { txn, outcome };
        Command::Rare(Box::new(RareEntry::Participant(command)))
    }

    fn snapshot(ledger: &Ledger) -> Vec<u8> {
        let mut bytes = Vec::new();
        ledger.snapshot(&mut bytes);
        bytes
    }

    /// An intent's share reads the records its transfers name, cold ones from the store:
    /// `Ledger::cold_reads` lists them, so that the node reads them ahead of the apply and
    /// the apply blocks on no read.
    #[test]
    fn an_intents_cold_reads_are_listed_ahead_of_it() {
        use crate::checkpoint::CheckpointCut;
        use crate::cold_reads::ColdReads;
        use crate::keyspace::Keyspace;
        use kassa_wire::TransferFlags;
        use std::collections::BTreeSet;

        let (mut ledger, here) = funded();
        let store = std::sync::Arc::new(crate::MemoryColdStore::new());
        ledger.attach_cold_store(store.clone());
        let pending = Transfer {
            flags: TransferFlags::PENDING,
            ..transfer(11, here)
        };
        let transfers = vec![transfer(10, here), pending];
        let Reply::CreateTransfers(results) =
            ledger.apply(Command::CreateTransfers { now: 20, transfers })
        else {
            panic!("transfers answered something else");
        };
        assert!(results
            .iter()
            .all(|r| r.status == CreateTransferStatus::Created));
        let increment = ledger
            .checkpoint_increment(CheckpointCut::default())
            .expect("in memory");
        store.add(&increment);
        ledger.checkpoint_durable(increment.cut);

        // A retry of a cold transfer, and a post of a pending one whose id is in the runs.
        let post = Transfer {
            pending_id: TransferId(11),
            flags: TransferFlags::POST_PENDING_TRANSFER,
            ..transfer(21, here)
        };
        let take = intent(T1, 1, vec![transfer(10, here), post]);
        let mut listed = Vec::new();
        ledger.cold_reads(&take, ColdReads::Ids, &mut listed);
        ledger.cold_reads(&take, ColdReads::Transfers, &mut listed);
        store.take_keys_read();
        let Reply::Participant(ParticipantReply::Intent(IntentReply::Written {
            results: Some(ShareResults::Transfers(results)),
        })) = ledger.apply(take)
        else {
            panic!("the intent is taken");
        };
        let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [CreateTransferStatus::Exists, CreateTransferStatus::Created]
        );
        let read: BTreeSet<_> = store.take_keys_read().into_iter().collect();
        let listed: BTreeSet<_> = listed.into_iter().collect();
        assert!(
            read.iter()
                .any(|(keyspace, _)| *keyspace == Keyspace::Transfers),
            "the retry reads its cold transfer: {read:?}"
        );
        assert!(read.is_subset(&listed), "read {read:?}, listed {listed:?}");
    }

    #[test]
    fn an_intent_holds_the_partition_whole_until_it_resolves() {
        let (mut ledger, here) = funded();
        let take = intent(T1, 1, vec![transfer(7, here), transfer(8, here)]);
        let before = snapshot(&ledger);
        let Reply::Participant(ParticipantReply::Intent(IntentReply::Written {
            results: Some(ShareResults::Transfers(results)),
        })) = ledger.apply(take.clone())
        else {
            panic!("the intent is taken");
        };
        // Timestamps by batch position: end = max(clock, now) + 4; position p gets end - 4 + p + 1.
        let timestamps: Vec<u64> = results.iter().map(|r| r.timestamp).collect();
        assert_eq!(timestamps, vec![102, 104]);
        assert!(results
            .iter()
            .all(|r| r.status == CreateTransferStatus::Created));
        // Nothing is stored yet.
        assert!(!ledger.contains_transfer(TransferId(7)).unwrap());
        assert_eq!(ledger.holder(), Some(T1));
        // Taken again (a resend): the same results.
        let again = IntentReply::Written {
            results: Some(ShareResults::Transfers(results.clone())),
        };
        assert_eq!(
            ledger.apply(take),
            Reply::Participant(ParticipantReply::Intent(again))
        );
        // Writes and reads of records wait; another intent is busy; nothing changes.
        let held = snapshot(&ledger);
        assert_ne!(before, held, "the intent is in the snapshot");
        let write = Command::CreateTransfers {
            now: 200,
            transfers: vec![transfer(9, here)],
        };
        let refused = |command: &Command| Reply::Held {
            holder: T1,
            command: Box::new(command.clone()),
        };
        assert_eq!(ledger.apply(write.clone()), refused(&write));
        let pulse = Command::ExpirePendingTransfers { now: 200 };
        assert_eq!(ledger.apply(pulse.clone()), refused(&pulse));
        let other = intent(T2, 1, vec![transfer(9, here)]);
        let busy = IntentReply::Busy { holder: T1 };
        assert_eq!(
            ledger.apply(other.clone()),
            Reply::Participant(ParticipantReply::Intent(busy))
        );
        assert_eq!(snapshot(&ledger), held);
        // A restart keeps the intent.
        let config = ledger.config();
        let mut ledger = Ledger::restore(config, &held).expect("restores");
        assert_eq!(ledger.holder(), Some(T1));
        // Applied: the effects are stored once, with the intent's timestamps.
        let applied = ParticipantReply::Resolved { applied: true };
        assert_eq!(
            ledger.apply(resolve(T1, Outcome::Applied)),
            Reply::Participant(applied)
        );
        let stored = ledger
            .transfer(TransferId(8))
            .expect("in memory")
            .expect("stored");
        assert_eq!(stored.timestamp, 104);
        assert_eq!(ledger.account(AccountId(1)).unwrap().debits_posted, 10);
        let once = ParticipantReply::Resolved { applied: false };
        assert_eq!(
            ledger.apply(resolve(T1, Outcome::Applied)),
            Reply::Participant(once)
        );
        assert_eq!(ledger.account(AccountId(1)).unwrap().debits_posted, 10);
        assert_eq!(ledger.holder(), None);
        ledger.validate();
        // The waiting write and intent run now.
        assert!(matches!(ledger.apply(write), Reply::CreateTransfers(_)));
        let Reply::Participant(ParticipantReply::Intent(IntentReply::Written { .. })) =
            ledger.apply(other)
        else {
            panic!("the next intent is taken");
        };
        assert_eq!(ledger.holder(), Some(T2));
    }

    /// An intent of a transaction its home forgot (resolved everywhere, then a `Forget`):
    /// a late copy, never taken, and nothing changes.
    #[test]
    fn a_late_intent_of_a_forgotten_transaction_is_refused_and_changes_nothing() {
        let (mut ledger, here) = funded();
        let take = intent(T1, 1, vec![transfer(7, here)]);
        ledger.apply(take.clone());
        ledger.apply(resolve(T1, Outcome::Aborted));
        let forget = ParticipantCommand::Forget {
            home: T1.home,
            from: 0,
            below: T1.number + 1,
        };
        let forgot = ledger.apply(Command::Rare(Box::new(RareEntry::Participant(forget))));
        assert_eq!(forgot, Reply::Participant(ParticipantReply::Forgot));
        assert_eq!(ledger.participant().closed(T1), None);
        let before = snapshot(&ledger);
        let refused = Reply::Participant(ParticipantReply::Intent(IntentReply::Refused));
        assert_eq!(ledger.apply(take), refused);
        assert_eq!(ledger.holder(), None);
        assert_eq!(snapshot(&ledger), before);
    }

    #[test]
    fn an_aborted_or_prevented_intent_changes_nothing_and_is_refused_after() {
        let (mut ledger, here) = funded();
        let before = snapshot(&ledger);
        let take = intent(T1, 1, vec![transfer(7, here)]);
        ledger.apply(take.clone());
        let aborted = ParticipantReply::Resolved { applied: false };
        assert_eq!(
            ledger.apply(resolve(T1, Outcome::Aborted)),
            Reply::Participant(aborted)
        );
        assert_eq!(ledger.holder(), None);
        let refused = Reply::Participant(ParticipantReply::Intent(IntentReply::Refused));
        assert_eq!(ledger.apply(take), refused);
        // Contrary or baseless resolutions are ignored.
        let ignored = ledger.apply(resolve(T1, Outcome::Applied));
        assert!(matches!(
            ignored,
            Reply::Participant(ParticipantReply::Ignored(_))
        ));
        let ignored = ledger.apply(resolve(T2, Outcome::Applied));
        assert!(matches!(
            ignored,
            Reply::Participant(ParticipantReply::Ignored(_))
        ));
        // A prevent before the intent: it is never taken.
        let prevent = participant(T2, |txn| ParticipantCommand::Prevent { txn });
        let prevented = ParticipantReply::Prevent { has_intent: false };
        assert_eq!(ledger.apply(prevent), Reply::Participant(prevented));
        assert_eq!(
            ledger.apply(intent(T2, 1, vec![transfer(8, here)])),
            refused
        );
        assert!(!ledger.contains_transfer(TransferId(7)).unwrap());
        assert!(!ledger.contains_transfer(TransferId(8)).unwrap());
        // Only the closed transactions were added to the state.
        let config = ledger.config();
        let restored = Ledger::restore(config, &snapshot(&ledger)).expect("restores");
        assert_eq!(
            restored.participant().closed(T1),
            Some(ClosedAs::Resolved(Outcome::Aborted))
        );
        assert_eq!(restored.participant().closed(T2), Some(ClosedAs::Prevented));
        assert_eq!(
            restored.accounts(),
            Ledger::restore(config, &before).unwrap().accounts()
        );
    }

    #[test]
    fn intents_that_cannot_be_taken_here_are_refused_and_change_nothing() {
        let (mut ledger, here) = funded();
        let before = snapshot(&ledger);
        let malformed =
            |error| Reply::Participant(ParticipantReply::Intent(IntentReply::Malformed(error)));
        // For another partition, or with an event of another partition's ledger.
        let other = intent(T1, 2, vec![transfer(7, here)]);
        assert_eq!(
            ledger.apply(other),
            malformed(IntentError::OtherPartition(2))
        );
        let elsewhere = intent(T1, 1, vec![transfer(7, here), transfer(8, ledger_of(2))]);
        assert_eq!(
            ledger.apply(elsewhere),
            malformed(IntentError::Elsewhere(3))
        );
        // Positions out of order, or beyond the batch.
        let Command::Rare(mut entry) = intent(T1, 1, vec![transfer(7, here), transfer(8, here)])
        else {
            unreachable!()
        };
        let RareEntry::Participant(ParticipantCommand::Intent { effects, .. }) = entry.as_mut()
        else {
            unreachable!()
        };
        let ShareOfBatch::Transfers { share, batch } = &mut effects.share else {
            unreachable!()
        };
        share.positions = vec![3, 1];
        batch.forced.push(Forced {
            position: 0,
            status: CreateTransferStatus::LinkedEventFailed,
            found: None,
        });
        let refused = ledger.apply(Command::Rare(entry.clone()));
        assert!(matches!(
            refused,
            Reply::Participant(ParticipantReply::Intent(IntentReply::Malformed(_)))
        ));
        // Placed by id, a transfer's accounts are in two partitions: no intents.
        let mut by_id = partition(1, PlacementKind::ById);
        let by_id_refused = by_id.apply(intent(T1, 1, vec![transfer(7, here)]));
        assert_eq!(by_id_refused, malformed(IntentError::NotByLedger));
        assert_eq!(ledger.holder(), None);
        assert_eq!(snapshot(&ledger), before);
    }

    #[test]
    fn entries_round_trip_and_bad_bytes_are_refused() {
        let here = ledger_of(1);
        let mut forced_intent = intent(T1, 1, vec![transfer(7, here), transfer(8, here)]);
        if let Command::Rare(entry) = &mut forced_intent {
            if let RareEntry::Participant(ParticipantCommand::Intent { effects, .. }) =
                entry.as_mut()
            {
                if let ShareOfBatch::Transfers { batch, share } = &mut effects.share {
                    share.linked[0] = true;
                    batch.batch_imported = false;
                    batch.forced.push(Forced {
                        position: 3,
                        status: CreateTransferStatus::Exists,
                        found: Some(55),
                    });
                }
            }
        }
        let accounts = {
            let share = Share {
                partition: 1,
                positions: vec![0],
                linked: vec![false],
                events: vec![account(3, here)],
            };
            let batch = InTheBatch {
                batch_len: 2,
                batch_imported: false,
                forced: Vec::new(),
            };
            let effects = IntentShare {
                now: 5,
                share: ShareOfBatch::Accounts { share, batch },
            };
            let entry = RareEntry::Participant(ParticipantCommand::Intent { txn: T2, effects });
            Command::Rare(Box::new(entry))
        };
        let home = |command| Command::Rare(Box::new(RareEntry::Home(command)));
        let commands = [
            intent(T1, 1, vec![transfer(7, here)]),
            forced_intent,
            accounts,
            participant(T1, |txn| ParticipantCommand::Prevent { txn }),
            resolve(T1, Outcome::Applied),
            resolve(T2, Outcome::Aborted),
            home(HomeCommand::Stage {
                txn: T1,
                participants: vec![0, 1, 3],
            }),
            home(HomeCommand::Finish {
                txn: T2,
                outcome: Outcome::Aborted,
            }),
            home(HomeCommand::Forget {
                home: 3,
                from: 1 << 24,
                below: (1 << 24) + 300,
            }),
            Command::Rare(Box::new(RareEntry::WireStage {
                txn: T1,
                participants: vec![0, 3],
                reply: Box::new(staged_reply(7, vec![5; 48])),
            })),
            participant(T1, |txn| ParticipantCommand::Forget {
                home: txn.home,
                from: 0,
                below: txn.number + 1,
            }),
        ];
        for command in commands {
            let mut bytes = Vec::new();
            command.encode(&mut bytes);
            assert_eq!(bytes.len(), command.encoded_len(), "{command:?}");
            assert_eq!(Command::decode(&bytes), Ok(command.clone()));
            for cut in 0..bytes.len() {
                assert!(Command::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert!(Command::decode(&extra).is_err());
            // No byte of the body can be changed to 0xff and still decode to the same entry.
            for at in 24..bytes.len() {
                let mut changed = bytes.clone();
                changed[at] ^= 0xff;
                assert_ne!(Command::decode(&changed), Ok(command.clone()));
            }
        }
        // Stages must list their participants once each, ascending; outcomes must be known.
        let mut bytes = Vec::new();
        home(HomeCommand::Stage {
            txn: T1,
            participants: vec![1, 2],
        })
        .encode(&mut bytes);
        let last = bytes.len() - 4;
        bytes[last] = 1;
        assert!(Command::decode(&bytes).is_err(), "participants 1, 1");
        let mut bytes = Vec::new();
        resolve(T1, Outcome::Applied).encode(&mut bytes);
        let last = bytes.len() - 4;
        bytes[last] = 3;
        assert!(Command::decode(&bytes).is_err(), "outcome 3");
    }

    /// A wire client's sealed create request, number `request`, and a reply body for it.
    fn staged_reply(request: u32, body: Vec<u8>) -> StagedReply {
        let operation = Operation::CreateTransfers;
        let events = [0u8; 128];
        let request_body = kassa_wire::multi_batch::encode_to_vec(128, &[&events[..]]);
        let request_body = request_body.expect("encodes");
        let release = kassa_wire::header::Release::new(0, 17, 8);
        let mut header = RequestHeader::new(0, 99, release, operation.as_u8());
        header.session = 1;
        header.request = request;
        header.frame.size = (HEADER_SIZE + request_body.len()) as u32;
        header.seal(&request_body);
        StagedReply {
            request: header,
            now: 1_700_000_000_000_000_000,
            body,
        }
    }

    /// A wire round's stage keeps its reply, sealed, exactly when it stages the round: a
    /// stage appended again keeps the first, and one refused (the round finished first)
    /// keeps nothing.
    #[test]
    fn a_wire_stage_keeps_its_reply_only_when_it_stages() {
        let mut ledger = partition(3, PlacementKind::ByLedger);
        let wire_stage = |txn, staged: &StagedReply| {
            Command::Rare(Box::new(RareEntry::WireStage {
                txn,
                participants: vec![1, 3],
                reply: Box::new(staged.clone()),
            }))
        };
        let first = staged_reply(1, vec![1; 32]);
        let staged = Reply::Home(HomeAnswer::Staged);
        let op_next = ledger.sessions().op_next();
        assert_eq!(ledger.apply(wire_stage(T1, &first)), staged);
        // The stage applies outside the partition's transaction lock: it moves no op a
        // coordinator's transaction read under the lock to seal its own replies.
        assert_eq!(ledger.sessions().op_next(), op_next);
        let kept = ledger.foreign_requests().known(&first.request);
        let Some(ForeignAnswer::Sealed { reply, body }) = kept.clone() else {
            panic!("the reply is kept: {kept:?}");
        };
        assert_eq!(body, first.body);
        assert!(reply.valid_checksum() && reply.valid_checksum_body(&body));
        assert_eq!(reply.request_checksum, first.request.frame.checksum);
        // Appended again: staged, the reply kept unchanged.
        assert_eq!(ledger.apply(wire_stage(T1, &first)), staged);
        assert_eq!(ledger.foreign_requests().known(&first.request), kept);
        // A later request's stage, refused after its round was aborted: nothing kept.
        let second = staged_reply(2, vec![2; 32]);
        let finish = RareEntry::Home(HomeCommand::Finish {
            txn: T2,
            outcome: Outcome::Aborted,
        });
        ledger.apply(Command::Rare(Box::new(finish)));
        let refused = Reply::Home(HomeAnswer::Refused);
        assert_eq!(ledger.apply(wire_stage(T2, &second)), refused);
        assert_eq!(ledger.foreign_requests().known(&second.request), None);
        // Kept in the snapshot.
        let restored = Ledger::restore(ledger.config(), &snapshot(&ledger)).expect("restores");
        assert_eq!(restored.foreign_requests().known(&first.request), kept);
    }

    #[test]
    fn a_home_records_its_stage_and_its_first_decision() {
        let mut ledger = partition(3, PlacementKind::ByLedger);
        let home = |command| Command::Rare(Box::new(RareEntry::Home(command)));
        let stage = home(HomeCommand::Stage {
            txn: T1,
            participants: vec![1, 2],
        });
        assert_eq!(ledger.apply(stage.clone()), Reply::Home(HomeAnswer::Staged));
        let finish = |outcome| home(HomeCommand::Finish { txn: T1, outcome });
        let applied = Reply::Home(HomeAnswer::Finished(Outcome::Applied));
        assert_eq!(ledger.apply(finish(Outcome::Applied)), applied);
        assert_eq!(ledger.apply(finish(Outcome::Aborted)), applied);
        assert_eq!(ledger.apply(stage), Reply::Home(HomeAnswer::Refused));
        let config = ledger.config();
        let restored = Ledger::restore(config, &snapshot(&ledger)).expect("restores");
        let record = restored.home_records().get(T1).expect("recorded");
        assert_eq!(record.participants, vec![1, 2]);
        assert_eq!(record.outcome, Some(Outcome::Applied));
    }
}
