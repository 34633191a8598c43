//! Wire requests run in a ledger's partition for a client whose session lives in another
//! partition (placement by ledger; `docs/transactions.md`, "Wire sessions under placement by
//! ledger").
//!
//! The session partition `S` keeps the session: it checks each request against it first (the
//! request number and the `parent` chain), and records the reply after (a `SealedAnswer`
//! entry, which caches it). In between, the ledger's partition `L` runs the request's batches
//! in one entry (`Command::ForeignRequest`), seals the reply with an op of its own (above the
//! client's session number, so the session's invariants hold wherever the reply is cached),
//! and keeps, per client, the latest request it ran there with its sealed reply. A copy of the
//! request that reaches `L` again gets that same reply instead of running twice:
//! - a retry after a crash between `L`'s entry and `S`'s answer (`S` does not know the
//!   request yet, so it passes `S`'s check again);
//! - two copies racing through `S`'s check before either was recorded.
//!
//! Since `L` keeps the sealed reply the client gets, `S` can learn it from `L` (the reply's
//! `context` is what the client's next request names as its `parent`).
//!
//! An entry is replaced by the client's next request run in `L`, and the least recently
//! used one goes when the table is full ([`FOREIGN_REQUESTS_MAX`]): a copy that arrives after
//! that is refused as older, or (evicted) would run again; its transfers' ids are then taken,
//! so nothing is applied twice, but its results would say `exists`. Entries restored from a
//! snapshot of format 6 or older have a body and no sealed reply (`S` sealed it then).

use std::collections::BTreeMap;

use kassa_wire::client_headers::{ReplyHeader, RequestHeader};
use kassa_wire::header::HeaderLayout;
use kassa_wire::{Command as WireCommand, HEADER_SIZE};
use zerocopy::{FromBytes, IntoBytes};

use crate::decoder::Decoder;
use crate::sessions::{DropReason, CLIENT_SESSIONS_MAX};
use crate::{seal_reply, ClientRequest, Ledger};

/// Most clients whose latest request a partition keeps.
pub const FOREIGN_REQUESTS_MAX: usize = CLIENT_SESSIONS_MAX;

/// What `L` answers a foreign request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForeignAnswer {
    /// The reply, sealed here: the request's results, run now or before.
    Sealed {
        reply: Box<ReplyHeader>,
        body: Vec<u8>,
    },
    /// The reply body of a request run before sealed replies were kept (an entry restored
    /// from a snapshot of format 6 or older): the session partition seals it.
    Body(Vec<u8>),
    /// Not run: older than the client's latest request run here, or its number with
    /// another checksum.
    Dropped(DropReason),
}

/// The reply a wire request run in shares commits with its round's stage, in its record
/// home's log (`RareEntry::WireStage`): the request, the clock it ran at and the reply's body.
/// Applying the stage seals the reply and keeps it here, as a foreign request's, so the
/// stage that commits the round also answers every copy of the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedReply {
    pub request: RequestHeader,
    pub now: u64,
    pub body: Vec<u8>,
}

/// One client's latest request run here.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    request: u32,
    checksum: u128,
    /// When it was last answered, in this table's own count (for eviction).
    used: u64,
    /// The reply sealed here; `None` only for an entry of a format 6 snapshot.
    reply: Option<ReplyHeader>,
    body: Vec<u8>,
}

impl Entry {
    fn answer(&self) -> ForeignAnswer {
        match self.reply {
            Some(reply) => ForeignAnswer::Sealed {
                reply: Box::new(reply),
                body: self.body.clone(),
            },
            None => ForeignAnswer::Body(self.body.clone()),
        }
    }
}

/// The latest foreign request per client; part of the ledger's state and snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForeignRequests {
    by_client: BTreeMap<u128, Entry>,
    used: u64,
}

impl ForeignRequests {
    /// Whether this partition ran the client's request `header` (or a later one) already:
    /// it is answered from here, whatever the ledger holds now.
    pub fn knows(&self, header: &RequestHeader) -> bool {
        (self.by_client.get(&header.client)).is_some_and(|entry| entry.request >= header.request)
    }

    /// The answer if `header` was run here before; `None` if it is new here.
    pub fn known(&self, header: &RequestHeader) -> Option<ForeignAnswer> {
        let entry = self.by_client.get(&header.client)?;
        if entry.request > header.request {
            Some(ForeignAnswer::Dropped(DropReason::OlderRequest))
        } else if entry.request < header.request {
            None
        } else if entry.checksum == header.frame.checksum {
            Some(entry.answer())
        } else {
            Some(ForeignAnswer::Dropped(DropReason::RequestCollision))
        }
    }

    /// The sealed reply to `client`'s latest request run here, if it was sealed here.
    pub fn latest_reply(&self, client: u128) -> Option<(&ReplyHeader, &[u8])> {
        let entry = self.by_client.get(&client)?;
        Some((entry.reply.as_ref()?, &entry.body))
    }

    fn record(&mut self, header: &RequestHeader, reply: ReplyHeader, body: Vec<u8>) {
        self.used += 1;
        if !self.by_client.contains_key(&header.client)
            && self.by_client.len() == FOREIGN_REQUESTS_MAX
        {
            let oldest = (self.by_client.iter())
                .min_by_key(|(_, entry)| entry.used)
                .map(|(client, _)| *client);
            self.by_client
                .remove(&oldest.expect("a full table has entries"));
        }
        let entry = Entry {
            request: header.request,
            checksum: header.frame.checksum,
            used: self.used,
            reply: Some(reply),
            body,
        };
        self.by_client.insert(header.client, entry);
    }

