//! Whether a batch can run in one partition alone under placement by ledger, and which ids
//! it must claim first (`docs/transactions.md`, design D).
//!
//! A batch runs in its ledger's partition `L` exactly as one whole ledger would run it when
//! everything its results depend on is in `L`:
//! - every event's ledger is placed in `L` (an event without a ledger, such as a post or void
//!   that copies its pending transfer's, names a pending transfer stored in `L` or created
//!   earlier in the batch);
//! - every account an event names is stored in `L`. An account stored elsewhere belongs to
//!   another ledger, whose error code needs that account's ledger: the global path reads it.
//!   An event of ledger 0 that is no post or void fails on its id or its fields
//!   (`ledger_must_not_be_zero` comes before the accounts' lookup): its accounts do not count;
//! - no event is imported (an imported timestamp must be new to the whole cluster);
//! - no event's id is held by another partition. `L` checks its own records here; the id
//!   directory answers for the others ([`LocalRun::claims`]): an id owned elsewhere sends
//!   the batch to the rare path, which runs that id's events in its holder.
//!
//! An event that breaks the first two rules still runs here exactly when its result cannot
//! depend on them: when it fails on its own fields before any lookup (a reserved flag or
//! field, an id of 0 or `u128::MAX`), or when `L` holds its id, so that it fails with
//! `exists*` or `id_already_failed` from `L`'s records whatever its ledger and accounts. The
//! rare path places events in their id's holder for this (`share_placement`).
//!
//! Being wrong towards another path is always safe: the rare path and the global path read
//! what they need.

use std::collections::HashSet;

use foldhash::fast::FixedState;
use kassa_wire::{Account, AccountFlags, Transfer, TransferFlags};

use crate::{ledger_partition, Ledger, PlacementKind};

/// A batch that can run in this partition alone.
#[derive(Debug, PartialEq, Eq)]
pub struct LocalRun {
    /// Ids of the batch's events that this partition does not hold (or, with
    /// [`Ledger::local_transfers_leased`], that a lease covers), valid (not 0, not
    /// `u128::MAX`), in batch order; an id the batch repeats is listed again (the caller
    /// dedups what it sends, usually little once leases cover the rest). Each must be
    /// claimed for this partition before the batch runs.
    pub claims: Vec<u128>,
    /// With [`Ledger::share_transfers`] and [`Ledger::share_accounts`] only: ids of events
    /// that cannot run here (another ledger's, or naming accounts stored elsewhere) and are
    /// not held here. Each runs where its id is held, if another partition holds it (then
    /// it fails with `exists*` or `id_already_failed` there); if none does, the share cannot
    /// run in shares. Empty from the fast path's checks, which refuse such a batch.
    pub elsewhere: Vec<u128>,
}

impl Ledger {
    /// Whether `accounts` can be created in this partition alone; see the module.
    pub fn local_accounts(&self, accounts: impl IntoIterator<Item = Account>) -> Option<LocalRun> {
        self.accounts_run(accounts, None)
    }

    /// [`Ledger::local_accounts`] for a share of a batch in shares: an account of another
    /// ledger not held here is listed in [`LocalRun::elsewhere`] instead of refusing it.
    pub fn share_accounts(&self, accounts: impl IntoIterator<Item = Account>) -> Option<LocalRun> {
        let mut elsewhere = Vec::new();
        let run = self.accounts_run(accounts, Some(&mut elsewhere))?;
        Some(LocalRun { elsewhere, ..run })
    }

    fn accounts_run(
        &self,
        accounts: impl IntoIterator<Item = Account>,
        mut elsewhere: Option<&mut Vec<u128>>,
    ) -> Option<LocalRun> {
        if !self.runs_local_batches() {
            return None;
        }
        let accounts = accounts.into_iter();
        let mut claims = Vec::with_capacity(accounts.size_hint().0);
        for a in accounts {
            if a.flags.contains(AccountFlags::IMPORTED) {
                return None;
            }
            if !self.places_ledger_here(a.ledger) {
                if self.account_answered_here(&a) {
                    continue; // Fails here on its fields or with `exists*`; see the module.
                }
                elsewhere.as_mut()?.push(a.id.0);
                continue;
            }
            if valid(a.id.0) && self.account_positions.get(a.id.0).is_none() {
                claims.push(a.id.0);
            }
        }
        Some(LocalRun {
            claims,
            elsewhere: Vec::new(),
        })
    }

