//! The change stream and snapshots. The stream: one event per created account or transfer and
//! per expiry, in order, with dense sequence numbers and both accounts' balances right after;
//! failed events and rolled-back chains emit nothing; `release_change_events` forgets a prefix.
//! Snapshots: snapshot -> restore -> byte-identical snapshot and identical future results; the
//! same history under different hash seeds gives byte-identical snapshots; an empty ledger
//! round-trips; damaged snapshots are refused with the matching `SnapshotError`.

mod common;

use common::*;
use kassa_shard::{Ledger, LedgerConfig, PendingStatus, SnapshotError, SNAPSHOT_FORMAT_VERSION};
use kassa_wire::{
    AccountFlags, AccountId, Balances, ChangeEvent, ChangeKind, CreateTransferStatus as Status,
    QueryFilter, QueryFilterFlags, Transfer, TransferFlags, TransferId, TIMESTAMP_MAX,
};

const NOW: u64 = 1_000;
const T1: u64 = 10_000;
const T2: u64 = 20_000;
const HEADER: usize = 32;

fn t(id: u128, dr: u128, cr: u128, amount: u128) -> Transfer {
    transfer(id, dr, cr, amount, LEDGER, CODE)
}

fn ledger_with_two_accounts() -> Ledger {
    let mut ledger = new_ledger();
    let accounts = [
        account(1, LEDGER, CODE).with(AccountFlags::HISTORY),
        account(2, LEDGER, CODE),
    ];
    setup_accounts(&mut ledger, NOW, &accounts);
    ledger
}

/// The newest retained change event.
fn last_event(ledger: &Ledger) -> ChangeEvent {
    *all_change_events(ledger).last().expect("a change event")
}

/// Checks that the newest event records `id` as stored, with both accounts' current balances.
fn assert_last_event_is_transfer(ledger: &Ledger, id: u128, kind: ChangeKind, timestamp: u64) {
    let event = last_event(ledger);
    let stored = transfer_of(ledger, id);
    assert_eq!(event.kind(), Some(kind));
    assert_eq!(event.sequence, ledger.change_sequence_next() - 1);
    assert_eq!(event.timestamp, timestamp);
    assert_eq!(event.transfer_record(), Some(stored));
    assert_eq!(event.account(), None);
    assert_eq!(
        event.debit_account,
        Balances::of(&account_of(ledger, stored.debit_account_id.0))
    );
    assert_eq!(
        event.credit_account,
        Balances::of(&account_of(ledger, stored.credit_account_id.0))
    );
    assert_eq!(event.reserved, [0; 15]);
}

// The change stream.

#[test]
fn accounts_and_transfers_are_recorded_in_order_with_balances_after() {
    let mut ledger = ledger_with_two_accounts();
    let events = all_change_events(&ledger);
    assert_eq!(events.len(), 2);
    for (event, id) in events.iter().zip([1, 2]) {
        assert_eq!(event.kind(), Some(ChangeKind::AccountCreated));
        assert_eq!(event.account(), Some(account_of(&ledger, id)));
        assert_eq!(event.timestamp, account_of(&ledger, id).timestamp);
        assert_eq!(event.transfer_record(), None);
        assert_eq!(
            (event.debit_account, event.credit_account),
            Default::default()
        );
    }
    setup_transfers(&mut ledger, T1, &[t(50, 1, 2, 10)]);
    assert_last_event_is_transfer(&ledger, 50, ChangeKind::TransferCreated, T1 + 1);
    setup_transfers(&mut ledger, T1, &[pending(51, 2, 1, 7, 0)]);
    assert_last_event_is_transfer(&ledger, 51, ChangeKind::TransferCreated, T1 + 2);
    assert_eq!(last_event(&ledger).credit_account.credits_pending, 7);
    setup_transfers(&mut ledger, T1, &[post(52, 51, 3)]);
    assert_last_event_is_transfer(&ledger, 52, ChangeKind::TransferCreated, T1 + 3);
    assert_eq!(
        last_event(&ledger).debit_account,
        Balances::of(&account_of(&ledger, 2))
    );
    let sequences: Vec<u64> = all_change_events(&ledger)
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    assert_eq!(ledger.change_sequence_next(), 6);
    assert_eq!(ledger.change_sequence_first(), 1);
}

