//! Imported events carry their own past timestamps, which can be older than the timestamp an
//! event gets from its place in the batch. A post of a pending transfer imported earlier in the
//! same batch must then be judged, not trip an assertion.

use kassa_shard::{Ledger, LedgerConfig, PendingStatus};
use kassa_wire::{
    Account, AccountFlags, AccountId, CreateAccountStatus, CreateTransferStatus, Transfer,
    TransferFlags, TransferId,
};

fn account(id: u128, timestamp: u64) -> Account {
    Account {
        id: AccountId(id),
        ledger: 1,
        code: 1,
        flags: AccountFlags::IMPORTED,
        timestamp,
        ..Account::default()
    }
}

#[test]
fn post_of_a_pending_imported_in_the_same_batch() {
    let mut ledger = Ledger::new(LedgerConfig::default());
    let now = 1_000_000;
    let mut results = Vec::new();
    ledger.create_accounts(now, &[account(1, 10), account(2, 20)], &mut results);
    assert!(results
        .iter()
        .all(|r| r.status == CreateAccountStatus::Created));

    // The account batch (2 events at `now`) ends at now + 2. A batch of 10 at `now` then ends
    // at now + 12 and gives its events now + 3 ..= now + 12: the post (index 1) sits at now + 4,
    // before the pending transfer's own imported timestamp, now + 9.
    let pending = Transfer {
        id: TransferId(100),
        debit_account_id: AccountId(1),
        credit_account_id: AccountId(2),
        amount: 50,
        ledger: 1,
        code: 1,
        flags: TransferFlags::IMPORTED | TransferFlags::PENDING,
        timestamp: now + 9,
        ..Transfer::default()
    };
    let post = Transfer {
        id: TransferId(101),
        pending_id: TransferId(100),
        amount: 30,
        flags: TransferFlags::IMPORTED | TransferFlags::POST_PENDING_TRANSFER,
        timestamp: now + 10,
        ..Transfer::default()
    };
    let padding = Transfer {
        id: TransferId(0),
        timestamp: now + 11,
        ..post
    };
    let mut batch = vec![pending, post];
    batch.resize(10, padding);
    let mut results = Vec::new();
    ledger.create_transfers(now, &batch, &mut results);
    let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
    let mut expected = vec![CreateTransferStatus::Created; 2];
    expected.resize(10, CreateTransferStatus::IdMustNotBeZero);
    assert_eq!(statuses, expected);
    assert_eq!(results[1].timestamp, now + 10);
    assert_eq!(
        ledger.pending_status(TransferId(100)),
        Ok(Some(PendingStatus::Posted))
    );
    let debit = ledger.account(AccountId(1)).expect("account 1");
    assert_eq!((debit.debits_pending, debit.debits_posted), (0, 30));
    ledger.validate();
}
