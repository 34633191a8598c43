//! Client sessions of the wire protocol (TigerBeetle's `client_sessions.zig` and the session
//! checks of `replica.zig`'s `ignore_request_message_duplicate`), kept in the replicated state
//! so that they survive restarts and, later, failover.
//!
//! A [`ClientRequest`] is a client's request frame as it goes through the log: header and
//! body, validated again whenever one is built (so a damaged log entry is a typed error, never
//! a panic). Applying a `register` creates the client's session; applying a request checks it
//! against the session ([`Sessions::admit`]), runs it, and stores its reply — header and body —
//! as the session's cached reply in the same state change, so that a retry of a finished
//! request gets the same reply again and is never applied twice.
//!
//! Numbers: each applied register or request takes the next *op* of this table (1, 2, 3, …;
//! it is in the snapshot, so it never goes back). A reply's `op` and `commit` are that op; a
//! session's number is the op of its register. TigerBeetle's clients only need the session
//! number to be non-zero and the same on every reply; TigerBeetle itself uses its log's op
//! number, which increases the same way.
//!
//! Invariants (checked by [`Sessions::check`], after every restore): at most
//! [`CLIENT_SESSIONS_MAX`] sessions; every cached reply is a sealed reply header (valid
//! checksums over itself and its body) to its own client, with `op == commit`, `0 < session <=
//! op <= ` the table's op. A reply sealed here takes the next op; one sealed by the partition
//! that ran the request (placement by ledger, `foreign_requests`) has that partition's op, so
//! two sessions' cached replies may share an op. When a register finds the table full, the session
//! whose latest reply is oldest is evicted (TigerBeetle's choice too); its client is then told
//! `no_session`.
//!
//! Callers: `Ledger::apply` (commands `Register` and `Request`), the node's wire port (which
//! asks [`Sessions::answer_known`] before proposing, so retries cost no log entry), snapshots.

use std::collections::BTreeMap;

use kassa_wire::client_headers::{EvictionReason, ReplyHeader, RequestHeader};
use kassa_wire::header::HeaderLayout;
use kassa_wire::multi_batch::MultiBatch;
use kassa_wire::{
    validate_client_frame, validate_request, ClientFrame, Command as WireCommand, FrameError,
    Operation, RequestError, HEADER_SIZE, MESSAGE_BODY_SIZE_MAX,
};
use zerocopy::{FromBytes, IntoBytes};

use crate::SnapshotError;

/// Most sessions one partition keeps. TigerBeetle's production configuration keeps 64 per
/// cluster; a Kassa node serves more clients. Each session caches its last reply (usually a
/// few KiB; at most one message), so the table's worst case is `CLIENT_SESSIONS_MAX` MiB.
pub const CLIENT_SESSIONS_MAX: usize = 1024;
/// The request body limit announced to every client at registration: a whole message.
pub const BATCH_SIZE_LIMIT: u32 = MESSAGE_BODY_SIZE_MAX as u32;

const _: () = assert!(BATCH_SIZE_LIMIT as usize >= kassa_wire::BATCH_SIZE_LIMIT_MIN);

/// Why bytes are not a client request that may enter the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientRequestError {
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("request: {0}")]
    Request(#[from] RequestError),
    #[error("the frame is a ping, not a request")]
    NotARequest,
}

/// A client's request frame, validated as the wire port validates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// Boxed: a command stays small (its variants are moved through queues).
    header: Box<RequestHeader>,
    body: Vec<u8>,
    operation: Operation,
}

impl ClientRequest {
    /// Checks `header` and `body` with the wire codec (checksums, fields, operation, body
    /// layout against [`BATCH_SIZE_LIMIT`]). Never panics.
    pub fn new(header: RequestHeader, body: Vec<u8>) -> Result<ClientRequest, ClientRequestError> {
        let cluster = header.frame.cluster;
        let ClientFrame::Request(header) =
            validate_client_frame(header.as_bytes(), &body, cluster)?
        else {
            return Err(ClientRequestError::NotARequest);
        };
        let (operation, _) = validate_request(&header, &body, BATCH_SIZE_LIMIT as usize)?;
        Ok(ClientRequest {
            header: Box::new(header),
            body,
            operation,
        })
    }

