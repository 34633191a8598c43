//! [`Run`]: an open run (format in `run/mod.rs`). Opening reads and checks the footer, the
//! index (the first key of every data block) and the filter, and keeps the last two in memory:
//! 16 bytes per 4 KiB block plus the filter's bits per key. A dense run, whose keys are every
//! integer from its first to its last (a checkpoint's transfers by position, the change stream
//! by sequence), needs no index: where each block starts follows from the keys per block, so
//! its index is neither read nor kept ([`Index::Dense`]). A lookup then costs at most one
//! aligned 4 KiB read, and none when the filter rules the key out; every block read is
//! checked (checksum, number, entry count, key order and range) before it answers anything.
//!
//! A [`BlockingRun`] opened by [`BlockingRun::open`] keeps neither: it reads the page table of
//! a version 2 run and reads a page of its index or filter when a lookup first needs it
//! (`paged.rs`), or ahead of it ([`BlockingRun::load_pages`]).
//!
//! Reads go through io_uring on the core that owns the run; the file is opened read-only with
//! `O_DIRECT`, so the page cache neither holds a second copy of the run nor decides what stays
//! in memory: a cache of blocks above this (the store's) does.

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use monoio::buf::IoBufMut;
use monoio::fs::File;

use super::cache::{BlockCache, HeldKind, Holds};
use super::filter::{self, FILTER_BLOCK_SIZE};
use super::paged::{IndexShape, PageBudget, PageTable, PageWords, PagedRegion, INDEX_PAGE_KEYS};
use super::{corrupt, entries_per_block, read_u128, read_u32, Filter, Footer, BLOCK_HEADER_SIZE};
use crate::aligned::{align_up, AlignedBuffer, BLOCK_SIZE};
use crate::{files, StorageError};

/// See the module documentation.
pub struct Run {
    file: File,
    shape: Shape,
}

/// An open run read with blocking `pread`s on the calling thread instead of io_uring
/// ([`Run::into_blocking`]): for a reader that cannot wait for the core's event loop and
/// reads rarely (a synchronous store of cold entries). Unlike a [`Run`], it may be shared
/// between threads.
pub struct BlockingRun {
    file: std::fs::File,
    shape: Shape,
    /// Unique in the process: a [`BlockCache`] key.
    id: u64,
}

/// The next [`BlockingRun`]'s id.
static BLOCKING_RUN_IDS: AtomicU64 = AtomicU64::new(1);

/// What an open run keeps in memory, and the checks of its blocks.
struct Shape {
    path: PathBuf,
    footer: Footer,
    index: Index,
    filter: RunFilter,
}

/// Where each data block's keys start.
enum Index {
    /// The first key of every data block, ascending, as the file's index lists them.
    Listed(Vec<u128>),
    /// The run's keys are every integer from `first` on, `per_block` to a block but for the
    /// last: block `b` starts at `first + b × per_block`.
    Dense {
        first: u128,
        per_block: u64,
        keys: u64,
        blocks: u64,
    },
    /// The file's index read a page (256 blocks' first keys) at a time, when first needed;
    /// `firsts` holds each page's first key, from the page table.
    Paged {
        firsts: Vec<u128>,
        region: PagedRegion,
        blocks: u64,
    },
}

/// Where a paged run's reader finds and keeps the pages of its index and filter that the page
/// budget had no room for: its block cache, and the run's id in it. None for a run whose
/// index and filter are in memory whole ([`Run`]).
type Spill<'a> = Option<(&'a BlockCache, u64)>;

/// Why a [`Spill`] is there.
const PAGED: &str = "a paged run is read with its block cache";

/// Calls `found` with page `block` (its place in the file) from `spill`'s cache, if there:
/// held for `holds` from now on when a reader reading ahead gives them, so that the page it
/// located a key with stays until it is done.
fn spilled<T>(
    spill: Spill<'_>,
    holds: Option<&mut Holds>,
    block: u64,
    found: impl FnOnce(&[u8]) -> T,
) -> Option<T> {
    let (cache, run) = spill?;
    match holds {
        Some(holds) => cache.with_held(run, block, HeldKind::Page, holds, found),
        None => cache.with_present(run, block, found),
    }
}

impl Index {
    /// The computed index of a run whose footer says its keys are dense and fill its blocks
    /// as the writer fills them; none otherwise.
    fn dense(footer: &Footer) -> Option<Index> {
        let per_block = entries_per_block(footer.value_size as usize) as u64;
        let span = footer.last_key.checked_sub(footer.first_key)?;
        let dense = footer.keys > 0
            && span == u128::from(footer.keys - 1)
            && footer.data_blocks == footer.keys.div_ceil(per_block);
        dense.then_some(Index::Dense {
            first: footer.first_key,
            per_block,
            keys: footer.keys,
            blocks: footer.data_blocks,
        })
    }

    /// The first key of block `number`, if the run has that block.
    fn first_key(&self, number: u64, spill: Spill<'_>) -> Result<Option<u128>, StorageError> {
        Ok(match self {
            Index::Listed(firsts) => usize::try_from(number)
                .ok()
                .and_then(|number| firsts.get(number).copied()),
            Index::Dense {
                first,
                per_block,
                blocks,
                ..
            } => (number < *blocks).then(|| first + u128::from(number * per_block)),
            Index::Paged {
                firsts,
                region,
                blocks,
            } => {
                if number >= *blocks {
                    return Ok(None);
                }
                if number % INDEX_PAGE_KEYS == 0 {
                    // A page's first key is in the page table: checking the last block of a
                    // page against the next one's first key reads no page.
                    return Ok(Some(firsts[(number / INDEX_PAGE_KEYS) as usize]));
                }
                let page = region.page(number / INDEX_PAGE_KEYS, spill.expect(PAGED))?;
                Some(page.u128_at((number % INDEX_PAGE_KEYS) as usize))
            }
        })
    }

