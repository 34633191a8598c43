//! Seeded workloads for the ledger micro-benchmark.

use kassa_shard::Ledger;
use kassa_wire::{Account, AccountFlags, AccountId, CreateAccountStatus, Transfer, TransferId};

/// The ledger all benchmark accounts and transfers live on.
pub const LEDGER: u32 = 1;
const CODE: u16 = 1;

/// A small, fast, seeded generator (SplitMix64): the workload must not depend on the OS.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (bound > 0); the slight modulo bias does not matter here.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        self.next_u64() % bound
    }
}

/// The id of benchmark account `index` (1-based ids, spread over the id space).
pub fn account_id(index: u64) -> AccountId {
    AccountId(u128::from(index + 1) << 64 | u128::from(index.wrapping_mul(0x9E37_79B9)))
}

/// Creates `count` accounts on [`LEDGER`], in batches the ledger accepts.
pub fn create_accounts(ledger: &mut Ledger, count: u64, now: u64) {
    let mut results = Vec::new();
    let accounts: Vec<Account> = (0..count)
        .map(|index| Account {
            id: account_id(index),
            ledger: LEDGER,
            code: CODE,
            flags: AccountFlags::empty(),
            ..Account::default()
        })
        .collect();
    for batch in accounts.chunks(kassa_wire::BATCH_EVENTS_MAX) {
        ledger.create_accounts(now, batch, &mut results);
        assert!(results
            .iter()
            .all(|r| r.status == CreateAccountStatus::Created));
    }
}

/// Fills `batch` with `size` transfers between random distinct accounts of `accounts_count`,
/// with ids `first_id..first_id + size`.
pub fn transfers_random(
    random: &mut SplitMix64,
    accounts_count: u64,
    first_id: u128,
    size: usize,
    batch: &mut Vec<Transfer>,
) {
    assert!(accounts_count >= 2);
    batch.clear();
    for offset in 0..size {
        let debit = random.below(accounts_count);
        let credit = (debit + 1 + random.below(accounts_count - 1)) % accounts_count;
        batch.push(Transfer {
            id: TransferId(first_id + offset as u128),
            debit_account_id: account_id(debit),
            credit_account_id: account_id(credit),
            amount: u128::from(1 + random.below(1_000)),
            ledger: LEDGER,
            code: CODE,
            ..Transfer::default()
        });
    }
}
