//! Checkpoints: the ledger split into its hot state, written whole at every checkpoint, and the
//! keyspaces that grow with history, of which each checkpoint hands over only what was written
//! since the previous one (docs/storage.md). The `raft` crate writes the keyspaces into runs
//! and the hot state into the checkpoint's manifest, and restores a ledger from them through
//! [`CheckpointRestore`]. Nothing here reads a disk: the ledger stays pure.
//!
//! Keyspaces, each of fixed-size values under 128-bit keys:
//! - [`Keyspace::Transfers`]: position → the 128-byte transfer; positions below the cut are in
//!   earlier runs, so an increment is the positions from the cut on.
//! - [`Keyspace::Statuses`]: position → the two-phase status (1 byte), for the transfers of the
//!   increment whose status is not `None` and for older ones whose status changed since the
//!   cut (posted, voided, expired: [`StatusChanges`] remembers which). A later run's entry
//!   replaces an earlier one's.
//! - [`Keyspace::History`]: account position ≪ 32 | transfer position → the 64-byte balances
//!   right after that transfer, for history accounts, for the transfers of the increment.
//! - [`Keyspace::Changes`]: sequence → the 144-byte change entry, from the cut on; runs wholly
//!   below the released sequence are no longer needed.
//!
//! Hot state, format version 1 (little-endian): magic "KASSAHOT" | version u32 | zero u32 |
//! timestamp u64 | change sequence next u64 | first retained change sequence u64 | transfers
//! u64 | accounts (count u64, records) | then as in a snapshot: failed ids, expiries, cross
//! expiries, sessions, transactions, id directory, foreign requests, intents | CRC32C u32 of
//! everything before it.

use kassa_wire::{Account, Balances, Transfer};
use zerocopy::{FromBytes, IntoBytes};

use crate::changes::{ChangeEntry, ChangeStream};
use crate::snapshot::{Reader, SNAPSHOT_FORMAT_VERSION};
use crate::table::Table;
use crate::{Ledger, LedgerConfig, PendingStatus, SnapshotError};

/// The hot state's format version.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const HOT_MAGIC: [u8; 8] = *b"KASSAHOT";

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
            Keyspace::Changes => size_of::<ChangeEntry>(),
        }
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

/// What the checkpoints made durable so far cover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointCut {
    /// Transfers at positions below this are in runs.
    pub transfers: u32,
    /// Status changes recorded before this count are in runs.
    pub status_changes: u64,
    /// Change entries of sequences below this are in runs (or released).
    pub change_sequence: u64,
}

/// One keyspace's entries since the cut: keys ascending, values `value_size()` bytes each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceIncrement {
    pub keyspace: Keyspace,
    pub keys: Vec<u128>,
    pub values: Vec<u8>,
}

impl KeyspaceIncrement {
    fn new(keyspace: Keyspace) -> KeyspaceIncrement {
        KeyspaceIncrement {
            keyspace,
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, key: u128, value: &[u8]) {
        debug_assert_eq!(value.len(), self.keyspace.value_size());
        debug_assert!(self.keys.last().is_none_or(|last| *last < key));
        self.keys.push(key);
        self.values.extend_from_slice(value);
    }

    /// Entry `at`'s value.
    pub fn value(&self, at: usize) -> &[u8] {
        let size = self.keyspace.value_size();
        &self.values[at * size..(at + 1) * size]
    }
}

/// What one checkpoint writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointIncrement {
    /// What the checkpoints cover once this one is durable.
    pub cut: CheckpointCut,
    /// The hot state, whole.
    pub hot: Vec<u8>,
    /// Per keyspace, in `Keyspace::ALL` order, what was written since the previous cut.
    pub keyspaces: Vec<KeyspaceIncrement>,
    /// Change entries below this sequence are released: runs of changes wholly below it are
    /// no longer needed.
    pub changes_released_below: u64,
}

