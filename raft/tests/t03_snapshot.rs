//! Snapshots, which are checkpoints (a manifest and runs): with a small `snapshot_entries`,
//! writes trigger checkpoints and log purges; a partition reopened after a shutdown or a crash
//! (a child process killed with SIGKILL in the middle of writing, as in `t02_restart`)
//! restores the latest checkpoint, replays the log after it and holds a byte-identical
//! ledger; a damaged manifest or run refuses to open, and runs no manifest names are deleted.

mod common;

use common::*;
use std::sync::Arc;

use kassa_raft::{
    LogOptions, MemoryBudget, Partition, PartitionConfig, PartitionError, PartitionStatus,
};
use kassa_shard::{ClientRead, Ledger};
use kassa_storage::durable_file;
use kassa_storage::run::PageBudget;
use kassa_wire::{
    AccountFilter, AccountFilterFlags, AccountId, ChangeEvent, CreateTransferStatus, QueryFilter,
    QueryFilterFlags, Transfer, TransferFlags, TransferId,
};

const ACCOUNTS: u128 = 12;
const BATCH: u128 = 10;
const SNAPSHOT_ENTRIES: u64 = 10;
/// Most batches a child writes before it stops on its own (the parent kills it long before).
const CHILD_BATCHES_MAX: u64 = 100_000;

/// Log segments of 16 KiB: a few batches each, so that purges remove whole files.
fn small_segments() -> LogOptions {
    LogOptions {
        segment_size_max: 16 * 1024,
        ..LogOptions::default()
    }
}

async fn write_batches(partition: &Partition, from: u64, batches: u64) {
    if from == 0 {
        let reply = partition.write(create_accounts(0, 1..=ACCOUNTS)).await;
        assert_all_created(&reply.expect("accounts"));
    }
    for n in from..from + batches {
        write_batch(partition, n).await;
    }
}

/// Writes batch `n`: transfers `1 + n * BATCH ..`, as command `1 + n`.
async fn write_batch(partition: &Partition, n: u64) {
    let first = 1 + u128::from(n) * BATCH;
    let reply = partition
        .write(create_transfers(1 + n, first, BATCH, ACCOUNTS))
        .await;
    assert_all_created(&reply.expect("transfers"));
}

/// Waits until a snapshot covers at least `index` and the log is purged up to it.
async fn wait_snapshot(partition: &Partition, index: u64) -> PartitionStatus {
    let done = |status: &PartitionStatus| {
        status.snapshot_index >= Some(index) && status.purged_index >= Some(index)
    };
    wait_status(partition, "a snapshot and a purge", done).await
}

/// Writes 60 batches; returns the ledger's bytes and the status after the last snapshot.
async fn write_and_snapshot(partition: &Partition) -> (Vec<u8>, PartitionStatus) {
    write_batches(partition, 0, 60).await;
    let status = partition.status();
    let last = status.last_log_index.expect("log");
    let threshold = last - last % SNAPSHOT_ENTRIES - SNAPSHOT_ENTRIES;
    let status = wait_snapshot(partition, threshold).await;
    partition.read(check_ledger);
    (partition.read(snapshot_bytes), status)
}

/// The change entries the ledger keeps in memory, and all its retained change events.
fn change_events(ledger: &Ledger) -> (usize, Vec<ChangeEvent>) {
    let mut events = Vec::new();
    ledger
        .change_events(0, usize::MAX, &mut events)
        .expect("change events");
    (ledger.change_entries_in_memory(), events)
}

/// The transfers the ledger keeps in memory, and every transfer looked up by id and read
/// through the first account's transfers (the older ones from the runs).
fn transfers_read(ledger: &Ledger) -> (usize, Vec<Transfer>, Vec<Transfer>) {
    let ids: Vec<TransferId> = (1..=ledger.transfers().len() as u128 + 5)
        .map(TransferId)
        .collect();
    let mut found = Vec::new();
    for chunk in ids.chunks(8_189) {
        ledger
            .lookup_transfers(chunk, &mut found)
            .expect("cold reads");
    }
    let both = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
    let filter = AccountFilter::new(AccountId(1), 8_189, both);
    let mut listed = Vec::new();
    ledger
        .get_account_transfers(&filter, &mut listed)
        .expect("cold reads");
    (ledger.transfers_in_memory(), found, listed)
}

