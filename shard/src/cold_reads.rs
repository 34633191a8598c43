//! Which cold entries applying a command may read, so that the node reads them ahead of the
//! apply without blocking its core (docs/storage.md, "Cold reads: prefetch, then apply"). The
//! ledger stays synchronous: it reads cold entries through its store during the apply, and a
//! store that prefetched them answers from memory.
//!
//! The list may hold more than the apply reads (a retry answered from its session's cache
//! reads nothing), never less for the cases listed: a transfer event's own id and its pending
//! id, in a node's batch, in a wire request's `create_transfers` batches and in a
//! participant's intent of a `create_transfers` share, and the ids of a wire request's
//! `lookup_transfers`. For a wire request's `get_account_transfers`, `get_account_balances`
//! and `query_transfers` it lists what a read of up to twice the filter's limit reads (a
//! filter that rejects more than half of what it scans reads the rest blocking). What it
//! leaves out (an imported event's timestamp check) the store reads when asked, blocking,
//! and counts.
//!
//! It comes in rounds ([`ColdReads`]): an id older than the last durable checkpoint is in the
//! id runs, so the round `Ids` lists the ids not in memory (the store reads the blocks their
//! runs' filters let through), and the round `Transfers`, once those blocks are held, the
//! cold transfers at the positions found. A read by filter with timestamp bounds first
//! seeks the timestamp samples in the store (the round `Timestamps`: a [`ColdRange`] per
//! bound, from [`Ledger::cold_ranges`]); its round `Ids` then lists, through the held
//! samples, the cold transfers its bounds' searches read and, for an account's transfers,
//! the key range of its cold list; its round `Transfers`, the cold transfers (and history
//! balances) at the positions the read visits, found through the held blocks.

use kassa_wire::multi_batch::MultiBatch;
use kassa_wire::{
    AccountFilter, AccountFilterFlags, AccountFlags, Operation, QueryFilter, QueryFilterFlags,
    Transfer,
};
use zerocopy::FromBytes;

use crate::history::history_key;
use crate::keyspace::Keyspace;
use crate::limits::QUERY_RESULTS_MAX;
use crate::queries::{account_filter_valid, query_filter_valid};
use crate::sessions::{ClientRequest, BATCH_SIZE_LIMIT};
use crate::{Command, Ledger};

/// Id index slots prefetched ahead of the one looked up (as `txn.rs` does): enough to overlap
/// the cache misses, few enough that the slots are still in cache when the apply follows.
const PREFETCH_AHEAD: usize = 16;

/// Positions a query's listing visits per result it may return: a filter that rejects more
/// than half of what it scans reads the rest blocking.
const QUERY_READS_PER_RESULT: usize = 2;

/// A key range of a keyspace that a command may read in order from one end, up to `entries`
/// entries (an account's cold transfer list): the store reads ahead, in each run the range
/// overlaps, the blocks holding its first `entries` entries (the last, when `reversed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColdRange {
    pub keyspace: Keyspace,
    pub keys: std::ops::Range<u128>,
    pub reversed: bool,
    pub entries: usize,
}

