//! The baseline's two ways of running transfers, each a [`Submitter`] over one connection.
//!
//! **Per-transfer** ([`PerTransfer`]): one transaction per transfer, as a payment service
//! would write it: `BEGIN`; for a post or void, lock the pending transfer (`FOR UPDATE`) and
//! see whether it was resolved already; lock both accounts (`SELECT … ORDER BY id FOR UPDATE`,
//! so concurrent transactions lock in the same order and cannot deadlock) and check the debit
//! limit in the same statement; update both balances and insert the transfer (pipelined: one
//! round trip); `COMMIT`. A refused transfer rolls back.
//!
//! **Batched** ([`Batched`]): one transaction per batch. It locks the pending transfers the
//! batch posts or voids, then *the whole batch's accounts at once, in id order*, reads their
//! balances, runs every transfer in order through `rules::apply` in memory, and writes the
//! changed accounts (one `UPDATE … FROM unnest`) and the created transfers (one
//! `INSERT … SELECT FROM unnest`) before `COMMIT`. Concurrent batches that share an account
//! wait for each other; locking in id order keeps them from deadlocking.

use std::collections::HashMap;

use kassa_wire::{CreateTransferStatus, Transfer, TransferFlags};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::rules::{self, Balances, Pending};
use super::{amount_param, id_bytes, id_of, numeric_of, PgError};
use crate::load::Submitter;

const LOCK_PENDING: &str = "SELECT t.id, t.debit_account_id, t.credit_account_id, \
     t.amount::text, t.flags, r.flags FROM transfers t \
     LEFT JOIN transfers r ON r.pending_id = t.id \
     WHERE t.id = ANY($1) ORDER BY t.id FOR UPDATE OF t";
const LOCK_ACCOUNTS: &str = "SELECT id, flags, debits_pending::text, debits_posted::text, \
     credits_pending::text, credits_posted::text FROM accounts \
     WHERE id = ANY($1) ORDER BY id FOR UPDATE";
const UPDATE_TWO: &str = "UPDATE accounts SET \
     debits_pending = debits_pending + CASE WHEN id = $1 THEN $3::int8 ELSE 0 END, \
     debits_posted = debits_posted + CASE WHEN id = $1 THEN $4::int8 ELSE 0 END, \
     credits_pending = credits_pending + CASE WHEN id = $2 THEN $3::int8 ELSE 0 END, \
     credits_posted = credits_posted + CASE WHEN id = $2 THEN $4::int8 ELSE 0 END \
     WHERE id = $1 OR id = $2";
const INSERT_ONE: &str = "INSERT INTO transfers \
     (id, debit_account_id, credit_account_id, amount, ledger, code, flags, pending_id) \
     VALUES ($1, $2, $3, $4::int8, $5, $6, $7, $8)";
const UPDATE_MANY: &str = "UPDATE accounts a SET debits_pending = v.dp::numeric, \
     debits_posted = v.dpo::numeric, credits_pending = v.cp::numeric, \
     credits_posted = v.cpo::numeric \
     FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[]) \
     AS v(id, dp, dpo, cp, cpo) WHERE a.id = v.id";
const INSERT_MANY: &str = "INSERT INTO transfers \
     (id, debit_account_id, credit_account_id, amount, ledger, code, flags, pending_id) \
     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[], $5::int4[], \
     $6::int4[], $7::int4[], $8::bytea[])";

struct Statements {
    lock_pending: Statement,
    lock_accounts: Statement,
    update_two: Statement,
    insert_one: Statement,
    update_many: Statement,
    insert_many: Statement,
}

impl Statements {
    async fn prepare(client: &Client) -> Result<Statements, PgError> {
        Ok(Statements {
            lock_pending: client.prepare(LOCK_PENDING).await?,
            lock_accounts: client.prepare(LOCK_ACCOUNTS).await?,
            update_two: client.prepare(UPDATE_TWO).await?,
            insert_one: client.prepare(INSERT_ONE).await?,
            update_many: client.prepare(UPDATE_MANY).await?,
            insert_many: client.prepare(INSERT_MANY).await?,
        })
    }
}

fn is_resolution(transfer: &Transfer) -> bool {
    transfer
        .flags
        .contains(TransferFlags::POST_PENDING_TRANSFER)
        || transfer
            .flags
            .contains(TransferFlags::VOID_PENDING_TRANSFER)
}

/// Locks the pending transfers `ids` names (sorted), returning them by id.
async fn lock_pendings(
    transaction: &tokio_postgres::Transaction<'_>,
    statement: &Statement,
    mut ids: Vec<[u8; 16]>,
) -> Result<HashMap<u128, Pending>, PgError> {
    ids.sort_unstable();
    ids.dedup();
    let mut pendings = HashMap::with_capacity(ids.len());
    for row in transaction.query(statement, &[&ids]).await? {
        let pending = Pending {
            debit: id_of(row.get(1))?,
            credit: id_of(row.get(2))?,
            amount: numeric_of(row.get(3))?,
            flags: row.get::<_, i32>(4) as u16,
            resolved_by: row.get::<_, Option<i32>>(5).map(|f| f as u16),
        };
        pendings.insert(id_of(row.get(0))?, pending);
    }
    Ok(pendings)
}

