//! Shared helpers of the `kassa-shard` integration tests: record builders, batch runners that
//! check the documented timestamp rule, and [`Fingerprint`], everything a failed event must leave
//! as it was.
//!
//! Every test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use kassa_shard::{Ledger, LedgerConfig, PendingStatus};
use kassa_wire::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, AccountId,
    ChangeEvent, CreateAccountResult, CreateAccountStatus, CreateTransferResult,
    CreateTransferStatus, Transfer, TransferFlags, TransferId,
};

/// The ledger and code most tests use.
pub const LEDGER: u32 = 1;
pub const CODE: u16 = 10;
/// Nanoseconds in a second, for timeouts.
pub const NS: u64 = 1_000_000_000;

pub fn new_ledger() -> Ledger {
    Ledger::new(LedgerConfig::default())
}

/// An account with every optional field zero.
pub fn account(id: u128, ledger: u32, code: u16) -> Account {
    Account {
        id: AccountId(id),
        ledger,
        code,
        ..Account::default()
    }
}

/// A single-phase transfer with every optional field zero.
pub fn transfer(id: u128, dr: u128, cr: u128, amount: u128, ledger: u32, code: u16) -> Transfer {
    Transfer {
        id: TransferId(id),
        debit_account_id: AccountId(dr),
        credit_account_id: AccountId(cr),
        amount,
        ledger,
        code,
        ..Transfer::default()
    }
}

/// A pending transfer on [`LEDGER`] with a timeout in seconds.
pub fn pending(id: u128, dr: u128, cr: u128, amount: u128, timeout: u32) -> Transfer {
    Transfer {
        timeout,
        ..transfer(id, dr, cr, amount, LEDGER, CODE).with(TransferFlags::PENDING)
    }
}

/// A post of `pending_id` that leaves accounts, ledger and code to the pending transfer.
pub fn post(id: u128, pending_id: u128, amount: u128) -> Transfer {
    let t = transfer(id, 0, 0, amount, 0, 0).with(TransferFlags::POST_PENDING_TRANSFER);
    Transfer {
        pending_id: TransferId(pending_id),
        ..t
    }
}

/// A void of `pending_id` (amount 0: the whole pending amount).
pub fn void(id: u128, pending_id: u128) -> Transfer {
    let t = transfer(id, 0, 0, 0, 0, 0).with(TransferFlags::VOID_PENDING_TRANSFER);
    Transfer {
        pending_id: TransferId(pending_id),
        ..t
    }
}

/// Adds flags to a record: `account(1, 1, 1).with(AccountFlags::HISTORY)`.
pub trait WithFlags: Sized {
    type Flags;
    fn with(self, flags: Self::Flags) -> Self;
}

impl WithFlags for Account {
    type Flags = AccountFlags;
    fn with(mut self, flags: AccountFlags) -> Account {
        self.flags |= flags;
        self
    }
}

impl WithFlags for Transfer {
    type Flags = TransferFlags;
    fn with(mut self, flags: TransferFlags) -> Transfer {
        self.flags |= flags;
        self
    }
}

/// An imported copy of a record, carrying its own timestamp.
pub fn imported_account(a: Account, timestamp: u64) -> Account {
    Account {
        timestamp,
        ..a.with(AccountFlags::IMPORTED)
    }
}

pub fn imported_transfer(t: Transfer, timestamp: u64) -> Transfer {
    Transfer {
        timestamp,
        ..t.with(TransferFlags::IMPORTED)
    }
}

/// The timestamps the events of a batch of `count` written at `now` get (the documented rule).
pub fn event_timestamps(ledger: &Ledger, now: u64, count: usize) -> Vec<u64> {
    let end = ledger.timestamp().max(now) + count as u64;
    (0..count as u64)
        .map(|i| end - count as u64 + i + 1)
        .collect()
}

pub fn create_accounts(
    ledger: &mut Ledger,
    now: u64,
    events: &[Account],
) -> Vec<CreateAccountResult> {
    let mut results = Vec::new();
    ledger.create_accounts(now, events, &mut results);
    assert_eq!(results.len(), events.len(), "one result per account event");
    results
}

pub fn create_transfers(
    ledger: &mut Ledger,
    now: u64,
    events: &[Transfer],
) -> Vec<CreateTransferResult> {
    let mut results = Vec::new();
    ledger.create_transfers(now, events, &mut results);
    assert_eq!(results.len(), events.len(), "one result per transfer event");
    results
}

pub fn account_statuses(results: &[CreateAccountResult]) -> Vec<CreateAccountStatus> {
    results.iter().map(|r| r.status).collect()
}

