//! Checkpoints: a ledger restored from a chain of increments (each checkpoint's keyspaces since
//! the previous durable one, plus the last hot state) is byte for byte the ledger that took
//! them, through pending transfers posted, voided and expired across checkpoints, history
//! accounts, released change events and a checkpoint that never became durable. A missing or
//! misordered run, or a damaged hot state, is refused.

mod common;

use common::*;
use kassa_shard::{
    Checkpoint, CheckpointCursor, CheckpointCut, CheckpointIncrement, CheckpointRestore, ColdReads,
    Command, Keyspace, KeyspaceIncrement, Ledger, LedgerConfig, PendingStatus, Reply,
    SnapshotError,
};
use kassa_wire::{AccountFlags, CreateTransferStatus, Transfer, TransferFlags};

const ACCOUNTS: u128 = 8;

fn accounts(ledger: &mut Ledger) {
    let accounts: Vec<_> = (1..=ACCOUNTS)
        .map(|id| {
            let account = account(id, LEDGER, CODE);
            if id % 3 == 0 {
                account.with(AccountFlags::HISTORY)
            } else {
                account
            }
        })
        .collect();
    setup_accounts(ledger, 1_000, &accounts);
}

/// Step `step`'s transfers: single-phase ones, pending ones (some with a timeout), posts and
/// voids of the previous step's pending ones, and one that fails (an id used before).
fn step_transfers(step: u128) -> Vec<Transfer> {
    let base = 1_000 * (step + 1);
    let mut events = Vec::new();
    for at in 0..20 {
        let debit = 1 + (step + at) % ACCOUNTS;
        let credit = 1 + (step + at + 1 + at % 3) % ACCOUNTS;
        let mut t = transfer(base + at, debit, credit, 1 + at, LEDGER, CODE);
        if at % 4 == 0 {
            t = pending(base + at, debit, credit, 5 + at, (at % 8) as u32);
        }
        events.push(t);
    }
    if step > 0 {
        let before = 1_000 * step;
        events.push(post(base + 100, before, 3));
        events.push(void(base + 101, before + 4));
        events.push(transfer(before + 1, 1, 2, 1, LEDGER, CODE));
    }
    events
}

/// Runs the steps, taking a checkpoint after each; returns the increments and each one's
/// snapshot of the ledger at that moment. Checkpoints listed in `never_durable` are taken
/// but not made durable, so the next one starts from the same cut.
fn run_steps(steps: u128, never_durable: &[u128]) -> (Vec<CheckpointIncrement>, Vec<Vec<u8>>) {
    let mut ledger = new_ledger();
    accounts(&mut ledger);
    let mut durable = CheckpointCut::default();
    let (mut increments, mut snapshots) = (Vec::new(), Vec::new());
    for step in 0..steps {
        let now = 10 * NS * (step as u64 + 1);
        create_transfers(&mut ledger, now, &step_transfers(step));
        ledger.expire_pending_transfers(now + 3 * NS);
        if step % 3 == 2 {
            ledger.release_change_events(ledger.change_sequence_first() + 25);
        }
        let increment = ledger.checkpoint_increment(durable).expect("in memory");
        if !never_durable.contains(&step) {
            ledger.checkpoint_durable(increment.cut);
            durable = increment.cut;
        }
        increments.push(increment);
        snapshots.push(snapshot_of(&ledger));
    }
    assert_balanced(&ledger);
    (increments, snapshots)
}

/// Restores from the runs of `increments` (in order) and the last one's hot state.
fn restore(increments: &[&CheckpointIncrement]) -> Result<Ledger, SnapshotError> {
    let last = increments.last().expect("an increment");
    let (ledger, cut) =
        CheckpointRestore::from_increments(LedgerConfig::default(), increments, None)?;
    assert_eq!(cut.transfers, last.cut.transfers);
    assert_eq!(cut.change_sequence, last.cut.change_sequence);
    Ok(ledger)
}

#[test]
fn a_chain_of_increments_restores_the_ledger_byte_for_byte() {
    let (increments, snapshots) = run_steps(12, &[]);
    for end in 1..=increments.len() {
        let chain: Vec<_> = increments[..end].iter().collect();
        let restored = restore(&chain).expect("restore");
        assert_eq!(snapshot_of(&restored), snapshots[end - 1], "after {end}");
    }
    let statuses = increments.iter().flat_map(|i| &i.keyspaces);
    let statuses = statuses.filter(|run| run.keyspace == Keyspace::Statuses);
    assert!(
        statuses.map(|run| run.keys.len()).sum::<usize>() > 30,
        "pending, posted, voided and expired statuses were written"
    );
    let history = increments[5].keyspaces.iter();
    assert!(history
        .filter(|run| run.keyspace == Keyspace::History)
        .all(|run| !run.keys.is_empty()));
}

#[test]
fn increments_hold_only_what_is_new() {
    let (increments, _) = run_steps(4, &[]);
    for pair in increments.windows(2) {
        let transfers = &pair[1].keyspaces[0];
        assert_eq!(transfers.keyspace, Keyspace::Transfers);
        let first = *transfers.keys.first().expect("new transfers");
        assert_eq!(first, u128::from(pair[0].cut.transfers));
        assert_eq!(
            transfers.keys.len() as u32,
            pair[1].cut.transfers - pair[0].cut.transfers
        );
    }
}

#[test]
fn a_checkpoint_that_never_became_durable_is_covered_by_the_next() {
    let (increments, snapshots) = run_steps(6, &[2, 3]);
    // Checkpoints 2 and 3 were lost (a crash, a full disk): 4 starts from 1's cut.
    let chain = [
        &increments[0],
        &increments[1],
        &increments[4],
        &increments[5],
    ];
    let restored = restore(&chain).expect("restore");
    assert_eq!(snapshot_of(&restored), snapshots[5]);
    assert_eq!(
        increments[4].keyspaces[0].keys[0],
        u128::from(increments[1].cut.transfers)
    );
}

