//! The operation generator: from a seed, a sequence of operations that reaches every path of
//! the state machine often. Id spaces are small so that ids collide (`exists`,
//! `exists_with_different_*`, `id_already_failed`); earlier events are resubmitted as they were
//! or with one field changed; flags are drawn bit by bit (reserved bits included); amounts
//! include 0, small values, `u128::MAX` and values near overflow; the clock advances by random
//! steps, sometimes backwards, and some cases start near the top of the timestamp range so that
//! `overflows_timeout` is reachable. The generator reads the model (never the ledger under test)
//! to aim posts and voids at pending transfers and imported timestamps at the right places.

use kassa_wire::{Account, AccountFlags, AccountId, Transfer};

use crate::model::ops::Op;
use crate::model::reference::{Model, Phase, NS_PER_S};
use crate::model::rng::Rng;

pub struct Gen {
    pub rng: Rng,
    /// Account ids are `1..=account_ids` (plus the invalid 0 and `u128::MAX` at times).
    pub account_ids: u64,
    pub transfer_ids: u64,
    pub ledgers: u64,
    /// The caller's clock: what `now` is, before a random step.
    pub clock: u64,
    pub sent_accounts: Vec<Account>,
    pub sent_transfers: Vec<Transfer>,
    /// Whether the current batch may carry malformed fields (ids 0 or max, reserved bits,
    /// zero ledger or code, stray timestamps...). Half the batches are clean, so that chains
    /// and long histories succeed often enough.
    pub noisy: bool,
}

impl Gen {
    pub fn new(seed: u64) -> Gen {
        let mut rng = Rng::new(seed);
        let account_ids = rng.range(3, 12);
        let transfer_ids = rng.range(20, 200);
        let ledgers = rng.range(1, 3);
        // Some cases live near the top of the timestamp range (`overflows_timeout`).
        let clock = if rng.chance(6) {
            5_000_000_000_000_000_000
        } else {
            rng.range(0, 1_000)
        };
        let (sent_accounts, sent_transfers) = (Vec::new(), Vec::new());
        let noisy = false;
        Gen {
            rng,
            account_ids,
            transfer_ids,
            ledgers,
            clock,
            sent_accounts,
            sent_transfers,
            noisy,
        }
    }

    pub fn op(&mut self, model: &Model) -> Op {
        self.noisy = self.rng.chance(50);
        if model.accounts.len() < 2 && self.rng.chance(80) {
            return self.create_accounts(model);
        }
        match self.rng.below(100) {
            0..=17 => self.create_accounts(model),
            18..=59 => self.create_transfers(model),
            60..=65 => Op::ExpirePendingTransfers {
                now: self.pulse_now(model),
            },
            66..=67 => Op::PulseNeeded {
                now: self.pulse_now(model),
            },
            68..=70 => Op::LookupAccounts(self.ids(self.account_ids)),
            71..=73 => Op::LookupTransfers(self.ids(self.transfer_ids)),
            74..=78 => Op::GetAccountTransfers(self.account_filter(model)),
            79..=83 => Op::GetAccountBalances(self.account_filter(model)),
            84..=86 => Op::QueryAccounts(self.query_filter(model)),
            87..=89 => Op::QueryTransfers(self.query_filter(model)),
            90..=92 => self.change_events(model),
            93..=95 => Op::ReleaseChangeEvents {
                through: self.sequence(model),
            },
            _ => Op::SnapshotRestore {
                hash_seed: self.rng.next_u64(),
            },
        }
    }

    /// A `now` `before` nanoseconds ahead of a future expiry of a pending transfer, if any:
    /// batches and pulses then land exactly on expiry boundaries.
    pub fn now_at_expiry(&mut self, model: &Model, before: u64) -> Option<u64> {
        let expiries: Vec<u64> = model
            .transfers
            .iter()
            .filter(|s| s.phase == Phase::Pending && s.record.timeout > 0)
            .map(|s| s.record.timestamp + u64::from(s.record.timeout) * NS_PER_S)
            .filter(|at| *at > model.timestamp + before && *at < self.clock + 10 * NS_PER_S)
            .collect();
        if expiries.is_empty() || !self.rng.chance(25) {
            return None;
        }
        let now = self.rng.pick(&expiries) - before;
        self.clock = self.clock.max(now);
        Some(now)
    }

