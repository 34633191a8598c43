//! The second half of the generator: transfers (single-phase, pending, posts and voids, earlier
//! events again), query filters (valid and invalid) and change-stream reads and releases.

use kassa_wire::{
    AccountFilter, AccountFilterFlags, AccountId, QueryFilter, QueryFilterFlags, Transfer,
    TransferFlags, TransferId,
};

use crate::model::gen::Gen;
use crate::model::ops::Op;
use crate::model::reference::Model;

impl Gen {
    pub fn create_transfers(&mut self, model: &Model) -> Op {
        let count = self.batch_size();
        let linked_percent = self.rng.pick(&[0, 0, 10, 30, 60]);
        let mut events = Vec::new();
        for _ in 0..count {
            let again = !self.sent_transfers.is_empty() && self.rng.chance(15);
            let mut t = match self.rng.below(100) {
                _ if again => self.transfer_again(),
                0..=34 => self.post_or_void(model, &events),
                _ => self.single_phase(model),
            };
            t.flags
                .set(TransferFlags::LINKED, self.rng.chance(linked_percent));
            t.flags.set(TransferFlags::IMPORTED, false);
            events.push(t);
        }
        self.sent_transfers.extend(events.iter().copied());
        if self.rng.chance(15) {
            let (now, timestamps) = self.imported_timestamps(model, events.len(), true);
            for (t, timestamp) in events.iter_mut().zip(timestamps) {
                t.flags.set(TransferFlags::IMPORTED, !self.odd(8));
                t.timestamp = timestamp;
                if !self.odd(30) {
                    t.timeout = 0;
                }
            }
            return Op::CreateTransfers { now, events };
        }
        for t in &mut events {
            if self.odd(4) {
                t.timestamp = self.rng.range(1, 10);
            }
        }
        Op::CreateTransfers {
            now: self.batch_now(model, events.len()),
            events,
        }
    }

    /// Debit and credit account ids and a ledger: mostly existing accounts of one ledger.
    fn account_pair(&mut self, model: &Model) -> (u128, u128, u32) {
        if model.accounts.len() < 2 || self.odd(20) {
            let space = self.account_ids;
            return (self.id(space), self.id(space), self.ledger());
        }
        let dr = self.rng.pick(&model.accounts);
        let same: Vec<u128> = model
            .accounts
            .iter()
            .filter(|a| a.ledger == dr.ledger && a.id != dr.id)
            .map(|a| a.id.0)
            .collect();
        let cr = if !same.is_empty() && !self.odd(30) {
            self.rng.pick(&same)
        } else if self.odd(10) {
            dr.id.0
        } else {
            let others: Vec<u128> = model
                .accounts
                .iter()
                .map(|a| a.id.0)
                .filter(|id| *id != dr.id.0)
                .collect();
            self.rng.pick(&others)
        };
        let ledger = if self.odd(20) {
            self.ledger()
        } else {
            dr.ledger
        };
        if self.rng.chance(50) {
            (dr.id.0, cr, ledger)
        } else {
            (cr, dr.id.0, ledger)
        }
    }

    fn user_data(&mut self, transfer: &mut Transfer, zero_percent: u64) {
        transfer.user_data_128 = u128::from(self.small(zero_percent, 3));
        transfer.user_data_64 = self.small(zero_percent, 3);
        transfer.user_data_32 = self.small(zero_percent, 3) as u32;
    }

    fn single_phase(&mut self, model: &Model) -> Transfer {
        let odds = [
            (TransferFlags::PENDING.0, 40),
            (TransferFlags::BALANCING_DEBIT.0, 12),
            (TransferFlags::BALANCING_CREDIT.0, 12),
            (TransferFlags::CLOSING_DEBIT.0, 5),
            (TransferFlags::CLOSING_CREDIT.0, 5),
        ];
        let flags = TransferFlags(self.flags(&odds, 9..16));
        let (dr, cr, ledger) = self.account_pair(model);
        let pending = flags.contains(TransferFlags::PENDING);
        let timeout = match (pending, self.odd(5)) {
            (true, _) => self.timeout(),
            (false, odd) => u32::from(odd),
        };
        let mut t = Transfer {
            id: TransferId(self.id(self.transfer_ids)),
            debit_account_id: AccountId(dr),
            credit_account_id: AccountId(cr),
            amount: self.amount(),
            pending_id: TransferId(if self.odd(4) {
                self.id(self.transfer_ids)
            } else {
                0
            }),
            timeout,
            ledger,
            code: self.code(),
            flags,
            ..Transfer::default()
        };
        self.user_data(&mut t, 50);
        t
    }

