//! openraft's type configuration for a Kassa partition, and the few types it carries.
//!
//! Everything here is private to the crate: the node sees [`crate::Partition`] only.
//!
//! - A log entry's application data is [`CommandBytes`]: a [`Command`]'s encoding, prefixed with
//!   the entry-kind byte the log stores, so that an entry goes to and comes from
//!   `kassa-storage` without a copy and is decoded only when applied.
//! - The state machine answers [`Applied`]: the ledger's [`Reply`], or why the bytes were not a
//!   command (a deterministic answer every replica gives alike, never a crash).
//! - Leader ids are openraft's *standard* ones (one leader per term), so a committed leader id
//!   is exactly the `u64` term that `kassa-storage` keeps beside each entry.
//! - Nodes carry no data ([`EmptyNode`]): peers are found by the node layer, not through Raft's
//!   membership.
//! - A durable checkpoint is described by a [`CheckpointHead`] naming its [`RunEntry`]s, which
//!   `checkpoint.rs` writes and `codec.rs` encodes.

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;

use kassa_shard::{CheckpointCut, Command, CommandDecodeError, Keyspace, Reply};
use openraft::impls::leader_id_std;
use openraft::vote::RaftLeaderId;
use openraft::EmptyNode;

/// The one voter of every partition for now. Multi-voter groups will take node ids from the
/// cluster metadata.
pub(crate) const NODE_ID: u64 = 1;

/// The first byte of every stored log entry: what kind of entry it is.
pub(crate) const ENTRY_KIND_BLANK: u8 = 1;
pub(crate) const ENTRY_KIND_NORMAL: u8 = 2;
pub(crate) const ENTRY_KIND_MEMBERSHIP: u8 = 3;

openraft::declare_raft_types!(
    /// The openraft types of a Kassa partition.
    pub(crate) TypeConfig:
        D = CommandBytes,
        R = Applied,
        NodeId = u64,
        Node = EmptyNode,
        Term = u64,
        LeaderId = leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = openraft_rt_monoio::MonoioRuntime,
);

pub(crate) type LeaderId = leader_id_std::LeaderId<u64, u64>;
/// The committed form of a standard leader id: the term alone.
pub(crate) type CommittedLeaderId = <LeaderId as RaftLeaderId>::Committed;
pub(crate) type LogId = openraft::LogId<CommittedLeaderId>;
pub(crate) type Vote = openraft::Vote<LeaderId>;
pub(crate) type Payload = openraft::EntryPayload<CommandBytes, u64, EmptyNode>;
pub(crate) type Entry = openraft::Entry<CommittedLeaderId, Payload>;
pub(crate) type Membership = openraft::Membership<u64, EmptyNode>;
pub(crate) type StoredMembership = openraft::StoredMembership<CommittedLeaderId, u64, EmptyNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<CommittedLeaderId, u64, EmptyNode>;
pub(crate) type Snapshot = openraft::Snapshot<CommittedLeaderId, u64, EmptyNode, SnapshotData>;

/// A snapshot's data: the checkpoint in a partition's directory (its manifest and runs; a
/// follower will receive a leader's into a directory of its own). openraft asks for the
/// current snapshot at every open and mostly looks at its meta only: the checkpoint is read
/// when the data is needed.
#[derive(Debug)]
pub(crate) enum SnapshotData {
    /// The checkpoint in this directory, expected to cover the meta it was handed out with.
    File(PathBuf),
}

/// The log id at `index` written in `term`.
pub(crate) fn log_id(term: u64, index: u64) -> LogId {
    LogId {
        leader_id: CommittedLeaderId::new(term),
        index,
    }
}

/// A command as the log carries it: `ENTRY_KIND_NORMAL` then [`Command::encode`]'s bytes.
/// The invariant (first byte, at least one byte) is checked wherever one is built. Shared, so
/// that the log can keep an appended entry for the state machine without copying it.
///
/// A command proposed on this node also carries the command itself, which the state machine
/// takes when it applies the entry instead of decoding the bytes just encoded from it: a
/// cross-partition decision is megabytes. Entries read back from storage (or, later, received
/// from a leader) have only their bytes.
#[derive(Clone)]
pub(crate) struct CommandBytes {
    bytes: Rc<Vec<u8>>,
    proposed: Option<Proposed>,
}

/// The command a proposal was encoded from, until its entry is applied; shared by the
/// proposer (which proposes it again if a write is refused before its append) and every copy
/// of the entry.
pub(crate) type Proposed = Rc<RefCell<Option<Command>>>;

