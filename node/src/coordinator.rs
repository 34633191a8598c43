//! The transaction coordinator: runs batches that span partitions all-or-nothing
//! (`docs/cross-partition.md`).
//!
//! Requests queue up for one driver task. It takes every request waiting (up to
//! `GROUP_EVENTS_MAX` events) as one transaction: it locks the partitions they touch, reads
//! what they can read from each, runs each request's batch in arrival order on one [`Scratch`]
//! ledger (each with its own timestamps, as separate requests to one ledger would get), logs
//! the decision with every partition's effects in the lowest partition's log (the commit
//! point), answers every request, applies the effects in each other partition's log, unlocks,
//! and logs `Done` in the background. Answering before the applies is safe: a restart delivers
//! a durable decision before the node serves, and the partitions stay locked until they
//! applied it, so no read sees them without it. Each wire request's reply is sealed here as
//! its session partition will seal and cache it (from the op and clock it read under the
//! lock). Many small requests from many clients so share one lock round and one pair of log
//! writes. A lone request whose records all live in one partition is written there directly
//! (still under its lock).
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

use kassa_shard::directory::IdKind;
use kassa_shard::{
    ClientAnswer, ClientReply, ClientRequest, Command, Decision, Effects, Ledger, PlacementKind,
    ReadSet, Reply, Scratch,
};
use kassa_wire::RequestHeader;
use kassa_wire::{Account, CreateAccountResult, CreateTransferResult, Transfer};
use zerocopy::IntoBytes;

use crate::cores::{next_lock_txn, ClaimedIds, Cores, ReadNames};
use crate::fail_stop::fail_stop;
use crate::fault_injection;
use crate::join::join_all;
use crate::NodeError;

/// What a batch names, to find its partitions and read its records.
#[derive(Clone, Default)]
struct Names {
    accounts: Vec<u128>,
    transfers: Vec<u128>,
    /// Imported events' timestamps (to find the records that already hold them).
    timestamps: Vec<u64>,
    /// Partitions to lock besides the records' own (wire clients' sessions).
    partitions: Vec<u32>,
    /// The wire requests to check against their sessions, in batch order.
    sessions: Vec<(u32, RequestHeader)>,
}

/// A batch to run.
enum Batch {
    Accounts(Vec<Account>),
    Transfers(Vec<Transfer>),
    /// Expire these pending transfers if their time is up at `now`.
    Expire(Vec<Transfer>),
    /// A wire client's create request: its batches run in order, and its reply is cached in
    /// its session (in `partition`) by the same transaction, so a retry never applies it twice.
    Client {
        partition: u32,
        request: ClientRequest,
        batches: ClientBatches,
    },
}

/// The batches of a wire client's multi-batch create request.
pub enum ClientBatches {
    Accounts(Vec<Vec<Account>>),
    Transfers(Vec<Vec<Transfer>>),
}

impl Batch {
    /// At most how many bytes this batch adds to its transaction's decision.
    fn decision_bytes_max(&self) -> usize {
        let request = match self {
            Batch::Client { .. } => DECISION_BYTES_PER_REQUEST_MAX,
            _ => 0,
        };
        self.len() * DECISION_BYTES_PER_EVENT_MAX + request
    }

    fn len(&self) -> usize {
        match self {
            Batch::Accounts(accounts) => accounts.len(),
            Batch::Transfers(transfers) => transfers.len(),
            Batch::Expire(pending) => pending.len(),
            Batch::Client {
                batches: ClientBatches::Accounts(batches),
                ..
            } => batches.iter().map(Vec::len).sum(),
            Batch::Client {
                batches: ClientBatches::Transfers(batches),
                ..
            } => batches.iter().map(Vec::len).sum(),
        }
    }
}

enum Results {
    Accounts(Vec<CreateAccountResult>),
    Transfers(Vec<CreateTransferResult>),
    Expired(usize),
    Client(ClientReply),
}

type ResultsSender = tokio::sync::oneshot::Sender<Result<Results, NodeError>>;

/// A request waiting for the driver; expiries have nobody to answer.
struct Job {
    now: u64,
    batch: Batch,
    reply: Option<ResultsSender>,
}

