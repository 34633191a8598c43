//! The batch loop shared by `create_accounts` and `create_transfers` (TigerBeetle's
//! `execute_create`): event timestamps, linked chains, import mode, and the checks every create
//! event passes before its own.
//!
//! A batch of `n` events written at `now` ends at `end = max(last timestamp, now) + n`; event
//! `i` gets `end - n + i + 1`, whether it succeeds or not. A chain is a run of events with
//! `linked` set plus the first event after them; if any of its events fails, every change the
//! chain made is rolled back, the failing event keeps its own status and the chain's other events
//! answer `linked_event_failed`. A chain left open at the end of the batch fails with
//! `linked_event_chain_open` on its last event.

use crate::limits::BATCH_EVENTS_MAX;
use crate::Ledger;
use kassa_wire::{TIMESTAMP_MAX, TIMESTAMP_MIN};

/// What one create event led to: created or found (with the record's timestamp), or failed.
pub(crate) type Outcome<S> = Result<(S, u64), S>;

/// One create operation, as the batch loop sees it.
pub(crate) trait CreateOperation {
    type Event;
    type Status: Copy + Eq;
    type Result;
    const CREATED: Self::Status;
    const LINKED_EVENT_FAILED: Self::Status;
    const LINKED_EVENT_CHAIN_OPEN: Self::Status;
    const IMPORTED_EVENT_EXPECTED: Self::Status;
    const IMPORTED_EVENT_NOT_EXPECTED: Self::Status;
    const TIMESTAMP_MUST_BE_ZERO: Self::Status;
    const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: Self::Status;
    const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: Self::Status;

    /// Brings what `apply` will look up for the event into cache (see `IdIndex::prefetch`),
    /// for every event of the batch before the first is applied.
    fn prefetch(_ledger: &Ledger, _event: &Self::Event) {}
    /// Asks for the index slots of the records the event names, `3 × prefetch::AHEAD`
    /// events before it is applied.
    fn prefetch_slots(_ledger: &Ledger, _event: &Self::Event) {}
    /// Asks for the records the event names, `2 × prefetch::AHEAD` events before it is
    /// applied (their slots are then likely in cache).
    fn prefetch_records(_ledger: &Ledger, _event: &Self::Event) {}
    /// Asks for what the records lead to (the tails of lists the event appends to),
    /// `prefetch::AHEAD` events before it is applied.
    fn prefetch_tails(_ledger: &Ledger, _event: &Self::Event) {}
    /// `(linked, imported, timestamp)` of an event.
    fn head(event: &Self::Event) -> (bool, bool, u64);
    /// The event's own checks and, if they pass, its effect.
    fn apply(ledger: &mut Ledger, timestamp: u64, event: &Self::Event) -> Outcome<Self::Status>;
    /// Called for every failed event, after any chain rollback.
    fn failed(ledger: &mut Ledger, event: &Self::Event, status: Self::Status);
    fn result(timestamp: u64, status: Self::Status) -> Self::Result;
    fn set_status(result: &mut Self::Result, status: Self::Status);
}

/// Where a share's events sit in the whole batch they were split from (`crate::shares`): each
/// event's timestamp is the one its position in the batch gets, the import mode is the batch's,
/// and the events of a chain an earlier round found broken answer the statuses given, without
/// running.
pub(crate) struct InBatch<'a, S> {
    pub(crate) batch_len: usize,
    /// One per event of the share, ascending, each below `batch_len`.
    pub(crate) positions: &'a [u32],
    /// One per event: linked to the share's next event (the events' own flags are the
    /// batch's).
    pub(crate) linked: &'a [bool],
    pub(crate) batch_imported: bool,
    /// Ascending by position.
    pub(crate) forced: &'a [Forced<S>],
}

/// The answer an event of a chain found broken in an earlier round gives without running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forced<S> {
    /// The event's position in the batch.
    pub position: u32,
    pub status: S,
    /// The timestamp its result carries when not the event's own: the record an `exists`
    /// found.
    pub found: Option<u64>,
}

impl Ledger {
    /// Runs a batch: one result per event, in order, into `results` (cleared first).
    pub(crate) fn execute_create<Op: CreateOperation>(
        &mut self,
        now: u64,
        events: &[Op::Event],
        results: &mut Vec<Op::Result>,
    ) {
        self.execute_create_in::<Op>(now, events, None, results);
    }

    /// The prefetch step `step` of the batch loop: the slots of event `step`, the records of
    /// the event `AHEAD` before it, the tails of the one `2 × AHEAD` before (those that
    /// exist).
    #[inline]
    fn prefetch_ahead<Op: CreateOperation>(&self, events: &[Op::Event], step: usize) {
        let ahead = crate::prefetch::AHEAD;
        if let Some(event) = events.get(step) {
            Op::prefetch_slots(self, event);
        }
        if let Some(event) = step.checked_sub(ahead).and_then(|at| events.get(at)) {
            Op::prefetch_records(self, event);
        }
        if let Some(event) = step.checked_sub(2 * ahead).and_then(|at| events.get(at)) {
            Op::prefetch_tails(self, event);
        }
    }

