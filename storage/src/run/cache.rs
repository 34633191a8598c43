//! [`BlockCache`]: a fixed number of checked 4 KiB run blocks kept in memory, shared by the
//! blocking readers of one store, evicted by CLOCK (second chance). Reads of neighbouring keys
//! (a range of change events, an account's history) then cost one disk read per block instead
//! of one per entry, and memory stays bounded by the capacity whatever is read.
//!
//! A block is cached once its checks passed, under its run's id ([`BlockingRun`]'s, never
//! reused in a process) and its number, so a cached block is never a different run's.
//!
//! Blocks *held* ([`BlockCache::hold`]) are outside the CLOCK: read ahead of a reader that
//! must not wait for the disk (a partition's apply or a client's read, prefetched through
//! io_uring by [`BlockingRun::prefetch`]), they stay until that reader releases its
//! [`Holds`] ([`BlockCache::release`]), whatever else is read meanwhile. Holds are counted,
//! so readers whose prefetches overlap (an apply and a read of the same partition, each
//! awaiting its own) keep each other's blocks; a reader holds a block once however often it
//! asks. A read finds them first.
//!
//! Pages of runs' indexes and filters past the node's page budget are cached and held here
//! too (`paged.rs`), under their place in the file as data blocks are. Held pages are counted
//! apart ([`BlockCache::held`] is data blocks only): a reader's read-ahead of blocks is
//! bounded by the blocks held, and the pages that find those blocks must not crowd them out.
//! Released, a page goes into the CLOCK, unlike a data block: the next batch of new ids
//! probes the same filter pages. Held pages are bounded ([`HELD_PAGES_MIN`], or the capacity
//! when larger): past that, a page read ahead goes into the CLOCK instead, and one found
//! there is used but not held, so a batch of ids scattered over many runs' filters holds no
//! more than the bound, whatever the size of the filters. Such a page may be evicted before
//! its lookup, which then reads it again, blocking: a cost in time, not in memory.
//!
//! [`BlockingRun`]: super::BlockingRun

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::aligned::BLOCK_SIZE;

/// The fewest pages of indexes and filters a cache holds for its readers at once, however
/// small its capacity (16 MiB: a batch's read-ahead of one run's filter pages).
pub const HELD_PAGES_MIN: usize = 4096;

/// See the module documentation.
pub struct BlockCache {
    inner: Mutex<Inner>,
}

struct Inner {
    capacity: usize,
    slots: Vec<Slot>,
    /// Blocks held until released, outside the CLOCK, with their count of holders.
    held: HashMap<(u64, u64), Held>,
    /// Of those, pages of indexes and filters.
    held_pages: usize,
    /// Most pages held at once.
    held_pages_max: usize,
    /// (run id, block number) → slot.
    map: HashMap<(u64, u64), usize>,
    /// The CLOCK hand: the next slot considered for eviction.
    hand: usize,
    hits: u64,
    misses: u64,
}

/// A held block, how many readers hold it, and what it is.
type Held = (Box<[u8]>, u32, HeldKind);

/// What a held block is: a run's data block, or a page of its index or filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeldKind {
    Block,
    Page,
}

struct Slot {
    key: (u64, u64),
    bytes: Box<[u8]>,
    referenced: bool,
}

/// The blocks one reader holds in a [`BlockCache`], released together.
#[derive(Debug, Default)]
pub struct Holds {
    held: HashSet<(u64, u64)>,
    /// Blocks read ahead for this reader into the CLOCK, unheld ([`BlockCache::insert_read_ahead`]):
    /// one reader's read-ahead past its held bound takes at most the cache's capacity.
    unheld: usize,
}