    /// The blocks whose first key is not above `key`: the block holding `key`, if any, is
    /// the last of them.
    fn blocks_from_up_to(&self, key: u128, spill: Spill<'_>) -> Result<u64, StorageError> {
        match (self.blocks_in_memory(key, spill, None), self) {
            (Ok(blocks), _) => Ok(blocks),
            (Err(page), Index::Paged { region, blocks, .. }) => Ok(Index::blocks_up_to_in_page(
                &region.page(page, spill.expect(PAGED))?,
                page,
                *blocks,
                key,
            )),
            (Err(_), _) => unreachable!("only a paged index misses a page"),
        }
    }

    /// [`Index::blocks_from_up_to`] from the pages in memory (kept, or in `spill`, then held
    /// for `holds` if given); the page it needs otherwise.
    fn blocks_in_memory(
        &self,
        key: u128,
        spill: Spill<'_>,
        holds: Option<&mut Holds>,
    ) -> Result<u64, u64> {
        Ok(match self {
            Index::Listed(firsts) => firsts.partition_point(|first| *first <= key) as u64,
            Index::Dense {
                first,
                per_block,
                blocks,
                ..
            } => match key.checked_sub(*first) {
                None => 0,
                Some(offset) => {
                    let block = offset / u128::from(*per_block);
                    u64::try_from(block).map_or(*blocks, |block| (block + 1).min(*blocks))
                }
            },
            Index::Paged {
                firsts,
                region,
                blocks,
            } => {
                let Some(page) = Index::page_of(firsts, key) else {
                    return Ok(0);
                };
                if let Some(words) = region.loaded(page) {
                    return Ok(Index::blocks_up_to_in_page(&words, page, *blocks, key));
                }
                let in_page = |bytes: &[u8]| {
                    Index::blocks_up_to_in_page(&PageWords::Bytes(bytes), page, *blocks, key)
                };
                spilled(spill, holds, region.block_number(page), in_page).ok_or(page)?
            }
        })
    }

    /// [`Index::blocks_from_up_to`] of `key` in a paged index, from the page (`bytes`) that
    /// lists the block holding it.
    fn blocks_up_to_in_page(words: &PageWords<'_>, page: u64, blocks: u64, key: u128) -> u64 {
        let listed = (blocks - page * INDEX_PAGE_KEYS).min(INDEX_PAGE_KEYS) as usize;
        let (mut low, mut high) = (0, listed);
        while low < high {
            let middle = (low + high) / 2;
            match words.u128_at(middle) <= key {
                true => low = middle + 1,
                false => high = middle,
            }
        }
        page * INDEX_PAGE_KEYS + low as u64
    }

    /// The page of a paged index that lists the block holding `key`, if any.
    fn page_of(firsts: &[u128], key: u128) -> Option<u64> {
        let pages = firsts.partition_point(|first| *first <= key);
        pages.checked_sub(1).map(|page| page as u64)
    }

    /// The entries block `number` must hold, when the index says (a dense run's).
    fn entries_of(&self, number: u64) -> Option<usize> {
        match self {
            Index::Listed(_) | Index::Paged { .. } => None,
            Index::Dense {
                per_block,
                keys,
                blocks,
                ..
            } => {
                let before = number * per_block;
                let entries = if number + 1 < *blocks {
                    *per_block
                } else {
                    keys - before
                };
                Some(entries as usize)
            }
        }
    }

    fn memory_size(&self) -> usize {
        match self {
            Index::Listed(firsts) => firsts.len() * 16,
            Index::Dense { .. } => 0,
            Index::Paged { firsts, region, .. } => firsts.len() * 16 + region.memory_size(),
        }
    }
}

/// A run's filter: in memory whole, or read a page at a time when first needed.
enum RunFilter {
    Resident(Filter),
    Paged {
        seed: u64,
        /// Its 32-byte blocks.
        blocks: u64,
        region: PagedRegion,
    },
}

impl RunFilter {
    fn may_contain(&self, key: u128, spill: Spill<'_>) -> Result<bool, StorageError> {
        match (self.passes_in_memory(key, spill, None), self) {
            (Ok(passes), _) => Ok(passes),
            (Err(probe), RunFilter::Paged { region, .. }) => {
                let page = region.page(probe.page, spill.expect(PAGED))?;
                Ok(filter::block_passes(page.block(probe.first), probe.hash))
            }
            (Err(_), RunFilter::Resident(_)) => unreachable!("a filter in memory misses no page"),
        }
    }

    /// Whether `key` may be in the run, from the filter's pages in memory (kept, or in
    /// `spill`, then held for `holds` if given); the probe whose page is not read yet
    /// otherwise.
    fn passes_in_memory(
        &self,
        key: u128,
        spill: Spill<'_>,
        holds: Option<&mut Holds>,
    ) -> Result<bool, FilterProbe> {
        match self {
            RunFilter::Resident(filter) => Ok(filter.may_contain(key)),
            RunFilter::Paged {
                seed,
                blocks,
                region,
            } => {
                let (block, hash) = filter::probe(*seed, *blocks, key);
                let (page, at) = RunFilter::place(block);
                let probe = FilterProbe {
                    page,
                    first: at / 8,
                    hash,
                };
                if let Some(words) = region.ready_block(page, probe.first) {
                    return Ok(filter::block_passes(words, hash));
                }
                let passes = |bytes: &[u8]| {
                    filter::block_passes(PageWords::Bytes(bytes).block(probe.first), hash)
                };
                spilled(spill, holds, region.block_number(page), passes).ok_or(probe)
            }
        }
    }

