//! Benchmark of the id directory's claims through real partitions (`docs/transactions.md`,
//! design D): what the fast path of placement by ledger will add to a batch before it runs.
//! Each batch claims 8189 fresh transfer ids for one partition at their homes: one `Claim`
//! log entry per home (fsynced), the answers back through the cores' queues. Prints ids per
//! second and the batch latency, with 1 and 4 batches in flight.
//!
//! Run: `cargo bench -p kassa-node --bench claims` (`KASSA_CLAIM_BATCHES`, default 120,
//! batches per run; `KASSA_CLAIM_PARTITIONS`, default 16).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kassa_node::cores::{CoreSetup, Cores};
use kassa_shard::directory::{ClaimAnswer, IdKind};

const BATCH: usize = kassa_wire::BATCH_EVENTS_MAX;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: fresh, well-spread ids without a dependency.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().build();
    runtime.expect("a runtime").block_on(future)
}

fn main() {
    let batches = env_or("KASSA_CLAIM_BATCHES", 120) as usize;
    let partitions = env_or("KASSA_CLAIM_PARTITIONS", 16) as u32;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = std::env::temp_dir().join(format!("kassa-claims-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (cross_expiries, _keep) = async_channel::bounded(1);
    let setup = CoreSetup {
        data_dir: dir.clone(),
        partitions,
        placement: kassa_shard::PlacementKind::ById,
        cores,
        snapshot_entries: 1 << 20,
        cache_blocks: kassa_raft::CACHE_BLOCKS_DEFAULT,
        memory: kassa_raft::MemoryBudget::unbounded(),
        hash_seed: 7,
        pulses: Arc::new(AtomicBool::new(false)),
        cross_expiries,
    };
    let started = Cores::start(setup).expect("the cores start");
    let cores_handle = Arc::new(started.queues());
    println!(
        "claims of {BATCH} fresh transfer ids per batch; {partitions} partitions on {cores} cores"
    );
    for in_flight in [1usize, 4] {
        let start = Instant::now();
        let threads: Vec<_> = (0..in_flight)
            .map(|thread| {
                let queues = cores_handle.clone();
                let count = batches / in_flight;
                std::thread::spawn(move || {
                    let mut seed = 0x006b_6173_7361 ^ ((thread as u64) << 40) ^ in_flight as u64;
                    let partition = thread as u32 % partitions;
                    let mut latencies = Vec::with_capacity(count);
                    for _ in 0..count {
                        let ids: Vec<u128> = (0..BATCH)
                            .map(|_| {
                                (u128::from(next(&mut seed)) << 64)
                                    | u128::from(next(&mut seed))
                                    | 1
                            })
                            .collect();
                        let began = Instant::now();
                        let outcome = block_on(queues.claim_for_transaction(
                            partition,
                            IdKind::Transfer,
                            ids.clone(),
                        ))
                        .expect("claimed");
                        latencies.push(began.elapsed());
                        assert!(outcome.answers.values().all(|a| *a == ClaimAnswer::Granted));
                        block_on(queues.claims_settled(
                            partition,
                            outcome.proposer,
                            IdKind::Transfer,
                            ids,
                        ))
                        .expect("settled");
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("a bench thread"))
            .collect();
        let elapsed = start.elapsed();
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let ids = (latencies.len() * BATCH) as f64;
        println!(
            "{in_flight} in flight: {:.0} ids/s, batch p50 {:.2} ms, p99 {:.2} ms ({} batches in {:.2} s)",
            ids / elapsed.as_secs_f64(),
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            latencies.len(),
            elapsed.as_secs_f64(),
        );
    }
    started.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
