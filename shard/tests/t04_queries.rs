//! Reads: `lookup_accounts` / `lookup_transfers` (missing ids skipped, order and repeats kept),
//! `get_account_transfers` and `get_account_balances` (sides, timestamp bounds, limit, reversed,
//! user data and code filters, invalid filters answering nothing, history accounts only), and
//! `query_accounts` / `query_transfers` (each field, ranges, limit, reversed, invalid filters),
//! with TigerBeetle's validity rules (`get_scan_from_account_filter`,
//! `get_scan_from_query_filter`).

mod common;

use common::*;
use kassa_shard::limits::{BATCH_EVENTS_MAX, QUERY_RESULTS_MAX};
use kassa_shard::Ledger;
use kassa_wire::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, AccountId,
    QueryFilter, QueryFilterFlags, Transfer, TransferFlags, TransferId, ID_INT_MAX, TIMESTAMP_MAX,
};

const NOW: u64 = 1_000;
const DEBITS: AccountFilterFlags = AccountFilterFlags::DEBITS;
const CREDITS: AccountFilterFlags = AccountFilterFlags::CREDITS;
const REVERSED: AccountFilterFlags = AccountFilterFlags::REVERSED;

fn both() -> AccountFilterFlags {
    DEBITS | CREDITS
}

/// `(id, user_data_128, user_data_64, user_data_32, ledger, code, history)`.
type AccountRow = (u128, u128, u64, u32, u32, u16, bool);
/// `(id, dr, cr, amount, user_data_128, user_data_64, user_data_32, code)`.
type TransferRow = (u128, u128, u128, u128, u128, u64, u32, u16);

/// The accounts of the fixture: `(id, user_data_128, user_data_64, user_data_32, ledger, code,
/// history)`.
const ACCOUNTS: [AccountRow; 5] = [
    (1, 100, 10, 1, 1, 10, true),
    (2, 100, 20, 2, 1, 20, true),
    (3, 200, 10, 3, 1, 10, false),
    (4, 200, 20, 1, 2, 20, false),
    (5, 0, 0, 0, 2, 10, false),
];

/// The transfers of the fixture, each created alone at `id * 10_000` (timestamp
/// `id * 10_000 + 1`): `(id, dr, cr, amount, user_data_128, user_data_64, user_data_32, code)`.
/// 17 is pending; 18 posts it (and inherits its user data and code).
const TRANSFERS: [TransferRow; 7] = [
    (11, 1, 2, 1, 7, 70, 700, 1),
    (12, 2, 1, 2, 7, 71, 700, 2),
    (13, 1, 3, 3, 8, 70, 701, 1),
    (14, 3, 1, 4, 8, 71, 701, 2),
    (15, 4, 5, 5, 7, 70, 700, 1),
    (16, 2, 3, 6, 9, 72, 702, 2),
    (17, 1, 2, 7, 9, 72, 702, 1),
];

fn ts(id: u128) -> u64 {
    id as u64 * 10_000 + 1
}

fn fixture() -> Ledger {
    let mut ledger = new_ledger();
    let accounts: Vec<Account> = ACCOUNTS
        .iter()
        .map(|&(id, u128_, u64_, u32_, ledger_, code, history)| {
            let a = Account {
                user_data_128: u128_,
                user_data_64: u64_,
                user_data_32: u32_,
                ..account(id, ledger_, code)
            };
            if history {
                a.with(AccountFlags::HISTORY)
            } else {
                a
            }
        })
        .collect();
    setup_accounts(&mut ledger, NOW, &accounts);
    for &(id, dr, cr, amount, u128_, u64_, u32_, code) in &TRANSFERS {
        let ledger_id = if dr == 4 { 2 } else { 1 };
        let mut t = Transfer {
            user_data_128: u128_,
            user_data_64: u64_,
            user_data_32: u32_,
            ..transfer(id, dr, cr, amount, ledger_id, code)
        };
        if id == 17 {
            t = t.with(TransferFlags::PENDING);
        }
        setup_transfers(&mut ledger, id as u64 * 10_000, &[t]);
        assert_eq!(transfer_of(&ledger, id).timestamp, ts(id));
    }
    setup_transfers(&mut ledger, 18 * 10_000, &[post(18, 17, u128::MAX)]);
    assert_eq!(transfer_of(&ledger, 18).timestamp, ts(18));
    assert_balanced(&ledger);
    ledger
}

