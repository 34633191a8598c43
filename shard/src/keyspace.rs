//! The keyspaces of a partition's on-disk store (docs/storage.md, "What goes where"): each
//! holds fixed-size values under 128-bit keys, written by checkpoints into runs.
//! - [`Keyspace::Transfers`]: position → the 128-byte transfer.
//! - [`Keyspace::Statuses`]: position → the two-phase status (1 byte); a later run's entry
//!   replaces an earlier one's.
//! - [`Keyspace::History`]: account position ≪ 32 | transfer position → the 64-byte balances
//!   right after that transfer, for history accounts.
//! - [`Keyspace::Changes`]: sequence → the 144-byte change entry.
//! - [`Keyspace::TransferIds`]: transfer id → its position (4 bytes), for the transfers of
//!   one checkpoint interval; its runs have filters, so that most ids never used are answered
//!   without reading the disk.
//! - [`Keyspace::AccountTransfers`]: account position ≪ 32 | transfer position, no value:
//!   the accounts' transfer lists.
//! - [`Keyspace::TransferSamples`]: position (a multiple of 32) → the transfer's timestamp
//!   (8 bytes): what a restore needs of the transfers to search them by timestamp, so that
//!   it reads no transfer run.

use kassa_wire::{Balances, Transfer};

/// A change entry's size on disk (`changes::ChangeEntry`, which asserts it).
pub(crate) const CHANGE_ENTRY_SIZE: usize = 144;

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Keyspace {
    Transfers = 1,
    Statuses = 2,
    History = 3,
    Changes = 4,
    TransferIds = 5,
    AccountTransfers = 6,
    TransferSamples = 7,
}

impl Keyspace {
    /// In the order a restore takes them.
    pub const ALL: [Keyspace; 7] = [
        Keyspace::Transfers,
        Keyspace::Statuses,
        Keyspace::History,
        Keyspace::Changes,
        Keyspace::TransferIds,
        Keyspace::AccountTransfers,
        Keyspace::TransferSamples,
    ];

    pub fn value_size(self) -> usize {
        match self {
            Keyspace::Transfers => size_of::<Transfer>(),
            Keyspace::Statuses => 1,
            Keyspace::History => size_of::<Balances>(),
            Keyspace::Changes => CHANGE_ENTRY_SIZE,
            Keyspace::TransferIds => 4,
            Keyspace::AccountTransfers => 0,
            Keyspace::TransferSamples => 8,
        }
    }

    /// Filter bits per key of this keyspace's runs: 10 (about 1% of absent keys pass) for
    /// keyspaces looked up by keys that may be absent; 0 (no filter) for those read by
    /// positions, sequences and ranges, which the run's key range answers.
    pub fn filter_bits_per_key(self) -> u32 {
        match self {
            Keyspace::TransferIds => 10,
            _ => 0,
        }
    }

    /// Whether a ledger with a cold store keeps this keyspace's entries out of memory once a
    /// durable checkpoint holds them: the store reads them from its runs, and a restore does
    /// not read them back.
    pub fn is_cold(self) -> bool {
        matches!(
            self,
            Keyspace::Transfers
                | Keyspace::Changes
                | Keyspace::History
                | Keyspace::TransferIds
                | Keyspace::AccountTransfers
        )
    }

    /// Its name in file names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Keyspace::Transfers => "transfers",
            Keyspace::Statuses => "statuses",
            Keyspace::History => "history",
            Keyspace::Changes => "changes",
            Keyspace::TransferIds => "transfer-ids",
            Keyspace::AccountTransfers => "account-transfers",
            Keyspace::TransferSamples => "transfer-samples",
        }
    }

    pub fn from_u8(value: u8) -> Option<Keyspace> {
        Keyspace::ALL.into_iter().find(|k| *k as u8 == value)
    }
}
