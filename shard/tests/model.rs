//! Property test of `kassa_shard::Ledger` against a small reference model.
//!
//! Thousands of random, seeded operation sequences (create accounts and transfers with every
//! flag combination, linked chains, imports, posts, voids, expiries, queries, change-stream reads
//! and releases, snapshots) run against the ledger and against a naive model written straight
//! from TigerBeetle 0.17.8's `state_machine.zig` (`model/reference.rs`, `model/transfers.rs`,
//! `model/reads.rs`). Every result is compared; after every batch the whole state is compared,
//! `validate()` runs, and per ledger the debits equal the credits (posted and pending). Snapshots
//! are restored and the copies are driven on alongside the original; a twin built with another
//! hash seed must produce byte-identical snapshots.
//!
//! Environment: `KASSA_MODEL_CASES=<n>` sets the number of cases (default 10,000);
//! `KASSA_MODEL_SEED=<u64>` runs the one case of that seed, and on failure prints a shrunk
//! reproduction (operation list); `KASSA_MODEL_STATS=1` prints how often each status and
//! outcome occurred. A failure message names the seed and the operation index.

mod model {
    pub mod check;
    pub mod cluster;
    pub mod gen;
    pub mod gen_more;
    pub mod harness;
    pub mod ops;
    pub mod reads;
    pub mod reference;
    pub mod rng;
    pub mod runner;
    pub mod stats;
    pub mod transfers;
}

use std::panic::{catch_unwind, AssertUnwindSafe};

use kassa_wire::{
    Account, AccountFilter, AccountFilterFlags, AccountFlags, AccountId, CreateTransferStatus,
    QueryFilter, QueryFilterFlags, Transfer, TransferFlags, TransferId,
};
use model::harness::{Harness, Output};
use model::ops::Op;
use model::runner::{panic_message, quietly, run_case, shrink, Failure};

const CASES_DEFAULT: u64 = 10_000;
/// The base of the default case seeds: case `i` has seed `mix(SEED_BASE + i)`.
const SEED_BASE: u64 = 0x6B61_7373_615F_6D6F;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value} is not a u64")))
}

/// Runs `seeds` on all cores; the failures, in seed-list order.
fn run_all(seeds: &[u64]) -> Vec<Failure> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = seeds.len().div_ceil(threads).max(1);
    let run_chunk = |chunk: &[u64]| {
        let failures = chunk.iter().filter_map(|seed| run_case(*seed).err());
        quietly(|| failures.collect::<Vec<_>>())
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .chunks(chunk)
            .map(|chunk| scope.spawn(move || run_chunk(chunk)))
            .collect();
        let joined = handles
            .into_iter()
            .map(|h| h.join().expect("runner thread"));
        joined.flatten().collect()
    })
}

fn describe(failure: &Failure) -> String {
    let op = match failure.ops.get(failure.op_index) {
        Some(op) => format!("{op:?}"),
        None => "the final comparison of the ledgers' snapshots".to_string(),
    };
    format!(
        "seed {seed} (rerun with KASSA_MODEL_SEED={seed}) failed at op #{index}: {op}\n{message}",
        seed = failure.seed,
        index = failure.op_index,
        message = failure.message,
    )
}

