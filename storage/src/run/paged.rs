//! A run's index and filter read a page at a time (format version 2, `run/mod.rs`): the
//! [`PageTable`] stored in the run says each page's checksum (and each index page's first
//! key), and a [`PagedRegion`] reads a page when a lookup first needs it, checks it against
//! the table and keeps it. So opening a run reads its footer and page table only, and memory
//! holds the pages used, not the whole index and filter of every run.
//!
//! The pages kept are bounded by a [`PageBudget`], shared by every run of a node: a page the
//! budget has no room for is not kept by its region, and its reader keeps it in its block
//! cache instead, evicted there as blocks are (`reader.rs`). Kept pages stay until their run
//! closes, which gives their bytes back.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use super::cache::BlockCache;
use super::{corrupt, read_u128, read_u32, Footer};
use crate::aligned::{AlignedBuffer, BLOCK_SIZE, MAPPED_SIZE_MIN};
use crate::StorageError;

/// Bytes of an index page's entry in the page table: its first key and its checksum.
pub(super) const INDEX_PAGE_ENTRY_SIZE: u64 = 20;
/// Data blocks whose first keys one index page lists.
pub(super) const INDEX_PAGE_KEYS: u64 = (BLOCK_SIZE / 16) as u64;

/// The bytes of index and filter pages that the runs sharing it may keep in memory: see the
/// module documentation.
#[derive(Debug)]
pub struct PageBudget {
    limit: usize,
    used: AtomicUsize,
}

