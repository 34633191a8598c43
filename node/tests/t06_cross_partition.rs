//! Transfers and linked chains between accounts of different partitions, owned by different
//! cores, on the real binary (16 partitions placed by id, 2 cores; placement by ledger, the
//! default since 2026-12-05, runs these batches in one partition: `t15_placement_by_ledger.rs` tests it and its
//! global path): results exactly as one ledger would give them, all-or-nothing chains, limits that see the batch's earlier events, two-phase transfers
//! posted, voided and expired across partitions, reads that never see half a transaction, and a
//! crash right after a decision that the restart completes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{account_json, assert_balanced, results, transfer_json, wait_until, Node, TempDir};
use kassa_node::partitioning::partition_of;
use serde_json::Value;

const PARTITIONS: u32 = 16;

/// `count` account ids, each in a different partition, alternating between the two cores
/// (partition `p` lives on core `p mod 2`).
fn ids_on_distinct_partitions(count: usize) -> Vec<u128> {
    let mut ids: Vec<u128> = Vec::new();
    let mut id = 1000u128;
    while ids.len() < count {
        id += 1;
        let partition = partition_of(id, PARTITIONS);
        let taken = ids
            .iter()
            .any(|i| partition_of(*i, PARTITIONS) == partition);
        let core_wanted = ids.len() as u32 % 2;
        if !taken && partition % 2 == core_wanted {
            ids.push(id);
        }
    }
    ids
}

fn balances(node: &Node, id: u128) -> [u128; 4] {
    let (status, account) = node.get(&format!("/v1/accounts/{id}"));
    assert_eq!(status, 200, "{account}");
    let field = |name: &str| -> u128 { account[name].as_str().expect(name).parse().expect(name) };
    [
        field("debits_pending"),
        field("debits_posted"),
        field("credits_pending"),
        field("credits_posted"),
    ]
}

fn post_transfers(node: &Node, transfers: &[String]) -> Vec<String> {
    let (status, reply) = node.post("/v1/transfers", &format!("[{}]", transfers.join(",")));
    assert_eq!(status, 200, "{reply}");
    results(&reply)
}

fn pending_json(id: u128, debit: u128, credit: u128, amount: u128, timeout: u32) -> String {
    format!(
        r#"{{"id":"{id}","debit_account_id":"{debit}","credit_account_id":"{credit}","amount":"{amount}","ledger":1,"code":1,"timeout":{timeout},"flags":["pending"]}}"#
    )
}

/// A post (of the whole amount) or a void of a pending transfer, naming nothing else.
fn resolve_json(id: u128, pending_id: u128, flag: &str) -> String {
    let amount = if flag == "post_pending_transfer" {
        u128::MAX
    } else {
        0
    };
    format!(
        r#"{{"id":"{id}","pending_id":"{pending_id}","debit_account_id":"0","credit_account_id":"0","amount":"{amount}","ledger":0,"code":0,"flags":["{flag}"]}}"#
    )
}

/// A node of 16 partitions placed by id, so that accounts of one ledger live apart.
fn start_by_id(dir: &TempDir) -> Node {
    common::format_placed(&dir.0, PARTITIONS, "id");
    Node::start(&dir.0)
}

fn setup(dir: &TempDir) -> (Node, Vec<u128>) {
    let node = start_by_id(dir);
    let (_, ready) = node.get("/ready");
    assert_eq!(
        ready["partitions"], PARTITIONS,
        "the default is 16 partitions"
    );
    let ids = ids_on_distinct_partitions(4);
    // The first account may not go below zero: its debits must not exceed its credits.
    let accounts = [
        account_json(ids[0], 1, &["debits_must_not_exceed_credits"]),
        account_json(ids[1], 1, &[]),
        account_json(ids[2], 1, &["history"]),
        account_json(ids[3], 1, &[]),
    ];
    let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(results(&reply), ["created"; 4]);
    (node, ids)
}

