//! Kassa's client against a real TCP server on 127.0.0.1 built from the crate's server-side
//! codec (`common/server.rs`): typed results in order, the hash chain, reconnection and
//! exactly-once resends after every kind of lost or corrupt reply, eviction, timeouts, batch
//! limits, parallel clients and the blocking API.

#![cfg(feature = "client")]

#[path = "common/server.rs"]
mod server;

use std::time::Duration;

use kassa_wire::client::{BlockingClient, Client, ClientConfig, ClientError, Failure};
use kassa_wire::{
    Account, AccountFilter, AccountFilterFlags, AccountId, CreateAccountStatus,
    CreateTransferStatus, EvictionReason, QueryFilter, QueryFilterFlags, Transfer, TransferId,
};
use server::{Fault, TestServer, CLUSTER, LIMIT_MAX};

fn config(server: &TestServer) -> ClientConfig {
    let mut config = ClientConfig::new(vec![server.address], CLUSTER);
    config.deadline = Duration::from_secs(5);
    config.request_timeout = Duration::from_millis(200);
    config.request_timeout_max = Duration::from_millis(400);
    config
}

fn account(id: u128) -> Account {
    Account {
        id: AccountId(id),
        ledger: 700,
        code: 10,
        ..Account::default()
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(debit),
        credit_account_id: AccountId(credit),
        amount,
        ledger: 700,
        code: 1,
        ..Transfer::default()
    }
}

#[tokio::test]
async fn t01_every_operation_returns_typed_results_in_order() {
    let server = TestServer::spawn(LIMIT_MAX).await;
    let mut client = Client::connect(config(&server)).await.unwrap();
    assert!(client.session() > 0);
    assert_eq!(client.batch_size_limit() as usize, LIMIT_MAX);

    let results = client
        .create_accounts(&[account(1), account(0), account(2)])
        .await
        .unwrap();
    let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            CreateAccountStatus::Created,
            CreateAccountStatus::IdMustNotBeZero,
            CreateAccountStatus::Created
        ]
    );
    let results = client
        .create_transfers(&[transfer(10, 1, 2, 100), transfer(11, 1, 9, 5)])
        .await
        .unwrap();
    assert_eq!(results[0].status, CreateTransferStatus::Created);
    assert_eq!(
        results[1].status,
        CreateTransferStatus::CreditAccountNotFound
    );

    let found = client
        .lookup_accounts(&[AccountId(2), AccountId(3), AccountId(1)])
        .await
        .unwrap();
    let ids: Vec<u128> = found.iter().map(|a| a.id.0).collect();
    assert_eq!(ids, [2, 1], "found ones only, in the order asked");
    assert_eq!(found[0].credits_posted, 100);
    let found = client.lookup_transfers(&[TransferId(10)]).await.unwrap();
    assert_eq!(found[0].amount, 100);

    let flags = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
    let filter = AccountFilter::new(AccountId(1), 10, flags);
    let transfers = client.get_account_transfers(&filter).await.unwrap();
    assert_eq!(transfers.len(), 1);
    assert!(client
        .get_account_balances(&filter)
        .await
        .unwrap()
        .is_empty());
    let query = QueryFilter::new(1, QueryFilterFlags::default());
    assert_eq!(client.query_accounts(&query).await.unwrap().len(), 1);
    assert_eq!(client.query_transfers(&query).await.unwrap().len(), 1);
    assert!(client.create_accounts(&[]).await.unwrap().is_empty());

    let state = server.state();
    assert_eq!(
        state.parent_errors, 0,
        "every request chained on the last reply"
    );
    assert_eq!(state.applied, 9);
    assert_eq!(state.connections, 1);
}

/// Creates one account through `fault` and checks it was applied exactly once: the result is
/// `created` (a second application would answer `exists`) and the server counted one.
async fn survives(fault: Fault) {
    let server = TestServer::spawn(LIMIT_MAX).await;
    let mut client = Client::connect(config(&server)).await.unwrap();
    server.fault(fault);
    let results = client.create_accounts(&[account(1)]).await.unwrap();
    assert_eq!(results[0].status, CreateAccountStatus::Created, "{fault:?}");
    let results = client.create_accounts(&[account(2)]).await.unwrap();
    assert_eq!(results[0].status, CreateAccountStatus::Created, "{fault:?}");
    let state = server.state();
    assert_eq!(
        state.applied, 3,
        "{fault:?}: register and two creates, once each"
    );
    assert!(state.received >= 4, "{fault:?}: the request was resent");
    assert_eq!(state.parent_errors, 0);
}

#[tokio::test]
async fn t02_a_connection_dropped_before_applying_is_reopened_and_the_request_resent() {
    survives(Fault::DropBeforeApply).await;
}

#[tokio::test]
async fn t03_a_reply_lost_after_applying_comes_from_the_reply_cache() {
    survives(Fault::DropAfterApply).await;
    survives(Fault::Silent).await;
}

