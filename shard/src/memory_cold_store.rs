//! [`MemoryColdStore`]: a cold store ([`crate::cold`]) that keeps the entries of the
//! checkpoints it is given in memory, for the simulator and tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::checkpoint::{CheckpointIncrement, KeyspaceIncrement};
use crate::cold::{ColdError, ColdStore};
use crate::keyspace::Keyspace;

/// Entries a scan copies out of the store at a time.
const SCAN_CHUNK: usize = 64;

/// A store that keeps the entries of the checkpoints it is given in memory: the simulator's
/// and the tests' runs.
#[derive(Debug, Default)]
pub struct MemoryColdStore {
    entries: Mutex<BTreeMap<(Keyspace, u128), Vec<u8>>>,
    /// Entries read, per keyspace (`Keyspace as usize`): a test can check that its reads
    /// went to the store at all.
    reads: [AtomicU64; 9], // by `Keyspace as usize`
    /// The keys read since the last `take_keys_read`, in order.
    keys_read: Mutex<Vec<(Keyspace, u128)>>,
}

impl MemoryColdStore {
    pub fn new() -> MemoryColdStore {
        MemoryColdStore::default()
    }

    /// Adds a checkpoint's entries; a later entry of a key replaces an earlier one, as a newer
    /// run's does.
    pub fn add(&self, increment: &CheckpointIncrement) {
        for keyspace in &increment.keyspaces {
            self.add_keyspace(keyspace);
        }
    }

    /// Entries of `keyspace` read so far.
    pub fn reads(&self, keyspace: Keyspace) -> u64 {
        self.reads[keyspace as usize].load(Ordering::Relaxed)
    }

    /// The keys read since the last call, in the order read: a test checks that an apply
    /// read only what [`crate::Ledger::cold_reads`] listed for it.
    pub fn take_keys_read(&self) -> Vec<(Keyspace, u128)> {
        std::mem::take(&mut *self.keys_read.lock().expect("not poisoned"))
    }

    pub fn add_keyspace(&self, increment: &KeyspaceIncrement) {
        let mut entries = self.entries.lock().expect("not poisoned");
        for (at, key) in increment.keys.iter().enumerate() {
            let value = increment.value(at).to_vec();
            entries.insert((increment.keyspace, *key), value);
        }
    }
}

impl ColdStore for MemoryColdStore {
    fn read(&self, keyspace: Keyspace, key: u128, value: &mut [u8]) -> Result<bool, ColdError> {
        match self
            .entries
            .lock()
            .expect("not poisoned")
            .get(&(keyspace, key))
        {
            Some(stored) => {
                value.copy_from_slice(stored);
                self.reads[keyspace as usize].fetch_add(1, Ordering::Relaxed);
                let mut keys_read = self.keys_read.lock().expect("not poisoned");
                keys_read.push((keyspace, key));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn key_range(&self, keyspace: Keyspace) -> Option<(u128, u128)> {
        let entries = self.entries.lock().expect("not poisoned");
        let mut keys = entries.range((keyspace, 0)..=(keyspace, u128::MAX));
        let first = keys.next().map(|((_, key), _)| *key)?;
        let last = keys.next_back().map_or(first, |((_, key), _)| *key);
        Some((first, last))
    }

    fn scan(
        &self,
        keyspace: Keyspace,
        keys: std::ops::Range<u128>,
        reversed: bool,
        visit: &mut dyn FnMut(u128, &[u8]) -> bool,
    ) -> Result<(), ColdError> {
        if keys.start >= keys.end {
            return Ok(());
        }
        // Copied out a few at a time, the lock released for `visit` (which may read this
        // store): a seek that stops at its first entry copies a few, not the whole range.
        let mut bound = keys;
        loop {
            let chunk: Vec<(u128, Vec<u8>)> = {
                let entries = self.entries.lock().expect("not poisoned");
                let range = entries.range((keyspace, bound.start)..(keyspace, bound.end));
                let copy = |((_, key), value): (&(Keyspace, u128), &Vec<u8>)| (*key, value.clone());
                match reversed {
                    false => range.take(SCAN_CHUNK).map(copy).collect(),
                    true => range.rev().take(SCAN_CHUNK).map(copy).collect(),
                }
            };
            let Some((last, _)) = chunk.last() else {
                return Ok(());
            };
            match reversed {
                false => bound.start = last + 1,
                true => bound.end = *last,
            }
            for (key, value) in &chunk {
                self.reads[keyspace as usize].fetch_add(1, Ordering::Relaxed);
                if !visit(*key, value) {
                    return Ok(());
                }
            }
        }
    }
}