    pub fn header(&self) -> &RequestHeader {
        &self.header
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The records of the request's body, its batches' in order, read one at a time (nothing
    /// is copied but the record being read): a create request's events, a lookup's ids.
    /// `T` must be the operation's event type.
    pub fn records<T: FromBytes>(&self) -> impl Iterator<Item = T> + '_ {
        let operation = self.operation;
        assert_eq!(size_of::<T>(), operation.event_size());
        let event_max = if operation.is_batchable() {
            operation.event_max(BATCH_SIZE_LIMIT as usize)
        } else {
            1
        };
        let decoded = MultiBatch::decode(&self.body, operation.event_size(), event_max);
        let decoded = decoded.expect("the body was validated when the request was built");
        decoded.batches().flat_map(|batch| {
            (batch.chunks_exact(size_of::<T>()))
                .map(|record| T::read_from_bytes(record).expect("a record's size"))
        })
    }
}

/// Why a request is dropped without an answer (the client retries, or it is a client bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Older than the session's latest request: its reply was sent already.
    OlderRequest,
    /// The session's latest request number with a different checksum (a client bug).
    RequestCollision,
    /// More than one ahead of the session's latest request (a client bug).
    NewerRequest,
    /// The next request, but its `parent` is not the latest reply's `context` (a client bug).
    ParentMismatch,
    /// A session number this table never gave the client (a client bug).
    NewerSession,
}

/// What applying (or pre-checking) a client request answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientReply {
    /// Send this reply (fresh, or the cached one again).
    Reply {
        header: Box<ReplyHeader>,
        body: Vec<u8>,
    },
    /// Send nothing.
    Dropped(DropReason),
    /// Send an eviction with this reason.
    Evicted(EvictionReason),
}

/// One client's session and its cached reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The op of the register that created it; non-zero.
    pub session: u64,
    reply: ReplyHeader,
    reply_body: Vec<u8>,
}

impl Session {
    /// The latest reply, header and body.
    pub fn cached_reply(&self) -> ClientReply {
        ClientReply::Reply {
            header: Box::new(self.reply),
            body: self.reply_body.clone(),
        }
    }

    pub fn reply_header(&self) -> &ReplyHeader {
        &self.reply
    }
}

/// How a request stands against the session table.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<'a> {
    /// Run it.
    New,
    /// A retry of the latest request: answer with its cached reply.
    Repeat(&'a Session),
    Drop(DropReason),
    Evict(EvictionReason),
}

/// The session table of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    /// The last op given to an applied register or request; 0 before the first.
    op: u64,
    /// Keyed by client id: iteration (and so the snapshot) is in a defined order.
    by_client: BTreeMap<u128, Session>,
}

impl Sessions {
    /// The last op given out; a session number above it was never given.
    pub fn op(&self) -> u64 {
        self.op
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    pub fn get(&self, client: u128) -> Option<&Session> {
        self.by_client.get(&client)
    }

    /// Checks `header` against its client's session, in TigerBeetle's order.
    pub fn admit(&self, header: &RequestHeader) -> Admission<'_> {
        let register = header.operation == Operation::Register.as_u8();
        let Some(entry) = self.by_client.get(&header.client) else {
            if register {
                return Admission::New;
            }
            return Admission::Evict(EvictionReason::NoSession);
        };
        if !register && entry.session > header.session {
            return Admission::Evict(EvictionReason::SessionTooLow);
        }
        if !register && entry.session < header.session {
            return Admission::Drop(DropReason::NewerSession);
        }
        if entry.reply.frame.release != header.frame.release {
            return Admission::Evict(EvictionReason::SessionReleaseMismatch);
        }
        let latest = entry.reply.request;
        if header.request < latest {
            Admission::Drop(DropReason::OlderRequest)
        } else if header.request == latest {
            if header.frame.checksum == entry.reply.request_checksum {
                Admission::Repeat(entry)
            } else {
                Admission::Drop(DropReason::RequestCollision)
            }
        } else if header.request == latest + 1 {
            if header.parent == entry.reply.context {
                Admission::New
            } else {
                Admission::Drop(DropReason::ParentMismatch)
            }
        } else {
            Admission::Drop(DropReason::NewerRequest)
        }
    }

