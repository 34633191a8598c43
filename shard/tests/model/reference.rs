//! The reference model: a deliberately naive ledger written straight from TigerBeetle 0.17.8's
//! `state_machine.zig`, to check `kassa_shard::Ledger` against. Records live in plain `Vec`s in
//! creation order and every lookup is a linear scan; a linked chain is rolled back by restoring
//! a clone of the whole model taken when the chain opened (only the burnt transfer ids survive
//! the rollback, as `transient_error` inserts them after `scope_close(.discard)`). This file has
//! the state, the batch loop (`execute_create`) and `create_account`; transfers are in
//! `transfers.rs`, reads, expiry and the change stream in `reads.rs`.

use std::collections::BTreeSet;

use kassa_wire::{
    Account, AccountFlags, Balances, ChangeEvent, CreateAccountResult, CreateAccountStatus,
    Transfer,
};
use zerocopy::IntoBytes;

/// `TimestampRange.timestamp_max`: the top bit of a timestamp is TigerBeetle's tombstone bit.
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;
/// `std.time.ns_per_s`.
pub const NS_PER_S: u64 = 1_000_000_000;
/// `AccountFlags`: six flags, then `padding: u10`.
pub const ACCOUNT_FLAGS_DEFINED: u16 = 0b11_1111;
/// Change event kinds (`kassa_wire::ChangeKind` numbers).
pub const KIND_ACCOUNT_CREATED: u8 = 1;
pub const KIND_TRANSFER_CREATED: u8 = 2;
pub const KIND_PENDING_TRANSFER_EXPIRED: u8 = 3;

/// Where a transfer stands in the two-phase protocol (`TransferPendingStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    None,
    Pending,
    Posted,
    Voided,
    Expired,
}

/// A stored transfer with what the model derives from it.
#[derive(Clone, Debug)]
pub struct StoredTransfer {
    pub record: Transfer,
    pub phase: Phase,
    /// The debit and credit accounts' balances right after the transfer (its `AccountEvent`).
    pub dr_after: Balances,
    pub cr_after: Balances,
}

#[derive(Clone, Debug)]
pub struct Model {
    /// The last timestamp given to an event.
    pub timestamp: u64,
    pub accounts: Vec<Account>,
    pub transfers: Vec<StoredTransfer>,
    /// Ids burnt by a transient failure (`insert_orphaned_primary_key`).
    pub failed: BTreeSet<u128>,
    /// The retained change events.
    pub changes: Vec<ChangeEvent>,
    pub next_sequence: u64,
}

/// The statuses `execute_create` gives by itself, for one create operation.
pub struct BatchStatuses<S> {
    pub created: S,
    pub linked_event_failed: S,
    pub linked_event_chain_open: S,
    pub imported_event_expected: S,
    pub imported_event_not_expected: S,
    pub timestamp_must_be_zero: S,
    pub imported_event_timestamp_out_of_range: S,
    pub imported_event_timestamp_must_not_advance: S,
}

/// `(linked, imported, timestamp)` of an event.
pub struct Head {
    pub linked: bool,
    pub imported: bool,
    pub timestamp: u64,
}

impl Model {
    pub fn new() -> Model {
        Model {
            timestamp: 0,
            accounts: Vec::new(),
            transfers: Vec::new(),
            failed: BTreeSet::new(),
            changes: Vec::new(),
            next_sequence: 1,
        }
    }

    pub fn account_index(&self, id: u128) -> Option<usize> {
        self.accounts.iter().position(|a| a.id.0 == id)
    }

    pub fn transfer_index(&self, id: u128) -> Option<usize> {
        self.transfers.iter().position(|t| t.record.id.0 == id)
    }

    /// The largest transfer timestamp (the transfers groove's `key_range.key_max`).
    pub fn transfers_key_max(&self) -> Option<u64> {
        self.transfers.iter().map(|t| t.record.timestamp).max()
    }

    /// The largest account timestamp (the accounts groove's `key_range.key_max`).
    pub fn accounts_key_max(&self) -> Option<u64> {
        self.accounts.iter().map(|a| a.timestamp).max()
    }

