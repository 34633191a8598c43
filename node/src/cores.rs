//! The core threads: one monoio runtime per core, pinned to its CPU, each owning a fixed set of
//! partitions (partition `p` lives on core `p mod cores`) with their logs and ledgers.
//!
//! Nothing on the request path is shared between threads: other threads reach a partition only
//! by sending a [`CoreRequest`] over its core's bounded queue; the reply comes back on a
//! oneshot channel. Each request runs as its own task on the core, so writes that arrive
//! together are group-committed by the partition log. A core also expires pending transfers:
//! every `PULSE_INTERVAL` it asks each of its partitions whether a pulse is due and, if so,
//! writes one through the log.
//!
//! The wire port's connections are handed to a core as a `CoreRequest::Run` closure that spawns
//! their task there; they reach partitions through [`CoreQueues`], the same queues.
//!
//! A partition held by a transaction's intent (`kassa_shard::intents`) serves no write or read
//! of records until the intent resolves: requests wait at admission, and a write its log
//! refused because an intent came first (`Reply::Held`) is proposed again once it resolves.
//!
//! Shutdown: closing the queues lets each core finish the requests it has taken, then shut its
//! partitions down (flushing their logs) and exit.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kassa_raft::{
    ClientRead, MemoryBudget, Partition, PartitionConfig, PartitionMetrics, PartitionStatus,
};
use kassa_shard::{
    partition_of, ClientReply, Command, Ledger, LedgerConfig, Placement, PlacementKind, ReadSet,
    Reply,
};
use kassa_wire::RequestHeader;
use kassa_wire::Transfer;

pub use crate::clock::realtime_ns;
use crate::fail_stop::fail_stop;
use crate::id_directory::on_core::{
    self, monotonic_ms, ClaimOutcome, CoreDirectory, DirectoryHost,
};
use crate::id_directory::Transport;
use crate::id_directory::{DirectoryMessage, Proposer};
use crate::join::join_all;
use crate::rare_path::on_core::{
    self as rare, BatchReply, IntentOrder, RareHost, RareMessage, RareState, RareTransport, Turn,
};
use crate::NodeError;
use kassa_shard::batch_home::{CreateBatch, WireRequest};
use kassa_shard::directory::{ClaimAnswer, IdKind, CLAIM_IDS_MAX};
use kassa_shard::intents::RareEntry;
use kassa_shard::LocalRun;
use kassa_wire::{Account, Operation};

/// Requests a core's queue holds before senders wait: back-pressure, not unbounded memory.
pub const CORE_QUEUE_MAX: usize = 4096;
/// Requests a core works on at once. Past this it stops taking requests from its queue, so the
/// queue fills and senders wait: memory stays bounded under overload.
pub const CORE_IN_FLIGHT_MAX: usize = 1024;
/// Operators' requests (`/metrics`, `/ready`, status) a core's own queue holds before
/// senders wait. They have a queue of their own, answered ahead of the requests' queue and
/// never counted in flight: a core whose requests wait (for memory, for the disk) still
/// shows what it is doing.
pub const CORE_CONTROL_QUEUE_MAX: usize = 256;
/// How often a core at `CORE_IN_FLIGHT_MAX` looks again for a free slot.
const IN_FLIGHT_POLL: Duration = Duration::from_micros(200);
/// How often a request waiting for a partition's intent to resolve looks again, besides being
/// woken when a participant's entry is written here: the poll covers an intent resolved by
/// entries this node did not propose (a log it now leads).
const HELD_POLL: Duration = Duration::from_millis(20);
/// How often a core checks whether pending transfers are due to expire.
pub const PULSE_INTERVAL: Duration = Duration::from_millis(100);

type ReadFn = Box<dyn FnOnce(&Ledger) + Send>;
type StatusSender = tokio::sync::oneshot::Sender<PartitionStatus>;

/// `read` boxed to run on a partition's core, and where its answer comes back.
fn boxed_read<R: Send + 'static>(
    read: impl FnOnce(&Ledger) -> R + Send + 'static,
) -> (ReadFn, tokio::sync::oneshot::Receiver<R>) {
    let (reply, receive) = tokio::sync::oneshot::channel();
    let read: ReadFn = Box::new(move |ledger| {
        let _ = reply.send(read(ledger));
    });
    (read, receive)
}

/// An operator's request of a partition, answered from memory at once through the core's
/// control queue (`CORE_CONTROL_QUEUE_MAX`), ahead of its requests.
pub(crate) enum ControlRequest {
    /// The partition's Raft status.
    Status { partition: u32, reply: StatusSender },
    /// What the partition holds and did, for `/metrics`.
    Metrics {
        partition: u32,
        reply: tokio::sync::oneshot::Sender<PartitionMetrics>,
    },
    /// A read of the ledger's memory as it is now, not admitted through the partition's
    /// lock (a transaction may hold it): counts for `/ready`.
    Inspect { partition: u32, read: ReadFn },
    /// Which of `ids` a lease the partition holds now covers (`PartitionDirectory::lease_covers`).
    LeasesCover {
        partition: u32,
        kind: IdKind,
        ids: Vec<u128>,
        reply: tokio::sync::oneshot::Sender<Vec<bool>>,
    },
}

/// What a read reads from the cold runs, read ahead of it.
pub enum ReadAhead {
    /// A read by filter (`Partition::prefetch_read`).
    Filter(ClientRead),
    /// The ids a create command's check looks up, and their pending transfers'
    /// (`Partition::prefetch_ids`).
    Ids(Command),
}

/// Work for one partition, sent to the core that owns it. `txn` names the cross-partition
/// transaction a request belongs to: while a transaction holds a partition's lock, requests
/// of other transactions (and those of none) wait, so nobody sees its effects half-applied.
pub enum CoreRequest {
    Write {
        partition: u32,
        txn: Option<u64>,
        command: Command,
        reply: ReplySender,
    },
    Read {
        partition: u32,
        txn: Option<u64>,
        /// What the read reads from the cold runs, read ahead of it so that it does not block
        /// the core.
        prefetch: Option<ReadAhead>,
        read: ReadFn,
    },
    /// Lock these partitions of this core for `txn` (ascending; a partition `txn` holds
    /// already is kept), then read from each what a batch naming `names` can read.
    LockRead {
        txn: u64,
        partitions: Vec<u32>,
        names: Arc<ReadNames>,
        reply: tokio::sync::oneshot::Sender<Vec<PartitionRead>>,
    },
    /// Write these commands as transaction `txn`, each through its partition's log, all at
    /// once; the replies in the same order.
    WriteMany {
        txn: u64,
        writes: Vec<(u32, Command)>,
        reply: tokio::sync::oneshot::Sender<Vec<Result<Reply, NodeError>>>,
    },
    /// Release the locks `txn` holds on these partitions.
    Unlock { txn: u64, partitions: Vec<u32> },
    /// Run a task on the core's thread: it may spawn monoio tasks there (the wire port's
    /// connections).
    Run(RunFn),
    /// A message of the id directory for `partition` (sent through [`Transport`]).
    Directory {
        partition: u32,
        message: DirectoryMessage,
    },
    /// Claim `ids` of `kind` for a cross-partition transaction that will store them in
    /// `partition`: the homes' answers, once all came. The ids stay proposed across terms
    /// until settled (`Proposer::Transaction`).
    ClaimForTransaction {
        partition: u32,
        kind: IdKind,
        ids: Vec<u128>,
        reply: tokio::sync::oneshot::Sender<Result<ClaimOutcome, NodeError>>,
    },
    /// Write `command` (a create batch, or a wire client's create request) in `partition`
    /// alone if it can run there (placement by ledger): claims its new ids, writes it, and
    /// answers [`LocalWrite::NotLocal`] with the command when it needs the global path.
    WriteLocal {
        partition: u32,
        command: Command,
        reply: tokio::sync::oneshot::Sender<Result<LocalWrite, NodeError>>,
    },
    /// A message of the rare path for `partition` (sent through `RareTransport::send_rare`).
    Rare {
        partition: u32,
        message: Box<RareMessage>,
    },
    /// Run `batch` in shares with `home` as its record home, each event in the partition
    /// `partitions` names for it (`rare_path`); the answer once a round committed. A wire
    /// request's batch comes with the request, whose reply its home keeps.
    RunInShares {
        home: u32,
        now: u64,
        batch: CreateBatch,
        partitions: Vec<u32>,
        request: Option<WireRequest>,
        reply: BatchReply,
    },
    /// The batch or transaction `proposer` that claimed `ids` of `kind` for `partition` was
    /// applied or given up.
    ClaimsSettled {
        partition: u32,
        proposer: Proposer,
        kind: IdKind,
        ids: Vec<u128>,
    },
}