#[test]
fn transfers_and_chains_across_partitions_are_atomic_and_exact() {
    let dir = TempDir::new("cross");
    let (node, ids) = setup(&dir);
    let [a, b, c, d] = [ids[0], ids[1], ids[2], ids[3]];

    // Within one batch, a later event sees the earlier ones on other partitions: `a` may only
    // pay once it has been credited.
    let batch = [
        transfer_json(1, a, b, 10, &[]),
        transfer_json(2, b, a, 100, &[]),
        transfer_json(3, a, c, 60, &[]),
        transfer_json(4, a, d, 41, &[]),
    ];
    assert_eq!(
        post_transfers(&node, &batch),
        ["exceeds_credits", "created", "created", "exceeds_credits"]
    );
    assert_eq!(balances(&node, a), [0, 60, 0, 100]);
    assert_eq!(balances(&node, b), [0, 100, 0, 0]);
    assert_eq!(balances(&node, c), [0, 0, 0, 60]);

    // A linked chain across four partitions whose last event fails leaves nothing behind.
    let chain = [
        transfer_json(10, c, d, 5, &["linked"]),
        transfer_json(11, d, b, 5, &["linked"]),
        transfer_json(12, a, b, 1000, &[]),
    ];
    assert_eq!(
        post_transfers(&node, &chain),
        [
            "linked_event_failed",
            "linked_event_failed",
            "exceeds_credits"
        ]
    );
    assert_eq!(balances(&node, d), [0, 0, 0, 0]);
    assert_eq!(node.get("/v1/transfers/10").0, 404);
    // The same chain, fixed, applies whole.
    let chain = [
        transfer_json(13, c, d, 5, &["linked"]),
        transfer_json(14, d, b, 5, &["linked"]),
        transfer_json(15, a, b, 40, &[]),
    ];
    assert_eq!(post_transfers(&node, &chain), ["created"; 3]);
    assert_eq!(balances(&node, a), [0, 100, 0, 100]);
    assert_eq!(balances(&node, d), [0, 5, 0, 5]);

    // Idempotency across partitions: the same events again are `exists` (in a chain, an
    // existing event fails the chain, as in one ledger).
    assert_eq!(post_transfers(&node, &batch[1..3]), ["exists", "exists"]);
    assert_eq!(
        post_transfers(&node, &chain),
        ["exists", "linked_event_failed", "linked_event_failed"]
    );

    // Reads: an account's transfers come from its own partition, wherever their ids live;
    // a query returns each transfer once; history balances follow each transfer.
    let (_, listed) = node.get(&format!("/v1/accounts/{c}/transfers"));
    let listed: Vec<&str> = listed
        .as_array()
        .expect("transfers")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, ["3", "13"]);
    let (_, history) = node.get(&format!("/v1/accounts/{c}/balances"));
    let history = history.as_array().expect("balances");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["credits_posted"], "60");
    assert_eq!(history[1]["debits_posted"], "5");
    let (_, all) = node.post("/v1/transfers/query", r#"{"limit":100}"#);
    let mut all: Vec<&str> = all
        .as_array()
        .expect("transfers")
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    all.sort_unstable();
    assert_eq!(all, ["13", "14", "15", "2", "3"]);
    assert_balanced(&node);
}

