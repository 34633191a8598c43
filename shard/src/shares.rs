//! A create batch that spans partitions, split into *shares* that each partition runs on its own
//! records: the rare path's semantics under placement by ledger (`docs/transactions.md`,
//! "Step 4"). No log, no message: the pure part the participants' intents and the record home
//! will use.
//!
//! - [`split`] gives each partition the batch's events it stores, with their positions in the
//!   batch. A linked chain that spans partitions is cut into one chain per partition: each
//!   piece's last event counts as unlinked (the events themselves are unchanged: their flags
//!   are stored), except the batch's own last event, which stays linked so that its partition
//!   answers `linked_event_chain_open` as one partition would.
//! - [`Ledger::create_transfers_share`] (and `create_accounts_share`) runs a share: every
//!   event gets the timestamp its position in the whole batch gets, the import mode is the
//!   batch's, and the events of chains found broken in an earlier round answer the statuses
//!   given without running.
//! - [`Rounds::next`] looks at a round's results, in batch order. A chain that spans partitions
//!   and broke in one of them may have held in another, whose effects must then go: the round
//!   is dropped, and the *first* such chain is marked broken for the next round, at its
//!   earliest failing event with that event's status (every other event of the chain answers
//!   `linked_event_failed`). Only the first: a later chain's failure may come from the first
//!   chain's effects, which the next round removes. Everything before the first such chain is
//!   what one partition computes, so the last round's results are exactly one partition's,
//!   timestamps included when the batch's `now` is at or past every participant's clock.

use kassa_wire::{
    Account, AccountFlags, CreateAccountResult, CreateAccountStatus, CreateTransferResult,
    CreateTransferStatus, Transfer, TransferFlags, BATCH_EVENTS_MAX,
};

pub use crate::create::Forced;
use crate::create::{CreateOperation, InBatch};
use crate::{Effects, Ledger, Scratch};

/// A create event, as splitting sees it.
pub trait ShareEvent: Copy {
    fn linked(&self) -> bool;
    fn imported(&self) -> bool;
}

impl ShareEvent for Transfer {
    fn linked(&self) -> bool {
        self.flags.contains(TransferFlags::LINKED)
    }
    fn imported(&self) -> bool {
        self.flags.contains(TransferFlags::IMPORTED)
    }
}

impl ShareEvent for Account {
    fn linked(&self) -> bool {
        self.flags.contains(AccountFlags::LINKED)
    }
    fn imported(&self) -> bool {
        self.flags.contains(AccountFlags::IMPORTED)
    }
}

/// A create result's status, as the rounds see it.
pub trait ShareStatus: Copy + Eq + std::fmt::Debug {
    const CREATED: Self;
    const LINKED_EVENT_FAILED: Self;
    /// The one status whose result carries another record's timestamp (the one found).
    const EXISTS: Self;
}

impl ShareStatus for CreateTransferStatus {
    const CREATED: Self = CreateTransferStatus::Created;
    const LINKED_EVENT_FAILED: Self = CreateTransferStatus::LinkedEventFailed;
    const EXISTS: Self = CreateTransferStatus::Exists;
}

impl ShareStatus for CreateAccountStatus {
    const CREATED: Self = CreateAccountStatus::Created;
    const LINKED_EVENT_FAILED: Self = CreateAccountStatus::LinkedEventFailed;
    const EXISTS: Self = CreateAccountStatus::Exists;
}

/// One partition's part of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share<E> {
    pub partition: u32,
    /// The events' positions in the batch, ascending.
    pub positions: Vec<u32>,
    /// The events, as the batch has them.
    pub events: Vec<E>,
    /// Whether each event is linked to the next one *of this share*: the batch's chains cut
    /// into this partition's pieces.
    pub linked: Vec<bool>,
}

