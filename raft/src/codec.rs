//! Binary encodings of what this crate stores: log entry payloads, the vote, the purge point
//! and snapshot files. openraft's `serde` feature is off, so each is written by hand here.
//!
//! All integers are little-endian. `kassa-storage` already frames every entry and durable file
//! with its length and a CRC32C; these encodings add a magic and a version to each file, and
//! every decoder checks lengths and counts against named limits before it allocates, so bad
//! bytes give a [`CodecError`], never a panic.
//!
//! ```text
//! log entry payload: kind u8, then
//!     blank:      nothing
//!     normal:     Command::encode bytes
//!     membership: membership (below)
//! membership:   configs u32, per config: voters u32, voters × node id u64; nodes u32, nodes × id u64
//! log id:       present u8 (0 or 1), term u64, index u64 (zero when absent)
//! vote file:    "KVOT" | version u32 | term u64 | voted_for u64 | committed u8
//! purged file:  "KPUR" | version u32 | log id
//! snapshot file:"KSNP" | version u32 | last log id | membership log id | membership
//!               | ledger size u64 | ledger snapshot bytes
//! checkpoint:   "KCKP" | version u32 | number u64 | last log id | membership log id
//!               | membership | cut: transfers u64, change sequence u64
//!               | runs u32, per run: keyspace u8, number u64, keys u64, first key u128,
//!               last key u128 | hot state size u64 | hot state bytes
//! ```

use std::collections::{BTreeMap, BTreeSet};

use kassa_storage::{Appendable, LogEntry};
use openraft::entry::RaftEntry;
use openraft::vote::RaftLeaderId;
use openraft::EmptyNode;

use crate::types::{
    log_id, CheckpointHead, CommandBytes, Entry, LeaderId, LogId, Membership, Payload, RunEntry,
    SnapshotMeta, StoredMembership, Vote, ENTRY_KIND_BLANK, ENTRY_KIND_MEMBERSHIP,
    ENTRY_KIND_NORMAL,
};

pub(crate) const FORMAT_VERSION: u32 = 1;
const MAGIC_VOTE: [u8; 4] = *b"KVOT";
const MAGIC_PURGED: [u8; 4] = *b"KPUR";
const MAGIC_SNAPSHOT: [u8; 4] = *b"KSNP";
const MAGIC_CHECKPOINT: [u8; 4] = *b"KCKP";
/// Most runs a checkpoint names.
pub(crate) const CHECKPOINT_RUNS_MAX: usize = 1 << 20;

/// Most configs in a membership: two while a joint-consensus change is under way.
pub(crate) const MEMBERSHIP_CONFIGS_MAX: usize = 2;
/// Most nodes (voters and learners) a partition's membership names.
pub(crate) const MEMBERSHIP_NODES_MAX: usize = 64;

/// Why stored bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub struct CodecError {
    pub what: &'static str,
    pub offset: usize,
}

