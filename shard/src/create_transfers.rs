//! `create_transfers`: a transfer's own checks, in TigerBeetle 0.17's order of precedence, and
//! its effect on both accounts. Posting and voiding pending transfers is `post_or_void.rs`'s.
//! The batch loop around it is `create.rs`'s.
//!
//! Every amount is checked for overflow before anything changes: a failed transfer changes
//! nothing but, for the transient statuses, burns its id (`id_already_failed` on retry).

use kassa_wire::{
    Account, AccountFlags, ChangeKind, CreateTransferResult, CreateTransferStatus as Status,
    Transfer, TransferFlags, ID_INT_MAX, TIMESTAMP_MAX,
};

use crate::create::{CreateOperation, Outcome};
use crate::{Ledger, PendingStatus};

pub(crate) struct CreateTransfers;

impl CreateOperation for CreateTransfers {
    type Event = Transfer;
    type Status = Status;
    type Result = CreateTransferResult;
    const CREATED: Status = Status::Created;
    const LINKED_EVENT_FAILED: Status = Status::LinkedEventFailed;
    const LINKED_EVENT_CHAIN_OPEN: Status = Status::LinkedEventChainOpen;
    const IMPORTED_EVENT_EXPECTED: Status = Status::ImportedEventExpected;
    const IMPORTED_EVENT_NOT_EXPECTED: Status = Status::ImportedEventNotExpected;
    const TIMESTAMP_MUST_BE_ZERO: Status = Status::TimestampMustBeZero;
    const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: Status = Status::ImportedEventTimestampOutOfRange;
    const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: Status =
        Status::ImportedEventTimestampMustNotAdvance;

    fn prefetch_slots(ledger: &Ledger, event: &Transfer) {
        ledger.transfer_positions.prefetch(event.id.0);
        if event.pending_id.0 != 0 {
            ledger.transfer_positions.prefetch(event.pending_id.0);
        }
        ledger.account_positions.prefetch(event.debit_account_id.0);
        ledger.account_positions.prefetch(event.credit_account_id.0);
    }

    fn prefetch_records(ledger: &Ledger, event: &Transfer) {
        for account in ledger.accounts_of(event) {
            crate::prefetch::record(&ledger.accounts[account]);
            crate::prefetch::line(&ledger.account_transfers[account]);
            crate::prefetch::line(&ledger.account_history[account]);
        }
    }

    fn prefetch_tails(ledger: &Ledger, event: &Transfer) {
        for account in ledger.accounts_of(event) {
            crate::prefetch::tail(&ledger.account_transfers[account]);
            ledger.account_history[account].prefetch_tail();
        }
    }

    fn head(event: &Transfer) -> (bool, bool, u64) {
        let flags = event.flags;
        let linked = flags.contains(TransferFlags::LINKED);
        (
            linked,
            flags.contains(TransferFlags::IMPORTED),
            event.timestamp,
        )
    }

    fn apply(ledger: &mut Ledger, timestamp: u64, event: &Transfer) -> Outcome<Status> {
        ledger.create_transfer(timestamp, event)
    }

    fn failed(ledger: &mut Ledger, event: &Transfer, status: Status) {
        if status.is_transient() {
            ledger.failed_transfer_ids.insert(event.id.0);
        }
    }

    fn result(timestamp: u64, status: Status) -> CreateTransferResult {
        CreateTransferResult {
            timestamp,
            status,
            reserved: 0,
        }
    }

    fn set_status(result: &mut CreateTransferResult, status: Status) {
        result.status = status;
    }
}

impl Ledger {
    /// Creates each transfer of the batch, writing one result per event into `results` (which
    /// is cleared first), in order. `now` is the caller's clock in nanoseconds.
    pub fn create_transfers(
        &mut self,
        now: u64,
        events: &[Transfer],
        results: &mut Vec<CreateTransferResult>,
    ) {
        self.execute_create::<CreateTransfers>(now, events, results);
    }