#[test]
fn two_phase_transfers_across_partitions_post_void_and_expire() {
    let dir = TempDir::new("cross-2pc");
    let (node, ids) = setup(&dir);
    let [a, b, c, d] = [ids[0], ids[1], ids[2], ids[3]];
    assert_eq!(
        post_transfers(&node, &[transfer_json(1, b, a, 1000, &[])]),
        ["created"]
    );
    let pendings = [
        pending_json(20, a, c, 100, 0),
        pending_json(21, a, d, 200, 0),
        pending_json(22, b, c, 300, 1),
    ];
    assert_eq!(post_transfers(&node, &pendings), ["created"; 3]);
    assert_eq!(balances(&node, a), [300, 0, 0, 1000]);
    // The limit counts reserved amounts: `a` has 1000 credited, 300 reserved.
    assert_eq!(
        post_transfers(&node, &[transfer_json(2, a, b, 701, &[])]),
        ["exceeds_credits"]
    );
    // Post one (its accounts come from the pending transfer, on other partitions), void one.
    let resolve = [
        resolve_json(30, 20, "post_pending_transfer"),
        resolve_json(31, 21, "void_pending_transfer"),
    ];
    assert_eq!(post_transfers(&node, &resolve), ["created"; 2]);
    assert_eq!(balances(&node, a), [0, 100, 0, 1000]);
    assert_eq!(balances(&node, c)[3], 100);
    assert_eq!(balances(&node, d), [0, 0, 0, 0]);
    assert_eq!(
        post_transfers(&node, &[resolve_json(32, 20, "void_pending_transfer")]),
        ["pending_transfer_already_posted"]
    );
    // Transfer 22 times out after a second: the coordinator expires it across partitions.
    let expired = wait_until(Duration::from_secs(10), || {
        balances(&node, b)[0] == 0 && balances(&node, c)[2] == 0
    });
    assert!(
        expired,
        "the cross-partition pending transfer did not expire"
    );
    assert_eq!(
        post_transfers(&node, &[resolve_json(33, 22, "post_pending_transfer")]),
        ["pending_transfer_expired"]
    );
    assert_balanced(&node);
}

#[test]
fn concurrent_cross_partition_writers_keep_every_ledger_balanced() {
    let dir = TempDir::new("cross-load");
    let node = start_by_id(&dir);
    let accounts: Vec<String> = (1..=32).map(|id| account_json(id, 1, &[])).collect();
    let (status, _) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!(status, 200);
    let http = node.http;
    let writers: Vec<_> = (0..4u128)
        .map(|writer| {
            std::thread::spawn(move || {
                let mut expected: BTreeMap<u128, (u128, u128)> = BTreeMap::new();
                for round in 0..25u128 {
                    let mut batch = Vec::new();
                    for event in 0..8u128 {
                        let id = 1_000_000 * (writer + 1) + round * 8 + event;
                        let debit = 1 + (id * 7) % 32;
                        let credit = 1 + (id * 13 + 5) % 32;
                        if debit == credit {
                            continue;
                        }
                        batch.push(transfer_json(id, debit, credit, id % 97 + 1, &[]));
                        expected.entry(debit).or_default().0 += id % 97 + 1;
                        expected.entry(credit).or_default().1 += id % 97 + 1;
                    }
                    let body = format!("[{}]", batch.join(","));
                    let (status, reply) =
                        common::request(http, "POST", "/v1/transfers", Some(&body));
                    assert_eq!(status, 200, "{reply}");
                    assert!(results(&reply).iter().all(|r| r == "created"), "{reply}");
                }
                expected
            })
        })
        .collect();
    let mut expected: BTreeMap<u128, (u128, u128)> = BTreeMap::new();
    for writer in writers {
        for (id, (debits, credits)) in writer.join().expect("writer") {
            let entry = expected.entry(id).or_default();
            entry.0 += debits;
            entry.1 += credits;
        }
    }
    for (id, (debits, credits)) in expected {
        let [_, debits_posted, _, credits_posted] = balances(&node, id);
        assert_eq!(
            (debits_posted, credits_posted),
            (debits, credits),
            "account {id}"
        );
    }
    assert_balanced(&node);
}

