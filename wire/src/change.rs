//! The change stream's record: what one partition did, in order, for subscribers
//! (notifications, the analytics export) to read. 288 bytes, fixed layout.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::{Account, Balances, Transfer};

/// What a [`ChangeEvent`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChangeKind {
    /// An account was created; `record` is the account.
    AccountCreated = 1,
    /// A transfer was created (single-phase, pending, post or void); `record` is the transfer as
    /// stored, the balances are both accounts' right after it.
    TransferCreated = 2,
    /// A pending transfer timed out; `record` is the pending transfer, the balances are both
    /// accounts' right after its amount was released.
    PendingTransferExpired = 3,
}

impl ChangeKind {
    pub const fn from_u8(value: u8) -> Option<ChangeKind> {
        match value {
            1 => Some(ChangeKind::AccountCreated),
            2 => Some(ChangeKind::TransferCreated),
            3 => Some(ChangeKind::PendingTransferExpired),
            _ => None,
        }
    }
}

/// One entry of a partition's change stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ChangeEvent {
    /// Per-partition sequence number: 1, 2, 3, … with no gaps.
    pub sequence: u64,
    /// The ledger timestamp of the change (the record's own timestamp, or the expiry's).
    pub timestamp: u64,
    /// A [`ChangeKind`] as its number.
    pub kind: u8,
    pub reserved: [u8; 15],
    /// The account or transfer, as its 128-byte record.
    pub record: [u8; 128],
    pub debit_account: Balances,
    pub credit_account: Balances,
}

const _: () = assert!(std::mem::size_of::<ChangeEvent>() == 288);

impl ChangeEvent {
    pub fn account_created(sequence: u64, account: &Account) -> ChangeEvent {
        let mut record = [0u8; 128];
        record.copy_from_slice(account.as_bytes());
        ChangeEvent {
            sequence,
            timestamp: account.timestamp,
            kind: ChangeKind::AccountCreated as u8,
            reserved: [0; 15],
            record,
            debit_account: Balances::default(),
            credit_account: Balances::default(),
        }
    }

    pub fn transfer(
        kind: ChangeKind,
        sequence: u64,
        timestamp: u64,
        transfer: &Transfer,
        debit_account: Balances,
        credit_account: Balances,
    ) -> ChangeEvent {
        assert!(kind != ChangeKind::AccountCreated);
        let mut record = [0u8; 128];
        record.copy_from_slice(transfer.as_bytes());
        ChangeEvent {
            sequence,
            timestamp,
            kind: kind as u8,
            reserved: [0; 15],
            record,
            debit_account,
            credit_account,
        }
    }

    pub fn kind(&self) -> Option<ChangeKind> {
        ChangeKind::from_u8(self.kind)
    }

    /// The account, for an `AccountCreated` event.
    pub fn account(&self) -> Option<Account> {
        match self.kind() {
            Some(ChangeKind::AccountCreated) => Account::read_from_bytes(&self.record).ok(),
            _ => None,
        }
    }

    /// The transfer, for a transfer event.
    pub fn transfer_record(&self) -> Option<Transfer> {
        match self.kind() {
            Some(ChangeKind::TransferCreated | ChangeKind::PendingTransferExpired) => {
                Transfer::read_from_bytes(&self.record).ok()
            }
            _ => None,
        }
    }
}
