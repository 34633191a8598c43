//! Which partition runs each event of a create batch that spans partitions, under placement
//! by ledger (`docs/transactions.md`, "Events placed by their records"): the pure part of the
//! rare path's requester, shared by the node and the model test.
//!
//! - An event naming a ledger runs in that ledger's partition.
//! - A post or void of ledger 0 runs where its pending transfer is: with the batch's events of
//!   that id when the batch has one before it, else in the partition that stores it (which
//!   the caller finds: [`Place::Stored`]). A pending transfer stored nowhere leaves the
//!   batch unplaced (its `pending_transfer_not_found` needs every partition's answer).
//! - Any other event of ledger 0 fails on its own fields or on its id (`exists*`,
//!   `id_already_failed`, which come before the ledger's check). Its id is claimed where it
//!   runs, like a new one, so nothing creates that id elsewhere before the batch is
//!   answered. It runs in the partition a lease of its id's bucket is held by, if any (the
//!   caller finds it: another partition's claim would end that lease for good); else with
//!   its chain: in the partition of the chain's first placed event, else of the batch's first
//!   placed event, else partition 0.
//! - An event whose id another partition holds runs in that partition ([`move_to_holder`]),
//!   with every event of that id and the posts and voids of ledger 0 that follow them: its
//!   result is `exists*` or `id_already_failed` (or a field error checked before the lookup),
//!   all of which the holder's records give, and the holder runs such an event whatever its
//!   ledger (`Ledger::local_transfers`).
//!
//! An imported batch is never placed: an imported timestamp must be new to the whole cluster.

use std::collections::HashMap;

use kassa_wire::{Account, Transfer};

use crate::directory::IdKind;
use crate::ledger_partition;
use crate::shares::{chains, ShareEvent};

/// A create event, as placement sees it.
pub trait PlacedEvent: ShareEvent {
    /// The kind of the event's id, in the id directory.
    const KIND: IdKind;
    /// The event's id.
    fn id(&self) -> u128;
    /// The ledger the event names; 0 for none.
    fn ledger(&self) -> u32;
    /// The pending transfer a post or void of ledger 0 takes its place from; 0 for none.
    fn pending_of_ledger_0(&self) -> u128;
    /// Whether the event names no ledger and posts nothing: it fails on its id or its own
    /// fields, whichever partition runs it.
    fn runs_anywhere(&self) -> bool {
        self.ledger() == 0 && self.pending_of_ledger_0() == 0
    }
}

impl PlacedEvent for Transfer {
    const KIND: IdKind = IdKind::Transfer;
    fn id(&self) -> u128 {
        self.id.0
    }
    fn ledger(&self) -> u32 {
        self.ledger
    }
    fn pending_of_ledger_0(&self) -> u128 {
        if self.ledger == 0 {
            self.pending_id.0
        } else {
            0
        }
    }
}

impl PlacedEvent for Account {
    const KIND: IdKind = IdKind::Account;
    fn id(&self) -> u128 {
        self.id.0
    }
    fn ledger(&self) -> u32 {
        self.ledger
    }
    fn pending_of_ledger_0(&self) -> u128 {
        0
    }
}

/// Where the batch alone places an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In its ledger's partition.
    Partition(u32),
    /// A post or void of ledger 0 that goes with the batch's first event of its pending id,
    /// at this earlier position.
    With(usize),
    /// A post or void of ledger 0 of a pending transfer no earlier event creates: where the
    /// partitions say it is stored (`found` in [`place_the_rest`]).
    Stored(u128),
    /// An event of ledger 0 that posts nothing ([`PlacedEvent::runs_anywhere`]).
    Anywhere,
}

