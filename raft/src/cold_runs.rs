//! A partition's cold store ([`kassa_shard::ColdStore`]): the runs of the keyspaces whose
//! entries leave the ledger's memory once a durable checkpoint holds them (transfers, their
//! ids, the accounts' lists, the timestamp samples, the change stream, history balances and
//! resolved two-phase statuses; docs/storage.md). The runs are opened once, with
//! their page tables (their indexes and filters are read a page at a time when first needed,
//! and kept while the node's page budget has room, else cached as blocks are), and followed
//! as checkpoints become durable; a read is one blocking 4 KiB read, checked as every run
//! block is, unless the partition's small block cache holds the block.
//!
//! Most cold reads are a reader's (lookups, queries, change events, a full checkpoint after
//! an install), which block the core on what the cache lacks. The apply path looks up every
//! new id in the id runs (their filters answer most without a read), and reads a cold
//! transfer for a retry of an old id or a post or void of a pending transfer resolved before
//! it went cold: the state machine reads those blocks ahead through io_uring, with the filter
//! and index pages that find them ([`ColdRuns::prefetch`]), and the apply finds them held in
//! the cache.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kassa_shard::{ColdError, ColdRange, ColdStore, Keyspace};
use kassa_storage::run::{
    entries_per_block, BlockCache, BlockingRun, CacheStats, Holds, Located, Page, PageBudget,
};
use kassa_storage::StorageError;

use crate::checkpoint;
use crate::types::{CheckpointHead, RunEntry};

/// Blocks of cold runs a partition keeps in memory when not told otherwise (1 MiB): a range
/// of change events read in order costs one disk read per block (28 entries), not one per
/// entry.
pub const CACHE_BLOCKS_DEFAULT: usize = 256;

/// See the module documentation.
pub(crate) struct ColdRuns {
    followed: Mutex<Followed>,
    cache: BlockCache,
    /// The node's bound on the index and filter pages its runs keep.
    pages: Arc<PageBudget>,
}

/// What the last manifest followed names.
#[derive(Default)]
struct Followed {
    /// Open runs of cold keyspaces, by keyspace, then in the order their checkpoints wrote
    /// them.
    runs: Vec<ColdRun>,
    /// Pages of indexes and filters read blocking by runs no longer followed.
    closed_page_reads: u64,
}

impl Default for ColdRuns {
    fn default() -> ColdRuns {
        ColdRuns::new(CACHE_BLOCKS_DEFAULT, PageBudget::unbounded())
    }
}

struct ColdRun {
    entry: RunEntry,
    run: Arc<BlockingRun>,
    /// The transfer positions whose entries it may hold: those the checkpoints after its
    /// keyspace's run before it, up to its own, stored (a run of history or account lists
    /// spans every account, but holds the positions of its stretch of checkpoints; runs merge
    /// in write order, so each holds a contiguous stretch). None when no transfer run is
    /// known for that stretch.
    positions: Option<(u128, u128)>,
}

impl ColdRuns {
    /// No runs yet, with a cache of `cache_blocks` blocks; the runs' pages kept in memory
    /// take their bytes from `pages`.
    pub(crate) fn new(cache_blocks: usize, pages: Arc<PageBudget>) -> ColdRuns {
        ColdRuns {
            followed: Mutex::default(),
            cache: BlockCache::new(cache_blocks),
            pages,
        }
    }

    /// The runs of cold keyspaces that `head` names in `dir`, each checked against its entry,
    /// as [`ColdRuns::new`] makes them.
    pub(crate) async fn open(
        dir: &Path,
        head: &CheckpointHead,
        cache_blocks: usize,
        pages: Arc<PageBudget>,
    ) -> Result<ColdRuns, StorageError> {
        let cold = ColdRuns::new(cache_blocks, pages);
        cold.follow(dir, head).await?;
        Ok(cold)
    }