    /// Whether `transfers` can be created in this partition alone; see the module.
    pub fn local_transfers(
        &self,
        transfers: impl IntoIterator<Item = Transfer>,
    ) -> Option<LocalRun> {
        self.local_transfers_leased(transfers, |_| false)
    }

    /// [`Ledger::local_transfers`], where `leased` tells the ids whose bucket is leased to this
    /// partition: no other partition can hold them, so the batch runs here whether this
    /// partition holds them or not, and they are listed in the claims without looking them up
    /// (the leases cover them; the apply looks them up once).
    pub fn local_transfers_leased(
        &self,
        transfers: impl IntoIterator<Item = Transfer>,
        leased: impl Fn(u128) -> bool,
    ) -> Option<LocalRun> {
        self.transfers_run(transfers, leased, None)
    }

    /// [`Ledger::local_transfers`] for a share of a batch in shares: an event that cannot
    /// run here and whose id is not held here is listed in [`LocalRun::elsewhere`] instead
    /// of refusing it.
    pub fn share_transfers(
        &self,
        transfers: impl IntoIterator<Item = Transfer>,
    ) -> Option<LocalRun> {
        let mut elsewhere = Vec::new();
        let run = self.transfers_run(transfers, |_| false, Some(&mut elsewhere))?;
        Some(LocalRun { elsewhere, ..run })
    }

    fn transfers_run(
        &self,
        transfers: impl IntoIterator<Item = Transfer>,
        leased: impl Fn(u128) -> bool,
        mut elsewhere: Option<&mut Vec<u128>>,
    ) -> Option<LocalRun> {
        if !self.runs_local_batches() {
            return None;
        }
        let transfers = transfers.into_iter();
        // The ids of the batch's events so far, for a pending transfer created earlier in the
        // batch: a list, and a set made from it only once a pending id is not stored here
        // (a post or void in the batch of its pending transfer is rare).
        let mut earlier = Vec::with_capacity(transfers.size_hint().0);
        let mut earlier_set: Option<Ids> = None;
        let mut claims = Vec::with_capacity(transfers.size_hint().0);
        for t in transfers {
            // A failed cold read: the batch takes the path that does not run it here.
            let stored = |id| self.transfer_position(id).ok().map(|found| found.is_some());
            let held = |id| Some(self.failed_transfer_ids.contains(&id) || stored(id)?);
            if !self.transfer_may_run_here(&t) {
                if t.flags.contains(TransferFlags::IMPORTED) {
                    return None;
                }
                if !(transfer_fails_before_lookup(&t) || held(t.id.0)?) {
                    // Runs where its id is held, if anywhere: it claims nothing here and is
                    // no earlier event for a later post.
                    elsewhere.as_mut()?.push(t.id.0);
                    continue;
                }
                // Fails here on its fields or with `exists*` or `id_already_failed`; see the
                // module. Nothing to claim, so it is no earlier event for a later post: its
                // id is stored here (the post finds it) or may be stored anywhere.
                continue;
            }
            let pending = t.pending_id.0;
            if pending != 0 && !stored(pending)? {
                let set = earlier_set.get_or_insert_with(|| {
                    let mut set = Ids::with_capacity_and_hasher(earlier.len(), seeded());
                    set.extend(earlier.iter().copied());
                    set
                });
                if !set.contains(&pending) {
                    return None;
                }
            }
            match &mut earlier_set {
                Some(set) => {
                    set.insert(t.id.0);
                }
                None => earlier.push(t.id.0),
            }
            if valid(t.id.0) && (leased(t.id.0) || !held(t.id.0)?) {
                claims.push(t.id.0);
            }
        }
        Some(LocalRun {
            claims,
            elsewhere: Vec::new(),
        })
    }

    /// Whether no event of `transfers` keeps them from running here alone for what this
    /// partition knows in memory (imported, a ledger or an account elsewhere): the part of
    /// [`Ledger::local_transfers_leased`] that reads no cold id, and stricter: it refuses an
    /// event of another ledger that the full check would run here for its id. A caller that
    /// reads no id ahead for a batch this refuses calls this first, and sends such a batch
    /// to the rare path.
    pub fn local_transfers_may_run(&self, transfers: impl IntoIterator<Item = Transfer>) -> bool {
        self.runs_local_batches()
            && transfers
                .into_iter()
                .all(|t| self.transfer_may_run_here(&t))
    }