    pub fn push_change(
        &mut self,
        kind: u8,
        timestamp: u64,
        record: &[u8],
        dr: Balances,
        cr: Balances,
    ) {
        let mut bytes = [0u8; 128];
        bytes.copy_from_slice(record);
        self.changes.push(ChangeEvent {
            sequence: self.next_sequence,
            timestamp,
            kind,
            reserved: [0; 15],
            record: bytes,
            debit_account: dr,
            credit_account: cr,
        });
        self.next_sequence += 1;
    }

    /// TigerBeetle's `execute_create`: timestamps, the import mode and linked chains. `apply`
    /// is `create_account` or `create_transfer`; it returns the status and the timestamp of the
    /// result. `failed` is `transient_error`.
    pub fn execute_create<E, S: Copy + Eq>(
        &mut self,
        now: u64,
        events: &[E],
        statuses: &BatchStatuses<S>,
        head: impl Fn(&E) -> Head,
        mut apply: impl FnMut(&mut Model, u64, &E) -> (S, u64),
        mut failed: impl FnMut(&mut Model, &E, S),
    ) -> Vec<(u64, S)> {
        let mut results: Vec<(u64, S)> = Vec::new();
        if events.is_empty() {
            return results;
        }
        let count = events.len() as u64;
        let timestamp = self.timestamp.max(now) + count;
        let batch_imported = head(&events[0]).imported;
        let mut chain: Option<(usize, Model)> = None;
        let mut chain_broken = false;
        for (index, event) in events.iter().enumerate() {
            let timestamp_event = timestamp - count + index as u64 + 1;
            let h = head(event);
            if h.linked && chain.is_none() {
                chain = Some((index, self.clone()));
            }
            let (status, timestamp_result) = if h.linked && index == events.len() - 1 {
                (statuses.linked_event_chain_open, timestamp_event)
            } else if chain_broken {
                (statuses.linked_event_failed, timestamp_event)
            } else if let Some(status) = precheck(statuses, &h, batch_imported, timestamp) {
                (status, timestamp_event)
            } else {
                apply(self, timestamp_event, event)
            };
            if status != statuses.created {
                if let (Some((start, saved)), false) = (&chain, chain_broken) {
                    chain_broken = true;
                    self.rollback_to(saved);
                    for result in &mut results[*start..index] {
                        result.1 = statuses.linked_event_failed;
                    }
                }
                failed(self, event, status);
            }
            results.push((timestamp_result, status));
            if chain.is_some() && (!h.linked || status == statuses.linked_event_chain_open) {
                chain = None;
                chain_broken = false;
            }
        }
        self.timestamp = timestamp;
        results
    }

    /// `scope_close(.discard)`: back to the state when the chain opened, except burnt ids.
    fn rollback_to(&mut self, saved: &Model) {
        let failed = std::mem::take(&mut self.failed);
        *self = saved.clone();
        self.failed = failed;
    }

    pub fn create_accounts(&mut self, now: u64, events: &[Account]) -> Vec<CreateAccountResult> {
        use CreateAccountStatus as S;
        let statuses = BatchStatuses {
            created: S::Created,
            linked_event_failed: S::LinkedEventFailed,
            linked_event_chain_open: S::LinkedEventChainOpen,
            imported_event_expected: S::ImportedEventExpected,
            imported_event_not_expected: S::ImportedEventNotExpected,
            timestamp_must_be_zero: S::TimestampMustBeZero,
            imported_event_timestamp_out_of_range: S::ImportedEventTimestampOutOfRange,
            imported_event_timestamp_must_not_advance: S::ImportedEventTimestampMustNotAdvance,
        };
        let head = |a: &Account| Head {
            linked: a.flags.0 & AccountFlags::LINKED.0 != 0,
            imported: a.flags.0 & AccountFlags::IMPORTED.0 != 0,
            timestamp: a.timestamp,
        };
        let apply = |model: &mut Model, timestamp_event: u64, a: &Account| match model
            .create_account(timestamp_event, a)
        {
            Ok(found) => found,
            Err(status) => (status, timestamp_event),
        };
        // `create_accounts` error codes never depend on transient state: nothing is burnt.
        let results = self.execute_create(now, events, &statuses, head, apply, |_, _, _| {});
        let result = |(timestamp, status)| CreateAccountResult {
            timestamp,
            status,
            reserved: 0,
        };
        results.into_iter().map(result).collect()
    }