/// Each event's chain: the position of the chain's first event, or `None` for an event alone.
/// A chain is a run of linked events and the first event after them; a batch that ends linked
/// ends with an open chain.
pub fn chains<E: ShareEvent>(events: &[E]) -> Vec<Option<u32>> {
    let mut chains = Vec::with_capacity(events.len());
    let mut open: Option<u32> = None;
    for (position, event) in events.iter().enumerate() {
        let start = match (open, event.linked()) {
            (Some(start), _) => Some(start),
            (None, true) => Some(position as u32),
            (None, false) => None,
        };
        chains.push(start);
        open = if event.linked() { start } else { None };
    }
    chains
}

/// Splits a batch by the partition of each event (`partitions[i]` for `events[i]`), in order of
/// first appearance. See the module documentation for the chains.
pub fn split<E: ShareEvent>(events: &[E], partitions: &[u32]) -> Vec<Share<E>> {
    assert_eq!(events.len(), partitions.len());
    assert!(events.len() <= BATCH_EVENTS_MAX);
    let chains = chains(events);
    let mut shares: Vec<Share<E>> = Vec::new();
    for (position, (event, partition)) in events.iter().zip(partitions).enumerate() {
        let share = match shares.iter().position(|s| s.partition == *partition) {
            Some(i) => i,
            None => {
                shares.push(Share {
                    partition: *partition,
                    positions: Vec::new(),
                    events: Vec::new(),
                    linked: Vec::new(),
                });
                shares.len() - 1
            }
        };
        let mut linked = event.linked();
        if linked && position + 1 < events.len() {
            // Linked here only if its chain goes on in this partition.
            let chain = chains[position];
            linked = (position + 1..events.len())
                .take_while(|later| chains[*later] == chain)
                .any(|later| partitions[later] == *partition);
        }
        shares[share].positions.push(position as u32);
        shares[share].events.push(*event);
        shares[share].linked.push(linked);
    }
    shares
}

/// Why a share cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    #[error("a share's positions must be ascending, one per event, below the batch length")]
    Positions,
    #[error("a forced status must name one of the share's positions, ascending")]
    Forced,
    #[error("a batch of {0} events is beyond the limit")]
    TooLong(usize),
}

/// What a participant needs to know of the whole batch to run its share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InTheBatch<S> {
    pub batch_len: u32,
    /// Whether the batch's first event is imported: every event must match it.
    pub batch_imported: bool,
    /// The answers of the events of chains found broken in earlier rounds, ascending by
    /// position.
    pub forced: Vec<Forced<S>>,
}

impl<S: ShareStatus> InTheBatch<S> {
    fn check<'a>(
        &'a self,
        positions: &'a [u32],
        linked: &'a [bool],
    ) -> Result<InBatch<'a, S>, ShareError> {
        let batch_len = self.batch_len as usize;
        if batch_len > BATCH_EVENTS_MAX {
            return Err(ShareError::TooLong(batch_len));
        }
        let ascending = positions.windows(2).all(|w| w[0] < w[1]);
        if !ascending || positions.last().is_some_and(|p| *p as usize >= batch_len) {
            return Err(ShareError::Positions);
        }
        if linked.len() != positions.len() {
            return Err(ShareError::Positions);
        }
        let forced_ascending = self
            .forced
            .windows(2)
            .all(|w| w[0].position < w[1].position);
        let forced_known =
            (self.forced.iter()).all(|f| positions.binary_search(&f.position).is_ok());
        if !forced_ascending || !forced_known {
            return Err(ShareError::Forced);
        }
        Ok(InBatch {
            batch_len,
            positions,
            linked,
            batch_imported: self.batch_imported,
            forced: &self.forced,
        })
    }
}

impl Ledger {
    /// Runs a share of a `create_transfers` batch (see the module documentation): one result
    /// per event of the share, in its order.
    pub fn create_transfers_share(
        &mut self,
        now: u64,
        share: &Share<Transfer>,
        batch: &InTheBatch<CreateTransferStatus>,
        results: &mut Vec<CreateTransferResult>,
    ) -> Result<(), ShareError> {
        self.run_share::<crate::create_transfers::CreateTransfers>(now, share, batch, results)
    }

