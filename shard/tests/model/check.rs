//! Comparisons of a ledger with the reference model and the invariants checked after every
//! batch: equal result vectors (reporting the first differing element), equal state (accounts,
//! transfers, two-phase statuses, burnt ids, timestamps, the change stream), `validate()`, and
//! per ledger, sum of `debits_posted` == sum of `credits_posted` and sum of `debits_pending` ==
//! sum of `credits_pending`, summed in 256 bits because balances can be near `u128::MAX`.

use std::collections::BTreeMap;
use std::fmt::Debug;

use kassa_shard::{Ledger, PendingStatus};
use kassa_wire::{Account, Transfer, TransferId};

use crate::model::reference::{Model, Phase};

/// Panics, naming `what` and the first differing element, unless the slices are equal.
pub fn same<T: PartialEq + Debug>(what: &str, model: &[T], ledger: &[T]) {
    if model == ledger {
        return;
    }
    let index = model.iter().zip(ledger).position(|(m, l)| m != l);
    let index = index.unwrap_or(model.len().min(ledger.len()));
    panic!(
        "{what} differ at index {index} (model has {}, ledger has {}):\n  \
         model:  {:?}\n  ledger: {:?}",
        model.len(),
        ledger.len(),
        model.get(index),
        ledger.get(index),
    );
}

/// A 256-bit unsigned sum, as `(high, low)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Wide(u128, u128);

impl Wide {
    fn add(self, value: u128) -> Wide {
        let (low, carry) = self.1.overflowing_add(value);
        Wide(self.0 + u128::from(carry), low)
    }
}

/// Per ledger: debits equal credits, for posted and for pending amounts.
pub fn check_sums(what: &str, accounts: &[Account]) {
    let mut sums: BTreeMap<u32, [Wide; 4]> = BTreeMap::new();
    for a in accounts {
        let s = sums.entry(a.ledger).or_default();
        s[0] = s[0].add(a.debits_posted);
        s[1] = s[1].add(a.credits_posted);
        s[2] = s[2].add(a.debits_pending);
        s[3] = s[3].add(a.credits_pending);
    }
    for (ledger, [debits_posted, credits_posted, debits_pending, credits_pending]) in sums {
        assert_eq!(
            debits_posted, credits_posted,
            "{what}: ledger {ledger}: posted sums differ"
        );
        assert_eq!(
            debits_pending, credits_pending,
            "{what}: ledger {ledger}: pending sums differ"
        );
    }
}

fn pending_status(phase: Phase) -> PendingStatus {
    match phase {
        Phase::None => PendingStatus::None,
        Phase::Pending => PendingStatus::Pending,
        Phase::Posted => PendingStatus::Posted,
        Phase::Voided => PendingStatus::Voided,
        Phase::Expired => PendingStatus::Expired,
    }
}

/// The whole observable state of `ledger` equals the model's, and the invariants hold.
pub fn check_state(model: &Model, ledger: &Ledger) {
    assert_eq!(ledger.timestamp(), model.timestamp, "ledger timestamp");
    same("accounts", &model.accounts, ledger.accounts());
    let transfers: Vec<Transfer> = model.transfers.iter().map(|s| s.record).collect();
    same(
        "transfers",
        &transfers,
        &ledger.all_transfers().expect("cold reads"),
    );
    for stored in &model.transfers {
        let id = stored.record.id;
        let expected = Some(pending_status(stored.phase));
        assert_eq!(
            ledger.pending_status(id).expect("cold reads"),
            expected,
            "two-phase status of transfer {id}"
        );
    }
    let ids = (0..=64)
        .chain([u128::MAX])
        .chain(model.failed.iter().copied());
    for id in ids {
        let failed = model.failed.contains(&id);
        assert_eq!(
            ledger.transfer_id_failed(TransferId(id)),
            failed,
            "burnt id {id}"
        );
    }
    assert_eq!(
        ledger.change_sequence_next(),
        model.next_sequence,
        "change_sequence_next"
    );
    assert_eq!(
        ledger.change_sequence_first(),
        model.change_sequence_first(),
        "change_sequence_first"
    );
    let mut events = Vec::new();
    ledger
        .change_events(0, usize::MAX, &mut events)
        .expect("change events");
    same("retained change events", &model.changes, &events);
    ledger.validate();
    check_sums("ledger", ledger.accounts());
    check_sums("model", &model.accounts);
}