#[test]
fn a_batch_records_its_events_in_batch_order() {
    let mut ledger = ledger_with_two_accounts();
    let events = [t(50, 1, 2, 1), t(51, 2, 1, 2), t(52, 1, 2, 3)];
    setup_transfers(&mut ledger, T1, &events);
    let recorded: Vec<(u64, u128, u128)> = all_change_events(&ledger)[2..]
        .iter()
        .map(|e| {
            let t = e.transfer_record().expect("a transfer");
            (
                e.timestamp,
                t.id.0,
                e.debit_account.debits_posted + e.debit_account.credits_posted,
            )
        })
        .collect();
    // Balances are those right after each transfer, not at the end of the batch.
    assert_eq!(
        recorded,
        [(T1 + 1, 50, 1), (T1 + 2, 51, 3), (T1 + 3, 52, 6)]
    );
}

#[test]
fn failures_and_rolled_back_chains_emit_nothing() {
    let mut ledger = ledger_with_two_accounts();
    setup_transfers(&mut ledger, T1, &[t(50, 1, 2, 10)]);
    let next = ledger.change_sequence_next();
    let linked = TransferFlags::LINKED;
    let events = [
        t(60, 1, 2, 1).with(linked),
        pending(61, 1, 2, 1, 5).with(linked),
        t(62, 1, 1, 1),
        t(50, 1, 2, 10),
        t(63, 99, 2, 1),
    ];
    let results = create_transfers(&mut ledger, T2, &events);
    let expected = [
        Status::LinkedEventFailed,
        Status::LinkedEventFailed,
        Status::AccountsMustBeDifferent,
        Status::Exists,
        Status::DebitAccountNotFound,
    ];
    assert_eq!(transfer_statuses(&results), expected);
    assert_eq!(ledger.change_sequence_next(), next, "nothing was recorded");
    // The next change takes the next number: no gap where the chain was.
    setup_transfers(&mut ledger, T2, &[t(64, 2, 1, 1)]);
    assert_eq!(last_event(&ledger).sequence, next);
    let sequences: Vec<u64> = all_change_events(&ledger)
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(sequences, (1..=next).collect::<Vec<_>>());
    let mut results = Vec::new();
    ledger.create_accounts(
        T2,
        &[account(1, LEDGER, CODE).with(AccountFlags::HISTORY)],
        &mut results,
    );
    assert_eq!(
        ledger.change_sequence_next(),
        next + 1,
        "an existing account emits nothing"
    );
}

#[test]
fn a_successful_chain_emits_every_event() {
    let mut ledger = ledger_with_two_accounts();
    let linked = TransferFlags::LINKED;
    let events = [
        pending(51, 1, 2, 9, 0).with(linked),
        post(52, 51, 4).with(linked),
        t(53, 2, 1, 1),
    ];
    setup_transfers(&mut ledger, T1, &events);
    let ids: Vec<u128> = all_change_events(&ledger)[2..]
        .iter()
        .map(|e| e.transfer_record().expect("a transfer").id.0)
        .collect();
    assert_eq!(ids, [51, 52, 53]);
}