    /// Runs a share of a `create_accounts` batch: as [`Ledger::create_transfers_share`].
    pub fn create_accounts_share(
        &mut self,
        now: u64,
        share: &Share<Account>,
        batch: &InTheBatch<CreateAccountStatus>,
        results: &mut Vec<CreateAccountResult>,
    ) -> Result<(), ShareError> {
        self.run_share::<crate::create_accounts::CreateAccounts>(now, share, batch, results)
    }

    /// What running a `create_transfers` share here would do, without doing it: the share's
    /// results and this partition's effects, computed on a scratch ledger of the records the
    /// share reads. This is what a participant's intent holds until its transaction resolves;
    /// the effects apply as a decided transaction's do.
    pub fn create_transfers_intent(
        &self,
        now: u64,
        share: &Share<Transfer>,
        batch: &InTheBatch<CreateTransferStatus>,
    ) -> Result<(Vec<CreateTransferResult>, Effects), ShareError> {
        let mut accounts: Vec<u128> = Vec::new();
        let mut transfers: Vec<u128> = Vec::new();
        for t in &share.events {
            accounts.extend([t.debit_account_id.0, t.credit_account_id.0]);
            transfers.push(t.id.0);
            if t.pending_id.0 != 0 {
                transfers.push(t.pending_id.0);
                let position = self.transfer_position_applied(t.pending_id.0);
                if let Some(pending) = position.map(|p| self.transfer_applied(p)) {
                    accounts.extend([pending.debit_account_id.0, pending.credit_account_id.0]);
                }
            }
        }
        let timestamps: Vec<u64> = share.events.iter().map(|t| t.timestamp).collect();
        let read = self.read_set(&accounts, &transfers, &timestamps);
        let read = crate::cold::applied(read);
        self.intent_on(read, |scratch, results| {
            scratch.create_transfers_share(now, share, batch, results)
        })
    }

    /// What running a `create_accounts` share here would do: as
    /// [`Ledger::create_transfers_intent`].
    pub fn create_accounts_intent(
        &self,
        now: u64,
        share: &Share<Account>,
        batch: &InTheBatch<CreateAccountStatus>,
    ) -> Result<(Vec<CreateAccountResult>, Effects), ShareError> {
        let accounts: Vec<u128> = share.events.iter().map(|a| a.id.0).collect();
        let timestamps: Vec<u64> = share.events.iter().map(|a| a.timestamp).collect();
        let read = self.read_set(&accounts, &[], &timestamps);
        let read = crate::cold::applied(read);
        self.intent_on(read, |scratch, results| {
            scratch.create_accounts_share(now, share, batch, results)
        })
    }

    /// Runs `run` on a scratch ledger of `read` (this partition's records) and returns its
    /// results with this partition's effects.
    fn intent_on<R>(
        &self,
        read: crate::ReadSet,
        run: impl FnOnce(&mut Ledger, &mut Vec<R>) -> Result<(), ShareError>,
    ) -> Result<(Vec<R>, Effects), ShareError> {
        let mut scratch = Scratch::new(self.config().placement(), &[read]);
        let mut results = Vec::new();
        run(scratch.ledger(), &mut results)?;
        let partition = self.config().partition;
        Ok((results, scratch.decision(partition).share(partition)))
    }

    fn run_share<Op: CreateOperation>(
        &mut self,
        now: u64,
        share: &Share<Op::Event>,
        batch: &InTheBatch<Op::Status>,
        results: &mut Vec<Op::Result>,
    ) -> Result<(), ShareError>
    where
        Op::Status: ShareStatus,
    {
        if share.positions.len() != share.events.len() {
            return Err(ShareError::Positions);
        }
        let in_batch = batch.check(&share.positions, &share.linked)?;
        self.execute_create_in::<Op>(now, &share.events, Some(in_batch), results);
        Ok(())
    }
}