/// Locks the accounts `ids` names, in id order, returning their balances by id.
async fn lock_accounts(
    transaction: &tokio_postgres::Transaction<'_>,
    statement: &Statement,
    mut ids: Vec<[u8; 16]>,
) -> Result<HashMap<u128, Balances>, PgError> {
    ids.sort_unstable();
    ids.dedup();
    let mut accounts = HashMap::with_capacity(ids.len());
    for row in transaction.query(statement, &[&ids]).await? {
        let balances = Balances {
            flags: row.get::<_, i32>(1) as u16,
            debits_pending: numeric_of(row.get(2))?,
            debits_posted: numeric_of(row.get(3))?,
            credits_pending: numeric_of(row.get(4))?,
            credits_posted: numeric_of(row.get(5))?,
        };
        accounts.insert(id_of(row.get(0))?, balances);
    }
    Ok(accounts)
}

/// One connection running one transaction per transfer.
pub struct PerTransfer {
    client: Client,
    statements: Statements,
}

impl PerTransfer {
    pub async fn new(client: Client) -> Result<PerTransfer, PgError> {
        let statements = Statements::prepare(&client).await?;
        Ok(PerTransfer { client, statements })
    }

    async fn one(&mut self, transfer: &Transfer) -> Result<CreateTransferStatus, PgError> {
        let s = &self.statements;
        let transaction = self.client.transaction().await?;
        let pendings = if is_resolution(transfer) {
            let ids = vec![id_bytes(transfer.pending_id.0)];
            lock_pendings(&transaction, &s.lock_pending, ids).await?
        } else {
            HashMap::new()
        };
        let (debit, credit) = match pendings.get(&transfer.pending_id.0) {
            Some(pending) => (pending.debit, pending.credit),
            None => (transfer.debit_account_id.0, transfer.credit_account_id.0),
        };
        let ids = vec![id_bytes(debit), id_bytes(credit)];
        let accounts = lock_accounts(&transaction, &s.lock_accounts, ids).await?;
        let effect = match rules::check(transfer, &accounts, &pendings) {
            Ok(effect) => effect,
            Err(status) => {
                transaction.rollback().await?;
                return Ok(status);
            }
        };
        let pending_delta = amount_param(effect.pending_add)? - amount_param(effect.pending_sub)?;
        let posted_delta = amount_param(effect.posted_add)?;
        let (debit, credit) = (id_bytes(effect.debit), id_bytes(effect.credit));
        let row = insert_row(transfer)?;
        let update_params: [&(dyn ToSql + Sync); 4] =
            [&debit, &credit, &pending_delta, &posted_delta];
        let insert_params: [&(dyn ToSql + Sync); 8] = [
            &row.id,
            &row.debit,
            &row.credit,
            &row.amount,
            &row.ledger,
            &row.code,
            &row.flags,
            &row.pending_id,
        ];
        let update = transaction.execute(&s.update_two, &update_params);
        let insert = transaction.execute(&s.insert_one, &insert_params);
        match tokio::try_join!(update, insert) {
            Ok(_) => {}
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                transaction.rollback().await?;
                return Ok(CreateTransferStatus::Exists);
            }
            Err(error) => return Err(error.into()),
        }
        transaction.commit().await?;
        Ok(CreateTransferStatus::Created)
    }
}

impl Submitter for PerTransfer {
    type Error = PgError;

    async fn submit(&mut self, batch: &[Transfer]) -> Result<Vec<CreateTransferStatus>, PgError> {
        let mut statuses = Vec::with_capacity(batch.len());
        for transfer in batch {
            statuses.push(self.one(transfer).await?);
        }
        Ok(statuses)
    }
}

/// A transfer's row as parameters.
struct InsertRow {
    id: [u8; 16],
    debit: [u8; 16],
    credit: [u8; 16],
    amount: i64,
    ledger: i32,
    code: i32,
    flags: i32,
    pending_id: Option<[u8; 16]>,
}

fn insert_row(transfer: &Transfer) -> Result<InsertRow, PgError> {
    Ok(InsertRow {
        id: id_bytes(transfer.id.0),
        debit: id_bytes(transfer.debit_account_id.0),
        credit: id_bytes(transfer.credit_account_id.0),
        amount: amount_param(transfer.amount)?,
        ledger: transfer.ledger as i32,
        code: i32::from(transfer.code),
        flags: i32::from(transfer.flags.0),
        pending_id: (transfer.pending_id.0 != 0).then(|| id_bytes(transfer.pending_id.0)),
    })
}

/// One connection running one transaction per batch.
pub struct Batched {
    client: Client,
    statements: Statements,
}