#[test]
fn missing_or_misordered_runs_and_damaged_hot_states_are_refused() {
    let (increments, _) = run_steps(4, &[]);
    let all: Vec<_> = increments.iter().collect();
    let mut missing = all.clone();
    missing.remove(1);
    assert!(matches!(
        restore(&missing),
        Err(SnapshotError::Inconsistent(_))
    ));

    let mut out_of_order =
        CheckpointRestore::new(LedgerConfig::default(), &increments[3].hot).expect("hot");
    for increment in &increments {
        let transfers = &increment.keyspaces[0];
        for (at, key) in transfers.keys.iter().enumerate() {
            out_of_order
                .push(Keyspace::Transfers, *key, transfers.value(at))
                .expect("transfers in order");
        }
    }
    let statuses = &increments[0].keyspaces[1];
    out_of_order
        .push(Keyspace::Statuses, statuses.keys[0], statuses.value(0))
        .expect("statuses after transfers");
    let transfers = &increments[0].keyspaces[0];
    let late = out_of_order.push(Keyspace::Transfers, transfers.keys[0], transfers.value(0));
    assert!(matches!(late, Err(SnapshotError::Inconsistent(_))));

    let mut hot = increments[3].hot.clone();
    hot[0] ^= 1;
    assert!(matches!(
        CheckpointRestore::new(LedgerConfig::default(), &hot),
        Err(SnapshotError::BadMagic)
    ));
    let cut = increments[3].hot.len() - 3;
    assert!(matches!(
        CheckpointRestore::new(LedgerConfig::default(), &increments[3].hot[..cut]),
        Err(SnapshotError::BodyChecksum)
    ));
    let mut flipped = increments[3].hot.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    assert!(matches!(
        CheckpointRestore::new(LedgerConfig::default(), &flipped),
        Err(SnapshotError::BodyChecksum)
    ));
}

#[test]
fn a_linked_chain_that_fails_leaves_no_status_behind() {
    let mut ledger = new_ledger();
    accounts(&mut ledger);
    create_transfers(&mut ledger, 10 * NS, &[pending(500, 1, 2, 10, 0)]);
    let first = ledger
        .checkpoint_increment(CheckpointCut::default())
        .expect("in memory");
    ledger.checkpoint_durable(first.cut);
    // A post inside a chain that fails: the status change is undone.
    let chain = [
        post(501, 500, 10).with(TransferFlags::LINKED),
        transfer(502, 1, 1, 1, LEDGER, CODE),
    ];
    create_transfers(&mut ledger, 20 * NS, &chain);
    // A pending transfer made and posted inside a chain that fails: both are taken back.
    let chain = [
        pending(600, 1, 2, 10, 0).with(TransferFlags::LINKED),
        post(601, 600, 10).with(TransferFlags::LINKED),
        transfer(602, 1, 1, 1, LEDGER, CODE),
    ];
    create_transfers(&mut ledger, 30 * NS, &chain);
    let second = ledger.checkpoint_increment(first.cut).expect("in memory");
    let restored = restore(&[&first, &second]).expect("restore");
    assert_eq!(snapshot_of(&restored), snapshot_of(&ledger));
    assert_eq!(
        status_of(&restored, 500),
        kassa_shard::PendingStatus::Pending
    );
}

/// Reads `checkpoint`'s entries from `ledger` now, `max` at a time.
fn entries_now(ledger: &Ledger, checkpoint: &Checkpoint, max: usize) -> Vec<KeyspaceIncrement> {
    let mut all = Vec::new();
    for keyspace in Keyspace::ALL {
        let mut run = KeyspaceIncrement::new(keyspace);
        let mut chunk = KeyspaceIncrement::new(keyspace);
        let mut cursor = CheckpointCursor::default();
        loop {
            let more = ledger
                .checkpoint_entries(checkpoint, &mut cursor, &mut chunk, max)
                .expect("in memory or in the store");
            assert!(chunk.keys.len() <= max);
            run.keys.extend_from_slice(&chunk.keys);
            run.values.extend_from_slice(&chunk.values);
            if !more {
                break;
            }
        }
        all.push(run);
    }
    all
}

/// The node writes a checkpoint's runs from the live ledger while it applies more: what it
/// reads then is what the ledger held when the checkpoint was taken, in chunks of any size.
#[test]
fn entries_read_after_more_writes_are_those_of_the_moment_taken() {
    for max in [1, 3, 64, 100_000] {
        let mut ledger = new_ledger();
        accounts(&mut ledger);
        let mut increments = Vec::new();
        let mut durable = CheckpointCut::default();
        let mut expected = Vec::new();
        for step in 0..6u128 {
            let now = 10 * NS * (step as u64 + 1);
            create_transfers(&mut ledger, now, &step_transfers(step));
            let checkpoint = ledger.checkpoint(durable);
            expected.push(snapshot_of(&ledger));
            // Before its entries are read: more transfers, posts and voids of pending ones
            // the checkpoint holds as pending, expiries, and released change events.
            create_transfers(&mut ledger, now + NS, &step_transfers(step + 100));
            ledger.expire_pending_transfers(now + 5 * NS);
            ledger.release_change_events(ledger.change_sequence_next() - 5);
            let keyspaces = entries_now(&ledger, &checkpoint, max);
            // What it said it would write, before: a bound, exact where it can be.
            for run in &keyspaces {
                let (written, said) =
                    (run.keys.len() as u64, checkpoint.keys_at_most(run.keyspace));
                assert!(written <= said, "{:?}: {written} of {said}", run.keyspace);
                let exact = matches!(
                    run.keyspace,
                    Keyspace::AccountTransfers | Keyspace::TransferTimestamps
                );
                assert!(
                    !exact || written == said,
                    "{:?}: {written} of {said}",
                    run.keyspace
                );
            }
            assert!(keyspaces
                .iter()
                .all(|run| !run.keys.is_empty() || run.keyspace == Keyspace::TransferSamples));
            ledger.checkpoint_durable(checkpoint.cut);
            durable = checkpoint.cut;
            increments.push(CheckpointIncrement {
                cut: checkpoint.cut,
                hot: checkpoint.hot,
                keyspaces,
                changes_released_below: checkpoint.changes_released_below,
            });
        }
        for end in 1..=increments.len() {
            let chain: Vec<_> = increments[..end].iter().collect();
            let restored = restore(&chain).expect("restore");
            assert_eq!(
                snapshot_of(&restored),
                expected[end - 1],
                "max {max}, after {end}"
            );
        }
    }
}

/// Every history account's balances, in full and through a filter that skips some.
fn balances_of(ledger: &Ledger) -> Vec<Vec<kassa_wire::AccountBalance>> {
    let mut all = Vec::new();
    for id in (1..=ACCOUNTS).filter(|id| id % 3 == 0) {
        use kassa_wire::{AccountFilter, AccountFilterFlags as Flags, AccountId};
        let both = Flags::DEBITS | Flags::CREDITS;
        for (min, flags) in [(0, both), (25 * NS, both | Flags::REVERSED)] {
            let mut filter = AccountFilter::new(AccountId(id), 8_189, flags);
            filter.timestamp_min = min;
            let mut out = Vec::new();
            ledger
                .get_account_balances(&filter, &mut out)
                .expect("cold reads");
            all.push(out);
        }
    }
    assert!(all.iter().any(|balances| !balances.is_empty()));
    all
}

