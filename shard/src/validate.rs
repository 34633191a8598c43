//! The ledger's invariants, checked in one place: by tests after every batch, by debug builds,
//! and by [`Ledger::restore`] on every snapshot it reads (where a violation is an error, not a
//! panic). Every check is O(records): this is not for the hot path.

use std::collections::{BTreeMap, BTreeSet};

use kassa_wire::{AccountFlags, ChangeKind, TransferFlags};

use crate::{Ledger, PendingStatus};

/// A 256-bit sum of u128s, so that totals over many accounts never overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sum256 {
    high: u128,
    low: u128,
}

impl Sum256 {
    fn add(&mut self, value: u128) {
        let (low, carry) = self.low.overflowing_add(value);
        self.low = low;
        self.high += u128::from(carry);
    }
}

#[derive(Default)]
struct LedgerTotals {
    debits_pending: Sum256,
    debits_posted: Sum256,
    credits_pending: Sum256,
    credits_posted: Sum256,
}

impl Ledger {
    /// Panics if any invariant of the state does not hold.
    pub fn validate(&self) {
        if let Err(violation) = self.check() {
            panic!("ledger invariant violated: {violation}");
        }
    }

    /// Checks every invariant; the first violation found is the error.
    pub(crate) fn check(&self) -> Result<(), String> {
        // Every record's timestamp is at most the ledger's, so this bounds them all.
        if self.timestamp > kassa_wire::TIMESTAMP_MAX {
            return Err(format!(
                "the ledger timestamp {} is beyond TIMESTAMP_MAX",
                self.timestamp
            ));
        }
        self.check_accounts()?;
        self.check_transfers()?;
        self.check_balances()?;
        self.check_changes()?;
        self.sessions.check()
    }

    fn check_accounts(&self) -> Result<(), String> {
        if self.account_positions.len() != self.accounts.len()
            || self.account_transfers.len() != self.accounts.len()
            || self.account_history.len() != self.accounts.len()
        {
            return Err("account indexes are not the size of the account table".into());
        }
        for (position, account) in self.accounts.iter().enumerate() {
            if self.account_positions.get(account.id.0) != Some(position as u32) {
                return Err(format!(
                    "account {} is not indexed at {position}",
                    account.id
                ));
            }
            if !self.is_whole() && self.config.placement().account(account) != self.config.partition
            {
                return Err(format!(
                    "account {} belongs to another partition",
                    account.id
                ));
            }
            if !account.id.is_valid()
                || account.timestamp == 0
                || account.timestamp > self.timestamp
            {
                return Err(format!("account {} has a bad id or timestamp", account.id));
            }
            if position > 0 && self.accounts[position - 1].timestamp >= account.timestamp {
                return Err(format!("account {} is out of timestamp order", account.id));
            }
            // A history account's balances in memory go with the newest of its transfers in
            // memory: all of them without a cold store.
            let listed = self.account_transfers[position].len();
            let history = self.account_history[position].len();
            let in_step = match account.flags.contains(AccountFlags::HISTORY) {
                true if self.cold.is_none() => history == listed,
                true => history <= listed,
                false => history == 0,
            };
            if !in_step {
                return Err(format!("account {} history is out of step", account.id));
            }
        }
        Ok(())
    }

    fn check_transfers(&self) -> Result<(), String> {
        // Ids of positions below the generations' first are in the id runs only.
        let ids_first = self.transfer_positions.first();
        if self.transfer_positions.len() + ids_first as usize != self.transfers.len()
            || self.transfer_status.len() != self.transfers.len()
            || ids_first > self.ids_durable_below
        {
            return Err("transfer indexes are not the size of the transfer table".into());
        }
        // With a cold store, the transfers below `cold_below` are checked only if they are
        // still pending (and so in memory): the others were checked while in memory, and their
        // runs are checksummed. Every pending one must be in memory.
        let cold_below = self.transfers.cold_below();
        let statuses = self.transfer_status.not_none();
        for (position, status) in statuses.take_while(|(position, _)| *position < cold_below) {
            // One resolved since it went cold stays until the next durable checkpoint.
            let in_memory = self.transfers.get_in_memory(position).is_some();
            if status == PendingStatus::Pending && !in_memory {
                return Err(format!(
                    "cold transfer {position} is pending but not in memory"
                ));
            }
        }
        let mut account_transfers = vec![Vec::new(); self.accounts.len()];
        let mut expiries = BTreeSet::new();
        let mut cross_expiries = BTreeSet::new();
        let mut newest: Option<u64> = None;
        for (position, t) in self.transfers.iter_in_memory() {
            if position >= ids_first && self.transfer_positions.get(t.id.0) != Some(position) {
                return Err(format!("transfer {} is not indexed at {position}", t.id));
            }
            if t.timestamp == 0 || t.timestamp > self.timestamp {
                return Err(format!("transfer {} has a bad timestamp", t.id));
            }
            if newest.is_some_and(|newest| newest >= t.timestamp) {
                return Err(format!("transfer {} is out of timestamp order", t.id));
            }
            newest = Some(t.timestamp);
            // A partition holds the transfers homed here and those touching its accounts; a
            // side whose account lives elsewhere is not indexed here.
            let mut local = [None, None];
            for (side, id) in [t.debit_account_id, t.credit_account_id].iter().enumerate() {
                local[side] = self.account_positions.get(id.0);
                if local[side].is_none() && self.owns(id.0) {
                    return Err(format!("transfer {} names a missing account", t.id));
                }
                if let Some(account) = local[side] {
                    if self.accounts[account as usize].timestamp >= t.timestamp {
                        return Err(format!("transfer {} predates its account", t.id));
                    }
                    let listed = &self.account_transfers[account as usize];
                    if position < self.lists_cold_below {
                        // Listed in the store only (a pinned transfer).
                    } else if position < cold_below {
                        if listed.binary_search(&position).is_err() {
                            return Err(format!("transfer {} is not in its account's list", t.id));
                        }
                    } else {
                        account_transfers[account as usize].push(position);
                    }
                }
            }
            if local == [None, None] && !self.owns(t.id.0) {
                return Err(format!("transfer {} does not belong here", t.id));
            }
            if t.debit_account_id == t.credit_account_id {
                return Err(format!("transfer {} has bad accounts", t.id));
            }
            let status = self.transfer_status.get(position);
            let pending = t.flags.contains(TransferFlags::PENDING);
            if pending == (status == PendingStatus::None) {
                return Err(format!("transfer {} has two-phase status {status:?}", t.id));
            }
            if status == PendingStatus::Pending {
                if let Some(expires_at) = crate::expiry::expires_at(t) {
                    if expires_at > kassa_wire::TIMESTAMP_MAX {
                        return Err(format!("transfer {} expires beyond TIMESTAMP_MAX", t.id));
                    }
                    if !self.owns(t.id.0) {
                        // Expired by its home partition.
                    } else if local.iter().all(Option::is_some) {
                        expiries.insert((expires_at, position));
                    } else {
                        cross_expiries.insert((expires_at, position));
                    }
                }
            }
        }
        // Of each account's list, the part from `cold_below` on (all of it without a store).
        let lists = self.account_transfers.iter().zip(&account_transfers);
        for (listed, found) in lists {
            if listed[listed.partition_point(|p| *p < cold_below)..] != found[..] {
                return Err("an account's transfer list is out of step".into());
            }
        }
        if expiries != self.expiries || cross_expiries != self.cross_expiries {
            return Err("the expiry queue is out of step with pending transfers".into());
        }
        Ok(())
    }