#[test]
fn ledger_matches_reference_model() {
    let single = env_u64("KASSA_MODEL_SEED");
    let cases = env_u64("KASSA_MODEL_CASES").unwrap_or(CASES_DEFAULT);
    let seeds: Vec<u64> = match single {
        Some(seed) => vec![seed],
        None => (0..cases)
            .map(|i| model::rng::mix(SEED_BASE.wrapping_add(i)))
            .collect(),
    };
    if env_u64("KASSA_MODEL_STATS").is_some_and(|v| v != 0) {
        model::stats::enable();
    }
    let started = std::time::Instant::now();
    let failures = run_all(&seeds);
    eprintln!(
        "model test: {} cases in {:.1?}",
        seeds.len(),
        started.elapsed()
    );
    model::stats::print();
    let local_runs = model::cluster::LOCAL_RUNS.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("model test: {local_runs} batches ran in their ledger's partition alone");
    if single.is_none() && seeds.len() >= 1_000 {
        // Half the cases place by ledger; most of their lone batches can run locally.
        assert!(
            local_runs as usize > seeds.len(),
            "the fast path of placement by ledger was hardly taken ({local_runs} batches)"
        );
    }
    let share_runs = model::cluster::SHARE_RUNS.load(std::sync::atomic::Ordering::Relaxed);
    let again = model::cluster::SHARE_ROUNDS_AGAIN.load(std::sync::atomic::Ordering::Relaxed);
    let changed = model::cluster::SHARE_ROUNDS_CHANGED.load(std::sync::atomic::Ordering::Relaxed);
    let lost = model::cluster::LEADERS_LOST.load(std::sync::atomic::Ordering::Relaxed);
    let recovered = model::cluster::SHARE_RECOVERED.load(std::sync::atomic::Ordering::Relaxed);
    let retried = model::cluster::SHARE_RETRIED.load(std::sync::atomic::Ordering::Relaxed);
    let wire_answered =
        model::cluster::WIRE_RETRIES_ANSWERED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "model test: {share_runs} batches ran in shares over several partitions, \
         {again} rounds run again, {changed} batches whose results the rounds changed; \
         {lost} home leaders lost, after which {recovered} batches were applied by a \
         recovery ({wire_answered} wire requests whose retry got the reply kept) and \
         {retried} sent again"
    );
    let cold_reads = model::cluster::COLD_TRANSFER_READS.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("model test: {cold_reads} transfers read from cold stores");
    let Some(first) = failures.first() else {
        if single.is_none() && seeds.len() >= 1_000 {
            assert!(cold_reads > 0, "no transfer was read from a cold store");
            // Batches that mix ledgers over partitions, and chains across them that break
            // where the first round's results were not one partition's.
            assert!(share_runs > 0, "no batch ran in shares");
            assert!(again > 0, "no chain across partitions broke");
            assert!(changed > 0, "no round changed a batch's results");
            assert!(recovered > 0, "no batch applied by a recovery");
            assert!(retried > 0, "no batch sent again after its leader was lost");
            assert!(
                wire_answered > 0,
                "no wire retry answered from the reply kept"
            );
        }
        return;
    };
    if single.is_some() {
        let ops = quietly(|| shrink(first));
        eprintln!("shrunk reproduction ({} ops):", ops.len());
        for op in &ops {
            eprintln!("  {op:?}");
        }
    }
    let failed: Vec<u64> = failures.iter().map(|f| f.seed).take(20).collect();
    panic!(
        "{} of {} cases failed (first seeds: {failed:?}); the first:\n{}",
        failures.len(),
        seeds.len(),
        describe(first)
    );
}

fn pending_transfers(ids: std::ops::RangeInclusive<u128>) -> Vec<Transfer> {
    let transfer = |id| Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        amount: 1,
        timeout: 1,
        ledger: 1,
        code: 1,
        flags: TransferFlags::PENDING,
        ..Transfer::default()
    };
    ids.map(transfer).collect()
}