/// `count` transfers with ids scattered over the id space (ids `n`, `n + 1`, ... hashed),
/// as command `n`.
fn scattered_transfers(n: u64, first: u64, count: u64) -> kassa_shard::Command {
    let transfers = (first..first + count)
        .map(|at| {
            let id = u128::from(at.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 32 | 1;
            let debit = 1 + u128::from(at) % ACCOUNTS;
            transfer(id, debit, 1 + debit % ACCOUNTS, 1)
        })
        .collect();
    kassa_shard::Command::CreateTransfers {
        now: now(n),
        transfers,
    }
}

/// The id runs' keys and bytes in memory.
fn id_runs(partition: &Partition) -> (u64, u64) {
    let store = partition.metrics().store;
    let ids = store
        .keyspaces
        .iter()
        .find(|k| k.keyspace == "transfer-ids");
    let ids = ids.expect("id runs");
    (ids.keys, ids.memory_bytes)
}

/// Id runs of tens of thousands of scattered ids have filters (and, once merged, indexes) of
/// many pages. A reopened partition reads none of those pages; a batch of new ids then reads
/// the pages its lookups need ahead of its apply, through io_uring, so that the apply blocks
/// on no read, and retries of old ids do the same.
#[test]
fn t03_a_restart_reads_no_index_or_filter_page_and_applies_read_them_ahead() {
    applies_read_pages_ahead("t03-pages", PageBudget::unbounded());
}

/// The same past a page budget of 8 pages: the runs keep 8 pages, the rest are read ahead
/// and held in the partition's block cache for the apply, which still blocks on no read and
/// answers the same.
#[test]
fn t03_past_the_page_budget_applies_still_read_pages_ahead_and_memory_keeps_to_it() {
    applies_read_pages_ahead("t03-page-budget", PageBudget::new(8 * 4096));
}

/// A partition whose runs' pages take from `pages`: see the tests above.
fn applies_read_pages_ahead(name: &str, pages: Arc<PageBudget>) {
    let dir = TempDir::new(name);
    const IDS: u64 = 8_000;
    let config = |dir: &std::path::Path| PartitionConfig {
        memory: MemoryBudget::new(0, pages.clone(), 1),
        ..config(dir, 3)
    };
    let status = run(async {
        let partition = Partition::open(config(dir.path())).await.expect("open");
        let reply = partition.write(create_accounts(0, 1..=ACCOUNTS)).await;
        assert_all_created(&reply.expect("accounts"));
        for n in 1..=12 {
            let command = scattered_transfers(n, n * IDS, IDS);
            assert_all_created(&partition.write(command).await.expect("transfers"));
        }
        let status = wait_snapshot(&partition, 12).await;
        partition.shutdown().await.expect("shutdown");
        status
    });
    run(async {
        let partition = Partition::open(config(dir.path())).await.expect("reopen");
        assert!(partition.status().snapshot_index >= status.snapshot_index);
        let (keys, opened) = id_runs(&partition);
        // 96,000 ids at 10 bits: 120 KB of filters, none of them read; what is in memory is
        // the indexes of one page, read whole (16 bytes per block of 204 ids), and the page
        // tables.
        let filters = keys * 10 / 8;
        assert!(filters > 100_000, "{filters} bytes of id filters");
        assert!(
            opened * 5 < filters,
            "{opened} bytes at open, {filters} before"
        );
        // No read blocks, in the apply or before it: every page and block is read ahead.
        let blocking = || partition.metrics().store.cache.misses;
        let before = blocking();
        let command = scattered_transfers(13, 13 * IDS, IDS);
        assert_all_created(&partition.write(command).await.expect("new ids"));
        let after = partition.status();
        assert!(after.cold_prefetched_blocks > 0, "{after:?}");
        assert_eq!(after.cold_blocking_reads, 0, "{after:?}");
        assert_eq!(blocking(), before);
        let (_, loaded) = id_runs(&partition);
        match pages.limit() {
            usize::MAX => assert!(
                loaded > opened + filters / 2,
                "{loaded} bytes after, {opened} at open"
            ),
            limit => {
                assert_eq!(pages.used(), limit, "the budget is filled, not passed");
                assert!(loaded <= opened + limit as u64, "{loaded} bytes after");
            }
        }
        let retry = scattered_transfers(14, 2 * IDS, IDS);
        let reply = partition.write(retry).await.expect("retries");
        let statuses = transfer_statuses(&reply);
        assert!(statuses.iter().all(|s| *s == CreateTransferStatus::Exists));
        assert_eq!(partition.status().cold_blocking_reads, 0);
        assert_eq!(blocking(), before);
        partition.read(check_ledger);
        partition.shutdown().await.expect("shutdown");
    });
    assert_eq!(pages.used(), 0, "closed runs give their pages back");
}

#[test]
fn t03_snapshots_purge_and_restore_after_shutdown() {
    let dir = TempDir::new("t03-shutdown");
    let ((before, status), events) = run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("open");
        let result = write_and_snapshot(&partition).await;
        // The change entries the checkpoints hold left memory; events read through the
        // runs are those the ledger recorded.
        let (in_memory, events) = partition.read(change_events);
        assert!(
            in_memory < events.len() / 4,
            "{in_memory} of {} change entries in memory",
            events.len()
        );
        // So did the transfers; lookups and an account's transfers read the rest from runs.
        let (in_memory, transfers, listed) = partition.read(transfers_read);
        assert_eq!(transfers.len() as u128, 60 * BATCH);
        assert!(!listed.is_empty());
        assert!(
            in_memory < transfers.len() / 4,
            "{in_memory} of {} transfers in memory",
            transfers.len()
        );
        partition.shutdown().await.expect("shutdown");
        (result, (events, transfers, listed))
    });
    let (events, transfers, listed) = events;
    assert!(status.snapshot_index >= Some(40), "{status:?}");
    run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("reopen");
        let reopened = partition.status();
        assert!(
            reopened.snapshot_index >= status.snapshot_index,
            "{reopened:?}"
        );
        // The stop took a checkpoint of everything applied unless fewer entries than a
        // quarter of `snapshot_entries` came after the last one: little is left to replay.
        let replayed = status.last_log_index.unwrap_or(0) - reopened.snapshot_index.unwrap_or(0);
        assert!(
            replayed < SNAPSHOT_ENTRIES / 4,
            "{reopened:?} after {status:?}"
        );
        assert_eq!(partition.read(snapshot_bytes), before);
        // Restored with only what was replayed in memory, the rest read from the runs.
        let (in_memory, reread) = partition.read(change_events);
        assert_eq!(reread, events);
        assert!(
            in_memory as u64 <= replayed * BATCH as u64,
            "{in_memory} in memory"
        );
        let (in_memory, reread, relisted) = partition.read(transfers_read);
        assert_eq!((reread, relisted), (transfers, listed));
        assert!(
            in_memory as u64 <= replayed * BATCH as u64,
            "{in_memory} transfers in memory"
        );
        write_batches(&partition, 60, 15).await;
        wait_snapshot(&partition, reopened.snapshot_index.expect("snapshot") + 10).await;
        partition.read(|ledger| {
            check_ledger(ledger);
            assert_eq!(ledger.transfers().len() as u128, 75 * BATCH);
        });
        partition.shutdown().await.expect("shutdown");
    });
    run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("reopen");
        // The ids and account lists the checkpoint holds stay in its runs: memory holds the
        // replayed ones (two list entries per transfer: its two accounts).
        let (ids, listed, replayed) = partition.read(|ledger| {
            let replayed = ledger.transfers().len() - ledger.transfers().cold_below() as usize;
            let listed = ledger.account_transfers_in_memory();
            (ledger.transfer_ids_in_memory(), listed, replayed)
        });
        assert_eq!(ids, replayed, "ids in memory");
        assert_eq!(listed, 2 * replayed, "account list entries in memory");
        assert!(replayed < 10 * BATCH as usize, "{replayed} replayed");
        // Retries of the first batches' ids, which are only in the runs now, answer `exists`:
        // the transfers they compare with were read ahead of the apply, none while it ran
        // (before any other read of them, so that no cache holds them).
        let retry = create_transfers(1_000, 1, 3 * BATCH, ACCOUNTS);
        let reply = partition.write(retry).await.expect("retries");
        let statuses = transfer_statuses(&reply);
        assert!(
            statuses.iter().all(|s| *s == CreateTransferStatus::Exists),
            "{statuses:?}"
        );
        let cold = partition.status();
        assert!(cold.cold_prefetched_blocks > 0, "{cold:?}");
        assert_eq!(cold.cold_blocking_reads, 0, "{cold:?}");
        // New ids are looked up in the id runs too, and read nothing while applied.
        write_batches(&partition, 75, 3).await;
        assert_eq!(partition.status().cold_blocking_reads, 0);
        partition.read(check_ledger);
        partition.shutdown().await.expect("shutdown");
    });
}

