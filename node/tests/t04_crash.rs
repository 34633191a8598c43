//! Crash test: a loader sends transfers (single-phase, linked chains, pending transfers and,
//! in later batches, posts and voids of them) while the node is killed with SIGKILL at random
//! moments, again and again. After every restart:
//! - every acknowledged transfer is present exactly once, as its result said (`created` ⇔
//!   stored);
//! - nothing unacknowledged is half-applied: a request is one log entry or one cross-partition
//!   transaction (the node formats 16 partitions, so most transfers cross), so linked chains
//!   are whole or absent;
//! - every account's posted and pending balances are exactly what the stored transfers, posts
//!   and voids add up to;
//! - per ledger, debits equal credits.
//!
//! The accounts are on three ledgers. Half the batches keep to one ledger, the others mix
//! them: placed by ledger (the default), the first run in their ledger's partition (with
//! claims, then leases), the others in shares (each ledger's events in its partition, decided
//! by a record home; a post or void that leaves its ledger 0 in the partition of its pending
//! transfer), or through the coordinator when a share cannot run alone. Placed by id, every
//! batch across partitions takes the coordinator.
//!
//! Every other round the node checkpoints every 20 log entries, so kills land while
//! checkpoints are written, and the next start restores from them.
//!
//! Bounded: `KILLS` rounds (`KASSA_CRASH_KILLS` to change), each killed within a second. The
//! seed is printed; `KASSA_CRASH_SEED` replays the schedule (timing still varies).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{account_json, assert_balanced, request_raw, Node, TempDir};
use serde_json::Value;

const ACCOUNTS: u128 = 12;
/// Ledgers the accounts are spread over: account `a` is on ledger `1 + (a - 1) % LEDGERS`.
const LEDGERS: u128 = 3;
const KILLS: u32 = 6;
const BATCH_SIZE: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Single,
    Pending,
    Post { pending_id: u128 },
    Void { pending_id: u128 },
}

#[derive(Clone, Copy, Debug)]
struct Planned {
    id: u128,
    ledger: u128,
    debit: u128,
    credit: u128,
    amount: u128,
    linked: bool,
    kind: Kind,
}

/// A batch the loader sent, and its results if it was acknowledged.
struct Sent {
    transfers: Vec<Planned>,
    results: Option<Vec<String>>,
}

struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// The ledger a post or void names: 0 in the batches (of ids) numbered 0 mod 4.
fn ledger_named(t: &Planned) -> u128 {
    if (t.id / BATCH_SIZE as u128) % 4 == 0 {
        0
    } else {
        t.ledger
    }
}

