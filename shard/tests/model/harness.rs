//! The harness: applies one operation to the reference model and to every ledger under test,
//! and compares every output and, after writes, the whole state. The ledgers are a primary, a
//! twin built with a different `hash_seed` (determinism: its snapshots must be byte-identical
//! to the primary's), and the ledgers restored from snapshots taken along the way (each must
//! snapshot to the same bytes as its source and then give the same results as the others).

use std::fmt::Debug;

use kassa_shard::{Ledger, LedgerConfig};
use kassa_wire::{
    Account, AccountBalance, AccountId, ChangeEvent, CreateAccountResult, CreateAccountStatus,
    CreateTransferResult, CreateTransferStatus, Transfer, TransferId,
};

use crate::model::check::{check_state, same};
use crate::model::cluster::Cluster;
use crate::model::ops::Op;
use crate::model::reference::Model;
use crate::model::stats;

/// What an operation returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Nothing,
    Count(usize),
    Flag(bool),
    AccountResults(Vec<CreateAccountResult>),
    TransferResults(Vec<CreateTransferResult>),
    Accounts(Vec<Account>),
    Transfers(Vec<Transfer>),
    Balances(Vec<AccountBalance>),
    Changes(Vec<ChangeEvent>),
}

/// A configuration from a seed: the hash seed and small table capacities (so tables grow).
fn config(hash_seed: u64) -> LedgerConfig {
    let accounts_capacity = (hash_seed % 5) as usize;
    let transfers_capacity = (hash_seed >> 8) as usize % 40;
    LedgerConfig {
        hash_seed,
        accounts_capacity,
        transfers_capacity,
        ..LedgerConfig::default()
    }
}

/// Ledgers kept alive at once: the primary, its twin and up to two restored copies.
const LEDGERS_MAX: usize = 4;

pub struct Harness {
    pub model: Model,
    pub ledgers: Vec<Ledger>,
    /// The same history on several partitions, through cross-partition transactions.
    pub cluster: Cluster,
}

impl Harness {
    pub fn new(seed: u64) -> Harness {
        let primary = Ledger::new(config(seed));
        let twin = Ledger::new(config(!seed.rotate_left(17)));
        Harness {
            model: Model::new(),
            ledgers: vec![primary, twin],
            cluster: Cluster::new(seed),
        }
    }

    /// Applies `op` everywhere and compares; returns the model's output.
    pub fn step(&mut self, op: &Op) -> Output {
        let mut expected = Output::Nothing;
        if let Op::SnapshotRestore { hash_seed } = op {
            self.snapshot_restore(*hash_seed);
            self.cluster.flush();
            self.cluster.snapshot_restore(*hash_seed);
            stats::note(|| "snapshot restored".to_string());
        } else {
            expected = model_apply(&mut self.model, op);
            note_output(op, &expected);
            for (index, ledger) in self.ledgers.iter_mut().enumerate() {
                let actual = ledger_apply(ledger, op);
                compare_output(&format!("ledger #{index}"), &expected, &actual);
            }
            self.cluster.write(op, &expected);
        }
        if op.writes() {
            for ledger in &self.ledgers {
                check_state(&self.model, ledger);
            }
            if self.cluster.is_idle() {
                self.cluster.check(&self.model);
            }
        }
        expected
    }

    /// Snapshot the primary, restore it, check the copy snapshots to the same bytes and that
    /// every other ledger does too (same history, same bytes), then drive the copy as well.
    fn snapshot_restore(&mut self, hash_seed: u64) {
        let mut bytes = Vec::new();
        self.ledgers[0].snapshot(&mut bytes);
        let restored = Ledger::restore(config(hash_seed), &bytes);
        let restored = restored.unwrap_or_else(|e| panic!("restore of a fresh snapshot: {e}"));
        let mut again = Vec::new();
        restored.snapshot(&mut again);
        assert!(
            bytes == again,
            "the restored ledger's snapshot differs from its source"
        );
        self.check_snapshots_equal();
        if self.ledgers.len() == LEDGERS_MAX {
            self.ledgers.pop();
        }
        self.ledgers.push(restored);
    }

