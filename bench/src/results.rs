//! What a run measured, and what the system must hold afterwards.
//!
//! [`Tally`] accumulates, over every run against one system, the transfers that system
//! acknowledged as created and the money they moved (posted and pending), so verification can
//! check the stored state against what was acknowledged. [`RunResult`] is one line of the
//! report and of the JSON output. Failures are counted by status and never in the throughput:
//! `transfers_per_s` counts created transfers only.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use kassa_wire::{CreateTransferStatus, Transfer, TransferFlags};
use serde::Serialize;

use crate::load::LoadOutcome;
use crate::plan::Plan;

/// The money the acknowledged transfers moved among the benchmark's accounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Sum of `debits_posted` (and so of `credits_posted`) over the benchmark's accounts.
    pub posted: u128,
    /// Sum of `debits_pending` (and so of `credits_pending`).
    pub pending: u128,
}

/// Everything one system acknowledged so far.
#[derive(Debug, Default)]
pub struct Tally {
    pub acknowledged: Vec<Transfer>,
    pub totals: Totals,
}

impl Tally {
    /// Adds the created transfers of `transfers` (with their `statuses`).
    pub fn add(&mut self, transfers: &[Transfer], statuses: &[CreateTransferStatus]) {
        assert_eq!(transfers.len(), statuses.len());
        for (transfer, status) in transfers.iter().zip(statuses) {
            if *status != CreateTransferStatus::Created {
                continue;
            }
            self.acknowledged.push(*transfer);
            let flags = transfer.flags;
            if flags.contains(TransferFlags::PENDING) {
                self.totals.pending += transfer.amount;
            } else if flags.contains(TransferFlags::POST_PENDING_TRANSFER) {
                // The plan posts the whole pending amount.
                self.totals.pending -= transfer.amount;
                self.totals.posted += transfer.amount;
            } else if flags.contains(TransferFlags::VOID_PENDING_TRANSFER) {
                self.totals.pending -= transfer.amount;
            } else {
                self.totals.posted += transfer.amount;
            }
        }
    }
}

/// Latency percentiles of one run, in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        Latency {
            p50_us: histogram.value_at_quantile(0.50),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }
}

/// One system in one mode.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// "kassa" or "postgres".
    pub system: &'static str,
    /// "throughput" or "latency".
    pub mode: &'static str,
    /// How the system was driven: "wire" (Kassa), "batched" or "per-transfer" (PostgreSQL).
    pub variant: &'static str,
    /// Connections, each with one request in flight.
    pub concurrency: usize,
    pub batch_size: usize,
    pub transfers_sent: u64,
    pub transfers_created: u64,
    /// Transfers refused, by status name; not counted in `transfers_per_s`.
    pub failed: BTreeMap<&'static str, u64>,
    pub requests: u64,
    pub elapsed_s: f64,
    /// Created transfers per second of wall time.
    pub transfers_per_s: f64,
    /// Per request (a whole batch in throughput mode).
    pub latency: Latency,
}

impl RunResult {
    /// Summarises `outcome` of `plan`, adding its created transfers to `tally`.
    pub fn of(
        names: (&'static str, &'static str, &'static str),
        concurrency: usize,
        plan: &Plan,
        outcome: &LoadOutcome,
        tally: &mut Tally,
    ) -> RunResult {
        let mut failed = BTreeMap::new();
        let mut created = 0;
        for (index, statuses) in outcome.statuses.iter().enumerate() {
            tally.add(plan.batch(index), statuses);
            for status in statuses {
                if *status == CreateTransferStatus::Created {
                    created += 1;
                } else {
                    *failed.entry(status.name()).or_insert(0) += 1;
                }
            }
        }
        let elapsed_s = outcome.elapsed.as_secs_f64();
        RunResult {
            system: names.0,
            mode: names.1,
            variant: names.2,
            concurrency,
            batch_size: plan.batch_size,
            transfers_sent: plan.transfers.len() as u64,
            transfers_created: created,
            failed,
            requests: outcome.requests,
            elapsed_s,
            transfers_per_s: created as f64 / elapsed_s.max(1e-9),
            latency: Latency::of(&outcome.latency_us),
        }
    }
}

/// The outcome of the end-of-run checks on one system.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verification {
    pub system: &'static str,
    pub transfers_checked: u64,
    /// Every problem found; empty means verified.
    pub problems: Vec<String>,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_wire::TransferId;

    #[test]
    fn the_tally_follows_pending_post_and_void_and_skips_failures() {
        let plain = Transfer {
            id: TransferId(1),
            amount: 10,
            ..Transfer::default()
        };
        let pending = Transfer {
            id: TransferId(2),
            amount: 5,
            flags: TransferFlags::PENDING,
            ..Transfer::default()
        };
        let post = Transfer {
            id: TransferId(3),
            amount: 5,
            pending_id: TransferId(2),
            flags: TransferFlags::POST_PENDING_TRANSFER,
            ..Transfer::default()
        };
        let mut tally = Tally::default();
        let created = CreateTransferStatus::Created;
        tally.add(&[plain, pending], &[created, created]);
        assert_eq!(
            tally.totals,
            Totals {
                posted: 10,
                pending: 5
            }
        );
        tally.add(
            &[post, plain],
            &[created, CreateTransferStatus::ExceedsCredits],
        );
        assert_eq!(
            tally.totals,
            Totals {
                posted: 15,
                pending: 0
            }
        );
        assert_eq!(tally.acknowledged.len(), 3);
    }
}
