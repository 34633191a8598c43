//! The PostgreSQL baseline: the same double-entry ledger as tables, driven by the same plan
//! over `tokio-postgres` connections.
//!
//! Schema: `accounts` and `transfers` keyed by their 128-bit ids as 16-byte big-endian `bytea`
//! (so byte order is id order, the order rows are locked in), balances and amounts `numeric`,
//! transfers indexed by debit and by credit account (what `get_account_transfers` needs, which
//! Kassa serves too), and a unique index on `pending_id` so a pending transfer is posted or
//! voided at most once. Amounts travel as `int8` parameters (the workload's fit; a larger one
//! is an error, never truncated) and balances are read back as text.
//!
//! Variants ([`submit`]): *per-transfer*, one transaction per transfer; *batched*, one
//! transaction per batch that first locks the whole batch's accounts in id order. Acknowledged
//! means committed with `synchronous_commit = on`: the WAL is flushed. Called by `main.rs`.

pub mod rules;
pub mod server;
pub mod submit;

use std::collections::BTreeMap;

use kassa_wire::{Account, Transfer};
use tokio_postgres::NoTls;

use crate::results::{Tally, Verification};

/// Ids per `= ANY($1)` lookup in verification.
const VERIFY_CHUNK: usize = 8189;

const SCHEMA: &str = "
CREATE TABLE accounts (
    id bytea PRIMARY KEY,
    ledger integer NOT NULL,
    code integer NOT NULL,
    flags integer NOT NULL,
    debits_pending numeric NOT NULL DEFAULT 0,
    debits_posted numeric NOT NULL DEFAULT 0,
    credits_pending numeric NOT NULL DEFAULT 0,
    credits_posted numeric NOT NULL DEFAULT 0
);
CREATE TABLE transfers (
    id bytea PRIMARY KEY,
    debit_account_id bytea NOT NULL,
    credit_account_id bytea NOT NULL,
    amount numeric NOT NULL,
    ledger integer NOT NULL,
    code integer NOT NULL,
    flags integer NOT NULL,
    pending_id bytea,
    timestamp bigint NOT NULL DEFAULT (extract(epoch from clock_timestamp()) * 1e9)::bigint
);
CREATE INDEX transfers_debit ON transfers (debit_account_id);
CREATE INDEX transfers_credit ON transfers (credit_account_id);
CREATE UNIQUE INDEX transfers_pending ON transfers (pending_id) WHERE pending_id IS NOT NULL;
";

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {0}")]
    Sql(#[from] tokio_postgres::Error),
    #[error("PostgreSQL returned {what} that is not a valid {expected}: {value:?}")]
    Decode {
        what: &'static str,
        expected: &'static str,
        value: String,
    },
    #[error("amount {0} does not fit the baseline's int8 parameters")]
    AmountTooLarge(u128),
    #[error("setting up PostgreSQL: {0} transfers of the funding were refused")]
    Funding(usize),
}

/// The id as stored: 16 bytes, big-endian, so byte order is numeric order.
pub fn id_bytes(id: u128) -> [u8; 16] {
    id.to_be_bytes()
}

pub fn id_of(bytes: &[u8]) -> Result<u128, PgError> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| PgError::Decode {
        what: "an id",
        expected: "16-byte id",
        value: format!("{bytes:02x?}"),
    })?;
    Ok(u128::from_be_bytes(array))
}

pub fn amount_param(amount: u128) -> Result<i64, PgError> {
    i64::try_from(amount).map_err(|_| PgError::AmountTooLarge(amount))
}

pub fn numeric_of(text: &str) -> Result<u128, PgError> {
    text.parse().map_err(|_| PgError::Decode {
        what: "a balance",
        expected: "non-negative integer",
        value: text.to_string(),
    })
}

/// Opens one connection; its driver runs as a task until the client is dropped.
pub async fn connect(connection_string: &str) -> Result<tokio_postgres::Client, PgError> {
    let (client, connection) = tokio_postgres::connect(connection_string, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("kassa-bench: PostgreSQL connection ended: {error}");
        }
    });
    Ok(client)
}

/// Creates the schema and `accounts`, then runs `funding` (as one batch of the batched
/// variant), adding it to `tally`.
pub async fn setup(
    connection_string: &str,
    accounts: &[Account],
    funding: &[Transfer],
    tally: &mut Tally,
) -> Result<(), PgError> {
    let client = connect(connection_string).await?;
    client.batch_execute(SCHEMA).await?;
    let ids: Vec<[u8; 16]> = accounts.iter().map(|a| id_bytes(a.id.0)).collect();
    let ledgers: Vec<i32> = accounts.iter().map(|a| a.ledger as i32).collect();
    let codes: Vec<i32> = accounts.iter().map(|a| i32::from(a.code)).collect();
    let flags: Vec<i32> = accounts.iter().map(|a| i32::from(a.flags.0)).collect();
    client
        .execute(
            "INSERT INTO accounts (id, ledger, code, flags) \
             SELECT * FROM unnest($1::bytea[], $2::int4[], $3::int4[], $4::int4[])",
            &[&ids, &ledgers, &codes, &flags],
        )
        .await?;
    let mut batched = submit::Batched::new(client).await?;
    for chunk in funding.chunks(kassa_wire::BATCH_EVENTS_MAX) {
        let statuses = batched.run(chunk).await?;
        let refused = statuses
            .iter()
            .filter(|s| **s != kassa_wire::CreateTransferStatus::Created)
            .count();
        if refused > 0 {
            return Err(PgError::Funding(refused));
        }
        tally.add(chunk, &statuses);
    }
    let client = batched.into_client();
    client.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

/// Every acknowledged transfer present, the benchmark's accounts holding what was
/// acknowledged, and every ledger balanced.
pub async fn verify(connection_string: &str, tally: &Tally) -> Result<Verification, PgError> {
    let client = connect(connection_string).await?;
    let mut verification = Verification {
        system: "postgres",
        ..Verification::default()
    };
    let mut missing = 0;
    for chunk in tally.acknowledged.chunks(VERIFY_CHUNK) {
        let ids: Vec<[u8; 16]> = chunk.iter().map(|t| id_bytes(t.id.0)).collect();
        let row = client
            .query_one("SELECT count(*) FROM transfers WHERE id = ANY($1)", &[&ids])
            .await?;
        let found: i64 = row.get(0);
        verification.transfers_checked += found as u64;
        missing += chunk.len() as i64 - found;
    }
    if missing != 0 {
        verification
            .problems
            .push(format!("{missing} acknowledged transfers missing"));
    }
    let rows = client
        .query(
            "SELECT ledger, sum(debits_posted)::text, sum(credits_posted)::text, \
             sum(debits_pending)::text, sum(credits_pending)::text \
             FROM accounts GROUP BY ledger",
            &[],
        )
        .await?;
    let mut ledgers = BTreeMap::new();
    for row in rows {
        let ledger: i32 = row.get(0);
        let mut sums = [0u128; 4];
        for (index, sum) in sums.iter_mut().enumerate() {
            *sum = numeric_of(row.get(index + 1))?;
        }
        ledgers.insert(ledger as u32, sums);
    }
    // Every account in this throw-away database is a benchmark account.
    let ours = ledgers.values().fold([0u128; 4], |mut total, sums| {
        (0..4).for_each(|i| total[i] += sums[i]);
        total
    });
    crate::verify::check_totals(&ours, tally, &mut verification.problems);
    crate::verify::check_ledgers(&ledgers, &mut verification.problems);
    Ok(verification)
}
