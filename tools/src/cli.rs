//! `kassactl`'s command line: the commands, their flags and the parsers of ids and flag lists.
//! Parsing only; `commands.rs` runs what was parsed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kassa_wire::{AccountFlags, TransferFlags, ID_INT_MAX};

use crate::json::{parse_decimal, parse_flag};

/// What the exit codes mean (also in `--help`).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the node refused some events (each failed index and result is printed on stderr),
     some ids were not found, or the output could not be written
  2  bad usage or input (flags, ids, JSON)
  3  the node could not be reached or broke the protocol (timeout, eviction)";

/// Operate a Kassa node through its wire port (TigerBeetle 0.17's client protocol).
#[derive(Debug, Parser)]
#[command(name = "kassactl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The node's wire address, `host:port`; several, comma-separated, for a cluster.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        default_value = "127.0.0.1:3000"
    )]
    pub address: String,
    /// The cluster id the node was formatted with.
    #[arg(long, global = true, help_heading = "Global options", default_value_t = 0, value_parser = parse_u128)]
    pub cluster: u128,
    /// Print JSON (the HTTP API's shapes) instead of a table.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Give up on the node after this many milliseconds (resends included).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        default_value_t = 5000,
        value_name = "MS"
    )]
    pub deadline_ms: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and look up accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Create, look up and list transfers.
    #[command(subcommand)]
    Transfers(TransfersCommand),
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Create one account from flags, or a batch from a JSON file (`--file`).
    Create(CreateAccountArgs),
    /// Look up accounts by id.
    Get(GetArgs),
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum TransfersCommand {
    /// Create one transfer from flags, or a batch from a JSON file (`--file`).
    Create(CreateTransferArgs),
    /// Look up transfers by id.
    Get(GetArgs),
    /// List an account's transfers, oldest first.
    List(ListArgs),
}

/// Fields of one event, or a file of events: exactly one of the two.
#[derive(Debug, Args)]
pub struct BatchFile {
    /// A JSON array of events in the HTTP API's shape (`-` reads stdin). Excludes the field
    /// flags.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CreateAccountArgs {
    /// The new record's id (decimal; 0 and 2^128-1 are refused by the node).
    #[arg(long, value_parser = parse_u128, required_unless_present = "file", conflicts_with = "file")]
    pub id: Option<u128>,
    /// The ledger (currency) number.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub ledger: Option<u32>,
    /// A user-defined reason code.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub code: Option<u16>,
    /// Comma-separated: linked, debits_must_not_exceed_credits, credits_must_not_exceed_debits,
    /// history, imported, closed.
    #[arg(long, value_delimiter = ',', value_parser = parse_flag::<AccountFlags>, conflicts_with = "file")]
    pub flags: Vec<AccountFlags>,
    /// Opaque user data (decimal u128).
    #[arg(long, value_parser = parse_u128, conflicts_with = "file")]
    pub user_data_128: Option<u128>,
    /// Opaque user data (decimal u64).
    #[arg(long, value_parser = parse_u64, conflicts_with = "file")]
    pub user_data_64: Option<u64>,
    /// Opaque user data (u32).
    #[arg(long, conflicts_with = "file")]
    pub user_data_32: Option<u32>,
    #[command(flatten)]
    pub batch: BatchFile,
}

#[derive(Debug, Args)]
pub struct CreateTransferArgs {
    /// The new record's id (decimal; 0 and 2^128-1 are refused by the node).
    #[arg(long, value_parser = parse_u128, required_unless_present = "file", conflicts_with = "file")]
    pub id: Option<u128>,
    /// The account to debit.
    #[arg(long, value_parser = parse_u128, required_unless_present = "file", conflicts_with = "file")]
    pub debit_account: Option<u128>,
    /// The account to credit.
    #[arg(long, value_parser = parse_u128, required_unless_present = "file", conflicts_with = "file")]
    pub credit_account: Option<u128>,
    /// The amount, in the ledger's smallest unit.
    #[arg(long, value_parser = parse_u128, required_unless_present = "file", conflicts_with = "file")]
    pub amount: Option<u128>,
    /// The ledger (currency) number.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub ledger: Option<u32>,
    /// A user-defined reason code.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    pub code: Option<u16>,
    /// For a post or void: the pending transfer it resolves.
    #[arg(long, value_parser = parse_u128, conflicts_with = "file")]
    pub pending_id: Option<u128>,
    /// Seconds after which a pending transfer expires (0: never).
    #[arg(long, value_name = "SECONDS", conflicts_with = "file")]
    pub timeout: Option<u32>,
    /// Comma-separated: linked, pending, post_pending_transfer, void_pending_transfer,
    /// balancing_debit, balancing_credit, closing_debit, closing_credit, imported.
    #[arg(long, value_delimiter = ',', value_parser = parse_flag::<TransferFlags>, conflicts_with = "file")]
    pub flags: Vec<TransferFlags>,
    /// Opaque user data (decimal u128).
    #[arg(long, value_parser = parse_u128, conflicts_with = "file")]
    pub user_data_128: Option<u128>,
    /// Opaque user data (decimal u64).
    #[arg(long, value_parser = parse_u64, conflicts_with = "file")]
    pub user_data_64: Option<u64>,
    /// Opaque user data (u32).
    #[arg(long, conflicts_with = "file")]
    pub user_data_32: Option<u32>,
    #[command(flatten)]
    pub batch: BatchFile,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// One or more ids (decimal).
    #[arg(required = true, value_parser = parse_id)]
    pub ids: Vec<u128>,
}

