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
//! awaiting its own) keep each other's blocks. A read finds them first.
//!
//! [`BlockingRun`]: super::BlockingRun

use std::collections::HashMap;
use std::sync::Mutex;

use crate::aligned::BLOCK_SIZE;

/// See the module documentation.
pub struct BlockCache {
    inner: Mutex<Inner>,
}

struct Inner {
    capacity: usize,
    slots: Vec<Slot>,
    /// Blocks held until released, outside the CLOCK, with their count of holders.
    held: HashMap<(u64, u64), Held>,
    /// (run id, block number) → slot.
    map: HashMap<(u64, u64), usize>,
    /// The CLOCK hand: the next slot considered for eviction.
    hand: usize,
    hits: u64,
    misses: u64,
}

/// A held block and how many readers hold it.
type Held = (Box<[u8]>, u32);

struct Slot {
    key: (u64, u64),
    bytes: Box<[u8]>,
    referenced: bool,
}

/// The blocks one reader holds in a [`BlockCache`], released together.
#[derive(Debug, Default)]
pub struct Holds(Vec<(u64, u64)>);

impl Holds {
    pub fn new() -> Holds {
        Holds::default()
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
    /// A cache of at most `capacity` blocks (4 KiB each); 0 caches nothing.
    pub fn new(capacity: usize) -> BlockCache {
        BlockCache {
            inner: Mutex::new(Inner {
                capacity,
                slots: Vec::new(),
                held: HashMap::new(),
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
            if let Some((bytes, _)) = inner.held.get(&key) {
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

    /// Whether block `number` of run `run` is held or cached: then `holds` holds it from
    /// now on (copied out of the CLOCK) and it need not be read.
    pub(crate) fn hold_if_present(&self, run: u64, number: u64, holds: &mut Holds) -> bool {
        let key = (run, number);
        let mut inner = self.lock();
        if let Some((_, count)) = inner.held.get_mut(&key) {
            *count += 1;
            holds.0.push(key);
            return true;
        }
        let Some(&slot) = inner.map.get(&key) else {
            return false;
        };
        let bytes = inner.slots[slot].bytes.clone();
        inner.held.insert(key, (bytes, 1));
        holds.0.push(key);
        true
    }

    /// `holds` holds a checked block until released.
    pub(crate) fn hold(&self, run: u64, number: u64, bytes: Box<[u8]>, holds: &mut Holds) {
        assert_eq!(bytes.len(), BLOCK_SIZE);
        let key = (run, number);
        let mut inner = self.lock();
        inner.held.entry(key).or_insert((bytes, 0)).1 += 1;
        holds.0.push(key);
    }

    /// Blocks held now, by any reader.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// Releases what `holds` holds; a block no other reader holds leaves memory (it is not
    /// cached: what a prefetch read is rarely read again soon).
    pub fn release(&self, holds: Holds) {
        if holds.is_empty() {
            return; // most applies read nothing cold: no lock taken
        }
        let mut inner = self.lock();
        for key in holds.0 {
            let Some((_, count)) = inner.held.get_mut(&key) else {
                unreachable!("a block held is in the cache until released");
            };
            *count -= 1;
            if *count == 0 {
                inner.held.remove(&key);
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