    /// The end of a case: the cluster runs what it holds back and is checked, and every
    /// ledger snapshots to the same bytes.
    pub fn finish(&mut self) {
        self.cluster.flush();
        self.cluster.check(&self.model);
        self.check_snapshots_equal();
    }

    /// Every ledger, driven with the same operations, snapshots to the same bytes.
    pub fn check_snapshots_equal(&self) {
        let (mut first, mut other) = (Vec::new(), Vec::new());
        self.ledgers[0].snapshot(&mut first);
        for (index, ledger) in self.ledgers.iter().enumerate().skip(1) {
            ledger.snapshot(&mut other);
            assert!(
                first == other,
                "ledger #{index}'s snapshot differs from ledger #0's"
            );
        }
    }
}

fn model_apply(model: &mut Model, op: &Op) -> Output {
    match op {
        Op::CreateAccounts { now, events } => {
            Output::AccountResults(model.create_accounts(*now, events))
        }
        Op::CreateTransfers { now, events } => {
            Output::TransferResults(model.create_transfers(*now, events))
        }
        Op::ExpirePendingTransfers { now } => Output::Count(model.expire_pending_transfers(*now)),
        Op::PulseNeeded { now } => Output::Flag(model.pulse_needed(*now)),
        Op::LookupAccounts(ids) => Output::Accounts(model.lookup_accounts(ids)),
        Op::LookupTransfers(ids) => Output::Transfers(model.lookup_transfers(ids)),
        Op::GetAccountTransfers(filter) => Output::Transfers(model.get_account_transfers(filter)),
        Op::GetAccountBalances(filter) => Output::Balances(model.get_account_balances(filter)),
        Op::QueryAccounts(filter) => Output::Accounts(model.query_accounts(filter)),
        Op::QueryTransfers(filter) => Output::Transfers(model.query_transfers(filter)),
        Op::ChangeEvents { from, limit } => Output::Changes(model.change_events(*from, *limit)),
        Op::ReleaseChangeEvents { through } => {
            model.release_change_events(*through);
            Output::Nothing
        }
        Op::SnapshotRestore { .. } => Output::Nothing,
    }
}

fn ledger_apply(ledger: &mut Ledger, op: &Op) -> Output {
    match op {
        Op::CreateAccounts { now, events } => {
            // The ledger clears `results` first: start with something in it.
            let stale = CreateAccountResult {
                timestamp: 1,
                status: CreateAccountStatus::Exists,
                reserved: 0,
            };
            let mut results = vec![stale];
            ledger.create_accounts(*now, events, &mut results);
            Output::AccountResults(results)
        }
        Op::CreateTransfers { now, events } => {
            let stale = CreateTransferResult {
                timestamp: 1,
                status: CreateTransferStatus::Exists,
                reserved: 0,
            };
            let mut results = vec![stale];
            ledger.create_transfers(*now, events, &mut results);
            Output::TransferResults(results)
        }
        Op::ExpirePendingTransfers { now } => Output::Count(ledger.expire_pending_transfers(*now)),
        Op::PulseNeeded { now } => Output::Flag(ledger.pulse_needed(*now)),
        _ => ledger_read(ledger, op),
    }
}

/// Runs a read that appends to `out`, checking it keeps what `out` held before.
fn appended<T: zerocopy::FromZeros + PartialEq + Debug>(read: impl FnOnce(&mut Vec<T>)) -> Vec<T> {
    let mut out = vec![T::new_zeroed()];
    read(&mut out);
    assert!(
        out[0] == T::new_zeroed(),
        "a read overwrote what its output vector held"
    );
    out.remove(0);
    out
}