    fn transfer_may_run_here(&self, t: &Transfer) -> bool {
        if t.flags.contains(TransferFlags::IMPORTED) || !self.places_ledger_here(t.ledger) {
            return false;
        }
        let post_or_void =
            TransferFlags::POST_PENDING_TRANSFER | TransferFlags::VOID_PENDING_TRANSFER;
        if t.ledger == 0 && (t.flags.bits() & post_or_void.bits()) == 0 {
            // Fails on its id or its fields: `ledger_must_not_be_zero` comes before the
            // accounts are looked up.
            return true;
        }
        let accounts = [t.debit_account_id.0, t.credit_account_id.0];
        (accounts.iter()).all(|a| *a == 0 || self.account_positions.get(*a).is_some())
    }

    /// Batches run locally only under placement by ledger with several partitions (one
    /// partition runs every batch itself).
    pub fn runs_local_batches(&self) -> bool {
        self.config.placement == PlacementKind::ByLedger && !self.is_whole()
    }

    /// Ledger 0 names no ledger: its event fails on its own fields or copies a pending
    /// transfer's ledger, which the caller checks.
    fn places_ledger_here(&self, ledger: u32) -> bool {
        ledger == 0 || ledger_partition(ledger, self.config.partitions) == self.config.partition
    }
}

/// A batch's ids, hashed fast (the partition's own bookkeeping of one batch).
type Ids = HashSet<u128, FixedState>;

fn seeded() -> FixedState {
    FixedState::with_seed(0)
}

/// An id a record can be stored under (TigerBeetle refuses 0 and `u128::MAX` first).
fn valid(id: u128) -> bool {
    id != 0 && id != u128::MAX
}

impl Ledger {
    /// Whether this partition's records give `t`'s result whatever its ledger, accounts and
    /// pending transfer (see the module): it fails on its fields before any lookup, or its id
    /// is held here. For an event being applied (an intent's check).
    pub(crate) fn transfer_answered_here_applied(&self, t: &Transfer) -> bool {
        transfer_fails_before_lookup(t)
            || self.failed_transfer_ids.contains(&t.id.0)
            || self.transfer_position_applied(t.id.0).is_some()
    }

    /// Whether this partition's records give `a`'s result whatever its ledger: it fails on
    /// its fields before any lookup, or its id is held here.
    pub(crate) fn account_answered_here(&self, a: &Account) -> bool {
        account_fails_before_lookup(a) || self.account_positions.get(a.id.0).is_some()
    }
}

/// Whether `t` fails on its own fields before any lookup (`create_transfer`'s first checks).
fn transfer_fails_before_lookup(t: &Transfer) -> bool {
    t.flags.has_reserved() || !valid(t.id.0)
}

/// Whether `a` fails on its own fields before any lookup (`create_account`'s first checks).
fn account_fails_before_lookup(a: &Account) -> bool {
    a.reserved != 0 || a.flags.has_reserved() || !valid(a.id.0)
}

#[cfg(test)]
mod tests {
    use kassa_wire::{AccountId, TransferId};

    use crate::{LedgerConfig, PlacementKind};

    use super::*;

    use crate::test_partitions::{account, ledger_of, partition};

