//! The reference model's reads (lookups, `get_account_transfers`, `get_account_balances`,
//! `query_accounts`, `query_transfers`: linear scans, filtered, sorted by timestamp, limited),
//! the expiry of pending transfers and the change stream. Filter validity is
//! `get_scan_from_account_filter` / `get_scan_from_query_filter`'s `filter_valid`; a field of
//! zero is no condition; results are capped at `result_max` (8189 for 128-byte results).

use kassa_wire::{
    Account, AccountBalance, AccountFilter, AccountFlags, ChangeEvent, QueryFilter, Transfer,
    TransferFlags,
};
use zerocopy::IntoBytes;

use crate::model::reference::{
    Model, Phase, KIND_PENDING_TRANSFER_EXPIRED, NS_PER_S, TIMESTAMP_MAX,
};

/// `Operation.result_max(message_body_size_max)` for queries: (1 MiB - 256 - 128) / 128.
pub const QUERY_RESULTS_MAX: usize = ((1 << 20) - 256 - 128) / 128;
/// `Operation.create_transfers.event_max`: the most pending transfers one pulse expires.
pub const EXPIRE_MAX: usize = QUERY_RESULTS_MAX;

/// `TimestampRange.valid` for an optional bound (zero means none).
fn bound_valid(timestamp: u64) -> bool {
    timestamp == 0 || (1..=TIMESTAMP_MAX).contains(&timestamp)
}

fn range_valid(min: u64, max: u64) -> bool {
    bound_valid(min) && bound_valid(max) && (max == 0 || min <= max)
}

fn in_range(timestamp: u64, min: u64, max: u64) -> bool {
    let max = if max == 0 { TIMESTAMP_MAX } else { max };
    timestamp >= min.max(1) && timestamp <= max
}

/// Zero in the filter matches anything.
fn field_matches(filter: u128, value: u128) -> bool {
    filter == 0 || filter == value
}

fn account_filter_valid(f: &AccountFilter) -> bool {
    f.account_id.0 != 0
        && f.account_id.0 != u128::MAX
        && range_valid(f.timestamp_min, f.timestamp_max)
        && f.limit != 0
        && (f.flags.0 & 0b11) != 0
        && (f.flags.0 & !0b111) == 0
        && f.reserved.iter().all(|b| *b == 0)
}

fn query_filter_valid(f: &QueryFilter) -> bool {
    range_valid(f.timestamp_min, f.timestamp_max)
        && f.limit != 0
        && (f.flags.0 & !0b1) == 0
        && f.reserved.iter().all(|b| *b == 0)
}

/// Sorts by timestamp, reverses if asked, keeps `min(limit, QUERY_RESULTS_MAX)`.
fn ordered<T>(mut items: Vec<(u64, T)>, reversed: bool, limit: u32) -> Vec<T> {
    items.sort_by_key(|(timestamp, _)| *timestamp);
    if reversed {
        items.reverse();
    }
    let limit = (limit as usize).min(QUERY_RESULTS_MAX);
    items
        .into_iter()
        .take(limit)
        .map(|(_, item)| item)
        .collect()
}

impl Model {
    pub fn lookup_accounts(&self, ids: &[u128]) -> Vec<Account> {
        let found = ids.iter().filter_map(|id| self.account_index(*id));
        found.map(|index| self.accounts[index]).collect()
    }

    pub fn lookup_transfers(&self, ids: &[u128]) -> Vec<Transfer> {
        let found = ids.iter().filter_map(|id| self.transfer_index(*id));
        found.map(|index| self.transfers[index].record).collect()
    }

    /// The indexes of the transfers an account filter selects, in result order.
    fn account_filter_matches(&self, f: &AccountFilter) -> Vec<usize> {
        if !account_filter_valid(f) {
            return Vec::new();
        }
        let (debits, credits) = (f.flags.0 & 0b1 != 0, f.flags.0 & 0b10 != 0);
        let mut matches = Vec::new();
        for (index, stored) in self.transfers.iter().enumerate() {
            let t = &stored.record;
            let side = (debits && t.debit_account_id == f.account_id)
                || (credits && t.credit_account_id == f.account_id);
            if side
                && in_range(t.timestamp, f.timestamp_min, f.timestamp_max)
                && field_matches(f.user_data_128, t.user_data_128)
                && field_matches(f.user_data_64.into(), t.user_data_64.into())
                && field_matches(f.user_data_32.into(), t.user_data_32.into())
                && field_matches(f.code.into(), t.code.into())
            {
                matches.push((t.timestamp, index));
            }
        }
        ordered(matches, f.flags.0 & 0b100 != 0, f.limit)
    }

    pub fn get_account_transfers(&self, f: &AccountFilter) -> Vec<Transfer> {
        let matches = self.account_filter_matches(f);
        matches
            .into_iter()
            .map(|index| self.transfers[index].record)
            .collect()
    }

    /// Only for an account that exists and has `flags.history`: its balances right after each
    /// matching transfer (the transfer's `AccountEvent`, on the account's side).
    pub fn get_account_balances(&self, f: &AccountFilter) -> Vec<AccountBalance> {
        let Some(account) = self.account_index(f.account_id.0) else {
            return Vec::new();
        };
        if self.accounts[account].flags.0 & AccountFlags::HISTORY.0 == 0 {
            return Vec::new();
        }
        let balance = |index: usize| {
            let stored = &self.transfers[index];
            let dr = stored.record.debit_account_id == f.account_id;
            let b = if dr { stored.dr_after } else { stored.cr_after };
            AccountBalance {
                debits_pending: b.debits_pending,
                debits_posted: b.debits_posted,
                credits_pending: b.credits_pending,
                credits_posted: b.credits_posted,
                timestamp: stored.record.timestamp,
                reserved: [0; 56],
            }
        };
        self.account_filter_matches(f)
            .into_iter()
            .map(balance)
            .collect()
    }

