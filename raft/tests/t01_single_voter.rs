//! A single-voter partition on a real io_uring runtime: it opens as the leader, writes go
//! through the log and come back with the ledger's replies, and reads see them at once.

mod common;

use common::*;
use futures_util::future::join_all;
use kassa_raft::{Command, Partition, PartitionError, PartitionStatus, Reply};
use kassa_wire::{AccountId, CreateAccountStatus, CreateTransferStatus};

#[test]
fn t01_open_write_and_read() {
    let dir = TempDir::new("t01-write");
    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("open");
        let status = partition.status();
        assert!(status.leader, "{status:?}");
        assert_eq!(status.partition, 7);

        let reply = partition
            .write(create_accounts(1, 1..=10))
            .await
            .expect("accounts");
        assert_all_created(&reply);
        assert_eq!(account_statuses(&reply).len(), 10);

        let reply = partition
            .write(create_transfers(2, 1, 100, 10))
            .await
            .expect("transfers");
        assert_all_created(&reply);

        partition.read(|ledger| {
            check_ledger(ledger);
            assert_eq!(ledger.accounts().len(), 10);
            assert_eq!(ledger.transfers().len(), 100);
            let posted: u128 = ledger.accounts().iter().map(|a| a.debits_posted).sum();
            assert_eq!(posted, amounts(1, 100));
            let one = ledger.account(AccountId(1)).expect("account 1");
            assert!(one.debits_posted > 0 && one.credits_posted > 0);
        });
        partition.shutdown().await.expect("shutdown");
    });
}

#[test]
fn t01_replies_are_the_ledgers() {
    let dir = TempDir::new("t01-replies");
    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("open");
        assert_all_created(
            &partition
                .write(create_accounts(1, 1..=2))
                .await
                .expect("accounts"),
        );

        // The same account again exists; a transfer to an unknown account is refused.
        let reply = partition
            .write(create_accounts(2, [1]))
            .await
            .expect("again");
        assert_eq!(account_statuses(&reply), [CreateAccountStatus::Exists]);
        let unknown = Command::CreateTransfers {
            now: now(3),
            transfers: vec![transfer(1, 1, 99, 5)],
        };
        let reply = partition.write(unknown).await.expect("unknown account");
        let statuses = transfer_statuses(&reply);
        assert_eq!(statuses.len(), 1);
        assert_ne!(statuses[0], CreateTransferStatus::Created);

        let reply = partition
            .write(Command::ExpirePendingTransfers { now: now(4) })
            .await
            .expect("expire");
        assert_eq!(reply, Reply::ExpirePendingTransfers { expired: 0 });
        partition.read(|ledger| {
            check_ledger(ledger);
            assert_eq!(ledger.transfers().len(), 0);
        });
        partition.shutdown().await.expect("shutdown");
    });
}

#[test]
fn t01_concurrent_writes_all_apply_once() {
    let dir = TempDir::new("t01-concurrent");
    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("open");
        assert_all_created(
            &partition
                .write(create_accounts(1, 1..=8))
                .await
                .expect("accounts"),
        );
        let writes = (0..50u64).map(|n| {
            let first = 1 + u128::from(n) * 20;
            partition.write(create_transfers(2 + n, first, 20, 8))
        });
        for reply in join_all(writes).await {
            assert_all_created(&reply.expect("transfers"));
        }
        partition.read(|ledger| {
            check_ledger(ledger);
            assert_eq!(ledger.transfers().len(), 1000);
        });
        // The accounts, 50 batches, and the membership entry and blank entry before them.
        let applied = |status: &PartitionStatus| status.applied_index >= Some(52);
        let status = wait_status(&partition, "52 entries applied", applied).await;
        assert_eq!(status.last_log_index, status.applied_index);
        partition.shutdown().await.expect("shutdown");
    });
}

#[test]
fn t01_bad_requests_change_nothing() {
    let dir = TempDir::new("t01-bad");
    let error = run(Partition::open(config(dir.path(), 0)))
        .err()
        .expect("refused");
    assert!(
        matches!(error, PartitionError::Config { partition: 7, .. }),
        "{error}"
    );

    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("open");
        let before = partition.status();
        let too_many = kassa_shard::limits::BATCH_EVENTS_MAX as u64 + 1;
        let error = partition
            .write(create_accounts(
                1,
                (1..=u128::from(too_many)).collect::<Vec<_>>(),
            ))
            .await
            .expect_err("too large");
        assert!(
            matches!(error, PartitionError::BatchTooLarge { .. }),
            "{error}"
        );
        assert_eq!(partition.status().last_log_index, before.last_log_index);
        partition.read(|ledger| assert!(ledger.accounts().is_empty()));
        partition.shutdown().await.expect("shutdown");
    });
}

/// A write conditional on a leader term is appended in that term only: naming another term
/// (an earlier one the leader lost, or one it has not reached) refuses it before its append.
#[test]
fn t01_a_write_in_another_term_is_refused_before_its_append() {
    let dir = TempDir::new("t01-term");
    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("open");
        let term = partition.status().term;
        let reply = partition
            .write_in_term(create_accounts(1, 1..=3), term)
            .await
            .expect("written in its term");
        assert_all_created(&reply);
        let before = partition.status();
        for other in [term.wrapping_sub(1), term + 1] {
            let error = partition
                .write_in_term(create_accounts(2, 4..=5), other)
                .await
                .expect_err("another term");
            assert!(
                matches!(error, PartitionError::NotLeader { partition: 7, .. }),
                "{error}"
            );
            assert!(error.refused_before_append(), "{error}");
        }
        let after = partition.status();
        assert_eq!(after.last_log_index, before.last_log_index);
        assert_eq!(after.term, term);
        partition.read(|ledger| assert_eq!(ledger.accounts().len(), 3));
        partition.shutdown().await.expect("shutdown");
    });
}

#[test]
fn t01_full_batches_written_concurrently() {
    // Each command is ~1 MiB; together more than the storage log buffers for one append.
    const WRITES: u64 = 40;
    const EVENTS: u128 = kassa_shard::limits::BATCH_EVENTS_MAX as u128;
    let dir = TempDir::new("t01-full-batches");
    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("open");
        assert_all_created(
            &partition
                .write(create_accounts(1, 1..=100))
                .await
                .expect("accounts"),
        );
        let writes = (0..WRITES).map(|n| {
            let first = 1 + u128::from(n) * EVENTS;
            partition.write(create_transfers(2 + n, first, EVENTS, 100))
        });
        for reply in join_all(writes).await {
            assert_all_created(&reply.expect("transfers"));
        }
        partition.read(|ledger| {
            check_ledger(ledger);
            assert_eq!(
                ledger.transfers().len() as u128,
                u128::from(WRITES) * EVENTS
            );
        });
        partition.shutdown().await.expect("shutdown");
    });
}