/// Two-phase transfers: `count` pending ones from `first` on (with `flags` PENDING), or with
/// `resolving` the posts and voids of them (`pending_id` set, ids past them).
fn two_phase(
    n: u64,
    ids: std::ops::Range<u128>,
    resolve: Option<TransferFlags>,
) -> kassa_shard::Command {
    let transfers = ids
        .map(|id| match resolve {
            None => Transfer {
                flags: TransferFlags::PENDING,
                ..transfer(id, 1 + id % ACCOUNTS, 1 + (id + 1) % ACCOUNTS, 5)
            },
            Some(flags) => Transfer {
                pending_id: TransferId(id),
                flags,
                ..transfer(id + 1_000_000, 0, 0, 5)
            },
        })
        .collect();
    kassa_shard::Command::CreateTransfers {
        now: now(n),
        transfers,
    }
}

/// The resolution of pending transfer `id` (from 1,000,000 on): posted (even), voided (one in
/// four) or left pending.
fn resolution(id: u128) -> Option<TransferFlags> {
    match id % 4 {
        0 | 2 => Some(TransferFlags::POST_PENDING_TRANSFER),
        1 => Some(TransferFlags::VOID_PENDING_TRANSFER),
        _ => None,
    }
}

/// Every ledger invariant, and debits = credits, posted and pending.
fn check_two_phase_ledger(ledger: &Ledger) {
    ledger.validate();
    let sum = |of: fn(&kassa_wire::Account) -> u128| ledger.accounts().iter().map(of).sum::<u128>();
    assert_eq!(sum(|a| a.debits_posted), sum(|a| a.credits_posted));
    assert_eq!(sum(|a| a.debits_pending), sum(|a| a.credits_pending));
    assert!(sum(|a| a.debits_pending) > 0, "some still pending");
}