/// What the driver takes from its queue: a write to run as (part of) a transaction, or a read
/// across partitions to run between two transactions.
enum Work {
    Write(Job),
    /// Runs to completion while no transaction holds a lock or waits to apply: it sees every
    /// transaction whole or not at all.
    Read(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
}

/// Most events one transaction carries: two full batches. Fixed costs per transaction (lock
/// round, a log write per partition) are shared by more events; its decision must still fit
/// one log entry (`GROUP_DECISION_BYTES_MAX`).
const GROUP_EVENTS_MAX: usize = 2 * kassa_wire::BATCH_EVENTS_MAX;
/// The most bytes one event adds to a decision: a created transfer (128), its status (1), its
/// accounts' balances for history (144), its change record (160), two accounts' new states
/// (256) and a pending transfer's status change in its three partitions (96); and, answering
/// a wire request, its result in the reply (16). An account adds less (128 + 160).
const DECISION_BYTES_PER_EVENT_MAX: usize = 128 + 1 + 144 + 160 + 256 + 96 + 16;
/// What a wire request adds besides its events: its header (256), the reply's length (8) and
/// the multi-batch trailer of its reply (64).
const DECISION_BYTES_PER_REQUEST_MAX: usize = 256 + 8 + 64;
/// The most bytes a group's decision may need: a log entry's payload, less room for framing
/// and per-partition headers.
const GROUP_DECISION_BYTES_MAX: usize = kassa_storage::ENTRY_PAYLOAD_SIZE_MAX - 1024 * 1024;

// A lone full request always fits.
const _: () = assert!(
    kassa_wire::BATCH_EVENTS_MAX * DECISION_BYTES_PER_EVENT_MAX + DECISION_BYTES_PER_REQUEST_MAX
        <= GROUP_DECISION_BYTES_MAX
);
/// Requests queued for the driver before callers wait.
const JOBS_QUEUED_MAX: usize = 4096;

/// How long a stop waits for the coordinator's runtime to drop its last tasks.
const RUNTIME_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs transactions on a runtime of their own.
pub struct Coordinator {
    handle: Transactions,
    runtime: tokio::runtime::Runtime,
    /// The driver task: it returns once the queue is closed and empty.
    driver: tokio::task::JoinHandle<()>,
}

/// Where requests queue for the coordinator; cloneable, for the HTTP API and the wire port.
#[derive(Clone)]
pub struct Transactions {
    jobs: async_channel::Sender<Work>,
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
        let driver = runtime.spawn(drive(cores, queue));
        let expiries = jobs.clone();
        runtime.spawn(async move {
            while let Ok(pending) = due.recv().await {
                let job = Job {
                    now: crate::cores::realtime_ns(),
                    batch: Batch::Expire(pending),
                    reply: None,
                };
                if expiries.send(Work::Write(job)).await.is_err() {
                    break;
                }
            }
        });
        let handle = Transactions { jobs };
        Ok(Coordinator {
            handle,
            runtime,
            driver,
        })
    }

    /// A handle to queue requests with.
    pub fn transactions(&self) -> Transactions {
        self.handle.clone()
    }

    /// Takes no more requests, lets the driver finish the transaction it runs and those
    /// queued (up to `wait`), and stops the runtime. `false` when `wait` passed first: a
    /// transaction may still hold partition locks, so the cores cannot drain their requests.
    pub fn shutdown(self, wait: std::time::Duration) -> bool {
        self.handle.jobs.close();
        let Coordinator {
            runtime, driver, ..
        } = self;
        let drained = runtime.block_on(async { tokio::time::timeout(wait, driver).await });
        // Tasks left (a background `Done`) are dropped at their next await, and with them
        // their handles on the cores: a restart redelivers what they did not log.
        runtime.shutdown_timeout(RUNTIME_STOP_WAIT);
        matches!(drained, Ok(Ok(())))
    }
}