    /// The page and the offset in it of filter block `block`.
    fn place(block: u64) -> (u64, usize) {
        let offset = block * FILTER_BLOCK_SIZE as u64;
        (
            offset / BLOCK_SIZE as u64,
            (offset % BLOCK_SIZE as u64) as usize,
        )
    }

    fn memory_size(&self) -> usize {
        match self {
            RunFilter::Resident(filter) => filter.size(),
            RunFilter::Paged { region, .. } => region.memory_size(),
        }
    }
}

/// A probe of a paged filter: the page, the block's first word in it, the key's hash.
struct FilterProbe {
    page: u64,
    first: usize,
    hash: u64,
}

/// Where a lookup of a key reads ([`BlockingRun::locate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Located {
    Absent,
    Missing(Page),
    Block(u64),
}

/// A page of a run's index or filter, to read ahead ([`BlockingRun::load_pages`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Page {
    Index(u64),
    Filter(u64),
}

/// One data block read from a run and checked: its entries, in key order.
pub struct Block {
    bytes: AlignedBuffer,
    entries: usize,
    value_size: usize,
}

/// Block reads a prefetch keeps in flight at once.
pub const PREFETCH_READS_AT_ONCE: usize = 64;

/// Data blocks a scan reads at once.
const SCAN_BLOCKS: u64 = 64;

/// Data blocks a merge's input reads at once (2 MiB): each read is a wait, and a merge on a
/// busy core resumes from one only at its next turn, about once per batch applied, so a
/// merge goes no faster than this per turn and per input.
pub const MERGE_READ_BLOCKS: u64 = 512;

/// The checked entries of a block still in a larger read's buffer.
struct BlockView<'a> {
    bytes: &'a [u8],
    entries: usize,
    value_size: usize,
}

impl Run {
    /// Opens the run at `path` and checks everything but its data blocks, which are checked
    /// as they are read.
    pub async fn open(path: &Path) -> Result<Run, StorageError> {
        Run::open_with(path, true).await
    }

    /// Opens the run at `path` as [`Run::open`] does but for its filter, which it neither
    /// reads nor keeps (every key passes): for a reader of whole runs in key order, such as a
    /// merge, that never looks a key up.
    pub async fn open_unfiltered(path: &Path) -> Result<Run, StorageError> {
        Run::open_with(path, false).await
    }

    async fn open_with(path: &Path, with_filter: bool) -> Result<Run, StorageError> {
        let (file, footer) = open_file(path).await?;
        if footer.version >= 2 {
            // Not used with the index and filter in memory, but checked all the same.
            read_page_table(&file, path, &footer).await?;
        }
        let index = match Index::dense(&footer) {
            Some(index) => index,
            None => Index::Listed(read_index(&file, path, &footer).await?),
        };
        if !with_filter {
            let filter = RunFilter::Resident(Filter::passing_all(footer.filter_seed));
            let path = path.to_path_buf();
            let shape = Shape {
                path,
                footer,
                index,
                filter,
            };
            return Ok(Run { file, shape });
        }
        let filter = RunFilter::Resident(read_filter(&file, path, &footer).await?);
        let shape = Shape {
            path: path.to_path_buf(),
            footer,
            index,
            filter,
        };
        Ok(Run { file, shape })
    }

