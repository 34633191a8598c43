//! Two-phase transfers end to end: pending then post (in full, in part, of nothing) or void,
//! expiry through `expire_pending_transfers` as the injected clock passes a deadline (and
//! `pulse_needed` agreeing), closing transfers and their reopening, balancing amounts, balance
//! limits, linked chains that roll a post or void back and chains that succeed, and the user
//! data a post or void inherits. Every test checks per-ledger debits == credits and `validate`.

mod common;

use common::*;
use kassa_shard::limits::{BATCH_EVENTS_MAX, EXPIRE_BATCH_MAX};
use kassa_shard::{Ledger, PendingStatus};
use kassa_wire::{
    AccountFlags, AccountId, ChangeKind, CreateTransferStatus as Status, Transfer, TransferFlags,
    TransferId,
};

const NOW: u64 = 1_000;
const T1: u64 = 10_000;
const T2: u64 = 20_000;
const T3: u64 = 30_000;
const MAX: u128 = u128::MAX;

/// Accounts 1..=4 on `LEDGER`; 6 `debits_must_not_exceed_credits`; 7
/// `credits_must_not_exceed_debits`; 8 and 9 on ledger 2. Created at `NOW`.
fn ledger_with_accounts() -> Ledger {
    let mut ledger = new_ledger();
    let mut accounts: Vec<_> = (1..=4).map(|id| account(id, LEDGER, CODE)).collect();
    accounts.push(account(6, LEDGER, CODE).with(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS));
    accounts.push(account(7, LEDGER, CODE).with(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS));
    accounts.push(account(8, 2, CODE));
    accounts.push(account(9, 2, CODE));
    setup_accounts(&mut ledger, NOW, &accounts);
    ledger
}

fn t(id: u128, dr: u128, cr: u128, amount: u128) -> Transfer {
    transfer(id, dr, cr, amount, LEDGER, CODE)
}

/// Creates one transfer that must succeed; `expect_transfer` then checks the books.
fn ok(ledger: &mut Ledger, now: u64, event: Transfer) {
    expect_transfer(ledger, now, event, Status::Created);
}

/// Creates one transfer that must fail with `status` and change nothing.
fn fails(ledger: &mut Ledger, now: u64, event: Transfer, status: Status) {
    expect_transfer(ledger, now, event, status);
}

#[test]
fn post_in_full_with_amount_max() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 0));
    assert_eq!(balances_of(&ledger, 1), (100, 0, 0, 0));
    assert_eq!(balances_of(&ledger, 2), (0, 0, 100, 0));
    assert_eq!(status_of(&ledger, 51), PendingStatus::Pending);
    ok(&mut ledger, T2, post(60, 51, MAX));
    let stored = transfer_of(&ledger, 60);
    let expected = Transfer {
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        amount: 100,
        ledger: LEDGER,
        code: CODE,
        timestamp: T2 + 1,
        ..post(60, 51, 0)
    };
    assert_eq!(
        stored, expected,
        "the post takes accounts, ledger and code from the pending"
    );
    assert_eq!(status_of(&ledger, 51), PendingStatus::Posted);
    assert_eq!(status_of(&ledger, 60), PendingStatus::None);
    assert_eq!(balances_of(&ledger, 1), (0, 100, 0, 0));
    assert_eq!(balances_of(&ledger, 2), (0, 0, 0, 100));
}

#[test]
fn a_pending_of_u128_max_posts_in_full() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, MAX, 0));
    ok(&mut ledger, T2, post(60, 51, MAX));
    assert_eq!(transfer_of(&ledger, 60).amount, MAX);
    assert_eq!(balances_of(&ledger, 1), (0, MAX, 0, 0));
    assert_eq!(balances_of(&ledger, 2), (0, 0, 0, MAX));
}

#[test]
fn post_in_part_releases_the_rest() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 0));
    ok(&mut ledger, T2, post(60, 51, 60));
    assert_eq!(transfer_of(&ledger, 60).amount, 60);
    assert_eq!(balances_of(&ledger, 1), (0, 60, 0, 0));
    assert_eq!(balances_of(&ledger, 2), (0, 0, 0, 60));
    fails(
        &mut ledger,
        T3,
        post(61, 51, 40),
        Status::PendingTransferAlreadyPosted,
    );
}