    /// The `now` of a batch of `count` events: sometimes so that one event's timestamp is a
    /// pending transfer's expiry exactly (or one before), else the clock's next step.
    pub fn batch_now(&mut self, model: &Model, count: usize) -> u64 {
        let before = self.rng.range(0, count as u64);
        self.now_at_expiry(model, before)
            .unwrap_or_else(|| self.now())
    }

    /// The `now` of a pulse: sometimes an expiry exactly (or one before), else the next step.
    fn pulse_now(&mut self, model: &Model) -> u64 {
        let before = self.rng.range(0, 1);
        self.now_at_expiry(model, before)
            .unwrap_or_else(|| self.now())
    }

    /// The clock, advanced by a random step; sometimes a `now` behind the clock.
    pub fn now(&mut self) -> u64 {
        let step = match self.rng.below(100) {
            0..=14 => 0,
            15..=54 => self.rng.range(1, 1_000),
            55..=89 => self.rng.range(100_000_000, 3 * NS_PER_S),
            _ => {
                let back = self.rng.range(1, 5 * NS_PER_S).min(self.clock);
                return self.clock - back;
            }
        };
        self.clock += step;
        self.clock
    }

    /// True with probability `percent` / 100, in noisy batches only.
    pub fn odd(&mut self, percent: u64) -> bool {
        self.noisy && self.rng.chance(percent)
    }

    pub fn id(&mut self, space: u64) -> u128 {
        if self.odd(4) {
            self.rng.pick(&[0, u128::MAX])
        } else {
            u128::from(self.rng.range(1, space))
        }
    }

    pub fn ids(&mut self, space: u64) -> Vec<u128> {
        let count = self.rng.range(0, 6);
        (0..count).map(|_| self.id(space)).collect()
    }

    pub fn small(&mut self, zero_percent: u64, max: u64) -> u64 {
        if self.rng.chance(zero_percent) {
            0
        } else {
            self.rng.range(1, max)
        }
    }

    pub fn amount(&mut self) -> u128 {
        let r = &mut self.rng;
        match r.below(100) {
            0..=9 => 0,
            10..=54 => u128::from(r.range(1, 100)),
            55..=64 => u128::MAX,
            65..=74 => u128::MAX - u128::from(r.range(0, 100)),
            75..=79 => (1 << 127) + u128::from(r.range(0, 50)) - 25,
            80..=84 => u128::MAX / 3 + u128::from(r.range(0, 10)),
            85..=89 => r.u128(),
            _ => u128::from(r.range(100, 10_000)),
        }
    }

    pub fn timeout(&mut self) -> u32 {
        match self.rng.below(100) {
            0..=54 => 0,
            55..=84 => self.rng.range(1, 5) as u32,
            85..=89 => u32::MAX,
            90..=94 => u32::MAX - self.rng.range(0, 1_000_000_000) as u32,
            _ => self.rng.next_u64() as u32,
        }
    }

    /// A flag word: each bit with its own probability, and sometimes a reserved bit.
    pub fn flags(&mut self, odds: &[(u16, u64)], reserved_bits: std::ops::Range<u32>) -> u16 {
        let mut flags = 0;
        for (bit, percent) in odds {
            if self.rng.chance(*percent) {
                flags |= bit;
            }
        }
        if self.odd(4) {
            let bit = self.rng.range(
                u64::from(reserved_bits.start),
                u64::from(reserved_bits.end - 1),
            );
            flags |= 1 << bit;
        }
        flags
    }

    /// A ledger number: valid, or 0 in noisy batches.
    pub fn ledger(&mut self) -> u32 {
        if self.odd(5) {
            0
        } else {
            self.rng.range(1, self.ledgers) as u32
        }
    }

    /// A code: valid, or 0 in noisy batches.
    pub fn code(&mut self) -> u16 {
        if self.odd(5) {
            0
        } else {
            self.rng.range(1, 2) as u16
        }
    }

    fn account(&mut self) -> Account {
        let odds = [
            (AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS.0, 25),
            (AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS.0, 25),
            (AccountFlags::HISTORY.0, 40),
            (AccountFlags::CLOSED.0, 5),
        ];
        let flags = AccountFlags(self.flags(&odds, 6..16));
        let mut balance = || u128::from(self.odd(3));
        let (dp, dpo, cp, cpo) = (balance(), balance(), balance(), balance());
        Account {
            id: AccountId(self.id(self.account_ids)),
            debits_pending: dp,
            debits_posted: dpo,
            credits_pending: cp,
            credits_posted: cpo,
            user_data_128: u128::from(self.small(50, 3)),
            user_data_64: self.small(50, 3),
            user_data_32: self.small(50, 3) as u32,
            reserved: u32::from(self.odd(3)),
            ledger: self.ledger(),
            code: self.code(),
            flags,
            timestamp: 0,
        }
    }

