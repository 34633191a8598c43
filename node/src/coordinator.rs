//! The transaction coordinator: runs batches that span partitions all-or-nothing
//! (`docs/cross-partition.md`).
//!
//! Requests queue up for one driver task. It takes every request waiting (up to
//! `GROUP_EVENTS_MAX` events) as one transaction: it locks the partitions they touch, reads
//! what they can read from each, runs each request's batch in arrival order on one [`Scratch`]
//! ledger (each with its own timestamps, as separate requests to one ledger would get), logs
//! the decision with every partition's effects in the lowest partition's log (the commit
//! point), applies the effects in each other partition's log, unlocks, answers every request,
//! and logs `Done` in the background. Many small requests from many clients so share one lock
//! round and one pair of log writes. A lone request whose records all live in one partition is
//! written there directly (still under its lock).
//!
//! The driver runs one transaction at a time, so it is the only holder of several partition
//! locks at once (a partition's expiry pulse takes only its own): it may request its locks
//! concurrently without risking a deadlock. It runs on the coordinator's own runtime, never
//! inside a request's future: a client that hangs up cannot abandon a transaction halfway with
//! its locks held. Failures before the decision unlock and report the error (nothing
//! happened); failures after it leave the partitions locked: a partition that failed to write
//! has stopped, and the restart redelivers the decision ([`recover`]).

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

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Accounts(accounts) => accounts.len(),
            Batch::Transfers(transfers) => transfers.len(),
            Batch::Expire(pending) => pending.len(),
        }
    }
}

enum Results {
    Accounts(Vec<CreateAccountResult>),
    Transfers(Vec<CreateTransferResult>),
    Expired(usize),
}

type ResultsSender = tokio::sync::oneshot::Sender<Result<Results, NodeError>>;

/// A request waiting for the driver; expiries have nobody to answer.
struct Job {
    now: u64,
    batch: Batch,
    reply: Option<ResultsSender>,
}

/// Most events one transaction carries: its decision must fit one log entry.
const GROUP_EVENTS_MAX: usize = kassa_wire::BATCH_EVENTS_MAX;
/// Requests queued for the driver before callers wait.
const JOBS_QUEUED_MAX: usize = 4096;

/// Runs transactions on a runtime of their own.
pub struct Coordinator {
    jobs: async_channel::Sender<Job>,
    runtime: tokio::runtime::Runtime,
}

impl Coordinator {
    /// Starts the driver, and a task that turns the cores' reports of due cross-partition
    /// pending transfers (`due`) into expiry jobs.
    pub fn start(
        cores: Arc<Cores>,
        due: async_channel::Receiver<Vec<Transfer>>,
    ) -> Result<Coordinator, NodeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kassa-coordinator")
            .enable_time()
            .build()
            .map_err(|error| NodeError::Start(format!("coordinator runtime: {error}")))?;
        let (jobs, queue) = async_channel::bounded(JOBS_QUEUED_MAX);
        runtime.spawn(drive(cores, queue));
        let expiries = jobs.clone();
        runtime.spawn(async move {
            while let Ok(pending) = due.recv().await {
                let job = Job {
                    now: crate::cores::realtime_ns(),
                    batch: Batch::Expire(pending),
                    reply: None,
                };
                if expiries.send(job).await.is_err() {
                    break;
                }
            }
        });
        Ok(Coordinator { jobs, runtime })
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

