//! The load driver shared by both systems: workers, each owning one connection ([`Submitter`])
//! with one request in flight, take the plan's batches in order and send them; every request's
//! latency goes into an HDR histogram.
//!
//! Invariants: batches are taken in plan order and every batch is sent exactly once; batch `j`
//! is sent only after every batch up to `j - plan.defer_batches` was acknowledged (so a post or
//! void never overtakes its pending transfer, see `plan.rs`); a worker that fails stops the
//! whole run with its error (no batch is silently skipped). Loops are bounded by the plan's
//! batch count. Called by `main.rs` with Kassa's or PostgreSQL's submitters.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kassa_wire::{CreateTransferStatus, Transfer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::plan::Plan;

/// Latencies are recorded in microseconds, from 1 µs to this (longer ones are clamped).
pub const LATENCY_US_MAX: u64 = 600_000_000;

/// One connection to a system under test, with one request in flight at a time.
pub trait Submitter: Send + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Sends `batch` and returns one status per transfer, in order, once the system says the
    /// outcome is durable.
    fn submit(
        &mut self,
        batch: &[Transfer],
    ) -> impl Future<Output = Result<Vec<CreateTransferStatus>, Self::Error>> + Send;
}

/// What one run produced: every batch's statuses, the latency histogram and the wall time.
pub struct LoadOutcome {
    /// `statuses[j]` holds batch `j`'s statuses.
    pub statuses: Vec<Vec<CreateTransferStatus>>,
    pub latency_us: Histogram<u64>,
    pub requests: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError<E: std::error::Error + 'static> {
    #[error("batch {batch}: {source}")]
    Submit {
        batch: usize,
        #[source]
        source: E,
    },
    #[error("batch {batch}: {results} results for {events} transfers")]
    ResultCount {
        batch: usize,
        events: usize,
        results: usize,
    },
    #[error("a load worker stopped unexpectedly: {0}")]
    Worker(String),
}

/// Hands out batch indexes in order and tracks which are acknowledged.
struct Dispatcher {
    next: AtomicU64,
    batches_count: usize,
    defer_batches: usize,
    done: Mutex<(Vec<bool>, usize)>,
    /// The lowest batch index not yet acknowledged.
    watermark: watch::Sender<usize>,
    transfers_done: AtomicU64,
}

impl Dispatcher {
    /// The next batch to send, once it may be sent; `None` when every batch was taken.
    async fn take(&self) -> Option<usize> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        if index >= self.batches_count {
            return None;
        }
        let mut watermark = self.watermark.subscribe();
        // Batches below `index` were all taken earlier, so the lowest unacknowledged one is
        // in flight and will complete: this wait ends.
        let ready = watermark
            .wait_for(|low| *low + self.defer_batches >= index)
            .await;
        assert!(ready.is_ok(), "the dispatcher outlives its workers");
        Some(index)
    }

    fn complete(&self, index: usize, transfers: usize) {
        let mut done = self.done.lock().expect("dispatcher lock");
        let (flags, low) = &mut *done;
        assert!(!flags[index], "batch {index} acknowledged twice");
        flags[index] = true;
        while *low < flags.len() && flags[*low] {
            *low += 1;
        }
        self.watermark.send_replace(*low);
        self.transfers_done
            .fetch_add(transfers as u64, Ordering::Relaxed);
    }
}

/// Runs `plan` with one worker per submitter; `label` names the run in progress lines.
pub async fn run<S: Submitter>(
    plan: Arc<Plan>,
    submitters: Vec<S>,
    label: &str,
) -> Result<LoadOutcome, LoadError<S::Error>> {
    assert!(!submitters.is_empty());
    let batches_count = plan.batches_count();
    let dispatcher = Arc::new(Dispatcher {
        next: AtomicU64::new(0),
        batches_count,
        defer_batches: plan.defer_batches,
        done: Mutex::new((vec![false; batches_count], 0)),
        watermark: watch::channel(0).0,
        transfers_done: AtomicU64::new(0),
    });
    let start = Instant::now();
    let progress = tokio::spawn(progress(
        dispatcher.clone(),
        plan.transfers.len() as u64,
        label.to_string(),
    ));
    let mut workers = JoinSet::new();
    for submitter in submitters {
        workers.spawn(worker(submitter, plan.clone(), dispatcher.clone()));
    }
    let mut statuses = vec![Vec::new(); batches_count];
    let mut latency_us = histogram();
    let mut requests = 0;
    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(part)) => {
                latency_us
                    .add(&part.latency_us)
                    .expect("same histogram bounds");
                requests += part.requests;
                for (index, batch) in part.statuses {
                    statuses[index] = batch;
                }
            }
            Ok(Err(error)) => {
                failure.get_or_insert(error);
                workers.abort_all();
            }
            Err(error) if error.is_cancelled() => {}
            Err(error) => {
                failure.get_or_insert(LoadError::Worker(error.to_string()));
                workers.abort_all();
            }
        }
    }
    let elapsed = start.elapsed();
    progress.abort();
    if let Some(error) = failure {
        return Err(error);
    }
    assert!(statuses
        .iter()
        .enumerate()
        .all(|(index, batch)| batch.len() == plan.batch(index).len()));
    Ok(LoadOutcome {
        statuses,
        latency_us,
        requests,
        elapsed,
    })
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