/// A history that reaches the caps: 8219 pending transfers (timeout 1 s) between two
/// accounts, queries with limits at and above 8189, and pulses once they have all expired.
fn capped_ops() -> Vec<Op> {
    let account = |id, flags| Account {
        id: AccountId(id),
        ledger: 1,
        code: 1,
        flags,
        ..Account::default()
    };
    let accounts = vec![
        account(1, AccountFlags::HISTORY),
        account(2, AccountFlags(0)),
    ];
    let mut ops = vec![
        Op::CreateAccounts {
            now: 1_000,
            events: accounts,
        },
        Op::CreateTransfers {
            now: 2_000,
            events: pending_transfers(1..=8189),
        },
        Op::CreateTransfers {
            now: 3_000,
            events: pending_transfers(8190..=8219),
        },
        Op::PulseNeeded { now: 100_000 },
        Op::PulseNeeded { now: 5_000_000_000 },
    ];
    for limit in [8189, 8190, u32::MAX] {
        for reversed in [0, 1] {
            let flags = AccountFilterFlags(0b11 | reversed << 2);
            let filter = AccountFilter::new(AccountId(1), limit, flags);
            ops.push(Op::GetAccountTransfers(filter));
            ops.push(Op::GetAccountBalances(filter));
            let filter = QueryFilter::new(limit, QueryFilterFlags(reversed));
            ops.push(Op::QueryTransfers(filter));
        }
    }
    ops.push(Op::ExpirePendingTransfers { now: 5_000_000_000 });
    ops.push(Op::SnapshotRestore { hash_seed: 7 });
    ops.push(Op::ExpirePendingTransfers { now: 5_000_000_000 });
    ops.push(Op::ExpirePendingTransfers { now: 6_000_000_000 });
    ops.push(Op::ChangeEvents {
        from: 0,
        limit: usize::MAX,
    });
    ops
}

/// The caps random cases never reach: a query returns at most 8189 results whatever its limit,
/// and one pulse expires at most 8189 pending transfers (the rest on the next pulse).
#[test]
fn query_results_and_expiry_batches_are_capped() {
    let mut harness = Harness::new(1);
    let mut counts = Vec::new();
    for (index, op) in capped_ops().iter().enumerate() {
        match catch_unwind(AssertUnwindSafe(|| harness.step(op))) {
            Ok(Output::Count(count)) => counts.push(count),
            Ok(Output::Transfers(transfers)) => assert_eq!(transfers.len(), 8189, "op #{index}"),
            Ok(Output::Balances(balances)) => assert_eq!(balances.len(), 8189, "op #{index}"),
            Ok(_) => {}
            Err(payload) => panic!("op #{index} failed: {}", panic_message(payload)),
        }
    }
    assert_eq!(
        counts,
        [8189, 30, 0],
        "pending transfers expired by each pulse"
    );
    harness.check_snapshots_equal();
}

/// An imported batch whose events carry timestamps newer than later events' batch slots: a
/// pending transfer stamped after the slot of the void that follows it (the case that made
/// `post_or_void` assert before commit 3e7f6ed). Results and state must match the model.
#[test]
fn imported_events_newer_than_their_slots() {
    let account = |id| Account {
        id: AccountId(id),
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    let imported = |id, timestamp, flags: TransferFlags, pending_id| Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        amount: 5,
        pending_id: TransferId(pending_id),
        ledger: 1,
        code: 1,
        flags: flags | TransferFlags::IMPORTED,
        timestamp,
        ..Transfer::default()
    };
    // Accounts at 1001 and 1002; the batch's slots are 1101..=1104, so imports must be < 1104.
    let events = vec![
        imported(10, 1102, TransferFlags::PENDING, 0),
        imported(11, 1103, TransferFlags::VOID_PENDING_TRANSFER, 10),
        imported(12, 0, TransferFlags::PENDING, 0),
        Transfer {
            flags: TransferFlags(0),
            ..imported(13, 0, TransferFlags(0), 0)
        },
    ];
    let mut harness = Harness::new(3);
    let accounts = Op::CreateAccounts {
        now: 1_000,
        events: vec![account(1), account(2)],
    };
    harness.step(&accounts);
    let output = harness.step(&Op::CreateTransfers { now: 1_100, events });
    let Output::TransferResults(results) = output else {
        panic!("create_transfers results")
    };
    let results: Vec<(u64, CreateTransferStatus)> =
        results.iter().map(|r| (r.timestamp, r.status)).collect();
    use CreateTransferStatus as S;
    let expected = [
        (1102, S::Created),
        (1103, S::Created),
        (1103, S::ImportedEventTimestampOutOfRange),
        (1104, S::ImportedEventExpected),
    ];
    assert_eq!(results, expected);
}
