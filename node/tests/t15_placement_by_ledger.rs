//! Placement by ledger on the real binary (`kassa format --placement ledger`, 16 partitions, 2
//! cores), side by side with a node of one partition that runs the same requests: every
//! result and every record must be what one ledger gives. A batch of one ledger runs in the
//! ledger's partition alone (its new ids claimed at their homes); a batch that mixes ledgers
//! runs in shares (a post or void of ledger 0 in its pending transfer's partition, the events
//! of an id another ledger's partition holds in that partition), or takes the global path
//! when it names another ledger's account. Both are in the history below, through
//! the HTTP API and through the wire protocol (sessions in the batch's partition and not),
//! across a restart, and under concurrent writers, with every ledger balanced.

mod common;

use std::collections::BTreeMap;

use common::{assert_balanced, results, Node, TempDir};
use kassa_shard::ledger_partition;
use kassa_wire::client::{BlockingClient, ClientConfig};
use kassa_wire::{Account, AccountId, Transfer, TransferFlags, TransferId};
use serde_json::Value;

const PARTITIONS: u32 = 16;
const LEDGERS: u32 = 5;
const ACCOUNTS: u128 = 40;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The ledger account `id` is created in.
fn ledger_of(id: u128) -> u32 {
    1 + (id % u128::from(LEDGERS)) as u32
}

fn account_json(id: u128, ledger: u32, flags: &[&str]) -> String {
    let flags: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        r#"{{"id":"{id}","ledger":{ledger},"code":1,"flags":[{}]}}"#,
        flags.join(",")
    )
}

#[allow(clippy::too_many_arguments)]
fn transfer_json(
    id: u128,
    debit: u128,
    credit: u128,
    amount: u128,
    pending_id: u128,
    ledger: u32,
    code: u16,
    flags: &[&str],
) -> String {
    let flags: Vec<String> = flags.iter().map(|f| format!("\"{f}\"")).collect();
    format!(
        r#"{{"id":"{id}","debit_account_id":"{debit}","credit_account_id":"{credit}","amount":"{amount}","pending_id":"{pending_id}","ledger":{ledger},"code":{code},"flags":[{}]}}"#,
        flags.join(",")
    )
}

/// Two nodes: one partition (the reference) and 16 placed by ledger.
fn start_pair(reference: &TempDir, placed: &TempDir) -> (Node, Node) {
    common::format(&reference.0, 1);
    format_by_ledger(&placed.0);
    (Node::start(&reference.0), Node::start(&placed.0))
}

fn format_by_ledger(dir: &std::path::Path) {
    common::format_placed(dir, PARTITIONS, "ledger");
}

/// Account `id`'s posted debits and credits.
fn posted(node: &Node, id: u128) -> (u128, u128) {
    let (status, account) = node.get(&format!("/v1/accounts/{id}"));
    assert_eq!(status, 200, "{account}");
    let field = |name: &str| -> u128 { account[name].as_str().expect(name).parse().expect(name) };
    (field("debits_posted"), field("credits_posted"))
}

/// Posts `body` to both nodes and asserts the same result names.
fn both(reference: &Node, placed: &Node, path: &str, body: &str) -> Vec<String> {
    let (status, expected) = reference.post(path, body);
    assert_eq!(status, 200, "{expected}");
    let (status, actual) = placed.post(path, body);
    assert_eq!(status, 200, "{actual}");
    let (expected, actual) = (results(&expected), results(&actual));
    assert_eq!(actual, expected, "{path} {body}");
    expected
}

/// A record without its timestamp (each node has its own clock).
fn untimed(mut record: Value) -> Value {
    if let Some(object) = record.as_object_mut() {
        object.remove("timestamp");
    }
    record
}

/// Every account and transfer, and every account's transfers and balances, as the reference
/// has them.
fn assert_same_records(reference: &Node, placed: &Node, transfer_ids: &[u128]) {
    for id in 1..=ACCOUNTS + 2 {
        let path = format!("/v1/accounts/{id}");
        let (expected_status, expected) = reference.get(&path);
        let (status, actual) = placed.get(&path);
        assert_eq!(status, expected_status, "{path}");
        assert_eq!(untimed(actual), untimed(expected), "{path}");
        for listing in ["transfers", "balances"] {
            let path = format!("/v1/accounts/{id}/{listing}");
            let (_, expected) = reference.get(&path);
            let (_, actual) = placed.get(&path);
            let strip = |v: Value| -> Vec<Value> {
                let list = v.as_array().cloned().unwrap_or_default();
                list.into_iter().map(untimed).collect()
            };
            assert_eq!(strip(actual), strip(expected), "{path}");
        }
    }
    for id in transfer_ids {
        let path = format!("/v1/transfers/{id}");
        let (expected_status, expected) = reference.get(&path);
        let (status, actual) = placed.get(&path);
        assert_eq!(status, expected_status, "{path}");
        assert_eq!(untimed(actual), untimed(expected), "{path}");
    }
    assert_balanced(placed);
}

/// A history of accounts and transfers over five ledgers, batch by batch on both nodes.
/// Returns the transfer ids used.
fn run_history(reference: &Node, placed: &Node, rng: &mut Rng) -> Vec<u128> {
    // Accounts: one batch per ledger (runs in the ledger's partition), one mixing ledgers
    // (the global path), then ids again in another ledger (exists_with_different_ledger).
    for ledger in 1..=LEDGERS {
        let accounts: Vec<String> = (1..=ACCOUNTS)
            .filter(|id| ledger_of(*id) == ledger)
            .map(|id| {
                let flags: &[&str] = if id % 7 == 0 {
                    &["debits_must_not_exceed_credits"]
                } else if id % 11 == 0 {
                    &["history"]
                } else {
                    &[]
                };
                account_json(id, ledger, flags)
            })
            .collect();
        let created = both(
            reference,
            placed,
            "/v1/accounts",
            &format!("[{}]", accounts.join(",")),
        );
        assert!(created.iter().all(|r| r == "created"), "{created:?}");
    }
    let mixed = [
        account_json(ACCOUNTS + 1, 1, &[]),
        account_json(ACCOUNTS + 2, 2, &[]),
        account_json(3, 1, &[]),
        account_json(4, ledger_of(4), &[]),
    ];
    let answered = both(
        reference,
        placed,
        "/v1/accounts",
        &format!("[{}]", mixed.join(",")),
    );
    assert_eq!(
        answered,
        [
            "created",
            "created",
            "exists_with_different_ledger",
            "exists"
        ]
    );
    let again = [account_json(5, 2, &[]), account_json(6, ledger_of(6), &[])];
    let answered = both(
        reference,
        placed,
        "/v1/accounts",
        &format!("[{}]", again.join(",")),
    );
    assert_eq!(answered, ["exists_with_different_ledger", "exists"]);

    let mut next_id = 1_000u128;
    let mut used: Vec<u128> = Vec::new();
    let mut pending: Vec<u128> = Vec::new();
    let of_ledger = |ledger: u32| -> Vec<u128> {
        (1..=ACCOUNTS)
            .filter(|id| ledger_of(*id) == ledger)
            .collect()
    };
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..120 {
        let one_ledger = rng.chance(70);
        let batch_ledger = 1 + rng.below(u64::from(LEDGERS)) as u32;
        let size = 1 + rng.below(12);
        let mut events = Vec::new();
        for _ in 0..size {
            let ledger = if one_ledger {
                batch_ledger
            } else {
                1 + rng.below(u64::from(LEDGERS)) as u32
            };
            let accounts = of_ledger(ledger);
            let debit = accounts[rng.below(accounts.len() as u64) as usize];
            let mut credit = accounts[rng.below(accounts.len() as u64) as usize];
            if credit == debit {
                credit = accounts
                    [(accounts.iter().position(|a| *a == debit).unwrap() + 1) % accounts.len()];
            }
            let amount = 1 + u128::from(rng.below(100));
            let id = if rng.chance(6) && !used.is_empty() {
                used[rng.below(used.len() as u64) as usize]
            } else {
                next_id += 1;
                next_id
            };
            used.push(id);
            let kind = rng.below(100);
            let event = if kind < 60 {
                let linked: &[&str] = if rng.chance(10) { &["linked"] } else { &[] };
                transfer_json(id, debit, credit, amount, 0, ledger, 1, linked)
            } else if kind < 72 {
                pending.push(id);
                transfer_json(id, debit, credit, amount, 0, ledger, 1, &["pending"])
            } else if kind < 84 && !pending.is_empty() {
                // A post or void naming only its pending transfer (ledger 0): its partition
                // is found from the pending transfer.
                let of = pending[rng.below(pending.len() as u64) as usize];
                let (flag, amount) = if rng.chance(50) {
                    ("post_pending_transfer", u128::MAX)
                } else {
                    ("void_pending_transfer", 0)
                };
                transfer_json(id, 0, 0, amount, of, 0, 0, &[flag])
            } else if kind < 88 {
                // Accounts of two ledgers.
                let other = of_ledger(1 + ledger % LEDGERS);
                transfer_json(id, debit, other[0], amount, 0, ledger, 1, &[])
            } else if kind < 92 {
                // Accounts of one ledger, the transfer of another.
                transfer_json(id, debit, credit, amount, 0, 1 + ledger % LEDGERS, 1, &[])
            } else if kind < 96 {
                // An account that does not exist.
                transfer_json(id, debit, 999_999, amount, 0, ledger, 1, &[])
            } else {
                // Fails on its own fields (code 0), its id kept as failed.
                transfer_json(id, debit, credit, amount, 0, ledger, 0, &[])
            };
            events.push(event);
        }
        let body = format!("[{}]", events.join(","));
        for status in both(reference, placed, "/v1/transfers", &body) {
            *statuses.entry(status).or_default() += 1;
        }
    }
    eprintln!("statuses over the history: {statuses:?}");
    for wanted in [
        "created",
        "id_already_failed",
        "exists_with_different_flags",
        "pending_transfer_already_posted",
        "accounts_must_have_the_same_ledger",
        "transfer_must_have_the_same_ledger_as_accounts",
        "credit_account_not_found",
    ] {
        assert!(statuses.contains_key(wanted), "no {wanted}: {statuses:?}");
    }
    used.sort_unstable();
    used.dedup();
    used
}

