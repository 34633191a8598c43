//! Cross-partition transactions, the ledger's side (see `docs/cross-partition.md`).
//!
//! A batch whose records live in several partitions runs like this: each partition involved
//! (locked by the coordinator) gives a [`ReadSet`] of the records the batch can read; a
//! [`Scratch`] ledger built from them runs the batch with the one implementation of the
//! semantics there is; its [`Decision`] (the transfers it created, each once, and every
//! partition's other [`Effects`]) is recorded by a `Decide` command in the decider partition's
//! log (the commit point), then each other partition's share is applied to it by an `Apply`
//! command, which each partition applies at most once per `(decider, txn)`, and the decider
//! logs `Done`. A decider keeps each decision until `Done`, so a restart redelivers it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kassa_wire::client_headers::RequestHeader;
use kassa_wire::header::HeaderLayout;
use kassa_wire::{Account, AccountFlags, Balances, ChangeKind, Transfer};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::changes::ChangeEntry;
use crate::cold::ColdError;
use crate::decoder::Decoder;
use crate::sessions::ClientReply;
use crate::{partition_of, Ledger, LedgerConfig, PendingStatus, Placement, PlacementKind};

/// How many records ahead `Ledger::apply_effects` fetches the index slots it will probe.
const PREFETCH_AHEAD: usize = 16;

/// What one partition contributes to a scratch ledger: the batch's records that live in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSet {
    /// The partition's clock.
    pub timestamp: u64,
    /// The op its session table gives the next request it answers: with `timestamp`, what the
    /// coordinator needs to seal the replies this partition will cache ([`crate::seal_reply`]).
    pub op_next: u64,
    /// The newest account and transfer timestamps stored (imported events must be newer).
    pub newest_account: u64,
    pub newest_transfer: u64,
    /// The accounts asked for that this partition owns.
    pub accounts: Vec<Account>,
    /// The transfers asked for that are homed here, with their two-phase status.
    pub transfers: Vec<(Transfer, PendingStatus)>,
    /// The transfer ids asked for, homed here, that failed and can never be used again.
    pub failed_ids: Vec<u128>,
    /// The timestamps asked for (imported events') that a record stored here holds.
    pub taken_timestamps: Vec<u64>,
}

/// Transfers a transaction created, in timestamp order, as the partitions that store them need
/// them: each with its two-phase status, and with the balances its accounts had right after it
/// when one of them keeps history (most do not, so those balances are not carried).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Created {
    pub transfers: Vec<Transfer>,
    /// One [`PendingStatus`] number per transfer.
    pub statuses: Vec<u8>,
    /// By position in `transfers`, ascending: at most one per transfer.
    pub history: Vec<CreatedBalances>,
}

/// The balances of a created transfer's accounts right after it (zero for an account that
/// keeps no history).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CreatedBalances {
    /// The transfer's position in [`Created::transfers`].
    pub index: u64,
    pub reserved: u64,
    pub debit_after: Balances,
    pub credit_after: Balances,
}

impl Created {
    fn push(&mut self, transfer: Transfer, status: u8, after: Option<(Balances, Balances)>) {
        if let Some((debit_after, credit_after)) = after {
            self.history.push(CreatedBalances {
                index: self.transfers.len() as u64,
                reserved: 0,
                debit_after,
                credit_after,
            });
        }
        self.transfers.push(transfer);
        self.statuses.push(status);
    }

    /// Each transfer with its status and, if carried, its balances after.
    fn iter(&self) -> impl Iterator<Item = (&Transfer, u8, Option<&CreatedBalances>)> {
        let mut history = self.history.iter().peekable();
        let statuses = self.statuses.iter().copied();
        self.transfers
            .iter()
            .zip(statuses)
            .enumerate()
            .map(move |(index, (t, status))| {
                let after = history.next_if(|h| h.index == index as u64);
                (t, status, after)
            })
    }

    fn encoded_len(&self) -> usize {
        records_len(&self.transfers) + 8 + self.statuses.len() + records_len(&self.history)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_records(out, &self.transfers);
        put_records(out, &self.statuses);
        put_records(out, &self.history);
    }

