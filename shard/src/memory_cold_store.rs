//! [`MemoryColdStore`]: a cold store ([`crate::cold`]) that keeps the entries of the
//! checkpoints it is given in memory, for the simulator and tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::checkpoint::{CheckpointIncrement, KeyspaceIncrement};
use crate::cold::{ColdError, ColdStore};
use crate::keyspace::Keyspace;

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
