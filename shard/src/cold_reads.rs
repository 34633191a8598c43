//! Which cold entries applying a command may read, so that the node reads them ahead of the
//! apply without blocking its core (docs/storage.md, "Cold reads: prefetch, then apply"). The
//! ledger stays synchronous: it reads cold entries through its store during the apply, and a
//! store that prefetched them answers from memory.
//!
//! The list may hold more than the apply reads (a retry answered from its session's cache
//! reads nothing), never less for the cases listed: a transfer event's own id and its pending
//! id, in a node's batch or in a wire request's `create_transfers` batches, and the ids of a
//! wire request's `lookup_transfers`. What it leaves out (an account's transfers or a query
//! inside a wire request, an imported event's timestamp check) the store reads when asked,
//! blocking, and counts.
//!
//! It comes in two rounds ([`ColdReads`]): an id older than the last durable checkpoint is
//! in the id runs, so the first round lists the ids not in memory (the store reads the
//! blocks their runs' filters let through), and the second, once those blocks are held, the
//! cold transfers at the positions found.

use kassa_wire::multi_batch::MultiBatch;
use kassa_wire::{Operation, Transfer};

use crate::keyspace::Keyspace;
use crate::sessions::{ClientRequest, BATCH_SIZE_LIMIT};
use crate::{Command, Ledger};

/// Id index slots prefetched ahead of the one looked up (as `txn.rs` does): enough to overlap
/// the cache misses, few enough that the slots are still in cache when the apply follows.
const PREFETCH_AHEAD: usize = 16;

/// A round of [`Ledger::cold_reads`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColdReads {
    /// The ids not in memory, and the cold transfers of ids in memory.
    Ids,
    /// The cold transfers of ids found in the id runs (whose blocks the first round read).
    Transfers,
}

impl Ledger {
    /// Appends to `out` the cold entries applying `command` may read in `round` (see the
    /// module documentation), as `(keyspace, key)`; nothing when everything it reads is in
    /// memory.
    pub fn cold_reads(&self, command: &Command, round: ColdReads, out: &mut Vec<(Keyspace, u128)>) {
        if self.cold.is_none() || self.transfers.cold_below() == 0 {
            return;
        }
        if round == ColdReads::Transfers && !self.transfer_positions.any_cold() {
            return; // no id is cold: the first round found them all
        }
        match command {
            Command::CreateTransfers { transfers, .. } => {
                let ids = |at: usize| (transfers[at].id.0, transfers[at].pending_id.0);
                self.cold_reads_of(transfers.len(), ids, round, out);
            }
            Command::Request { request, .. } | Command::ForeignRequest { request, .. } => {
                self.cold_reads_of_request(request, round, out)
            }
            _ => {}
        }
    }

    /// For each of `count` events, `ids(at)` = `(id, pending id)` (0: none): the cold
    /// transfers they name.
    fn cold_reads_of(
        &self,
        count: usize,
        ids: impl Fn(usize) -> (u128, u128),
        round: ColdReads,
        out: &mut Vec<(Keyspace, u128)>,
    ) {
        // Ids in memory name cold transfers only when a generation reaches below the cold
        // transfers (one kept past its cut, a restore of format 1); otherwise only an id in
        // the cold ids' range can, and the index need not be probed for the others (every
        // new id, when ids grow with time).
        let probe = self.transfer_positions.first() < self.transfers.cold_below();
        let prefetch = |at: usize| {
            if probe && at < count {
                let (id, pending_id) = ids(at);
                self.transfer_positions.prefetch(id);
                if pending_id != 0 {
                    self.transfer_positions.prefetch(pending_id);
                }
            }
        };
        (0..PREFETCH_AHEAD).for_each(prefetch);
        for at in 0..count {
            prefetch(at + PREFETCH_AHEAD);
            let (id, pending_id) = ids(at);
            self.cold_transfer(id, round, probe, out);
            if pending_id != 0 {
                self.cold_transfer(pending_id, round, probe, out);
            }
        }
    }

    fn cold_reads_of_request(
        &self,
        request: &ClientRequest,
        round: ColdReads,
        out: &mut Vec<(Keyspace, u128)>,
    ) {
        let operation = request.operation();
        if !matches!(
            operation,
            Operation::CreateTransfers | Operation::LookupTransfers
        ) {
            return;
        }
        let event_max = operation.event_max(BATCH_SIZE_LIMIT as usize);
        let Ok(batches) = MultiBatch::decode(request.body(), operation.event_size(), event_max)
        else {
            return; // validated when the request was built: not reached
        };
        // The ids straight from the events' bytes (little-endian, possibly unaligned).
        let id_at = |event: &[u8], offset: usize| {
            let bytes = event[offset..offset + 16].try_into().expect("16 bytes");
            u128::from_le_bytes(bytes)
        };
        let size = operation.event_size();
        let pending = (operation == Operation::CreateTransfers)
            .then_some(std::mem::offset_of!(Transfer, pending_id));
        for batch in batches.batches() {
            let ids = |at: usize| {
                let event = &batch[at * size..(at + 1) * size];
                (
                    id_at(event, 0),
                    pending.map_or(0, |offset| id_at(event, offset)),
                )
            };
            self.cold_reads_of(batch.len() / size, ids, round, out);
        }
    }

    /// What finding the transfer of `id` reads from the store in `round`: its id in the id
    /// runs, if not in memory; its transfer, if cold.
    fn cold_transfer(
        &self,
        id: u128,
        round: ColdReads,
        probe: bool,
        out: &mut Vec<(Keyspace, u128)>,
    ) {
        let may_be_cold = id != 0 && self.transfer_positions.may_be_cold(id);
        if !probe && !may_be_cold {
            return; // new, or in memory with a transfer in memory
        }
        let in_memory = self.transfer_positions.get(id);
        let position = match round {
            ColdReads::Ids if in_memory.is_none() => {
                if may_be_cold {
                    out.push((Keyspace::TransferIds, id));
                }
                return;
            }
            ColdReads::Ids => in_memory,
            // A failed read is left to the apply, which fails the same way.
            ColdReads::Transfers if in_memory.is_none() => {
                self.cold_transfer_position(id).ok().flatten()
            }
            ColdReads::Transfers => return,
        };
        if let Some(position) = position {
            if self.transfers.get_in_memory(position).is_none() {
                out.push((Keyspace::Transfers, u128::from(position)));
            }
        }
    }
}
