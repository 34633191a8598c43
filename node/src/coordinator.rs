//! The transaction coordinator: runs batches that span partitions all-or-nothing
//! (`docs/cross-partition.md`).
//!
//! For a batch, it locks the partitions the batch touches (ascending, so two transactions never
//! wait on each other in a cycle), reads what the batch can read from each, runs the batch on a
//! [`Scratch`] ledger, logs the decision with every partition's effects in the lowest
//! partition's log (the commit point), applies the effects in each other partition's log, logs
//! `Done`, and unlocks. A batch that turns out to touch one partition is written there directly
//! (still under its lock).
//!
//! Transactions run as tasks of the coordinator's own runtime, never inside a request's
//! future: a client that hangs up cannot abandon a transaction halfway with its locks held.
//! Failures before the decision unlock and report the error (nothing happened); failures after
//! it leave the partitions locked: a partition that failed to write has stopped, and the
//! restart redelivers the decision ([`recover`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kassa_shard::{partition_of, Command, Effects, ReadSet, Reply, Scratch};
use kassa_wire::{Account, CreateAccountResult, CreateTransferResult, Transfer};

use crate::cores::{next_lock_txn, Cores};
use crate::NodeError;

/// What a batch names, to find its partitions and read its records.
#[derive(Clone, Default)]
struct Names {
    accounts: Vec<u128>,
    transfers: Vec<u128>,
    /// Imported events' timestamps (to find the records that already hold them).
    timestamps: Vec<u64>,
}

impl Names {
    fn partitions(&self, count: u32) -> BTreeSet<u32> {
        let ids = self.accounts.iter().chain(&self.transfers);
        ids.map(|id| partition_of(*id, count)).collect()
    }
}

/// A batch to run.
enum Batch {
    Accounts(Vec<Account>),
    Transfers(Vec<Transfer>),
    /// Expire these pending transfers if their time is up at `now`.
    Expire(Vec<Transfer>),
}

enum Results {
    Accounts(Vec<CreateAccountResult>),
    Transfers(Vec<CreateTransferResult>),
    Expired(usize),
}

/// Runs transactions on a runtime of their own.
pub struct Coordinator {
    cores: Arc<Cores>,
    runtime: tokio::runtime::Runtime,
}

impl Coordinator {
    pub fn start(cores: Arc<Cores>) -> Result<Coordinator, NodeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kassa-coordinator")
            .enable_time()
            .build()
            .map_err(|error| NodeError::Start(format!("coordinator runtime: {error}")))?;
        Ok(Coordinator { cores, runtime })
    }

    pub async fn create_accounts(
        &self,
        now: u64,
        accounts: Vec<Account>,
    ) -> Result<Vec<CreateAccountResult>, NodeError> {
        match self.run(now, Batch::Accounts(accounts)).await? {
            Results::Accounts(results) => Ok(results),
            _ => unreachable!("an accounts batch answers account results"),
        }
    }

    pub async fn create_transfers(
        &self,
        now: u64,
        transfers: Vec<Transfer>,
    ) -> Result<Vec<CreateTransferResult>, NodeError> {
        match self.run(now, Batch::Transfers(transfers)).await? {
            Results::Transfers(results) => Ok(results),
            _ => unreachable!("a transfers batch answers transfer results"),
        }
    }

    /// Expires, through cross-partition transactions, the pending transfers the cores report
    /// due on `due`, until the channel closes.
    pub fn serve_expiries(&self, due: async_channel::Receiver<Vec<Transfer>>) {
        let cores = self.cores.clone();
        self.runtime.spawn(async move {
            while let Ok(pending) = due.recv().await {
                let now = crate::cores::realtime_ns();
                match execute(&cores, now, Batch::Expire(pending)).await {
                    Ok(Results::Expired(expired)) => {
                        tracing::debug!(expired, "expired cross-partition pending transfers");
                    }
                    Ok(_) => unreachable!("an expiry batch answers a count"),
                    Err(error) => {
                        tracing::warn!(%error, "expiring cross-partition pending transfers failed");
                    }
                }
            }
        });
    }

    async fn run(&self, now: u64, batch: Batch) -> Result<Results, NodeError> {
        let (reply, receive) = tokio::sync::oneshot::channel();
        let cores = self.cores.clone();
        self.runtime.spawn(async move {
            let _ = reply.send(execute(&cores, now, batch).await);
        });
        receive.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Lets running transactions finish (up to `wait`) and stops the runtime.
    pub fn shutdown(self, wait: std::time::Duration) {
        self.runtime.shutdown_timeout(wait);
    }
}