#[test]
fn results_and_records_match_one_partition_over_a_mixed_history_and_a_restart() {
    let (reference_dir, placed_dir) = (TempDir::new("ledger-ref"), TempDir::new("ledger-placed"));
    let (reference, placed) = start_pair(&reference_dir, &placed_dir);
    let (_, ready) = placed.get("/ready");
    assert_eq!(ready["partitions"], PARTITIONS);
    let mut rng = Rng(0x5eed_0f1e_d9e5);
    let transfer_ids = run_history(&reference, &placed, &mut rng);
    assert_same_records(&reference, &placed, &transfer_ids);
    // Batches mixing ledgers ran in shares, and those that cannot (a record of another
    // ledger named, an id reused across ledgers) through the coordinator.
    let (in_shares, coordinated) = batches_across(&placed);
    assert!(
        in_shares > 0 && coordinated > 0,
        "{in_shares} {coordinated}"
    );

    // The claims are in the homes' logs: after a restart an id of one ledger is still
    // refused in another, and the history goes on with the same results.
    placed.stop();
    let placed = Node::start(&placed_dir.0);
    assert_same_records(&reference, &placed, &transfer_ids);
    // A transfer of another ledger than account 2's.
    let reused = *transfer_ids
        .iter()
        .find(|id| {
            let (status, t) = reference.get(&format!("/v1/transfers/{id}"));
            status == 200 && t["ledger"].as_u64() != Some(u64::from(ledger_of(2)))
        })
        .expect("a transfer of another ledger");
    let body = format!(
        "[{}]",
        transfer_json(reused, 2, 7, 1, 0, ledger_of(2), 1, &[])
    );
    let answered = both(&reference, &placed, "/v1/transfers", &body);
    assert!(answered[0].starts_with("exists"), "{answered:?}");
    let more = run_history_transfers_only(&reference, &placed, &mut rng);
    let mut all = transfer_ids;
    all.extend(more);
    assert_same_records(&reference, &placed, &all);

    // Through the wire protocol: one client whose session lives in ledger 1's partition (its
    // requests of ledger 1 run there alone) and one whose session lives elsewhere.
    let home = ledger_partition(1, PARTITIONS);
    let client_in = (1u128..)
        .find(|c| kassa_node::wire::session_partition(*c, PARTITIONS) == home)
        .expect("a client id");
    let client_out = (1u128..)
        .find(|c| kassa_node::wire::session_partition(*c, PARTITIONS) != home)
        .expect("a client id");
    let accounts_of_1: Vec<u128> = (1..=ACCOUNTS).filter(|id| ledger_of(*id) == 1).collect();
    // Odd rounds mix in a ledger of another partition: in shares, homed in ledger 1's.
    let other = (2..=LEDGERS)
        .find(|l| ledger_partition(*l, PARTITIONS) != home)
        .expect("a ledger in another partition");
    let accounts_of_other: Vec<u128> = (1..=ACCOUNTS)
        .filter(|id| ledger_of(*id) == other)
        .collect();
    let (in_shares_before, coordinated_before) = batches_across(&placed);
    for (client_id, first) in [(client_in, 50_000u128), (client_out, 60_000)] {
        let connect = |node: &Node| {
            let mut config = ClientConfig::new(vec![node.wire], 0);
            config.client_id = Some(client_id);
            BlockingClient::connect(config).expect("connect")
        };
        let (mut to_reference, mut to_placed) = (connect(&reference), connect(&placed));
        for round in 0..10u128 {
            let transfers: Vec<Transfer> = (0..20u128)
                .map(|event| {
                    let at = (round * 20 + event) as usize;
                    let (ledger, accounts) = if round % 2 == 1 && event % 3 == 1 {
                        (other, &accounts_of_other)
                    } else {
                        (1, &accounts_of_1)
                    };
                    Transfer {
                        id: TransferId(first + round * 20 + event),
                        debit_account_id: AccountId(accounts[at % accounts.len()]),
                        credit_account_id: AccountId(accounts[(at + 1) % accounts.len()]),
                        amount: 1 + event,
                        ledger,
                        code: 1,
                        flags: if event == 7 {
                            TransferFlags::PENDING
                        } else {
                            TransferFlags::default()
                        },
                        ..Transfer::default()
                    }
                })
                .collect();
            let expected = to_reference
                .create_transfers(&transfers)
                .expect("reference");
            let actual = to_placed.create_transfers(&transfers).expect("placed");
            let statuses = |r: &[kassa_wire::CreateTransferResult]| -> Vec<_> {
                r.iter().map(|r| r.status).collect()
            };
            assert_eq!(statuses(&actual), statuses(&expected), "round {round}");
        }
        let ids: Vec<AccountId> = accounts_of_1.iter().map(|id| AccountId(*id)).collect();
        let strip = |accounts: Vec<Account>| -> Vec<Account> {
            (accounts.into_iter())
                .map(|a| Account { timestamp: 0, ..a })
                .collect()
        };
        let expected = strip(to_reference.lookup_accounts(&ids).expect("lookup"));
        let actual = strip(to_placed.lookup_accounts(&ids).expect("lookup"));
        assert_eq!(actual, expected);
    }
    // The mixed rounds (5 per client) ran in shares, none through the coordinator.
    let (in_shares, coordinated) = batches_across(&placed);
    assert_eq!(in_shares - in_shares_before, 10);
    assert_eq!(coordinated, coordinated_before);
    assert_balanced(&placed);
}

