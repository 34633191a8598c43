//! A partition's checkpoints on disk (docs/storage.md): the runs of each keyspace under
//! `runs/` and the manifest, the durable file `checkpoint`, that names the live ones and holds
//! the ledger's hot state and the Raft meta the checkpoint covers.
//!
//! Order of a checkpoint: every new run is durable (written, fdatasynced, renamed into place,
//! its directory fsynced) before the manifest naming it replaces the old one; the manifest's
//! rename is the commit point; only then are runs it no longer names deleted, and only then may
//! openraft purge the log it covers. A crash at any step leaves the old manifest with every run
//! it names, plus perhaps runs nobody names, which the next open deletes.
//!
//! Run files are `<keyspace>-<checkpoint number, 20 digits>.run`. The state machine
//! (`state_machine.rs`) calls these on the partition's core.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kassa_shard::{
    Checkpoint, CheckpointCursor, CheckpointCut, CheckpointRestore, ColdStore, Keyspace,
    KeyspaceIncrement, Ledger, LedgerConfig, SnapshotError,
};
use kassa_storage::durable_file;
use kassa_storage::run::{Run, RunOptions, RunWriter};
use kassa_storage::StorageError;

use crate::codec::{self, CodecError};
use crate::types::SnapshotMeta;
pub(crate) use crate::types::{run_file_name, CheckpointHead, RunEntry};

/// The manifest's durable file name.
pub(crate) const CHECKPOINT_FILE: &str = "checkpoint";
/// The directory of the runs, inside the partition's.
pub(crate) const RUNS_DIR: &str = "runs";

/// Why a checkpoint could not be read back into a ledger.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("the manifest is damaged: {0}")]
    Manifest(#[from] CodecError),
    #[error("{0}")]
    Ledger(#[from] SnapshotError),
}

/// The manifest in `dir`, if a checkpoint was ever made there.
pub(crate) async fn read_manifest(
    dir: &Path,
) -> Result<Option<(CheckpointHead, Vec<u8>)>, CheckpointError> {
    let Some(bytes) = durable_file::read(dir, CHECKPOINT_FILE).await? else {
        return Ok(None);
    };
    Ok(Some(codec::decode_checkpoint(bytes)?))
}

/// Rebuilds the ledger a manifest describes from its hot state and its runs. The entries of
/// cold keyspaces are not read (the transfers still pending are read back from the store):
/// the ledger reads them from `cold` when asked. A directory written before ids and account
/// lists had runs of their own (checkpoint format 1) has its transfer runs read, to rebuild
/// both in memory; its next checkpoint writes them all.
pub(crate) async fn restore(
    dir: &Path,
    config: LedgerConfig,
    head: &CheckpointHead,
    hot: &[u8],
    cold: Arc<dyn ColdStore>,
) -> Result<Ledger, CheckpointError> {
    let mut restore = CheckpointRestore::new(config, hot)?.with_cold_store(cold);
    for keyspace in Keyspace::ALL {
        if !restore.reads(keyspace) {
            continue;
        }
        for entry in head.runs.iter().filter(|run| run.keyspace == keyspace) {
            let run = open_run(dir, entry).await?;
            let mut refused = None;
            run.scan(0, u128::MAX, |key, value| {
                refused = restore.push(keyspace, key, value).err();
                refused.is_none()
            })
            .await?;
            if let Some(error) = refused {
                return Err(error.into());
            }
        }
    }
    let (ledger, cut) = restore.finish()?;
    if (cut.transfers, cut.change_sequence) != (head.cut.transfers, head.cut.change_sequence) {
        return Err(SnapshotError::Inconsistent(
            "the ledger restored is not the one the manifest covers".to_string(),
        )
        .into());
    }
    Ok(ledger)
}

/// Opens the run `entry` names in `dir`'s runs and checks that it is that run.
pub(crate) async fn open_run(dir: &Path, entry: &RunEntry) -> Result<Run, StorageError> {
    let path = runs_dir(dir).join(entry.file_name());
    let run = Run::open(&path).await?;
    let footer = run.footer();
    if footer.keys != entry.keys
        || run.value_size() != entry.keyspace.value_size()
        || (footer.first_key, footer.last_key) != (entry.first_key, entry.last_key)
    {
        return Err(StorageError::Corrupt {
            path,
            offset: 0,
            what: "run does not match its manifest entry",
        });
    }
    Ok(run)
}

/// Entries read from the ledger between two writes of a run.
const CHUNK_ENTRIES: usize = 8192;

/// What became of a checkpoint's writing.
pub(crate) enum Written {
    Durable(CheckpointHead),
    /// The ledger was replaced while its runs were written (a snapshot was installed): the
    /// checkpoint no longer describes it. What was written is deleted at the next open.
    Abandoned,
}

/// Writes a checkpoint: its runs, read from `ledger` chunk by chunk while `current` says it is
/// still the ledger the checkpoint was taken from, then the manifest naming them with the runs
/// of `previous` still live (all of them unless `replace`, which starts a new chain, as after
/// a snapshot was installed), then deletes the runs no longer named.
pub(crate) async fn write(
    dir: &Path,
    previous: Option<&CheckpointHead>,
    replace: bool,
    meta: SnapshotMeta,
    checkpoint: &Checkpoint,
    ledger: &RefCell<Ledger>,
    current: impl Fn() -> bool,
) -> Result<Written, StorageError> {
    let number = previous.map_or(1, |head| head.number + 1);
    let runs = runs_dir(dir);
    create_dir(&runs).await?;
    let kept = previous
        .filter(|_| !replace)
        .map(|head| head.runs.clone())
        .unwrap_or_default();
    let released = checkpoint.changes_released_below;
    let (mut live, dropped): (Vec<RunEntry>, Vec<RunEntry>) = kept
        .into_iter()
        .partition(|run| run.keyspace != Keyspace::Changes || run.last_key >= released.into());
    for keyspace in Keyspace::ALL {
        let source = Source {
            checkpoint,
            ledger,
            current: &current,
        };
        match write_run(&runs, number, keyspace, source).await? {
            RunWritten::Entry(entry) => live.push(entry),
            RunWritten::Empty => {}
            RunWritten::Abandoned => return Ok(Written::Abandoned),
        }
    }
    let head = CheckpointHead {
        number,
        meta,
        cut: CheckpointCut {
            status_changes: 0,
            ..checkpoint.cut
        },
        runs: live,
    };
    let manifest = codec::encode_checkpoint(&head, &checkpoint.hot);
    durable_file::write(dir, CHECKPOINT_FILE, &manifest).await?;
    let mut gone = dropped;
    if replace {
        gone.extend(previous.map(|head| head.runs.clone()).unwrap_or_default());
    }
    // The checkpoint is durable: a run that cannot be deleted now is only space, and the next
    // open deletes every run no manifest names.
    for run in gone {
        let path = runs.join(run.file_name());
        if let Err(error) = kassa_storage::run::remove(&path).await {
            tracing::warn!(%error, "a run no checkpoint names is left for the next open");
        }
    }
    Ok(Written::Durable(head))
}

/// The seed of id runs' filters: fixed, so that replicas holding the same ids write the same
/// runs.
const ID_FILTER_SEED: u64 = 0x6b61_7373_615f_6964;

/// Gives the core's other tasks their turn once.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        context.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Where a run's entries come from.
struct Source<'a, F: Fn() -> bool> {
    checkpoint: &'a Checkpoint,
    ledger: &'a RefCell<Ledger>,
    current: &'a F,
}