    /// Follows a newly durable manifest: opens the runs it names that are not open yet and
    /// closes those it no longer names. The ledger may drop what these runs hold only after
    /// this returned.
    pub(crate) async fn follow(
        &self,
        dir: &Path,
        head: &CheckpointHead,
    ) -> Result<(), StorageError> {
        let named: Vec<&RunEntry> = head
            .runs
            .iter()
            .filter(|run| run.keyspace.is_cold())
            .collect();
        let mut opened = Vec::new();
        for entry in &named {
            let open = self.followed().runs.iter().any(|run| run.entry == **entry);
            if !open {
                let run = checkpoint::open_cold_run(dir, entry, &self.pages).await?;
                opened.push(ColdRun {
                    entry: (*entry).clone(),
                    run: Arc::new(run),
                    positions: None,
                });
            }
        }
        let mut followed = self.followed();
        let closed = followed
            .runs
            .iter()
            .filter(|run| !named.contains(&&run.entry));
        let closed_page_reads: u64 = closed.map(|run| run.run.pages_read_blocking() as u64).sum();
        followed.closed_page_reads += closed_page_reads;
        followed.runs.retain(|run| named.contains(&&run.entry));
        followed.runs.extend(opened);
        followed
            .runs
            .sort_by_key(|run| (run.entry.keyspace, run.entry.number));
        let transfers = head.runs.iter();
        let transfers = transfers.filter(|run| run.keyspace == Keyspace::Transfers);
        let transfer_runs: Vec<RunEntry> = transfers.cloned().collect();
        let mut before: Option<(Keyspace, u64)> = None;
        for run in &mut followed.runs {
            let (keyspace, number) = (run.entry.keyspace, run.entry.number);
            let after = before
                .filter(|(of, _)| *of == keyspace)
                .map_or(0, |(_, n)| n);
            let stretch = transfer_runs
                .iter()
                .filter(|t| after < t.number && t.number <= number);
            run.positions = stretch
                .map(|t| (t.first_key, t.last_key))
                .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
            before = Some((keyspace, number));
        }
        Ok(())
    }

    /// Reads ahead, through the core's io_uring, the blocks holding `wanted` (what an entry
    /// about to apply may read, `Ledger::cold_reads`) and holds them for `holds` until
    /// [`ColdRuns::release_prefetched`]: the apply then reads them without blocking. The
    /// filter and index pages that find those blocks are read first. Returns how many blocks
    /// were read or found cached, and pages read. A failed read is returned; the apply's own
    /// read of that entry then fails the same way.
    /// At most `held_max` blocks are held in the cache at once, by every reader: what does
    /// not fit is read when asked, blocking.
    pub(crate) async fn prefetch(
        &self,
        wanted: &[(Keyspace, u128)],
        holds: &mut Holds,
        held_max: usize,
    ) -> Result<usize, StorageError> {
        // Where each key's lookup reads in each run that may hold it, from the filter and
        // index pages in memory. A key whose page is missing is located again once its page
        // is read ahead: at most twice (the filter's page, then the index's).
        let mut lookups = Lookups::default();
        {
            let followed = self.followed();
            for (keyspace, key) in wanted {
                for run in followed.covering(*keyspace, *key) {
                    lookups.locate(&run.run, *key, &self.cache, holds);
                }
            }
        }
        let mut pages = 0;
        for _ in 0..2 {
            if lookups.missing.is_empty() {
                break;
            }
            let missing = std::mem::take(&mut lookups.pages);
            pages += load_pages(missing, &self.cache, holds).await?;
            for (run, key) in std::mem::take(&mut lookups.missing) {
                lookups.locate(&run, key, &self.cache, holds);
            }
        }
        let by_run = lookups.blocks;
        Ok(pages + self.read_ahead(by_run, holds, held_max).await?)
    }

    /// Reads `by_run`'s blocks ahead for `holds`, as many as fit under `held_max` blocks
    /// held in all, and up to the cache's capacity more into its CLOCK, unheld, counted over
    /// all of `holds`' rounds (a large read: its blocking reads then find them there, unless
    /// others' reads evicted them);
    /// returns how many were read or found cached. What is left is read when asked,
    /// blocking.
    async fn read_ahead(
        &self,
        mut by_run: Vec<(Arc<BlockingRun>, Vec<u64>)>,
        holds: &mut Holds,
        held_max: usize,
    ) -> Result<usize, StorageError> {
        let mut room = held_max.saturating_sub(self.cache.held());
        // One reader's blocks in the CLOCK, over all its rounds, stay within its capacity.
        let mut clock_room = self.cache_capacity().saturating_sub(holds.unheld());
        let mut unheld = Vec::new();
        for (run, blocks) in &mut by_run {
            let mut rest = blocks.split_off(blocks.len().min(room));
            room -= blocks.len();
            rest.truncate(clock_room);
            clock_room -= rest.len();
            if !rest.is_empty() {
                unheld.push((run.clone(), rest));
            }
        }
        for (run, blocks) in &by_run {
            run.prefetch(blocks, &self.cache, holds).await?;
        }
        for (run, blocks) in &unheld {
            run.prefetch_unheld(blocks, &self.cache, holds).await?;
        }
        let held: usize = by_run.iter().map(|(_, blocks)| blocks.len()).sum();
        let cached: usize = unheld.iter().map(|(_, blocks)| blocks.len()).sum();
        Ok(held + cached)
    }