/// A round of [`Ledger::cold_reads`] and [`Ledger::cold_ranges`], in the order they come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColdReads {
    /// The timestamp samples a read by filter's bounds seek (ranges only).
    Timestamps,
    /// The ids not in memory, and the cold transfers of ids in memory.
    Ids,
    /// The cold transfers of ids found in the id runs (whose blocks the round `Ids` read).
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
        if round == ColdReads::Timestamps {
            return; // seeks only (`cold_ranges`)
        }
        match command {
            Command::CreateTransfers { transfers, .. } => {
                if round == ColdReads::Transfers && !self.transfer_positions.any_cold() {
                    return; // no id is cold: the first round found them all
                }
                let ids = |at: usize| (transfers[at].id.0, transfers[at].pending_id.0);
                self.cold_reads_of(transfers.len(), ids, false, round, out);
            }
            Command::Request { request, .. } | Command::ForeignRequest { request, .. } => {
                self.cold_reads_of_request(request, round, out)
            }
            Command::Rare(entry) => {
                // A participant's intent runs its share on the records its transfers name.
                let Some(transfers) = entry.intent_transfers() else {
                    return;
                };
                if round == ColdReads::Transfers && !self.transfer_positions.any_cold() {
                    return;
                }
                let ids = |at: usize| (transfers[at].id.0, transfers[at].pending_id.0);
                self.cold_reads_of(transfers.len(), ids, false, round, out);
            }
            _ => {}
        }
    }

    /// For each of `count` events, `ids(at)` = `(id, pending id)` (0: none): the cold
    /// transfers they name, and the statuses of the pending ids' (a post or void reads it),
    /// and with `statuses` of the ids' too.
    fn cold_reads_of(
        &self,
        count: usize,
        ids: impl Fn(usize) -> (u128, u128),
        statuses: bool,
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
            self.cold_transfer(id, round, probe, statuses, out);
            if pending_id != 0 {
                self.cold_transfer(pending_id, round, probe, true, out);
            }
        }
    }

    /// The key ranges a command's reads by filter read in order in `round`, to be read ahead
    /// with that round of [`Ledger::cold_reads`]: the samples its timestamp bounds seek, then
    /// an account's cold transfer list (for a wire request's `get_account_transfers` and
    /// `get_account_balances`).
    pub fn cold_ranges(&self, command: &Command, round: ColdReads, out: &mut Vec<ColdRange>) {
        if let Command::Request { request, .. } | Command::ForeignRequest { request, .. } = command
        {
            if command_reads_by_filter(request.operation()) {
                for read in filtered_reads(request) {
                    self.cold_ranges_of_read(&read, round, out);
                }
            }
        }
    }

    /// The key ranges `read` reads in order in `round`, to be read ahead with that round of
    /// [`Ledger::cold_reads_of_read`]: in the round `Timestamps`, the samples in the store its
    /// timestamp bounds' searches seek (the newest below each bound); in the round `Ids`, an
    /// account's cold transfer list, widened to the samples around its timestamp bounds, so
    /// that finding them reads nothing.
    pub fn cold_ranges_of_read(
        &self,
        read: &ClientRead,
        round: ColdReads,
        out: &mut Vec<ColdRange>,
    ) {
        match round {
            ColdReads::Timestamps => return self.cold_seeks_of_read(read, out),
            ColdReads::Ids => {}
            ColdReads::Transfers => return,
        }
        if self.cold.is_none() || self.lists_cold_below == 0 {
            return;
        }
        let (ClientRead::AccountTransfers(filter) | ClientRead::AccountBalances(filter)) = read
        else {
            return;
        };
        let Some((account, visits)) = self.account_filter_listed(read, filter) else {
            return;
        };
        let around = self.transfer_positions_around(filter.timestamp_min, filter.timestamp_max);
        let Ok((positions, _)) = around else {
            return; // the read fails the same way
        };
        let end = positions.end.min(self.lists_cold_below);
        if positions.start >= end {
            return;
        }
        let reversed = filter.flags.contains(AccountFilterFlags::REVERSED);
        let mut entries = visits;
        if reversed {
            // A reversed read visits the account's list in memory first: what it finds there
            // is not read ahead from the store.
            let listed = &self.account_transfers[account];
            let from = positions.start.max(self.lists_cold_below);
            let in_memory = listed.partition_point(|p| *p < positions.end)
                - listed.partition_point(|p| *p < from);
            if in_memory >= entries {
                return;
            }
            entries -= in_memory;
        }
        out.push(ColdRange {
            keyspace: Keyspace::AccountTransfers,
            keys: history_key(account, positions.start)..history_key(account, end),
            reversed,
            entries,
        });
    }

    /// The seeks of the timestamp samples in the store that `read`'s bounds make (none when
    /// memory answers them, or the samples are in memory).
    fn cold_seeks_of_read(&self, read: &ClientRead, out: &mut Vec<ColdRange>) {
        if self.cold.is_none() || self.transfers.samples_in_memory() {
            return;
        }
        let Some((min, max)) = read.bounds() else {
            return;
        };
        for before in Ledger::timestamp_searches(min, max).into_iter().flatten() {
            if self.transfers_searched_in_memory(before) {
                continue;
            }
            out.push(ColdRange {
                keyspace: Keyspace::TransferTimestamps,
                keys: 0..u128::from(before),
                reversed: true,
                entries: 1,
            });
        }
    }

    /// The account a valid filter of `read` lists the transfers of, if here and read (an
    /// account's balances are read only when it keeps them), and how many of its listed
    /// transfers the read visits at most: its limit when it takes every one (both sides, no
    /// user data, no code: its first `limit` are what it returns), twice that otherwise.
    fn account_filter_listed(
        &self,
        read: &ClientRead,
        filter: &AccountFilter,
    ) -> Option<(usize, usize)> {
        if !account_filter_valid(filter) {
            return None;
        }
        let account = self.account_positions.get(filter.account_id.0)? as usize;
        let history = self.accounts[account].flags.contains(AccountFlags::HISTORY);
        if matches!(read, ClientRead::AccountBalances(_)) && !history {
            return None;
        }
        let limit = (filter.limit as usize).min(QUERY_RESULTS_MAX);
        let takes_all = filter.flags.contains(AccountFilterFlags::DEBITS)
            && filter.flags.contains(AccountFilterFlags::CREDITS)
            && filter.user_data_128 == 0
            && filter.user_data_64 == 0
            && filter.user_data_32 == 0
            && filter.code == 0;
        let visits = match takes_all {
            true => limit,
            false => limit * QUERY_READS_PER_RESULT,
        };
        Some((account, visits))
    }

    /// What `read` reads from the store in `round`. A lookup: its ids not in memory, then
    /// their cold transfers. A read by filter: nothing in the round `Timestamps` (its seeks
    /// are [`Ledger::cold_ranges_of_read`]'s), then the cold transfers its timestamp bounds'
    /// searches read (with that function's ranges), then, those held, the cold entries at
    /// the positions it visits (up to twice its limit; its limit when every listed transfer
    /// matches).
    pub fn cold_reads_of_read(
        &self,
        read: &ClientRead,
        round: ColdReads,
        out: &mut Vec<(Keyspace, u128)>,
    ) {
        if self.cold.is_none() || self.transfers.cold_below() == 0 {
            return;
        }
        if round == ColdReads::Timestamps {
            return; // seeks only (`cold_ranges_of_read`)
        }
        let cold = |position: u32| self.transfers.get_in_memory(position).is_none();
        let push_cold = |out: &mut Vec<(Keyspace, u128)>, position: u32| {
            if cold(position) {
                out.push((Keyspace::Transfers, u128::from(position)));
            }
        };
        if let ClientRead::LookupTransfers(ids) | ClientRead::ReadSet(ids) = read {
            if round == ColdReads::Transfers && !self.transfer_positions.any_cold() {
                return; // no id is cold: the first round found them all
            }
            let statuses = matches!(read, ClientRead::ReadSet(_));
            return self.cold_reads_of(ids.len(), |at| (ids[at], 0), statuses, round, out);
        }
        let Some((min, max)) = read.bounds() else {
            return;
        };
        if round == ColdReads::Ids {
            let Ok((_, windows)) = self.transfer_positions_around(min, max) else {
                return; // the read fails the same way
            };
            for position in windows.into_iter().flatten() {
                push_cold(out, position);
            }
            return;
        }
        let filter = match read {
            ClientRead::QueryTransfers(filter) => {
                if !query_filter_valid(filter) {
                    return;
                }
                let Ok(positions) = self.transfer_positions_between(min, max) else {
                    return; // the read fails the same way
                };
                let limit = (filter.limit as usize).min(QUERY_RESULTS_MAX);
                let visits = limit * QUERY_READS_PER_RESULT;
                let positions: Box<dyn Iterator<Item = u32>> =
                    match filter.flags.contains(QueryFilterFlags::REVERSED) {
                        true => Box::new(positions.rev()),
                        false => Box::new(positions),
                    };
                for position in positions.take(visits) {
                    push_cold(out, position);
                }
                return;
            }
            ClientRead::AccountTransfers(filter) | ClientRead::AccountBalances(filter) => filter,
            ClientRead::LookupTransfers(_) | ClientRead::ReadSet(_) => {
                unreachable!("listed above")
            }
        };
        let Some((account, mut visits)) = self.account_filter_listed(read, filter) else {
            return;
        };
        let Ok(positions) = self.transfer_positions_between(min, max) else {
            return;
        };
        let history = matches!(read, ClientRead::AccountBalances(_));
        let reversed = filter.flags.contains(AccountFilterFlags::REVERSED);
        // A failed read of the list is left to the read, which fails the same way.
        let _ = self.account_transfers_in(account, positions, reversed, |listed| {
            push_cold(out, listed.position);
            if history && self.history_in_memory(account, listed).is_none() {
                out.push((Keyspace::History, history_key(account, listed.position)));
            }
            visits -= 1;
            Ok(visits > 0)
        });
    }

    fn cold_reads_of_request(
        &self,
        request: &ClientRequest,
        round: ColdReads,
        out: &mut Vec<(Keyspace, u128)>,
    ) {
        let operation = request.operation();
        if command_reads_by_filter(operation) {
            for read in filtered_reads(request) {
                self.cold_reads_of_read(&read, round, out);
            }
            return;
        }
        if !matches!(
            operation,
            Operation::CreateTransfers | Operation::LookupTransfers
        ) {
            return;
        }
        if round == ColdReads::Transfers && !self.transfer_positions.any_cold() {
            return; // no id is cold: the first round found them all
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
            self.cold_reads_of(batch.len() / size, ids, false, round, out);
        }
    }

    /// What finding the transfer of `id` reads from the store in `round`: its id in the id
    /// runs, if not in memory; its transfer, if cold; and with `status` (a pending id's: a
    /// post or void reads it), its status, if in the store only.
    fn cold_transfer(
        &self,
        id: u128,
        round: ColdReads,
        probe: bool,
        status: bool,
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
            ColdReads::Transfers | ColdReads::Timestamps => return,
        };
        if let Some(position) = position {
            if self.transfers.get_in_memory(position).is_none() {
                out.push((Keyspace::Transfers, u128::from(position)));
            }
            if status && self.transfer_status.find(position as usize).is_none() {
                out.push((Keyspace::Statuses, u128::from(position)));
            }
        }
    }
}