/// Every read of transfers a client can make, over a range of filters: lookups of every id
/// used, each account's transfers (by timestamp range, reversed, limited) and queries by
/// timestamp range.
fn transfer_reads_of(ledger: &Ledger) -> Vec<Vec<Transfer>> {
    use kassa_wire::{
        AccountFilter, AccountFilterFlags as Flags, AccountId, QueryFilter, QueryFilterFlags,
        TransferId,
    };
    let mut all = Vec::new();
    let ids: Vec<TransferId> = (1_000..11_000).step_by(1).map(TransferId).collect();
    for chunk in ids.chunks(8_189) {
        let mut out = Vec::new();
        ledger
            .lookup_transfers(chunk, &mut out)
            .expect("cold reads");
        all.push(out);
    }
    let both = Flags::DEBITS | Flags::CREDITS;
    let ranges = [
        (0, 0),
        (25 * NS, 0),
        (0, 35 * NS),
        (31 * NS, 52 * NS),
        (61 * NS, 0),
    ];
    for id in 1..=ACCOUNTS {
        for (min, max) in ranges {
            for (limit, flags) in [(8_189, both), (3, Flags::CREDITS | Flags::REVERSED)] {
                let mut filter = AccountFilter::new(AccountId(id), limit, flags);
                (filter.timestamp_min, filter.timestamp_max) = (min, max);
                let mut out = Vec::new();
                ledger
                    .get_account_transfers(&filter, &mut out)
                    .expect("cold reads");
                all.push(out);
            }
        }
    }
    for (min, max) in ranges {
        for (limit, flags) in [
            (8_189, QueryFilterFlags::default()),
            (7, QueryFilterFlags::REVERSED),
        ] {
            let mut filter = QueryFilter::new(limit, flags);
            (filter.timestamp_min, filter.timestamp_max) = (min, max);
            let mut out = Vec::new();
            ledger
                .query_transfers(&filter, &mut out)
                .expect("cold reads");
            all.push(out);
        }
    }
    assert!(all.iter().any(|transfers| !transfers.is_empty()));
    all
}

/// Transfers whose two-phase status is pending.
fn pending_count(ledger: &Ledger) -> usize {
    let all = ledger.all_transfers().expect("cold reads");
    let pending = |t: &&Transfer| ledger.pending_status(t.id) == Ok(Some(PendingStatus::Pending));
    all.iter().filter(pending).count()
}