    fn decode(reader: &mut Decoder<'_>) -> Result<Created, &'static str> {
        let created = Created {
            transfers: reader.records()?,
            statuses: reader.records()?,
            history: reader.records()?,
        };
        if created.statuses.len() != created.transfers.len() {
            return Err("created transfers without one status each");
        }
        if created
            .statuses
            .iter()
            .any(|s| PendingStatus::from_u8(*s).is_none())
        {
            return Err("bad two-phase status in effects");
        }
        let mut next = 0;
        for balances in &created.history {
            if balances.index < next || balances.index >= created.transfers.len() as u64 {
                return Err("created balances out of order");
            }
            if balances.reserved != 0 {
                return Err("bad created balances in effects");
            }
            next = balances.index + 1;
        }
        Ok(created)
    }
}

/// A status change of a stored transfer (a pending transfer posted, voided or expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StatusChange {
    pub id: u128,
    pub status: u8,
    pub reserved: [u8; 15],
}

/// A change-stream entry, naming its record by id (positions differ between partitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ChangeRecord {
    pub debit_after: Balances,
    pub credit_after: Balances,
    pub id: u128,
    pub timestamp: u64,
    pub kind: u8,
    pub reserved: u8,
    pub account_flags: u16,
    pub reserved_2: u32,
}

/// What a transaction changes in one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The transaction's last timestamp: the partition's clock moves up to it.
    pub timestamp: u64,
    /// Accounts owned here, created or changed, as they are after the transaction.
    pub accounts: Vec<Account>,
    /// Transfers created that are stored here (empty in a [`Decision`]'s parts).
    pub created: Created,
    pub statuses: Vec<StatusChange>,
    pub failed_ids: Vec<u128>,
    pub changes: Vec<ChangeRecord>,
    /// Wire requests answered by this transaction whose sessions live here: each request's
    /// header and its reply body, cached in its session as the transaction applies.
    pub client_answers: Vec<ClientAnswer>,
}

/// What a transaction decided: every transfer it created, once, and each partition's other
/// effects. [`Decision::share`] gives a partition everything it applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The cluster's placement, which says where each created transfer is stored.
    pub placement: Placement,
    pub created: Created,
    /// By ascending partition; every partition that stores a created transfer has one.
    pub parts: Vec<(u32, Effects)>,
}

impl Decision {
    /// Partition `partition`'s effects, with the created transfers it stores.
    pub fn share(&self, partition: u32) -> Effects {
        let mut shares = self.shares(|p| p == partition);
        shares.pop().map(|(_, share)| share).unwrap_or_default()
    }

    /// Every partition's share but `skip`'s.
    pub fn shares_except(&self, skip: u32) -> Vec<(u32, Effects)> {
        self.shares(|p| p != skip)
    }

    /// The shares of the partitions `wanted`, in one pass over the created transfers.
    fn shares(&self, wanted: impl Fn(u32) -> bool) -> Vec<(u32, Effects)> {
        let mut shares: Vec<(u32, Effects)> = self
            .parts
            .iter()
            .filter(|(partition, _)| wanted(*partition))
            .map(|(partition, part)| (*partition, part.clone()))
            .collect();
        for (transfer, status, after) in self.created.iter() {
            for partition in self.placement.transfer_partitions(transfer) {
                if !wanted(partition) {
                    continue;
                }
                let at = shares.binary_search_by_key(&partition, |(p, _)| *p);
                let share = &mut shares[at.expect("a part per storing partition")].1;
                let after = after.map(|a| (a.debit_after, a.credit_after));
                share.created.push(*transfer, status, after);
            }
        }
        shares
    }