/// Resolved two-phase statuses leave memory once a durable checkpoint holds them (4,096
/// positions at a time), and a restart keeps only the pending ones. A late post or void of a
/// resolved transfer then reads its status from the status runs, read ahead of the apply (no
/// blocking read), and answers as the ledger did before.
#[test]
fn t03_resolved_statuses_are_read_from_their_runs_after_a_restart() {
    const FIRST: u128 = 1_000_000;
    const PENDING: u128 = 6_000;
    let dir = TempDir::new("t03-statuses");
    let held_before = run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("open");
        let reply = partition.write(create_accounts(0, 1..=ACCOUNTS)).await;
        assert_all_created(&reply.expect("accounts"));
        let mut n = 1;
        for from in (FIRST..FIRST + PENDING).step_by(1_000) {
            let reply = partition
                .write(two_phase(n, from..from + 1_000, None))
                .await;
            assert_all_created(&reply.expect("pending"));
            n += 1;
        }
        for flags in [
            TransferFlags::POST_PENDING_TRANSFER,
            TransferFlags::VOID_PENDING_TRANSFER,
        ] {
            for from in (FIRST..FIRST + PENDING).step_by(1_000) {
                let mut command = two_phase(n, from..from + 1_000, Some(flags));
                let kassa_shard::Command::CreateTransfers { transfers, .. } = &mut command else {
                    unreachable!("transfers")
                };
                transfers.retain(|t| resolution(t.pending_id.0) == Some(flags));
                let reply = partition.write(command).await;
                assert_all_created(&reply.expect("resolved"));
                n += 1;
            }
        }
        write_batches(&partition, 1, 20).await;
        let last = partition.status().last_log_index.expect("log");
        wait_snapshot(
            &partition,
            last - last % SNAPSHOT_ENTRIES - SNAPSHOT_ENTRIES,
        )
        .await;
        let held = partition.read(|ledger| {
            check_two_phase_ledger(ledger);
            ledger.transfer_statuses_in_memory()
        });
        partition.shutdown().await.expect("shutdown");
        held
    });
    run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("reopen");
        // The pending quarter and the chunk the last checkpoint's cut falls in.
        let held = partition.read(|ledger| ledger.transfer_statuses_in_memory());
        assert!(
            held <= PENDING as usize / 4 + 4_096,
            "{held} statuses in memory"
        );
        assert!(
            held <= held_before,
            "{held} after a restart, {held_before} before"
        );
        let before = partition.status();
        let mut late = two_phase(
            1_000,
            FIRST..FIRST + 8,
            Some(TransferFlags::POST_PENDING_TRANSFER),
        );
        let kassa_shard::Command::CreateTransfers { transfers, .. } = &mut late else {
            unreachable!("transfers")
        };
        transfers.iter_mut().for_each(|t| t.id.0 += 5_000_000); // ids never used
        let reply = partition.write(late).await.expect("late posts");
        let statuses = transfer_statuses(&reply);
        let expected: Vec<CreateTransferStatus> = (FIRST..FIRST + 8)
            .map(|id| match resolution(id) {
                Some(TransferFlags::POST_PENDING_TRANSFER) => {
                    CreateTransferStatus::PendingTransferAlreadyPosted
                }
                Some(_) => CreateTransferStatus::PendingTransferAlreadyVoided,
                None => CreateTransferStatus::Created,
            })
            .collect();
        assert_eq!(statuses, expected);
        let after = partition.status();
        assert_eq!(
            after.cold_blocking_reads, before.cold_blocking_reads,
            "{after:?}"
        );
        assert!(after.cold_prefetched_blocks > before.cold_prefetched_blocks);
        partition.read(check_two_phase_ledger);
        partition.shutdown().await.expect("shutdown");
    });
}

