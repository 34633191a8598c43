//! [`Partition`]: one partition's Raft group on its core, as the node sees it.
//!
//! Opening: load the log, vote and purge point (`log_store`), restore the latest snapshot
//! (`state_machine`), start openraft's tasks on the current monoio runtime, initialize a
//! single-voter membership if the directory was pristine (no vote, no entry, nothing purged),
//! then wait until this node leads and has applied every entry that was in the log at open.
//! Only then does `open` return, so that [`Partition::read`] sees every acknowledged write.
//!
//! Writing: [`Partition::write`] proposes the encoded command through `client_write`, which
//! returns once the entry is committed (durable on the one voter) and applied. Right after an
//! election openraft can refuse a proposal (`ForwardToLeader`, lease expired or leader not yet
//! known) before appending it; such a refusal is retried up to [`WRITE_ATTEMPTS_MAX`] times.
//! Once another leader is known, the refusal is returned as [`PartitionError::NotLeader`].
//! [`Partition::write_in_term`] appends only in the leader term it names (openraft checks the
//! term with the append), so a batch checked in one term never lands in the next.
//!
//! Shutting down: stop the core, then wait until openraft's tasks have dropped the log and the
//! state machine, so that the directory can be opened again as soon as `shutdown` returns.
//! Dropping a `Partition` without `shutdown` closes openraft's shutdown channel, so its core
//! stops too, but nothing waits for its tasks to let go of the log: reopen a directory in the
//! same process only after `shutdown` returned. Either way, as after a crash, nothing
//! acknowledged is lost.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use kassa_shard::limits::BATCH_EVENTS_MAX;
use kassa_shard::{ClientRead, ColdReads};
use kassa_storage::LogOptions;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, Fatal, ForwardReason, RaftError};
use openraft::impls::ProgressResponder;
use openraft::raft::ClientWriteResponse;
use openraft::{Config, Raft, ServerState, SnapshotPolicy};

use crate::log_store::{LogShared, LogStore};
use crate::memory::{memory_wait, MemoryWait, MemtableGauge};
use crate::metrics::{PartitionMetrics, PartitionStatus};
use crate::network::NoPeers;
use crate::state_machine::{prefetch_rounds, ColdHolds, StateMachine, StoreView};
use crate::types::{Applied, CommandBytes, CommittedLeaderId, Proposed, TypeConfig, NODE_ID};
use crate::{Command, Ledger, PartitionConfig, PartitionError, Reply};

/// Leader heartbeats; they also pace each instance's tick (a fifth of this), which is what an
/// idle partition costs (see DESIGN "Known traps": keep it at 100–200 ms or more).
pub const HEARTBEAT_INTERVAL_MS: u64 = 150;
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 750;
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 1500;
/// Most client writes queued in one partition's Raft core before `write` waits.
pub const API_CHANNEL_SIZE: u64 = 4096;
/// How long `open` waits for leadership and for replaying the log after the snapshot.
pub const OPEN_READY_TIMEOUT_MS: u64 = 30_000;
/// Most proposals of one write that openraft refuses before appending, and the pause between.
pub const WRITE_ATTEMPTS_MAX: u32 = 64;
pub const WRITE_RETRY_DELAY_MS: u64 = 4;
/// How long `shutdown` waits for openraft's tasks to let go of the log, polling each ms.
pub const SHUTDOWN_WAIT_MS_MAX: u64 = 5_000;
/// How long a write waits for memory with no checkpoint being written before it goes on
/// anyway (and, until a checkpoint frees some, every other write with it).
pub const MEMORY_WAIT_MAX: Duration = Duration::from_secs(10);
/// How long a write waits for memory at most, checkpoints being written or not (one that
/// hangs must not stop every write).
pub const MEMORY_WAIT_HARD_MAX: Duration = Duration::from_secs(120);
/// How often a waiting write looks at the node's memtables again.
pub const MEMORY_WAIT_POLL_MS: u64 = 10;

