//! The double-entry rules the PostgreSQL baseline applies, as a pure function over the rows a
//! transaction locked: the batched variant runs a whole batch through [`apply`] and writes the
//! changed rows back; the per-transfer variant asks [`check`] about its one transfer.
//!
//! The rules are the subset of TigerBeetle's the workload exercises, with its status names:
//! both accounts must exist; a debit must not take an account with
//! `debits_must_not_exceed_credits` over its credits (pending debits count); a post or void
//! needs a pending transfer not yet posted or voided, and moves or releases its whole amount.
//! Transfers of a batch are independent (no linked chains), as the workload sends them.

use std::collections::HashMap;

use kassa_wire::{AccountFlags, CreateTransferStatus, Transfer, TransferFlags};

/// An account row, as locked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    pub flags: u16,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

/// A pending transfer row, as locked, and whether a post or void of it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub debit: u128,
    pub credit: u128,
    pub amount: u128,
    pub flags: u16,
    /// The flags of the transfer that posted or voided it, if any.
    pub resolved_by: Option<u16>,
}

/// What one transfer does to the balances: `(debit, credit, pending delta, posted delta)`,
/// the deltas applying to both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effect {
    pub debit: u128,
    pub credit: u128,
    pub pending_add: u128,
    pub pending_sub: u128,
    pub posted_add: u128,
}

/// The status of `transfer` against the locked rows, and its effect if created.
pub fn check(
    transfer: &Transfer,
    accounts: &HashMap<u128, Balances>,
    pendings: &HashMap<u128, Pending>,
) -> Result<Effect, CreateTransferStatus> {
    let flags = transfer.flags;
    let resolving = flags.contains(TransferFlags::POST_PENDING_TRANSFER)
        || flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
    if resolving {
        let pending = pendings
            .get(&transfer.pending_id.0)
            .ok_or(CreateTransferStatus::PendingTransferNotFound)?;
        if !TransferFlags(pending.flags).contains(TransferFlags::PENDING) {
            return Err(CreateTransferStatus::PendingTransferNotPending);
        }
        if let Some(by) = pending.resolved_by {
            return Err(
                if TransferFlags(by).contains(TransferFlags::POST_PENDING_TRANSFER) {
                    CreateTransferStatus::PendingTransferAlreadyPosted
                } else {
                    CreateTransferStatus::PendingTransferAlreadyVoided
                },
            );
        }
        let post = flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        return Ok(Effect {
            debit: pending.debit,
            credit: pending.credit,
            pending_add: 0,
            pending_sub: pending.amount,
            posted_add: if post { pending.amount } else { 0 },
        });
    }
    let debit = accounts
        .get(&transfer.debit_account_id.0)
        .ok_or(CreateTransferStatus::DebitAccountNotFound)?;
    if !accounts.contains_key(&transfer.credit_account_id.0) {
        return Err(CreateTransferStatus::CreditAccountNotFound);
    }
    let limited = AccountFlags(debit.flags).contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    if limited
        && debit.debits_pending + debit.debits_posted + transfer.amount > debit.credits_posted
    {
        return Err(CreateTransferStatus::ExceedsCredits);
    }
    let pending = flags.contains(TransferFlags::PENDING);
    Ok(Effect {
        debit: transfer.debit_account_id.0,
        credit: transfer.credit_account_id.0,
        pending_add: if pending { transfer.amount } else { 0 },
        pending_sub: 0,
        posted_add: if pending { 0 } else { transfer.amount },
    })
}

/// Applies `effect` to the locked rows.
pub fn apply_effect(effect: &Effect, accounts: &mut HashMap<u128, Balances>) {
    let debit = accounts
        .get_mut(&effect.debit)
        .expect("checked: debit locked");
    // A release larger than the reservation would mean the stored rows are inconsistent.
    debit.debits_pending = (debit.debits_pending + effect.pending_add)
        .checked_sub(effect.pending_sub)
        .expect("debits_pending covers the pending transfer");
    debit.debits_posted += effect.posted_add;
    let credit = accounts
        .get_mut(&effect.credit)
        .expect("checked: credit locked");
    credit.credits_pending = (credit.credits_pending + effect.pending_add)
        .checked_sub(effect.pending_sub)
        .expect("credits_pending covers the pending transfer");
    credit.credits_posted += effect.posted_add;
}

/// Runs `batch` in order over the locked rows; returns one status per transfer.
pub fn apply(
    batch: &[Transfer],
    accounts: &mut HashMap<u128, Balances>,
    pendings: &mut HashMap<u128, Pending>,
) -> Vec<CreateTransferStatus> {
    let mut statuses = Vec::with_capacity(batch.len());
    for transfer in batch {
        match check(transfer, accounts, pendings) {
            Ok(effect) => {
                apply_effect(&effect, accounts);
                if transfer.pending_id.0 != 0 {
                    let pending = pendings.get_mut(&transfer.pending_id.0).expect("checked");
                    pending.resolved_by = Some(transfer.flags.0);
                }
                statuses.push(CreateTransferStatus::Created);
            }
            Err(status) => statuses.push(status),
        }
    }
    statuses
}

#[cfg(test)]
mod tests {
    use super::*;
    use kassa_wire::{AccountId, TransferId};

    fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
        Transfer {
            id: TransferId(id),
            debit_account_id: AccountId(debit),
            credit_account_id: AccountId(credit),
            amount,
            ..Transfer::default()
        }
    }

    #[test]
    fn limits_pending_and_resolutions_follow_tigerbeetle() {
        let mut accounts = HashMap::new();
        // Pending transfer 10 (30 from 1 to 2) was reserved by an earlier batch.
        let reserved = Balances {
            debits_pending: 30,
            ..Balances::default()
        };
        accounts.insert(1, reserved);
        accounts.insert(
            2,
            Balances {
                flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS.0,
                credits_pending: 30,
                ..Balances::default()
            },
        );
        let mut post = transfer(11, 1, 2, 30);
        post.flags = TransferFlags::POST_PENDING_TRANSFER;
        post.pending_id = TransferId(10);
        let mut pendings = HashMap::new();
        pendings.insert(
            10,
            Pending {
                debit: 1,
                credit: 2,
                amount: 30,
                flags: TransferFlags::PENDING.0,
                resolved_by: None,
            },
        );
        let batch = [
            transfer(1, 2, 1, 5),  // exceeds: account 2 has no credits
            transfer(2, 1, 2, 20), // created
            transfer(3, 2, 1, 20), // created: exactly its credits
            transfer(4, 1, 9, 1),  // credit account missing
            post,                  // created
            post,                  // already posted
        ];
        let statuses = apply(&batch, &mut accounts, &mut pendings);
        use CreateTransferStatus::*;
        assert_eq!(
            statuses,
            [
                ExceedsCredits,
                Created,
                Created,
                CreditAccountNotFound,
                Created,
                PendingTransferAlreadyPosted
            ]
        );
        assert_eq!(accounts[&2].credits_posted, 50);
        assert_eq!(accounts[&1].debits_posted, 50);
        assert_eq!(
            (accounts[&1].debits_pending, accounts[&2].credits_pending),
            (0, 0)
        );
        let effect = check(&batch[0], &accounts, &pendings);
        assert_eq!(effect.map(|e| e.posted_add), Ok(5));
    }
}
