//! `create_transfers`: one scenario per `CreateTransferStatus`, each checking the exact status,
//! the result timestamp (the record's for `created`/`exists`, else the event's) and that a
//! failed event changed nothing but, for transient statuses, the failed-id set; then
//! `id_already_failed` after each transient status, the idempotency rules of posts, voids and
//! balancing transfers, precedence cases where two errors apply at once (the earlier in
//! TigerBeetle's `create_transfer` / `post_or_void_pending_transfer` order wins), and a coverage
//! test that fails if any status in `CreateTransferStatus::ALL` has no scenario producing it.

mod common;

use std::collections::HashSet;

use common::*;
use kassa_shard::{Ledger, PendingStatus};
use kassa_wire::{
    Account, AccountFlags, AccountId, CreateTransferStatus as Status, Transfer, TransferFlags,
    TransferId, ID_INT_MAX, TIMESTAMP_MAX,
};

/// Accounts are created at `NOW` (timestamps `NOW + 1 ..= NOW + 7`); setup transfers at `T1`,
/// the event under test at `T2` or later.
const NOW: u64 = 1_000;
const T1: u64 = 10_000;
const T2: u64 = 20_000;
const T3: u64 = 30_000;
const T4: u64 = 40_000;
const T5: u64 = 50_000;
const MAX: u128 = u128::MAX;
const HALF: u128 = 1 << 127;

/// Declares the scenario table and one test per status that runs its scenario.
macro_rules! scenarios {
    ($($scenario:ident => $status:ident,)*) => {
        /// Every scenario with the status it must produce.
        const SCENARIOS: &[(Status, fn() -> Status)] = &[$((Status::$status, $scenario),)*];

        mod each_status {
            $(
                #[test]
                fn $scenario() {
                    assert_eq!(super::$scenario(), super::Status::$status);
                }
            )*
        }
    };
}

scenarios! {
    created => Created,
    linked_event_failed => LinkedEventFailed,
    linked_event_chain_open => LinkedEventChainOpen,
    imported_event_expected => ImportedEventExpected,
    imported_event_not_expected => ImportedEventNotExpected,
    timestamp_must_be_zero => TimestampMustBeZero,
    imported_event_timestamp_out_of_range => ImportedEventTimestampOutOfRange,
    imported_event_timestamp_must_not_advance => ImportedEventTimestampMustNotAdvance,
    reserved_flag => ReservedFlag,
    id_must_not_be_zero => IdMustNotBeZero,
    id_must_not_be_int_max => IdMustNotBeIntMax,
    exists_with_different_flags => ExistsWithDifferentFlags,
    exists_with_different_pending_id => ExistsWithDifferentPendingId,
    exists_with_different_timeout => ExistsWithDifferentTimeout,
    exists_with_different_debit_account_id => ExistsWithDifferentDebitAccountId,
    exists_with_different_credit_account_id => ExistsWithDifferentCreditAccountId,
    exists_with_different_amount => ExistsWithDifferentAmount,
    exists_with_different_user_data_128 => ExistsWithDifferentUserData128,
    exists_with_different_user_data_64 => ExistsWithDifferentUserData64,
    exists_with_different_user_data_32 => ExistsWithDifferentUserData32,
    exists_with_different_ledger => ExistsWithDifferentLedger,
    exists_with_different_code => ExistsWithDifferentCode,
    exists => Exists,
    id_already_failed => IdAlreadyFailed,
    flags_are_mutually_exclusive => FlagsAreMutuallyExclusive,
    debit_account_id_must_not_be_zero => DebitAccountIdMustNotBeZero,
    debit_account_id_must_not_be_int_max => DebitAccountIdMustNotBeIntMax,
    credit_account_id_must_not_be_zero => CreditAccountIdMustNotBeZero,
    credit_account_id_must_not_be_int_max => CreditAccountIdMustNotBeIntMax,
    accounts_must_be_different => AccountsMustBeDifferent,
    pending_id_must_be_zero => PendingIdMustBeZero,
    pending_id_must_not_be_zero => PendingIdMustNotBeZero,
    pending_id_must_not_be_int_max => PendingIdMustNotBeIntMax,
    pending_id_must_be_different => PendingIdMustBeDifferent,
    timeout_reserved_for_pending_transfer => TimeoutReservedForPendingTransfer,
    closing_transfer_must_be_pending => ClosingTransferMustBePending,
    ledger_must_not_be_zero => LedgerMustNotBeZero,
    code_must_not_be_zero => CodeMustNotBeZero,
    debit_account_not_found => DebitAccountNotFound,
    credit_account_not_found => CreditAccountNotFound,
    accounts_must_have_the_same_ledger => AccountsMustHaveTheSameLedger,
    transfer_must_have_the_same_ledger_as_accounts => TransferMustHaveTheSameLedgerAsAccounts,
    pending_transfer_not_found => PendingTransferNotFound,
    pending_transfer_not_pending => PendingTransferNotPending,
    pending_transfer_has_different_debit_account_id => PendingTransferHasDifferentDebitAccountId,
    pending_transfer_has_different_credit_account_id => PendingTransferHasDifferentCreditAccountId,
    pending_transfer_has_different_ledger => PendingTransferHasDifferentLedger,
    pending_transfer_has_different_code => PendingTransferHasDifferentCode,
    exceeds_pending_transfer_amount => ExceedsPendingTransferAmount,
    pending_transfer_has_different_amount => PendingTransferHasDifferentAmount,
    pending_transfer_already_posted => PendingTransferAlreadyPosted,
    pending_transfer_already_voided => PendingTransferAlreadyVoided,
    pending_transfer_expired => PendingTransferExpired,
    imported_event_timestamp_must_not_regress => ImportedEventTimestampMustNotRegress,
    imported_event_timestamp_must_postdate_debit_account =>
        ImportedEventTimestampMustPostdateDebitAccount,
    imported_event_timestamp_must_postdate_credit_account =>
        ImportedEventTimestampMustPostdateCreditAccount,
    imported_event_timeout_must_be_zero => ImportedEventTimeoutMustBeZero,
    debit_account_already_closed => DebitAccountAlreadyClosed,
    credit_account_already_closed => CreditAccountAlreadyClosed,
    overflows_debits_pending => OverflowsDebitsPending,
    overflows_credits_pending => OverflowsCreditsPending,
    overflows_debits_posted => OverflowsDebitsPosted,
    overflows_credits_posted => OverflowsCreditsPosted,
    overflows_debits => OverflowsDebits,
    overflows_credits => OverflowsCredits,
    overflows_timeout => OverflowsTimeout,
    exceeds_credits => ExceedsCredits,
    exceeds_debits => ExceedsDebits,
}

#[test]
fn every_status_is_produced_by_a_scenario() {
    let mut produced = HashSet::new();
    for (expected, scenario) in SCENARIOS {
        let status = scenario();
        assert_eq!(status, *expected, "scenario for {expected}");
        produced.insert(status);
    }
    let missing: Vec<_> = Status::ALL
        .iter()
        .filter(|s| !produced.contains(s))
        .collect();
    assert!(missing.is_empty(), "no scenario produces {missing:?}");
    assert_eq!(produced.len(), Status::ALL.len());
}

// Fixtures.

/// Accounts 1..=4 plain on `LEDGER`; 5 on ledger 2; 6 `debits_must_not_exceed_credits`;
/// 7 `credits_must_not_exceed_debits`. Created at `now`.
fn ledger_with_accounts_at(now: u64) -> Ledger {
    let mut ledger = new_ledger();
    let mut accounts: Vec<Account> = (1..=4).map(|id| account(id, LEDGER, CODE)).collect();
    accounts.push(account(5, 2, CODE));
    accounts.push(account(6, LEDGER, CODE).with(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS));
    accounts.push(account(7, LEDGER, CODE).with(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS));
    setup_accounts(&mut ledger, now, &accounts);
    ledger
}

fn ledger_with_accounts() -> Ledger {
    ledger_with_accounts_at(NOW)
}

/// A single-phase transfer on `LEDGER`.
fn t(id: u128, dr: u128, cr: u128, amount: u128) -> Transfer {
    transfer(id, dr, cr, amount, LEDGER, CODE)
}

