//! Commands: the writes a partition's log carries, and their binary encoding.
//!
//! Every write to a ledger goes through the partition's replicated log as a [`Command`], so
//! that every replica applies the same commands in the same order with the same `now` (the
//! leader's clock when it proposed the command) and reaches the same state. [`Ledger::apply`]
//! is the only way the log layer changes a ledger.
//!
//! Encoding (little-endian): `tag u8 | reserved [u8; 7] | now u64 | count u32 | reserved u32`
//! then `count` fixed-size records (128-byte accounts or transfers), or a `u64` for a release.
//! A client's `Register` or `Request` carries its whole frame instead: `count` is the frame's
//! size and the frame (256-byte request header, then body) follows; decoding validates it again
//! as the wire port did (`ClientRequest::new`) and checks that the operation fits the tag.
//! The id directory's `Claim` has `count` ids after a 24-byte body header (`kind u32 |
//! claimant u32 | round u64 | priority u64`); a `Settle` has a 48-byte body (`kind u32 | holder
//! u32 | claimant u32 | verdict u32 | holder_round u64 | round u64 | id u128`); a `Lease` has
//! `count` buckets (`u16` each, ascending) after a 16-byte body header (`kind u32 | holder u32
//! | round u64`).
//! Decoding checks the tag, the reserved bytes, the count against `BATCH_EVENTS_MAX` (or
//! `MESSAGE_SIZE_MAX` for a frame) and the exact length, and never panics on bad input.

use kassa_wire::client_headers::ReplyHeader;
use kassa_wire::{
    Account, CreateAccountResult, CreateTransferResult, Operation, RequestHeader, Transfer,
    MESSAGE_SIZE_MAX,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::limits::BATCH_EVENTS_MAX;
use crate::sessions::{ClientReply, ClientRequest, ClientRequestError};
use std::sync::Arc;

use crate::decoder::Decoder;
use crate::directory::{
    ClaimAnswer, DirectoryCommand, IdKind, Verdict, CLAIM_IDS_MAX, LEASE_BUCKETS,
};
use crate::intents::{
    ParticipantReply, RareEntry, TAG_FINISH, TAG_FORGET_HOME, TAG_FORGET_PARTICIPANT, TAG_INTENT,
    TAG_PREVENT, TAG_RESOLVE, TAG_STAGE, TAG_WIRE_STAGE,
};
use crate::parallel_commit::{HomeAnswer, TxnId};
use crate::txn::{Decision, Effects};
use crate::{ForeignAnswer, Ledger};
use kassa_wire::header::HeaderLayout;

const HEADER_SIZE: usize = 24;

/// A write to one partition's ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateAccounts {
        now: u64,
        accounts: Vec<Account>,
    },
    CreateTransfers {
        now: u64,
        transfers: Vec<Transfer>,
    },
    /// Expire the pending transfers whose time is up at `now` (a pulse).
    ExpirePendingTransfers {
        now: u64,
    },
    /// The change stream's consumers are done with events up to `sequence_through`.
    ReleaseChangeEvents {
        sequence_through: u64,
    },
    /// A wire client's request whose reply `body` was computed from other partitions (a
    /// read): checked against the session; if new, the reply is cached in it.
    Answer {
        now: u64,
        request: Box<RequestHeader>,
        body: Vec<u8>,
    },
    /// A cross-partition transaction's commit point, logged by its decider: the effects on
    /// every partition it touches (the decider's own share applied here).
    Decide {
        /// Shared: the coordinator computes the other partitions' shares from it while the
        /// decider logs it.
        decision: Arc<Decision>,
    },
    /// A decided transaction's effects on this partition; applied at most once.
    Apply {
        decider: u32,
        txn: u64,
        effects: Effects,
    },
    /// Every partition applied the decided transaction `txn`: the decider can forget it.
    Done {
        txn: u64,
    },
    /// A wire client's `register`: creates its session (`sessions.rs`).
    Register {
        now: u64,
        request: ClientRequest,
    },
    /// A wire client's request in its session: checked against the session, run batch by
    /// batch, its reply cached in the session.
    Request {
        now: u64,
        request: ClientRequest,
    },
    /// A wire client's request run in this partition (its records' ledger's) while its
    /// session lives in another: run once, its reply sealed here and kept for copies of it
    /// (`foreign_requests`). The session partition records the reply after, with a
    /// `SealedAnswer`.
    ForeignRequest {
        now: u64,
        request: ClientRequest,
    },
    /// A wire client's `request` run in another partition, which sealed `reply` to it: checked
    /// against the session; if new, `reply` (with `body`) becomes the session's cached reply
    /// as it is, since the client gets exactly that reply.
    SealedAnswer {
        request: Box<RequestHeader>,
        reply: Box<ReplyHeader>,
        body: Vec<u8>,
    },
    /// The session of `request`'s client missed the `SealedAnswer`s of its latest requests
    /// (lost in a crash, or still in flight): `reply`, which a ledger's partition sealed to
    /// the request `request` names as its parent (or to `request` itself, retried), becomes
    /// the session's cached reply, skipping those it missed (`Sessions::catch_up`).
    CatchUp {
        request: Box<RequestHeader>,
        reply: Box<ReplyHeader>,
        body: Vec<u8>,
    },
    /// A leader's start of its claim rounds (`directory::ClaimRound`): changes nothing. Its
    /// index, committed, is above every entry of earlier leaders, so rounds numbered from it
    /// never repeat an earlier leader's, even one of the same term (a single voter restarting).
    ClaimEpoch,
    /// An entry of the id directory, for ids homed in this partition (`directory`).
    Directory {
        kind: IdKind,
        /// Boxed: a settle is larger than every other command's fields.
        command: Box<DirectoryCommand>,
    },
    /// An entry of a transaction across partitions (`intents`): a participant's intent,
    /// prevent or resolution, or a record home's stage or decision.
    Rare(Box<RareEntry>),
}

