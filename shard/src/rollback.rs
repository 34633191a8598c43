//! Rolling back a linked chain that failed.
//!
//! While a chain is open, the ledger records how to undo it: appended records are undone by
//! truncating back to the lengths marked when the chain opened, and in-place changes (account
//! balances and flags, two-phase statuses, removed expiries) by an undo log of the values they
//! replaced. Outside a chain nothing is recorded, so single events pay nothing for chains.
//! What a failed event burns (`failed_transfer_ids`) and the timestamps events were given are
//! not rolled back: TigerBeetle keeps both too.

use kassa_wire::Account;

use crate::{Ledger, PendingStatus};

#[derive(Default)]
pub(crate) struct Rollback {
    mark: Option<Mark>,
    undo: Vec<Undo>,
}

#[derive(Clone, Copy)]
struct Mark {
    accounts_len: usize,
    transfers_len: usize,
    change_sequence_next: u64,
}

enum Undo {
    Account {
        position: u32,
        before: Account,
    },
    TransferStatus {
        position: u32,
        before: PendingStatus,
    },
    ExpiryRemoved {
        key: (u64, u32),
    },
}

impl Ledger {
    /// Opens a chain: from now on, changes are recorded until it is closed or rolled back.
    pub(crate) fn chain_open(&mut self) {
        assert!(self.rollback.mark.is_none());
        assert!(self.rollback.undo.is_empty());
        self.rollback.mark = Some(Mark {
            accounts_len: self.accounts.len(),
            transfers_len: self.transfers.len(),
            change_sequence_next: self.changes.sequence_next,
        });
    }

    /// Whether no chain is open.
    pub(crate) fn rollback_is_idle(&self) -> bool {
        self.rollback.mark.is_none() && self.rollback.undo.is_empty()
    }

    /// Closes a chain whose events all succeeded: they stay.
    pub(crate) fn chain_commit(&mut self) {
        assert!(self.rollback.mark.is_some());
        self.rollback.mark = None;
        self.rollback.undo.clear();
    }

    /// Undoes every change made since the chain opened.
    pub(crate) fn chain_rollback(&mut self) {
        let mark = self
            .rollback
            .mark
            .take()
            .expect("rollback without an open chain");
        while let Some(undo) = self.rollback.undo.pop() {
            match undo {
                Undo::Account { position, before } => self.accounts[position as usize] = before,
                Undo::TransferStatus { position, before } => {
                    self.transfer_status.set(position, before);
                }
                Undo::ExpiryRemoved { key } => {
                    let inserted = self.expiries.insert(key);
                    assert!(inserted);
                }
            }
        }
        while self.transfers.len() > mark.transfers_len {
            self.transfer_pop();
        }
        while self.accounts.len() > mark.accounts_len {
            self.account_pop();
        }
        self.changes.truncate_to(mark.change_sequence_next);
    }

    /// Records the account's value before an in-place change, if a chain is open.
    pub(crate) fn undo_account(&mut self, position: u32) {
        if let Some(mark) = self.rollback.mark {
            // Accounts appended inside the chain are undone by truncation.
            if (position as usize) < mark.accounts_len {
                let before = self.accounts[position as usize];
                self.rollback.undo.push(Undo::Account { position, before });
            }
        }
    }

    pub(crate) fn undo_transfer_status(&mut self, position: u32) {
        if self.rollback.mark.is_some() {
            let before = self.transfer_status.get(position);
            self.rollback
                .undo
                .push(Undo::TransferStatus { position, before });
        }
    }

    pub(crate) fn undo_expiry_removed(&mut self, key: (u64, u32)) {
        if self.rollback.mark.is_some() {
            self.rollback.undo.push(Undo::ExpiryRemoved { key });
        }
    }

    /// Removes the newest transfer and everything derived from it.
    fn transfer_pop(&mut self) {
        let transfer = self.transfers.pop().expect("transfer_pop on no transfers");
        let position = self.transfers.len() as u32;
        let removed = self.transfer_positions.remove(transfer.id.0);
        assert_eq!(removed, Some(position));
        self.transfer_status.pop();
        for account_id in [transfer.debit_account_id, transfer.credit_account_id] {
            let account = self.account_positions.get(account_id.0).expect("indexed") as usize;
            let popped = self.account_transfers[account].pop();
            assert_eq!(popped, Some(position));
            if self.accounts[account]
                .flags
                .contains(kassa_wire::AccountFlags::HISTORY)
            {
                let popped = self.account_history[account].pop();
                assert!(popped.is_some());
            }
        }
        if let Some(expires_at) = crate::expiry::expires_at(&transfer) {
            let removed = self.expiries.remove(&(expires_at, position));
            assert!(removed);
        }
    }

    /// Removes the newest account, which no transfer can reference yet.
    fn account_pop(&mut self) {
        let account = self.accounts.pop().expect("account_pop on no accounts");
        let removed = self.account_positions.remove(account.id.0);
        assert_eq!(removed, Some(self.accounts.len() as u32));
        let transfers = self
            .account_transfers
            .pop()
            .expect("account_transfers in step");
        assert!(transfers.is_empty());
        self.account_history.pop();
    }
}