/// With a cold store, the transfers, change entries and history balances a durable checkpoint
/// covers leave memory (change entries released or not; transfers unless still pending), and
/// every read of them (lookups, an account's transfers, queries by timestamp, retries of old
/// ids, posts and voids of pending transfers that went cold, change events, account
/// balances, a whole snapshot, a full checkpoint of the ledger, a restore that reads none of
/// them) answers as the ledger that kept them all. A store that lacks an entry is an error,
/// not an answer.
#[test]
fn cold_entries_leave_memory_for_the_cold_store_and_read_back_the_same() {
    use kassa_shard::{ColdStore, MemoryColdStore};
    use std::sync::Arc;

    let mut warm = new_ledger();
    let mut cold = new_ledger();
    let store = Arc::new(MemoryColdStore::new());
    cold.attach_cold_store(store.clone());
    let (mut warm_cut, mut cold_cut) = (CheckpointCut::default(), CheckpointCut::default());
    let mut increments = Vec::new();
    for ledger in [&mut warm, &mut cold] {
        accounts(ledger);
    }
    let mut prefetched = 0;
    for step in 0..6 {
        let now = 10 * NS * (step as u64 + 1);
        // Applying the step reads from the store only what `cold_reads` listed ahead of it,
        // in its two rounds: the ids not in memory (most of them new: listed, not found),
        // then exactly the cold transfers they and the ids in memory name (retries of old
        // ids, posts and voids of old pending transfers).
        let transfers = step_transfers(step);
        let command = Command::CreateTransfers { now, transfers };
        let mut listed = Vec::new();
        cold.cold_reads(&command, ColdReads::Ids, &mut listed);
        cold.cold_reads(&command, ColdReads::Transfers, &mut listed);
        store.take_keys_read();
        let Reply::CreateTransfers(results) = cold.apply(command.clone()) else {
            panic!("create_transfers answers with results");
        };
        let read: std::collections::BTreeSet<_> = store.take_keys_read().into_iter().collect();
        let listed: std::collections::BTreeSet<_> = listed.into_iter().collect();
        assert!(
            read.is_subset(&listed),
            "step {step}: the cold reads listed ahead"
        );
        let transfers_of = |set: &std::collections::BTreeSet<(Keyspace, u128)>| {
            let set = set.iter().filter(|(k, _)| *k == Keyspace::Transfers);
            set.copied().collect::<Vec<_>>()
        };
        assert_eq!(transfers_of(&read), transfers_of(&listed), "step {step}");
        if step > 0 {
            let ids = read.iter().filter(|(k, _)| *k == Keyspace::TransferIds);
            assert!(
                ids.count() > 0,
                "step {step}: old ids are found in the id runs"
            );
        }
        prefetched += transfers_of(&listed).len();
        let Command::CreateTransfers { transfers, .. } = command else {
            unreachable!()
        };
        assert_eq!(create_transfers(&mut warm, now, &transfers), results);
        let created = results
            .iter()
            .filter(|r| r.status == CreateTransferStatus::Created);
        let created = created.count() as u64;
        assert!(
            cold.memtable_bytes() >= created * 128,
            "step {step}: the new transfers are in the memtable"
        );
        for ledger in [&mut warm, &mut cold] {
            ledger.expire_pending_transfers(now + 3 * NS);
            if step == 3 {
                ledger.release_change_events(ledger.change_sequence_first() + 30);
            }
        }
        let increment = cold.checkpoint_increment(cold_cut).expect("reads");
        store.add(&increment);
        cold.checkpoint_durable(increment.cut);
        cold_cut = increment.cut;
        let warm_increment = warm.checkpoint_increment(warm_cut).expect("in memory");
        warm.checkpoint_durable(warm_increment.cut);
        warm_cut = warm_increment.cut;
        assert_eq!(
            warm_increment, increment,
            "step {step}: the same checkpoint"
        );
        increments.push(increment);

        assert_eq!(cold.change_entries_in_memory(), 0, "step {step}: all cold");
        assert_eq!(cold.history_entries_in_memory(), 0, "step {step}: all cold");
        assert!(warm.change_entries_in_memory() > 0);
        assert!(warm.history_entries_in_memory() > 0);
        let pending = pending_count(&cold);
        assert!(pending > 0, "step {step}: some transfers stay pending");
        assert_eq!(
            cold.transfers_in_memory(),
            pending,
            "step {step}: only the pending transfers stay in memory"
        );
        assert_eq!(warm.transfers_in_memory(), warm.transfers().len());
        assert_eq!(cold.transfer_ids_in_memory(), 0, "step {step}: ids in runs");
        assert_eq!(
            cold.memtable_bytes(),
            0,
            "step {step}: a durable checkpoint empties the memtable; pinned pending transfers are not in it"
        );
        assert!(
            warm.memtable_bytes() > 0,
            "without a store nothing leaves memory"
        );
        assert_eq!(
            cold.account_transfers_in_memory(),
            0,
            "step {step}: lists in runs"
        );
        assert!(warm.account_transfers_in_memory() >= warm.transfers().len());
        assert_eq!(warm.transfer_ids_in_memory(), warm.transfers().len());
        assert_eq!(snapshot_of(&cold), snapshot_of(&warm), "step {step}");
        assert_eq!(balances_of(&cold), balances_of(&warm), "step {step}");
        assert_eq!(
            transfer_reads_of(&cold),
            transfer_reads_of(&warm),
            "step {step}"
        );
        for from in [0, 7, cold.change_sequence_first() + 3, 1_000] {
            for limit in [1, 5, usize::MAX] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                warm.change_events(from, limit, &mut a).expect("in memory");
                cold.change_events(from, limit, &mut b).expect("cold");
                assert_eq!(a, b, "step {step}: events from {from}, at most {limit}");
            }
        }
    }
    assert!(
        prefetched >= 5,
        "{prefetched} cold transfers read by applies"
    );
    // New entries stay in memory until their checkpoint is durable, and read across both.
    let now = 100 * NS;
    for ledger in [&mut warm, &mut cold] {
        create_transfers(ledger, now, &step_transfers(9));
    }
    assert!(cold.change_entries_in_memory() > 0);
    assert!(cold.history_entries_in_memory() > 0);
    assert!(cold.transfers_in_memory() > pending_count(&cold));
    let stored_since = cold.transfers().len() - cold_cut.transfers as usize;
    assert_eq!(cold.transfer_ids_in_memory(), stored_since);
    assert!(stored_since > 0);
    assert_eq!(all_change_events(&cold), all_change_events(&warm));
    assert_eq!(balances_of(&cold), balances_of(&warm));
    assert_eq!(transfer_reads_of(&cold), transfer_reads_of(&warm));

    // A full checkpoint of the cold ledger (a ledger installed elsewhere) reads them back.
    assert_full_checkpoints_equal(&mut cold, &mut warm);

    // A restore with the store reads none of them into memory and answers the same.
    let chain: Vec<&CheckpointIncrement> = increments.iter().collect();
    let cold_store: Arc<dyn ColdStore> = store.clone();
    let read_before = store.reads(Keyspace::Transfers);
    let (restored, _) =
        CheckpointRestore::from_increments(LedgerConfig::default(), &chain, Some(cold_store))
            .expect("restores");
    // It read no transfer run: the store gave back the pending ones and the newest, once
    // for the samples and once for each check (its accounts' lists, its id), and the newest
    // sampled one, to check that a search finds it.
    let read = store.reads(Keyspace::Transfers) - read_before;
    assert!(
        read as usize <= pending_count(&restored) + 4,
        "{read} transfers read"
    );
    assert_eq!(restored.change_entries_in_memory(), 0);
    assert_eq!(restored.history_entries_in_memory(), 0);
    assert_eq!(restored.transfers_in_memory(), pending_count(&restored));
    assert_eq!(restored.transfer_ids_in_memory(), 0);
    assert_eq!(restored.account_transfers_in_memory(), 0);
    let (mut warm_restored, _) =
        CheckpointRestore::from_increments(LedgerConfig::default(), &chain, None)
            .expect("restores");
    assert_eq!(snapshot_of(&restored), snapshot_of(&warm_restored));
    assert_eq!(
        all_change_events(&restored),
        all_change_events(&warm_restored)
    );
    assert_eq!(
        transfer_reads_of(&restored),
        transfer_reads_of(&warm_restored)
    );
    // A full checkpoint of the restored ledger (all of it cold: what a node writes after an
    // install) read in chunks of every size, across the edge between cold and hot positions.
    cold = restored;
    let full = warm_restored.checkpoint(CheckpointCut::default());
    let expected = entries_now(&warm_restored, &full, 4096);
    create_transfers(&mut cold, 200 * NS, &step_transfers(11));
    let taken = cold.checkpoint(CheckpointCut::default());
    for max in [1, 7, 64, 4096] {
        let read = entries_now(&cold, &taken, max);
        let transfers = &read[0];
        assert_eq!(transfers.keyspace, Keyspace::Transfers);
        assert_eq!(
            transfers.keys[..expected[0].keys.len()],
            expected[0].keys[..],
            "chunks of {max}"
        );
        assert_eq!(
            transfers.values[..expected[0].values.len()],
            expected[0].values[..],
            "chunks of {max}"
        );
        assert!(
            transfers.keys.len() > expected[0].keys.len(),
            "hot ones follow"
        );
        // The samples of the cold positions come from the store's timestamp runs, scanned
        // on from where the last chunk stopped, then those of the hot ones.
        let at = Keyspace::ALL
            .iter()
            .position(|k| *k == Keyspace::TransferTimestamps);
        let at = at.expect("a keyspace");
        let (samples, expected) = (&read[at], &expected[at]);
        assert_eq!(
            samples.keys[..expected.keys.len()],
            expected.keys[..],
            "chunks of {max}"
        );
        assert_eq!(
            samples.values[..expected.values.len()],
            expected.values[..],
            "chunks of {max}"
        );
        assert!(samples.keys.len() >= expected.keys.len());
    }

    // Checkpoints of format version 1 had no runs of ids and account lists: a restore
    // indexes both in memory from the transfers, and the next checkpoint writes them whole.
    let version_1: Vec<CheckpointIncrement> = increments
        .iter()
        .map(|increment| {
            let keyspaces = (increment.keyspaces.iter())
                .filter(|run| {
                    !matches!(
                        run.keyspace,
                        Keyspace::TransferIds
                            | Keyspace::AccountTransfers
                            | Keyspace::TransferSamples
                    )
                })
                .cloned()
                .collect();
            as_version(increment, 1, keyspaces)
        })
        .collect();
    let old_store = Arc::new(MemoryColdStore::new());
    (version_1.iter()).for_each(|increment| old_store.add(increment));
    let old_chain: Vec<&CheckpointIncrement> = version_1.iter().collect();
    let old_store_dyn: Arc<dyn ColdStore> = old_store.clone();
    let restored = CheckpointRestore::from_increments(
        LedgerConfig::default(),
        &old_chain,
        Some(old_store_dyn),
    );
    let (mut old, old_cut) = restored.expect("restores");
    let count = old.transfers().len();
    assert_eq!(old.transfer_ids_in_memory(), count);
    assert!(old.account_transfers_in_memory() >= count);
    assert_eq!(transfer_reads_of(&old), transfer_reads_of(&warm_restored));
    assert_eq!(balances_of(&old), balances_of(&warm_restored));
    let next = old.checkpoint_increment(old_cut).expect("reads");
    let written = |keyspace: Keyspace| {
        let run = next.keyspaces.iter().find(|run| run.keyspace == keyspace);
        run.expect("every keyspace").keys.len()
    };
    assert_eq!(written(Keyspace::TransferIds), count, "every id, once");
    assert_eq!(
        written(Keyspace::AccountTransfers),
        old.account_transfers_in_memory(),
        "every account's transfers, once"
    );
    assert_eq!(
        written(Keyspace::TransferTimestamps),
        count.div_ceil(32),
        "every sample"
    );
    assert_eq!(written(Keyspace::TransferSamples), 0, "format 2's, no more");
    old_store.add(&next);
    old.checkpoint_durable(next.cut);
    assert_eq!(old.transfer_ids_in_memory(), 0);
    assert_eq!(old.account_transfers_in_memory(), 0);
    assert_eq!(old.history_entries_in_memory(), 0);
    assert_eq!(transfer_reads_of(&old), transfer_reads_of(&warm_restored));
    assert_eq!(balances_of(&old), balances_of(&warm_restored));
    // The upgraded chain restores as format 2: no transfer run read, nothing in memory.
    let mut upgraded = old_chain.clone();
    upgraded.push(&next);
    let old_store_dyn: Arc<dyn ColdStore> = old_store.clone();
    let restored =
        CheckpointRestore::from_increments(LedgerConfig::default(), &upgraded, Some(old_store_dyn));
    let (again, _) = restored.expect("the upgraded chain restores");
    assert_eq!(again.transfer_ids_in_memory(), 0);
    assert_eq!(again.account_transfers_in_memory(), 0);
    assert_eq!(transfer_reads_of(&again), transfer_reads_of(&warm_restored));
    assert_eq!(balances_of(&again), balances_of(&warm_restored));

    // Checkpoints of format version 2 kept the timestamp samples by position, and their
    // restore reads them into memory; the next checkpoint writes them whole keyed by
    // timestamp, and a restore of that one reads none of them.
    let samples = |increment: &CheckpointIncrement| {
        let timestamps = increment.keyspaces.iter();
        let mut timestamps = timestamps.filter(|run| run.keyspace == Keyspace::TransferTimestamps);
        let timestamps = timestamps.next().expect("every keyspace");
        let mut samples = KeyspaceIncrement::new(Keyspace::TransferSamples);
        for (at, timestamp) in timestamps.keys.iter().enumerate() {
            let position = u32::from_le_bytes(timestamps.value(at).try_into().expect("4 bytes"));
            samples.keys.push(u128::from(position));
            samples
                .values
                .extend_from_slice(&(*timestamp as u64).to_le_bytes());
        }
        samples
    };
    let version_2: Vec<CheckpointIncrement> = increments
        .iter()
        .map(|increment| {
            let keyspaces = (increment.keyspaces.iter())
                .map(|run| match run.keyspace {
                    Keyspace::TransferSamples => samples(increment),
                    Keyspace::TransferTimestamps => KeyspaceIncrement::new(run.keyspace),
                    _ => run.clone(),
                })
                .collect();
            as_version(increment, 2, keyspaces)
        })
        .collect();
    let store_2 = Arc::new(MemoryColdStore::new());
    (version_2.iter()).for_each(|increment| store_2.add(increment));
    let chain_2: Vec<&CheckpointIncrement> = version_2.iter().collect();
    let store_2_dyn: Arc<dyn ColdStore> = store_2.clone();
    let restored =
        CheckpointRestore::from_increments(LedgerConfig::default(), &chain_2, Some(store_2_dyn));
    let (mut from_2, cut_2) = restored.expect("format 2 restores");
    assert_eq!(from_2.transfer_ids_in_memory(), 0);
    assert_eq!(
        transfer_reads_of(&from_2),
        transfer_reads_of(&warm_restored)
    );
    let next_2 = from_2.checkpoint_increment(cut_2).expect("reads");
    let written = |keyspace: Keyspace| {
        let run = next_2.keyspaces.iter().find(|run| run.keyspace == keyspace);
        run.expect("every keyspace").keys.len()
    };
    let count = from_2.transfers().len();
    assert_eq!(written(Keyspace::TransferTimestamps), count.div_ceil(32));
    assert_eq!(written(Keyspace::TransferSamples), 0);
    store_2.add(&next_2);
    from_2.checkpoint_durable(next_2.cut);
    let mut upgraded_2 = chain_2.clone();
    upgraded_2.push(&next_2);
    let store_2_dyn: Arc<dyn ColdStore> = store_2.clone();
    let restored =
        CheckpointRestore::from_increments(LedgerConfig::default(), &upgraded_2, Some(store_2_dyn));
    let (again, _) = restored.expect("the upgraded chain restores");
    let before = store_2.reads(Keyspace::TransferTimestamps);
    assert_eq!(transfer_reads_of(&again), transfer_reads_of(&warm_restored));
    assert!(
        store_2.reads(Keyspace::TransferTimestamps) > before,
        "searched through the samples in the store"
    );
    assert_eq!(balances_of(&again), balances_of(&warm_restored));

    // A store without the entries a checkpoint covers is refused at restore, and is an
    // error at a read.
    let empty: Arc<dyn ColdStore> = Arc::new(MemoryColdStore::new());
    let refused =
        CheckpointRestore::from_increments(LedgerConfig::default(), &chain, Some(empty.clone()));
    assert!(matches!(refused, Err(SnapshotError::Inconsistent(_))));
    let mut forgetful = new_ledger();
    accounts(&mut forgetful);
    forgetful.attach_cold_store(empty);
    let increment = forgetful
        .checkpoint_increment(CheckpointCut::default())
        .expect("in memory");
    forgetful.checkpoint_durable(increment.cut);
    let error = forgetful
        .change_events(0, 10, &mut Vec::new())
        .expect_err("the store lacks them");
    assert_eq!(error.keyspace, "changes");
}