impl Transactions {
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
            .send(Work::Write(job))
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Runs `read` (reads of several partitions) between two transactions: every transaction
    /// has then applied everywhere or not started, so the reads see whole transactions only.
    /// Transactions wait meanwhile; keep `read` to a few partition reads.
    pub async fn read_whole<R: Send + 'static>(
        &self,
        read: impl std::future::Future<Output = Result<R, NodeError>> + Send + 'static,
    ) -> Result<R, NodeError> {
        let (reply, receive) = tokio::sync::oneshot::channel();
        let work = Work::Read(Box::pin(async move {
            let _ = reply.send(read.await);
        }));
        self.jobs
            .send(work)
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Runs a wire client's create request whose session lives in `partition`; the reply is
    /// the session's, cached in the same transaction (or the cached one, for a retry).
    pub async fn client_request(
        &self,
        now: u64,
        partition: u32,
        request: ClientRequest,
        batches: ClientBatches,
    ) -> Result<ClientReply, NodeError> {
        let batch = Batch::Client {
            partition,
            request,
            batches,
        };
        match self.run(now, batch).await? {
            Results::Client(reply) => Ok(reply),
            _ => unreachable!("a client request answers a client reply"),
        }
    }
}

/// Takes every waiting job (up to `GROUP_EVENTS_MAX` events) as one transaction, until the
/// queue closes. A read waiting in the queue ends a group and runs after it, alone.
async fn drive(cores: Arc<Cores>, queue: async_channel::Receiver<Work>) {
    let mut carried: Option<Work> = None;
    loop {
        let next = match carried.take() {
            Some(work) => work,
            None => match queue.recv().await {
                Ok(work) => work,
                Err(_) => return,
            },
        };
        let first = match next {
            Work::Read(read) => {
                read.await;
                continue;
            }
            Work::Write(job) => job,
        };
        let (mut events, mut bytes) = (first.batch.len(), first.batch.decision_bytes_max());
        let mut group = vec![first];
        while let Ok(work) = queue.try_recv() {
            let job = match work {
                Work::Write(job) => job,
                read @ Work::Read(_) => {
                    carried = Some(read);
                    break;
                }
            };
            let job_bytes = job.batch.decision_bytes_max();
            let full = events + job.batch.len() > GROUP_EVENTS_MAX
                || bytes + job_bytes > GROUP_DECISION_BYTES_MAX;
            if full {
                carried = Some(Work::Write(job));
                break;
            }
            events += job.batch.len();
            bytes += job_bytes;
            group.push(job);
        }
        let mut answers = Answers::of(&mut group);
        let batches: Vec<(u64, &Batch)> = group.iter().map(|j| (j.now, &j.batch)).collect();
        if let Err(error) = execute(&cores, &batches, &mut answers).await {
            tracing::warn!(%error, "a transaction failed");
            answers.fail(&error);
        }
    }
}

/// Where a group's results go: each job's reply channel until it is answered (expiries have
/// none). A transaction answers once its decision is durable, before it finishes.
struct Answers(Vec<Option<ResultsSender>>);

impl Answers {
    fn of(group: &mut [Job]) -> Answers {
        Answers(group.iter_mut().map(|job| job.reply.take()).collect())
    }