enum RunWritten {
    Entry(RunEntry),
    Empty,
    Abandoned,
}

/// Writes one keyspace's entries as a run, if it has any. The ledger is borrowed for each
/// chunk only, never across a write.
async fn write_run<F: Fn() -> bool>(
    runs: &Path,
    number: u64,
    keyspace: Keyspace,
    source: Source<'_, F>,
) -> Result<RunWritten, StorageError> {
    let mut chunk = KeyspaceIncrement::new(keyspace);
    let mut cursor = CheckpointCursor::default();
    let mut writer: Option<RunWriter> = None;
    let (mut first_key, mut last_key) = (None, 0);
    loop {
        if !(source.current)() {
            return Ok(RunWritten::Abandoned);
        }
        let read = source.ledger.borrow().checkpoint_entries(
            source.checkpoint,
            &mut cursor,
            &mut chunk,
            CHUNK_ENTRIES,
        );
        let more = read.map_err(|error| StorageError::Io {
            operation: "read the cold entries a checkpoint writes",
            path: runs.to_path_buf(),
            source: std::io::Error::other(error),
        })?;
        let Some(&last) = chunk.keys.last() else {
            if !more {
                break;
            }
            // Work without entries (ids being sorted): the applies get their turn.
            YieldNow(false).await;
            continue;
        };
        first_key = first_key.or(chunk.keys.first().copied());
        last_key = last;
        if writer.is_none() {
            let name = run_file_name(keyspace, number);
            // Keys that are positions and sequences are found by range: no filter. Ids are
            // looked up, most of them absent (every new id is).
            let options = RunOptions {
                value_size: keyspace.value_size(),
                keys_expected: match keyspace {
                    Keyspace::TransferIds => source.checkpoint.transfer_ids(),
                    _ => 0,
                },
                filter_bits_per_key: keyspace.filter_bits_per_key(),
                filter_seed: ID_FILTER_SEED,
            };
            writer = Some(RunWriter::create(runs, &name, options).await?);
        }
        let run = writer.as_mut().expect("created");
        run.push_all(&chunk.keys, &chunk.values).await?;
        // A run's buffer holds many chunks: the applies get their turn after each, not only
        // when a buffer goes to the disk (a core otherwise stalled for tens of milliseconds).
        YieldNow(false).await;
    }
    let (Some(writer), Some(first_key)) = (writer, first_key) else {
        return Ok(RunWritten::Empty);
    };
    let footer = writer.finish().await?;
    Ok(RunWritten::Entry(RunEntry {
        keyspace,
        number,
        keys: footer.keys,
        first_key,
        last_key,
    }))
}