/// Reads bounded by timestamp, over the transfers a query or an account lists.
fn bounded_reads(transfers: &[Transfer]) -> Vec<ClientRead> {
    let at = |position: usize| transfers[position].timestamp;
    let bounds = [
        (at(5), 0),
        (at(37), at(300)),
        (at(31), at(33)),
        (0, at(64)),
        (at(100) + 1, at(101) - 1),
        (at(299), at(transfers.len() - 1)),
    ];
    let mut reads = Vec::new();
    for (min, max) in bounds {
        for reversed in [false, true] {
            let mut query = QueryFilter::new(20, QueryFilterFlags::default());
            if reversed {
                query.flags = QueryFilterFlags::REVERSED;
            }
            (query.timestamp_min, query.timestamp_max) = (min, max);
            reads.push(ClientRead::QueryTransfers(query));
            let both = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
            let flags = match reversed {
                true => both | AccountFilterFlags::REVERSED,
                false => both,
            };
            let mut filter = AccountFilter::new(AccountId(1), 20, flags);
            (filter.timestamp_min, filter.timestamp_max) = (min, max);
            reads.push(ClientRead::AccountTransfers(filter));
        }
    }
    reads
}

/// What `read` returns, by a walk over every transfer (`transfers`, oldest first).
fn answer_by_walk(transfers: &[Transfer], read: &ClientRead) -> Vec<Transfer> {
    let within = |t: &&Transfer, min: u64, max: u64| {
        (min == 0 || t.timestamp >= min) && (max == 0 || t.timestamp <= max)
    };
    let (mut found, reversed): (Vec<Transfer>, bool) = match read {
        ClientRead::QueryTransfers(filter) => (
            (transfers.iter())
                .filter(|t| within(t, filter.timestamp_min, filter.timestamp_max))
                .copied()
                .collect(),
            filter.flags.contains(QueryFilterFlags::REVERSED),
        ),
        ClientRead::AccountTransfers(filter) => (
            (transfers.iter())
                .filter(|t| within(t, filter.timestamp_min, filter.timestamp_max))
                .filter(|t| {
                    t.debit_account_id == filter.account_id
                        || t.credit_account_id == filter.account_id
                })
                .copied()
                .collect(),
            filter.flags.contains(AccountFilterFlags::REVERSED),
        ),
        _ => unreachable!("reads by filter"),
    };
    if reversed {
        found.reverse();
    }
    found.truncate(20);
    found
}