const _: () = assert!(HEARTBEAT_INTERVAL_MS >= 100);
const _: () = assert!(HEARTBEAT_INTERVAL_MS < ELECTION_TIMEOUT_MIN_MS);
const _: () = assert!(ELECTION_TIMEOUT_MIN_MS < ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(ELECTION_TIMEOUT_MAX_MS < OPEN_READY_TIMEOUT_MS);

/// Why openraft did not take a client write.
type WriteRefused = RaftError<TypeConfig, ClientWriteError<TypeConfig>>;

/// One open partition on its core: a single-voter Raft group for now.
pub struct Partition {
    partition: u32,
    raft: Raft<TypeConfig, StateMachine>,
    ledger: Rc<RefCell<Ledger>>,
    cold_apply: Rc<crate::state_machine::ColdApplyStats>,
    /// The log, also held by openraft's log store and readers; closed on shutdown.
    log: Rc<LogShared>,
    /// Cloned into the state machine and its snapshot builders.
    alive: Rc<()>,
    /// What the partition's directory holds, for its metrics.
    store: StoreView,
    /// The memtable's share of the node's memory budget.
    memtable: Rc<MemtableGauge>,
    /// The memtable gauge's count of freeings when the last checkpoint for memory was asked
    /// for: none is asked again until a durable checkpoint freed the memtable since (one
    /// being written frees it when durable; one that frees nothing is not asked again).
    memory_asked_at: std::cell::Cell<Option<u64>>,
    /// Checkpoints asked for because the node was past its memory budget.
    memory_checkpoint_asks: std::cell::Cell<u64>,
    /// Writes that waited for a checkpoint to free memory (`writes_wait_for_memory`).
    memory_waits: std::cell::Cell<u64>,
    /// Command bytes written since this process last asked for a snapshot.
    written_since_snapshot: std::cell::Cell<u64>,
    /// Entries since the last checkpoint past which a stop takes one first.
    stop_checkpoint_entries: u64,
}

/// Blocks clients' reads of a partition may hold read ahead at once, at the least (more when
/// its block cache holds more): 16 MiB, a read of a few thousand scattered transfers.
pub const READ_HELD_BLOCKS_MIN: usize = 4096;

/// A stop takes a checkpoint first when this many log bytes were written since the last
/// (about half a million transfers), or a quarter of `snapshot_entries` entries were applied:
/// the next start then replays little of the log.
pub const STOP_CHECKPOINT_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// The longest a stop waits for that checkpoint (a core's partitions wait together); past it
/// the partition stops anyway, and the next start replays the log as after a crash. With the
/// node's drains (10 s for HTTP requests, 10 s for transactions) it stays within the stop's
/// 30 s deadline.
pub const STOP_CHECKPOINT_WAIT_MS: u64 = 8_000;

/// Log bytes after which a partition snapshots, however few entries they are: entries range
/// from a few hundred bytes to megabytes (a full cross-partition decision), so a count alone
/// would let a busy log grow to hundreds of gigabytes between snapshots.
pub const SNAPSHOT_LOG_BYTES: u64 = 512 * 1024 * 1024;

fn raft_config(partition: u32, snapshot_entries: u64) -> Result<Arc<Config>, PartitionError> {
    if snapshot_entries == 0 {
        return Err(PartitionError::Config {
            partition,
            what: "snapshot_entries must be at least 1".to_string(),
        });
    }
    let config = Config {
        cluster_name: format!("kassa-partition-{partition}"),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_entries),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        api_channel_size: Some(API_CHANNEL_SIZE),
        ..Config::default()
    };
    let config = config.validate().map_err(|error| PartitionError::Config {
        partition,
        what: error.to_string(),
    })?;
    Ok(Arc::new(config))
}