pub fn transfer_statuses(results: &[CreateTransferResult]) -> Vec<CreateTransferStatus> {
    results.iter().map(|r| r.status).collect()
}

/// Creates accounts that must all succeed.
pub fn setup_accounts(ledger: &mut Ledger, now: u64, events: &[Account]) {
    let results = create_accounts(ledger, now, events);
    for (event, result) in events.iter().zip(&results) {
        assert_eq!(
            result.status,
            CreateAccountStatus::Created,
            "setup account {}",
            event.id
        );
    }
}

/// Creates transfers that must all succeed.
pub fn setup_transfers(ledger: &mut Ledger, now: u64, events: &[Transfer]) {
    let results = create_transfers(ledger, now, events);
    for (event, result) in events.iter().zip(&results) {
        assert_eq!(
            result.status,
            CreateTransferStatus::Created,
            "setup transfer {}",
            event.id
        );
    }
}

/// Creates one account and checks its status, its result timestamp (the record's for created
/// and exists, else the event's) and, when it failed, that nothing changed.
pub fn expect_account(
    ledger: &mut Ledger,
    now: u64,
    event: Account,
    status: CreateAccountStatus,
) -> CreateAccountResult {
    let before = state_of(ledger);
    let event_timestamp = event_timestamps(ledger, now, 1)[0];
    let result = create_accounts(ledger, now, &[event])[0];
    assert_eq!(result.status, status, "status of account {}", event.id);
    assert_eq!(
        ledger.timestamp(),
        event_timestamp,
        "a batch of one advances the clock by one"
    );
    match status {
        CreateAccountStatus::Created => {
            let stored = ledger
                .account(event.id)
                .expect("a created account is stored");
            assert_eq!(
                result.timestamp, stored.timestamp,
                "created: the record's timestamp"
            );
        }
        CreateAccountStatus::Exists => {
            let stored = ledger
                .account(event.id)
                .expect("an existing account is stored");
            assert_eq!(
                result.timestamp, stored.timestamp,
                "exists: the original's timestamp"
            );
            assert_state_unchanged(&before, ledger);
        }
        _ => {
            assert_eq!(
                result.timestamp, event_timestamp,
                "failed: the event's timestamp"
            );
            assert_state_unchanged(&before, ledger);
        }
    }
    ledger.validate();
    result
}

/// Creates one transfer and checks its status, result timestamp and, when it failed, that
/// nothing changed (except the failed-id set for transient statuses).
pub fn expect_transfer(
    ledger: &mut Ledger,
    now: u64,
    event: Transfer,
    status: CreateTransferStatus,
) -> CreateTransferResult {
    let before = state_of(ledger);
    let burnt_before = ledger.transfer_id_failed(event.id);
    let event_timestamp = event_timestamps(ledger, now, 1)[0];
    let result = create_transfers(ledger, now, &[event])[0];
    assert_eq!(result.status, status, "status of transfer {}", event.id);
    assert_eq!(
        ledger.timestamp(),
        event_timestamp,
        "a batch of one advances the clock by one"
    );
    match status {
        CreateTransferStatus::Created => {
            let stored = ledger
                .transfer(event.id)
                .expect("cold reads")
                .expect("a created transfer is stored");
            assert_eq!(
                result.timestamp, stored.timestamp,
                "created: the record's timestamp"
            );
        }
        CreateTransferStatus::Exists => {
            let stored = ledger
                .transfer(event.id)
                .expect("cold reads")
                .expect("an existing transfer is stored");
            assert_eq!(
                result.timestamp, stored.timestamp,
                "exists: the original's timestamp"
            );
            assert_state_unchanged(&before, ledger);
        }
        _ => {
            assert_eq!(
                result.timestamp, event_timestamp,
                "failed: the event's timestamp"
            );
            assert_state_unchanged(&before, ledger);
            let burnt = ledger.transfer_id_failed(event.id);
            assert_eq!(
                burnt,
                burnt_before || status.is_transient(),
                "burnt id after {status}"
            );
        }
    }
    assert_balanced(ledger);
    result
}

/// Everything a failed event must leave as it was. Not the ledger timestamp (failed events
/// take timestamps too) and not the failed-id set (transient failures grow it by design).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub accounts: Vec<Account>,
    pub transfers: Vec<Transfer>,
    pub pending_statuses: Vec<(TransferId, PendingStatus)>,
    pub change_sequence_next: u64,
    pub change_sequence_first: u64,
    pub change_events: Vec<ChangeEvent>,
    /// Per account, the ids of its transfers and its balance history, as the queries see them.
    pub account_transfers: Vec<Vec<TransferId>>,
    pub account_balances: Vec<Vec<AccountBalance>>,
}