#[test]
fn post_of_nothing_releases_everything() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 0));
    ok(&mut ledger, T2, post(60, 51, 0));
    assert_eq!(transfer_of(&ledger, 60).amount, 0);
    assert_eq!(balances_of(&ledger, 1), (0, 0, 0, 0));
    assert_eq!(status_of(&ledger, 51), PendingStatus::Posted);
}

#[test]
fn void_with_amount_zero_or_exact() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 0));
    ok(&mut ledger, T1, pending(52, 3, 4, 70, 0));
    ok(&mut ledger, T2, void(60, 51));
    assert_eq!(
        transfer_of(&ledger, 60).amount,
        100,
        "a void records the pending amount"
    );
    ok(
        &mut ledger,
        T2,
        Transfer {
            amount: 70,
            ..void(61, 52)
        },
    );
    assert_eq!(transfer_of(&ledger, 61).amount, 70);
    for id in 1..=4 {
        assert_eq!(balances_of(&ledger, id), (0, 0, 0, 0), "account {id}");
    }
    assert_eq!(status_of(&ledger, 51), PendingStatus::Voided);
    assert_eq!(status_of(&ledger, 52), PendingStatus::Voided);
    fails(
        &mut ledger,
        T3,
        post(62, 51, MAX),
        Status::PendingTransferAlreadyVoided,
    );
}

#[test]
fn expiry_follows_the_injected_clock() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 2));
    let deadline = transfer_of(&ledger, 51).timestamp + 2 * NS;
    // Before the deadline nothing expires, and no pulse is needed.
    assert!(!ledger.pulse_needed(deadline - 1));
    let before = (state_of(&ledger), ledger.timestamp());
    assert_eq!(ledger.expire_pending_transfers(deadline - 1), 0);
    assert_eq!(
        (state_of(&ledger), ledger.timestamp()),
        before,
        "an empty pulse changes nothing"
    );
    // At the deadline it does.
    assert!(ledger.pulse_needed(deadline));
    assert_eq!(ledger.expire_pending_transfers(deadline), 1);
    assert_eq!(
        ledger.timestamp(),
        deadline + 1,
        "the expiry takes a timestamp of its own"
    );
    assert_eq!(status_of(&ledger, 51), PendingStatus::Expired);
    assert_eq!(balances_of(&ledger, 1), (0, 0, 0, 0));
    assert_eq!(balances_of(&ledger, 2), (0, 0, 0, 0));
    assert!(!ledger.pulse_needed(u64::MAX / 2));
    assert_eq!(ledger.expire_pending_transfers(deadline + 10 * NS), 0);
    let events = all_change_events(&ledger);
    let last = events.last().expect("the expiry is in the change stream");
    assert_eq!(last.kind(), Some(ChangeKind::PendingTransferExpired));
    assert_eq!(last.timestamp, deadline + 1);
    assert_eq!(last.transfer_record(), Some(transfer_of(&ledger, 51)));
    assert_balanced(&ledger);
}

#[test]
fn pulse_needed_counts_the_ledger_clock() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 1));
    let deadline = transfer_of(&ledger, 51).timestamp + NS;
    // Writes move the ledger's clock past the deadline: a pulse is due whatever `now` says.
    setup_transfers(&mut ledger, deadline, &[t(52, 3, 4, 1)]);
    assert!(ledger.pulse_needed(0));
    assert_eq!(ledger.expire_pending_transfers(0), 1);
    assert_eq!(ledger.timestamp(), deadline + 2);
    assert_balanced(&ledger);
}

