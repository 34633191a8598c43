//! Query filters: `AccountFilter` (128 bytes) for `get_account_transfers` and
//! `get_account_balances`, and `QueryFilter` (64 bytes) for `query_accounts` and
//! `query_transfers`. A zero field means "no filter on this field".

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::AccountId;

/// Flags of an [`AccountFilter`]: which side of the account to include, and the order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct AccountFilterFlags(pub u32);

impl AccountFilterFlags {
    /// Include transfers that debit the account.
    pub const DEBITS: Self = Self(1 << 0);
    /// Include transfers that credit the account.
    pub const CREDITS: Self = Self(1 << 1);
    /// Newest first.
    pub const REVERSED: Self = Self(1 << 2);
    /// The bits no flag is defined for.
    pub const RESERVED_MASK: u32 = !0b111;

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for AccountFilterFlags {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// Selects the transfers (or balances) of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AccountFilter {
    pub account_id: AccountId,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub code: u16,
    /// Must be zero.
    pub reserved: [u8; 58],
    /// Inclusive lower bound; zero for none.
    pub timestamp_min: u64,
    /// Inclusive upper bound; zero for none.
    pub timestamp_max: u64,
    /// At most this many results; must not be zero.
    pub limit: u32,
    pub flags: AccountFilterFlags,
}

const _: () = assert!(std::mem::size_of::<AccountFilter>() == 128);

impl AccountFilter {
    /// A filter on `account_id` with every optional field off.
    pub fn new(account_id: AccountId, limit: u32, flags: AccountFilterFlags) -> AccountFilter {
        AccountFilter {
            account_id,
            user_data_128: 0,
            user_data_64: 0,
            user_data_32: 0,
            code: 0,
            reserved: [0; 58],
            timestamp_min: 0,
            timestamp_max: 0,
            limit,
            flags,
        }
    }
}

/// Flags of a [`QueryFilter`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(transparent)]
pub struct QueryFilterFlags(pub u32);

impl QueryFilterFlags {
    /// Newest first.
    pub const REVERSED: Self = Self(1 << 0);
    /// The bits no flag is defined for.
    pub const RESERVED_MASK: u32 = !0b1;

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Selects accounts or transfers by their user data, ledger, code and timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct QueryFilter {
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    pub ledger: u32,
    pub code: u16,
    /// Must be zero.
    pub reserved: [u8; 6],
    /// Inclusive lower bound; zero for none.
    pub timestamp_min: u64,
    /// Inclusive upper bound; zero for none.
    pub timestamp_max: u64,
    /// At most this many results; must not be zero.
    pub limit: u32,
    pub flags: QueryFilterFlags,
}

const _: () = assert!(std::mem::size_of::<QueryFilter>() == 64);

impl QueryFilter {
    /// A filter with every optional field off.
    pub fn new(limit: u32, flags: QueryFilterFlags) -> QueryFilter {
        QueryFilter {
            user_data_128: 0,
            user_data_64: 0,
            user_data_32: 0,
            ledger: 0,
            code: 0,
            reserved: [0; 6],
            timestamp_min: 0,
            timestamp_max: 0,
            limit,
            flags,
        }
    }
}
