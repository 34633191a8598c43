//! The ledger service: every operation the APIs offer, routed to the partitions that own its
//! records. The HTTP API and the wire port both call it, so both answer the same request the
//! same way; they only decode and encode.
//!
//! Its futures do not depend on a runtime: they talk to the cores over `async_channel` and
//! `tokio::sync::oneshot`, which work from tokio (HTTP) and from monoio (the wire port's core
//! threads) alike.

use kassa_shard::{Command, Ledger, Reply};
use kassa_wire::{
    Account, AccountBalance, AccountFilter, AccountId, CreateAccountResult, CreateTransferResult,
    QueryFilter, QueryFilterFlags, Transfer, TransferId,
};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::coordinator::{self, Coordinator};
use crate::cores::{realtime_ns, CoreSetup, Cores};
use crate::partitioning::partition_of;
use crate::NodeError;

/// The node's ledger operations, over its cores.
pub struct Service {
    pub cores: Arc<Cores>,
    /// Runs batches across partitions; `None` with one partition, where every batch is local.
    coordinator: Option<Coordinator>,
}

/// How long a stop waits for running transactions.
const TRANSACTIONS_DRAIN: Duration = Duration::from_secs(10);

impl Service {
    /// Starts the cores, delivers any decision a crash left half-applied, then starts expiring
    /// pending transfers: after this, the partitions are consistent and ready to serve.
    pub fn start(setup: CoreSetup) -> Result<Service, NodeError> {
        let (due_sender, due) = async_channel::bounded(CROSS_EXPIRIES_QUEUED_MAX);
        let pulses = Arc::new(AtomicBool::new(false));
        let setup = CoreSetup {
            pulses: pulses.clone(),
            cross_expiries: due_sender,
            ..setup
        };
        let cores = Arc::new(Cores::start(setup)?);
        let coordinator = if cores.partitions() > 1 {
            let delivered = run_blocking(coordinator::recover(&cores))?;
            if delivered > 0 {
                tracing::warn!(
                    delivered,
                    "delivered cross-partition decisions left from a crash"
                );
            }
            Some(Coordinator::start(cores.clone(), due)?)
        } else {
            None
        };
        pulses.store(true, Ordering::Release);
        Ok(Service { cores, coordinator })
    }

    /// Finishes running transactions and stops the cores.
    pub fn shutdown(self) {
        if let Some(coordinator) = self.coordinator {
            coordinator.shutdown(TRANSACTIONS_DRAIN);
        }
        match Arc::try_unwrap(self.cores) {
            Ok(cores) => cores.shutdown(),
            Err(_) => tracing::error!("cores still in use at shutdown"),
        }
    }

    pub fn partitions(&self) -> u32 {
        self.cores.partitions()
    }

    /// Creates `accounts`; one result per event, in order.
    pub async fn create_accounts(
        &self,
        accounts: Vec<Account>,
    ) -> Result<Vec<CreateAccountResult>, NodeError> {
        if let Some(coordinator) = &self.coordinator {
            return coordinator.create_accounts(realtime_ns(), accounts).await;
        }
        let command = Command::CreateAccounts {
            now: realtime_ns(),
            accounts,
        };
        let partition = 0;
        match self.cores.write(partition, command).await? {
            Reply::CreateAccounts(results) => Ok(results),
            other => unreachable!("create_accounts answered {other:?}"),
        }
    }

    /// Creates `transfers`; one result per event, in order.
    pub async fn create_transfers(
        &self,
        transfers: Vec<Transfer>,
    ) -> Result<Vec<CreateTransferResult>, NodeError> {
        if let Some(coordinator) = &self.coordinator {
            return coordinator.create_transfers(realtime_ns(), transfers).await;
        }
        let command = Command::CreateTransfers {
            now: realtime_ns(),
            transfers,
        };
        let partition = 0;
        match self.cores.write(partition, command).await? {
            Reply::CreateTransfers(results) => Ok(results),
            other => unreachable!("create_transfers answered {other:?}"),
        }
    }