#[test]
fn expiries_run_in_deadline_order_each_at_its_own_timestamp() {
    let mut ledger = ledger_with_accounts();
    let events = [
        pending(51, 1, 2, 10, 3),
        pending(52, 1, 3, 20, 1),
        pending(53, 4, 2, 30, 2),
        pending(54, 3, 4, 40, 0),
        pending(55, 2, 1, 50, 1),
    ];
    setup_transfers(&mut ledger, T1, &events);
    let deadline = |id, seconds: u64| transfer_of(&ledger, id).timestamp + seconds * NS;
    let (d51, d52, d53, d55) = (
        deadline(51, 3),
        deadline(52, 1),
        deadline(53, 2),
        deadline(55, 1),
    );
    // At 52's deadline only 52 is due (55 was created a few nanoseconds later).
    assert_eq!(ledger.expire_pending_transfers(d52), 1);
    assert_eq!(status_of(&ledger, 52), PendingStatus::Expired);
    assert_eq!(status_of(&ledger, 55), PendingStatus::Pending);
    assert!(ledger.pulse_needed(d55));
    let sequence = ledger.change_sequence_next();
    let now = d51 + 5 * NS;
    assert_eq!(ledger.expire_pending_transfers(now), 3);
    let mut expired = Vec::new();
    ledger
        .change_events(sequence, usize::MAX, &mut expired)
        .expect("change events");
    let order: Vec<(u128, u64)> = expired
        .iter()
        .map(|e| (e.transfer_record().expect("a transfer").id.0, e.timestamp))
        .collect();
    assert_eq!(order, [(55, now + 1), (53, now + 2), (51, now + 3)]);
    assert!(d55 < d53 && d53 < d51);
    assert_eq!(
        status_of(&ledger, 54),
        PendingStatus::Pending,
        "no timeout, no expiry"
    );
    assert_eq!(balances_of(&ledger, 3), (40, 0, 0, 0));
    assert_eq!(balances_of(&ledger, 4), (0, 0, 40, 0));
    assert_eq!(balances_of(&ledger, 1), (0, 0, 0, 0));
    assert_balanced(&ledger);
}

#[test]
fn posting_on_the_last_nanosecond_beats_the_deadline() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 1));
    let deadline = transfer_of(&ledger, 51).timestamp + NS;
    ok(&mut ledger, deadline - 2, post(60, 51, MAX));
    assert_eq!(transfer_of(&ledger, 60).timestamp, deadline - 1);
    assert!(
        !ledger.pulse_needed(deadline + NS),
        "a posted transfer never expires"
    );
    assert_eq!(ledger.expire_pending_transfers(deadline + NS), 0);
    assert_eq!(status_of(&ledger, 51), PendingStatus::Posted);
    assert_eq!(balances_of(&ledger, 1), (0, 100, 0, 0));
}

#[test]
fn closing_debit_closes_and_a_void_reopens() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 3, 4, 5, 0));
    ok(
        &mut ledger,
        T1,
        pending(40, 1, 2, 0, 0).with(TransferFlags::CLOSING_DEBIT),
    );
    assert!(is_closed(&ledger, 1) && !is_closed(&ledger, 2));
    fails(
        &mut ledger,
        T2,
        t(60, 1, 3, 1),
        Status::DebitAccountAlreadyClosed,
    );
    fails(
        &mut ledger,
        T2,
        t(61, 3, 1, 1),
        Status::CreditAccountAlreadyClosed,
    );
    fails(
        &mut ledger,
        T2,
        post(62, 40, MAX),
        Status::DebitAccountAlreadyClosed,
    );
    ok(&mut ledger, T2, void(63, 40));
    assert!(!is_closed(&ledger, 1));
    ok(&mut ledger, T3, t(64, 1, 3, 1));
}

#[test]
fn a_closed_account_still_voids_its_other_pending_transfers() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 3, 5, 0));
    ok(
        &mut ledger,
        T1,
        pending(40, 1, 2, 0, 0).with(TransferFlags::CLOSING_DEBIT),
    );
    fails(
        &mut ledger,
        T2,
        post(60, 51, MAX),
        Status::DebitAccountAlreadyClosed,
    );
    ok(&mut ledger, T2, void(61, 51));
    assert!(
        is_closed(&ledger, 1),
        "voiding another pending transfer does not reopen"
    );
    assert_eq!(balances_of(&ledger, 1), (0, 0, 0, 0));
}

#[test]
fn closing_credit_closes_and_expiry_reopens() {
    let mut ledger = ledger_with_accounts();
    let closing = pending(40, 1, 2, 7, 1).with(TransferFlags::CLOSING_CREDIT);
    ok(&mut ledger, T1, closing);
    assert!(is_closed(&ledger, 2) && !is_closed(&ledger, 1));
    fails(
        &mut ledger,
        T2,
        t(60, 3, 2, 1),
        Status::CreditAccountAlreadyClosed,
    );
    let deadline = transfer_of(&ledger, 40).timestamp + NS;
    assert_eq!(ledger.expire_pending_transfers(deadline), 1);
    assert!(!is_closed(&ledger, 2), "expiry reverts the close");
    assert_eq!(balances_of(&ledger, 2), (0, 0, 0, 0));
    assert_balanced(&ledger);
    ok(&mut ledger, deadline, t(61, 3, 2, 1));
}