    /// Reads ahead, as [`ColdRuns::prefetch`] does, the blocks of each run that hold the
    /// first `entries` entries of a range (the last, when reversed), in the order a scan of
    /// the range visits the runs; returns how many blocks were read or found cached. A run's
    /// blocks inside the range are taken as full of it, but for the first and last.
    /// An account list's runs whose checkpoint stored none of the range's positions are
    /// skipped (each such run spans every account, but holds the positions of its interval).
    pub(crate) async fn prefetch_ranges(
        &self,
        ranges: &[ColdRange],
        holds: &mut Holds,
        held_max: usize,
    ) -> Result<usize, StorageError> {
        // The index pages that find the ranges' bounds in each run, read first. A seek of
        // the timestamp samples needs only those of its two ends (its scan walks the blocks
        // between without the index; the run's first key needs none); an account's list,
        // read over positions that may differ a little from its range's, all between.
        let mut pages: Vec<(Arc<BlockingRun>, Vec<Page>)> = Vec::new();
        {
            let followed = self.followed();
            for range in ranges
                .iter()
                .filter(|range| range.keys.start < range.keys.end)
            {
                let (start, end) = (range.keys.start, range.keys.end);
                for run in followed.holding_range(range) {
                    let (from, to) = (
                        start.max(run.entry.first_key),
                        (end - 1).min(run.entry.last_key),
                    );
                    let missing = match seeks_newest(range) {
                        true => {
                            let mut ends = run.run.index_pages_missing(to, to);
                            if from != run.entry.first_key {
                                ends.extend(run.run.index_pages_missing(from, from));
                                ends.dedup();
                            }
                            ends
                        }
                        false => run.run.index_pages_missing(from, to),
                    };
                    add_blocks(&mut pages, &run.run, missing);
                }
            }
        }
        let pages = load_pages(pages, &self.cache, holds).await?;
        let mut by_run: Vec<(Arc<BlockingRun>, Vec<u64>)> = Vec::new();
        {
            let followed = self.followed();
            for range in ranges {
                let (start, end) = (range.keys.start, range.keys.end);
                if start >= end {
                    continue;
                }
                let per_block = entries_per_block(range.keyspace.value_size()) as u64;
                let mut entries = range.entries as u64;
                let runs = followed.holding_range(range);
                let runs: Box<dyn Iterator<Item = &ColdRun>> = match range.reversed {
                    false => Box::new(runs),
                    true => Box::new(runs.rev()),
                };
                for run in runs {
                    if entries == 0 {
                        break;
                    }
                    let first = run
                        .run
                        .block_of(start.max(run.entry.first_key), &self.cache)?;
                    let last = run
                        .run
                        .block_of((end - 1).min(run.entry.last_key), &self.cache)?;
                    let (Some(first), Some(last)) = (first, last) else {
                        continue;
                    };
                    let wanted = (last - first + 1).min(entries.div_ceil(per_block) + 1);
                    let blocks: Vec<u64> = match range.reversed {
                        false => (first..first + wanted).collect(),
                        true => (last + 1 - wanted..=last).collect(),
                    };
                    entries = entries.saturating_sub(wanted.saturating_sub(2) * per_block + 1);
                    add_blocks(&mut by_run, &run.run, blocks);
                }
            }
        }
        for (_, blocks) in &mut by_run {
            blocks.sort_unstable();
            blocks.dedup();
        }
        Ok(pages + self.read_ahead(by_run, holds, held_max).await?)
    }

    /// Most blocks the cache holds for readers, beyond its capacity.
    pub(crate) fn cache_capacity(&self) -> usize {
        self.cache.stats().capacity
    }

