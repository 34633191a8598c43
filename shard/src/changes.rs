//! The change stream: every account and transfer the ledger creates, and every pending transfer
//! that expires, appended in order with a per-partition sequence number (1, 2, 3, … with no
//! gaps). Notifications and the analytics export read it; they release what they have consumed
//! with [`Ledger::release_change_events`], which is part of the replicated history like any
//! write. The retained tail is part of the state and of snapshots.

use std::collections::VecDeque;

use kassa_wire::{Account, Balances, ChangeEvent, ChangeKind, Transfer};

use crate::Ledger;

pub(crate) struct ChangeStream {
    /// Retained events, oldest first; sequences are dense and end at `sequence_next - 1`.
    pub(crate) events: VecDeque<ChangeEvent>,
    /// The sequence number the next event gets.
    pub(crate) sequence_next: u64,
}

impl ChangeStream {
    pub(crate) fn new() -> ChangeStream {
        ChangeStream { events: VecDeque::new(), sequence_next: 1 }
    }

    pub(crate) fn push_account(&mut self, account: &Account) {
        let event = ChangeEvent::account_created(self.sequence_next, account);
        self.push(event);
    }

    pub(crate) fn push_transfer(
        &mut self,
        kind: ChangeKind,
        timestamp: u64,
        transfer: &Transfer,
        debit_account: &Account,
        credit_account: &Account,
    ) {
        let event = ChangeEvent::transfer(
            kind,
            self.sequence_next,
            timestamp,
            transfer,
            Balances::of(debit_account),
            Balances::of(credit_account),
        );
        self.push(event);
    }

    fn push(&mut self, event: ChangeEvent) {
        debug_assert!(self.events.back().is_none_or(|last| last.sequence + 1 == event.sequence));
        self.events.push_back(event);
        self.sequence_next += 1;
    }

    /// Drops the events of sequence `sequence_next` and later (a rolled-back chain's).
    pub(crate) fn truncate_to(&mut self, sequence_next: u64) {
        assert!(sequence_next <= self.sequence_next);
        let drop_count = (self.sequence_next - sequence_next) as usize;
        assert!(drop_count <= self.events.len());
        self.events.truncate(self.events.len() - drop_count);
        self.sequence_next = sequence_next;
    }

    /// The sequence number of the oldest retained event (`sequence_next` when none is).
    pub(crate) fn sequence_first(&self) -> u64 {
        self.sequence_next - self.events.len() as u64
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

    /// Appends to `out` up to `limit` retained change events with sequence `>= sequence_from`,
    /// oldest first. Events already released are not returned.
    pub fn change_events(&self, sequence_from: u64, limit: usize, out: &mut Vec<ChangeEvent>) {
        let first = self.changes.sequence_first();
        let skip = sequence_from.saturating_sub(first) as usize;
        out.extend(self.changes.events.iter().skip(skip).take(limit));
    }

    /// Forgets the change events up to and including `sequence_through`: their consumers are
    /// done with them. Releasing what is already released, or what does not exist yet, is
    /// allowed and changes nothing beyond the retained tail.
    pub fn release_change_events(&mut self, sequence_through: u64) {
        let first = self.changes.sequence_first();
        if sequence_through < first {
            return;
        }
        let release_count = (sequence_through - first + 1) as usize;
        let release_count = release_count.min(self.changes.events.len());
        self.changes.events.drain(..release_count);
    }
}