fn transfer_ids(transfers: &[Transfer]) -> Vec<u128> {
    transfers.iter().map(|t| t.id.0).collect()
}

fn account_ids(accounts: &[Account]) -> Vec<u128> {
    accounts.iter().map(|a| a.id.0).collect()
}

fn account_transfers(ledger: &Ledger, filter: &AccountFilter) -> Vec<u128> {
    let mut out = Vec::new();
    ledger
        .get_account_transfers(filter, &mut out)
        .expect("cold reads");
    transfer_ids(&out)
}

fn account_balances(ledger: &Ledger, filter: &AccountFilter) -> Vec<AccountBalance> {
    let mut out = Vec::new();
    ledger
        .get_account_balances(filter, &mut out)
        .expect("in memory");
    out
}

fn query_accounts(ledger: &Ledger, filter: &QueryFilter) -> Vec<u128> {
    let mut out = Vec::new();
    ledger.query_accounts(filter, &mut out);
    account_ids(&out)
}

fn query_transfers(ledger: &Ledger, filter: &QueryFilter) -> Vec<u128> {
    let mut out = Vec::new();
    ledger
        .query_transfers(filter, &mut out)
        .expect("cold reads");
    transfer_ids(&out)
}

fn filter(account: u128, flags: AccountFilterFlags) -> AccountFilter {
    AccountFilter::new(AccountId(account), 100, flags)
}

fn query(change: impl FnOnce(&mut QueryFilter)) -> QueryFilter {
    let mut filter = QueryFilter::new(100, QueryFilterFlags::default());
    change(&mut filter);
    filter
}

// Lookups.