    /// Appends the table: `used u64 | count u64 | count × (client u128, request u32,
    /// reserved u32, checksum u128, used u64, body size u64, body, sealed u64 (0 or 1),
    /// the 256-byte reply header if sealed)`, in client order.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.used.to_le_bytes());
        out.extend_from_slice(&(self.by_client.len() as u64).to_le_bytes());
        for (client, entry) in &self.by_client {
            out.extend_from_slice(&client.to_le_bytes());
            out.extend_from_slice(&entry.request.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&entry.checksum.to_le_bytes());
            out.extend_from_slice(&entry.used.to_le_bytes());
            out.extend_from_slice(&(entry.body.len() as u64).to_le_bytes());
            out.extend_from_slice(&entry.body);
            match &entry.reply {
                Some(reply) => {
                    out.extend_from_slice(&1u64.to_le_bytes());
                    out.extend_from_slice(reply.as_bytes());
                }
                None => out.extend_from_slice(&0u64.to_le_bytes()),
            }
        }
    }

    /// Reads what [`ForeignRequests::encode`] wrote; the bytes read. `sealed`: written with
    /// the sealed replies (snapshot format 7 on).
    pub(crate) fn decode(
        bytes: &[u8],
        sealed: bool,
    ) -> Result<(ForeignRequests, usize), &'static str> {
        let mut reader = Decoder::new(bytes);
        let mut table = ForeignRequests {
            used: reader.u64()?,
            ..ForeignRequests::default()
        };
        let count = reader.count(64)?;
        if count > FOREIGN_REQUESTS_MAX {
            return Err("more foreign requests than the table holds");
        }
        for _ in 0..count {
            let client = reader.u128()?;
            let request = reader.u32()?;
            if reader.u32()? != 0 {
                return Err("a foreign request's reserved bytes are not zero");
            }
            let checksum = reader.u128()?;
            let used = reader.u64()?;
            let size = reader.u64()?;
            if size > crate::sessions::BATCH_SIZE_LIMIT as u64 {
                return Err("a foreign request's reply is larger than a message");
            }
            let body = reader.take(size as usize)?.to_vec();
            // Entries restored from format 6 have no sealed reply, and keep none when written
            // again in format 7 (flag 0).
            let flag = if sealed { reader.u64()? } else { 0 };
            let reply = match flag {
                0 => None,
                1 => {
                    let bytes = reader.take(HEADER_SIZE)?;
                    let reply = ReplyHeader::read_from_bytes(bytes).expect("256 bytes");
                    let matches = reply.client == client
                        && reply.request == request
                        && reply.request_checksum == checksum
                        && reply.op == reply.commit
                        && reply.op != 0
                        && reply.frame.command == WireCommand::Reply.as_u8()
                        && reply.frame.size as usize == HEADER_SIZE + body.len();
                    if !matches || !reply.valid_checksum() || !reply.valid_checksum_body(&body) {
                        return Err("a foreign request's reply is not its own or not sealed");
                    }
                    Some(reply)
                }
                _ => return Err("a foreign request's sealed flag is neither 0 nor 1"),
            };
            if used == 0 || used > table.used {
                return Err("a foreign request used after the table's count");
            }
            if table
                .by_client
                .last_key_value()
                .is_some_and(|(last, _)| *last >= client)
            {
                return Err("foreign requests not in client order");
            }
            let entry = Entry {
                request,
                checksum,
                used,
                reply,
                body,
            };
            table.by_client.insert(client, entry);
        }
        Ok((table, reader.offset))
    }
}

impl Ledger {
    /// Runs a wire request whose session lives in another partition, once per request, and
    /// seals its reply here: a copy that was run here before gets the same reply (see the
    /// module).
    pub(crate) fn apply_foreign_request(
        &mut self,
        now: u64,
        request: &ClientRequest,
    ) -> ForeignAnswer {
        let header = request.header();
        if let Some(known) = self.foreign.known(header) {
            return known;
        }
        let body = self.execute_batches(now, request.operation(), request.body());
        let op = self.sessions.take_foreign_op(header.session);
        let reply = seal_reply(header, op, self.timestamp, now, &body);
        self.foreign.record(header, reply, body.clone());
        ForeignAnswer::Sealed {
            reply: Box::new(reply),
            body,
        }
    }

    /// Records the reply a wire round's stage commits here, its record home (`StagedReply`):
    /// sealed here, as [`Ledger::apply_foreign_request`] seals one, so a copy of the request
    /// that reaches this partition gets it. A stage appended again finds it known already.
    /// The stage is not admitted through the partition's transaction lock, so it seals with
    /// an op it does not take (`Sessions::foreign_op_unlocked`).
    pub(crate) fn record_staged_reply(&mut self, staged: &StagedReply) {
        let header = &staged.request;
        if self.foreign.known(header).is_some() {
            return;
        }
        let op = self.sessions.foreign_op_unlocked(header.session);
        let reply = seal_reply(header, op, self.timestamp, staged.now, &staged.body);
        self.foreign.record(header, reply, staged.body.clone());
    }

    /// The foreign requests this partition ran.
    pub fn foreign_requests(&self) -> &ForeignRequests {
        &self.foreign
    }
}
