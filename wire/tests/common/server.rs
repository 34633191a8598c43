//! A small TCP server for the client's tests, built from `kassa_wire`'s server-side codec
//! (`validate_client_frame`, `validate_request`, `build_reply`, `build_eviction`, `build_pong`).
//! It keeps sessions and each session's last reply in memory, as the node must: a resend of the
//! last request gets the cached reply, an older one is dropped, and only a new request is
//! applied (and counted). A toy ledger gives the replies content. Faults, queued by the test,
//! each hit the next request received: drop the connection before or after applying, corrupt
//! the reply's header or body, evict, or stay silent.

#![allow(dead_code)]

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use kassa_wire::multi_batch::encode_to_vec;
use kassa_wire::{
    build_eviction, build_pong, build_reply, validate_client_frame, validate_request, Account,
    AccountFilter, AccountFilterFlags, Answer, ClientFrame, CreateAccountResult,
    CreateAccountStatus, CreateTransferResult, CreateTransferStatus, EvictionReason, Header,
    Operation, QueryFilter, RegisterResult, Release, ReplyFields, RequestBody, RequestHeader,
    Sender, Transfer, MESSAGE_BODY_SIZE_MAX,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zerocopy::{FromBytes, IntoBytes};

pub const CLUSTER: u128 = 7;
const RELEASE: Release = Release::new(0, 17, 8);
const TIMESTAMP_BASE: u64 = 1_000_000;

/// What to do to the next request received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    DropBeforeApply,
    DropAfterApply,
    CorruptReplyHeader,
    CorruptReplyBody,
    Evict(EvictionReason),
    /// Apply, but send no reply.
    Silent,
}

#[derive(Default)]
struct Session {
    number: u64,
    /// The last request number, its reply's bytes and the reply's `context`.
    request: u32,
    reply: Option<(Vec<u8>, u128)>,
}

#[derive(Default)]
pub struct State {
    pub batch_size_limit: usize,
    sessions: HashMap<u128, Session>,
    commit: u64,
    /// Requests applied (registers included).
    pub applied: u64,
    /// Requests received (resends included).
    pub received: u64,
    pub connections: u64,
    /// Requests whose `parent` was not the previous reply's `context`.
    pub parent_errors: u64,
    /// When set, requests are read and ignored.
    pub mute: bool,
    pub faults: VecDeque<Fault>,
    accounts: BTreeMap<u128, Account>,
    transfers: BTreeMap<u128, Transfer>,
}

pub struct TestServer {
    pub address: SocketAddr,
    state: Arc<Mutex<State>>,
}

enum Action {
    Send(Vec<u8>),
    Close,
    Nothing,
}

impl TestServer {
    /// Listens on 127.0.0.1 (any port) on the current tokio runtime.
    pub async fn spawn(batch_size_limit: usize) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(State {
            batch_size_limit,
            ..State::default()
        }));
        tokio::spawn(accept(listener, state.clone()));
        TestServer { address, state }
    }

    /// The same, on a thread of its own (for blocking clients).
    pub fn spawn_thread(batch_size_limit: usize) -> TestServer {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let server = TestServer::spawn(batch_size_limit).await;
                sender
                    .send(TestServer {
                        address: server.address,
                        state: server.state.clone(),
                    })
                    .expect("send");
                std::future::pending::<()>().await;
            });
        });
        receiver.recv().expect("server started")
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("lock")
    }

    pub fn fault(&self, fault: Fault) {
        self.state().faults.push_back(fault);
    }
}

