//! An account's history: for an account with the `history` flag, its balances right after
//! each of its transfers, in the order of its transfer list (`account_transfers`). The newest
//! are in memory; with a cold store, those a durable checkpoint holds leave memory and are
//! read from the store under `account position ≪ 32 | transfer position`
//! ([`Keyspace::History`]).

use kassa_wire::Balances;

use crate::cold::ColdError;
use crate::keyspace::Keyspace;

/// See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct History {
    /// Entries `0..cold` are in the cold store.
    cold: usize,
    /// Entries `cold..`, in memory.
    recent: Vec<Balances>,
}

impl History {
    /// A history held in memory whole.
    pub(crate) fn in_memory(recent: Vec<Balances>) -> History {
        History { cold: 0, recent }
    }

    /// A history of `len` entries, all in the cold store.
    pub(crate) fn all_cold(len: usize) -> History {
        History {
            cold: len,
            recent: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.cold + self.recent.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries below this index are in the cold store.
    pub(crate) fn cold(&self) -> usize {
        self.cold
    }

    pub(crate) fn push(&mut self, balances: Balances) {
        self.recent.push(balances);
    }

    /// Takes back the newest entry (a linked chain's, rolled back).
    pub(crate) fn pop(&mut self) -> Option<Balances> {
        if self.recent.is_empty() {
            assert_eq!(
                self.cold, 0,
                "a chain's history is newer than the last checkpoint"
            );
            return None;
        }
        self.recent.pop()
    }

    /// Entry `index`, if it is in memory.
    pub(crate) fn recent(&self, index: usize) -> Option<&Balances> {
        index
            .checked_sub(self.cold)
            .and_then(|at| self.recent.get(at))
    }

    /// Every entry, when all are in memory (a ledger without a cold store).
    pub(crate) fn all_in_memory(&self) -> &[Balances] {
        assert_eq!(
            self.cold, 0,
            "this history's oldest entries are in the cold store"
        );
        &self.recent
    }

    /// Entries below `index` leave memory: the cold store holds them now.
    pub(crate) fn make_cold_below(&mut self, index: usize) {
        let index = index.min(self.len());
        if index <= self.cold {
            return;
        }
        let keep = self.recent.split_off(index - self.cold);
        // A new vector, so that the memory of the entries dropped is freed.
        self.recent = keep;
        self.cold = index;
    }
}

impl crate::Ledger {
    /// Account `account`'s history entry `index`: the balances right after its `index`th
    /// transfer, from memory or the cold store.
    pub(crate) fn history_at(&self, account: usize, index: usize) -> Result<Balances, ColdError> {
        let history = &self.account_history[account];
        if let Some(balances) = history.recent(index) {
            return Ok(*balances);
        }
        assert!(
            index < history.cold(),
            "history entry {index} of {}",
            history.len()
        );
        let position = self.account_transfers[account][index];
        self.cold_entry(Keyspace::History, history_key(account, position))
    }

    /// Every entry of account `account`'s history, oldest first.
    pub(crate) fn history_all(&self, account: usize) -> Result<Vec<Balances>, ColdError> {
        let len = self.account_history[account].len();
        (0..len)
            .map(|index| self.history_at(account, index))
            .collect()
    }

    /// History entries held in memory, over all accounts (the rest are in the cold store).
    pub fn history_entries_in_memory(&self) -> usize {
        self.account_history
            .iter()
            .map(|h| h.len() - h.cold())
            .sum()
    }

    /// With a cold store, the history entries of transfers below `transfers` (a durable
    /// checkpoint's cut) leave memory.
    pub(crate) fn history_durable(&mut self, transfers: u32) {
        if self.cold.is_none() {
            return;
        }
        let lists = self.account_transfers.iter();
        for (history, listed) in self.account_history.iter_mut().zip(lists) {
            if history.len() > history.cold() {
                history.make_cold_below(listed.partition_point(|p| *p < transfers));
            }
        }
    }
}

/// A history entry's key: its account's position, then its transfer's.
pub(crate) fn history_key(account: usize, position: u32) -> u128 {
    ((account as u128) << 32) | u128::from(position)
}