    pub(crate) fn encoded_len(&self) -> usize {
        let parts: usize = self.parts.iter().map(|(_, e)| 8 + e.encoded_len()).sum();
        8 + self.created.encoded_len() + 8 + parts
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.placement.to_u64().to_le_bytes());
        self.created.encode(out);
        out.extend_from_slice(&(self.parts.len() as u64).to_le_bytes());
        for (partition, effects) in &self.parts {
            out.extend_from_slice(&u64::from(*partition).to_le_bytes());
            effects.encode(out);
        }
    }

    pub(crate) fn decode(reader: &mut Decoder<'_>) -> Result<Decision, &'static str> {
        let placement = Placement::from_u64(reader.u64()?).ok_or("an unknown placement")?;
        if placement.partitions > crate::limits::PARTITIONS_MAX {
            return Err("partition count out of range");
        }
        let partitions = placement.partitions;
        let created = Created::decode(reader)?;
        let mut parts: Vec<(u32, Effects)> = Vec::new();
        for _ in 0..reader.count(8)? {
            let partition = reader.u64()?;
            if partition >= u64::from(partitions) {
                return Err("effects for a partition beyond the count");
            }
            let partition = partition as u32;
            if parts.last().is_some_and(|(last, _)| *last >= partition) {
                return Err("effects not in ascending partition order");
            }
            let effects = Effects::decode(reader)?;
            if !effects.created.transfers.is_empty() {
                return Err("a decision's part carries created transfers");
            }
            parts.push((partition, effects));
        }
        for transfer in &created.transfers {
            for partition in placement.transfer_partitions(transfer) {
                if parts.binary_search_by_key(&partition, |(p, _)| *p).is_err() {
                    return Err("a created transfer's partition has no part");
                }
            }
        }
        Ok(Decision {
            placement,
            created,
            parts,
        })
    }
}

/// A wire request a transaction answers, for the partition that holds its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAnswer {
    pub request: RequestHeader,
    pub body: Vec<u8>,
}

/// A partition's transaction bookkeeping; part of its state and snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TxnState {
    /// The last transaction number this partition gave as a decider (0: none yet).
    pub(crate) last_txn: u64,
    /// Decisions taken here whose `Done` is not logged yet.
    pub(crate) undelivered: BTreeMap<u64, Arc<Decision>>,
    /// Per decider partition, the last of its transactions applied here.
    pub(crate) applied: BTreeMap<u32, u64>,
}

impl Ledger {
    /// The records a batch naming `account_ids` and `transfer_ids` can read from this
    /// partition: the accounts it owns and the transfers and failed ids homed here. Older
    /// transfers are read from the cold store, which may fail: a transaction's reads are not
    /// replicated (its decision is), so the transaction fails instead.
    pub fn read_set(
        &self,
        account_ids: &[u128],
        transfer_ids: &[u128],
        timestamps: &[u64],
    ) -> Result<ReadSet, ColdError> {
        let mut read = ReadSet {
            timestamp: self.timestamp,
            op_next: self.sessions.op_next(),
            newest_account: self.accounts.last().map_or(0, |a| a.timestamp),
            newest_transfer: self.transfers.newest_timestamp().unwrap_or(0),
            ..ReadSet::default()
        };
        let sorted = |ids: &[u128]| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        for id in sorted(account_ids) {
            if let Some(position) = self.account_positions.get(id) {
                read.accounts.push(self.accounts[position as usize]);
            }
        }
        for id in sorted(transfer_ids).into_iter().filter(|id| self.owns(*id)) {
            if let Some(position) = self.transfer_position(id)? {
                let transfer = self.transfer_at(position)?;
                read.transfers
                    .push((transfer, self.status_of(position, &transfer)?));
            } else if self.failed_transfer_ids.contains(&id) {
                read.failed_ids.push(id);
            }
        }
        let mut timestamps = timestamps.to_vec();
        timestamps.sort_unstable();
        timestamps.dedup();
        for timestamp in timestamps {
            let account = self
                .accounts
                .binary_search_by_key(&timestamp, |a| a.timestamp);
            let transfer = self.transfer_at_timestamp(timestamp)?;
            if account.is_ok() || transfer.is_some() {
                read.taken_timestamps.push(timestamp);
            }
        }
        Ok(read)
    }