/// Two entries are the same command when their bytes are.
impl PartialEq for CommandBytes {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for CommandBytes {}

impl CommandBytes {
    pub(crate) fn encode(command: &Command) -> CommandBytes {
        let mut bytes = Vec::with_capacity(1 + command.encoded_len());
        bytes.push(ENTRY_KIND_NORMAL);
        command.encode(&mut bytes);
        debug_assert_eq!(bytes.len(), 1 + command.encoded_len());
        CommandBytes {
            bytes: Rc::new(bytes),
            proposed: None,
        }
    }

    /// The bytes of the command in `proposed`, which keep the command for the apply.
    pub(crate) fn propose(proposed: &Proposed) -> CommandBytes {
        let encoded = {
            let command = proposed.borrow();
            CommandBytes::encode(command.as_ref().expect("a proposal not applied yet"))
        };
        CommandBytes {
            proposed: Some(proposed.clone()),
            ..encoded
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Wraps a stored entry's payload; the caller checked its kind byte.
    pub(crate) fn from_payload(payload: Vec<u8>) -> CommandBytes {
        assert_eq!(payload.first(), Some(&ENTRY_KIND_NORMAL));
        CommandBytes {
            bytes: Rc::new(payload),
            proposed: None,
        }
    }

    /// The bytes to store: kind byte included.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.bytes
    }

    /// The command to apply: the proposed one if this node proposed it (each entry is
    /// applied once), else decoded from the bytes. Bad bytes are refused, never a panic.
    pub(crate) fn take_command(&self) -> Result<Command, CommandDecodeError> {
        let proposed = self.proposed.as_ref().and_then(|p| p.borrow_mut().take());
        match proposed {
            Some(command) => {
                debug_assert_eq!(Command::decode(&self.bytes[1..]).as_ref(), Ok(&command));
                Ok(command)
            }
            None => Command::decode(&self.bytes[1..]),
        }
    }
}

/// Commands can be a megabyte: show their size, not their bytes.
impl fmt::Debug for CommandBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandBytes({} bytes)", self.bytes.len() - 1)
    }
}

impl fmt::Display for CommandBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command of {} bytes", self.bytes.len() - 1)
    }
}

/// What applying one log entry answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// A command's reply.
    Reply(Reply),
    /// The entry's bytes were not a command: applied as a no-op on every replica.
    Rejected(CommandDecodeError),
    /// A blank or membership entry: nothing to answer.
    Nothing,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposed_command_is_applied_once_without_decoding_and_its_bytes_still_decode() {
        let command = Command::ExpirePendingTransfers { now: 42 };
        let proposed: Proposed = Rc::new(RefCell::new(Some(command.clone())));
        let bytes = CommandBytes::propose(&proposed);
        let copy = bytes.clone();
        assert_eq!(bytes, CommandBytes::encode(&command), "the same bytes");
        assert_eq!(copy.take_command(), Ok(command.clone()));
        assert!(proposed.borrow().is_none(), "taken by the apply");
        // Any later read of the entry decodes its bytes.
        assert_eq!(bytes.take_command(), Ok(command.clone()));
        let stored = CommandBytes::from_payload(bytes.payload().to_vec());
        assert_eq!(stored.take_command(), Ok(command));
    }
}

/// One run a manifest names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunEntry {
    pub(crate) keyspace: Keyspace,
    /// The checkpoint that wrote it.
    pub(crate) number: u64,
    pub(crate) keys: u64,
    pub(crate) first_key: u128,
    pub(crate) last_key: u128,
}

impl RunEntry {
    pub(crate) fn file_name(&self) -> String {
        run_file_name(self.keyspace, self.number)
    }
}

/// The file name of checkpoint `number`'s run of `keyspace`.
pub(crate) fn run_file_name(keyspace: Keyspace, number: u64) -> String {
    format!("{}-{number:020}.run", keyspace.name())
}

/// A manifest but its hot state: what a durable checkpoint covers and names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointHead {
    /// 1 for a partition's first checkpoint, one more for each after it.
    pub(crate) number: u64,
    pub(crate) meta: SnapshotMeta,
    /// `status_changes` is 0: it counts a ledger's own list, which a restore starts anew.
    pub(crate) cut: CheckpointCut,
    /// Live runs, in the order they were written.
    pub(crate) runs: Vec<RunEntry>,
}
