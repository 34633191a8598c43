//! Helpers of this crate's unit tests: a temporary directory removed on drop, an io_uring
//! runtime, a ledger with transfers, and a ledger's snapshot bytes for comparisons. Test-only.

use std::path::{Path, PathBuf};

use kassa_shard::{Ledger, LedgerConfig};
use kassa_wire::{Account, AccountFlags, AccountId, Transfer, TransferId};

/// A fresh directory under the system's temporary directory, removed on drop.
pub(crate) struct TestDir(PathBuf);

impl TestDir {
    pub(crate) fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("kassa-raft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test directory");
        TestDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A monoio runtime on io_uring with timers.
pub(crate) fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
}

/// The ledger's snapshot bytes: equal bytes, equal state.
pub(crate) fn snapshot_of(ledger: &Ledger) -> Vec<u8> {
    let mut bytes = Vec::new();
    ledger.snapshot(&mut bytes);
    bytes
}

/// Creates four history accounts, ids 1 to 4, in ledger 1.
pub(crate) fn create_history_accounts(ledger: &mut Ledger) {
    let accounts: Vec<Account> = (1..=4)
        .map(|id| Account {
            id: AccountId(id),
            ledger: 1,
            code: 1,
            flags: AccountFlags::HISTORY,
            ..Account::default()
        })
        .collect();
    ledger.create_accounts(1_000, &accounts, &mut Vec::new());
}

/// A ledger of four history accounts and `transfers` transfers among them, in batches of up to
/// 1,000; the same count always gives the same ledger, and more extends fewer.
pub(crate) fn ledger_with_transfers(transfers: u128) -> Ledger {
    let mut ledger = Ledger::new(LedgerConfig::default());
    create_history_accounts(&mut ledger);
    for (batch, first) in (0..transfers).step_by(1_000).enumerate() {
        let events: Vec<Transfer> = (first..transfers.min(first + 1_000))
            .map(|at| {
                let id = 1 + at;
                Transfer {
                    id: TransferId(id),
                    debit_account_id: AccountId(1 + id % 4),
                    credit_account_id: AccountId(1 + (id + 1) % 4),
                    amount: 1,
                    ledger: 1,
                    code: 1,
                    ..Transfer::default()
                }
            })
            .collect();
        ledger.create_transfers(2_000 + batch as u64, &events, &mut Vec::new());
    }
    ledger
}