/// Deletes the files under `runs/` that `head` does not name (runs of a checkpoint that never
/// became durable, runs a crash kept from deletion, temporary files).
pub(crate) async fn remove_unnamed_runs(
    dir: &Path,
    head: Option<&CheckpointHead>,
) -> Result<usize, StorageError> {
    let runs = runs_dir(dir);
    let entries = match std::fs::read_dir(&runs) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => {
            return Err(StorageError::Io {
                operation: "list runs",
                path: runs,
                source: error,
            })
        }
    };
    let named: Vec<String> = head
        .map(|head| head.runs.iter().map(RunEntry::file_name).collect())
        .unwrap_or_default();
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|source| StorageError::Io {
            operation: "list runs",
            path: runs.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !named.contains(&name) {
            kassa_storage::run::remove(&entry.path()).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn runs_dir(dir: &Path) -> PathBuf {
    dir.join(RUNS_DIR)
}

/// Creates the runs' directory once, durably.
async fn create_dir(runs: &Path) -> Result<(), StorageError> {
    if runs.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(runs).map_err(|source| StorageError::Io {
        operation: "create directory",
        path: runs.to_path_buf(),
        source,
    })?;
    let parent = runs.parent().expect("runs live in a partition's directory");
    kassa_storage::run::sync_directory(parent).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ledger_with_transfers as ledger, runtime, snapshot_of, TestDir};
    use crate::types::log_id;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(log_id(1, index)),
            ..SnapshotMeta::default()
        }
    }

    /// A checkpoint abandoned halfway (its ledger was replaced) leaves the previous one whole:
    /// the partition restores that one, and what the abandoned one wrote is deleted at open.
    #[test]
    fn an_abandoned_checkpoint_leaves_the_previous_one_whole() {
        let dir = TestDir::new("abandon");
        let dir = dir.path();
        runtime().block_on(async {
            let ledger = RefCell::new(ledger(20_000));
            let expected = snapshot_of(&ledger.borrow());
            let first = ledger.borrow_mut().checkpoint(CheckpointCut::default());
            let written = write(dir, None, false, meta(5), &first, &ledger, || true).await;
            let Ok(Written::Durable(head)) = written else {
                panic!("the first checkpoint is durable");
            };
            ledger.borrow_mut().checkpoint_durable(first.cut);
            let more = self::ledger(40_000);
            *ledger.borrow_mut() = more;
            let second = ledger.borrow_mut().checkpoint(head.cut);
            // The ledger is "replaced" after three chunks: the checkpoint stops there.
            let chunks = std::cell::Cell::new(0);
            let current = || {
                chunks.set(chunks.get() + 1);
                chunks.get() <= 3
            };
            let written = write(dir, Some(&head), false, meta(9), &second, &ledger, current);
            assert!(matches!(written.await, Ok(Written::Abandoned)));
            assert!(chunks.get() > 3, "it read chunks before it stopped");

            let (found, hot) = read_manifest(dir).await.expect("read").expect("a manifest");
            assert_eq!(found, head, "the manifest is the first checkpoint's");
            let cold = crate::cold_runs::ColdRuns::open(dir, &found, 16).await;
            let cold = Arc::new(cold.expect("cold runs"));
            let restored = restore(dir, LedgerConfig::default(), &found, &hot, cold).await;
            assert_eq!(snapshot_of(&restored.expect("restores")), expected);
            let removed = remove_unnamed_runs(dir, Some(&found))
                .await
                .expect("remove");
            assert!(removed > 0, "the abandoned checkpoint's files are deleted");
            assert_eq!(
                remove_unnamed_runs(dir, Some(&found)).await.expect("again"),
                0
            );
        });
    }
}
