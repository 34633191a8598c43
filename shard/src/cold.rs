//! Cold entries: what a durable checkpoint took out of the ledger's memory, read back by key
//! from a [`ColdStore`] (docs/storage.md, "What goes where").
//!
//! Today the change stream is cold: once a checkpoint holding a change entry is durable, the
//! entry leaves memory, and reading it (`Ledger::change_events`, a whole snapshot, a full
//! checkpoint after an install) goes to the store. The ledger stays synchronous: a store
//! answers at once. The node's store reads its runs with one blocking 4 KiB read per entry;
//! the entries read this way are those nothing on a write's path needs, and reads that must
//! not block will prefetch (step 3 of the plan). The simulator and tests keep the runs'
//! entries in memory ([`MemoryColdStore`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use zerocopy::{FromBytes, IntoBytes};

use crate::checkpoint::{CheckpointIncrement, Keyspace, KeyspaceIncrement};

/// See the module documentation. A store may be shared between threads, as a ledger may
/// move between them (a coordinator's scratch ledger across its awaits).
pub trait ColdStore: Send + Sync {
    /// Copies the value stored under `key` in `keyspace` into `value` (the keyspace's value
    /// size); false when no run holds the key. Of runs holding it, the newest answers.
    fn read(&self, keyspace: Keyspace, key: u128, value: &mut [u8]) -> Result<bool, ColdError>;
}

/// A cold entry that could not be read: the store failed (an I/O error, a damaged run), or
/// it lacks an entry its checkpoint covers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cold {keyspace} entry {key}: {message}")]
pub struct ColdError {
    pub keyspace: &'static str,
    pub key: u128,
    pub message: String,
}

impl ColdError {
    pub fn new(keyspace: Keyspace, key: u128, message: impl Into<String>) -> ColdError {
        ColdError {
            keyspace: keyspace.name(),
            key,
            message: message.into(),
        }
    }
}

impl crate::Ledger {
    /// The entry under `key` in `keyspace`, which a durable checkpoint took out of memory,
    /// from the cold store.
    pub(crate) fn cold_entry<T: FromBytes + IntoBytes>(
        &self,
        keyspace: Keyspace,
        key: u128,
    ) -> Result<T, ColdError> {
        let Some(store) = &self.cold else {
            unreachable!("entries leave memory only for a cold store")
        };
        let mut entry = T::new_zeroed();
        if store.read(keyspace, key, entry.as_mut_bytes())? {
            Ok(entry)
        } else {
            let missing = "missing from the store, though a durable checkpoint covers it";
            Err(ColdError::new(keyspace, key, missing))
        }
    }
}

/// A store that keeps the entries of the checkpoints it is given in memory: the simulator's
/// and the tests' runs.
#[derive(Debug, Default)]
pub struct MemoryColdStore {
    entries: Mutex<BTreeMap<(Keyspace, u128), Vec<u8>>>,
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
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