/// A transfer with every optional field set, the one the `exists*` scenarios retry.
fn base() -> Transfer {
    Transfer {
        user_data_128: 11,
        user_data_64: 12,
        user_data_32: 13,
        ..t(50, 1, 2, 10)
    }
}

/// One event on a fresh ledger with accounts, at `T2`.
fn single(event: Transfer, status: Status) -> Status {
    let mut ledger = ledger_with_accounts();
    expect_transfer(&mut ledger, T2, event, status).status
}

/// One event at `T2` after `setup` transfers (which must succeed) at `T1`.
fn after(setup: &[Transfer], event: Transfer, status: Status) -> Status {
    let mut ledger = ledger_with_accounts();
    setup_transfers(&mut ledger, T1, setup);
    expect_transfer(&mut ledger, T2, event, status).status
}

/// A pending transfer of `amount` from 1 to 2, with user data, id 51.
fn pending_51(amount: u128) -> Transfer {
    let p = pending(51, 1, 2, amount, 0);
    Transfer {
        user_data_128: 21,
        user_data_64: 22,
        user_data_32: 23,
        ..p
    }
}

/// Runs a batch whose every event fails; checks statuses, timestamps, and that nothing but the
/// failed-id set changed.
fn expect_batch_fails(ledger: &mut Ledger, now: u64, events: &[Transfer], statuses: &[Status]) {
    let before = state_of(ledger);
    let timestamps = event_timestamps(ledger, now, events.len());
    let results = create_transfers(ledger, now, events);
    assert_eq!(transfer_statuses(&results), statuses);
    let got: Vec<u64> = results.iter().map(|r| r.timestamp).collect();
    assert_eq!(got, timestamps, "failed events answer their own timestamps");
    assert_state_unchanged(&before, ledger);
    assert_balanced(ledger);
}

/// The state after `events` alone, in a fresh ledger with accounts, at `now`.
fn reference_state(now: u64, events: &[Transfer]) -> Fingerprint {
    let mut reference = ledger_with_accounts();
    setup_transfers(&mut reference, now, events);
    state_of(&reference)
}

// One scenario per status.

fn created() -> Status {
    let mut ledger = ledger_with_accounts();
    let event = base();
    let result = expect_transfer(&mut ledger, T1, event, Status::Created);
    assert_eq!(result.timestamp, T1 + 1);
    assert_eq!(
        transfer_of(&ledger, 50),
        Transfer {
            timestamp: T1 + 1,
            ..event
        }
    );
    assert_eq!(status_of(&ledger, 50), PendingStatus::None);
    assert_eq!(balances_of(&ledger, 1), (0, 10, 0, 0));
    assert_eq!(balances_of(&ledger, 2), (0, 0, 0, 10));
    assert!(!ledger.transfer_id_failed(TransferId(50)));
    result.status
}

fn linked_event_failed() -> Status {
    let mut ledger = ledger_with_accounts();
    let events = [
        t(50, 1, 2, 10).with(TransferFlags::LINKED),
        transfer(51, 1, 2, 1, 0, CODE),
    ];
    let expected = [Status::LinkedEventFailed, Status::LedgerMustNotBeZero];
    expect_batch_fails(&mut ledger, T1, &events, &expected);
    assert!(
        !ledger.contains_transfer(TransferId(50)).unwrap(),
        "the chain was rolled back"
    );
    Status::LinkedEventFailed
}

fn linked_event_chain_open() -> Status {
    let mut ledger = ledger_with_accounts();
    let events = [t(50, 1, 2, 10), t(51, 1, 2, 10).with(TransferFlags::LINKED)];
    let results = create_transfers(&mut ledger, T1, &events);
    assert_eq!(
        transfer_statuses(&results),
        [Status::Created, Status::LinkedEventChainOpen]
    );
    assert_eq!(results[1].timestamp, T1 + 2);
    assert_eq!(state_of(&ledger), reference_state(T1, &events[..1]));
    results[1].status
}

fn imported_event_expected() -> Status {
    let mut ledger = ledger_with_accounts();
    let first = imported_transfer(t(50, 1, 2, 10), 9_000);
    let results = create_transfers(&mut ledger, T1, &[first, t(51, 1, 2, 10)]);
    assert_eq!(
        transfer_statuses(&results),
        [Status::Created, Status::ImportedEventExpected]
    );
    assert_eq!(
        (results[0].timestamp, results[1].timestamp),
        (9_000, T1 + 2)
    );
    assert_eq!(state_of(&ledger), reference_state(T1, &[first]));
    results[1].status
}

fn imported_event_not_expected() -> Status {
    let mut ledger = ledger_with_accounts();
    let second = imported_transfer(t(51, 1, 2, 10), 9_000);
    let results = create_transfers(&mut ledger, T1, &[t(50, 1, 2, 10), second]);
    assert_eq!(
        transfer_statuses(&results),
        [Status::Created, Status::ImportedEventNotExpected]
    );
    assert_eq!(
        (results[0].timestamp, results[1].timestamp),
        (T1 + 1, T1 + 2)
    );
    assert_eq!(state_of(&ledger), reference_state(T1, &[t(50, 1, 2, 10)]));
    results[1].status
}

fn timestamp_must_be_zero() -> Status {
    single(
        Transfer {
            timestamp: 1,
            ..t(50, 1, 2, 10)
        },
        Status::TimestampMustBeZero,
    )
}

fn imported_event_timestamp_out_of_range() -> Status {
    let status = Status::ImportedEventTimestampOutOfRange;
    single(imported_transfer(t(50, 1, 2, 10), 0), status);
    single(
        imported_transfer(t(50, 1, 2, 10), TIMESTAMP_MAX + 1),
        status,
    )
}

fn imported_event_timestamp_must_not_advance() -> Status {
    let status = Status::ImportedEventTimestampMustNotAdvance;
    // A batch of one at T2 ends at T2 + 1.
    single(imported_transfer(t(50, 1, 2, 10), T2 + 1), status);
    single(imported_transfer(t(50, 1, 2, 10), T2 + 1_000), status);
    single(imported_transfer(t(50, 1, 2, 10), T2), Status::Created);
    status
}

fn reserved_flag() -> Status {
    for bit in 9..16 {
        single(
            t(50, 1, 2, 10).with(TransferFlags(1 << bit)),
            Status::ReservedFlag,
        );
    }
    Status::ReservedFlag
}

fn id_must_not_be_zero() -> Status {
    single(t(0, 1, 2, 10), Status::IdMustNotBeZero)
}

fn id_must_not_be_int_max() -> Status {
    single(t(ID_INT_MAX, 1, 2, 10), Status::IdMustNotBeIntMax)
}

/// Retries [`base`]'s id (created at `T1`) with one change.
fn retry_base(change: impl FnOnce(&mut Transfer), status: Status) -> Status {
    let mut event = base();
    change(&mut event);
    after(&[base()], event, status)
}

fn exists_with_different_flags() -> Status {
    let status = Status::ExistsWithDifferentFlags;
    retry_base(|e| e.flags = TransferFlags::PENDING, status);
    retry_base(|e| e.flags = TransferFlags::BALANCING_DEBIT, status);
    retry_base(|e| e.flags = TransferFlags::POST_PENDING_TRANSFER, status)
}

fn exists_with_different_pending_id() -> Status {
    retry_base(
        |e| e.pending_id = TransferId(7),
        Status::ExistsWithDifferentPendingId,
    )
}

fn exists_with_different_timeout() -> Status {
    retry_base(|e| e.timeout = 5, Status::ExistsWithDifferentTimeout);
    let p = pending(50, 1, 2, 10, 10);
    after(
        &[p],
        Transfer { timeout: 20, ..p },
        Status::ExistsWithDifferentTimeout,
    )
}

fn exists_with_different_debit_account_id() -> Status {
    retry_base(
        |e| e.debit_account_id.0 = 3,
        Status::ExistsWithDifferentDebitAccountId,
    )
}

fn exists_with_different_credit_account_id() -> Status {
    retry_base(
        |e| e.credit_account_id.0 = 3,
        Status::ExistsWithDifferentCreditAccountId,
    )
}

fn exists_with_different_amount() -> Status {
    retry_base(|e| e.amount = 11, Status::ExistsWithDifferentAmount);
    retry_base(|e| e.amount = 9, Status::ExistsWithDifferentAmount)
}