    /// A post or void, mostly of a stored pending transfer or of one earlier in the batch.
    fn post_or_void(&mut self, model: &Model, batch: &[Transfer]) -> Transfer {
        let is_pending = |t: &Transfer| t.flags.contains(TransferFlags::PENDING);
        let mut pendings: Vec<Transfer> = batch.iter().copied().filter(is_pending).collect();
        if pendings.is_empty() || self.rng.chance(50) {
            let stored = model.transfers.iter().map(|s| s.record);
            pendings.extend(stored.filter(is_pending));
        }
        let void = self.rng.chance(50);
        let p = (!pendings.is_empty() && self.rng.chance(85)).then(|| self.rng.pick(&pendings));
        let mut t = Transfer {
            id: TransferId(self.id(self.transfer_ids)),
            pending_id: TransferId(self.pending_id(model, p)),
            amount: self.resolve_amount(void, p.map_or(0, |p| p.amount)),
            timeout: u32::from(self.odd(5)),
            flags: self.resolve_flags(void),
            ..Transfer::default()
        };
        self.user_data(&mut t, 60);
        let p = p.unwrap_or_default();
        let space = self.account_ids;
        let roll = if self.noisy {
            self.rng.below(10)
        } else {
            self.rng.below(9)
        };
        (t.debit_account_id.0, t.credit_account_id.0) = match roll {
            0..=5 => (0, 0),
            6..=8 => (p.debit_account_id.0, p.credit_account_id.0),
            _ => (self.id(space), self.id(space)),
        };
        let roll = if self.noisy {
            self.rng.below(10)
        } else {
            self.rng.below(9)
        };
        (t.ledger, t.code) = match roll {
            0..=5 => (0, 0),
            6..=8 => (p.ledger, p.code),
            _ => (self.ledger(), self.small(30, 2) as u16),
        };
        if self.odd(4) {
            t.pending_id = t.id;
        }
        t
    }

    fn resolve_flags(&mut self, void: bool) -> TransferFlags {
        let mut flags = if void {
            TransferFlags::VOID_PENDING_TRANSFER
        } else {
            TransferFlags::POST_PENDING_TRANSFER
        };
        if self.odd(5) {
            flags |= TransferFlags::VOID_PENDING_TRANSFER | TransferFlags::POST_PENDING_TRANSFER;
        }
        if self.odd(8) {
            flags |= self.rng.pick(&[
                TransferFlags::PENDING,
                TransferFlags::BALANCING_DEBIT,
                TransferFlags::BALANCING_CREDIT,
                TransferFlags::CLOSING_DEBIT,
                TransferFlags::CLOSING_CREDIT,
            ]);
        }
        if self.odd(4) {
            flags.0 |= 1 << self.rng.range(9, 15);
        }
        flags
    }

    fn pending_id(&mut self, model: &Model, p: Option<Transfer>) -> u128 {
        if let Some(p) = p {
            return p.id.0;
        }
        match self.rng.below(10) {
            0 if self.noisy => 0,
            1 if self.noisy => u128::MAX,
            2..=4 if !model.transfers.is_empty() => {
                model.transfers[self.rng.below(model.transfers.len() as u64) as usize]
                    .record
                    .id
                    .0
            }
            _ => self.id(self.transfer_ids),
        }
    }

    /// The amount of a post or void of a pending transfer of `pending` amount.
    fn resolve_amount(&mut self, void: bool, pending: u128) -> u128 {
        match (void, self.rng.below(10)) {
            (true, 0..=4) => 0,
            (true, 5..=7) => pending,
            (false, 0..=2) => u128::MAX,
            (false, 3..=4) => pending,
            (false, 5..=6) => pending / 2,
            (false, 7) => 0,
            (_, 8) => pending.saturating_add(1),
            _ => self.amount(),
        }
    }