impl Command {
    /// Whether this is a wire request that reads by filter: the round `Transfers` of its cold
    /// reads lists transfers whatever the round `Ids` found.
    pub fn reads_by_filter(&self) -> bool {
        match self {
            Command::Request { request, .. } | Command::ForeignRequest { request, .. } => {
                command_reads_by_filter(request.operation())
            }
            _ => false,
        }
    }
}

fn command_reads_by_filter(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::GetAccountTransfers | Operation::GetAccountBalances | Operation::QueryTransfers
    )
}

/// A client's read of a partition that may read cold entries: what
/// [`Ledger::cold_reads_of_read`] lists the reads of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRead {
    AccountTransfers(AccountFilter),
    AccountBalances(AccountFilter),
    QueryTransfers(QueryFilter),
    /// Transfers looked up by id.
    LookupTransfers(std::sync::Arc<[u128]>),
    /// A transaction's read set ([`Ledger::read_set`]) of transfers by id: the transfers, and
    /// the two-phase status of each (a post or void across partitions may name a pending
    /// transfer resolved long ago, whose status is in the store only).
    ReadSet(std::sync::Arc<[u128]>),
}

impl ClientRead {
    /// The timestamp bounds of a read by filter, if valid.
    fn bounds(&self) -> Option<(u64, u64)> {
        match self {
            ClientRead::AccountTransfers(filter) | ClientRead::AccountBalances(filter) => {
                let valid = account_filter_valid(filter);
                valid.then_some((filter.timestamp_min, filter.timestamp_max))
            }
            ClientRead::QueryTransfers(filter) => {
                let valid = query_filter_valid(filter);
                valid.then_some((filter.timestamp_min, filter.timestamp_max))
            }
            ClientRead::LookupTransfers(_) | ClientRead::ReadSet(_) => None,
        }
    }
}

/// The filtered reads of a query request, one per batch (validated when the request was
/// built, so a batch that does not decode is not reached and is skipped); none for others.
fn filtered_reads(request: &ClientRequest) -> Vec<ClientRead> {
    let operation = request.operation();
    if !command_reads_by_filter(operation) {
        return Vec::new();
    }
    let event_max = operation.event_max(BATCH_SIZE_LIMIT as usize);
    let Ok(batches) = MultiBatch::decode(request.body(), operation.event_size(), event_max) else {
        return Vec::new();
    };
    let batches = batches.batches();
    let read = |batch: &[u8]| match operation {
        Operation::GetAccountTransfers => AccountFilter::read_from_bytes(batch)
            .ok()
            .map(ClientRead::AccountTransfers),
        Operation::GetAccountBalances => AccountFilter::read_from_bytes(batch)
            .ok()
            .map(ClientRead::AccountBalances),
        _ => QueryFilter::read_from_bytes(batch)
            .ok()
            .map(ClientRead::QueryTransfers),
    };
    batches.filter_map(read).collect()
}
