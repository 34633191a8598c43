//! The node benchmark's workload: a seeded, deterministic plan of accounts and transfers that
//! both systems (Kassa and the PostgreSQL baseline) receive identically.
//!
//! Invariants: the same [`PlanConfig`] gives the same accounts and the same transfers in the
//! same order (ids included), whatever system runs them. A post or void of a pending transfer
//! is placed at least `defer_batches + 1` batches after the pending transfer, and the
//! dispatcher (`load.rs`) sends batch `j` only once every batch up to `j - defer_batches` is
//! acknowledged, so a post or void never overtakes its pending transfer. Pending transfers never
//! time out (timeout 0). Called by `main.rs` once per mode; the result is read-only afterwards.
//!
//! Ledgers: with `ledgers` L, account `index` is on ledger `1 + index % L` (its position there
//! is `index / L`), and every batch holds transfers of one ledger, the ledgers taking turns
//! batch by batch: an application that batches per ledger (a tenant, a currency). With
//! `mix_ledgers`, the ledgers take turns transfer by transfer instead, so every batch mixes
//! them (under placement by ledger it spans partitions and runs in shares).

use std::collections::VecDeque;

use kassa_wire::{Account, AccountFlags, AccountId, Transfer, TransferFlags, TransferId};

use crate::workload::SplitMix64;

/// The first ledger; with `ledgers` L the benchmark uses ledgers `1..=L`.
pub const LEDGER: u32 = 1;
/// At most this many ledgers.
pub const LEDGERS_MAX: u32 = 1_000;
/// The account code of benchmark accounts.
pub const ACCOUNT_CODE: u16 = 10;
/// The transfer code of workload transfers (funding transfers use `FUNDING_CODE`).
pub const TRANSFER_CODE: u16 = 1;
pub const FUNDING_CODE: u16 = 2;
/// Every tenth account of a ledger (position % 10 == 9) has `debits_must_not_exceed_credits`.
pub const LIMITED_EVERY: u64 = 10;
/// What each limited account is credited before the run (by its ledger's first account, which
/// has no limit):
/// far more than the workload can debit (at most 1000 per transfer), so a refusal is a bug
/// worth reporting, not part of the workload.
pub const FUNDING_AMOUNT: u128 = 1_000_000_000_000;
/// Amounts are drawn from `1..=AMOUNT_MAX`.
pub const AMOUNT_MAX: u64 = 1_000;
/// At most this many accounts (ids carry the index in 48 bits; the Zipf table is this long).
pub const ACCOUNTS_MAX: u64 = 10_000_000;
/// At most this many transfers per mode (ids carry the index in 48 bits; memory is 128 B each).
pub const TRANSFERS_MAX: u64 = 100_000_000;
/// Of the resolved pending transfers, this many per hundred are posted, the rest voided.
const POST_PERCENT: u64 = 75;

/// How the credit side of a transfer is chosen (the debit side is always uniform).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Rank `r` (1-based) is credited with probability proportional to `1 / r^s`: a few hot
    /// merchant accounts receive most payments. Ranks map to accounts by a seeded shuffle.
    Zipf {
        s: f64,
    },
}

/// Which id range a set of transfers uses, so runs on one node never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Funding = 1,
    Throughput = 2,
    Latency = 3,
}

#[derive(Clone, Debug)]
pub struct PlanConfig {
    pub accounts: u64,
    /// Ledgers the accounts are spread over (1..=LEDGERS_MAX; each needs two accounts).
    pub ledgers: u32,
    /// Every batch mixes the ledgers, which take turns transfer by transfer.
    pub mix_ledgers: bool,
    pub transfers: u64,
    pub distribution: Distribution,
    /// The share of transfers that are new pending transfers (0.0..=0.5); each is later posted
    /// or voided by another transfer of the plan, if the plan is long enough.
    pub two_phase_share: f64,
    pub seed: u64,
    /// Distinguishes the ids of one invocation from any earlier one on the same node.
    pub tag: u32,
    pub batch_size: usize,
    /// How many batches may be in flight ahead of the oldest unacknowledged one.
    pub defer_batches: usize,
}

