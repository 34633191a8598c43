//! Crash test through the wire protocol: one client, as TigerBeetle's clients behave, sends
//! create requests (half of one ledger, half mixing three ledgers, so placed by ledger most
//! run in shares; a third of them of two batches) while the node is killed with SIGKILL at
//! random moments. A request cut off
//! by a kill is sent again, the same frame, after the restart, until it is answered; only then
//! does the client send its next request. After the last restart:
//! - every reply says `created` for every transfer: a retry of a request that committed
//!   before the kill gets that request's own results (kept with its stage, or in its session),
//!   never `exists` from running it a second time;
//! - every account's posted balances are exactly what the answered requests add up to, so
//!   nothing acknowledged is lost and nothing is applied twice;
//! - per ledger, debits equal credits.
//!
//! Every other round the node checkpoints every 20 log entries, so kills land while
//! checkpoints are written, and the next start restores from them.
//!
//! Bounded: `KILLS` rounds (`KASSA_CRASH_KILLS` to change), each killed within a second. The
//! seed is printed; `KASSA_CRASH_SEED` replays the schedule (timing still varies).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::wire::{Answer, RawClient};
use common::{account_json, assert_balanced, Node, TempDir};
use kassa_wire::multi_batch::{encode_to_vec, MultiBatch};
use kassa_wire::{
    AccountId, CreateTransferResult, CreateTransferStatus, Operation, ReplyHeader, Transfer,
    TransferId,
};
use zerocopy::{IntoBytes, TryFromBytes};

const ACCOUNTS: u128 = 12;
/// Ledgers the accounts are spread over: account `a` is on ledger `1 + (a - 1) % LEDGERS`.
const LEDGERS: u128 = 3;
const KILLS: u32 = 6;
const BATCH_SIZE: u128 = 20;

struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

fn ledger_of(account: u128) -> u32 {
    1 + ((account - 1) % LEDGERS) as u32
}

/// The client's state across restarts: its session, the last reply it took, and the request
/// it waits for an answer to (sent, cut off by a kill), with its transfers.
struct Client {
    id: u128,
    session: u64,
    request: u32,
    parent: u128,
    in_doubt: Option<(Vec<u8>, Vec<Transfer>)>,
    /// Every answered request's transfers.
    answered: Vec<Transfer>,
    /// Requests answered only on a retry after a kill.
    retries_answered: u64,
}

/// A batch of transfers from `next_id` on: of one random ledger, or (`mixed`) each on a
/// random ledger, between two of that ledger's accounts.
fn plan(random: &mut Random, next_id: &mut u128, mixed: bool) -> Vec<Transfer> {
    let one = 1 + random.below(LEDGERS as u64) as u128;
    (0..BATCH_SIZE)
        .map(|_| {
            let ledger = if mixed {
                1 + random.below(LEDGERS as u64) as u128
            } else {
                one
            };
            let per_ledger = ACCOUNTS / LEDGERS;
            let debit = ledger + LEDGERS * random.below(per_ledger as u64) as u128;
            let credit = ledger + LEDGERS * ((debit / LEDGERS + 1) % per_ledger);
            *next_id += 1;
            Transfer {
                id: TransferId(*next_id),
                debit_account_id: AccountId(debit),
                credit_account_id: AccountId(credit),
                amount: 1 + random.below(100) as u128,
                ledger: ledger as u32,
                code: 1,
                ..Transfer::default()
            }
        })
        .collect()
}

/// Sends `frame` on a new connection and waits for its reply; `None` if the node went away.
fn send(address: SocketAddr, client: &Client, frame: &[u8]) -> Option<(ReplyHeader, Vec<u8>)> {
    let mut raw = RawClient::connect_checked(address, 0, client.id)?;
    raw.stream.write_all(frame).ok()?;
    match raw.try_receive()? {
        Answer::Frame(header, body) => {
            let reply = ReplyHeader::from_header(&header).expect("a reply");
            Some((reply, body))
        }
        Answer::Closed => None,
    }
}

/// Every batch's statuses, in order.
fn statuses(body: &[u8]) -> Vec<CreateTransferStatus> {
    let decoded = MultiBatch::decode(body, 16, 8189).expect("a reply body");
    let statuses = decoded.batches().flat_map(|batch| {
        let results = <[CreateTransferResult]>::try_ref_from_bytes(batch).expect("results");
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    });
    statuses.collect()
}

/// Takes `reply` to the request in doubt: every transfer created.
fn take(client: &mut Client, reply: &ReplyHeader, body: &[u8]) {
    let (_, transfers) = client.in_doubt.take().expect("a request in flight");
    assert_eq!(
        reply.request,
        client.request + 1,
        "the reply to the request sent"
    );
    assert_eq!(
        statuses(body),
        vec![CreateTransferStatus::Created; transfers.len()],
        "request {}: a request's own results, whatever the kills",
        reply.request
    );
    client.request = reply.request;
    client.parent = reply.context;
    client.answered.extend(transfers);
}

