//! The keyspaces of a partition's on-disk store (docs/storage.md, "What goes where"): each
//! holds fixed-size values under 128-bit keys, written by checkpoints into runs.
//! - [`Keyspace::Transfers`]: position → the 128-byte transfer.
//! - [`Keyspace::Statuses`]: position → the two-phase status (1 byte); a later run's entry
//!   replaces an earlier one's.
//! - [`Keyspace::History`]: account position ≪ 32 | transfer position → the 64-byte balances
//!   right after that transfer, for history accounts.
//! - [`Keyspace::Changes`]: sequence → the 144-byte change entry.

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
}

impl Keyspace {
    /// In the order a restore takes them.
    pub const ALL: [Keyspace; 4] = [
        Keyspace::Transfers,
        Keyspace::Statuses,
        Keyspace::History,
        Keyspace::Changes,
    ];

    pub fn value_size(self) -> usize {
        match self {
            Keyspace::Transfers => size_of::<Transfer>(),
            Keyspace::Statuses => 1,
            Keyspace::History => size_of::<Balances>(),
            Keyspace::Changes => CHANGE_ENTRY_SIZE,
        }
    }

    /// Whether a ledger with a cold store keeps this keyspace's entries out of memory once a
    /// durable checkpoint holds them: the store reads them from its runs, and a restore does
    /// not read them back.
    pub fn is_cold(self) -> bool {
        matches!(
            self,
            Keyspace::Transfers | Keyspace::Changes | Keyspace::History
        )
    }

    /// Whether a restore reads this keyspace's runs even with a cold store: the keyspaces
    /// that are not cold, and the transfers, from which the id index and the accounts'
    /// transfer lists are rebuilt (until those have runs of their own) and the transfers
    /// still pending are found.
    pub fn read_at_restore(self) -> bool {
        !self.is_cold() || self == Keyspace::Transfers
    }

    /// Its name in file names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Keyspace::Transfers => "transfers",
            Keyspace::Statuses => "statuses",
            Keyspace::History => "history",
            Keyspace::Changes => "changes",
        }
    }

    pub fn from_u8(value: u8) -> Option<Keyspace> {
        Keyspace::ALL.into_iter().find(|k| *k as u8 == value)
    }
}
