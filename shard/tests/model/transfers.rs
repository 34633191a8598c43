//! The reference model's `create_transfers`, check for check in the order of TigerBeetle
//! 0.17.8's `create_transfer`, `create_transfer_exists`, `post_or_void_pending_transfer` and
//! `post_or_void_pending_transfer_exists`. Every function returns `Ok((created | exists,
//! timestamp))` or `Err(status)`; the batch loop gives failures the event's timestamp.

use kassa_wire::{
    Account, AccountFlags, Balances, CreateTransferResult, CreateTransferStatus, Transfer,
    TransferFlags,
};
use zerocopy::IntoBytes;

use crate::model::reference::{
    BatchStatuses, Head, Model, Phase, StoredTransfer, KIND_TRANSFER_CREATED, NS_PER_S,
    TIMESTAMP_MAX,
};

use CreateTransferStatus as S;

/// `TransferFlags`: nine flags, then `padding: u7`.
pub const TRANSFER_FLAGS_DEFINED: u16 = 0b1_1111_1111;

type Outcome = Result<(S, u64), S>;

fn has(t: &Transfer, flag: TransferFlags) -> bool {
    t.flags.0 & flag.0 != 0
}

fn closed(a: &Account) -> bool {
    a.flags.0 & AccountFlags::CLOSED.0 != 0
}

fn balances(a: &Account) -> Balances {
    Balances {
        debits_pending: a.debits_pending,
        debits_posted: a.debits_posted,
        credits_pending: a.credits_pending,
        credits_posted: a.credits_posted,
    }
}

/// `CreateTransferStatus.transient()` in tigerbeetle.zig.
pub fn transient(status: S) -> bool {
    matches!(
        status,
        S::DebitAccountNotFound
            | S::CreditAccountNotFound
            | S::PendingTransferNotFound
            | S::ExceedsCredits
            | S::ExceedsDebits
            | S::DebitAccountAlreadyClosed
            | S::CreditAccountAlreadyClosed
    )
}

impl Model {
    pub fn create_transfers(&mut self, now: u64, events: &[Transfer]) -> Vec<CreateTransferResult> {
        let statuses = BatchStatuses {
            created: S::Created,
            linked_event_failed: S::LinkedEventFailed,
            linked_event_chain_open: S::LinkedEventChainOpen,
            imported_event_expected: S::ImportedEventExpected,
            imported_event_not_expected: S::ImportedEventNotExpected,
            timestamp_must_be_zero: S::TimestampMustBeZero,
            imported_event_timestamp_out_of_range: S::ImportedEventTimestampOutOfRange,
            imported_event_timestamp_must_not_advance: S::ImportedEventTimestampMustNotAdvance,
        };
        let head = |t: &Transfer| Head {
            linked: has(t, TransferFlags::LINKED),
            imported: has(t, TransferFlags::IMPORTED),
            timestamp: t.timestamp,
        };
        let apply = |model: &mut Model, timestamp_event: u64, t: &Transfer| match model
            .create_transfer(timestamp_event, t)
        {
            Ok(found) => found,
            Err(status) => (status, timestamp_event),
        };
        let failed = |model: &mut Model, t: &Transfer, status: S| {
            if transient(status) {
                model.failed.insert(t.id.0);
            }
        };
        let results = self.execute_create(now, events, &statuses, head, apply, failed);
        let result = |(timestamp, status)| CreateTransferResult {
            timestamp,
            status,
            reserved: 0,
        };
        results.into_iter().map(result).collect()
    }