/// The record home's side: which chains are marked broken, round after round.
#[derive(Clone, Debug)]
pub struct Rounds<S> {
    chains: Vec<Option<u32>>,
    partitions: Vec<u32>,
    /// The answers of every marked chain's events, ascending by position.
    forced: Vec<Forced<S>>,
    /// Chains marked so far, by their first position.
    marked: Vec<u32>,
    /// Whether the batch ends linked: its last event then answers `linked_event_chain_open`
    /// even in a chain broken before it, as one partition answers it.
    open_at_end: bool,
}

impl<S: ShareStatus> Rounds<S> {
    pub fn new<E: ShareEvent>(events: &[E], partitions: &[u32]) -> Rounds<S> {
        assert_eq!(events.len(), partitions.len());
        Rounds {
            chains: chains(events),
            partitions: partitions.to_vec(),
            forced: Vec::new(),
            marked: Vec::new(),
            open_at_end: events.last().is_some_and(|e| e.linked()),
        }
    }

    /// The answers the given share's events must give without running, this round.
    pub fn forced(&self, share: &Share<impl ShareEvent>) -> Vec<Forced<S>> {
        let mine = |f: &&Forced<S>| share.positions.binary_search(&f.position).is_ok();
        self.forced.iter().filter(mine).copied().collect()
    }

    /// How many chains are marked broken.
    pub fn marked(&self) -> usize {
        self.marked.len()
    }

    /// Whether a linked chain of the batch spans partitions: only then can a round be dropped
    /// (`parallel_commit::Staging::AfterIntents`).
    pub fn spans_a_chain(&self) -> bool {
        let mut chain = (None, 0);
        for (position, start) in self.chains.iter().enumerate() {
            let partition = self.partitions[position];
            match (start, chain) {
                (Some(start), (Some(current), first)) if *start == current => {
                    if partition != first {
                        return true;
                    }
                }
                (Some(start), _) => chain = (Some(*start), partition),
                (None, _) => chain = (None, 0),
            }
        }
        false
    }

    /// Takes a round's results, `(status, timestamp)` in batch order. `true`: the round
    /// stands (every chain that spans partitions held everywhere or was marked). `false`: the
    /// first chain that spans partitions and broke is now marked; run every share again.
    ///
    /// The results come from other partitions: results no partition computes (too few, or a
    /// chain broken with no event failing on its own) are refused with nothing changed.
    pub fn next(&mut self, results: &[(S, u64)]) -> Result<bool, RoundError> {
        if results.len() != self.chains.len() {
            let (expected, got) = (self.chains.len(), results.len());
            return Err(RoundError::Results { expected, got });
        }
        let status = |p: usize| results[p].0;
        let mut position = 0;
        while position < self.chains.len() {
            let Some(start) = self.chains[position] else {
                position += 1;
                continue;
            };
            let end = (position..self.chains.len())
                .find(|p| self.chains[*p] != Some(start))
                .unwrap_or(self.chains.len());
            let members = position..end;
            position = end;
            let first = self.partitions[members.start];
            let spans = members.clone().any(|p| self.partitions[p] != first);
            if !spans || self.marked.contains(&start) {
                continue;
            }
            let failed = |p: &usize| status(*p) != S::CREATED;
            if !members.clone().any(|p| failed(&p)) {
                continue;
            }
            // Where it broke first: the earliest event with a status of its own (the others
            // in its partition answer `linked_event_failed`).
            let own = |p: &usize| failed(p) && status(*p) != S::LINKED_EVENT_FAILED;
            let Some(breaker) = members.clone().find(own) else {
                let position = members.start as u32;
                return Err(RoundError::NoOwnFailure { position });
            };
            let last = self.chains.len() - 1;
            for p in members {
                let position = p as u32;
                // Only `exists` answers with another record's timestamp (the one it found);
                // every other status with the event's own, which the participant gives.
                let (status, found) = if p == breaker || (p == last && self.open_at_end) {
                    let (status, timestamp) = results[p];
                    (status, (status == S::EXISTS).then_some(timestamp))
                } else {
                    (S::LINKED_EVENT_FAILED, None)
                };
                self.forced.push(Forced {
                    position,
                    status,
                    found,
                });
            }
            self.forced.sort_unstable_by_key(|f| f.position);
            self.marked.push(start);
            return Ok(false);
        }
        Ok(true)
    }
}

