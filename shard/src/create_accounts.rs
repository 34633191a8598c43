//! `create_accounts`: an account's own checks, in TigerBeetle 0.17's order of precedence, and
//! its insertion. The batch loop around it is `create.rs`'s.

use kassa_wire::{
    Account, AccountFlags, CreateAccountResult, CreateAccountStatus as Status, ID_INT_MAX,
};

use crate::create::{CreateOperation, Outcome};
use crate::Ledger;

pub(crate) struct CreateAccounts;

impl CreateOperation for CreateAccounts {
    type Event = Account;
    type Status = Status;
    type Result = CreateAccountResult;
    const CREATED: Status = Status::Created;
    const LINKED_EVENT_FAILED: Status = Status::LinkedEventFailed;
    const LINKED_EVENT_CHAIN_OPEN: Status = Status::LinkedEventChainOpen;
    const IMPORTED_EVENT_EXPECTED: Status = Status::ImportedEventExpected;
    const IMPORTED_EVENT_NOT_EXPECTED: Status = Status::ImportedEventNotExpected;
    const TIMESTAMP_MUST_BE_ZERO: Status = Status::TimestampMustBeZero;
    const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: Status = Status::ImportedEventTimestampOutOfRange;
    const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: Status =
        Status::ImportedEventTimestampMustNotAdvance;

    fn prefetch(ledger: &Ledger, event: &Account) {
        ledger.account_positions.prefetch(event.id.0);
    }

    fn head(event: &Account) -> (bool, bool, u64) {
        let flags = event.flags;
        (
            flags.contains(AccountFlags::LINKED),
            flags.contains(AccountFlags::IMPORTED),
            event.timestamp,
        )
    }

    fn apply(ledger: &mut Ledger, timestamp: u64, event: &Account) -> Outcome<Status> {
        ledger.create_account(timestamp, event)
    }

    fn failed(_: &mut Ledger, _: &Account, _: Status) {
        // No account status is transient: an account id that failed may be used again.
    }

    fn result(timestamp: u64, status: Status) -> CreateAccountResult {
        CreateAccountResult {
            timestamp,
            status,
            reserved: 0,
        }
    }

    fn set_status(result: &mut CreateAccountResult, status: Status) {
        result.status = status;
    }
}

impl Ledger {
    /// Creates each account of the batch, writing one result per event into `results` (which
    /// is cleared first), in order. `now` is the caller's clock in nanoseconds.
    pub fn create_accounts(
        &mut self,
        now: u64,
        events: &[Account],
        results: &mut Vec<CreateAccountResult>,
    ) {
        self.execute_create::<CreateAccounts>(now, events, results);
    }

    fn create_account(&mut self, timestamp_event: u64, a: &Account) -> Outcome<Status> {
        if a.reserved != 0 {
            return Err(Status::ReservedField);
        }
        if a.flags.has_reserved() {
            return Err(Status::ReservedFlag);
        }
        if a.id.0 == 0 {
            return Err(Status::IdMustNotBeZero);
        }
        if a.id.0 == ID_INT_MAX {
            return Err(Status::IdMustNotBeIntMax);
        }
        if let Some(existing) = self.account(a.id) {
            return account_exists(a, existing);
        }
        if a.flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && a.flags
                .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return Err(Status::FlagsAreMutuallyExclusive);
        }
        if a.debits_pending != 0 {
            return Err(Status::DebitsPendingMustBeZero);
        }
        if a.debits_posted != 0 {
            return Err(Status::DebitsPostedMustBeZero);
        }
        if a.credits_pending != 0 {
            return Err(Status::CreditsPendingMustBeZero);
        }
        if a.credits_posted != 0 {
            return Err(Status::CreditsPostedMustBeZero);
        }
        if a.ledger == 0 {
            return Err(Status::LedgerMustNotBeZero);
        }
        if a.code == 0 {
            return Err(Status::CodeMustNotBeZero);
        }
        let timestamp = if a.flags.contains(AccountFlags::IMPORTED) {
            assert!(a.timestamp > 0);
            if self.imported_timestamp_regresses(
                a.timestamp,
                self.accounts.last().map(|a| a.timestamp),
                self.import_floor_accounts,
            ) {
                return Err(Status::ImportedEventTimestampMustNotRegress);
            }
            a.timestamp
        } else {
            timestamp_event
        };
        self.account_insert(Account { timestamp, ..*a });
        Ok((Status::Created, timestamp))
    }

    fn account_insert(&mut self, account: Account) {
        assert!(self
            .accounts
            .last()
            .is_none_or(|last| last.timestamp < account.timestamp));
        let position = self.account_push(account);
        self.changes.push_account(position, &account);
    }
}

fn account_exists(a: &Account, e: &Account) -> Outcome<Status> {
    if a.flags != e.flags {
        return Err(Status::ExistsWithDifferentFlags);
    }
    if a.user_data_128 != e.user_data_128 {
        return Err(Status::ExistsWithDifferentUserData128);
    }
    if a.user_data_64 != e.user_data_64 {
        return Err(Status::ExistsWithDifferentUserData64);
    }
    if a.user_data_32 != e.user_data_32 {
        return Err(Status::ExistsWithDifferentUserData32);
    }
    if a.ledger != e.ledger {
        return Err(Status::ExistsWithDifferentLedger);
    }
    if a.code != e.code {
        return Err(Status::ExistsWithDifferentCode);
    }
    Ok((Status::Exists, e.timestamp))
}