    /// Pending transfers homed here, crossing partitions, whose time is up at `now`: each is
    /// expired by a transaction over its partitions. Oldest deadline first, at most `limit`.
    pub fn cross_expiries_due(&self, now: u64, limit: usize) -> Vec<Transfer> {
        let time = self.timestamp.max(now);
        let due = self.cross_expiries.iter().take_while(|(at, _)| *at <= time);
        due.take(limit)
            .map(|(_, position)| self.transfer_applied(*position))
            .collect()
    }

    /// Pending transfers homed here (crossing partitions or not) whose time is up at `now`,
    /// oldest deadline first, at most `limit`.
    pub fn expiries_due(&self, now: u64, limit: usize) -> Vec<Transfer> {
        let time = self.timestamp.max(now);
        let due_in = |set: &'_ std::collections::BTreeSet<(u64, u32)>| {
            let due = set.iter().take_while(|(at, _)| *at <= time);
            due.take(limit).copied().collect::<Vec<_>>()
        };
        let mut due = due_in(&self.expiries);
        due.extend(due_in(&self.cross_expiries));
        due.sort_unstable();
        due.truncate(limit);
        due.iter().map(|(_, p)| self.transfer_applied(*p)).collect()
    }

    /// Decisions taken here whose effects may not have reached every partition yet, by
    /// transaction number, with each other partition's share: to be delivered again
    /// (idempotently) after a restart.
    pub fn undelivered_decisions(&self) -> Vec<(u64, Vec<(u32, Effects)>)> {
        let partition = self.config.partition;
        let undelivered = self.txns.undelivered.iter();
        undelivered
            .map(|(txn, decision)| (*txn, decision.shares_except(partition)))
            .collect()
    }

    /// Records a decision: applies this partition's own share and keeps the decision until
    /// `Done`. Returns the transaction's number.
    pub(crate) fn decide(&mut self, decision: Arc<Decision>) -> (u64, Vec<ClientReply>) {
        assert_eq!(decision.placement, self.config.placement());
        self.txns.last_txn += 1;
        let txn = self.txns.last_txn;
        let partition = self.config.partition;
        let replies = self.apply_effects(&decision.share(partition));
        // A decision that touches only the decider is complete as soon as it is logged.
        if decision.parts.iter().any(|(p, _)| *p != partition) {
            self.txns.undelivered.insert(txn, decision);
        }
        (txn, replies)
    }

    /// Applies a decider's effects unless this partition already applied that transaction.
    /// Returns the replies to the client requests it answered, or `None` if it had applied
    /// them before.
    pub(crate) fn apply_decided(
        &mut self,
        decider: u32,
        txn: u64,
        effects: &Effects,
    ) -> Option<Vec<ClientReply>> {
        let applied = self.txns.applied.entry(decider).or_insert(0);
        if *applied >= txn {
            return None;
        }
        *applied = txn;
        Some(self.apply_effects(effects))
    }

    pub(crate) fn done(&mut self, txn: u64) {
        self.txns.undelivered.remove(&txn);
    }

    /// Applies a transaction's effects on this partition. The coordinator computed them on a
    /// scratch ledger while this partition was locked, so they fit: every violation is a bug.
    /// Returns the replies to `effects.client_answers`, in order.
    pub(crate) fn apply_effects(&mut self, effects: &Effects) -> Vec<ClientReply> {
        assert!(self.rollback_is_idle());
        for account in &effects.accounts {
            assert!(
                self.is_whole()
                    || self.config.placement().account(account) == self.config.partition,
                "effects sent to the wrong partition"
            );
            if let Some(position) = self.account_positions.get(account.id.0) {
                let stored = &mut self.accounts[position as usize];
                assert_eq!(
                    (stored.timestamp, stored.ledger),
                    (account.timestamp, account.ledger)
                );
                *stored = *account;
            } else {
                assert!(self
                    .accounts
                    .last()
                    .is_none_or(|last| last.timestamp < account.timestamp));
                self.account_push(*account);
            }
        }
        // The index slots a transfer is looked up and stored at are fetched a few transfers
        // ahead, so that the cache misses overlap. Not all at once: a share holds thousands of
        // transfers, and the slots fetched first would be evicted again by the time they are
        // used (the indexes run to tens of megabytes, each probe a different line).
        let created = &effects.created.transfers;
        let prefetch = |ledger: &Ledger, at: usize| {
            if let Some(transfer) = created.get(at) {
                ledger.transfer_positions.prefetch(transfer.id.0);
                ledger
                    .account_positions
                    .prefetch(transfer.debit_account_id.0);
                ledger
                    .account_positions
                    .prefetch(transfer.credit_account_id.0);
            }
        };
        for at in 0..PREFETCH_AHEAD {
            prefetch(self, at);
        }
        for (at, (transfer, status, after)) in effects.created.iter().enumerate() {
            prefetch(self, at + PREFETCH_AHEAD);
            let status = PendingStatus::from_u8(status).expect("decoded");
            let after = after.map_or_else(Default::default, |a| (a.debit_after, a.credit_after));
            self.store_transfer(transfer, status, after);
        }
        for change in &effects.statuses {
            let position = self.transfer_position_applied(change.id);
            let position = position.expect("stored here");
            let status = PendingStatus::from_u8(change.status).expect("decoded");
            assert!(matches!(
                status,
                PendingStatus::Posted | PendingStatus::Voided | PendingStatus::Expired
            ));
            let old = self.transfer_status.set(position, status);
            assert_eq!(old, PendingStatus::Pending);
            self.status_changes.record(position);
            let transfer = self.transfer_applied(position);
            if let Some(expires_at) = crate::expiry::expires_at(&transfer) {
                self.expiries.remove(&(expires_at, position));
                self.cross_expiries.remove(&(expires_at, position));
            }
        }
        let mut replies = Vec::with_capacity(effects.client_answers.len());
        for answer in &effects.client_answers {
            // Under the transaction's locks nothing else answered it: it is new, or (a retry
            // that raced through another path) answered already, which changes nothing.
            let request = &answer.request;
            let reply = self.apply_client_answer(effects.timestamp, request, answer.body.clone());
            replies.push(reply);
        }
        for id in &effects.failed_ids {
            assert!(self.owns(*id));
            self.failed_transfer_ids.insert(*id);
        }
        let prefetch = |ledger: &Ledger, at: usize| {
            if let Some(change) = effects.changes.get(at) {
                if change.kind == ChangeKind::AccountCreated as u8 {
                    ledger.account_positions.prefetch(change.id);
                } else {
                    ledger.transfer_positions.prefetch(change.id);
                }
            }
        };
        for at in 0..PREFETCH_AHEAD {
            prefetch(self, at);
        }
        for (at, change) in effects.changes.iter().enumerate() {
            prefetch(self, at + PREFETCH_AHEAD);
            let kind = ChangeKind::from_u8(change.kind).expect("decoded");
            let position = if kind == ChangeKind::AccountCreated {
                self.account_positions.get(change.id)
            } else {
                self.transfer_position_applied(change.id)
            };
            self.changes.push_entry(ChangeEntry {
                debit_account: change.debit_after,
                credit_account: change.credit_after,
                timestamp: change.timestamp,
                position: position.expect("the record of a change is stored here"),
                kind: change.kind,
                reserved: 0,
                account_flags: change.account_flags,
            });
        }
        self.timestamp = self.timestamp.max(effects.timestamp);
        replies
    }

    fn store_transfer(&mut self, t: &Transfer, status: PendingStatus, after: (Balances, Balances)) {
        let t = *t;
        assert!(self.transfer_position_applied(t.id.0).is_none());
        let position = Ledger::position_of(self.transfers.len());
        self.transfer_positions.insert(t.id.0, position);
        self.transfers.push(t);
        self.transfer_status.push(status);
        let debit = self.account_positions.get(t.debit_account_id.0);
        let credit = self.account_positions.get(t.credit_account_id.0);
        assert!(debit.is_some() || credit.is_some() || self.owns(t.id.0));
        if let Some(expires_at) = crate::expiry::expires_at(&t) {
            if self.owns(t.id.0) && status == PendingStatus::Pending {
                let expiries = if debit.is_some() && credit.is_some() {
                    &mut self.expiries
                } else {
                    &mut self.cross_expiries
                };
                assert!(expiries.insert((expires_at, position)));
            }
        }
        for (account, after) in [(debit, after.0), (credit, after.1)] {
            let Some(account) = account else { continue };
            self.account_transfers[account as usize].push(position);
            if self.accounts[account as usize]
                .flags
                .contains(AccountFlags::HISTORY)
            {
                self.account_history[account as usize].push(after);
            }
        }
    }
}