fn exists_with_different_user_data_128() -> Status {
    retry_base(
        |e| e.user_data_128 = 0,
        Status::ExistsWithDifferentUserData128,
    )
}

fn exists_with_different_user_data_64() -> Status {
    retry_base(
        |e| e.user_data_64 = 99,
        Status::ExistsWithDifferentUserData64,
    )
}

fn exists_with_different_user_data_32() -> Status {
    retry_base(
        |e| e.user_data_32 = 99,
        Status::ExistsWithDifferentUserData32,
    )
}

fn exists_with_different_ledger() -> Status {
    retry_base(|e| e.ledger = 2, Status::ExistsWithDifferentLedger)
}

fn exists_with_different_code() -> Status {
    retry_base(|e| e.code = 11, Status::ExistsWithDifferentCode)
}

fn exists() -> Status {
    let mut ledger = ledger_with_accounts();
    setup_transfers(&mut ledger, T1, &[base()]);
    let result = expect_transfer(&mut ledger, T2, base(), Status::Exists);
    assert_eq!(
        result.timestamp,
        T1 + 1,
        "exists answers the original's timestamp"
    );
    assert_eq!(balances_of(&ledger, 1), (0, 10, 0, 0), "applied once");
    result.status
}

fn id_already_failed() -> Status {
    for case in burn_cases() {
        burn_then_retry(&case);
    }
    Status::IdAlreadyFailed
}

fn flags_are_mutually_exclusive() -> Status {
    let status = Status::FlagsAreMutuallyExclusive;
    let exclusive = [
        TransferFlags::PENDING,
        TransferFlags::BALANCING_DEBIT,
        TransferFlags::BALANCING_CREDIT,
        TransferFlags::CLOSING_DEBIT,
        TransferFlags::CLOSING_CREDIT,
    ];
    let both = post(60, 51, MAX).with(TransferFlags::VOID_PENDING_TRANSFER);
    after(&[pending_51(10)], both, status);
    for flag in exclusive {
        after(&[pending_51(10)], post(60, 51, MAX).with(flag), status);
        after(&[pending_51(10)], void(60, 51).with(flag), status);
    }
    status
}

fn debit_account_id_must_not_be_zero() -> Status {
    single(t(60, 0, 2, 1), Status::DebitAccountIdMustNotBeZero)
}

fn debit_account_id_must_not_be_int_max() -> Status {
    single(
        t(60, ID_INT_MAX, 2, 1),
        Status::DebitAccountIdMustNotBeIntMax,
    )
}

fn credit_account_id_must_not_be_zero() -> Status {
    single(t(60, 1, 0, 1), Status::CreditAccountIdMustNotBeZero)
}

fn credit_account_id_must_not_be_int_max() -> Status {
    single(
        t(60, 1, ID_INT_MAX, 1),
        Status::CreditAccountIdMustNotBeIntMax,
    )
}

fn accounts_must_be_different() -> Status {
    single(t(60, 1, 1, 1), Status::AccountsMustBeDifferent)
}

fn pending_id_must_be_zero() -> Status {
    let status = Status::PendingIdMustBeZero;
    single(
        Transfer {
            pending_id: TransferId(51),
            ..t(60, 1, 2, 1)
        },
        status,
    );
    single(
        Transfer {
            pending_id: TransferId(51),
            ..pending(60, 1, 2, 1, 0)
        },
        status,
    )
}

fn pending_id_must_not_be_zero() -> Status {
    single(post(60, 0, MAX), Status::PendingIdMustNotBeZero);
    single(void(60, 0), Status::PendingIdMustNotBeZero)
}

fn pending_id_must_not_be_int_max() -> Status {
    single(post(60, ID_INT_MAX, MAX), Status::PendingIdMustNotBeIntMax)
}

fn pending_id_must_be_different() -> Status {
    single(post(60, 60, MAX), Status::PendingIdMustBeDifferent)
}

fn timeout_reserved_for_pending_transfer() -> Status {
    let status = Status::TimeoutReservedForPendingTransfer;
    single(
        Transfer {
            timeout: 1,
            ..t(60, 1, 2, 1)
        },
        status,
    );
    after(
        &[pending_51(10)],
        Transfer {
            timeout: 1,
            ..post(60, 51, MAX)
        },
        status,
    )
}

fn closing_transfer_must_be_pending() -> Status {
    let status = Status::ClosingTransferMustBePending;
    single(t(60, 1, 2, 1).with(TransferFlags::CLOSING_DEBIT), status);
    single(t(60, 1, 2, 1).with(TransferFlags::CLOSING_CREDIT), status)
}

fn ledger_must_not_be_zero() -> Status {
    single(transfer(60, 1, 2, 1, 0, CODE), Status::LedgerMustNotBeZero)
}

fn code_must_not_be_zero() -> Status {
    single(transfer(60, 1, 2, 1, LEDGER, 0), Status::CodeMustNotBeZero)
}

fn debit_account_not_found() -> Status {
    single(t(60, 99, 2, 1), Status::DebitAccountNotFound)
}

fn credit_account_not_found() -> Status {
    single(t(60, 1, 99, 1), Status::CreditAccountNotFound)
}

fn accounts_must_have_the_same_ledger() -> Status {
    single(t(60, 1, 5, 1), Status::AccountsMustHaveTheSameLedger)
}

fn transfer_must_have_the_same_ledger_as_accounts() -> Status {
    single(
        transfer(60, 1, 2, 1, 2, CODE),
        Status::TransferMustHaveTheSameLedgerAsAccounts,
    )
}

fn pending_transfer_not_found() -> Status {
    single(post(60, 99, MAX), Status::PendingTransferNotFound)
}

fn pending_transfer_not_pending() -> Status {
    after(
        &[t(50, 1, 2, 10)],
        post(60, 50, MAX),
        Status::PendingTransferNotPending,
    )
}

fn pending_transfer_has_different_debit_account_id() -> Status {
    let event = Transfer {
        debit_account_id: AccountId(3),
        ..post(60, 51, MAX)
    };
    after(
        &[pending_51(10)],
        event,
        Status::PendingTransferHasDifferentDebitAccountId,
    )
}

fn pending_transfer_has_different_credit_account_id() -> Status {
    let event = Transfer {
        credit_account_id: AccountId(3),
        ..void(60, 51)
    };
    after(
        &[pending_51(10)],
        event,
        Status::PendingTransferHasDifferentCreditAccountId,
    )
}

fn pending_transfer_has_different_ledger() -> Status {
    let event = Transfer {
        ledger: 2,
        ..post(60, 51, MAX)
    };
    after(
        &[pending_51(10)],
        event,
        Status::PendingTransferHasDifferentLedger,
    )
}

fn pending_transfer_has_different_code() -> Status {
    let event = Transfer {
        code: CODE + 1,
        ..post(60, 51, MAX)
    };
    after(
        &[pending_51(10)],
        event,
        Status::PendingTransferHasDifferentCode,
    )
}

fn exceeds_pending_transfer_amount() -> Status {
    let status = Status::ExceedsPendingTransferAmount;
    after(&[pending_51(10)], post(60, 51, 11), status);
    after(&[pending_51(10)], post(60, 51, MAX - 1), status);
    after(
        &[pending_51(10)],
        Transfer {
            amount: 11,
            ..void(60, 51)
        },
        status,
    )
}

fn pending_transfer_has_different_amount() -> Status {
    let event = Transfer {
        amount: 9,
        ..void(60, 51)
    };
    after(
        &[pending_51(10)],
        event,
        Status::PendingTransferHasDifferentAmount,
    )
}

fn pending_transfer_already_posted() -> Status {
    let setup = [pending_51(10), post(60, 51, 3)];
    after(
        &setup,
        post(61, 51, MAX),
        Status::PendingTransferAlreadyPosted,
    );
    after(&setup, void(61, 51), Status::PendingTransferAlreadyPosted)
}

fn pending_transfer_already_voided() -> Status {
    let setup = [pending_51(10), void(60, 51)];
    after(
        &setup,
        post(61, 51, MAX),
        Status::PendingTransferAlreadyVoided,
    );
    after(&setup, void(61, 51), Status::PendingTransferAlreadyVoided)
}

fn pending_transfer_expired() -> Status {
    expired_by_time_before_a_pulse();
    expired_after_a_pulse();
    Status::PendingTransferExpired
}