/// The transfers of one mode, in the order they are sent, cut into batches of `batch_size`.
#[derive(Clone, Debug)]
pub struct Plan {
    pub transfers: Vec<Transfer>,
    pub batch_size: usize,
    pub defer_batches: usize,
}

impl Plan {
    pub fn batches_count(&self) -> usize {
        self.transfers.len().div_ceil(self.batch_size)
    }

    pub fn batch(&self, index: usize) -> &[Transfer] {
        let start = index * self.batch_size;
        let end = (start + self.batch_size).min(self.transfers.len());
        &self.transfers[start..end]
    }
}

/// The id of account `index` of an invocation tagged `tag`.
pub fn account_id(tag: u32, index: u64) -> AccountId {
    assert!(index < ACCOUNTS_MAX);
    AccountId(u128::from(tag) << 64 | u128::from(index + 1))
}

/// The id of transfer `index` of `phase`.
pub fn transfer_id(tag: u32, phase: Phase, index: u64) -> TransferId {
    assert!(index < 1 << 48);
    TransferId(u128::from(tag) << 64 | (phase as u128) << 56 | u128::from(index + 1))
}

/// Whether account `index` has a debit limit (every tenth of its ledger, never the first).
pub fn is_limited(index: u64, ledgers: u32) -> bool {
    (index / u64::from(ledgers)) % LIMITED_EVERY == LIMITED_EVERY - 1
}

/// The ledger of account `index`.
pub fn ledger_of(index: u64, ledgers: u32) -> u32 {
    LEDGER + (index % u64::from(ledgers)) as u32
}

/// The benchmark's accounts: `count` over `ledgers` ledgers, every tenth of a ledger with a
/// debit limit.
pub fn accounts(tag: u32, count: u64, ledgers: u32) -> Vec<Account> {
    (0..count)
        .map(|index| Account {
            id: account_id(tag, index),
            ledger: ledger_of(index, ledgers),
            code: ACCOUNT_CODE,
            flags: if is_limited(index, ledgers) {
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
            } else {
                AccountFlags::empty()
            },
            ..Account::default()
        })
        .collect()
}

/// One transfer from its ledger's first account (no limit) to each limited account.
pub fn funding(tag: u32, count: u64, ledgers: u32) -> Vec<Transfer> {
    (0..count)
        .filter(|index| is_limited(*index, ledgers))
        .enumerate()
        .map(|(n, index)| Transfer {
            id: transfer_id(tag, Phase::Funding, n as u64),
            debit_account_id: account_id(tag, index % u64::from(ledgers)),
            credit_account_id: account_id(tag, index),
            amount: FUNDING_AMOUNT,
            ledger: ledger_of(index, ledgers),
            code: FUNDING_CODE,
            ..Transfer::default()
        })
        .collect()
}

