//! Kassa's own Rust client (`kassa_wire::client`, blocking and async) and `kassactl` against the
//! real node with 16 partitions: every operation, one request whose events land in many
//! partitions with its results in the original order, concurrent clients, and a client that
//! keeps its session across a crash of the node without anything applied twice.

mod common;

use std::time::Duration;

use clap::Parser;
use common::{assert_balanced, Node, TempDir};
use kassa_node::partitioning::partition_of;
use kassa_wire::client::{BlockingClient, Client, ClientConfig};
use kassa_wire::{
    Account, AccountFilter, AccountFilterFlags, AccountFlags, AccountId, CreateAccountStatus,
    CreateTransferStatus, QueryFilter, QueryFilterFlags, Transfer, TransferFlags, TransferId,
};

fn config(node: &Node) -> ClientConfig {
    let mut config = ClientConfig::new(vec![node.wire], 0);
    config.deadline = Duration::from_secs(20);
    config
}

fn account(id: u128, flags: AccountFlags) -> Account {
    Account {
        id: AccountId(id),
        ledger: 1,
        code: 1,
        flags,
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(credit),
        amount,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

#[test]
fn every_operation_through_the_blocking_client_results_in_order() {
    let dir = TempDir::new("rust-client");
    let node = Node::start(&dir.0);
    let mut client = BlockingClient::connect(config(&node)).expect("connect");

    let accounts: Vec<Account> = (1..=40)
        .map(|id| account(id, AccountFlags::HISTORY))
        .collect();
    let partitions: std::collections::BTreeSet<u32> =
        (1..=40).map(|id| partition_of(id, 16)).collect();
    assert!(
        partitions.len() > 8,
        "the accounts spread over the partitions"
    );
    let results = client.create_accounts(&accounts).expect("create accounts");
    assert!(results
        .iter()
        .all(|r| r.status == CreateAccountStatus::Created));
    let again = client.create_accounts(&accounts[..3]).expect("again");
    assert!(again
        .iter()
        .all(|r| r.status == CreateAccountStatus::Exists));

    // One request, events in many partitions; every seventh fails, each in its own way.
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for id in 1..=200u128 {
        let debit = 1 + id % 40;
        let credit = 1 + (id * 7 + 3) % 40;
        let (event, status) = match id % 7 {
            0 => (
                transfer(id, debit, debit, 5),
                CreateTransferStatus::AccountsMustBeDifferent,
            ),
            3 => (
                transfer(id, debit, 999, 5),
                CreateTransferStatus::CreditAccountNotFound,
            ),
            _ if debit == credit => continue,
            _ => (
                transfer(id, debit, credit, id),
                CreateTransferStatus::Created,
            ),
        };
        batch.push(event);
        expected.push(status);
    }
    let results = client.create_transfers(&batch).expect("create transfers");
    let statuses: Vec<CreateTransferStatus> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, expected, "results in the request's order");
    let timestamps: Vec<u64> = results.iter().map(|r| r.timestamp).collect();
    assert!(
        timestamps.windows(2).all(|w| w[0] < w[1]),
        "timestamps increase"
    );

    // Lookups come back in the order asked, missing ids left out.
    let ids = [AccountId(40), AccountId(999), AccountId(2), AccountId(17)];
    let found: Vec<u128> = client
        .lookup_accounts(&ids)
        .expect("lookup accounts")
        .iter()
        .map(|a| a.id.0)
        .collect();
    assert_eq!(found, [40, 2, 17]);
    let created: Vec<&Transfer> = batch
        .iter()
        .zip(&expected)
        .filter(|(_, s)| **s == CreateTransferStatus::Created)
        .map(|(t, _)| t)
        .collect();
    let wanted: Vec<TransferId> = created.iter().rev().take(20).map(|t| t.id).collect();
    let found = client.lookup_transfers(&wanted).expect("lookup transfers");
    let found_ids: Vec<TransferId> = found.iter().map(|t| t.id).collect();
    assert_eq!(found_ids, wanted);

    // An account's transfers and balances, from its partition, wherever the ids live.
    let flags = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
    let filter = AccountFilter::new(AccountId(5), 8189, flags);
    let listed = client
        .get_account_transfers(&filter)
        .expect("account transfers");
    let mine: Vec<TransferId> = created
        .iter()
        .filter(|t| t.debit_account_id.0 == 5 || t.credit_account_id.0 == 5)
        .map(|t| t.id)
        .collect();
    let listed_ids: Vec<TransferId> = listed.iter().map(|t| t.id).collect();
    assert_eq!(listed_ids, mine);
    let balances = client.get_account_balances(&filter).expect("balances");
    assert_eq!(balances.len(), mine.len());
    let account = &client.lookup_accounts(&[AccountId(5)]).expect("lookup")[0];
    let last = balances.last().expect("history");
    assert_eq!(last.debits_posted, account.debits_posted);
    assert_eq!(last.credits_posted, account.credits_posted);

    // Queries merge the partitions' answers in timestamp order, each record once.
    let all = client
        .query_transfers(&QueryFilter::new(8189, QueryFilterFlags::default()))
        .expect("query transfers");
    assert_eq!(all.len(), created.len());
    assert!(all.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    let reversed = client
        .query_accounts(&QueryFilter::new(5, QueryFilterFlags::REVERSED))
        .expect("query accounts");
    let reversed: Vec<u128> = reversed.iter().map(|a| a.id.0).collect();
    assert_eq!(reversed, [40, 39, 38, 37, 36]);
    assert_balanced(&node);
}

#[test]
fn concurrent_async_clients_and_a_pending_transfer_posted_by_another() {
    let dir = TempDir::new("rust-client-async");
    let node = Node::start(&dir.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = config(&node);
    runtime.block_on(async move {
        let mut setup = Client::connect(config.clone()).await.expect("connect");
        let accounts: Vec<Account> = (1..=16)
            .map(|id| account(id, AccountFlags::default()))
            .collect();
        setup.create_accounts(&accounts).await.expect("accounts");
        let tasks: Vec<_> = (0..8u128)
            .map(|writer| {
                let config = config.clone();
                tokio::spawn(async move {
                    let mut client = Client::connect(config).await.expect("connect");
                    for round in 0..10u128 {
                        let id = 10_000 * (writer + 1) + round;
                        let t = transfer(id, 1 + writer, 9 + (writer + round) % 8, 10);
                        let results = client.create_transfers(&[t]).await.expect("create");
                        assert_eq!(results[0].status, CreateTransferStatus::Created);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer");
        }
        // A pending transfer by one client, posted by another.
        let mut pending = transfer(1, 1, 16, 70);
        pending.flags = TransferFlags::PENDING;
        let created = setup.create_transfers(&[pending]).await.expect("pending");
        assert_eq!(created[0].status, CreateTransferStatus::Created);
        let mut other = Client::connect(config).await.expect("connect");
        let mut post = transfer(2, 0, 0, u128::MAX);
        post.ledger = 0;
        post.code = 0;
        post.pending_id = TransferId(1);
        post.flags = TransferFlags::POST_PENDING_TRANSFER;
        let posted = other.create_transfers(&[post]).await.expect("post");
        assert_eq!(posted[0].status, CreateTransferStatus::Created);
        let found = other
            .lookup_accounts(&[AccountId(1)])
            .await
            .expect("lookup");
        assert_eq!(found[0].debits_posted, 10 * 10 + 70);
    });
    assert_balanced(&node);
}

#[test]
fn a_client_keeps_its_session_across_a_crash() {
    let dir = TempDir::new("rust-client-crash");
    let node = Node::start(&dir.0);
    let wire = node.wire.to_string();
    let mut client = BlockingClient::connect(config(&node)).expect("connect");
    let accounts = [
        account(1, AccountFlags::default()),
        account(2, AccountFlags::default()),
    ];
    client.create_accounts(&accounts).expect("accounts");
    for id in 1..=20 {
        let results = client
            .create_transfers(&[transfer(id, 1, 2, 1)])
            .expect("create");
        assert_eq!(results[0].status, CreateTransferStatus::Created);
    }
    node.kill();
    let node = Node::try_start(&dir.0, &["--wire-address", &wire]).expect("restart");
    // The same client, same session: it reconnects and goes on; nothing is applied twice.
    for id in 21..=40 {
        let results = client
            .create_transfers(&[transfer(id, 1, 2, 1)])
            .expect("create");
        assert_eq!(results[0].status, CreateTransferStatus::Created);
    }
    let found = client.lookup_accounts(&[AccountId(1)]).expect("lookup");
    assert_eq!(found[0].debits_posted, 40);
    assert_balanced(&node);
}

#[test]
fn kassactl_creates_gets_and_lists_against_the_node() {
    let dir = TempDir::new("kassactl");
    let node = Node::start(&dir.0);
    let address = node.wire.to_string();
    let run = |args: &[&str]| -> (u8, String, String) {
        let mut argv = vec!["kassactl", "--address", &address];
        argv.extend_from_slice(args);
        let cli = kassa_tools::cli::Cli::try_parse_from(argv).expect("valid arguments");
        let plan = kassa_tools::commands::plan(&cli.command, &mut std::io::empty());
        let plan = plan.expect("a plan");
        let addresses = kassa_tools::addresses(&cli.address).expect("address");
        let mut client = BlockingClient::connect(ClientConfig::new(addresses, 0)).expect("connect");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = kassa_tools::commands::execute(&plan, &mut client, cli.json, &mut out, &mut err)
            .expect("runs");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8");
        (code, text(out), text(err))
    };
    let ok = |args: &[&str]| {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        out
    };
    ok(&[
        "accounts", "create", "--id", "1", "--ledger", "700", "--code", "10",
    ]);
    ok(&[
        "accounts", "create", "--id", "2", "--ledger", "700", "--code", "10", "--flags", "history",
    ]);
    ok(&[
        "transfers",
        "create",
        "--id",
        "100",
        "--debit-account",
        "1",
        "--credit-account",
        "2",
        "--amount",
        "250",
        "--ledger",
        "700",
        "--code",
        "1",
    ]);
    let accounts = ok(&["--json", "accounts", "get", "1", "2"]);
    let accounts: serde_json::Value = serde_json::from_str(&accounts).expect("JSON");
    assert_eq!(accounts[0]["debits_posted"], "250", "{accounts}");
    assert_eq!(accounts[1]["credits_posted"], "250", "{accounts}");
    let listed = ok(&["transfers", "list", "--account", "2"]);
    assert!(listed.contains("100"), "{listed}");
    // A refused event: exit 1, its index and result on stderr.
    let (code, _, err) = run(&[
        "transfers",
        "create",
        "--id",
        "101",
        "--debit-account",
        "1",
        "--credit-account",
        "1",
        "--amount",
        "5",
        "--ledger",
        "700",
        "--code",
        "1",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("accounts_must_be_different"), "{err}");
}
