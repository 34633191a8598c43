//! `create_accounts`: one scenario per `CreateAccountStatus`, each checking the exact status, the
//! result timestamp (the record's for `created`/`exists`, else the event's) and that a failed
//! event changed nothing; then precedence cases where two errors apply at once (the earlier in
//! TigerBeetle's `create_account` / `execute_create` order wins), and a coverage test that fails
//! if any status in `CreateAccountStatus::ALL` has no scenario producing it.

mod common;

use std::collections::HashSet;

use common::*;
use kassa_shard::Ledger;
use kassa_wire::{
    Account, AccountFlags, AccountId, CreateAccountStatus as Status, Transfer, TransferFlags,
    ID_INT_MAX, TIMESTAMP_MAX,
};

const NOW: u64 = 1_000;
const LATER: u64 = 2_000;

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
    reserved_field => ReservedField,
    reserved_flag => ReservedFlag,
    id_must_not_be_zero => IdMustNotBeZero,
    id_must_not_be_int_max => IdMustNotBeIntMax,
    exists_with_different_flags => ExistsWithDifferentFlags,
    exists_with_different_user_data_128 => ExistsWithDifferentUserData128,
    exists_with_different_user_data_64 => ExistsWithDifferentUserData64,
    exists_with_different_user_data_32 => ExistsWithDifferentUserData32,
    exists_with_different_ledger => ExistsWithDifferentLedger,
    exists_with_different_code => ExistsWithDifferentCode,
    exists => Exists,
    flags_are_mutually_exclusive => FlagsAreMutuallyExclusive,
    debits_pending_must_be_zero => DebitsPendingMustBeZero,
    debits_posted_must_be_zero => DebitsPostedMustBeZero,
    credits_pending_must_be_zero => CreditsPendingMustBeZero,
    credits_posted_must_be_zero => CreditsPostedMustBeZero,
    ledger_must_not_be_zero => LedgerMustNotBeZero,
    code_must_not_be_zero => CodeMustNotBeZero,
    imported_event_timestamp_must_not_regress => ImportedEventTimestampMustNotRegress,
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

/// The account the `exists*` scenarios create first, with every optional field set.
fn base() -> Account {
    let a = Account {
        user_data_128: 11,
        user_data_64: 12,
        user_data_32: 13,
        ..account(1, 7, 8)
    };
    a.with(AccountFlags::HISTORY)
}

/// A ledger holding [`base`], created at `NOW` (timestamp `NOW + 1`).
fn ledger_with_base() -> Ledger {
    let mut ledger = new_ledger();
    setup_accounts(&mut ledger, NOW, &[base()]);
    ledger
}

/// Retries [`base`]'s id with one change; returns the status after the usual checks.
fn retry_base(change: impl FnOnce(&mut Account), status: Status) -> Status {
    let mut ledger = ledger_with_base();
    let mut event = base();
    change(&mut event);
    expect_account(&mut ledger, LATER, event, status).status
}

/// Runs a batch whose every event fails and checks statuses, timestamps and that nothing
/// changed.
fn expect_batch_fails(ledger: &mut Ledger, now: u64, events: &[Account], statuses: &[Status]) {
    let before = state_of(ledger);
    let timestamps = event_timestamps(ledger, now, events.len());
    let results = create_accounts(ledger, now, events);
    assert_eq!(account_statuses(&results), statuses);
    let got: Vec<u64> = results.iter().map(|r| r.timestamp).collect();
    assert_eq!(got, timestamps, "failed events answer their own timestamps");
    assert_state_unchanged(&before, ledger);
    ledger.validate();
}

fn created() -> Status {
    let mut ledger = new_ledger();
    let event = base();
    let result = expect_account(&mut ledger, NOW, event, Status::Created);
    assert_eq!(result.timestamp, NOW + 1);
    assert_eq!(
        account_of(&ledger, 1),
        Account {
            timestamp: NOW + 1,
            ..event
        }
    );
    let events = all_change_events(&ledger);
    assert_eq!(events.len(), 1, "one change event per created account");
    assert_eq!(events[0].account(), Some(account_of(&ledger, 1)));
    result.status
}

fn linked_event_failed() -> Status {
    let mut ledger = new_ledger();
    let events = [
        account(1, 1, 1).with(AccountFlags::LINKED),
        account(2, 0, 1),
    ];
    let expected = [Status::LinkedEventFailed, Status::LedgerMustNotBeZero];
    expect_batch_fails(&mut ledger, NOW, &events, &expected);
    assert!(
        ledger.account(AccountId(1)).is_none(),
        "the chain was rolled back"
    );
    Status::LinkedEventFailed
}

