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

use kassa_wire::multi_batch::MultiBatch;
use kassa_wire::{Operation, Transfer, TransferId};

use crate::client_requests::records;
use crate::keyspace::Keyspace;
use crate::sessions::{ClientRequest, BATCH_SIZE_LIMIT};
use crate::{Command, Ledger};

impl Ledger {
    /// Appends to `out` the cold entries applying `command` may read (see the module
    /// documentation), as `(keyspace, key)`; nothing when everything it reads is in memory.
    pub fn cold_reads(&self, command: &Command, out: &mut Vec<(Keyspace, u128)>) {
        if self.cold.is_none() || self.transfers.cold_below() == 0 {
            return;
        }
        match command {
            Command::CreateTransfers { transfers, .. } => self.cold_reads_of(transfers, out),
            Command::Request { request, .. } | Command::ForeignRequest { request, .. } => {
                self.cold_reads_of_request(request, out)
            }
            _ => {}
        }
    }

    fn cold_reads_of(&self, transfers: &[Transfer], out: &mut Vec<(Keyspace, u128)>) {
        // As the batch loop does: the id lookups' cache misses overlap, and the apply that
        // follows finds the same slots in cache.
        for t in transfers {
            self.transfer_positions.prefetch(t.id.0);
            if t.pending_id.0 != 0 {
                self.transfer_positions.prefetch(t.pending_id.0);
            }
        }
        for t in transfers {
            self.cold_transfer(t.id, out);
            if t.pending_id.0 != 0 {
                self.cold_transfer(t.pending_id, out);
            }
        }
    }

    fn cold_reads_of_request(&self, request: &ClientRequest, out: &mut Vec<(Keyspace, u128)>) {
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
        for batch in batches.batches() {
            if operation == Operation::CreateTransfers {
                self.cold_reads_of(&records::<Transfer>(batch), out);
            } else {
                for id in records::<TransferId>(batch) {
                    self.cold_transfer(id, out);
                }
            }
        }
    }

    /// The transfer of `id`, if it is stored and cold.
    fn cold_transfer(&self, id: TransferId, out: &mut Vec<(Keyspace, u128)>) {
        if let Some(position) = self.transfer_positions.get(id.0) {
            if self.transfers.get_in_memory(position).is_none() {
                out.push((Keyspace::Transfers, u128::from(position)));
            }
        }
    }
}
