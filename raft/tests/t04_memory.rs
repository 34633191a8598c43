//! The memory bound at the partition (`MemoryBudget`, docs/storage.md "Memory bound"): two
//! partitions share a budget; a write that passes its limit from a partition holding less
//! than an even share asks for nothing, and the idle partition holding more checkpoints when
//! checked (as the node's pulse checks every partition) and frees its memtable; the budget
//! is empty once both are shut down. Past twice the limit, a write waits for a checkpoint
//! to free memory before it is appended.

mod common;

use common::*;
use kassa_raft::{MemoryBudget, Partition, PartitionConfig};
use std::sync::Arc;

const ACCOUNTS: u128 = 12;
/// Memtable bytes the two partitions share: a few thousand transfers.
const LIMIT: u64 = 1 << 20;

#[test]
fn an_idle_partition_over_its_share_checkpoints_when_checked_and_shutdown_empties_the_budget() {
    let (first_dir, second_dir) = (TempDir::new("memory-first"), TempDir::new("memory-second"));
    run(async {
        let budget = MemoryBudget::new(LIMIT, kassa_storage::run::PageBudget::unbounded(), 2);
        let open = |dir, partition| {
            let config = PartitionConfig {
                partition,
                memory: budget.clone(),
                ..config(dir, 1_000_000)
            };
            Partition::open(config)
        };
        let first = open(first_dir.path(), 1).await.expect("open the first");
        let second = open(second_dir.path(), 2).await.expect("open the second");
        for partition in [&first, &second] {
            let reply = partition.write(create_accounts(0, 1..=ACCOUNTS)).await;
            assert_all_created(&reply.expect("accounts"));
        }

        // The first fills until one more batch would pass the limit.
        let (mut n, mut used, mut step) = (1u64, 0u64, 0u64);
        while used + step < LIMIT {
            let command = create_transfers(n, 1 + u128::from(n) * 100, 100, ACCOUNTS);
            assert_all_created(&first.write(command).await.expect("transfers"));
            n += 1;
            step = budget.used() - used;
            used = budget.used();
        }
        assert_eq!(first.metrics().memory_checkpoint_asks, 0, "under the limit");

        // A smaller batch in the second passes the limit; under an even share, it asks
        // for nothing.
        let command = create_transfers(n, 1, 300, ACCOUNTS);
        assert_all_created(&second.write(command).await.expect("transfers"));
        let (first_bytes, second_bytes) = (
            first.metrics().memtable_bytes,
            second.metrics().memtable_bytes,
        );
        assert!(budget.used() > LIMIT, "{} used", budget.used());
        assert!(
            second_bytes * 2 < budget.used(),
            "{second_bytes} is under an even share"
        );
        assert_eq!(second.metrics().memory_checkpoint_asks, 0);
        assert_eq!(
            first.metrics().memory_checkpoint_asks,
            0,
            "no write came to it"
        );
        assert_eq!(first.status().snapshot_index, None);

        // Checked with no write (the node's pulse), the first asks once and its checkpoint
        // frees its memtable; checked again meanwhile, it does not ask again.
        first.check_memory().await;
        first.check_memory().await;
        assert_eq!(first.metrics().memory_checkpoint_asks, 1);
        wait_status(&first, "a checkpoint", |status| {
            status.snapshot_index.is_some()
        })
        .await;
        for _ in 0..STATUS_POLLS_MAX {
            if first.metrics().memtable_bytes < first_bytes {
                break;
            }
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(first.metrics().memtable_bytes, 0, "the checkpoint freed it");
        assert_eq!(budget.used(), second_bytes);
        first.check_memory().await;
        assert_eq!(
            first.metrics().memory_checkpoint_asks,
            1,
            "under the limit again"
        );

        first.shutdown().await.expect("shut down the first");
        assert_eq!(budget.used(), second_bytes);
        second.shutdown().await.expect("shut down the second");
        assert_eq!(
            budget.used(),
            0,
            "closed partitions hold nothing of the budget"
        );
    });
}

/// A memtable limit small enough for one batch to pass twice it.
const SMALL: u64 = 64 << 10;

/// A partition in `dir` whose node's memtables one batch took past twice `SMALL`, and their
/// budget: the batch found them under it, and its checkpoint was asked for.
async fn past_twice_the_limit(dir: &std::path::Path) -> (Partition, Arc<MemoryBudget>) {
    let budget = MemoryBudget::new(SMALL, kassa_storage::run::PageBudget::unbounded(), 1);
    let config = PartitionConfig {
        memory: budget.clone(),
        ..config(dir, 1_000_000)
    };
    let partition = Partition::open(config).await.expect("open");
    let reply = partition.write(create_accounts(0, 1..=ACCOUNTS)).await;
    assert_all_created(&reply.expect("accounts"));
    let batch = create_transfers(1, 1, 2_000, ACCOUNTS);
    assert_all_created(&partition.write(batch).await.expect("a batch"));
    assert!(budget.used() > 2 * SMALL, "{} used", budget.used());
    (partition, budget)
}

/// A write that finds the node's memtables past twice their limit (a load faster than the
/// disk: the checkpoint asked for is not durable yet) waits until a checkpoint frees
/// memory, then is written: memory stays bounded and nothing is refused.
#[test]
fn past_twice_the_limit_a_write_waits_for_a_checkpoint_to_free_memory() {
    let dir = TempDir::new("memory-wait");
    run(async {
        let (partition, budget) = past_twice_the_limit(dir.path()).await;
        assert_eq!(partition.metrics().memory_waits, 0);
        assert_eq!(partition.metrics().memory_checkpoint_asks, 1);
        // The next waits for the checkpoint asked for (nothing else ran since: one thread),
        // and is written once it freed the memtable.
        let next = create_transfers(2, 100_000, 10, ACCOUNTS);
        assert_all_created(&partition.write(next).await.expect("the next batch"));
        assert_eq!(partition.metrics().memory_waits, 1);
        assert!(partition.status().snapshot_index.is_some());
        assert!(budget.used() <= 2 * SMALL, "{} used", budget.used());
        let transfers = partition.metrics().transfers;
        assert_eq!(transfers, 2_010, "every transfer written, none lost");
        partition.shutdown().await.expect("shut down");
    });
}

/// A node that stops lets writes waiting for memory go on at once
/// (`MemoryBudget::stop_waiting`): the stop waits for what it took, not for checkpoints. The
/// same state as the test above, where the next write waits: stopping, it does not.
#[test]
fn a_stopping_node_lets_writes_past_twice_the_limit_go_on() {
    let dir = TempDir::new("memory-wait-stop");
    run(async {
        let (partition, budget) = past_twice_the_limit(dir.path()).await;
        budget.stop_waiting();
        let next = create_transfers(2, 100_000, 10, ACCOUNTS);
        assert_all_created(&partition.write(next).await.expect("the next batch"));
        assert_eq!(partition.metrics().memory_waits, 0, "it did not wait");
        assert_eq!(
            partition.metrics().transfers,
            2_010,
            "every transfer written"
        );
        partition.shutdown().await.expect("shut down");
    });
}