    /// `create_account`: `Ok` for `created` and `exists` (with the account's timestamp).
    fn create_account(
        &mut self,
        timestamp_event: u64,
        a: &Account,
    ) -> Result<(CreateAccountStatus, u64), CreateAccountStatus> {
        use CreateAccountStatus as S;
        let flag = |f: AccountFlags| a.flags.0 & f.0 != 0;
        if a.reserved != 0 {
            return Err(S::ReservedField);
        }
        if a.flags.0 & !ACCOUNT_FLAGS_DEFINED != 0 {
            return Err(S::ReservedFlag);
        }
        if a.id.0 == 0 {
            return Err(S::IdMustNotBeZero);
        }
        if a.id.0 == u128::MAX {
            return Err(S::IdMustNotBeIntMax);
        }
        if let Some(index) = self.account_index(a.id.0) {
            return create_account_exists(a, &self.accounts[index]);
        }
        if flag(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && flag(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return Err(S::FlagsAreMutuallyExclusive);
        }
        let checks = [
            (a.debits_pending != 0, S::DebitsPendingMustBeZero),
            (a.debits_posted != 0, S::DebitsPostedMustBeZero),
            (a.credits_pending != 0, S::CreditsPendingMustBeZero),
            (a.credits_posted != 0, S::CreditsPostedMustBeZero),
            (a.ledger == 0, S::LedgerMustNotBeZero),
            (a.code == 0, S::CodeMustNotBeZero),
        ];
        if let Some((_, status)) = checks.iter().find(|(failed, _)| *failed) {
            return Err(*status);
        }
        let timestamp = if flag(AccountFlags::IMPORTED) {
            let regress = self
                .accounts_key_max()
                .is_some_and(|max| a.timestamp <= max)
                || self
                    .transfers
                    .iter()
                    .any(|t| t.record.timestamp == a.timestamp);
            if regress {
                return Err(S::ImportedEventTimestampMustNotRegress);
            }
            a.timestamp
        } else {
            timestamp_event
        };
        let account = Account { timestamp, ..*a };
        self.accounts.push(account);
        let zero = Balances::default();
        self.push_change(
            KIND_ACCOUNT_CREATED,
            timestamp,
            account.as_bytes(),
            zero,
            zero,
        );
        Ok((S::Created, timestamp))
    }
}

/// The checks `execute_create` makes before the event's own: import mode and timestamps.
fn precheck<S: Copy>(
    statuses: &BatchStatuses<S>,
    head: &Head,
    batch_imported: bool,
    timestamp: u64,
) -> Option<S> {
    if batch_imported != head.imported {
        return Some(if head.imported {
            statuses.imported_event_not_expected
        } else {
            statuses.imported_event_expected
        });
    }
    if head.imported {
        if head.timestamp == 0 || head.timestamp > TIMESTAMP_MAX {
            return Some(statuses.imported_event_timestamp_out_of_range);
        }
        if head.timestamp >= timestamp {
            return Some(statuses.imported_event_timestamp_must_not_advance);
        }
    } else if head.timestamp != 0 {
        return Some(statuses.timestamp_must_be_zero);
    }
    None
}

fn create_account_exists(
    a: &Account,
    e: &Account,
) -> Result<(CreateAccountStatus, u64), CreateAccountStatus> {
    use CreateAccountStatus as S;
    if a.flags.0 != e.flags.0 {
        return Err(S::ExistsWithDifferentFlags);
    }
    if a.user_data_128 != e.user_data_128 {
        return Err(S::ExistsWithDifferentUserData128);
    }
    if a.user_data_64 != e.user_data_64 {
        return Err(S::ExistsWithDifferentUserData64);
    }
    if a.user_data_32 != e.user_data_32 {
        return Err(S::ExistsWithDifferentUserData32);
    }
    if a.ledger != e.ledger {
        return Err(S::ExistsWithDifferentLedger);
    }
    if a.code != e.code {
        return Err(S::ExistsWithDifferentCode);
    }
    Ok((S::Exists, e.timestamp))
}
