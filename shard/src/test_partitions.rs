//! Helpers for the unit tests of a cluster's partitions: four partitions, the ledgers that
//! place in each, and records of them.

use kassa_wire::{Account, AccountId};

use crate::{ledger_partition, Ledger, LedgerConfig, PlacementKind};

pub(crate) const PARTITIONS: u32 = 4;

/// The lowest ledger placed in `partition`.
pub(crate) fn ledger_of(partition: u32) -> u32 {
    (1..)
        .find(|l| ledger_partition(*l, PARTITIONS) == partition)
        .expect("some ledger")
}

/// An empty partition of [`PARTITIONS`].
pub(crate) fn partition(partition: u32, placement: PlacementKind) -> Ledger {
    Ledger::new(LedgerConfig {
        partition,
        partitions: PARTITIONS,
        placement,
        ..LedgerConfig::default()
    })
}

pub(crate) fn account(id: u128, ledger: u32) -> Account {
    Account {
        id: AccountId(id),
        ledger,
        code: 1,
        ..Account::default()
    }
}