#[test]
fn expiry_is_recorded_with_the_released_balances() {
    let mut ledger = ledger_with_two_accounts();
    let closing = pending(51, 1, 2, 9, 1).with(TransferFlags::CLOSING_DEBIT);
    setup_transfers(&mut ledger, T1, &[closing]);
    let deadline = transfer_of(&ledger, 51).timestamp + NS;
    let now = deadline + 500;
    assert_eq!(ledger.expire_pending_transfers(now), 1);
    let event = last_event(&ledger);
    assert_eq!(event.kind(), Some(ChangeKind::PendingTransferExpired));
    assert_eq!(event.timestamp, now + 1);
    assert_eq!(
        event.transfer_record(),
        Some(transfer_of(&ledger, 51)),
        "the pending transfer"
    );
    assert_eq!(event.debit_account, Balances::of(&account_of(&ledger, 1)));
    assert_eq!(event.debit_account, Balances::default(), "released");
    assert_eq!(event.credit_account, Balances::default());
    assert!(!is_closed(&ledger, 1));
    assert_eq!(status_of(&ledger, 51), PendingStatus::Expired);
}

#[test]
fn release_forgets_a_prefix_of_the_stream() {
    let mut ledger = ledger_with_two_accounts();
    setup_transfers(
        &mut ledger,
        T1,
        &[t(50, 1, 2, 1), t(51, 1, 2, 1), t(52, 1, 2, 1)],
    );
    assert_eq!(
        (
            ledger.change_sequence_first(),
            ledger.change_sequence_next()
        ),
        (1, 6)
    );
    let read = |ledger: &Ledger, from: u64, limit: usize| -> Vec<u64> {
        let mut out = Vec::new();
        ledger
            .change_events(from, limit, &mut out)
            .expect("change events");
        out.iter().map(|e| e.sequence).collect()
    };
    assert_eq!(read(&ledger, 2, 2), [2, 3]);
    assert_eq!(read(&ledger, 5, 10), [5]);
    assert_eq!(read(&ledger, 6, 10), Vec::<u64>::new());
    assert_eq!(read(&ledger, 100, 10), Vec::<u64>::new());
    assert_eq!(read(&ledger, 1, 0), Vec::<u64>::new());
    ledger.release_change_events(2);
    assert_eq!(
        (
            ledger.change_sequence_first(),
            ledger.change_sequence_next()
        ),
        (3, 6)
    );
    assert_eq!(read(&ledger, 0, 10), [3, 4, 5], "released events are gone");
    assert_eq!(read(&ledger, 4, 10), [4, 5]);
    // Releasing what is already released changes nothing.
    let before = state_of(&ledger);
    ledger.release_change_events(1);
    ledger.release_change_events(2);
    assert_eq!(state_of(&ledger), before);
    // Releasing beyond the end releases what exists; later events are still kept.
    ledger.release_change_events(1_000);
    assert_eq!(
        (
            ledger.change_sequence_first(),
            ledger.change_sequence_next()
        ),
        (6, 6)
    );
    assert_eq!(read(&ledger, 0, 10), Vec::<u64>::new());
    setup_transfers(&mut ledger, T2, &[t(53, 1, 2, 1)]);
    assert_eq!(read(&ledger, 0, 10), [6]);
    assert_eq!(ledger.change_sequence_first(), 6);
    ledger.validate();
    // Release is state: it survives a snapshot.
    let restored = restore(&snapshot_of(&ledger));
    assert_eq!(state_of(&restored), state_of(&ledger));
    assert_eq!(restored.change_sequence_first(), 6);
}

// Snapshots.

fn restore(bytes: &[u8]) -> Ledger {
    Ledger::restore(LedgerConfig::default(), bytes).expect("the snapshot restores")
}

fn restore_err(bytes: &[u8]) -> SnapshotError {
    match Ledger::restore(LedgerConfig::default(), bytes) {
        Ok(_) => panic!("a damaged snapshot was restored"),
        Err(error) => error,
    }
}