/// Ids of one kind claimed for one partition by a transaction, and the proposer that claimed
/// them (to settle them).
pub type ClaimedIds = (u32, Proposer, IdKind, Vec<u128>);

/// What [`CoreQueues::claim_all_for_transaction`] did.
#[derive(Default)]
pub struct TransactionClaims {
    /// Every claim made, granted or not.
    pub claimed: Vec<ClaimedIds>,
    /// Every id not granted: `(partition, id, answer)`.
    pub refused: Vec<(u32, u128, ClaimAnswer)>,
    /// A claim that failed (its homes did not answer, or the node stops).
    pub failed: Option<NodeError>,
}

/// What [`CoreQueues::write_local`] did.
#[derive(Debug)]
pub enum LocalWrite {
    /// The batch ran in the partition; the ledger's reply.
    Written(Reply),
    /// The batch needs records of other partitions, or an id another partition owns: its
    /// command, untouched, for the global path.
    NotLocal(Command),
}

/// What a transaction asks its partitions to read (`Ledger::read_set`'s arguments).
#[derive(Clone, Debug, Default)]
pub struct ReadNames {
    /// Account and transfer ids, each under the partition that owns it (hashed once here
    /// rather than by every partition).
    pub ids: BTreeMap<u32, PartitionIds>,
    pub timestamps: Vec<u64>,
    /// Wire requests to check against their sessions, with their session's partition.
    pub sessions: Vec<(u32, RequestHeader)>,
}

/// The ids one partition owns among those a transaction names, ascending.
#[derive(Clone, Debug, Default)]
pub struct PartitionIds {
    pub accounts: Vec<u128>,
    pub transfers: Vec<u128>,
}

impl ReadNames {
    /// `accounts` and `transfers` (ascending) grouped by owning partition. Under placement by
    /// ledger an id says nothing of its partition: every partition is asked for every id.
    pub fn new(accounts: &[u128], transfers: &[u128], placement: Placement) -> ReadNames {
        let partitions = placement.partitions;
        if placement.kind == PlacementKind::ByLedger {
            let every = PartitionIds {
                accounts: accounts.to_vec(),
                transfers: transfers.to_vec(),
            };
            let ids = (0..partitions).map(|p| (p, every.clone())).collect();
            return ReadNames {
                ids,
                ..ReadNames::default()
            };
        }
        let mut ids: BTreeMap<u32, PartitionIds> = BTreeMap::new();
        for id in accounts {
            let owner = ids.entry(partition_of(*id, partitions)).or_default();
            owner.accounts.push(*id);
        }
        for id in transfers {
            let owner = ids.entry(partition_of(*id, partitions)).or_default();
            owner.transfers.push(*id);
        }
        ReadNames {
            ids,
            ..ReadNames::default()
        }
    }
}

/// What one partition read for a transaction: its records, and the session checks of the
/// requests whose sessions it holds (by index in `ReadNames::sessions`; `None`: new).
pub struct PartitionRead {
    pub partition: u32,
    /// What the transaction reads here; older transfers come from the cold store, whose
    /// failure fails the transaction (its reads are not replicated, its decision is).
    pub records: Result<ReadSet, kassa_shard::ColdError>,
    pub sessions: Vec<(usize, Option<ClientReply>)>,
}

/// A partition's transaction lock, on its core.
///
/// A holder must see every write admitted before it took the lock: such a write may still be
/// on its way through the log (a wire client's `register`, a read's `Answer`), and a holder
/// that read the partition before it applied would decide on stale state (it would seal a
/// client's reply with a session op the write then takes). So taking the lock first stops
/// admitting others, then waits until the writes already admitted have finished.
#[derive(Default)]
struct PartitionLock {
    holder: Cell<Option<u64>>,
    released: tokio::sync::Notify,
    /// Writes admitted and not finished.
    writing: Cell<usize>,
    drained: tokio::sync::Notify,
}

impl PartitionLock {
    /// Waits until `txn` may use the partition: the lock is free or held by `txn`.
    async fn admit(&self, txn: Option<u64>) {
        loop {
            let released = self.released.notified();
            match self.holder.get() {
                None => return,
                Some(holder) if Some(holder) == txn => return,
                Some(_) => released.await,
            }
        }
    }

    /// Takes the lock for `txn` once it is free and the writes admitted before have finished.
    async fn lock(&self, txn: u64) {
        self.admit(None).await;
        self.holder.set(Some(txn));
        loop {
            let drained = self.drained.notified();
            if self.writing.get() == 0 {
                return;
            }
            drained.await;
        }
    }

    fn unlock(&self, txn: u64) {
        assert_eq!(self.holder.get(), Some(txn), "unlock by a non-holder");
        self.holder.set(None);
        self.released.notify_waiters();
    }

    /// Counts an admitted write until the guard is dropped.
    fn writing(&self) -> Writing<'_> {
        self.writing.set(self.writing.get() + 1);
        Writing(self)
    }
}

/// Whether `command` changes what a transaction reads from a partition (accounts, transfers,
/// sessions, the clock), so that a new lock holder must wait for it. A `Done` only marks a
/// decision delivered, and a coordinator logs it in the background right after a transaction:
/// waiting for it would put a log write on the next transaction's path. The id directory's
/// entries change no record either.
fn read_by_transactions(command: &Command) -> bool {
    !matches!(
        command,
        Command::Done { .. }
            | Command::ReleaseChangeEvents { .. }
            | Command::ClaimEpoch
            | Command::Directory { .. }
    )
}

/// An admitted write in progress (`PartitionLock::writing`).
struct Writing<'a>(&'a PartitionLock);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let lock = self.0;
        lock.writing.set(lock.writing.get() - 1);
        if lock.writing.get() == 0 {
            lock.drained.notify_waiters();
        }
    }
}

/// A core's partition: the Raft group, its transaction lock and its part of the id
/// directory (in the leader's memory; what it decides is in the log).
pub(crate) struct Served {
    /// The partition's number in the cluster.
    pub(crate) number: u32,
    pub(crate) partition: Partition,
    lock: PartitionLock,
    pub(crate) directory: CoreDirectory,
    /// Wakes the requests waiting for an intent to resolve (`unheld`) whenever a
    /// participant's rare-path entry is written here.
    resolved: tokio::sync::Notify,
    /// Its record home's leader and its participant's timers on the rare path.
    pub(crate) rare: RareState,
}

impl DirectoryHost for Served {
    fn number(&self) -> u32 {
        self.number
    }

    fn partition(&self) -> &Partition {
        &self.partition
    }

    fn directory(&self) -> &CoreDirectory {
        &self.directory
    }

    async fn write(&self, command: Command) -> Result<Reply, NodeError> {
        Served::write(self, self.number, command).await
    }
}

impl RareHost for Served {
    fn number(&self) -> u32 {
        self.number
    }

    fn partition(&self) -> &Partition {
        &self.partition
    }

    fn rare(&self) -> &RareState {
        &self.rare
    }

