//! Snapshots: the whole ledger as bytes, and back.
//!
//! Format (all integers little-endian):
//! ```text
//! header (32 bytes): magic "KASSALDG" | format_version u32 | reserved u32 (0)
//!                    | body_size u64 | body_checksum u32 (CRC32C of the body) | header_checksum u32
//!                    (CRC32C of the header's first 28 bytes)
//! body:  timestamp u64 | change_sequence_next u64
//!        | accounts:      count u64, count × 128-byte Account (timestamp order)
//!        | transfers:     count u64, count × 128-byte Transfer (timestamp order)
//!        | statuses:      count × u8 two-phase status, one per transfer
//!        | failed ids:    count u64, count × u128, ascending
//!        | expiries:      count u64, count × (expires_at u64, transfer position u32)
//!        | cross expiries: the same, for pending transfers homed here that cross partitions
//!        | history:       count u64, count × (account position u32, entries u64,
//!                         entries × 64-byte balances)
//!        | change stream: count u64, count × 144-byte entry (balances after, timestamp,
//!                         record position, kind, account flags as created)
//!        | sessions:      op u64, count u64, count × (session u64, reply body size u64,
//!                         256-byte reply header, reply body), in client order
//!        | transactions:  the cross-partition transaction state (`txn::TxnState::encode`)
//!        | id directory:  per id space (accounts, then transfers): count u64, count × (id u128,
//!                         owner tag u8, owner partition u32, claim round u64), in the order
//!                         the ids were first claimed, then 64 lease buckets × (tag u8,
//!                         partition u32, ids or round u64) (`directory::IdHomes::encode`)
//!        | foreign requests: used u64, count u64, count × (client u128, request u32,
//!                         reserved u32, checksum u128, used u64, body size u64, body, sealed
//!                         u64, 256-byte reply header if sealed), in client order
//!                         (`foreign_requests::ForeignRequests::encode`)
//!        | intents:       held count u64 (0 or 1), held × (txn home u32, txn number u64,
//!                         kind u32, results count u64, results × 16 bytes, effects), closed
//!                         count u64, closed × (txn, outcome u32: 0 prevented, 1 applied,
//!                         2 aborted), forgotten ranges, then the home's records: count u64,
//!                         count × (txn, outcome u32 or 0, participants u32, participants ×
//!                         u32), forgotten ranges, each in transaction order; forgotten
//!                         ranges: count u64, count × (home u32, from u64, below u64)
//!                         (`intents::IntentState::encode`)
//! ```
//! Version 3 snapshots (before the id directory) are read as having an empty one, and
//! versions 3 and 4 as having no foreign requests; in versions 4 and 5 a lease bucket holding
//! an id is read as mixed (never leased; none was leased before version 6); before version 7
//! a foreign request has no sealed reply (its session partition sealed it); before version 8
//! there are no intents, and before version 9 no forgotten ranges.
//! Everything written is in a defined order (no hash-map iteration), so the same history gives
//! byte-identical snapshots. Id indexes and per-account transfer lists are derived: restore
//! rebuilds them, then checks every invariant ([`Ledger::validate`]'s checks) and refuses a
//! snapshot that breaks one, as it refuses a bad checksum, version or size.

use std::collections::BTreeSet;

use kassa_wire::{Account, Balances, Transfer};
use zerocopy::{FromBytes, IntoBytes};

use crate::changes::{ChangeEntry, ChangeStream};
use crate::history::History;
use crate::sessions::Sessions;
use crate::statuses::TransferStatuses;
use crate::table::Table;
use crate::transfer_table::TransferTable;
use crate::{Ledger, LedgerConfig, PendingStatus};

/// 2: the cross-partition transaction state and the wire protocol's session table follow the
/// change stream. 3: undelivered decisions carry each created transfer once. 4: the id
/// directory follows the transaction state. 5: the foreign requests follow the directory. 6: the
/// directory's lease buckets follow its entries. 7: each foreign request keeps the reply
/// sealed for it. 8: the rare path's intents, closed transactions and home records follow the
/// foreign requests. 9: the participant's and the home's forgotten ranges follow each.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 9;
/// The oldest version still read: 3 has no id directory (it is empty).
const SNAPSHOT_FORMAT_VERSION_OLDEST: u32 = 3;
const MAGIC: [u8; 8] = *b"KASSALDG";
const HEADER_SIZE: usize = 32;

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a Kassa ledger snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("snapshot header checksum mismatch: the header is damaged")]
    HeaderChecksum,
    #[error("snapshot is {actual} bytes but its header says {expected}: truncated or padded")]
    Size { expected: u64, actual: u64 },
    #[error("snapshot body checksum mismatch: the body is damaged")]
    BodyChecksum,
    #[error("snapshot body is malformed at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("snapshot state is inconsistent: {0}")]
    Inconsistent(String),
}