fn fatal_error(partition: u32, fatal: Fatal<TypeConfig>) -> PartitionError {
    match fatal {
        Fatal::Stopped => PartitionError::ShuttingDown { partition },
        fatal => PartitionError::Raft {
            partition,
            what: fatal.to_string(),
        },
    }
}

fn events(command: &Command) -> usize {
    match command {
        Command::CreateAccounts { accounts, .. } => accounts.len(),
        Command::CreateTransfers { transfers, .. } => transfers.len(),
        Command::ExpirePendingTransfers { .. }
        | Command::ReleaseChangeEvents { .. }
        | Command::Decide { .. }
        | Command::Apply { .. }
        | Command::Done { .. }
        | Command::ClaimEpoch
        | Command::Directory { .. } => 0,
        // An intent's share is a part of one batch, checked against the batch limit when
        // decoded.
        Command::Rare(_) => 0,
        // A client frame's batches were checked against their limits when it was built.
        Command::Register { .. }
        | Command::Request { .. }
        | Command::ForeignRequest { .. }
        | Command::Answer { .. }
        | Command::SealedAnswer { .. }
        | Command::CatchUp { .. } => 0,
    }
}

impl Partition {
    /// Opens the partition in `config.dir` (recovering its log and snapshot, and initializing
    /// a single-voter group on first open) and starts its Raft tasks on the current monoio
    /// runtime.
    pub async fn open(config: PartitionConfig) -> Result<Partition, PartitionError> {
        Partition::open_with(config, LogOptions::default()).await
    }

    /// [`Partition::open`] with the log's options (segment size) set by the caller.
    pub async fn open_with(
        config: PartitionConfig,
        log_options: LogOptions,
    ) -> Result<Partition, PartitionError> {
        let partition = config.partition;
        let raft_config = raft_config(partition, config.snapshot_entries)?;
        // Once per open, before any I/O on the core: the directory the log and files go in.
        std::fs::create_dir_all(&config.dir).map_err(|source| PartitionError::Storage {
            partition,
            source: kassa_storage::StorageError::Io {
                operation: "create directory",
                path: config.dir.clone(),
                source,
            },
        })?;
        let alive = Rc::new(());
        let memtable = Rc::new(MemtableGauge::new(config.memory.clone()));
        let (log_store, recovery) = LogStore::open(partition, &config.dir, log_options).await?;
        if let Some(torn) = &recovery.torn_tail {
            let (path, offset) = (torn.path.display(), torn.offset);
            tracing::warn!(partition, %path, offset, bytes = torn.bytes_discarded, "torn log tail cut");
        }
        let log = log_store.shared();
        let pristine = log_store.is_pristine();
        let last_index = log_store.last_index();
        let state_machine = StateMachine::open(
            partition,
            &config.dir,
            config.ledger,
            config.cache_blocks,
            memtable.clone(),
            alive.clone(),
        )
        .await?;
        let ledger = state_machine.ledger();
        let cold_apply = state_machine.cold_apply_stats();
        let store = state_machine.store_view();
        // Entries the log no longer has must be in the snapshot, or the state would silently
        // lack them (openraft itself would only assert).
        if let Some(purged) = log_store.purged_index() {
            let snapshot = state_machine.last_applied_index();
            if snapshot < Some(purged) {
                return Err(PartitionError::SnapshotBehindPurge {
                    partition,
                    purged,
                    snapshot,
                });
            }
        }
        let raft = Raft::new(NODE_ID, raft_config, NoPeers, log_store, state_machine)
            .await
            .map_err(|fatal| fatal_error(partition, fatal))?;
        let this = Partition {
            partition,
            raft,
            ledger,
            cold_apply,
            log,
            alive,
            store,
            memtable,
            memory_asked_at: std::cell::Cell::new(None),
            memory_checkpoint_asks: std::cell::Cell::new(0),
            memory_waits: std::cell::Cell::new(0),
            written_since_snapshot: std::cell::Cell::new(0),
            stop_checkpoint_entries: (config.snapshot_entries / 4).max(1),
        };
        if let Err(error) = this.start(pristine, last_index).await {
            // Stop what started; the error that stopped the open is the one to report.
            let _ = this.shutdown().await;
            return Err(error);
        }
        tracing::info!(partition, entries = recovery.entries, "partition open");
        Ok(this)
    }