/// Where the batch alone places each event, or `None` for a batch that is empty or
/// imported.
pub fn placed_in_the_batch<E: PlacedEvent>(events: &[E], partitions: u32) -> Option<Vec<Place>> {
    if events.first().is_none_or(|first| first.imported()) {
        return None;
    }
    // Each id's first position, made only once a post or void of ledger 0 asks.
    let mut first_of: Option<HashMap<u128, usize>> = None;
    let places = events.iter().enumerate().map(|(index, event)| {
        let pending = event.pending_of_ledger_0();
        if event.ledger() != 0 {
            Place::Partition(ledger_partition(event.ledger(), partitions))
        } else if pending != 0 {
            let first_of = first_of.get_or_insert_with(|| {
                let mut first = HashMap::with_capacity(events.len());
                for (index, e) in events.iter().enumerate() {
                    first.entry(e.id()).or_insert(index);
                }
                first
            });
            match first_of.get(&pending) {
                Some(earlier) if *earlier < index => Place::With(*earlier),
                _ => Place::Stored(pending),
            }
        } else {
            Place::Anywhere
        }
    });
    Some(places.collect())
}

/// The positions of the events of ledger 0 that post nothing: the caller looks for a lease
/// covering each one's id ([`place_the_rest`]'s `leased`).
pub fn of_ledger_0<E: PlacedEvent>(events: &[E]) -> Vec<usize> {
    (events.iter().enumerate())
        .filter(|(_, e)| e.runs_anywhere())
        .map(|(index, _)| index)
        .collect()
}

/// Every event's partition, from [`placed_in_the_batch`]'s places, with `found(position)`
/// the partition storing each [`Place::Stored`] pending transfer (`None`: stored nowhere, and
/// then the batch is not placed) and `leased(position)` the partition holding a lease on the
/// id of each [`Place::Anywhere`] event ([`of_ledger_0`]). See the module for the rest.
pub fn place_the_rest<E: PlacedEvent>(
    events: &[E],
    places: &[Place],
    found: impl Fn(usize) -> Option<u32>,
    leased: impl Fn(usize) -> Option<u32>,
) -> Option<Vec<u32>> {
    assert_eq!(events.len(), places.len());
    // The partitions of events placed by a ledger or a stored pending transfer: the first of
    // each chain (by its first position) and of the batch are where the rest go.
    let mut direct: Vec<Option<u32>> = Vec::with_capacity(places.len());
    for (index, place) in places.iter().enumerate() {
        direct.push(match place {
            Place::Partition(partition) => Some(*partition),
            Place::Stored(_) => Some(found(index)?),
            Place::With(_) | Place::Anywhere => None,
        });
    }
    let chains = chains(events);
    let mut chain_first: Vec<Option<u32>> = vec![None; events.len()];
    for (chain, partition) in chains.iter().zip(&direct) {
        if let (Some(start), Some(partition)) = (chain, partition) {
            chain_first[*start as usize].get_or_insert(*partition);
        }
    }
    let batch_first = direct.iter().flatten().next().copied();
    let mut partitions: Vec<u32> = Vec::with_capacity(events.len());
    for (index, place) in places.iter().enumerate() {
        let partition = match (place, direct[index]) {
            (_, Some(partition)) => partition,
            (Place::With(earlier), None) => partitions[*earlier],
            _ => (leased(index))
                .or_else(|| chains[index].and_then(|start| chain_first[start as usize]))
                .or(batch_first)
                .unwrap_or(0),
        };
        partitions.push(partition);
    }
    Some(partitions)
}

/// Moves the events of `id` to `holder`, which holds that id, with the posts and voids of
/// ledger 0 of that pending id that follow an event of it in the batch (they run where the
/// batch's events of their pending id run). The batch keeps each id in one share.
pub fn move_to_holder<E: PlacedEvent>(events: &[E], partitions: &mut [u32], id: u128, holder: u32) {
    assert_eq!(events.len(), partitions.len());
    let mut seen = false;
    for (event, partition) in events.iter().zip(partitions.iter_mut()) {
        if event.id() == id {
            seen = true;
            *partition = holder;
        } else if seen && event.pending_of_ledger_0() == id {
            *partition = holder;
        }
    }
}

#[cfg(test)]
mod tests {
    use kassa_wire::{AccountId, TransferFlags, TransferId};

    use super::*;

    const PARTITIONS: u32 = 16;