    /// Runs a batch, or a share of one (`in_batch`): one result per event, in order, into
    /// `results` (cleared first).
    pub(crate) fn execute_create_in<Op: CreateOperation>(
        &mut self,
        now: u64,
        events: &[Op::Event],
        in_batch: Option<InBatch<'_, Op::Status>>,
        results: &mut Vec<Op::Result>,
    ) {
        assert!(events.len() <= BATCH_EVENTS_MAX);
        results.clear();
        let Some(first) = events.first() else { return };
        // Overlap the cache misses of the whole batch's id lookups before applying it.
        for event in events {
            Op::prefetch(self, event);
        }
        // A whole batch is its own share: positions and links are the events' own.
        let share = in_batch.unwrap_or(InBatch {
            batch_len: events.len(),
            positions: &[],
            linked: &[],
            batch_imported: Op::head(first).1,
            forced: &[],
        });
        if !share.positions.is_empty() {
            assert_eq!(share.positions.len(), events.len());
            assert_eq!(share.linked.len(), events.len());
            assert!(share.positions.windows(2).all(|w| w[0] < w[1]));
            let last = share.positions.last().copied();
            assert!(last.is_some_and(|p| (p as usize) < share.batch_len));
        }
        let (positions, linked_in_share) = (share.positions, share.linked);
        let (batch_imported, mut forced) = (share.batch_imported, share.forced);
        let count = share.batch_len as u64;
        let timestamp_end = self.batch_timestamp_end(now, share.batch_len);
        let mut chain_start: Option<usize> = None;
        let mut chain_broken = false;
        // Each event's records are asked for in three steps ahead of it (`prefetch`).
        let lead = 3 * crate::prefetch::AHEAD;
        for step in 0..lead {
            self.prefetch_ahead::<Op>(events, step);
        }
        for (index, event) in events.iter().enumerate() {
            self.prefetch_ahead::<Op>(events, index + lead);
            let position = positions.get(index).map_or(index as u64, |p| *p as u64);
            let timestamp_event = timestamp_end - count + position + 1;
            let (linked, imported, event_timestamp) = Op::head(event);
            let linked = linked_in_share.get(index).copied().unwrap_or(linked);
            if linked && chain_start.is_none() {
                assert!(!chain_broken);
                chain_start = Some(index);
                self.chain_open();
            }
            let forced_here = match forced.first() {
                Some(answer) if u64::from(answer.position) == position => {
                    forced = &forced[1..];
                    Some(*answer)
                }
                _ => None,
            };
            let chain_open_at_end = linked && index == events.len() - 1;
            let precheck = if let Some(answer) = forced_here {
                Some(answer.status)
            } else if chain_open_at_end {
                Some(Op::LINKED_EVENT_CHAIN_OPEN)
            } else if chain_broken {
                Some(Op::LINKED_EVENT_FAILED)
            } else {
                precheck_import::<Op>(batch_imported, imported, event_timestamp, timestamp_end)
            };
            let outcome = match (forced_here, precheck) {
                (Some(Forced { found: Some(t), .. }), Some(status)) => Ok((status, t)),
                (_, Some(status)) => Err(status),
                (_, None) => Op::apply(self, timestamp_event, event),
            };
            let (status, timestamp) = match outcome {
                Ok(found) => found,
                Err(status) => (status, timestamp_event),
            };
            if status != Op::CREATED {
                if let (Some(start), false) = (chain_start, chain_broken) {
                    chain_broken = true;
                    self.chain_rollback();
                    for result in &mut results[start..index] {
                        Op::set_status(result, Op::LINKED_EVENT_FAILED);
                    }
                }
                Op::failed(self, event, status);
            }
            results.push(Op::result(timestamp, status));
            if chain_start.is_some() && (!linked || status == Op::LINKED_EVENT_CHAIN_OPEN) {
                if !chain_broken {
                    self.chain_commit();
                }
                chain_start = None;
                chain_broken = false;
            }
        }
        assert!(chain_start.is_none());
        assert_eq!(results.len(), events.len());
        assert!(
            forced.is_empty(),
            "a forced status for a position not in the share"
        );
        self.timestamp = timestamp_end;
    }
}

/// The import-mode and timestamp checks every event passes before its own.
fn precheck_import<Op: CreateOperation>(
    batch_imported: bool,
    imported: bool,
    event_timestamp: u64,
    timestamp_end: u64,
) -> Option<Op::Status> {
    if batch_imported != imported {
        return Some(if imported {
            Op::IMPORTED_EVENT_NOT_EXPECTED
        } else {
            Op::IMPORTED_EVENT_EXPECTED
        });
    }
    if !imported {
        return (event_timestamp != 0).then_some(Op::TIMESTAMP_MUST_BE_ZERO);
    }
    if !(TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(&event_timestamp) {
        return Some(Op::IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
    }
    (event_timestamp >= timestamp_end).then_some(Op::IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE)
}

impl Ledger {
    /// Whether an imported event's timestamp is not after the newest record of its own kind,
    /// or is taken by a record of the other kind.
    pub(crate) fn imported_timestamp_regresses(
        &self,
        timestamp: u64,
        newest_of_kind: Option<u64>,
        floor: u64,
    ) -> bool {
        if timestamp <= floor
            || self.import_taken.contains(&timestamp)
            || newest_of_kind.is_some_and(|newest| timestamp <= newest)
        {
            return true;
        }
        let account = self
            .accounts
            .binary_search_by_key(&timestamp, |a| a.timestamp)
            .is_ok();
        if account {
            return true;
        }
        crate::cold::applied(self.transfer_at_timestamp(timestamp)).is_some()
    }
}
