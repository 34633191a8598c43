//! Reads: lookups by id, an account's transfers and balance history, and queries by user data,
//! ledger, code and timestamp range.
//!
//! An invalid filter (zero limit, reserved bits or bytes set, a bad timestamp range, no side
//! chosen) returns no results, as TigerBeetle does. Every query returns at most
//! `min(limit, QUERY_RESULTS_MAX)` results, in timestamp order or reversed.
//!
//! Cost: an account's transfers come from its own position list (the older positions
//! scanned from the cold store's account-transfer runs), over the positions of the timestamp
//! range (transfers are in timestamp order). `query_accounts` and `query_transfers` scan the records in timestamp order
//! from the range's start, so a selective filter over a long history reads many records; field
//! indexes belong with the cold-history store.

use kassa_wire::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, AccountId,
    QueryFilter, QueryFilterFlags, Transfer, TransferId, TIMESTAMP_MAX, TIMESTAMP_MIN,
};

use crate::cold::ColdError;
use crate::history::Listed;
use crate::limits::{BATCH_EVENTS_MAX, QUERY_RESULTS_MAX};
use crate::transfer_table::TimestampSearch;
use crate::Ledger;

impl Ledger {
    /// Appends the accounts that exist, in the order of `ids`.
    pub fn lookup_accounts(&self, ids: &[AccountId], out: &mut Vec<Account>) {
        assert!(ids.len() <= BATCH_EVENTS_MAX);
        out.extend(ids.iter().filter_map(|id| self.account(*id)));
    }

    /// Appends the transfers that exist, in the order of `ids`. Transfers older than the last
    /// durable checkpoint are read from the cold store, which may fail.
    pub fn lookup_transfers(
        &self,
        ids: &[TransferId],
        out: &mut Vec<Transfer>,
    ) -> Result<(), ColdError> {
        assert!(ids.len() <= BATCH_EVENTS_MAX);
        for id in ids {
            out.extend(self.transfer(*id)?);
        }
        Ok(())
    }

    /// Appends the transfers of `filter.account_id` that match the filter (cold ones read
    /// from the store, which may fail).
    pub fn get_account_transfers(
        &self,
        filter: &AccountFilter,
        out: &mut Vec<Transfer>,
    ) -> Result<(), ColdError> {
        self.account_filter_scan(filter, |_, _, _, transfer| {
            out.push(*transfer);
            Ok(())
        })
    }

    /// Appends the balances of `filter.account_id` right after each of its transfers that
    /// match the filter. Only accounts with the `history` flag keep them; for others, and for
    /// accounts that do not exist, nothing is returned. Balances older than the last durable
    /// checkpoint are read from the cold store, which may fail.
    pub fn get_account_balances(
        &self,
        filter: &AccountFilter,
        out: &mut Vec<AccountBalance>,
    ) -> Result<(), ColdError> {
        let Some(account) = self.account(filter.account_id) else {
            return Ok(());
        };
        if !account.flags.contains(AccountFlags::HISTORY) {
            return Ok(());
        }
        self.account_filter_scan(filter, |ledger, account, listed, transfer| {
            let balances = ledger.history_at(account, listed)?;
            out.push(AccountBalance::new(&balances, transfer.timestamp));
            Ok(())
        })
    }

    /// Calls `emit(ledger, account position, where the transfer is listed, transfer)` for
    /// each match, stopping at the first error (of a cold read, or of `emit`).
    fn account_filter_scan(
        &self,
        filter: &AccountFilter,
        mut emit: impl FnMut(&Ledger, usize, Listed, &Transfer) -> Result<(), ColdError>,
    ) -> Result<(), ColdError> {
        if !account_filter_valid(filter) {
            return Ok(());
        }
        let Some(account) = self.account_positions.get(filter.account_id.0) else {
            return Ok(());
        };
        let account = account as usize;
        let positions =
            self.transfer_positions_between(filter.timestamp_min, filter.timestamp_max)?;
        let limit = (filter.limit as usize).min(QUERY_RESULTS_MAX);
        let debits = filter.flags.contains(AccountFilterFlags::DEBITS);
        let credits = filter.flags.contains(AccountFilterFlags::CREDITS);
        let matches = |t: &Transfer| {
            ((debits && t.debit_account_id == filter.account_id)
                || (credits && t.credit_account_id == filter.account_id))
                && (filter.user_data_128 == 0 || t.user_data_128 == filter.user_data_128)
                && (filter.user_data_64 == 0 || t.user_data_64 == filter.user_data_64)
                && (filter.user_data_32 == 0 || t.user_data_32 == filter.user_data_32)
                && (filter.code == 0 || t.code == filter.code)
        };
        let reversed = filter.flags.contains(AccountFilterFlags::REVERSED);
        let mut emitted = 0;
        self.account_transfers_in(account, positions, reversed, |listed| {
            let transfer = self.transfer_at(listed.position)?;
            if matches(&transfer) {
                emit(self, account, listed, &transfer)?;
                emitted += 1;
            }
            Ok(emitted < limit)
        })
    }

