//! Expiry of pending transfers whose timeout has passed.
//!
//! A pending transfer with `timeout > 0` expires at `timestamp + timeout` seconds. From that
//! moment a post or void of it answers `pending_transfer_expired`; its reserved amount is
//! released when [`Ledger::expire_pending_transfers`] runs with a `now` at or past that moment.
//! The caller (the partition's leader) asks [`Ledger::pulse_needed`] and puts a pulse into the
//! log, so that every replica expires the same transfers at the same timestamps.

use kassa_wire::{ChangeKind, Transfer, TransferFlags};

use crate::limits::EXPIRE_BATCH_MAX;
use crate::{Ledger, PendingStatus};

/// When a pending transfer expires, if it can.
pub(crate) fn expires_at(transfer: &Transfer) -> Option<u64> {
    let can_expire = transfer.flags.contains(TransferFlags::PENDING) && transfer.timeout > 0;
    // Imported pending transfers never have a timeout (`imported_event_timeout_must_be_zero`).
    can_expire.then(|| transfer.timestamp + transfer.timeout_ns())
}

impl Ledger {
    /// Whether a pending transfer's time is up at `now`, so that a pulse would expire it.
    pub fn pulse_needed(&self, now: u64) -> bool {
        let time = self.timestamp.max(now);
        self.expiries
            .first()
            .is_some_and(|(expires_at, _)| *expires_at <= time)
    }

    /// Expires up to `EXPIRE_BATCH_MAX` pending transfers whose time is up at `now`, oldest
    /// deadline first, each at a timestamp of its own. Returns how many expired.
    pub fn expire_pending_transfers(&mut self, now: u64) -> usize {
        let time = self.timestamp.max(now);
        let mut count = 0;
        while count < EXPIRE_BATCH_MAX {
            let Some(&(expires_at, position)) = self.expiries.first() else {
                break;
            };
            if expires_at > time {
                break;
            }
            let timestamp = self.batch_timestamp_end(time, count + 1);
            self.expire_one(expires_at, position, timestamp);
            count += 1;
        }
        if count > 0 {
            self.timestamp = self.batch_timestamp_end(time, count);
        }
        count
    }

    fn expire_one(&mut self, expires_at: u64, position: u32, timestamp: u64) {
        assert!(expires_at <= timestamp);
        let removed = self.expiries.remove(&(expires_at, position));
        assert!(removed);
        let pending = self.transfer_applied(position);
        assert_eq!(self.transfer_status.get(position), PendingStatus::Pending);
        self.transfer_status.set(position, PendingStatus::Expired);
        self.status_changes.record(position);

        let debit = self
            .account_positions
            .get(pending.debit_account_id.0)
            .expect("indexed");
        let credit = self
            .account_positions
            .get(pending.credit_account_id.0)
            .expect("indexed");
        let account = &mut self.accounts[debit as usize];
        account.debits_pending -= pending.amount;
        if pending.flags.contains(TransferFlags::CLOSING_DEBIT) {
            assert!(account.flags.contains(kassa_wire::AccountFlags::CLOSED));
            account.flags.set(kassa_wire::AccountFlags::CLOSED, false);
        }
        let account = &mut self.accounts[credit as usize];
        account.credits_pending -= pending.amount;
        if pending.flags.contains(TransferFlags::CLOSING_CREDIT) {
            assert!(account.flags.contains(kassa_wire::AccountFlags::CLOSED));
            account.flags.set(kassa_wire::AccountFlags::CLOSED, false);
        }
        let (debit_account, credit_account) = (
            &self.accounts[debit as usize],
            &self.accounts[credit as usize],
        );
        self.changes.push_transfer(
            ChangeKind::PendingTransferExpired,
            timestamp,
            position,
            debit_account,
            credit_account,
        );
    }
}