    /// The positions of `t`'s accounts stored here, for its prefetch.
    #[inline]
    fn accounts_of(&self, t: &Transfer) -> impl Iterator<Item = usize> + '_ {
        let ids = [t.debit_account_id.0, t.credit_account_id.0];
        (ids.into_iter()).filter_map(|id| Some(self.account_positions.get(id)? as usize))
    }

    fn create_transfer(&mut self, timestamp_event: u64, t: &Transfer) -> Outcome<Status> {
        if t.flags.has_reserved() {
            return Err(Status::ReservedFlag);
        }
        if t.id.0 == 0 {
            return Err(Status::IdMustNotBeZero);
        }
        if t.id.0 == ID_INT_MAX {
            return Err(Status::IdMustNotBeIntMax);
        }
        if let Some(position) = self.transfer_position_applied(t.id.0) {
            return self.transfer_exists(t, &self.transfer_applied(position));
        }
        if self.failed_transfer_ids.contains(&t.id.0) {
            return Err(Status::IdAlreadyFailed);
        }
        if t.flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            return self.post_or_void_pending_transfer(timestamp_event, t);
        }
        transfer_fields_valid(t)?;

        let debit = self.account_positions.get(t.debit_account_id.0);
        let debit = debit.ok_or(Status::DebitAccountNotFound)?;
        let credit = self.account_positions.get(t.credit_account_id.0);
        let credit = credit.ok_or(Status::CreditAccountNotFound)?;
        let (dr, cr) = (
            &self.accounts[debit as usize],
            &self.accounts[credit as usize],
        );
        if dr.ledger != cr.ledger {
            return Err(Status::AccountsMustHaveTheSameLedger);
        }
        if t.ledger != dr.ledger {
            return Err(Status::TransferMustHaveTheSameLedgerAsAccounts);
        }
        let timestamp = if t.flags.contains(TransferFlags::IMPORTED) {
            self.imported_transfer_timestamp(t, dr, cr)?
        } else {
            timestamp_event
        };
        assert!(timestamp > dr.timestamp && timestamp > cr.timestamp);
        if dr.flags.contains(AccountFlags::CLOSED) {
            return Err(Status::DebitAccountAlreadyClosed);
        }
        if cr.flags.contains(AccountFlags::CLOSED) {
            return Err(Status::CreditAccountAlreadyClosed);
        }
        let amount = balanced_amount(t, dr, cr);
        amount_fits(t, amount, dr, cr, timestamp)?;
        if dr.debits_exceed_credits(amount) {
            return Err(Status::ExceedsCredits);
        }
        if cr.credits_exceed_debits(amount) {
            return Err(Status::ExceedsDebits);
        }

        self.transfer_apply(t, amount, timestamp, (debit, credit));
        Ok((Status::Created, timestamp))
    }

    /// Moves a single-phase or pending transfer's amount: nothing can fail from here on.
    fn transfer_apply(&mut self, t: &Transfer, amount: u128, timestamp: u64, accounts: (u32, u32)) {
        let (debit, credit) = accounts;
        let transfer = Transfer {
            amount,
            timestamp,
            ..*t
        };
        let pending = t.flags.contains(TransferFlags::PENDING);
        self.account_change(debit, |account| {
            if pending {
                account.debits_pending += amount;
            } else {
                account.debits_posted += amount;
            }
            if t.flags.contains(TransferFlags::CLOSING_DEBIT) {
                account.flags.set(AccountFlags::CLOSED, true);
            }
        });
        self.account_change(credit, |account| {
            if pending {
                account.credits_pending += amount;
            } else {
                account.credits_posted += amount;
            }
            if t.flags.contains(TransferFlags::CLOSING_CREDIT) {
                account.flags.set(AccountFlags::CLOSED, true);
            }
        });
        let status = if pending {
            PendingStatus::Pending
        } else {
            PendingStatus::None
        };
        self.transfer_insert(transfer, status, debit, credit);
    }

    /// The timestamp of an imported transfer, after its own checks.
    fn imported_transfer_timestamp(
        &self,
        t: &Transfer,
        dr: &Account,
        cr: &Account,
    ) -> Result<u64, Status> {
        if self.imported_timestamp_regresses(
            t.timestamp,
            self.transfers.newest_timestamp(),
            self.import_floor_transfers,
        ) {
            return Err(Status::ImportedEventTimestampMustNotRegress);
        }
        if t.timestamp <= dr.timestamp {
            return Err(Status::ImportedEventTimestampMustPostdateDebitAccount);
        }
        if t.timestamp <= cr.timestamp {
            return Err(Status::ImportedEventTimestampMustPostdateCreditAccount);
        }
        if t.timeout != 0 {
            assert!(t.flags.contains(TransferFlags::PENDING));
            return Err(Status::ImportedEventTimeoutMustBeZero);
        }
        Ok(t.timestamp)
    }

    /// Changes an account in place, recording its old value if a chain is open.
    pub(crate) fn account_change(&mut self, position: u32, change: impl FnOnce(&mut Account)) {
        self.undo_account(position);
        change(&mut self.accounts[position as usize]);
    }

    /// Stores a transfer whose accounts are already updated, with everything derived from it.
    pub(crate) fn transfer_insert(
        &mut self,
        transfer: Transfer,
        status: PendingStatus,
        debit: u32,
        credit: u32,
    ) {
        let position = Ledger::position_of(self.transfers.len());
        self.transfer_positions.insert(transfer.id.0, position);
        self.transfers.push(transfer);
        self.transfer_status.push(status);
        if let Some(expires_at) = crate::expiry::expires_at(&transfer) {
            let inserted = self.expiries.insert((expires_at, position));
            assert!(inserted);
        }
        for account in [debit, credit] {
            self.account_transfers[account as usize].push(position);
            let account_record = &self.accounts[account as usize];
            if account_record.flags.contains(AccountFlags::HISTORY) {
                let balances = kassa_wire::Balances::of(account_record);
                self.account_history[account as usize].push(balances);
            }
        }
        let (dr, cr) = (
            &self.accounts[debit as usize],
            &self.accounts[credit as usize],
        );
        let kind = ChangeKind::TransferCreated;
        self.changes
            .push_transfer(kind, transfer.timestamp, position, dr, cr);
    }

    /// The idempotency check of a transfer id that exists: `exists` only if the event is the
    /// same request again.
    fn transfer_exists(&self, t: &Transfer, e: &Transfer) -> Outcome<Status> {
        if t.flags != e.flags {
            return Err(Status::ExistsWithDifferentFlags);
        }
        if t.pending_id != e.pending_id {
            return Err(Status::ExistsWithDifferentPendingId);
        }
        if t.timeout != e.timeout {
            return Err(Status::ExistsWithDifferentTimeout);
        }
        if t.flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            let pending = self.transfer_position_applied(t.pending_id.0);
            let pending = self.transfer_applied(pending.expect("a post or void names its pending"));
            return crate::post_or_void::post_or_void_exists(t, e, &pending);
        }
        if t.debit_account_id != e.debit_account_id {
            return Err(Status::ExistsWithDifferentDebitAccountId);
        }
        if t.credit_account_id != e.credit_account_id {
            return Err(Status::ExistsWithDifferentCreditAccountId);
        }
        // A balancing transfer's amount is an upper limit: any limit at or above what moved is
        // the same request.
        let balancing = t.flags.contains(TransferFlags::BALANCING_DEBIT)
            || t.flags.contains(TransferFlags::BALANCING_CREDIT);
        if (balancing && t.amount < e.amount) || (!balancing && t.amount != e.amount) {
            return Err(Status::ExistsWithDifferentAmount);
        }
        if t.user_data_128 != e.user_data_128 {
            return Err(Status::ExistsWithDifferentUserData128);
        }
        if t.user_data_64 != e.user_data_64 {
            return Err(Status::ExistsWithDifferentUserData64);
        }
        if t.user_data_32 != e.user_data_32 {
            return Err(Status::ExistsWithDifferentUserData32);
        }
        if t.ledger != e.ledger {
            return Err(Status::ExistsWithDifferentLedger);
        }
        if t.code != e.code {
            return Err(Status::ExistsWithDifferentCode);
        }
        Ok((Status::Exists, e.timestamp))
    }
}