fn record_json(t: &Planned) -> String {
    let linked = if t.linked { r#""linked","# } else { "" };
    match t.kind {
        Kind::Single | Kind::Pending => {
            let pending = if t.kind == Kind::Pending {
                r#""pending""#
            } else {
                ""
            };
            let flags = format!("[{linked}{pending}]").replace(",]", "]");
            format!(
                r#"{{"id":"{}","debit_account_id":"{}","credit_account_id":"{}","amount":"{}","ledger":{},"code":1,"flags":{flags}}}"#,
                t.id, t.debit, t.credit, t.amount, t.ledger
            )
        }
        // The posts and voids of one batch in four leave their ledger 0 (the requester finds
        // the pending transfer's partition); the others name it.
        Kind::Post { pending_id } => format!(
            r#"{{"id":"{}","pending_id":"{pending_id}","amount":"{}","ledger":{},"flags":[{linked}"post_pending_transfer"]}}"#,
            t.id,
            u128::MAX,
            ledger_named(t)
        ),
        Kind::Void { pending_id } => format!(
            r#"{{"id":"{}","pending_id":"{pending_id}","ledger":{},"flags":[{linked}"void_pending_transfer"]}}"#,
            t.id,
            ledger_named(t)
        ),
    }
}

fn ledger_of(account: u128) -> u128 {
    1 + (account - 1) % LEDGERS
}

/// One batch: mostly single-phase transfers, some pending ones, and posts or voids of
/// pending transfers the loader saw created. Some fail on purpose so that chains break. Half
/// the batches keep to one ledger (their posts and voids may name another's pending).
fn plan_batch(
    random: &mut Random,
    next_id: &mut u128,
    open: &mut Vec<(u128, u128, u128, u128, u128)>,
) -> Vec<Planned> {
    let mut transfers = Vec::new();
    let one_ledger = (random.below(2) == 0).then(|| 1 + u128::from(random.below(3)));
    for index in 0..BATCH_SIZE {
        let linked = index + 1 < BATCH_SIZE && random.below(4) == 0;
        let id = *next_id;
        *next_id += 1;
        if !open.is_empty() && random.below(6) == 0 {
            let (pending_id, ledger, debit, credit, amount) =
                open.swap_remove(random.below(open.len() as u64) as usize);
            let kind = if random.below(2) == 0 {
                Kind::Post { pending_id }
            } else {
                Kind::Void { pending_id }
            };
            transfers.push(Planned {
                id,
                ledger,
                debit,
                credit,
                amount,
                linked,
                kind,
            });
            continue;
        }
        // Two distinct accounts of the ledger (its accounts are `ledger + LEDGERS * k`).
        let ledger = one_ledger.unwrap_or_else(|| 1 + u128::from(random.below(3)));
        let per_ledger = (ACCOUNTS / LEDGERS) as u64;
        let debit_at = random.below(per_ledger);
        let credit_at = (debit_at + 1 + random.below(per_ledger - 1)) % per_ledger;
        let (debit, credit) = (
            ledger + LEDGERS * u128::from(debit_at),
            ledger + LEDGERS * u128::from(credit_at),
        );
        let credit = if random.below(50) == 0 { debit } else { credit };
        let kind = if random.below(8) == 0 {
            Kind::Pending
        } else {
            Kind::Single
        };
        let amount = 1 + u128::from(random.below(100));
        transfers.push(Planned {
            id,
            ledger,
            debit,
            credit,
            amount,
            linked,
            kind,
        });
    }
    transfers
}

/// Sends batches until the node stops answering; records what was sent and acknowledged.
fn load(
    http: std::net::SocketAddr,
    mut next_id: u128,
    seed: u64,
    log: Arc<Mutex<Vec<Sent>>>,
    stop: Arc<AtomicBool>,
) -> u128 {
    let mut random = Random(seed | 1);
    let mut open = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let transfers = plan_batch(&mut random, &mut next_id, &mut open);
        let records: Vec<String> = transfers.iter().map(record_json).collect();
        let body = format!("[{}]", records.join(","));
        let results: Option<Vec<String>> =
            match request_raw(http, "POST", "/v1/transfers", Some(body.as_bytes())) {
                Ok((200, text)) => serde_json::from_str::<Value>(&text).ok().map(|v| {
                    v.as_array()
                        .expect("results")
                        .iter()
                        .map(|r| r["result"].as_str().expect("name").to_string())
                        .collect()
                }),
                _ => None,
            };
        if let Some(results) = &results {
            for (t, result) in transfers.iter().zip(results) {
                if t.kind == Kind::Pending && result == "created" {
                    open.push((t.id, t.ledger, t.debit, t.credit, t.amount));
                }
            }
        }
        let acknowledged = results.is_some();
        log.lock().expect("log").push(Sent { transfers, results });
        if !acknowledged {
            break;
        }
    }
    next_id
}