/// A history touching every part of the state: history and limited accounts on two ledgers,
/// single-phase, pending, posted, voided, expired and still-pending transfers (some with
/// timeouts), closed accounts, burnt ids, a rolled-back chain and a released stream prefix.
fn history(ledger: &mut Ledger) {
    let mut accounts: Vec<_> = (1..=4).map(|id| account(id, LEDGER, CODE)).collect();
    accounts[0] = accounts[0].with(AccountFlags::HISTORY);
    accounts[3] =
        accounts[3].with(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::HISTORY);
    accounts.push(account(5, 2, 7));
    accounts.push(account(6, 2, 7).with(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS));
    create_accounts(ledger, NOW, &accounts);
    create_transfers(
        ledger,
        T1,
        &[t(10, 1, 2, 100), t(11, 2, 4, 50), t(12, 4, 3, 20)],
    );
    // Burnt ids, far apart so that hash order differs from id order.
    let burnt: Vec<Transfer> = (0..64u128)
        .map(|i| t(1_000 + i * 7_919, 99, 2, 1))
        .collect();
    create_transfers(ledger, T1, &burnt);
    let linked = TransferFlags::LINKED;
    create_transfers(
        ledger,
        T1,
        &[
            pending(20, 1, 3, 30, 1),
            pending(21, 2, 1, 40, 100),
            pending(22, 3, 4, 5, 0).with(TransferFlags::CLOSING_CREDIT),
            pending(23, 1, 2, 6, 50),
            transfer(24, 6, 5, 9, 2, 7),
            pending(27, 2, 3, 4, 1_000),
            t(25, 1, 2, 1).with(linked),
            t(26, 1, 1, 1),
        ],
    );
    create_transfers(
        ledger,
        T2,
        &[post(30, 21, 15), void(31, 23), t(32, 4, 1, 1_000)],
    );
    ledger.expire_pending_transfers(T2 + 2 * NS);
    ledger.release_change_events(3);
    assert_balanced(ledger);
}

/// What a ledger answers from here on, as text, to compare two ledgers' futures.
fn future(ledger: &mut Ledger) -> Vec<String> {
    let mut log = Vec::new();
    let now = T2 + 10 * NS;
    let events = [
        post(40, 21, MAX_AMOUNT),
        void(41, 22),
        t(1_000, 1, 2, 1),
        t(42, 4, 1, 10).with(TransferFlags::BALANCING_DEBIT),
        pending(43, 2, 3, 8, 1),
    ];
    log.push(format!("{:?}", create_transfers(ledger, now, &events)));
    log.push(format!(
        "expired {}",
        ledger.expire_pending_transfers(now + 5 * NS)
    ));
    log.push(format!("pulse {}", ledger.pulse_needed(now + 500 * NS)));
    let mut out = Vec::new();
    ledger
        .query_transfers(
            &QueryFilter::new(1_000, QueryFilterFlags::REVERSED),
            &mut out,
        )
        .expect("cold reads");
    log.push(format!("{out:?}"));
    log.push(format!("{:?}", all_change_events(ledger)));
    log.push(format!("{:?} {}", ledger.accounts(), ledger.timestamp()));
    log
}

const MAX_AMOUNT: u128 = u128::MAX;

fn history_ledger(hash_seed: u64) -> Ledger {
    let mut ledger = Ledger::new(LedgerConfig {
        hash_seed,
        ..LedgerConfig::default()
    });
    history(&mut ledger);
    ledger
}

#[test]
fn the_history_covers_every_part_of_the_state() {
    let ledger = history_ledger(0);
    assert!(ledger.transfer_id_failed(TransferId(1_000)));
    assert!(
        ledger.pulse_needed(u64::MAX / 2),
        "pending transfers with deadlines remain"
    );
    assert_eq!(status_of(&ledger, 20), PendingStatus::Expired);
    assert_eq!(status_of(&ledger, 21), PendingStatus::Posted);
    assert_eq!(status_of(&ledger, 22), PendingStatus::Pending);
    assert_eq!(status_of(&ledger, 23), PendingStatus::Voided);
    assert!(is_closed(&ledger, 4));
    assert!(
        !ledger.contains_transfer(TransferId(25)).unwrap(),
        "rolled back"
    );
    assert_eq!(ledger.change_sequence_first(), 4);
    assert!(
        ledger.transfer_id_failed(TransferId(32)),
        "refused by the closed account 4"
    );
    assert_eq!(status_of(&ledger, 27), PendingStatus::Pending);
}