impl Holds {
    pub fn new() -> Holds {
        Holds::default()
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Blocks read ahead for this reader into the CLOCK, unheld, so far.
    pub fn unheld(&self) -> usize {
        self.unheld
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// What a cache did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Blocks held now, at most the capacity.
    pub blocks: usize,
    /// Most blocks it holds (blocks held for a reader come on top).
    pub capacity: usize,
}

impl BlockCache {
    /// A cache of at most `capacity` blocks (4 KiB each); 0 caches nothing. It holds at most
    /// `capacity` pages for readers ([`HELD_PAGES_MIN`] when that is more).
    pub fn new(capacity: usize) -> BlockCache {
        BlockCache::with_held_pages_max(capacity, capacity.max(HELD_PAGES_MIN))
    }

    /// A cache of at most `capacity` blocks that holds at most `held_pages_max` pages for
    /// readers.
    pub fn with_held_pages_max(capacity: usize, held_pages_max: usize) -> BlockCache {
        BlockCache {
            inner: Mutex::new(Inner {
                capacity,
                slots: Vec::new(),
                held: HashMap::new(),
                held_pages: 0,
                held_pages_max,
                map: HashMap::new(),
                hand: 0,
                hits: 0,
                misses: 0,
            }),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: inner.hits,
            misses: inner.misses,
            blocks: inner.slots.len(),
            capacity: inner.capacity,
        }
    }

    /// Calls `found` with block `number` of run `run`: from the cache, or read by `read`
    /// (which fills and checks the block) and then cached.
    pub(crate) fn with_block<T, E>(
        &self,
        run: u64,
        number: u64,
        read: impl FnOnce(&mut [u8]) -> Result<(), E>,
        found: impl FnOnce(&[u8]) -> T,
    ) -> Result<T, E> {
        let key = (run, number);
        {
            let mut inner = self.lock();
            if let Some((bytes, ..)) = inner.held.get(&key) {
                let answer = found(bytes);
                inner.hits += 1;
                return Ok(answer);
            }
            if let Some(&slot) = inner.map.get(&key) {
                inner.hits += 1;
                let slot = &mut inner.slots[slot];
                slot.referenced = true;
                return Ok(found(&slot.bytes));
            }
            inner.misses += 1;
        }
        // Read without the lock: another reader of the same block reads it too, and the
        // second insert finds it there.
        let mut bytes = vec![0; BLOCK_SIZE].into_boxed_slice();
        read(&mut bytes)?;
        let answer = found(&bytes);
        self.lock().insert(key, bytes);
        Ok(answer)
    }

    /// Calls `found` with block `number` of run `run` if it is held or cached (counted as a
    /// hit); none otherwise, and no miss is counted: the caller reads it (and counts that)
    /// and may [`BlockCache::insert`] it.
    pub(crate) fn with_present<T>(
        &self,
        run: u64,
        number: u64,
        found: impl FnOnce(&[u8]) -> T,
    ) -> Option<T> {
        let key = (run, number);
        let mut inner = self.lock();
        if let Some((bytes, ..)) = inner.held.get(&key) {
            let answer = found(bytes);
            inner.hits += 1;
            return Some(answer);
        }
        let slot = *inner.map.get(&key)?;
        inner.hits += 1;
        let slot = &mut inner.slots[slot];
        slot.referenced = true;
        Some(found(&slot.bytes))
    }

    /// Caches block `number` of run `run`, checked, unless it is cached already.
    pub(crate) fn insert(&self, run: u64, number: u64, bytes: Box<[u8]>) {
        assert_eq!(bytes.len(), BLOCK_SIZE);
        self.lock().insert((run, number), bytes);
    }

    /// Caches block `number` of run `run`, checked and read ahead for `holds`' reader past
    /// its bound on held blocks, as referenced: up to the capacity of blocks so inserted at
    /// once, the CLOCK evicts the blocks cached before them first.
    pub(crate) fn insert_read_ahead(
        &self,
        run: u64,
        number: u64,
        bytes: Box<[u8]>,
        holds: &mut Holds,
    ) {
        assert_eq!(bytes.len(), BLOCK_SIZE);
        let mut inner = self.lock();
        inner.insert_referenced((run, number), bytes);
        holds.unheld += 1;
    }

    /// Whether block `number` of run `run` is held or cached, as
    /// [`BlockCache::insert_read_ahead`] would leave it: a cached block is marked referenced,
    /// and one another reader holds is copied into the CLOCK too (released, a held block
    /// leaves memory). No hit is counted.
    pub(crate) fn read_ahead_if_present(&self, run: u64, number: u64, holds: &mut Holds) -> bool {
        let key = (run, number);
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(&slot) = inner.map.get(&key) {
            inner.slots[slot].referenced = true;
            holds.unheld += 1;
            return true;
        }
        let Some((bytes, ..)) = inner.held.get(&key) else {
            return false;
        };
        let bytes = bytes.clone();
        inner.insert_referenced(key, bytes);
        holds.unheld += 1;
        true
    }

    /// Whether block `number` of run `run` (a `kind`) is held or cached: then `holds` holds
    /// it from now on (copied out of the CLOCK; a page only while held pages are under their
    /// bound) and it need not be read.
    pub(crate) fn hold_if_present(
        &self,
        run: u64,
        number: u64,
        kind: HeldKind,
        holds: &mut Holds,
    ) -> bool {
        self.with_held(run, number, kind, holds, |_| ()).is_some()
    }

    /// Calls `found` with block `number` of run `run` (a `kind`) if it is held or cached
    /// (a hit): then `holds` holds it from now on, but for a page in the CLOCK when held
    /// pages are at their bound (it stays in the CLOCK). None otherwise.
    pub(crate) fn with_held<T>(
        &self,
        run: u64,
        number: u64,
        kind: HeldKind,
        holds: &mut Holds,
        found: impl FnOnce(&[u8]) -> T,
    ) -> Option<T> {
        let key = (run, number);
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some((bytes, count, _)) = inner.held.get_mut(&key) {
            if holds.held.insert(key) {
                *count += 1;
            }
            inner.hits += 1;
            return Some(found(bytes));
        }
        let slot = *inner.map.get(&key)?;
        inner.hits += 1;
        if kind == HeldKind::Page && inner.held_pages >= inner.held_pages_max {
            let slot = &mut inner.slots[slot];
            slot.referenced = true;
            return Some(found(&slot.bytes));
        }
        let bytes = inner.slots[slot].bytes.clone();
        let answer = found(&bytes);
        inner.hold_new(key, bytes, kind);
        holds.held.insert(key);
        Some(answer)
    }

    /// `holds` holds a checked block (a `kind`) until released; a page not held yet, when
    /// held pages are at their bound, goes into the CLOCK instead.
    pub(crate) fn hold(
        &self,
        run: u64,
        number: u64,
        bytes: Box<[u8]>,
        kind: HeldKind,
        holds: &mut Holds,
    ) {
        assert_eq!(bytes.len(), BLOCK_SIZE);
        let key = (run, number);
        let mut inner = self.lock();
        let at_bound = kind == HeldKind::Page && inner.held_pages >= inner.held_pages_max;
        match inner.held.get_mut(&key) {
            Some((_, count, _)) => {
                if holds.held.insert(key) {
                    *count += 1;
                }
            }
            None if at_bound => {
                inner.insert(key, bytes);
            }
            None => {
                inner.hold_new(key, bytes, kind);
                holds.held.insert(key);
            }
        }
    }

    /// Data blocks held now, by any reader (held pages are not counted).
    pub fn held(&self) -> usize {
        let inner = self.lock();
        inner.held.len() - inner.held_pages
    }

    /// Pages of indexes and filters held now, by any reader.
    pub fn held_pages(&self) -> usize {
        self.lock().held_pages
    }

    /// Releases what `holds` holds; a data block no other reader holds leaves memory (it is
    /// not cached: what a prefetch read is rarely read again soon), a page goes into the
    /// CLOCK (the next batch probes the same filter pages).
    pub fn release(&self, holds: Holds) {
        if holds.is_empty() {
            return; // most applies read nothing cold: no lock taken
        }
        let mut inner = self.lock();
        for key in holds.held {
            let Entry::Occupied(mut held) = inner.held.entry(key) else {
                unreachable!("a block held is in the cache until released");
            };
            held.get_mut().1 -= 1;
            if held.get().1 > 0 {
                continue;
            }
            let (bytes, _, kind) = held.remove();
            if kind == HeldKind::Page {
                // The next batch's lookups probe the same filter pages: cached.
                inner.held_pages -= 1;
                inner.insert(key, bytes);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Only a panic while holding the lock poisons it, and the process then stops.
        self.inner
            .lock()
            .expect("the block cache's lock is not poisoned")
    }
}

impl Inner {
    /// Holds `bytes` as `key` for one reader; `key` is not held yet.
    fn hold_new(&mut self, key: (u64, u64), bytes: Box<[u8]>, kind: HeldKind) {
        let before = self.held.insert(key, (bytes, 1, kind));
        assert!(before.is_none(), "a block held once");
        if kind == HeldKind::Page {
            self.held_pages += 1;
        }
    }

    /// [`Inner::insert`], the slot marked referenced.
    fn insert_referenced(&mut self, key: (u64, u64), bytes: Box<[u8]>) {
        self.insert(key, bytes);
        if let Some(&slot) = self.map.get(&key) {
            self.slots[slot].referenced = true;
        }
    }

    fn insert(&mut self, key: (u64, u64), bytes: Box<[u8]>) {
        if self.capacity == 0 || self.map.contains_key(&key) {
            return;
        }
        if self.slots.len() < self.capacity {
            self.map.insert(key, self.slots.len());
            self.slots.push(Slot {
                key,
                bytes,
                referenced: false,
            });
            return;
        }
        // CLOCK: a referenced slot gets a second chance; the first one not referenced goes.
        loop {
            let slot = &mut self.slots[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand = (self.hand + 1) % self.capacity;
                continue;
            }
            self.map.remove(&slot.key);
            *slot = Slot {
                key,
                bytes,
                referenced: false,
            };
            self.map.insert(key, self.hand);
            self.hand = (self.hand + 1) % self.capacity;
            return;
        }
    }
}