    /// The positions of the transfers whose timestamps are within the bounds (0: unbounded;
    /// an unbounded side needs no search, which over cold transfers reads them).
    pub(crate) fn transfer_positions_between(
        &self,
        timestamp_min: u64,
        timestamp_max: u64,
    ) -> Result<std::ops::Range<u32>, ColdError> {
        let [start, end] = Ledger::timestamp_searches(timestamp_min, timestamp_max);
        let start = match start {
            None => 0,
            Some(before) => self.transfer_partition_point(before)?,
        };
        let end = match end {
            None => self.transfers.len(),
            Some(before) => self.transfer_partition_point(before)?,
        };
        Ok(Ledger::position_of(start)..Ledger::position_of(end.max(start)))
    }

    /// What [`Ledger::transfer_positions_between`] reads, reading no transfer: a range of
    /// positions holding the one it finds (its bounds widened to the samples around them),
    /// and the cold positions its searches may read (at most `SAMPLE_EVERY` per bound). The
    /// samples in the store are sought (their blocks are read ahead first, in the round
    /// [`crate::ColdReads::Timestamps`]).
    pub(crate) fn transfer_positions_around(
        &self,
        timestamp_min: u64,
        timestamp_max: u64,
    ) -> Result<(std::ops::Range<u32>, [std::ops::Range<u32>; 2]), ColdError> {
        let [start, end] = Ledger::timestamp_searches(timestamp_min, timestamp_max);
        let start = match start {
            None => TimestampSearch::Found(0),
            Some(before) => self.transfer_partition_search(before)?,
        };
        let end = match end {
            None => TimestampSearch::Found(self.transfers.len()),
            Some(before) => self.transfer_partition_search(before)?,
        };
        let reads = |found: &TimestampSearch| match found {
            TimestampSearch::Found(_) => 0..0,
            TimestampSearch::Window(window) => window.clone(),
        };
        let windows = [reads(&start), reads(&end)];
        let first = match start {
            TimestampSearch::Found(point) => Ledger::position_of(point),
            TimestampSearch::Window(window) => window.start,
        };
        let last = match end {
            TimestampSearch::Found(point) => Ledger::position_of(point),
            TimestampSearch::Window(window) => window.end,
        };
        Ok((first..last.max(first), windows))
    }

    /// The timestamps whose search [`Ledger::transfer_positions_between`] makes for these
    /// bounds: the transfers below each are before the range's bounds (0..2 of them).
    pub(crate) fn timestamp_searches(timestamp_min: u64, timestamp_max: u64) -> [Option<u64>; 2] {
        let (min, max) = timestamp_range(timestamp_min, timestamp_max);
        [(min != TIMESTAMP_MIN).then_some(min), past(max)]
    }

    /// Appends the accounts that match the filter.
    pub fn query_accounts(&self, filter: &QueryFilter, out: &mut Vec<Account>) {
        if !query_filter_valid(filter) {
            return;
        }
        let matches = |a: &&Account| {
            query_fields_match(filter, (a.user_data_128, a.user_data_64, a.user_data_32))
                && (filter.ledger == 0 || a.ledger == filter.ledger)
                && (filter.code == 0 || a.code == filter.code)
        };
        let range = timestamp_positions(filter, |before| {
            self.accounts.partition_point(|a| before(a.timestamp))
        });
        extend_limited(out, self.accounts[range].iter(), filter, matches);
    }