impl PageBudget {
    /// A budget of `limit` bytes (whole pages of 4 KiB count; 0 keeps none).
    pub fn new(limit: usize) -> Arc<PageBudget> {
        Arc::new(PageBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// A budget that keeps every page read (tests, tools).
    pub fn unbounded() -> Arc<PageBudget> {
        PageBudget::new(usize::MAX)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of the pages kept now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes a page's bytes if they fit.
    fn claim(&self) -> bool {
        let fits = |used: usize| {
            let after = used.checked_add(BLOCK_SIZE)?;
            (after <= self.limit).then_some(after)
        };
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, fits)
            .is_ok()
    }

    fn give_back(&self, pages: usize) {
        let before = self.used.fetch_sub(pages * BLOCK_SIZE, Ordering::Relaxed);
        assert!(
            before >= pages * BLOCK_SIZE,
            "a budget gives back what it gave"
        );
    }
}

/// See the module documentation.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PageTable {
    /// The first key of each index page (of the data block it lists first).
    pub(super) index_firsts: Vec<u128>,
    pub(super) index_crcs: Vec<u32>,
    pub(super) filter_crcs: Vec<u32>,
}

impl PageTable {
    /// The table of the index `firsts` (one key per data block) and of the filter region
    /// `filter`, each as the file holds it: zero-padded to whole pages.
    pub(super) fn of(firsts: &[u128], index: &[u8], filter: &[u8]) -> PageTable {
        assert!(index.len() % BLOCK_SIZE == 0 && filter.len() % BLOCK_SIZE == 0);
        let crcs = |region: &[u8]| {
            region
                .chunks_exact(BLOCK_SIZE)
                .map(crc32c::crc32c)
                .collect()
        };
        PageTable {
            index_firsts: firsts
                .iter()
                .step_by(INDEX_PAGE_KEYS as usize)
                .copied()
                .collect(),
            index_crcs: crcs(index),
            filter_crcs: crcs(filter),
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (first, crc) in self.index_firsts.iter().zip(&self.index_crcs) {
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&crc.to_le_bytes());
        }
        for crc in &self.filter_crcs {
            out.extend_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// The table in `bytes` (the region's, without its padding) of a run with `footer`, if
    /// its checksum and size are the footer's and its first keys ascend within the run's.
    pub(super) fn decode(bytes: &[u8], footer: &Footer) -> Option<PageTable> {
        let index_pages = usize::try_from(footer.index_pages()).ok()?;
        let filter_pages = usize::try_from(footer.filter_pages()).ok()?;
        if bytes.len() as u64 != footer.pages_size() || crc32c::crc32c(bytes) != footer.pages_crc {
            return None;
        }
        let entry = INDEX_PAGE_ENTRY_SIZE as usize;
        let (index, filter) = bytes.split_at(index_pages * entry);
        let table = PageTable {
            index_firsts: index.chunks_exact(entry).map(|e| read_u128(e, 0)).collect(),
            index_crcs: index.chunks_exact(entry).map(|e| read_u32(e, 16)).collect(),
            filter_crcs: filter.chunks_exact(4).map(|e| read_u32(e, 0)).collect(),
        };
        let firsts = &table.index_firsts;
        let ordered = firsts.windows(2).all(|pair| pair[0] < pair[1])
            && firsts
                .first()
                .is_none_or(|first| *first == footer.first_key)
            && firsts.last().is_none_or(|last| *last <= footer.last_key);
        (ordered && table.filter_crcs.len() == filter_pages).then_some(table)
    }
}

/// A region of a run (its index or its filter) read a page at a time: see the module
/// documentation. Shared by the threads that read the run. The pages live in one buffer of the
/// region's size whose memory the kernel maps on first write (`AlignedBuffer`), so memory holds
/// the pages read and a probe costs what a probe of a filter in memory costs: a check of the
/// page's state, then the word. The first reader of a page writes it; a reader that finds it
/// being written answers from its own copy. A page is kept only if the budget has room for it.
pub(super) struct PagedRegion {
    file: std::fs::File,
    path: PathBuf,
    /// Where the region starts in the file.
    offset: u64,
    crcs: Vec<u32>,
    words: RegionWords,
    /// Per page: [`EMPTY`], [`WRITING`] or [`READY`].
    states: Box<[AtomicU8]>,
    /// For an index region: what each page must agree with.
    index: Option<IndexShape>,
    budget: Arc<PageBudget>,
    /// Pages kept: what the region took of the budget.
    loaded: AtomicUsize,
    /// Pages read by [`PagedRegion::page`] (blocking), not ahead.
    blocking_reads: AtomicUsize,
    what: &'static str,
}

/// What an index region's pages must agree with: the page table's first keys, the run's data
/// blocks and last key.
pub(super) struct IndexShape {
    pub(super) firsts: Vec<u128>,
    pub(super) blocks: u64,
    pub(super) last_key: u128,
}

impl IndexShape {
    /// Whether index page `number` (`bytes`) lists first keys that ascend from the table's
    /// first key of the page to below the next page's (and the run's last key).
    fn agrees(&self, number: u64, bytes: &[u8]) -> bool {
        let listed = (self.blocks - number * INDEX_PAGE_KEYS).min(INDEX_PAGE_KEYS) as usize;
        let keys = bytes[..listed * 16]
            .chunks_exact(16)
            .map(|key| read_u128(key, 0));
        let keys: Vec<u128> = keys.collect();
        let next = self.firsts.get(number as usize + 1).copied();
        keys.first() == self.firsts.get(number as usize)
            && keys.windows(2).all(|pair| pair[0] < pair[1])
            && keys.last().is_some_and(|last| *last <= self.last_key)
            && next.is_none_or(|next| keys.last().is_some_and(|last| *last < next))
    }
}

/// A region's pages: a buffer read and written only as atomic words.
struct RegionWords(AlignedBuffer);

// SAFETY: the buffer is owned (moving it between threads moves the allocation's ownership),
// and it is only ever accessed through `as_atomic_words`, whose atomic loads and stores may
// come from any thread at once; nothing reads it as plain bytes or hands it to io_uring.
unsafe impl Send for RegionWords {}
// SAFETY: as for `Send`: shared access is atomic words only.
unsafe impl Sync for RegionWords {}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;
/// 64-bit words in a page.
const PAGE_WORDS: usize = BLOCK_SIZE / 8;

/// A page's words (as the file holds them, little-endian), in the region or a reader's copy.
pub(super) enum PageWords<'a> {
    Shared(&'a [AtomicU64]),
    Own(Vec<u64>),
    /// The page's bytes, as a block cache holds them.
    Bytes(&'a [u8]),
}

impl PageWords<'_> {
    /// Word `at` of the page.
    pub(super) fn word(&self, at: usize) -> u64 {
        match self {
            PageWords::Shared(words) => u64::from_le(words[at].load(Ordering::Relaxed)),
            PageWords::Own(words) => words[at],
            PageWords::Bytes(bytes) => {
                u64::from_le_bytes(bytes[at * 8..at * 8 + 8].try_into().expect("eight bytes"))
            }
        }
    }

    /// The `N` words from word `first` on.
    pub(super) fn block<const N: usize>(&self, first: usize) -> [u64; N] {
        std::array::from_fn(|at| self.word(first + at))
    }

    /// The 16-byte little-endian integer at entry `at` (bytes `16 × at` on).
    pub(super) fn u128_at(&self, at: usize) -> u128 {
        u128::from(self.word(2 * at)) | u128::from(self.word(2 * at + 1)) << 64
    }
}

impl PagedRegion {
    /// The region of `file` (opened with `O_DIRECT`) from `offset` whose pages have `crcs`,
    /// keeping pages while `budget` has room.
    pub(super) fn new(
        file: std::fs::File,
        path: &Path,
        offset: u64,
        crcs: Vec<u32>,
        index: Option<IndexShape>,
        budget: Arc<PageBudget>,
        what: &'static str,
    ) -> PagedRegion {
        PagedRegion {
            file,
            path: path.to_path_buf(),
            offset,
            // Always mapped, so that memory holds only the pages written: the heap would zero a
            // smaller aligned buffer by writing it whole.
            words: RegionWords(AlignedBuffer::new(
                (crcs.len() * BLOCK_SIZE).max(MAPPED_SIZE_MIN),
            )),
            states: (0..crcs.len()).map(|_| AtomicU8::new(EMPTY)).collect(),
            crcs,
            index,
            budget,
            loaded: AtomicUsize::new(0),
            blocking_reads: AtomicUsize::new(0),
            what,
        }
    }

    /// Where page `number` is in the file.
    pub(super) fn offset_of(&self, number: u64) -> u64 {
        self.offset + number * BLOCK_SIZE as u64
    }

    pub(super) fn is_loaded(&self, number: u64) -> bool {
        self.loaded(number).is_some()
    }

    /// Page `number`, if it was read.
    pub(super) fn loaded(&self, number: u64) -> Option<PageWords<'_>> {
        self.ready_words(number).map(PageWords::Shared)
    }

    /// The words of page `number`, if it was read.
    #[inline]
    fn ready_words(&self, number: u64) -> Option<&[AtomicU64]> {
        let ready = self.states[number as usize].load(Ordering::Acquire) == READY;
        ready.then(|| self.page_words(number))
    }

    /// The `N` words of page `number` from word `first` on, as numbers, if it was read: a
    /// probe's path, all words loaded before any is used.
    #[inline]
    pub(super) fn ready_block<const N: usize>(
        &self,
        number: u64,
        first: usize,
    ) -> Option<[u64; N]> {
        let words = self.ready_words(number)?;
        Some(std::array::from_fn(|at| {
            u64::from_le(words[first + at].load(Ordering::Relaxed))
        }))
    }

    #[inline]
    fn page_words(&self, number: u64) -> &[AtomicU64] {
        let start = number as usize * PAGE_WORDS;
        // SAFETY: a region's buffer is only ever used through this view (`RegionWords`).
        let words = unsafe { self.words.0.as_atomic_words() };
        &words[start..start + PAGE_WORDS]
    }

    /// Page `number`: kept, found in `spill` (a page past the budget), or read with a
    /// blocking `pread` and checked, then kept if the budget has room, or else cached in
    /// `spill`. `spill` is the reader's block cache with the file's id in it.
    pub(super) fn page(
        &self,
        number: u64,
        spill: (&BlockCache, u64),
    ) -> Result<PageWords<'_>, StorageError> {
        if let Some(page) = self.loaded(number) {
            return Ok(page);
        }
        let (cache, run) = spill;
        let block = self.block_number(number);
        if let Some(words) = cache.with_present(run, block, words_of) {
            return Ok(PageWords::Own(words));
        }
        self.blocking_reads.fetch_add(1, Ordering::Relaxed);
        let offset = self.offset_of(number);
        let mut buffer = AlignedBuffer::new(BLOCK_SIZE);
        let target = &mut buffer.as_mut_slice_full()[..BLOCK_SIZE];
        self.file
            .read_exact_at(target, offset)
            .map_err(|error| StorageError::io("read run", &self.path, error))?;
        buffer.set_len(BLOCK_SIZE);
        match self.install(number, buffer.as_slice())? {
            Some(page) => Ok(page),
            None => {
                cache.insert(run, block, buffer.as_slice().into());
                Ok(PageWords::Own(words_of(buffer.as_slice())))
            }
        }
    }