async fn accept(listener: TcpListener, state: Arc<Mutex<State>>) {
    while let Ok((stream, _)) = listener.accept().await {
        state.lock().expect("lock").connections += 1;
        tokio::spawn(serve(stream, state.clone()));
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    loop {
        let mut header = [0u8; 256];
        if stream.read_exact(&mut header).await.is_err() {
            return;
        }
        let Some(size) = Header::read(&header).map(|h| h.frame.size as usize) else {
            return;
        };
        if !(256..=1024 * 1024).contains(&size) {
            return;
        }
        let mut body = vec![0u8; size - 256];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let action = {
            let mut state = state.lock().expect("lock");
            on_frame(&mut state, &header, &body)
        };
        match action {
            Action::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Action::Close => return,
            Action::Nothing => {}
        }
    }
}

fn sender() -> Sender {
    Sender {
        cluster: CLUSTER,
        replica: 0,
        view: 0,
        release: RELEASE,
    }
}

fn on_frame(state: &mut State, header: &[u8], body: &[u8]) -> Action {
    match validate_client_frame(header, body, CLUSTER) {
        Err(error) if error.answer() == Answer::CloseConnection => Action::Close,
        Err(_) => Action::Nothing,
        Ok(ClientFrame::PingClient(ping)) => {
            Action::Send(build_pong(sender(), &ping).as_bytes().to_vec())
        }
        Ok(ClientFrame::Request(request)) => on_request(state, &request, body),
    }
}

fn evict(client: u128, reason: EvictionReason) -> Action {
    Action::Send(build_eviction(sender(), client, reason).as_bytes().to_vec())
}

fn on_request(state: &mut State, request: &RequestHeader, body: &[u8]) -> Action {
    state.received += 1;
    if state.mute {
        return Action::Nothing;
    }
    let limit = state.batch_size_limit;
    let (operation, batches) = match validate_request(request, body, limit) {
        Ok(valid) => valid,
        Err(error) => return evict(request.client, error.eviction_reason()),
    };
    if operation != Operation::Register {
        let Some(session) = state.sessions.get(&request.client) else {
            return evict(request.client, EvictionReason::NoSession);
        };
        if request.session != session.number {
            return evict(request.client, EvictionReason::SessionTooLow);
        }
        if request.request <= session.request {
            // A resend: the cached reply for the last request, nothing for older ones.
            return match &session.reply {
                Some((bytes, _)) if request.request == session.request => {
                    Action::Send(bytes.clone())
                }
                _ => Action::Nothing,
            };
        }
        let context = session.reply.as_ref().map(|(_, context)| *context);
        if context != Some(request.parent) {
            state.parent_errors += 1;
        }
    }
    let fault = state.faults.pop_front();
    match fault {
        Some(Fault::DropBeforeApply) => return Action::Close,
        Some(Fault::Evict(reason)) => return evict(request.client, reason),
        _ => {}
    }
    let reply_body = match batches {
        RequestBody::Register => RegisterResult::new(limit as u32).as_bytes().to_vec(),
        RequestBody::Batches(batches) => {
            let results: Vec<Vec<u8>> = batches
                .batches()
                .map(|batch| apply(state, operation, batch))
                .collect();
            let refs: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
            encode_to_vec(operation.result_size(), &refs).expect("reply fits")
        }
    };
    state.applied += 1;
    state.commit += 1;
    let commit = state.commit;
    let fields = ReplyFields {
        view: 0,
        replica: 0,
        commit,
        timestamp: TIMESTAMP_BASE + commit * 1000,
    };
    let reply = build_reply(request, fields, &reply_body);
    let mut bytes = reply.as_bytes().to_vec();
    bytes.extend_from_slice(&reply_body);
    let session = state.sessions.entry(request.client).or_default();
    if operation == Operation::Register {
        session.number = commit;
    }
    session.request = request.request;
    session.reply = Some((bytes.clone(), reply.context));
    match fault {
        Some(Fault::DropAfterApply) => Action::Close,
        Some(Fault::Silent) => Action::Nothing,
        Some(Fault::CorruptReplyHeader) => {
            bytes[200] ^= 1;
            Action::Send(bytes)
        }
        Some(Fault::CorruptReplyBody) => {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            Action::Send(bytes)
        }
        _ => Action::Send(bytes),
    }
}

/// Applies one batch to the toy ledger; returns the batch's results.
fn apply(state: &mut State, operation: Operation, batch: &[u8]) -> Vec<u8> {
    let timestamp = TIMESTAMP_BASE + (state.commit + 1) * 1000;
    let size = operation.event_size();
    let events = batch.chunks_exact(size);
    match operation {
        Operation::CreateAccounts => events
            .enumerate()
            .flat_map(|(index, event)| {
                let account = Account::read_from_bytes(event).expect("128 bytes");
                let stamped = Account {
                    timestamp: timestamp + index as u64,
                    ..account
                };
                let status = if account.id.0 == 0 {
                    CreateAccountStatus::IdMustNotBeZero
                } else if let Entry::Vacant(entry) = state.accounts.entry(account.id.0) {
                    entry.insert(stamped);
                    CreateAccountStatus::Created
                } else {
                    CreateAccountStatus::Exists
                };
                let result = CreateAccountResult {
                    timestamp: timestamp + index as u64,
                    status,
                    reserved: 0,
                };
                result.as_bytes().to_vec()
            })
            .collect(),
        Operation::CreateTransfers => events
            .enumerate()
            .flat_map(|(index, event)| {
                let transfer = Transfer::read_from_bytes(event).expect("128 bytes");
                let status = create_transfer(state, transfer, timestamp + index as u64);
                let result = CreateTransferResult {
                    timestamp: timestamp + index as u64,
                    status,
                    reserved: 0,
                };
                result.as_bytes().to_vec()
            })
            .collect(),
        Operation::LookupAccounts => events
            .filter_map(|id| {
                state
                    .accounts
                    .get(&u128::from_le_bytes(id.try_into().ok()?))
            })
            .flat_map(|account| account.as_bytes().to_vec())
            .collect(),
        Operation::LookupTransfers => events
            .filter_map(|id| {
                state
                    .transfers
                    .get(&u128::from_le_bytes(id.try_into().ok()?))
            })
            .flat_map(|transfer| transfer.as_bytes().to_vec())
            .collect(),
        Operation::GetAccountTransfers => {
            let filter = AccountFilter::read_from_bytes(batch).expect("one filter");
            account_transfers(state, &filter)
        }
        Operation::GetAccountBalances => Vec::new(),
        Operation::QueryAccounts => {
            let filter = QueryFilter::read_from_bytes(batch).expect("one filter");
            state
                .accounts
                .values()
                .filter(|a| filter.ledger == 0 || a.ledger == filter.ledger)
                .take(filter.limit as usize)
                .flat_map(|a| a.as_bytes().to_vec())
                .collect()
        }
        Operation::QueryTransfers => {
            let filter = QueryFilter::read_from_bytes(batch).expect("one filter");
            state
                .transfers
                .values()
                .filter(|t| filter.ledger == 0 || t.ledger == filter.ledger)
                .take(filter.limit as usize)
                .flat_map(|t| t.as_bytes().to_vec())
                .collect()
        }
        Operation::Register => unreachable!("register has no batches"),
    }
}

fn create_transfer(state: &mut State, transfer: Transfer, timestamp: u64) -> CreateTransferStatus {
    if transfer.id.0 == 0 {
        return CreateTransferStatus::IdMustNotBeZero;
    }
    if state.transfers.contains_key(&transfer.id.0) {
        return CreateTransferStatus::Exists;
    }
    if !state.accounts.contains_key(&transfer.debit_account_id.0) {
        return CreateTransferStatus::DebitAccountNotFound;
    }
    if !state.accounts.contains_key(&transfer.credit_account_id.0) {
        return CreateTransferStatus::CreditAccountNotFound;
    }
    if let Some(debit) = state.accounts.get_mut(&transfer.debit_account_id.0) {
        debit.debits_posted += transfer.amount;
    }
    if let Some(credit) = state.accounts.get_mut(&transfer.credit_account_id.0) {
        credit.credits_posted += transfer.amount;
    }
    let stamped = Transfer {
        timestamp,
        ..transfer
    };
    state.transfers.insert(transfer.id.0, stamped);
    CreateTransferStatus::Created
}

fn account_transfers(state: &State, filter: &AccountFilter) -> Vec<u8> {
    let id = filter.account_id;
    let debits = filter.flags.contains(AccountFilterFlags::DEBITS);
    let credits = filter.flags.contains(AccountFilterFlags::CREDITS);
    let mut matching: Vec<&Transfer> = state
        .transfers
        .values()
        .filter(|t| (debits && t.debit_account_id == id) || (credits && t.credit_account_id == id))
        .collect();
    matching.sort_by_key(|t| t.timestamp);
    if filter.flags.contains(AccountFilterFlags::REVERSED) {
        matching.reverse();
    }
    matching
        .into_iter()
        .take(filter.limit as usize)
        .flat_map(|t| t.as_bytes().to_vec())
        .collect()
}

/// The largest limit: every test that does not test the limit uses it.
pub const LIMIT_MAX: usize = MESSAGE_BODY_SIZE_MAX;
