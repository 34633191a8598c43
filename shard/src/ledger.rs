//! The [`Ledger`]'s state and its small shared helpers.
//!
//! Storage layout, chosen for the hot path of `create_transfers`:
//! - `accounts` (a vector) and `transfers` (a [`TransferTable`]: with a cold store, the older
//!   transfers are on disk) are in strictly increasing timestamp order (imported events must
//!   postdate everything stored, so appends keep the order); a record's index in its table is
//!   its *position* (`u32`);
//! - `account_positions` / `transfer_positions` map ids to positions ([`IdIndex`]: keyed by
//!   configuration, never by the OS, and no output depends on their order); with a cold
//!   store, only the ids since the last durable checkpoint are in memory
//!   ([`IdGenerations`]), the older ones in runs;
//! - `account_transfers[a]` lists the positions of account `a`'s transfers, ascending, and
//!   `account_history[a]` (accounts with `history` only) the balances right after each of them
//!   (with a cold store, only the newer ones: `history.rs`);
//! - `transfer_status` holds the two-phase status of transfer `t`, or with a cold store,
//!   once resolved and a durable checkpoint holds it, the store does
//!   (`Ledger::transfer_status_at`);
//! - `expiries` orders the pending transfers that have a timeout by `(expires_at, position)`.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use foldhash::fast::FixedState;
use kassa_wire::{Account, AccountId, TransferId};

use crate::changes::ChangeStream;
use crate::cold::{ColdError, ColdStore};
use crate::directory::{IdHomes, IdKind};
use crate::history::History;
use crate::id_index::IdIndex;
use crate::limits::RECORDS_MAX;
use crate::rollback::Rollback;
use crate::sessions::Sessions;
use crate::statuses::PendingStatus;
use crate::transfer_ids::IdGenerations;
use crate::transfer_table::TransferTable;

/// Configuration of a ledger. Apart from `partition` and `partitions`, which say what the
/// ledger holds, it does not change the ledger's results, only how it is built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerConfig {
    /// This ledger's partition, in `0..partitions`.
    pub partition: u32,
    /// Partitions of the cluster; 0 and 1 both mean one ledger holding everything.
    pub partitions: u32,
    /// Seed of the id hash maps. Any value gives the same results; a node picks one per process
    /// so that clients cannot aim ids at one hash bucket.
    pub hash_seed: u64,
    /// Accounts to allocate room for up front. More may be created: the tables then grow,
    /// which costs a copy of the table on the write path, so size this from the node's budget.
    pub accounts_capacity: usize,
    /// Transfers the id index and the two-phase statuses have room for up front, as for
    /// `accounts_capacity`. The transfers themselves are a [`Table`], which grows without
    /// copying.
    pub transfers_capacity: usize,
    /// How the cluster places records in partitions (fixed at format time, like
    /// `partitions`).
    pub placement: crate::PlacementKind,
}

impl LedgerConfig {
    /// The cluster's placement.
    pub fn placement(&self) -> crate::Placement {
        crate::Placement::new(self.placement, self.partitions)
    }
}

pub(crate) type IdSet = HashSet<u128, FixedState>;

