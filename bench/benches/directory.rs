//! Micro-benchmark of the id directory (`kassa_shard::directory`, `docs/transactions.md`): what
//! a home does for a claim of a full batch's fresh ids (8189 random ids, all new), on one core.
//! Criterion reports ids per second (`thrpt`); compare it with the `ledger` benchmark's
//! transfers per second, run the same way, to see what the directory adds per transfer.
//!
//! The directory keeps growing across iterations and is rebuilt, outside the timed section,
//! once it holds `IDS_RESET` ids.
//!
//! Run: `cargo bench -p kassa-bench --bench directory`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kassa_bench::workload::SplitMix64;
use kassa_shard::directory::{ClaimAnswer, DirectoryCommand, IdDirectory};
use kassa_wire::BATCH_EVENTS_MAX;

/// One home of a one-partition cluster: every id is homed here.
const PARTITIONS: u32 = 1;
const IDS_RESET: usize = 4_000_000;

struct Bench {
    directory: IdDirectory,
    random: SplitMix64,
    answers: Vec<ClaimAnswer>,
    round: u64,
}

impl Bench {
    fn new(random: SplitMix64) -> Bench {
        Bench {
            directory: IdDirectory::new(0, PARTITIONS, 0x006b_6173_7361),
            random,
            answers: Vec::with_capacity(BATCH_EVENTS_MAX),
            round: 0,
        }
    }

    /// Applies one claim of a batch of fresh ids and returns the time it took.
    fn claim_timed(&mut self) -> Duration {
        if self.directory.len() >= IDS_RESET {
            let random = SplitMix64::new(self.random.next_u64());
            *self = Bench::new(random);
        }
        self.round += 1;
        let ids = (0..BATCH_EVENTS_MAX)
            .map(|_| (u128::from(self.random.next_u64()) << 64) | 1)
            .collect();
        let claim = DirectoryCommand::Claim {
            claimant: 0,
            round: self.round,
            priority: self.round,
            ids,
        };
        let start = Instant::now();
        self.directory.apply(&claim, &mut self.answers);
        let elapsed = start.elapsed();
        assert!(self.answers.iter().all(|a| *a == ClaimAnswer::Granted));
        elapsed
    }
}

fn claims(c: &mut Criterion) {
    let mut group = c.benchmark_group("directory");
    group.throughput(Throughput::Elements(BATCH_EVENTS_MAX as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    let mut bench = Bench::new(SplitMix64::new(42));
    group.bench_function("claim/8189_fresh_ids", |b| {
        b.iter_custom(|iterations| (0..iterations).map(|_| bench.claim_timed()).sum());
    });
    group.finish();
}

criterion_group!(benches, claims);
criterion_main!(benches);