/// A ledger with pending transfer 51 (1 -> 2, 10, timeout 1 s) created at `T1`; returns the
/// ledger and the pending transfer's deadline.
fn ledger_with_timeout() -> (Ledger, u64) {
    let mut ledger = ledger_with_accounts();
    setup_transfers(
        &mut ledger,
        T1,
        &[Transfer {
            timeout: 1,
            ..pending_51(10)
        }],
    );
    let deadline = transfer_of(&ledger, 51).timestamp + NS;
    assert_eq!(deadline, T1 + 1 + NS);
    (ledger, deadline)
}

#[test]
fn expired_by_time_before_a_pulse() {
    let (mut ledger, deadline) = ledger_with_timeout();
    // The event's timestamp is the deadline: the pending transfer has expired, although no
    // pulse has released its amount yet.
    let status = Status::PendingTransferExpired;
    expect_transfer(&mut ledger, deadline - 1, post(60, 51, MAX), status);
    expect_transfer(&mut ledger, deadline - 1, void(61, 51), status);
    assert_eq!(status_of(&ledger, 51), PendingStatus::Pending);
    assert_eq!(balances_of(&ledger, 1), (10, 0, 0, 0));
    assert!(ledger.pulse_needed(deadline));
}

#[test]
fn expired_after_a_pulse() {
    let (mut ledger, deadline) = ledger_with_timeout();
    assert_eq!(ledger.expire_pending_transfers(deadline), 1);
    assert_eq!(status_of(&ledger, 51), PendingStatus::Expired);
    assert_eq!(balances_of(&ledger, 1), (0, 0, 0, 0));
    let status = Status::PendingTransferExpired;
    expect_transfer(&mut ledger, deadline + NS, post(60, 51, MAX), status);
    expect_transfer(&mut ledger, deadline + NS, void(61, 51), status);
}

fn imported_event_timestamp_must_not_regress() -> Status {
    let status = Status::ImportedEventTimestampMustNotRegress;
    let mut ledger = ledger_with_accounts();
    setup_transfers(&mut ledger, T1, &[imported_transfer(t(50, 1, 2, 1), 9_000)]);
    expect_transfer(
        &mut ledger,
        T2,
        imported_transfer(t(51, 1, 2, 1), 9_000),
        status,
    );
    expect_transfer(
        &mut ledger,
        T2,
        imported_transfer(t(51, 1, 2, 1), 8_999),
        status,
    );
    let posting = imported_transfer(post(51, 50, MAX), 9_000);
    expect_transfer(&mut ledger, T2, posting, Status::PendingTransferNotPending);
    expect_transfer(
        &mut ledger,
        T2,
        imported_transfer(t(51, 1, 2, 1), 9_001),
        Status::Created,
    );
    // A timestamp an account has is taken too, even after every transfer.
    let mut ledger = ledger_with_accounts();
    let account_3 = account_of(&ledger, 3).timestamp;
    expect_transfer(
        &mut ledger,
        T1,
        imported_transfer(t(51, 1, 2, 1), account_3),
        status,
    );
    // An imported post or void must not regress either.
    let mut ledger = ledger_with_accounts();
    setup_transfers(&mut ledger, T1, &[imported_transfer(pending_51(10), 9_000)]);
    expect_transfer(
        &mut ledger,
        T2,
        imported_transfer(post(60, 51, MAX), 8_000),
        status,
    );
    expect_transfer(
        &mut ledger,
        T2,
        imported_transfer(void(60, 51), 9_000),
        status,
    );
    expect_transfer(
        &mut ledger,
        T2,
        imported_transfer(void(60, 51), 9_001),
        Status::Created,
    );
    status
}

/// A ledger with accounts and account 9 created at `T1` (timestamp `T1 + 1`).
fn ledger_with_late_account() -> Ledger {
    let mut ledger = ledger_with_accounts();
    setup_accounts(&mut ledger, T1, &[account(9, LEDGER, CODE)]);
    ledger
}

fn imported_event_timestamp_must_postdate_debit_account() -> Status {
    let mut ledger = ledger_with_late_account();
    let status = Status::ImportedEventTimestampMustPostdateDebitAccount;
    expect_transfer(
        &mut ledger,
        T2,
        imported_transfer(t(60, 9, 1, 1), T1),
        status,
    )
    .status
}

fn imported_event_timestamp_must_postdate_credit_account() -> Status {
    let mut ledger = ledger_with_late_account();
    let status = Status::ImportedEventTimestampMustPostdateCreditAccount;
    expect_transfer(
        &mut ledger,
        T2,
        imported_transfer(t(60, 1, 9, 1), T1),
        status,
    );
    let later = imported_transfer(t(60, 1, 9, 1), T1 + 2);
    expect_transfer(&mut ledger, T2, later, Status::Created);
    status
}

fn imported_event_timeout_must_be_zero() -> Status {
    let event = imported_transfer(pending(60, 1, 2, 1, 5), 9_000);
    single(event, Status::ImportedEventTimeoutMustBeZero)
}

/// Pending transfer 40 of 0 that closes the debit account `dr` (crediting `cr`).
fn close_debit(dr: u128, cr: u128) -> Transfer {
    pending(40, dr, cr, 0, 0).with(TransferFlags::CLOSING_DEBIT)
}

/// Pending transfer 41 of 0 that closes the credit account `cr` (debiting `dr`).
fn close_credit(dr: u128, cr: u128) -> Transfer {
    pending(41, dr, cr, 0, 0).with(TransferFlags::CLOSING_CREDIT)
}

fn debit_account_already_closed() -> Status {
    let status = Status::DebitAccountAlreadyClosed;
    after(&[close_debit(1, 2)], t(60, 1, 3, 1), status);
    after(&[close_debit(1, 2)], pending(60, 1, 3, 1, 0), status);
    // An account created closed.
    let mut ledger = ledger_with_accounts();
    setup_accounts(
        &mut ledger,
        T1,
        &[account(9, LEDGER, CODE).with(AccountFlags::CLOSED)],
    );
    expect_transfer(&mut ledger, T2, t(60, 9, 1, 1), status).status
}

fn credit_account_already_closed() -> Status {
    let status = Status::CreditAccountAlreadyClosed;
    after(&[close_credit(3, 2)], t(60, 1, 2, 1), status);
    after(&[close_credit(3, 2)], t(60, 4, 2, 0), status)
}

fn overflows_debits_pending() -> Status {
    let setup = [pending(50, 1, 2, MAX, 0)];
    after(
        &setup,
        pending(60, 1, 3, 1, 0),
        Status::OverflowsDebitsPending,
    )
}

fn overflows_credits_pending() -> Status {
    let setup = [pending(50, 1, 2, MAX, 0)];
    after(
        &setup,
        pending(60, 3, 2, 1, 0),
        Status::OverflowsCreditsPending,
    )
}

fn overflows_debits_posted() -> Status {
    let setup = [t(50, 1, 2, MAX)];
    after(&setup, t(60, 1, 3, 1), Status::OverflowsDebitsPosted);
    after(
        &setup,
        pending(60, 1, 3, 1, 0),
        Status::OverflowsDebitsPosted,
    )
}

fn overflows_credits_posted() -> Status {
    let setup = [t(50, 1, 2, MAX)];
    after(&setup, t(60, 3, 2, 1), Status::OverflowsCreditsPosted)
}

fn overflows_debits() -> Status {
    // Neither balance alone overflows; their sum does.
    let setup = [pending(50, 1, 2, HALF, 0)];
    after(&setup, t(60, 1, 3, HALF), Status::OverflowsDebits);
    // A pending transfer too: pending and posted debits each have room, their sum has not.
    let setup = [pending(50, 1, 2, HALF - 1, 0), t(51, 1, 2, HALF - 1)];
    after(&setup, pending(60, 1, 3, 2, 0), Status::OverflowsDebits)
}

fn overflows_credits() -> Status {
    let setup = [pending(50, 1, 2, HALF, 0)];
    after(&setup, t(60, 3, 2, HALF), Status::OverflowsCredits)
}

/// The clock at which a pending transfer with the longest timeout ends exactly at
/// `TIMESTAMP_MAX`.
const LATEST: u64 = TIMESTAMP_MAX - u32::MAX as u64 * NS;

