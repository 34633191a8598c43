//! SIGTERM always stops the node within its bound, cleanly (exit 0), whatever runs at that
//! moment: cross-partition batches, pending transfers being posted, retries answered `exists`,
//! pending transfers expiring (so the partitions' pulses take their locks), and clients that
//! hang up with a request in flight. Repeated
//! many times on one data directory; every acknowledged transfer survives, and every ledger
//! balances. `KASSA_LONG_TESTS=1` repeats it more.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wire::RawClient;
use common::{assert_all_found, assert_balanced, wire_accounts, Node, TempDir};
use kassa_node::partitioning::partition_of;
use kassa_wire::client::{BlockingClient, ClientConfig};
use kassa_wire::multi_batch::encode_to_vec;
use kassa_wire::{AccountId, CreateTransferStatus, Operation, Transfer, TransferFlags, TransferId};
use zerocopy::IntoBytes;

const ACCOUNTS: u128 = 64;
const PARTITIONS: u32 = 16;
const BATCH: u128 = 200;
/// How long a stop may take: the node's own bound (30 s) and a margin.
const STOP_WAIT: Duration = Duration::from_secs(45);

fn stops() -> usize {
    if std::env::var_os("KASSA_LONG_TESTS").is_some() {
        100
    } else {
        12
    }
}

fn client(wire: SocketAddr) -> Option<BlockingClient> {
    let mut config = ClientConfig::new(vec![wire], 0);
    config.deadline = Duration::from_secs(3);
    BlockingClient::connect(config).ok()
}

/// A transfer between two distinct accounts, spread over the partitions.
fn transfer(id: u128, flags: TransferFlags, pending_id: u128) -> Transfer {
    let debit = id % ACCOUNTS + 1;
    let offset = 1 + (id / ACCOUNTS) % (ACCOUNTS - 1);
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId((debit - 1 + offset) % ACCOUNTS + 1),
        amount: if pending_id == 0 {
            1 + id % 5
        } else {
            u128::MAX
        },
        pending_id: TransferId(pending_id),
        ledger: 1,
        code: 1,
        flags,
        ..Transfer::default()
    }
}

/// Pending transfers, then posts of them, then the same batch again (all `exists`), until a
/// write fails or `stop`. Returns the ids acknowledged as created.
fn load(wire: SocketAddr, first_id: u128, stop: &AtomicBool) -> Vec<u128> {
    let Some(mut client) = client(wire) else {
        return Vec::new();
    };
    let mut acknowledged = Vec::new();
    let mut next = first_id;
    while !stop.load(Ordering::Relaxed) {
        let pending: Vec<Transfer> = (next..next + BATCH)
            .map(|id| transfer(id, TransferFlags::PENDING, 0))
            .collect();
        let posts: Vec<Transfer> = (next..next + BATCH)
            .map(|id| {
                let mut post = transfer(id + BATCH, TransferFlags::POST_PENDING_TRANSFER, id);
                post.debit_account_id = AccountId(0);
                post.credit_account_id = AccountId(0);
                post.ledger = 0;
                post.code = 0;
                post
            })
            .collect();
        next += 2 * BATCH;
        for batch in [&pending, &posts] {
            let Ok(results) = client.create_transfers(batch) else {
                return acknowledged;
            };
            for (transfer, result) in batch.iter().zip(&results) {
                assert_eq!(result.status, CreateTransferStatus::Created, "{result:?}");
                acknowledged.push(transfer.id.0);
            }
        }
        let Ok(again) = client.create_transfers(&posts) else {
            return acknowledged;
        };
        assert!(again
            .iter()
            .all(|r| r.status == CreateTransferStatus::Exists));
    }
    acknowledged
}

/// Pending transfers with a one-second timeout whose id and accounts all live in one partition,
/// so that each partition's pulse expires them under its own lock. Returns the ids created.
fn expiring(wire: SocketAddr, first_id: u128, stop: &AtomicBool) -> Vec<u128> {
    let Some(mut client) = client(wire) else {
        return Vec::new();
    };
    let mut by_partition: std::collections::BTreeMap<u32, Vec<u128>> = Default::default();
    for account in 1..=ACCOUNTS {
        by_partition
            .entry(partition_of(account, PARTITIONS))
            .or_default()
            .push(account);
    }
    let mut created = Vec::new();
    let mut next = first_id;
    while !stop.load(Ordering::Relaxed) {
        let mut batch = Vec::new();
        for (partition, accounts) in by_partition.iter().filter(|(_, a)| a.len() >= 2) {
            while partition_of(next, PARTITIONS) != *partition {
                next += 1;
            }
            let mut pending = transfer(next, TransferFlags::PENDING, 0);
            pending.debit_account_id = AccountId(accounts[0]);
            pending.credit_account_id = AccountId(accounts[1]);
            pending.timeout = 1;
            batch.push(pending);
            next += 1;
        }
        let Ok(results) = client.create_transfers(&batch) else {
            return created;
        };
        assert!(results
            .iter()
            .all(|r| r.status == CreateTransferStatus::Created));
        created.extend(batch.iter().map(|t| t.id.0));
        std::thread::sleep(Duration::from_millis(20));
    }
    created
}