#[test]
fn closing_both_accounts_at_once() {
    let mut ledger = ledger_with_accounts();
    let flags = TransferFlags::CLOSING_DEBIT | TransferFlags::CLOSING_CREDIT;
    ok(&mut ledger, T1, pending(40, 1, 2, 0, 0).with(flags));
    assert!(is_closed(&ledger, 1) && is_closed(&ledger, 2));
    fails(
        &mut ledger,
        T2,
        pending(41, 1, 2, 0, 0).with(flags),
        Status::DebitAccountAlreadyClosed,
    );
    ok(&mut ledger, T2, void(60, 40));
    assert!(!is_closed(&ledger, 1) && !is_closed(&ledger, 2));
}

#[test]
fn balancing_debit_moves_at_most_the_credit_balance() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, t(50, 1, 6, 100));
    ok(&mut ledger, T1, t(51, 6, 2, 30));
    ok(
        &mut ledger,
        T2,
        t(52, 6, 3, 1_000).with(TransferFlags::BALANCING_DEBIT),
    );
    assert_eq!(transfer_of(&ledger, 52).amount, 70);
    assert_eq!(balances_of(&ledger, 6), (0, 100, 0, 100));
    // Nothing left: a zero-amount balancing transfer, not an error.
    ok(
        &mut ledger,
        T2,
        t(53, 6, 3, 1_000).with(TransferFlags::BALANCING_DEBIT),
    );
    assert_eq!(transfer_of(&ledger, 53).amount, 0);
    // An account without limits balances the same way (a debit balance gives zero).
    ok(
        &mut ledger,
        T3,
        t(54, 1, 2, 50).with(TransferFlags::BALANCING_DEBIT),
    );
    assert_eq!(transfer_of(&ledger, 54).amount, 0);
}

#[test]
fn balancing_credit_moves_at_most_the_debit_balance() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, t(50, 7, 1, 50));
    ok(
        &mut ledger,
        T2,
        t(51, 1, 7, MAX).with(TransferFlags::BALANCING_CREDIT),
    );
    assert_eq!(transfer_of(&ledger, 51).amount, 50);
    assert_eq!(balances_of(&ledger, 7), (0, 50, 0, 50));
    // Both flags: the smaller of the two limits.
    ok(&mut ledger, T2, t(52, 2, 6, 40));
    ok(&mut ledger, T2, t(53, 3, 2, 25));
    let both = TransferFlags::BALANCING_DEBIT | TransferFlags::BALANCING_CREDIT;
    ok(&mut ledger, T3, t(54, 6, 2, 1_000).with(both));
    assert_eq!(
        transfer_of(&ledger, 54).amount,
        15,
        "min(credits of 6: 40, debits left on 2: 15)"
    );
}

#[test]
fn a_pending_balancing_transfer_reserves_its_amount() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, t(50, 1, 6, 100));
    let balancing = TransferFlags::BALANCING_DEBIT;
    ok(&mut ledger, T2, pending(51, 6, 2, 60, 0).with(balancing));
    assert_eq!(transfer_of(&ledger, 51).amount, 60);
    ok(&mut ledger, T2, pending(52, 6, 2, 60, 0).with(balancing));
    assert_eq!(transfer_of(&ledger, 52).amount, 40, "pending debits count");
    ok(&mut ledger, T3, void(60, 52));
    ok(&mut ledger, T3, post(61, 51, MAX));
    assert_eq!(balances_of(&ledger, 6), (0, 60, 0, 100));
}

#[test]
fn limits_count_pending_amounts_and_a_void_frees_them() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, t(50, 1, 6, 10));
    ok(&mut ledger, T1, pending(51, 6, 2, 10, 0));
    fails(&mut ledger, T2, t(60, 6, 2, 1), Status::ExceedsCredits);
    ok(&mut ledger, T2, void(61, 51));
    ok(&mut ledger, T2, t(62, 6, 2, 10));
    fails(&mut ledger, T3, t(63, 6, 2, 1), Status::ExceedsCredits);
    // The credit limit, symmetrically.
    ok(&mut ledger, T1, t(70, 7, 3, 10));
    ok(&mut ledger, T1, pending(71, 4, 7, 10, 0));
    fails(&mut ledger, T2, t(72, 4, 7, 1), Status::ExceedsDebits);
    ok(&mut ledger, T2, post(73, 71, 4));
    ok(&mut ledger, T3, t(74, 4, 7, 6));
    fails(&mut ledger, T3, t(75, 4, 7, 1), Status::ExceedsDebits);
    assert_eq!(balances_of(&ledger, 7), (0, 10, 0, 10));
}