/// A full checkpoint of `cold` (a ledger installed elsewhere: its cold entries read back from
/// its store) is the one of `warm`, which kept them all.
fn assert_full_checkpoints_equal(cold: &mut Ledger, warm: &mut Ledger) {
    let full_cold = cold
        .checkpoint_increment(CheckpointCut::default())
        .expect("cold reads");
    let full_warm = warm
        .checkpoint_increment(CheckpointCut::default())
        .expect("in memory");
    assert_eq!(full_cold, full_warm);
}

/// `increment` as a checkpoint of an older format `version` would have written it, with
/// `keyspaces` for its runs.
fn as_version(
    increment: &CheckpointIncrement,
    version: u32,
    keyspaces: Vec<KeyspaceIncrement>,
) -> CheckpointIncrement {
    let mut hot = increment.hot.clone();
    hot[8..12].copy_from_slice(&version.to_le_bytes());
    if version < 4 {
        // Before format 4 the hot state listed no statuses: they came after the header's
        // 48 bytes, a count and 5 bytes each.
        let count = u64::from_le_bytes(hot[48..56].try_into().expect("8 bytes"));
        hot.drain(48..56 + 5 * count as usize);
    }
    let body = hot.len() - 4;
    let crc = crc32c::crc32c(&hot[..body]);
    hot[body..].copy_from_slice(&crc.to_le_bytes());
    CheckpointIncrement {
        hot,
        keyspaces,
        ..increment.clone()
    }
}

