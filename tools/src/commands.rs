//! Running `kassactl`'s commands: [`plan`] turns the parsed command line (and a batch file) into
//! a [`Plan`] without touching the network, so bad input fails before any connection;
//! [`execute`] runs a plan against a [`Ledger`] (the wire client, or a fake in tests) and
//! writes tables or JSON; [`exit_code`] says how it went (see `cli::EXIT_CODES`).

use std::io::{self, Read, Write};
use std::path::Path;

use kassa_wire::client::{BlockingClient, ClientError};
use kassa_wire::{
    Account, AccountFilter, AccountFilterFlags, AccountFlags, AccountId, CreateAccountResult,
    CreateTransferResult, Transfer, TransferFlags, TransferId,
};
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::cli::{
    AccountsCommand, Command, CreateAccountArgs, CreateTransferArgs, ListArgs, TransfersCommand,
};
use crate::json::{AccountJson, CreateResultJson, Decimal, TransferJson};
use crate::table;

/// The operations `kassactl` needs from a node.
pub trait Ledger {
    fn create_accounts(&mut self, a: &[Account]) -> Result<Vec<CreateAccountResult>, ClientError>;
    fn create_transfers(
        &mut self,
        t: &[Transfer],
    ) -> Result<Vec<CreateTransferResult>, ClientError>;
    fn lookup_accounts(&mut self, ids: &[AccountId]) -> Result<Vec<Account>, ClientError>;
    fn lookup_transfers(&mut self, ids: &[TransferId]) -> Result<Vec<Transfer>, ClientError>;
    fn get_account_transfers(&mut self, f: &AccountFilter) -> Result<Vec<Transfer>, ClientError>;
}

impl Ledger for BlockingClient {
    fn create_accounts(&mut self, a: &[Account]) -> Result<Vec<CreateAccountResult>, ClientError> {
        BlockingClient::create_accounts(self, a)
    }
    fn create_transfers(
        &mut self,
        t: &[Transfer],
    ) -> Result<Vec<CreateTransferResult>, ClientError> {
        BlockingClient::create_transfers(self, t)
    }
    fn lookup_accounts(&mut self, ids: &[AccountId]) -> Result<Vec<Account>, ClientError> {
        BlockingClient::lookup_accounts(self, ids)
    }
    fn lookup_transfers(&mut self, ids: &[TransferId]) -> Result<Vec<Transfer>, ClientError> {
        BlockingClient::lookup_transfers(self, ids)
    }
    fn get_account_transfers(&mut self, f: &AccountFilter) -> Result<Vec<Transfer>, ClientError> {
        BlockingClient::get_account_transfers(self, f)
    }
}

/// What a command will ask the node.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    CreateAccounts(Vec<Account>),
    CreateTransfers(Vec<Transfer>),
    GetAccounts(Vec<AccountId>),
    GetTransfers(Vec<TransferId>),
    ListTransfers(AccountFilter),
}

/// Why a command failed.
#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
}

/// The process exit code for a failed command (see `cli::EXIT_CODES`).
pub fn exit_code(error: &CliError) -> u8 {
    match error {
        CliError::Output(_) => 1,
        CliError::Input(_) => 2,
        CliError::Client(ClientError::BatchTooLarge { .. } | ClientError::Config(_)) => 2,
        CliError::Client(_) => 3,
    }
}

/// The plan for `command`; a batch file named `-` is read from `stdin`.
pub fn plan(command: &Command, stdin: &mut dyn Read) -> Result<Plan, CliError> {
    Ok(match command {
        Command::Accounts(AccountsCommand::Create(args)) => match &args.batch.file {
            Some(path) => {
                let records: Vec<AccountJson> = read_batch(path, stdin)?;
                Plan::CreateAccounts(records.iter().map(Account::from).collect())
            }
            None => Plan::CreateAccounts(vec![account_from_flags(args)?]),
        },
        Command::Transfers(TransfersCommand::Create(args)) => match &args.batch.file {
            Some(path) => {
                let records: Vec<TransferJson> = read_batch(path, stdin)?;
                Plan::CreateTransfers(records.iter().map(Transfer::from).collect())
            }
            None => Plan::CreateTransfers(vec![transfer_from_flags(args)?]),
        },
        Command::Accounts(AccountsCommand::Get(args)) => {
            Plan::GetAccounts(args.ids.iter().map(|id| AccountId(*id)).collect())
        }
        Command::Transfers(TransfersCommand::Get(args)) => {
            Plan::GetTransfers(args.ids.iter().map(|id| TransferId(*id)).collect())
        }
        Command::Transfers(TransfersCommand::List(args)) => Plan::ListTransfers(filter(args)),
    })
}

