//! The change stream: every account and transfer the ledger creates, and every pending transfer
//! that expires, appended in order with a per-partition sequence number (1, 2, 3, … with no
//! gaps). Notifications and the analytics export read it; they release what they have consumed
//! with [`Ledger::release_change_events`], which is part of the replicated history like any
//! write. The retained tail is part of the state and of snapshots.
//!
//! Released entries leave the state at once (`first` moves), and memory once no checkpoint
//! still needs them: a checkpoint writes its change entries from the live stream after it was
//! taken, so entries from the last durable checkpoint's cut on stay in memory until the next
//! one is durable ([`ChangeStream::keep_from`]). A ledger with a cold store
//! ([`crate::cold`]) keeps no entry below that cut in memory, released or not: the
//! checkpoint's runs hold them, and reads of them go to the store.
//!
//! The stream stores compact entries that point at the record by position (records never move
//! and, transfers, never change) plus what the record does not keep: the balances right after
//! the change and an account's flags as created. Readers get full [`ChangeEvent`]s.

use kassa_wire::{Account, AccountFlags, Balances, ChangeEvent, ChangeKind};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::cold::ColdError;
use crate::keyspace::{Keyspace, CHANGE_ENTRY_SIZE};
use crate::table::Table;
use crate::Ledger;

/// One retained change, 144 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub(crate) struct ChangeEntry {
    pub(crate) debit_account: Balances,
    pub(crate) credit_account: Balances,
    pub(crate) timestamp: u64,
    /// Position of the account or transfer the change is about.
    pub(crate) position: u32,
    /// A [`ChangeKind`] as its number.
    pub(crate) kind: u8,
    pub(crate) reserved: u8,
    /// For `AccountCreated`: the account's flags when it was created.
    pub(crate) account_flags: u16,
}

const _: () = assert!(size_of::<ChangeEntry>() == CHANGE_ENTRY_SIZE);

pub(crate) struct ChangeStream {
    /// Entries kept in memory, oldest first; their sequences end at `sequence_next - 1` and
    /// start at or below `first`.
    pub(crate) entries: Table<ChangeEntry>,
    /// The sequence number the next event gets.
    pub(crate) sequence_next: u64,
    /// The oldest retained (not released) sequence: the state's tail starts here.
    first: u64,
    /// Entries from this sequence on stay in memory even once released: the last durable
    /// checkpoint's cut, from which the next checkpoint writes them (not state).
    keep_from: u64,
    /// Whether entries below `keep_from` leave memory though retained: the ledger's cold
    /// store holds them (not state).
    cold: bool,
}

impl ChangeStream {
    pub(crate) fn new() -> ChangeStream {
        ChangeStream::with_entries(Table::new(), 1)
    }

    /// A stream retaining exactly `entries`, the last of which has sequence `sequence_next - 1`.
    pub(crate) fn with_entries(entries: Table<ChangeEntry>, sequence_next: u64) -> ChangeStream {
        assert!(entries.len() as u64 <= sequence_next);
        ChangeStream {
            first: sequence_next - entries.len() as u64,
            entries,
            sequence_next,
            keep_from: 0,
            cold: false,
        }
    }

    /// A stream retaining `first..sequence_next`, none of it in memory: a checkpoint's runs
    /// hold it, read through the ledger's cold store.
    pub(crate) fn all_cold(first: u64, sequence_next: u64) -> ChangeStream {
        assert!(first <= sequence_next);
        ChangeStream {
            entries: Table::new(),
            sequence_next,
            first,
            keep_from: sequence_next,
            cold: true,
        }
    }

    /// From now on entries below the durable cut leave memory: a cold store holds them.
    pub(crate) fn make_cold(&mut self) {
        self.cold = true;
        self.drop_released();
    }

    /// The sequence of the first entry kept in memory.
    pub(crate) fn kept_first(&self) -> u64 {
        self.sequence_next - self.entries.len() as u64
    }

    /// The retained entries, oldest first, when all of them are in memory (a ledger without a
    /// cold store, or whose retained entries are all newer than its last durable checkpoint).
    pub(crate) fn retained(&self) -> impl DoubleEndedIterator<Item = &ChangeEntry> {
        assert!(
            self.kept_first() <= self.first,
            "retained change entries are in the cold store"
        );
        let start = (self.first - self.kept_first()) as usize;
        self.entries.range(start, self.entries.len())
    }

    /// The retained entries in memory, oldest first (the newest, when older ones are cold).
    pub(crate) fn retained_in_memory(&self) -> impl DoubleEndedIterator<Item = &ChangeEntry> {
        let from = self.first.max(self.kept_first());
        let start = (from - self.kept_first()) as usize;
        self.entries.range(start, self.entries.len())
    }

    /// How many entries are retained.
    pub(crate) fn retained_len(&self) -> usize {
        (self.sequence_next - self.first) as usize
    }

