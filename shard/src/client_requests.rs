//! Applying a client's `register` or request from the log: check it against the session table,
//! run the operation batch by batch, encode the multi-batch reply, and cache the reply in the
//! session — all in one state change, so a retried request is answered, never applied twice.
//!
//! Each batch of a multi-batch body runs as its own `create_*` call (with its own timestamps)
//! or read, exactly as separate calls would; results come back in batch order. A reply's
//! timestamp is the ledger's clock after the request (never zero), its `op` and `commit` the
//! session table's next op. Replies are built in view 0 by replica 0, as a single-node
//! cluster's; the node resends them in its current view.
//!
//! Invariant: a request whose body passed `ClientRequest::new` never fails here: the body
//! holds whole events, at most `event_max` per batch, and every reply fits one message (the
//! wire codec checked both); a failure to encode would be a bug and panics.

use std::borrow::Cow;

use kassa_wire::client_headers::RequestHeader;
use kassa_wire::multi_batch::{encode_to_vec, MultiBatch};
use kassa_wire::{
    build_reply, Account, AccountFilter, AccountId, Operation, QueryFilter, RegisterResult,
    ReplyFields, ReplyHeader, Transfer, TransferId,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::sessions::{Admission, ClientReply, ClientRequest, BATCH_SIZE_LIMIT};
use crate::Ledger;

/// The reply header a partition seals for a new request it answers with `body` at `now`: op
/// `op` (its session table's next), timestamp its clock `clock` or `now`, whichever is later.
/// The coordinator seals a cross-partition transaction's replies with it ahead of the session
/// partitions, from what they read under the transaction's locks (`ReadSet`).
pub fn seal_reply(
    request: &RequestHeader,
    op: u64,
    clock: u64,
    now: u64,
    body: &[u8],
) -> ReplyHeader {
    let fields = ReplyFields {
        view: 0,
        replica: 0,
        commit: op,
        timestamp: clock.max(now).max(1),
    };
    build_reply(request, fields, body)
}

impl Ledger {
    /// Applies a client's register or request at `now`.
    pub(crate) fn apply_client_request(
        &mut self,
        now: u64,
        request: &ClientRequest,
    ) -> ClientReply {
        match self.sessions.admit(request.header()) {
            Admission::New => {}
            Admission::Repeat(session) => return session.cached_reply(),
            Admission::Drop(reason) => return ClientReply::Dropped(reason),
            Admission::Evict(reason) => return ClientReply::Evicted(reason),
        }
        let body = match request.operation() {
            Operation::Register => RegisterResult::new(BATCH_SIZE_LIMIT).as_bytes().to_vec(),
            operation => self.execute_batches(now, operation, request.body()),
        };
        self.answer_new(now, request.header(), body)
    }

    /// Answers a client's request with a reply `body` computed elsewhere (with more than one
    /// partition, the request's records live in other partitions): checked against the session
    /// like any request; if new, the body becomes the session's cached reply.
    pub(crate) fn apply_client_answer(
        &mut self,
        now: u64,
        request: &RequestHeader,
        body: Vec<u8>,
    ) -> ClientReply {
        match self.sessions.admit(request) {
            Admission::New => self.answer_new(now, request, body),
            Admission::Repeat(session) => session.cached_reply(),
            Admission::Drop(reason) => ClientReply::Dropped(reason),
            Admission::Evict(reason) => ClientReply::Evicted(reason),
        }
    }

    /// Answers a client's request with the `reply` another partition sealed to it (it ran the
    /// request: placement by ledger): checked against the session like any request; if new,
    /// the reply is cached as it is (the client gets exactly that one).
    pub(crate) fn apply_sealed_answer(
        &mut self,
        request: &RequestHeader,
        reply: ReplyHeader,
        body: Vec<u8>,
    ) -> ClientReply {
        if let Some(known) = self.sessions.answer_known(request) {
            return known;
        }
        self.sessions.record_sealed(reply, body.clone());
        ClientReply::Reply {
            header: Box::new(reply),
            body,
        }
    }

    /// Seals the reply to an admitted request and caches it in its session.
    fn answer_new(&mut self, now: u64, request: &RequestHeader, body: Vec<u8>) -> ClientReply {
        let op = self.sessions.op_next();
        let header = seal_reply(request, op, self.timestamp, now, &body);
        self.sessions.record(header, body.clone());
        ClientReply::Reply {
            header: Box::new(header),
            body,
        }
    }

    /// Runs every batch of a validated multi-batch body; returns the multi-batch reply body.
    pub(crate) fn execute_batches(
        &mut self,
        now: u64,
        operation: Operation,
        body: &[u8],
    ) -> Vec<u8> {
        let event_max = if operation.is_batchable() {
            operation.event_max(BATCH_SIZE_LIMIT as usize)
        } else {
            1
        };
        let batches = MultiBatch::decode(body, operation.event_size(), event_max);
        let batches = batches.expect("the body was validated when the request was built");
        let results: Vec<Vec<u8>> = batches
            .batches()
            .map(|batch| self.execute_batch(now, operation, batch))
            .collect();
        let slices: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
        let reply = encode_to_vec(operation.result_size(), &slices);
        let reply = reply.expect("validated requests have replies that fit one message");
        assert!(reply.len() <= BATCH_SIZE_LIMIT as usize);
        reply
    }

    /// Runs one batch; returns its results' bytes.
    fn execute_batch(&mut self, now: u64, operation: Operation, batch: &[u8]) -> Vec<u8> {
        match operation {
            Operation::Register => unreachable!("register has no batches"),
            Operation::CreateAccounts => {
                let mut results = Vec::new();
                self.create_accounts(now, &records::<Account>(batch), &mut results);
                results.as_bytes().to_vec()
            }
            Operation::CreateTransfers => {
                let mut results = Vec::new();
                self.create_transfers(now, &records::<Transfer>(batch), &mut results);
                results.as_bytes().to_vec()
            }
            Operation::LookupAccounts => {
                let mut found = Vec::new();
                self.lookup_accounts(&records::<AccountId>(batch), &mut found);
                found.as_bytes().to_vec()
            }
            Operation::LookupTransfers => {
                let mut found = Vec::new();
                crate::cold::applied(
                    self.lookup_transfers(&records::<TransferId>(batch), &mut found),
                );
                found.as_bytes().to_vec()
            }
            Operation::GetAccountTransfers => {
                let mut found = Vec::new();
                crate::cold::applied(
                    self.get_account_transfers(&one::<AccountFilter>(batch), &mut found),
                );
                found.as_bytes().to_vec()
            }
            Operation::GetAccountBalances => {
                let mut found = Vec::new();
                crate::cold::applied(
                    self.get_account_balances(&one::<AccountFilter>(batch), &mut found),
                );
                found.as_bytes().to_vec()
            }
            Operation::QueryAccounts => {
                let mut found = Vec::new();
                self.query_accounts(&one::<QueryFilter>(batch), &mut found);
                found.as_bytes().to_vec()
            }
            Operation::QueryTransfers => {
                let mut found = Vec::new();
                crate::cold::applied(self.query_transfers(&one::<QueryFilter>(batch), &mut found));
                found.as_bytes().to_vec()
            }
        }
    }
}

/// A batch's records, from bytes whose length was validated.
fn records<T>(batch: &[u8]) -> Cow<'_, [T]>
where
    T: FromBytes + IntoBytes + Immutable + KnownLayout + Copy,
{
    assert_eq!(batch.len() % size_of::<T>(), 0);
    // A request's body comes from the allocator, aligned to 16 bytes, and a batch starts at a
    // multiple of its records' size: read in place, without a copy of a megabyte (and the
    // fresh pages it would fault in). Any other bytes are copied out.
    if let Ok(records) = <[T]>::ref_from_bytes(batch) {
        return Cow::Borrowed(records);
    }
    let mut out = T::new_vec_zeroed(batch.len() / size_of::<T>()).expect("batch-sized");
    out.as_mut_bytes().copy_from_slice(batch);
    Cow::Owned(out)
}

/// The one filter of a query batch (validated: exactly one).
fn one<T: FromBytes>(batch: &[u8]) -> T {
    T::read_from_bytes(batch).expect("a query batch holds exactly one filter")
}

#[cfg(test)]
mod tests {
    use kassa_wire::client_headers::EvictionReason;
    use kassa_wire::header::{HeaderLayout, Release};
    use kassa_wire::{check_reply_to, RegisterRequest, ReplyHeader, RequestHeader};

    use crate::sessions::{DropReason, CLIENT_SESSIONS_MAX};
    use crate::{
        ClientReply, ClientRequest, Command, CommandDecodeError, ForeignAnswer, Ledger, Reply,
    };

    use super::*;

    const CLUSTER: u128 = 0;

    #[test]
    fn a_batch_is_read_in_place_when_aligned_and_copied_out_when_not() {
        let transfers: Vec<Transfer> = (1..=3u128)
            .map(|id| Transfer {
                id: TransferId(id),
                amount: id * 10,
                ..Transfer::default()
            })
            .collect();
        let aligned = transfers.as_bytes();
        let read = records::<Transfer>(aligned);
        assert!(matches!(read, Cow::Borrowed(_)), "no copy");
        assert_eq!(read.as_ref(), transfers.as_slice());
        // The same bytes off their alignment.
        let mut shifted = vec![0u8; aligned.len() + 2];
        let skip = if (shifted.as_ptr() as usize + 1) % align_of::<Transfer>() == 0 {
            2
        } else {
            1
        };
        shifted[skip..skip + aligned.len()].copy_from_slice(aligned);
        let read = records::<Transfer>(&shifted[skip..skip + aligned.len()]);
        assert!(matches!(read, Cow::Owned(_)), "copied out");
        assert_eq!(read.as_ref(), transfers.as_slice());
    }

    const RELEASE: Release = Release::new(0, 17, 8);
    const NOW: u64 = 1_700_000_000_000_000_000;

    /// A client as TigerBeetle's: register, then requests 1, 2, … chained by `parent`.
    struct Client {
        id: u128,
        session: u64,
        request: u32,
        parent: u128,
    }

    impl Client {
        fn new(id: u128) -> Client {
            Client {
                id,
                session: 0,
                request: 0,
                parent: 0,
            }
        }

        fn register(&self) -> ClientRequest {
            let mut header = RequestHeader::new(CLUSTER, self.id, RELEASE, 2);
            let body = RegisterRequest::new().as_bytes().to_vec();
            header.frame.size = (256 + body.len()) as u32;
            header.seal(&body);
            ClientRequest::new(header, body).expect("valid register")
        }

        fn request(&self, operation: Operation, batches: &[&[u8]]) -> ClientRequest {
            let body = encode_to_vec(operation.event_size(), batches).expect("encodes");
            let mut header = RequestHeader::new(CLUSTER, self.id, RELEASE, operation.as_u8());
            header.session = self.session;
            header.request = self.request + 1;
            header.parent = self.parent;
            header.frame.size = (256 + body.len()) as u32;
            header.seal(&body);
            ClientRequest::new(header, body).expect("valid request")
        }

        /// Registers a throwaway copy of this client.
        fn clone_send(&self, ledger: &mut Ledger) {
            let mut copy = Client::new(self.id);
            copy.send(ledger, &self.register());
        }

        /// Applies `request` and, if it answered, takes the reply as the client does.
        fn send(&mut self, ledger: &mut Ledger, request: &ClientRequest) -> ClientReply {
            let register = request.operation() == Operation::Register;
            let command = if register {
                Command::Register {
                    now: NOW,
                    request: request.clone(),
                }
            } else {
                Command::Request {
                    now: NOW,
                    request: request.clone(),
                }
            };
            let Reply::Client(reply) = ledger.apply(command) else {
                panic!("a client command answers with a client reply");
            };
            if let ClientReply::Reply { header, body } = &reply {
                check_reply_to(request.header(), request.body(), header, body)
                    .expect("the client accepts the reply");
                if register {
                    self.session = header.commit;
                } else {
                    self.request = header.request;
                }
                self.parent = header.context;
            }
            ledger.validate();
            reply
        }
    }

    fn account(id: u128) -> Account {
        Account {
            id: AccountId(id),
            ledger: 1,
            code: 1,
            ..Account::default()
        }
    }

    fn reply_header(reply: &ClientReply) -> ReplyHeader {
        match reply {
            ClientReply::Reply { header, .. } => **header,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// A wire request's `create_transfers` and `lookup_transfers` batches list the ids not in
    /// memory and the cold transfers their ids and pending ids name, read straight from the
    /// events' bytes, as a node batch of the same transfers does; ids and transfers in memory
    /// list nothing.
    #[test]
    fn a_wire_requests_cold_reads_are_the_transfers_its_ids_name() {
        use crate::checkpoint::CheckpointCut;
        use crate::keyspace::Keyspace;
        use kassa_wire::TransferFlags;
        use std::sync::Arc;
        use zerocopy::IntoBytes;

        let mut ledger = Ledger::new(Default::default());
        let store = Arc::new(crate::MemoryColdStore::new());
        ledger.attach_cold_store(store.clone());
        ledger.create_accounts(NOW, &[account(1), account(2)], &mut Vec::new());
        let transfer = |id: u128, flags: TransferFlags, pending_id: u128| Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(1),
            credit_account_id: AccountId(2),
            amount: if pending_id == 0 { 5 } else { 0 },
            pending_id: TransferId(pending_id),
            ledger: 1,
            code: 1,
            flags,
            ..Transfer::default()
        };
        let pending = TransferFlags::PENDING;
        let old = [
            transfer(10, TransferFlags::default(), 0),
            transfer(11, pending, 0),
            transfer(12, pending, 0),
        ];
        ledger.create_transfers(NOW + 1, &old, &mut Vec::new());
        // Pending 12 is posted before the checkpoint: it goes cold; 11 stays pending, pinned.
        let post = transfer(13, TransferFlags::POST_PENDING_TRANSFER, 12);
        ledger.create_transfers(NOW + 2, &[post], &mut Vec::new());
        let increment = ledger
            .checkpoint_increment(CheckpointCut::default())
            .expect("in memory");
        store.add(&increment);
        ledger.checkpoint_durable(increment.cut);
        ledger.create_transfers(NOW + 3, &[transfer(14, pending, 0)], &mut Vec::new());

        let events = [
            transfer(10, TransferFlags::default(), 0), // a retry of a cold transfer
            transfer(20, TransferFlags::POST_PENDING_TRANSFER, 12), // a resolved, cold pending
            transfer(21, TransferFlags::POST_PENDING_TRANSFER, 11), // pinned: in memory
            transfer(22, TransferFlags::VOID_PENDING_TRANSFER, 14), // hot
            transfer(23, TransferFlags::default(), 0), // new
        ];
        let cold = |positions: &[u128]| -> Vec<(Keyspace, u128)> {
            positions
                .iter()
                .map(|p| (Keyspace::Transfers, *p))
                .collect()
        };
        let cold_ids = |ids: &[u128]| -> Vec<(Keyspace, u128)> {
            ids.iter().map(|id| (Keyspace::TransferIds, *id)).collect()
        };
        // Both rounds: the ids not in memory within the cold ids' range (10 to 13: not 14's,
        // which came after the checkpoint, nor the new ones above), then the cold transfers
        // of those found.
        let list = |command: &Command| {
            let mut listed = Vec::new();
            ledger.cold_reads(command, crate::ColdReads::Ids, &mut listed);
            let first = listed.len();
            ledger.cold_reads(command, crate::ColdReads::Transfers, &mut listed);
            (listed[..first].to_vec(), listed[first..].to_vec())
        };
        let command = Command::CreateTransfers {
            now: NOW + 4,
            transfers: events.to_vec(),
        };
        let listed = list(&command);
        assert_eq!(listed.0, cold_ids(&[10, 12, 11]));
        assert_eq!(listed.1, cold(&[0, 2]));
        let mut client = Client::new(7);
        client.session = 1; // a request carries its session (the listing does not look)
        let request = client.request(Operation::CreateTransfers, &[events.as_bytes()]);
        let command = Command::Request {
            now: NOW + 4,
            request,
        };
        assert_eq!(list(&command), listed);
        let ids = [
            TransferId(13),
            TransferId(99),
            TransferId(11),
            TransferId(10),
        ];
        let request = client.request(Operation::LookupTransfers, &[ids.as_bytes()]);
        let command = Command::ForeignRequest {
            now: NOW + 4,
            request,
        };
        assert_eq!(list(&command), (cold_ids(&[13, 11, 10]), cold(&[3, 0])));
    }

    /// A wire request reading by filter (an account's transfers or balances, a query of
    /// transfers) over cold transfers: its first round seeks the timestamp samples of its
    /// bounds, its second lists the account's cold list as a key range and the transfers its
    /// timestamp bounds' searches read, its third the cold transfers and balances at the
    /// positions it visits; applying it then reads from the store only what was listed.
    #[test]
    fn a_wire_query_reads_only_what_its_listing_named() {
        use crate::checkpoint::CheckpointCut;
        use crate::history::history_key;
        use crate::keyspace::Keyspace;
        use crate::ColdRange;
        use kassa_wire::{
            AccountFilter, AccountFilterFlags, AccountFlags, QueryFilter, QueryFilterFlags,
        };
        use std::sync::Arc;
        use zerocopy::{FromZeros, IntoBytes};

        let mut ledger = Ledger::new(Default::default());
        let store = Arc::new(crate::MemoryColdStore::new());
        ledger.attach_cold_store(store.clone());
        let accounts: Vec<Account> = (1..=3)
            .map(|id| Account {
                flags: AccountFlags::HISTORY,
                ..account(id)
            })
            .collect();
        ledger.create_accounts(NOW, &accounts, &mut Vec::new());
        // 300 transfers among three accounts, 250 of them cold after the checkpoint.
        let transfers: Vec<Transfer> = (0..300u128)
            .map(|at| Transfer {
                id: TransferId(100 + at),
                debit_account_id: AccountId(1 + at % 3),
                credit_account_id: AccountId(1 + (at + 1) % 3),
                amount: 1,
                ledger: 1,
                code: 1,
                user_data_32: (at % 2) as u32,
                ..Transfer::default()
            })
            .collect();
        ledger.create_transfers(NOW + 1_000, &transfers[..250], &mut Vec::new());
        let increment = ledger
            .checkpoint_increment(CheckpointCut::default())
            .expect("in memory");
        store.add(&increment);
        ledger.checkpoint_durable(increment.cut);
        ledger.create_transfers(NOW + 10_000, &transfers[250..], &mut Vec::new());
        let timestamp = |at: u128| {
            ledger
                .transfer(TransferId(100 + at))
                .unwrap()
                .unwrap()
                .timestamp
        };
        let (early, late) = (timestamp(40), timestamp(200));

        let mut client = Client::new(7);
        client.send(&mut ledger, &client.register());
        let account_filter = |limit: u32, flags: AccountFilterFlags, bounds: (u64, u64)| {
            let mut filter = AccountFilter::new_zeroed();
            filter.account_id = AccountId(1);
            filter.limit = limit;
            filter.flags = flags;
            (filter.timestamp_min, filter.timestamp_max) = bounds;
            filter
        };
        let both = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
        let reversed = both | AccountFilterFlags::REVERSED;
        let mut query = QueryFilter::new_zeroed();
        query.limit = 30;
        (query.timestamp_min, query.timestamp_max) = (early, late);
        let mut query_reversed = query;
        query_reversed.flags = QueryFilterFlags::REVERSED;
        query_reversed.user_data_32 = 1;
        // With the number of timestamp bounds each seeks in the store (both are cold).
        let requests = [
            (
                Operation::GetAccountTransfers,
                account_filter(20, both, (0, 0)).as_bytes().to_vec(),
                0,
            ),
            (
                Operation::GetAccountTransfers,
                account_filter(20, reversed, (early, late))
                    .as_bytes()
                    .to_vec(),
                2,
            ),
            (
                Operation::GetAccountTransfers,
                account_filter(8_000, both, (early, 0)).as_bytes().to_vec(),
                1,
            ),
            (
                Operation::GetAccountBalances,
                account_filter(15, both, (early, late)).as_bytes().to_vec(),
                2,
            ),
            (Operation::QueryTransfers, query.as_bytes().to_vec(), 2),
            (
                Operation::QueryTransfers,
                query_reversed.as_bytes().to_vec(),
                2,
            ),
        ];
        for (operation, filter, seeks_expected) in requests {
            let request = client.request(operation, &[&filter]);
            let command = Command::Request {
                now: NOW + 20_000,
                request: request.clone(),
            };
            let (mut listed, mut seeks, mut ranges) = (Vec::new(), Vec::new(), Vec::new());
            ledger.cold_ranges(&command, crate::ColdReads::Timestamps, &mut seeks);
            ledger.cold_reads(&command, crate::ColdReads::Timestamps, &mut listed);
            assert_eq!(listed, [], "{operation:?}: the first round seeks only");
            assert_eq!(seeks.len(), seeks_expected, "{operation:?}: {seeks:?}");
            for seek in &seeks {
                assert_eq!(seek.keyspace, Keyspace::TransferTimestamps);
                assert!(seek.reversed && seek.entries == 1, "{seek:?}");
            }
            ledger.cold_ranges(&command, crate::ColdReads::Ids, &mut ranges);
            ledger.cold_reads(&command, crate::ColdReads::Ids, &mut listed);
            ledger.cold_reads(&command, crate::ColdReads::Transfers, &mut listed);
            store.take_keys_read();
            let reply = client.send(&mut ledger, &request);
            let read = store.take_keys_read();
            assert!(!read.is_empty(), "{operation:?} reads cold entries");
            for key in &read {
                assert!(
                    listed.contains(key),
                    "{operation:?}: {key:?} read, not listed"
                );
            }
            let ClientReply::Reply { body, .. } = reply else {
                panic!("{operation:?} answers");
            };
            assert!(!body.is_empty(), "{operation:?} finds something");
            let expected_ranges = match operation {
                Operation::QueryTransfers => 0,
                _ => 1,
            };
            assert_eq!(ranges.len(), expected_ranges, "{operation:?}: {ranges:?}");
            for ColdRange { keyspace, keys, .. } in &ranges {
                // The account's whole cold list within the bounds (widened to samples).
                assert_eq!(*keyspace, Keyspace::AccountTransfers);
                assert!(keys.start >= history_key(0, 0) && keys.end <= history_key(0, 250));
            }
        }
        // A filter that takes every listed transfer (both sides, no user data, no code) lists
        // its limit of cold transfers, the first it returns, and reads ahead as many list
        // entries; one with a code, or of one side, twice that.
        let listed = |filter: AccountFilter| {
            let request = client.request(Operation::GetAccountTransfers, &[filter.as_bytes()]);
            let command = Command::Request {
                now: NOW + 20_000,
                request,
            };
            let (mut listed, mut ranges) = (Vec::new(), Vec::new());
            ledger.cold_reads(&command, crate::ColdReads::Transfers, &mut listed);
            ledger.cold_ranges(&command, crate::ColdReads::Ids, &mut ranges);
            let transfers = listed
                .iter()
                .filter(|(keyspace, _)| *keyspace == Keyspace::Transfers);
            let entries: Vec<usize> = ranges.iter().map(|range| range.entries).collect();
            (transfers.count(), entries)
        };
        assert_eq!(listed(account_filter(20, both, (0, 0))), (20, vec![20]));
        let mut coded = account_filter(20, both, (0, 0));
        coded.code = 1;
        assert_eq!(listed(coded), (40, vec![40]));
        let debits = account_filter(20, AccountFilterFlags::DEBITS, (0, 0));
        assert_eq!(listed(debits), (40, vec![40]), "one side: twice the limit");
        // A reversed read whose limit the account's transfers in memory fill (33 of the 50
        // after the checkpoint, twice the limit of 5 being 10) reads ahead nothing, and reads
        // nothing from the store.
        let filter = account_filter(5, reversed, (0, 0));
        let request = client.request(Operation::GetAccountTransfers, &[filter.as_bytes()]);
        let command = Command::Request {
            now: NOW + 20_000,
            request: request.clone(),
        };
        let mut ranges = Vec::new();
        ledger.cold_ranges(&command, crate::ColdReads::Timestamps, &mut ranges);
        ledger.cold_ranges(&command, crate::ColdReads::Ids, &mut ranges);
        assert_eq!(ranges, []);
        store.take_keys_read();
        let ClientReply::Reply { body, .. } = client.send(&mut ledger, &request) else {
            panic!("a reversed read answers");
        };
        let batches = MultiBatch::decode(&body, 128, 8189).expect("a multi-batch reply");
        assert_eq!(batches.element_count(0), Some(5));
        assert_eq!(store.take_keys_read(), []);
    }

    /// Under placement by ledger a request runs in its ledger's partition `L` while its
    /// session lives in `S`: `S` checks it, `L` runs it once and seals its reply (copies get
    /// the same reply, even after a snapshot), `S` caches that reply as it is. Older copies
    /// and collisions are dropped at `L`.
    #[test]
    fn a_foreign_request_runs_once_in_its_ledgers_partition_and_its_session_records_it() {
        let (mut session_partition, mut ledger_partition) = (
            Ledger::new(Default::default()),
            Ledger::new(Default::default()),
        );
        // The ledger's partition has sealed more replies than the session's: its ops are
        // not the session partition's.
        for id in 5..8 {
            let mut local = Client::new(id);
            local.send(&mut ledger_partition, &local.register());
        }
        let mut client = Client::new(9);
        client.send(&mut session_partition, &client.register());
        let foreign = |ledger: &mut Ledger, request: &ClientRequest| {
            let command = Command::ForeignRequest {
                now: NOW,
                request: request.clone(),
            };
            let mut bytes = Vec::new();
            command.encode(&mut bytes);
            assert_eq!(bytes.len(), command.encoded_len());
            assert_eq!(Command::decode(&bytes), Ok(command.clone()));
            match ledger.apply(command) {
                Reply::Foreign(answer) => answer,
                other => panic!("{other:?}"),
            }
        };
        let accounts = [account(1), account(2)];
        let create = client.request(Operation::CreateAccounts, &[accounts.as_bytes()]);
        let header = *create.header();
        assert_eq!(session_partition.sessions().answer_known(&header), None);
        let sealed = foreign(&mut ledger_partition, &create);
        let ForeignAnswer::Sealed { reply, body } = sealed.clone() else {
            panic!("runs: {sealed:?}");
        };
        check_reply_to(&header, create.body(), &reply, &body).expect("the client accepts it");
        assert!(reply.op > client.session && reply.op <= ledger_partition.sessions().op());
        assert_eq!(ledger_partition.accounts().len(), 2);
        assert!(ledger_partition.foreign_requests().knows(&header));
        assert_eq!(
            ledger_partition.foreign_requests().latest_reply(9),
            Some((&*reply, &body[..]))
        );
        // A copy (a retry after a crash before the session recorded it) runs no more.
        assert_eq!(foreign(&mut ledger_partition, &create), sealed);
        let mut bytes = Vec::new();
        ledger_partition.snapshot(&mut bytes);
        let mut restored = Ledger::restore(Default::default(), &bytes).expect("restores");
        assert_eq!(foreign(&mut restored, &create), sealed);
        assert_eq!(restored.accounts().len(), 2);
        // The session caches the reply as `L` sealed it; the client takes it and goes on.
        let answer = Command::SealedAnswer {
            request: Box::new(header),
            reply: reply.clone(),
            body: body.clone(),
        };
        let mut bytes = Vec::new();
        answer.encode(&mut bytes);
        assert_eq!(bytes.len(), answer.encoded_len());
        assert_eq!(Command::decode(&bytes), Ok(answer.clone()));
        let Reply::Client(cached) = session_partition.apply(answer.clone()) else {
            panic!("an answer answers a client reply");
        };
        let given = ClientReply::Reply {
            header: reply.clone(),
            body: body.clone(),
        };
        assert_eq!(cached, given);
        // Recorded once: a second copy of the answer is a retry of the request.
        assert_eq!(
            session_partition.apply(answer),
            Reply::Client(given.clone())
        );
        session_partition
            .sessions()
            .check()
            .expect("the session table holds");
        let mut bytes = Vec::new();
        session_partition.snapshot(&mut bytes);
        Ledger::restore(Default::default(), &bytes).expect("the session table restores");
        client.request = reply.request;
        client.parent = reply.context;
        assert_eq!(
            session_partition.sessions().answer_known(&header),
            Some(given)
        );
        let next = client.request(Operation::CreateAccounts, &[account(3).as_bytes()]);
        assert_eq!(
            session_partition.sessions().answer_known(next.header()),
            None
        );
        assert!(matches!(
            foreign(&mut ledger_partition, &next),
            ForeignAnswer::Sealed { .. }
        ));
        assert_eq!(
            foreign(&mut ledger_partition, &create),
            ForeignAnswer::Dropped(DropReason::OlderRequest)
        );
        let collision = client.request(Operation::CreateAccounts, &[account(4).as_bytes()]);
        assert_eq!(
            foreign(&mut ledger_partition, &collision),
            ForeignAnswer::Dropped(DropReason::RequestCollision)
        );
        assert_eq!(ledger_partition.accounts().len(), 3);
    }

    /// A session that missed the answers of its client's latest requests run elsewhere (lost
    /// in a crash) catches up to the reply the client's next request names as its parent, or
    /// to the reply of a retried request, and nothing else.
    #[test]
    fn a_session_catches_up_to_the_reply_its_clients_next_request_names() {
        let (mut session_partition, mut ledger_partition) = (
            Ledger::new(Default::default()),
            Ledger::new(Default::default()),
        );
        let mut client = Client::new(9);
        client.send(&mut session_partition, &client.register());
        let mut run = |client: &mut Client, id: u128| {
            let request = client.request(Operation::CreateAccounts, &[account(id).as_bytes()]);
            let command = Command::ForeignRequest {
                now: NOW,
                request: request.clone(),
            };
            let Reply::Foreign(ForeignAnswer::Sealed { reply, body }) =
                ledger_partition.apply(command)
            else {
                panic!("runs");
            };
            client.request = reply.request;
            client.parent = reply.context;
            (request, reply, body)
        };
        // Requests 1 and 2 ran in the ledger's partition; the session recorded neither.
        let (first, first_reply, first_body) = run(&mut client, 1);
        let (second, second_reply, second_body) = run(&mut client, 2);
        let third = client.request(Operation::CreateAccounts, &[account(3).as_bytes()]);
        let sessions = |ledger: &Ledger, request: &ClientRequest| {
            ledger.sessions().answer_known(request.header())
        };
        assert_eq!(
            sessions(&session_partition, &third),
            Some(ClientReply::Dropped(DropReason::NewerRequest))
        );
        let catch_up = |request: &ClientRequest, reply: &ReplyHeader, body: &[u8]| {
            let command = Command::CatchUp {
                request: Box::new(*request.header()),
                reply: Box::new(*reply),
                body: body.to_vec(),
            };
            let mut bytes = Vec::new();
            command.encode(&mut bytes);
            assert_eq!(bytes.len(), command.encoded_len());
            Command::decode(&bytes)
        };
        // The first reply is not what the third request names: refused when decoded.
        assert!(catch_up(&third, &first_reply, &first_body).is_err());
        // A retry of the second request catches up to its own reply; applied twice, once.
        let retried = catch_up(&second, &second_reply, &second_body).expect("decodes");
        assert_eq!(
            session_partition.apply(retried.clone()),
            Reply::CaughtUp(true)
        );
        assert_eq!(session_partition.apply(retried), Reply::CaughtUp(false));
        assert_eq!(
            sessions(&session_partition, &second),
            Some(ClientReply::Reply {
                header: second_reply.clone(),
                body: second_body.clone(),
            })
        );
        assert_eq!(sessions(&session_partition, &third), None, "admitted now");
        // An older reply never moves the session back.
        let stale = catch_up(&first, &first_reply, &first_body).expect("decodes");
        assert_eq!(session_partition.apply(stale), Reply::CaughtUp(false));
        session_partition
            .sessions()
            .check()
            .expect("the session table holds");

        // Another session of the client (registered again elsewhere) does not take it.
        let mut other = Ledger::new(Default::default());
        let mut again = Client::new(9);
        again.send(&mut other, &again.register());
        let mut moved = *third.header();
        moved.session += 1;
        moved.seal(third.body());
        let moved = ClientRequest::new(moved, third.body().to_vec()).expect("valid");
        let next = catch_up(&moved, &second_reply, &second_body).expect("decodes");
        assert_eq!(other.apply(next), Reply::CaughtUp(false));
    }

    /// A foreign request restored from a snapshot of format 6 (no sealed reply kept) is
    /// answered with its body, for the session partition to seal as it did then.
    #[test]
    fn a_foreign_request_from_a_format_6_snapshot_is_answered_with_its_body() {
        use crate::foreign_requests::ForeignRequests;
        let mut ledger_partition = Ledger::new(Default::default());
        let mut client = Client::new(9);
        client.session = 1;
        let create = client.request(Operation::CreateAccounts, &[account(1).as_bytes()]);
        let command = Command::ForeignRequest {
            now: NOW,
            request: create.clone(),
        };
        let Reply::Foreign(ForeignAnswer::Sealed { body, .. }) = ledger_partition.apply(command)
        else {
            panic!("runs");
        };
        let mut bytes = Vec::new();
        ledger_partition.foreign_requests().encode(&mut bytes);
        // Format 6 ends each entry with its body: no sealed flag, no reply header.
        bytes.truncate(bytes.len() - 8 - 256);
        let (old, read) = ForeignRequests::decode(&bytes, false).expect("format 6 decodes");
        assert_eq!(read, bytes.len());
        assert!(
            ForeignRequests::decode(&bytes, true).is_err(),
            "not format 7"
        );
        // Written again (format 7), the entry keeps no sealed reply and reads back.
        let mut again = Vec::new();
        old.encode(&mut again);
        let (old, read) = ForeignRequests::decode(&again, true).expect("format 7 decodes");
        assert_eq!(read, again.len());
        ledger_partition.foreign = old;
        let mut snapshot = Vec::new();
        ledger_partition.snapshot(&mut snapshot);
        Ledger::restore(Default::default(), &snapshot).expect("its snapshot restores");
        let copy = Command::ForeignRequest {
            now: NOW,
            request: create,
        };
        assert_eq!(
            ledger_partition.apply(copy),
            Reply::Foreign(ForeignAnswer::Body(body))
        );
        assert_eq!(ledger_partition.accounts().len(), 1);
    }

    /// A sealed answer whose reply does not answer its request (another request's reply, a
    /// damaged body) is refused when decoded.
    #[test]
    fn a_sealed_answer_must_carry_its_requests_reply() {
        let mut ledger_partition = Ledger::new(Default::default());
        let mut client = Client::new(9);
        client.session = 1;
        let first = client.request(Operation::CreateAccounts, &[account(1).as_bytes()]);
        let Reply::Foreign(ForeignAnswer::Sealed { reply, body }) =
            ledger_partition.apply(Command::ForeignRequest {
                now: NOW,
                request: first.clone(),
            })
        else {
            panic!("runs");
        };
        client.request = reply.request;
        client.parent = reply.context;
        let second = client.request(Operation::CreateAccounts, &[account(2).as_bytes()]);
        let refused = |request: &ClientRequest, body: &[u8]| {
            let answer = Command::SealedAnswer {
                request: Box::new(*request.header()),
                reply: reply.clone(),
                body: body.to_vec(),
            };
            let mut bytes = Vec::new();
            answer.encode(&mut bytes);
            matches!(
                Command::decode(&bytes),
                Err(crate::CommandDecodeError::Malformed(_))
            )
        };
        assert!(!refused(&first, &body));
        assert!(refused(&second, &body), "another request's reply");
        let mut damaged = body.clone();
        damaged[0] ^= 1;
        assert!(
            refused(&first, &damaged),
            "a body the reply was not sealed over"
        );
    }

    #[test]
    fn a_session_answers_retries_from_its_cache_and_applies_once() {
        let mut ledger = Ledger::new(Default::default());
        let mut client = Client::new(7);
        let register = client.register();
        let registered = client.send(&mut ledger, &register);
        assert_eq!(reply_header(&registered).commit, 1);
        assert_eq!(client.session, 1);
        // A retried register gets the same reply.
        assert_eq!(client.send(&mut ledger, &register), registered);

        let accounts = [account(1), account(2)];
        let create = client.request(Operation::CreateAccounts, &[accounts.as_bytes()]);
        let created = client.send(&mut ledger, &create);
        assert_eq!(ledger.accounts().len(), 2);
        // The same request again: the cached reply, nothing applied.
        assert_eq!(client.send(&mut ledger, &create), created);
        assert_eq!(ledger.accounts().len(), 2);
        assert_eq!(ledger.sessions().op(), 2);

        // Two batches in one request: each its own results.
        let ids = [AccountId(1), AccountId(9), AccountId(2)];
        let lookup = client.request(
            Operation::LookupAccounts,
            &[ids[..2].as_bytes(), ids[2..].as_bytes()],
        );
        let ClientReply::Reply { body, .. } = client.send(&mut ledger, &lookup) else {
            panic!("lookup answered");
        };
        let batches = MultiBatch::decode(&body, 128, 8189).expect("a multi-batch reply");
        let found: Vec<usize> = batches.batches().map(|b| b.len() / 128).collect();
        assert_eq!(found, [1, 1]);

        // Older requests are dropped; a request out of the chain too.
        assert_eq!(
            client.send(&mut ledger, &create),
            ClientReply::Dropped(DropReason::OlderRequest)
        );
        let mut stray = client.request(Operation::LookupAccounts, &[ids.as_bytes()]);
        let mut header = *stray.header();
        header.parent ^= 1;
        header.seal(stray.body());
        stray = ClientRequest::new(header, stray.body().to_vec()).expect("valid");
        assert_eq!(
            client.send(&mut ledger, &stray),
            ClientReply::Dropped(DropReason::ParentMismatch)
        );
    }

    #[test]
    fn unknown_and_stale_sessions_are_evicted() {
        let mut ledger = Ledger::new(Default::default());
        let mut stranger = Client::new(5);
        stranger.session = 3;
        let request = stranger.request(Operation::LookupAccounts, &[AccountId(1).as_bytes()]);
        let before = ledger.sessions().clone();
        assert_eq!(
            stranger.send(&mut ledger, &request),
            ClientReply::Evicted(EvictionReason::NoSession)
        );
        assert_eq!(
            ledger.sessions(),
            &before,
            "a refused request changes nothing"
        );

        let older = Client::new(4);
        older.clone_send(&mut ledger);
        let mut client = Client::new(6);
        client.send(&mut ledger, &client.register());
        assert_eq!(client.session, 2);
        client.session -= 1;
        let stale = client.request(Operation::LookupAccounts, &[AccountId(1).as_bytes()]);
        assert_eq!(
            client.send(&mut ledger, &stale),
            ClientReply::Evicted(EvictionReason::SessionTooLow)
        );
        client.session += 1;
        let mut header = *client
            .request(Operation::LookupAccounts, &[AccountId(1).as_bytes()])
            .header();
        header.frame.release = Release::new(0, 17, 7);
        let body = encode_to_vec(16, &[AccountId(1).as_bytes()]).expect("encodes");
        header.seal(&body);
        let other_release = ClientRequest::new(header, body).expect("valid");
        assert_eq!(
            client.send(&mut ledger, &other_release),
            ClientReply::Evicted(EvictionReason::SessionReleaseMismatch)
        );
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_answered_session() {
        let mut ledger = Ledger::new(Default::default());
        let mut clients: Vec<Client> = (1..=CLIENT_SESSIONS_MAX as u128).map(Client::new).collect();
        for client in &mut clients {
            let register = client.register();
            client.send(&mut ledger, &register);
        }
        // Client 1 was answered most recently: client 2 is now the least recent.
        let first = &mut clients[0];
        let lookup = first.request(Operation::LookupAccounts, &[AccountId(1).as_bytes()]);
        first.send(&mut ledger, &lookup);
        let mut newcomer = Client::new(u128::MAX);
        newcomer.send(&mut ledger, &newcomer.register());
        assert_eq!(ledger.sessions().len(), CLIENT_SESSIONS_MAX);
        assert!(ledger.sessions().get(2).is_none());
        assert!(ledger.sessions().get(1).is_some());
        assert!(ledger
            .sessions()
            .ping_session_evicted(2, clients[1].session));
        let second = &mut clients[1];
        let request = second.request(Operation::LookupAccounts, &[AccountId(1).as_bytes()]);
        assert_eq!(
            second.send(&mut ledger, &request),
            ClientReply::Evicted(EvictionReason::NoSession)
        );
    }

    #[test]
    fn snapshots_carry_sessions_byte_identically_and_refuse_damaged_ones() {
        let build = || {
            let mut ledger = Ledger::new(Default::default());
            for id in [3u128, 1, 2] {
                let mut client = Client::new(id);
                client.send(&mut ledger, &client.register());
                let accounts = [account(id * 10)];
                let create = client.request(Operation::CreateAccounts, &[accounts.as_bytes()]);
                client.send(&mut ledger, &create);
            }
            ledger
        };
        let (mut first, mut second) = (Vec::new(), Vec::new());
        build().snapshot(&mut first);
        build().snapshot(&mut second);
        assert_eq!(first, second);
        let restored = Ledger::restore(Default::default(), &first).expect("restores");
        assert_eq!(restored.sessions(), build().sessions());
        let mut again = Vec::new();
        restored.snapshot(&mut again);
        assert_eq!(again, first);

        // Damage one byte of the last cached reply body and fix the CRCs: the table's own
        // checks refuse it. The (empty) transaction state, id directory, foreign requests and
        // intents follow the table.
        const TXN_STATE_EMPTY: usize = 24 + INTENTS_EMPTY;
        // No intents, no closed transactions, no forgotten ranges, no home records, no
        // forgotten ranges.
        const INTENTS_EMPTY: usize = 5 * 8;
        // Per id space: no entries, then 64 empty lease buckets of 13 bytes.
        const ID_DIRECTORY_EMPTY: usize = 2 * (8 + 64 * 13);
        const FOREIGN_EMPTY: usize = 16;
        let mut damaged = first.clone();
        let at = damaged.len() - 1 - TXN_STATE_EMPTY - ID_DIRECTORY_EMPTY - FOREIGN_EMPTY;
        damaged[at] ^= 1;
        let body_checksum = crc32c::crc32c(&damaged[32..]);
        damaged[24..28].copy_from_slice(&body_checksum.to_le_bytes());
        let header_checksum = crc32c::crc32c(&damaged[..28]);
        damaged[28..32].copy_from_slice(&header_checksum.to_le_bytes());
        assert!(matches!(
            Ledger::restore(Default::default(), &damaged),
            Err(crate::SnapshotError::Inconsistent(_))
        ));

        // Every cut of the session table, or a flipped bit in it, under valid checksums: a
        // typed error (or, for a flip the checks cannot see, a table that still validates),
        // never a panic.
        let table_size = 16 + 3 * (16 + 256 + 32); // Each reply: one result and its trailer.
        let table_start =
            first.len() - TXN_STATE_EMPTY - ID_DIRECTORY_EMPTY - FOREIGN_EMPTY - table_size;
        for cut in table_start..first.len() {
            let cut_snapshot = resealed_snapshot(&first[..cut]);
            assert!(Ledger::restore(Default::default(), &cut_snapshot).is_err());
        }
        for at in table_start..first.len() {
            let mut flipped = first.clone();
            flipped[at] ^= 1 << (at % 8);
            if let Ok(ledger) = Ledger::restore(Default::default(), &resealed_snapshot(&flipped)) {
                ledger.validate();
            }
        }
    }

    /// `bytes` with the snapshot header's body size and checksums made to match its body.
    fn resealed_snapshot(bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let body_size = (out.len() - 32) as u64;
        out[16..24].copy_from_slice(&body_size.to_le_bytes());
        let body_checksum = crc32c::crc32c(&out[32..]);
        out[24..28].copy_from_slice(&body_checksum.to_le_bytes());
        let header_checksum = crc32c::crc32c(&out[..28]);
        out[28..32].copy_from_slice(&header_checksum.to_le_bytes());
        out
    }

    #[test]
    fn client_commands_round_trip_and_bad_bytes_never_panic() {
        let mut client = Client::new(11);
        let register = Command::Register {
            now: NOW,
            request: client.register(),
        };
        client.session = 1;
        let accounts = [account(1), account(2)];
        let request = Command::Request {
            now: NOW,
            request: client.request(Operation::CreateAccounts, &[accounts.as_bytes()]),
        };
        for command in [register, request] {
            let mut bytes = Vec::new();
            command.encode(&mut bytes);
            assert_eq!(Command::decode(&bytes), Ok(command.clone()));
            for cut in 0..bytes.len() {
                assert!(Command::decode(&bytes[..cut]).is_err());
            }
            // Every single-bit flip is refused or decodes to a valid command; none panics.
            for at in 0..bytes.len() {
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << (at % 8);
                if let Ok(decoded) = Command::decode(&flipped) {
                    assert_ne!(decoded, command);
                }
            }
        }
        // A register frame under the request tag is refused.
        let mut bytes = Vec::new();
        Command::Register {
            now: NOW,
            request: Client::new(12).register(),
        }
        .encode(&mut bytes);
        bytes[0] = 6;
        assert_eq!(
            Command::decode(&bytes),
            Err(CommandDecodeError::OperationMismatch)
        );
    }

    /// With more than one partition a request's reply is computed elsewhere and cached here by
    /// an `Answer` (reads) or by a transaction's effects (creates): the client accepts it, a
    /// retry gets the same reply, and damaged commands are refused.
    #[test]
    fn replies_computed_elsewhere_are_cached_like_local_ones() {
        let mut ledger = Ledger::new(crate::LedgerConfig::default());
        let mut client = Client::new(7);
        client.send(&mut ledger, &client.register());
        let ids = [AccountId(1)];
        let request = client.request(Operation::LookupAccounts, &[ids.as_bytes()]);
        let body = encode_to_vec(size_of::<Account>(), &[account(1).as_bytes()]).expect("fits");
        let answer = Command::Answer {
            now: NOW,
            request: Box::new(*request.header()),
            body: body.clone(),
        };
        let mut bytes = Vec::new();
        answer.encode(&mut bytes);
        assert_eq!(Command::decode(&bytes), Ok(answer.clone()));
        for cut in 0..bytes.len() {
            assert!(Command::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let Reply::Client(reply) = ledger.apply(answer.clone()) else {
            panic!("an answer answers with a client reply");
        };
        let header = reply_header(&reply);
        check_reply_to(request.header(), request.body(), &header, &body).expect("accepted");
        assert_eq!(
            ledger.apply(answer),
            Reply::Client(reply.clone()),
            "a retry"
        );
        client.request = header.request;
        client.parent = header.context;

        // A create answered by a transaction's effects, applied on this partition.
        let accounts = [account(2)];
        let request = client.request(Operation::CreateAccounts, &[accounts.as_bytes()]);
        let body = encode_to_vec(16, &[&[0u8; 16]]).expect("fits");
        let effects = crate::Effects {
            timestamp: NOW,
            client_answers: vec![crate::ClientAnswer {
                request: *request.header(),
                body: body.clone(),
            }],
            ..crate::Effects::default()
        };
        let apply = Command::Apply {
            decider: 3,
            txn: 1,
            effects,
        };
        let mut bytes = Vec::new();
        apply.encode(&mut bytes);
        assert_eq!(Command::decode(&bytes), Ok(apply.clone()));
        let Reply::Applied {
            client_replies: Some(replies),
        } = ledger.apply(apply)
        else {
            panic!("applied once");
        };
        let cached = ledger.sessions().answer_known(request.header());
        let Some(cached) = cached else {
            panic!("the transaction cached the reply");
        };
        assert_eq!(replies, std::slice::from_ref(&cached));
        let header = reply_header(&cached);
        check_reply_to(request.header(), request.body(), &header, &body).expect("accepted");
        ledger.validate();
    }
}