/// Every transfer id the node holds, paging through `POST /v1/transfers/query`.
fn existing_ids(node: &Node) -> BTreeSet<u128> {
    let mut ids = BTreeSet::new();
    let mut timestamp_min: u64 = 0;
    loop {
        let filter = format!(r#"{{"timestamp_min":"{timestamp_min}","limit":8189}}"#);
        let (status, page) = node.post("/v1/transfers/query", &filter);
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().expect("transfers").clone();
        for transfer in &page {
            let id: u128 = transfer["id"].as_str().expect("id").parse().expect("u128");
            assert!(ids.insert(id), "transfer {id} is stored twice");
            let timestamp: u64 = transfer["timestamp"]
                .as_str()
                .expect("ts")
                .parse()
                .expect("u64");
            timestamp_min = timestamp_min.max(timestamp + 1);
        }
        if page.len() < 8189 {
            return ids;
        }
    }
}

/// Checks acknowledged results and chain atomicity against what the node holds.
fn verify_batches(sent: &[Sent], existing: &BTreeSet<u128>) {
    for batch in sent {
        let present: Vec<bool> = batch
            .transfers
            .iter()
            .map(|t| existing.contains(&t.id))
            .collect();
        if let Some(results) = &batch.results {
            for ((t, result), present) in batch.transfers.iter().zip(results).zip(&present) {
                assert_eq!(
                    *present,
                    result == "created",
                    "acknowledged transfer {} ({result})",
                    t.id
                );
            }
        }
        let mut chain_start = 0;
        for (index, t) in batch.transfers.iter().enumerate() {
            if !t.linked {
                let chain = &present[chain_start..=index];
                assert!(
                    chain.iter().all(|p| *p == chain[0]),
                    "chain split at {}",
                    t.id
                );
                chain_start = index + 1;
            }
        }
    }
}

/// Per account: [debits_posted, credits_posted, debits_pending, credits_pending] that the
/// stored transfers add up to.
fn expected_balances(sent: &[Sent], existing: &BTreeSet<u128>) -> BTreeMap<u128, [u128; 4]> {
    let stored = sent
        .iter()
        .flat_map(|b| b.transfers.iter())
        .filter(|t| existing.contains(&t.id));
    let mut resolution: BTreeMap<u128, Kind> = BTreeMap::new();
    let mut balances: BTreeMap<u128, [u128; 4]> = BTreeMap::new();
    let stored: Vec<&Planned> = stored.collect();
    for t in &stored {
        if let Kind::Post { pending_id } | Kind::Void { pending_id } = t.kind {
            assert!(
                resolution.insert(pending_id, t.kind).is_none(),
                "pending {pending_id} resolved twice"
            );
        }
    }
    for t in stored
        .iter()
        .filter(|t| matches!(t.kind, Kind::Single | Kind::Pending))
    {
        let (posted, pending) = match (t.kind, resolution.get(&t.id)) {
            (Kind::Single, _) | (_, Some(Kind::Post { .. })) => (t.amount, 0),
            (_, Some(Kind::Void { .. })) => (0, 0),
            _ => (0, t.amount),
        };
        let debit = balances.entry(t.debit).or_default();
        debit[0] += posted;
        debit[2] += pending;
        let credit = balances.entry(t.credit).or_default();
        credit[1] += posted;
        credit[3] += pending;
    }
    balances
}

fn verify(node: &Node, sent: &[Sent]) {
    let existing = existing_ids(node);
    verify_batches(sent, &existing);
    let expected = expected_balances(sent, &existing);
    for account in 1..=ACCOUNTS {
        let (_, record) = node.get(&format!("/v1/accounts/{account}"));
        let actual = [
            "debits_posted",
            "credits_posted",
            "debits_pending",
            "credits_pending",
        ]
        .map(|field| {
            record[field]
                .as_str()
                .expect(field)
                .parse::<u128>()
                .expect("u128")
        });
        assert_eq!(
            actual,
            expected.get(&account).copied().unwrap_or_default(),
            "account {account}"
        );
    }
    assert_balanced(node);
}

#[test]
fn acknowledged_transfers_survive_sigkill() {
    let (seed, kills) = common::crash_schedule("crash test", KILLS);
    let dir = TempDir::new("crash");
    let mut random = Random(seed | 1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut next_id: u128 = 1_000;
    // Batches across partitions run in shares and by the coordinator, as counted just
    // before each kill.
    let mut across = [0u64; 2];
    for round in 0..kills {
        let node = Node::try_start(&dir.0, common::crash_round_flags(round)).expect("kassa start");
        let accounts: Vec<String> = (1..=ACCOUNTS)
            .map(|id| account_json(id, ledger_of(id) as u32, &[]))
            .collect();
        let (status, _) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
        assert_eq!(status, 200);
        verify(&node, &log.lock().expect("log"));
        let stop = Arc::new(AtomicBool::new(false));
        let (http, log_loader, stop_loader) = (node.http, log.clone(), stop.clone());
        let loader_seed = seed.wrapping_add(u64::from(round));
        let loader =
            std::thread::spawn(move || load(http, next_id, loader_seed, log_loader, stop_loader));
        std::thread::sleep(Duration::from_millis(50 + random.below(900)));
        common::add_batches_across(&node, &mut across);
        node.kill();
        stop.store(true, Ordering::Relaxed);
        next_id = loader.join().expect("loader");
    }
    let node = Node::start(&dir.0);
    let sent = log.lock().expect("log");
    let acknowledged = sent.iter().filter(|b| b.results.is_some()).count();
    let resolutions = sent
        .iter()
        .flat_map(|b| &b.transfers)
        .filter(|t| matches!(t.kind, Kind::Post { .. } | Kind::Void { .. }))
        .count();
    eprintln!(
        "{acknowledged} batches acknowledged, {} cut off by a kill, {resolutions} posts/voids sent",
        sent.len() - acknowledged
    );
    eprintln!(
        "{} batches ran in shares and {} through the coordinator before the kills",
        across[0], across[1]
    );
    let checkpointed = common::partitions_checkpointed(&dir.0);
    eprintln!("{checkpointed} partitions hold a checkpoint");
    assert!(acknowledged > 0, "the loader was never acknowledged");
    if kills > 1 {
        assert!(checkpointed > 0, "no partition took a checkpoint");
    }
    if common::test_placement().is_none_or(|placement| placement == "ledger") {
        assert!(across[0] > 0, "no batch ran in shares");
    }
    verify(&node, &sent);
}