    fn transfer(id: u128, ledger: u32, debit: u128, credit: u128) -> Transfer {
        Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(debit),
            credit_account_id: AccountId(credit),
            amount: 1,
            ledger,
            code: 1,
            ..Transfer::default()
        }
    }

    #[test]
    fn a_batch_of_this_partitions_ledgers_runs_here_and_claims_its_new_ids() {
        let (here, elsewhere) = (ledger_of(1), ledger_of(2));
        let mut ledger = partition(1, PlacementKind::ByLedger);
        let accounts = [account(1, here), account(2, here), account(1, here)];
        let run = ledger.local_accounts(accounts).expect("local");
        assert_eq!(run.claims, vec![1, 2, 1], "listed as the batch names them");
        let mut results = Vec::new();
        ledger.create_accounts(10, &accounts[..2], &mut results);
        assert!(results
            .iter()
            .all(|r| r.status == kassa_wire::CreateAccountStatus::Created));
        assert_eq!(
            ledger.local_accounts(accounts).expect("local").claims,
            vec![]
        );
        assert_eq!(ledger.local_accounts([account(3, elsewhere)]), None);
        let mut imported = account(3, here);
        imported.flags = AccountFlags::IMPORTED;
        assert_eq!(ledger.local_accounts([imported]), None);

        let t = transfer(7, here, 1, 2);
        assert_eq!(ledger.local_transfers([t]).expect("local").claims, vec![7]);
        // An account stored elsewhere (or nowhere): the global path finds out which.
        assert_eq!(ledger.local_transfers([transfer(7, here, 1, 9)]), None);
        assert_eq!(ledger.local_transfers([transfer(7, elsewhere, 1, 2)]), None);
        // A post naming a pending transfer created earlier in the batch, or stored here.
        let mut pending = t;
        pending.flags = TransferFlags::PENDING;
        let mut post = transfer(8, 0, 0, 0);
        post.pending_id = TransferId(7);
        post.flags = TransferFlags::POST_PENDING_TRANSFER;
        let run = ledger.local_transfers([pending, post]).expect("local");
        assert_eq!(run.claims, vec![7, 8]);
        // After the first such post the batch's ids are a set; a second post finds its
        // pending in it too, and one naming a later transfer is not local.
        let mut pending_9 = transfer(9, here, 1, 2);
        pending_9.flags = TransferFlags::PENDING;
        let mut post_10 = post;
        post_10.id = TransferId(10);
        post_10.pending_id = TransferId(9);
        let run = ledger.local_transfers([pending, post, pending_9, post_10]);
        assert_eq!(run.expect("local").claims, vec![7, 8, 9, 10]);
        assert_eq!(
            ledger.local_transfers([pending, post, post_10, pending_9]),
            None
        );
        assert_eq!(
            ledger.local_transfers([post]),
            None,
            "its pending is nowhere here"
        );
        let mut results = Vec::new();
        ledger.create_transfers(20, &[pending], &mut results);
        assert_eq!(
            ledger.local_transfers([post]).expect("local").claims,
            vec![8]
        );
        // Invalid ids are refused by the ledger itself, with nothing to claim.
        let run =
            ledger.local_transfers([transfer(0, here, 1, 2), transfer(u128::MAX, here, 1, 2)]);
        assert_eq!(run.expect("local").claims, vec![]);
    }

    #[test]
    fn only_placement_by_ledger_over_several_partitions_runs_batches_locally() {
        let here = ledger_of(1);
        let by_id = partition(1, PlacementKind::ById);
        assert_eq!(by_id.local_accounts([account(1, here)]), None);
        let whole = Ledger::new(LedgerConfig {
            placement: PlacementKind::ByLedger,
            ..LedgerConfig::default()
        });
        assert_eq!(whole.local_transfers([transfer(1, here, 1, 2)]), None);
        assert!(!whole.local_transfers_may_run([transfer(1, here, 1, 2)]));
    }

    /// The check of what is in memory refuses what `local_transfers` refuses for it, and
    /// lets through what it may run, whatever the ids.
    #[test]
    fn the_check_in_memory_refuses_as_the_whole_check_does() {
        let (here, elsewhere) = (ledger_of(1), ledger_of(2));
        let mut ledger = partition(1, PlacementKind::ByLedger);
        let mut results = Vec::new();
        ledger.create_accounts(10, &[account(1, here), account(2, here)], &mut results);
        let mut imported = transfer(7, here, 1, 2);
        imported.flags = TransferFlags::IMPORTED;
        let refused = [
            transfer(7, here, 1, 9),
            transfer(7, elsewhere, 1, 2),
            imported,
        ];
        for t in refused {
            assert!(!ledger.local_transfers_may_run([transfer(6, here, 1, 2), t]));
            assert_eq!(ledger.local_transfers([t]), None);
        }
        let batch = [transfer(7, here, 1, 2), transfer(8, 0, 0, 0)];
        assert!(ledger.local_transfers_may_run(batch));
        assert!(ledger.local_transfers([batch[0]]).is_some());
    }

    /// An event this partition would not run may still run here when it fails the same way
    /// anywhere: on its fields before any lookup, or on its id, held here. Its results are
    /// then those of the partition holding the id, whatever its ledger and accounts.
    #[test]
    fn an_event_of_another_ledger_runs_here_for_its_id_held_here_or_its_fields() {
        let (here, elsewhere) = (ledger_of(1), ledger_of(2));
        let mut ledger = partition(1, PlacementKind::ByLedger);
        let mut results = Vec::new();
        ledger.create_accounts(10, &[account(1, here), account(2, here)], &mut results);
        let mut created = Vec::new();
        ledger.create_transfers(20, &[transfer(7, here, 1, 2)], &mut created);
        // Transfer 7 is stored here; 8 is nowhere. Accounts 30 and 31 are elsewhere.
        let foreign = transfer(7, elsewhere, 30, 31);
        let run = ledger.local_transfers([foreign, transfer(9, here, 1, 2)]);
        assert_eq!(run.expect("runs here").claims, vec![9]);
        assert_eq!(
            ledger.local_transfers([transfer(8, elsewhere, 30, 31)]),
            None
        );
        // In a share, such an event is listed to run where its id is held, if anywhere.
        let share = [transfer(8, elsewhere, 30, 31), transfer(9, here, 1, 2)];
        let share = ledger.share_transfers(share).expect("a share");
        assert_eq!((share.claims, share.elsewhere), (vec![9], vec![8]));
        let share = ledger
            .share_accounts([account(4, elsewhere)])
            .expect("a share");
        assert_eq!((share.claims, share.elsewhere), (vec![], vec![4]));
        let mut reserved = transfer(8, elsewhere, 30, 31);
        reserved.flags = TransferFlags(1 << 15);
        let invalid = [transfer(0, elsewhere, 30, 31), reserved];
        assert_eq!(
            ledger.local_transfers(invalid).expect("here").claims,
            vec![]
        );
        // Ledger 0, no post or void: its accounts are never looked up; its id is claimed.
        let run = ledger.local_transfers([transfer(8, 0, 30, 31)]);
        assert_eq!(run.expect("runs here").claims, vec![8]);
        let mut imported = foreign;
        imported.flags = TransferFlags::IMPORTED;
        assert_eq!(ledger.local_transfers([imported]), None, "imported: never");
        // The check of what is in memory alone stays strict.
        assert!(!ledger.local_transfers_may_run([foreign]));
        // Its results here are the whole ledger's: `exists` against the record stored.
        let mut answered = Vec::new();
        ledger.create_transfers(30, &[foreign], &mut answered);
        assert_eq!(
            answered[0].status,
            kassa_wire::CreateTransferStatus::ExistsWithDifferentDebitAccountId
        );

        // Accounts: one stored here, of another ledger in the batch, answers `exists*`.
        let run = ledger.local_accounts([account(1, elsewhere), account(3, here)]);
        assert_eq!(run.expect("runs here").claims, vec![3]);
        assert_eq!(ledger.local_accounts([account(4, elsewhere)]), None);
        assert_eq!(
            ledger
                .local_accounts([account(0, elsewhere)])
                .expect("here")
                .claims,
            vec![]
        );
    }

    #[test]
    fn ids_a_lease_covers_are_claimed_without_being_looked_up() {
        let here = ledger_of(1);
        let mut ledger = partition(1, PlacementKind::ByLedger);
        let mut results = Vec::new();
        ledger.create_accounts(10, &[account(1, here), account(2, here)], &mut results);
        let stored = transfer(7, here, 1, 2);
        let mut created = Vec::new();
        ledger.create_transfers(20, &[stored], &mut created);
        assert!(ledger.contains_transfer(TransferId(7)).unwrap());
        let batch = [stored, transfer(8, here, 1, 2)];
        // Not leased: a stored id needs no claim, a new one does.
        assert_eq!(
            ledger.local_transfers(batch).expect("local").claims,
            vec![8]
        );
        // Leased: both are listed (covered by the lease, not claimed), and the batch still
        // runs here only if its accounts are here.
        let run = ledger.local_transfers_leased(batch, |_| true);
        assert_eq!(run.expect("local").claims, vec![7, 8]);
        let foreign = [transfer(9, here, 1, 99)];
        assert_eq!(ledger.local_transfers_leased(foreign, |_| true), None);
    }
}