impl From<CodecError> for std::io::Error {
    fn from(error: CodecError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}

/// Reads fixed-width fields off a byte slice, refusing to read past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, offset: 0 }
    }

    fn error(&self, what: &'static str) -> CodecError {
        CodecError {
            what,
            offset: self.offset,
        }
    }

    fn take(&mut self, size: usize) -> Result<&'a [u8], CodecError> {
        if self.bytes.len() - self.offset < size {
            return Err(self.error("truncated"));
        }
        let taken = &self.bytes[self.offset..self.offset + size];
        self.offset += size;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        let bytes = self.take(4)?.try_into().expect("4 bytes");
        Ok(u32::from_le_bytes(bytes))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        let bytes = self.take(8)?.try_into().expect("8 bytes");
        Ok(u64::from_le_bytes(bytes))
    }

    fn u128(&mut self) -> Result<u128, CodecError> {
        let bytes = self.take(16)?.try_into().expect("16 bytes");
        Ok(u128::from_le_bytes(bytes))
    }

    fn count(&mut self, max: usize) -> Result<usize, CodecError> {
        let count = self.u32()? as usize;
        if count > max {
            return Err(self.error("count above its limit"));
        }
        Ok(count)
    }

    fn header(&mut self, magic: [u8; 4]) -> Result<(), CodecError> {
        if self.take(4)? != magic {
            return Err(self.error("bad magic"));
        }
        if self.u32()? != FORMAT_VERSION {
            return Err(self.error("unsupported format version"));
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), CodecError> {
        if self.offset != self.bytes.len() {
            return Err(self.error("trailing bytes"));
        }
        Ok(())
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_header(out: &mut Vec<u8>, magic: [u8; 4]) {
    out.extend_from_slice(&magic);
    put_u32(out, FORMAT_VERSION);
}

/// The stored form of an openraft entry. Normal entries move their bytes, never copy them.
pub(crate) fn encode_entry(entry: &Entry) -> Outgoing {
    let (term, index) = (entry.log_id.leader_id.term, entry.log_id.index);
    let payload = match &entry.payload {
        Payload::Blank => OutgoingPayload::Encoded(vec![ENTRY_KIND_BLANK]),
        Payload::Normal(command) => OutgoingPayload::Command(command.clone()),
        Payload::Membership(membership) => {
            let mut out = vec![ENTRY_KIND_MEMBERSHIP];
            put_membership(&mut out, membership);
            OutgoingPayload::Encoded(out)
        }
    };
    Outgoing {
        term,
        index,
        payload,
    }
}

/// An entry on its way to storage, which borrows its payload: a command's bytes (shared with
/// the entry, not copied) or a blank's or membership's encoding.
pub(crate) struct Outgoing {
    term: u64,
    index: u64,
    payload: OutgoingPayload,
}

enum OutgoingPayload {
    Command(CommandBytes),
    Encoded(Vec<u8>),
}

impl Appendable for Outgoing {
    fn term(&self) -> u64 {
        self.term
    }
    fn index(&self) -> u64 {
        self.index
    }
    fn payload(&self) -> &[u8] {
        match &self.payload {
            OutgoingPayload::Command(command) => command.payload(),
            OutgoingPayload::Encoded(bytes) => bytes,
        }
    }
}

/// The openraft entry a stored entry holds.
pub(crate) fn decode_entry(entry: LogEntry) -> Result<Entry, CodecError> {
    let log_id = log_id(entry.term, entry.index);
    let mut cursor = Cursor::new(&entry.payload);
    let payload = match cursor.u8()? {
        ENTRY_KIND_BLANK => {
            cursor.finish()?;
            Payload::Blank
        }
        ENTRY_KIND_NORMAL => Payload::Normal(CommandBytes::from_payload(entry.payload)),
        ENTRY_KIND_MEMBERSHIP => {
            let membership = take_membership(&mut cursor)?;
            cursor.finish()?;
            Payload::Membership(membership)
        }
        _ => return Err(cursor.error("unknown entry kind")),
    };
    Ok(Entry::new(log_id, payload))
}

fn put_membership(out: &mut Vec<u8>, membership: &Membership) {
    let configs = membership.get_joint_config();
    assert!(configs.len() <= MEMBERSHIP_CONFIGS_MAX);
    put_u32(out, configs.len() as u32);
    for config in configs {
        assert!(config.len() <= MEMBERSHIP_NODES_MAX);
        put_u32(out, config.len() as u32);
        config.iter().for_each(|id| put_u64(out, *id));
    }
    let nodes: Vec<u64> = membership.nodes().map(|(id, _)| *id).collect();
    assert!(nodes.len() <= MEMBERSHIP_NODES_MAX);
    put_u32(out, nodes.len() as u32);
    nodes.iter().for_each(|id| put_u64(out, *id));
}

fn take_membership(cursor: &mut Cursor<'_>) -> Result<Membership, CodecError> {
    let config_count = cursor.count(MEMBERSHIP_CONFIGS_MAX)?;
    let mut configs = Vec::with_capacity(config_count);
    for _ in 0..config_count {
        let voter_count = cursor.count(MEMBERSHIP_NODES_MAX)?;
        let mut voters = BTreeSet::new();
        for _ in 0..voter_count {
            voters.insert(cursor.u64()?);
        }
        configs.push(voters);
    }
    let node_count = cursor.count(MEMBERSHIP_NODES_MAX)?;
    let mut nodes = BTreeMap::new();
    for _ in 0..node_count {
        nodes.insert(cursor.u64()?, EmptyNode {});
    }
    Membership::new(configs, nodes).map_err(|_| cursor.error("invalid membership"))
}

fn put_log_id(out: &mut Vec<u8>, log_id: Option<&LogId>) {
    out.push(log_id.is_some() as u8);
    put_u64(out, log_id.map_or(0, |id| id.leader_id.term));
    put_u64(out, log_id.map_or(0, |id| id.index));
}

fn take_log_id(cursor: &mut Cursor<'_>) -> Result<Option<LogId>, CodecError> {
    let present = cursor.u8()?;
    let (term, index) = (cursor.u64()?, cursor.u64()?);
    match present {
        0 if term == 0 && index == 0 => Ok(None),
        1 => Ok(Some(log_id(term, index))),
        _ => Err(cursor.error("bad log id")),
    }
}

pub(crate) fn encode_vote(vote: &Vote) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    put_header(&mut out, MAGIC_VOTE);
    put_u64(&mut out, vote.leader_id.term);
    put_u64(&mut out, vote.leader_id.voted_for);
    out.push(vote.committed as u8);
    out
}

pub(crate) fn decode_vote(bytes: &[u8]) -> Result<Vote, CodecError> {
    let mut cursor = Cursor::new(bytes);
    cursor.header(MAGIC_VOTE)?;
    let (term, voted_for) = (cursor.u64()?, cursor.u64()?);
    let committed = match cursor.u8()? {
        0 => false,
        1 => true,
        _ => return Err(cursor.error("bad committed flag")),
    };
    cursor.finish()?;
    Ok(Vote {
        leader_id: LeaderId::new(term, voted_for),
        committed,
    })
}

pub(crate) fn encode_purged(purged: &LogId) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    put_header(&mut out, MAGIC_PURGED);
    put_log_id(&mut out, Some(purged));
    out
}