    /// The accounts among `ids` that exist, in the order of `ids`.
    pub async fn lookup_accounts(&self, ids: Vec<AccountId>) -> Result<Vec<Account>, NodeError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let partition = partition_of(id.0, self.partitions());
            let account = self.cores.read(partition, move |l| l.account(id).copied());
            found.extend(account.await?);
        }
        Ok(found)
    }

    /// The transfers among `ids` that exist, in the order of `ids`.
    pub async fn lookup_transfers(&self, ids: Vec<TransferId>) -> Result<Vec<Transfer>, NodeError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let partition = partition_of(id.0, self.partitions());
            let transfer = self.cores.read(partition, move |l| l.transfer(id).copied());
            found.extend(transfer.await?);
        }
        Ok(found)
    }

    pub async fn get_account_transfers(
        &self,
        filter: AccountFilter,
    ) -> Result<Vec<Transfer>, NodeError> {
        let partition = partition_of(filter.account_id.0, self.partitions());
        self.read_filtered(partition, filter, Ledger::get_account_transfers)
            .await
    }

    pub async fn get_account_balances(
        &self,
        filter: AccountFilter,
    ) -> Result<Vec<AccountBalance>, NodeError> {
        let partition = partition_of(filter.account_id.0, self.partitions());
        self.read_filtered(partition, filter, Ledger::get_account_balances)
            .await
    }

    pub async fn query_accounts(&self, filter: QueryFilter) -> Result<Vec<Account>, NodeError> {
        self.query_every_partition(filter, Ledger::query_accounts, |a| a.timestamp)
            .await
    }

    pub async fn query_transfers(&self, filter: QueryFilter) -> Result<Vec<Transfer>, NodeError> {
        self.query_every_partition(filter, Ledger::query_transfers, |t| t.timestamp)
            .await
    }

    /// Why the node cannot serve every partition, or `None` when it can.
    pub async fn not_ready(&self) -> Result<Option<String>, NodeError> {
        let mut not_serving = Vec::new();
        for partition in 0..self.partitions() {
            let status = self.cores.status(partition).await?;
            if let Some(fatal) = status.fatal {
                not_serving.push(format!("partition {partition}: stopped: {fatal}"));
            } else if !status.leader {
                not_serving.push(format!("partition {partition}: not leading"));
            }
        }
        Ok((!not_serving.is_empty()).then(|| not_serving.join("; ")))
    }

    /// Runs a query on every partition and orders the union as one partition's answer would
    /// be, cut to the filter's limit.
    async fn query_every_partition<T: Send + 'static>(
        &self,
        filter: QueryFilter,
        read: fn(&Ledger, &QueryFilter, &mut Vec<T>),
        timestamp: fn(&T) -> u64,
    ) -> Result<Vec<T>, NodeError> {
        let mut records = Vec::new();
        for partition in 0..self.partitions() {
            records.extend(self.read_filtered(partition, filter, read).await?);
        }
        records.sort_by_key(timestamp);
        if filter.flags.contains(QueryFilterFlags::REVERSED) {
            records.reverse();
        }
        records.truncate(filter.limit as usize);
        Ok(records)
    }

    /// Runs one of the ledger's filtered reads on `partition`'s core.
    async fn read_filtered<F: Send + 'static, T: Send + 'static>(
        &self,
        partition: u32,
        filter: F,
        read: fn(&Ledger, &F, &mut Vec<T>),
    ) -> Result<Vec<T>, NodeError> {
        let found = self.cores.read(partition, move |ledger| {
            let mut out = Vec::new();
            read(ledger, &filter, &mut out);
            out
        });
        found.await
    }
}

/// Cross-partition expiry batches queued for the coordinator; a core skips a pulse's report
/// when the queue is full (the next pulse reports again).
const CROSS_EXPIRIES_QUEUED_MAX: usize = 64;

/// Runs `future` to completion on this thread (start-up work, before any runtime serves).
fn run_blocking<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().build();
    runtime.expect("a current-thread runtime").block_on(future)
}
