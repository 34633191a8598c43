//! An account's transfers and history (docs/storage.md, "Account transfers").
//!
//! `account_transfers[a]` lists the positions of account `a`'s transfers, ascending; for an
//! account with the `history` flag, `account_history[a]` holds its balances right after each
//! of them. With a cold store, the positions below the last durable cut leave memory
//! ([`Keyspace::AccountTransfers`], `account position ≪ 32 | transfer position`, no value),
//! and so do their balances ([`Keyspace::History`], same key): the list keeps the newer
//! positions, and the history the balances of the newest of those (aligned with the list's
//! tail; a restore from runs written before account lists had runs keeps every position in
//! memory and no balance). An account's transfers are read by position range: the cold
//! ones through the store's scan, the rest from the list.

use kassa_wire::{AccountFlags, Balances};

use crate::cold::ColdError;
use crate::keyspace::Keyspace;

/// See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct History {
    /// The balances after the newest transfers of the account's list in memory, oldest
    /// first: entry `i` goes with list entry `list.len() - recent.len() + i`.
    recent: Vec<Balances>,
}

impl History {
    /// A history held in memory whole.
    pub(crate) fn in_memory(recent: Vec<Balances>) -> History {
        History { recent }
    }

    /// Entries in memory.
    pub(crate) fn len(&self) -> usize {
        self.recent.len()
    }

    pub(crate) fn push(&mut self, balances: Balances) {
        self.recent.push(balances);
    }

    /// Asks for the line the next entry pushed goes to.
    #[inline]
    pub(crate) fn prefetch_tail(&self) {
        crate::prefetch::tail(&self.recent);
    }

    /// Every entry, for an account whose list in memory has `listed` entries, all of them with
    /// their history in memory (a ledger without a cold store).
    pub(crate) fn all_in_memory(&self, listed: usize) -> &[Balances] {
        assert_eq!(
            self.recent.len(),
            listed,
            "an account's history is all in memory"
        );
        &self.recent
    }

    /// Takes back the newest entry (a linked chain's, rolled back).
    pub(crate) fn pop(&mut self) -> Option<Balances> {
        self.recent.pop()
    }
}

/// Where an account's transfer was found: its position, and its index in the account's list
/// in memory (none: the position is cold).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Listed {
    pub(crate) position: u32,
    pub(crate) index: Option<usize>,
}