pub(crate) fn decode_purged(bytes: &[u8]) -> Result<LogId, CodecError> {
    let mut cursor = Cursor::new(bytes);
    cursor.header(MAGIC_PURGED)?;
    let purged = take_log_id(&mut cursor)?.ok_or_else(|| cursor.error("purge point absent"))?;
    cursor.finish()?;
    Ok(purged)
}

/// A snapshot file of an earlier version: its meta, then the ledger's snapshot bytes.
#[cfg(test)]
pub(crate) fn encode_snapshot(meta: &SnapshotMeta, ledger: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ledger.len() + 256);
    put_header(&mut out, MAGIC_SNAPSHOT);
    put_meta(&mut out, meta);
    put_u64(&mut out, ledger.len() as u64);
    out.extend_from_slice(ledger);
    out
}

pub(crate) fn decode_snapshot(mut bytes: Vec<u8>) -> Result<(SnapshotMeta, Vec<u8>), CodecError> {
    let mut cursor = Cursor::new(&bytes);
    cursor.header(MAGIC_SNAPSHOT)?;
    let meta = take_meta(&mut cursor)?;
    let ledger_size = cursor.u64()?;
    let ledger_offset = cursor.offset;
    if ledger_size != (bytes.len() - ledger_offset) as u64 {
        return Err(cursor.error("ledger size does not match the file"));
    }
    bytes.drain(..ledger_offset);
    Ok((meta, bytes))
}

fn put_meta(out: &mut Vec<u8>, meta: &SnapshotMeta) {
    put_log_id(out, meta.last_log_id.as_ref());
    put_log_id(out, meta.last_membership.log_id().as_ref());
    put_membership(out, meta.last_membership.membership());
}

fn take_meta(cursor: &mut Cursor<'_>) -> Result<SnapshotMeta, CodecError> {
    let last_log_id = take_log_id(cursor)?;
    let membership_log_id = take_log_id(cursor)?;
    let membership = take_membership(cursor)?;
    Ok(SnapshotMeta {
        last_log_id,
        last_membership: StoredMembership::new(membership_log_id, membership),
    })
}

/// A checkpoint's manifest: what it covers, the runs it names, and the ledger's hot state.
pub(crate) fn encode_checkpoint(head: &CheckpointHead, hot: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hot.len() + 256 + head.runs.len() * 49);
    put_header(&mut out, MAGIC_CHECKPOINT);
    put_u64(&mut out, head.number);
    put_meta(&mut out, &head.meta);
    put_u64(&mut out, u64::from(head.cut.transfers));
    put_u64(&mut out, head.cut.change_sequence);
    assert!(head.runs.len() <= CHECKPOINT_RUNS_MAX);
    put_u32(&mut out, head.runs.len() as u32);
    for run in &head.runs {
        out.push(run.keyspace as u8);
        put_u64(&mut out, run.number);
        put_u64(&mut out, run.keys);
        out.extend_from_slice(&run.first_key.to_le_bytes());
        out.extend_from_slice(&run.last_key.to_le_bytes());
    }
    put_u64(&mut out, hot.len() as u64);
    out.extend_from_slice(hot);
    out
}