    fn create_transfer(&mut self, timestamp_event: u64, t: &Transfer) -> Outcome {
        if t.flags.0 & !TRANSFER_FLAGS_DEFINED != 0 {
            return Err(S::ReservedFlag);
        }
        if t.id.0 == 0 {
            return Err(S::IdMustNotBeZero);
        }
        if t.id.0 == u128::MAX {
            return Err(S::IdMustNotBeIntMax);
        }
        if let Some(index) = self.transfer_index(t.id.0) {
            return self.create_transfer_exists(t, &self.transfers[index].record);
        }
        if self.failed.contains(&t.id.0) {
            return Err(S::IdAlreadyFailed);
        }
        if has(t, TransferFlags::POST_PENDING_TRANSFER)
            || has(t, TransferFlags::VOID_PENDING_TRANSFER)
        {
            return self.post_or_void_pending_transfer(timestamp_event, t);
        }
        single_phase_fields(t)?;
        let dr_index = self
            .account_index(t.debit_account_id.0)
            .ok_or(S::DebitAccountNotFound)?;
        let cr_index = self
            .account_index(t.credit_account_id.0)
            .ok_or(S::CreditAccountNotFound)?;
        let (dr, cr) = (self.accounts[dr_index], self.accounts[cr_index]);
        if dr.ledger != cr.ledger {
            return Err(S::AccountsMustHaveTheSameLedger);
        }
        if t.ledger != dr.ledger {
            return Err(S::TransferMustHaveTheSameLedgerAsAccounts);
        }
        let timestamp = if has(t, TransferFlags::IMPORTED) {
            self.imported_regress_check(t.timestamp)?;
            if t.timestamp <= dr.timestamp {
                return Err(S::ImportedEventTimestampMustPostdateDebitAccount);
            }
            if t.timestamp <= cr.timestamp {
                return Err(S::ImportedEventTimestampMustPostdateCreditAccount);
            }
            if t.timeout != 0 {
                return Err(S::ImportedEventTimeoutMustBeZero);
            }
            t.timestamp
        } else {
            timestamp_event
        };
        if closed(&dr) {
            return Err(S::DebitAccountAlreadyClosed);
        }
        if closed(&cr) {
            return Err(S::CreditAccountAlreadyClosed);
        }
        let amount = amount_actual(t, &dr, &cr);
        limits_check(t, amount, &dr, &cr, timestamp)?;
        self.insert_single_phase(t, amount, timestamp, dr_index, cr_index);
        Ok((S::Created, timestamp))
    }

    /// `imported_event_timestamp_must_not_regress` for a transfer: not after the newest
    /// transfer, or the timestamp of an account.
    fn imported_regress_check(&self, timestamp: u64) -> Result<(), S> {
        let regress = self.transfers_key_max().is_some_and(|max| timestamp <= max)
            || self.accounts.iter().any(|a| a.timestamp == timestamp);
        if regress {
            Err(S::ImportedEventTimestampMustNotRegress)
        } else {
            Ok(())
        }
    }

    /// The part of `create_transfer` after "the transfer must succeed".
    fn insert_single_phase(
        &mut self,
        t: &Transfer,
        amount: u128,
        timestamp: u64,
        dr: usize,
        cr: usize,
    ) {
        let record = Transfer {
            amount,
            timestamp,
            ..*t
        };
        let pending = has(t, TransferFlags::PENDING);
        let d = &mut self.accounts[dr];
        if pending {
            d.debits_pending += amount;
        } else {
            d.debits_posted += amount;
        }
        if has(t, TransferFlags::CLOSING_DEBIT) {
            d.flags.0 |= AccountFlags::CLOSED.0;
        }
        let c = &mut self.accounts[cr];
        if pending {
            c.credits_pending += amount;
        } else {
            c.credits_posted += amount;
        }
        if has(t, TransferFlags::CLOSING_CREDIT) {
            c.flags.0 |= AccountFlags::CLOSED.0;
        }
        let phase = if pending { Phase::Pending } else { Phase::None };
        self.store_transfer(record, phase, dr, cr);
    }

    fn store_transfer(&mut self, record: Transfer, phase: Phase, dr: usize, cr: usize) {
        let (dr_after, cr_after) = (balances(&self.accounts[dr]), balances(&self.accounts[cr]));
        self.transfers.push(StoredTransfer {
            record,
            phase,
            dr_after,
            cr_after,
        });
        let timestamp = record.timestamp;
        self.push_change(
            KIND_TRANSFER_CREATED,
            timestamp,
            record.as_bytes(),
            dr_after,
            cr_after,
        );
    }

    fn create_transfer_exists(&self, t: &Transfer, e: &Transfer) -> Outcome {
        if t.flags.0 != e.flags.0 {
            return Err(S::ExistsWithDifferentFlags);
        }
        if t.pending_id != e.pending_id {
            return Err(S::ExistsWithDifferentPendingId);
        }
        if t.timeout != e.timeout {
            return Err(S::ExistsWithDifferentTimeout);
        }
        if has(t, TransferFlags::POST_PENDING_TRANSFER)
            || has(t, TransferFlags::VOID_PENDING_TRANSFER)
        {
            let p = self
                .transfer_index(t.pending_id.0)
                .expect("a post or void has its pending");
            return post_or_void_pending_transfer_exists(t, e, &self.transfers[p].record);
        }
        if t.debit_account_id != e.debit_account_id {
            return Err(S::ExistsWithDifferentDebitAccountId);
        }
        if t.credit_account_id != e.credit_account_id {
            return Err(S::ExistsWithDifferentCreditAccountId);
        }
        if has(t, TransferFlags::BALANCING_DEBIT) || has(t, TransferFlags::BALANCING_CREDIT) {
            if t.amount < e.amount {
                return Err(S::ExistsWithDifferentAmount);
            }
        } else if t.amount != e.amount {
            return Err(S::ExistsWithDifferentAmount);
        }
        user_data_ledger_code_same(t, e)?;
        Ok((S::Exists, e.timestamp))
    }
}