fn overflows_timeout() -> Status {
    let mut ledger = ledger_with_accounts_at(LATEST - 100);
    // Created at LATEST: expires at exactly TIMESTAMP_MAX, which fits.
    let fits = pending(50, 1, 2, 1, u32::MAX);
    expect_transfer(&mut ledger, LATEST - 1, fits, Status::Created);
    assert_eq!(transfer_of(&ledger, 50).timestamp, LATEST);
    let status = Status::OverflowsTimeout;
    expect_transfer(
        &mut ledger,
        LATEST - 1,
        pending(60, 1, 2, 1, u32::MAX),
        status,
    );
    let shorter = pending(61, 1, 2, 1, u32::MAX - 1);
    expect_transfer(&mut ledger, LATEST - 1, shorter, Status::Created);
    status
}

fn exceeds_credits() -> Status {
    single(t(60, 6, 1, 1), Status::ExceedsCredits);
    // Pending debits count against the limit.
    let setup = [t(50, 1, 6, 10), pending(51, 6, 2, 6, 0)];
    after(&setup, t(60, 6, 1, 5), Status::ExceedsCredits);
    after(&setup, t(60, 6, 1, 4), Status::Created);
    Status::ExceedsCredits
}

fn exceeds_debits() -> Status {
    single(t(60, 1, 7, 1), Status::ExceedsDebits);
    let setup = [t(50, 7, 1, 10), pending(51, 2, 7, 6, 0)];
    after(&setup, t(60, 1, 7, 5), Status::ExceedsDebits);
    after(&setup, t(60, 1, 7, 4), Status::Created);
    Status::ExceedsDebits
}

// `id_already_failed` after each transient status.

/// A transfer that fails with a transient `status` after `setup`, and what makes it possible.
struct BurnCase {
    status: Status,
    setup: Vec<Transfer>,
    event: Transfer,
    fix_accounts: Vec<Account>,
    fix_transfers: Vec<Transfer>,
}

fn burn_case_of(status: Status, setup: Vec<Transfer>, event: Transfer) -> BurnCase {
    BurnCase {
        status,
        setup,
        event,
        fix_accounts: vec![],
        fix_transfers: vec![],
    }
}

fn burn_cases() -> Vec<BurnCase> {
    let new_account = vec![account(99, LEDGER, CODE)];
    vec![
        BurnCase {
            fix_accounts: new_account.clone(),
            ..burn_case_of(Status::DebitAccountNotFound, vec![], t(100, 99, 2, 10))
        },
        BurnCase {
            fix_accounts: new_account,
            ..burn_case_of(Status::CreditAccountNotFound, vec![], t(100, 1, 99, 10))
        },
        BurnCase {
            fix_transfers: vec![pending_51(10)],
            ..burn_case_of(Status::PendingTransferNotFound, vec![], post(100, 51, MAX))
        },
        BurnCase {
            fix_transfers: vec![t(51, 1, 6, 10)],
            ..burn_case_of(Status::ExceedsCredits, vec![], t(100, 6, 1, 10))
        },
        BurnCase {
            fix_transfers: vec![t(51, 7, 1, 10)],
            ..burn_case_of(Status::ExceedsDebits, vec![], t(100, 1, 7, 10))
        },
        BurnCase {
            fix_transfers: vec![void(51, 40)],
            ..burn_case_of(
                Status::DebitAccountAlreadyClosed,
                vec![close_debit(1, 2)],
                t(100, 1, 3, 10),
            )
        },
        BurnCase {
            fix_transfers: vec![void(51, 41)],
            ..burn_case_of(
                Status::CreditAccountAlreadyClosed,
                vec![close_credit(3, 2)],
                t(100, 1, 2, 10),
            )
        },
    ]
}

/// Fails `case.event` with its transient status, removes the cause, and checks that the same
/// id answers `id_already_failed` while a new id with the same fields succeeds.
fn burn_then_retry(case: &BurnCase) {
    assert!(case.status.is_transient());
    let mut ledger = ledger_with_accounts();
    setup_transfers(&mut ledger, T1, &case.setup);
    expect_transfer(&mut ledger, T2, case.event, case.status);
    assert!(
        ledger.transfer_id_failed(case.event.id),
        "{} burns the id",
        case.status
    );
    if !case.fix_accounts.is_empty() {
        setup_accounts(&mut ledger, T3, &case.fix_accounts);
    }
    setup_transfers(&mut ledger, T3, &case.fix_transfers);
    expect_transfer(&mut ledger, T4, case.event, Status::IdAlreadyFailed);
    let fresh = Transfer {
        id: TransferId(101),
        ..case.event
    };
    expect_transfer(&mut ledger, T5, fresh, Status::Created);
}

fn burn_case(status: Status) -> BurnCase {
    let case = burn_cases().into_iter().find(|c| c.status == status);
    case.expect("a burn case for every transient status")
}

#[test]
fn every_transient_status_has_a_burn_case() {
    let transient: HashSet<Status> = Status::ALL
        .iter()
        .copied()
        .filter(|s| s.is_transient())
        .collect();
    let cases: HashSet<Status> = burn_cases().iter().map(|c| c.status).collect();
    assert_eq!(cases, transient);
    assert_eq!(burn_cases().len(), transient.len());
}

#[test]
fn id_already_failed_after_debit_account_not_found() {
    burn_then_retry(&burn_case(Status::DebitAccountNotFound));
}

#[test]
fn id_already_failed_after_credit_account_not_found() {
    burn_then_retry(&burn_case(Status::CreditAccountNotFound));
}

#[test]
fn id_already_failed_after_pending_transfer_not_found() {
    burn_then_retry(&burn_case(Status::PendingTransferNotFound));
}

#[test]
fn id_already_failed_after_exceeds_credits() {
    burn_then_retry(&burn_case(Status::ExceedsCredits));
}

#[test]
fn id_already_failed_after_exceeds_debits() {
    burn_then_retry(&burn_case(Status::ExceedsDebits));
}

#[test]
fn id_already_failed_after_debit_account_already_closed() {
    burn_then_retry(&burn_case(Status::DebitAccountAlreadyClosed));
}

#[test]
fn id_already_failed_after_credit_account_already_closed() {
    burn_then_retry(&burn_case(Status::CreditAccountAlreadyClosed));
}

#[test]
fn id_already_failed_after_a_post_of_a_closing_transfer() {
    // Posting is not allowed on a closed account; the post's id is burnt.
    let mut ledger = ledger_with_accounts();
    let closing = pending(40, 1, 2, 5, 0).with(TransferFlags::CLOSING_DEBIT);
    setup_transfers(&mut ledger, T1, &[closing]);
    expect_transfer(
        &mut ledger,
        T2,
        post(60, 40, MAX),
        Status::DebitAccountAlreadyClosed,
    );
    let closing = pending(41, 3, 4, 5, 0).with(TransferFlags::CLOSING_CREDIT);
    setup_transfers(&mut ledger, T2, &[closing]);
    expect_transfer(
        &mut ledger,
        T3,
        post(61, 41, MAX),
        Status::CreditAccountAlreadyClosed,
    );
    expect_transfer(&mut ledger, T3, void(60, 40), Status::IdAlreadyFailed);
    expect_transfer(&mut ledger, T3, void(62, 40), Status::Created);
    assert!(!is_closed(&ledger, 1));
}

#[test]
fn id_already_failed_in_the_same_batch() {
    let mut ledger = ledger_with_accounts();
    let events = [t(100, 6, 1, 10), t(51, 1, 6, 10), t(100, 6, 1, 10)];
    let results = create_transfers(&mut ledger, T1, &events);
    let expected = [
        Status::ExceedsCredits,
        Status::Created,
        Status::IdAlreadyFailed,
    ];
    assert_eq!(transfer_statuses(&results), expected);
    assert_balanced(&ledger);
}