#[test]
fn snapshot_restore_snapshot_is_byte_identical() {
    let ledger = history_ledger(0);
    let bytes = snapshot_of(&ledger);
    let restored = restore(&bytes);
    assert_eq!(snapshot_of(&restored), bytes);
    assert_eq!(state_of(&restored), state_of(&ledger));
    assert_eq!(restored.timestamp(), ledger.timestamp());
    assert!(
        restored.transfer_id_failed(TransferId(1_000)),
        "burnt ids survive"
    );
    restored.validate();
}

#[test]
fn a_restored_ledger_has_the_same_future() {
    let mut ledger = history_ledger(0);
    let mut restored = restore(&snapshot_of(&ledger));
    let expected = future(&mut ledger);
    assert_eq!(future(&mut restored), expected);
    assert!(
        expected[0].contains("IdAlreadyFailed"),
        "the burnt id is refused in both"
    );
    assert_eq!(snapshot_of(&restored), snapshot_of(&ledger));
    assert_balanced(&restored);
}

#[test]
fn different_hash_seeds_give_identical_snapshots() {
    let snapshots: Vec<Vec<u8>> = [0, 1, 0xDEAD_BEEF, u64::MAX]
        .into_iter()
        .map(|seed| snapshot_of(&history_ledger(seed)))
        .collect();
    for snapshot in &snapshots[1..] {
        assert!(
            snapshot == &snapshots[0],
            "snapshots differ between hash seeds"
        );
    }
    // Restoring under another seed changes nothing either.
    let restored = Ledger::restore(
        LedgerConfig {
            hash_seed: 42,
            ..LedgerConfig::default()
        },
        &snapshots[0],
    )
    .expect("restores");
    assert_eq!(restored.config().hash_seed, 42);
    assert_eq!(snapshot_of(&restored), snapshots[0]);
    let (mut a, mut b) = (history_ledger(7), restored);
    assert_eq!(future(&mut a), future(&mut b));
}

#[test]
fn an_empty_ledger_round_trips() {
    let empty = new_ledger();
    let bytes = snapshot_of(&empty);
    assert_eq!(&bytes[..8], b"KASSALDG");
    let mut restored = restore(&bytes);
    assert_eq!(snapshot_of(&restored), bytes);
    assert_eq!(
        (restored.timestamp(), restored.change_sequence_next()),
        (0, 1)
    );
    assert!(restored.accounts().is_empty() && restored.transfers().is_empty());
    let mut fresh = new_ledger();
    assert_eq!(
        future_from_scratch(&mut restored),
        future_from_scratch(&mut fresh)
    );
}

fn future_from_scratch(ledger: &mut Ledger) -> Vec<u8> {
    history(ledger);
    snapshot_of(ledger)
}

// Damaged snapshots.

/// Rewrites the header's body size and both checksums, as a writer of the damage would.
fn reseal(bytes: &mut [u8]) {
    let body_size = (bytes.len() - HEADER) as u64;
    bytes[16..24].copy_from_slice(&body_size.to_le_bytes());
    let body_checksum = crc32c::crc32c(&bytes[HEADER..]);
    bytes[24..28].copy_from_slice(&body_checksum.to_le_bytes());
    let header_checksum = crc32c::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&header_checksum.to_le_bytes());
}

fn history_snapshot() -> Vec<u8> {
    snapshot_of(&history_ledger(0))
}

#[test]
fn bad_magic_is_refused() {
    let bytes = history_snapshot();
    for at in 0..8 {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x20;
        assert_eq!(
            restore_err(&damaged),
            SnapshotError::BadMagic,
            "magic byte {at}"
        );
    }
    assert_eq!(restore_err(&[]), SnapshotError::BadMagic);
    assert_eq!(restore_err(b"not a snapshot"), SnapshotError::BadMagic);
}

#[test]
fn a_flipped_header_byte_is_refused() {
    let bytes = history_snapshot();
    for at in 8..HEADER {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x01;
        assert_eq!(
            restore_err(&damaged),
            SnapshotError::HeaderChecksum,
            "header byte {at}"
        );
    }
}