fn user_data_ledger_code_same(t: &Transfer, e: &Transfer) -> Result<(), S> {
    if t.user_data_128 != e.user_data_128 {
        return Err(S::ExistsWithDifferentUserData128);
    }
    if t.user_data_64 != e.user_data_64 {
        return Err(S::ExistsWithDifferentUserData64);
    }
    if t.user_data_32 != e.user_data_32 {
        return Err(S::ExistsWithDifferentUserData32);
    }
    if t.ledger != e.ledger {
        return Err(S::ExistsWithDifferentLedger);
    }
    if t.code != e.code {
        return Err(S::ExistsWithDifferentCode);
    }
    Ok(())
}

/// The stateless checks of a single-phase or pending transfer, in `create_transfer`'s order.
fn single_phase_fields(t: &Transfer) -> Result<(), S> {
    let (dr, cr) = (t.debit_account_id.0, t.credit_account_id.0);
    let checks = [
        (dr == 0, S::DebitAccountIdMustNotBeZero),
        (dr == u128::MAX, S::DebitAccountIdMustNotBeIntMax),
        (cr == 0, S::CreditAccountIdMustNotBeZero),
        (cr == u128::MAX, S::CreditAccountIdMustNotBeIntMax),
        (cr == dr, S::AccountsMustBeDifferent),
        (t.pending_id.0 != 0, S::PendingIdMustBeZero),
    ];
    if let Some((_, status)) = checks.iter().find(|(failed, _)| *failed) {
        return Err(*status);
    }
    if !has(t, TransferFlags::PENDING) {
        if t.timeout != 0 {
            return Err(S::TimeoutReservedForPendingTransfer);
        }
        if has(t, TransferFlags::CLOSING_DEBIT) || has(t, TransferFlags::CLOSING_CREDIT) {
            return Err(S::ClosingTransferMustBePending);
        }
    }
    if t.ledger == 0 {
        return Err(S::LedgerMustNotBeZero);
    }
    if t.code == 0 {
        return Err(S::CodeMustNotBeZero);
    }
    Ok(())
}

/// `amount_actual`: the amount, capped by the balancing flags (`-|` is saturating).
fn amount_actual(t: &Transfer, dr: &Account, cr: &Account) -> u128 {
    let mut amount = t.amount;
    if has(t, TransferFlags::BALANCING_DEBIT) {
        let dr_balance = dr.debits_posted + dr.debits_pending;
        amount = amount.min(dr.credits_posted.saturating_sub(dr_balance));
    }
    if has(t, TransferFlags::BALANCING_CREDIT) {
        let cr_balance = cr.credits_posted + cr.credits_pending;
        amount = amount.min(cr.debits_posted.saturating_sub(cr_balance));
    }
    amount
}