    /// Sends each job its results.
    fn send(&mut self, results: Vec<Results>) {
        assert_eq!(results.len(), self.0.len());
        for (reply, results) in self.0.iter_mut().zip(results) {
            match (reply.take(), results) {
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

    /// Reports `error` to the jobs not answered yet (all of them, unless it came after the
    /// decision).
    fn fail(self, error: &NodeError) {
        let message = error.to_string();
        for reply in self.0.into_iter().flatten() {
            let _ = reply.send(Err(NodeError::Transaction(message.clone())));
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

/// Runs `batches` as one transaction and sends their results to `answers`.
async fn execute(
    cores: &Arc<Cores>,
    batches: &[(u64, &Batch)],
    answers: &mut Answers,
) -> Result<(), NodeError> {
    let mut names = Names::default();
    for (_, batch) in batches {
        names_of(batch, &mut names);
    }
    names.normalize();
    let mut locked = BTreeSet::new();
    let lock = next_lock_txn();
    let outcome = async {
        loop {
            // Locks are taken all at once: this driver is the only holder of several.
            let reads = lock_read_all(cores, lock, &names, &mut locked).await?;
            // A post or void reads its pending transfer's accounts too.
            let missing: Vec<u128> = pending_accounts(batches, &reads)
                .into_iter()
                .filter(|id| !names.accounts.contains(id))
                .collect();
            if missing.is_empty() {
                return run_locked(cores, batches, &mut locked, lock, reads, answers).await;
            }
            names.accounts.extend(missing);
            names.normalize();
        }
    }
    .await;
    match outcome {
        Ok(()) => unlock_all(cores, &mut locked, lock).await,
        Err(Undecided(error)) => {
            unlock_all(cores, &mut locked, lock).await?;
            Err(error)
        }
        // Its partitions stay locked, its clients may have their answers: only a restart can
        // finish it (`recover` redelivers the decision).
        Err(Decided(error)) => fail_stop(format!(
            "a cross-partition transaction was decided but could not be finished: {error}"
        )),
    }
}

/// Why a transaction failed: before its decision (nothing happened) or at or after it (its
/// outcome is the decision's, which only a restart can deliver).
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

/// Partitions grouped by the core that owns them.
fn by_core(cores: &Cores, partitions: impl IntoIterator<Item = u32>) -> BTreeMap<usize, Vec<u32>> {
    let mut grouped: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    for partition in partitions {
        grouped
            .entry(cores.core_of(partition))
            .or_default()
            .push(partition);
    }
    grouped
}

async fn unlock_all(cores: &Cores, locked: &mut BTreeSet<u32>, lock: u64) -> Result<(), NodeError> {
    let grouped = by_core(cores, std::mem::take(locked));
    let unlocks = grouped
        .into_iter()
        .map(|(core, partitions)| cores.unlock(core, lock, partitions));
    join_all(unlocks).await.into_iter().collect()
}

/// Locks the partitions `names` live in (keeping what `lock` holds already) and reads `names`
/// from each: one message per core. `locked` grows by what was locked, even when a core failed
/// to answer.
async fn lock_read_all(
    cores: &Cores,
    lock: u64,
    names: &Names,
    locked: &mut BTreeSet<u32>,
) -> Result<Reads, NodeError> {
    let read_names = Arc::new(ReadNames {
        timestamps: names.timestamps.clone(),
        sessions: names.sessions.clone(),
        ..ReadNames::new(&names.accounts, &names.transfers, cores.placement())
    });
    let mut wanted: BTreeSet<u32> = read_names.ids.keys().copied().collect();
    wanted.extend(&names.partitions);
    if wanted.is_empty() {
        // Every id the batches name is zero: they still need a ledger to refuse their events
        // (`id_must_not_be_zero`, ...) as one partition would. Partition 0 is as good as any.
        wanted.insert(0);
    }
    let grouped = by_core(cores, wanted);
    let requests = grouped.into_iter().map(|(core, partitions)| {
        let names = read_names.clone();
        async move {
            (
                partitions.clone(),
                cores.lock_read(core, lock, partitions, names).await,
            )
        }
    });
    let mut reads = Reads {
        records: BTreeMap::new(),
        sessions: names.sessions.iter().map(|_| None).collect(),
    };
    let mut failed = None;
    for (partitions, read) in join_all(requests).await {
        match read {
            Ok(read) => {
                locked.extend(partitions);
                for partition_read in read {
                    for (index, known) in partition_read.sessions {
                        reads.sessions[index] = Some(known);
                    }
                    let partition = partition_read.partition;
                    match partition_read.records {
                        Ok(records) => {
                            reads.records.insert(partition, records);
                        }
                        Err(error) => failed = Some(NodeError::ColdRead { partition, error }),
                    }
                }
            }
            Err(error) => failed = Some(error),
        }
    }
    match failed {
        Some(error) => Err(error),
        None => Ok(reads),
    }
}

/// What a transaction's partitions read: records by partition, and for each wire request (in
/// batch order) its session check, `Some(None)` when it is new.
struct Reads {
    records: BTreeMap<u32, ReadSet>,
    sessions: Vec<Option<Option<ClientReply>>>,
}

/// Runs the batches under their locks; answers once the decision is durable, then has every
/// other partition apply its share.
async fn run_locked(
    cores: &Arc<Cores>,
    batches: &[(u64, &Batch)],
    locked: &mut BTreeSet<u32>,
    lock: u64,
    reads: Reads,
    answers: &mut Answers,
) -> Result<(), Failure> {
    let decider = *locked.first().expect("a batch names a partition");
    if let [(now, batch)] = batches {
        if locked.len() == 1 {
            // Everything lives in one partition: its own log runs the batch.
            let results = run_local(cores, decider, lock, *now, batch).await?;
            answers.send(vec![results]);
            return Ok(());
        }
    }
    // What each partition holding a session needs to seal its replies.
    let clocks: BTreeMap<u32, (u64, u64)> = (reads.records.iter())
        .map(|(partition, read)| (*partition, (read.op_next, read.timestamp)))
        .collect();
    let mut sessions = reads.sessions.into_iter();
    let records: Vec<ReadSet> = reads.records.into_values().collect();
    let mut scratch = Scratch::new(cores.placement(), &records);
    let mut changed = false;
    let mut results = Vec::with_capacity(batches.len());
    let mut client_answers: Vec<(usize, u32, ClientAnswer)> = Vec::new();
    for (index, (now, batch)) in batches.iter().enumerate() {
        let now = *now;
        results.push(match batch {
            Batch::Client {
                partition,
                request,
                batches,
            } => {
                let header = *request.header();
                let known = sessions.next().expect("a session check per request");
                match known.expect("the session's partition was read") {
                    // A retry, a drop or an eviction: nothing runs.
                    Some(reply) => Results::Client(reply),
                    None => {
                        changed = true;
                        let body = run_client_batches(scratch.ledger(), now, batches);
                        let answer = ClientAnswer {
                            request: header,
                            body,
                        };
                        client_answers.push((index, *partition, answer));
                        // Replaced by the sealed reply once the decision is durable.
                        Results::Expired(0)
                    }
                }
            }
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
        answers.send(results);
        return Ok(());
    }
    let mut decision = scratch.decision(decider);
    let timestamp = decision
        .parts
        .iter()
        .map(|(_, e)| e.timestamp)
        .max()
        .unwrap_or(0);
    for (_, partition, answer) in &client_answers {
        let at = match decision.parts.binary_search_by_key(partition, |(p, _)| *p) {
            Ok(at) => at,
            Err(at) => {
                decision.parts.insert(at, (*partition, Effects::default()));
                at
            }
        };
        let part = &mut decision.parts[at].1;
        part.timestamp = part.timestamp.max(timestamp);
        part.client_answers.push(answer.clone());
    }
    // Under placement by ledger the new ids are claimed for the partitions that will store
    // them while every partition is still locked (no batch can claim them meanwhile); they
    // count as proposed until the transaction has applied everywhere.
    let claimed = claim_decided(cores, &decision).await?;
    // Partitions the transaction only read can go now: nothing of it will be visible there.
    let participants: BTreeSet<u32> = decision.parts.iter().map(|(p, _)| *p).collect();
    let readers: BTreeSet<u32> = locked.difference(&participants).copied().collect();
    if !readers.is_empty() {
        let mut readers = readers;
        if let Err(error) = unlock_all(cores, &mut readers, lock).await {
            cores.settle_claims(claimed).await;
            return Err(Undecided(error));
        }
        locked.retain(|partition| participants.contains(partition));
    }
    let decision = Arc::new(decision);
    let decide = Command::Decide {
        decision: decision.clone(),
    };
    // The other partitions' shares are computed while the decider logs the decision (the
    // write is sent when first polled, before the shares are).
    let (decided, others) = tokio::join!(cores.write_in(decider, Some(lock), decide), async {
        decision.shares_except(decider)
    });
    drop(decision);
    let decided = if fault_injection::injected("decide-write-fails") {
        // The decision is durable; its write reports a failure all the same.
        decided.and(Err(NodeError::Transaction(
            "KASSA_FAULT=decide-write-fails".into(),
        )))
    } else {
        decided
    };
    // A decision write that failed may still have reached the disk: its outcome is unknown,
    // so it is never reported as "not done".
    let (txn, decider_replies) = match decided.map_err(Decided)? {
        Reply::Decided {
            txn,
            client_replies,
        } => (txn, client_replies),
        other => unreachable!("Decide answered {other:?}"),
    };
    if fault_injection::injected("abort-after-decide") {
        eprintln!("kassa: KASSA_FAULT=abort-after-decide: aborting after a durable decision");
        std::process::abort();
    }
    // The decision is the commit point: a restart delivers it to every partition. The
    // clients can have their results now; the partitions stay locked until they applied it,
    // so nobody reads around the effects. The session partitions' replies are sealed here as
    // they will seal them (checked below).
    let sealed = seal_replies(decider, decider_replies, &client_answers, &others, &clocks);
    fill_client_replies(&client_answers, &sealed, &mut results);
    answers.send(results);
    if fault_injection::injected("abort-after-answer") {
        // Long enough for the answers to reach the clients.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        eprintln!("kassa: KASSA_FAULT=abort-after-answer: aborting before the applies");
        std::process::abort();
    }
    if others.is_empty() {
        cores.settle_claims(claimed).await;
        return Ok(());
    }
    if fault_injection::injected("apply-fails") {
        let error = NodeError::Transaction("KASSA_FAULT=apply-fails".into());
        return Err(Decided(error));
    }
    let mut by_core: BTreeMap<usize, Vec<(u32, Command)>> = BTreeMap::new();
    for (partition, effects) in others {
        let apply = Command::Apply {
            decider,
            txn,
            effects,
        };
        let core = cores.core_of(partition);
        by_core.entry(core).or_default().push((partition, apply));
    }
    let applies = by_core.into_iter().map(|(core, writes)| {
        let partitions: Vec<u32> = writes.iter().map(|(partition, _)| *partition).collect();
        let written = cores.write_many(core, lock, writes);
        async move { (partitions, written.await) }
    });
    for (partitions, applied) in join_all(applies).await {
        for (partition, written) in partitions.into_iter().zip(applied.map_err(Decided)?) {
            match written.map_err(Decided)? {
                Reply::Applied {
                    client_replies: Some(client_replies),
                } => check_sealed(partition, &client_replies, &sealed),
                other => unreachable!("a first Apply answered {other:?}"),
            }
        }
    }
    cores.settle_claims(claimed).await;
    // `Done` only spares a restart redelivering (idempotently) what every partition applied:
    // it need not be durable before the clients get their results or the locks go.
    let cores = cores.clone();
    tokio::spawn(async move {
        if let Err(error) = cores.write(decider, Command::Done { txn }).await {
            tracing::warn!(%error, decider, txn, "logging Done failed; a restart redelivers");
        }
    });
    Ok(())
}

/// Under placement by ledger, claims the ids a decision stores (accounts, created transfers,
/// failed ids) for the partitions that store them. Every partition is locked, so every id is
/// granted (a claim left by a batch that never ran is resolved by asking its partition); an
/// id owned elsewhere fails the transaction before its decision, and nothing happened.
async fn claim_decided(cores: &Cores, decision: &Decision) -> Result<Vec<ClaimedIds>, NodeError> {
    if cores.placement().kind != PlacementKind::ByLedger {
        return Ok(Vec::new());
    }
    let mut ids: BTreeMap<(u32, IdKind), BTreeSet<u128>> = BTreeMap::new();
    for (partition, effects) in &decision.parts {
        let accounts = effects.accounts.iter().map(|a| a.id.0);
        ids.entry((*partition, IdKind::Account))
            .or_default()
            .extend(accounts);
        let failed = effects.failed_ids.iter().copied();
        ids.entry((*partition, IdKind::Transfer))
            .or_default()
            .extend(failed);
    }
    for t in &decision.created.transfers {
        for partition in decision.placement.transfer_partitions(t) {
            let stored = ids.entry((partition, IdKind::Transfer)).or_default();
            stored.insert(t.id.0);
        }
    }
    let claims = (ids.into_iter())
        .map(|((partition, kind), ids)| (partition, kind, ids.into_iter().collect()))
        .collect();
    let answer = cores.claim_all_for_transaction(claims).await;
    let error = match (answer.failed, answer.refused.first()) {
        (None, None) => return Ok(answer.claimed),
        (Some(error), _) => error,
        (None, Some((partition, id, refusal))) => NodeError::Transaction(format!(
            "id {id} could not be claimed for partition {partition}: {refusal:?}"
        )),
    };
    cores.settle_claims(answer.claimed).await;
    Err(error)
}

/// The replies each session partition gives the transaction's client requests, in order:
/// the decider's as it gave them, the others' sealed from what they read under the locks
/// (`clocks`: the op their next answer takes and their clock) at their share's timestamp.
fn seal_replies(
    decider: u32,
    decider_replies: Vec<ClientReply>,
    client_answers: &[(usize, u32, ClientAnswer)],
    shares: &[(u32, Effects)],
    clocks: &BTreeMap<u32, (u64, u64)>,
) -> BTreeMap<u32, Vec<ClientReply>> {
    let mut sealed: BTreeMap<u32, Vec<ClientReply>> = BTreeMap::new();
    sealed.insert(decider, decider_replies);
    for (_, partition, answer) in client_answers {
        if *partition == decider {
            continue;
        }
        let at = shares.binary_search_by_key(partition, |(p, _)| *p);
        let now = shares[at.expect("a session partition has a share")]
            .1
            .timestamp;
        let (op_next, clock) = clocks[partition];
        let replies = sealed.entry(*partition).or_default();
        let op = op_next + replies.len() as u64;
        let header = kassa_shard::seal_reply(&answer.request, op, clock, now, &answer.body);
        replies.push(ClientReply::Reply {
            header: Box::new(header),
            body: answer.body.clone(),
        });
    }
    sealed
}

/// Checks that a session partition cached the replies the clients were given.
fn check_sealed(partition: u32, cached: &[ClientReply], sealed: &BTreeMap<u32, Vec<ClientReply>>) {
    let given = sealed.get(&partition).map_or(&[][..], Vec::as_slice);
    if cached != given {
        tracing::error!(
            partition,
            "a session partition cached other replies than its clients got"
        );
        debug_assert!(
            false,
            "partition {partition} cached {cached:?}, clients got {given:?}"
        );
    }
}

/// Sets each answered client request's result to its reply from `replies` (per session
/// partition, in the order the answers were added to its effects).
fn fill_client_replies(
    answers: &[(usize, u32, ClientAnswer)],
    replies: &BTreeMap<u32, Vec<ClientReply>>,
    results: &mut [Results],
) {
    let mut replies: BTreeMap<u32, std::slice::Iter<ClientReply>> = replies
        .iter()
        .map(|(partition, replies)| (*partition, replies.iter()))
        .collect();
    for (index, partition, _) in answers {
        let partition_replies = replies.get_mut(partition);
        let reply = partition_replies.and_then(Iterator::next);
        results[*index] = Results::Client(reply.expect("a reply per answer").clone());
    }
}

/// Runs a client's create batches in order on `ledger`; the multi-batch reply body.
fn run_client_batches(ledger: &mut Ledger, now: u64, batches: &ClientBatches) -> Vec<u8> {
    let (results, result_size): (Vec<Vec<u8>>, usize) = match batches {
        ClientBatches::Accounts(batches) => {
            let results = batches.iter().map(|accounts| {
                let mut results = Vec::with_capacity(accounts.len());
                ledger.create_accounts(now, accounts, &mut results);
                results.as_bytes().to_vec()
            });
            (results.collect(), size_of::<CreateAccountResult>())
        }
        ClientBatches::Transfers(batches) => {
            let results = batches.iter().map(|transfers| {
                let mut results = Vec::with_capacity(transfers.len());
                ledger.create_transfers(now, transfers, &mut results);
                results.as_bytes().to_vec()
            });
            (results.collect(), size_of::<CreateTransferResult>())
        }
    };
    let slices: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
    let body = kassa_wire::multi_batch::encode_to_vec(result_size, &slices);
    body.expect("a validated request's results fit one message")
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
        Batch::Client { request, .. } => Command::Request {
            now,
            request: request.clone(),
        },
    };
    Ok(
        match cores.write_in(partition, Some(lock), command).await? {
            Reply::Client(reply) => Results::Client(reply),
            Reply::CreateAccounts(results) => Results::Accounts(results),
            Reply::CreateTransfers(results) => Results::Transfers(results),
            Reply::ExpirePendingTransfers { expired } => Results::Expired(expired as usize),
            other => unreachable!("a batch answered {other:?}"),
        },
    )
}

/// Adds what `batch` names to `names`.
fn names_of(batch: &Batch, names: &mut Names) {
    match batch {
        Batch::Accounts(accounts) => account_names(accounts, names),
        Batch::Transfers(transfers) => transfer_names(transfers, names),
        Batch::Expire(pending) => {
            for t in pending {
                names
                    .accounts
                    .extend([t.debit_account_id.0, t.credit_account_id.0]);
                names.transfers.push(t.id.0);
            }
        }
        Batch::Client {
            partition,
            batches,
            request,
        } => {
            names.partitions.push(*partition);
            names.sessions.push((*partition, *request.header()));
            match batches {
                ClientBatches::Accounts(batches) => {
                    batches.iter().for_each(|b| account_names(b, names));
                }
                ClientBatches::Transfers(batches) => {
                    batches.iter().for_each(|b| transfer_names(b, names));
                }
            }
        }
    }
}

fn account_names(accounts: &[Account], names: &mut Names) {
    names.accounts.extend(accounts.iter().map(|a| a.id.0));
    names
        .timestamps
        .extend(accounts.iter().map(|a| a.timestamp));
}

fn transfer_names(transfers: &[Transfer], names: &mut Names) {
    for t in transfers {
        names
            .accounts
            .extend([t.debit_account_id.0, t.credit_account_id.0]);
        names.transfers.extend([t.id.0, t.pending_id.0]);
        names.timestamps.push(t.timestamp);
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
fn pending_accounts(batches: &[(u64, &Batch)], reads: &Reads) -> Vec<u128> {
    let mut pending_ids = BTreeSet::new();
    for (_, batch) in batches {
        let transfers: Vec<&Transfer> = match batch {
            Batch::Transfers(transfers) => transfers.iter().collect(),
            Batch::Client {
                batches: ClientBatches::Transfers(batches),
                ..
            } => batches.iter().flatten().collect(),
            _ => continue,
        };
        pending_ids.extend(
            transfers
                .iter()
                .map(|t| t.pending_id.0)
                .filter(|id| *id != 0),
        );
    }
    let read = reads.records.values().flat_map(|r| &r.transfers);
    read.filter(|(t, _)| pending_ids.contains(&t.id.0))
        .flat_map(|(t, _)| [t.debit_account_id.0, t.credit_account_id.0])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_shard::LedgerConfig;
    use kassa_wire::{AccountFlags, AccountId, CreateTransferStatus, TransferFlags, TransferId};

    /// The worst a full batch can do to a decision: every event posts a pending transfer
    /// between two accounts of its own that keep history. Its decision must stay within the
    /// bound the driver groups by.
    #[test]
    fn a_decision_stays_within_its_bound() {
        let events = kassa_wire::BATCH_EVENTS_MAX;
        let mut ledger = Ledger::new(LedgerConfig::default());
        let account = |id: u128| Account {
            id: AccountId(id),
            ledger: 1,
            code: 1,
            flags: AccountFlags::HISTORY,
            ..Account::default()
        };
        let ids: Vec<u128> = (1..=2 * events as u128).collect();
        for chunk in ids.chunks(events) {
            let accounts: Vec<Account> = chunk.iter().map(|id| account(*id)).collect();
            let mut results = Vec::new();
            ledger.create_accounts(1, &accounts, &mut results);
        }
        let transfer = |id: u128, i: u128, flags, pending_id| Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(2 * i + 1),
            credit_account_id: AccountId(2 * i + 2),
            amount: 10,
            pending_id: TransferId(pending_id),
            ledger: 1,
            code: 1,
            flags,
            ..Transfer::default()
        };
        let pending: Vec<Transfer> = (0..events as u128)
            .map(|i| transfer(1_000_000 + i, i, TransferFlags::PENDING, 0))
            .collect();
        let mut results = Vec::new();
        ledger.create_transfers(2, &pending, &mut results);
        assert!(results
            .iter()
            .all(|r| r.status == CreateTransferStatus::Created));
        let posts: Vec<Transfer> = (0..events as u128)
            .map(|i| {
                let flags = TransferFlags::POST_PENDING_TRANSFER;
                transfer(2_000_000 + i, i, flags, 1_000_000 + i)
            })
            .collect();
        let transfer_ids: Vec<u128> = pending.iter().chain(&posts).map(|t| t.id.0).collect();
        let read = ledger
            .read_set(&ids, &transfer_ids, &[])
            .expect("in memory");
        let mut scratch = Scratch::new(
            kassa_shard::Placement::new(kassa_shard::PlacementKind::ById, 16),
            &[read],
        );
        let mut results = Vec::new();
        scratch.ledger().create_transfers(3, &posts, &mut results);
        assert!(results
            .iter()
            .all(|r| r.status == CreateTransferStatus::Created));
        let decide = Command::Decide {
            decision: Arc::new(scratch.decision(0)),
        };
        let size = decide.encoded_len();
        let bound = Batch::Transfers(posts).decision_bytes_max();
        assert!(size <= bound, "{size} bytes, bound {bound}");
        // The bound is not loose by much: it must not cost grouping.
        assert!(size * 10 >= bound * 7, "{size} bytes, bound {bound}");
    }
}