/// Delivers again every decision a partition logged but did not see `Done` for: a crash
/// came between the decision and the last `Apply`. Runs before the node serves anything.
pub async fn recover(cores: &Cores) -> Result<usize, NodeError> {
    let mut delivered = 0;
    for decider in 0..cores.partitions() {
        let undelivered = cores.read(decider, |l| l.undelivered_decisions()).await?;
        for (txn, parts) in undelivered {
            for (partition, effects) in parts {
                let apply = Command::Apply {
                    decider,
                    txn,
                    effects,
                };
                cores.write(partition, apply).await?;
            }
            cores.write(decider, Command::Done { txn }).await?;
            delivered += 1;
        }
    }
    Ok(delivered)
}

async fn execute(cores: &Cores, now: u64, batch: Batch) -> Result<Results, NodeError> {
    let count = cores.partitions();
    let mut names = names_of(&batch);
    let mut locked = BTreeSet::new();
    let lock = next_lock_txn();
    let outcome = async {
        loop {
            let wanted = names.partitions(count);
            if !wanted.is_subset(&locked) {
                // Locks are taken in ascending order only: release and start over.
                unlock_all(cores, &mut locked, lock).await?;
                for partition in &wanted {
                    cores.lock(*partition, lock).await?;
                    locked.insert(*partition);
                }
            }
            let reads = read_all(cores, &locked, lock, &names).await?;
            // A post or void reads its pending transfer's accounts too.
            let pending_accounts = pending_accounts(&batch, &reads);
            let missing: Vec<u128> = pending_accounts
                .into_iter()
                .filter(|id| !names.accounts.contains(id))
                .collect();
            if missing.is_empty() {
                return run_locked(cores, now, &batch, &locked, lock, reads).await;
            }
            names.accounts.extend(missing);
        }
    }
    .await;
    match &outcome {
        Ok(_) | Err(Undecided(_)) => unlock_all(cores, &mut locked, lock).await?,
        Err(Decided(error)) => {
            tracing::error!(%error, "a decided transaction could not be applied; its partitions stay locked until a restart redelivers it");
        }
    }
    outcome.map_err(|(Undecided(error) | Decided(error))| error)
}

/// Why a transaction failed: before its decision (nothing happened) or after it.
enum Failure {
    Undecided(NodeError),
    Decided(NodeError),
}
use Failure::{Decided, Undecided};

impl From<NodeError> for Failure {
    fn from(error: NodeError) -> Failure {
        Undecided(error)
    }
}

async fn unlock_all(cores: &Cores, locked: &mut BTreeSet<u32>, lock: u64) -> Result<(), NodeError> {
    for partition in std::mem::take(locked) {
        cores.unlock(partition, lock).await?;
    }
    Ok(())
}

async fn read_all(
    cores: &Cores,
    locked: &BTreeSet<u32>,
    lock: u64,
    names: &Names,
) -> Result<BTreeMap<u32, ReadSet>, NodeError> {
    let mut reads = BTreeMap::new();
    for partition in locked {
        let names = names.clone();
        let read = cores.read_in(*partition, Some(lock), move |ledger| {
            ledger.read_set(&names.accounts, &names.transfers, &names.timestamps)
        });
        reads.insert(*partition, read.await?);
    }
    Ok(reads)
}