/// The overflow checks, the timeout check and the balance limits, in order.
fn limits_check(
    t: &Transfer,
    amount: u128,
    dr: &Account,
    cr: &Account,
    timestamp: u64,
) -> Result<(), S> {
    let overflows = |a: u128, b: u128| a.checked_add(b).is_none();
    if has(t, TransferFlags::PENDING) {
        if overflows(amount, dr.debits_pending) {
            return Err(S::OverflowsDebitsPending);
        }
        if overflows(amount, cr.credits_pending) {
            return Err(S::OverflowsCreditsPending);
        }
    }
    let checks = [
        (
            overflows(amount, dr.debits_posted),
            S::OverflowsDebitsPosted,
        ),
        (
            overflows(amount, cr.credits_posted),
            S::OverflowsCreditsPosted,
        ),
        (
            overflows(amount, dr.debits_pending + dr.debits_posted),
            S::OverflowsDebits,
        ),
        (
            overflows(amount, cr.credits_pending + cr.credits_posted),
            S::OverflowsCredits,
        ),
        // `sum_overflows(u63, timestamp, timeout * ns_per_s)`.
        (
            timestamp + u64::from(t.timeout) * NS_PER_S > TIMESTAMP_MAX,
            S::OverflowsTimeout,
        ),
    ];
    if let Some((_, status)) = checks.iter().find(|(failed, _)| *failed) {
        return Err(*status);
    }
    // `Account.debits_exceed_credits` / `credits_exceed_debits`.
    let dr_limited = dr.flags.0 & AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS.0 != 0;
    if dr_limited && dr.debits_pending + dr.debits_posted + amount > dr.credits_posted {
        return Err(S::ExceedsCredits);
    }
    let cr_limited = cr.flags.0 & AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS.0 != 0;
    if cr_limited && cr.credits_pending + cr.credits_posted + amount > cr.debits_posted {
        return Err(S::ExceedsDebits);
    }
    Ok(())
}

impl Model {
    fn post_or_void_pending_transfer(&mut self, timestamp_event: u64, t: &Transfer) -> Outcome {
        let post = has(t, TransferFlags::POST_PENDING_TRANSFER);
        let void = has(t, TransferFlags::VOID_PENDING_TRANSFER);
        post_or_void_fields(t, post, void)?;
        let p_index = self
            .transfer_index(t.pending_id.0)
            .ok_or(S::PendingTransferNotFound)?;
        let p = self.transfers[p_index].record;
        if !has(&p, TransferFlags::PENDING) {
            return Err(S::PendingTransferNotPending);
        }
        let dr_index = self
            .account_index(p.debit_account_id.0)
            .expect("pending's debit account");
        let cr_index = self
            .account_index(p.credit_account_id.0)
            .expect("pending's credit account");
        pending_matches(t, &p)?;
        let amount = if void {
            if t.amount == 0 {
                p.amount
            } else {
                t.amount
            }
        } else if t.amount == u128::MAX {
            p.amount
        } else {
            t.amount
        };
        if amount > p.amount {
            return Err(S::ExceedsPendingTransferAmount);
        }
        if void && amount < p.amount {
            return Err(S::PendingTransferHasDifferentAmount);
        }
        match self.transfers[p_index].phase {
            Phase::Pending => {}
            Phase::Posted => return Err(S::PendingTransferAlreadyPosted),
            Phase::Voided => return Err(S::PendingTransferAlreadyVoided),
            Phase::Expired => return Err(S::PendingTransferExpired),
            Phase::None => unreachable!("a pending transfer has a pending phase"),
        }
        if p.timeout != 0 && p.timestamp + u64::from(p.timeout) * NS_PER_S <= timestamp_event {
            return Err(S::PendingTransferExpired);
        }
        let timestamp = if has(t, TransferFlags::IMPORTED) {
            self.imported_regress_check(t.timestamp)?;
            t.timestamp
        } else {
            timestamp_event
        };
        if closed(&self.accounts[dr_index]) && !void {
            return Err(S::DebitAccountAlreadyClosed);
        }
        if closed(&self.accounts[cr_index]) && !void {
            return Err(S::CreditAccountAlreadyClosed);
        }
        self.transfers[p_index].phase = if post { Phase::Posted } else { Phase::Voided };
        self.resolve_pending(&p, amount, post, dr_index, cr_index);
        let record = resolved_record(t, &p, amount, timestamp);
        self.store_transfer(record, Phase::None, dr_index, cr_index);
        Ok((S::Created, timestamp))
    }

    /// Releases a pending amount, posting `amount` of it, or reopening closed accounts on void.
    fn resolve_pending(&mut self, p: &Transfer, amount: u128, post: bool, dr: usize, cr: usize) {
        let d = &mut self.accounts[dr];
        d.debits_pending -= p.amount;
        if post {
            d.debits_posted += amount;
        } else if has(p, TransferFlags::CLOSING_DEBIT) {
            d.flags.0 &= !AccountFlags::CLOSED.0;
        }
        let c = &mut self.accounts[cr];
        c.credits_pending -= p.amount;
        if post {
            c.credits_posted += amount;
        } else if has(p, TransferFlags::CLOSING_CREDIT) {
            c.flags.0 &= !AccountFlags::CLOSED.0;
        }
    }
}