fn linked_event_chain_open() -> Status {
    let mut ledger = new_ledger();
    let events = [
        account(1, 1, 1),
        account(2, 1, 1).with(AccountFlags::LINKED),
    ];
    let results = create_accounts(&mut ledger, NOW, &events);
    assert_eq!(
        account_statuses(&results),
        [Status::Created, Status::LinkedEventChainOpen]
    );
    assert_eq!(results[1].timestamp, NOW + 2);
    // The failed event changed nothing: the state is that of the first event alone.
    let mut reference = new_ledger();
    setup_accounts(&mut reference, NOW, &events[..1]);
    assert_eq!(state_of(&ledger), state_of(&reference));
    results[1].status
}

fn imported_event_expected() -> Status {
    let mut ledger = new_ledger();
    let first = imported_account(account(1, 1, 1), 500);
    let results = create_accounts(&mut ledger, NOW, &[first, account(2, 1, 1)]);
    assert_eq!(
        account_statuses(&results),
        [Status::Created, Status::ImportedEventExpected]
    );
    assert_eq!((results[0].timestamp, results[1].timestamp), (500, NOW + 2));
    let mut reference = new_ledger();
    setup_accounts(&mut reference, NOW, &[first]);
    assert_eq!(state_of(&ledger), state_of(&reference));
    results[1].status
}

fn imported_event_not_expected() -> Status {
    let mut ledger = new_ledger();
    let second = imported_account(account(2, 1, 1), 500);
    let results = create_accounts(&mut ledger, NOW, &[account(1, 1, 1), second]);
    assert_eq!(
        account_statuses(&results),
        [Status::Created, Status::ImportedEventNotExpected]
    );
    assert_eq!(
        (results[0].timestamp, results[1].timestamp),
        (NOW + 1, NOW + 2)
    );
    let mut reference = new_ledger();
    setup_accounts(&mut reference, NOW, &[account(1, 1, 1)]);
    assert_eq!(state_of(&ledger), state_of(&reference));
    results[1].status
}

fn timestamp_must_be_zero() -> Status {
    let mut ledger = new_ledger();
    let event = Account {
        timestamp: 5,
        ..account(1, 1, 1)
    };
    expect_account(&mut ledger, NOW, event, Status::TimestampMustBeZero).status
}

fn imported_event_timestamp_out_of_range() -> Status {
    let mut ledger = new_ledger();
    let status = Status::ImportedEventTimestampOutOfRange;
    expect_account(
        &mut ledger,
        NOW,
        imported_account(account(1, 1, 1), 0),
        status,
    );
    let too_late = imported_account(account(1, 1, 1), TIMESTAMP_MAX + 1);
    expect_account(&mut ledger, NOW, too_late, status).status
}

fn imported_event_timestamp_must_not_advance() -> Status {
    let mut ledger = new_ledger();
    let status = Status::ImportedEventTimestampMustNotAdvance;
    // A batch of one at NOW ends at NOW + 1: the imported timestamp must be below it.
    expect_account(
        &mut ledger,
        NOW,
        imported_account(account(1, 1, 1), NOW + 1),
        status,
    );
    expect_account(
        &mut ledger,
        NOW,
        imported_account(account(1, 1, 1), NOW + 10),
        status,
    );
    // The clock is at NOW + 2 now: the next batch of one ends at NOW + 3.
    let event = imported_account(account(1, 1, 1), NOW + 2);
    let result = expect_account(&mut ledger, 0, event, Status::Created);
    assert_eq!(
        result.timestamp,
        NOW + 2,
        "an imported account keeps its own timestamp"
    );
    status
}

fn reserved_field() -> Status {
    let mut ledger = new_ledger();
    let event = Account {
        reserved: 1,
        ..account(1, 1, 1)
    };
    expect_account(&mut ledger, NOW, event, Status::ReservedField).status
}

fn reserved_flag() -> Status {
    let mut ledger = new_ledger();
    for bit in 6..16 {
        let event = account(1, 1, 1).with(AccountFlags(1 << bit));
        expect_account(&mut ledger, NOW, event, Status::ReservedFlag);
    }
    Status::ReservedFlag
}

fn id_must_not_be_zero() -> Status {
    let mut ledger = new_ledger();
    expect_account(&mut ledger, NOW, account(0, 1, 1), Status::IdMustNotBeZero).status
}

