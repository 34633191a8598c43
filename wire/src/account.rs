//! The 128-byte account record.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{AccountFlags, AccountId};

/// An account: its identity and its four balances. The layout is TigerBeetle's `Account`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Account {
    pub id: AccountId,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    /// Must be zero.
    pub reserved: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: AccountFlags,
    /// Assigned by the cluster (nanoseconds), unless `flags.imported`.
    pub timestamp: u64,
}

const _: () = assert!(std::mem::size_of::<Account>() == 128);
const _: () = assert!(std::mem::align_of::<Account>() == 16);

impl Account {
    /// Whether debiting `amount` more would take debits (pending and posted) above posted
    /// credits on an account that forbids it. Callers have ruled out overflow first.
    pub fn debits_exceed_credits(&self, amount: u128) -> bool {
        self.flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && self.debits_pending + self.debits_posted + amount > self.credits_posted
    }

    /// Whether crediting `amount` more would take credits (pending and posted) above posted
    /// debits on an account that forbids it. Callers have ruled out overflow first.
    pub fn credits_exceed_debits(&self, amount: u128) -> bool {
        self.flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && self.credits_pending + self.credits_posted + amount > self.debits_posted
    }
}