/// Searches by timestamp over cold transfers seek the samples in the store (one per 32
/// positions, keyed by timestamp) and then read the transfers: over a few thousand transfers
/// in two checkpoints' runs, every boundary of every range lands where the ledger that kept
/// them all puts it, including ranges inside one sample's span, at its edges, across the
/// runs' edge and beyond both ends.
#[test]
fn timestamp_searches_over_cold_transfers_match_the_ledger_that_kept_them() {
    use kassa_shard::{ColdStore, MemoryColdStore};
    use kassa_wire::{QueryFilter, QueryFilterFlags};
    use std::sync::Arc;

    let mut warm = new_ledger();
    let mut cold = new_ledger();
    let store = Arc::new(MemoryColdStore::new());
    cold.attach_cold_store(store.clone() as Arc<dyn ColdStore>);
    for ledger in [&mut warm, &mut cold] {
        accounts(ledger);
    }
    let mut cut = CheckpointCut::default();
    // 3 batches of 1,000 transfers, 1 ns apart within a batch, 1 ms between batches; the
    // first two go cold, the third stays in memory.
    for batch in 0..3u128 {
        let events: Vec<Transfer> = (0..1_000)
            .map(|at| {
                let debit = 1 + at % ACCOUNTS;
                let credit = 1 + (at + 1) % ACCOUNTS;
                transfer(20_000 + batch * 1_000 + at, debit, credit, 1, LEDGER, CODE)
            })
            .collect();
        let now = (batch as u64 + 2) * 1_000_000;
        for ledger in [&mut warm, &mut cold] {
            create_transfers(ledger, now, &events);
        }
        if batch < 2 {
            let increment = cold.checkpoint_increment(cut).expect("reads");
            store.add(&increment);
            cold.checkpoint_durable(increment.cut);
            cut = increment.cut;
        }
    }
    assert_eq!(cold.transfers().cold_below(), 2_000);
    assert_eq!(cold.transfers_in_memory(), 1_000);
    let all = warm.all_transfers().expect("in memory");
    let mut bounds: Vec<u64> = vec![1, u64::MAX >> 1];
    for position in [
        0, 1, 31, 32, 33, 63, 64, 999, 1_000, 1_001, 1_999, 2_000, 2_001, 2_999,
    ] {
        let timestamp = all[position].timestamp;
        bounds.extend([timestamp - 1, timestamp, timestamp + 1]);
    }
    for &min in &bounds {
        for &max in &bounds {
            if max < min {
                continue;
            }
            for flags in [QueryFilterFlags::default(), QueryFilterFlags::REVERSED] {
                let mut filter = QueryFilter::new(8_189, flags);
                (filter.timestamp_min, filter.timestamp_max) = (min, max);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                warm.query_transfers(&filter, &mut a).expect("in memory");
                cold.query_transfers(&filter, &mut b).expect("cold reads");
                assert_eq!(a, b, "timestamps {min}..={max}");
            }
        }
    }
    assert!(
        store.reads(Keyspace::TransferTimestamps) > 0,
        "sought in the store"
    );
}

/// A checkpoint's ids are given in id order: straight from the list of ids that came in
/// ascending order, else sorted a chunk of 16,384 positions per call, then merged. Over ids in
/// no order, ids in ascending order, and ascending ids followed by others (a list, then a
/// table), in calls of every size, the id run is every transfer's id once, ascending, each
/// with its position.
#[test]
fn a_checkpoints_ids_are_sorted_in_chunks_and_merged() {
    let count: u128 = 150_000;
    // Ids scattered over the u128 range, so that id order is not position order.
    let scattered = |at: u128| at.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) | 1;
    let ascending = |at: u128| 1_000 + 3 * at;
    let ascending_then_scattered = |at: u128| {
        if at < count / 2 {
            ascending(at)
        } else {
            scattered(at)
        }
    };
    let orders: [&dyn Fn(u128) -> u128; 3] = [&scattered, &ascending, &ascending_then_scattered];
    for id_of in orders {
        let mut ledger = new_ledger();
        accounts(&mut ledger);
        let events: Vec<Transfer> = (0..count)
            .map(|at| {
                transfer(
                    id_of(at),
                    1 + at % ACCOUNTS,
                    1 + (at + 1) % ACCOUNTS,
                    1,
                    LEDGER,
                    CODE,
                )
            })
            .collect();
        for (batch, chunk) in events.chunks(8_189).enumerate() {
            create_transfers(&mut ledger, NS * (batch as u64 + 1), chunk);
        }
        assert_eq!(ledger.transfers().len() as u128, count);
        let checkpoint = ledger.checkpoint(CheckpointCut::default());
        let positions: std::collections::HashMap<u128, u32> =
            (0..count).map(|at| (id_of(at), at as u32)).collect();
        for max in [1_000, 8_192, 200_000] {
            let read = entries_now(&ledger, &checkpoint, max);
            let ids = read
                .iter()
                .find(|run| run.keyspace == Keyspace::TransferIds);
            let ids = ids.expect("an id run");
            assert_eq!(ids.keys.len() as u128, count, "calls of {max}");
            assert!(
                ids.keys.windows(2).all(|pair| pair[0] < pair[1]),
                "ascending"
            );
            for (at, id) in ids.keys.iter().enumerate() {
                let position = u32::from_le_bytes(ids.value(at).try_into().expect("4 bytes"));
                assert_eq!(positions.get(id), Some(&position));
            }
        }
    }
}

