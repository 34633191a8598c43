//! Posting and voiding pending transfers (the second phase of a two-phase transfer).
//!
//! A post moves all or part of the reserved amount into the posted balances and releases the
//! rest; a void releases all of it and reopens an account that the pending transfer closed.
//! Either one resolves the pending transfer for good.

use kassa_wire::{
    AccountFlags, CreateTransferStatus as Status, Transfer, TransferFlags, ID_INT_MAX,
};

use crate::create::Outcome;
use crate::{Ledger, PendingStatus};

/// A post or void that passed every check: what applying it needs.
struct Resolution {
    post: bool,
    pending_position: u32,
    pending: Transfer,
    debit: u32,
    credit: u32,
    /// The amount the post moves (a void's is the whole pending amount).
    amount: u128,
    expires_at: Option<u64>,
    timestamp: u64,
}

impl Ledger {
    pub(crate) fn post_or_void_pending_transfer(
        &mut self,
        timestamp_event: u64,
        t: &Transfer,
    ) -> Outcome<Status> {
        post_or_void_fields_valid(t)?;
        let resolution = self.post_or_void_check(timestamp_event, t)?;
        let timestamp = resolution.timestamp;
        self.post_or_void_apply(t, resolution);
        Ok((Status::Created, timestamp))
    }

    /// The checks that read the pending transfer and its accounts, in TigerBeetle's order.
    fn post_or_void_check(&self, timestamp_event: u64, t: &Transfer) -> Result<Resolution, Status> {
        let void = t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        let pending_position = self.transfer_position_applied(t.pending_id.0);
        let pending_position = pending_position.ok_or(Status::PendingTransferNotFound)?;
        let p = self.transfer_applied(pending_position);
        // Imported events carry their own past timestamps, so only a live event is surely
        // later than the pending transfer by its batch position.
        let imported = t.flags.contains(TransferFlags::IMPORTED);
        assert!(imported || p.timestamp < timestamp_event);
        if !p.flags.contains(TransferFlags::PENDING) {
            return Err(Status::PendingTransferNotPending);
        }
        pending_matches(t, &p)?;
        let amount = match (void, t.amount) {
            (true, 0) => p.amount,
            (false, u128::MAX) => p.amount,
            (_, amount) => amount,
        };
        if amount > p.amount {
            return Err(Status::ExceedsPendingTransferAmount);
        }
        if void && amount < p.amount {
            return Err(Status::PendingTransferHasDifferentAmount);
        }
        match crate::cold::applied(self.transfer_status_at(pending_position)) {
            PendingStatus::Pending => {}
            PendingStatus::Posted => return Err(Status::PendingTransferAlreadyPosted),
            PendingStatus::Voided => return Err(Status::PendingTransferAlreadyVoided),
            PendingStatus::Expired => return Err(Status::PendingTransferExpired),
            PendingStatus::None => unreachable!("a pending transfer has a pending status"),
        }
        let expires_at = crate::expiry::expires_at(&p);
        if expires_at.is_some_and(|expires_at| expires_at <= timestamp_event) {
            return Err(Status::PendingTransferExpired);
        }
        let timestamp = if imported {
            if self.imported_timestamp_regresses(
                t.timestamp,
                self.transfers.newest_timestamp(),
                self.import_floor_transfers,
            ) {
                return Err(Status::ImportedEventTimestampMustNotRegress);
            }
            t.timestamp
        } else {
            timestamp_event
        };
        let debit = self
            .account_positions
            .get(p.debit_account_id.0)
            .expect("indexed");
        let credit = self
            .account_positions
            .get(p.credit_account_id.0)
            .expect("indexed");
        let (dr, cr) = (
            &self.accounts[debit as usize],
            &self.accounts[credit as usize],
        );
        assert!(timestamp > dr.timestamp && timestamp > cr.timestamp);
        // The only movement a closed account allows is voiding a pending transfer.
        if dr.flags.contains(AccountFlags::CLOSED) && !void {
            return Err(Status::DebitAccountAlreadyClosed);
        }
        if cr.flags.contains(AccountFlags::CLOSED) && !void {
            return Err(Status::CreditAccountAlreadyClosed);
        }
        let post = !void;
        Ok(Resolution {
            post,
            pending_position,
            pending: p,
            debit,
            credit,
            amount,
            expires_at,
            timestamp,
        })
    }