/// Why [`Rounds::next`] refused a round's results; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoundError {
    #[error("{got} results for a batch of {expected} events")]
    Results { expected: usize, got: usize },
    #[error("the chain at position {position} broke with no event failing on its own")]
    NoOwnFailure { position: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_wire::{AccountId, TransferId};

    fn transfer(id: u128, linked: bool) -> Transfer {
        let mut flags = TransferFlags::default();
        flags.set(TransferFlags::LINKED, linked);
        Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(1),
            credit_account_id: AccountId(2),
            amount: 1,
            ledger: 1,
            code: 1,
            flags,
            ..Transfer::default()
        }
    }

    #[test]
    fn chains_are_runs_of_linked_events_and_the_event_after() {
        let events = [false, true, true, false, false, true]
            .map(|linked| transfer(1, linked))
            .to_vec();
        assert_eq!(
            chains(&events),
            vec![None, Some(1), Some(1), Some(1), None, Some(5)]
        );
    }

    #[test]
    fn a_chain_across_partitions_is_cut_into_one_chain_per_partition() {
        // Chain 0..=3 over partitions 7, 8, 7, 8; then an open chain 4..=5 over 8, 7.
        let linked = [true, true, true, false, true, true];
        let events: Vec<Transfer> = (0..6)
            .map(|i| transfer(i + 1, linked[i as usize]))
            .collect();
        let shares = split(&events, &[7, 8, 7, 8, 8, 7]);
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].partition, 7);
        assert_eq!(shares[0].positions, vec![0, 2, 5]);
        // 0 goes on at 2 in partition 7; 2 ends 7's piece; 5, the batch's last, stays linked.
        assert_eq!(shares[0].linked, vec![true, false, true]);
        assert_eq!(shares[1].positions, vec![1, 3, 4]);
        assert_eq!(shares[1].linked, vec![true, false, false]);
        // The events themselves keep their flags: they are stored as sent.
        assert!(shares[0].events[1].linked());
    }

    #[test]
    fn the_first_chain_across_partitions_that_broke_is_marked_at_its_first_own_failure() {
        use CreateTransferStatus as S;
        let linked = [true, false, true, false];
        let events: Vec<Transfer> = (0..4)
            .map(|i| transfer(i + 1, linked[i as usize]))
            .collect();
        let partitions = [1, 2, 1, 2];
        let mut rounds: Rounds<S> = Rounds::new(&events, &partitions);
        // Both chains broke in partition 2; the second's failure may come from the first.
        let stamp = |position: u32| 100 + u64::from(position);
        let own = |statuses: [S; 4]| -> Vec<(S, u64)> {
            (0..4).map(|p| (statuses[p], stamp(p as u32))).collect()
        };
        let mut round = own([
            S::LinkedEventFailed,
            S::ExceedsCredits,
            S::LinkedEventFailed,
            S::Exists,
        ]);
        round[3].1 = 7; // the transfer `exists` found
        assert_eq!(rounds.next(&round), Ok(false));
        assert_eq!(rounds.marked(), 1);
        let shares = split(&events, &partitions);
        let forced = |position, status| Forced {
            position,
            status,
            found: None,
        };
        assert_eq!(
            rounds.forced(&shares[0]),
            vec![forced(0, S::LinkedEventFailed)]
        );
        assert_eq!(
            rounds.forced(&shares[1]),
            vec![forced(1, S::ExceedsCredits)]
        );
        // Next round: the second chain broke again, now marked with what `exists` found.
        assert_eq!(rounds.next(&round), Ok(false));
        assert_eq!(
            rounds.forced(&shares[1]),
            vec![
                forced(1, S::ExceedsCredits),
                Forced {
                    position: 3,
                    status: S::Exists,
                    found: Some(7)
                }
            ]
        );
        // A chain that holds everywhere: the round stands.
        let mut rounds: Rounds<S> = Rounds::new(&events, &partitions);
        let held = own([
            S::LinkedEventFailed,
            S::ExceedsCredits,
            S::Created,
            S::Created,
        ]);
        assert_eq!(rounds.next(&held), Ok(false));
        assert_eq!(rounds.next(&held), Ok(true));
        // A chain within one partition is that partition's own business.
        let mut rounds: Rounds<S> = Rounds::new(&events, &[1, 1, 2, 2]);
        assert!(!rounds.spans_a_chain());
        assert!(Rounds::<S>::new(&events, &partitions).spans_a_chain());
        assert!(Rounds::<S>::new(&events, &[1, 1, 2, 3]).spans_a_chain());
        // Unlinked events in different partitions: no chain, no span.
        let unlinked: Vec<Transfer> = (0..4).map(|i| transfer(i + 1, false)).collect();
        assert!(!Rounds::<S>::new(&unlinked, &partitions).spans_a_chain());
        assert_eq!(rounds.next(&held), Ok(true));
        // Results no partition computes are refused, and change nothing.
        let mut rounds: Rounds<S> = Rounds::new(&events, &partitions);
        let short = Err(RoundError::Results {
            expected: 4,
            got: 3,
        });
        assert_eq!(rounds.next(&held[..3]), short);
        let nobody = own([S::Created, S::Created, S::LinkedEventFailed, S::Created]);
        let refused = Err(RoundError::NoOwnFailure { position: 2 });
        assert_eq!(rounds.next(&nobody), refused);
        assert_eq!(rounds.marked(), 0);
        assert_eq!(rounds.next(&held), Ok(false));
    }

    #[test]
    fn malformed_shares_are_refused_and_change_nothing() {
        use CreateTransferStatus as S;
        let mut ledger = Ledger::new(crate::LedgerConfig::default());
        let share = Share {
            partition: 0,
            positions: vec![3, 1],
            events: vec![transfer(1, false), transfer(2, false)],
            linked: vec![false, false],
        };
        let batch = InTheBatch {
            batch_len: 4,
            batch_imported: false,
            forced: Vec::new(),
        };
        let mut results = Vec::new();
        let refused = ledger.create_transfers_share(1, &share, &batch, &mut results);
        assert_eq!(refused, Err(ShareError::Positions));
        let share = Share {
            positions: vec![1, 3],
            ..share
        };
        let beyond = InTheBatch {
            batch_len: 3,
            ..batch.clone()
        };
        let refused = ledger.create_transfers_share(1, &share, &beyond, &mut results);
        assert_eq!(refused, Err(ShareError::Positions));
        let stray = InTheBatch {
            forced: vec![Forced {
                position: 2,
                status: S::LinkedEventFailed,
                found: None,
            }],
            ..batch.clone()
        };
        let refused = ledger.create_transfers_share(1, &share, &stray, &mut results);
        assert_eq!(refused, Err(ShareError::Forced));
        assert_eq!(ledger.timestamp(), 0);
        assert!(ledger.transfers().is_empty());
        ledger
            .create_transfers_share(1, &share, &batch, &mut results)
            .unwrap();
        // Timestamps by position in the batch of 4, ending at now + 4.
        let stamps: Vec<u64> = results.iter().map(|r| r.timestamp).collect();
        assert_eq!(stamps, vec![3, 5]);
        assert_eq!(ledger.timestamp(), 5);
    }
}