/// The ids a checkpoint gives from the list of ascending ids stay right when, between two
/// calls, an id out of order after the cut turns that list into a table (a ledger without a
/// cold store keeps one generation, so the checkpoint reads the list ids still go to): the
/// rest are sorted, all above those given, each id once with its position.
#[test]
fn a_checkpoints_ids_stay_in_order_when_their_list_becomes_a_table_midway() {
    let mut ledger = new_ledger();
    accounts(&mut ledger);
    let count: u128 = 20_000;
    let event = |id: u128, at: u128| {
        transfer(
            id,
            1 + at % ACCOUNTS,
            1 + (at + 1) % ACCOUNTS,
            1,
            LEDGER,
            CODE,
        )
    };
    let events: Vec<Transfer> = (0..count).map(|at| event(1_000 + 2 * at, at)).collect();
    for (batch, chunk) in events.chunks(8_189).enumerate() {
        create_transfers(&mut ledger, NS * (batch as u64 + 1), chunk);
    }
    let checkpoint = ledger.checkpoint(CheckpointCut::default());
    let mut given = KeyspaceIncrement::new(Keyspace::TransferIds);
    let mut chunk = KeyspaceIncrement::new(Keyspace::TransferIds);
    let mut cursor = CheckpointCursor::default();
    let mut calls = 0;
    loop {
        let more = ledger
            .checkpoint_entries(&checkpoint, &mut cursor, &mut chunk, 1_000)
            .expect("in memory");
        given.keys.extend_from_slice(&chunk.keys);
        given.values.extend_from_slice(&chunk.values);
        calls += 1;
        if calls == 3 {
            // After the cut: an id below the list's last, then one above.
            let late = [event(1_001, 0), event(10_000_000, 1)];
            create_transfers(&mut ledger, NS * 100, &late);
        }
        if !more {
            break;
        }
    }
    assert!(calls > 3);
    assert_eq!(given.keys.len() as u128, count);
    for (at, id) in given.keys.iter().enumerate() {
        assert_eq!(*id, 1_000 + 2 * at as u128);
        let position = u32::from_le_bytes(given.value(at).try_into().expect("4 bytes"));
        assert_eq!(position, at as u32);
    }
}

/// Ids of batches that arrived a little out of order (several clients) are listed in runs;
/// a checkpoint gives them from the runs in id order, a few calls at a time, each id once
/// with its position.
#[test]
fn a_checkpoints_ids_from_runs_come_in_id_order_with_their_positions() {
    use kassa_shard::MemoryColdStore;
    use std::sync::Arc;

    let mut ledger = new_ledger();
    // With a store, a checkpoint seals the interval's ids: no id goes to that list again.
    ledger.attach_cold_store(Arc::new(MemoryColdStore::new()));
    accounts(&mut ledger);
    let batch: u128 = 2_048;
    // Batches 1, 0, 2, 4, 3, 5, 7, 6, 8, …
    let order: Vec<u128> = (0..12u128)
        .map(|b| match b % 3 {
            0 => b + 1,
            1 => b - 1,
            _ => b,
        })
        .collect();
    // Batch `b`: ids 1,000 + 2n for n from b × batch on.
    let batch_events = |b: u128| -> Vec<Transfer> {
        (0..batch)
            .map(|i| {
                let n = b * batch + i;
                let (debit, credit) = (1 + n % ACCOUNTS, 1 + (n + 1) % ACCOUNTS);
                transfer(1_000 + 2 * n, debit, credit, 1, LEDGER, CODE)
            })
            .collect()
    };
    let mut expected: Vec<(u128, u32)> = Vec::new();
    for (at, b) in order.iter().enumerate() {
        let events = batch_events(*b);
        for (i, event) in events.iter().enumerate() {
            expected.push((event.id.0, (at as u128 * batch) as u32 + i as u32));
        }
        create_transfers(&mut ledger, NS * (at as u64 + 1), &events);
    }
    expected.sort_unstable();
    let checkpoint = ledger.checkpoint(CheckpointCut::default());
    let mut given = KeyspaceIncrement::new(Keyspace::TransferIds);
    let mut chunk = KeyspaceIncrement::new(Keyspace::TransferIds);
    let mut cursor = CheckpointCursor::default();
    let mut calls = 0;
    while ledger
        .checkpoint_entries(&checkpoint, &mut cursor, &mut chunk, 1_000)
        .expect("in memory")
    {
        given.keys.extend_from_slice(&chunk.keys);
        given.values.extend_from_slice(&chunk.values);
        calls += 1;
    }
    given.keys.extend_from_slice(&chunk.keys);
    given.values.extend_from_slice(&chunk.values);
    assert!(calls > 3);
    // A call after the last (a run writer starting its next file) gives nothing more, even
    // once the next interval's list has runs of its own.
    for (at, b) in [13u128, 12].into_iter().enumerate() {
        let events = batch_events(b);
        create_transfers(&mut ledger, NS * (20 + at as u64), &events);
    }
    let more = ledger.checkpoint_entries(&checkpoint, &mut cursor, &mut chunk, 1_000);
    assert!(!more.expect("in memory") && chunk.keys.is_empty());
    let got: Vec<(u128, u32)> = (given.keys.iter().enumerate())
        .map(|(at, id)| {
            let position = u32::from_le_bytes(given.value(at).try_into().expect("4 bytes"));
            (*id, position)
        })
        .collect();
    assert_eq!(got, expected);
}

