//! Cold entries: what a durable checkpoint took out of the ledger's memory, read back by key
//! from a [`ColdStore`] (docs/storage.md, "What goes where").
//!
//! Transfers, their ids, the accounts' transfer lists, history balances and the change
//! stream are cold (`Keyspace::is_cold`): once a checkpoint holding an entry is durable, the
//! entry leaves memory (a transfer only once it is no longer pending), and reading it (a
//! lookup, an account's transfers or balances, a query, change events, a whole snapshot, a
//! full checkpoint after an install, and inside an apply the `exists` check of an id, a post
//! or void of a resolved pending transfer) goes to the store, by key or by key range. The
//! ledger stays synchronous: a store answers at once. The node's store reads its runs with
//! one blocking 4 KiB read per block; the state machine prefetches what an apply reads
//! (`cold_reads.rs`). The simulator and tests keep
//! the runs' entries in memory ([`crate::MemoryColdStore`]).

use zerocopy::{FromBytes, IntoBytes};

use crate::keyspace::Keyspace;

/// See the module documentation. A store may be shared between threads, as a ledger may
/// move between them (a coordinator's scratch ledger across its awaits).
pub trait ColdStore: Send + Sync {
    /// Copies the value stored under `key` in `keyspace` into `value` (the keyspace's value
    /// size); false when no run holds the key. Of runs holding it, the newest answers.
    fn read(&self, keyspace: Keyspace, key: u128, value: &mut [u8]) -> Result<bool, ColdError>;

    /// The smallest and largest key of `keyspace` the store holds (none: it holds none), from
    /// memory.
    fn key_range(&self, keyspace: Keyspace) -> Option<(u128, u128)>;

    /// Calls `visit(key, value)` for the entries of `keyspace` with keys in `keys`,
    /// ascending, or descending when `reversed`, until it returns false. For keyspaces whose
    /// runs hold disjoint keys within `keys`, in the order the runs were written: an
    /// account's transfers and history balances, of which each checkpoint's run holds the
    /// positions since the one before.
    fn scan(
        &self,
        keyspace: Keyspace,
        keys: std::ops::Range<u128>,
        reversed: bool,
        visit: &mut dyn FnMut(u128, &[u8]) -> bool,
    ) -> Result<(), ColdError>;
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

/// A cold read made while applying a log entry (an event, a wire request's read, a share's
/// read set): its result must be the same on every replica, and this one cannot know it (a
/// damaged run; replication will repair it from a peer), so a failure stops the partition.
pub(crate) fn applied<T>(read: Result<T, ColdError>) -> T {
    read.unwrap_or_else(|error| panic!("an applied entry's cold read: {error}"))
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
