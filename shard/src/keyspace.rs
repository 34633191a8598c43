//! The keyspaces of a partition's on-disk store (docs/storage.md, "What goes where"): each
//! holds fixed-size values under 128-bit keys, written by checkpoints into runs.
//! - [`Keyspace::Transfers`]: position → the 128-byte transfer.
//! - [`Keyspace::Statuses`]: position → the two-phase status (1 byte); a later run's entry
//!   replaces an earlier one's. Its runs have filters: a status is read by position, and
//!   most positions have none.
//! - [`Keyspace::History`]: account position ≪ 32 | transfer position → the 64-byte balances
//!   right after that transfer, for history accounts.
//! - [`Keyspace::Changes`]: sequence → the 144-byte change entry.
//! - [`Keyspace::TransferIds`]: transfer id → its position (4 bytes), for the transfers of
//!   one checkpoint interval; its runs have filters, so that most ids never used are answered
//!   without reading the disk.
//! - [`Keyspace::AccountTransfers`]: account position ≪ 32 | transfer position, no value:
//!   the accounts' transfer lists.
//! - [`Keyspace::TransferSamples`]: position (a multiple of 32) → the transfer's timestamp
//!   (8 bytes). Written by checkpoints of format 2 only, whose restore reads them into
//!   memory; the first checkpoint after it writes [`Keyspace::TransferTimestamps`] whole and
//!   leaves these runs.
//! - [`Keyspace::TransferTimestamps`]: the timestamp of the transfer at every position that
//!   is a multiple of 32 → that position (4 bytes): a search of the cold transfers by
//!   timestamp seeks it (one index page and one block), then reads at most 32 transfers.
//!   Nothing of it stays in memory, so memory does not grow with history.

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
    TransferTimestamps = 8,
}

impl Keyspace {
    /// In the order a restore takes them.
    pub const ALL: [Keyspace; 8] = [
        Keyspace::Transfers,
        Keyspace::Statuses,
        Keyspace::History,
        Keyspace::Changes,
        Keyspace::TransferIds,
        Keyspace::AccountTransfers,
        Keyspace::TransferSamples,
        Keyspace::TransferTimestamps,
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
            Keyspace::TransferTimestamps => 4,
        }
    }

    /// Filter bits per key of this keyspace's runs: 10 (about 1% of absent keys pass) for
    /// keyspaces looked up by keys that may be absent; 0 (no filter) for those read by
    /// positions, sequences and ranges, which the run's key range answers.
    pub fn filter_bits_per_key(self) -> u32 {
        match self {
            Keyspace::TransferIds | Keyspace::Statuses => 10,
            _ => 0,
        }
    }

    /// Whether a ledger with a cold store keeps this keyspace's entries out of memory once a
    /// durable checkpoint holds them: the store reads them from its runs, and a restore does
    /// not read them back (but the statuses, to find the pending transfers).
    pub fn is_cold(self) -> bool {
        matches!(
            self,
            Keyspace::Transfers
                | Keyspace::Statuses
                | Keyspace::Changes
                | Keyspace::History
                | Keyspace::TransferIds
                | Keyspace::AccountTransfers
                | Keyspace::TransferTimestamps
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
            Keyspace::TransferTimestamps => "transfer-timestamps",
        }
    }

    pub fn from_u8(value: u8) -> Option<Keyspace> {
        Keyspace::ALL.into_iter().find(|k| *k as u8 == value)
    }
}