fn id_must_not_be_int_max() -> Status {
    let mut ledger = new_ledger();
    let event = account(ID_INT_MAX, 1, 1);
    expect_account(&mut ledger, NOW, event, Status::IdMustNotBeIntMax).status
}

fn exists_with_different_flags() -> Status {
    let status = Status::ExistsWithDifferentFlags;
    retry_base(|a| a.flags = AccountFlags::empty(), status);
    retry_base(
        |a| a.flags |= AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        status,
    );
    retry_base(|a| a.flags |= AccountFlags::CLOSED, status)
}

fn exists_with_different_user_data_128() -> Status {
    retry_base(
        |a| a.user_data_128 = 99,
        Status::ExistsWithDifferentUserData128,
    )
}

fn exists_with_different_user_data_64() -> Status {
    retry_base(
        |a| a.user_data_64 = 0,
        Status::ExistsWithDifferentUserData64,
    )
}

fn exists_with_different_user_data_32() -> Status {
    retry_base(
        |a| a.user_data_32 = 99,
        Status::ExistsWithDifferentUserData32,
    )
}

fn exists_with_different_ledger() -> Status {
    retry_base(|a| a.ledger = 99, Status::ExistsWithDifferentLedger)
}

fn exists_with_different_code() -> Status {
    retry_base(|a| a.code = 99, Status::ExistsWithDifferentCode)
}

fn exists() -> Status {
    let mut ledger = ledger_with_base();
    let result = expect_account(&mut ledger, LATER, base(), Status::Exists);
    assert_eq!(
        result.timestamp,
        NOW + 1,
        "exists answers the original's timestamp"
    );
    assert_eq!(ledger.accounts().len(), 1);
    result.status
}

fn flags_are_mutually_exclusive() -> Status {
    let mut ledger = new_ledger();
    let flags =
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
    let event = account(1, 1, 1).with(flags);
    expect_account(&mut ledger, NOW, event, Status::FlagsAreMutuallyExclusive).status
}

fn with_balance(change: impl FnOnce(&mut Account), status: Status) -> Status {
    let mut ledger = new_ledger();
    let mut event = account(1, 1, 1);
    change(&mut event);
    expect_account(&mut ledger, NOW, event, status).status
}

fn debits_pending_must_be_zero() -> Status {
    with_balance(|a| a.debits_pending = 1, Status::DebitsPendingMustBeZero)
}

fn debits_posted_must_be_zero() -> Status {
    with_balance(
        |a| a.debits_posted = u128::MAX,
        Status::DebitsPostedMustBeZero,
    )
}

fn credits_pending_must_be_zero() -> Status {
    with_balance(|a| a.credits_pending = 1, Status::CreditsPendingMustBeZero)
}

fn credits_posted_must_be_zero() -> Status {
    with_balance(|a| a.credits_posted = 1, Status::CreditsPostedMustBeZero)
}

fn ledger_must_not_be_zero() -> Status {
    let mut ledger = new_ledger();
    expect_account(
        &mut ledger,
        NOW,
        account(1, 0, 1),
        Status::LedgerMustNotBeZero,
    )
    .status
}

fn code_must_not_be_zero() -> Status {
    let mut ledger = new_ledger();
    expect_account(
        &mut ledger,
        NOW,
        account(1, 1, 0),
        Status::CodeMustNotBeZero,
    )
    .status
}

fn imported_event_timestamp_must_not_regress() -> Status {
    let mut ledger = new_ledger();
    setup_accounts(&mut ledger, NOW, &[imported_account(account(1, 1, 1), 500)]);
    let status = Status::ImportedEventTimestampMustNotRegress;
    expect_account(
        &mut ledger,
        LATER,
        imported_account(account(2, 1, 1), 500),
        status,
    );
    expect_account(
        &mut ledger,
        LATER,
        imported_account(account(2, 1, 1), 499),
        status,
    );
    expect_account(
        &mut ledger,
        LATER,
        imported_account(account(2, 1, 1), 501),
        Status::Created,
    );
    status
}

// Beyond one scenario per status.

#[test]
fn imported_timestamp_must_not_equal_a_transfer_timestamp() {
    let mut ledger = new_ledger();
    setup_accounts(&mut ledger, NOW, &[account(1, 1, 1), account(2, 1, 1)]);
    setup_transfers(&mut ledger, LATER, &[transfer(1, 1, 2, 5, 1, 1)]);
    let transfer_timestamp = transfer_of(&ledger, 1).timestamp;
    assert_eq!(transfer_timestamp, LATER + 1);
    let status = Status::ImportedEventTimestampMustNotRegress;
    let clash = imported_account(account(3, 1, 1), transfer_timestamp);
    expect_account(&mut ledger, 3_000, clash, status);
    let after = imported_account(account(3, 1, 1), transfer_timestamp + 1);
    expect_account(&mut ledger, 3_000, after, Status::Created);
}