fn answer(ledger: &Ledger, read: &ClientRead) -> Vec<Transfer> {
    let mut out = Vec::new();
    match read {
        ClientRead::QueryTransfers(filter) => ledger.query_transfers(filter, &mut out),
        ClientRead::AccountTransfers(filter) => ledger.get_account_transfers(filter, &mut out),
        _ => unreachable!("reads by filter"),
    }
    .expect("cold reads");
    out
}

/// Reads bounded by timestamp over cold transfers seek the timestamp samples in the runs
/// (one run per checkpoint, none of them in memory). Right after a restart, with nothing
/// cached, `prefetch_read` reads the samples ahead, then the transfers they point to: the
/// read itself reads nothing blocking, and answers as before the restart.
#[test]
fn t03_reads_bounded_by_timestamp_read_their_samples_ahead_after_a_restart() {
    let dir = TempDir::new("t03-timestamps");
    let (reads, expected) = run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("open");
        write_and_snapshot(&partition).await;
        let all = partition.read(|ledger| {
            assert!(ledger.transfers().cold_below() > 300, "mostly cold");
            ledger.all_transfers().expect("cold reads")
        });
        let reads = bounded_reads(&all);
        let expected: Vec<Vec<Transfer>> = (reads.iter())
            .map(|read| answer_by_walk(&all, read))
            .collect();
        for (read, expected) in reads.iter().zip(&expected) {
            let found = partition.read(|ledger| answer(ledger, read));
            assert_eq!(&found, expected, "{read:?} before the restart");
        }
        let found = expected.iter().filter(|found| !found.is_empty()).count();
        assert!(
            found >= expected.len() / 2,
            "{found} of {} reads find transfers",
            expected.len()
        );
        partition.shutdown().await.expect("shutdown");
        (reads, expected)
    });
    run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("reopen");
        for (read, expected) in reads.iter().zip(&expected) {
            let misses = partition.metrics().store.cache.misses;
            let held = partition.prefetch_read(read).await;
            let found = partition.read(|ledger| answer(ledger, read));
            drop(held);
            assert_eq!(&found, expected, "{read:?}");
            let blocking = partition.metrics().store.cache.misses - misses;
            assert_eq!(blocking, 0, "{read:?}: blocking reads");
        }
        partition.shutdown().await.expect("shutdown");
    });
}