/// The field checks of a single-phase or pending transfer that need no state.
fn transfer_fields_valid(t: &Transfer) -> Result<(), Status> {
    if t.debit_account_id.0 == 0 {
        return Err(Status::DebitAccountIdMustNotBeZero);
    }
    if t.debit_account_id.0 == ID_INT_MAX {
        return Err(Status::DebitAccountIdMustNotBeIntMax);
    }
    if t.credit_account_id.0 == 0 {
        return Err(Status::CreditAccountIdMustNotBeZero);
    }
    if t.credit_account_id.0 == ID_INT_MAX {
        return Err(Status::CreditAccountIdMustNotBeIntMax);
    }
    if t.credit_account_id == t.debit_account_id {
        return Err(Status::AccountsMustBeDifferent);
    }
    if t.pending_id.0 != 0 {
        return Err(Status::PendingIdMustBeZero);
    }
    if !t.flags.contains(TransferFlags::PENDING) {
        if t.timeout != 0 {
            return Err(Status::TimeoutReservedForPendingTransfer);
        }
        if t.flags.contains(TransferFlags::CLOSING_DEBIT)
            || t.flags.contains(TransferFlags::CLOSING_CREDIT)
        {
            return Err(Status::ClosingTransferMustBePending);
        }
    }
    if t.ledger == 0 {
        return Err(Status::LedgerMustNotBeZero);
    }
    if t.code == 0 {
        return Err(Status::CodeMustNotBeZero);
    }
    Ok(())
}

