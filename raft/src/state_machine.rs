//! openraft's state machine: the partition's [`Ledger`], applied entry by entry, and its
//! snapshots in the durable file `snapshot`.
//!
//! The ledger lives in an `Rc<RefCell<Ledger>>` shared with `Partition::read`; every borrow
//! here is taken and released without an `.await` in between.
//!
//! The ledger is in memory only: what survives a restart is the latest snapshot plus the log
//! after it. [`StateMachine::open`] restores that snapshot itself (so that a damaged file is a
//! typed error, not an openraft storage error) and reports it as applied; openraft then
//! re-applies the log after it once the leader commits it. openraft also asks for the current
//! snapshot at every open, mostly for its meta: that answer names the file
//! ([`SnapshotData::File`]) instead of reading it again.
//!
//! A snapshot is taken when openraft asks (every `snapshot_entries` entries): the ledger is
//! serialized at once on the core (a consistent view, since applying is synchronous), and the
//! file is written by openraft's builder task while applying goes on. The file is replaced
//! atomically, and never by an older snapshot; only then does openraft purge the log it covers.
//! A snapshot must fit one durable file (`DURABLE_FILE_SIZE_MAX`, 1 GiB: some 8 million
//! transfers); past that, periodic snapshots are declined (logged as errors) and the log grows.
//! Whether a snapshot can fit is first told from the ledger's table sizes
//! (`Ledger::snapshot_size_at_least`), so a ledger past the limit is not copied only to be
//! declined.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures_util::{Stream, StreamExt};
use kassa_shard::{Ledger, LedgerConfig};
use kassa_storage::durable_file::{self, DURABLE_FILE_SIZE_MAX};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};

use crate::codec;
use crate::types::{
    Applied, CommandBytes, Entry, LogId, Payload, Snapshot, SnapshotData, SnapshotMeta,
    StoredMembership, TypeConfig,
};
use crate::PartitionError;

pub(crate) const SNAPSHOT_FILE: &str = "snapshot";

/// The state machine the Raft core's worker task owns.
pub(crate) struct StateMachine {
    partition: u32,
    dir: PathBuf,
    ledger_config: LedgerConfig,
    ledger: Rc<RefCell<Ledger>>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// The meta of the snapshot file on disk, shared with the builders.
    saved: Rc<RefCell<Option<SnapshotMeta>>>,
    alive: Rc<()>,
}

/// A view of the ledger taken when openraft asked for a snapshot, and the file write to come.
pub(crate) struct SnapshotBuilder {
    dir: PathBuf,
    meta: SnapshotMeta,
    ledger: Vec<u8>,
    saved: Rc<RefCell<Option<SnapshotMeta>>>,
    _alive: Rc<()>,
}

fn storage_error(error: kassa_storage::StorageError) -> io::Error {
    io::Error::other(error)
}

/// The last log id the saved snapshot covers.
fn saved_last_log_id(saved: &RefCell<Option<SnapshotMeta>>) -> Option<LogId> {
    saved.borrow().as_ref().and_then(|meta| meta.last_log_id)
}

/// Replaces the snapshot file with `meta` and `ledger`, unless it holds a newer one already.
async fn save_snapshot(
    dir: &Path,
    saved: &RefCell<Option<SnapshotMeta>>,
    meta: &SnapshotMeta,
    ledger: &[u8],
) -> Result<(), io::Error> {
    if saved_last_log_id(saved) >= meta.last_log_id {
        return Ok(());
    }
    let file = codec::encode_snapshot(meta, ledger);
    durable_file::write(dir, SNAPSHOT_FILE, &file)
        .await
        .map_err(storage_error)?;
    // Another write may have finished while this one was under way: keep the newer meta.
    if saved_last_log_id(saved) < meta.last_log_id {
        *saved.borrow_mut() = Some(meta.clone());
    }
    Ok(())
}

/// The ledger bytes of a snapshot that was handed out as `meta`.
async fn ledger_bytes(meta: &SnapshotMeta, data: SnapshotData) -> Result<Vec<u8>, io::Error> {
    let dir = match data {
        SnapshotData::Bytes(bytes) => return Ok(bytes),
        SnapshotData::File(dir) => dir,
    };
    let file = durable_file::read(&dir, SNAPSHOT_FILE)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the snapshot file is gone"))?;
    let (found, ledger) = codec::decode_snapshot(file)?;
    if &found != meta {
        return Err(io::Error::other(format!(
            "the snapshot file holds {found}, not the snapshot {meta} it was handed out as"
        )));
    }
    Ok(ledger)
}