fn post_or_void_fields(t: &Transfer, post: bool, void: bool) -> Result<(), S> {
    let exclusive = [
        post && void,
        has(t, TransferFlags::PENDING),
        has(t, TransferFlags::BALANCING_DEBIT),
        has(t, TransferFlags::BALANCING_CREDIT),
        has(t, TransferFlags::CLOSING_DEBIT),
        has(t, TransferFlags::CLOSING_CREDIT),
    ];
    if exclusive.iter().any(|set| *set) {
        return Err(S::FlagsAreMutuallyExclusive);
    }
    let checks = [
        (t.pending_id.0 == 0, S::PendingIdMustNotBeZero),
        (t.pending_id.0 == u128::MAX, S::PendingIdMustNotBeIntMax),
        (t.pending_id == t.id, S::PendingIdMustBeDifferent),
        (t.timeout != 0, S::TimeoutReservedForPendingTransfer),
    ];
    match checks.iter().find(|(failed, _)| *failed) {
        Some((_, status)) => Err(*status),
        None => Ok(()),
    }
}

fn pending_matches(t: &Transfer, p: &Transfer) -> Result<(), S> {
    if t.debit_account_id.0 > 0 && t.debit_account_id != p.debit_account_id {
        return Err(S::PendingTransferHasDifferentDebitAccountId);
    }
    if t.credit_account_id.0 > 0 && t.credit_account_id != p.credit_account_id {
        return Err(S::PendingTransferHasDifferentCreditAccountId);
    }
    if t.ledger > 0 && t.ledger != p.ledger {
        return Err(S::PendingTransferHasDifferentLedger);
    }
    if t.code > 0 && t.code != p.code {
        return Err(S::PendingTransferHasDifferentCode);
    }
    Ok(())
}

/// The record a post or void stores: accounts, ledger and code of the pending transfer, its own
/// user data where set (else the pending's).
fn resolved_record(t: &Transfer, p: &Transfer, amount: u128, timestamp: u64) -> Transfer {
    Transfer {
        id: t.id,
        debit_account_id: p.debit_account_id,
        credit_account_id: p.credit_account_id,
        user_data_128: if t.user_data_128 > 0 {
            t.user_data_128
        } else {
            p.user_data_128
        },
        user_data_64: if t.user_data_64 > 0 {
            t.user_data_64
        } else {
            p.user_data_64
        },
        user_data_32: if t.user_data_32 > 0 {
            t.user_data_32
        } else {
            p.user_data_32
        },
        ledger: p.ledger,
        code: p.code,
        pending_id: t.pending_id,
        timeout: 0,
        timestamp,
        flags: t.flags,
        amount,
    }
}

fn post_or_void_pending_transfer_exists(t: &Transfer, e: &Transfer, p: &Transfer) -> Outcome {
    if t.debit_account_id.0 != 0 && t.debit_account_id != e.debit_account_id {
        return Err(S::ExistsWithDifferentDebitAccountId);
    }
    if t.credit_account_id.0 != 0 && t.credit_account_id != e.credit_account_id {
        return Err(S::ExistsWithDifferentCreditAccountId);
    }
    let whole = if has(t, TransferFlags::VOID_PENDING_TRANSFER) {
        0
    } else {
        u128::MAX
    };
    if t.amount == whole {
        if e.amount != p.amount {
            return Err(S::ExistsWithDifferentAmount);
        }
    } else if t.amount != e.amount {
        return Err(S::ExistsWithDifferentAmount);
    }
    let own_or_pending = |own: u128, pending: u128| if own == 0 { pending } else { own };
    if own_or_pending(t.user_data_128, p.user_data_128) != e.user_data_128 {
        return Err(S::ExistsWithDifferentUserData128);
    }
    let (t64, p64, e64) = (t.user_data_64, p.user_data_64, e.user_data_64);
    if own_or_pending(t64.into(), p64.into()) != u128::from(e64) {
        return Err(S::ExistsWithDifferentUserData64);
    }
    let (t32, p32, e32) = (t.user_data_32, p.user_data_32, e.user_data_32);
    if own_or_pending(t32.into(), p32.into()) != u128::from(e32) {
        return Err(S::ExistsWithDifferentUserData32);
    }
    if t.ledger != 0 && t.ledger != e.ledger {
        return Err(S::ExistsWithDifferentLedger);
    }
    if t.code != 0 && t.code != e.code {
        return Err(S::ExistsWithDifferentCode);
    }
    Ok((S::Exists, e.timestamp))
}