#[test]
fn a_transient_failure_in_a_chain_burns_only_its_own_id() {
    let mut ledger = ledger_with_accounts();
    let linked = TransferFlags::LINKED;
    let events = [
        t(60, 1, 2, 1).with(linked),
        t(61, 99, 2, 1).with(linked),
        t(62, 1, 2, 1),
    ];
    let expected = [
        Status::LinkedEventFailed,
        Status::DebitAccountNotFound,
        Status::LinkedEventFailed,
    ];
    expect_batch_fails(&mut ledger, T1, &events, &expected);
    assert!(ledger.transfer_id_failed(TransferId(61)));
    assert!(!ledger.transfer_id_failed(TransferId(60)));
    assert!(!ledger.transfer_id_failed(TransferId(62)));
    expect_transfer(&mut ledger, T2, t(60, 1, 2, 1), Status::Created);
    expect_transfer(&mut ledger, T2, t(62, 1, 2, 1), Status::Created);
    expect_transfer(&mut ledger, T2, t(61, 1, 2, 1), Status::IdAlreadyFailed);
}

#[test]
fn a_non_transient_failure_does_not_burn_the_id() {
    let mut ledger = ledger_with_accounts();
    for (event, status) in [
        (transfer(60, 1, 2, 1, 0, CODE), Status::LedgerMustNotBeZero),
        (t(60, 1, 5, 1), Status::AccountsMustHaveTheSameLedger),
        (t(60, 1, 1, 1), Status::AccountsMustBeDifferent),
    ] {
        expect_transfer(&mut ledger, T1, event, status);
        assert!(
            !ledger.transfer_id_failed(TransferId(60)),
            "{status} must not burn the id"
        );
    }
    expect_transfer(&mut ledger, T2, t(60, 1, 2, 1), Status::Created);
}

// Idempotency of posts, voids and balancing transfers.

/// Pending 51 (ud 21/22/23) posted in full by 60; pending 52 posted in part (4 of 10) by 61;
/// pending 53 voided by 62; pending 54 posted by 63 with its own user data.
fn ledger_with_resolved_pendings() -> Ledger {
    let mut ledger = ledger_with_accounts();
    let p = |id| Transfer {
        id: TransferId(id),
        ..pending_51(10)
    };
    let setup = [
        p(51),
        p(52),
        p(53),
        p(54),
        post(60, 51, MAX),
        post(61, 52, 4),
        void(62, 53),
        Transfer {
            user_data_128: 77,
            user_data_64: 78,
            user_data_32: 79,
            ..post(63, 54, MAX)
        },
    ];
    setup_transfers(&mut ledger, T1, &setup);
    ledger
}

#[test]
fn post_and_void_exists_rules() {
    let mut ledger = ledger_with_resolved_pendings();
    let same_fields = Transfer {
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        ledger: LEDGER,
        code: CODE,
        user_data_128: 21,
        ..post(60, 51, MAX)
    };
    let cases = [
        ("full post again", post(60, 51, MAX), Status::Exists),
        (
            "full post named by its amount",
            post(60, 51, 10),
            Status::Exists,
        ),
        (
            "full post with another amount",
            post(60, 51, 9),
            Status::ExistsWithDifferentAmount,
        ),
        ("partial post again", post(61, 52, 4), Status::Exists),
        (
            "partial post as full",
            post(61, 52, MAX),
            Status::ExistsWithDifferentAmount,
        ),
        ("void again", void(62, 53), Status::Exists),
        (
            "void named by its amount",
            Transfer {
                amount: 10,
                ..void(62, 53)
            },
            Status::Exists,
        ),
        (
            "void with another amount",
            Transfer {
                amount: 9,
                ..void(62, 53)
            },
            Status::ExistsWithDifferentAmount,
        ),
        (
            "fields repeated from the pending",
            same_fields,
            Status::Exists,
        ),
        (
            "other debit",
            Transfer {
                debit_account_id: AccountId(3),
                ..post(60, 51, MAX)
            },
            Status::ExistsWithDifferentDebitAccountId,
        ),
        (
            "other credit",
            Transfer {
                credit_account_id: AccountId(3),
                ..post(60, 51, MAX)
            },
            Status::ExistsWithDifferentCreditAccountId,
        ),
        (
            "other user_data_128",
            Transfer {
                user_data_128: 9,
                ..post(60, 51, MAX)
            },
            Status::ExistsWithDifferentUserData128,
        ),
        (
            "other user_data_64",
            Transfer {
                user_data_64: 9,
                ..post(60, 51, MAX)
            },
            Status::ExistsWithDifferentUserData64,
        ),
        (
            "other user_data_32",
            Transfer {
                user_data_32: 9,
                ..post(60, 51, MAX)
            },
            Status::ExistsWithDifferentUserData32,
        ),
        (
            "own user data again",
            Transfer {
                user_data_128: 77,
                user_data_64: 78,
                user_data_32: 79,
                ..post(63, 54, MAX)
            },
            Status::Exists,
        ),
        (
            "own user data left out",
            post(63, 54, MAX),
            Status::ExistsWithDifferentUserData128,
        ),
        (
            "other ledger",
            Transfer {
                ledger: 2,
                ..post(60, 51, MAX)
            },
            Status::ExistsWithDifferentLedger,
        ),
        (
            "other code",
            Transfer {
                code: 9,
                ..post(60, 51, MAX)
            },
            Status::ExistsWithDifferentCode,
        ),
        (
            "void of a post",
            void(60, 51),
            Status::ExistsWithDifferentFlags,
        ),
        (
            "other pending",
            post(60, 52, MAX),
            Status::ExistsWithDifferentPendingId,
        ),
        (
            "with a timeout",
            Transfer {
                timeout: 1,
                ..post(60, 51, MAX)
            },
            Status::ExistsWithDifferentTimeout,
        ),
    ];
    for (name, event, status) in cases {
        let result = create_transfers(&mut ledger, T2, &[event])[0];
        assert_eq!(result.status, status, "{name}");
        if status == Status::Exists {
            assert_eq!(
                result.timestamp,
                transfer_of(&ledger, event.id.0).timestamp,
                "{name}"
            );
        }
    }
    // Inherited user data: the post of 51 carries the pending transfer's.
    let stored = transfer_of(&ledger, 60);
    assert_eq!(
        (
            stored.user_data_128,
            stored.user_data_64,
            stored.user_data_32
        ),
        (21, 22, 23)
    );
    assert_balanced(&ledger);
}

#[test]
fn balancing_exists_accepts_any_upper_limit_at_or_above_the_amount_moved() {
    let mut ledger = ledger_with_accounts();
    setup_transfers(&mut ledger, T1, &[t(40, 1, 6, 30)]);
    let balancing = t(50, 6, 2, 100).with(TransferFlags::BALANCING_DEBIT);
    expect_transfer(&mut ledger, T2, balancing, Status::Created);
    assert_eq!(transfer_of(&ledger, 50).amount, 30);
    expect_transfer(&mut ledger, T3, balancing, Status::Exists);
    expect_transfer(
        &mut ledger,
        T3,
        Transfer {
            amount: 30,
            ..balancing
        },
        Status::Exists,
    );
    expect_transfer(
        &mut ledger,
        T3,
        Transfer {
            amount: MAX,
            ..balancing
        },
        Status::Exists,
    );
    let less = Transfer {
        amount: 29,
        ..balancing
    };
    expect_transfer(&mut ledger, T3, less, Status::ExistsWithDifferentAmount);
}

// Precedence: when two errors apply, the one TigerBeetle checks first is the answer.

/// Accounts, then at `T1`: [`base`] (50), pending 51, pending 52 posted by 53, pending 54
/// voided by 55; at `T2` transfer 70 fails for a missing account (its id is burnt).
fn precedence_ledger() -> Ledger {
    let mut ledger = ledger_with_accounts();
    let p = |id| Transfer {
        id: TransferId(id),
        ..pending_51(10)
    };
    let setup = [base(), p(51), p(52), post(53, 52, MAX), p(54), void(55, 54)];
    setup_transfers(&mut ledger, T1, &setup);
    expect_transfer(
        &mut ledger,
        T2,
        t(70, 99, 2, 1),
        Status::DebitAccountNotFound,
    );
    ledger
}