    /// Initializes a pristine partition, then waits until it serves.
    async fn start(&self, pristine: bool, last_index: Option<u64>) -> Result<(), PartitionError> {
        if pristine {
            self.initialize().await?;
        }
        self.wait_ready(last_index).await
    }

    async fn initialize(&self) -> Result<(), PartitionError> {
        let voters = BTreeSet::from([NODE_ID]);
        self.raft
            .initialize(voters)
            .await
            .map_err(|error| match error {
                RaftError::Fatal(fatal) => fatal_error(self.partition, fatal),
                RaftError::APIError(error) => PartitionError::Raft {
                    partition: self.partition,
                    what: error.to_string(),
                },
            })
    }

    /// Waits until this node leads and has applied the log up to `last_index`.
    ///
    /// Replaying a long log can take longer than any fixed deadline, so the deadline is on
    /// progress: it fails only if `OPEN_READY_TIMEOUT_MS` pass with no entry applied.
    async fn wait_ready(&self, last_index: Option<u64>) -> Result<(), PartitionError> {
        let timeout = Duration::from_millis(OPEN_READY_TIMEOUT_MS);
        let ready = move |metrics: &openraft::RaftMetrics<TypeConfig>| {
            let applied = metrics.last_applied.map(|id| id.index);
            metrics.state == ServerState::Leader && applied.is_some() && applied >= last_index
        };
        let mut applied_before: Option<u64> = None;
        loop {
            let previous = applied_before;
            let progress = move |metrics: &openraft::RaftMetrics<TypeConfig>| {
                ready(metrics) || metrics.last_applied.map(|id| id.index) > previous
            };
            let waiter = self.raft.wait(Some(timeout));
            let waited = waiter.metrics(progress, "partition ready").await;
            let metrics = waited.map_err(|error| PartitionError::NotReady {
                partition: self.partition,
                waited_ms: OPEN_READY_TIMEOUT_MS,
                what: error.to_string(),
            })?;
            if ready(&metrics) {
                return Ok(());
            }
            applied_before = metrics.last_applied.map(|id| id.index);
        }
    }

    /// Proposes `command`, waits until it is committed and applied, and returns its reply.
    pub async fn write(&self, command: Command) -> Result<Reply, PartitionError> {
        self.propose(command, None).await
    }

    /// Like [`Partition::write`], but appends `command` only while this node leads in leader
    /// term `term`: openraft compares the term with its vote in the same step as the append,
    /// so an entry begun in one term never lands in a later one (after leadership was lost
    /// and won again in between). In another term it is refused before the append with
    /// [`PartitionError::NotLeader`].
    pub async fn write_in_term(
        &self,
        command: Command,
        term: u64,
    ) -> Result<Reply, PartitionError> {
        self.propose(command, Some(term)).await
    }