    /// The entries of sequences `from..to` still in memory (released ones included), with
    /// their sequences.
    pub(crate) fn kept_range(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = (u64, &ChangeEntry)> {
        let kept_first = self.kept_first();
        let from = from.max(kept_first).min(self.sequence_next);
        let to = to.clamp(from, self.sequence_next);
        let start = (from - kept_first) as usize;
        let end = (to - kept_first) as usize;
        (from..).zip(self.entries.range(start, end))
    }

    /// Entries below `sequence` need not stay in memory for checkpoints any more.
    pub(crate) fn keep_from(&mut self, sequence: u64) {
        self.keep_from = self.keep_from.max(sequence);
        self.drop_released();
    }

    /// Frees the released entries no checkpoint needs, and with a cold store every entry it
    /// holds.
    fn drop_released(&mut self) {
        let below = if self.cold {
            self.keep_from
        } else {
            self.first.min(self.keep_from)
        };
        let kept_first = self.kept_first();
        if below > kept_first {
            self.entries.release_front((below - kept_first) as usize);
        }
    }

    pub(crate) fn push_account(&mut self, position: u32, account: &Account) {
        self.entries.push(ChangeEntry {
            debit_account: Balances::default(),
            credit_account: Balances::default(),
            timestamp: account.timestamp,
            position,
            kind: ChangeKind::AccountCreated as u8,
            reserved: 0,
            account_flags: account.flags.bits(),
        });
        self.sequence_next += 1;
    }

    /// Appends an entry built elsewhere (a transaction's change, applied on its partition).
    pub(crate) fn push_entry(&mut self, entry: ChangeEntry) {
        self.entries.push(entry);
        self.sequence_next += 1;
    }

    pub(crate) fn push_transfer(
        &mut self,
        kind: ChangeKind,
        timestamp: u64,
        position: u32,
        debit_account: &Account,
        credit_account: &Account,
    ) {
        assert!(kind != ChangeKind::AccountCreated);
        self.entries.push(ChangeEntry {
            debit_account: Balances::of(debit_account),
            credit_account: Balances::of(credit_account),
            timestamp,
            position,
            kind: kind as u8,
            reserved: 0,
            account_flags: 0,
        });
        self.sequence_next += 1;
    }

    /// Drops the entries of sequence `sequence_next` and later (a rolled-back chain's).
    pub(crate) fn truncate_to(&mut self, sequence_next: u64) {
        assert!(sequence_next <= self.sequence_next);
        assert!(
            self.first <= sequence_next,
            "a chain's entries are never released"
        );
        let drop_count = (self.sequence_next - sequence_next) as usize;
        assert!(
            drop_count <= self.entries.len(),
            "a chain's entries are newer than the last durable checkpoint"
        );
        self.entries.truncate(self.entries.len() - drop_count);
        self.sequence_next = sequence_next;
    }

    /// The sequence number of the oldest retained entry (`sequence_next` when none is).
    pub(crate) fn sequence_first(&self) -> u64 {
        self.first
    }
}

impl Ledger {
    /// The sequence number the next change event will get.
    pub fn change_sequence_next(&self) -> u64 {
        self.changes.sequence_next
    }

    /// The sequence number of the oldest change event still retained.
    pub fn change_sequence_first(&self) -> u64 {
        self.changes.sequence_first()
    }

    /// Change entries held in memory (the rest of those retained are in the cold store).
    pub fn change_entries_in_memory(&self) -> usize {
        self.changes.entries.len()
    }

    /// Appends to `out` up to `limit` retained change events with sequence `>= sequence_from`,
    /// oldest first. Events already released are not returned. Events older than the last
    /// durable checkpoint are read from the cold store, which may fail.
    pub fn change_events(
        &self,
        sequence_from: u64,
        limit: usize,
        out: &mut Vec<ChangeEvent>,
    ) -> Result<(), ColdError> {
        let changes = &self.changes;
        let from = sequence_from.max(changes.sequence_first());
        let to = from.saturating_add(limit as u64).min(changes.sequence_next);
        let in_memory = changes.kept_first().max(from);
        for sequence in from..to.min(in_memory) {
            let entry = self.cold_change(sequence)?;
            out.push(self.change_event(sequence, &entry)?);
        }
        for (sequence, entry) in changes.kept_range(in_memory, to) {
            out.push(self.change_event(sequence, entry)?);
        }
        Ok(())
    }

    /// A change entry no longer in memory, from the cold store.
    pub(crate) fn cold_change(&self, sequence: u64) -> Result<ChangeEntry, ColdError> {
        self.cold_entry(Keyspace::Changes, u128::from(sequence))
    }

    /// Every retained change entry, oldest first, the cold ones read from the store.
    pub(crate) fn retained_changes(&self) -> Result<Vec<ChangeEntry>, ColdError> {
        let changes = &self.changes;
        let cold = changes.sequence_first()..changes.kept_first().max(changes.sequence_first());
        let mut all: Vec<ChangeEntry> = cold
            .map(|sequence| self.cold_change(sequence))
            .collect::<Result<_, _>>()?;
        all.extend(changes.retained_in_memory());
        Ok(all)
    }

    /// The full event an entry stands for (a transfer's read from the cold store if it is
    /// older than the last durable checkpoint).
    pub(crate) fn change_event(
        &self,
        sequence: u64,
        entry: &ChangeEntry,
    ) -> Result<ChangeEvent, ColdError> {
        Ok(match ChangeKind::from_u8(entry.kind) {
            Some(ChangeKind::AccountCreated) => {
                let account = Account {
                    debits_pending: 0,
                    debits_posted: 0,
                    credits_pending: 0,
                    credits_posted: 0,
                    flags: AccountFlags(entry.account_flags),
                    ..self.accounts[entry.position as usize]
                };
                ChangeEvent::account_created(sequence, &account)
            }
            Some(kind) => ChangeEvent::transfer(
                kind,
                sequence,
                entry.timestamp,
                &self.transfer_at(entry.position)?,
                entry.debit_account,
                entry.credit_account,
            ),
            None => unreachable!("change entries hold known kinds"),
        })
    }

    /// Forgets the change events up to and including `sequence_through`: their consumers are
    /// done with them. Releasing what is already released, or what does not exist yet, is
    /// allowed and changes nothing beyond the retained tail.
    pub fn release_change_events(&mut self, sequence_through: u64) {
        let changes = &mut self.changes;
        let first = sequence_through
            .saturating_add(1)
            .min(changes.sequence_next);
        changes.first = changes.first.max(first);
        changes.drop_released();
    }
}