/// The workload of one mode.
pub fn generate(config: &PlanConfig, phase: Phase) -> Plan {
    let ledgers = u64::from(config.ledgers);
    assert!((1..=u64::from(LEDGERS_MAX)).contains(&ledgers));
    assert!(config.accounts >= 2 * ledgers && config.accounts <= ACCOUNTS_MAX);
    assert!(config.transfers <= TRANSFERS_MAX);
    assert!((0.0..=0.5).contains(&config.two_phase_share));
    assert!(config.batch_size > 0);
    let mut random = SplitMix64::new(config.seed ^ (phase as u64).wrapping_mul(0x9E37_79B9));
    // Positions every ledger has (the first `accounts % ledgers` ledgers have one more,
    // unused by transfers).
    let per_ledger = config.accounts / ledgers;
    let credit_side = CreditSampler::new(config.distribution, per_ledger, &mut random);
    let defer = (config.defer_batches + 1) * config.batch_size;
    // Pending transfers waiting for their post or void, per ledger: a resolution goes in a
    // batch of its own ledger.
    let mut waiting: Vec<VecDeque<(usize, Transfer)>> = vec![VecDeque::new(); ledgers as usize];
    let mut transfers = Vec::with_capacity(config.transfers as usize);
    for index in 0..config.transfers as usize {
        let id = transfer_id(config.tag, phase, index as u64);
        let turn = if config.mix_ledgers {
            index
        } else {
            index / config.batch_size
        };
        let ledger = turn as u64 % ledgers;
        let waiting = &mut waiting[ledger as usize];
        let due = waiting.front().is_some_and(|(due, _)| *due <= index);
        let transfer = if due {
            let (_, pending) = waiting.pop_front().expect("a due pending transfer");
            resolution(id, &pending, random.below(100) < POST_PERCENT)
        } else {
            let credit = credit_side.sample(&mut random);
            let debit = (credit + 1 + random.below(per_ledger - 1)) % per_ledger;
            let (credit, debit) = (ledger + credit * ledgers, ledger + debit * ledgers);
            let mut transfer = Transfer {
                id,
                debit_account_id: account_id(config.tag, debit),
                credit_account_id: account_id(config.tag, credit),
                amount: u128::from(1 + random.below(AMOUNT_MAX)),
                ledger: ledger_of(ledger, config.ledgers),
                code: TRANSFER_CODE,
                ..Transfer::default()
            };
            if unit(&mut random) < config.two_phase_share {
                transfer.flags = TransferFlags::PENDING;
                waiting.push_back((index + defer, transfer));
            }
            transfer
        };
        transfers.push(transfer);
    }
    Plan {
        transfers,
        batch_size: config.batch_size,
        defer_batches: config.defer_batches,
    }
}

/// The post (or void) of the whole of `pending`.
fn resolution(id: TransferId, pending: &Transfer, post: bool) -> Transfer {
    Transfer {
        id,
        pending_id: pending.id,
        flags: if post {
            TransferFlags::POST_PENDING_TRANSFER
        } else {
            TransferFlags::VOID_PENDING_TRANSFER
        },
        ..*pending
    }
}

