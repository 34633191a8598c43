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
use kassa_storage::run::{BlockingRun, Footer, PageBudget, Run, RunOptions, RunWriter};
use kassa_storage::StorageError;

use crate::codec::{self, CodecError};
use crate::merge::{self, RunMerge};
use crate::types::SnapshotMeta;
pub(crate) use crate::types::{run_file_name, CheckpointHead, RunEntry};
use crate::yield_now::YieldNow;

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
    checked(Run::open(&path).await?, entry, path)
}

/// Opens the run `entry` names in `dir`'s runs for blocking reads, its index and filter read
/// a page at a time when first needed and kept within `pages` ([`BlockingRun::open`]), and
/// checks that it is that run.
pub(crate) async fn open_cold_run(
    dir: &Path,
    entry: &RunEntry,
    pages: &Arc<PageBudget>,
) -> Result<BlockingRun, StorageError> {
    let path = runs_dir(dir).join(entry.file_name());
    let run = BlockingRun::open(&path, pages).await?;
    check_footer(run.footer(), entry, path)?;
    Ok(run)
}

/// [`open_run`] without the run's filter: a merge's input, read whole in key order.
async fn open_merge_input(dir: &Path, entry: &RunEntry) -> Result<Run, StorageError> {
    let path = runs_dir(dir).join(entry.file_name());
    checked(Run::open_unfiltered(&path).await?, entry, path)
}

/// `run`, if it is the one `entry` describes.
fn checked(run: Run, entry: &RunEntry, path: PathBuf) -> Result<Run, StorageError> {
    check_footer(run.footer(), entry, path)?;
    Ok(run)
}