    /// Appends the transfers that match the filter. A partition answers for the transfers
    /// homed in it only, so that the union over partitions has each transfer once. Cold
    /// transfers are read from the store, which may fail.
    pub fn query_transfers(
        &self,
        filter: &QueryFilter,
        out: &mut Vec<Transfer>,
    ) -> Result<(), ColdError> {
        if !query_filter_valid(filter) {
            return Ok(());
        }
        let matches = |t: &Transfer| {
            self.owns(t.id.0)
                && query_fields_match(filter, (t.user_data_128, t.user_data_64, t.user_data_32))
                && (filter.ledger == 0 || t.ledger == filter.ledger)
                && (filter.code == 0 || t.code == filter.code)
        };
        let positions =
            self.transfer_positions_between(filter.timestamp_min, filter.timestamp_max)?;
        let positions: Box<dyn Iterator<Item = u32>> =
            if filter.flags.contains(QueryFilterFlags::REVERSED) {
                Box::new(positions.rev())
            } else {
                Box::new(positions)
            };
        let limit = (filter.limit as usize).min(QUERY_RESULTS_MAX);
        let taken = out.len();
        for position in positions {
            if out.len() - taken == limit {
                break;
            }
            let transfer = self.transfer_at(position)?;
            if matches(&transfer) {
                out.push(transfer);
            }
        }
        Ok(())
    }
}

fn query_fields_match(filter: &QueryFilter, (u128_, u64_, u32_): (u128, u64, u32)) -> bool {
    (filter.user_data_128 == 0 || u128_ == filter.user_data_128)
        && (filter.user_data_64 == 0 || u64_ == filter.user_data_64)
        && (filter.user_data_32 == 0 || u32_ == filter.user_data_32)
}

/// The positions of the records whose timestamps fall in the filter's range, for records in
/// timestamp order: `partition_point(before)` is the records' own `partition_point` over their
/// timestamps (a slice's or a table's).
fn timestamp_positions(
    filter: &QueryFilter,
    partition_point: impl Fn(&dyn Fn(u64) -> bool) -> usize,
) -> std::ops::Range<usize> {
    let (min, max) = timestamp_range(filter.timestamp_min, filter.timestamp_max);
    let start = partition_point(&|timestamp| timestamp < min);
    let end = partition_point(&|timestamp| timestamp <= max);
    start..end.max(start)
}

fn extend_limited<'a, T: Copy + 'a>(
    out: &mut Vec<T>,
    records: impl DoubleEndedIterator<Item = &'a T>,
    filter: &QueryFilter,
    matches: impl Fn(&&T) -> bool,
) {
    let limit = (filter.limit as usize).min(QUERY_RESULTS_MAX);
    if filter.flags.contains(QueryFilterFlags::REVERSED) {
        out.extend(records.rev().filter(matches).take(limit));
    } else {
        out.extend(records.filter(matches).take(limit));
    }
}

/// The inclusive range a filter's bounds give (zero means unbounded).
fn timestamp_range(timestamp_min: u64, timestamp_max: u64) -> (u64, u64) {
    let min = if timestamp_min == 0 {
        TIMESTAMP_MIN
    } else {
        timestamp_min
    };
    let max = if timestamp_max == 0 {
        TIMESTAMP_MAX
    } else {
        timestamp_max
    };
    (min, max)
}

/// The timestamp just past an upper bound, below which the transfers within it are (none:
/// unbounded, every transfer is).
fn past(max: u64) -> Option<u64> {
    (max < TIMESTAMP_MAX).then(|| max + 1)
}

fn timestamp_bounds_valid(timestamp_min: u64, timestamp_max: u64) -> bool {
    let valid = |t: u64| t == 0 || (TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(&t);
    valid(timestamp_min)
        && valid(timestamp_max)
        && (timestamp_max == 0 || timestamp_min <= timestamp_max)
}

pub(crate) fn account_filter_valid(filter: &AccountFilter) -> bool {
    filter.account_id.is_valid()
        && timestamp_bounds_valid(filter.timestamp_min, filter.timestamp_max)
        && filter.limit != 0
        && (filter.flags.contains(AccountFilterFlags::DEBITS)
            || filter.flags.contains(AccountFilterFlags::CREDITS))
        && filter.flags.0 & AccountFilterFlags::RESERVED_MASK == 0
        && filter.reserved.iter().all(|b| *b == 0)
}

pub(crate) fn query_filter_valid(filter: &QueryFilter) -> bool {
    timestamp_bounds_valid(filter.timestamp_min, filter.timestamp_max)
        && filter.limit != 0
        && filter.flags.0 & QueryFilterFlags::RESERVED_MASK == 0
        && filter.reserved.iter().all(|b| *b == 0)
}