    /// The answer to `header` that needs no log entry: a cached reply, a drop or an eviction.
    /// `None` when the request is new and must go through the log (where [`Self::admit`] runs
    /// again, so two copies racing through the log apply once).
    pub fn answer_known(&self, header: &RequestHeader) -> Option<ClientReply> {
        match self.admit(header) {
            Admission::New => None,
            Admission::Repeat(session) => Some(session.cached_reply()),
            Admission::Drop(reason) => Some(ClientReply::Dropped(reason)),
            Admission::Evict(reason) => Some(ClientReply::Evicted(reason)),
        }
    }

    /// Whether a ping carrying `session` from `client` names a session that existed and is
    /// gone (TigerBeetle's `ignore_ping_client`): answered with eviction `no_session`.
    pub fn ping_session_evicted(&self, client: u128, session: u64) -> bool {
        session != 0 && session <= self.op && !self.by_client.contains_key(&client)
    }

    /// The op the next applied request takes.
    pub(crate) fn op_next(&self) -> u64 {
        self.op.checked_add(1).expect("u64 ops do not run out")
    }

    /// Takes an op for a reply sealed here to a request whose session lives in another
    /// partition (`foreign_requests`): above this table's ops and above `session`, so that
    /// the reply keeps the session's invariants in the table that caches it.
    pub(crate) fn take_foreign_op(&mut self, session: u64) -> u64 {
        // A session number near u64::MAX (a client's claim, not checked against anything
        // here) saturates: the op is then the session number itself, still at or above it.
        self.op = self.op.max(session).saturating_add(1);
        self.op
    }

    /// The op for a reply sealed here by an entry that may apply while a coordinator's
    /// transaction holds the partition (a wire round's stage, `record_staged_reply`): the op
    /// [`Self::take_foreign_op`] would take, without taking it. The coordinator seals its
    /// replies from the op it read under its lock, so nothing outside the lock may move it.
    pub(crate) fn foreign_op_unlocked(&self, session: u64) -> u64 {
        self.op.max(session).saturating_add(1)
    }

    /// Records `reply`, sealed by the partition that ran the request (its op is that
    /// partition's), as its client's latest: the request was admitted as new
    /// ([`Self::admit`]).
    pub(crate) fn record_sealed(&mut self, reply: ReplyHeader, body: Vec<u8>) {
        assert!(reply.valid_checksum() && reply.valid_checksum_body(&body));
        assert!(reply.operation != Operation::Register.as_u8());
        let session = self.by_client.get_mut(&reply.client);
        let session = session.expect("an admitted request has a session");
        assert_eq!(session.reply.request + 1, reply.request);
        assert!(reply.op == reply.commit && reply.op >= session.session);
        session.reply = reply;
        session.reply_body = body;
        self.op = self.op.max(reply.op);
    }

    /// Moves `request`'s session to `reply`, sealed by the partition that ran the request
    /// `request` names as its parent (or `request` itself, retried), when the session has not
    /// recorded it (its `SealedAnswer`s were lost in a crash, or are still in flight): the
    /// replies in between are skipped, since the client has moved past them. True if moved.
    ///
    /// The reply was given to this client in this session: its `context` is the `parent` the
    /// client names (or its request checksum is the request's), and `request` names the
    /// session (a command decodes only with such a pair: `Command::CatchUp`).
    pub(crate) fn catch_up(
        &mut self,
        request: &RequestHeader,
        reply: ReplyHeader,
        body: Vec<u8>,
    ) -> bool {
        assert!(reply.valid_checksum() && reply.valid_checksum_body(&body));
        assert_eq!(reply.client, request.client);
        let Some(session) = self.by_client.get_mut(&request.client) else {
            return false;
        };
        let behind = session.session == request.session
            && session.reply.frame.release == request.frame.release
            && session.reply.request < reply.request
            && session.session <= reply.op;
        if !behind {
            return false;
        }
        session.reply = reply;
        session.reply_body = body;
        self.op = self.op.max(reply.op);
        true
    }

    /// Records `reply` (whose op is [`Self::op_next`]) as its client's latest, creating the
    /// session for a register (evicting the least recently answered one when full).
    pub(crate) fn record(&mut self, reply: ReplyHeader, body: Vec<u8>) {
        let op = self.op_next();
        assert_eq!(reply.op, op);
        assert!(reply.valid_checksum_body(&body));
        self.op = op;
        if reply.operation == Operation::Register.as_u8() {
            assert!(!self.by_client.contains_key(&reply.client));
            if self.by_client.len() == CLIENT_SESSIONS_MAX {
                self.evict_least_recent();
            }
            let session = Session {
                session: op,
                reply,
                reply_body: body,
            };
            self.by_client.insert(reply.client, session);
        } else {
            let session = self.by_client.get_mut(&reply.client);
            let session = session.expect("a request runs only in an existing session");
            assert_eq!(session.reply.request + 1, reply.request);
            session.reply = reply;
            session.reply_body = body;
        }
        assert!(self.by_client.len() <= CLIENT_SESSIONS_MAX);
    }