    async fn run(&self, now: u64, batch: Batch) -> Result<Results, NodeError> {
        let (reply, receive) = tokio::sync::oneshot::channel();
        let job = Job {
            now,
            batch,
            reply: Some(reply),
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Lets running transactions finish (up to `wait`) and stops the runtime.
    pub fn shutdown(self, wait: std::time::Duration) {
        self.jobs.close();
        self.runtime.shutdown_timeout(wait);
    }
}

/// Takes every waiting job (up to `GROUP_EVENTS_MAX` events) as one transaction, until the
/// queue closes.
async fn drive(cores: Arc<Cores>, queue: async_channel::Receiver<Job>) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut events = first.batch.len();
        let mut group = vec![first];
        while let Ok(job) = queue.try_recv() {
            if events + job.batch.len() > GROUP_EVENTS_MAX {
                carried = Some(job);
                break;
            }
            events += job.batch.len();
            group.push(job);
        }
        let batches: Vec<(u64, &Batch)> = group.iter().map(|j| (j.now, &j.batch)).collect();
        let outcome = execute(&cores, &batches).await;
        match outcome {
            Ok(results) => {
                for (job, results) in group.into_iter().zip(results) {
                    match (job.reply, results) {
                        (Some(reply), results) => {
                            let _ = reply.send(Ok(results));
                        }
                        (None, Results::Expired(expired)) => {
                            tracing::debug!(expired, "expired cross-partition pending transfers");
                        }
                        (None, _) => unreachable!("only expiries go unanswered"),
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "a transaction failed");
                let message = error.to_string();
                for job in group {
                    if let Some(reply) = job.reply {
                        let _ = reply.send(Err(NodeError::Transaction(message.clone())));
                    }
                }
            }
        }
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

async fn execute(cores: &Arc<Cores>, batches: &[(u64, &Batch)]) -> Result<Vec<Results>, NodeError> {
    let count = cores.partitions();
    let mut names = Names::default();
    for (_, batch) in batches {
        names_of(batch, &mut names);
    }
    names.normalize();
    let mut locked = BTreeSet::new();
    let lock = next_lock_txn();
    let outcome = async {
        loop {
            let wanted = names.partitions(count);
            if !wanted.is_subset(&locked) {
                // Taken all at once: this driver is the only holder of several locks.
                let more: Vec<u32> = wanted.difference(&locked).copied().collect();
                let locks = more.iter().map(|partition| cores.lock(*partition, lock));
                let taken = join_all(locks).await;
                let mut failed = None;
                for (partition, taken) in more.into_iter().zip(taken) {
                    match taken {
                        Ok(()) => drop(locked.insert(partition)),
                        Err(error) => failed = Some(error),
                    }
                }
                if let Some(error) = failed {
                    return Err(Undecided(error));
                }
            }
            let reads = read_all(cores, &locked, lock, &names).await?;
            // A post or void reads its pending transfer's accounts too.
            let missing: Vec<u128> = pending_accounts(batches, &reads)
                .into_iter()
                .filter(|id| !names.accounts.contains(id))
                .collect();
            if missing.is_empty() {
                return run_locked(cores, batches, &locked, lock, reads).await;
            }
            names.accounts.extend(missing);
            names.normalize();
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
    let unlocks = std::mem::take(locked).into_iter();
    let unlocked = join_all(unlocks.map(|partition| cores.unlock(partition, lock))).await;
    unlocked.into_iter().collect()
}

async fn read_all(
    cores: &Cores,
    locked: &BTreeSet<u32>,
    lock: u64,
    names: &Names,
) -> Result<BTreeMap<u32, ReadSet>, NodeError> {
    let reads = locked.iter().map(|partition| {
        let names = names.clone();
        cores.read_in(*partition, Some(lock), move |ledger| {
            ledger.read_set(&names.accounts, &names.transfers, &names.timestamps)
        })
    });
    let reads = join_all(reads).await;
    let reads = locked.iter().copied().zip(reads);
    reads
        .map(|(partition, read)| Ok((partition, read?)))
        .collect()
}

async fn run_locked(
    cores: &Arc<Cores>,
    batches: &[(u64, &Batch)],
    locked: &BTreeSet<u32>,
    lock: u64,
    reads: BTreeMap<u32, ReadSet>,
) -> Result<Vec<Results>, Failure> {
    let decider = *locked.first().expect("a batch names a partition");
    if let [(now, batch)] = batches {
        if locked.len() == 1 {
            // Everything lives in one partition: its own log runs the batch.
            return Ok(vec![run_local(cores, decider, lock, *now, batch).await?]);
        }
    }
    let reads: Vec<ReadSet> = reads.into_values().collect();
    let mut scratch = Scratch::new(cores.partitions(), &reads);
    let mut changed = false;
    let mut results = Vec::with_capacity(batches.len());
    for (now, batch) in batches {
        let now = *now;
        results.push(match batch {
            Batch::Accounts(accounts) => {
                changed = true;
                let mut results = Vec::with_capacity(accounts.len());
                scratch
                    .ledger()
                    .create_accounts(now, accounts, &mut results);
                Results::Accounts(results)
            }
            Batch::Transfers(transfers) => {
                changed = true;
                let mut results = Vec::with_capacity(transfers.len());
                let ledger = scratch.ledger();
                ledger.create_transfers(now, transfers, &mut results);
                Results::Transfers(results)
            }
            Batch::Expire(_) => {
                let expired = scratch.ledger().expire_pending_transfers(now);
                changed |= expired > 0;
                Results::Expired(expired)
            }
        });
    }
    if !changed {
        // Only expiries, and nothing was due any more: nothing to log.
        return Ok(results);
    }
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
    let others: Vec<(u32, Effects)> = parts.into_iter().filter(|(p, _)| *p != decider).collect();
    if others.is_empty() {
        return Ok(results);
    }
    let applies = others.into_iter().map(|(partition, effects)| {
        let apply = Command::Apply {
            decider,
            txn,
            effects,
        };
        cores.write_in(partition, Some(lock), apply)
    });
    for applied in join_all(applies).await {
        applied.map_err(Decided)?;
    }
    // `Done` only spares a restart redelivering (idempotently) what every partition applied:
    // it need not be durable before the clients get their results or the locks go.
    let cores = cores.clone();
    tokio::spawn(async move {
        if let Err(error) = cores.write(decider, Command::Done { txn }).await {
            tracing::warn!(%error, decider, txn, "logging Done failed; a restart redelivers");
        }
    });
    Ok(results)
}

/// A lone batch whose records all live in `partition`, as that partition's own log entry.
async fn run_local(
    cores: &Cores,
    partition: u32,
    lock: u64,
    now: u64,
    batch: &Batch,
) -> Result<Results, NodeError> {
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
    Ok(
        match cores.write_in(partition, Some(lock), command).await? {
            Reply::CreateAccounts(results) => Results::Accounts(results),
            Reply::CreateTransfers(results) => Results::Transfers(results),
            Reply::ExpirePendingTransfers { expired } => Results::Expired(expired as usize),
            other => unreachable!("a batch answered {other:?}"),
        },
    )
}

/// Fault injection for tests: `KASSA_FAULT=abort-after-decide` aborts the process right after a
/// decision is durable and before any other partition applied it, the worst moment to crash.
fn fault_abort_after_decide() -> bool {
    static FAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAULT.get_or_init(|| {
        std::env::var("KASSA_FAULT").is_ok_and(|fault| fault == "abort-after-decide")
    })
}

/// Awaits every future, concurrently; the outputs in the futures' order.
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.map(|future| Some(Box::pin(future))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut all_ready = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(ready) => {
                        *output = Some(ready);
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
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// Adds what `batch` names to `names`.
fn names_of(batch: &Batch, names: &mut Names) {
    match batch {
        Batch::Accounts(accounts) => {
            names.accounts.extend(accounts.iter().map(|a| a.id.0));
            names
                .timestamps
                .extend(accounts.iter().map(|a| a.timestamp));
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
}

impl Names {
    /// Sorted, without duplicates or zeros.
    fn normalize(&mut self) {
        for list in [&mut self.accounts, &mut self.transfers] {
            list.retain(|id| *id != 0);
            list.sort_unstable();
            list.dedup();
        }
        self.timestamps.retain(|t| *t != 0);
        self.timestamps.sort_unstable();
        self.timestamps.dedup();
    }
}

/// The accounts of the pending transfers the batches post or void, as read.
fn pending_accounts(batches: &[(u64, &Batch)], reads: &BTreeMap<u32, ReadSet>) -> Vec<u128> {
    let mut pending_ids = BTreeSet::new();
    for (_, batch) in batches {
        if let Batch::Transfers(transfers) = batch {
            pending_ids.extend(
                transfers
                    .iter()
                    .map(|t| t.pending_id.0)
                    .filter(|id| *id != 0),
            );
        }
    }
    let read = reads.values().flat_map(|r| &r.transfers);
    read.filter(|(t, _)| pending_ids.contains(&t.id.0))
        .flat_map(|(t, _)| [t.debit_account_id.0, t.credit_account_id.0])
        .collect()
}