/// Sums of one ledger's accounts read while cross-partition batches commit: every sum, by an
/// HTTP query over all partitions or a wire lookup of all the accounts, sees whole transactions
/// only (debits = credits). Before reads across partitions went through the coordinator, most
/// sums taken under this load were unbalanced.
#[test]
fn reads_across_partitions_never_see_half_a_transaction() {
    let dir = TempDir::new("atomic-reads");
    let node = start_by_id(&dir);
    let ids: Vec<u128> = (1..=64).collect();
    let accounts: Vec<String> = ids.iter().map(|id| account_json(*id, 1, &[])).collect();
    let (status, _) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!(status, 200);
    let http = node.http;
    let writers: Vec<_> = (0..2u128)
        .map(|writer| {
            std::thread::spawn(move || {
                for round in 0..100u128 {
                    let batch: Vec<String> = (0..200u128)
                        .map(|event| {
                            let id = 10_000_000 * (writer + 1) + round * 200 + event;
                            let debit = 1 + (id * 7) % 64;
                            let credit = 1 + (debit + 1 + id % 61) % 64;
                            transfer_json(id, debit, credit, id % 89 + 1, &[])
                        })
                        .collect();
                    let body = format!("[{}]", batch.join(","));
                    let (status, reply) =
                        common::request(http, "POST", "/v1/transfers", Some(&body));
                    assert_eq!(status, 200, "{reply}");
                    assert!(results(&reply).iter().all(|r| r == "created"), "{reply}");
                }
            })
        })
        .collect();
    let mut client = kassa_wire::client::BlockingClient::connect(
        kassa_wire::client::ClientConfig::new(vec![node.wire], 0),
    )
    .expect("connect");
    let wanted: Vec<kassa_wire::AccountId> =
        ids.iter().map(|id| kassa_wire::AccountId(*id)).collect();
    let (mut sums, mut unbalanced) = (0, Vec::new());
    while !writers.iter().all(|w| w.is_finished()) {
        let [debits, credits, _, _] = common::ledger_totals(&node)[&1];
        if debits != credits {
            unbalanced.push(format!("query: debits {debits:?}, credits {credits:?}"));
        }
        let found = client.lookup_accounts(&wanted).expect("lookup_accounts");
        assert_eq!(found.len(), ids.len());
        let debits: u128 = found.iter().map(|a| a.debits_posted).sum();
        let credits: u128 = found.iter().map(|a| a.credits_posted).sum();
        if debits != credits {
            unbalanced.push(format!("lookup: debits {debits}, credits {credits}"));
        }
        sums += 2;
    }
    for writer in writers {
        writer.join().expect("writer");
    }
    eprintln!("{sums} sums read while the writers ran");
    assert!(sums >= 2, "the readers ran while the writers did");
    assert!(
        unbalanced.is_empty(),
        "{} of {sums} sums: {unbalanced:?}",
        unbalanced.len()
    );
    assert_balanced(&node);
}

/// Sets up accounts, moves 500 from `b` to `a` (transfer 1), and restarts the node with
/// `KASSA_FAULT=fault`; returns it with `a` and `c`.
fn restart_with_fault(dir: &TempDir, fault: &str) -> (Node, u128, u128) {
    let (node, ids) = setup(dir);
    let [a, b, c, _] = [ids[0], ids[1], ids[2], ids[3]];
    assert_eq!(
        post_transfers(&node, &[transfer_json(1, b, a, 500, &[])]),
        ["created"]
    );
    assert!(node.stop().success());
    let env = [("KASSA_FAULT", fault)];
    let node = Node::try_start_with_env(&dir.0, &[], &env).expect("start with the fault");
    (node, a, c)
}

#[test]
fn a_crash_right_after_a_decision_is_completed_by_the_restart() {
    let dir = TempDir::new("cross-crash");
    // The node aborts once the decision for transfer 2 is durable, before the other
    // partitions applied it: the client gets no answer.
    let (node, a, c) = restart_with_fault(&dir, "abort-after-decide");
    let body = format!("[{}]", transfer_json(2, a, c, 70, &[]));
    let answered = common::request_raw(node.http, "POST", "/v1/transfers", Some(body.as_bytes()));
    assert!(
        answered.as_ref().is_err() || answered.as_ref().is_ok_and(|(status, _)| *status == 0),
        "the node answered: {answered:?}"
    );
    let aborted = |node: &Node| {
        node.stderr_text()
            .contains("aborting after a durable decision")
    };
    assert!(wait_until(Duration::from_secs(10), || aborted(&node)));
    node.kill();

    // The restart delivers the decision everywhere before it serves.
    let node = Node::start(&dir.0);
    let delivered = |node: &Node| {
        node.stderr_text()
            .contains("delivered cross-partition decisions")
    };
    assert!(wait_until(Duration::from_secs(10), || delivered(&node)));
    assert_eq!(balances(&node, a), [0, 70, 0, 500]);
    assert_eq!(balances(&node, c), [0, 0, 0, 70]);
    let (status, transfer): (u16, Value) = node.get("/v1/transfers/2");
    assert_eq!(status, 200, "{transfer}");
    assert_eq!(
        post_transfers(&node, &[transfer_json(2, a, c, 70, &[])]),
        ["exists"]
    );
    assert_balanced(&node);
}