    async fn write_in(&self, command: Command, term: Option<u64>) -> Result<Reply, NodeError> {
        Served::write_in(self, self.number, command, term).await
    }
}

impl Served {
    /// Writes `command` through the partition's log. A write that failed because the log can
    /// no longer be written stops the process: what reached the disk is unknown, so nobody
    /// may be told the write did not happen (`fail_stop`).
    pub(crate) async fn write(&self, partition: u32, command: Command) -> Result<Reply, NodeError> {
        self.write_in(partition, command, None).await
    }

    /// Writes `command` through the partition's log in leader term `term`, or not at all
    /// (`Partition::write_in_term`); `None` takes whatever term leads.
    pub(crate) async fn write_in(
        &self,
        partition: u32,
        command: Command,
        term: Option<u64>,
    ) -> Result<Reply, NodeError> {
        let writing = read_by_transactions(&command).then(|| self.lock.writing());
        let participant = matches!(
            &command,
            Command::Rare(entry) if matches!(**entry, RareEntry::Participant(_))
        );
        let written = match term {
            None => self.partition.write(command).await,
            Some(term) => self.partition.write_in_term(command, term).await,
        };
        drop(writing);
        if participant {
            self.resolved.notify_waiters();
        }
        if written.is_err() {
            self.stop_if_failed(partition);
        }
        written.map_err(NodeError::from)
    }

    /// Admits a request as `txn` through the lock, then waits until no intent holds the
    /// partition.
    async fn admit_unheld(&self, txn: Option<u64>, in_flight: &Cell<usize>) {
        admit(&self.lock, txn, in_flight).await;
        self.unheld(in_flight).await;
    }

    /// Waits until no transaction's intent holds the partition (not counted in flight
    /// meanwhile: the resolution may come through this core's queue).
    async fn unheld(&self, in_flight: &Cell<usize>) {
        if self.partition.read(Ledger::holder).is_none() {
            return;
        }
        in_flight.set(in_flight.get() - 1);
        loop {
            let resolved = self.resolved.notified();
            if self.partition.read(Ledger::holder).is_none() {
                break;
            }
            tokio::select! {
                _ = resolved => {}
                _ = monoio::time::sleep(HELD_POLL) => {}
            }
        }
        in_flight.set(in_flight.get() + 1);
    }

    /// Waits for the turn of the intent at `place` (of age `order`, here since
    /// `arrived_ms`): `Propose` once no intent holds the partition and it is first; `Wait`
    /// once an older transaction has kept it out for `DIE_AFTER` (it gives way); `None` once
    /// it waited `BUSY_WAIT` (the home sends it again).
    async fn turn_of(
        &self,
        place: u64,
        order: IntentOrder,
        arrived_ms: u64,
        in_flight: &Cell<usize>,
    ) -> Option<Turn> {
        let die_ms = arrived_ms + rare::DIE_AFTER.as_millis() as u64;
        let deadline_ms = arrived_ms + rare::BUSY_WAIT.as_millis() as u64;
        let turn = || {
            let holder = self.partition.read(Ledger::holder);
            self.rare.busy.turn(place, order, holder)
        };
        if turn() == Turn::Propose {
            return Some(Turn::Propose);
        }
        in_flight.set(in_flight.get() - 1);
        let turn = loop {
            let resolved = self.resolved.notified();
            let now_ms = monotonic_ms();
            match turn() {
                Turn::Propose => break Some(Turn::Propose),
                wait @ Turn::Wait { behind_older: true } if now_ms >= die_ms => break Some(wait),
                Turn::Wait { .. } if now_ms >= deadline_ms => break None,
                _ => {}
            }
            let next_ms = if now_ms < die_ms { die_ms } else { deadline_ms };
            let left = Duration::from_millis(next_ms.saturating_sub(now_ms).max(1));
            tokio::select! {
                _ = resolved => {}
                _ = monoio::time::sleep(HELD_POLL.min(left)) => {}
            }
        };
        in_flight.set(in_flight.get() + 1);
        turn
    }

    /// Writes `command` once no intent holds the partition: admitted through the lock as
    /// `txn`, and proposed again if an intent reached the log first (`Reply::Held`).
    async fn write_unheld(
        &self,
        partition: u32,
        txn: Option<u64>,
        mut command: Command,
        in_flight: &Cell<usize>,
    ) -> Result<Reply, NodeError> {
        loop {
            self.admit_unheld(txn, in_flight).await;
            match self.write(partition, command).await {
                Ok(Reply::Held {
                    command: refused, ..
                }) => command = *refused,
                written => return written,
            }
        }
    }

    /// Stops the process if the partition's Raft core has stopped on a fault.
    fn stop_if_failed(&self, partition: u32) {
        if let Some(failure) = self.partition.failure() {
            fail_stop(format!(
                "partition {partition} cannot write its log: {failure}"
            ));
        }
    }
}