#[test]
fn imported_retry_answers_exists_before_regress() {
    let mut ledger = new_ledger();
    let a = imported_account(account(1, 1, 1), 500);
    setup_accounts(&mut ledger, NOW, &[a]);
    let result = expect_account(&mut ledger, LATER, a, Status::Exists);
    assert_eq!(result.timestamp, 500);
}

#[test]
fn exists_inside_a_chain_breaks_it() {
    let mut ledger = new_ledger();
    let linked = AccountFlags::LINKED;
    // The second event finds the first, created inside the chain: `exists` is not `created`,
    // so the chain fails and the first is rolled back.
    let events = [
        account(1, 1, 1).with(linked),
        account(1, 1, 1).with(linked),
        account(2, 1, 1),
    ];
    let results = create_accounts(&mut ledger, NOW, &events);
    let expected = [
        Status::LinkedEventFailed,
        Status::Exists,
        Status::LinkedEventFailed,
    ];
    assert_eq!(account_statuses(&results), expected);
    assert_eq!(
        results[1].timestamp,
        NOW + 1,
        "exists answers the (rolled back) record's"
    );
    assert!(ledger.accounts().is_empty());
    assert_eq!(
        ledger.change_sequence_next(),
        1,
        "a rolled-back chain emits no change"
    );
    ledger.validate();
}

#[test]
fn a_broken_chain_leaves_the_events_around_it() {
    let mut ledger = new_ledger();
    let linked = AccountFlags::LINKED;
    let events = [
        account(1, 1, 1),
        account(2, 1, 1).with(linked),
        account(3, 1, 0).with(linked),
        account(4, 1, 1).with(linked),
        account(5, 1, 1),
        account(6, 1, 1),
    ];
    let results = create_accounts(&mut ledger, NOW, &events);
    let expected = [
        Status::Created,
        Status::LinkedEventFailed,
        Status::CodeMustNotBeZero,
        Status::LinkedEventFailed,
        Status::LinkedEventFailed,
        Status::Created,
    ];
    assert_eq!(account_statuses(&results), expected);
    let timestamps: Vec<u64> = results.iter().map(|r| r.timestamp).collect();
    assert_eq!(timestamps, (NOW + 1..=NOW + 6).collect::<Vec<_>>());
    let ids: Vec<u128> = ledger.accounts().iter().map(|a| a.id.0).collect();
    assert_eq!(ids, [1, 6]);
    assert_eq!(account_of(&ledger, 6).timestamp, NOW + 6);
    ledger.validate();
}

#[test]
fn a_successful_chain_creates_every_event() {
    let mut ledger = new_ledger();
    let linked = AccountFlags::LINKED;
    let events = [
        account(1, 1, 1).with(linked),
        account(2, 1, 1).with(linked),
        account(3, 1, 1),
    ];
    let results = create_accounts(&mut ledger, NOW, &events);
    assert_eq!(account_statuses(&results), [Status::Created; 3]);
    assert_eq!(ledger.accounts().len(), 3);
    assert_eq!(ledger.change_sequence_next(), 4);
}

#[test]
fn a_failed_account_id_can_be_used_again() {
    let mut ledger = new_ledger();
    expect_account(
        &mut ledger,
        NOW,
        account(1, 0, 1),
        Status::LedgerMustNotBeZero,
    );
    expect_account(&mut ledger, NOW, account(1, 1, 1), Status::Created);
}

#[test]
fn timestamps_follow_the_batch_rule_even_when_the_clock_goes_back() {
    let mut ledger = new_ledger();
    setup_accounts(&mut ledger, NOW, &[account(1, 1, 1), account(2, 1, 1)]);
    assert_eq!(ledger.timestamp(), NOW + 2);
    // A `now` behind the ledger's clock: the batch continues from the ledger's clock.
    let events = [account(3, 1, 1), account(0, 1, 1), account(4, 1, 1)];
    let results = create_accounts(&mut ledger, 10, &events);
    let timestamps: Vec<u64> = results.iter().map(|r| r.timestamp).collect();
    assert_eq!(timestamps, [NOW + 3, NOW + 4, NOW + 5]);
    assert_eq!(ledger.timestamp(), NOW + 5);
    // A `now` ahead: the batch ends at now + n.
    let results = create_accounts(&mut ledger, 50_000, &[account(5, 1, 1), account(6, 1, 1)]);
    let timestamps: Vec<u64> = results.iter().map(|r| r.timestamp).collect();
    assert_eq!(timestamps, [50_001, 50_002]);
}