/// A whole ledger built from the read sets of the partitions a batch touches, to run it on.
pub struct Scratch {
    ledger: Ledger,
    placement: Placement,
    read_accounts: Vec<Account>,
    read_statuses: crate::statuses::TransferStatuses,
    /// The failed ids read, ascending.
    read_failed: Vec<u128>,
}

impl Scratch {
    pub fn new(placement: Placement, reads: &[ReadSet]) -> Scratch {
        let mut ledger = Ledger::new(LedgerConfig::default());
        let mut accounts: Vec<Account> = reads.iter().flat_map(|r| r.accounts.clone()).collect();
        accounts.sort_by_key(|a| (a.timestamp, a.id.0));
        let mut transfers: Vec<(Transfer, PendingStatus)> =
            reads.iter().flat_map(|r| r.transfers.clone()).collect();
        transfers.sort_by_key(|(t, _)| (t.timestamp, t.id.0));
        for read in reads {
            ledger.timestamp = ledger.timestamp.max(read.timestamp);
            ledger.import_floor_accounts = ledger.import_floor_accounts.max(read.newest_account);
            ledger.import_floor_transfers = ledger.import_floor_transfers.max(read.newest_transfer);
            ledger.failed_transfer_ids.extend(&read.failed_ids);
            ledger.import_taken.extend(&read.taken_timestamps);
        }
        for account in &accounts {
            // Accounts read from several partitions may share a timestamp: no order check.
            ledger.account_push(*account);
        }
        for (transfer, status) in &transfers {
            let position = Ledger::position_of(ledger.transfers.len());
            ledger.transfer_positions.insert(transfer.id.0, position);
            // Transfers read from several partitions may share a timestamp, as accounts may.
            ledger.transfers.push_read(*transfer);
            ledger.transfer_status.push(*status);
            if *status == PendingStatus::Pending {
                if let Some(expires_at) = crate::expiry::expires_at(transfer) {
                    ledger.expiries.insert((expires_at, position));
                }
            }
        }
        let read_statuses = ledger.transfer_status.clone();
        let mut read_failed: Vec<u128> = ledger.failed_transfer_ids.iter().copied().collect();
        read_failed.sort_unstable();
        Scratch {
            ledger,
            placement,
            read_accounts: accounts,
            read_statuses,
            read_failed,
        }
    }