/// Positions of transfers whose status changed after they were stored, in the order of the
/// changes, numbered from `base` on. A checkpoint takes those from its cut on; once it is
/// durable, those before its cut are dropped. A change undone with its linked chain stays
/// listed: a checkpoint then writes the status the transfer has, which is what it had (or
/// nothing, when the chain took back the transfer itself).
#[derive(Debug, Default)]
pub(crate) struct StatusChanges {
    base: u64,
    positions: Vec<u32>,
}

impl StatusChanges {
    pub(crate) fn record(&mut self, position: u32) {
        self.positions.push(position);
    }

    /// The count recorded so far, as a cut counts them.
    fn end(&self) -> u64 {
        self.base + self.positions.len() as u64
    }

    fn since(&self, count: u64) -> &[u32] {
        let from = count
            .saturating_sub(self.base)
            .min(self.positions.len() as u64) as usize;
        &self.positions[from..]
    }

    fn drop_before(&mut self, count: u64) {
        let drop = count
            .saturating_sub(self.base)
            .min(self.positions.len() as u64) as usize;
        self.positions.drain(..drop);
        self.base += drop as u64;
    }
}

impl Ledger {
    /// The hot state and, per keyspace, what was written since `since` (the cut of the last
    /// durable checkpoint).
    pub fn checkpoint(&self, since: CheckpointCut) -> CheckpointIncrement {
        assert!(self.rollback_is_idle(), "checkpoint inside a linked chain");
        let count = Ledger::position_of(self.transfers.len());
        assert!(since.transfers <= count, "a cut beyond the ledger");
        let cut = CheckpointCut {
            transfers: count,
            status_changes: self.status_changes.end(),
            change_sequence: self.changes.sequence_next,
        };
        let keyspaces = vec![
            self.transfers_since(since.transfers),
            self.statuses_since(since),
            self.history_since(since.transfers),
            self.changes_since(since.change_sequence),
        ];
        CheckpointIncrement {
            cut,
            hot: self.encode_hot(),
            keyspaces,
            changes_released_below: self.changes.sequence_first(),
        }
    }

    /// Forgets the status changes `cut` covers: a checkpoint with that cut is durable.
    pub fn checkpoint_durable(&mut self, cut: CheckpointCut) {
        self.status_changes.drop_before(cut.status_changes);
    }

    fn transfers_since(&self, from: u32) -> KeyspaceIncrement {
        let mut increment = KeyspaceIncrement::new(Keyspace::Transfers);
        let from = from as usize;
        for (position, transfer) in (from..).zip(self.transfers.range(from, self.transfers.len())) {
            increment.push(position as u128, transfer.as_bytes());
        }
        increment
    }

    fn statuses_since(&self, since: CheckpointCut) -> KeyspaceIncrement {
        let count = Ledger::position_of(self.transfers.len());
        let changed = self.status_changes.since(since.status_changes).iter();
        // A change of a transfer its linked chain then took back is listed past the end.
        let mut positions: Vec<u32> = changed.copied().filter(|p| *p < count).collect();
        let new = since.transfers..count;
        positions.extend(new.filter(|p| self.transfer_status[*p as usize] != PendingStatus::None));
        positions.sort_unstable();
        positions.dedup();
        let mut increment = KeyspaceIncrement::new(Keyspace::Statuses);
        for position in positions {
            let status = self.transfer_status[position as usize];
            increment.push(u128::from(position), &[status as u8]);
        }
        increment
    }

    fn history_since(&self, from: u32) -> KeyspaceIncrement {
        let mut increment = KeyspaceIncrement::new(Keyspace::History);
        for (account, history) in self.account_history.iter().enumerate() {
            if history.is_empty() {
                continue;
            }
            let listed = &self.account_transfers[account];
            let start = listed.partition_point(|position| *position < from);
            for (position, balances) in listed[start..].iter().zip(&history[start..]) {
                let key = ((account as u128) << 32) | u128::from(*position);
                increment.push(key, balances.as_bytes());
            }
        }
        increment
    }