impl Batched {
    pub async fn new(client: Client) -> Result<Batched, PgError> {
        let statements = Statements::prepare(&client).await?;
        Ok(Batched { client, statements })
    }

    pub fn into_client(self) -> Client {
        self.client
    }

    /// Runs `batch` in one transaction; one status per transfer.
    pub async fn run(&mut self, batch: &[Transfer]) -> Result<Vec<CreateTransferStatus>, PgError> {
        let s = &self.statements;
        let transaction = self.client.transaction().await?;
        let pending_ids: Vec<[u8; 16]> = batch
            .iter()
            .filter(|t| is_resolution(t))
            .map(|t| id_bytes(t.pending_id.0))
            .collect();
        let mut pendings = if pending_ids.is_empty() {
            HashMap::new()
        } else {
            lock_pendings(&transaction, &s.lock_pending, pending_ids).await?
        };
        let mut ids = Vec::with_capacity(batch.len() * 2);
        for transfer in batch {
            ids.push(id_bytes(transfer.debit_account_id.0));
            ids.push(id_bytes(transfer.credit_account_id.0));
        }
        for pending in pendings.values() {
            ids.push(id_bytes(pending.debit));
            ids.push(id_bytes(pending.credit));
        }
        let mut accounts = lock_accounts(&transaction, &s.lock_accounts, ids).await?;
        let before = accounts.clone();
        let statuses = rules::apply(batch, &mut accounts, &mut pendings);
        let mut changed: Vec<(&u128, &Balances)> = accounts
            .iter()
            .filter(|(id, balances)| before.get(id) != Some(balances))
            .collect();
        changed.sort_unstable_by_key(|(id, _)| **id);
        let update = UpdateColumns::of(&changed);
        let insert = InsertColumns::of(batch, &statuses)?;
        let update_params: [&(dyn ToSql + Sync); 5] = [
            &update.ids,
            &update.dp,
            &update.dpo,
            &update.cp,
            &update.cpo,
        ];
        let insert_params: [&(dyn ToSql + Sync); 8] = [
            &insert.ids,
            &insert.debits,
            &insert.credits,
            &insert.amounts,
            &insert.ledgers,
            &insert.codes,
            &insert.flags,
            &insert.pending_ids,
        ];
        let update = transaction.execute(&s.update_many, &update_params);
        let insert = transaction.execute(&s.insert_many, &insert_params);
        tokio::try_join!(update, insert)?;
        transaction.commit().await?;
        Ok(statuses)
    }
}

impl Submitter for Batched {
    type Error = PgError;

    async fn submit(&mut self, batch: &[Transfer]) -> Result<Vec<CreateTransferStatus>, PgError> {
        self.run(batch).await
    }
}

/// The changed accounts as `unnest` columns.
struct UpdateColumns {
    ids: Vec<[u8; 16]>,
    dp: Vec<String>,
    dpo: Vec<String>,
    cp: Vec<String>,
    cpo: Vec<String>,
}

impl UpdateColumns {
    fn of(changed: &[(&u128, &Balances)]) -> UpdateColumns {
        UpdateColumns {
            ids: changed.iter().map(|(id, _)| id_bytes(**id)).collect(),
            dp: changed
                .iter()
                .map(|(_, b)| b.debits_pending.to_string())
                .collect(),
            dpo: changed
                .iter()
                .map(|(_, b)| b.debits_posted.to_string())
                .collect(),
            cp: changed
                .iter()
                .map(|(_, b)| b.credits_pending.to_string())
                .collect(),
            cpo: changed
                .iter()
                .map(|(_, b)| b.credits_posted.to_string())
                .collect(),
        }
    }
}

/// The created transfers as `unnest` columns.
struct InsertColumns {
    ids: Vec<[u8; 16]>,
    debits: Vec<[u8; 16]>,
    credits: Vec<[u8; 16]>,
    amounts: Vec<i64>,
    ledgers: Vec<i32>,
    codes: Vec<i32>,
    flags: Vec<i32>,
    pending_ids: Vec<Option<[u8; 16]>>,
}

impl InsertColumns {
    fn of(batch: &[Transfer], statuses: &[CreateTransferStatus]) -> Result<InsertColumns, PgError> {
        let mut columns = InsertColumns {
            ids: Vec::new(),
            debits: Vec::new(),
            credits: Vec::new(),
            amounts: Vec::new(),
            ledgers: Vec::new(),
            codes: Vec::new(),
            flags: Vec::new(),
            pending_ids: Vec::new(),
        };
        for (transfer, status) in batch.iter().zip(statuses) {
            if *status != CreateTransferStatus::Created {
                continue;
            }
            let row = insert_row(transfer)?;
            columns.ids.push(row.id);
            columns.debits.push(row.debit);
            columns.credits.push(row.credit);
            columns.amounts.push(row.amount);
            columns.ledgers.push(row.ledger);
            columns.codes.push(row.code);
            columns.flags.push(row.flags);
            columns.pending_ids.push(row.pending_id);
        }
        Ok(columns)
    }
}