    /// The scratch ledger, to run the batch on.
    pub fn ledger(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// What running the batch decided: the transfers it created and, by partition, what else
    /// changed. The decider always has a part, so its clock moves to the transaction's last
    /// timestamp even when nothing else changed.
    pub fn decision(&self, decider: u32) -> Decision {
        let l = &self.ledger;
        let placement = self.placement;
        let by_ledger = placement.kind == PlacementKind::ByLedger;
        let partitions = placement.partitions;
        // Under placement by ledger a record's partition is its ledger's, and a failed id
        // (whose event may name no valid ledger) is kept by the decider.
        let failed_owner = |id: u128| {
            if by_ledger {
                decider
            } else {
                partition_of(id, partitions)
            }
        };
        let mut out: BTreeMap<u32, Effects> = BTreeMap::new();
        let timestamp = l.timestamp;
        part_of(&mut out, decider, timestamp);
        for (position, account) in l.accounts.iter().enumerate() {
            if self.read_accounts.get(position) != Some(account) {
                part_of(&mut out, placement.account(account), timestamp)
                    .accounts
                    .push(*account);
            }
        }
        let read_transfers = self.read_statuses.len();
        let new_transfers = l.transfers.len() - read_transfers;
        // Balances after each created transfer, for those an account of which keeps history.
        let mut after: Vec<Option<(Balances, Balances)>> = vec![None; new_transfers];
        for (account_position, account) in l.accounts.iter().enumerate() {
            if !account.flags.contains(AccountFlags::HISTORY) {
                continue;
            }
            let listed = &l.account_transfers[account_position];
            let history = l.account_history[account_position].all_in_memory(listed.len());
            for (position, balances) in listed.iter().zip(history) {
                let Some(created) = (*position as usize).checked_sub(read_transfers) else {
                    continue;
                };
                let transfer = l.transfers.held(*position as usize);
                let slot = after[created].get_or_insert_default();
                if transfer.debit_account_id == account.id {
                    slot.0 = *balances;
                } else {
                    slot.1 = *balances;
                }
            }
        }
        let mut created = Created {
            transfers: Vec::with_capacity(new_transfers),
            statuses: Vec::with_capacity(new_transfers),
            history: Vec::new(),
        };
        let new = l
            .transfers
            .iter_in_memory()
            .map(|(position, t)| (t, l.transfer_status.get(position)));
        for ((t, status), after) in new.skip(read_transfers).zip(after) {
            created.push(*t, status as u8, after);
            for partition in placement.transfer_partitions(t) {
                part_of(&mut out, partition, timestamp);
            }
        }
        for position in 0..read_transfers {
            let status = l.transfer_status.get(position as u32);
            if status != self.read_statuses.get(position as u32) {
                let t = l.transfers.held(position);
                let change = StatusChange {
                    id: t.id.0,
                    status: status as u8,
                    reserved: [0; 15],
                };
                for partition in placement.transfer_partitions(t) {
                    part_of(&mut out, partition, timestamp)
                        .statuses
                        .push(change);
                }
            }
        }
        let mut failed: Vec<u128> = l.failed_transfer_ids.iter().copied().collect();
        failed.sort_unstable();
        for id in failed {
            if self.read_failed.binary_search(&id).is_err() {
                part_of(&mut out, failed_owner(id), timestamp)
                    .failed_ids
                    .push(id);
            }
        }
        for change in l.changes.retained() {
            let kind = ChangeKind::from_u8(change.kind).expect("known kind");
            let (id, partition) = if kind == ChangeKind::AccountCreated {
                let account = &l.accounts[change.position as usize];
                (account.id.0, placement.account(account))
            } else {
                let t = l.transfers.held(change.position as usize);
                let home = match placement.kind {
                    PlacementKind::ById => partition_of(t.id.0, partitions),
                    PlacementKind::ByLedger => crate::ledger_partition(t.ledger, partitions),
                };
                (t.id.0, home)
            };
            part_of(&mut out, partition, timestamp)
                .changes
                .push(ChangeRecord {
                    debit_after: change.debit_account,
                    credit_after: change.credit_account,
                    id,
                    timestamp: change.timestamp,
                    kind: change.kind,
                    reserved: 0,
                    account_flags: change.account_flags,
                    reserved_2: 0,
                });
        }
        Decision {
            placement: self.placement,
            created,
            parts: out.into_iter().collect(),
        }
    }
}

fn part_of(out: &mut BTreeMap<u32, Effects>, partition: u32, timestamp: u64) -> &mut Effects {
    let effects = out.entry(partition).or_default();
    effects.timestamp = timestamp;
    effects
}

const _: () = assert!(size_of::<CreatedBalances>() == 16 + 64 + 64);
const _: () = assert!(size_of::<ChangeRecord>() == 160);

/// Encoding of effects and transaction state (little-endian; counts are u64 and checked
/// against the bytes left, so decoding never allocates more than its input or panics).
impl Effects {
    pub(crate) fn encoded_len(&self) -> usize {
        let answers: usize = self
            .client_answers
            .iter()
            .map(|a| size_of::<RequestHeader>() + 8 + a.body.len())
            .sum();
        8 + records_len(&self.accounts)
            + self.created.encoded_len()
            + records_len(&self.statuses)
            + records_len(&self.failed_ids)
            + records_len(&self.changes)
            + 8
            + answers
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        put_records(out, &self.accounts);
        self.created.encode(out);
        put_records(out, &self.statuses);
        put_records(out, &self.failed_ids);
        put_records(out, &self.changes);
        out.extend_from_slice(&(self.client_answers.len() as u64).to_le_bytes());
        for answer in &self.client_answers {
            out.extend_from_slice(answer.request.as_bytes());
            out.extend_from_slice(&(answer.body.len() as u64).to_le_bytes());
            out.extend_from_slice(&answer.body);
        }
    }