pub(crate) fn decode_checkpoint(
    mut bytes: Vec<u8>,
) -> Result<(CheckpointHead, Vec<u8>), CodecError> {
    let mut cursor = Cursor::new(&bytes);
    cursor.header(MAGIC_CHECKPOINT)?;
    let number = cursor.u64()?;
    let meta = take_meta(&mut cursor)?;
    let transfers = u32::try_from(cursor.u64()?).map_err(|_| cursor.error("transfer count"))?;
    let change_sequence = cursor.u64()?;
    let count = cursor.count(CHECKPOINT_RUNS_MAX)?;
    let mut runs = Vec::with_capacity(count);
    for _ in 0..count {
        let keyspace = kassa_shard::Keyspace::from_u8(cursor.u8()?);
        let keyspace = keyspace.ok_or_else(|| cursor.error("unknown keyspace"))?;
        runs.push(RunEntry {
            keyspace,
            number: cursor.u64()?,
            keys: cursor.u64()?,
            first_key: cursor.u128()?,
            last_key: cursor.u128()?,
        });
    }
    let hot_size = cursor.u64()?;
    let hot_offset = cursor.offset;
    if hot_size != (bytes.len() - hot_offset) as u64 {
        return Err(cursor.error("hot state size does not match the file"));
    }
    let cut = kassa_shard::CheckpointCut {
        transfers,
        status_changes: 0,
        change_sequence,
    };
    let head = CheckpointHead {
        number,
        meta,
        cut,
        runs,
    };
    bytes.drain(..hot_offset);
    Ok((head, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_shard::Command;

    fn single_voter() -> Membership {
        Membership::new(vec![BTreeSet::from([1])], BTreeSet::from([1, 2])).expect("valid")
    }

    #[test]
    fn entries_round_trip() {
        let command = Command::ExpirePendingTransfers { now: 9 };
        let entries = [
            Entry::new(log_id(1, 1), Payload::Blank),
            Entry::new(
                log_id(2, 2),
                Payload::Normal(CommandBytes::encode(&command)),
            ),
            Entry::new(log_id(3, 3), Payload::Membership(single_voter())),
        ];
        for entry in entries {
            let outgoing = encode_entry(&entry);
            let stored = LogEntry {
                term: outgoing.term(),
                index: outgoing.index(),
                payload: outgoing.payload().to_vec(),
            };
            assert_eq!(
                (stored.term, stored.index),
                (entry.log_id.leader_id.term, entry.index())
            );
            assert_eq!(decode_entry(stored).expect("decodes"), entry);
        }
    }

    #[test]
    fn bad_entries_are_refused() {
        let bad = |payload: Vec<u8>| {
            let entry = LogEntry {
                term: 1,
                index: 1,
                payload,
            };
            decode_entry(entry).is_err()
        };
        assert!(bad(vec![]));
        assert!(bad(vec![0]));
        assert!(bad(vec![ENTRY_KIND_BLANK, 0]));
        let membership = encode_entry(&Entry::new(
            log_id(1, 1),
            Payload::Membership(single_voter()),
        ));
        let mut cut = membership.payload().to_vec();
        cut.pop();
        assert!(bad(cut));
        let mut huge = vec![ENTRY_KIND_MEMBERSHIP];
        put_u32(&mut huge, u32::MAX);
        assert!(bad(huge));
    }

    #[test]
    fn files_round_trip_and_refuse_damage() {
        let vote = Vote {
            leader_id: LeaderId::new(7, 1),
            committed: true,
        };
        let bytes = encode_vote(&vote);
        assert_eq!(decode_vote(&bytes), Ok(vote));
        assert!(decode_vote(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_purged(&bytes).is_err());

        let purged = log_id(3, 40);
        assert_eq!(decode_purged(&encode_purged(&purged)), Ok(purged));

        let meta = SnapshotMeta {
            last_log_id: Some(log_id(3, 41)),
            last_membership: StoredMembership::new(Some(log_id(1, 1)), single_voter()),
        };
        let file = encode_snapshot(&meta, b"ledger");
        let (decoded, ledger) = decode_snapshot(file.clone()).expect("decodes");
        assert_eq!((decoded, ledger.as_slice()), (meta.clone(), &b"ledger"[..]));
        assert!(decode_snapshot(file[..file.len() - 1].to_vec()).is_err());
        let mut version = file;
        version[4] = 2;
        assert!(decode_snapshot(version).is_err());

        let head = CheckpointHead {
            number: 7,
            meta,
            cut: kassa_shard::CheckpointCut {
                transfers: 1_000,
                status_changes: 0,
                change_sequence: 2_001,
            },
            runs: vec![RunEntry {
                keyspace: kassa_shard::Keyspace::History,
                number: 6,
                keys: 40,
                first_key: 3 << 32,
                last_key: u128::MAX - 1,
            }],
        };
        let file = encode_checkpoint(&head, b"hot state");
        let (decoded, hot) = decode_checkpoint(file.clone()).expect("decodes");
        assert_eq!((decoded, hot.as_slice()), (head, &b"hot state"[..]));
        assert!(decode_checkpoint(file[..file.len() - 1].to_vec()).is_err());
        let mut keyspace = file;
        let at = keyspace.len() - 9 - 8 - 49;
        assert_eq!(keyspace[at], kassa_shard::Keyspace::History as u8);
        keyspace[at] = 9;
        assert!(decode_checkpoint(keyspace).is_err());
    }
}