#[test]
fn a_rolled_back_chain_leaves_the_pending_transfer_pending() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 5));
    let deadline = transfer_of(&ledger, 51).timestamp + 5 * NS;
    let before = state_of(&ledger);
    let linked = TransferFlags::LINKED;
    let events = [post(60, 51, 30).with(linked), t(61, 99, 2, 1)];
    let results = create_transfers(&mut ledger, T2, &events);
    let expected = [Status::LinkedEventFailed, Status::DebitAccountNotFound];
    assert_eq!(transfer_statuses(&results), expected);
    assert_state_unchanged(&before, &ledger);
    assert_eq!(status_of(&ledger, 51), PendingStatus::Pending);
    assert_eq!(balances_of(&ledger, 1), (100, 0, 0, 0));
    assert!(!ledger.contains_transfer(TransferId(60)).unwrap());
    assert_balanced(&ledger);
    // Its deadline still stands, and the post's id is free.
    assert!(ledger.pulse_needed(deadline));
    ok(&mut ledger, T3, post(60, 51, 30));
    assert_eq!(balances_of(&ledger, 1), (0, 30, 0, 0));
}

#[test]
fn a_rolled_back_chain_keeps_the_expiry_of_the_pending_transfer() {
    let mut ledger = ledger_with_accounts();
    ok(&mut ledger, T1, pending(51, 1, 2, 100, 5));
    let deadline = transfer_of(&ledger, 51).timestamp + 5 * NS;
    let linked = TransferFlags::LINKED;
    let events = [
        void(60, 51).with(linked),
        t(61, 1, 2, 1).with(linked),
        t(62, 1, 1, 1),
    ];
    let results = create_transfers(&mut ledger, T2, &events);
    let expected = [
        Status::LinkedEventFailed,
        Status::LinkedEventFailed,
        Status::AccountsMustBeDifferent,
    ];
    assert_eq!(transfer_statuses(&results), expected);
    assert_eq!(ledger.expire_pending_transfers(deadline), 1);
    assert_eq!(status_of(&ledger, 51), PendingStatus::Expired);
    assert_balanced(&ledger);
}

#[test]
fn a_rolled_back_chain_keeps_a_closed_account_closed() {
    let mut ledger = ledger_with_accounts();
    ok(
        &mut ledger,
        T1,
        pending(40, 1, 2, 3, 0).with(TransferFlags::CLOSING_DEBIT),
    );
    let linked = TransferFlags::LINKED;
    // The void reopens account 1 inside the chain, so the second event succeeds there; the
    // third fails and the whole chain is rolled back.
    let events = [
        void(60, 40).with(linked),
        t(61, 1, 2, 1).with(linked),
        t(62, 1, 1, 1),
    ];
    let before = state_of(&ledger);
    let results = create_transfers(&mut ledger, T2, &events);
    let expected = [
        Status::LinkedEventFailed,
        Status::LinkedEventFailed,
        Status::AccountsMustBeDifferent,
    ];
    assert_eq!(transfer_statuses(&results), expected);
    assert_state_unchanged(&before, &ledger);
    assert!(is_closed(&ledger, 1));
    assert_eq!(status_of(&ledger, 40), PendingStatus::Pending);
    assert_balanced(&ledger);
}

#[test]
fn a_rolled_back_pending_transfer_schedules_no_expiry() {
    let mut ledger = ledger_with_accounts();
    let events = [
        pending(51, 1, 2, 100, 1).with(TransferFlags::LINKED),
        t(52, 1, 2, 0).with(TransferFlags(1 << 9)),
    ];
    let results = create_transfers(&mut ledger, T1, &events);
    assert_eq!(
        transfer_statuses(&results),
        [Status::LinkedEventFailed, Status::ReservedFlag]
    );
    assert!(!ledger.pulse_needed(T1 + 10 * NS));
    assert_eq!(ledger.expire_pending_transfers(T1 + 10 * NS), 0);
    assert_balanced(&ledger);
}

