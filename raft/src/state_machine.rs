//! openraft's state machine: the partition's [`Ledger`], applied entry by entry, and its
//! checkpoints (`checkpoint.rs`; docs/storage.md).
//!
//! The ledger lives in an `Rc<RefCell<Ledger>>` shared with `Partition::read`; every borrow
//! here is taken and released without an `.await` in between.
//!
//! What survives a restart is the latest checkpoint plus the log after it.
//! [`StateMachine::open`] restores that checkpoint itself (so that a damaged file is a typed
//! error, not an openraft storage error) and reports it as applied; openraft then re-applies
//! the log after it once the leader commits it. openraft also asks for the current snapshot at
//! every open, mostly for its meta: that answer names the partition's directory
//! ([`SnapshotData::File`]) instead of reading the checkpoint again.
//!
//! A checkpoint is taken when openraft asks for a snapshot (every `snapshot_entries` entries,
//! or 512 MiB of log): on the core, at once (a consistent view, since applying is
//! synchronous), the ledger hands over its hot state and what its keyspaces gained since the
//! last durable checkpoint; openraft's builder task then writes the runs and the manifest while
//! applying goes on. Only once the manifest is durable does openraft purge the log it covers.
//! The hot state must fit one durable file (`DURABLE_FILE_SIZE_MAX`, 1 GiB); the runs have no
//! such limit, so the log is purged at any size of history.
//!
//! A partition written by an earlier version holds a whole-ledger snapshot file (`snapshot`)
//! instead: it is restored from that, its first checkpoint is full, and the file is deleted
//! once that checkpoint is durable.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use kassa_shard::{
    Checkpoint, CheckpointCut, ColdRange, ColdReads, Keyspace, Ledger, LedgerConfig,
};
use kassa_storage::durable_file::{self, DURABLE_FILE_SIZE_MAX};
use kassa_storage::run::{Holds, PageBudget};
use kassa_storage::StorageError;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};

use crate::checkpoint::{self, CheckpointError, CheckpointHead};
use crate::codec;
use crate::cold_runs::ColdRuns;
use crate::memory::MemtableGauge;
use crate::metrics::{KeyspaceStatus, StoreStatus};
use crate::types::{
    Applied, CommandBytes, Entry, LogId, Payload, Snapshot, SnapshotData, SnapshotMeta,
    StoredMembership, TypeConfig,
};
use crate::PartitionError;

/// The whole-ledger snapshot file of earlier versions.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";
/// Room left in a durable file for the manifest beside the hot state.
const HOT_STATE_MARGIN: u64 = 64 << 20;

/// What the partition's directory holds durably, shared with the builders.
#[derive(Default)]
struct Stored {
    /// The last durable checkpoint.
    checkpoint: Option<CheckpointHead>,
    /// The meta of an earlier version's snapshot file, until the first checkpoint.
    legacy: Option<SnapshotMeta>,
    /// The runs the ledger reads its cold entries from: those `checkpoint` names.
    cold: Arc<ColdRuns>,
}

impl Stored {
    fn meta(&self) -> Option<&SnapshotMeta> {
        self.checkpoint
            .as_ref()
            .map(|head| &head.meta)
            .or(self.legacy.as_ref())
    }

    /// The cut the next checkpoint starts from: nothing is in runs before the first.
    fn cut(&self) -> CheckpointCut {
        self.checkpoint
            .as_ref()
            .map(|head| head.cut)
            .unwrap_or_default()
    }
}

/// What a partition's directory holds durably, seen from its `Partition`.
pub(crate) struct StoreView(Rc<RefCell<Stored>>);

impl StoreView {
    /// The runs the ledger reads its cold entries from now.
    pub(crate) fn cold(&self) -> Arc<ColdRuns> {
        self.0.borrow().cold.clone()
    }

    /// The last durable checkpoint's runs by keyspace, and the cold runs' cache.
    pub(crate) fn status(&self) -> StoreStatus {
        let stored = self.0.borrow();
        let mut keyspaces: Vec<KeyspaceStatus> = Vec::new();
        let runs = stored.checkpoint.iter().flat_map(|head| head.runs.iter());
        for run in runs {
            let name = run.keyspace.name();
            let at = match keyspaces.iter().position(|status| status.keyspace == name) {
                Some(at) => at,
                None => {
                    keyspaces.push(KeyspaceStatus {
                        keyspace: name,
                        memory_bytes: stored.cold.memory_bytes(run.keyspace),
                        ..KeyspaceStatus::default()
                    });
                    keyspaces.len() - 1
                }
            };
            let status = &mut keyspaces[at];
            status.runs += 1;
            status.keys += run.keys;
            status.files.push(run.file_name());
        }
        StoreStatus {
            checkpoint: stored.checkpoint.as_ref().map(|head| head.number),
            keyspaces,
            cache: stored.cold.cache_stats(),
        }
    }
}

