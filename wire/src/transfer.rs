//! The 128-byte transfer record.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{AccountId, TransferFlags, TransferId};

/// A transfer of `amount` from the debit account to the credit account of one ledger.
/// The layout is TigerBeetle's `Transfer`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Transfer {
    pub id: TransferId,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: u128,
    /// For a post or void: the pending transfer it resolves. Zero otherwise.
    pub pending_id: TransferId,
    pub user_data_128: u128,
    pub user_data_64: u64,
    pub user_data_32: u32,
    /// Seconds after which a pending transfer expires; zero for never.
    pub timeout: u32,
    pub ledger: u32,
    pub code: u16,
    pub flags: TransferFlags,
    /// Assigned by the cluster (nanoseconds), unless `flags.imported`.
    pub timestamp: u64,
}

const _: () = assert!(std::mem::size_of::<Transfer>() == 128);
const _: () = assert!(std::mem::align_of::<Transfer>() == 16);

/// Nanoseconds in a second, for timeouts.
const NS_PER_S: u64 = 1_000_000_000;

impl Transfer {
    /// The timeout in nanoseconds; `u32::MAX` seconds fits a u64 with room to spare.
    pub fn timeout_ns(&self) -> u64 {
        u64::from(self.timeout) * NS_PER_S
    }
}