    fn evict_least_recent(&mut self) {
        let oldest = self.by_client.iter().min_by_key(|(_, s)| s.reply.op);
        let client = *oldest.expect("the table is full").0;
        self.by_client.remove(&client);
    }

    /// Checks every invariant of the table; the first violation found is the error.
    pub fn check(&self) -> Result<(), String> {
        if self.by_client.len() > CLIENT_SESSIONS_MAX {
            return Err(format!("{} sessions", self.by_client.len()));
        }
        for (client, session) in &self.by_client {
            let reply = &session.reply;
            let sealed = reply.valid_checksum() && reply.valid_checksum_body(&session.reply_body);
            if !sealed || reply.frame.command != WireCommand::Reply.as_u8() {
                return Err(format!("client {client}: the cached reply is not sealed"));
            }
            if reply.frame.size as usize != HEADER_SIZE + session.reply_body.len() {
                return Err(format!("client {client}: cached reply size"));
            }
            if *client == 0 || reply.client != *client {
                return Err(format!("client {client}: reply to client {}", reply.client));
            }
            let numbers_ok = reply.op == reply.commit
                && session.session > 0
                && session.session <= reply.op
                && reply.op <= self.op;
            if !numbers_ok {
                return Err(format!(
                    "client {client}: session {}, op {}, commit {}, table op {}",
                    session.session, reply.op, reply.commit, self.op
                ));
            }
        }
        Ok(())
    }

    /// Appends the table: `op u64 | count u64 | count × (session u64 | body size u64 |
    /// reply header 256 | body)`, in client order.
    pub(crate) fn snapshot(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.op.to_le_bytes());
        out.extend_from_slice(&(self.by_client.len() as u64).to_le_bytes());
        for session in self.by_client.values() {
            out.extend_from_slice(&session.session.to_le_bytes());
            out.extend_from_slice(&(session.reply_body.len() as u64).to_le_bytes());
            out.extend_from_slice(session.reply.as_bytes());
            out.extend_from_slice(&session.reply_body);
        }
    }

    /// Reads a table written by [`Self::snapshot`] from the front of `bytes`; returns it and
    /// the bytes it used. Checks every invariant. Never panics.
    pub(crate) fn restore(bytes: &[u8]) -> Result<(Sessions, usize), SnapshotError> {
        let mut offset: usize = 0;
        let mut take = |size: usize| -> Result<&[u8], SnapshotError> {
            let end = offset.checked_add(size);
            let slice = end.and_then(|end| bytes.get(offset..end));
            let slice = slice.ok_or(SnapshotError::Malformed {
                offset,
                what: "truncated session table",
            })?;
            offset += size;
            Ok(slice)
        };
        let u64_of = |slice: &[u8]| u64::from_le_bytes(slice.try_into().expect("8 bytes"));
        let op = u64_of(take(8)?);
        let count = u64_of(take(8)?);
        if count > CLIENT_SESSIONS_MAX as u64 {
            return Err(SnapshotError::Inconsistent(format!("{count} sessions")));
        }
        let mut sessions = Sessions {
            op,
            by_client: BTreeMap::new(),
        };
        for _ in 0..count {
            let session = u64_of(take(8)?);
            let body_size = u64_of(take(8)?);
            if body_size > MESSAGE_BODY_SIZE_MAX as u64 {
                return Err(SnapshotError::Inconsistent("cached reply too large".into()));
            }
            let reply = ReplyHeader::read_from_bytes(take(HEADER_SIZE)?).expect("256 bytes");
            let reply_body = take(body_size as usize)?.to_vec();
            let entry = Session {
                session,
                reply,
                reply_body,
            };
            if sessions.by_client.insert(reply.client, entry).is_some() {
                return Err(SnapshotError::Inconsistent("duplicate session".into()));
            }
        }
        sessions.check().map_err(SnapshotError::Inconsistent)?;
        Ok((sessions, offset))
    }
}