    /// An earlier transfer event again, as it was or with one field changed.
    fn transfer_again(&mut self) -> Transfer {
        let mut t = self.rng.pick(&self.sent_transfers);
        match self.rng.below(24) {
            0 => t.flags.0 ^= 1 << self.rng.range(1, 8),
            1 => t.pending_id.0 = self.id(self.transfer_ids),
            2 => t.timeout ^= 1,
            3 => t.debit_account_id.0 = self.id(self.account_ids),
            4 => t.credit_account_id.0 = self.id(self.account_ids),
            5 => t.amount = t.amount.wrapping_add(1),
            6 => t.amount = t.amount.wrapping_sub(1),
            7 => t.amount = self.rng.pick(&[0, u128::MAX]),
            8 => t.user_data_128 ^= 1,
            9 => t.user_data_64 ^= 1,
            10 => t.user_data_32 ^= 1,
            11 => t.ledger ^= 1,
            12 => t.code ^= 1,
            _ => {}
        }
        t
    }

    /// Optional timestamp bounds: none, near stored timestamps, random, or out of range.
    fn timestamp_bound(&mut self, model: &Model) -> u64 {
        match self.rng.below(100) {
            0..=54 => 0,
            55..=84 if !model.transfers.is_empty() => {
                let index = self.rng.below(model.transfers.len() as u64) as usize;
                let t = model.transfers[index].record.timestamp;
                t + self.rng.range(0, 2) - 1
            }
            85..=89 => self.rng.pick(&[1 << 63, u64::MAX]),
            _ => self.rng.range(1, model.timestamp.max(1)),
        }
    }

    fn limit(&mut self) -> u32 {
        match self.rng.below(100) {
            0..=3 => 0,
            4..=49 => self.rng.range(1, 4) as u32,
            _ => self.rng.pick(&[8189, 8190, u32::MAX]),
        }
    }

    pub fn account_filter(&mut self, model: &Model) -> AccountFilter {
        let id = if !model.accounts.is_empty() && self.rng.chance(85) {
            self.rng.pick(&model.accounts).id.0
        } else {
            self.id(self.account_ids)
        };
        let odds = [(1, 70), (2, 70), (4, 50)];
        let flags = AccountFilterFlags(u32::from(self.flags(&odds, 3..16)));
        let mut f = AccountFilter::new(AccountId(id), self.limit(), flags);
        f.user_data_128 = u128::from(self.small(85, 3));
        f.user_data_64 = self.small(85, 3);
        f.user_data_32 = self.small(85, 3) as u32;
        f.code = self.small(85, 2) as u16;
        if self.rng.chance(3) {
            f.reserved[self.rng.below(58) as usize] = 1;
        }
        (f.timestamp_min, f.timestamp_max) =
            (self.timestamp_bound(model), self.timestamp_bound(model));
        f
    }

    pub fn query_filter(&mut self, model: &Model) -> QueryFilter {
        let flags = QueryFilterFlags(u32::from(self.flags(&[(1, 50)], 1..16)));
        let mut f = QueryFilter::new(self.limit(), flags);
        f.user_data_128 = u128::from(self.small(80, 3));
        f.user_data_64 = self.small(80, 3);
        f.user_data_32 = self.small(80, 3) as u32;
        f.ledger = self.small(50, self.ledgers + 1) as u32;
        f.code = self.small(70, 2) as u16;
        if self.rng.chance(3) {
            f.reserved[self.rng.below(6) as usize] = 1;
        }
        (f.timestamp_min, f.timestamp_max) =
            (self.timestamp_bound(model), self.timestamp_bound(model));
        f
    }

    /// A change-stream sequence number around the retained range.
    pub fn sequence(&mut self, model: &Model) -> u64 {
        let first = model.change_sequence_first();
        let next = model.next_sequence;
        match self.rng.below(10) {
            0 => 0,
            1 => first - 1,
            2 => first,
            3..=6 => self.rng.range(first, next),
            7 => next,
            8 => next + 1,
            _ => u64::MAX,
        }
    }

    pub fn change_events(&mut self, model: &Model) -> Op {
        let from = self.sequence(model);
        let limit = if self.rng.chance(30) {
            usize::MAX
        } else {
            self.rng.range(0, 5) as usize
        };
        Op::ChangeEvents { from, limit }
    }
}