#[test]
fn an_empty_batch_changes_nothing() {
    let mut ledger = ledger_with_base();
    let before = (state_of(&ledger), ledger.timestamp());
    let results = create_accounts(&mut ledger, LATER, &[]);
    assert!(results.is_empty());
    assert_eq!((state_of(&ledger), ledger.timestamp()), before);
}

#[test]
fn an_account_closed_since_creation_answers_exists_with_different_flags() {
    let mut ledger = new_ledger();
    setup_accounts(&mut ledger, NOW, &[account(1, 1, 1), account(2, 1, 1)]);
    let closing = pending(40, 1, 2, 0, 0).with(TransferFlags::CLOSING_DEBIT);
    let closing = Transfer {
        ledger: 1,
        code: 1,
        ..closing
    };
    setup_transfers(&mut ledger, LATER, &[closing]);
    // The stored flags now include `closed`: the original request no longer matches them.
    expect_account(
        &mut ledger,
        3_000,
        account(1, 1, 1),
        Status::ExistsWithDifferentFlags,
    );
    setup_transfers(
        &mut ledger,
        4_000,
        &[Transfer {
            ledger: 1,
            code: 1,
            ..void(41, 40)
        }],
    );
    expect_account(&mut ledger, 5_000, account(1, 1, 1), Status::Exists);
}

#[test]
fn a_closed_account_can_be_created() {
    let mut ledger = new_ledger();
    let event = account(1, 1, 1).with(AccountFlags::CLOSED);
    expect_account(&mut ledger, NOW, event, Status::Created);
    assert!(is_closed(&ledger, 1));
}

// Precedence: when two errors apply, the one TigerBeetle checks first is the answer.

#[test]
fn precedence_of_field_checks() {
    let exclusive =
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
    let new = || account(2, 1, 1);
    let cases: Vec<(&str, Account, Status)> = vec![
        (
            "timestamp before reserved",
            Account {
                timestamp: 1,
                reserved: 1,
                ..new()
            },
            Status::TimestampMustBeZero,
        ),
        (
            "reserved field before flag",
            Account {
                reserved: 1,
                ..new().with(AccountFlags(1 << 9))
            },
            Status::ReservedField,
        ),
        (
            "reserved flag before id",
            account(0, 1, 1).with(AccountFlags(1 << 9)),
            Status::ReservedFlag,
        ),
        (
            "id zero before ledger",
            account(0, 0, 1),
            Status::IdMustNotBeZero,
        ),
        (
            "id int max before flags",
            account(ID_INT_MAX, 1, 1).with(exclusive),
            Status::IdMustNotBeIntMax,
        ),
        (
            "exists before exclusive flags",
            base().with(exclusive),
            Status::ExistsWithDifferentFlags,
        ),
        (
            "exists ignores balances",
            Account {
                debits_posted: 5,
                credits_pending: 1,
                ..base()
            },
            Status::Exists,
        ),
        (
            "exists before ledger zero",
            Account {
                ledger: 0,
                ..base()
            },
            Status::ExistsWithDifferentLedger,
        ),
        (
            "user_data_128 before code",
            Account {
                user_data_128: 1,
                code: 1,
                ..base()
            },
            Status::ExistsWithDifferentUserData128,
        ),
        (
            "user_data_64 before 32",
            Account {
                user_data_64: 1,
                user_data_32: 1,
                ..base()
            },
            Status::ExistsWithDifferentUserData64,
        ),
        (
            "user_data_32 before ledger",
            Account {
                user_data_32: 1,
                ledger: 1,
                ..base()
            },
            Status::ExistsWithDifferentUserData32,
        ),
        (
            "ledger before code",
            Account {
                ledger: 1,
                code: 1,
                ..base()
            },
            Status::ExistsWithDifferentLedger,
        ),
        (
            "flags before user data",
            Account {
                user_data_128: 1,
                ..base().with(AccountFlags::LINKED)
            },
            Status::ExistsWithDifferentFlags,
        ),
        (
            "exclusive before balances",
            Account {
                debits_pending: 1,
                ..new().with(exclusive)
            },
            Status::FlagsAreMutuallyExclusive,
        ),
        (
            "debits pending first",
            Account {
                debits_pending: 1,
                debits_posted: 1,
                ..new()
            },
            Status::DebitsPendingMustBeZero,
        ),
        (
            "debits posted second",
            Account {
                debits_posted: 1,
                credits_pending: 1,
                ..new()
            },
            Status::DebitsPostedMustBeZero,
        ),
        (
            "credits pending third",
            Account {
                credits_pending: 1,
                credits_posted: 1,
                ..new()
            },
            Status::CreditsPendingMustBeZero,
        ),
        (
            "credits posted before ledger",
            Account {
                credits_posted: 1,
                ledger: 0,
                ..new()
            },
            Status::CreditsPostedMustBeZero,
        ),
        (
            "ledger before code",
            account(2, 0, 0),
            Status::LedgerMustNotBeZero,
        ),
    ];
    for (name, event, status) in cases {
        let mut ledger = ledger_with_base();
        // A linked event alone in its batch would answer `linked_event_chain_open`: close the
        // chain with a valid event after it.
        let events = [event, account(3, 1, 1)];
        let before = state_of(&ledger);
        let results = create_accounts(&mut ledger, LATER, &events);
        let got = results[0].status;
        assert_eq!(got, status, "{name}");
        if event.flags.contains(AccountFlags::LINKED) {
            assert_eq!(results[1].status, Status::LinkedEventFailed, "{name}");
            assert_state_unchanged(&before, &ledger);
        }
    }
}