fn ledger_read(ledger: &mut Ledger, op: &Op) -> Output {
    match op {
        Op::LookupAccounts(ids) => {
            let ids: Vec<AccountId> = ids.iter().map(|id| AccountId(*id)).collect();
            Output::Accounts(appended(|out| ledger.lookup_accounts(&ids, out)))
        }
        Op::LookupTransfers(ids) => {
            let ids: Vec<TransferId> = ids.iter().map(|id| TransferId(*id)).collect();
            Output::Transfers(appended(|out| {
                ledger.lookup_transfers(&ids, out).expect("cold reads")
            }))
        }
        Op::GetAccountTransfers(f) => Output::Transfers(appended(|out| {
            ledger.get_account_transfers(f, out).expect("cold reads")
        })),
        Op::GetAccountBalances(f) => Output::Balances(appended(|out| {
            ledger.get_account_balances(f, out).expect("cold reads")
        })),
        Op::QueryAccounts(f) => Output::Accounts(appended(|out| ledger.query_accounts(f, out))),
        Op::QueryTransfers(f) => Output::Transfers(appended(|out| {
            ledger.query_transfers(f, out).expect("cold reads")
        })),
        Op::ChangeEvents { from, limit } => Output::Changes(appended(|out| {
            ledger
                .change_events(*from, *limit, out)
                .expect("change events")
        })),
        Op::ReleaseChangeEvents { through } => {
            ledger.release_change_events(*through);
            Output::Nothing
        }
        _ => unreachable!("handled by ledger_apply or the harness: {op:?}"),
    }
}

pub fn compare_output(what: &str, expected: &Output, actual: &Output) {
    match (expected, actual) {
        (Output::AccountResults(m), Output::AccountResults(l)) => {
            same(&format!("{what}: results"), m, l)
        }
        (Output::TransferResults(m), Output::TransferResults(l)) => {
            same(&format!("{what}: results"), m, l)
        }
        (Output::Accounts(m), Output::Accounts(l)) => same(&format!("{what}: accounts"), m, l),
        (Output::Transfers(m), Output::Transfers(l)) => same(&format!("{what}: transfers"), m, l),
        (Output::Balances(m), Output::Balances(l)) => same(&format!("{what}: balances"), m, l),
        (Output::Changes(m), Output::Changes(l)) => same(&format!("{what}: change events"), m, l),
        _ => assert_eq!(expected, actual, "{what}: output"),
    }
}

fn note_output(op: &Op, output: &Output) {
    let size = |n: usize| match n {
        0 => "0",
        1 => "1",
        _ => "many",
    };
    match output {
        Output::AccountResults(r) => r
            .iter()
            .for_each(|r| stats::note(|| format!("account {}", r.status))),
        Output::TransferResults(r) => r
            .iter()
            .for_each(|r| stats::note(|| format!("transfer {}", r.status))),
        Output::Count(n) => stats::note(|| format!("expired {}", size(*n))),
        Output::Flag(b) => stats::note(|| format!("pulse_needed {b}")),
        Output::Accounts(r) => stats::note(|| format!("{} -> {}", op_name(op), size(r.len()))),
        Output::Transfers(r) => stats::note(|| format!("{} -> {}", op_name(op), size(r.len()))),
        Output::Balances(r) => stats::note(|| format!("{} -> {}", op_name(op), size(r.len()))),
        Output::Changes(r) => stats::note(|| format!("{} -> {}", op_name(op), size(r.len()))),
        Output::Nothing => stats::note(|| op_name(op).to_string()),
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::CreateAccounts { .. } => "create_accounts",
        Op::CreateTransfers { .. } => "create_transfers",
        Op::ExpirePendingTransfers { .. } => "expire_pending_transfers",
        Op::PulseNeeded { .. } => "pulse_needed",
        Op::LookupAccounts(_) => "lookup_accounts",
        Op::LookupTransfers(_) => "lookup_transfers",
        Op::GetAccountTransfers(_) => "get_account_transfers",
        Op::GetAccountBalances(_) => "get_account_balances",
        Op::QueryAccounts(_) => "query_accounts",
        Op::QueryTransfers(_) => "query_transfers",
        Op::ChangeEvents { .. } => "change_events",
        Op::ReleaseChangeEvents { .. } => "release_change_events",
        Op::SnapshotRestore { .. } => "snapshot_restore",
    }
}