    /// The same run, read with blocking `pread`s from now on (the file is opened again,
    /// read-only with `O_DIRECT`).
    pub fn into_blocking(self) -> Result<BlockingRun, StorageError> {
        let file = open_blocking(&self.shape.path)?;
        Ok(BlockingRun {
            file,
            shape: self.shape,
            id: BLOCKING_RUN_IDS.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shape.path
    }

    pub fn footer(&self) -> &Footer {
        &self.shape.footer
    }

    pub fn keys(&self) -> u64 {
        self.shape.footer.keys
    }

    pub fn value_size(&self) -> usize {
        self.shape.value_size()
    }

    /// Bytes this run keeps in memory: its index and its filter.
    pub fn memory_size(&self) -> usize {
        self.shape.memory_size()
    }

    /// False when the run surely does not hold `key` (no read needed).
    pub fn may_contain(&self, key: u128) -> bool {
        self.shape.may_contain(key, None).expect(IN_MEMORY)
    }

    /// The data block that holds `key` if the run holds it: the last whose first key is not
    /// above it.
    pub fn block_of(&self, key: u128) -> Option<u64> {
        self.shape.block_of(key, None).expect(IN_MEMORY)
    }

    /// The value of `key`, reading at most one block.
    pub async fn get(&self, key: u128) -> Result<Option<Vec<u8>>, StorageError> {
        if !self.may_contain(key) {
            return Ok(None);
        }
        let Some(number) = self.block_of(key) else {
            return Ok(None);
        };
        let block = self.read_block(number).await?;
        Ok(block.get(key).map(<[u8]>::to_vec))
    }

    /// Calls `visit` with every entry whose key is in `from..=to`, in key order, until it
    /// returns false. Reads up to 64 blocks at a time.
    pub async fn scan(
        &self,
        from: u128,
        to: u128,
        mut visit: impl FnMut(u128, &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let shape = &self.shape;
        if shape.footer.keys == 0 || from > to || to < shape.footer.first_key {
            return Ok(());
        }
        let mut number = self.block_of(from).unwrap_or(0);
        let end = shape.index.blocks_from_up_to(to, None).expect(IN_MEMORY);
        while number < end {
            let count = (end - number).min(SCAN_BLOCKS);
            let offset = number * BLOCK_SIZE as u64;
            let size = count as usize * BLOCK_SIZE;
            let bytes = read_region(&self.file, &shape.path, offset, size).await?;
            for (at, block) in bytes.as_slice().chunks_exact(BLOCK_SIZE).enumerate() {
                let block_number = number + at as u64;
                let block_offset = block_number * BLOCK_SIZE as u64;
                let view = shape.check_block(block_number, block_offset, block, None)?;
                for at in view.search(from).unwrap_or_else(|at| at)..view.entries {
                    let (key, value) = view.entry(at);
                    if key > to || !visit(key, value) {
                        return Ok(());
                    }
                }
            }
            number += count;
        }
        Ok(())
    }

    /// Appends to `keys` and `values` the entries of the data blocks from `first` on, up to
    /// [`MERGE_READ_BLOCKS`] in one read, each checked; returns how many blocks it read (0
    /// from the end on). A merge reads its input runs this way, in key order, a bounded piece
    /// at a time.
    pub async fn read_entries(
        &self,
        first: u64,
        keys: &mut Vec<u128>,
        values: &mut Vec<u8>,
    ) -> Result<u64, StorageError> {
        let shape = &self.shape;
        let count = shape
            .footer
            .data_blocks
            .saturating_sub(first)
            .min(MERGE_READ_BLOCKS);
        if count == 0 {
            return Ok(0);
        }
        let offset = first * BLOCK_SIZE as u64;
        let size = count as usize * BLOCK_SIZE;
        let bytes = read_region(&self.file, &shape.path, offset, size).await?;
        for (at, block) in bytes.as_slice().chunks_exact(BLOCK_SIZE).enumerate() {
            let number = first + at as u64;
            let view = shape.check_block(number, number * BLOCK_SIZE as u64, block, None)?;
            for at in 0..view.entries {
                let (key, value) = view.entry(at);
                keys.push(key);
                values.extend_from_slice(value);
            }
        }
        Ok(count)
    }

    /// Reads data block `number` and checks it.
    pub async fn read_block(&self, number: u64) -> Result<Block, StorageError> {
        let shape = &self.shape;
        assert!(number < shape.footer.data_blocks, "block {number} of a run");
        let offset = number * BLOCK_SIZE as u64;
        let bytes = read_region(&self.file, &shape.path, offset, BLOCK_SIZE).await?;
        let entries = shape
            .check_block(number, offset, bytes.as_slice(), None)?
            .entries;
        Ok(Block {
            bytes,
            entries,
            value_size: self.value_size(),
        })
    }
}

/// How [`BlockingRun::read_ahead`] keeps the blocks it reads for a reader.
#[derive(Clone, Copy)]
enum ReadAhead {
    /// Held until released ([`BlockCache::hold`]).
    Held,
    /// In the CLOCK, marked referenced ([`BlockCache::insert_read_ahead`]).
    Unheld,
}

impl BlockingRun {
    /// Opens the run at `path` for blocking reads, reading its footer and, in a run of
    /// format version 2, its page table: its index and filter are read a page at a time when
    /// a lookup first needs them (but for an index or filter of one page, read at once, and a
    /// dense run's index, which is computed). The pages it keeps take their bytes from
    /// `budget` until it closes; a page past the budget is kept in its reader's block cache.
    /// A version 1 run is opened as [`Run::open`] opens it, its index and filter read whole.
    pub async fn open(path: &Path, budget: &Arc<PageBudget>) -> Result<BlockingRun, StorageError> {
        let (file, footer) = open_file(path).await?;
        if footer.version == 1 {
            return Run::open(path).await?.into_blocking();
        }
        let table = read_page_table(&file, path, &footer).await?;
        let std_file = open_blocking(path)?;
        let region = |offset, crcs, index, what| -> Result<PagedRegion, StorageError> {
            let file = std_file
                .try_clone()
                .map_err(|error| StorageError::io("open run", path, error))?;
            let budget = budget.clone();
            Ok(PagedRegion::new(
                file, path, offset, crcs, index, budget, what,
            ))
        };
        let index = match Index::dense(&footer) {
            Some(index) => index,
            None if footer.index_pages() <= 1 => {
                Index::Listed(read_index(&file, path, &footer).await?)
            }
            None => {
                let shape = IndexShape {
                    firsts: table.index_firsts.clone(),
                    blocks: footer.data_blocks,
                    last_key: footer.last_key,
                };
                let what = "run index page";
                Index::Paged {
                    firsts: table.index_firsts,
                    region: region(footer.index_offset, table.index_crcs, Some(shape), what)?,
                    blocks: footer.data_blocks,
                }
            }
        };
        let filter = if footer.filter_pages() <= 1 {
            RunFilter::Resident(read_filter(&file, path, &footer).await?)
        } else {
            RunFilter::Paged {
                seed: footer.filter_seed,
                blocks: footer.filter_size / FILTER_BLOCK_SIZE as u64,
                region: region(
                    footer.filter_offset,
                    table.filter_crcs,
                    None,
                    "run filter page",
                )?,
            }
        };
        Ok(BlockingRun {
            file: std_file,
            shape: Shape {
                path: path.to_path_buf(),
                footer,
                index,
                filter,
            },
            id: BLOCKING_RUN_IDS.fetch_add(1, Ordering::Relaxed),
        })
    }

    pub fn footer(&self) -> &Footer {
        &self.shape.footer
    }

    /// Bytes this run keeps in memory: its index and filter, or the pages of them read so far
    /// and its page table.
    pub fn memory_size(&self) -> usize {
        self.shape.memory_size()
    }

    /// The data block that holds `key` if the run holds it: the last whose first key is not
    /// above it (none below the run's first key). May read a page of the index (kept, or
    /// cached in `cache` past the page budget).
    pub fn block_of(&self, key: u128, cache: &BlockCache) -> Result<Option<u64>, StorageError> {
        self.shape.block_of(key, self.spill(cache))
    }

    /// The data block a `get` of `key` reads: none when the key is outside the run or its
    /// filter rules it out. May read a page of the filter and one of the index.
    pub fn block_for(&self, key: u128, cache: &BlockCache) -> Result<Option<u64>, StorageError> {
        let shape = &self.shape;
        if !shape.may_contain(key, self.spill(cache))? {
            return Ok(None);
        }
        shape.block_of(key, self.spill(cache))
    }

    /// Where this run's pages past the page budget are found and kept: `cache`.
    fn spill<'a>(&self, cache: &'a BlockCache) -> Spill<'a> {
        Some((cache, self.id))
    }

    /// Pages of the index and filter read with a blocking `pread` so far (not read ahead).
    pub fn pages_read_blocking(&self) -> usize {
        let index = match &self.shape.index {
            Index::Paged { region, .. } => region.blocking_reads(),
            _ => 0,
        };
        let filter = match &self.shape.filter {
            RunFilter::Paged { region, .. } => region.blocking_reads(),
            RunFilter::Resident(_) => 0,
        };
        index + filter
    }

    /// Where a `get` of `key` would read, from what is in memory only (the pages kept, and
    /// those `cache` has, held for `holds` from then on): nothing (the key is outside the run
    /// or its filter rules it out), a page of the filter or index not read yet, or a data
    /// block. A reader that must not block reads the missing page ahead
    /// ([`BlockingRun::load_pages`], which holds a page past the budget in `cache`) and asks
    /// again: after at most two rounds (the filter's page, then the index's) it has the
    /// block.
    pub fn locate(&self, key: u128, cache: &BlockCache, holds: &mut Holds) -> Located {
        let shape = &self.shape;
        if !shape.in_range(key) {
            return Located::Absent;
        }
        match shape
            .filter
            .passes_in_memory(key, self.spill(cache), Some(&mut *holds))
        {
            Ok(true) => {}
            Ok(false) => return Located::Absent,
            Err(probe) => return Located::Missing(Page::Filter(probe.page)),
        }
        let after = match shape
            .index
            .blocks_in_memory(key, self.spill(cache), Some(holds))
        {
            Ok(after) => after,
            Err(page) => return Located::Missing(Page::Index(page)),
        };
        match after.checked_sub(1) {
            Some(block) => Located::Block(block),
            None => Located::Absent,
        }
    }

    /// The pages of the index not yet in memory that list the blocks holding keys `from..=to`.
    pub fn index_pages_missing(&self, from: u128, to: u128) -> Vec<Page> {
        let Index::Paged { firsts, region, .. } = &self.shape.index else {
            return Vec::new();
        };
        let first = Index::page_of(firsts, from).unwrap_or(0);
        let Some(last) = Index::page_of(firsts, to) else {
            return Vec::new();
        };
        let pages = (first..=last).filter(|page| !region.is_loaded(*page));
        pages.map(Page::Index).collect()
    }

    /// Reads `pages` through the calling thread's io_uring (a monoio runtime),
    /// [`PREFETCH_READS_AT_ONCE`] in flight at a time, but for those kept or in `cache`;
    /// checks each against the page table and keeps it, or, past the page budget, holds it
    /// in `cache` for `holds` until released: lookups that need them then read no disk for
    /// them.
    pub async fn load_pages(
        &self,
        pages: &[Page],
        cache: &BlockCache,
        holds: &mut Holds,
    ) -> Result<(), StorageError> {
        let shape = &self.shape;
        let region_of = |page: Page| match (page, &shape.index, &shape.filter) {
            (Page::Index(number), Index::Paged { region, .. }, _)
            | (Page::Filter(number), _, RunFilter::Paged { region, .. }) => (region, number),
            _ => unreachable!("{page:?} of a run that does not page it"),
        };
        let wanted: Vec<(&PagedRegion, u64)> = pages
            .iter()
            .map(|page| region_of(*page))
            .filter(|(region, number)| !region.is_loaded(*number))
            .filter(|(region, number)| {
                let block = region.block_number(*number);
                !cache.hold_if_present(self.id, block, HeldKind::Page, holds)
            })
            .collect();
        let offsets: Vec<u64> = wanted
            .iter()
            .map(|(region, n)| region.offset_of(*n))
            .collect();
        self.read_at_once(&offsets, |at, bytes| {
            let (region, number) = wanted[at];
            // Not kept: past the budget, or another thread was writing it then (and may not
            // keep it either).
            let kept = region.install(number, bytes)?.is_some() && region.is_loaded(number);
            if !kept {
                let block = region.block_number(number);
                cache.hold(self.id, block, bytes.into(), HeldKind::Page, holds);
            }
            Ok(())
        })
        .await
    }

    /// Reads the 4 KiB blocks at `offsets` through the calling thread's io_uring,
    /// [`PREFETCH_READS_AT_ONCE`] in flight at a time, on the file opened again (`dup`), and
    /// hands each to `take` with its place in `offsets`, in order; stops at the first read or
    /// `take` that fails.
    async fn read_at_once(
        &self,
        offsets: &[u64],
        mut take: impl FnMut(usize, &[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let path = &self.shape.path;
        let io = |error| StorageError::io("read run", path, error);
        let file = File::from_std(self.file.try_clone().map_err(io)?).map_err(io)?;
        for (chunk, offsets) in offsets.chunks(PREFETCH_READS_AT_ONCE).enumerate() {
            let reads = offsets
                .iter()
                .map(|offset| read_region(&file, path, *offset, BLOCK_SIZE));
            let reads = futures_util::future::join_all(reads).await;
            for (at, read) in reads.into_iter().enumerate() {
                take(chunk * PREFETCH_READS_AT_ONCE + at, read?.as_slice())?;
            }
        }
        Ok(())
    }

    /// Reads data blocks `numbers` through the calling thread's io_uring (a monoio runtime),
    /// [`PREFETCH_READS_AT_ONCE`] in flight at a time, but for those `cache` has; checks each
    /// and holds it in `cache` for `holds` until released ([`BlockCache::release`]): a later
    /// blocking `get` of a key in those blocks then reads no disk. The file is opened again
    /// (`dup`) once for the reads. Stops at the first read that fails.
    pub async fn prefetch(
        &self,
        numbers: &[u64],
        cache: &BlockCache,
        holds: &mut Holds,
    ) -> Result<(), StorageError> {
        self.read_ahead(numbers, cache, holds, ReadAhead::Held)
            .await
    }

    /// Reads data blocks `numbers` as [`BlockingRun::prefetch`] does, but for those `cache`
    /// holds or caches, into the cache's CLOCK rather than held, for `holds`' reader past its
    /// bound on held blocks ([`BlockCache::insert_read_ahead`]; those found are marked as
    /// if so read, [`BlockCache::read_ahead_if_present`]): its later blocking `get`s find
    /// them there unless other readers evicted them meanwhile.
    pub async fn prefetch_unheld(
        &self,
        numbers: &[u64],
        cache: &BlockCache,
        holds: &mut Holds,
    ) -> Result<(), StorageError> {
        self.read_ahead(numbers, cache, holds, ReadAhead::Unheld)
            .await
    }

    /// Reads data blocks `numbers` ahead for `holds`, held or unheld as `how` says, but for
    /// those `cache` has.
    async fn read_ahead(
        &self,
        numbers: &[u64],
        cache: &BlockCache,
        holds: &mut Holds,
        how: ReadAhead,
    ) -> Result<(), StorageError> {
        let shape = &self.shape;
        let mut wanted = Vec::with_capacity(numbers.len());
        for &number in numbers {
            assert!(number < shape.footer.data_blocks, "block {number} of a run");
            let present = match how {
                ReadAhead::Held => cache.hold_if_present(self.id, number, HeldKind::Block, holds),
                ReadAhead::Unheld => cache.read_ahead_if_present(self.id, number, holds),
            };
            if !present {
                wanted.push(number);
            }
        }
        let offsets: Vec<u64> = wanted.iter().map(|n| n * BLOCK_SIZE as u64).collect();
        self.read_at_once(&offsets, |at, bytes| {
            let number = wanted[at];
            shape.check_block(number, offsets[at], bytes, self.spill(cache))?;
            match how {
                ReadAhead::Held => {
                    cache.hold(self.id, number, bytes.into(), HeldKind::Block, holds)
                }
                ReadAhead::Unheld => cache.insert_read_ahead(self.id, number, bytes.into(), holds),
            }
            Ok(())
        })
        .await
    }

    /// Copies the value of `key` into `value` (the run's value size) and returns whether the
    /// run holds it, reading at most one block with a blocking `pread`, checked as every block
    /// read is, unless `cache` holds that block.
    pub fn get(
        &self,
        key: u128,
        value: &mut [u8],
        cache: &BlockCache,
    ) -> Result<bool, StorageError> {
        let shape = &self.shape;
        assert_eq!(
            value.len(),
            shape.value_size(),
            "a value buffer of the run's size"
        );
        if !shape.may_contain(key, self.spill(cache))? {
            return Ok(false);
        }
        let Some(number) = shape.block_of(key, self.spill(cache))? else {
            return Ok(false);
        };
        let found = |view: BlockView<'_>| {
            let at = view.search(key).ok()?;
            value.copy_from_slice(view.entry(at).1);
            Some(())
        };
        let found = self.with_block(number, cache, found)?;
        Ok(found.is_some())
    }

    /// Calls `visit(key, value)` for the run's entries with keys in `keys`, ascending, or
    /// descending when `reversed`, until it returns false; returns whether it did. Reads
    /// one block at a time with a blocking `pread`, checked, unless `cache` holds it. `visit`
    /// runs outside the cache's lock, so it may read this run or others.
    pub fn scan_range(
        &self,
        keys: std::ops::Range<u128>,
        reversed: bool,
        cache: &BlockCache,
        visit: &mut dyn FnMut(u128, &[u8]) -> bool,
    ) -> Result<bool, StorageError> {
        let (from, to) = (keys.start, keys.end);
        let footer = &self.shape.footer;
        if footer.keys == 0 || from >= to || from > footer.last_key || to <= footer.first_key {
            return Ok(false);
        }
        let first = self
            .shape
            .block_of(from.max(footer.first_key), self.spill(cache))?;
        let last = self
            .shape
            .block_of((to - 1).min(footer.last_key), self.spill(cache))?;
        let (Some(first), Some(last)) = (first, last) else {
            unreachable!("keys within the run's range have a block");
        };
        let size = self.shape.value_size();
        let mut keys: Vec<u128> = Vec::new();
        let mut values: Vec<u8> = Vec::new();
        let mut visit_block = |number: u64| -> Result<bool, StorageError> {
            keys.clear();
            values.clear();
            self.with_block(number, cache, |view| {
                for at in 0..view.entries {
                    let (key, value) = view.entry(at);
                    if key >= from && key < to {
                        keys.push(key);
                        values.extend_from_slice(value);
                    }
                }
            })?;
            let mut entries = keys.iter().enumerate();
            let mut next = || match reversed {
                false => entries.next(),
                true => entries.next_back(),
            };
            while let Some((at, key)) = next() {
                if !visit(*key, &values[at * size..(at + 1) * size]) {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        if reversed {
            for number in (first..=last).rev() {
                if visit_block(number)? {
                    return Ok(true);
                }
            }
        } else {
            for number in first..=last {
                if visit_block(number)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Calls `found` with data block `number`, from `cache` or read with a blocking `pread`
    /// and checked (then cached).
    fn with_block<T>(
        &self,
        number: u64,
        cache: &BlockCache,
        found: impl FnOnce(BlockView<'_>) -> T,
    ) -> Result<T, StorageError> {
        let shape = &self.shape;
        let offset = number * BLOCK_SIZE as u64;
        let read = |block: &mut [u8]| {
            let mut buffer = AlignedBuffer::new(BLOCK_SIZE);
            let target = &mut buffer.as_mut_slice_full()[..BLOCK_SIZE];
            self.file
                .read_exact_at(target, offset)
                .map_err(|error| StorageError::io("read run", &shape.path, error))?;
            buffer.set_len(BLOCK_SIZE);
            shape.check_block(number, offset, buffer.as_slice(), self.spill(cache))?;
            block.copy_from_slice(buffer.as_slice());
            Ok(())
        };
        let found = |block: &[u8]| {
            found(BlockView {
                bytes: block,
                entries: usize::from(u16::from_le_bytes([block[4], block[5]])),
                value_size: shape.value_size(),
            })
        };
        cache.with_block(self.id, number, read, found)
    }
}

impl Shape {
    fn value_size(&self) -> usize {
        self.footer.value_size as usize
    }

    fn memory_size(&self) -> usize {
        self.index.memory_size() + self.filter.memory_size()
    }

    fn in_range(&self, key: u128) -> bool {
        self.footer.keys > 0 && key >= self.footer.first_key && key <= self.footer.last_key
    }

    fn may_contain(&self, key: u128, spill: Spill<'_>) -> Result<bool, StorageError> {
        Ok(self.in_range(key) && self.filter.may_contain(key, spill)?)
    }

    fn block_of(&self, key: u128, spill: Spill<'_>) -> Result<Option<u64>, StorageError> {
        if self.footer.keys > 0 && key == self.footer.first_key {
            return Ok(Some(0)); // no index page needed: a scan from the run's start
        }
        let after = self.index.blocks_from_up_to(key, spill)?;
        Ok(after.checked_sub(1))
    }

    /// The entries of data block `number`, read from `offset`, once every check passed.
    fn check_block<'a>(
        &self,
        number: u64,
        offset: u64,
        bytes: &'a [u8],
        spill: Spill<'_>,
    ) -> Result<BlockView<'a>, StorageError> {
        let corrupt = |what| corrupt(&self.path, offset, what);
        if crc32c::crc32c(&bytes[4..]) != read_u32(bytes, 0) {
            return Err(corrupt("run block checksum mismatch"));
        }
        if u64::from_le_bytes(bytes[8..16].try_into().expect("eight bytes")) != number {
            return Err(corrupt("run block read from the wrong place"));
        }
        let entries = usize::from(u16::from_le_bytes([bytes[4], bytes[5]]));
        if entries == 0
            || entries > entries_per_block(self.value_size())
            || self
                .index
                .entries_of(number)
                .is_some_and(|dense| entries != dense)
        {
            return Err(corrupt("run block entry count out of range"));
        }
        let view = BlockView {
            bytes,
            entries,
            value_size: self.value_size(),
        };
        let next = self.index.first_key(number + 1, spill)?;
        let first = self
            .index
            .first_key(number, spill)?
            .expect("a block of the run");
        if view.entry(0).0 != first
            || !(1..entries).all(|at| view.entry(at - 1).0 < view.entry(at).0)
            || next.is_some_and(|next| view.entry(entries - 1).0 >= next)
            || view.entry(entries - 1).0 > self.footer.last_key
        {
            return Err(corrupt("run block keys out of order"));
        }
        Ok(view)
    }
}

impl<'a> BlockView<'a> {
    fn entry(&self, at: usize) -> (u128, &'a [u8]) {
        assert!(at < self.entries);
        let start = BLOCK_HEADER_SIZE + at * (16 + self.value_size);
        let value = &self.bytes[start + 16..start + 16 + self.value_size];
        (read_u128(self.bytes, start), value)
    }

    fn search(&self, key: u128) -> Result<usize, usize> {
        let (mut low, mut high) = (0, self.entries);
        while low < high {
            let middle = (low + high) / 2;
            match self.entry(middle).0.cmp(&key) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Ok(middle),
            }
        }
        Err(low)
    }
}

impl Block {
    fn view(&self) -> BlockView<'_> {
        BlockView {
            bytes: self.bytes.as_slice(),
            entries: self.entries,
            value_size: self.value_size,
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entry `at`: its key and value.
    pub fn entry(&self, at: usize) -> (u128, &[u8]) {
        self.view().entry(at)
    }

    /// Where `key` is (`Ok`) or would go (`Err`), as `slice::binary_search`.
    pub fn search(&self, key: u128) -> Result<usize, usize> {
        self.view().search(key)
    }

    pub fn get(&self, key: u128) -> Option<&[u8]> {
        self.search(key).ok().map(|at| self.entry(at).1)
    }
}

/// The run at `path` opened read-only with `O_DIRECT`, and its footer, checked.
async fn open_file(path: &Path) -> Result<(File, Footer), StorageError> {
    let file = monoio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .await
        .map_err(|error| StorageError::io("open run", path, error))?;
    let size = files::file_size(&file, path).await?;
    if size < BLOCK_SIZE as u64 || size % BLOCK_SIZE as u64 != 0 {
        return Err(corrupt(path, size, "run size is not whole blocks"));
    }
    let footer_offset = size - BLOCK_SIZE as u64;
    let footer_block = read_region(&file, path, footer_offset, BLOCK_SIZE).await?;
    let footer = Footer::decode(path, footer_offset, footer_block.as_slice(), size)?;
    Ok((file, footer))
}

/// A run's file opened again for blocking reads, read-only with `O_DIRECT`.
fn open_blocking(path: &Path) -> Result<std::fs::File, StorageError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|error| StorageError::io("open run", path, error))
}

/// What a [`Run`] read through io_uring keeps: its index and filter whole, never paged.
const IN_MEMORY: &str = "a run opened with io_uring keeps its index and filter in memory";

/// The filter region's size on disk (whole blocks).
fn size_of(footer: &Footer) -> usize {
    align_up(footer.filter_size) as usize
}

/// The page table of a run of format version 2, checked.
async fn read_page_table(
    file: &File,
    path: &Path,
    footer: &Footer,
) -> Result<PageTable, StorageError> {
    let offset = footer.pages_offset();
    let size = footer.pages_size() as usize;
    let bytes = read_region(file, path, offset, align_up(size as u64) as usize).await?;
    PageTable::decode(&bytes.as_slice()[..size], footer)
        .ok_or_else(|| corrupt(path, offset, "run page table"))
}

/// The filter, checked against its checksum.
async fn read_filter(file: &File, path: &Path, footer: &Footer) -> Result<Filter, StorageError> {
    let bytes = read_region(file, path, footer.filter_offset, size_of(footer)).await?;
    let bytes = &bytes.as_slice()[..footer.filter_size as usize];
    if crc32c::crc32c(bytes) != footer.filter_crc {
        return Err(corrupt(path, footer.filter_offset, "run filter checksum"));
    }
    Filter::decode(bytes, footer.filter_seed)
        .ok_or_else(|| corrupt(path, footer.filter_offset, "run filter size"))
}

/// The index, checked: its checksum, and keys that ascend within the footer's range.
async fn read_index(file: &File, path: &Path, footer: &Footer) -> Result<Vec<u128>, StorageError> {
    let size = align_up(footer.index_size) as usize;
    let bytes = read_region(file, path, footer.index_offset, size).await?;
    let bytes = &bytes.as_slice()[..footer.index_size as usize];
    if crc32c::crc32c(bytes) != footer.index_crc {
        return Err(corrupt(path, footer.index_offset, "run index checksum"));
    }
    let index: Vec<u128> = bytes
        .chunks_exact(16)
        .map(|key| read_u128(key, 0))
        .collect();
    let ascending = index.windows(2).all(|pair| pair[0] < pair[1]);
    let bounded = index.first().is_none_or(|&first| first == footer.first_key)
        && index.last().is_none_or(|&last| last <= footer.last_key);
    if !ascending || !bounded {
        return Err(corrupt(path, footer.index_offset, "run index out of order"));
    }
    Ok(index)
}

/// `size` bytes (whole blocks) from `offset`, all of them or an error.
async fn read_region(
    file: &File,
    path: &Path,
    offset: u64,
    size: usize,
) -> Result<AlignedBuffer, StorageError> {
    debug_assert_eq!(size % BLOCK_SIZE, 0);
    let mut buffer = AlignedBuffer::new(size.max(BLOCK_SIZE));
    let mut filled = 0;
    while filled < size {
        let (result, slice) = file
            .read_at(buffer.slice_mut(filled..size), offset + filled as u64)
            .await;
        buffer = slice.into_inner();
        match result {
            Ok(0) => return Err(files::short("read run", path)),
            Ok(read) => filled += read,
            Err(error) => return Err(StorageError::io("read run", path, error)),
        }
    }
    buffer.set_len(size);
    Ok(buffer)
}