#[test]
fn precedence_of_batch_checks() {
    let linked = AccountFlags::LINKED;
    let mut ledger = new_ledger();
    // An open chain's last event answers `linked_event_chain_open` whatever else is wrong.
    let events = [account(0, 0, 0).with(linked)];
    expect_batch_fails(&mut ledger, NOW, &events, &[Status::LinkedEventChainOpen]);
    // In a broken chain, the events after the failure answer `linked_event_failed`.
    let events = [
        account(1, 0, 1).with(linked),
        account(0, 0, 0).with(linked),
        account(0, 1, 1),
    ];
    let expected = [
        Status::LedgerMustNotBeZero,
        Status::LinkedEventFailed,
        Status::LinkedEventFailed,
    ];
    expect_batch_fails(&mut ledger, NOW, &events, &expected);
    // A broken chain whose last event leaves it open: that event says so.
    let events = [account(1, 0, 1).with(linked), account(2, 1, 1).with(linked)];
    let expected = [Status::LedgerMustNotBeZero, Status::LinkedEventChainOpen];
    expect_batch_fails(&mut ledger, NOW, &events, &expected);
    // Import mode is checked before the event's timestamp.
    let events = [
        imported_account(account(1, 0, 1), 10),
        Account {
            timestamp: 5,
            ..account(2, 1, 1)
        },
    ];
    let expected = [Status::LedgerMustNotBeZero, Status::ImportedEventExpected];
    expect_batch_fails(&mut ledger, NOW, &events, &expected);
    let events = [account(1, 0, 1), imported_account(account(0, 1, 1), 0)];
    let expected = [
        Status::LedgerMustNotBeZero,
        Status::ImportedEventNotExpected,
    ];
    expect_batch_fails(&mut ledger, NOW, &events, &expected);
    // Out of range before must-not-advance; both before the event's own fields.
    let events = [imported_account(account(0, 1, 1), TIMESTAMP_MAX + 1)];
    expect_batch_fails(
        &mut ledger,
        NOW,
        &events,
        &[Status::ImportedEventTimestampOutOfRange],
    );
    let events = [Account {
        reserved: 1,
        ..imported_account(account(1, 1, 1), u64::MAX / 4)
    }];
    expect_batch_fails(
        &mut ledger,
        NOW,
        &events,
        &[Status::ImportedEventTimestampMustNotAdvance],
    );
    // Must-not-regress is checked after every field.
    setup_accounts(&mut ledger, NOW, &[imported_account(account(1, 1, 1), 500)]);
    let events = [imported_account(account(2, 1, 0), 400)];
    expect_batch_fails(&mut ledger, NOW, &events, &[Status::CodeMustNotBeZero]);
    // An identical retry answers `exists` (with the original's timestamp) before regress.
    let before = state_of(&ledger);
    let results = create_accounts(&mut ledger, NOW, &[imported_account(account(1, 1, 1), 400)]);
    assert_eq!(
        (results[0].status, results[0].timestamp),
        (Status::Exists, 500)
    );
    assert_state_unchanged(&before, &ledger);
}