    async fn propose(&self, command: Command, term: Option<u64>) -> Result<Reply, PartitionError> {
        let partition = self.partition;
        let events = events(&command);
        if events > BATCH_EVENTS_MAX {
            return Err(PartitionError::BatchTooLarge {
                partition,
                events,
                events_max: BATCH_EVENTS_MAX,
            });
        }
        self.wait_for_memory(&command).await;
        let proposed: Proposed = Rc::new(RefCell::new(Some(command)));
        for attempt in 1..=WRITE_ATTEMPTS_MAX {
            let bytes = CommandBytes::propose(&proposed);
            let size = bytes.len() as u64;
            let written = match term {
                None => self.raft.client_write(bytes).await,
                Some(term) => self.client_write_in_term(bytes, term).await?,
            };
            let error = match written {
                Ok(response) => {
                    self.count_written(size).await;
                    self.check_memory().await;
                    return self.reply(response.data);
                }
                Err(error) => error,
            };
            let retry = self.write_error(error)?;
            if term.is_some_and(|term| self.status().term != term) {
                // Refused for the term: retrying cannot append it in that term any more.
                return Err(PartitionError::NotLeader {
                    partition,
                    leader: None,
                });
            }
            tracing::debug!(partition, attempt, reason = ?retry, "write refused before append");
            monoio::time::sleep(Duration::from_millis(WRITE_RETRY_DELAY_MS)).await;
        }
        Err(PartitionError::NotLeader {
            partition,
            leader: None,
        })
    }

    /// `client_write` conditional on leader term `term` ([`Partition::write_in_term`]).
    async fn client_write_in_term(
        &self,
        bytes: CommandBytes,
        term: u64,
    ) -> Result<Result<ClientWriteResponse<TypeConfig>, WriteRefused>, PartitionError> {
        let partition = self.partition;
        let (responder, answered) = ProgressResponder::complete_only();
        let request = self
            .raft
            .write(bytes)
            .with_leader(CommittedLeaderId::new(term));
        let sent = request.responder(responder).await;
        sent.map_err(|fatal| fatal_error(partition, fatal))?;
        match answered.await {
            Ok(result) => Ok(result.map_err(RaftError::APIError)),
            // The Raft core dropped the responder: it stopped.
            Err(_) => Err(match self.failure() {
                Some(what) => PartitionError::Raft { partition, what },
                None => PartitionError::OutcomeUnknown { partition },
            }),
        }
    }