#[test]
#[ignore = "a child process of the crash test"]
fn t03_child_writes_until_killed() {
    let Some(dir) = child_dir() else { return };
    run(async {
        let partition = Partition::open_with(config(&dir, SNAPSHOT_ENTRIES), small_segments())
            .await
            .expect("open");
        let report = |n: u64| partition.read(|ledger| report_ack(n, ledger));
        write_batches(&partition, 0, 0).await;
        report(0);
        for n in 0..CHILD_BATCHES_MAX {
            write_batch(&partition, n).await;
            report(n + 1);
        }
    });
}

#[test]
fn t03_snapshots_restore_after_crash() {
    let dir = TempDir::new("t03-crash");
    // Killed mid-stream, several snapshots and purges in.
    let acks = crash_child("t03_child_writes_until_killed", dir.path(), 80);
    let &(last_acked, _) = acks.last().expect("acks");
    let before = run(async {
        let partition =
            Partition::open_with(config(dir.path(), SNAPSHOT_ENTRIES), small_segments())
                .await
                .expect("reopen");
        let status = partition.status();
        assert!(status.snapshot_index >= Some(40), "{status:?}");
        let found = partition.read(|ledger| (ledger.transfers().len() as u128 / BATCH) as u64);
        assert!(
            found >= last_acked,
            "acknowledged {last_acked} batches, found {found}"
        );
        partition.read(|ledger| {
            check_ledger(ledger);
            assert_eq!(ledger.transfers().len() as u128, u128::from(found) * BATCH);
        });
        if let Some((_, child_digest)) = acks.iter().find(|(n, _)| *n == found) {
            assert_eq!(
                partition.read(digest),
                *child_digest,
                "state differs after {found}"
            );
        }
        let bytes = partition.read(snapshot_bytes);
        partition.shutdown().await.expect("shutdown");
        bytes
    });
    run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("reopen");
        assert_eq!(partition.read(snapshot_bytes), before);
        partition.shutdown().await.expect("shutdown");
    });
}

/// Opens the partition in `dir` after `damage` changed its checkpoint manifest's payload.
fn open_damaged(dir: &TempDir, damage: impl FnOnce(&mut Vec<u8>)) -> PartitionError {
    run(async {
        let file = durable_file::read(dir.path(), "checkpoint")
            .await
            .expect("read");
        let mut bytes = file.expect("a checkpoint");
        damage(&mut bytes);
        durable_file::write(dir.path(), "checkpoint", &bytes)
            .await
            .expect("write");
        Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .err()
            .expect("a damaged checkpoint must not open")
    })
}

/// The partition's run files, by name.
fn runs(dir: &TempDir) -> Vec<String> {
    let entries = std::fs::read_dir(dir.path().join("runs")).expect("runs dir");
    let mut names: Vec<String> = entries
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8")
        })
        .collect();
    names.sort();
    names
}

fn opens_with_its_state(dir: &TempDir) {
    run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("open");
        partition.read(|ledger| assert_eq!(ledger.transfers().len() as u128, 60 * BATCH));
        partition.read(check_ledger);
        partition.shutdown().await.expect("shutdown");
    });
}