/// With a cold store, the statuses of resolved two-phase transfers leave memory once a
/// durable checkpoint holds them (4,096 positions at a time); the pending ones stay. Posts
/// and voids that come too late read the resolved status from the store, listed ahead of the
/// apply, and answer as the ledger that kept them all; so do status lookups, a whole
/// snapshot, a full checkpoint and a restore, which keeps only the pending ones.
#[test]
fn resolved_statuses_leave_memory_and_read_back_from_the_store() {
    use kassa_shard::{ColdStore, MemoryColdStore};
    use std::sync::Arc;

    const ROUND: u128 = 5_000;
    let mut warm = new_ledger();
    let mut cold = new_ledger();
    let store = Arc::new(MemoryColdStore::new());
    cold.attach_cold_store(store.clone());
    for ledger in [&mut warm, &mut cold] {
        accounts(ledger);
    }
    let pending_id = |round: u128, at: u128| 1 + round * 100_000 + at;
    let resolved_id = |round: u128, at: u128| 50_001 + round * 100_000 + at;
    let mut cut = CheckpointCut::default();
    let mut increments = Vec::new();
    // Each round stores pending transfers, and posts (even ones) or voids (one in four) those
    // of the round before; the rest stay pending.
    for round in 0..4 {
        let mut events: Vec<Transfer> = (0..ROUND)
            .map(|at| pending(pending_id(round, at), 1 + at % 4, 5 + at % 4, 10, 0))
            .collect();
        if round > 0 {
            for at in 0..ROUND {
                let (id, of) = (resolved_id(round, at), pending_id(round - 1, at));
                match at % 4 {
                    0 | 2 => events.push(post(id, of, 10)),
                    1 => events.push(void(id, of)),
                    _ => {}
                }
            }
        }
        let now = 10 * NS * (round as u64 + 1);
        for (chunk, events) in events.chunks(8_000).enumerate() {
            let now = now + chunk as u64 * NS;
            let statuses =
                |ledger: &mut Ledger| transfer_statuses(&create_transfers(ledger, now, events));
            assert_eq!(statuses(&mut warm), statuses(&mut cold), "round {round}");
        }
        let increment = cold.checkpoint_increment(cut).expect("reads");
        store.add(&increment);
        cold.checkpoint_durable(increment.cut);
        cut = increment.cut;
        increments.push(increment);
    }
    assert_balanced(&cold);
    let (held_warm, held_cold) = (
        warm.transfer_statuses_in_memory(),
        cold.transfer_statuses_in_memory(),
    );
    assert!(
        held_cold < held_warm / 2,
        "{held_cold} of {held_warm} statuses in memory"
    );

    // Late posts and voids of round 0's transfers: resolved ones read their status from the
    // store, listed ahead; pending ones (in memory) go through.
    let now = 100 * NS;
    let late: Vec<Transfer> = (0..40)
        .map(|at| match at % 4 {
            0 => post(900_000 + at, pending_id(0, at), 10),
            1 => post(900_000 + at, pending_id(0, at), 10),
            2 => void(900_000 + at, pending_id(0, at)),
            _ => post(900_000 + at, pending_id(0, at), 10),
        })
        .collect();
    let command = Command::CreateTransfers {
        now,
        transfers: late.clone(),
    };
    let mut listed = Vec::new();
    cold.cold_reads(&command, ColdReads::Ids, &mut listed);
    cold.cold_reads(&command, ColdReads::Transfers, &mut listed);
    store.take_keys_read();
    let Reply::CreateTransfers(results) = cold.apply(command) else {
        panic!("create_transfers answers with results");
    };
    let read: std::collections::BTreeSet<_> = store.take_keys_read().into_iter().collect();
    let listed: std::collections::BTreeSet<_> = listed.into_iter().collect();
    assert!(read.is_subset(&listed), "the cold reads listed ahead");
    let statuses_read = read
        .iter()
        .filter(|(k, _)| *k == Keyspace::Statuses)
        .count();
    assert!(
        statuses_read >= 20,
        "{statuses_read} statuses read from the store"
    );
    let expected = transfer_statuses(&create_transfers(&mut warm, now, &late));
    assert_eq!(transfer_statuses(&results), expected);
    assert!(expected.contains(&CreateTransferStatus::PendingTransferAlreadyPosted));
    assert!(expected.contains(&CreateTransferStatus::PendingTransferAlreadyVoided));
    assert!(expected.contains(&CreateTransferStatus::Created));

    // A transaction's read set of round 1's transfers (resolved ones and pending ones) lists
    // their statuses ahead with them: it reads nothing unlisted, and answers as the ledger
    // that kept them all.
    let ids: std::sync::Arc<[u128]> = (0..40).map(|at| pending_id(1, at)).collect();
    let read_set = kassa_shard::ClientRead::ReadSet(ids.clone());
    let mut listed = Vec::new();
    for round in [ColdReads::Ids, ColdReads::Transfers] {
        cold.cold_reads_of_read(&read_set, round, &mut listed);
    }
    store.take_keys_read();
    let from_cold = cold.read_set(&[], &ids, &[]).expect("reads");
    let read: std::collections::BTreeSet<_> = store.take_keys_read().into_iter().collect();
    let listed: std::collections::BTreeSet<_> = listed.into_iter().collect();
    assert!(
        read.is_subset(&listed),
        "the read set's cold reads listed ahead"
    );
    assert!(read.iter().any(|(k, _)| *k == Keyspace::Statuses));
    let from_warm = warm.read_set(&[], &ids, &[]).expect("in memory");
    assert_eq!(from_cold.transfers, from_warm.transfers);
    let statuses = from_cold.transfers.iter().map(|(_, status)| *status);
    assert!(statuses
        .clone()
        .any(|status| status == PendingStatus::Posted));
    assert!(statuses
        .clone()
        .any(|status| status == PendingStatus::Pending));
    for round in 0..4 {
        for at in (0..ROUND).step_by(97) {
            let id = kassa_wire::TransferId(pending_id(round, at));
            assert_eq!(cold.pending_status(id), warm.pending_status(id), "{id:?}");
        }
    }
    assert_balanced(&cold);

    // A full checkpoint writes every status, those of released positions from the store.
    assert_full_checkpoints_equal(&mut cold, &mut warm);

    // A restore reads no status run: the hot state lists the pending statuses (and the last
    // chunk's); memory keeps only those, and the ledger answers the same. The chain handed
    // over has no status run at all (the store has them).
    let chain: Vec<&CheckpointIncrement> = increments.iter().collect();
    let without_statuses: Vec<CheckpointIncrement> = (increments.iter())
        .map(|increment| {
            let mut increment = increment.clone();
            increment
                .keyspaces
                .retain(|run| run.keyspace != Keyspace::Statuses);
            increment
        })
        .collect();
    let without_statuses: Vec<&CheckpointIncrement> = without_statuses.iter().collect();
    let cold_store: Arc<dyn ColdStore> = store.clone();
    let statuses_read = store.reads(Keyspace::Statuses);
    let (restored, _) = CheckpointRestore::from_increments(
        LedgerConfig::default(),
        &without_statuses,
        Some(cold_store),
    )
    .expect("restores");
    assert_eq!(
        store.reads(Keyspace::Statuses),
        statuses_read,
        "no status read"
    );
    let (warm_restored, _) =
        CheckpointRestore::from_increments(LedgerConfig::default(), &chain, None)
            .expect("restores");
    let held = restored.transfer_statuses_in_memory();
    assert!(
        held <= pending_count(&restored) + 4_096,
        "{held} statuses in memory"
    );
    assert_eq!(snapshot_of(&restored), snapshot_of(&warm_restored));

    // Format 3 listed none: its restore reads the status runs whole, keeps the same.
    let version_3: Vec<CheckpointIncrement> = (increments.iter())
        .map(|increment| as_version(increment, 3, increment.keyspaces.clone()))
        .collect();
    let chain_3: Vec<&CheckpointIncrement> = version_3.iter().collect();
    let cold_store: Arc<dyn ColdStore> = store.clone();
    let (restored_3, _) =
        CheckpointRestore::from_increments(LedgerConfig::default(), &chain_3, Some(cold_store))
            .expect("format 3 restores");
    assert_eq!(restored_3.transfer_statuses_in_memory(), held);
    assert_eq!(snapshot_of(&restored_3), snapshot_of(&warm_restored));

    // A restore that reads the runs (no store) checks them against the list: runs that lost
    // the last round's statuses are refused.
    let mut lossy = increments.clone();
    let last = lossy.last_mut().expect("four rounds");
    let statuses = last.keyspaces.iter_mut();
    let mut statuses = statuses.filter(|run| run.keyspace == Keyspace::Statuses);
    let statuses = statuses.next().expect("every keyspace");
    assert!(!statuses.keys.is_empty());
    *statuses = KeyspaceIncrement::new(Keyspace::Statuses);
    let lossy: Vec<&CheckpointIncrement> = lossy.iter().collect();
    let refused = CheckpointRestore::from_increments(LedgerConfig::default(), &lossy, None);
    assert!(
        matches!(&refused, Err(SnapshotError::Inconsistent(what)) if what.contains("status")),
        "{:?}",
        refused.err()
    );
}