/// One partition's ledger. See the crate documentation for its contract.
pub struct Ledger {
    pub(crate) config: LedgerConfig,
    /// The largest timestamp given to any event so far; 0 before the first.
    pub(crate) timestamp: u64,
    pub(crate) accounts: Vec<Account>,
    pub(crate) account_positions: IdIndex,
    pub(crate) account_transfers: Vec<Vec<u32>>,
    pub(crate) account_history: Vec<History>,
    pub(crate) transfers: TransferTable,
    pub(crate) transfer_positions: IdGenerations,
    pub(crate) transfer_status: crate::statuses::TransferStatuses,
    /// Ids of transfers that failed with a transient status: they can never be used again.
    pub(crate) failed_transfer_ids: IdSet,
    pub(crate) expiries: BTreeSet<(u64, u32)>,
    /// Pending transfers homed here whose accounts live (partly) in other partitions, by
    /// `(expires_at, position)`: they expire through a cross-partition transaction.
    pub(crate) cross_expiries: BTreeSet<(u64, u32)>,
    /// Imported events must be newer than these (a scratch ledger's view of the newest account
    /// and transfer in every partition it read from; 0 otherwise).
    pub(crate) import_floor_accounts: u64,
    pub(crate) import_floor_transfers: u64,
    /// Timestamps held by records of the partitions a scratch ledger read from.
    pub(crate) import_taken: BTreeSet<u64>,
    pub(crate) txns: crate::txn::TxnState,
    pub(crate) changes: ChangeStream,
    pub(crate) rollback: Rollback,
    /// The wire protocol's client sessions and their cached replies.
    pub(crate) sessions: Sessions,
    /// Wire requests run here whose sessions live in other partitions (placement by ledger).
    pub(crate) foreign: crate::foreign_requests::ForeignRequests,
    /// The id directory's entries for the ids homed in this partition.
    pub(crate) homes: IdHomes,
    /// This partition's part in transactions across partitions (`intents`).
    pub(crate) intents: crate::intents::IntentState,
    /// Transfers whose status changed since the last durable checkpoint (not state: a
    /// checkpoint's bookkeeping).
    pub(crate) status_changes: crate::checkpoint::StatusChanges,
    /// Where entries a durable checkpoint took out of memory are read (not state; none: all
    /// of them stay in memory).
    pub(crate) cold: Option<Arc<dyn ColdStore>>,
    /// Transfers at positions below this have their ids in the runs of durable checkpoints
    /// (not state: a checkpoint's bookkeeping). The next checkpoint writes the ids from here.
    pub(crate) ids_durable_below: u32,
    /// Likewise for the accounts' transfer lists.
    pub(crate) lists_durable_below: u32,
    /// Likewise for the transfers' timestamp samples.
    pub(crate) timestamps_durable_below: u32,
    /// The accounts' transfers at positions below this are in the cold store only (0
    /// without one).
    pub(crate) lists_cold_below: u32,
}

impl Ledger {
    pub fn new(config: LedgerConfig) -> Ledger {
        assert!(config.partitions <= 1 || config.partition < config.partitions);
        let state = FixedState::with_seed(config.hash_seed);
        Ledger {
            config,
            timestamp: 0,
            accounts: Vec::with_capacity(config.accounts_capacity),
            account_positions: IdIndex::with_capacity(config.accounts_capacity, config.hash_seed),
            account_transfers: Vec::with_capacity(config.accounts_capacity),
            account_history: Vec::with_capacity(config.accounts_capacity),
            transfers: TransferTable::default(),
            transfer_positions: IdGenerations::new(0, config.transfers_capacity, config.hash_seed),
            transfer_status: Default::default(),
            failed_transfer_ids: HashSet::with_hasher(state),
            expiries: BTreeSet::new(),
            cross_expiries: BTreeSet::new(),
            import_floor_accounts: 0,
            import_floor_transfers: 0,
            import_taken: BTreeSet::new(),
            txns: crate::txn::TxnState::default(),
            changes: ChangeStream::new(),
            rollback: Rollback::default(),
            sessions: Sessions::default(),
            foreign: Default::default(),
            homes: IdHomes::new(config.partition, config.partitions, config.hash_seed),
            intents: Default::default(),
            status_changes: Default::default(),
            cold: None,
            ids_durable_below: 0,
            lists_durable_below: 0,
            timestamps_durable_below: 0,
            lists_cold_below: 0,
        }
    }

    /// From now on, entries a durable checkpoint covers leave memory and are read from
    /// `store`, which must hold every entry of the checkpoints made durable from now on (and
    /// of the one this ledger was restored from). Replaces an earlier store, which must hold
    /// nothing the new one lacks.
    pub fn attach_cold_store(&mut self, store: Arc<dyn ColdStore>) {
        self.cold = Some(store);
        self.changes.make_cold();
    }