struct WorkerPart {
    statuses: Vec<(usize, Vec<CreateTransferStatus>)>,
    latency_us: Histogram<u64>,
    requests: u64,
}

async fn worker<S: Submitter>(
    mut submitter: S,
    plan: Arc<Plan>,
    dispatcher: Arc<Dispatcher>,
) -> Result<WorkerPart, LoadError<S::Error>> {
    let mut part = WorkerPart {
        statuses: Vec::new(),
        latency_us: histogram(),
        requests: 0,
    };
    // Bounded: `take` hands out each of the plan's batches once, then `None`.
    while let Some(index) = dispatcher.take().await {
        let batch = plan.batch(index);
        let sent = Instant::now();
        let statuses = submitter
            .submit(batch)
            .await
            .map_err(|source| LoadError::Submit {
                batch: index,
                source,
            })?;
        let micros = (sent.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
        part.latency_us.record(micros).expect("clamped into bounds");
        part.requests += 1;
        if statuses.len() != batch.len() {
            return Err(LoadError::ResultCount {
                batch: index,
                events: batch.len(),
                results: statuses.len(),
            });
        }
        part.statuses.push((index, statuses));
        dispatcher.complete(index, batch.len());
    }
    Ok(part)
}

/// A line on stderr every second until aborted.
async fn progress(dispatcher: Arc<Dispatcher>, total: u64, label: String) {
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = 0;
    loop {
        ticker.tick().await;
        let done = dispatcher.transfers_done.load(Ordering::Relaxed);
        eprintln!(
            "[{label}] {:>6.1}s {done}/{total} transfers, {} in the last second",
            start.elapsed().as_secs_f64(),
            done - last
        );
        last = done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{generate, Distribution, Phase, PlanConfig};
    use std::collections::HashSet;

    /// Answers `created`, checking that no post or void arrives before its pending transfer.
    struct Checker {
        seen: Arc<Mutex<HashSet<u128>>>,
    }

    impl Submitter for Checker {
        type Error = std::io::Error;

        async fn submit(
            &mut self,
            batch: &[Transfer],
        ) -> Result<Vec<CreateTransferStatus>, std::io::Error> {
            let early = {
                let seen = self.seen.lock().expect("seen");
                batch
                    .iter()
                    .any(|t| t.pending_id.0 != 0 && !seen.contains(&t.pending_id.0))
            };
            tokio::time::sleep(Duration::from_micros(batch.len() as u64 % 7 * 100)).await;
            self.seen
                .lock()
                .expect("seen")
                .extend(batch.iter().map(|t| t.id.0));
            let status = if early {
                CreateTransferStatus::PendingTransferNotFound
            } else {
                CreateTransferStatus::Created
            };
            Ok(vec![status; batch.len()])
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_batch_once_and_no_resolution_overtakes_its_pending() {
        let config = PlanConfig {
            accounts: 50,
            ledgers: 1,
            mix_ledgers: false,
            transfers: 3_001,
            distribution: Distribution::Uniform,
            two_phase_share: 0.3,
            seed: 1,
            tag: 1,
            batch_size: 7,
            defer_batches: 8,
        };
        let plan = Arc::new(generate(&config, Phase::Throughput));
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let workers = (0..4).map(|_| Checker { seen: seen.clone() }).collect();
        let outcome = run(plan.clone(), workers, "test").await.expect("run");
        assert_eq!(outcome.requests as usize, plan.batches_count());
        let statuses: Vec<_> = outcome.statuses.into_iter().flatten().collect();
        assert_eq!(statuses.len(), 3_001);
        assert!(statuses.iter().all(|s| *s == CreateTransferStatus::Created));
        assert_eq!(seen.lock().expect("seen").len(), 3_001);
    }
}