#[tokio::test]
async fn t04_a_corrupt_reply_closes_the_connection_and_the_resend_is_answered_once() {
    survives(Fault::CorruptReplyHeader).await;
    survives(Fault::CorruptReplyBody).await;
}

#[tokio::test]
async fn t05_eviction_is_a_typed_error_and_final() {
    let server = TestServer::spawn(LIMIT_MAX).await;
    let mut client = Client::connect(config(&server)).await.unwrap();
    server.fault(Fault::Evict(EvictionReason::NoSession));
    let error = client.create_accounts(&[account(1)]).await.unwrap_err();
    assert!(matches!(
        error,
        ClientError::Evicted {
            reason: EvictionReason::NoSession
        }
    ));
    assert_eq!(
        error.to_string(),
        "session evicted by the server: no_session"
    );
    let received = server.state().received;
    let again = client.lookup_accounts(&[AccountId(1)]).await.unwrap_err();
    assert!(matches!(again, ClientError::Evicted { .. }));
    assert_eq!(
        server.state().received,
        received,
        "nothing sent after eviction"
    );
}

#[tokio::test]
async fn t06_no_reply_times_out_and_the_next_call_finishes_the_request_first() {
    let server = TestServer::spawn(LIMIT_MAX).await;
    let mut config = config(&server);
    config.deadline = Duration::from_millis(700);
    let mut client = Client::connect(config).await.unwrap();
    server.state().mute = true;
    let error = client.create_accounts(&[account(1)]).await.unwrap_err();
    let ClientError::Timeout {
        attempts,
        last_failure,
        ..
    } = &error
    else {
        panic!("{error}");
    };
    assert!(*attempts >= 2, "resent before the deadline: {attempts}");
    assert!(matches!(last_failure, Failure::NoReply { .. }), "{error}");
    assert!(error.to_string().starts_with("no reply within 700 ms"));
    assert_eq!(server.state().applied, 1);

    server.state().mute = false;
    let results = client.create_accounts(&[account(2)]).await.unwrap();
    assert_eq!(results[0].status, CreateAccountStatus::Created);
    // The timed-out request was resent under its number and applied before the new one.
    let found = client
        .lookup_accounts(&[AccountId(1), AccountId(2)])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    let state = server.state();
    assert_eq!(state.applied, 4);
    assert_eq!(state.parent_errors, 0);
}

#[tokio::test]
async fn t07_an_unreachable_server_is_a_timeout_naming_the_connect_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let mut config = ClientConfig::new(vec![address], CLUSTER);
    config.deadline = Duration::from_millis(300);
    let error = Client::connect(config).await.unwrap_err();
    let ClientError::Timeout { last_failure, .. } = &error else {
        panic!("{error}");
    };
    assert!(matches!(last_failure, Failure::Connect { .. }), "{error}");
    assert!(
        error.to_string().contains("connecting to 127.0.0.1:"),
        "{error}"
    );
}

#[tokio::test]
async fn t08_a_batch_over_the_servers_limit_is_refused_before_sending() {
    // Room for three 128-byte events and their trailer.
    let server = TestServer::spawn(4 * 128).await;
    let mut client = Client::connect(config(&server)).await.unwrap();
    assert_eq!(client.events_max(kassa_wire::Operation::CreateAccounts), 3);
    let received = server.state().received;
    let accounts: Vec<Account> = (1..=4).map(account).collect();
    let error = client.create_accounts(&accounts).await.unwrap_err();
    assert!(matches!(
        error,
        ClientError::BatchTooLarge {
            events: 4,
            events_max: 3,
            ..
        }
    ));
    assert_eq!(server.state().received, received);
    let results = client.create_accounts(&accounts[..3]).await.unwrap();
    assert_eq!(results.len(), 3);
}

#[tokio::test]
async fn t09_clients_in_parallel_each_keep_their_own_session() {
    let server = TestServer::spawn(LIMIT_MAX).await;
    let mut tasks = Vec::new();
    for client_index in 0..4u128 {
        let config = config(&server);
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(config).await.unwrap();
            for n in 0..10u128 {
                let id = 1000 * (client_index + 1) + n;
                let results = client.create_accounts(&[account(id)]).await.unwrap();
                assert_eq!(results[0].status, CreateAccountStatus::Created);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let state = server.state();
    assert_eq!(state.applied, 4 + 40);
    assert_eq!(state.parent_errors, 0);
}

#[test]
fn t10_the_blocking_client_has_the_same_semantics() {
    let server = TestServer::spawn_thread(LIMIT_MAX);
    let mut client = BlockingClient::connect(config(&server)).unwrap();
    server.fault(Fault::DropAfterApply);
    let results = client.create_accounts(&[account(1), account(2)]).unwrap();
    assert!(results
        .iter()
        .all(|r| r.status == CreateAccountStatus::Created));
    let found = client.lookup_accounts(&[AccountId(1)]).unwrap();
    assert_eq!(found[0].ledger, 700);
    assert_eq!(server.state().applied, 3);
}