    pub fn decode(reader: &mut Decoder<'_>) -> Result<Effects, &'static str> {
        let mut effects = Effects {
            timestamp: reader.u64()?,
            accounts: reader.records()?,
            created: Created::decode(reader)?,
            statuses: reader.records()?,
            failed_ids: reader.records()?,
            changes: reader.records()?,
            client_answers: Vec::new(),
        };
        for _ in 0..reader.count(size_of::<RequestHeader>() + 8)? {
            let request: Vec<RequestHeader> = reader.records_exact(1)?;
            let size = reader.u64()?;
            if size > kassa_wire::MESSAGE_BODY_SIZE_MAX as u64 {
                return Err("client answer larger than a message");
            }
            let body = reader.take(size as usize)?.to_vec();
            let request = request[0];
            if !request.valid_checksum() {
                return Err("client answer's request header is damaged");
            }
            effects.client_answers.push(ClientAnswer { request, body });
        }
        for (status, reserved) in effects.statuses.iter().map(|s| (s.status, &s.reserved)) {
            if PendingStatus::from_u8(status).is_none() || reserved.iter().any(|b| *b != 0) {
                return Err("bad two-phase status in effects");
            }
        }
        for change in &effects.changes {
            if ChangeKind::from_u8(change.kind).is_none()
                || change.reserved != 0
                || change.reserved_2 != 0
            {
                return Err("bad change record in effects");
            }
        }
        Ok(effects)
    }
}

impl TxnState {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.last_txn.to_le_bytes());
        out.extend_from_slice(&(self.undelivered.len() as u64).to_le_bytes());
        for (txn, decision) in &self.undelivered {
            out.extend_from_slice(&txn.to_le_bytes());
            decision.encode(out);
        }
        out.extend_from_slice(&(self.applied.len() as u64).to_le_bytes());
        for (decider, txn) in &self.applied {
            out.extend_from_slice(&u64::from(*decider).to_le_bytes());
            out.extend_from_slice(&txn.to_le_bytes());
        }
    }

    /// Decodes the state from the start of `bytes`; returns it and the bytes read.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(TxnState, usize), &'static str> {
        let mut reader = Decoder::new(bytes);
        let mut state = TxnState {
            last_txn: reader.u64()?,
            ..TxnState::default()
        };
        for _ in 0..reader.count(8)? {
            let txn = reader.u64()?;
            if txn == 0 || txn > state.last_txn {
                return Err("undelivered decision beyond the last transaction");
            }
            let decision = Arc::new(Decision::decode(&mut reader)?);
            if state.undelivered.insert(txn, decision).is_some() {
                return Err("duplicate undelivered decision");
            }
        }
        for _ in 0..reader.count(16)? {
            let decider = u32::try_from(reader.u64()?).map_err(|_| "decider beyond u32")?;
            let txn = reader.u64()?;
            if state.applied.insert(decider, txn).is_some() {
                return Err("duplicate decider");
            }
        }
        Ok((state, reader.offset))
    }
}

/// The encoded size of `records`: a count, then the records.
fn records_len<T>(records: &[T]) -> usize {
    8 + size_of_val(records)
}

fn put_records<T: IntoBytes + Immutable>(out: &mut Vec<u8>, records: &[T]) {
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    out.extend_from_slice(records.as_bytes());
}