fn missing(field: &str) -> CliError {
    CliError::Input(format!("--{field} is required without --file"))
}

fn account_from_flags(args: &CreateAccountArgs) -> Result<Account, CliError> {
    Ok(Account {
        id: AccountId(args.id.ok_or_else(|| missing("id"))?),
        ledger: args.ledger.ok_or_else(|| missing("ledger"))?,
        code: args.code.ok_or_else(|| missing("code"))?,
        flags: args
            .flags
            .iter()
            .fold(AccountFlags::empty(), |all, flag| all | *flag),
        user_data_128: args.user_data_128.unwrap_or(0),
        user_data_64: args.user_data_64.unwrap_or(0),
        user_data_32: args.user_data_32.unwrap_or(0),
        ..Account::default()
    })
}

fn transfer_from_flags(args: &CreateTransferArgs) -> Result<Transfer, CliError> {
    Ok(Transfer {
        id: TransferId(args.id.ok_or_else(|| missing("id"))?),
        debit_account_id: AccountId(args.debit_account.ok_or_else(|| missing("debit-account"))?),
        credit_account_id: AccountId(
            args.credit_account
                .ok_or_else(|| missing("credit-account"))?,
        ),
        amount: args.amount.ok_or_else(|| missing("amount"))?,
        pending_id: TransferId(args.pending_id.unwrap_or(0)),
        ledger: args.ledger.ok_or_else(|| missing("ledger"))?,
        code: args.code.ok_or_else(|| missing("code"))?,
        timeout: args.timeout.unwrap_or(0),
        flags: args
            .flags
            .iter()
            .fold(TransferFlags::empty(), |all, flag| all | *flag),
        user_data_128: args.user_data_128.unwrap_or(0),
        user_data_64: args.user_data_64.unwrap_or(0),
        user_data_32: args.user_data_32.unwrap_or(0),
        ..Transfer::default()
    })
}

fn filter(args: &ListArgs) -> AccountFilter {
    let mut flags = AccountFilterFlags::default();
    let both = args.debits == args.credits;
    if args.debits || both {
        flags = flags | AccountFilterFlags::DEBITS;
    }
    if args.credits || both {
        flags = flags | AccountFilterFlags::CREDITS;
    }
    if args.reversed {
        flags = flags | AccountFilterFlags::REVERSED;
    }
    AccountFilter::new(AccountId(args.account), args.limit, flags)
}

/// A non-empty JSON array of records from `path` (`-`: stdin).
fn read_batch<T: DeserializeOwned>(path: &Path, stdin: &mut dyn Read) -> Result<Vec<T>, CliError> {
    let mut text = String::new();
    let source = path.display().to_string();
    let read = if path == Path::new("-") {
        stdin.read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut file| file.read_to_string(&mut text))
    };
    read.map_err(|error| CliError::Input(format!("reading {source}: {error}")))?;
    let records: Vec<T> = serde_json::from_str(&text)
        .map_err(|error| CliError::Input(format!("{source}: {error}")))?;
    if records.is_empty() {
        return Err(CliError::Input(format!(
            "{source}: the array holds no events"
        )));
    }
    Ok(records)
}

