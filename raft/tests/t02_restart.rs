//! Restarts: after a clean shutdown, and after a crash — the process killed with SIGKILL
//! while idle right after acknowledgements, or in the middle of a stream of writes —
//! reopening finds every acknowledged write exactly once, and the partition goes on.
//!
//! A crash runs in a child process (this test binary, running one of its `#[ignore]`d child
//! tests): killing a process is the only way to drop a partition's tasks without any of its
//! code running, and it releases the log directory's lock as a real crash does.

mod common;

use common::*;
use kassa_raft::Partition;
use kassa_wire::CreateTransferStatus;

const ACCOUNTS: u128 = 16;
const BATCH: u128 = 25;
/// Most batches a child writes before it stops on its own (the parent kills it long before).
const CHILD_BATCHES_MAX: u64 = 100_000;

/// Writes the accounts (write 0) if `from` is 0, then batches `from..from + batches`; write
/// `n` is batch `n - 1`. Calls `acked(n, ledger)` after each acknowledged write.
async fn write_batches(
    partition: &Partition,
    from: u64,
    batches: u64,
    acked: impl Fn(u64, &Partition),
) {
    if from == 0 {
        let reply = partition
            .write(create_accounts(0, 1..=ACCOUNTS))
            .await
            .expect("accounts");
        assert_all_created(&reply);
        acked(0, partition);
    }
    for n in from..from + batches {
        let first = 1 + u128::from(n) * BATCH;
        let reply = partition
            .write(create_transfers(1 + n, first, BATCH, ACCOUNTS))
            .await;
        assert_all_created(&reply.expect("transfers"));
        acked(n + 1, partition);
    }
}

fn quietly(_: u64, _: &Partition) {}

fn report(n: u64, partition: &Partition) {
    partition.read(|ledger| report_ack(n, ledger));
}

/// The ledger holds exactly `batches` batches of transfers, each once.
fn check_batches(partition: &Partition, batches: u64) {
    partition.read(|ledger| {
        check_ledger(ledger);
        assert_eq!(ledger.accounts().len(), ACCOUNTS as usize);
        assert_eq!(
            ledger.transfers().len() as u128,
            u128::from(batches) * BATCH
        );
        let posted: u128 = ledger.accounts().iter().map(|a| a.debits_posted).sum();
        assert_eq!(posted, amounts(1, u128::from(batches) * BATCH));
    });
}

/// Batches of transfers in the ledger (the last may have been written and not acknowledged).
fn batches(partition: &Partition) -> u64 {
    partition.read(|ledger| (ledger.transfers().len() as u128 / BATCH) as u64)
}

/// Reopens after a crash: every acknowledged write is there once, the state is the one the
/// child saw after that write, and writing goes on. Returns the batches found.
fn reopen_after_crash(dir: &TempDir, acks: &[(u64, u64)]) -> u64 {
    let &(last_acked, _) = acks.last().expect("the child acknowledged writes");
    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("reopen");
        let found = batches(&partition);
        assert!(
            found >= last_acked,
            "acknowledged {last_acked} batches, found {found}"
        );
        check_batches(&partition, found);
        if let Some((_, child_digest)) = acks.iter().find(|(n, _)| *n == found) {
            assert_eq!(
                partition.read(digest),
                *child_digest,
                "state differs after {found}"
            );
        }
        write_batches(&partition, found, 2, quietly).await;
        check_batches(&partition, found + 2);
        partition.shutdown().await.expect("shutdown");
        found + 2
    })
}

#[test]
#[ignore = "a child process of the crash tests"]
fn t02_child_writes_until_killed() {
    let Some(dir) = child_dir() else { return };
    run(async {
        let partition = Partition::open(config(&dir, 1000)).await.expect("open");
        let from = batches(&partition);
        write_batches(&partition, from, CHILD_BATCHES_MAX, report).await;
    });
}

#[test]
#[ignore = "a child process of the crash tests"]
fn t02_child_writes_then_idles() {
    let Some(dir) = child_dir() else { return };
    run(async {
        let partition = Partition::open(config(&dir, 1000)).await.expect("open");
        write_batches(&partition, 0, 10, report).await;
        // Dropped without shutdown, then the process idles until it is killed.
        drop(partition);
        loop {
            monoio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
}

#[test]
fn t02_reopen_after_shutdown() {
    let dir = TempDir::new("t02-shutdown");
    let before = run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("open");
        write_batches(&partition, 0, 10, quietly).await;
        let bytes = partition.read(snapshot_bytes);
        partition.shutdown().await.expect("shutdown");
        bytes
    });
    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("reopen");
        check_batches(&partition, 10);
        assert_eq!(partition.read(snapshot_bytes), before);
        // A retried batch is not applied twice: every transfer exists already.
        let reply = partition
            .write(create_transfers(100, 1, BATCH, ACCOUNTS))
            .await;
        let statuses = transfer_statuses(&reply.expect("retry"));
        assert!(
            statuses.iter().all(|s| *s == CreateTransferStatus::Exists),
            "{statuses:?}"
        );
        write_batches(&partition, 10, 2, quietly).await;
        check_batches(&partition, 12);
        partition.shutdown().await.expect("shutdown");
    });
}

#[test]
fn t02_reopen_on_the_same_runtime() {
    let dir = TempDir::new("t02-same-runtime");
    run(async {
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("open");
        write_batches(&partition, 0, 3, quietly).await;
        partition.shutdown().await.expect("shutdown");
        let partition = Partition::open(config(dir.path(), 1000))
            .await
            .expect("reopen");
        check_batches(&partition, 3);
        write_batches(&partition, 3, 3, quietly).await;
        check_batches(&partition, 6);
        partition.shutdown().await.expect("shutdown");
    });
}

#[test]
fn t02_crash_after_acknowledgement() {
    let dir = TempDir::new("t02-crash-idle");
    let acks = crash_child("t02_child_writes_then_idles", dir.path(), 11);
    assert_eq!(acks.len(), 11);
    assert_eq!(reopen_after_crash(&dir, &acks), 12);
}

#[test]
fn t02_crashes_mid_stream_lose_nothing_acknowledged() {
    let dir = TempDir::new("t02-crash-stream");
    let mut expected_at_least = 0;
    for _ in 0..3 {
        let acks = crash_child("t02_child_writes_until_killed", dir.path(), 30);
        assert!(
            acks.first().is_some_and(|(n, _)| *n >= expected_at_least),
            "{acks:?}"
        );
        expected_at_least = reopen_after_crash(&dir, &acks);
    }
}