#[test]
fn an_answer_given_before_the_applies_survives_a_crash() {
    let dir = TempDir::new("cross-answered-crash");
    // The client is answered once the decision is durable; the node aborts before any other
    // partition applied it.
    let (node, a, c) = restart_with_fault(&dir, "abort-after-answer");
    assert_eq!(
        post_transfers(&node, &[transfer_json(2, a, c, 70, &[])]),
        ["created"]
    );
    let aborted = |node: &Node| node.stderr_text().contains("aborting before the applies");
    assert!(wait_until(Duration::from_secs(10), || aborted(&node)));
    node.kill();

    // What was acknowledged is there after the restart.
    let node = Node::start(&dir.0);
    assert_eq!(balances(&node, a), [0, 70, 0, 500]);
    assert_eq!(balances(&node, c), [0, 0, 0, 70]);
    let (status, transfer): (u16, Value) = node.get("/v1/transfers/2");
    assert_eq!(status, 200, "{transfer}");
    assert_balanced(&node);
}

/// A fault after the decision is durable (here an `Apply` that cannot be written) stops the
/// node at once: the partitions stay locked and only a restart can finish the transaction,
/// which then happened, whole. Before, the node ran on with those partitions locked.
#[test]
fn a_decided_transaction_that_cannot_be_applied_stops_the_node() {
    let dir = TempDir::new("cross-apply-fails");
    let (mut node, a, c) = restart_with_fault(&dir, "apply-fails");
    let body = format!("[{}]", transfer_json(2, a, c, 70, &[]));
    // The client may or may not have its answer before the stop; either way it happened.
    let _ = common::request_raw(node.http, "POST", "/v1/transfers", Some(body.as_bytes()));
    assert!(wait_until(Duration::from_secs(10), || !node.alive()));
    let status = node.child.wait().expect("status");
    assert_eq!(status.code(), Some(kassa_node::fail_stop::EXIT_FAULT));
    assert!(node
        .stderr_text()
        .contains("was decided but could not be finished"));
    drop(node);

    let node = Node::start(&dir.0);
    assert_eq!(balances(&node, a), [0, 70, 0, 500]);
    assert_eq!(balances(&node, c), [0, 0, 0, 70]);
    assert_balanced(&node);
}

/// A decision whose write reports a failure may be durable all the same: its outcome is
/// unknown, so the node never tells the client "not done" (which a retry with new ids would
/// double); it stops, and the restart finds and finishes the decision.
#[test]
fn a_failed_decision_write_is_never_reported_as_not_done() {
    let dir = TempDir::new("cross-decide-fails");
    let (mut node, a, c) = restart_with_fault(&dir, "decide-write-fails");
    let body = format!("[{}]", transfer_json(2, a, c, 70, &[]));
    let answered = common::request_raw(node.http, "POST", "/v1/transfers", Some(body.as_bytes()));
    assert!(
        answered.as_ref().is_err() || answered.as_ref().is_ok_and(|(status, _)| *status == 0),
        "the client was answered: {answered:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || !node.alive()));
    let status = node.child.wait().expect("status");
    assert_eq!(status.code(), Some(kassa_node::fail_stop::EXIT_FAULT));
    drop(node);

    let node = Node::start(&dir.0);
    assert_eq!(balances(&node, a), [0, 70, 0, 500]);
    assert_eq!(balances(&node, c), [0, 0, 0, 70]);
    assert_balanced(&node);
}