/// Runs `plan` on `ledger`, writing results to `out` and failures to `err`; returns the exit
/// code (0, or 1 when some events failed or ids were not found).
pub fn execute(
    plan: &Plan,
    ledger: &mut dyn Ledger,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    match plan {
        Plan::CreateAccounts(accounts) => {
            let results = ledger.create_accounts(accounts)?;
            let named = results.iter().map(|r| (r.status.name(), r.timestamp));
            report_creates(named, json, out, err)
        }
        Plan::CreateTransfers(transfers) => {
            let results = ledger.create_transfers(transfers)?;
            let named = results.iter().map(|r| (r.status.name(), r.timestamp));
            report_creates(named, json, out, err)
        }
        Plan::GetAccounts(ids) => {
            let found = ledger.lookup_accounts(ids)?;
            if json {
                write_json(out, found.iter().map(AccountJson::from).collect::<Vec<_>>())?;
            } else {
                out.write_all(table::accounts(&found).as_bytes())?;
            }
            let found_ids: Vec<u128> = found.iter().map(|a| a.id.0).collect();
            report_missing("account", ids.iter().map(|id| id.0), &found_ids, err)
        }
        Plan::GetTransfers(ids) => {
            let found = ledger.lookup_transfers(ids)?;
            write_transfers(&found, json, out)?;
            let found_ids: Vec<u128> = found.iter().map(|t| t.id.0).collect();
            report_missing("transfer", ids.iter().map(|id| id.0), &found_ids, err)
        }
        Plan::ListTransfers(filter) => {
            let found = ledger.get_account_transfers(filter)?;
            write_transfers(&found, json, out)?;
            Ok(0)
        }
    }
}