#[test]
fn a_successful_chain_creates_posts_and_moves_together() {
    let mut ledger = ledger_with_accounts();
    let linked = TransferFlags::LINKED;
    let events = [
        pending(51, 1, 2, 100, 10).with(linked),
        post(60, 51, 40).with(linked),
        t(61, 1, 2, 5),
        pending(52, 3, 4, 9, 0),
        void(62, 52),
    ];
    let results = create_transfers(&mut ledger, T1, &events);
    assert_eq!(transfer_statuses(&results), [Status::Created; 5]);
    assert_eq!(balances_of(&ledger, 1), (0, 45, 0, 0));
    assert_eq!(balances_of(&ledger, 3), (0, 0, 0, 0));
    assert_eq!(status_of(&ledger, 51), PendingStatus::Posted);
    assert!(
        !ledger.pulse_needed(T1 + 100 * NS),
        "posted in the chain: no expiry left"
    );
    assert_balanced(&ledger);
}

#[test]
fn a_chain_across_ledgers_balances_each_ledger() {
    let mut ledger = ledger_with_accounts();
    let linked = TransferFlags::LINKED;
    let events = [
        Transfer {
            ledger: 2,
            ..pending(51, 8, 9, 500, 0)
        }
        .with(linked),
        t(52, 1, 2, 7).with(linked),
        transfer(53, 9, 8, 100, 2, CODE),
    ];
    setup_transfers(&mut ledger, T1, &events);
    ok(&mut ledger, T2, post(60, 51, 200));
    assert_eq!(
        transfer_of(&ledger, 60).ledger,
        2,
        "the post takes the pending's ledger"
    );
    assert_eq!(balances_of(&ledger, 8), (0, 200, 0, 100));
    assert_eq!(balances_of(&ledger, 9), (0, 100, 0, 200));
    assert_eq!(balances_of(&ledger, 1), (0, 7, 0, 0));
    assert_balanced(&ledger);
}

#[test]
fn post_and_void_inherit_user_data_from_the_pending_transfer() {
    let mut ledger = ledger_with_accounts();
    let p = |id| Transfer {
        user_data_128: 1,
        user_data_64: 2,
        user_data_32: 3,
        ..pending(id, 1, 2, 10, 0)
    };
    setup_transfers(&mut ledger, T1, &[p(51), p(52), p(53)]);
    ok(&mut ledger, T2, post(60, 51, MAX));
    ok(
        &mut ledger,
        T2,
        Transfer {
            user_data_128: 9,
            ..post(61, 52, 5)
        },
    );
    ok(
        &mut ledger,
        T2,
        Transfer {
            user_data_32: 7,
            ..void(62, 53)
        },
    );
    let user_data = |id| {
        let t = transfer_of(&ledger, id);
        (t.user_data_128, t.user_data_64, t.user_data_32)
    };
    assert_eq!(user_data(60), (1, 2, 3), "all inherited");
    assert_eq!(
        user_data(61),
        (9, 2, 3),
        "own user_data_128, the rest inherited"
    );
    assert_eq!(
        user_data(62),
        (1, 2, 7),
        "own user_data_32, the rest inherited"
    );
}

#[test]
fn expiry_runs_in_batches_of_at_most_one_message() {
    let mut ledger = ledger_with_accounts();
    let count = EXPIRE_BATCH_MAX + 1;
    let pendings: Vec<Transfer> = (0..count as u128)
        .map(|i| pending(1_000 + i, 1, 2, 1, 1))
        .collect();
    for (batch, now) in pendings.chunks(BATCH_EVENTS_MAX).zip([T1, T2]) {
        setup_transfers(&mut ledger, now, batch);
    }
    let now = T2 + 2 * NS;
    assert!(ledger.pulse_needed(now));
    assert_eq!(ledger.expire_pending_transfers(now), EXPIRE_BATCH_MAX);
    assert!(
        ledger.pulse_needed(now),
        "one pending transfer is left for the next pulse"
    );
    assert_eq!(
        status_of(&ledger, 1_000 + count as u128 - 1),
        PendingStatus::Pending
    );
    assert_eq!(ledger.timestamp(), now + EXPIRE_BATCH_MAX as u64);
    assert_eq!(ledger.expire_pending_transfers(now), 1);
    assert_eq!(ledger.timestamp(), now + EXPIRE_BATCH_MAX as u64 + 1);
    assert!(!ledger.pulse_needed(now));
    assert_eq!(balances_of(&ledger, 1), (0, 0, 0, 0));
    assert_balanced(&ledger);
}