/// What applying a [`Command`] answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    CreateAccounts(Vec<CreateAccountResult>),
    CreateTransfers(Vec<CreateTransferResult>),
    ExpirePendingTransfers {
        expired: u32,
    },
    ReleaseChangeEvents,
    /// The decider numbered the transaction `txn`; the replies to the client requests whose
    /// sessions live in the decider, in `Effects::client_answers` order.
    Decided {
        txn: u64,
        client_replies: Vec<ClientReply>,
    },
    /// The effects were applied now, answering these client requests; `None` if this
    /// partition had applied them before.
    Applied {
        client_replies: Option<Vec<ClientReply>>,
    },
    Done,
    /// The answer to a `Register` or `Request`.
    Client(ClientReply),
    /// Whether a `CatchUp` moved the session to its reply.
    CaughtUp(bool),
    /// The answer to a `ForeignRequest`.
    Foreign(ForeignAnswer),
    ClaimEpoch,
    /// A directory entry's answers: one per claimed id, or one for a settle.
    Directory(Vec<ClaimAnswer>),
    /// A participant's entry of a transaction across partitions.
    Participant(ParticipantReply),
    /// A record home's entry.
    Home(HomeAnswer),
    /// The partition is held by the intent of transaction `holder`: the command was refused
    /// whole and changed nothing. It is given back, to propose again once `holder` resolves.
    Held {
        holder: TxnId,
        command: Box<Command>,
    },
}