#[test]
fn another_version_is_refused() {
    for version in [0, SNAPSHOT_FORMAT_VERSION + 1, u32::MAX] {
        let mut damaged = history_snapshot();
        damaged[8..12].copy_from_slice(&version.to_le_bytes());
        reseal(&mut damaged);
        let expected = SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        };
        assert_eq!(restore_err(&damaged), expected);
    }
}

#[test]
fn a_truncated_or_padded_snapshot_is_refused() {
    let bytes = history_snapshot();
    let body = (bytes.len() - HEADER) as u64;
    for cut in [1, 7, bytes.len() / 2, bytes.len() - HEADER] {
        let damaged = &bytes[..bytes.len() - cut];
        let expected = SnapshotError::Size {
            expected: body,
            actual: body - cut as u64,
        };
        assert_eq!(restore_err(damaged), expected, "cut {cut}");
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert_eq!(
        restore_err(&padded),
        SnapshotError::Size {
            expected: body,
            actual: body + 1
        }
    );
}

#[test]
fn a_flipped_body_byte_is_refused() {
    let bytes = history_snapshot();
    let len = bytes.len();
    for at in [
        HEADER,
        HEADER + 9,
        HEADER + 100,
        len / 3,
        len / 2,
        2 * len / 3,
        len - 200,
        len - 1,
    ] {
        for mask in [0x01, 0x80] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            assert_eq!(
                restore_err(&damaged),
                SnapshotError::BodyChecksum,
                "byte {at} ^ {mask:#x}"
            );
        }
    }
}

/// Offsets in a snapshot body: clock, sequence, account count, then the first account.
const ACCOUNTS_COUNT: usize = HEADER + 16;
const FIRST_ACCOUNT: usize = HEADER + 24;

#[test]
fn a_resealed_body_that_breaks_an_invariant_is_refused() {
    // The first account's debits_posted (offset 32 in the record) grows by one: the books no
    // longer balance.
    let mut damaged = history_snapshot();
    damaged[FIRST_ACCOUNT + 32] ^= 0x01;
    reseal(&mut damaged);
    assert!(matches!(
        restore_err(&damaged),
        SnapshotError::Inconsistent(_)
    ));
    // The first account's id becomes zero.
    let mut damaged = history_snapshot();
    damaged[FIRST_ACCOUNT..FIRST_ACCOUNT + 16].fill(0);
    reseal(&mut damaged);
    assert!(matches!(
        restore_err(&damaged),
        SnapshotError::Inconsistent(_)
    ));
    // The ledger's clock goes back before its records.
    let mut damaged = history_snapshot();
    damaged[HEADER..HEADER + 8].copy_from_slice(&1u64.to_le_bytes());
    reseal(&mut damaged);
    assert!(matches!(
        restore_err(&damaged),
        SnapshotError::Inconsistent(_)
    ));
}