impl Ledger {
    /// Writes the whole state into `out` (cleared first).
    pub fn snapshot(&self, out: &mut Vec<u8>) {
        assert!(self.rollback_is_idle(), "snapshot inside a linked chain");
        out.clear();
        out.resize(HEADER_SIZE, 0);
        self.snapshot_body(out);
        let body_size = (out.len() - HEADER_SIZE) as u64;
        let body_checksum = crc32c::crc32c(&out[HEADER_SIZE..]);
        let header = &mut out[..HEADER_SIZE];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&0u32.to_le_bytes());
        header[16..24].copy_from_slice(&body_size.to_le_bytes());
        header[24..28].copy_from_slice(&body_checksum.to_le_bytes());
        let header_checksum = crc32c::crc32c(&header[..28]);
        header[28..32].copy_from_slice(&header_checksum.to_le_bytes());
    }

    fn snapshot_body(&self, out: &mut Vec<u8>) {
        let put_u64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        put_u64(out, self.timestamp);
        put_u64(out, self.changes.sequence_next);
        put_u64(out, self.accounts.len() as u64);
        out.extend_from_slice(self.accounts.as_bytes());
        put_u64(out, self.transfers.len() as u64);
        let transfers = self.all_transfers();
        let transfers = transfers.unwrap_or_else(|error| panic!("a whole snapshot: {error}"));
        out.extend_from_slice(transfers.as_bytes());
        let statuses = self.encode_statuses(out);
        statuses.unwrap_or_else(|error| panic!("a whole snapshot: {error}"));
        self.encode_failed_and_expiries(out);
        let history = (0..self.accounts.len())
            .filter(|a| (self.accounts[*a].flags).contains(kassa_wire::AccountFlags::HISTORY))
            .map(|a| (a, self.history_all(a)))
            .map(|(a, all)| {
                (
                    a,
                    all.unwrap_or_else(|error| panic!("a whole snapshot: {error}")),
                )
            })
            .filter(|(_, all)| !all.is_empty())
            .collect::<Vec<_>>();
        put_u64(out, history.len() as u64);
        for (account, all) in history {
            out.extend_from_slice(&(account as u32).to_le_bytes());
            put_u64(out, all.len() as u64);
            out.extend_from_slice(all.as_bytes());
        }
        put_u64(out, self.changes.retained_len() as u64);
        // Whole snapshots are the tests' and an earlier version's format: the node writes
        // checkpoints. A store that fails here is a fault of the tool that asked.
        let retained = self.retained_changes();
        let retained = retained.unwrap_or_else(|error| panic!("a whole snapshot: {error}"));
        for entry in &retained {
            out.extend_from_slice(entry.as_bytes());
        }
        self.encode_tail(out);
    }

    /// The failed transfer ids (ascending), then the expiries and the cross expiries.
    pub(crate) fn encode_failed_and_expiries(&self, out: &mut Vec<u8>) {
        let put_u64 = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        let failed: BTreeSet<u128> = self.failed_transfer_ids.iter().copied().collect();
        put_u64(out, failed.len() as u64);
        for id in failed {
            out.extend_from_slice(&id.to_le_bytes());
        }
        for expiries in [&self.expiries, &self.cross_expiries] {
            put_u64(out, expiries.len() as u64);
            for (expires_at, position) in expiries {
                put_u64(out, *expires_at);
                out.extend_from_slice(&position.to_le_bytes());
            }
        }
    }

    /// What follows the tables: sessions, transactions, the id directory, foreign requests
    /// and intents.
    pub(crate) fn encode_tail(&self, out: &mut Vec<u8>) {
        self.sessions.snapshot(out);
        self.txns.encode(out);
        self.homes.encode(out);
        self.foreign.encode(out);
        self.intents.encode(out);
    }

    /// Rebuilds a ledger from a snapshot, refusing a damaged or inconsistent one.
    pub fn restore(config: LedgerConfig, bytes: &[u8]) -> Result<Ledger, SnapshotError> {
        let (version, body) = snapshot_body(bytes)?;
        let mut reader = Reader {
            bytes: body,
            offset: 0,
        };
        let mut ledger = Ledger::new(config);
        ledger.timestamp = reader.u64()?;
        let sequence_next = reader.u64()?;
        ledger.accounts = reader.records::<Account>()?;
        ledger.transfers = TransferTable::in_memory(reader.table::<Transfer>()?);
        ledger.transfer_status = reader
            .take(ledger.transfers.len(), "transfer statuses")?
            .iter()
            .map(|b| PendingStatus::from_u8(*b))
            .collect::<Option<TransferStatuses>>()
            .ok_or(reader.malformed("unknown two-phase status"))?;
        ledger.decode_failed_and_expiries(&mut reader)?;
        ledger.rebuild_indexes()?;
        for _ in 0..reader.count(12)? {
            let account = reader.u32()? as usize;
            let history = reader.records::<Balances>()?;
            let slot = ledger.account_history.get_mut(account);
            let slot = slot.ok_or(reader.malformed("history of a missing account"))?;
            *slot = History::in_memory(history);
        }
        let entries = reader.table::<ChangeEntry>()?;
        if entries.len() as u64 >= sequence_next {
            return Err(reader.malformed("more change events than sequence numbers"));
        }
        ledger.changes = ChangeStream::with_entries(entries, sequence_next);
        ledger.decode_tail(&mut reader, version)?;
        if reader.offset != body.len() {
            return Err(reader.malformed("trailing bytes"));
        }
        ledger.check().map_err(SnapshotError::Inconsistent)?;
        Ok(ledger)
    }

    pub(crate) fn decode_failed_and_expiries(
        &mut self,
        reader: &mut Reader,
    ) -> Result<(), SnapshotError> {
        for _ in 0..reader.count(16)? {
            self.failed_transfer_ids.insert(reader.u128()?);
        }
        for _ in 0..reader.count(12)? {
            let key = (reader.u64()?, reader.u32()?);
            self.expiries.insert(key);
        }
        for _ in 0..reader.count(12)? {
            let key = (reader.u64()?, reader.u32()?);
            self.cross_expiries.insert(key);
        }
        Ok(())
    }

    /// Reads what `encode_tail` wrote, as snapshot format `version` wrote it.
    pub(crate) fn decode_tail(
        &mut self,
        reader: &mut Reader,
        version: u32,
    ) -> Result<(), SnapshotError> {
        let (sessions, used) =
            Sessions::restore(&reader.bytes[reader.offset..]).map_err(|error| match error {
                SnapshotError::Malformed { offset, what } => SnapshotError::Malformed {
                    offset: reader.offset + offset,
                    what,
                },
                other => other,
            })?;
        self.sessions = sessions;
        reader.offset += used;
        let (txns, read) = crate::txn::TxnState::decode(&reader.bytes[reader.offset..])
            .map_err(|what| reader.malformed(what))?;
        self.txns = txns;
        reader.offset += read;
        if version >= 4 {
            let read = (self
                .homes
                .decode(&reader.bytes[reader.offset..], version >= 6))
            .map_err(|what| reader.malformed(what))?;
            reader.offset += read;
        }
        if version >= 5 {
            let (foreign, read) = crate::foreign_requests::ForeignRequests::decode(
                &reader.bytes[reader.offset..],
                version >= 7,
            )
            .map_err(|what| reader.malformed(what))?;
            self.foreign = foreign;
            reader.offset += read;
        }
        if version >= 8 {
            let (intents, read) =
                crate::intents::IntentState::decode(&reader.bytes[reader.offset..], version >= 9)
                    .map_err(|what| reader.malformed(what))?;
            self.intents = intents;
            reader.offset += read;
        }
        Ok(())
    }

    /// Rebuilds the id indexes and per-account transfer lists from the tables (all in memory).
    pub(crate) fn rebuild_indexes(&mut self) -> Result<(), SnapshotError> {
        self.index_accounts()?;
        assert_eq!(self.transfers.cold_below(), 0);
        let transfers = std::mem::take(&mut self.transfers);
        let indexed = transfers
            .iter_in_memory()
            .try_for_each(|(position, transfer)| self.index_transfer(position, transfer));
        self.transfers = transfers;
        indexed
    }

    /// Indexes the accounts by id, with empty transfer lists and histories.
    pub(crate) fn index_accounts(&mut self) -> Result<(), SnapshotError> {
        self.account_transfers = vec![Vec::new(); self.accounts.len()];
        self.account_history = vec![History::default(); self.accounts.len()];
        for (position, account) in self.accounts.iter().enumerate() {
            let position = Ledger::position_of(position);
            if !account.id.is_valid() || self.account_positions.get(account.id.0).is_some() {
                return Err(SnapshotError::Inconsistent(
                    "invalid or duplicate account id".to_string(),
                ));
            }
            self.account_positions.insert(account.id.0, position);
        }
        Ok(())
    }

    /// Indexes a transfer by id and lists it with its accounts: the transfers come in
    /// position order, after `index_accounts`.
    pub(crate) fn index_transfer(
        &mut self,
        position: u32,
        transfer: &Transfer,
    ) -> Result<(), SnapshotError> {
        self.index_transfer_id(position, transfer)?;
        self.list_transfer(position, transfer)
    }

    /// Indexes a transfer by id, refusing an invalid or duplicate one.
    pub(crate) fn index_transfer_id(
        &mut self,
        position: u32,
        transfer: &Transfer,
    ) -> Result<(), SnapshotError> {
        if !transfer.id.is_valid() || self.transfer_positions.get(transfer.id.0).is_some() {
            let what = "invalid or duplicate transfer id".to_string();
            return Err(SnapshotError::Inconsistent(what));
        }
        self.transfer_positions.insert(transfer.id.0, position);
        Ok(())
    }

    /// Lists a transfer with its accounts (its id is indexed elsewhere): the transfers come
    /// in position order, after `index_accounts`.
    pub(crate) fn list_transfer(
        &mut self,
        position: u32,
        transfer: &Transfer,
    ) -> Result<(), SnapshotError> {
        let inconsistent = |what: &str| Err(SnapshotError::Inconsistent(what.to_string()));
        for id in [transfer.debit_account_id, transfer.credit_account_id] {
            match self.account_positions.get(id.0) {
                Some(account) => self.account_transfers[account as usize].push(position),
                None if self.owns(id.0) => return inconsistent("transfer of missing account"),
                // The account lives in another partition.
                None => {}
            }
        }
        Ok(())
    }
}

