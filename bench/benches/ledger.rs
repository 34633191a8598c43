//! Micro-benchmark of the ledger state machine: `create_transfers` on full batches (8189
//! random transfers among 10,000 accounts), on one core, with the change stream drained after
//! each batch as its consumers would. Criterion reports transfers per second (`thrpt`).
//!
//! The ledger keeps growing across iterations (its id index and tables grow as in a real
//! partition) and is rebuilt, outside the timed section, once it holds `TRANSFERS_RESET`
//! transfers, so memory stays bounded however long criterion runs.
//!
//! Run: `cargo bench -p kassa-bench --bench ledger`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kassa_bench::workload::{self, SplitMix64};
use kassa_shard::{Ledger, LedgerConfig};
use kassa_wire::{CreateTransferStatus, BATCH_EVENTS_MAX};

const ACCOUNTS_COUNT: u64 = 10_000;
const TRANSFERS_RESET: usize = 4_000_000;
/// Nanoseconds the injected clock advances per batch.
const CLOCK_STEP_NS: u64 = 1_000_000;

struct Bench {
    ledger: Ledger,
    random: SplitMix64,
    batch: Vec<kassa_wire::Transfer>,
    results: Vec<kassa_wire::CreateTransferResult>,
    next_id: u128,
    now: u64,
}

impl Bench {
    fn new() -> Bench {
        let mut ledger = Ledger::new(LedgerConfig {
            hash_seed: 0x006b_6173_7361,
            accounts_capacity: ACCOUNTS_COUNT as usize,
            transfers_capacity: TRANSFERS_RESET + BATCH_EVENTS_MAX,
            ..LedgerConfig::default()
        });
        workload::create_accounts(&mut ledger, ACCOUNTS_COUNT, CLOCK_STEP_NS);
        Bench {
            ledger,
            random: SplitMix64::new(42),
            batch: Vec::with_capacity(BATCH_EVENTS_MAX),
            results: Vec::with_capacity(BATCH_EVENTS_MAX),
            next_id: 1,
            now: 2 * CLOCK_STEP_NS,
        }
    }

    /// Applies one batch and returns the time `create_transfers` took.
    fn batch_timed(&mut self) -> Duration {
        if self.ledger.transfers().len() >= TRANSFERS_RESET {
            let (next_id, random_state) = (self.next_id, self.random.next_u64());
            *self = Bench::new();
            self.next_id = next_id;
            self.random = SplitMix64::new(random_state);
        }
        workload::transfers_random(
            &mut self.random,
            ACCOUNTS_COUNT,
            self.next_id,
            BATCH_EVENTS_MAX,
            &mut self.batch,
        );
        self.next_id += BATCH_EVENTS_MAX as u128;
        self.now += CLOCK_STEP_NS;
        let start = Instant::now();
        self.ledger
            .create_transfers(self.now, &self.batch, &mut self.results);
        let elapsed = start.elapsed();
        assert!(self
            .results
            .iter()
            .all(|r| r.status == CreateTransferStatus::Created));
        let sequence_last = self.ledger.change_sequence_next() - 1;
        self.ledger.release_change_events(sequence_last);
        elapsed
    }
}

fn create_transfers(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(BATCH_EVENTS_MAX as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    let mut bench = Bench::new();
    group.bench_function("create_transfers/8189_random_among_10000_accounts", |b| {
        b.iter_custom(|iterations| (0..iterations).map(|_| bench.batch_timed()).sum());
    });
    group.finish();
}

criterion_group!(benches, create_transfers);
criterion_main!(benches);