#[test]
fn lookups_skip_missing_ids_and_keep_order() {
    let ledger = fixture();
    let ids = [3, 99, 1, 0, ID_INT_MAX, 2, 1].map(AccountId);
    let mut out = Vec::new();
    ledger.lookup_accounts(&ids, &mut out);
    assert_eq!(account_ids(&out), [3, 1, 2, 1]);
    assert_eq!(out[0], account_of(&ledger, 3));
    let ids = [18, 11, 99, 0, 15, 18].map(TransferId);
    let mut out = Vec::new();
    ledger.lookup_transfers(&ids, &mut out).expect("cold reads");
    assert_eq!(transfer_ids(&out), [18, 11, 15, 18]);
    assert_eq!(out[1], transfer_of(&ledger, 11));
    let mut out = Vec::new();
    ledger.lookup_accounts(&[], &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_burnt_transfer_id_is_not_found() {
    let mut ledger = fixture();
    let results = create_transfers(&mut ledger, 300_000, &[transfer(30, 99, 2, 1, 1, 1)]);
    assert!(results[0].status.is_transient());
    assert!(ledger.transfer_id_failed(TransferId(30)));
    let mut out = Vec::new();
    ledger
        .lookup_transfers(&[TransferId(30), TransferId(11)], &mut out)
        .expect("cold reads");
    assert_eq!(transfer_ids(&out), [11]);
}

// get_account_transfers.

#[test]
fn account_transfers_by_side() {
    let ledger = fixture();
    assert_eq!(
        account_transfers(&ledger, &filter(1, both())),
        [11, 12, 13, 14, 17, 18]
    );
    assert_eq!(
        account_transfers(&ledger, &filter(1, DEBITS)),
        [11, 13, 17, 18]
    );
    assert_eq!(account_transfers(&ledger, &filter(1, CREDITS)), [12, 14]);
    assert_eq!(account_transfers(&ledger, &filter(3, both())), [13, 14, 16]);
    assert_eq!(
        account_transfers(&ledger, &filter(5, DEBITS)),
        Vec::<u128>::new()
    );
    assert_eq!(account_transfers(&ledger, &filter(5, CREDITS)), [15]);
}

#[test]
fn account_transfers_reversed_and_limited() {
    let ledger = fixture();
    let reversed = both() | REVERSED;
    assert_eq!(
        account_transfers(&ledger, &filter(1, reversed)),
        [18, 17, 14, 13, 12, 11]
    );
    let limited = AccountFilter {
        limit: 2,
        ..filter(1, both())
    };
    assert_eq!(account_transfers(&ledger, &limited), [11, 12]);
    let limited = AccountFilter {
        limit: 2,
        ..filter(1, reversed)
    };
    assert_eq!(account_transfers(&ledger, &limited), [18, 17]);
    let limited = AccountFilter {
        limit: 1,
        ..filter(1, CREDITS | REVERSED)
    };
    assert_eq!(account_transfers(&ledger, &limited), [14]);
    let huge = AccountFilter {
        limit: u32::MAX,
        ..filter(1, both())
    };
    assert_eq!(account_transfers(&ledger, &huge).len(), 6);
}

#[test]
fn account_transfers_by_timestamp_bounds_inclusive() {
    let ledger = fixture();
    let range = |min, max| AccountFilter {
        timestamp_min: min,
        timestamp_max: max,
        ..filter(1, both())
    };
    assert_eq!(
        account_transfers(&ledger, &range(ts(12), ts(14))),
        [12, 13, 14]
    );
    assert_eq!(
        account_transfers(&ledger, &range(ts(12) + 1, ts(14) - 1)),
        [13]
    );
    assert_eq!(
        account_transfers(&ledger, &range(ts(13), 0)),
        [13, 14, 17, 18]
    );
    assert_eq!(account_transfers(&ledger, &range(0, ts(12))), [11, 12]);
    assert_eq!(account_transfers(&ledger, &range(ts(17), ts(17))), [17]);
    assert_eq!(
        account_transfers(&ledger, &range(1, TIMESTAMP_MAX)).len(),
        6
    );
    let reversed = AccountFilter {
        flags: both() | REVERSED,
        limit: 2,
        ..range(ts(11), ts(14))
    };
    assert_eq!(account_transfers(&ledger, &reversed), [14, 13]);
}

#[test]
fn account_transfers_by_user_data_and_code() {
    let ledger = fixture();
    let f = |change: fn(&mut AccountFilter)| {
        let mut f = filter(1, both());
        change(&mut f);
        account_transfers(&ledger, &f)
    };
    assert_eq!(f(|f| f.user_data_128 = 7), [11, 12]);
    assert_eq!(
        f(|f| f.user_data_128 = 9),
        [17, 18],
        "the post inherited user_data_128"
    );
    assert_eq!(f(|f| f.user_data_64 = 71), [12, 14]);
    assert_eq!(f(|f| f.user_data_32 = 701), [13, 14]);
    assert_eq!(
        f(|f| f.code = 1),
        [11, 13, 17, 18],
        "the post has the pending's code"
    );
    assert_eq!(f(|f| f.code = 2), [12, 14]);
    assert_eq!(f(|f| (f.user_data_128, f.code) = (7, 2)), [12]);
    assert_eq!(f(|f| (f.user_data_64, f.user_data_32) = (70, 701)), [13]);
    assert_eq!(
        f(|f| (f.user_data_128, f.code) = (8, 3)),
        Vec::<u128>::new()
    );
    let debits_code_2 = AccountFilter {
        code: 2,
        ..filter(2, DEBITS)
    };
    assert_eq!(account_transfers(&ledger, &debits_code_2), [12, 16]);
}

/// Every way an account filter is invalid; each must answer nothing.
fn invalid_account_filters() -> Vec<(&'static str, AccountFilter)> {
    let valid = filter(1, both());
    let mut reserved = valid;
    reserved.reserved[57] = 1;
    vec![
        ("limit zero", AccountFilter { limit: 0, ..valid }),
        ("no side", filter(1, AccountFilterFlags::default())),
        ("only reversed", filter(1, REVERSED)),
        (
            "reserved flag bit",
            filter(1, both() | AccountFilterFlags(1 << 3)),
        ),
        (
            "top flag bit",
            filter(1, both() | AccountFilterFlags(1 << 31)),
        ),
        ("reserved byte", reserved),
        (
            "min after max",
            AccountFilter {
                timestamp_min: ts(14),
                timestamp_max: ts(12),
                ..valid
            },
        ),
        (
            "min out of range",
            AccountFilter {
                timestamp_min: TIMESTAMP_MAX + 1,
                ..valid
            },
        ),
        (
            "max out of range",
            AccountFilter {
                timestamp_max: u64::MAX,
                ..valid
            },
        ),
        ("account zero", filter(0, both())),
        ("account int max", filter(ID_INT_MAX, both())),
    ]
}

#[test]
fn invalid_account_filters_return_nothing() {
    let ledger = fixture();
    assert_eq!(
        account_transfers(&ledger, &filter(1, both())).len(),
        6,
        "the valid base"
    );
    for (name, f) in invalid_account_filters() {
        assert_eq!(account_transfers(&ledger, &f), Vec::<u128>::new(), "{name}");
        assert_eq!(account_balances(&ledger, &f), Vec::new(), "{name}");
    }
    assert_eq!(
        account_transfers(&ledger, &filter(99, both())),
        Vec::<u128>::new(),
        "missing"
    );
}

#[test]
fn results_are_appended() {
    let ledger = fixture();
    let mut out = vec![transfer_of(&ledger, 15)];
    ledger
        .get_account_transfers(&filter(3, CREDITS), &mut out)
        .expect("cold reads");
    assert_eq!(transfer_ids(&out), [15, 13, 16]);
}

// get_account_balances.

#[test]
fn balances_after_each_transfer_of_a_history_account() {
    let ledger = fixture();
    let balances = account_balances(&ledger, &filter(1, both()));
    let got: Vec<(u64, u128, u128, u128, u128)> = balances
        .iter()
        .map(|b| {
            (
                b.timestamp,
                b.debits_pending,
                b.debits_posted,
                b.credits_pending,
                b.credits_posted,
            )
        })
        .collect();
    let expected = [
        (ts(11), 0, 1, 0, 0),
        (ts(12), 0, 1, 0, 2),
        (ts(13), 0, 4, 0, 2),
        (ts(14), 0, 4, 0, 6),
        (ts(17), 7, 4, 0, 6),
        (ts(18), 0, 11, 0, 6),
    ];
    assert_eq!(got, expected);
    assert!(balances.iter().all(|b| b.reserved == [0; 56]));
    let last = balances.last().expect("balances");
    assert_eq!(
        balances_of(&ledger, 1),
        (
            last.debits_pending,
            last.debits_posted,
            last.credits_pending,
            last.credits_posted
        )
    );
    // The credit side of a transfer sees the credit account's balances.
    let of_2 = account_balances(&ledger, &filter(2, both()));
    let at_11 = of_2.first().expect("account 2's first balance");
    assert_eq!(
        (at_11.timestamp, at_11.credits_posted, at_11.debits_posted),
        (ts(11), 1, 0)
    );
    assert_eq!(of_2.len(), 5);
}

#[test]
fn balances_follow_the_filter() {
    let ledger = fixture();
    let timestamps = |f: &AccountFilter| -> Vec<u64> {
        account_balances(&ledger, f)
            .iter()
            .map(|b| b.timestamp)
            .collect()
    };
    assert_eq!(timestamps(&filter(1, CREDITS)), [ts(12), ts(14)]);
    assert_eq!(
        timestamps(&filter(1, DEBITS | REVERSED)),
        [ts(18), ts(17), ts(13), ts(11)]
    );
    let limited = AccountFilter {
        limit: 3,
        ..filter(1, both())
    };
    assert_eq!(timestamps(&limited), [ts(11), ts(12), ts(13)]);
    let ranged = AccountFilter {
        timestamp_min: ts(13),
        timestamp_max: ts(17),
        ..filter(1, both())
    };
    assert_eq!(timestamps(&ranged), [ts(13), ts(14), ts(17)]);
    let coded = AccountFilter {
        code: 2,
        user_data_64: 71,
        ..filter(1, both())
    };
    assert_eq!(timestamps(&coded), [ts(12), ts(14)]);
}

#[test]
fn balances_only_for_history_accounts() {
    let ledger = fixture();
    assert_eq!(account_transfers(&ledger, &filter(3, both())).len(), 3);
    assert_eq!(
        account_balances(&ledger, &filter(3, both())),
        Vec::new(),
        "no history flag"
    );
    assert_eq!(
        account_balances(&ledger, &filter(99, both())),
        Vec::new(),
        "missing account"
    );
    assert_eq!(account_balances(&ledger, &filter(2, both())).len(), 5);
}

#[test]
fn expiry_adds_no_balance_entry() {
    let mut ledger = fixture();
    setup_transfers(&mut ledger, 200_000, &[pending(30, 1, 2, 5, 1)]);
    let deadline = transfer_of(&ledger, 30).timestamp + NS;
    assert_eq!(ledger.expire_pending_transfers(deadline), 1);
    let balances = account_balances(&ledger, &filter(1, both()));
    assert_eq!(
        balances.len(),
        7,
        "balances are kept per transfer, not per expiry"
    );
    let last = balances.last().expect("balances");
    assert_eq!(
        (last.timestamp, last.debits_pending),
        (transfer_of(&ledger, 30).timestamp, 5)
    );
}

// query_accounts and query_transfers.

#[test]
fn query_accounts_by_each_field() {
    let ledger = fixture();
    assert_eq!(query_accounts(&ledger, &query(|_| ())), [1, 2, 3, 4, 5]);
    assert_eq!(
        query_accounts(&ledger, &query(|f| f.user_data_128 = 100)),
        [1, 2]
    );
    assert_eq!(
        query_accounts(&ledger, &query(|f| f.user_data_64 = 10)),
        [1, 3]
    );
    assert_eq!(
        query_accounts(&ledger, &query(|f| f.user_data_32 = 1)),
        [1, 4]
    );
    assert_eq!(query_accounts(&ledger, &query(|f| f.ledger = 2)), [4, 5]);
    assert_eq!(query_accounts(&ledger, &query(|f| f.code = 10)), [1, 3, 5]);
    assert_eq!(
        query_accounts(&ledger, &query(|f| (f.user_data_128, f.ledger) = (200, 2))),
        [4]
    );
    assert_eq!(
        query_accounts(&ledger, &query(|f| (f.code, f.user_data_64) = (20, 10))),
        Vec::<u128>::new()
    );
}

#[test]
fn query_accounts_by_range_limit_and_order() {
    let ledger = fixture();
    let at = |id: u128| account_of(&ledger, id).timestamp;
    let range = query(|f| (f.timestamp_min, f.timestamp_max) = (at(2), at(4)));
    assert_eq!(query_accounts(&ledger, &range), [2, 3, 4]);
    let from = query(|f| f.timestamp_min = at(4));
    assert_eq!(query_accounts(&ledger, &from), [4, 5]);
    let limited = query(|f| f.limit = 2);
    assert_eq!(query_accounts(&ledger, &limited), [1, 2]);
    let reversed = query(|f| (f.limit, f.flags) = (2, QueryFilterFlags::REVERSED));
    assert_eq!(query_accounts(&ledger, &reversed), [5, 4]);
    let reversed_code = query(|f| (f.code, f.flags) = (10, QueryFilterFlags::REVERSED));
    assert_eq!(query_accounts(&ledger, &reversed_code), [5, 3, 1]);
}

#[test]
fn query_transfers_by_each_field() {
    let ledger = fixture();
    assert_eq!(
        query_transfers(&ledger, &query(|_| ())),
        [11, 12, 13, 14, 15, 16, 17, 18]
    );
    assert_eq!(
        query_transfers(&ledger, &query(|f| f.user_data_128 = 7)),
        [11, 12, 15]
    );
    assert_eq!(
        query_transfers(&ledger, &query(|f| f.user_data_64 = 72)),
        [16, 17, 18]
    );
    assert_eq!(
        query_transfers(&ledger, &query(|f| f.user_data_32 = 700)),
        [11, 12, 15]
    );
    assert_eq!(query_transfers(&ledger, &query(|f| f.ledger = 2)), [15]);
    assert_eq!(
        query_transfers(&ledger, &query(|f| f.code = 2)),
        [12, 14, 16]
    );
    assert_eq!(
        query_transfers(&ledger, &query(|f| (f.ledger, f.code) = (1, 1))),
        [11, 13, 17, 18]
    );
    assert_eq!(
        query_transfers(&ledger, &query(|f| (f.ledger, f.user_data_128) = (2, 8))),
        Vec::<u128>::new()
    );
}

#[test]
fn query_transfers_by_range_limit_and_order() {
    let ledger = fixture();
    let range = query(|f| (f.timestamp_min, f.timestamp_max) = (ts(13), ts(15)));
    assert_eq!(query_transfers(&ledger, &range), [13, 14, 15]);
    let to = query(|f| f.timestamp_max = ts(12) + 5);
    assert_eq!(query_transfers(&ledger, &to), [11, 12]);
    let reversed = query(|f| (f.limit, f.flags) = (3, QueryFilterFlags::REVERSED));
    assert_eq!(query_transfers(&ledger, &reversed), [18, 17, 16]);
    let reversed_range = query(|f| {
        (f.timestamp_min, f.timestamp_max, f.flags) = (ts(12), ts(14), QueryFilterFlags::REVERSED)
    });
    assert_eq!(query_transfers(&ledger, &reversed_range), [14, 13, 12]);
    let one = query(|f| (f.limit, f.code) = (1, 2));
    assert_eq!(query_transfers(&ledger, &one), [12]);
}

#[test]
fn invalid_query_filters_return_nothing() {
    let ledger = fixture();
    let cases: Vec<(&str, QueryFilter)> = vec![
        ("limit zero", query(|f| f.limit = 0)),
        (
            "reserved flag bit",
            query(|f| f.flags = QueryFilterFlags(1 << 1)),
        ),
        (
            "top flag bit",
            query(|f| f.flags = QueryFilterFlags(1 << 31 | 1)),
        ),
        ("reserved byte", query(|f| f.reserved[5] = 1)),
        (
            "min after max",
            query(|f| (f.timestamp_min, f.timestamp_max) = (ts(14), ts(12))),
        ),
        (
            "min out of range",
            query(|f| f.timestamp_min = TIMESTAMP_MAX + 1),
        ),
        (
            "max out of range",
            query(|f| f.timestamp_max = TIMESTAMP_MAX + 1),
        ),
    ];
    for (name, f) in cases {
        assert_eq!(query_accounts(&ledger, &f), Vec::<u128>::new(), "{name}");
        assert_eq!(query_transfers(&ledger, &f), Vec::<u128>::new(), "{name}");
    }
}

#[test]
fn results_are_capped_at_one_message() {
    let mut ledger = new_ledger();
    setup_accounts(
        &mut ledger,
        NOW,
        &[account(1, LEDGER, CODE), account(2, LEDGER, CODE)],
    );
    let count = QUERY_RESULTS_MAX + 1;
    let transfers: Vec<Transfer> = (0..count as u128)
        .map(|i| transfer(100 + i, 1, 2, 1, LEDGER, CODE))
        .collect();
    for (batch, now) in transfers.chunks(BATCH_EVENTS_MAX).zip([10_000, 20_000]) {
        setup_transfers(&mut ledger, now, batch);
    }
    let all = query(|f| f.limit = u32::MAX);
    assert_eq!(query_transfers(&ledger, &all).len(), QUERY_RESULTS_MAX);
    let of_1 = AccountFilter {
        limit: u32::MAX,
        ..filter(1, both())
    };
    let ids = account_transfers(&ledger, &of_1);
    assert_eq!(ids.len(), QUERY_RESULTS_MAX);
    assert_eq!(ids.first(), Some(&100));
    let newest = AccountFilter {
        flags: both() | REVERSED,
        ..of_1
    };
    assert_eq!(
        account_transfers(&ledger, &newest).first(),
        Some(&(100 + count as u128 - 1))
    );
    assert_balanced(&ledger);
}