/// More transfers after a restart (the accounts exist).
fn run_history_transfers_only(reference: &Node, placed: &Node, rng: &mut Rng) -> Vec<u128> {
    let mut ids = Vec::new();
    for round in 0..20u128 {
        let ledger = 1 + rng.below(u64::from(LEDGERS)) as u32;
        let accounts: Vec<u128> = (1..=ACCOUNTS)
            .filter(|id| ledger_of(*id) == ledger)
            .collect();
        let events: Vec<String> = (0..5u128)
            .map(|event| {
                let id = 20_000 + round * 5 + event;
                ids.push(id);
                let debit = accounts[(event as usize) % accounts.len()];
                let credit = accounts[(event as usize + 1) % accounts.len()];
                transfer_json(id, debit, credit, 3, 0, ledger, 1, &[])
            })
            .collect();
        both(
            reference,
            placed,
            "/v1/transfers",
            &format!("[{}]", events.join(",")),
        );
    }
    ids
}

/// Writers on every ledger at once, each batch of one ledger (so on several partitions and
/// both cores at once), with batches mixing ledgers among them: every account ends with
/// what its writers posted, and every ledger balances.
#[test]
fn concurrent_writers_on_many_ledgers_keep_every_ledger_balanced() {
    let dir = TempDir::new("ledger-load");
    format_by_ledger(&dir.0);
    let node = Node::start(&dir.0);
    let accounts: Vec<String> = (1..=ACCOUNTS)
        .map(|id| account_json(id, ledger_of(id), &[]))
        .collect();
    let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!(status, 200, "{reply}");
    assert!(results(&reply).iter().all(|r| r == "created"));
    let http = node.http;
    let writers: Vec<_> = (0..LEDGERS + 2)
        .map(|writer| {
            std::thread::spawn(move || {
                let mut expected: BTreeMap<u128, (u128, u128)> = BTreeMap::new();
                for round in 0..30u128 {
                    let mut batch = Vec::new();
                    for event in 0..10u128 {
                        // The last two writers mix ledgers in each batch (in shares), in
                        // different orders: their batches, homed at different partitions,
                        // reach shared partitions in different orders, and the younger gives
                        // way (`BusyIntents`).
                        let ledgers = u128::from(LEDGERS);
                        let ledger = if writer == LEDGERS {
                            1 + ((round + event) % ledgers) as u32
                        } else if writer == LEDGERS + 1 {
                            1 + ((round + 3 * event + 2) % ledgers) as u32
                        } else {
                            writer + 1
                        };
                        let of: Vec<u128> = (1..=ACCOUNTS)
                            .filter(|id| ledger_of(*id) == ledger)
                            .collect();
                        let id = 1_000_000 * u128::from(writer + 1) + round * 10 + event;
                        let debit = of[(id % of.len() as u128) as usize];
                        let credit = of[((id + 1) % of.len() as u128) as usize];
                        let amount = id % 97 + 1;
                        batch.push(transfer_json(id, debit, credit, amount, 0, ledger, 1, &[]));
                        expected.entry(debit).or_default().0 += amount;
                        expected.entry(credit).or_default().1 += amount;
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
        assert_eq!(posted(&node, id), (debits, credits), "account {id}");
    }
    // The accounts' batch and the mixing writers' batches ran in shares, concurrently with
    // the others.
    assert_eq!(batches_across(&node), (61, 0));
    // Once every participant resolved them, the partitions forget them (about a second).
    let forgotten = common::wait_until(std::time::Duration::from_secs(20), || {
        remembered(&node) == 0
    });
    assert!(forgotten, "{} still remembered", remembered(&node));
    assert_balanced(&node);
}

/// A post or void that names no ledger (TigerBeetle's ledger 0: its pending transfer's) runs
/// in shares in the partition that stores its pending transfer, or that of the batch's event
/// creating it; one whose pending transfer is nowhere takes the coordinator, which answers
/// `pending_transfer_not_found`.
#[test]
fn posts_and_voids_without_a_ledger_run_in_shares_where_their_pending_transfers_are() {
    let dir = TempDir::new("ledger-posts");
    format_by_ledger(&dir.0);
    let node = Node::start(&dir.0);
    let (a, b) = two_ledgers(&node);
    let post = |body: &str| -> Vec<String> {
        let (status, reply) = node.post("/v1/transfers", body);
        assert_eq!(status, 200, "{reply}");
        results(&reply)
    };
    let pending = [
        transfer_json(100, 1, 2, 10, 0, a, 1, &["pending"]),
        transfer_json(101, 3, 4, 20, 0, b, 1, &["pending"]),
    ];
    assert_eq!(post(&format!("[{}]", pending.join(","))), ["created"; 2]);
    assert_eq!(batches_across(&node), (2, 0));

    let mixed = [
        transfer_json(102, 0, 0, u128::MAX, 100, 0, 0, &["post_pending_transfer"]),
        transfer_json(103, 0, 0, 0, 101, 0, 0, &["void_pending_transfer"]),
        transfer_json(104, 3, 4, 5, 0, b, 1, &["pending"]),
        transfer_json(105, 0, 0, u128::MAX, 104, 0, 0, &["post_pending_transfer"]),
        transfer_json(106, 1, 2, 7, 0, a, 1, &[]),
    ];
    assert_eq!(post(&format!("[{}]", mixed.join(","))), ["created"; 5]);
    assert_eq!(batches_across(&node), (3, 0), "in shares");

    let nowhere = [
        transfer_json(107, 1, 2, 1, 0, a, 1, &[]),
        transfer_json(108, 0, 0, u128::MAX, 999, 0, 0, &["post_pending_transfer"]),
    ];
    let answered = post(&format!("[{}]", nowhere.join(",")));
    assert_eq!(answered, ["created", "pending_transfer_not_found"]);
    assert_eq!(batches_across(&node), (3, 1), "coordinated");

    assert_eq!(posted(&node, 1), (18, 0));
    assert_eq!(posted(&node, 2), (0, 18));
    assert_eq!(posted(&node, 3), (5, 0), "101 voided, 104 posted");
    assert_eq!(posted(&node, 4), (0, 5));
    assert_balanced(&node);
}

/// An id another ledger's partition holds, and events that name no ledger (TigerBeetle's
/// ledger 0: they fail on their fields or on their id), run without the coordinator, with
/// exactly one partition's results: the events of an id held elsewhere run in its holder,
/// which answers `exists*` from its record, and an event of ledger 0 runs with its chain or
/// its batch. Side by side with a node of one partition, over HTTP and the wire protocol.
#[test]
fn ids_held_elsewhere_and_events_of_ledger_0_run_without_the_coordinator() {
    let (reference_dir, placed_dir) = (TempDir::new("held-ref"), TempDir::new("held-placed"));
    let (reference, placed) = start_pair(&reference_dir, &placed_dir);
    let (a, b) = (1u32, 3u32);
    assert_ne!(
        ledger_partition(a, PARTITIONS),
        ledger_partition(b, PARTITIONS)
    );
    let accounts = [
        account_json(1, a, &[]),
        account_json(2, a, &[]),
        account_json(3, b, &[]),
        account_json(4, b, &[]),
        account_json(9, a, &["debits_must_not_exceed_credits"]),
    ];
    let created = both(
        &reference,
        &placed,
        "/v1/accounts",
        &format!("[{}]", accounts.join(",")),
    );
    assert_eq!(created, ["created"; 5]);
    let stored: Vec<String> = (100..106)
        .map(|id| transfer_json(id, 1, 2, 10, 0, a, 1, &[]))
        // Exceeds account 9's credits: a transient failure, which burns id 106.
        .chain([transfer_json(106, 9, 2, 10, 0, a, 1, &[])])
        .collect();
    let answered = both(
        &reference,
        &placed,
        "/v1/transfers",
        &format!("[{}]", stored.join(",")),
    );
    assert_eq!(answered[..6], ["created"; 6]);
    assert_eq!(answered[6], "exceeds_credits");
    let (in_shares, coordinated) = batches_across(&placed);

    // Ledger b's batch reusing ledger a's ids: those events run in a's partition.
    let reusing = [
        transfer_json(100, 3, 4, 10, 0, b, 1, &[]),
        transfer_json(200, 3, 4, 10, 0, b, 1, &[]),
        transfer_json(106, 3, 4, 10, 0, b, 1, &[]),
        transfer_json(101, 1, 2, 10, 0, a, 1, &[]),
        transfer_json(201, 4, 3, 5, 0, b, 1, &[]),
        // A retry of 105 in the wrong ledger, with 105's own accounts (of ledger a).
        transfer_json(105, 1, 2, 10, 0, b, 1, &[]),
    ];
    let answered = both(
        &reference,
        &placed,
        "/v1/transfers",
        &format!("[{}]", reusing.join(",")),
    );
    assert_eq!(
        answered,
        [
            "exists_with_different_debit_account_id",
            "created",
            "id_already_failed",
            "exists",
            "created",
            "exists_with_different_ledger"
        ]
    );
    // A chain of ledger b broken by a reused id: decided in rounds across the two partitions.
    let chain = [
        transfer_json(202, 3, 4, 1, 0, b, 1, &["linked"]),
        transfer_json(102, 3, 4, 1, 0, b, 1, &["linked"]),
        transfer_json(203, 3, 4, 1, 0, b, 1, &[]),
        transfer_json(204, 3, 4, 1, 0, b, 1, &[]),
    ];
    let answered = both(
        &reference,
        &placed,
        "/v1/transfers",
        &format!("[{}]", chain.join(",")),
    );
    assert_eq!(
        answered,
        [
            "linked_event_failed",
            "exists_with_different_flags",
            "linked_event_failed",
            "created"
        ]
    );
    // Events of ledger 0 that post nothing: alone, and with the events of a ledger.
    let zero = [
        transfer_json(103, 1, 2, 10, 0, 0, 1, &[]),
        transfer_json(300, 1, 2, 10, 0, 0, 1, &[]),
        transfer_json(301, 3, 4, 10, 0, b, 1, &["linked"]),
        transfer_json(302, 3, 4, 10, 0, 0, 1, &[]),
        transfer_json(303, 3, 4, 10, 0, b, 1, &[]),
    ];
    let answered = both(
        &reference,
        &placed,
        "/v1/transfers",
        &format!("[{}]", zero.join(",")),
    );
    assert_eq!(
        answered,
        [
            "exists_with_different_ledger",
            "ledger_must_not_be_zero",
            "linked_event_failed",
            "ledger_must_not_be_zero",
            "created"
        ]
    );
    let only_zero = [
        transfer_json(104, 1, 2, 10, 0, 0, 1, &[]),
        transfer_json(304, 1, 2, 10, 0, 0, 1, &[]),
    ];
    let answered = both(
        &reference,
        &placed,
        "/v1/transfers",
        &format!("[{}]", only_zero.join(",")),
    );
    assert_eq!(
        answered,
        ["exists_with_different_ledger", "ledger_must_not_be_zero"]
    );
    // Accounts: an id of ledger a's again in ledger b, and accounts of ledger 0.
    let accounts = [
        account_json(1, b, &[]),
        account_json(5, b, &[]),
        account_json(3, 0, &[]),
        account_json(6, 0, &["linked"]),
        account_json(7, a, &[]),
        account_json(8, 0, &[]),
    ];
    let answered = both(
        &reference,
        &placed,
        "/v1/accounts",
        &format!("[{}]", accounts.join(",")),
    );
    assert_eq!(
        answered,
        [
            "exists_with_different_ledger",
            "created",
            "exists_with_different_ledger",
            "ledger_must_not_be_zero",
            "linked_event_failed",
            "ledger_must_not_be_zero"
        ]
    );
    let (in_shares_after, coordinated_after) = batches_across(&placed);
    assert_eq!(
        coordinated_after, coordinated,
        "none through the coordinator"
    );
    assert!(
        in_shares_after >= in_shares + 3,
        "{in_shares} {in_shares_after}"
    );

    // A wire request of ledger b reusing an id of ledger a's, from a session in b's
    // partition: in shares, homed in b's, its reply kept there.
    let home = ledger_partition(b, PARTITIONS);
    let client = (1u128..)
        .find(|c| kassa_node::wire::session_partition(*c, PARTITIONS) == home)
        .expect("a client id");
    let connect = |node: &Node| {
        let mut config = ClientConfig::new(vec![node.wire], 0);
        config.client_id = Some(client);
        BlockingClient::connect(config).expect("connect")
    };
    let (mut to_reference, mut to_placed) = (connect(&reference), connect(&placed));
    let transfer = |id: u128| Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(4),
        credit_account_id: AccountId(3),
        amount: 2,
        ledger: b,
        code: 1,
        ..Transfer::default()
    };
    let request = [transfer(400), transfer(105), transfer(401)];
    let expected = to_reference.create_transfers(&request).expect("reference");
    let actual = to_placed.create_transfers(&request).expect("placed");
    let statuses: Vec<_> = actual.iter().map(|r| r.status).collect();
    let expected: Vec<_> = expected.iter().map(|r| r.status).collect();
    assert_eq!(statuses, expected);
    use kassa_wire::CreateTransferStatus as S;
    assert_eq!(
        statuses,
        [S::Created, S::ExistsWithDifferentDebitAccountId, S::Created]
    );
    assert_eq!(
        batches_across(&placed).1,
        coordinated,
        "none through the coordinator"
    );

    let ids: Vec<u128> = (100..110)
        .chain(200..205)
        .chain(300..305)
        .chain(400..402)
        .collect();
    assert_same_records(&reference, &placed, &ids);
}

/// `GET /ready`'s count of transactions in shares still remembered (records and closed
/// transactions, until forgotten).
fn remembered(node: &Node) -> u64 {
    let (_, ready) = node.get("/ready");
    ready["transactions_remembered"].as_u64().expect("a count")
}

/// Two ledgers placed in different partitions, with accounts 1 and 2 in the first and 3 and 4
/// in the second (created in one batch, in shares).
fn two_ledgers(node: &Node) -> (u32, u32) {
    let (first, second) = (1u32, 3u32);
    assert_ne!(
        ledger_partition(first, PARTITIONS),
        ledger_partition(second, PARTITIONS)
    );
    let accounts = [
        account_json(1, first, &[]),
        account_json(2, first, &[]),
        account_json(3, second, &[]),
        account_json(4, second, &[]),
    ];
    let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(results(&reply), ["created"; 4]);
    (first, second)
}

/// `GET /ready`'s counts of batches across partitions: run in shares, and coordinated.
fn batches_across(node: &Node) -> (u64, u64) {
    let (status, ready) = node.get("/ready");
    assert_eq!(status, 200, "{ready}");
    let count = |name: &str| ready[name].as_u64().expect(name);
    (count("batches_in_shares"), count("batches_coordinated"))
}

/// A batch of two ledgers in different partitions runs in shares: an intent in each ledger's
/// partition, decided by the first one's record home. A crash right after it committed (its
/// stage and both intents durable; the client has no answer, no participant was told) is
/// completed after the restart: each participant still holds its intent, asks the home, and
/// the home's new leader finds the stage and both intents and applies it. The ids it claimed
/// stay its own.
#[test]
fn a_batch_in_shares_committed_before_a_crash_is_completed_after_the_restart() {
    let dir = TempDir::new("ledger-global-crash");
    format_by_ledger(&dir.0);
    let node = Node::start(&dir.0);
    let (first, second) = two_ledgers(&node);
    assert!(node.stop().success());

    let env = [("KASSA_FAULT", "abort-after-commit")];
    let node = Node::try_start_with_env(&dir.0, &[], &env).expect("start with the fault");
    let batch = [
        transfer_json(10, 1, 2, 70, 0, first, 1, &[]),
        transfer_json(11, 3, 4, 30, 0, second, 1, &[]),
    ];
    let body = format!("[{}]", batch.join(","));
    let answered = common::request_raw(node.http, "POST", "/v1/transfers", Some(body.as_bytes()));
    assert!(
        answered.as_ref().is_err() || answered.as_ref().is_ok_and(|(status, _)| *status == 0),
        "the node answered: {answered:?}"
    );
    common::kill_once_printed(node, "aborting after a commit");

    let node = Node::start(&dir.0);
    for (id, debits, credits) in [(1u128, 70u128, 0u128), (2, 0, 70), (3, 30, 0), (4, 0, 30)] {
        assert_eq!(posted(&node, id), (debits, credits), "account {id}");
    }
    // Both transfers exist, each in its ledger; their ids are taken in every ledger.
    let (status, reply) = node.post("/v1/transfers", &body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(results(&reply), ["exists", "exists"]);
    let elsewhere = format!("[{}]", transfer_json(11, 1, 2, 30, 0, first, 1, &[]));
    let (status, reply) = node.post("/v1/transfers", &elsewhere);
    assert_eq!(status, 200, "{reply}");
    assert!(
        results(&reply)[0].starts_with("exists_with_different"),
        "{reply}"
    );
    assert_balanced(&node);
}

/// What a crash leaves remembered of batches in shares (records decided but not yet
/// forgotten, and the participants' closed transactions) is forgotten after the restart
/// without waiting for another batch or question at their home: a partition with records
/// of earlier leaders makes a home leader, which adopts and forgets them.
#[test]
fn what_a_crash_leaves_remembered_is_forgotten_after_the_restart_without_new_batches() {
    let dir = TempDir::new("ledger-remembered");
    format_by_ledger(&dir.0);
    let node = Node::start(&dir.0);
    let (first, second) = two_ledgers(&node);
    let batch = [
        transfer_json(10, 1, 2, 70, 0, first, 1, &[]),
        transfer_json(11, 3, 4, 30, 0, second, 1, &[]),
    ];
    let (status, reply) = node.post("/v1/transfers", &format!("[{}]", batch.join(",")));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(results(&reply), ["created"; 2]);
    // Forgetting waits up to a second (`FORGET_MS`): the crash comes before.
    assert!(remembered(&node) > 0);
    node.kill();

    let node = Node::start(&dir.0);
    let forgotten = common::wait_until(std::time::Duration::from_secs(20), || {
        remembered(&node) == 0
    });
    assert!(forgotten, "{} still remembered", remembered(&node));
    assert_eq!(batches_across(&node), (0, 0), "no batch since the restart");
    assert_eq!(posted(&node, 2), (0, 70));
    assert_eq!(posted(&node, 4), (0, 30));
    assert_balanced(&node);
}

/// A wire client whose session lives in another partition than its ledger gets its reply
/// as soon as the ledger's partition wrote it; the session records it after. A crash in
/// between loses that record: after the restart the client's next request (naming the reply
/// it got) catches the session up from the ledger's partition and runs, whether it is a
/// create of that ledger or a read (another path), and a retry of the request gets its
/// original reply, byte for byte; nothing is applied twice.
#[test]
fn a_reply_sent_before_its_session_recorded_it_survives_a_crash() {
    use common::wire::RawClient;
    use kassa_wire::multi_batch::encode_to_vec;
    use kassa_wire::{CreateTransferResult, CreateTransferStatus, Operation};
    use zerocopy::{IntoBytes, TryFromBytes};

    let home = ledger_partition(1, PARTITIONS);
    let client_id = (1u128..)
        .find(|c| kassa_node::wire::session_partition(*c, PARTITIONS) != home)
        .expect("a client id");
    let transfer = |id: u128| Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        amount: 5,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    };
    let created = |body: &[u8]| {
        let result = CreateTransferResult::try_read_from_prefix(body)
            .expect("a result")
            .0;
        result.status == CreateTransferStatus::Created
    };
    for (retry_first, read_next) in [(false, false), (true, false), (false, true)] {
        let dir = TempDir::new(match (retry_first, read_next) {
            (true, _) => "ledger-unrecorded-retry",
            (_, true) => "ledger-unrecorded-read",
            _ => "ledger-unrecorded-next",
        });
        format_by_ledger(&dir.0);
        let env = [("KASSA_FAULT", "abort-before-answer-recorded")];
        let node = Node::try_start_with_env(&dir.0, &[], &env).expect("start with the fault");
        let accounts = [account_json(1, 1, &[]), account_json(2, 1, &[])];
        let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
        assert_eq!(status, 200, "{reply}");
        let mut client = RawClient::connect(node.wire, 0, client_id);
        client.register();
        let body = encode_to_vec(128, &[transfer(10).as_bytes()]).expect("encodes");
        let request = client.request_frame(Operation::CreateTransfers.as_u8(), &body);
        client.send(&request);
        let first = client.expect_reply();
        assert!(created(&first.1));
        common::kill_once_printed(node, "abort-before-answer-recorded");

        let node = Node::start(&dir.0);
        let mut again = RawClient::connect(node.wire, 0, client_id);
        again.session = client.session;
        if retry_first {
            again.send(&request);
            assert_eq!(
                again.expect_reply(),
                first,
                "the original reply, byte for byte"
            );
        }
        (again.request, again.parent) = (first.0.request, first.0.context);
        if read_next {
            let (reply, _) = again.call(Operation::LookupAccounts, &[AccountId(1).as_bytes()]);
            assert_eq!(reply.request, first.0.request + 1, "a read runs next");
        }
        let (reply, body) = again.call(Operation::CreateTransfers, &[transfer(11).as_bytes()]);
        assert_eq!(reply.request, first.0.request + 1 + u32::from(read_next));
        assert!(created(&body), "the next request runs");
        assert_eq!(posted(&node, 1), (10, 0), "each transfer applied once");
        assert_balanced(&node);
    }
}

/// A wire request whose batch mixes two ledgers of two partitions runs in shares, homed in
/// its first ledger's partition `L`, whose stage keeps the reply: a crash right after the
/// batch committed (the client told nothing) leaves the reply in `L`, so the client's retry
/// after the restart gets the original results (`created`, not `exists`), and another copy
/// gets that reply byte for byte; nothing is applied twice. For a client whose session lives
/// in `L` and one whose session lives elsewhere; nothing goes through the coordinator.
#[test]
fn a_wire_request_in_shares_committed_before_a_crash_gets_its_own_results_on_retry() {
    use common::wire::RawClient;
    use kassa_wire::multi_batch::encode_to_vec;
    use kassa_wire::{CreateTransferResult, CreateTransferStatus, Operation};
    use zerocopy::{IntoBytes, TryFromBytes};

    let statuses = |body: &[u8]| -> Vec<CreateTransferStatus> {
        let decoded =
            kassa_wire::multi_batch::MultiBatch::decode(body, 16, 8189).expect("one batch");
        let batch = decoded.batches().next().expect("a batch");
        let results = <[CreateTransferResult]>::try_ref_from_bytes(batch).expect("results");
        results.iter().map(|r| r.status).collect()
    };
    let transfer = |id: u128, debit: u128, credit: u128, ledger: u32| Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(credit),
        amount: 7,
        ledger,
        code: 1,
        ..Transfer::default()
    };
    for session_in_home in [false, true] {
        let dir = TempDir::new(if session_in_home {
            "ledger-wire-shares-in"
        } else {
            "ledger-wire-shares-out"
        });
        format_by_ledger(&dir.0);
        let env = [("KASSA_FAULT", "abort-after-commit")];
        let node = Node::try_start_with_env(&dir.0, &[], &env).expect("start with the fault");
        let (first, second) = (1u32, 3u32);
        let home = ledger_partition(first, PARTITIONS);
        // One ledger per batch: each runs in its partition alone, committing nothing in shares.
        for (ledger, ids) in [(first, [1, 2]), (second, [3, 4])] {
            let accounts: Vec<String> = ids
                .iter()
                .map(|id| account_json(*id, ledger, &[]))
                .collect();
            let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
            assert_eq!(status, 200, "{reply}");
            assert_eq!(results(&reply), ["created"; 2]);
        }
        let client_id = (1u128..)
            .find(|c| {
                (kassa_node::wire::session_partition(*c, PARTITIONS) == home) == session_in_home
            })
            .expect("a client id");
        let mut client = RawClient::connect(node.wire, 0, client_id);
        client.register();
        let batch = [transfer(10, 1, 2, first), transfer(11, 3, 4, second)];
        let body = encode_to_vec(128, &[batch.as_bytes()]).expect("encodes");
        let request = client.request_frame(Operation::CreateTransfers.as_u8(), &body);
        client.send(&request);
        common::kill_once_printed(node, "abort-after-commit");

        let node = Node::start(&dir.0);
        let retry = |node: &Node| {
            let mut again = RawClient::connect(node.wire, 0, client_id);
            again.session = client.session;
            again.send(&request);
            again.expect_reply()
        };
        let answered = retry(&node);
        assert_eq!(
            statuses(&answered.1),
            [CreateTransferStatus::Created; 2],
            "the original results, kept with the stage that committed them"
        );
        assert_eq!(retry(&node), answered, "the same reply, byte for byte");
        assert_eq!(posted(&node, 1), (7, 0), "applied once");
        assert_eq!(posted(&node, 3), (7, 0), "applied once");
        // The session goes on from that reply, in shares again.
        let mut next = RawClient::connect(node.wire, 0, client_id);
        next.session = client.session;
        (next.request, next.parent) = (answered.0.request, answered.0.context);
        let later = [transfer(12, 2, 1, first), transfer(13, 4, 3, second)];
        let (reply, body) = next.call(Operation::CreateTransfers, &[later.as_bytes()]);
        assert_eq!(reply.request, answered.0.request + 1);
        assert_eq!(statuses(&body), [CreateTransferStatus::Created; 2]);
        let (in_shares, coordinated) = batches_across(&node);
        assert!(in_shares >= 1, "{in_shares}");
        assert_eq!(coordinated, 0);
        assert_eq!(posted(&node, 1), (7, 7));
        assert_balanced(&node);
    }
}

/// A wire request of several batches mixing ledgers runs in shares as one batch when that
/// gives the results of its batches run one after another: its reply, cut into its batches,
/// has the results a one-partition node gives, with linked chains (held and broken) across
/// partitions, an id created in one batch and again in the next, and an open chain ending the
/// last batch. One whose first batch ends in an open chain (which must not run on into the
/// next) takes the coordinator, with the same results. The records match too.
#[test]
fn wire_requests_of_several_batches_run_in_shares_with_one_partitions_results() {
    use common::wire::RawClient;
    use kassa_wire::multi_batch::MultiBatch;
    use kassa_wire::{CreateTransferResult, CreateTransferStatus, Operation};
    use zerocopy::{IntoBytes, TryFromBytes};

    let (reference_dir, placed_dir) = (TempDir::new("multi-ref"), TempDir::new("multi-placed"));
    let (reference, placed) = start_pair(&reference_dir, &placed_dir);
    let (first, second) = (two_ledgers(&reference), two_ledgers(&placed));
    assert_eq!(first, second);
    let (first, second) = first;
    let transfer = |id: u128, debit: u128, credit: u128, ledger: u32, linked: bool| Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(credit),
        amount: 3,
        ledger,
        code: 1,
        flags: if linked {
            TransferFlags::LINKED
        } else {
            TransferFlags::default()
        },
        ..Transfer::default()
    };
    let statuses = |body: &[u8]| -> Vec<Vec<CreateTransferStatus>> {
        let decoded = MultiBatch::decode(body, 16, 8189).expect("a reply body");
        (decoded.batches())
            .map(|batch| {
                let results = <[CreateTransferResult]>::try_ref_from_bytes(batch).expect("results");
                results.iter().map(|r| r.status).collect()
            })
            .collect()
    };
    let requests: Vec<(Vec<Vec<Transfer>>, bool)> = vec![
        // Two batches of both ledgers; a chain across partitions that holds.
        (
            vec![
                vec![
                    transfer(100, 1, 2, first, true),
                    transfer(101, 3, 4, second, false),
                ],
                vec![
                    transfer(102, 4, 3, second, false),
                    transfer(103, 2, 1, first, false),
                ],
            ],
            true,
        ),
        // An id created in the first batch and again in the second; a chain across partitions
        // broken by a transfer between one account and itself; an open chain ending the last
        // batch.
        (
            vec![
                vec![
                    transfer(110, 1, 2, first, false),
                    transfer(111, 3, 4, second, false),
                ],
                vec![
                    transfer(110, 1, 2, first, false),
                    transfer(112, 3, 4, second, true),
                    transfer(113, 1, 1, first, false),
                ],
                vec![
                    transfer(114, 2, 1, first, false),
                    transfer(115, 4, 3, second, true),
                ],
            ],
            true,
        ),
        // The first batch ends in an open chain: run as one batch, the chain would run on into
        // the second.
        (
            vec![
                vec![
                    transfer(120, 1, 2, first, false),
                    transfer(121, 3, 4, second, true),
                ],
                vec![
                    transfer(122, 4, 3, second, false),
                    transfer(123, 2, 1, first, false),
                ],
            ],
            false,
        ),
    ];
    let home = ledger_partition(first, PARTITIONS);
    for session_in_home in [false, true] {
        let client_id = (1u128..)
            .map(|c| c + if session_in_home { 1_000 } else { 2_000 })
            .find(|c| {
                (kassa_node::wire::session_partition(*c, PARTITIONS) == home) == session_in_home
            })
            .expect("a client id");
        let mut to_reference = RawClient::connect(reference.wire, 0, client_id);
        let mut to_placed = RawClient::connect(placed.wire, 0, client_id);
        to_reference.register();
        to_placed.register();
        for (index, (batches, in_shares)) in requests.iter().enumerate() {
            // Fresh ids for the second client.
            let offset = if session_in_home { 1_000 } else { 0 };
            let batches: Vec<Vec<Transfer>> = (batches.iter())
                .map(|batch| {
                    (batch.iter())
                        .map(|t| Transfer {
                            id: TransferId(t.id.0 + offset),
                            ..*t
                        })
                        .collect()
                })
                .collect();
            let slices: Vec<&[u8]> = batches.iter().map(|b| b.as_bytes()).collect();
            let before = batches_across(&placed);
            let (_, expected) = to_reference.call(Operation::CreateTransfers, &slices);
            let (_, actual) = to_placed.call(Operation::CreateTransfers, &slices);
            assert_eq!(statuses(&actual), statuses(&expected), "request {index}");
            let after = batches_across(&placed);
            let ran = if *in_shares {
                (before.0 + 1, before.1)
            } else {
                (before.0, before.1 + 1)
            };
            assert_eq!(after, ran, "request {index}: in shares {in_shares}");
        }
    }
    // Over HTTP too: an id twice in one ledger's share is that share's business, claimed once.
    let before = batches_across(&placed);
    let twice = transfer_json(130, 1, 2, 1, 0, first, 1, &[]);
    let other = transfer_json(131, 3, 4, 1, 0, second, 1, &[]);
    let answered = both(
        &reference,
        &placed,
        "/v1/transfers",
        &format!("[{twice},{twice},{other}]"),
    );
    assert_eq!(answered[0], "created");
    assert_eq!(batches_across(&placed), (before.0 + 1, before.1));
    let ids: Vec<u128> = (100..132).chain(1_100..1_124).collect();
    assert_same_records(&reference, &placed, &ids);
}

/// `kassa start --placement` formats a new directory with that placement and refuses a
/// directory formatted with another, changing nothing.
#[test]
fn start_formats_with_the_placement_asked_and_refuses_another() {
    let dir = TempDir::new("ledger-start-placement");
    let data = dir.0.join("data");
    let node = Node::try_start(&data, &["--placement", "ledger"]).expect("starts");
    let (_, ready) = node.get("/ready");
    assert_eq!(ready["placement"], "ledger", "{ready}");
    assert!(node.stop().success());
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_kassa"))
        .args(["start", "--placement", "id", "--data-dir"])
        .arg(&data)
        .output()
        .expect("run kassa start");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("formatted with placement by ledger"),
        "{said}"
    );
    let node = Node::start(&data);
    let (_, ready) = node.get("/ready");
    assert_eq!(ready["placement"], "ledger", "{ready}");
}

/// Transfers of `ledger` with `ids`, each of 1 from `debit` to `credit`, as a JSON batch.
fn transfers_json(
    ids: impl Iterator<Item = u128>,
    ledger: u32,
    debit: u128,
    credit: u128,
) -> String {
    let events: Vec<String> = ids
        .map(|id| transfer_json(id, debit, credit, 1, 0, ledger, 1, &[]))
        .collect();
    format!("[{}]", events.join(","))
}

/// The id directory's lease buckets, leased and released, as `/ready` counts them.
fn lease_buckets(node: &Node) -> (u64, u64) {
    let (status, ready) = node.get("/ready");
    assert_eq!(status, 200, "{ready}");
    let count = |name: &str| ready[name].as_u64().expect(name);
    (count("leased_buckets"), count("released_buckets"))
}

/// A ledger that stores many transfers gets its buckets leased by their homes and stores
/// fresh ids without claiming them. Another ledger that then reuses those ids (which no home
/// knows) gets exactly one partition's answers, the leases end, and everything survives a
/// restart.
#[test]
fn leased_buckets_spare_claims_and_end_when_another_ledger_claims_in_them() {
    let (reference_dir, placed_dir) = (TempDir::new("lease-ref"), TempDir::new("lease-placed"));
    let (reference, mut placed) = start_pair(&reference_dir, &placed_dir);
    // Ledgers 1 and 3 are in different partitions (1 and 2 share one).
    assert_ne!(
        ledger_partition(1, PARTITIONS),
        ledger_partition(3, PARTITIONS)
    );
    let accounts: Vec<String> = [(1u128, 1u32), (2, 1), (3, 3), (4, 3)]
        .iter()
        .map(|(id, ledger)| account_json(*id, *ledger, &[]))
        .collect();
    let created = both(
        &reference,
        &placed,
        "/v1/accounts",
        &format!("[{}]", accounts.join(",")),
    );
    assert!(created.iter().all(|r| r == "created"), "{created:?}");
    assert_eq!(lease_buckets(&placed), (0, 0));

    // Ledger 1 alone, in full batches through the wire protocol, until most of the 1,024
    // transfer buckets are leased to its partition.
    let connect = |node: &Node| {
        BlockingClient::connect(ClientConfig::new(vec![node.wire], 0)).expect("connect")
    };
    let (mut to_reference, mut to_placed) = (connect(&reference), connect(&placed));
    let mut batches = 0u128;
    while lease_buckets(&placed).0 < 800 {
        assert!(
            batches < 12,
            "leases after {batches} batches: {:?}",
            lease_buckets(&placed)
        );
        let transfers: Vec<Transfer> = (0..8_000u128)
            .map(|event| Transfer {
                id: TransferId(1_000_000 + batches * 8_000 + event),
                debit_account_id: AccountId(1),
                credit_account_id: AccountId(2),
                amount: 1,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            })
            .collect();
        for client in [&mut to_reference, &mut to_placed] {
            let results = client.create_transfers(&transfers).expect("created");
            assert!(results.iter().all(|r| r.status.name() == "created"));
        }
        batches += 1;
        // Lease answers come after the batch; give them a moment.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(lease_buckets(&placed).1, 0);

    // Events of ledger 0 with fresh ids under those leases, in a batch of their own: they
    // run (and claim their ids) in ledger 1's partition, which holds the leases, so no lease
    // ends. (A lease its holder does not know yet is not looked for: wait until the leases
    // stop changing.) A batch of ledger 3 with such events runs in ledger 3's partition
    // alone, as before: its fast path looks for no lease, so there they end leases like
    // ledger 3's own new ids.
    let settled = common::wait_until(std::time::Duration::from_secs(10), || {
        let before = lease_buckets(&placed);
        std::thread::sleep(std::time::Duration::from_millis(300));
        lease_buckets(&placed) == before
    });
    assert!(
        settled,
        "leases still changing: {:?}",
        lease_buckets(&placed)
    );
    let zero: Vec<String> = (2_500_000..2_500_050u128)
        .map(|id| transfer_json(id, 1, 2, 1, 0, 0, 1, &[]))
        .collect();
    let answered = both(
        &reference,
        &placed,
        "/v1/transfers",
        &format!("[{}]", zero.join(",")),
    );
    assert!(
        answered.iter().all(|r| r == "ledger_must_not_be_zero"),
        "{answered:?}"
    );
    assert_eq!(lease_buckets(&placed).1, 0, "no lease ended");

    // Fresh ids of ledger 1: stored under the leases, unknown to their homes.
    let leased: Vec<u128> = (2_000_000..2_000_100).collect();
    let results = both(
        &reference,
        &placed,
        "/v1/transfers",
        &transfers_json(leased.iter().copied(), 1, 1, 2),
    );
    assert!(results.iter().all(|r| r == "created"), "{results:?}");

    // Ledger 3 reuses some of them, one per batch beside a fresh id (so that one id whose
    // bucket was not leased cannot send the others to the global path with it): one
    // partition's exact answers.
    let fresh: Vec<u128> = (3_000_000..3_000_020).collect();
    for (reused, fresh) in leased.iter().zip(&fresh) {
        let results = both(
            &reference,
            &placed,
            "/v1/transfers",
            &transfers_json([*reused, *fresh].into_iter(), 3, 3, 4),
        );
        assert_eq!(results[1], "created", "{results:?}");
        assert_ne!(results[0], "created", "{results:?}");
    }
    let (leased_now, released) = lease_buckets(&placed);
    assert!(released > 0, "another ledger's claims end leases");

    // Ledger 1 reuses ledger 3's ids and stores fresh ones in released buckets.
    let again = fresh.iter().copied().chain(4_000_000..4_000_020);
    let results = both(
        &reference,
        &placed,
        "/v1/transfers",
        &transfers_json(again, 1, 2, 1),
    );
    assert!(results[..20].iter().all(|r| r != "created"), "{results:?}");
    assert!(results[20..].iter().all(|r| r == "created"), "{results:?}");

    let mut ids: Vec<u128> = leased.iter().chain(&fresh).copied().collect();
    ids.extend(4_000_000..4_000_020);
    ids.extend([1_000_000, 1_000_000 + batches * 8_000 - 1]);
    assert_same_records(&reference, &placed, &ids);
    drop(to_placed);
    placed.stop();
    placed = Node::start(&placed_dir.0);
    assert_eq!(
        lease_buckets(&placed),
        (leased_now, released),
        "buckets survive"
    );
    assert_same_records(&reference, &placed, &ids);
    // A new leader holds no leases until it asks: its batches claim, and stay exact.
    let results = both(
        &reference,
        &placed,
        "/v1/transfers",
        &transfers_json(
            (5_000_000..5_000_050).chain(leased[50..60].iter().copied()),
            1,
            1,
            2,
        ),
    );
    assert!(results[..50].iter().all(|r| r == "created"), "{results:?}");
    assert!(results[50..].iter().all(|r| r == "exists"), "{results:?}");
    assert_balanced(&placed);
}

/// A partition held by a transaction's intent serves none of its records until the intent
/// resolves, then serves them, and an intent whose home never began its transaction (its
/// driver gone) does not hold it forever: `KASSA_FAULT=hold-partition` holds ledger 1's
/// partition from before the node is ready with such an intent, and nothing resolves it but
/// the rare path's recovery (the partition asks the home, which aborts it). A write and a
/// read of ledger 1 sent at once wait and then run (no error, no crash), another ledger's
/// partition is served meanwhile, and the aborted intent's account never appears.
#[test]
fn a_partition_held_by_an_intent_is_released_by_its_homes_recovery() {
    const ASK_AFTER: std::time::Duration = kassa_node::rare_path::ASK_AFTER;
    let dir = TempDir::new("held-partition");
    format_by_ledger(&dir.0);
    let held = ledger_partition(1, PARTITIONS);
    let other = (2..)
        .find(|l| ledger_partition(*l, PARTITIONS) != held)
        .unwrap();
    let spawned = std::time::Instant::now();
    let env = [("KASSA_FAULT", "hold-partition")];
    let node = Node::try_start_with_env(&dir.0, &[], &env).expect("kassa start");
    assert!(node
        .stderr_text()
        .contains("partition held by an intent its home never began"));
    let http = node.http;
    let held_write = std::thread::spawn(move || {
        let accounts = format!(
            "[{},{}]",
            common::account_json(1, 1, &[]),
            common::account_json(2, 1, &[])
        );
        let created = common::request(http, "POST", "/v1/accounts", Some(&accounts));
        (created, spawned.elapsed())
    });
    let accounts = format!(
        "[{},{}]",
        common::account_json(11, other, &[]),
        common::account_json(12, other, &[])
    );
    let (status, reply) = node.post("/v1/accounts", &accounts);
    assert_eq!((status, results(&reply)), (200, vec!["created".into(); 2]));
    let ((status, reply), waited) = held_write.join().expect("the write returns");
    assert_eq!((status, results(&reply)), (200, vec!["created".into(); 2]));
    // It could not run before the partition asked the intent's home (load only makes a
    // run later). Nothing but that home's recovery resolves the intent.
    assert!(
        waited >= ASK_AFTER,
        "answered {waited:?} after the node was spawned"
    );
    let transfer = transfer_json(21, 1, 2, 5, 0, 1, 1, &[]);
    let (status, reply) = node.post("/v1/transfers", &format!("[{transfer}]"));
    assert_eq!(
        (status, results(&reply)),
        (200, vec!["created".to_string()])
    );
    assert_eq!(posted(&node, 1), (5, 0));
    let (status, _) = node.get(&format!("/v1/accounts/{}", 0xFA17));
    assert_eq!(
        status, 404,
        "the aborted intent's account was never created"
    );
    assert_balanced(&node);
    node.stop();
}

/// Reads of several partitions while batches of two ledgers in two partitions run in shares:
/// every batch moves the same amounts in both ledgers, so every read that sees whole batches
/// finds both ledgers' posted debits equal. Read by an HTTP query over every partition and by
/// a wire lookup of every account (which asks every partition under placement by ledger).
/// Without the reads' check of the intents stored meanwhile (`Reads::whole`), reads taken
/// under this load see one ledger's share of a batch without the other's.
#[test]
fn reads_across_ledgers_never_see_half_a_batch_run_in_shares() {
    const PER_LEDGER: u128 = 16;
    let dir = TempDir::new("ledger-atomic-reads");
    format_by_ledger(&dir.0);
    let node = Node::start(&dir.0);
    let first = 1u32;
    let second = (2..)
        .find(|l| ledger_partition(*l, PARTITIONS) != ledger_partition(first, PARTITIONS))
        .expect("a ledger in another partition");
    // Accounts 1..=16 in the first ledger, 101..=116 in the second.
    let account_of = move |ledger: u32, n: u128| if ledger == first { n } else { 100 + n };
    let accounts: Vec<String> = [first, second]
        .iter()
        .flat_map(|ledger| (1..=PER_LEDGER).map(move |n| (*ledger, n)))
        .map(|(ledger, n)| account_json(account_of(ledger, n), ledger, &[]))
        .collect();
    let (status, reply) = node.post("/v1/accounts", &format!("[{}]", accounts.join(",")));
    assert_eq!((status, results(&reply)), (200, vec!["created".into(); 32]));
    let http = node.http;
    const ROUNDS: u128 = 60;
    let writers: Vec<_> = (0..2u128)
        .map(|writer| {
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let mut batch = Vec::new();
                    for event in 0..20u128 {
                        let n = 1 + (round + event) % PER_LEDGER;
                        let (debit, credit) = (n, 1 + n % PER_LEDGER);
                        let amount = 1 + (round * 7 + event) % 50;
                        for (k, ledger) in [first, second].into_iter().enumerate() {
                            let id =
                                1_000_000 * (writer + 1) + 1000 * round + 100 * k as u128 + event;
                            let (debit, credit) =
                                (account_of(ledger, debit), account_of(ledger, credit));
                            batch.push(transfer_json(id, debit, credit, amount, 0, ledger, 1, &[]));
                        }
                    }
                    let body = format!("[{}]", batch.join(","));
                    let (status, reply) =
                        common::request(http, "POST", "/v1/transfers", Some(&body));
                    assert_eq!(status, 200, "{reply}");
                    assert!(results(&reply).iter().all(|r| r == "created"), "{reply}");
                }
            })
        })
        .collect();
    let mut client =
        BlockingClient::connect(ClientConfig::new(vec![node.wire], 0)).expect("connect");
    let wanted: Vec<AccountId> = [first, second]
        .iter()
        .flat_map(|ledger| (1..=PER_LEDGER).map(move |n| AccountId(account_of(*ledger, n))))
        .collect();
    let (mut sums, mut halves) = (0, Vec::new());
    while !writers.iter().all(|w| w.is_finished()) {
        let totals = common::ledger_totals(&node);
        let posted = |ledger: u32| totals.get(&u64::from(ledger)).map(|t| t[0]);
        if posted(first) != posted(second) {
            halves.push(format!("query: {:?} {:?}", posted(first), posted(second)));
        }
        let found = client.lookup_accounts(&wanted).expect("lookup_accounts");
        assert_eq!(found.len(), wanted.len());
        let debits = |ledger: u32| -> u128 {
            (found.iter())
                .filter(|a| a.ledger == ledger)
                .map(|a| a.debits_posted)
                .sum()
        };
        if debits(first) != debits(second) {
            halves.push(format!("lookup: {} {}", debits(first), debits(second)));
        }
        sums += 2;
    }
    for writer in writers {
        writer.join().expect("writer");
    }
    eprintln!("{sums} sums read while the writers ran");
    assert!(sums >= 2, "the readers ran while the writers did");
    assert!(
        halves.is_empty(),
        "{} of {sums} reads saw half a batch: {halves:?}",
        halves.len()
    );
    assert_eq!(batches_across(&node), (1 + 2 * ROUNDS as u64, 0));
    assert_balanced(&node);
}