/// Why bytes are not a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandDecodeError {
    #[error("command shorter than its 24-byte header")]
    TooShort,
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    #[error("command carries {0} events, more than the batch limit")]
    TooManyEvents(u32),
    #[error("command length does not match its event count")]
    LengthMismatch,
    #[error("command clock {0} is beyond NOW_MAX")]
    NowOutOfRange(u64),
    #[error("transaction command malformed: {0}")]
    Malformed(&'static str),
    #[error("client frame of {0} bytes is outside 256..=MESSAGE_SIZE_MAX")]
    FrameSize(u32),
    #[error("client frame: {0}")]
    ClientRequest(#[from] ClientRequestError),
    #[error("client frame's operation does not match the command tag")]
    OperationMismatch,
}

/// The largest `now` a command may carry: it leaves room for 2^40 more event timestamps below
/// `TIMESTAMP_MAX`, so applying a command can never overflow the ledger's clock.
pub const NOW_MAX: u64 = kassa_wire::TIMESTAMP_MAX - (1 << 40);

const TAG_CREATE_ACCOUNTS: u8 = 1;
const TAG_CREATE_TRANSFERS: u8 = 2;
const TAG_EXPIRE_PENDING_TRANSFERS: u8 = 3;
const TAG_RELEASE_CHANGE_EVENTS: u8 = 4;
const TAG_REGISTER: u8 = 5;
const TAG_REQUEST: u8 = 6;
const TAG_DECIDE: u8 = 7;
const TAG_APPLY: u8 = 8;
const TAG_DONE: u8 = 9;
const TAG_ANSWER: u8 = 10;
const TAG_CLAIM: u8 = 11;
const TAG_SETTLE: u8 = 12;
const TAG_CLAIM_EPOCH: u8 = 13;
const TAG_FOREIGN_REQUEST: u8 = 14;
const TAG_LEASE: u8 = 15;
const TAG_SEALED_ANSWER: u8 = 16;
const TAG_CATCH_UP: u8 = 17;
const CLAIM_HEADER_SIZE: usize = 24;
const SETTLE_SIZE: usize = 48;
const LEASE_HEADER_SIZE: usize = 16;

impl Command {
    /// The size of [`Command::encode`]'s output, to size the buffer once.
    pub fn encoded_len(&self) -> usize {
        let body = match self {
            Command::CreateAccounts { accounts, .. } => size_of_val(accounts.as_slice()),
            Command::CreateTransfers { transfers, .. } => size_of_val(transfers.as_slice()),
            Command::ExpirePendingTransfers { .. } | Command::ClaimEpoch => 0,
            Command::ReleaseChangeEvents { .. } | Command::Done { .. } => 8,
            Command::Answer { body, .. } => size_of::<RequestHeader>() + body.len(),
            Command::SealedAnswer { body, .. } | Command::CatchUp { body, .. } => {
                size_of::<RequestHeader>() + size_of::<ReplyHeader>() + body.len()
            }
            Command::Decide { decision } => decision.encoded_len(),
            Command::Apply { effects, .. } => 16 + effects.encoded_len(),
            Command::Register { request, .. }
            | Command::Request { request, .. }
            | Command::ForeignRequest { request, .. } => request.header().frame.size as usize,
            Command::Directory { command, .. } => match command.as_ref() {
                DirectoryCommand::Claim { ids, .. } => CLAIM_HEADER_SIZE + 16 * ids.len(),
                DirectoryCommand::Settle { .. } => SETTLE_SIZE,
                DirectoryCommand::Lease { buckets, .. } => LEASE_HEADER_SIZE + 2 * buckets.len(),
            },
            Command::Rare(entry) => entry.encoded_len(),
        };
        HEADER_SIZE + body
    }

    /// Appends the command's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (tag, now, count, body): (u8, u64, usize, &[u8]) = match self {
            Command::CreateAccounts { now, accounts } => (
                TAG_CREATE_ACCOUNTS,
                *now,
                accounts.len(),
                accounts.as_bytes(),
            ),
            Command::CreateTransfers { now, transfers } => (
                TAG_CREATE_TRANSFERS,
                *now,
                transfers.len(),
                transfers.as_bytes(),
            ),
            Command::ExpirePendingTransfers { now } => (TAG_EXPIRE_PENDING_TRANSFERS, *now, 0, &[]),
            Command::ClaimEpoch => (TAG_CLAIM_EPOCH, 0, 0, &[]),
            Command::ReleaseChangeEvents { sequence_through } => {
                out.extend_from_slice(&[TAG_RELEASE_CHANGE_EVENTS, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&[0; 16]);
                out.extend_from_slice(&sequence_through.to_le_bytes());
                return;
            }
            Command::Answer { now, request, body } => {
                out.extend_from_slice(&[TAG_ANSWER, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&now.to_le_bytes());
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(request.as_bytes());
                out.extend_from_slice(body);
                return;
            }
            Command::SealedAnswer {
                request,
                reply,
                body,
            }
            | Command::CatchUp {
                request,
                reply,
                body,
            } => {
                let tag = match self {
                    Command::SealedAnswer { .. } => TAG_SEALED_ANSWER,
                    _ => TAG_CATCH_UP,
                };
                out.extend_from_slice(&[tag, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&0u64.to_le_bytes());
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(request.as_bytes());
                out.extend_from_slice(reply.as_bytes());
                out.extend_from_slice(body);
                return;
            }
            Command::Decide { decision } => {
                out.extend_from_slice(&[TAG_DECIDE, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&[0; 16]);
                decision.encode(out);
                return;
            }
            Command::Apply {
                decider,
                txn,
                effects,
            } => {
                out.extend_from_slice(&[TAG_APPLY, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&[0; 16]);
                out.extend_from_slice(&u64::from(*decider).to_le_bytes());
                out.extend_from_slice(&txn.to_le_bytes());
                effects.encode(out);
                return;
            }
            Command::Done { txn } => {
                out.extend_from_slice(&[TAG_DONE, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&[0; 16]);
                out.extend_from_slice(&txn.to_le_bytes());
                return;
            }
            Command::Register { now, request } => {
                return encode_client(TAG_REGISTER, *now, request, out);
            }
            Command::Request { now, request } => {
                return encode_client(TAG_REQUEST, *now, request, out);
            }
            Command::ForeignRequest { now, request } => {
                return encode_client(TAG_FOREIGN_REQUEST, *now, request, out);
            }
            Command::Directory { kind, command } => return encode_directory(*kind, command, out),
            Command::Rare(entry) => {
                let start = out.len();
                out.extend_from_slice(&[0; HEADER_SIZE]);
                let (tag, now, count) = entry.encode_body(out);
                let header = &mut out[start..start + HEADER_SIZE];
                header[0] = tag;
                header[8..16].copy_from_slice(&now.to_le_bytes());
                header[16..20].copy_from_slice(&count.to_le_bytes());
                return;
            }
        };
        assert!(count <= BATCH_EVENTS_MAX);
        out.extend_from_slice(&[tag, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&now.to_le_bytes());
        out.extend_from_slice(&(count as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(body);
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, CommandDecodeError> {
        if bytes.len() < HEADER_SIZE {
            return Err(CommandDecodeError::TooShort);
        }
        let tag = bytes[0];
        let now = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        if bytes[1..8].iter().chain(&bytes[20..24]).any(|b| *b != 0) {
            return Err(CommandDecodeError::ReservedNotZero);
        }
        if now > NOW_MAX {
            return Err(CommandDecodeError::NowOutOfRange(now));
        }
        let body = &bytes[HEADER_SIZE..];
        if tag == TAG_REGISTER || tag == TAG_REQUEST || tag == TAG_FOREIGN_REQUEST {
            return decode_client(tag, now, count, body);
        }
        if tag == TAG_ANSWER {
            return decode_answer(now, count, body);
        }
        if tag == TAG_SEALED_ANSWER || tag == TAG_CATCH_UP {
            if now != 0 {
                return Err(CommandDecodeError::ReservedNotZero);
            }
            return decode_sealed_answer(tag, count, body);
        }
        if tag == TAG_CLAIM || tag == TAG_SETTLE || tag == TAG_LEASE {
            if now != 0 {
                return Err(CommandDecodeError::ReservedNotZero);
            }
            return decode_directory(tag, count, body).map_err(CommandDecodeError::Malformed);
        }
        let rare = [
            TAG_INTENT,
            TAG_PREVENT,
            TAG_RESOLVE,
            TAG_STAGE,
            TAG_FINISH,
            TAG_FORGET_PARTICIPANT,
            TAG_FORGET_HOME,
            TAG_WIRE_STAGE,
        ];
        if rare.contains(&tag) {
            let entry = RareEntry::decode(tag, now, count, body);
            let entry = entry.map_err(CommandDecodeError::Malformed)?;
            return Ok(Command::Rare(Box::new(entry)));
        }
        if count as usize > BATCH_EVENTS_MAX {
            return Err(CommandDecodeError::TooManyEvents(count));
        }
        let exact = |size: usize| {
            (body.len() == size)
                .then_some(())
                .ok_or(CommandDecodeError::LengthMismatch)
        };
        match tag {
            TAG_CREATE_ACCOUNTS => {
                exact(count as usize * size_of::<Account>())?;
                let accounts = records(body);
                Ok(Command::CreateAccounts { now, accounts })
            }
            TAG_CREATE_TRANSFERS => {
                exact(count as usize * size_of::<Transfer>())?;
                let transfers = records(body);
                Ok(Command::CreateTransfers { now, transfers })
            }
            TAG_EXPIRE_PENDING_TRANSFERS => {
                exact(0)?;
                Ok(Command::ExpirePendingTransfers { now })
            }
            TAG_CLAIM_EPOCH => {
                exact(0)?;
                if now != 0 || count != 0 {
                    return Err(CommandDecodeError::ReservedNotZero);
                }
                Ok(Command::ClaimEpoch)
            }
            TAG_RELEASE_CHANGE_EVENTS => {
                exact(8)?;
                let sequence_through = u64::from_le_bytes(body.try_into().expect("8 bytes"));
                Ok(Command::ReleaseChangeEvents { sequence_through })
            }
            TAG_DECIDE | TAG_APPLY | TAG_DONE => {
                if now != 0 || count != 0 {
                    return Err(CommandDecodeError::ReservedNotZero);
                }
                decode_txn_command(tag, body).map_err(CommandDecodeError::Malformed)
            }
            tag => Err(CommandDecodeError::UnknownTag(tag)),
        }
    }
}

fn decode_txn_command(tag: u8, body: &[u8]) -> Result<Command, &'static str> {
    let mut reader = Decoder::new(body);
    let command = match tag {
        TAG_DECIDE => {
            let decision = Decision::decode(&mut reader)?;
            if decision.parts.is_empty() {
                return Err("a decision without effects");
            }
            Command::Decide {
                decision: Arc::new(decision),
            }
        }
        TAG_APPLY => Command::Apply {
            decider: u32::try_from(reader.u64()?).map_err(|_| "decider beyond u32")?,
            txn: reader.u64()?,
            effects: Effects::decode(&mut reader)?,
        },
        _ => Command::Done { txn: reader.u64()? },
    };
    if !reader.is_done() {
        return Err("trailing bytes");
    }
    Ok(command)
}

fn encode_directory(kind: IdKind, command: &DirectoryCommand, out: &mut Vec<u8>) {
    let put_u32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    let put_u64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
    match command {
        DirectoryCommand::Claim {
            claimant,
            round,
            priority,
            ids,
        } => {
            assert!(ids.len() <= CLAIM_IDS_MAX);
            out.extend_from_slice(&[TAG_CLAIM, 0, 0, 0, 0, 0, 0, 0]);
            put_u64(out, 0);
            put_u32(out, ids.len() as u32);
            put_u32(out, 0);
            put_u32(out, u32::from(kind as u8));
            put_u32(out, *claimant);
            put_u64(out, *round);
            put_u64(out, *priority);
            out.extend_from_slice(ids.as_bytes());
        }
        DirectoryCommand::Settle {
            id,
            holder,
            holder_round,
            verdict,
            claimant,
            round,
        } => {
            let verdict = match verdict {
                Verdict::Holds => 1,
                Verdict::Lacks => 2,
                Verdict::NotYet => unreachable!("only final verdicts are logged"),
            };
            out.extend_from_slice(&[TAG_SETTLE, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&[0; 16]);
            put_u32(out, u32::from(kind as u8));
            put_u32(out, *holder);
            put_u32(out, *claimant);
            put_u32(out, verdict);
            put_u64(out, *holder_round);
            put_u64(out, *round);
            out.extend_from_slice(&id.to_le_bytes());
        }
        DirectoryCommand::Lease {
            holder,
            round,
            buckets,
        } => {
            assert!(buckets.len() <= usize::from(LEASE_BUCKETS));
            out.extend_from_slice(&[TAG_LEASE, 0, 0, 0, 0, 0, 0, 0]);
            put_u64(out, 0);
            put_u32(out, buckets.len() as u32);
            put_u32(out, 0);
            put_u32(out, u32::from(kind as u8));
            put_u32(out, *holder);
            put_u64(out, *round);
            out.extend_from_slice(buckets.as_bytes());
        }
    }
}

/// Decodes a `Claim` of `count` ids, a `Settle`, or a `Lease` of `count` buckets. What depends on the partition (that the
/// ids are homed here, that the partitions named exist) is checked by the node before it
/// proposes the entry, and asserted when it is applied.
fn decode_directory(tag: u8, count: u32, body: &[u8]) -> Result<Command, &'static str> {
    let size = match tag {
        TAG_CLAIM if count as usize > CLAIM_IDS_MAX => return Err("a claim of too many ids"),
        TAG_CLAIM => CLAIM_HEADER_SIZE + 16 * count as usize,
        TAG_LEASE if count == 0 || count > u32::from(LEASE_BUCKETS) => {
            return Err("a lease of no buckets or too many")
        }
        TAG_LEASE => LEASE_HEADER_SIZE + 2 * count as usize,
        _ if count != 0 => return Err("a settle with a count"),
        _ => SETTLE_SIZE,
    };
    if body.len() != size {
        return Err("directory entry length does not match");
    }
    let mut reader = Decoder::new(body);
    let kind = u8::try_from(reader.u32()?).ok().and_then(IdKind::from_u8);
    let kind = kind.ok_or("unknown id kind")?;
    let command = if tag == TAG_LEASE {
        let holder = reader.u32()?;
        let round = reader.u64()?;
        let buckets: Vec<u16> = reader.records_exact(count as usize)?;
        let ascending = buckets.windows(2).all(|pair| pair[0] < pair[1]);
        if !ascending || buckets.iter().any(|b| *b >= LEASE_BUCKETS) {
            return Err("lease buckets out of order or out of range");
        }
        DirectoryCommand::Lease {
            holder,
            round,
            buckets,
        }
    } else if tag == TAG_CLAIM {
        let claimant = reader.u32()?;
        let round = reader.u64()?;
        let priority = reader.u64()?;
        let ids: Vec<u128> = reader.records_exact(count as usize)?;
        if ids.contains(&0) {
            return Err("a claim of id 0");
        }
        DirectoryCommand::Claim {
            claimant,
            round,
            priority,
            ids,
        }
    } else {
        let (holder, claimant) = (reader.u32()?, reader.u32()?);
        let verdict = match reader.u32()? {
            1 => Verdict::Holds,
            2 => Verdict::Lacks,
            _ => return Err("a settle without a final verdict"),
        };
        if holder == claimant {
            return Err("a settle of a partition's own claim");
        }
        let (holder_round, round) = (reader.u64()?, reader.u64()?);
        let id = reader.u128()?;
        if id == 0 {
            return Err("a settle of id 0");
        }
        DirectoryCommand::Settle {
            id,
            holder,
            holder_round,
            verdict,
            claimant,
            round,
        }
    };
    Ok(Command::Directory {
        kind,
        command: Box::new(command),
    })
}

/// Decodes an `Answer`: a sealed request header, then `size` bytes of reply body.
fn decode_answer(now: u64, size: u32, body: &[u8]) -> Result<Command, CommandDecodeError> {
    let header_size = size_of::<RequestHeader>();
    if size as usize > kassa_wire::MESSAGE_BODY_SIZE_MAX {
        return Err(CommandDecodeError::FrameSize(size));
    }
    if body.len() != header_size + size as usize {
        return Err(CommandDecodeError::LengthMismatch);
    }
    let (header, reply) = body.split_at(header_size);
    let request = RequestHeader::read_from_bytes(header).expect("256 bytes");
    if !request.valid_checksum() || request.operation == Operation::Register.as_u8() {
        return Err(CommandDecodeError::Malformed(
            "an answer's request header is not sealed",
        ));
    }
    Ok(Command::Answer {
        now,
        request: Box::new(request),
        body: reply.to_vec(),
    })
}

/// Decodes a `SealedAnswer` or a `CatchUp`: a sealed request header, a reply, then `size`
/// bytes of reply body. The reply must be sealed over the body and answer that request
/// (client, number, checksum, operation, release); for a `CatchUp`, that request or the one
/// it names as its parent (the number before, with the reply's `context`).
fn decode_sealed_answer(tag: u8, size: u32, body: &[u8]) -> Result<Command, CommandDecodeError> {
    let (request_size, reply_size) = (size_of::<RequestHeader>(), size_of::<ReplyHeader>());
    if size as usize > kassa_wire::MESSAGE_BODY_SIZE_MAX {
        return Err(CommandDecodeError::FrameSize(size));
    }
    if body.len() != request_size + reply_size + size as usize {
        return Err(CommandDecodeError::LengthMismatch);
    }
    let (request, rest) = body.split_at(request_size);
    let (reply, reply_body) = rest.split_at(reply_size);
    let request = RequestHeader::read_from_bytes(request).expect("256 bytes");
    let reply = ReplyHeader::read_from_bytes(reply).expect("256 bytes");
    if !request.valid_checksum() || request.operation == Operation::Register.as_u8() {
        return Err(CommandDecodeError::Malformed(
            "a sealed answer's request header is not sealed",
        ));
    }
    let this_request = reply.request == request.request
        && reply.request_checksum == request.frame.checksum
        && reply.operation == request.operation;
    let parent = reply.request.checked_add(1) == Some(request.request)
        && reply.context == request.parent
        && reply.operation != Operation::Register.as_u8();
    // What the session's apply and its invariants rely on (`Sessions::check`): a reply of
    // this cluster, sized for its body, with an op at or above the session named.
    let answers = reply.frame.command == kassa_wire::Command::Reply.as_u8()
        && reply.frame.cluster == request.frame.cluster
        && reply.frame.size as usize == size_of::<ReplyHeader>() + reply_body.len()
        && reply.op >= request.session
        && reply.client == request.client
        && reply.frame.release == request.frame.release
        && reply.op == reply.commit
        && reply.op != 0
        && (this_request || (tag == TAG_CATCH_UP && parent));
    if !answers || !reply.valid_checksum() || !reply.valid_checksum_body(reply_body) {
        return Err(CommandDecodeError::Malformed(
            "a sealed answer's reply is not sealed to its request",
        ));
    }
    let (request, reply, body) = (Box::new(request), Box::new(reply), reply_body.to_vec());
    Ok(if tag == TAG_SEALED_ANSWER {
        Command::SealedAnswer {
            request,
            reply,
            body,
        }
    } else {
        Command::CatchUp {
            request,
            reply,
            body,
        }
    })
}

/// Appends a client frame command: the common header with the frame's size as its count,
/// then the frame.
fn encode_client(tag: u8, now: u64, request: &ClientRequest, out: &mut Vec<u8>) {
    let size = request.header().frame.size;
    assert_eq!(
        size as usize,
        size_of::<RequestHeader>() + request.body().len()
    );
    out.extend_from_slice(&[tag, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&now.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(request.header().as_bytes());
    out.extend_from_slice(request.body());
}

/// Decodes a client frame command's `body`, `size` bytes announced.
fn decode_client(tag: u8, now: u64, size: u32, body: &[u8]) -> Result<Command, CommandDecodeError> {
    let header_size = size_of::<RequestHeader>();
    if !(header_size..=MESSAGE_SIZE_MAX).contains(&(size as usize)) {
        return Err(CommandDecodeError::FrameSize(size));
    }
    if body.len() != size as usize {
        return Err(CommandDecodeError::LengthMismatch);
    }
    let (header, frame_body) = body.split_at(header_size);
    let header = RequestHeader::read_from_bytes(header).expect("256 bytes");
    let request = ClientRequest::new(header, frame_body.to_vec())?;
    let register = request.operation() == Operation::Register;
    match (tag, register) {
        (TAG_REGISTER, true) => Ok(Command::Register { now, request }),
        (TAG_REQUEST, false) => Ok(Command::Request { now, request }),
        (TAG_FOREIGN_REQUEST, false) => Ok(Command::ForeignRequest { now, request }),
        _ => Err(CommandDecodeError::OperationMismatch),
    }
}

/// Copies fixed-size records out of (possibly unaligned) bytes; the length is checked.
fn records<T: FromBytes + IntoBytes + Copy>(bytes: &[u8]) -> Vec<T> {
    let mut out = T::new_vec_zeroed(bytes.len() / size_of::<T>()).expect("batch-sized");
    out.as_mut_bytes().copy_from_slice(bytes);
    out
}

impl Ledger {
    /// Applies a command from the partition's log.
    pub fn apply(&mut self, command: Command) -> Reply {
        if let Some(holder) = self.holder() {
            if command.waits_for_intents() {
                let command = Box::new(command);
                return Reply::Held { holder, command };
            }
        }
        match command {
            Command::CreateAccounts { now, accounts } => {
                let mut results = Vec::with_capacity(accounts.len());
                self.create_accounts(now, &accounts, &mut results);
                Reply::CreateAccounts(results)
            }
            Command::CreateTransfers { now, transfers } => {
                let mut results = Vec::with_capacity(transfers.len());
                self.create_transfers(now, &transfers, &mut results);
                Reply::CreateTransfers(results)
            }
            Command::ExpirePendingTransfers { now } => {
                let expired = self.expire_pending_transfers(now) as u32;
                Reply::ExpirePendingTransfers { expired }
            }
            Command::ReleaseChangeEvents { sequence_through } => {
                self.release_change_events(sequence_through);
                Reply::ReleaseChangeEvents
            }
            Command::Decide { decision } => {
                let (txn, client_replies) = self.decide(decision);
                Reply::Decided {
                    txn,
                    client_replies,
                }
            }
            Command::Apply {
                decider,
                txn,
                effects,
            } => Reply::Applied {
                client_replies: self.apply_decided(decider, txn, &effects),
            },
            Command::Done { txn } => {
                self.done(txn);
                Reply::Done
            }
            Command::Answer { now, request, body } => {
                Reply::Client(self.apply_client_answer(now, &request, body))
            }
            Command::Register { now, request } | Command::Request { now, request } => {
                Reply::Client(self.apply_client_request(now, &request))
            }
            Command::ForeignRequest { now, request } => {
                Reply::Foreign(self.apply_foreign_request(now, &request))
            }
            Command::SealedAnswer {
                request,
                reply,
                body,
            } => Reply::Client(self.apply_sealed_answer(&request, *reply, body)),
            Command::CatchUp {
                request,
                reply,
                body,
            } => Reply::CaughtUp(self.sessions.catch_up(&request, *reply, body)),
            Command::ClaimEpoch => Reply::ClaimEpoch,
            Command::Directory { kind, command } => {
                let mut answers = Vec::new();
                self.homes.apply(kind, &command, &mut answers);
                Reply::Directory(answers)
            }
            Command::Rare(entry) => match *entry {
                RareEntry::Participant(command) => {
                    Reply::Participant(self.apply_participant(command))
                }
                RareEntry::Home(command) => Reply::Home(self.apply_home(&command)),
                RareEntry::WireStage {
                    txn,
                    participants,
                    reply,
                } => Reply::Home(self.apply_wire_stage(txn, participants, &reply)),
            },
        }
    }
}

impl Command {
    /// Whether the command reads or changes records, and so waits while an intent holds the
    /// partition (`intents`): batches, client requests, expiry pulses and the coordinator's
    /// entries. Sessions' bookkeeping, the directory and the rare path's own entries do not.
    pub fn waits_for_intents(&self) -> bool {
        match self {
            Command::CreateAccounts { .. }
            | Command::CreateTransfers { .. }
            | Command::ExpirePendingTransfers { .. }
            | Command::Decide { .. }
            | Command::Apply { .. }
            | Command::Request { .. }
            | Command::ForeignRequest { .. } => true,
            Command::ReleaseChangeEvents { .. }
            | Command::Done { .. }
            | Command::Answer { .. }
            | Command::Register { .. }
            | Command::SealedAnswer { .. }
            | Command::CatchUp { .. }
            | Command::ClaimEpoch
            | Command::Directory { .. }
            | Command::Rare(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_wire::{AccountId, TransferId};

    #[test]
    fn directory_entries_round_trip_and_bad_bytes_are_refused() {
        let claim = Command::Directory {
            kind: IdKind::Transfer,
            command: Box::new(DirectoryCommand::Claim {
                claimant: 3,
                round: (7 << 32) | 2,
                priority: 99,
                ids: vec![5, 1 << 100, u128::MAX],
            }),
        };
        let settle = Command::Directory {
            kind: IdKind::Account,
            command: Box::new(DirectoryCommand::Settle {
                id: 42,
                holder: 1,
                holder_round: 8,
                verdict: Verdict::Lacks,
                claimant: 2,
                round: 9,
            }),
        };
        let lease = Command::Directory {
            kind: IdKind::Transfer,
            command: Box::new(DirectoryCommand::Lease {
                holder: 4,
                round: 77,
                buckets: vec![0, 5, LEASE_BUCKETS - 1],
            }),
        };
        for command in [claim, settle, lease] {
            let mut bytes = Vec::new();
            command.encode(&mut bytes);
            assert_eq!(bytes.len(), command.encoded_len());
            assert_eq!(Command::decode(&bytes), Ok(command.clone()));
            for cut in [0, 23, 24, bytes.len() - 1] {
                assert!(Command::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert!(Command::decode(&extra).is_err());
            let mut kind = bytes.clone();
            kind[24] = 2;
            let refused = Command::decode(&kind);
            assert_eq!(
                refused,
                Err(CommandDecodeError::Malformed("unknown id kind"))
            );
            let mut now = bytes.clone();
            now[8] = 1;
            assert_eq!(
                Command::decode(&now),
                Err(CommandDecodeError::ReservedNotZero)
            );
        }
        let mut zero = Vec::new();
        let claim_zero = DirectoryCommand::Claim {
            claimant: 0,
            round: 1,
            priority: 1,
            ids: vec![0],
        };
        let kind = IdKind::Account;
        Command::Directory {
            kind,
            command: Box::new(claim_zero),
        }
        .encode(&mut zero);
        assert!(Command::decode(&zero).is_err(), "id 0 is never claimed");
        // Lease buckets out of order, repeated, out of range, or none: refused (ascending
        // ones read back).
        for buckets in [
            vec![1u16, 2],
            vec![3, 2],
            vec![4, 4],
            vec![LEASE_BUCKETS],
            vec![],
        ] {
            let mut bytes = Vec::new();
            let lease = DirectoryCommand::Lease {
                holder: 1,
                round: 2,
                buckets: vec![0],
            };
            Command::Directory {
                kind,
                command: Box::new(lease),
            }
            .encode(&mut bytes);
            bytes.truncate(bytes.len() - 2);
            bytes[16..20].copy_from_slice(&(buckets.len() as u32).to_le_bytes());
            bytes.extend_from_slice(buckets.as_bytes());
            let valid = buckets == [1, 2];
            assert_eq!(Command::decode(&bytes).is_ok(), valid, "{buckets:?}");
        }
        let mut too_many = vec![0u8; 24];
        too_many[0] = TAG_CLAIM;
        too_many[16..20].copy_from_slice(&(CLAIM_IDS_MAX as u32 + 1).to_le_bytes());
        assert!(Command::decode(&too_many).is_err());
        let mut not_yet = Vec::new();
        let settle = DirectoryCommand::Settle {
            id: 1,
            holder: 0,
            holder_round: 1,
            verdict: Verdict::Holds,
            claimant: 1,
            round: 1,
        };
        Command::Directory {
            kind,
            command: Box::new(settle),
        }
        .encode(&mut not_yet);
        let mut settle_zero = not_yet.clone();
        let id_at = settle_zero.len() - 16;
        settle_zero[id_at..].fill(0);
        assert_eq!(
            Command::decode(&settle_zero),
            Err(CommandDecodeError::Malformed("a settle of id 0"))
        );
        not_yet[24 + 12] = 3;
        assert!(Command::decode(&not_yet).is_err(), "only final verdicts");
    }

    #[test]
    fn commands_round_trip_and_bad_bytes_are_refused() {
        let account = Account {
            id: AccountId(7),
            ledger: 1,
            code: 1,
            ..Account::default()
        };
        let transfer = Transfer {
            id: TransferId(9),
            amount: 5,
            ..Transfer::default()
        };
        let commands = [
            Command::CreateAccounts {
                now: 11,
                accounts: vec![account; 3],
            },
            Command::CreateTransfers {
                now: 12,
                transfers: vec![transfer; 2],
            },
            Command::ExpirePendingTransfers { now: 13 },
            Command::ClaimEpoch,
            Command::ReleaseChangeEvents {
                sequence_through: 14,
            },
        ];
        for command in commands {
            let mut bytes = Vec::new();
            command.encode(&mut bytes);
            assert_eq!(Command::decode(&bytes), Ok(command.clone()));
            for cut in [0, 23, bytes.len() - 1] {
                assert!(Command::decode(&bytes[..cut]).is_err());
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert_eq!(
                Command::decode(&extra),
                Err(CommandDecodeError::LengthMismatch)
            );
            let mut reserved = bytes.clone();
            reserved[3] = 1;
            assert_eq!(
                Command::decode(&reserved),
                Err(CommandDecodeError::ReservedNotZero)
            );
        }
        let mut unknown = vec![0u8; 24];
        unknown[0] = 99;
        assert_eq!(
            Command::decode(&unknown),
            Err(CommandDecodeError::UnknownTag(99))
        );
        let mut late = Vec::new();
        Command::ExpirePendingTransfers { now: NOW_MAX + 1 }.encode(&mut late);
        let refused = Command::decode(&late);
        assert_eq!(refused, Err(CommandDecodeError::NowOutOfRange(NOW_MAX + 1)));
        let mut many = vec![0u8; 24];
        many[0] = TAG_CREATE_TRANSFERS;
        many[16..20].copy_from_slice(&9000u32.to_le_bytes());
        assert_eq!(
            Command::decode(&many),
            Err(CommandDecodeError::TooManyEvents(9000))
        );
    }
}