/// Blocks read ahead for one reader (an apply, a client's read), held in the partition's
/// cache until this is dropped.
pub struct ColdHolds {
    cold: Arc<ColdRuns>,
    holds: Holds,
}

impl Drop for ColdHolds {
    fn drop(&mut self) {
        self.cold
            .release_prefetched(std::mem::take(&mut self.holds));
    }
}

/// What a reader of the ledger reads ahead: the ledger, whether a round of ids that read
/// nothing ends it (none passed a filter), the most blocks the cache may hold for all
/// readers, and the listing of each round: its entries and its key ranges.
type Reads<'a, L> = (&'a RefCell<Ledger>, bool, usize, L);

/// Reads ahead, in [`ColdReads`]' rounds, what `list` names (entries and key ranges) through
/// the core's io_uring, each round listed once the one before is held; counts the blocks in
/// `stats`. A failed read is logged: the reader's own read then fails the same way.
pub(crate) async fn prefetch_rounds<L>(
    partition: u32,
    cold: Arc<ColdRuns>,
    stats: &ColdApplyStats,
    (ledger, stop_early, held_max, list): Reads<'_, L>,
) -> ColdHolds
where
    L: Fn(&Ledger, ColdReads, &mut Vec<(Keyspace, u128)>, &mut Vec<ColdRange>),
{
    // Held from the start: dropped midway (the reader gone), it releases what it holds.
    let mut held = ColdHolds {
        cold,
        holds: Holds::new(),
    };
    let (cold, holds) = (held.cold.clone(), &mut held.holds);
    let (mut wanted, mut ranges) = (Vec::new(), Vec::new());
    // A read's timestamp samples first; then the ids (and a read's lists); then, their
    // blocks held, the transfers at the positions they name: none when no id run's filter
    // let an id through (every new id, mostly).
    for round in [ColdReads::Timestamps, ColdReads::Ids, ColdReads::Transfers] {
        wanted.clear();
        ranges.clear();
        list(&ledger.borrow(), round, &mut wanted, &mut ranges);
        if wanted.is_empty() && ranges.is_empty() {
            continue;
        }
        let read = match cold.prefetch(&wanted, holds, held_max).await {
            Ok(blocks) => {
                let more = cold.prefetch_ranges(&ranges, holds, held_max).await;
                more.map(|more| blocks + more)
            }
            Err(error) => Err(error),
        };
        match read {
            Ok(0) if stop_early && round == ColdReads::Ids => break,
            Ok(blocks) => {
                let prefetched = &stats.prefetched_blocks;
                prefetched.set(prefetched.get() + blocks as u64);
            }
            Err(error) => {
                tracing::error!(partition, %error, "a prefetch of cold entries failed");
                break;
            }
        }
    }
    held
}

/// The state machine the Raft core's worker task owns.
pub(crate) struct StateMachine {
    partition: u32,
    dir: PathBuf,
    ledger_config: LedgerConfig,
    ledger: Rc<RefCell<Ledger>>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    stored: Rc<RefCell<Stored>>,
    /// Counts the ledgers installed from snapshots: a builder taken from an earlier one
    /// leaves the new one alone.
    generation: Rc<Cell<u64>>,
    /// Held while a checkpoint is written: a builder runs in a task of its own, and an
    /// install may come meanwhile; their runs and manifests must not interleave.
    writing: Rc<WriteLock>,
    alive: Rc<()>,
    cold_apply: Rc<ColdApplyStats>,
    /// How the cold runs are opened (a new cache comes with the runs of an install).
    cold: ColdConfig,
    /// The memtable's share of the node's memory budget, published as checkpoints free it.
    memtable: Rc<MemtableGauge>,
}

/// How a partition's cold runs are opened: the blocks of their cache, and the node's bound on
/// the index and filter pages runs keep.
struct ColdConfig {
    cache_blocks: usize,
    pages: Arc<PageBudget>,
}