    /// An earlier account event again, as it was or with one field changed.
    fn account_again(&mut self) -> Account {
        let mut a = self.rng.pick(&self.sent_accounts);
        match self.rng.below(10) {
            0 => a.flags.0 ^= 1 << self.rng.range(1, 5),
            1 => a.user_data_128 += 1,
            2 => a.user_data_64 += 1,
            3 => a.user_data_32 += 1,
            4 => a.ledger += 1,
            5 => a.code += 1,
            6 => a.code = 0,
            7 => a.ledger = 0,
            _ => {}
        }
        a
    }

    fn create_accounts(&mut self, model: &Model) -> Op {
        let count = self.batch_size();
        let linked_percent = self.rng.pick(&[0, 0, 10, 30, 60]);
        let mut events = Vec::new();
        for _ in 0..count {
            let again = !self.sent_accounts.is_empty() && self.rng.chance(15);
            let mut a = if again {
                self.account_again()
            } else {
                self.account()
            };
            a.flags
                .set(AccountFlags::LINKED, self.rng.chance(linked_percent));
            a.flags.set(AccountFlags::IMPORTED, false);
            events.push(a);
        }
        self.sent_accounts.extend(events.iter().copied());
        if self.rng.chance(12) {
            let (now, timestamps) = self.imported_timestamps(model, events.len(), false);
            for (a, timestamp) in events.iter_mut().zip(timestamps) {
                a.flags.set(AccountFlags::IMPORTED, !self.odd(8));
                a.timestamp = timestamp;
            }
            return Op::CreateAccounts { now, events };
        }
        for a in &mut events {
            if self.odd(4) {
                a.timestamp = self.rng.range(1, 10);
            }
        }
        Op::CreateAccounts {
            now: self.batch_now(model, events.len()),
            events,
        }
    }

    pub fn batch_size(&mut self) -> usize {
        match self.rng.below(100) {
            0..=2 => 0,
            3..=29 => 1,
            30..=89 => self.rng.range(2, 6) as usize,
            _ => self.rng.range(7, 16) as usize,
        }
    }

    /// `now` and the timestamps of an imported batch of `count` events: mostly increasing and
    /// valid, sometimes zero, beyond the range, at or after the batch's end, or equal to a stored
    /// record's (regress). For transfers the run may start before the newest account, so that
    /// `imported_event_timestamp_must_postdate_*` happens, or among the batch's own slots.
    pub fn imported_timestamps(
        &mut self,
        model: &Model,
        count: usize,
        transfers: bool,
    ) -> (u64, Vec<u64>) {
        let gap = self.rng.range(count as u64, 1_000);
        let now = model.timestamp.max(self.clock) + gap;
        self.clock = now;
        let end = now + count as u64;
        let transfers_max = model.transfers_key_max().unwrap_or(0);
        // Late runs straddle the batch's own slot timestamps (`now + 1 ..= end`), so that an
        // imported event may be newer than a later event's slot.
        let mut cursor = match self.rng.below(100) {
            0..=44 => now - self.rng.below(count as u64),
            45..=69 if transfers => transfers_max,
            _ => model.timestamp,
        };
        let accounts = model.accounts.iter().map(|a| a.timestamp);
        let stored: Vec<u64> = accounts
            .chain(model.transfers.iter().map(|t| t.record.timestamp))
            .collect();
        let mut timestamps = Vec::new();
        for _ in 0..count {
            let roll = if self.noisy { self.rng.below(100) } else { 0 };
            let timestamp = match roll {
                0..=69 => {
                    cursor += self.rng.range(1, 3);
                    cursor
                }
                70..=79 if !stored.is_empty() => self.rng.pick(&stored) + self.rng.range(0, 1),
                80..=84 => 0,
                85..=89 => self.rng.pick(&[1 << 63, u64::MAX]),
                90..=94 => end + self.rng.range(0, 2) - 1,
                _ => cursor.saturating_sub(self.rng.range(0, 3)).max(1),
            };
            timestamps.push(timestamp);
        }
        (now, timestamps)
    }
}