/// Whether a run's `footer` is that of the run `entry` describes.
fn check_footer(footer: &Footer, entry: &RunEntry, path: PathBuf) -> Result<(), StorageError> {
    if footer.keys != entry.keys
        || footer.value_size as usize != entry.keyspace.value_size()
        || (footer.first_key, footer.last_key) != (entry.first_key, entry.last_key)
    {
        return Err(StorageError::Corrupt {
            path,
            offset: 0,
            what: "run does not match its manifest entry",
        });
    }
    Ok(())
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
    // Format 2's timestamp samples leave with the first checkpoint after its restore, which
    // writes the timestamp runs whole (`Keyspace::TransferTimestamps`).
    let samples_kept = kept
        .iter()
        .any(|run| run.keyspace == Keyspace::TransferSamples);
    assert!(
        !samples_kept || checkpoint.timestamps_from() == 0,
        "format 2's samples leave only with every timestamp sample written"
    );
    let needed = |run: &RunEntry| match run.keyspace {
        Keyspace::Changes => run.last_key >= released.into(),
        Keyspace::TransferSamples => false,
        _ => true,
    };
    let (mut live, mut dropped): (Vec<RunEntry>, Vec<RunEntry>) =
        kept.into_iter().partition(needed);
    // The runs this checkpoint's own merge into, by keyspace (`merge.rs`): they leave the
    // manifest and are deleted with the runs it no longer names.
    let mut absorbed: Vec<(Keyspace, Vec<RunEntry>)> = Vec::new();
    for keyspace in Keyspace::ALL {
        let runs = merge::absorbed_runs(keyspace, &live, checkpoint.keys_at_most(keyspace));
        if !runs.is_empty() {
            absorbed.push((keyspace, runs));
        }
    }
    live.retain(|run| !absorbed.iter().any(|(_, runs)| runs.contains(run)));
    for keyspace in Keyspace::ALL {
        let source = Source {
            checkpoint,
            ledger,
            current: &current,
        };
        let merging = absorbed.iter_mut().find(|(of, _)| *of == keyspace);
        let written = match merging {
            Some((_, inputs)) => match write_merged(dir, &runs, number, source, inputs).await {
                Ok(written) => written,
                Err(error) => {
                    // A damaged block of an absorbed run fails its readers as before, but
                    // must not fail every checkpoint from now on.
                    tracing::warn!(
                        %error,
                        keyspace = keyspace.name(),
                        "runs not merged: the checkpoint writes its own"
                    );
                    live.append(inputs);
                    live.sort_by_key(|run| run.number);
                    write_run(&runs, number, keyspace, source, None).await?
                }
            },
            None => write_run(&runs, number, keyspace, source, None).await?,
        };
        match written {
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
    for (keyspace, runs) in absorbed {
        if !runs.is_empty() {
            tracing::info!(
                checkpoint = number,
                keyspace = keyspace.name(),
                runs = runs.len(),
                keys = runs.iter().map(|run| run.keys).sum::<u64>(),
                "runs merged into the checkpoint's"
            );
        }
        dropped.extend(runs);
    }
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

/// Where a run's entries come from.
struct Source<'a, F: Fn() -> bool> {
    checkpoint: &'a Checkpoint,
    ledger: &'a RefCell<Ledger>,
    current: &'a F,
}

impl<F: Fn() -> bool> Clone for Source<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F: Fn() -> bool> Copy for Source<'_, F> {}

/// Writes the checkpoint's run of the `absorbed` runs' keyspace (all of one, oldest first)
/// merged with them. Of a key held twice (statuses, which later runs replace), the newest
/// entry is kept.
async fn write_merged<F: Fn() -> bool>(
    dir: &Path,
    runs: &Path,
    number: u64,
    source: Source<'_, F>,
    absorbed: &[RunEntry],
) -> Result<RunWritten, StorageError> {
    let keyspace = absorbed.first().expect("a merge absorbs runs").keyspace;
    let mut inputs = Vec::with_capacity(absorbed.len());
    for entry in absorbed {
        assert_eq!(
            entry.keyspace, keyspace,
            "a merge's runs are of one keyspace"
        );
        inputs.push(open_merge_input(dir, entry).await?);
    }
    let merge = RunMerge::new(inputs, keyspace.value_size());
    write_run(runs, number, keyspace, source, Some(merge)).await
}

enum RunWritten {
    Entry(RunEntry),
    Empty,
    Abandoned,
}

/// Writes one keyspace's entries as a run, if it has any, merged with the entries of the runs
/// `merge` reads (id runs a checkpoint absorbs). The ledger is borrowed for each chunk only,
/// never across a write.
async fn write_run<F: Fn() -> bool>(
    runs: &Path,
    number: u64,
    keyspace: Keyspace,
    source: Source<'_, F>,
    mut merge: Option<RunMerge>,
) -> Result<RunWritten, StorageError> {
    let mut chunk = KeyspaceIncrement::new(keyspace);
    let mut cursor = CheckpointCursor::default();
    let mut writer: Option<RunWriter> = None;
    let (mut first_key, mut last_key) = (None, 0);
    let create = |merged: u64| {
        let name = run_file_name(keyspace, number);
        // Keys that are positions and sequences are found by range: no filter. Ids are
        // looked up, most of them absent (every new id is), and so are statuses (most
        // positions have none).
        let options = RunOptions {
            value_size: keyspace.value_size(),
            keys_expected: match keyspace {
                Keyspace::TransferIds | Keyspace::Statuses => {
                    source.checkpoint.keys_at_most(keyspace) + merged
                }
                _ => 0,
            },
            filter_bits_per_key: keyspace.filter_bits_per_key(),
            filter_seed: ID_FILTER_SEED,
        };
        async move { RunWriter::create(runs, &name, options).await }
    };
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
            YieldNow::new().await;
            continue;
        };
        if writer.is_none() {
            let merged = merge.as_ref().map_or(0, RunMerge::keys);
            writer = Some(create(merged).await?);
        }
        let run = writer.as_mut().expect("created");
        match merge.as_mut() {
            Some(merge) => {
                if !merge
                    .push(run, &chunk.keys, &chunk.values, false, source.current)
                    .await?
                {
                    return Ok(RunWritten::Abandoned);
                }
            }
            None => {
                first_key = first_key.or(chunk.keys.first().copied());
                last_key = last;
                run.push_all(&chunk.keys, &chunk.values).await?;
                // A run's buffer holds many chunks: the applies get their turn after each,
                // not only when a buffer goes to the disk (a core otherwise stalled for tens
                // of milliseconds).
                YieldNow::new().await;
            }
        }
    }
    if let Some(merge) = merge.as_mut() {
        if writer.is_none() {
            writer = Some(create(merge.keys()).await?);
        }
        let run = writer.as_mut().expect("created");
        if !merge.push(run, &[], &[], true, source.current).await? {
            return Ok(RunWritten::Abandoned);
        }
        (first_key, last_key) = (merge.first_key, merge.last_key);
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

    /// Appends `count` transfers whose ids are scattered over the id space (a permutation of
    /// their numbers), so that every checkpoint's id run spans the others'.
    fn add_scattered_transfers(ledger: &mut Ledger, from: u64, count: u64) {
        if from == 0 {
            let accounts: Vec<kassa_wire::Account> = (1..=4)
                .map(|id| kassa_wire::Account {
                    id: kassa_wire::AccountId(id),
                    ledger: 1,
                    code: 1,
                    ..kassa_wire::Account::default()
                })
                .collect();
            ledger.create_accounts(1_000, &accounts, &mut Vec::new());
        }
        let events: Vec<kassa_wire::Transfer> = (from..from + count)
            .map(|at| kassa_wire::Transfer {
                id: kassa_wire::TransferId(scattered_id(at)),
                debit_account_id: kassa_wire::AccountId(1 + u128::from(at % 4)),
                credit_account_id: kassa_wire::AccountId(1 + u128::from((at + 1) % 4)),
                amount: 1,
                ledger: 1,
                code: 1,
                ..kassa_wire::Transfer::default()
            })
            .collect();
        for (batch, events) in events.chunks(1_000).enumerate() {
            let mut results = Vec::new();
            let timestamp = 10_000 + 2 * (from + 1_000 * batch as u64);
            ledger.create_transfers(timestamp, events, &mut results);
            let created = results
                .iter()
                .filter(|result| result.status == kassa_wire::CreateTransferStatus::Created);
            assert_eq!(created.count(), events.len(), "transfers created");
        }
    }

    /// The keys of each id run `head` names, in the order written.
    fn id_run_keys(head: &CheckpointHead) -> Vec<u64> {
        let runs = head.runs.iter();
        let ids = runs.filter(|run| run.keyspace == Keyspace::TransferIds);
        ids.map(|run| run.keys).collect()
    }

    fn scattered_id(at: u64) -> u128 {
        1 + u128::from(at.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Id runs merge as checkpoints add them (`merge.rs`): the fourth run of a tier takes the
    /// three before it into its own, the manifest names the merged run only, the absorbed
    /// files are deleted, and every id is read back from the runs at its position; a restore
    /// gives the ledger written. A merging checkpoint abandoned halfway changes nothing.
    #[test]
    fn id_runs_merge_into_the_checkpoint_that_completes_a_tier() {
        let dir = TestDir::new("merge");
        let dir = dir.path();
        runtime().block_on(async {
            let ledger = RefCell::new(Ledger::new(LedgerConfig::default()));
            let mut head: Option<CheckpointHead> = None;
            // 74 blocks per run: a merge reads each input in more than one piece.
            let per_checkpoint = 15_000;
            let mut id_runs = Vec::new();
            for number in 0..6u64 {
                add_scattered_transfers(
                    &mut ledger.borrow_mut(),
                    number * per_checkpoint,
                    per_checkpoint,
                );
                let cut = head.as_ref().map(|head| head.cut).unwrap_or_default();
                let checkpoint = ledger.borrow_mut().checkpoint(cut);
                let previous = head.as_ref();
                if number == 3 {
                    // The merging checkpoint abandoned once its merged run is being written: the
                    // manifest still names the three runs, whose files are all there.
                    let merging = || {
                        let files = std::fs::read_dir(runs_dir(dir)).expect("runs");
                        files.flatten().any(|file| {
                            let name = file.file_name().to_string_lossy().into_owned();
                            name.starts_with("transfer-ids") && name.ends_with(".tmp")
                        })
                    };
                    let current = || !merging();
                    let written = write(
                        dir,
                        previous,
                        false,
                        meta(13),
                        &checkpoint,
                        &ledger,
                        current,
                    );
                    assert!(matches!(written.await, Ok(Written::Abandoned)));
                    let (found, _) = read_manifest(dir).await.expect("read").expect("a manifest");
                    assert_eq!(
                        Some(&found),
                        previous,
                        "the manifest is the last durable one"
                    );
                    for run in &found.runs {
                        assert!(runs_dir(dir).join(run.file_name()).exists(), "{run:?}");
                    }
                    let removed = remove_unnamed_runs(dir, Some(&found))
                        .await
                        .expect("remove");
                    assert!(removed > 0, "the abandoned checkpoint's files are deleted");
                }
                let written = write(
                    dir,
                    previous,
                    false,
                    meta(10 + number),
                    &checkpoint,
                    &ledger,
                    || true,
                );
                let Ok(Written::Durable(written)) = written.await else {
                    panic!("checkpoint {number} is durable");
                };
                ledger.borrow_mut().checkpoint_durable(checkpoint.cut);
                id_runs.push(id_run_keys(&written));
                head = Some(written);
            }
            let m = per_checkpoint;
            let expected: Vec<Vec<u64>> = vec![
                vec![m],
                vec![m, m],
                vec![m, m, m],
                vec![4 * m],
                vec![4 * m, m],
                vec![4 * m, m, m],
            ];
            assert_eq!(id_runs, expected, "id runs' keys after each checkpoint");
            let head = head.expect("checkpoints");
            let files = std::fs::read_dir(runs_dir(dir)).expect("runs").count();
            assert_eq!(files, head.runs.len(), "only the runs named are on disk");

            let cold =
                crate::cold_runs::ColdRuns::open(dir, &head, 16, PageBudget::unbounded()).await;
            let cold = cold.expect("cold runs");
            for at in 0..6 * m {
                let mut value = [0u8; 4];
                let id = scattered_id(at);
                let found = cold.read(Keyspace::TransferIds, id, &mut value);
                assert_eq!(found, Ok(true), "id of transfer {at} in the runs");
                assert_eq!(
                    u32::from_le_bytes(value),
                    at as u32,
                    "transfer {at}'s position"
                );
            }
            let mut value = [0u8; 4];
            let absent = cold.read(Keyspace::TransferIds, scattered_id(6 * m), &mut value);
            assert_eq!(absent, Ok(false));

            let (found, hot) = read_manifest(dir).await.expect("read").expect("a manifest");
            assert_eq!(found, head);
            let expected = snapshot_of(&ledger.borrow());
            let restored = restore(dir, LedgerConfig::default(), &found, &hot, Arc::new(cold));
            assert_eq!(snapshot_of(&restored.await.expect("restores")), expected);

            // A damaged block in a run the next checkpoint would absorb: it writes its own run
            // unmerged, and the damaged run stays named (its readers fail as before).
            let damaged = head
                .runs
                .iter()
                .rfind(|run| run.keyspace == Keyspace::TransferIds);
            let damaged = runs_dir(dir).join(damaged.expect("an id run").file_name());
            let mut bytes = std::fs::read(&damaged).expect("read run");
            bytes[100] ^= 1;
            std::fs::write(&damaged, bytes).expect("damage run");
            add_scattered_transfers(&mut ledger.borrow_mut(), 6 * m, m);
            let checkpoint = ledger.borrow_mut().checkpoint(head.cut);
            let written = write(
                dir,
                Some(&head),
                false,
                meta(20),
                &checkpoint,
                &ledger,
                || true,
            );
            let Ok(Written::Durable(written)) = written.await else {
                panic!("the checkpoint is durable without its merge");
            };
            assert_eq!(
                id_run_keys(&written),
                [4 * m, m, m, m],
                "the runs stay unmerged"
            );
            let numbers: Vec<u64> = written.runs.iter().map(|run| run.number).collect();
            assert!(
                numbers.is_sorted(),
                "runs in the order written: {numbers:?}"
            );
            assert!(damaged.exists(), "the damaged run is still there");
        });
    }

    /// Two-phase transfers among four history accounts, `count` of them from `step`'s ids on,
    /// and the posts (even) and voids (one in four) of the step before's; the rest stay
    /// pending. Each step's transfers have timestamps of their own.
    fn add_two_phase_step(ledger: &mut Ledger, step: u64, count: u64) {
        use kassa_wire::{AccountId, Transfer, TransferFlags, TransferId};
        if step == 0 {
            crate::test_support::create_history_accounts(ledger);
        }
        let pending_id = |step: u64, at: u64| u128::from(1 + step * 1_000_000 + at);
        let mut events: Vec<Transfer> = (0..count)
            .map(|at| Transfer {
                id: TransferId(pending_id(step, at)),
                debit_account_id: AccountId(1 + u128::from(at % 4)),
                credit_account_id: AccountId(1 + u128::from((at + 1) % 4)),
                amount: 10,
                ledger: 1,
                code: 1,
                flags: TransferFlags::PENDING,
                ..Transfer::default()
            })
            .collect();
        for at in (0..count).filter(|_| step > 0) {
            let flags = match at % 4 {
                0 | 2 => TransferFlags::POST_PENDING_TRANSFER,
                1 => TransferFlags::VOID_PENDING_TRANSFER,
                _ => continue,
            };
            events.push(Transfer {
                id: TransferId(pending_id(step, 500_000 + at)),
                pending_id: TransferId(pending_id(step - 1, at)),
                flags,
                ..Transfer::default()
            });
        }
        for (batch, events) in events.chunks(1_000).enumerate() {
            let mut results = Vec::new();
            let timestamp = 1_000_000 * (step + 1) + 10_000 * batch as u64;
            ledger.create_transfers(timestamp, events, &mut results);
            let created = results
                .iter()
                .filter(|result| result.status == kassa_wire::CreateTransferStatus::Created);
            assert_eq!(created.count(), events.len(), "transfers created");
        }
    }

    /// What a client reads of transfers and history: each account's transfers and balances
    /// over timestamp ranges, both ways, and queries by timestamp range.
    fn reads_of(
        ledger: &Ledger,
        steps: u64,
    ) -> (
        Vec<Vec<kassa_wire::Transfer>>,
        Vec<Vec<kassa_wire::AccountBalance>>,
    ) {
        use kassa_wire::{AccountFilter, AccountFilterFlags as Flags, AccountId};
        use kassa_wire::{QueryFilter, QueryFilterFlags};
        let (mut all, mut all_balances) = (Vec::new(), Vec::new());
        let mut ranges = vec![(0, 0)];
        for step in 0..=steps {
            let start = 1_000_000 * step + 5_000;
            ranges.push((start, start + 1_500_000));
            ranges.push((start, 0));
        }
        for id in 1..=4 {
            for (min, max) in &ranges {
                for flags in [
                    Flags::DEBITS | Flags::CREDITS,
                    Flags::CREDITS | Flags::REVERSED,
                ] {
                    let mut filter = AccountFilter::new(AccountId(id), 8_189, flags);
                    (filter.timestamp_min, filter.timestamp_max) = (*min, *max);
                    let mut transfers = Vec::new();
                    ledger
                        .get_account_transfers(&filter, &mut transfers)
                        .expect("reads");
                    all.push(transfers);
                    let mut balances = Vec::new();
                    ledger
                        .get_account_balances(&filter, &mut balances)
                        .expect("reads");
                    all_balances.push(balances);
                }
            }
        }
        for (min, max) in &ranges {
            for flags in [QueryFilterFlags::default(), QueryFilterFlags::REVERSED] {
                let mut filter = QueryFilter::new(8_189, flags);
                (filter.timestamp_min, filter.timestamp_max) = (*min, *max);
                let mut transfers = Vec::new();
                ledger
                    .query_transfers(&filter, &mut transfers)
                    .expect("reads");
                all.push(transfers);
            }
        }
        assert!(all.iter().filter(|read| !read.is_empty()).count() > 100);
        assert!(all_balances.iter().filter(|read| !read.is_empty()).count() > 50);
        (all, all_balances)
    }

    /// Runs of account lists, statuses and timestamp samples merge in write order
    /// (`merge::write_order_plan`): the fourth small run of each takes the three before it,
    /// a merge of statuses keeps each position's newest, history runs stay one per
    /// checkpoint, and a ledger restored from the merged runs reads every transfer, list,
    /// balance (each from the history run of its transfer's checkpoint), status and
    /// timestamp as the ledger that kept them all in memory.
    #[test]
    fn runs_that_are_read_by_when_written_merge_in_write_order() {
        let dir = TestDir::new("merge-write-order");
        let dir = dir.path();
        let merged = [
            Keyspace::Statuses,
            Keyspace::AccountTransfers,
            Keyspace::TransferTimestamps,
        ];
        let runs_of = |head: &CheckpointHead, keyspace: Keyspace| -> Vec<RunEntry> {
            let runs = head.runs.iter().filter(|run| run.keyspace == keyspace);
            runs.cloned().collect()
        };
        runtime().block_on(async {
            let ledger = RefCell::new(Ledger::new(LedgerConfig::default()));
            let mut head: Option<CheckpointHead> = None;
            let steps = 9;
            let mut status_runs = Vec::new();
            for step in 0..steps {
                add_two_phase_step(&mut ledger.borrow_mut(), step, 3_000);
                let cut = head.as_ref().map(|head| head.cut).unwrap_or_default();
                let checkpoint = ledger.borrow_mut().checkpoint(cut);
                let written = write(
                    dir,
                    head.as_ref(),
                    false,
                    meta(10 + step),
                    &checkpoint,
                    &ledger,
                    || true,
                );
                let Ok(Written::Durable(written)) = written.await else {
                    panic!("checkpoint {step} is durable");
                };
                ledger.borrow_mut().checkpoint_durable(checkpoint.cut);
                // All runs of tier 0: the fourth merges the three before it.
                let expected = [1, 2, 3][step as usize % 3];
                for keyspace in merged {
                    let runs = runs_of(&written, keyspace);
                    assert_eq!(runs.len(), expected, "{keyspace:?} runs after {step}");
                    let numbers = runs.iter().map(|run| run.number);
                    assert!(numbers.is_sorted(), "in the order written");
                }
                let history = runs_of(&written, Keyspace::History);
                assert_eq!(
                    history.len() as u64,
                    step + 1,
                    "history runs are not merged"
                );
                status_runs.push(runs_of(&written, Keyspace::Statuses));
                head = Some(written);
            }
            // A merge of statuses keeps one entry per position: the newest.
            let before: u64 = status_runs[2].iter().map(|run| run.keys).sum();
            let merged_statuses = &status_runs[3];
            assert_eq!(merged_statuses.len(), 1);
            assert!(
                merged_statuses[0].keys < before + 6_000,
                "posts and voids replaced pending statuses: {} of {before} + the fourth's",
                merged_statuses[0].keys
            );
            let head = head.expect("checkpoints");
            let files = std::fs::read_dir(runs_dir(dir)).expect("runs").count();
            assert_eq!(files, head.runs.len(), "only the runs named are on disk");

            let (found, hot) = read_manifest(dir).await.expect("read").expect("a manifest");
            // Every block fits the cache: the reads below read each once.
            let cold =
                crate::cold_runs::ColdRuns::open(dir, &found, 4_096, PageBudget::unbounded());
            let cold = Arc::new(cold.await.expect("cold runs"));
            let restored = restore(dir, LedgerConfig::default(), &found, &hot, cold.clone());
            let restored = restored.await.expect("restores");
            let warm = snapshot_of(&ledger.borrow());
            assert_eq!(snapshot_of(&restored), warm);
            assert_eq!(
                reads_of(&restored, steps),
                reads_of(&ledger.borrow(), steps)
            );

            // The same hot state as format 3 wrote it, without the held statuses: the restore
            // reads the status runs from their files instead, the newest of a position
            // winning, and keeps the same statuses.
            let mut hot_3 = hot.clone();
            hot_3[8..12].copy_from_slice(&3u32.to_le_bytes());
            let held = u64::from_le_bytes(hot_3[48..56].try_into().expect("8 bytes"));
            assert!(held > 0, "pending statuses held");
            hot_3.drain(48..56 + 5 * held as usize);
            let body = hot_3.len() - 4;
            let crc = crc32c::crc32c(&hot_3[..body]);
            hot_3[body..].copy_from_slice(&crc.to_le_bytes());
            let from_3 = restore(dir, LedgerConfig::default(), &found, &hot_3, cold).await;
            let from_3 = from_3.expect("format 3 restores");
            assert_eq!(
                from_3.transfer_statuses_in_memory(),
                restored.transfer_statuses_in_memory()
            );
            assert_eq!(snapshot_of(&from_3), warm);
        });
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
            let cold =
                crate::cold_runs::ColdRuns::open(dir, &found, 16, PageBudget::unbounded()).await;
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