    /// The blocks prefetched for a reader (an entry just applied, a read done) are no longer
    /// needed by it.
    pub(crate) fn release_prefetched(&self, holds: Holds) {
        self.cache.release(holds);
    }

    /// What the partition's block cache did so far: a miss is a blocking read, of a block the
    /// cache lacked or of a page of a run's index or filter not read ahead.
    pub(crate) fn cache_stats(&self) -> CacheStats {
        let mut stats = self.cache.stats();
        let followed = self.followed();
        let open = followed
            .runs
            .iter()
            .map(|run| run.run.pages_read_blocking() as u64);
        stats.misses += followed.closed_page_reads + open.sum::<u64>();
        stats
    }

    /// Bytes of the indexes and filters in memory of `keyspace`'s open runs.
    pub(crate) fn memory_bytes(&self, keyspace: Keyspace) -> u64 {
        let followed = self.followed();
        let runs = followed.of_keyspace(keyspace).iter();
        runs.map(|run| run.run.memory_size() as u64).sum()
    }

    fn followed(&self) -> std::sync::MutexGuard<'_, Followed> {
        // Only a panic while holding the lock poisons it, and the process then stops.
        self.followed
            .lock()
            .expect("the cold runs' lock is not poisoned")
    }
}

/// Adds `blocks` of `run` to the blocks to read, per run.
/// What a prefetch's lookups read: per run, the blocks, in the order first wanted, and the
/// pages of filters and indexes still to read, with the lookups that wait for them.
#[derive(Default)]
struct Lookups {
    blocks: Vec<(Arc<BlockingRun>, Vec<u64>)>,
    seen: HashSet<(*const BlockingRun, u64)>,
    pages: Vec<(Arc<BlockingRun>, Vec<Page>)>,
    missing: Vec<(Arc<BlockingRun>, u128)>,
}

impl Lookups {
    fn locate(&mut self, run: &Arc<BlockingRun>, key: u128, cache: &BlockCache, holds: &mut Holds) {
        match run.locate(key, cache, holds) {
            Located::Absent => {}
            Located::Block(block) => {
                if self.seen.insert((Arc::as_ptr(run), block)) {
                    add_blocks(&mut self.blocks, run, [block]);
                }
            }
            Located::Missing(page) => {
                add_blocks(&mut self.pages, run, [page]);
                self.missing.push((run.clone(), key));
            }
        }
    }
}

/// Reads `by_run`'s pages ahead (those past the page budget held in `cache` for `holds`);
/// returns how many.
async fn load_pages(
    by_run: Vec<(Arc<BlockingRun>, Vec<Page>)>,
    cache: &BlockCache,
    holds: &mut Holds,
) -> Result<usize, StorageError> {
    let mut count = 0;
    for (run, mut pages) in by_run {
        pages.sort_unstable();
        pages.dedup();
        count += pages.len();
        run.load_pages(&pages, cache, holds).await?;
    }
    Ok(count)
}

fn add_blocks<T>(
    by_run: &mut Vec<(Arc<BlockingRun>, Vec<T>)>,
    run: &Arc<BlockingRun>,
    blocks: impl IntoIterator<Item = T>,
) {
    match by_run
        .iter_mut()
        .find(|(listed, _)| Arc::ptr_eq(listed, run))
    {
        Some((_, listed)) => listed.extend(blocks),
        None => by_run.push((run.clone(), blocks.into_iter().collect())),
    }
}

/// Whether `range` is a seek of the timestamp samples (the newest below its end: reversed, one
/// entry), whose runs hold disjoint keys in the order written: the newest run starting below
/// its end holds it, and a scan of it needs the index pages of its ends only.
fn seeks_newest(range: &ColdRange) -> bool {
    range.keyspace == Keyspace::TransferTimestamps && range.reversed && range.entries == 1
}

