//! What a ledger's memory holds that grows with its history until a durable checkpoint
//! takes it out (docs/storage.md, "Memory bound"): the *memtable*. A node bounds the sum over
//! its partitions by asking for a checkpoint when it is past its share of `--memory`.
//!
//! The count is an estimate kept cheap enough to read after every write (no walk over
//! accounts): the transfers from the cold cut on, their id generations' touched pages, the
//! change entries in memory, and two list entries per transfer in memory. History balances
//! (64 bytes per history account of a transfer) are not in it; the node's bound leaves room
//! for them. Nor are the pending transfers pinned below the cut: a checkpoint cannot free
//! them, and counting them would have a partition with many open pending transfers ask for
//! a checkpoint after every write.

use std::mem::size_of;

use kassa_wire::Transfer;

use crate::changes::ChangeEntry;
use crate::Ledger;

/// Bytes of one account-list entry; each transfer is in two lists.
const LIST_ENTRY_SIZE: u64 = size_of::<u32>() as u64;

impl Ledger {
    /// The memtable's bytes: see the module documentation.
    pub fn memtable_bytes(&self) -> u64 {
        let transfers = self.transfers.count_hot() as u64;
        let transfer_bytes = transfers * (size_of::<Transfer>() as u64 + 2 * LIST_ENTRY_SIZE);
        let change_bytes = self.changes.entries.len() as u64 * size_of::<ChangeEntry>() as u64;
        transfer_bytes + change_bytes + self.transfer_positions.resident_bytes()
    }
}