/// The most records one `list` asks for: one reply's worth.
pub const LIST_LIMIT_MAX: u32 = kassa_wire::BATCH_EVENTS_MAX as u32;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The account whose transfers to list.
    #[arg(long, value_parser = parse_id)]
    pub account: u128,
    /// At most this many transfers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=i64::from(LIST_LIMIT_MAX)))]
    pub limit: u32,
    /// Newest first.
    #[arg(long)]
    pub reversed: bool,
    /// Only transfers debiting the account (with --credits, or neither: both sides).
    #[arg(long)]
    pub debits: bool,
    /// Only transfers crediting the account.
    #[arg(long)]
    pub credits: bool,
}

/// A u128 in decimal.
pub fn parse_u128(text: &str) -> Result<u128, String> {
    parse_decimal(text).ok_or_else(|| format!("`{text}` is not an unsigned 128-bit decimal"))
}

/// A u64 in decimal.
pub fn parse_u64(text: &str) -> Result<u64, String> {
    parse_decimal(text).ok_or_else(|| format!("`{text}` is not an unsigned 64-bit decimal"))
}

/// An id to look up: a u128 in decimal, neither 0 nor 2^128 − 1 (reserved, never an id).
pub fn parse_id(text: &str) -> Result<u128, String> {
    let id = parse_u128(text).map_err(|_| format!("bad id `{text}`: ids are decimal numbers"))?;
    if id == 0 || id == ID_INT_MAX {
        return Err(format!(
            "bad id `{text}`: 0 and 2^128-1 are reserved, never ids"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kassactl").chain(args.split_whitespace()))
    }

    #[test]
    fn create_account_from_flags_with_defaults() {
        let cli =
            parse("accounts create --id 1 --ledger 700 --code 10 --flags history,linked").unwrap();
        assert_eq!(cli.address, "127.0.0.1:3000");
        assert_eq!(cli.cluster, 0);
        assert!(!cli.json);
        let Command::Accounts(AccountsCommand::Create(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(
            (args.id, args.ledger, args.code),
            (Some(1), Some(700), Some(10))
        );
        assert_eq!(args.flags, [AccountFlags::HISTORY, AccountFlags::LINKED]);
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse("transfers get 5 7 --json --address 10.0.0.1:3001 --cluster 9").unwrap();
        assert!(cli.json);
        assert_eq!(cli.cluster, 9);
        assert_eq!(cli.address, "10.0.0.1:3001");
        let Command::Transfers(TransfersCommand::Get(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(args.ids, [5, 7]);
    }

    #[test]
    fn bad_input_is_refused_with_a_clear_message() {
        let unknown =
            parse("accounts create --id 1 --ledger 1 --code 1 --flags histry").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown flag `histry`"),
            "{unknown}"
        );
        let zero = parse("accounts get 0").unwrap_err();
        assert!(zero.to_string().contains("reserved"), "{zero}");
        let not_a_number = parse("transfers get 12abc").unwrap_err();
        assert!(not_a_number.to_string().contains("bad id `12abc`"));
        assert!(
            parse("accounts create --id 1 --ledger 1").is_err(),
            "code missing"
        );
        assert!(
            parse("accounts create --id 1 --ledger 1 --code 1 --file a.json").is_err(),
            "fields and file exclude each other"
        );
        assert!(parse("transfers list --account 1 --limit 0").is_err());
        let too_big = "transfers get 340282366920938463463374607431768211456";
        assert!(parse(too_big).is_err());
    }

    #[test]
    fn a_batch_comes_from_a_file_alone() {
        let cli = parse("transfers create --file -").unwrap();
        let Command::Transfers(TransfersCommand::Create(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(args.batch.file, Some(PathBuf::from("-")));
        assert_eq!(args.id, None);
    }

    #[test]
    fn list_defaults() {
        let cli = parse("transfers list --account 3").unwrap();
        let Command::Transfers(TransfersCommand::List(args)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!((args.account, args.limit), (3, 10));
        assert!(!args.reversed && !args.debits && !args.credits);
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