    /// Resolves the pending transfer: nothing can fail from here on.
    fn post_or_void_apply(&mut self, t: &Transfer, r: Resolution) {
        let p = &r.pending;
        if let Some(expires_at) = r.expires_at {
            let removed = self.expiries.remove(&(expires_at, r.pending_position));
            assert!(removed);
            self.undo_expiry_removed((expires_at, r.pending_position));
        }
        self.undo_transfer_status(r.pending_position);
        self.status_changes.record(r.pending_position);
        let resolved = if r.post {
            PendingStatus::Posted
        } else {
            PendingStatus::Voided
        };
        self.transfer_status.set(r.pending_position, resolved);
        let sides = [
            (r.debit, TransferFlags::CLOSING_DEBIT),
            (r.credit, TransferFlags::CLOSING_CREDIT),
        ];
        for (side, (position, closing)) in sides.into_iter().enumerate() {
            self.account_change(position, |account| {
                let (pending, posted) = if side == 0 {
                    (&mut account.debits_pending, &mut account.debits_posted)
                } else {
                    (&mut account.credits_pending, &mut account.credits_posted)
                };
                *pending -= p.amount;
                if r.post {
                    *posted += r.amount;
                } else if p.flags.contains(closing) {
                    assert!(account.flags.contains(AccountFlags::CLOSED));
                    account.flags.set(AccountFlags::CLOSED, false);
                }
            });
        }
        let transfer = Transfer {
            id: t.id,
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            amount: r.amount,
            pending_id: t.pending_id,
            user_data_128: inherit(t.user_data_128, p.user_data_128),
            user_data_64: inherit(t.user_data_64, p.user_data_64),
            user_data_32: inherit(t.user_data_32, p.user_data_32),
            timeout: 0,
            ledger: p.ledger,
            code: p.code,
            flags: t.flags,
            timestamp: r.timestamp,
        };
        self.transfer_insert(transfer, PendingStatus::None, r.debit, r.credit);
    }
}

/// The checks of a post or void that need no state, in TigerBeetle's order.
fn post_or_void_fields_valid(t: &Transfer) -> Result<(), Status> {
    let post = t.flags.contains(TransferFlags::POST_PENDING_TRANSFER);
    let void = t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
    assert!(post || void);
    let exclusive = TransferFlags::PENDING
        | TransferFlags::BALANCING_DEBIT
        | TransferFlags::BALANCING_CREDIT
        | TransferFlags::CLOSING_DEBIT
        | TransferFlags::CLOSING_CREDIT;
    if (post && void) || t.flags.0 & exclusive.0 != 0 {
        return Err(Status::FlagsAreMutuallyExclusive);
    }
    if t.pending_id.0 == 0 {
        return Err(Status::PendingIdMustNotBeZero);
    }
    if t.pending_id.0 == ID_INT_MAX {
        return Err(Status::PendingIdMustNotBeIntMax);
    }
    if t.pending_id == t.id {
        return Err(Status::PendingIdMustBeDifferent);
    }
    if t.timeout != 0 {
        return Err(Status::TimeoutReservedForPendingTransfer);
    }
    Ok(())
}

/// The fields a post or void may leave zero but must not contradict.
fn pending_matches(t: &Transfer, p: &Transfer) -> Result<(), Status> {
    if t.debit_account_id.0 > 0 && t.debit_account_id != p.debit_account_id {
        return Err(Status::PendingTransferHasDifferentDebitAccountId);
    }
    if t.credit_account_id.0 > 0 && t.credit_account_id != p.credit_account_id {
        return Err(Status::PendingTransferHasDifferentCreditAccountId);
    }
    // user_data may differ between a pending transfer and its post or void.
    if t.ledger > 0 && t.ledger != p.ledger {
        return Err(Status::PendingTransferHasDifferentLedger);
    }
    if t.code > 0 && t.code != p.code {
        return Err(Status::PendingTransferHasDifferentCode);
    }
    Ok(())
}

/// A post or void's own user data where set, else the pending transfer's.
fn inherit<T: PartialEq + Default>(own: T, pending: T) -> T {
    if own != T::default() {
        own
    } else {
        pending
    }
}

/// The idempotency check of a post or void whose id exists (`e`), against its pending `p`.
pub(crate) fn post_or_void_exists(t: &Transfer, e: &Transfer, p: &Transfer) -> Outcome<Status> {
    assert!(t.id == e.id && t.pending_id == p.id && t.flags == e.flags);
    if t.debit_account_id.0 != 0 && t.debit_account_id != e.debit_account_id {
        return Err(Status::ExistsWithDifferentDebitAccountId);
    }
    if t.credit_account_id.0 != 0 && t.credit_account_id != e.credit_account_id {
        return Err(Status::ExistsWithDifferentCreditAccountId);
    }
    let void = t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
    // The amount that means "the whole pending amount": 0 for a void, the maximum for a post.
    let amount_whole = if void { 0 } else { u128::MAX };
    let amount_expected = if t.amount == amount_whole {
        p.amount
    } else {
        t.amount
    };
    if e.amount != amount_expected {
        return Err(Status::ExistsWithDifferentAmount);
    }
    if inherit(t.user_data_128, p.user_data_128) != e.user_data_128 {
        return Err(Status::ExistsWithDifferentUserData128);
    }
    if inherit(t.user_data_64, p.user_data_64) != e.user_data_64 {
        return Err(Status::ExistsWithDifferentUserData64);
    }
    if inherit(t.user_data_32, p.user_data_32) != e.user_data_32 {
        return Err(Status::ExistsWithDifferentUserData32);
    }
    if t.ledger != 0 && t.ledger != e.ledger {
        return Err(Status::ExistsWithDifferentLedger);
    }
    if t.code != 0 && t.code != e.code {
        return Err(Status::ExistsWithDifferentCode);
    }
    Ok((Status::Exists, e.timestamp))
}