impl Followed {
    /// The runs that may hold keys of `range` (not empty), in the order written. An account
    /// list's runs whose checkpoint stored none of the range's positions are left out.
    fn holding_range<'a>(
        &'a self,
        range: &'a ColdRange,
    ) -> impl DoubleEndedIterator<Item = &'a ColdRun> + 'a {
        let (start, end) = (range.keys.start, range.keys.end);
        // The positions of an account list's range: the low half of its keys.
        let positions = u128::from(start as u32)..=u128::from((end - 1) as u32);
        let holds_positions = move |run: &&ColdRun| match range.keyspace {
            Keyspace::AccountTransfers => run.positions.is_none_or(|(first, last)| {
                first <= *positions.end() && *positions.start() <= last
            }),
            _ => true,
        };
        // The timestamp runs hold disjoint keys in the order written: the newest key below
        // a seek's end (reversed, one entry) is in the newest run starting below it, the
        // first a reversed scan visits.
        let floor = match seeks_newest(range) {
            true => {
                let mut runs = self.of_keyspace(range.keyspace).iter().rev();
                let newest = runs.find(|run| run.entry.first_key < end);
                newest.map_or(0, |run| run.entry.first_key)
            }
            false => 0,
        };
        let runs = self.of_keyspace(range.keyspace).iter();
        runs.filter(move |run| run.entry.first_key < end && start <= run.entry.last_key)
            .filter(move |run| floor <= run.entry.first_key)
            .filter(holds_positions)
    }

    /// The runs that may hold `key` of `keyspace`, newest first. History runs each span every
    /// account: only the run whose stretch of checkpoints stored the transfer can hold its
    /// entry, so a read costs one block, not one per run.
    fn covering(&self, keyspace: Keyspace, key: u128) -> impl Iterator<Item = &ColdRun> {
        let position = u128::from(key as u32);
        self.of_keyspace(keyspace).iter().rev().filter(move |run| {
            let stored = match keyspace {
                Keyspace::History => run
                    .positions
                    .is_some_and(|(first, last)| first <= position && position <= last),
                _ => true,
            };
            run.entry.first_key <= key && key <= run.entry.last_key && stored
        })
    }

    /// The runs of `keyspace`, in the order written.
    fn of_keyspace(&self, keyspace: Keyspace) -> &[ColdRun] {
        let start = self
            .runs
            .partition_point(|run| run.entry.keyspace < keyspace);
        let end = self
            .runs
            .partition_point(|run| run.entry.keyspace <= keyspace);
        &self.runs[start..end]
    }
}

impl ColdStore for ColdRuns {
    fn read(&self, keyspace: Keyspace, key: u128, value: &mut [u8]) -> Result<bool, ColdError> {
        let followed = self.followed();
        for run in followed.covering(keyspace, key) {
            match run.run.get(key, value, &self.cache) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(error) => return Err(ColdError::new(keyspace, key, error.to_string())),
            }
        }
        Ok(false)
    }

    fn key_range(&self, keyspace: Keyspace) -> Option<(u128, u128)> {
        let followed = self.followed();
        let runs = followed.of_keyspace(keyspace).iter();
        runs.map(|run| (run.entry.first_key, run.entry.last_key))
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }

    fn scan(
        &self,
        keyspace: Keyspace,
        keys: std::ops::Range<u128>,
        reversed: bool,
        visit: &mut dyn FnMut(u128, &[u8]) -> bool,
    ) -> Result<(), ColdError> {
        debug_assert_ne!(
            keyspace,
            Keyspace::Statuses,
            "status runs overlap (a later one overrides): read them by key"
        );
        if keys.start >= keys.end {
            return Ok(());
        }
        // The runs, out of the lock: `visit` may read through this store.
        let runs: Vec<Arc<BlockingRun>> = {
            let followed = self.followed();
            let runs = followed.of_keyspace(keyspace).iter();
            let overlapping = runs
                .filter(|run| run.entry.first_key < keys.end && keys.start <= run.entry.last_key);
            overlapping.map(|run| run.run.clone()).collect()
        };
        // Runs of one keyspace hold disjoint keys in the order written; a key out of that
        // order (runs of the same entries twice) is skipped, never given twice.
        let mut last: Option<u128> = None;
        let mut in_order = |key: u128, value: &[u8]| {
            let after = last.is_none_or(|last| if reversed { key < last } else { key > last });
            if !after {
                return true;
            }
            last = Some(key);
            visit(key, value)
        };
        for at in 0..runs.len() {
            let run = &runs[if reversed { runs.len() - 1 - at } else { at }];
            let stopped = run.scan_range(keys.clone(), reversed, &self.cache, &mut in_order);
            match stopped {
                Ok(false) => {}
                Ok(true) => break,
                Err(error) => {
                    return Err(ColdError::new(keyspace, keys.start, error.to_string()));
                }
            }
        }
        Ok(())
    }
}