    fn changes_since(&self, from: u64) -> KeyspaceIncrement {
        let mut increment = KeyspaceIncrement::new(Keyspace::Changes);
        let first = self.changes.sequence_first();
        let start = from
            .saturating_sub(first)
            .min(self.changes.entries.len() as u64) as usize;
        let end = self.changes.entries.len();
        for (offset, entry) in (start..).zip(self.changes.entries.range(start, end)) {
            increment.push(u128::from(first + offset as u64), entry.as_bytes());
        }
        increment
    }

    fn encode_hot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let put_u64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        out.extend_from_slice(&HOT_MAGIC);
        out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        put_u64(&mut out, self.timestamp);
        put_u64(&mut out, self.changes.sequence_next);
        put_u64(&mut out, self.changes.sequence_first());
        put_u64(&mut out, self.transfers.len() as u64);
        put_u64(&mut out, self.accounts.len() as u64);
        out.extend_from_slice(self.accounts.as_bytes());
        self.encode_failed_and_expiries(&mut out);
        self.encode_tail(&mut out);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// Rebuilds a ledger from a checkpoint: the hot state, then every run's entries, keyspace by
/// keyspace in `Keyspace::ALL` order and run by run in the order they were written.
pub struct CheckpointRestore {
    ledger: Ledger,
    transfers: u64,
    change_first: u64,
    change_next: u64,
    /// The keyspace being read; earlier ones are done.
    phase: Keyspace,
    /// Per history account, how many of its transfers have their balances restored.
    history_restored: Vec<usize>,
}

impl CheckpointRestore {
    /// Starts from the hot state, refusing a damaged one.
    pub fn new(config: LedgerConfig, hot: &[u8]) -> Result<CheckpointRestore, SnapshotError> {
        if hot.len() < HOT_MAGIC.len() + 4 || hot[..HOT_MAGIC.len()] != HOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let (hot, crc) = hot.split_at(hot.len() - 4);
        if crc32c::crc32c(hot).to_le_bytes() != crc {
            return Err(SnapshotError::BodyChecksum);
        }
        let mut reader = Reader {
            bytes: hot,
            offset: HOT_MAGIC.len(),
        };
        let version = reader.u32()?;
        if version != CHECKPOINT_FORMAT_VERSION || reader.u32()? != 0 {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                supported: CHECKPOINT_FORMAT_VERSION,
            });
        }
        let mut ledger = Ledger::new(config);
        ledger.timestamp = reader.u64()?;
        let change_next = reader.u64()?;
        let change_first = reader.u64()?;
        let transfers = reader.u64()?;
        if change_first > change_next || transfers >= crate::limits::RECORDS_MAX as u64 {
            return Err(reader.malformed("change sequences or transfer count out of range"));
        }
        ledger.accounts = reader.records::<Account>()?;
        ledger.decode_failed_and_expiries(&mut reader)?;
        ledger.decode_tail(&mut reader, SNAPSHOT_FORMAT_VERSION)?;
        if reader.offset != hot.len() {
            return Err(reader.malformed("trailing bytes"));
        }
        ledger.changes = ChangeStream {
            entries: Table::new(),
            sequence_next: change_first,
        };
        Ok(CheckpointRestore {
            ledger,
            transfers,
            change_first,
            change_next,
            phase: Keyspace::Transfers,
            history_restored: Vec::new(),
        })
    }

    /// Adds one run's entry. Entries of a keyspace come after those of the keyspaces before it.
    pub fn push(
        &mut self,
        keyspace: Keyspace,
        key: u128,
        value: &[u8],
    ) -> Result<(), SnapshotError> {
        let inconsistent = |what: &str| Err(SnapshotError::Inconsistent(what.to_string()));
        if value.len() != keyspace.value_size() || keyspace < self.phase {
            return inconsistent("a run entry out of its keyspace's order or size");
        }
        while self.phase < keyspace {
            self.end_phase()?;
        }
        match keyspace {
            Keyspace::Transfers => self.push_transfer(key, value),
            Keyspace::Statuses => self.push_status(key, value),
            Keyspace::History => self.push_history(key, value),
            Keyspace::Changes => self.push_change(key, value),
        }
    }

    /// The ledger, once every run was read; checked whole, as a restored snapshot is.
    pub fn finish(mut self) -> Result<(Ledger, CheckpointCut), SnapshotError> {
        while self.phase < Keyspace::Changes {
            self.end_phase()?;
        }
        let ledger = &mut self.ledger;
        if ledger.changes.sequence_next != self.change_next {
            return Err(SnapshotError::Inconsistent(
                "the change runs do not reach the change sequence".to_string(),
            ));
        }
        ledger.check().map_err(SnapshotError::Inconsistent)?;
        let cut = CheckpointCut {
            transfers: Ledger::position_of(ledger.transfers.len()),
            status_changes: 0,
            change_sequence: self.change_next,
        };
        Ok((self.ledger, cut))
    }

    /// Closes the keyspace being read and opens the next.
    fn end_phase(&mut self) -> Result<(), SnapshotError> {
        match self.phase {
            Keyspace::Transfers => {
                if self.ledger.transfers.len() as u64 != self.transfers {
                    return Err(SnapshotError::Inconsistent(
                        "the transfer runs do not hold every transfer".to_string(),
                    ));
                }
                self.ledger.transfer_status = vec![PendingStatus::None; self.transfers as usize];
                self.ledger.rebuild_indexes()?;
                self.history_restored = vec![0; self.ledger.accounts.len()];
                self.phase = Keyspace::Statuses;
            }
            Keyspace::Statuses => self.phase = Keyspace::History,
            Keyspace::History => self.phase = Keyspace::Changes,
            Keyspace::Changes => unreachable!("the last keyspace has no next"),
        }
        Ok(())
    }

    fn push_transfer(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let transfers = &mut self.ledger.transfers;
        if key != transfers.len() as u128 || key >= u128::from(self.transfers) {
            return Err(SnapshotError::Inconsistent(
                "transfer runs out of position order".to_string(),
            ));
        }
        transfers.push(Transfer::read_from_bytes(value).expect("a transfer's bytes"));
        Ok(())
    }

    fn push_status(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let status = PendingStatus::from_u8(value[0]);
        let slot = usize::try_from(key)
            .ok()
            .and_then(|position| self.ledger.transfer_status.get_mut(position));
        match (slot, status) {
            (Some(slot), Some(status)) => {
                *slot = status;
                Ok(())
            }
            _ => Err(SnapshotError::Inconsistent(
                "a status of a missing transfer, or an unknown status".to_string(),
            )),
        }
    }

    /// Balances after a transfer: the next of its account's transfers still without them.
    fn push_history(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        let account = (key >> 32) as usize;
        let position = key as u32;
        let ledger = &mut self.ledger;
        let restored = self.history_restored.get_mut(account);
        let expected = restored.as_ref().and_then(|restored| {
            let listed = &ledger.account_transfers[account];
            listed.get(**restored).copied()
        });
        let (Some(restored), Some(expected)) = (restored, expected) else {
            return Err(SnapshotError::Inconsistent(
                "history of a missing account or transfer".to_string(),
            ));
        };
        if key >> 64 != 0 || expected != position {
            return Err(SnapshotError::Inconsistent(
                "history out of its account's transfer order".to_string(),
            ));
        }
        let balances = Balances::read_from_bytes(value).expect("balances' bytes");
        ledger.account_history[account].push(balances);
        *restored += 1;
        Ok(())
    }

    fn push_change(&mut self, key: u128, value: &[u8]) -> Result<(), SnapshotError> {
        if key < u128::from(self.change_first) {
            return Ok(()); // released since that run was written
        }
        let changes = &mut self.ledger.changes;
        if key != u128::from(changes.sequence_next) || changes.sequence_next >= self.change_next {
            return Err(SnapshotError::Inconsistent(
                "change runs out of sequence order".to_string(),
            ));
        }
        let entry = ChangeEntry::read_from_bytes(value).expect("a change entry's bytes");
        changes.push_entry(entry);
        Ok(())
    }
}