fn unit(random: &mut SplitMix64) -> f64 {
    (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Draws the credit account's index.
enum CreditSampler {
    Uniform(u64),
    /// Cumulative weights by rank, and the account index of each rank.
    Zipf {
        cumulative: Vec<f64>,
        accounts: Vec<u64>,
    },
}

impl CreditSampler {
    fn new(distribution: Distribution, count: u64, random: &mut SplitMix64) -> CreditSampler {
        let s = match distribution {
            Distribution::Uniform => return CreditSampler::Uniform(count),
            Distribution::Zipf { s } => s,
        };
        let mut total = 0.0;
        let cumulative: Vec<f64> = (1..=count)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(s);
                total
            })
            .collect();
        let mut accounts: Vec<u64> = (0..count).collect();
        for i in (1..accounts.len()).rev() {
            let j = random.below(i as u64 + 1) as usize;
            accounts.swap(i, j);
        }
        CreditSampler::Zipf {
            cumulative,
            accounts,
        }
    }

    fn sample(&self, random: &mut SplitMix64) -> u64 {
        match self {
            CreditSampler::Uniform(count) => random.below(*count),
            CreditSampler::Zipf {
                cumulative,
                accounts,
            } => {
                let total = *cumulative.last().expect("at least two accounts");
                let target = unit(random) * total;
                let rank = cumulative.partition_point(|weight| *weight <= target);
                accounts[rank.min(accounts.len() - 1)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PlanConfig {
        PlanConfig {
            accounts: 100,
            ledgers: 1,
            mix_ledgers: false,
            transfers: 5_000,
            distribution: Distribution::Zipf { s: 1.0 },
            two_phase_share: 0.2,
            seed: 7,
            tag: 3,
            batch_size: 10,
            defer_batches: 4,
        }
    }

    #[test]
    fn same_config_same_transfers_and_resolutions_come_late_enough() {
        let a = generate(&config(), Phase::Throughput);
        let b = generate(&config(), Phase::Throughput);
        assert_eq!(a.transfers, b.transfers);
        let index_of = |id: TransferId| a.transfers.iter().position(|t| t.id == id);
        let mut resolved = 0;
        for (index, transfer) in a.transfers.iter().enumerate() {
            assert_ne!(transfer.debit_account_id, transfer.credit_account_id);
            if transfer.pending_id != TransferId(0) {
                let pending = index_of(transfer.pending_id).expect("pending in the plan");
                assert!(a.transfers[pending].flags.contains(TransferFlags::PENDING));
                assert!(
                    index / 10 > pending / 10 + 4,
                    "at least defer + 1 batches later"
                );
                resolved += 1;
            }
        }
        assert!(resolved > 500, "{resolved}");
        let c = generate(&config(), Phase::Latency);
        assert_ne!(a.transfers[0].id, c.transfers[0].id);
    }

    #[test]
    fn zipf_makes_hot_accounts_and_uniform_does_not() {
        let count_hottest = |plan: &Plan| {
            let mut counts = std::collections::HashMap::new();
            for t in &plan.transfers {
                *counts.entry(t.credit_account_id).or_insert(0u32) += 1;
            }
            counts.values().copied().max().unwrap_or(0)
        };
        let mut uniform = config();
        uniform.distribution = Distribution::Uniform;
        let zipf = count_hottest(&generate(&config(), Phase::Throughput));
        let flat = count_hottest(&generate(&uniform, Phase::Throughput));
        assert!(zipf > 3 * flat, "zipf {zipf} uniform {flat}");
    }

    /// With several ledgers, every batch is of one ledger, the ledgers take turns, and both
    /// accounts of a transfer (or its pending transfer's) are on its ledger.
    #[test]
    fn ledgers_take_turns_batch_by_batch_and_transfers_stay_in_their_ledger() {
        let mut config = config();
        config.ledgers = 3;
        config.accounts = 61;
        let accounts = accounts(config.tag, config.accounts, config.ledgers);
        let ledger_of_account = |id: AccountId| {
            let account = accounts.iter().find(|a| a.id == id).expect("an account");
            account.ledger
        };
        let plan = generate(&config, Phase::Throughput);
        for (batch, transfers) in plan.transfers.chunks(config.batch_size).enumerate() {
            for t in transfers {
                assert_eq!(t.ledger, 1 + (batch % 3) as u32, "batch {batch}");
                assert_eq!(ledger_of_account(t.debit_account_id), t.ledger);
                assert_eq!(ledger_of_account(t.credit_account_id), t.ledger);
                assert_ne!(t.debit_account_id, t.credit_account_id);
            }
        }
        // Mixed: the ledgers take turns transfer by transfer, each still on its accounts.
        config.mix_ledgers = true;
        let plan = generate(&config, Phase::Throughput);
        for (index, t) in plan.transfers.iter().enumerate() {
            if t.pending_id == TransferId(0) {
                assert_eq!(t.ledger, 1 + (index % 3) as u32, "transfer {index}");
            }
            assert_eq!(ledger_of_account(t.debit_account_id), t.ledger);
            assert_eq!(ledger_of_account(t.credit_account_id), t.ledger);
        }
        let funding = funding(config.tag, config.accounts, config.ledgers);
        assert_eq!(funding.len(), 6, "positions 9 and 19 of each ledger");
        for t in &funding {
            assert_eq!(ledger_of_account(t.debit_account_id), t.ledger);
            assert_eq!(ledger_of_account(t.credit_account_id), t.ledger);
            let first = accounts.iter().position(|a| a.id == t.debit_account_id);
            assert!(first.expect("the funder") < 3, "a ledger's first account");
        }
    }

    #[test]
    fn every_limited_account_is_funded_by_account_zero() {
        let accounts = accounts(1, 50, 1);
        let funding = funding(1, 50, 1);
        let limited = accounts
            .iter()
            .filter(|a| {
                a.flags
                    .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            })
            .count();
        assert_eq!(limited, 5);
        assert_eq!(funding.len(), 5);
        assert!(funding
            .iter()
            .all(|t| t.debit_account_id == account_id(1, 0)));
    }
}