impl ColdConfig {
    fn empty(&self) -> ColdRuns {
        ColdRuns::new(self.cache_blocks, self.pages.clone())
    }

    async fn open(&self, dir: &Path, head: &CheckpointHead) -> Result<ColdRuns, StorageError> {
        ColdRuns::open(dir, head, self.cache_blocks, self.pages.clone()).await
    }
}

/// What applying entries did with cold entries, since the partition opened.
#[derive(Debug, Default)]
pub(crate) struct ColdApplyStats {
    /// Run blocks read ahead of an apply (or found cached and held for it).
    pub(crate) prefetched_blocks: Cell<u64>,
    /// Blocks an apply read with a blocking read: what no prefetch listed (an account's
    /// transfers or a query inside a wire request, an imported event's timestamp check), or
    /// what a checkpoint made cold between the prefetch and the apply.
    pub(crate) blocking_reads: Cell<u64>,
}

type WriteLock = futures_util::lock::Mutex<()>;

/// A checkpoint, taken when openraft asked for a snapshot, and the writes to come.
pub(crate) struct SnapshotBuilder {
    partition: u32,
    dir: PathBuf,
    meta: SnapshotMeta,
    checkpoint: Checkpoint,
    stored: Rc<RefCell<Stored>>,
    ledger: Rc<RefCell<Ledger>>,
    generation: Rc<Cell<u64>>,
    taken_in: u64,
    writing: Rc<WriteLock>,
    memtable: Rc<MemtableGauge>,
    _alive: Rc<()>,
}

fn storage_error(error: kassa_storage::StorageError) -> io::Error {
    io::Error::other(error)
}