#[test]
fn a_resealed_body_with_a_bad_layout_is_refused() {
    let malformed = |bytes: &[u8]| matches!(restore_err(bytes), SnapshotError::Malformed { .. });
    // A count larger than the bytes left.
    let mut damaged = history_snapshot();
    damaged[ACCOUNTS_COUNT..ACCOUNTS_COUNT + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal(&mut damaged);
    assert!(malformed(&damaged), "huge account count");
    // Trailing bytes after the change events.
    let mut damaged = history_snapshot();
    damaged.extend_from_slice(&[0; 8]);
    reseal(&mut damaged);
    assert!(malformed(&damaged), "trailing bytes");
    // Cut inside the change events, with the header agreeing.
    let mut damaged = history_snapshot();
    damaged.truncate(damaged.len() - 100);
    reseal(&mut damaged);
    assert!(malformed(&damaged), "records cut short");
}

#[test]
fn a_resealed_unknown_two_phase_status_is_refused() {
    let ledger = history_ledger(0);
    let mut bytes = snapshot_of(&ledger);
    // Statuses follow the transfers: clock, sequence, account count and records, transfer
    // count and records.
    let accounts = ledger.accounts().len();
    let statuses = HEADER + 24 + accounts * 128 + 8 + ledger.transfers().len() * 128;
    assert_eq!(
        bytes[statuses],
        PendingStatus::None as u8,
        "transfer 10 is single-phase"
    );
    bytes[statuses] = 9;
    reseal(&mut bytes);
    assert!(matches!(
        restore_err(&bytes),
        SnapshotError::Malformed { .. }
    ));
    // A known status that contradicts the record is an inconsistency.
    let mut bytes = snapshot_of(&ledger);
    bytes[statuses] = PendingStatus::Pending as u8;
    reseal(&mut bytes);
    assert!(matches!(
        restore_err(&bytes),
        SnapshotError::Inconsistent(_)
    ));
}

#[test]
fn a_resealed_clock_beyond_timestamp_max_is_refused() {
    // Every timestamp is at most TIMESTAMP_MAX; a restored ledger past it could not take
    // another write (`batch_timestamp_end` asserts), so restore must refuse it.
    let mut damaged = history_snapshot();
    damaged[HEADER..HEADER + 8].copy_from_slice(&(TIMESTAMP_MAX + 1).to_le_bytes());
    reseal(&mut damaged);
    let result = Ledger::restore(LedgerConfig::default(), &damaged);
    assert!(
        result.is_err(),
        "a ledger clock beyond TIMESTAMP_MAX was accepted"
    );
}

#[test]
fn a_resealed_pending_transfer_beyond_timestamp_max_is_refused_without_panicking() {
    // A pending transfer with a timeout, its timestamp (offset 120 in the record) and the
    // ledger clock set near u64::MAX: restore must answer an error, not overflow computing
    // the deadline.
    let mut ledger = ledger_with_two_accounts();
    setup_transfers(&mut ledger, T1, &[pending(9, 1, 2, 1, 10)]);
    let mut damaged = snapshot_of(&ledger);
    damaged[HEADER..HEADER + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let timestamp = HEADER + 24 + 2 * 128 + 8 + 120;
    damaged[timestamp..timestamp + 8].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
    reseal(&mut damaged);
    let result = std::panic::catch_unwind(|| Ledger::restore(LedgerConfig::default(), &damaged));
    let result = result.expect("restore must not panic on a resealed snapshot");
    assert!(
        result.is_err(),
        "a pending transfer beyond TIMESTAMP_MAX was accepted"
    );
}

#[test]
fn snapshots_restore_account_lookup() {
    let ledger = history_ledger(0);
    let restored = restore(&snapshot_of(&ledger));
    for a in ledger.accounts() {
        assert_eq!(restored.account(a.id), Some(a));
    }
    assert_eq!(restored.account(AccountId(99)), None);
}

/// A partition's id directory entries are state: the log's `Claim` and `Settle` entries change
/// them, snapshots carry them (and their answers after a restore are the same), and a version 3
/// snapshot, from before the directory, restores with an empty one.
#[test]
fn the_id_directory_is_in_the_snapshot_and_a_version_3_snapshot_has_none() {
    use kassa_shard::directory::{ClaimAnswer, DirectoryCommand, IdKind, Owner, Verdict};
    use kassa_shard::{partition_of, Command, Reply};
    let config = |partition| LedgerConfig {
        partition,
        partitions: 4,
        hash_seed: 3,
        ..LedgerConfig::default()
    };
    let mut ledger = Ledger::new(config(2));
    let ids: Vec<u128> = (1u128..)
        .filter(|id| partition_of(*id, 4) == 2)
        .take(4)
        .collect();
    let claim = |claimant, ids: &[u128]| Command::Directory {
        kind: IdKind::Transfer,
        command: Box::new(DirectoryCommand::Claim {
            claimant,
            round: 1,
            priority: u64::from(claimant),
            ids: ids.to_vec(),
        }),
    };
    let granted = Reply::Directory(vec![ClaimAnswer::Granted; 4]);
    assert_eq!(ledger.apply(claim(1, &ids)), granted);
    let contested = ClaimAnswer::Contested {
        holder: 1,
        round: 1,
    };
    assert_eq!(
        ledger.apply(claim(3, &ids[..1])),
        Reply::Directory(vec![contested])
    );
    let settle = Command::Directory {
        kind: IdKind::Transfer,
        command: Box::new(DirectoryCommand::Settle {
            id: ids[0],
            holder: 1,
            holder_round: 1,
            verdict: Verdict::Holds,
            claimant: 3,
            round: 1,
        }),
    };
    let owned = Reply::Directory(vec![ClaimAnswer::OwnedBy(1)]);
    assert_eq!(ledger.apply(settle), owned);
    let bytes = snapshot_of(&ledger);
    let mut restored = Ledger::restore(config(2), &bytes).expect("restores");
    assert_eq!(snapshot_of(&restored), bytes);
    let directory = restored.id_homes().directory(IdKind::Transfer);
    assert_eq!(directory.owner(ids[0]), Some(Owner::Confirmed(1)));
    assert_eq!(
        restored.id_homes().directory(IdKind::Account).owner(ids[0]),
        None
    );
    assert_eq!(restored.apply(claim(3, &ids[..1])), owned);
    // A snapshot restored on the wrong partition is refused, not taken in.
    assert!(Ledger::restore(config(1), &bytes).is_err());

    // Version 5: the directory's two counts without the lease buckets after each (64 of 13
    // bytes), then the foreign requests' two numbers; version 4 without the foreign requests;
    // version 3 without the directory either. Version 8 added the intents' three counts at
    // the end, and version 9 a count of forgotten ranges after the participant's and after
    // the home's.
    const INTENTS_EMPTY: usize = 5 * 8;
    let empty = snapshot_of(&Ledger::new(config(2)));
    let before_directory = &empty[..empty.len() - 2 * (8 + 64 * 13) - 16 - INTENTS_EMPTY];
    for (version, tail) in [(5u32, 32), (4, 16), (3, 0)] {
        let mut old = before_directory.to_vec();
        old.resize(old.len() + tail, 0);
        old[8..12].copy_from_slice(&version.to_le_bytes());
        reseal(&mut old);
        let restored = Ledger::restore(config(2), &old).expect("an older snapshot restores");
        assert!(restored.id_homes().directory(IdKind::Transfer).is_empty());
        assert_eq!(restored.foreign_requests(), &Default::default());
    }
    // Version 6 differs from 7 only in a foreign request's sealed reply: with none, the same;
    // 7 differs from 8 in the intents that follow.
    let before_intents = &empty[..empty.len() - INTENTS_EMPTY];
    for version in [6u32, 7] {
        let mut old = before_intents.to_vec();
        old[8..12].copy_from_slice(&version.to_le_bytes());
        reseal(&mut old);
        let restored =
            Ledger::restore(config(2), &old).expect("a version 6 or 7 snapshot restores");
        assert_eq!(snapshot_of(&restored), empty);
        assert_eq!(restored.holder(), None);
    }
    // Version 8: the three counts, no forgotten ranges.
    let mut version_8 = before_intents.to_vec();
    version_8.resize(version_8.len() + 3 * 8, 0);
    version_8[8..12].copy_from_slice(&8u32.to_le_bytes());
    reseal(&mut version_8);
    let restored = Ledger::restore(config(2), &version_8).expect("a version 8 snapshot restores");
    assert_eq!(snapshot_of(&restored), empty);
    // Version 9 without its intents is cut short: refused.
    let mut cut = before_intents.to_vec();
    reseal(&mut cut);
    assert!(Ledger::restore(config(2), &cut).is_err());
    assert_eq!(SNAPSHOT_FORMAT_VERSION, 9);
}
