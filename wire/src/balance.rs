//! Balances of an account at one moment.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::Account;

/// The 128-byte record `get_account_balances` returns: an account's balances right after the
/// transfer with the same `timestamp`. The layout is TigerBeetle's `AccountBalance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AccountBalance {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub timestamp: u64,
    pub reserved: [u8; 56],
}

const _: () = assert!(std::mem::size_of::<AccountBalance>() == 128);

impl AccountBalance {
    pub fn new(balances: &Balances, timestamp: u64) -> AccountBalance {
        AccountBalance {
            debits_pending: balances.debits_pending,
            debits_posted: balances.debits_posted,
            credits_pending: balances.credits_pending,
            credits_posted: balances.credits_posted,
            timestamp,
            reserved: [0; 56],
        }
    }
}

/// The four balances of an account, without identity: 64 bytes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Balances {
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

const _: () = assert!(std::mem::size_of::<Balances>() == 64);

impl Balances {
    pub fn of(account: &Account) -> Balances {
        Balances {
            debits_pending: account.debits_pending,
            debits_posted: account.debits_posted,
            credits_pending: account.credits_pending,
            credits_posted: account.credits_posted,
        }
    }
}