#[test]
fn t03_damaged_checkpoint_refuses_to_open() {
    let dir = TempDir::new("t03-damaged");
    run(async {
        let partition = Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))
            .await
            .expect("open");
        write_and_snapshot(&partition).await;
        partition.shutdown().await.expect("shutdown");
    });
    let manifest = dir.path().join("checkpoint");
    let original = std::fs::read(&manifest).expect("checkpoint file");
    assert!(
        !dir.path().join("snapshot").exists(),
        "no whole snapshot is written"
    );

    // A flipped bit under the storage checksum.
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&manifest, bytes).expect("damage");
    let error = run(Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))).err();
    let error = error.expect("a damaged file must not open");
    assert!(matches!(error, PartitionError::Storage { .. }), "{error}");

    // Intact file, bad header: this crate's decoder refuses it.
    std::fs::write(&manifest, &original).expect("restore");
    let error = open_damaged(&dir, |bytes| bytes[0] ^= 1);
    assert!(
        matches!(
            error,
            PartitionError::Damaged {
                file: "checkpoint",
                ..
            }
        ),
        "{error}"
    );

    // Intact file and header, a byte of the ledger's hot state changed: its checksum refuses it.
    std::fs::write(&manifest, &original).expect("restore");
    let error = open_damaged(&dir, |bytes| *bytes.last_mut().expect("bytes") ^= 1);
    assert!(matches!(error, PartitionError::Snapshot { .. }), "{error}");

    // A run damaged, then missing: the storage layer refuses it, naming the file.
    std::fs::write(&manifest, &original).expect("restore");
    let names = runs(&dir);
    let first = dir.path().join("runs").join(&names[0]);
    let run_bytes = std::fs::read(&first).expect("run");
    let mut damaged = run_bytes.clone();
    damaged[100] ^= 1;
    std::fs::write(&first, &damaged).expect("damage the run");
    let error = run(Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))).err();
    let error = error.expect("a damaged run must not open");
    assert!(error.to_string().contains(&names[0]), "{error}");
    std::fs::remove_file(&first).expect("remove the run");
    let error = run(Partition::open(config(dir.path(), SNAPSHOT_ENTRIES))).err();
    let error = error.expect("a missing run must not open");
    assert!(matches!(error, PartitionError::Storage { .. }), "{error}");

    // Put back, with a run nobody names and a temporary file beside: it opens with the state
    // it had, and the leftovers are deleted.
    std::fs::write(&first, &run_bytes).expect("put back");
    let stray = dir
        .path()
        .join("runs")
        .join("transfers-99999999999999999999.run");
    std::fs::write(&stray, &run_bytes).expect("a stray run");
    let temporary = dir
        .path()
        .join("runs")
        .join("history-00000000000000000077.run.tmp");
    std::fs::write(&temporary, b"torn").expect("a temporary file");
    opens_with_its_state(&dir);
    assert!(!stray.exists() && !temporary.exists(), "leftovers deleted");
    // The runs named are kept (the stop may have added a checkpoint's).
    let kept = runs(&dir);
    assert!(names.iter().all(|name| kept.contains(name)), "{kept:?}");
}

/// The first index of each segment file in the partition's log directory, ascending.
fn segments(dir: &TempDir) -> Vec<u64> {
    let entries = std::fs::read_dir(dir.path().join("log")).expect("log dir");
    let mut firsts: Vec<u64> = entries
        .filter_map(|entry| {
            let name = entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8");
            let digits = name.strip_prefix("log-")?.strip_suffix(".seg")?;
            Some(digits.parse().expect("segment name"))
        })
        .collect();
    firsts.sort_unstable();
    firsts
}

#[test]
fn t03_purge_removes_segments_and_reopens() {
    let dir = TempDir::new("t03-segments");
    let open = || Partition::open_with(config(dir.path(), SNAPSHOT_ENTRIES), small_segments());
    let (before, status) = run(async {
        let partition = open().await.expect("open");
        let result = write_and_snapshot(&partition).await;
        partition.shutdown().await.expect("shutdown");
        result
    });
    // Purges ran before the stop, and the stop's own checkpoint covers everything applied:
    // its purge may leave no segment at all.
    assert!(status.purged_index.is_some(), "{status:?}");
    let firsts = segments(&dir);
    assert!(
        firsts.first().is_none_or(|first| *first > 1),
        "no segment removed: {firsts:?}"
    );
    for _ in 0..2 {
        run(async {
            let partition = open().await.expect("reopen");
            assert_eq!(partition.read(snapshot_bytes), before);
            partition.shutdown().await.expect("shutdown");
        });
    }
}