#[test]
fn precedence_of_field_checks() {
    let b = base();
    let with_pending_id = |t: Transfer| Transfer {
        pending_id: TransferId(9),
        ..t
    };
    let timeout = |t: Transfer| Transfer { timeout: 1, ..t };
    let void_flag = TransferFlags::VOID_PENDING_TRANSFER;
    let cases: Vec<(&str, Transfer, Status)> = vec![
        (
            "reserved flag before id",
            t(0, 1, 2, 1).with(TransferFlags(1 << 12)),
            Status::ReservedFlag,
        ),
        (
            "id zero before accounts",
            t(0, 0, 0, 1),
            Status::IdMustNotBeZero,
        ),
        (
            "id int max before flags",
            post(ID_INT_MAX, 51, 0).with(void_flag),
            Status::IdMustNotBeIntMax,
        ),
        (
            "exists: flags first",
            Transfer {
                debit_account_id: AccountId(0),
                ..b.with(TransferFlags::PENDING)
            },
            Status::ExistsWithDifferentFlags,
        ),
        (
            "exists: pending id before timeout",
            Transfer {
                timeout: 9,
                ..with_pending_id(b)
            },
            Status::ExistsWithDifferentPendingId,
        ),
        (
            "exists: timeout before debit",
            Transfer {
                debit_account_id: AccountId(3),
                ..timeout(b)
            },
            Status::ExistsWithDifferentTimeout,
        ),
        (
            "exists: debit zero differs",
            Transfer {
                debit_account_id: AccountId(0),
                ..b
            },
            Status::ExistsWithDifferentDebitAccountId,
        ),
        (
            "exists: debit before credit",
            Transfer {
                debit_account_id: AccountId(3),
                credit_account_id: AccountId(3),
                ..b
            },
            Status::ExistsWithDifferentDebitAccountId,
        ),
        (
            "exists: credit before amount",
            Transfer {
                credit_account_id: AccountId(3),
                amount: 1,
                ..b
            },
            Status::ExistsWithDifferentCreditAccountId,
        ),
        (
            "exists: amount before user data",
            Transfer {
                amount: 1,
                user_data_128: 1,
                ..b
            },
            Status::ExistsWithDifferentAmount,
        ),
        (
            "exists: user_data_128 before 64",
            Transfer {
                user_data_128: 1,
                user_data_64: 1,
                ..b
            },
            Status::ExistsWithDifferentUserData128,
        ),
        (
            "exists: user_data_64 before 32",
            Transfer {
                user_data_64: 1,
                user_data_32: 1,
                ..b
            },
            Status::ExistsWithDifferentUserData64,
        ),
        (
            "exists: user_data_32 before ledger",
            Transfer {
                user_data_32: 1,
                ledger: 2,
                ..b
            },
            Status::ExistsWithDifferentUserData32,
        ),
        (
            "exists: ledger zero differs",
            Transfer {
                ledger: 0,
                code: 0,
                ..b
            },
            Status::ExistsWithDifferentLedger,
        ),
        (
            "exists: code zero differs",
            Transfer { code: 0, ..b },
            Status::ExistsWithDifferentCode,
        ),
        (
            "burnt id before flags",
            post(70, 51, 0).with(void_flag),
            Status::IdAlreadyFailed,
        ),
        (
            "exclusive flags before pending id",
            post(60, 0, 0).with(void_flag),
            Status::FlagsAreMutuallyExclusive,
        ),
        (
            "debit zero before credit zero",
            t(60, 0, 0, 1),
            Status::DebitAccountIdMustNotBeZero,
        ),
        (
            "debit int max before credit",
            t(60, ID_INT_MAX, 0, 1),
            Status::DebitAccountIdMustNotBeIntMax,
        ),
        (
            "credit zero before pending id",
            with_pending_id(t(60, 1, 0, 1)),
            Status::CreditAccountIdMustNotBeZero,
        ),
        (
            "credit int max before pending id",
            with_pending_id(t(60, 1, ID_INT_MAX, 1)),
            Status::CreditAccountIdMustNotBeIntMax,
        ),
        (
            "same accounts before pending id",
            with_pending_id(t(60, 1, 1, 1)),
            Status::AccountsMustBeDifferent,
        ),
        (
            "pending id before timeout",
            with_pending_id(timeout(t(60, 1, 2, 1))),
            Status::PendingIdMustBeZero,
        ),
        (
            "timeout before closing",
            timeout(t(60, 1, 2, 1).with(TransferFlags::CLOSING_DEBIT)),
            Status::TimeoutReservedForPendingTransfer,
        ),
        (
            "closing before ledger",
            transfer(60, 1, 2, 1, 0, CODE).with(TransferFlags::CLOSING_CREDIT),
            Status::ClosingTransferMustBePending,
        ),
        (
            "ledger before code",
            transfer(60, 1, 2, 1, 0, 0),
            Status::LedgerMustNotBeZero,
        ),
        (
            "code before accounts",
            transfer(60, 99, 98, 1, LEDGER, 0),
            Status::CodeMustNotBeZero,
        ),
        (
            "debit missing before credit missing",
            t(60, 99, 98, 1),
            Status::DebitAccountNotFound,
        ),
        (
            "credit missing before ledgers",
            transfer(60, 5, 98, 1, 3, CODE),
            Status::CreditAccountNotFound,
        ),
        (
            "accounts' ledgers before transfer's",
            transfer(60, 1, 5, 1, 3, CODE),
            Status::AccountsMustHaveTheSameLedger,
        ),
        (
            "transfer's ledger before limits",
            transfer(60, 6, 1, 1, 2, CODE),
            Status::TransferMustHaveTheSameLedgerAsAccounts,
        ),
        (
            "post: pending id zero before timeout",
            timeout(post(60, 0, 0)),
            Status::PendingIdMustNotBeZero,
        ),
        (
            "post: pending id int max before timeout",
            timeout(post(60, ID_INT_MAX, 0)),
            Status::PendingIdMustNotBeIntMax,
        ),
        (
            "post: own id before timeout",
            timeout(post(60, 60, 0)),
            Status::PendingIdMustBeDifferent,
        ),
        (
            "post: timeout before lookup",
            timeout(post(60, 99, 0)),
            Status::TimeoutReservedForPendingTransfer,
        ),
        (
            "post: not found before fields",
            Transfer {
                debit_account_id: AccountId(3),
                ..post(60, 99, 0)
            },
            Status::PendingTransferNotFound,
        ),
        (
            "post: not pending before fields",
            Transfer {
                debit_account_id: AccountId(3),
                ..post(60, 50, 0)
            },
            Status::PendingTransferNotPending,
        ),
        (
            "post: debit before credit",
            Transfer {
                debit_account_id: AccountId(3),
                credit_account_id: AccountId(3),
                ..post(60, 51, 0)
            },
            Status::PendingTransferHasDifferentDebitAccountId,
        ),
        (
            "post: credit before ledger",
            Transfer {
                credit_account_id: AccountId(3),
                ledger: 2,
                ..post(60, 51, 0)
            },
            Status::PendingTransferHasDifferentCreditAccountId,
        ),
        (
            "post: ledger before code",
            Transfer {
                ledger: 2,
                code: 9,
                ..post(60, 51, 0)
            },
            Status::PendingTransferHasDifferentLedger,
        ),
        (
            "post: code before amount",
            Transfer {
                code: 9,
                ..post(60, 51, 11)
            },
            Status::PendingTransferHasDifferentCode,
        ),
        (
            "post: fields before status",
            Transfer {
                code: 9,
                ..post(60, 52, 0)
            },
            Status::PendingTransferHasDifferentCode,
        ),
        (
            "post: amount before posted",
            post(60, 52, 11),
            Status::ExceedsPendingTransferAmount,
        ),
        (
            "void: amount before voided",
            Transfer {
                amount: 9,
                ..void(60, 54)
            },
            Status::PendingTransferHasDifferentAmount,
        ),
        (
            "void: larger amount exceeds",
            Transfer {
                amount: 11,
                ..void(60, 54)
            },
            Status::ExceedsPendingTransferAmount,
        ),
        (
            "void of a posted",
            void(60, 52),
            Status::PendingTransferAlreadyPosted,
        ),
        (
            "post of a voided",
            post(60, 54, 0),
            Status::PendingTransferAlreadyVoided,
        ),
    ];
    for (name, event, status) in cases {
        let mut ledger = precedence_ledger();
        let before = state_of(&ledger);
        let result = create_transfers(&mut ledger, T3, &[event])[0];
        assert_eq!(result.status, status, "{name}");
        assert_state_unchanged(&before, &ledger);
    }
}