    fn transfer(id: u128, ledger: u32) -> Transfer {
        Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(1),
            credit_account_id: AccountId(2),
            amount: 1,
            ledger,
            code: 1,
            ..Transfer::default()
        }
    }

    fn post(id: u128, pending: u128) -> Transfer {
        Transfer {
            pending_id: TransferId(pending),
            flags: TransferFlags::POST_PENDING_TRANSFER,
            ..transfer(id, 0)
        }
    }

    fn linked(t: Transfer) -> Transfer {
        Transfer {
            flags: t.flags | TransferFlags::LINKED,
            ..t
        }
    }

    fn ledger_of(partition: u32) -> u32 {
        (1..)
            .find(|l| ledger_partition(*l, PARTITIONS) == partition)
            .unwrap()
    }

    fn place(events: &[Transfer], found: impl Fn(usize) -> Option<u32>) -> Option<Vec<u32>> {
        let places = placed_in_the_batch(events, PARTITIONS)?;
        place_the_rest(events, &places, found, |_| None)
    }

    #[test]
    fn events_of_ledger_0_run_with_their_chain_else_with_the_first_placed_event() {
        let (a, b) = (ledger_of(3), ledger_of(5));
        let events = [
            transfer(1, b),
            transfer(2, 0),
            linked(transfer(3, 0)),
            linked(transfer(4, 0)),
            transfer(5, a),
            transfer(6, 0),
        ];
        let placed = place(&events, |_| unreachable!()).unwrap();
        assert_eq!(placed, vec![5, 5, 3, 3, 3, 5]);
        // A batch with no ledger at all runs in partition 0.
        let none = [transfer(1, 0), transfer(2, 0)];
        assert_eq!(place(&none, |_| unreachable!()).unwrap(), vec![0, 0]);
        // An id a lease covers runs in the lease's holder, before its chain.
        assert_eq!(of_ledger_0(&events), vec![1, 2, 3, 5]);
        let places = placed_in_the_batch(&events, PARTITIONS).unwrap();
        let leased = |index| (index == 2 || index == 5).then_some(7);
        let partitions = place_the_rest(&events, &places, |_| unreachable!(), leased);
        assert_eq!(partitions.unwrap(), vec![5, 5, 7, 3, 3, 7]);
    }

    #[test]
    fn a_post_of_ledger_0_goes_with_its_pending_transfer() {
        let (a, b) = (ledger_of(3), ledger_of(5));
        let events = [transfer(7, a), post(8, 7), post(9, 100), transfer(10, b)];
        let places = placed_in_the_batch(&events, PARTITIONS).unwrap();
        assert_eq!(places[1..3], [Place::With(0), Place::Stored(100)]);
        let partitions = place_the_rest(&events, &places, |i| (i == 2).then_some(9), |_| None);
        assert_eq!(partitions, Some(vec![3, 3, 9, 5]));
        // A pending transfer stored nowhere leaves the batch unplaced.
        assert_eq!(place_the_rest(&events, &places, |_| None, |_| None), None);
    }

    #[test]
    fn an_id_held_elsewhere_takes_its_events_and_the_posts_that_follow_them() {
        let (a, b) = (ledger_of(3), ledger_of(5));
        let events = [
            post(1, 7),
            transfer(7, a),
            post(8, 7),
            transfer(7, b),
            transfer(9, a),
        ];
        // Partition 12 stores transfer 7: the first post is placed there.
        let mut partitions = place(&events, |_| Some(12)).unwrap();
        assert_eq!(partitions, vec![12, 3, 3, 5, 3]);
        move_to_holder(&events, &mut partitions, 7, 12);
        assert_eq!(partitions, vec![12, 12, 12, 12, 3]);
    }

    #[test]
    fn an_imported_or_empty_batch_is_not_placed() {
        let imported = Transfer {
            flags: TransferFlags::IMPORTED,
            timestamp: 1,
            ..transfer(1, 1)
        };
        assert_eq!(placed_in_the_batch(&[imported], PARTITIONS), None);
        assert_eq!(placed_in_the_batch::<Transfer>(&[], PARTITIONS), None);
    }
}