    /// The wire protocol's client sessions.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The id directory's entries for the ids homed in this partition.
    pub fn id_homes(&self) -> &IdHomes {
        &self.homes
    }

    /// Whether this partition holds `id` of `kind` for good: a record, or (for a transfer) the
    /// id of an event that failed with a transient status, which can never be used again. A
    /// holder's answer to its id home ([`crate::directory::holder_verdict`]). An old
    /// transfer id is looked up in the cold store; a failed read stops the partition, as one
    /// inside an apply does: a wrong "not held" would let an id be stored twice.
    pub fn holds(&self, kind: IdKind, id: u128) -> bool {
        match kind {
            IdKind::Account => self.account_positions.get(id).is_some(),
            IdKind::Transfer => {
                self.failed_transfer_ids.contains(&id)
                    || self.transfer_position_applied(id).is_some()
            }
        }
    }

    pub fn config(&self) -> LedgerConfig {
        self.config
    }

    /// The largest timestamp given to any event so far (0 before the first event).
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// All accounts, oldest first.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// The transfers, by position (the older ones possibly in the cold store).
    pub fn transfers(&self) -> &TransferTable {
        &self.transfers
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        let position = self.account_positions.get(id.0)?;
        Some(&self.accounts[position as usize])
    }

    /// The two-phase status of a transfer, if it exists.
    pub fn pending_status(&self, id: TransferId) -> Result<Option<PendingStatus>, ColdError> {
        let Some(position) = self.transfer_position(id.0)? else {
            return Ok(None);
        };
        if let Some(status) = self.transfer_status.in_memory(position) {
            return Ok(Some(status));
        }
        let transfer = self.transfer_at(position)?;
        self.status_of(position, &transfer).map(Some)
    }

    /// Whether the transfer id failed with a transient status and can never be used again.
    pub fn transfer_id_failed(&self, id: TransferId) -> bool {
        self.failed_transfer_ids.contains(&id.0)
    }

    /// Whether this ledger holds the whole cluster's state (one partition).
    pub fn is_whole(&self) -> bool {
        self.config.partitions <= 1
    }

    /// Whether every ledger this partition has records of is wholly here: one partition, or
    /// placement by ledger. Its per-ledger invariants (debits equal credits) then hold here.
    pub fn holds_whole_ledgers(&self) -> bool {
        self.is_whole() || self.config.placement == crate::PlacementKind::ByLedger
    }

    /// Whether a record of id `id` stored here belongs here rather than being a copy: under
    /// placement by id, an account it owns or a transfer id homed here; under placement by
    /// ledger every record is stored once, in its ledger's partition.
    pub fn owns(&self, id: u128) -> bool {
        self.holds_whole_ledgers()
            || crate::partition_of(id, self.config.partitions) == self.config.partition
    }

    /// The timestamp the first event of a batch of `count` events written at `now` ends at:
    /// events get `end - count + 1 ..= end`.
    pub(crate) fn batch_timestamp_end(&self, now: u64, count: usize) -> u64 {
        assert!(count > 0);
        let end = self.timestamp.max(now).checked_add(count as u64);
        let end = end.expect("timestamp overflow: the clock is beyond the year 2262");
        assert!(
            end <= kassa_wire::TIMESTAMP_MAX,
            "timestamp beyond TIMESTAMP_MAX"
        );
        end
    }

    /// Appends `account` to the table, with its id index entry and its (empty) transfer list
    /// and history; returns its position. Callers check the timestamp order they need.
    pub(crate) fn account_push(&mut self, account: Account) -> u32 {
        let position = Ledger::position_of(self.accounts.len());
        self.account_positions.insert(account.id.0, position);
        self.accounts.push(account);
        self.account_transfers.push(Vec::new());
        self.account_history.push(History::default());
        position
    }

    pub(crate) fn position_of(length: usize) -> u32 {
        assert!(
            length < RECORDS_MAX,
            "a partition holds at most u32::MAX - 1 records"
        );
        length as u32
    }
}
