//! The operations a test case is made of, as plain data: the generator produces them, the
//! harness applies the same list to the ledgers and the reference model, and the shrinker
//! replays sub-lists of them. Their `Debug` form is a reproduction.

use kassa_wire::{Account, AccountFilter, QueryFilter, Transfer};

#[derive(Clone, Debug)]
pub enum Op {
    CreateAccounts {
        now: u64,
        events: Vec<Account>,
    },
    CreateTransfers {
        now: u64,
        events: Vec<Transfer>,
    },
    ExpirePendingTransfers {
        now: u64,
    },
    PulseNeeded {
        now: u64,
    },
    LookupAccounts(Vec<u128>),
    LookupTransfers(Vec<u128>),
    GetAccountTransfers(AccountFilter),
    GetAccountBalances(AccountFilter),
    QueryAccounts(QueryFilter),
    QueryTransfers(QueryFilter),
    ChangeEvents {
        from: u64,
        limit: usize,
    },
    ReleaseChangeEvents {
        through: u64,
    },
    /// Snapshot the first ledger, restore it (with this hash seed) and keep driving the copy too.
    SnapshotRestore {
        hash_seed: u64,
    },
}

impl Op {
    /// Whether the operation may change a ledger's state (so the whole state is compared after).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Op::CreateAccounts { .. }
                | Op::CreateTransfers { .. }
                | Op::ExpirePendingTransfers { .. }
                | Op::ReleaseChangeEvents { .. }
                | Op::SnapshotRestore { .. }
        )
    }

    /// The number of events of a create batch (0 for other operations).
    pub fn event_count(&self) -> usize {
        match self {
            Op::CreateAccounts { events, .. } => events.len(),
            Op::CreateTransfers { events, .. } => events.len(),
            _ => 0,
        }
    }

    /// The operation without its `index`-th event (for the shrinker).
    pub fn without_event(&self, index: usize) -> Op {
        let mut op = self.clone();
        match &mut op {
            Op::CreateAccounts { events, .. } => drop(events.remove(index)),
            Op::CreateTransfers { events, .. } => drop(events.remove(index)),
            _ => unreachable!("only create batches have events"),
        }
        op
    }
}