    /// Per ledger: debits equal credits, posted and pending; and every account's pending
    /// balances are exactly the sums of its open pending transfers.
    fn check_balances(&self) -> Result<(), String> {
        let mut totals: BTreeMap<u32, LedgerTotals> = BTreeMap::new();
        for account in &self.accounts {
            let total = totals.entry(account.ledger).or_default();
            total.debits_pending.add(account.debits_pending);
            total.debits_posted.add(account.debits_posted);
            total.credits_pending.add(account.credits_pending);
            total.credits_posted.add(account.credits_posted);
            if account
                .debits_pending
                .checked_add(account.debits_posted)
                .is_none()
                || account
                    .credits_pending
                    .checked_add(account.credits_posted)
                    .is_none()
            {
                return Err(format!("account {} pending + posted overflows", account.id));
            }
        }
        // A partition of a larger cluster holds one side of the transfers that cross it, so
        // only the whole ledger must balance (the cluster's sum over partitions does).
        for (ledger, total) in totals.iter().filter(|_| self.holds_whole_ledgers()) {
            if total.debits_posted != total.credits_posted {
                return Err(format!(
                    "ledger {ledger}: posted debits differ from credits"
                ));
            }
            if total.debits_pending != total.credits_pending {
                return Err(format!(
                    "ledger {ledger}: pending debits differ from credits"
                ));
            }
        }
        let mut pending = vec![(0u128, 0u128); self.accounts.len()];
        // Every pending transfer is in memory (`check_transfers`).
        for (position, t) in self.transfers.iter_in_memory() {
            if self.transfer_status.get(position) == PendingStatus::Pending {
                if let Some(debit) = self.account_positions.get(t.debit_account_id.0) {
                    let debit = &mut pending[debit as usize].0;
                    *debit = debit.wrapping_add(t.amount);
                }
                if let Some(credit) = self.account_positions.get(t.credit_account_id.0) {
                    let credit = &mut pending[credit as usize].1;
                    *credit = credit.wrapping_add(t.amount);
                }
            }
        }
        for (account, (debits, credits)) in self.accounts.iter().zip(pending) {
            if account.debits_pending != debits || account.credits_pending != credits {
                return Err(format!("account {} pending balances differ", account.id));
            }
        }
        Ok(())
    }

    /// Every retained change entry in memory points at a record of its kind (cold ones were
    /// checked while in memory, and their runs are checksummed). (Imported events carry past
    /// timestamps, so the stream's timestamps need not increase.)
    fn check_changes(&self) -> Result<(), String> {
        for entry in self.changes.retained_in_memory() {
            let position = entry.position as usize;
            let found = match ChangeKind::from_u8(entry.kind) {
                Some(ChangeKind::AccountCreated) => {
                    let account = self.accounts.get(position);
                    account.is_some_and(|a| a.timestamp == entry.timestamp)
                }
                Some(ChangeKind::TransferCreated) => {
                    match self.transfers.get_in_memory(entry.position) {
                        Some(t) => t.timestamp == entry.timestamp,
                        // A cold transfer was checked while it was in memory.
                        None => entry.position < self.transfers.cold_below(),
                    }
                }
                Some(ChangeKind::PendingTransferExpired) => {
                    self.transfer_status.find(position) == Some(PendingStatus::Expired)
                }
                None => false,
            };
            if !found || entry.timestamp > self.timestamp || entry.reserved != 0 {
                return Err(format!("change entry at {} is malformed", entry.timestamp));
            }
        }
        Ok(())
    }
}