impl crate::Ledger {
    /// Calls `visit` for account `account`'s transfers with positions in `positions`,
    /// ascending (descending when `reversed`), until it returns false or fails: the cold ones
    /// scanned from the store, the rest from the list in memory.
    pub(crate) fn account_transfers_in(
        &self,
        account: usize,
        positions: std::ops::Range<u32>,
        reversed: bool,
        mut visit: impl FnMut(Listed) -> Result<bool, ColdError>,
    ) -> Result<(), ColdError> {
        let list = &self.account_transfers[account];
        let cold_end = positions.end.min(self.lists_cold_below);
        let cold = positions.start..cold_end.max(positions.start);
        let from = list.partition_point(|p| *p < positions.start);
        let to = list.partition_point(|p| *p < positions.end).max(from);
        let mut hot = (from..to).map(|index| Listed {
            position: list[index],
            index: Some(index),
        });
        let scan_cold = |visit: &mut dyn FnMut(Listed) -> Result<bool, ColdError>| {
            if cold.is_empty() {
                return Ok(true);
            }
            let Some(store) = &self.cold else {
                unreachable!("account lists leave memory only for a cold store")
            };
            let keys = history_key(account, cold.start)..history_key(account, cold.end);
            let (mut failed, mut more) = (None, true);
            store.scan(Keyspace::AccountTransfers, keys, reversed, &mut |key, _| {
                let listed = Listed {
                    position: key as u32,
                    index: None,
                };
                match visit(listed) {
                    Ok(go_on) => more = go_on,
                    Err(error) => failed = Some(error),
                }
                more && failed.is_none()
            })?;
            failed.map_or(Ok(more), Err)
        };
        if reversed {
            for listed in hot.rev() {
                if !visit(listed)? {
                    return Ok(());
                }
            }
            scan_cold(&mut visit)?;
        } else if scan_cold(&mut visit)? {
            for listed in hot.by_ref() {
                if !visit(listed)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every position of account `account`'s transfers, ascending.
    pub(crate) fn account_transfers_all(&self, account: usize) -> Result<Vec<Listed>, ColdError> {
        let mut all = Vec::new();
        let positions = 0..Ledger::position_of(self.transfers.len());
        self.account_transfers_in(account, positions, false, |listed| {
            all.push(listed);
            Ok(true)
        })?;
        Ok(all)
    }

    /// Account `account`'s balances right after its transfer `listed`: from memory or the
    /// cold store.
    pub(crate) fn history_at(&self, account: usize, listed: Listed) -> Result<Balances, ColdError> {
        match self.history_in_memory(account, listed) {
            Some(at) => Ok(self.account_history[account].recent[at]),
            None => self.cold_entry(Keyspace::History, history_key(account, listed.position)),
        }
    }

    /// Where account `account`'s balances after `listed` are in memory, if they are (else
    /// [`Ledger::history_at`] reads them from the store).
    pub(crate) fn history_in_memory(&self, account: usize, listed: Listed) -> Option<usize> {
        let list = &self.account_transfers[account];
        let offset = list.len() - self.account_history[account].len();
        listed.index.and_then(|index| index.checked_sub(offset))
    }

    /// Every entry of account `account`'s history, oldest first.
    pub(crate) fn history_all(&self, account: usize) -> Result<Vec<Balances>, ColdError> {
        let all = self.account_transfers_all(account)?;
        (all.into_iter())
            .map(|listed| self.history_at(account, listed))
            .collect()
    }

    /// A restore's check of its store: the newest transfer (at `newest`) is in its accounts'
    /// lists, with its balances for a history account.
    pub(crate) fn check_newest_listed(&self, newest: u32) -> Result<(), ColdError> {
        let transfer = self.transfer_at(newest)?;
        for id in [transfer.debit_account_id, transfer.credit_account_id] {
            let Some(account) = self.account_positions.get(id.0) else {
                continue; // in another partition
            };
            let account = account as usize;
            let mut found = None;
            self.account_transfers_in(account, newest..newest + 1, false, |listed| {
                found = Some(listed);
                Ok(false)
            })?;
            let Some(listed) = found else {
                let key = history_key(account, newest);
                let missing = "missing from the store, though a durable checkpoint covers it";
                return Err(ColdError::new(Keyspace::AccountTransfers, key, missing));
            };
            if self.accounts[account].flags.contains(AccountFlags::HISTORY) {
                self.history_at(account, listed)?;
            }
        }
        Ok(())
    }

    /// History entries held in memory, over all accounts (the rest are in the cold store).
    pub fn history_entries_in_memory(&self) -> usize {
        self.account_history.iter().map(History::len).sum()
    }

    /// Entries of the accounts' transfer lists held in memory (the rest are in the cold
    /// store).
    pub fn account_transfers_in_memory(&self) -> usize {
        self.account_transfers.iter().map(Vec::len).sum()
    }

    /// With a cold store, the accounts' transfers below `transfers` (a durable checkpoint's
    /// cut, whose runs hold them) leave memory, with their history entries.
    pub(crate) fn account_transfers_durable(&mut self, transfers: u32) {
        if self.cold.is_none() || transfers <= self.lists_cold_below {
            return;
        }
        let lists = self.account_transfers.iter_mut();
        for (list, history) in lists.zip(self.account_history.iter_mut()) {
            let cold = list.partition_point(|p| *p < transfers);
            if cold == 0 {
                continue;
            }
            let without_history = list.len() - history.recent.len();
            let dropped = cold.saturating_sub(without_history);
            // In place, then shrunk to twice what is left: the allocator shrinks a block
            // where it lies, so no fresh memory is touched for each of many accounts, and an
            // account gone quiet gives its room back over a few checkpoints.
            list.drain(..cold);
            list.shrink_to(list.len() * 2);
            history.recent.drain(..dropped);
            history.recent.shrink_to(history.recent.len() * 2);
        }
        self.lists_cold_below = transfers;
    }
}

use crate::Ledger;

/// A history entry's key, and an account list's: its account's position, then its
/// transfer's.
pub(crate) fn history_key(account: usize, position: u32) -> u128 {
    ((account as u128) << 32) | u128::from(position)
}