async fn run_locked(
    cores: &Cores,
    now: u64,
    batch: &Batch,
    locked: &BTreeSet<u32>,
    lock: u64,
    reads: BTreeMap<u32, ReadSet>,
) -> Result<Results, Failure> {
    let decider = *locked.first().expect("a batch names a partition");
    if locked.len() == 1 {
        // Everything lives in one partition: its own log runs the batch.
        let command = match batch {
            Batch::Accounts(accounts) => Command::CreateAccounts {
                now,
                accounts: accounts.clone(),
            },
            Batch::Transfers(transfers) => Command::CreateTransfers {
                now,
                transfers: transfers.clone(),
            },
            Batch::Expire(_) => Command::ExpirePendingTransfers { now },
        };
        return match cores.write_in(decider, Some(lock), command).await? {
            Reply::CreateAccounts(results) => Ok(Results::Accounts(results)),
            Reply::CreateTransfers(results) => Ok(Results::Transfers(results)),
            Reply::ExpirePendingTransfers { expired } => Ok(Results::Expired(expired as usize)),
            other => unreachable!("a batch answered {other:?}"),
        };
    }
    let reads: Vec<ReadSet> = reads.into_values().collect();
    let mut scratch = Scratch::new(cores.partitions(), &reads);
    let results = match batch {
        Batch::Accounts(accounts) => {
            let mut results = Vec::with_capacity(accounts.len());
            scratch
                .ledger()
                .create_accounts(now, accounts, &mut results);
            Results::Accounts(results)
        }
        Batch::Transfers(transfers) => {
            let mut results = Vec::with_capacity(transfers.len());
            scratch
                .ledger()
                .create_transfers(now, transfers, &mut results);
            Results::Transfers(results)
        }
        Batch::Expire(_) => {
            let expired = scratch.ledger().expire_pending_transfers(now);
            if expired == 0 {
                return Ok(Results::Expired(0));
            }
            Results::Expired(expired)
        }
    };
    let parts: Vec<(u32, Effects)> = scratch.effects(decider).into_iter().collect();
    let decide = Command::Decide {
        effects: parts.clone(),
    };
    let txn = match cores.write_in(decider, Some(lock), decide).await? {
        Reply::Decided { txn } => txn,
        other => unreachable!("Decide answered {other:?}"),
    };
    if fault_abort_after_decide() {
        eprintln!("kassa: KASSA_FAULT=abort-after-decide: aborting after a durable decision");
        std::process::abort();
    }
    let applies = parts
        .into_iter()
        .filter(|(partition, _)| *partition != decider)
        .map(|(partition, effects)| {
            let apply = Command::Apply {
                decider,
                txn,
                effects,
            };
            cores.write_in(partition, Some(lock), apply)
        });
    for applied in futures_join_all(applies).await {
        applied.map_err(Decided)?;
    }
    let done = cores.write_in(decider, Some(lock), Command::Done { txn });
    done.await.map_err(Decided)?;
    Ok(results)
}

/// Fault injection for tests: `KASSA_FAULT=abort-after-decide` aborts the process right after a
/// decision is durable and before any other partition applied it, the worst moment to crash.
fn fault_abort_after_decide() -> bool {
    static FAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAULT.get_or_init(|| {
        std::env::var("KASSA_FAULT").is_ok_and(|fault| fault == "abort-after-decide")
    })
}

/// Awaits every future, concurrently, in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    // Writes to different partitions are independent log appends: issue them all, then wait.
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|context| {
        let mut all_ready = true;
        for slot in pending.iter_mut() {
            if let Some(future) = slot {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(output) => {
                        outputs.push(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_ready = false,
                }
            }
        }
        if all_ready {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
}

fn names_of(batch: &Batch) -> Names {
    let mut names = Names::default();
    match batch {
        Batch::Accounts(accounts) => {
            names.accounts = accounts.iter().map(|a| a.id.0).collect();
            names.timestamps = accounts.iter().map(|a| a.timestamp).collect();
        }
        Batch::Transfers(transfers) => {
            for t in transfers {
                names
                    .accounts
                    .extend([t.debit_account_id.0, t.credit_account_id.0]);
                names.transfers.extend([t.id.0, t.pending_id.0]);
                names.timestamps.push(t.timestamp);
            }
        }
        Batch::Expire(pending) => {
            for t in pending {
                names
                    .accounts
                    .extend([t.debit_account_id.0, t.credit_account_id.0]);
                names.transfers.push(t.id.0);
            }
        }
    }
    names.accounts.retain(|id| *id != 0);
    names.transfers.retain(|id| *id != 0);
    names.timestamps.retain(|t| *t != 0);
    for list in [&mut names.accounts, &mut names.transfers] {
        list.sort_unstable();
        list.dedup();
    }
    names.timestamps.sort_unstable();
    names.timestamps.dedup();
    names
}

/// The accounts of the pending transfers a batch posts or voids, as read.
fn pending_accounts(batch: &Batch, reads: &BTreeMap<u32, ReadSet>) -> Vec<u128> {
    let Batch::Transfers(transfers) = batch else {
        return Vec::new();
    };
    let pending_ids: BTreeSet<u128> = transfers.iter().map(|t| t.pending_id.0).collect();
    let read = reads.values().flat_map(|r| &r.transfers);
    read.filter(|(t, _)| pending_ids.contains(&t.id.0))
        .flat_map(|(t, _)| [t.debit_account_id.0, t.credit_account_id.0])
        .collect()
}