    pub fn query_accounts(&self, f: &QueryFilter) -> Vec<Account> {
        if !query_filter_valid(f) {
            return Vec::new();
        }
        let matches = self.accounts.iter().filter(|a| {
            query_fields_match(f, (a.user_data_128, a.user_data_64, a.user_data_32))
                && field_matches(f.ledger.into(), a.ledger.into())
                && field_matches(f.code.into(), a.code.into())
                && in_range(a.timestamp, f.timestamp_min, f.timestamp_max)
        });
        let items = matches.map(|a| (a.timestamp, *a)).collect();
        ordered(items, f.flags.0 & 1 != 0, f.limit)
    }

    pub fn query_transfers(&self, f: &QueryFilter) -> Vec<Transfer> {
        if !query_filter_valid(f) {
            return Vec::new();
        }
        let matches = self.transfers.iter().map(|s| &s.record).filter(|t| {
            query_fields_match(f, (t.user_data_128, t.user_data_64, t.user_data_32))
                && field_matches(f.ledger.into(), t.ledger.into())
                && field_matches(f.code.into(), t.code.into())
                && in_range(t.timestamp, f.timestamp_min, f.timestamp_max)
        });
        let items = matches.map(|t| (t.timestamp, *t)).collect();
        ordered(items, f.flags.0 & 1 != 0, f.limit)
    }
}

fn query_fields_match(f: &QueryFilter, (u128_, u64_, u32_): (u128, u64, u32)) -> bool {
    field_matches(f.user_data_128, u128_)
        && field_matches(f.user_data_64.into(), u64_.into())
        && field_matches(f.user_data_32.into(), u32_.into())
}

impl Model {
    /// The pending transfers that can expire, as `(expires_at, index)`, soonest first.
    fn expiries(&self) -> Vec<(u64, usize)> {
        let mut expiries: Vec<(u64, usize)> = Vec::new();
        for (index, stored) in self.transfers.iter().enumerate() {
            let t = &stored.record;
            if stored.phase == Phase::Pending && t.timeout > 0 {
                expiries.push((t.timestamp + u64::from(t.timeout) * NS_PER_S, index));
            }
        }
        expiries.sort();
        expiries
    }

    pub fn pulse_needed(&self, now: u64) -> bool {
        let time = self.timestamp.max(now);
        self.expiries()
            .first()
            .is_some_and(|(expires_at, _)| *expires_at <= time)
    }

    /// `execute_expire_pending_transfers`, with the clock rule of the brief: the i-th expired
    /// transfer gets `time + 1 + i`, and the ledger's timestamp becomes `time + count`.
    pub fn expire_pending_transfers(&mut self, now: u64) -> usize {
        let time = self.timestamp.max(now);
        let due: Vec<(u64, usize)> = self
            .expiries()
            .into_iter()
            .filter(|(at, _)| *at <= time)
            .take(EXPIRE_MAX)
            .collect();
        for (i, (_, index)) in due.iter().enumerate() {
            let p = self.transfers[*index].record;
            self.transfers[*index].phase = Phase::Expired;
            let dr = self
                .account_index(p.debit_account_id.0)
                .expect("debit account");
            let cr = self
                .account_index(p.credit_account_id.0)
                .expect("credit account");
            self.accounts[dr].debits_pending -= p.amount;
            if p.flags.0 & TransferFlags::CLOSING_DEBIT.0 != 0 {
                self.accounts[dr].flags.0 &= !AccountFlags::CLOSED.0;
            }
            self.accounts[cr].credits_pending -= p.amount;
            if p.flags.0 & TransferFlags::CLOSING_CREDIT.0 != 0 {
                self.accounts[cr].flags.0 &= !AccountFlags::CLOSED.0;
            }
            let (d, c) = (self.balances_of(dr), self.balances_of(cr));
            let timestamp = time + 1 + i as u64;
            self.push_change(KIND_PENDING_TRANSFER_EXPIRED, timestamp, p.as_bytes(), d, c);
        }
        if !due.is_empty() {
            self.timestamp = time + due.len() as u64;
        }
        due.len()
    }

    fn balances_of(&self, index: usize) -> kassa_wire::Balances {
        let a = &self.accounts[index];
        kassa_wire::Balances {
            debits_pending: a.debits_pending,
            debits_posted: a.debits_posted,
            credits_pending: a.credits_pending,
            credits_posted: a.credits_posted,
        }
    }

    /// The retained events with `sequence >= from`, oldest first, at most `limit`.
    pub fn change_events(&self, from: u64, limit: usize) -> Vec<ChangeEvent> {
        let retained = self.changes.iter().filter(|e| e.sequence >= from);
        retained.take(limit).copied().collect()
    }

    pub fn release_change_events(&mut self, through: u64) {
        self.changes.retain(|e| e.sequence > through);
    }

    /// The sequence of the oldest retained event, or the next one if none is retained.
    pub fn change_sequence_first(&self) -> u64 {
        self.changes
            .first()
            .map_or(self.next_sequence, |e| e.sequence)
    }
}