/// Checks the header and returns the format version and the body.
fn snapshot_body(bytes: &[u8]) -> Result<(u32, &[u8]), SnapshotError> {
    if bytes.len() < HEADER_SIZE || bytes[0..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..28]) != u32_at(28) {
        return Err(SnapshotError::HeaderChecksum);
    }
    let version = u32_at(8);
    if !(SNAPSHOT_FORMAT_VERSION_OLDEST..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    let body_size = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let actual = (bytes.len() - HEADER_SIZE) as u64;
    if body_size != actual {
        return Err(SnapshotError::Size {
            expected: body_size,
            actual,
        });
    }
    let body = &bytes[HEADER_SIZE..];
    if crc32c::crc32c(body) != u32_at(24) {
        return Err(SnapshotError::BodyChecksum);
    }
    Ok((version, body))
}

/// Reads a snapshot body front to back; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn malformed(&self, what: &'static str) -> SnapshotError {
        SnapshotError::Malformed {
            offset: self.offset,
            what,
        }
    }

    pub(crate) fn take(
        &mut self,
        size: usize,
        what: &'static str,
    ) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .offset
            .checked_add(size)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(self.malformed(what))?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SnapshotError> {
        let bytes = self.take(4, "truncated u32")?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SnapshotError> {
        let bytes = self.take(8, "truncated u64")?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    pub(crate) fn u128(&mut self) -> Result<u128, SnapshotError> {
        let bytes = self.take(16, "truncated u128")?;
        Ok(u128::from_le_bytes(bytes.try_into().expect("16 bytes")))
    }

    /// A count of items of `item_size` bytes each, checked against the bytes left.
    pub(crate) fn count(&mut self, item_size: usize) -> Result<usize, SnapshotError> {
        let count = self.u64()?;
        let left = (self.bytes.len() - self.offset) as u64;
        if count
            .checked_mul(item_size as u64)
            .is_none_or(|size| size > left)
        {
            return Err(self.malformed("count larger than the bytes left"));
        }
        Ok(count as usize)
    }

    /// A count, then that many fixed-size records.
    pub(crate) fn records<T: FromBytes + IntoBytes + Copy>(
        &mut self,
    ) -> Result<Vec<T>, SnapshotError> {
        let count = self.count(size_of::<T>())?;
        let bytes = self.take(count * size_of::<T>(), "truncated records")?;
        let mut records = T::new_vec_zeroed(count).map_err(|_| self.malformed("too many"))?;
        records.as_mut_bytes().copy_from_slice(bytes);
        Ok(records)
    }

    /// As `records`, into a table (without a second copy of them all on the way).
    pub(crate) fn table<T: FromBytes + IntoBytes + Copy>(
        &mut self,
    ) -> Result<Table<T>, SnapshotError> {
        let count = self.count(size_of::<T>())?;
        let bytes = self.take(count * size_of::<T>(), "truncated records")?;
        let mut table = Table::new();
        for record in bytes.chunks_exact(size_of::<T>()) {
            table.push(T::read_from_bytes(record).expect("exactly one record's bytes"));
        }
        Ok(table)
    }
}
