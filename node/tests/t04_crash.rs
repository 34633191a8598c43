//! Crash test: a loader sends transfers (single-phase, linked chains, pending then post) while
//! the node is killed with SIGKILL at random moments, again and again. After every restart:
//! every acknowledged transfer is present exactly once, with the result it was acknowledged
//! with; nothing unacknowledged is half-applied (a batch is one log entry, so its transfers are
//! all there or none, and linked chains are whole); every account's balances are exactly the
//! sums of the transfers that exist; per ledger, debits equal credits.
//!
//! Bounded: `KILLS` rounds (`KASSA_CRASH_KILLS` to change), each killed within a second.
//! The seed is printed; `KASSA_CRASH_SEED` replays it.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{account_json, assert_balanced, request_raw, Node, TempDir};
use serde_json::Value;

const ACCOUNTS: u128 = 12;
const KILLS: u32 = 6;
const BATCH_SIZE: u128 = 40;

/// A batch the loader sent: its transfers, and the results if it was acknowledged.
struct Sent {
    transfers: Vec<(u128, u128, u128, u128, bool)>, // id, debit, credit, amount, linked-to-next
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

fn batch_json(transfers: &[(u128, u128, u128, u128, bool)]) -> String {
    let records: Vec<String> = transfers
        .iter()
        .map(|(id, debit, credit, amount, linked)| {
            let flags = if *linked { r#"["linked"]"# } else { "[]" };
            format!(
                r#"{{"id":"{id}","debit_account_id":"{debit}","credit_account_id":"{credit}","amount":"{amount}","ledger":1,"code":1,"flags":{flags}}}"#
            )
        })
        .collect();
    format!("[{}]", records.join(","))
}

/// Sends batches until the node stops answering; records what was sent and acknowledged.
fn load(
    node_http: std::net::SocketAddr,
    next_id: u128,
    seed: u64,
    log: Arc<Mutex<Vec<Sent>>>,
    stop: Arc<AtomicBool>,
) -> u128 {
    let mut random = Random(seed | 1);
    let mut id = next_id;
    while !stop.load(Ordering::Relaxed) {
        let mut transfers = Vec::new();
        for index in 0..BATCH_SIZE {
            let debit = 1 + u128::from(random.below(ACCOUNTS as u64));
            let credit = 1 + (debit + u128::from(random.below(ACCOUNTS as u64 - 1))) % ACCOUNTS;
            // Some transfers fail on purpose (same account) so that chains break.
            let credit = if random.below(50) == 0 { debit } else { credit };
            let linked = index + 1 < BATCH_SIZE && random.below(4) == 0;
            transfers.push((id, debit, credit, 1 + u128::from(random.below(100)), linked));
            id += 1;
        }
        let body = batch_json(&transfers);
        let reply = request_raw(node_http, "POST", "/v1/transfers", Some(body.as_bytes()));
        let results = match reply {
            Ok((200, text)) => serde_json::from_str::<Value>(&text).ok().map(|v| {
                v.as_array()
                    .expect("results")
                    .iter()
                    .map(|r| r["result"].as_str().expect("name").to_string())
                    .collect()
            }),
            _ => None,
        };
        let acknowledged = results.is_some();
        log.lock().expect("log").push(Sent { transfers, results });
        if !acknowledged {
            break;
        }
    }
    id
}

/// Every transfer id the node holds, paging through `POST /v1/transfers/query`.
fn existing_ids(node: &Node) -> std::collections::BTreeSet<u128> {
    let mut ids = std::collections::BTreeSet::new();
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

/// Checks everything the loader sent against the restarted node; returns balances expected.
fn verify(node: &Node, sent: &[Sent]) {
    let mut expected: BTreeMap<u128, (u128, u128)> = BTreeMap::new();
    let existing = existing_ids(node);
    for batch in sent {
        let present: Vec<bool> = batch
            .transfers
            .iter()
            .map(|t| existing.contains(&t.0))
            .collect();
        match &batch.results {
            Some(results) => {
                for (transfer, (result, present)) in
                    batch.transfers.iter().zip(results.iter().zip(&present))
                {
                    assert_eq!(
                        *present,
                        result == "created",
                        "acknowledged transfer {} ({result})",
                        transfer.0
                    );
                }
            }
            None => {
                // Unacknowledged: applied whole or not at all; chains never split.
                let mut chain_start = 0;
                for (index, transfer) in batch.transfers.iter().enumerate() {
                    if !transfer.4 {
                        let chain = &present[chain_start..=index];
                        assert!(
                            chain.iter().all(|p| *p == chain[0]),
                            "chain split at {}",
                            transfer.0
                        );
                        chain_start = index + 1;
                    }
                }
            }
        }
        for (transfer, present) in batch.transfers.iter().zip(present) {
            if present {
                expected.entry(transfer.1).or_default().0 += transfer.3;
                expected.entry(transfer.2).or_default().1 += transfer.3;
            }
        }
    }
    for account in 1..=ACCOUNTS {
        let (_, record) = node.get(&format!("/v1/accounts/{account}"));
        let (debits, credits) = expected.get(&account).copied().unwrap_or_default();
        assert_eq!(
            record["debits_posted"],
            debits.to_string(),
            "account {account} debits"
        );
        assert_eq!(
            record["credits_posted"],
            credits.to_string(),
            "account {account} credits"
        );
    }
    assert_balanced(node);
}

#[test]
fn acknowledged_transfers_survive_sigkill() {
    let seed: u64 = std::env::var("KASSA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    let kills: u32 = std::env::var("KASSA_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(KILLS);
    eprintln!("crash test seed {seed} (KASSA_CRASH_SEED to replay), {kills} kills");
    let dir = TempDir::new("crash");
    let mut random = Random(seed | 1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut next_id: u128 = 1_000;
    for round in 0..kills {
        let node = Node::start(&dir.0);
        let accounts: Vec<String> = (1..=ACCOUNTS).map(|id| account_json(id, 1, &[])).collect();
        let (status, _) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
        assert_eq!(status, 200);
        verify(&node, &log.lock().expect("log"));
        let stop = Arc::new(AtomicBool::new(false));
        let (http, log_loader, stop_loader) = (node.http, log.clone(), stop.clone());
        let loader_seed = seed.wrapping_add(u64::from(round));
        let loader =
            std::thread::spawn(move || load(http, next_id, loader_seed, log_loader, stop_loader));
        std::thread::sleep(Duration::from_millis(50 + random.below(900)));
        node.kill();
        stop.store(true, Ordering::Relaxed);
        next_id = loader.join().expect("loader");
    }
    let node = Node::start(&dir.0);
    let sent = log.lock().expect("log");
    assert!(
        sent.iter().filter(|b| b.results.is_some()).count() > 0,
        "the loader was never acknowledged"
    );
    verify(&node, &sent);
}