fn checkpoint_error(error: CheckpointError) -> io::Error {
    match error {
        CheckpointError::Storage(error) => storage_error(error),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

/// The ledger a directory's checkpoint holds (or its earlier version's snapshot file), with
/// what is stored there.
async fn load(
    dir: &Path,
    config: LedgerConfig,
    cold: &ColdConfig,
) -> Result<Option<(Ledger, Stored)>, CheckpointError> {
    if let Some((head, hot)) = checkpoint::read_manifest(dir).await? {
        let cold = Arc::new(cold.open(dir, &head).await?);
        let ledger = checkpoint::restore(dir, config, &head, &hot, cold.clone()).await?;
        let stored = Stored {
            checkpoint: Some(head),
            legacy: None,
            cold,
        };
        return Ok(Some((ledger, stored)));
    }
    let Some(bytes) = durable_file::read(dir, SNAPSHOT_FILE).await? else {
        return Ok(None);
    };
    let (meta, bytes) = codec::decode_snapshot(bytes)?;
    let mut ledger = Ledger::restore(config, &bytes)?;
    let stored = Stored {
        checkpoint: None,
        legacy: Some(meta),
        cold: Arc::new(cold.empty()),
    };
    ledger.attach_cold_store(stored.cold.clone());
    Ok(Some((ledger, stored)))
}

/// A new partition's empty ledger, whose checkpoints' cold entries will leave memory.
fn empty(config: LedgerConfig, cold: &ColdConfig) -> (Ledger, Stored) {
    let mut ledger = Ledger::new(config);
    let stored = Stored {
        cold: Arc::new(cold.empty()),
        ..Stored::default()
    };
    ledger.attach_cold_store(stored.cold.clone());
    (ledger, stored)
}

impl StateMachine {
    /// Restores the ledger from the checkpoint in `dir`, or starts an empty one.
    pub(crate) async fn open(
        partition: u32,
        dir: &Path,
        ledger_config: LedgerConfig,
        cache_blocks: usize,
        memtable: Rc<MemtableGauge>,
        alive: Rc<()>,
    ) -> Result<StateMachine, PartitionError> {
        let cold = ColdConfig {
            cache_blocks,
            pages: memtable.budget().pages().clone(),
        };
        let loaded = load(dir, ledger_config, &cold)
            .await
            .map_err(|error| open_error(partition, error))?;
        let (ledger, stored) = loaded.unwrap_or_else(|| empty(ledger_config, &cold));
        memtable.publish(ledger.memtable_bytes());
        let removed = checkpoint::remove_unnamed_runs(dir, stored.checkpoint.as_ref())
            .await
            .map_err(|source| PartitionError::Storage { partition, source })?;
        if removed > 0 {
            tracing::info!(partition, removed, "runs no checkpoint names were deleted");
        }
        let applied = stored.meta().cloned().unwrap_or_default();
        Ok(StateMachine {
            partition,
            dir: dir.to_path_buf(),
            ledger_config,
            ledger: Rc::new(RefCell::new(ledger)),
            last_applied: applied.last_log_id,
            last_membership: applied.last_membership,
            stored: Rc::new(RefCell::new(stored)),
            generation: Rc::new(Cell::new(0)),
            writing: Rc::new(WriteLock::new(())),
            alive,
            cold_apply: Rc::default(),
            cold,
            memtable,
        })
    }

    /// What applying entries did with cold entries, shared with `Partition::status`.
    pub(crate) fn cold_apply_stats(&self) -> Rc<ColdApplyStats> {
        self.cold_apply.clone()
    }

    /// The last log index the restored state covers, if any.
    pub(crate) fn last_applied_index(&self) -> Option<u64> {
        self.last_applied.map(|id| id.index)
    }

    /// The ledger, shared with `Partition::read`.
    pub(crate) fn ledger(&self) -> Rc<RefCell<Ledger>> {
        self.ledger.clone()
    }

    /// What the partition's directory holds, for `Partition::status`.
    pub(crate) fn store_view(&self) -> StoreView {
        StoreView(self.stored.clone())
    }

    /// A consistent view: the checkpoint is taken here, before any further entry applies.
    fn snapshot_builder(&self) -> SnapshotBuilder {
        let since = self.stored.borrow().cut();
        let checkpoint = self.ledger.borrow_mut().checkpoint(since);
        SnapshotBuilder {
            partition: self.partition,
            dir: self.dir.clone(),
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
            },
            checkpoint,
            stored: self.stored.clone(),
            ledger: self.ledger.clone(),
            generation: self.generation.clone(),
            taken_in: self.generation.get(),
            writing: self.writing.clone(),
            memtable: self.memtable.clone(),
            _alive: self.alive.clone(),
        }
    }

    async fn apply_entry(&mut self, entry: Entry) -> Applied {
        let log_id = entry.log_id;
        assert!(
            Some(log_id) > self.last_applied,
            "entries apply in log order"
        );
        self.last_applied = Some(log_id);
        match entry.payload {
            Payload::Blank => Applied::Nothing,
            Payload::Normal(command) => self.apply_command(&command, log_id).await,
            Payload::Membership(membership) => {
                self.last_membership = StoredMembership::new(Some(log_id), membership);
                Applied::Nothing
            }
        }
    }

    /// Applies a command, having read ahead the cold entries it may read
    /// (`Ledger::cold_reads`) so that the apply does not block the core on the disk.
    async fn apply_command(&mut self, command: &CommandBytes, log_id: LogId) -> Applied {
        match command.take_command() {
            Ok(command) => {
                let held = self.prefetch(&command).await;
                let misses = held.cold.cache_stats().misses;
                let reply = self.ledger.borrow_mut().apply(command);
                let blocking = held.cold.cache_stats().misses - misses;
                drop(held);
                let stats = &self.cold_apply;
                stats
                    .blocking_reads
                    .set(stats.blocking_reads.get() + blocking);
                Applied::Reply(reply)
            }
            Err(error) => {
                let (partition, index) = (self.partition, log_id.index);
                tracing::warn!(partition, index, %error, "log entry is not a command");
                Applied::Rejected(error)
            }
        }
    }

    /// Reads ahead what applying `command` may read from the cold runs; returns the blocks
    /// held for it. A failed read is logged: the apply's own read then fails the same way and
    /// stops the partition.
    async fn prefetch(&self, command: &kassa_shard::Command) -> ColdHolds {
        let cold = self.stored.borrow().cold.clone();
        let list = |ledger: &Ledger, round, out: &mut Vec<_>, ranges: &mut Vec<_>| {
            ledger.cold_ranges(command, round, ranges);
            ledger.cold_reads(command, round, out);
        };
        let stop_early = !command.reads_by_filter();
        // An apply runs alone in its partition, its reads bounded by its batch.
        let reads = (&*self.ledger, stop_early, usize::MAX, list);
        prefetch_rounds(self.partition, cold, &self.cold_apply, reads).await
    }

    /// Makes `ledger`, installed as of `meta`, the partition's state, and a full checkpoint
    /// of it durable before this returns, so the log openraft then purges is never needed
    /// again. A builder taken from the ledger before abandons its checkpoint.
    async fn replace_ledger(&mut self, meta: &SnapshotMeta, ledger: Ledger) -> io::Result<()> {
        self.generation.set(self.generation.get() + 1);
        *self.ledger.borrow_mut() = ledger;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        let _writing = self.writing.lock().await;
        let checkpoint = self
            .ledger
            .borrow_mut()
            .checkpoint(CheckpointCut::default());
        let previous = self.stored.borrow().checkpoint.clone();
        let written = checkpoint::write(
            &self.dir,
            previous.as_ref(),
            true,
            meta.clone(),
            &checkpoint,
            &self.ledger,
            || true,
        )
        .await
        .map_err(storage_error)?;
        let checkpoint::Written::Durable(head) = written else {
            unreachable!("nothing replaces the ledger while it is installed");
        };
        // The ledger read its cold entries from the runs it was installed from; from now on
        // it reads them from this directory's, which hold all of them.
        let cold = self.cold.open(&self.dir, &head).await;
        let cold = Arc::new(cold.map_err(storage_error)?);
        {
            let mut ledger = self.ledger.borrow_mut();
            ledger.attach_cold_store(cold.clone());
            ledger.checkpoint_durable(checkpoint.cut);
            self.memtable.publish_freed(ledger.memtable_bytes());
        }
        *self.stored.borrow_mut() = Stored {
            checkpoint: Some(head),
            legacy: None,
            cold,
        };
        if let Err(error) = remove_legacy_snapshot(&self.dir).await {
            let partition = self.partition;
            tracing::warn!(partition, %error, "the replaced snapshot file is left behind");
        }
        Ok(())
    }
}

/// What keeps a partition from opening, by what failed.
fn open_error(partition: u32, error: CheckpointError) -> PartitionError {
    match error {
        CheckpointError::Storage(source) => PartitionError::Storage { partition, source },
        CheckpointError::Manifest(source) => PartitionError::Damaged {
            partition,
            file: checkpoint::CHECKPOINT_FILE,
            source,
        },
        CheckpointError::Ledger(source) => PartitionError::Snapshot { partition, source },
    }
}

/// Deletes an earlier version's snapshot file once a checkpoint replaced it.
async fn remove_legacy_snapshot(dir: &Path) -> io::Result<()> {
    let path = dir.join(SNAPSHOT_FILE);
    if !path.exists() {
        return Ok(());
    }
    kassa_storage::run::remove(&path)
        .await
        .map_err(storage_error)
}

impl SnapshotBuilder {
    /// The snapshot the directory holds now, for a builder whose checkpoint is not needed.
    fn current_snapshot(&self) -> Result<Snapshot, io::Error> {
        let meta = self.stored.borrow().meta().cloned();
        Ok(Snapshot {
            meta: meta.unwrap_or_else(|| self.meta.clone()),
            snapshot: SnapshotData::File(self.dir.clone()),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    /// Writes the checkpoint, unless the ledger it was taken from was replaced meanwhile or a
    /// newer checkpoint is durable already: the snapshot then is that newer one.
    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let writing = self.writing.clone();
        let _writing = writing.lock().await;
        let previous = self.stored.borrow().checkpoint.clone();
        let newer = previous
            .as_ref()
            .is_some_and(|head| head.meta.last_log_id >= self.meta.last_log_id);
        if self.generation.get() != self.taken_in || newer {
            return self.current_snapshot();
        }
        assert_eq!(
            previous.as_ref().map(|head| head.cut).unwrap_or_default(),
            self.checkpoint.since,
            "openraft builds one snapshot at a time"
        );
        let (generation, taken_in) = (self.generation.clone(), self.taken_in);
        let (partition, cut) = (self.partition, self.checkpoint.cut);
        let index = self.meta.last_log_id.map(|id| id.index);
        let transfers = cut.transfers - self.checkpoint.since.transfers;
        tracing::info!(
            partition,
            ?index,
            transfers,
            "checkpoint taken: writing its runs"
        );
        // Writes waiting for memory wait on while this is counted (`Partition::wait_for_memory`).
        let counted = self.memtable.budget().checkpoint_writing();
        let written = checkpoint::write(
            &self.dir,
            previous.as_ref(),
            false,
            self.meta.clone(),
            &self.checkpoint,
            &self.ledger,
            || generation.get() == taken_in,
        )
        .await
        .map_err(storage_error)?;
        let checkpoint::Written::Durable(head) = written else {
            return self.current_snapshot();
        };
        let (number, runs) = (head.number, head.runs.len());
        // Counted out once its memtable is freed below, not before: between the two, a
        // waiting write must not find no checkpoint written and memory still unfreed.
        tracing::info!(partition, ?index, number, runs, "checkpoint durable");
        let cold = self.stored.borrow().cold.clone();
        let followed = cold.follow(&self.dir, &head).await;
        self.stored.borrow_mut().checkpoint = Some(head);
        if self.generation.get() == self.taken_in {
            // Durable, read or not: the next checkpoint starts its runs from here.
            let cut = self.checkpoint.cut;
            self.ledger.borrow_mut().checkpoint_written(cut);
        }
        match followed {
            // The ledger's cold entries stay in memory until a later checkpoint's runs open.
            Err(error) => tracing::error!(
                partition,
                %error,
                "a durable checkpoint's runs do not open: its entries stay in memory"
            ),
            Ok(()) if self.generation.get() == self.taken_in => {
                let mut ledger = self.ledger.borrow_mut();
                ledger.checkpoint_durable(self.checkpoint.cut);
                self.memtable.publish_freed(ledger.memtable_bytes());
            }
            Ok(()) => {}
        }
        drop(counted);
        if self.stored.borrow_mut().legacy.take().is_some() {
            if let Err(error) = remove_legacy_snapshot(&self.dir).await {
                let partition = self.partition;
                tracing::warn!(partition, %error, "the replaced snapshot file is left behind");
            }
        }
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: SnapshotData::File(self.dir.clone()),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let applied = self.apply_entry(entry).await;
            if let Some(responder) = responder {
                responder.send(applied);
            }
        }
        Ok(())
    }

    /// Declines a periodic checkpoint whose hot state a durable file could not hold: the
    /// partition goes on serving, on a log that is no longer purged, instead of stopping on a
    /// failed write.
    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<SnapshotBuilder> {
        let builder = self.snapshot_builder();
        let size = builder.checkpoint.hot.len() as u64;
        if !force && size > DURABLE_FILE_SIZE_MAX - HOT_STATE_MARGIN {
            let partition = self.partition;
            tracing::error!(
                partition,
                size,
                "hot state larger than a durable file: checkpoint not taken"
            );
            return None;
        }
        Some(builder)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshot_builder()
    }

    /// Installs the checkpoint in a partition's directory: this one's (were it newer than the
    /// state), or one received into another directory, of which a full checkpoint is made
    /// durable here first; then the ledger is replaced.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let ledger = match snapshot {
            SnapshotData::File(dir) => {
                let loaded = load(&dir, self.ledger_config, &self.cold).await;
                let loaded = loaded.map_err(checkpoint_error)?.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "the checkpoint is gone")
                })?;
                let (ledger, stored) = loaded;
                if stored.meta() != Some(meta) {
                    return Err(io::Error::other(format!(
                        "{} holds {:?}, not the snapshot {meta} it was handed out as",
                        dir.display(),
                        stored.meta()
                    )));
                }
                if dir == self.dir {
                    let _writing = self.writing.lock().await;
                    self.generation.set(self.generation.get() + 1);
                    self.memtable.publish_freed(ledger.memtable_bytes());
                    *self.ledger.borrow_mut() = ledger;
                    *self.stored.borrow_mut() = stored;
                    self.last_applied = meta.last_log_id;
                    self.last_membership = meta.last_membership.clone();
                    return Ok(());
                }
                ledger
            }
        };
        self.replace_ledger(meta, ledger).await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let meta = self.stored.borrow().meta().cloned();
        Ok(meta.map(|meta| Snapshot {
            meta,
            snapshot: SnapshotData::File(self.dir.clone()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ledger_with_transfers, runtime, snapshot_of, TestDir};
    use crate::types::log_id;

    /// A state machine of partition 0 in `dir`, with the default cache and no memory bound.
    async fn open_machine(
        dir: &Path,
        config: LedgerConfig,
    ) -> Result<StateMachine, PartitionError> {
        let cache = crate::CACHE_BLOCKS_DEFAULT;
        StateMachine::open(
            0,
            dir,
            config,
            cache,
            MemtableGauge::unbounded(),
            Rc::new(()),
        )
        .await
    }

    /// A partition an earlier version wrote (a whole snapshot file) opens from that file; its
    /// first checkpoint is full and replaces the file; it then opens from the checkpoint.
    #[test]
    fn an_earlier_versions_snapshot_file_is_replaced_by_the_first_checkpoint() {
        let dir = TestDir::new("legacy");
        let dir = dir.path();
        let ledger = ledger_with_transfers(50);
        assert_eq!(ledger.transfers().len(), 50);
        let expected = snapshot_of(&ledger);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(1, 7)),
            last_membership: StoredMembership::default(),
        };
        runtime().block_on(async {
            let file = codec::encode_snapshot(&meta, &expected);
            durable_file::write(dir, SNAPSHOT_FILE, &file)
                .await
                .expect("legacy file");
            let config = LedgerConfig::default();
            let mut machine = open_machine(dir, config)
                .await
                .expect("opens from the snapshot file");
            assert_eq!(snapshot_of(&machine.ledger.borrow()), expected);
            let current = machine.get_current_snapshot().await.expect("current");
            assert_eq!(current.map(|snapshot| snapshot.meta), Some(meta.clone()));

            let mut builder = machine.get_snapshot_builder().await;
            assert_eq!(
                builder.checkpoint.since,
                CheckpointCut::default(),
                "the first is full"
            );
            let built = builder.build_snapshot().await.expect("checkpoint");
            assert_eq!(built.meta, meta);
            assert!(
                !dir.join(SNAPSHOT_FILE).exists(),
                "the snapshot file is replaced"
            );
            assert!(dir.join(checkpoint::CHECKPOINT_FILE).exists());
            drop(machine);

            let machine = open_machine(dir, config)
                .await
                .expect("opens from the checkpoint");
            assert_eq!(snapshot_of(&machine.ledger.borrow()), expected);
            assert_eq!(machine.last_applied_index(), Some(7));
        });
    }

    fn change_events(ledger: &Ledger) -> Vec<kassa_wire::ChangeEvent> {
        let mut events = Vec::new();
        let read = ledger.change_events(0, usize::MAX, &mut events);
        read.expect("change events");
        events
    }

    /// A checkpoint installed from another directory: the installing partition writes a full
    /// checkpoint of its own, reading the cold transfers and change entries from the other
    /// directory's runs (more than one chunk of the writer's), and from then on reads them
    /// from its own, so the other directory may go.
    #[test]
    fn an_install_from_another_directory_reads_its_cold_entries_and_then_its_own() {
        let (source_dir, target_dir) = (TestDir::new("install-from"), TestDir::new("install-to"));
        let ledger = ledger_with_transfers(20_000);
        let expected = snapshot_of(&ledger);
        let events = change_events(&ledger);
        assert!(events.len() > 20_000);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(1, 9)),
            last_membership: StoredMembership::default(),
        };
        let config = LedgerConfig::default();
        runtime().block_on(async {
            let file = codec::encode_snapshot(&meta, &expected);
            durable_file::write(source_dir.path(), SNAPSHOT_FILE, &file)
                .await
                .expect("snapshot file");
            let mut source = open_machine(source_dir.path(), config)
                .await
                .expect("opens");
            let mut builder = source.get_snapshot_builder().await;
            builder.build_snapshot().await.expect("checkpoint");
            assert_eq!(source.ledger.borrow().change_entries_in_memory(), 0);
            assert_eq!(change_events(&source.ledger.borrow()), events);
            drop(builder);
            drop(source);

            let mut target = open_machine(target_dir.path(), config)
                .await
                .expect("opens empty");
            let data = SnapshotData::File(source_dir.path().to_path_buf());
            target
                .install_snapshot(&meta, data)
                .await
                .expect("installs");
            assert_eq!(snapshot_of(&target.ledger.borrow()), expected);
            assert_eq!(target.ledger.borrow().change_entries_in_memory(), 0);
            assert_eq!(target.ledger.borrow().transfers_in_memory(), 0);
            std::fs::remove_dir_all(source_dir.path()).expect("the source goes");
            assert_eq!(change_events(&target.ledger.borrow()), events);
            drop(target);

            let target = open_machine(target_dir.path(), config)
                .await
                .expect("reopens");
            assert_eq!(snapshot_of(&target.ledger.borrow()), expected);
            assert_eq!(change_events(&target.ledger.borrow()), events);
            assert_eq!(target.last_applied_index(), Some(9));
        });
    }
}