fn report_creates(
    named: impl Iterator<Item = (&'static str, u64)>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let results: Vec<CreateResultJson> = named
        .enumerate()
        .map(|(index, (result, timestamp))| CreateResultJson {
            // A batch holds at most 8189 events.
            index: u32::try_from(index).expect("batch index fits u32"),
            result,
            timestamp: Decimal(timestamp),
        })
        .collect();
    if json {
        write_json(out, &results)?;
    } else {
        out.write_all(table::create_results(&results).as_bytes())?;
    }
    let mut failed = 0;
    for result in results.iter().filter(|r| r.result != "created") {
        writeln!(
            err,
            "error: event {} failed: {}",
            result.index, result.result
        )?;
        failed += 1;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn report_missing(
    kind: &str,
    asked: impl Iterator<Item = u128>,
    found: &[u128],
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let mut code = 0;
    for id in asked.filter(|id| !found.contains(id)) {
        writeln!(err, "error: {kind} {id} not found")?;
        code = 1;
    }
    Ok(code)
}

fn write_transfers(found: &[Transfer], json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    if json {
        write_json(
            out,
            found.iter().map(TransferJson::from).collect::<Vec<_>>(),
        )
    } else {
        out.write_all(table::transfers(found).as_bytes())?;
        Ok(())
    }
}

fn write_json(out: &mut dyn Write, value: impl serde::Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, &value).map_err(io::Error::from)?;
    writeln!(out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;
    use kassa_wire::{CreateAccountStatus, CreateTransferStatus};

    /// Answers creates with `created` unless the id is 13, and knows accounts 1 and 2.
    #[derive(Default)]
    struct FakeLedger {
        filters: Vec<AccountFilter>,
    }

    impl Ledger for FakeLedger {
        fn create_accounts(
            &mut self,
            a: &[Account],
        ) -> Result<Vec<CreateAccountResult>, ClientError> {
            Ok(a.iter()
                .map(|a| CreateAccountResult {
                    timestamp: 7,
                    status: if a.id.0 == 13 {
                        CreateAccountStatus::Exists
                    } else {
                        CreateAccountStatus::Created
                    },
                    reserved: 0,
                })
                .collect())
        }
        fn create_transfers(
            &mut self,
            t: &[Transfer],
        ) -> Result<Vec<CreateTransferResult>, ClientError> {
            Ok(t.iter()
                .map(|_| CreateTransferResult {
                    timestamp: 8,
                    status: CreateTransferStatus::ExceedsCredits,
                    reserved: 0,
                })
                .collect())
        }
        fn lookup_accounts(&mut self, ids: &[AccountId]) -> Result<Vec<Account>, ClientError> {
            Ok(ids
                .iter()
                .filter(|id| id.0 <= 2)
                .map(|id| Account {
                    id: *id,
                    ..Account::default()
                })
                .collect())
        }
        fn lookup_transfers(&mut self, _: &[TransferId]) -> Result<Vec<Transfer>, ClientError> {
            Ok(Vec::new())
        }
        fn get_account_transfers(
            &mut self,
            f: &AccountFilter,
        ) -> Result<Vec<Transfer>, ClientError> {
            self.filters.push(*f);
            Ok(Vec::new())
        }
    }

    fn run(args: &str, stdin: &str) -> (Result<u8, CliError>, String, String) {
        let cli = Cli::try_parse_from(std::iter::once("kassactl").chain(args.split_whitespace()))
            .unwrap();
        let mut ledger = FakeLedger::default();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = plan(&cli.command, &mut stdin.as_bytes())
            .and_then(|plan| execute(&plan, &mut ledger, cli.json, &mut out, &mut err));
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        (result, text(out), text(err))
    }

    #[test]
    fn a_failed_event_is_named_on_stderr_and_exits_1() {
        let batch =
            r#"[{"id": "12", "ledger": 1, "code": 1}, {"id": "13", "ledger": 1, "code": 1}]"#;
        let (code, out, err) = run("accounts create --file -", batch);
        assert_eq!(code.unwrap(), 1);
        assert!(out.contains("1      exists"), "{out}");
        assert_eq!(err, "error: event 1 failed: exists\n");
        let (code, _, err) = run("accounts create --id 12 --ledger 1 --code 1", "");
        assert_eq!((code.unwrap(), err.as_str()), (0, ""));
    }

    #[test]
    fn transfer_flags_become_the_record() {
        let cli = Cli::try_parse_from([
            "kassactl",
            "transfers",
            "create",
            "--id",
            "1",
            "--debit-account",
            "1",
            "--credit-account",
            "2",
            "--amount",
            "100",
            "--ledger",
            "700",
            "--code",
            "1",
            "--flags",
            "linked,pending",
            "--timeout",
            "30",
            "--pending-id",
            "9",
        ])
        .unwrap();
        let Plan::CreateTransfers(transfers) = plan(&cli.command, &mut io::empty()).unwrap() else {
            panic!("wrong plan");
        };
        let t = transfers[0];
        assert_eq!(
            (t.id.0, t.debit_account_id.0, t.credit_account_id.0),
            (1, 1, 2)
        );
        assert_eq!(
            (t.amount, t.ledger, t.code, t.timeout, t.pending_id.0),
            (100, 700, 1, 30, 9)
        );
        assert_eq!(t.flags, TransferFlags::LINKED | TransferFlags::PENDING);
    }

    #[test]
    fn json_output_uses_the_http_shapes() {
        let (code, out, err) = run("--json transfers create --file -", r#"[{"id": "5"}]"#);
        assert_eq!(code.unwrap(), 1);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!([{"index": 0, "result": "exceeds_credits", "timestamp": "8"}])
        );
        assert_eq!(err, "error: event 0 failed: exceeds_credits\n");
        let (_, out, _) = run("accounts get 1 --json", "");
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value[0]["id"], "1");
    }

    #[test]
    fn missing_ids_are_reported_and_exit_1() {
        let (code, out, err) = run("accounts get 2 5 1", "");
        assert_eq!(code.unwrap(), 1);
        assert_eq!(out.lines().count(), 3, "header and two accounts: {out}");
        assert_eq!(err, "error: account 5 not found\n");
    }

    #[test]
    fn bad_batches_are_input_errors() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"[{"id": 5}]"#,
            r#"[{"id": "5", "flags": ["nope"]}]"#,
        ] {
            let (result, _, _) = run("accounts create --file -", bad);
            let error = result.unwrap_err();
            assert_eq!(exit_code(&error), 2, "{bad}: {error}");
        }
        let (result, _, _) = run("accounts create --file /nonexistent/batch.json", "");
        let error = result.unwrap_err();
        assert!(error
            .to_string()
            .starts_with("reading /nonexistent/batch.json"));
    }

    #[test]
    fn list_builds_the_account_filter() {
        let plan_of = |args: &str| {
            let cli =
                Cli::try_parse_from(std::iter::once("kassactl").chain(args.split_whitespace()))
                    .unwrap();
            plan(&cli.command, &mut io::empty()).unwrap()
        };
        let Plan::ListTransfers(both) = plan_of("transfers list --account 4") else {
            panic!("wrong plan");
        };
        assert_eq!(
            both.flags,
            AccountFilterFlags::DEBITS | AccountFilterFlags::CREDITS
        );
        assert_eq!((both.account_id.0, both.limit), (4, 10));
        let Plan::ListTransfers(credits) =
            plan_of("transfers list --account 4 --credits --reversed --limit 3")
        else {
            panic!("wrong plan");
        };
        assert_eq!(
            credits.flags,
            AccountFilterFlags::CREDITS | AccountFilterFlags::REVERSED
        );
        assert_eq!(credits.limit, 3);
    }
}