/// Transaction numbers for locks (node-local; a lock never outlives the process).
static NEXT_LOCK_TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fresh lock holder id.
pub fn next_lock_txn() -> u64 {
    NEXT_LOCK_TXN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

type RunFn = Box<dyn FnOnce() + Send>;

type ReplySender = tokio::sync::oneshot::Sender<Result<Reply, NodeError>>;

/// What a core needs to open its partitions.
#[derive(Clone)]
pub struct CoreSetup {
    pub data_dir: std::path::PathBuf,
    pub partitions: u32,
    /// How the cluster places records (fixed at format time).
    pub placement: PlacementKind,
    pub cores: usize,
    pub snapshot_entries: u64,
    /// Blocks (4 KiB) of cold runs each partition caches.
    pub cache_blocks: usize,
    /// The bound on the partitions' memtables, shared by all of them (`--memory`).
    pub memory: Arc<MemoryBudget>,
    pub hash_seed: u64,
    /// Set once the node has finished recovering transactions: pulses wait for it.
    pub pulses: Arc<AtomicBool>,
    /// Where a core sends cross-partition pending transfers that are due to expire.
    pub cross_expiries: async_channel::Sender<Vec<Transfer>>,
}

/// The running cores.
pub struct Cores {
    queues: CoreQueues,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The node's memory budget: a stop lets the writes waiting for it go on.
    memory: Arc<MemoryBudget>,
}

impl Cores {
    /// Starts the core threads and returns once every partition is open, or with the first
    /// partition that failed to open.
    pub fn start(setup: CoreSetup) -> Result<Cores, NodeError> {
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let memory = setup.memory.clone();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..setup.cores)
            .map(|_| async_channel::bounded(CORE_QUEUE_MAX))
            .unzip();
        let (controls, control_receivers): (Vec<_>, Vec<_>) = (0..setup.cores)
            .map(|_| async_channel::bounded(CORE_CONTROL_QUEUE_MAX))
            .unzip();
        let queues = CoreQueues {
            senders,
            controls,
            partitions: setup.partitions,
            placement: Placement::new(setup.placement, setup.partitions),
        };
        let mut threads = Vec::new();
        let receivers = receivers.into_iter().zip(control_receivers);
        for (core, receiver) in receivers.enumerate() {
            let (setup, ready_sender) = (setup.clone(), ready_sender.clone());
            // The core's transport to every partition's leader, its own included.
            let transport = queues.clone();
            let thread = std::thread::Builder::new()
                .name(format!("kassa-core-{core}"))
                .spawn(move || core_main(core, setup, receiver, transport, ready_sender));
            match thread {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    Cores {
                        queues,
                        threads,
                        memory,
                    }
                    .shutdown();
                    return Err(NodeError::Start(format!("spawning core {core}: {error}")));
                }
            }
        }
        drop(ready_sender);
        let cores = Cores {
            queues,
            threads,
            memory,
        };
        for _ in 0..setup.cores {
            match ready.recv() {
                Ok(Ok(())) => {}
                Ok(Err(message)) => {
                    cores.shutdown();
                    return Err(NodeError::Start(message));
                }
                Err(_) => {
                    cores.shutdown();
                    return Err(NodeError::Start("a core thread died while starting".into()));
                }
            }
        }
        Ok(cores)
    }

    /// Stops taking requests, lets every core finish what it took, and joins the threads.
    /// Writes waiting for memory go on at once: the stop waits for what was taken, not for
    /// checkpoints.
    pub fn shutdown(self) {
        self.memory.stop_waiting();
        // Operators' queues first: a core leaves its loop once its requests' queue is closed
        // and empty, and what would be left in its control queue would wait forever.
        for control in &self.queues.controls {
            control.close();
        }
        for sender in &self.queues.senders {
            sender.close();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// The cores' queues: every way to reach a partition (writes, reads, status, transaction
/// locks). Cloneable for tasks not owned by the caller of [`Cores`] (the wire port's
/// connections, on the core threads): the same bounded queues, so they share the
/// back-pressure and the group commits of every other request.
#[derive(Clone)]
pub struct CoreQueues {
    senders: Vec<async_channel::Sender<CoreRequest>>,
    /// Each core's queue of operators' requests.
    controls: Vec<async_channel::Sender<ControlRequest>>,
    partitions: u32,
    placement: Placement,
}

impl Cores {
    /// A cloneable handle on the queues.
    pub fn queues(&self) -> CoreQueues {
        self.queues.clone()
    }
}

/// The cores are reached through their queues: `Cores` adds only the threads' lifetime.
impl std::ops::Deref for Cores {
    type Target = CoreQueues;

    fn deref(&self) -> &CoreQueues {
        &self.queues
    }
}

impl CoreQueues {
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// How the cluster places records.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    pub(crate) fn sender(&self, partition: u32) -> &async_channel::Sender<CoreRequest> {
        assert!(partition < self.partitions);
        &self.senders[partition as usize % self.senders.len()]
    }

    fn control(&self, partition: u32) -> &async_channel::Sender<ControlRequest> {
        assert!(partition < self.partitions);
        &self.controls[self.core_of(partition)]
    }

    /// Writes `command` through `partition`'s log and returns the ledger's reply.
    pub async fn write(&self, partition: u32, command: Command) -> Result<Reply, NodeError> {
        self.write_in(partition, None, command).await
    }

    /// Writes `command` as part of transaction `txn` (which may hold the partition's lock).
    pub async fn write_in(
        &self,
        partition: u32,
        txn: Option<u64>,
        command: Command,
    ) -> Result<Reply, NodeError> {
        self.ask(partition, |reply| CoreRequest::Write {
            partition,
            txn,
            command,
            reply,
        })
        .await
    }

    /// Sends `partition`'s core the request `make` builds around a reply channel, and waits
    /// for the reply.
    async fn ask<T>(
        &self,
        partition: u32,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, NodeError>>) -> CoreRequest,
    ) -> Result<T, NodeError> {
        let (reply, receive) = tokio::sync::oneshot::channel();
        let sent = self.sender(partition).send(make(reply)).await;
        sent.map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// Writes `command` in `partition` alone if it can run there exactly (placement by
    /// ledger; see [`kassa_shard::LocalRun`]): its new ids are claimed at their homes first.
    /// Otherwise the command comes back, for the global path.
    pub async fn write_local(
        &self,
        partition: u32,
        command: Command,
    ) -> Result<LocalWrite, NodeError> {
        self.ask(partition, |reply| CoreRequest::WriteLocal {
            partition,
            command,
            reply,
        })
        .await
    }

    /// Runs `read` on `partition`'s applied ledger, on its core, and returns what it returns.
    pub async fn read<R: Send + 'static>(
        &self,
        partition: u32,
        read: impl FnOnce(&Ledger) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        self.read_in(partition, None, read).await
    }

    /// Reads by filter (`filtered`, which `read` runs): what it reads from the cold runs is
    /// read ahead on the partition's core through io_uring first, so the read blocks no core
    /// on the disk.
    pub async fn read_prefetched<R: Send + 'static>(
        &self,
        partition: u32,
        filtered: ClientRead,
        read: impl FnOnce(&Ledger) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let prefetch = Some(ReadAhead::Filter(filtered));
        self.send_read(partition, None, prefetch, read).await
    }

    /// Runs `read`, a check of `command`'s ids, on `partition`'s core once the ids it looks up
    /// in the cold runs are read ahead through io_uring: the check blocks no core on the disk.
    pub async fn read_checking_ids<R: Send + 'static>(
        &self,
        partition: u32,
        command: Command,
        read: impl FnOnce(&Ledger) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let prefetch = Some(ReadAhead::Ids(command));
        self.send_read(partition, None, prefetch, read).await
    }

    /// Reads as part of transaction `txn` (which may hold the partition's lock).
    pub async fn read_in<R: Send + 'static>(
        &self,
        partition: u32,
        txn: Option<u64>,
        read: impl FnOnce(&Ledger) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        self.send_read(partition, txn, None, read).await
    }

    async fn send_read<R: Send + 'static>(
        &self,
        partition: u32,
        txn: Option<u64>,
        prefetch: Option<ReadAhead>,
        read: impl FnOnce(&Ledger) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let (read, receive) = boxed_read(read);
        let request = CoreRequest::Read {
            partition,
            txn,
            prefetch,
            read,
        };
        self.sender(partition)
            .send(request)
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// The Raft status of `partition`: leadership, log and apply progress, fatal errors.
    pub async fn status(&self, partition: u32) -> Result<PartitionStatus, NodeError> {
        let (reply, receive) = tokio::sync::oneshot::channel();
        let request = ControlRequest::Status { partition, reply };
        let sent = self.control(partition).send(request).await;
        sent.map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// What `partition` holds and did: its status, memtable, runs and cache.
    pub async fn metrics(&self, partition: u32) -> Result<PartitionMetrics, NodeError> {
        let (reply, receive) = tokio::sync::oneshot::channel();
        let request = ControlRequest::Metrics { partition, reply };
        let sent = self.control(partition).send(request).await;
        sent.map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Reads `partition`'s ledger from memory through the control queue: answered ahead of
    /// the partition's requests and without waiting for its lock, so it may see a
    /// transaction's intents in place. For operators' counts (`/ready`), never for clients.
    pub async fn inspect<R: Send + 'static>(
        &self,
        partition: u32,
        read: impl FnOnce(&Ledger) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let (read, receive) = boxed_read(read);
        let request = ControlRequest::Inspect { partition, read };
        let sent = self.control(partition).send(request).await;
        sent.map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Which of `ids` a lease `partition` holds now covers: that partition stores them
    /// without claims, and another partition's claim of one would end the lease.
    pub async fn leases_cover(
        &self,
        partition: u32,
        kind: IdKind,
        ids: Vec<u128>,
    ) -> Result<Vec<bool>, NodeError> {
        let (reply, receive) = tokio::sync::oneshot::channel();
        let request = ControlRequest::LeasesCover {
            partition,
            kind,
            ids,
            reply,
        };
        let sent = self.control(partition).send(request).await;
        sent.map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// The core that owns `partition`.
    pub fn core_of(&self, partition: u32) -> usize {
        partition as usize % self.senders.len()
    }

    /// Takes the locks of `partitions` (all on core `core`) for `txn`, waiting while other
    /// holders have them, and reads `names` from each.
    pub async fn lock_read(
        &self,
        core: usize,
        txn: u64,
        partitions: Vec<u32>,
        names: Arc<ReadNames>,
    ) -> Result<Vec<PartitionRead>, NodeError> {
        assert!(partitions.iter().all(|p| self.core_of(*p) == core));
        let (reply, receive) = tokio::sync::oneshot::channel();
        let request = CoreRequest::LockRead {
            txn,
            partitions,
            names,
            reply,
        };
        let sent = self.senders[core].send(request).await;
        sent.map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Writes `writes` (all on core `core`) as transaction `txn`, concurrently.
    pub async fn write_many(
        &self,
        core: usize,
        txn: u64,
        writes: Vec<(u32, Command)>,
    ) -> Result<Vec<Result<Reply, NodeError>>, NodeError> {
        assert!(writes.iter().all(|(p, _)| self.core_of(*p) == core));
        let (reply, receive) = tokio::sync::oneshot::channel();
        let request = CoreRequest::WriteMany { txn, writes, reply };
        let sent = self.senders[core].send(request).await;
        sent.map_err(|_| NodeError::ShuttingDown)?;
        receive.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Releases the locks `txn` holds on `partitions` (all on core `core`).
    pub async fn unlock(
        &self,
        core: usize,
        txn: u64,
        partitions: Vec<u32>,
    ) -> Result<(), NodeError> {
        assert!(partitions.iter().all(|p| self.core_of(*p) == core));
        let request = CoreRequest::Unlock { txn, partitions };
        let sent = self.senders[core].send(request).await;
        sent.map_err(|_| NodeError::ShuttingDown)
    }

    pub fn cores(&self) -> usize {
        self.senders.len()
    }

    /// Claims `ids` of `kind` at their homes for a cross-partition transaction that will
    /// store them in `partition` (see [`CoreRequest::ClaimForTransaction`]).
    pub async fn claim_for_transaction(
        &self,
        partition: u32,
        kind: IdKind,
        ids: Vec<u128>,
    ) -> Result<ClaimOutcome, NodeError> {
        self.ask(partition, |reply| CoreRequest::ClaimForTransaction {
            partition,
            kind,
            ids,
            reply,
        })
        .await
    }

    /// The batch or transaction `proposer` ([`ClaimOutcome::proposer`]) whose claims came
    /// out as `ids` of `kind` for `partition` was applied or given up: its ids are no longer
    /// proposed.
    pub async fn claims_settled(
        &self,
        partition: u32,
        proposer: Proposer,
        kind: IdKind,
        ids: Vec<u128>,
    ) -> Result<(), NodeError> {
        let request = CoreRequest::ClaimsSettled {
            partition,
            proposer,
            kind,
            ids,
        };
        let sent = self.sender(partition).send(request).await;
        sent.map_err(|_| NodeError::ShuttingDown)
    }

    /// Claims ids for a transaction that will store them: each `(partition, kind, ids)` for
    /// `partition`, in claims of at most `CLAIM_IDS_MAX` ids, all at once. Every claim that was
    /// made is in the answer, granted or not, to settle ([`CoreQueues::settle_claims`]).
    pub async fn claim_all_for_transaction(
        &self,
        claims: Vec<(u32, IdKind, Vec<u128>)>,
    ) -> TransactionClaims {
        let chunks = claims.into_iter().flat_map(|(partition, kind, ids)| {
            let chunks: Vec<Vec<u128>> = ids.chunks(CLAIM_IDS_MAX).map(<[u128]>::to_vec).collect();
            chunks.into_iter().map(move |ids| (partition, kind, ids))
        });
        let asked = chunks.map(|(partition, kind, ids)| async move {
            let outcome = self.claim_for_transaction(partition, kind, ids.clone());
            (partition, kind, ids, outcome.await)
        });
        let mut answer = TransactionClaims::default();
        for (partition, kind, ids, outcome) in join_all(asked).await {
            match outcome {
                Ok(outcome) => {
                    let refused = (outcome.answers.iter())
                        .filter(|(_, a)| **a != ClaimAnswer::Granted)
                        .map(|(id, refusal)| (partition, *id, *refusal));
                    answer.refused.extend(refused);
                    answer
                        .claimed
                        .push((partition, outcome.proposer, kind, ids));
                }
                Err(error) => answer.failed = Some(error),
            }
        }
        answer
    }

    /// The ids a transaction claimed are stored, or never will be: no longer proposed.
    pub async fn settle_claims(&self, claimed: Vec<ClaimedIds>) {
        for (partition, proposer, kind, ids) in claimed {
            if let Err(error) = self.claims_settled(partition, proposer, kind, ids).await {
                tracing::debug!(partition, %error, "claims not settled (the node is stopping)");
            }
        }
    }

    /// Runs `run` on core `core`'s thread (from any thread; waits only for room in the queue).
    pub fn run_on(
        &self,
        core: usize,
        run: impl FnOnce() + Send + 'static,
    ) -> Result<(), NodeError> {
        let sender = &self.senders[core % self.senders.len()];
        let sent = sender.send_blocking(CoreRequest::Run(Box::new(run)));
        sent.map_err(|_| NodeError::ShuttingDown)
    }
}

/// The in-process transport of the rare path, as of the directory.
impl RareTransport for CoreQueues {
    /// Sends a message of the rare path to `partition`'s core, as the directory's are: a full
    /// or closed queue loses it, which the protocol tolerates (the home sends again, and a
    /// participant holding an intent asks).
    fn send_rare(&self, partition: u32, message: RareMessage) {
        if partition >= self.partitions() {
            tracing::warn!(
                partition,
                "a rare-path message for no partition of the node"
            );
            return;
        }
        let request = CoreRequest::Rare {
            partition,
            message: Box::new(message),
        };
        if self.sender(partition).try_send(request).is_err() {
            tracing::debug!(
                partition,
                "a rare-path message was dropped (queue full or closed)"
            );
        }
    }
}

/// The in-process transport: a directory message is a request on the partition's core
/// queue. A full or closed queue loses it, which the protocol tolerates (it resends).
impl Transport for CoreQueues {
    fn send(&self, partition: u32, message: DirectoryMessage) {
        if partition >= self.partitions() {
            tracing::warn!(
                partition,
                "a directory message for no partition of the node"
            );
            return;
        }
        let request = CoreRequest::Directory { partition, message };
        if self.sender(partition).try_send(request).is_err() {
            tracing::debug!(
                partition,
                "a directory message was dropped (queue full or closed)"
            );
        }
    }
}

type Ready = std::sync::mpsc::Sender<Result<(), String>>;

fn core_main(
    core: usize,
    setup: CoreSetup,
    receiver: CoreReceivers,
    transport: CoreQueues,
    ready: Ready,
) {
    pin_to_cpu(core);
    let runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build();
    let mut runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(format!("core {core}: io_uring runtime: {error}")));
            return;
        }
    };
    runtime.block_on(core_run(core, setup, receiver, transport, ready));
}

/// A core's two queues: its requests, and operators' requests answered ahead of them.
type CoreReceivers = (
    async_channel::Receiver<CoreRequest>,
    async_channel::Receiver<ControlRequest>,
);

/// The next request once a slot is free (`CORE_IN_FLIGHT_MAX`); `None` once the queue is
/// closed and empty. Cancel-safe: a request is taken from the queue only when returned.
async fn next_request(
    receiver: &async_channel::Receiver<CoreRequest>,
    in_flight: &Cell<usize>,
) -> Option<CoreRequest> {
    while in_flight.get() >= CORE_IN_FLIGHT_MAX {
        monoio::time::sleep(IN_FLIGHT_POLL).await;
    }
    receiver.recv().await.ok()
}

/// Answers an operator's request from the partition's memory.
fn answer_control(partitions: &ServedPartitions, request: ControlRequest) {
    let served = |partition: u32| partitions.get(&partition).expect("routed to its core");
    match request {
        ControlRequest::Status { partition, reply } => {
            let _ = reply.send(served(partition).partition.status());
        }
        ControlRequest::Metrics { partition, reply } => {
            let _ = reply.send(served(partition).partition.metrics());
        }
        ControlRequest::Inspect { partition, read } => served(partition).partition.read(read),
        ControlRequest::LeasesCover {
            partition,
            kind,
            ids,
            reply,
        } => {
            let covered = served(partition).directory.with(|directory| {
                let covers = |id: &u128| directory.lease_covers(kind, *id);
                ids.iter().map(covers).collect()
            });
            let _ = reply.send(covered);
        }
    }
}

async fn core_run(
    core: usize,
    setup: CoreSetup,
    (receiver, control): CoreReceivers,
    transport: CoreQueues,
    ready: Ready,
) {
    let transport = Rc::new(transport);
    let mut partitions = BTreeMap::new();
    for partition in (0..setup.partitions).filter(|p| *p as usize % setup.cores == core) {
        let config = PartitionConfig {
            partition,
            dir: crate::meta::partition_dir(&setup.data_dir, partition),
            ledger: LedgerConfig {
                partition,
                partitions: setup.partitions,
                hash_seed: setup.hash_seed,
                placement: setup.placement,
                ..LedgerConfig::default()
            },
            snapshot_entries: setup.snapshot_entries,
            cache_blocks: setup.cache_blocks,
            memory: setup.memory.clone(),
        };
        match Partition::open(config).await {
            Ok(opened) => {
                let served = Served {
                    number: partition,
                    partition: opened,
                    lock: PartitionLock::default(),
                    directory: CoreDirectory::new(partition, setup.partitions),
                    resolved: tokio::sync::Notify::new(),
                    rare: RareState::default(),
                };
                partitions.insert(partition, Rc::new(served));
            }
            Err(error) => {
                let _ = ready.send(Err(error.to_string()));
                return;
            }
        }
    }
    if crate::fault_injection::injected("hold-partition") {
        hold_partition(&partitions, setup.partitions).await;
    }
    let _ = ready.send(Ok(()));
    let in_flight = Rc::new(Cell::new(0usize));
    if crate::fault_injection::injected("fill-in-flight") {
        monoio::spawn(fill_in_flight(
            core,
            in_flight.clone(),
            setup.data_dir.clone(),
        ));
    }
    let stop = Rc::new(Cell::new(false));
    let pulses = monoio::spawn(pulse_loop(partitions.clone(), stop.clone(), setup));
    let ticks = monoio::spawn(on_core::directory_loop(
        partitions.values().cloned().collect(),
        stop.clone(),
        transport.clone(),
    ));
    let rare_ticks = monoio::spawn(rare::rare_loop(
        partitions.values().cloned().collect(),
        stop.clone(),
        transport.clone(),
    ));
    // Closed with the requests' queue; answered while it drains.
    let mut control = Some(control);
    loop {
        let next = match &control {
            Some(queue) => tokio::select! {
                biased;
                asked = queue.recv() => {
                    match asked {
                        Ok(asked) => answer_control(&partitions, asked),
                        Err(_) => control = None,
                    }
                    continue;
                }
                request = next_request(&receiver, &in_flight) => request,
            },
            None => next_request(&receiver, &in_flight).await,
        };
        let Some(request) = next else {
            break;
        };
        in_flight.set(in_flight.get() + 1);
        let in_flight = in_flight.clone();
        let partitions = partitions.clone();
        let transport = transport.clone();
        monoio::spawn(async move {
            serve(&partitions, request, &in_flight, &transport).await;
            in_flight.set(in_flight.get() - 1);
        });
    }
    stop.set(true);
    // Answers to claims came through the queue, which is closed now: claims waiting fail.
    for served in partitions.values() {
        served.directory.close();
    }
    pulses.await;
    ticks.await;
    rare_ticks.await;
    while in_flight.get() > 0 {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    for served in partitions.values() {
        served.directory.appends_done().await;
        served.rare.tasks_done().await;
    }
    checkpoint_before_stop(&partitions).await;
    for (partition, opened) in partitions {
        match Rc::try_unwrap(opened) {
            Ok(opened) => {
                if let Err(error) = opened.partition.shutdown().await {
                    tracing::error!(partition, %error, "partition shutdown failed");
                }
            }
            Err(_) => tracing::error!(partition, "partition still in use at shutdown"),
        }
    }
}

type ServedPartitions = BTreeMap<u32, Rc<Served>>;

/// Asks every partition of the core for its checkpoint before the stop, then waits for them
/// together (at most `STOP_CHECKPOINT_WAIT_MS` in all), so that a core with many busy
/// partitions still stops within the node's stop deadline.
async fn checkpoint_before_stop(partitions: &ServedPartitions) {
    let mut waiting = Vec::new();
    for served in partitions.values() {
        if let Some(applied) = served.partition.begin_stop_checkpoint().await {
            waiting.push((served, applied));
        }
    }
    let wait_ms = kassa_raft::limits::STOP_CHECKPOINT_WAIT_MS;
    for waited in 0..wait_ms / 10 {
        waiting.retain(|(served, applied)| !served.partition.stop_checkpoint_done(*applied));
        if waiting.is_empty() {
            return;
        }
        if waited % 10 == 9 {
            for (served, _) in &waiting {
                served.partition.renew_stop_checkpoint().await;
            }
        }
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    for (served, applied) in waiting {
        let partition = served.number;
        tracing::warn!(
            partition,
            applied,
            "the checkpoint before the stop did not finish in time"
        );
    }
}

async fn serve(
    partitions: &ServedPartitions,
    request: CoreRequest,
    in_flight: &Cell<usize>,
    transport: &Rc<CoreQueues>,
) {
    let served = |partition: u32| partitions.get(&partition).expect("routed to its core");
    match request {
        CoreRequest::Write {
            partition,
            txn,
            command,
            reply,
        } => {
            let served = served(partition);
            let result = served
                .write_unheld(partition, txn, command, in_flight)
                .await;
            let _ = reply.send(result);
        }
        CoreRequest::Read {
            partition,
            txn,
            prefetch,
            read,
        } => {
            let served = served(partition);
            served.admit_unheld(txn, in_flight).await;
            // Read ahead once admitted (so that reads waiting for a transaction hold no
            // blocks), then admitted again: no transaction's intents may come between the
            // admission and the read, and the second returns at once unless one came during
            // the read-ahead.
            let held = match &prefetch {
                Some(ahead) => {
                    let held = match ahead {
                        ReadAhead::Filter(filtered) => {
                            served.partition.prefetch_read(filtered).await
                        }
                        ReadAhead::Ids(command) => served.partition.prefetch_ids(command).await,
                    };
                    served.admit_unheld(txn, in_flight).await;
                    Some(held)
                }
                None => None,
            };
            served.partition.read(read);
            drop(held);
        }
        CoreRequest::LockRead {
            txn,
            partitions,
            names,
            reply,
        } => {
            // The cold transfers the reads name are read ahead through io_uring, before this
            // core's locks are taken (so that they do not wait on the disk; a second round of
            // a transaction, or another core's, may hold some meanwhile), and held until they
            // are read, with the statuses of those in the store only (a late post or void
            // across partitions names a pending transfer resolved before a durable
            // checkpoint): `Ledger::read_set` then blocks the core on no read. Whatever a
            // checkpoint made cold meanwhile it reads blocking, as without the read-ahead.
            // They are held while the locks are waited for, counted against the room of
            // clients' reads (`held_max`).
            let mut held = Vec::with_capacity(partitions.len());
            for partition in &partitions {
                let Some(ids) = names.ids.get(partition) else {
                    continue;
                };
                let partition = &served(*partition).partition;
                // Nothing cold (most transactions): no copy of the ids, no read-ahead.
                let cold = partition.read(|ledger| ledger.transfers().cold_below() > 0);
                if cold && !ids.transfers.is_empty() {
                    let lookup = ClientRead::ReadSet(ids.transfers.as_slice().into());
                    held.push(partition.prefetch_read(&lookup).await);
                }
            }
            let mut reads = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let served = served(partition);
                if served.lock.holder.get() != Some(txn) {
                    in_flight.set(in_flight.get() - 1);
                    served.lock.lock(txn).await;
                    in_flight.set(in_flight.get() + 1);
                }
                // Intents are taken under the lock: none can come while `txn` holds it.
                served.unheld(in_flight).await;
                let names = &names;
                let read = served.partition.read(|ledger| {
                    let ids = names.ids.get(&partition);
                    let (accounts, transfers) = ids.map_or((&[][..], &[][..]), |ids| {
                        (&ids.accounts[..], &ids.transfers[..])
                    });
                    let records = ledger.read_set(accounts, transfers, &names.timestamps);
                    let sessions = names.sessions.iter().enumerate();
                    let sessions = sessions
                        .filter(|(_, (session_partition, _))| *session_partition == partition)
                        .map(|(index, (_, header))| (index, ledger.sessions().answer_known(header)))
                        .collect();
                    PartitionRead {
                        partition,
                        records,
                        sessions,
                    }
                });
                reads.push(read);
            }
            drop(held);
            if let Err(reads) = reply.send(reads) {
                // Nobody waits for the locks any more (the node is stopping).
                for read in reads {
                    served(read.partition).lock.unlock(txn);
                }
            }
        }
        CoreRequest::WriteMany { txn, writes, reply } => {
            let writes = writes.into_iter().map(|(partition, command)| async move {
                let served = served(partition);
                admit(&served.lock, Some(txn), in_flight).await;
                served.write(partition, command).await
            });
            let _ = reply.send(join_all(writes).await);
        }
        CoreRequest::Unlock { txn, partitions } => {
            for partition in partitions {
                served(partition).lock.unlock(txn);
            }
        }
        CoreRequest::Run(run) => run(),
        CoreRequest::Directory { partition, message } => {
            on_core::received(served(partition), transport, message);
        }
        CoreRequest::ClaimForTransaction {
            partition,
            kind,
            ids,
            reply,
        } => {
            // A claim waiting for its answers does not count as in flight: the answers come
            // through this core's queue, which must keep being read.
            in_flight.set(in_flight.get() - 1);
            let served = served(partition);
            on_core::claim_for_transaction(served, transport, kind, ids, reply).await;
            in_flight.set(in_flight.get() + 1);
        }
        CoreRequest::Rare { partition, message } => {
            let served = served(partition);
            let Some(order) = message.intent_order() else {
                rare::received(served, transport, *message).await;
                return;
            };
            // An intent: proposed once no other intent holds the partition and none that
            // came before waits here, or refused if an older transaction keeps it out too
            // long (`BusyIntents`).
            let Some(place) = served.rare.busy.wait(order) else {
                return;
            };
            let arrived_ms = monotonic_ms();
            let mut message = *message;
            loop {
                match served.turn_of(place, order, arrived_ms, in_flight).await {
                    Some(Turn::Propose) => {}
                    Some(Turn::Wait { .. }) => {
                        rare::give_way(served, transport, order.1).await;
                        break;
                    }
                    None => break,
                }
                served.rare.busy.proposing(order);
                // Intents are taken under the lock: none can come while a coordinator's
                // transaction holds the partition. No await from here to the write's
                // admission (`Served::write_in` counts it as writing when first polled).
                admit(&served.lock, None, in_flight).await;
                match rare::received(served, transport, message).await {
                    // Another intent reached the log first (one resolved by entries this
                    // node did not propose, or a coordinator's path).
                    Some(busy) => message = busy,
                    None => break,
                }
            }
            served.rare.busy.done(place);
            served.resolved.notify_waiters();
        }
        CoreRequest::RunInShares {
            home,
            now,
            batch,
            partitions,
            request,
            reply,
        } => {
            let served = served(home);
            rare::run_at_home(served, transport, now, batch, partitions, request, reply).await;
        }
        CoreRequest::ClaimsSettled {
            partition,
            proposer,
            kind,
            ids,
        } => on_core::settled(served(partition).as_ref(), proposer, kind, ids),
        CoreRequest::WriteLocal {
            partition,
            command,
            reply,
        } => {
            let served = served(partition);
            // A copy of a wire request running here in shares joins it (`rare_path`).
            if let Command::Request { request, .. } | Command::ForeignRequest { request, .. } =
                &command
            {
                if let Some(joined) = rare::join_request(served, request.header()).await {
                    let _ = reply.send(joined.map(|a| LocalWrite::Written(Reply::Foreign(a))));
                    return;
                }
            }
            let mut command = command;
            let written = loop {
                // The check in `write_local` looks the batch's ids up in the ledger, cold ones
                // in the runs: they are read ahead, so that it blocks the core on no read, and
                // held until the batch is applied, whose own read-ahead then finds them.
                let local = served.partition.read(|ledger| checks_ids(ledger, &command));
                let _held = match local {
                    true => Some(served.partition.prefetch_ids(&command).await),
                    false => None,
                };
                served.admit_unheld(None, in_flight).await;
                // Counted as writing from the check to the write: a transaction that locks the
                // partition meanwhile waits for it, so the check still holds when it is written.
                let writing = served.lock.writing();
                let written = write_local(served, transport, command, in_flight).await;
                drop(writing);
                match written {
                    Ok(LocalWrite::Written(Reply::Held {
                        command: refused, ..
                    })) => {
                        command = *refused;
                    }
                    written => break written,
                }
            };
            let _ = reply.send(written);
        }
    }
}

/// Writes `command` in `served` alone if it can run there (see [`CoreRequest::WriteLocal`]).
async fn write_local(
    served: &Rc<Served>,
    transport: &Rc<CoreQueues>,
    command: Command,
    in_flight: &Cell<usize>,
) -> Result<LocalWrite, NodeError> {
    let run = served.directory.with(|directory| {
        let leased = |id| directory.lease_covers(IdKind::Transfer, id);
        served
            .partition
            .read(|ledger| local_run(ledger, &command, leased))
    });
    let Some((kind, run)) = run else {
        return Ok(LocalWrite::NotLocal(command));
    };
    // Ids of buckets leased to this partition need no claim; they count as proposed from
    // here (no await since the check) until `proposed` goes: at every return below, the
    // batch applied or never appended.
    let (mut proposed, claims) = on_core::use_leases(served, transport, kind, run.claims);
    if !claims.is_empty() {
        // A claim waiting for its answers does not count as in flight (they come through
        // this core's queue).
        in_flight.set(in_flight.get() - 1);
        let outcome = on_core::claim_here(served, transport, kind, &claims).await;
        in_flight.set(in_flight.get() + 1);
        let outcome = outcome?;
        let granted = outcome.answers.values().all(|a| *a == ClaimAnswer::Granted);
        if !proposed.add(outcome) {
            return Err(leader_changed(served.number));
        }
        if !granted {
            return Ok(LocalWrite::NotLocal(command));
        }
    }
    // The leader's term may have ended during the claims: a new term no longer counts this
    // batch's ids as proposed, so the batch must not be appended in it. The check spares a
    // doomed proposal; the write's own condition on the term is what makes it hold at the
    // append.
    if !proposed.term_holds() {
        return Err(leader_changed(served.number));
    }
    let term = Some(proposed.term());
    let written = served.write_in(served.number, command, term).await;
    if let Err(NodeError::Partition(error)) = &written {
        if !error.refused_before_append() {
            // The entry may still commit: its ids stay proposed until the term ends.
            proposed.keep();
        }
    }
    written.map(LocalWrite::Written)
}

/// A batch found its partition's leader term ended before its entry was appended.
fn leader_changed(partition: u32) -> NodeError {
    NodeError::Partition(kassa_raft::PartitionError::NotLeader {
        partition,
        leader: None,
    })
}

/// Whether `command` can run in `ledger`'s partition alone, and the ids it must claim;
/// `leased` tells the transfer ids leases cover (`Ledger::local_transfers_leased`).
fn local_run(
    ledger: &Ledger,
    command: &Command,
    leased: impl Fn(u128) -> bool,
) -> Option<(IdKind, LocalRun)> {
    match command {
        Command::CreateAccounts { accounts, .. } => Some((
            IdKind::Account,
            ledger.local_accounts(accounts.iter().copied())?,
        )),
        Command::CreateTransfers { transfers, .. } => Some((
            IdKind::Transfer,
            local_transfers(ledger, || transfers.iter().copied(), leased)?,
        )),
        // A request run here before is answered from here (`ForeignRequests`), whatever the
        // ledger holds now: it must never take another path.
        Command::ForeignRequest { request, .. }
            if ledger.foreign_requests().knows(request.header()) =>
        {
            Some((
                IdKind::Transfer,
                LocalRun {
                    claims: Vec::new(),
                    elsewhere: Vec::new(),
                },
            ))
        }
        Command::Request { request, .. } | Command::ForeignRequest { request, .. } => {
            match request.operation() {
                Operation::CreateAccounts => {
                    let accounts = request.records::<Account>();
                    Some((IdKind::Account, ledger.local_accounts(accounts)?))
                }
                Operation::CreateTransfers => {
                    let transfers = || request.records::<Transfer>();
                    let run = local_transfers(ledger, transfers, leased)?;
                    Some((IdKind::Transfer, run))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `Ledger::local_transfers_leased` of `transfers()`, after the check of what is in memory
/// alone when some transfer is cold: a batch that check refuses reads no cold id (and
/// [`checks_ids`] read none ahead for it), even when its refused event comes late.
fn local_transfers<I: Iterator<Item = Transfer>>(
    ledger: &Ledger,
    transfers: impl Fn() -> I,
    leased: impl Fn(u128) -> bool,
) -> Option<LocalRun> {
    if ledger.transfers().cold_below() > 0 && !ledger.local_transfers_may_run(transfers()) {
        return None;
    }
    ledger.local_transfers_leased(transfers(), leased)
}

/// Whether [`local_run`] may read `command`'s transfer ids from `ledger`'s cold runs: not
/// when nothing is cold, nor when a check of what is in memory sends the batch elsewhere
/// first (imported events, a ledger or an account of another partition).
fn checks_ids(ledger: &Ledger, command: &Command) -> bool {
    if ledger.transfers().cold_below() == 0 {
        return false; // nothing cold: the check reads no disk
    }
    match command {
        Command::CreateTransfers { transfers, .. } => {
            ledger.local_transfers_may_run(transfers.iter().copied())
        }
        Command::ForeignRequest { request, .. }
            if ledger.foreign_requests().knows(request.header()) =>
        {
            false
        }
        Command::Request { request, .. } | Command::ForeignRequest { request, .. } => {
            request.operation() == Operation::CreateTransfers
                && ledger.local_transfers_may_run(request.records::<Transfer>())
        }
        _ => false,
    }
}

/// Waits until `txn` may use the partition. A request waiting for a lock does not count as in
/// flight: the lock's holder must still get its own requests through this core's queue.
async fn admit(lock: &PartitionLock, txn: Option<u64>, in_flight: &Cell<usize>) {
    if lock.holder.get().is_some_and(|holder| Some(holder) != txn) {
        in_flight.set(in_flight.get() - 1);
        lock.admit(txn).await;
        in_flight.set(in_flight.get() + 1);
    }
}

/// Expires pending transfers whose time is up: a partition's own through its log (under its
/// lock, so no transaction reads it meanwhile), those crossing partitions by handing them to
/// the node's transaction coordinator. Also checkpoints a partition when the node is past its
/// memtable limit though no write came to ask.
async fn pulse_loop(partitions: ServedPartitions, stop: Rc<Cell<bool>>, setup: CoreSetup) {
    while !stop.get() {
        monoio::time::sleep(PULSE_INTERVAL).await;
        if !setup.pulses.load(Ordering::Acquire) {
            continue;
        }
        for (partition, served) in &partitions {
            // A fault in the background (a snapshot, a purge) stops the node too.
            served.stop_if_failed(*partition);
            served.partition.check_memory().await;
            let now = realtime_ns();
            let local = served.partition.read(|ledger| ledger.pulse_needed(now));
            if local {
                let txn = next_lock_txn();
                served.lock.lock(txn).await;
                let command = Command::ExpirePendingTransfers { now };
                let written = served.write(*partition, command).await;
                served.lock.unlock(txn);
                if let Err(error) = written {
                    tracing::warn!(partition, %error, "pulse failed; retrying next interval");
                }
            }
            let limit = kassa_shard::limits::EXPIRE_BATCH_MAX;
            let due = served
                .partition
                .read(|ledger| ledger.cross_expiries_due(now, limit));
            if !due.is_empty() && setup.cross_expiries.try_send(due).is_err() {
                tracing::debug!(partition, "cross-partition expiries queued already");
            }
        }
    }
}

/// `KASSA_FAULT=fill-in-flight`: once the file `fill-in-flight` appears in the data
/// directory, every slot of the core is taken, as by requests all waiting (for memory, for
/// the disk), and the core says so with the file `in-flight-filled-<core>`, until the file
/// `release-in-flight` appears.
async fn fill_in_flight(core: usize, in_flight: Rc<Cell<usize>>, data_dir: std::path::PathBuf) {
    let appeared = |name: &str| data_dir.join(name).exists();
    while !appeared("fill-in-flight") {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    in_flight.set(in_flight.get() + CORE_IN_FLIGHT_MAX);
    if let Err(error) = std::fs::write(data_dir.join(format!("in-flight-filled-{core}")), b"") {
        tracing::error!(%error, "fill-in-flight: could not say so");
    }
    while !appeared("release-in-flight") {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    in_flight.set(in_flight.get() - CORE_IN_FLIGHT_MAX);
}

/// Fault injection (`KASSA_FAULT=hold-partition`): from before the node is ready, the
/// partition of ledger 1 holds the intent of a transaction (a share creating one account)
/// whose home, that same partition, never began it: as if the home's leader had died right
/// after sending it. Nothing here resolves it. The rare path's recovery must: the partition
/// asks its home after `rare_path::ASK_AFTER`, and the home, finding no stage, aborts it.
async fn hold_partition(partitions: &ServedPartitions, count: u32) {
    use kassa_shard::intents::{IntentShare, ShareOfBatch};
    use kassa_shard::parallel_commit::{ParticipantCommand, TxnId};
    use kassa_shard::shares::{InTheBatch, Share};
    let number = kassa_shard::ledger_partition(1, count);
    let Some(served) = partitions.get(&number).cloned() else {
        return;
    };
    let txn = TxnId {
        home: number,
        number: u64::MAX,
    };
    let account = Account {
        id: kassa_wire::AccountId(0xFA17),
        ledger: 1,
        code: 1,
        ..Account::default()
    };
    let share = Share {
        partition: number,
        positions: vec![0],
        events: vec![account],
        linked: vec![false],
    };
    let batch = InTheBatch {
        batch_len: 1,
        batch_imported: false,
        forced: Vec::new(),
    };
    let effects = IntentShare {
        now: realtime_ns(),
        share: ShareOfBatch::Accounts { share, batch },
    };
    let intent = ParticipantCommand::Intent { txn, effects };
    let written = served
        .write(
            number,
            Command::Rare(Box::new(RareEntry::Participant(intent))),
        )
        .await;
    tracing::warn!(
        partition = number,
        ?written,
        "fault injection: partition held by an intent its home never began"
    );
}

/// Pins the calling thread to one CPU, if the machine has it; a failure only costs locality.
fn pin_to_cpu(core: usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: `set` is a plain bit array that CPU_ZERO/CPU_SET initialize and fill; the call
    // only reads it, for the calling thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core % cpus, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::warn!(core, "could not pin the core thread to its CPU");
        }
    }
}
