//! A server of TigerBeetle 0.17's client protocol as a system under test (Kassa, or TigerBeetle
//! itself as a baseline): wire clients (one session each), the accounts and their funding, the
//! load's [`Submitter`], and the end-of-run verification through the wire protocol.
//!
//! Acknowledged means durable here: the node answers a create request only after its log
//! entry was fdatasynced (docs/node.md). Verification reads everything back: every
//! acknowledged transfer by id (lookup_transfers, full batches), every benchmark account
//! (lookup_accounts) against the tally, and every account of the node (query_accounts, paged
//! by timestamp) for debits = credits per ledger.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use kassa_wire::client::{Client, ClientConfig, ClientError};
use kassa_wire::{
    Account, AccountId, CreateAccountStatus, CreateTransferStatus, Operation, QueryFilter,
    QueryFilterFlags, Transfer, TransferId, BATCH_EVENTS_MAX,
};

use crate::load::Submitter;
use crate::results::{Tally, Verification};

/// How long one call may take, resends included: a full batch behind others on a busy node
/// takes far less, and a node that does not answer in this time is reported, not waited for.
const CALL_DEADLINE: Duration = Duration::from_secs(120);
/// A busy node may take seconds for a full batch; resending sooner only adds load.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(30);
/// At most this many pages of `query_accounts` in the balance check (8189 accounts each).
const QUERY_PAGES_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum KassaError {
    #[error("{system} at {address}: {source}")]
    Client {
        system: &'static str,
        address: SocketAddr,
        #[source]
        source: ClientError,
    },
    #[error("creating account {index} on {system}: {status}", status = status.name())]
    Account {
        system: &'static str,
        index: usize,
        status: CreateAccountStatus,
    },
    #[error("funding transfer {index} on {system}: {status}", status = status.name())]
    Funding {
        system: &'static str,
        index: usize,
        status: CreateTransferStatus,
    },
}

/// Where the server is, which cluster it serves, and what it is ("kassa", "tigerbeetle").
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub system: &'static str,
    pub address: SocketAddr,
    pub cluster: u128,
}

impl Target {
    /// `count` registered clients, connected concurrently.
    pub async fn clients(&self, count: usize) -> Result<Vec<KassaSubmitter>, KassaError> {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..count {
            let target = *self;
            set.spawn(async move { target.client().await });
        }
        let mut clients = Vec::with_capacity(count);
        while let Some(joined) = set.join_next().await {
            let client = joined.expect("connecting does not panic")?;
            clients.push(KassaSubmitter {
                client,
                target: *self,
            });
        }
        Ok(clients)
    }

    pub async fn client(&self) -> Result<Client, KassaError> {
        let mut config = ClientConfig::new(vec![self.address], self.cluster);
        config.deadline = CALL_DEADLINE;
        config.request_timeout = REQUEST_TIMEOUT;
        config.request_timeout_max = REQUEST_TIMEOUT_MAX;
        Client::connect(config).await.map_err(|e| self.error(e))
    }

    fn error(&self, source: ClientError) -> KassaError {
        KassaError::Client {
            system: self.system,
            address: self.address,
            source,
        }
    }

    /// Creates `accounts`, then sends `funding`, adding the funding to `tally`.
    pub async fn setup(
        &self,
        accounts: &[Account],
        funding: &[Transfer],
        tally: &mut Tally,
    ) -> Result<(), KassaError> {
        let mut client = self.client().await?;
        let max = client.events_max(Operation::CreateAccounts);
        for (chunk_index, chunk) in accounts.chunks(max).enumerate() {
            let results = client
                .create_accounts(chunk)
                .await
                .map_err(|e| self.error(e))?;
            if let Some((offset, result)) = results
                .iter()
                .enumerate()
                .find(|(_, r)| r.status != CreateAccountStatus::Created)
            {
                return Err(KassaError::Account {
                    system: self.system,
                    index: chunk_index * max + offset,
                    status: result.status,
                });
            }
        }
        let max = client.events_max(Operation::CreateTransfers);
        for (chunk_index, chunk) in funding.chunks(max).enumerate() {
            let results = client
                .create_transfers(chunk)
                .await
                .map_err(|e| self.error(e))?;
            let statuses: Vec<_> = results.iter().map(|r| r.status).collect();
            if let Some(offset) = statuses
                .iter()
                .position(|s| *s != CreateTransferStatus::Created)
            {
                return Err(KassaError::Funding {
                    system: self.system,
                    index: chunk_index * max + offset,
                    status: statuses[offset],
                });
            }
            tally.add(chunk, &statuses);
        }
        Ok(())
    }