#[test]
fn post_may_repeat_the_pending_fields() {
    let mut ledger = precedence_ledger();
    let event = Transfer {
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        ledger: LEDGER,
        code: CODE,
        ..post(60, 51, 5)
    };
    expect_transfer(&mut ledger, T3, event, Status::Created);
    assert_eq!(status_of(&ledger, 51), PendingStatus::Posted);
}

#[test]
fn precedence_of_batch_checks() {
    let linked = TransferFlags::LINKED;
    let mut ledger = ledger_with_accounts();
    // An open chain's last event answers `linked_event_chain_open` whatever else is wrong.
    expect_batch_fails(
        &mut ledger,
        T1,
        &[t(0, 0, 0, 1).with(linked)],
        &[Status::LinkedEventChainOpen],
    );
    // In a broken chain, the events after the failure answer `linked_event_failed`, even one
    // whose id is burnt or that would fail on its own.
    let events = [
        t(60, 99, 2, 1).with(linked),
        t(0, 0, 0, 1).with(linked),
        t(60, 1, 2, 1),
    ];
    let expected = [
        Status::DebitAccountNotFound,
        Status::LinkedEventFailed,
        Status::LinkedEventFailed,
    ];
    expect_batch_fails(&mut ledger, T1, &events, &expected);
    // Import mode before the event's timestamp; range before advance; both before fields.
    let events = [
        imported_transfer(t(61, 1, 2, 1), 0),
        Transfer {
            timestamp: 5,
            ..t(0, 1, 2, 1)
        },
    ];
    let expected = [
        Status::ImportedEventTimestampOutOfRange,
        Status::ImportedEventExpected,
    ];
    expect_batch_fails(&mut ledger, T1, &events, &expected);
    let events = [t(0, 1, 2, 1), imported_transfer(t(61, 1, 2, 1), 0)];
    let expected = [Status::IdMustNotBeZero, Status::ImportedEventNotExpected];
    expect_batch_fails(&mut ledger, T1, &events, &expected);
    let events = [imported_transfer(
        t(0, 1, 2, 1).with(TransferFlags(1 << 10)),
        TIMESTAMP_MAX + 1,
    )];
    expect_batch_fails(
        &mut ledger,
        T1,
        &events,
        &[Status::ImportedEventTimestampOutOfRange],
    );
    let events = [imported_transfer(t(0, 1, 2, 1), u64::MAX / 4)];
    expect_batch_fails(
        &mut ledger,
        T1,
        &events,
        &[Status::ImportedEventTimestampMustNotAdvance],
    );
    let events = [Transfer {
        timestamp: 1,
        ..t(0, 1, 2, 1).with(TransferFlags(1 << 10))
    }];
    expect_batch_fails(&mut ledger, T1, &events, &[Status::TimestampMustBeZero]);
}

#[test]
fn precedence_of_imported_checks() {
    let mut ledger = ledger_with_accounts();
    setup_accounts(
        &mut ledger,
        T1,
        &[account(9, LEDGER, CODE), account(10, LEDGER, CODE)],
    );
    let account_3 = account_of(&ledger, 3).timestamp;
    let cases = [
        (
            "ledgers before regress",
            imported_transfer(t(60, 1, 5, 1), account_3),
            Status::AccountsMustHaveTheSameLedger,
        ),
        (
            "regress before postdate",
            imported_transfer(t(60, 4, 2, 1), account_3),
            Status::ImportedEventTimestampMustNotRegress,
        ),
        (
            "debit before credit",
            imported_transfer(t(60, 9, 10, 1), T1 - 5),
            Status::ImportedEventTimestampMustPostdateDebitAccount,
        ),
        (
            "credit before timeout",
            imported_transfer(pending(60, 1, 10, 1, 5), T1 - 5),
            Status::ImportedEventTimestampMustPostdateCreditAccount,
        ),
        (
            "timeout before limits",
            imported_transfer(pending(60, 6, 1, 1, 5), T1 + 5),
            Status::ImportedEventTimeoutMustBeZero,
        ),
    ];
    for (name, event, status) in cases {
        let before = state_of(&ledger);
        let result = create_transfers(&mut ledger, T2, &[event])[0];
        assert_eq!(result.status, status, "{name}");
        assert_state_unchanged(&before, &ledger);
    }
    // Imported checks come before the closed-account checks.
    setup_transfers(&mut ledger, T2, &[close_debit(1, 2)]);
    let event = imported_transfer(pending(61, 1, 2, 1, 5), T3 - 5);
    expect_transfer(
        &mut ledger,
        T3,
        event,
        Status::ImportedEventTimeoutMustBeZero,
    );
    let event = imported_transfer(t(61, 1, 2, 1), T3 - 5);
    expect_transfer(&mut ledger, T3, event, Status::DebitAccountAlreadyClosed);
}

#[test]
fn precedence_of_balance_checks() {
    let closed_both = [close_debit(1, 3), close_credit(4, 2)];
    after(
        &closed_both,
        t(60, 1, 2, 1),
        Status::DebitAccountAlreadyClosed,
    );
    let closed_credit_overflowing_debit = [t(50, 1, 4, MAX), close_credit(3, 2)];
    after(
        &closed_credit_overflowing_debit,
        t(60, 1, 2, 1),
        Status::CreditAccountAlreadyClosed,
    );
    after(
        &[close_debit(6, 3)],
        t(60, 6, 1, 1),
        Status::DebitAccountAlreadyClosed,
    );
    let full_pending = [pending(50, 1, 2, MAX, 0)];
    after(
        &full_pending,
        pending(60, 1, 2, 1, 0),
        Status::OverflowsDebitsPending,
    );
    let credits_pending_and_debits_posted = [t(50, 3, 4, MAX), pending(51, 1, 2, MAX, 0)];
    let event = pending(60, 3, 2, 1, 0);
    after(
        &credits_pending_and_debits_posted,
        event,
        Status::OverflowsCreditsPending,
    );
    after(
        &[t(50, 1, 2, MAX)],
        t(60, 1, 2, 1),
        Status::OverflowsDebitsPosted,
    );
    let credits_posted_and_debits = [t(50, 3, 2, MAX), pending(51, 1, 4, MAX, 0)];
    after(
        &credits_posted_and_debits,
        t(60, 1, 2, 1),
        Status::OverflowsCreditsPosted,
    );
    after(
        &[pending(50, 1, 2, HALF, 0)],
        t(60, 1, 2, HALF),
        Status::OverflowsDebits,
    );
    // Overflows before the limits; the debit limit before the credit limit.
    let limited = [t(50, 1, 6, MAX), t(51, 6, 2, MAX)];
    after(&limited, t(60, 6, 3, 1), Status::OverflowsDebitsPosted);
    after(&[], t(60, 6, 7, 1), Status::ExceedsCredits);
    // Amount overflows before the timeout; the timeout before the limits.
    let mut ledger = ledger_with_accounts_at(LATEST);
    setup_transfers(&mut ledger, LATEST, &[pending(50, 1, 2, MAX, 0)]);
    let event = pending(60, 1, 3, 1, u32::MAX);
    expect_transfer(&mut ledger, LATEST, event, Status::OverflowsDebitsPending);
    let event = pending(61, 6, 3, 1, u32::MAX);
    expect_transfer(&mut ledger, LATEST, event, Status::OverflowsTimeout);
}

#[test]
fn precedence_of_two_phase_state_checks() {
    // Already posted before expired: the post removed the deadline.
    let (mut ledger, deadline) = ledger_with_timeout();
    setup_transfers(&mut ledger, T2, &[post(60, 51, MAX)]);
    let status = Status::PendingTransferAlreadyPosted;
    expect_transfer(&mut ledger, deadline + NS, void(61, 51), status);
    assert!(!ledger.pulse_needed(deadline + NS));
    // Expired before a closed account: a closing pending transfer past its deadline.
    let mut ledger = ledger_with_accounts();
    let closing = Transfer {
        timeout: 1,
        ..close_debit(1, 2)
    };
    setup_transfers(&mut ledger, T1, &[closing]);
    let deadline = transfer_of(&ledger, 40).timestamp + NS;
    let status = Status::PendingTransferExpired;
    expect_transfer(&mut ledger, deadline - 1, post(60, 40, MAX), status);
    assert!(is_closed(&ledger, 1), "no pulse yet: still closed");
}