impl StateMachine {
    /// Restores the ledger from the snapshot file in `dir`, or starts an empty one.
    pub(crate) async fn open(
        partition: u32,
        dir: &Path,
        ledger_config: LedgerConfig,
        alive: Rc<()>,
    ) -> Result<StateMachine, PartitionError> {
        let file = durable_file::read(dir, SNAPSHOT_FILE)
            .await
            .map_err(|source| PartitionError::Storage { partition, source })?;
        let (ledger, saved) = match file {
            None => (Ledger::new(ledger_config), None),
            Some(bytes) => {
                let (meta, ledger) =
                    codec::decode_snapshot(bytes).map_err(|source| PartitionError::Damaged {
                        partition,
                        file: SNAPSHOT_FILE,
                        source,
                    })?;
                let ledger = Ledger::restore(ledger_config, &ledger)
                    .map_err(|source| PartitionError::Snapshot { partition, source })?;
                (ledger, Some(meta))
            }
        };
        let applied = saved.clone().unwrap_or_default();
        Ok(StateMachine {
            partition,
            dir: dir.to_path_buf(),
            ledger_config,
            ledger: Rc::new(RefCell::new(ledger)),
            last_applied: applied.last_log_id,
            last_membership: applied.last_membership,
            saved: Rc::new(RefCell::new(saved)),
            alive,
        })
    }

    /// The ledger, shared with `Partition::read`.
    /// The last log index the restored state covers, if any.
    pub(crate) fn last_applied_index(&self) -> Option<u64> {
        self.last_applied.map(|id| id.index)
    }

    pub(crate) fn ledger(&self) -> Rc<RefCell<Ledger>> {
        self.ledger.clone()
    }

    /// A consistent view: the ledger is serialized here, before any further entry applies.
    fn snapshot_builder(&self) -> SnapshotBuilder {
        let mut ledger = Vec::new();
        self.ledger.borrow().snapshot(&mut ledger);
        SnapshotBuilder {
            dir: self.dir.clone(),
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.last_membership.clone(),
            },
            ledger,
            saved: self.saved.clone(),
            _alive: self.alive.clone(),
        }
    }

    fn apply_entry(&mut self, entry: Entry) -> Applied {
        let log_id = entry.log_id;
        assert!(
            Some(log_id) > self.last_applied,
            "entries apply in log order"
        );
        self.last_applied = Some(log_id);
        match entry.payload {
            Payload::Blank => Applied::Nothing,
            Payload::Normal(command) => self.apply_command(&command, log_id),
            Payload::Membership(membership) => {
                self.last_membership = StoredMembership::new(Some(log_id), membership);
                Applied::Nothing
            }
        }
    }

    fn apply_command(&mut self, command: &CommandBytes, log_id: LogId) -> Applied {
        match command.take_command() {
            Ok(command) => Applied::Reply(self.ledger.borrow_mut().apply(command)),
            Err(error) => {
                let (partition, index) = (self.partition, log_id.index);
                tracing::warn!(partition, index, %error, "log entry is not a command");
                Applied::Rejected(error)
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        save_snapshot(&self.dir, &self.saved, &self.meta, &self.ledger).await?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: SnapshotData::Bytes(std::mem::take(&mut self.ledger)),
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
            let applied = self.apply_entry(entry);
            if let Some(responder) = responder {
                responder.send(applied);
            }
        }
        Ok(())
    }

    /// Declines a periodic snapshot the snapshot file could not hold: the partition goes on
    /// serving, on a log that is no longer purged, instead of stopping on a failed write.
    /// The ledger's large tables tell first whether it can fit: one that cannot is declined
    /// without being copied (gigabytes, on the partition's core).
    async fn try_create_snapshot_builder(&mut self, force: bool) -> Option<SnapshotBuilder> {
        let partition = self.partition;
        let fits = |size: u64| {
            let fits = force || size <= DURABLE_FILE_SIZE_MAX;
            if !fits {
                tracing::error!(
                    partition,
                    size,
                    "snapshot larger than a durable file: not taken"
                );
            }
            fits
        };
        if !fits(self.ledger.borrow().snapshot_size_at_least()) {
            return None;
        }
        let builder = self.snapshot_builder();
        fits(codec::snapshot_size(&builder.meta, &builder.ledger) as u64).then_some(builder)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.snapshot_builder()
    }

    /// Installs a snapshot from a leader (or, were it newer than the state, from this
    /// partition's own file): the file is replaced first, then the ledger.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let bytes = ledger_bytes(meta, snapshot).await?;
        let ledger = Ledger::restore(self.ledger_config, &bytes)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        save_snapshot(&self.dir, &self.saved, meta, &bytes).await?;
        *self.ledger.borrow_mut() = ledger;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let saved = self.saved.borrow().clone();
        Ok(saved.map(|meta| Snapshot {
            meta,
            snapshot: SnapshotData::File(self.dir.clone()),
        }))
    }
}