    /// Reads everything back; problems are collected, I/O failures returned.
    pub async fn verify(
        &self,
        accounts: &[Account],
        tally: &Tally,
    ) -> Result<Verification, KassaError> {
        let mut client = self.client().await?;
        let mut verification = Verification {
            system: self.system,
            ..Verification::default()
        };
        for chunk in tally.acknowledged.chunks(BATCH_EVENTS_MAX) {
            let ids: Vec<TransferId> = chunk.iter().map(|t| t.id).collect();
            let found = client
                .lookup_transfers(&ids)
                .await
                .map_err(|e| self.error(e))?;
            verification.transfers_checked += found.len() as u64;
            check_transfers(chunk, &found, &mut verification.problems);
        }
        let mut ours = [0u128; 4];
        for chunk in accounts.chunks(BATCH_EVENTS_MAX) {
            let ids: Vec<AccountId> = chunk.iter().map(|a| a.id).collect();
            let found = client
                .lookup_accounts(&ids)
                .await
                .map_err(|e| self.error(e))?;
            if found.len() != ids.len() {
                verification.problems.push(format!(
                    "{} of {} benchmark accounts missing",
                    ids.len() - found.len(),
                    ids.len()
                ));
            }
            found.iter().for_each(|a| add_balances(&mut ours, a));
        }
        crate::verify::check_totals(&ours, tally, &mut verification.problems);
        let ledgers = self.ledger_sums(&mut client).await?;
        crate::verify::check_ledgers(&ledgers, &mut verification.problems);
        Ok(verification)
    }

    /// Per ledger, over every account of the node: debits and credits, posted and pending.
    async fn ledger_sums(
        &self,
        client: &mut Client,
    ) -> Result<BTreeMap<u32, [u128; 4]>, KassaError> {
        let mut sums = BTreeMap::new();
        let limit = client.events_max(Operation::QueryAccounts).max(1);
        let limit = limit.min(BATCH_EVENTS_MAX) as u32;
        let mut filter = QueryFilter::new(limit, QueryFilterFlags::default());
        for _ in 0..QUERY_PAGES_MAX {
            let page = client
                .query_accounts(&filter)
                .await
                .map_err(|e| self.error(e))?;
            for account in &page {
                add_balances(sums.entry(account.ledger).or_insert([0; 4]), account);
            }
            match page.last() {
                Some(last) if page.len() == limit as usize => {
                    filter.timestamp_min = last.timestamp + 1
                }
                _ => break,
            }
        }
        Ok(sums)
    }
}

/// `[debits_posted, credits_posted, debits_pending, credits_pending]`.
fn add_balances(sums: &mut [u128; 4], account: &Account) {
    sums[0] += account.debits_posted;
    sums[1] += account.credits_posted;
    sums[2] += account.debits_pending;
    sums[3] += account.credits_pending;
}

/// Every acknowledged transfer must be there, with the accounts and amount that were sent.
fn check_transfers(sent: &[Transfer], found: &[Transfer], problems: &mut Vec<String>) {
    let mut found = found.iter().peekable();
    let mut missing = 0;
    for transfer in sent {
        match found.peek() {
            Some(stored) if stored.id == transfer.id => {
                let same = stored.debit_account_id == transfer.debit_account_id
                    && stored.credit_account_id == transfer.credit_account_id
                    && stored.amount == transfer.amount
                    && stored.flags == transfer.flags;
                if !same {
                    problems.push(format!("transfer {} stored differently", transfer.id.0));
                }
                found.next();
            }
            _ => missing += 1,
        }
    }
    if missing > 0 {
        problems.push(format!(
            "{missing} acknowledged transfers missing (first batch of {})",
            sent.len()
        ));
    }
}

/// One wire client used by the load driver.
pub struct KassaSubmitter {
    client: Client,
    target: Target,
}

impl Submitter for KassaSubmitter {
    type Error = KassaError;

    async fn submit(
        &mut self,
        batch: &[Transfer],
    ) -> Result<Vec<CreateTransferStatus>, KassaError> {
        let results = self
            .client
            .create_transfers(batch)
            .await
            .map_err(|source| self.target.error(source))?;
        Ok(results.into_iter().map(|r| r.status).collect())
    }
}