pub fn state_of(ledger: &Ledger) -> Fingerprint {
    let transfers = ledger.all_transfers().expect("cold reads");
    let pending_statuses = transfers
        .iter()
        .map(|t| {
            (
                t.id,
                ledger
                    .pending_status(t.id)
                    .expect("cold reads")
                    .expect("a stored transfer has a status"),
            )
        })
        .collect();
    let mut change_events = Vec::new();
    ledger
        .change_events(0, usize::MAX, &mut change_events)
        .expect("change events");
    let both = AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS;
    let mut account_transfers = Vec::new();
    let mut account_balances = Vec::new();
    for a in ledger.accounts() {
        let filter = AccountFilter::new(a.id, u32::MAX, both);
        let mut transfers = Vec::new();
        ledger
            .get_account_transfers(&filter, &mut transfers)
            .expect("cold reads");
        account_transfers.push(transfers.iter().map(|t| t.id).collect());
        let mut balances = Vec::new();
        ledger
            .get_account_balances(&filter, &mut balances)
            .expect("cold reads");
        account_balances.push(balances);
    }
    Fingerprint {
        accounts: ledger.accounts().to_vec(),
        transfers,
        pending_statuses,
        change_sequence_next: ledger.change_sequence_next(),
        change_sequence_first: ledger.change_sequence_first(),
        change_events,
        account_transfers,
        account_balances,
    }
}

pub fn assert_state_unchanged(before: &Fingerprint, ledger: &Ledger) {
    let after = state_of(ledger);
    assert!(
        before == &after,
        "a failed event changed the state:\nbefore {before:#?}\nafter {after:#?}"
    );
}

/// A 256-bit running sum, so that totals of near-`u128::MAX` balances compare exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sum(u128, u128);

impl Sum {
    fn add(&mut self, value: u128) {
        let (low, carry) = self.1.overflowing_add(value);
        self.1 = low;
        self.0 += u128::from(carry);
    }
}

/// Per ledger: posted debits equal posted credits and pending debits equal pending credits;
/// then every invariant [`Ledger::validate`] knows.
pub fn assert_balanced(ledger: &Ledger) {
    let mut totals: BTreeMap<u32, [Sum; 4]> = BTreeMap::new();
    for a in ledger.accounts() {
        let total = totals.entry(a.ledger).or_default();
        total[0].add(a.debits_posted);
        total[1].add(a.credits_posted);
        total[2].add(a.debits_pending);
        total[3].add(a.credits_pending);
    }
    for (id, [debits_posted, credits_posted, debits_pending, credits_pending]) in totals {
        assert_eq!(
            debits_posted, credits_posted,
            "ledger {id}: posted debits != credits"
        );
        assert_eq!(
            debits_pending, credits_pending,
            "ledger {id}: pending debits != credits"
        );
    }
    ledger.validate();
}

/// The stored account; panics with its id if it is missing.
pub fn account_of(ledger: &Ledger, id: u128) -> Account {
    *ledger
        .account(AccountId(id))
        .unwrap_or_else(|| panic!("account {id} exists"))
}

pub fn transfer_of(ledger: &Ledger, id: u128) -> Transfer {
    ledger
        .transfer(TransferId(id))
        .expect("cold reads")
        .unwrap_or_else(|| panic!("transfer {id} exists"))
}

pub fn status_of(ledger: &Ledger, id: u128) -> PendingStatus {
    ledger
        .pending_status(TransferId(id))
        .expect("cold reads")
        .unwrap_or_else(|| panic!("transfer {id} exists"))
}

/// `(debits_pending, debits_posted, credits_pending, credits_posted)` of an account.
pub fn balances_of(ledger: &Ledger, id: u128) -> (u128, u128, u128, u128) {
    let a = account_of(ledger, id);
    (
        a.debits_pending,
        a.debits_posted,
        a.credits_pending,
        a.credits_posted,
    )
}

pub fn is_closed(ledger: &Ledger, id: u128) -> bool {
    account_of(ledger, id).flags.contains(AccountFlags::CLOSED)
}

/// Every retained change event, oldest first.
pub fn all_change_events(ledger: &Ledger) -> Vec<ChangeEvent> {
    let mut events = Vec::new();
    ledger
        .change_events(0, usize::MAX, &mut events)
        .expect("change events");
    events
}

pub fn snapshot_of(ledger: &Ledger) -> Vec<u8> {
    let mut bytes = Vec::new();
    ledger.snapshot(&mut bytes);
    bytes
}