/// Runs the client against `address` until `stop`: first the request in doubt, then new
/// ones. Returns the client when the node is gone.
fn load(
    address: SocketAddr,
    mut client: Client,
    seed: u64,
    next_id: &mut u128,
    stop: &AtomicBool,
) -> Client {
    let mut random = Random(seed | 1);
    while !stop.load(Ordering::Relaxed) {
        let retry = client.in_doubt.is_some();
        if !retry {
            let mixed = random.below(2) == 0;
            let transfers = plan(&mut random, next_id, mixed);
            // Now and then two batches in one request, as a client sends concurrent calls.
            let cut = if random.below(3) == 0 { 7 } else { 0 };
            let (head, tail) = transfers.split_at(cut);
            let batches: Vec<&[u8]> = if cut == 0 {
                vec![tail.as_bytes()]
            } else {
                vec![head.as_bytes(), tail.as_bytes()]
            };
            let body = encode_to_vec(128, &batches).expect("encodes");
            let mut raw = RawClient::connect_checked(address, 0, client.id);
            let Some(raw) = raw.as_mut() else {
                return client;
            };
            (raw.session, raw.request, raw.parent) =
                (client.session, client.request, client.parent);
            let frame = raw.request_frame(Operation::CreateTransfers.as_u8(), &body);
            client.in_doubt = Some((frame, transfers));
        }
        let frame = client.in_doubt.as_ref().expect("in doubt").0.clone();
        let Some((reply, body)) = send(address, &client, &frame) else {
            return client;
        };
        take(&mut client, &reply, &body);
        client.retries_answered += u64::from(retry);
    }
    client
}

#[test]
fn acknowledged_wire_requests_survive_sigkill_and_retries_get_their_own_results() {
    let (seed, kills) = common::crash_schedule("wire crash test", KILLS);
    let dir = TempDir::new("wire-crash");
    let mut random = Random(seed | 1);
    let mut next_id: u128 = 1_000;
    let mut client: Option<Client> = None;
    // Requests across partitions run in shares and by the coordinator, counted before kills.
    let mut across = [0u64; 2];
    for round in 0..kills {
        let node = Node::try_start(&dir.0, common::crash_round_flags(round)).expect("kassa start");
        for ledger in 1..=LEDGERS as u32 {
            // One ledger per batch: each runs in its partition alone.
            let accounts: Vec<String> = (1..=ACCOUNTS)
                .filter(|id| ledger_of(*id) == ledger)
                .map(|id| account_json(id, ledger, &[]))
                .collect();
            let (status, _) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
            assert_eq!(status, 200);
        }
        let mut this = client.take().unwrap_or_else(|| {
            let id = u128::from(random.below(u64::MAX)) << 32 | 1;
            let mut raw = RawClient::connect(node.wire, 0, id);
            raw.register();
            Client {
                id,
                session: raw.session,
                request: 0,
                parent: raw.parent,
                in_doubt: None,
                answered: Vec::new(),
                retries_answered: 0,
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (address, stop_loader) = (node.wire, stop.clone());
        let loader_seed = seed.wrapping_add(u64::from(round));
        let mut loader_next = next_id;
        let loader = std::thread::spawn(move || {
            let client = load(address, this, loader_seed, &mut loader_next, &stop_loader);
            (client, loader_next)
        });
        std::thread::sleep(Duration::from_millis(50 + random.below(900)));
        common::add_batches_across(&node, &mut across);
        node.kill();
        stop.store(true, Ordering::Relaxed);
        (this, next_id) = loader.join().expect("loader");
        client = Some(this);
    }
    // The last restart: the request in doubt is answered, then everything is checked.
    let node = Node::start(&dir.0);
    let mut client = client.expect("a client");
    if let Some((frame, _)) = client.in_doubt.clone() {
        // As a client does, it sends again until answered (a dropped request is not).
        let answer = (0..5).find_map(|_| send(node.wire, &client, &frame));
        let (reply, body) = answer.expect("an answer");
        take(&mut client, &reply, &body);
        client.retries_answered += 1;
    }
    eprintln!(
        "{} transfers answered, {} requests answered on a retry after a kill; {} requests ran \
         in shares and {} through the coordinator before the kills",
        client.answered.len(),
        client.retries_answered,
        across[0],
        across[1]
    );
    let checkpointed = common::partitions_checkpointed(&dir.0);
    eprintln!("{checkpointed} partitions hold a checkpoint");
    assert!(!client.answered.is_empty(), "no request was answered");
    if kills > 1 {
        assert!(checkpointed > 0, "no partition took a checkpoint");
    }
    if common::test_placement().is_none_or(|placement| placement == "ledger") {
        assert!(across[0] > 0, "no request ran in shares");
    }
    let mut expected: BTreeMap<u128, (u128, u128)> = BTreeMap::new();
    for t in &client.answered {
        expected.entry(t.debit_account_id.0).or_default().0 += t.amount;
        expected.entry(t.credit_account_id.0).or_default().1 += t.amount;
    }
    for account in 1..=ACCOUNTS {
        let (status, record) = node.get(&format!("/v1/accounts/{account}"));
        assert_eq!(status, 200, "{record}");
        let field =
            |name: &str| -> u128 { record[name].as_str().expect(name).parse().expect(name) };
        let posted = (field("debits_posted"), field("credits_posted"));
        let want = expected.get(&account).copied().unwrap_or_default();
        assert_eq!(
            posted, want,
            "account {account}: exactly the answered requests"
        );
    }
    assert_balanced(&node);
}