/// The amount a transfer moves: its `amount`, or less for a balancing transfer.
fn balanced_amount(t: &Transfer, dr: &Account, cr: &Account) -> u128 {
    let mut amount = t.amount;
    if t.flags.contains(TransferFlags::BALANCING_DEBIT) {
        let debits = dr.debits_posted + dr.debits_pending;
        amount = amount.min(dr.credits_posted.saturating_sub(debits));
    }
    if t.flags.contains(TransferFlags::BALANCING_CREDIT) {
        let credits = cr.credits_posted + cr.credits_pending;
        amount = amount.min(cr.debits_posted.saturating_sub(credits));
    }
    amount
}

/// The overflow checks: no balance, no sum of balances and no expiry may overflow.
fn amount_fits(
    t: &Transfer,
    amount: u128,
    dr: &Account,
    cr: &Account,
    timestamp: u64,
) -> Result<(), Status> {
    if t.flags.contains(TransferFlags::PENDING) {
        if amount.checked_add(dr.debits_pending).is_none() {
            return Err(Status::OverflowsDebitsPending);
        }
        if amount.checked_add(cr.credits_pending).is_none() {
            return Err(Status::OverflowsCreditsPending);
        }
    }
    if amount.checked_add(dr.debits_posted).is_none() {
        return Err(Status::OverflowsDebitsPosted);
    }
    if amount.checked_add(cr.credits_posted).is_none() {
        return Err(Status::OverflowsCreditsPosted);
    }
    // Invariant: pending + posted never overflows, so these sums are safe.
    if amount
        .checked_add(dr.debits_pending + dr.debits_posted)
        .is_none()
    {
        return Err(Status::OverflowsDebits);
    }
    if amount
        .checked_add(cr.credits_pending + cr.credits_posted)
        .is_none()
    {
        return Err(Status::OverflowsCredits);
    }
    if timestamp + t.timeout_ns() > TIMESTAMP_MAX {
        return Err(Status::OverflowsTimeout);
    }
    Ok(())
}