    /// Turns a refused write into the reason to retry it, or into the error to return.
    fn write_error(&self, error: WriteRefused) -> Result<ForwardReason, PartitionError> {
        let partition = self.partition;
        match error {
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                let elsewhere = forward.leader_id.is_some_and(|leader| leader != NODE_ID);
                if elsewhere && forward.reason == ForwardReason::NotLeader {
                    return Err(PartitionError::NotLeader {
                        partition,
                        leader: forward.leader_id,
                    });
                }
                Ok(forward.reason)
            }
            RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
                Err(PartitionError::OutcomeUnknown { partition })
            }
            RaftError::APIError(error) => Err(PartitionError::Raft {
                partition,
                what: error.to_string(),
            }),
            RaftError::Fatal(fatal) => Err(fatal_error(partition, fatal)),
        }
    }

    /// Counts written bytes; past `SNAPSHOT_LOG_BYTES`, asks openraft for a snapshot (which
    /// then lets it purge the log the snapshot covers).
    async fn count_written(&self, size: u64) {
        let written = self.written_since_snapshot.get() + size;
        if written < SNAPSHOT_LOG_BYTES {
            self.written_since_snapshot.set(written);
            return;
        }
        self.written_since_snapshot.set(0);
        if let Err(error) = self.raft.trigger().snapshot().await {
            tracing::warn!(partition = self.partition, %error, "could not ask for a snapshot");
        }
    }

    /// Waits, if `command` is a client's write, while the node's memtables hold more than
    /// `writes_wait_for_memory` allows, until durable checkpoints free memory: a load the
    /// disk cannot take slows to what it takes instead of growing memory without bound.
    /// Asks for this partition's checkpoint while it waits (as `check_memory` does).
    /// Entries of the node's own (expiries, transactions' decisions, the id directory's)
    /// never wait: they free memory, or hold locks others wait for. A checkpoint being
    /// written anywhere in the node keeps the write waiting while its merges take, up to
    /// `MEMORY_WAIT_HARD_MAX`. After `MEMORY_WAIT_MAX` with none being written (declined, or
    /// failed), or that hard bound, the write goes on, logged, and no write waits again until
    /// a checkpoint frees memory: the bound gives way, not the writes (`memory_wait`, the
    /// pure decision). A node that stops lets them all go on at once
    /// (`MemoryBudget::stop_waiting`).
    async fn wait_for_memory(&self, command: &Command) {
        let client_write = matches!(
            command,
            Command::CreateAccounts { .. }
                | Command::CreateTransfers { .. }
                | Command::Request { .. }
                | Command::ForeignRequest { .. }
        );
        let budget = self.memtable.budget();
        let step = |quiet, waited| {
            memory_wait(
                budget.used(),
                budget.limit(),
                budget.gave_up() || budget.stopping(),
                (quiet, MEMORY_WAIT_MAX),
                (waited, MEMORY_WAIT_HARD_MAX),
            )
        };
        if !client_write || step(Duration::ZERO, Duration::ZERO) == MemoryWait::Write {
            return;
        }
        self.memory_waits.set(self.memory_waits.get() + 1);
        let began = std::time::Instant::now();
        let mut quiet_since = began;
        loop {
            if self.raft.metrics().borrow_watched().running_state.is_err() {
                return; // stopped or failed: the write fails on its own
            }
            if budget.checkpoints_writing() > 0 {
                quiet_since = std::time::Instant::now();
            }
            match step(quiet_since.elapsed(), began.elapsed()) {
                MemoryWait::Write => return,
                MemoryWait::Wait => {}
                MemoryWait::GiveUp => {
                    budget.give_up();
                    tracing::warn!(
                        partition = self.partition,
                        used = budget.used(),
                        limit = budget.limit(),
                        "past the memtable limit and no checkpoint being written (or none \
                         freed memory for two minutes): writing on until one frees memory"
                    );
                    return;
                }
            }
            self.check_memory().await;
            monoio::time::sleep(Duration::from_millis(MEMORY_WAIT_POLL_MS)).await;
        }
    }

    /// Publishes the memtable's size to the node's budget; past it, and holding at least an
    /// even share, asks openraft for a checkpoint (`memory`), once per time a durable
    /// checkpoint freed the memtable. Called after each write, and by the node on every
    /// core's pulse, so that a node left idle just past its limit gets under it too.
    pub async fn check_memory(&self) {
        let bytes = self.ledger.borrow().memtable_bytes();
        if !self.memtable.publish_and_check(bytes) {
            return;
        }
        let freed = self.memtable.freed();
        if self.memory_asked_at.get() == Some(freed) {
            return;
        }
        self.memory_asked_at.set(Some(freed));
        let asks = &self.memory_checkpoint_asks;
        asks.set(asks.get() + 1);
        let partition = self.partition;
        tracing::info!(
            partition,
            bytes,
            "past the node's memory budget: checkpoint asked"
        );
        if let Err(error) = self.raft.trigger().snapshot().await {
            tracing::warn!(partition, %error, "could not ask for a snapshot");
        }
    }

    fn reply(&self, applied: Applied) -> Result<Reply, PartitionError> {
        let partition = self.partition;
        match applied {
            Applied::Reply(reply) => Ok(reply),
            Applied::Rejected(source) => Err(PartitionError::Rejected { partition, source }),
            Applied::Nothing => Err(PartitionError::Raft {
                partition,
                what: "a command's entry was applied as a blank entry".to_string(),
            }),
        }
    }

    /// Reads ahead, through the core's io_uring and without blocking it, what a client's
    /// filtered read (`read`) will read from the cold runs: the timestamp samples its bounds
    /// seek, then the account's cold list and the transfers its bounds' searches read, then
    /// the transfers and balances it names. Call it before [`Partition::read`] runs the read; the
    /// blocks stay in the partition's cache until the holds returned are dropped. Whatever it
    /// missed (a checkpoint made more cold meanwhile, a filter rejecting most of what it
    /// scans) the read reads blocking, as without it.
    pub async fn prefetch_read(&self, read: &ClientRead) -> ColdHolds {
        let cold = self.store.cold();
        let list = |ledger: &Ledger, round, out: &mut Vec<_>, ranges: &mut Vec<_>| {
            ledger.cold_ranges_of_read(read, round, ranges);
            ledger.cold_reads_of_read(read, round, out);
        };
        // Clients' reads come many at once: what they hold is bounded by the cache's capacity
        // (at least enough for one large read); what does not fit is read blocking.
        let held_max = cold.cache_capacity().max(READ_HELD_BLOCKS_MIN);
        let reads = (&*self.ledger, false, held_max, list);
        prefetch_rounds(self.partition, cold, &self.cold_apply, reads).await
    }

    /// Reads ahead, as [`Partition::prefetch_read`] does, the id runs' pages and blocks that
    /// a check of `command`'s ids against the ledger reads (`Ledger::local_transfers_leased`,
    /// before a batch is written here alone), and the cold transfers of its ids still in
    /// memory: the check then reads no disk, and while the holds returned are kept the
    /// apply's own read-ahead finds them held.
    pub async fn prefetch_ids(&self, command: &Command) -> ColdHolds {
        let cold = self.store.cold();
        let list = |ledger: &Ledger, round, out: &mut Vec<_>, _: &mut Vec<_>| {
            if round == ColdReads::Ids {
                ledger.cold_reads(command, round, out);
            }
        };
        let held_max = cold.cache_capacity().max(READ_HELD_BLOCKS_MIN);
        let reads = (&*self.ledger, true, held_max, list);
        prefetch_rounds(self.partition, cold, &self.cold_apply, reads).await
    }

    /// Runs `read` on the applied ledger state. On this single voter, that state includes
    /// every write acknowledged so far.
    pub fn read<R>(&self, read: impl FnOnce(&Ledger) -> R) -> R {
        read(&self.ledger.borrow())
    }

    /// Where the Raft group stands. Reads openraft's metrics without awaiting.
    pub fn status(&self) -> PartitionStatus {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        PartitionStatus {
            partition: self.partition,
            term: metrics.current_term,
            leader: metrics.state == ServerState::Leader,
            fatal: metrics
                .running_state
                .as_ref()
                .err()
                .map(ToString::to_string),
            last_log_index: metrics.last_log_index,
            applied_index: metrics.last_applied.map(|id| id.index),
            applied_term: metrics.last_applied.map(|id| id.leader_id.term),
            snapshot_index: metrics.snapshot.map(|id| id.index),
            purged_index: metrics.purged.map(|id| id.index),
            cold_prefetched_blocks: self.cold_apply.prefetched_blocks.get(),
            cold_blocking_reads: self.cold_apply.blocking_reads.get(),
        }
    }

    /// What the partition holds and did, for the node's `/metrics`: its status, memtable,
    /// runs and cache.
    pub fn metrics(&self) -> PartitionMetrics {
        let (memtable_bytes, transfers, transfers_in_memory, accounts) = {
            let ledger = self.ledger.borrow();
            let transfers = ledger.transfers();
            (
                ledger.memtable_bytes(),
                transfers.len() as u64,
                transfers.count_in_memory() as u64,
                ledger.accounts().len() as u64,
            )
        };
        self.memtable.publish(memtable_bytes);
        PartitionMetrics {
            status: self.status(),
            store: self.store.status(),
            memtable_bytes,
            transfers,
            transfers_in_memory,
            accounts,
            memory_checkpoint_asks: self.memory_checkpoint_asks.get(),
            memory_waits: self.memory_waits.get(),
            failed: self.failure().is_some(),
        }
    }

    /// Takes a checkpoint covering everything applied, when enough log was written since the
    /// last one, and waits for it at most `STOP_CHECKPOINT_WAIT_MS`. A failure here only
    /// costs the next start its replay: it is logged, and the stop goes on.
    async fn checkpoint_before_stop(&self) {
        let Some(applied) = self.begin_stop_checkpoint().await else {
            return;
        };
        for waited in 0..STOP_CHECKPOINT_WAIT_MS / 10 {
            if self.stop_checkpoint_done(applied) {
                return;
            }
            if waited % 10 == 9 {
                self.renew_stop_checkpoint().await;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        let partition = self.partition;
        tracing::warn!(
            partition,
            applied,
            "the checkpoint before the stop did not finish in time"
        );
    }

    /// Asks for a checkpoint covering everything applied when the log since the last one is
    /// long enough to be worth it (`STOP_CHECKPOINT_LOG_BYTES`, or a quarter of
    /// `snapshot_entries`); returns the index it will cover, to wait for with
    /// [`Partition::stop_checkpoint_done`]. A node stopping asks all its partitions first and
    /// then waits for them together, so that the checkpoints are written at once.
    pub async fn begin_stop_checkpoint(&self) -> Option<u64> {
        let partition = self.partition;
        let status = self.status();
        if status.fatal.is_some() {
            return None;
        }
        let applied = status.applied_index.unwrap_or(0);
        let behind = applied.saturating_sub(status.snapshot_index.unwrap_or(0));
        let written = self.written_since_snapshot.get();
        if behind == 0
            || (behind < self.stop_checkpoint_entries && written < STOP_CHECKPOINT_LOG_BYTES)
        {
            return None;
        }
        self.written_since_snapshot.set(0);
        if let Err(error) = self.raft.trigger().snapshot().await {
            tracing::warn!(partition, %error, "no checkpoint before the stop");
            return None;
        }
        Some(applied)
    }

    /// Asks again for the checkpoint before the stop: a request made while another
    /// checkpoint was being written is dropped, and that one may not cover everything
    /// applied. Called every 100 ms of the wait.
    pub async fn renew_stop_checkpoint(&self) {
        if let Err(error) = self.raft.trigger().snapshot().await {
            let partition = self.partition;
            tracing::warn!(partition, %error, "no checkpoint before the stop");
        }
    }

    /// Whether a checkpoint covers `applied` (logged once it does).
    pub fn stop_checkpoint_done(&self, applied: u64) -> bool {
        let done = self.status().snapshot_index >= Some(applied);
        if done {
            let partition = self.partition;
            tracing::info!(partition, applied, "checkpoint taken before the stop");
        }
        done
    }

    /// The fault that stopped this partition's Raft core (a log write or sync that failed, a
    /// damaged entry), or `None` while it runs or once it was shut down on request.
    pub fn failure(&self) -> Option<String> {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow_watched();
        match &metrics.running_state {
            Ok(()) | Err(Fatal::Stopped) => None,
            Err(fatal) => Some(fatal.to_string()),
        }
    }

    /// Stops the Raft tasks after in-flight writes finish.
    pub async fn shutdown(self) -> Result<(), PartitionError> {
        self.checkpoint_before_stop().await;
        let Partition {
            partition,
            raft,
            ledger,
            log,
            alive,
            ..
        } = self;
        if let Err(error) = raft.shutdown().await {
            let what = error.to_string();
            return Err(PartitionError::Raft { partition, what });
        }
        drop((raft, ledger));
        for _ in 0..SHUTDOWN_WAIT_MS_MAX {
            if Rc::strong_count(&alive) == 1 && Rc::strong_count(&log) == 1 {
                let log = Rc::into_inner(log).expect("the last holder of the log");
                log.close()
                    .await
                    .map_err(|source| PartitionError::Storage { partition, source })?;
                tracing::info!(partition, "partition shut down");
                return Ok(());
            }
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        Err(PartitionError::Raft {
            partition,
            what: format!(
                "openraft tasks still hold the log {SHUTDOWN_WAIT_MS_MAX} ms after shutdown"
            ),
        })
    }
}