    /// Page `number`'s place in the file in blocks: its key in a block cache.
    pub(super) fn block_number(&self, number: u64) -> u64 {
        self.offset_of(number) / BLOCK_SIZE as u64
    }

    /// Checks `bytes` as page `number` (a page read ahead) and keeps them if the budget has
    /// room; returns the page, or none when the budget had no room and the caller keeps it.
    pub(super) fn install(
        &self,
        number: u64,
        bytes: &[u8],
    ) -> Result<Option<PageWords<'_>>, StorageError> {
        assert_eq!(bytes.len(), BLOCK_SIZE);
        let agrees = self
            .index
            .as_ref()
            .is_none_or(|index| index.agrees(number, bytes));
        if crc32c::crc32c(bytes) != self.crcs[number as usize] || !agrees {
            return Err(corrupt(&self.path, self.offset_of(number), self.what));
        }
        let state = &self.states[number as usize];
        let claimed = state.compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Acquire);
        if claimed.is_err() {
            // Another reader writes it or wrote it: answer from these bytes.
            return Ok(Some(PageWords::Own(words_of(bytes))));
        }
        if !self.budget.claim() {
            state.store(EMPTY, Ordering::Release);
            return Ok(None);
        }
        let page = self.page_words(number);
        for (slot, word) in page.iter().zip(words_of(bytes)) {
            slot.store(word.to_le(), Ordering::Relaxed);
        }
        state.store(READY, Ordering::Release);
        self.loaded.fetch_add(1, Ordering::Relaxed);
        Ok(Some(PageWords::Shared(page)))
    }

    /// Pages read with a blocking `pread` so far.
    pub(super) fn blocking_reads(&self) -> usize {
        self.blocking_reads.load(Ordering::Relaxed)
    }

    /// Bytes in memory: the pages kept, their table and their states.
    pub(super) fn memory_size(&self) -> usize {
        let loaded = self.loaded.load(Ordering::Relaxed);
        loaded * BLOCK_SIZE + self.crcs.len() * 5
    }
}

impl Drop for PagedRegion {
    fn drop(&mut self) {
        self.budget.give_back(*self.loaded.get_mut());
    }
}

/// A page's bytes as its words (little-endian, as the file holds them).
pub(super) fn words_of(bytes: &[u8]) -> Vec<u64> {
    let words = bytes.chunks_exact(8);
    words
        .map(|word| u64::from_le_bytes(word.try_into().expect("eight bytes")))
        .collect()
}