/// Sends create requests and hangs up before the reply, as a client that dies does.
fn hang_ups(wire: SocketAddr, first_id: u128, stop: &AtomicBool) {
    let mut id = first_id;
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = std::net::TcpStream::connect(wire) else {
            return;
        };
        let mut raw = RawClient {
            stream,
            cluster: 0,
            client: id,
            session: 0,
            request: 0,
            parent: 0,
        };
        let register = raw.register_frame();
        if raw.stream.write_all(&register).is_err() {
            return;
        }
        let common::wire::Answer::Frame(header, _) = raw.receive() else {
            return;
        };
        let reply = kassa_wire::ReplyHeader::from_header(&header).expect("a reply");
        raw.session = reply.commit;
        raw.parent = reply.context;
        let transfers: Vec<Transfer> = (id..id + 50)
            .map(|n| transfer(n, TransferFlags::default(), 0))
            .collect();
        let body = encode_to_vec(128, &[transfers.as_bytes()]).expect("encodes");
        let frame = raw.request_frame(Operation::CreateTransfers.as_u8(), &body);
        let _ = raw.stream.write_all(&frame);
        drop(raw);
        id += 50;
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigterm_under_load_always_stops_cleanly_within_its_bound() {
    let dir = TempDir::new("stop-under-load");
    let node = Node::start(&dir.0);
    let accounts = wire_accounts(1..=ACCOUNTS, 1);
    let mut setup = client(node.wire).expect("connect");
    assert!(setup
        .create_accounts(&accounts)
        .expect("accounts")
        .iter()
        .all(|r| r.status.name() == "created"));
    drop(setup);
    drop(node);

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut seed: u64 = 0x5eed;
    let stops = stops();
    for round in 0..stops as u128 {
        let mut node = Node::start(&dir.0);
        let stop = Arc::new(AtomicBool::new(false));
        let took = std::thread::scope(|scope| {
            for loader in 0..2u128 {
                let (stop, acknowledged, wire) = (stop.clone(), acknowledged.clone(), node.wire);
                scope.spawn(move || {
                    let first = (round * 10 + loader + 1) * 1_000_000_000;
                    let ids = load(wire, first, &stop);
                    acknowledged.lock().expect("ids").extend(ids);
                });
            }
            let (stop_hang_ups, wire) = (stop.clone(), node.wire);
            scope.spawn(move || hang_ups(wire, (round + 1) * 1_000_000_000_000, &stop_hang_ups));
            let (stop_expiring, acknowledged_expiring) = (stop.clone(), acknowledged.clone());
            scope.spawn(move || {
                let first = (round + 1) * 1_000_000_000_000_000;
                let ids = expiring(wire, first, &stop_expiring);
                acknowledged_expiring.lock().expect("ids").extend(ids);
            });
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Long enough, often, for the first expiring transfers to fall due (one second).
            std::thread::sleep(Duration::from_millis(300 + (seed >> 33) % 2500));
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(node.child.id() as i32, libc::SIGTERM) };
            let signalled = Instant::now();
            let exited = common::wait_until(STOP_WAIT, || {
                node.child.try_wait().expect("try_wait").is_some()
            });
            stop.store(true, Ordering::Relaxed);
            assert!(
                exited,
                "round {round}: still running {STOP_WAIT:?} after SIGTERM"
            );
            signalled.elapsed()
        });
        let status = node.child.wait().expect("status");
        assert!(
            status.success(),
            "round {round}: {status} after {took:?}: {}",
            node.stderr_text()
        );
        println!("round {round}: stopped cleanly {took:?} after SIGTERM");
    }

    let node = Node::start(&dir.0);
    let mut client = client(node.wire).expect("connect");
    let acknowledged = acknowledged.lock().expect("ids").clone();
    assert_all_found(&mut client, &acknowledged);
    println!(
        "{stops} stops; {} acknowledged transfers all found",
        acknowledged.len()
    );
    assert_balanced(&node);
}
