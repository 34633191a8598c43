//! The ledger service: every operation the APIs offer, routed to the partitions that own its
//! records. The HTTP API and the wire port both call it, so both answer the same request the
//! same way; they only decode and encode.
//!
//! Writes: with one partition, a batch is that partition's log entry; with more, it goes to the
//! transaction coordinator ([`Transactions`]), which runs it atomically across the partitions
//! it touches. Reads ([`Reads`]) go to the partitions that hold their records: lookups by id to
//! each id's partition, an account's transfers and balances to the account's, queries to every
//! partition (merged in timestamp order).
//!
//! Its futures do not depend on a runtime: they talk to the cores over `async_channel` and
//! `tokio::sync::oneshot`, which work from tokio (HTTP) and from monoio (the wire port's core
//! threads) alike.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kassa_shard::batch_home::CreateBatch;
use kassa_shard::directory::{Bucket, IdKind};
use kassa_shard::{
    ledger_partition, ClientRead, ColdError, Command, Ledger, Placement, PlacementKind, Reply,
};
use kassa_wire::{
    Account, AccountBalance, AccountFilter, AccountId, CreateAccountResult, CreateTransferResult,
    QueryFilter, QueryFilterFlags, Transfer, TransferId,
};

use crate::coordinator::{self, Coordinator, Transactions};
use crate::cores::{realtime_ns, CoreQueues, CoreSetup, Cores, LocalWrite};
use crate::join::join_all;
use crate::partitioning::partition_of;
use crate::rare_path::{self, create_in_shares, InShares};
use crate::NodeError;

/// The node's ledger operations, over its cores.
pub struct Service {
    pub cores: Arc<Cores>,
    pub reads: Reads,
    /// Runs batches across partitions; `None` with one partition, where every batch is local.
    coordinator: Option<Coordinator>,
    /// Create batches across partitions since the node started, over HTTP and the wire.
    pub(crate) across: Arc<BatchesAcross>,
}

/// Create batches across partitions since the node started (`GET /ready`), whichever door
/// they came in by.
#[derive(Debug, Default)]
pub(crate) struct BatchesAcross {
    /// Run in shares (`rare_path`).
    pub in_shares: AtomicU64,
    /// Run by the coordinator.
    pub coordinated: AtomicU64,
}

impl BatchesAcross {
    /// Counts one batch run in shares (`true`) or by the coordinator.
    pub fn count(&self, in_shares: bool) {
        let counter = if in_shares {
            &self.in_shares
        } else {
            &self.coordinated
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long a stop waits for running transactions.
const TRANSACTIONS_DRAIN: Duration = Duration::from_secs(10);
/// Cross-partition expiry batches queued for the coordinator; a core skips a pulse's report
/// when the queue is full (the next pulse reports again).
const CROSS_EXPIRIES_QUEUED_MAX: usize = 64;

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
        let reads = Reads {
            queues: cores.queues(),
            transactions: coordinator.as_ref().map(Coordinator::transactions),
        };
        Ok(Service {
            cores,
            reads,
            coordinator,
            across: Arc::new(BatchesAcross::default()),
        })
    }

    /// Finishes running transactions and stops the cores. `false` when that could not be
    /// done cleanly (a transaction still ran after `TRANSACTIONS_DRAIN`, or something still
    /// holds the cores): the caller should then exit without waiting, as after a crash, which
    /// loses nothing acknowledged.
    pub fn shutdown(self) -> bool {
        if let Some(coordinator) = self.coordinator {
            if !coordinator.shutdown(TRANSACTIONS_DRAIN) {
                tracing::error!(
                    "transactions still running after {TRANSACTIONS_DRAIN:?}; stopping without them"
                );
                return false;
            }
        }
        match Arc::try_unwrap(self.cores) {
            Ok(cores) => {
                cores.shutdown();
                true
            }
            Err(_) => {
                tracing::error!("cores still in use at shutdown");
                false
            }
        }
    }

    pub fn partitions(&self) -> u32 {
        self.cores.partitions()
    }

    /// Under placement by ledger, the partition a batch naming `ledgers` may run in alone:
    /// its first named ledger's (whether it can is checked there, `Ledger::local_transfers`).
    /// `None` under placement by id, or when no event names a ledger.
    fn local_partition(&self, ledgers: impl IntoIterator<Item = u32>) -> Option<u32> {
        local_partition(self.cores.placement(), ledgers)
    }

    /// Runs a batch that is not one partition's in shares (placement by ledger), or gives it
    /// back for the coordinator; counts which (`GET /ready`).
    async fn in_shares(&self, batch: CreateBatch) -> Result<InShares, NodeError> {
        let ran = if self.cores.placement().kind == PlacementKind::ByLedger {
            create_in_shares(&self.cores, realtime_ns(), batch).await?
        } else {
            InShares::NotRunnable(batch)
        };
        match &ran {
            InShares::Ran(_) => self.across.count(true),
            // Placed in one partition after all: no batch across partitions.
            InShares::RanAlone(_) => {}
            InShares::NotRunnable(_) => self.across.count(false),
        }
        Ok(ran)
    }

    /// Create batches across partitions since the node started: run in shares, and run by the
    /// coordinator (`GET /ready`).
    pub fn batches_across(&self) -> (u64, u64) {
        let in_shares = self.across.in_shares.load(Ordering::Relaxed);
        (in_shares, self.across.coordinated.load(Ordering::Relaxed))
    }

    /// The coordinator's queue, when there is more than one partition.
    pub fn transactions(&self) -> Option<Transactions> {
        self.coordinator.as_ref().map(Coordinator::transactions)
    }

    /// Creates `accounts`; one result per event, in order.
    pub async fn create_accounts(
        &self,
        accounts: Vec<Account>,
    ) -> Result<Vec<CreateAccountResult>, NodeError> {
        if accounts.is_empty() {
            // Nothing to create, nothing to log: TigerBeetle answers an empty batch likewise.
            return Ok(Vec::new());
        }
        if let Some(coordinator) = &self.coordinator {
            let mut accounts = accounts;
            if let Some(partition) = self.local_partition(accounts.iter().map(|a| a.ledger)) {
                let command = Command::CreateAccounts {
                    now: realtime_ns(),
                    accounts,
                };
                match self.cores.write_local(partition, command).await? {
                    LocalWrite::Written(Reply::CreateAccounts(results)) => return Ok(results),
                    LocalWrite::NotLocal(Command::CreateAccounts { accounts: back, .. }) => {
                        accounts = back;
                    }
                    other => unreachable!("create_accounts answered {other:?}"),
                }
            }
            match self.in_shares(CreateBatch::Accounts(accounts)).await? {
                InShares::Ran(results) | InShares::RanAlone(results) => {
                    return rare_path::account_results(results)
                }
                InShares::NotRunnable(CreateBatch::Accounts(back)) => accounts = back,
                InShares::NotRunnable(other) => unreachable!("accounts came back as {other:?}"),
            }
            let transactions = coordinator.transactions();
            return transactions.create_accounts(realtime_ns(), accounts).await;
        }
        let command = Command::CreateAccounts {
            now: realtime_ns(),
            accounts,
        };
        match self.cores.write(0, command).await? {
            Reply::CreateAccounts(results) => Ok(results),
            other => unreachable!("create_accounts answered {other:?}"),
        }
    }

    /// Creates `transfers`; one result per event, in order.
    pub async fn create_transfers(
        &self,
        transfers: Vec<Transfer>,
    ) -> Result<Vec<CreateTransferResult>, NodeError> {
        if transfers.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(coordinator) = &self.coordinator {
            let mut transfers = transfers;
            if let Some(partition) = self.local_partition(transfers.iter().map(|t| t.ledger)) {
                let command = Command::CreateTransfers {
                    now: realtime_ns(),
                    transfers,
                };
                match self.cores.write_local(partition, command).await? {
                    LocalWrite::Written(Reply::CreateTransfers(results)) => return Ok(results),
                    LocalWrite::NotLocal(Command::CreateTransfers {
                        transfers: back, ..
                    }) => transfers = back,
                    other => unreachable!("create_transfers answered {other:?}"),
                }
            }
            match self.in_shares(CreateBatch::Transfers(transfers)).await? {
                InShares::Ran(results) | InShares::RanAlone(results) => {
                    return rare_path::transfer_results(results)
                }
                InShares::NotRunnable(CreateBatch::Transfers(back)) => transfers = back,
                InShares::NotRunnable(other) => unreachable!("transfers came back as {other:?}"),
            }
            let transactions = coordinator.transactions();
            return transactions
                .create_transfers(realtime_ns(), transfers)
                .await;
        }
        let command = Command::CreateTransfers {
            now: realtime_ns(),
            transfers,
        };
        match self.cores.write(0, command).await? {
            Reply::CreateTransfers(results) => Ok(results),
            other => unreachable!("create_transfers answered {other:?}"),
        }
    }

    pub async fn lookup_accounts(&self, ids: Vec<AccountId>) -> Result<Vec<Account>, NodeError> {
        self.reads.lookup_accounts(ids).await
    }

    pub async fn lookup_transfers(&self, ids: Vec<TransferId>) -> Result<Vec<Transfer>, NodeError> {
        self.reads.lookup_transfers(ids).await
    }

    pub async fn get_account_transfers(
        &self,
        filter: AccountFilter,
    ) -> Result<Vec<Transfer>, NodeError> {
        self.reads.get_account_transfers(filter).await
    }

    pub async fn get_account_balances(
        &self,
        filter: AccountFilter,
    ) -> Result<Vec<AccountBalance>, NodeError> {
        self.reads.get_account_balances(filter).await
    }

    pub async fn query_accounts(&self, filter: QueryFilter) -> Result<Vec<Account>, NodeError> {
        self.reads.query_accounts(filter).await
    }

    pub async fn query_transfers(&self, filter: QueryFilter) -> Result<Vec<Transfer>, NodeError> {
        self.reads.query_transfers(filter).await
    }

    /// Why the node cannot serve every partition, or `None` when it can.
    pub async fn not_ready(&self) -> Result<Option<String>, NodeError> {
        let mut not_serving = Vec::new();
        for partition in 0..self.partitions() {
            let status = self.cores.status(partition).await?;
            if let Some(fatal) = status.fatal {
                tracing::error!(partition, %fatal, "partition stopped");
                not_serving.push(format!(
                    "partition {partition}: stopped on a fault (see the node's log)"
                ));
            } else if !status.leader {
                not_serving.push(format!("partition {partition}: not leading"));
            }
        }
        Ok((!not_serving.is_empty()).then(|| not_serving.join("; ")))
    }

    /// Transactions across partitions the partitions still remember (home records and
    /// participants' closed transactions): each is forgotten once resolved everywhere.
    pub async fn transactions_remembered(&self) -> Result<u64, NodeError> {
        let mut remembered = 0;
        for partition in 0..self.partitions() {
            remembered += self
                .cores
                .inspect(partition, |ledger| {
                    let closed = ledger.participant().closed_count();
                    (ledger.home_records().len() + closed) as u64
                })
                .await?;
        }
        Ok(remembered)
    }

    /// The id directory's buckets leased, and released, by every partition's homes (see
    /// `kassa_shard::directory::Bucket`).
    pub async fn lease_buckets(&self) -> Result<(u64, u64), NodeError> {
        let (mut leased, mut released) = (0, 0);
        for partition in 0..self.partitions() {
            let (l, r) = self
                .cores
                .inspect(partition, |ledger| {
                    let homes = ledger.id_homes();
                    let buckets = IdKind::ALL
                        .iter()
                        .flat_map(|kind| homes.directory(*kind).buckets().iter());
                    buckets.fold((0u64, 0u64), |(l, r), bucket| match bucket {
                        Bucket::Leased { .. } => (l + 1, r),
                        Bucket::Released { .. } => (l, r + 1),
                        Bucket::Sole { .. } | Bucket::Mixed => (l, r),
                    })
                })
                .await?;
            leased += l;
            released += r;
        }
        Ok((leased, released))
    }
}

/// The ledger's reads, routed to the partitions that hold their records. Cloneable: the wire
/// port's connections each hold one.
///
/// A read of one partition sees whole transactions: a coordinator's transaction holds the
/// partition's lock until it applied there, and an intent holds its partition's reads until it
/// resolves. A read of several partitions runs between two of the coordinator's transactions
/// ([`Transactions::read_whole`]) and again if an intent's effects were stored in one of them
/// meanwhile (`Reads::whole`); read one after the other without that, a reader could see a
/// batch's events of one ledger and not yet those of another.
#[derive(Clone)]
pub struct Reads {
    queues: CoreQueues,
    /// The coordinator, with more than one partition.
    transactions: Option<Transactions>,
}

impl Reads {
    fn partitions(&self) -> u32 {
        self.queues.partitions()
    }

    /// The accounts among `ids` that exist, in the order of `ids`: one read per partition.
    pub async fn lookup_accounts(&self, ids: Vec<AccountId>) -> Result<Vec<Account>, NodeError> {
        let found = self
            .lookup(ids.iter().map(|id| id.0).collect(), false, |ledger, id| {
                Ok(ledger.account(AccountId(id)).copied())
            })
            .await?;
        Ok(found)
    }

    /// The transfers among `ids` that exist, in the order of `ids`: each from its id's home,
    /// the cold ones read ahead of the lookup so that it blocks no core.
    pub async fn lookup_transfers(&self, ids: Vec<TransferId>) -> Result<Vec<Transfer>, NodeError> {
        let found = self
            .lookup(ids.iter().map(|id| id.0).collect(), true, |ledger, id| {
                ledger.transfer(TransferId(id))
            })
            .await?;
        Ok(found)
    }

    /// Looks every id up in its partition; the records found, in the order of `ids`. With
    /// `transfers`, what the lookups read from the cold runs is read ahead first.
    async fn lookup<T: Send + 'static>(
        &self,
        ids: Vec<u128>,
        transfers: bool,
        find: LedgerLookup<T>,
    ) -> Result<Vec<T>, NodeError> {
        let mut by_partition: BTreeMap<u32, Vec<(usize, u128)>> = BTreeMap::new();
        let by_ledger = self.queues.placement().kind == PlacementKind::ByLedger;
        for (index, id) in ids.iter().enumerate() {
            if by_ledger {
                // An id says nothing of its ledger: every partition is asked.
                for partition in 0..self.partitions() {
                    let wanted = by_partition.entry(partition).or_default();
                    wanted.push((index, *id));
                }
                continue;
            }
            let partition = partition_of(*id, self.partitions());
            by_partition
                .entry(partition)
                .or_default()
                .push((index, *id));
        }
        let partitions_read: Vec<u32> = by_partition.keys().copied().collect();
        let queues = self.queues.clone();
        let count = ids.len();
        let read = move || {
            let (queues, by_partition) = (queues.clone(), by_partition.clone());
            lookup_in(queues, by_partition, count, transfers, find)
        };
        self.whole(partitions_read, read).await
    }

    /// Runs `read` of `partitions` so that it sees whole transactions. `read` gives, with what
    /// it found, each partition's count of intents stored (`Ledger::resolutions`) as it read
    /// it, in the order of `partitions`. A read of several runs between two of the
    /// coordinator's transactions, and again as long as an intent's effects were stored in one
    /// of them since it was read: one partition read before a transaction's intent came and
    /// another after it resolved would show half of it.
    async fn whole<R, F>(
        &self,
        partitions: Vec<u32>,
        read: impl Fn() -> F + Send + 'static,
    ) -> Result<R, NodeError>
    where
        R: Send + 'static,
        F: std::future::Future<Output = Result<(Vec<u64>, R), NodeError>> + Send + 'static,
    {
        if partitions.len() <= 1 {
            return read().await.map(|(_, found)| found);
        }
        let queues = self.queues.clone();
        let validated = async move {
            for _ in 0..WHOLE_READ_ATTEMPTS_MAX {
                let (counted, found) = read().await?;
                if resolutions(&queues, &partitions).await? == counted {
                    return Ok(found);
                }
            }
            Err(NodeError::Transaction(format!(
                "a read of {} partitions met a transaction across them {} times",
                partitions.len(),
                WHOLE_READ_ATTEMPTS_MAX
            )))
        };
        match &self.transactions {
            Some(transactions) => transactions.read_whole(validated).await,
            None => validated.await,
        }
    }

    pub async fn get_account_transfers(
        &self,
        filter: AccountFilter,
    ) -> Result<Vec<Transfer>, NodeError> {
        let filtered = ClientRead::AccountTransfers(filter);
        self.read_account(filter, filtered, Ledger::get_account_transfers)
            .await
    }

    pub async fn get_account_balances(
        &self,
        filter: AccountFilter,
    ) -> Result<Vec<AccountBalance>, NodeError> {
        let filtered = ClientRead::AccountBalances(filter);
        self.read_account(filter, filtered, Ledger::get_account_balances)
            .await
    }

    /// One of an account's filtered reads, in the partition that holds the account: its id's
    /// under placement by id. Under placement by ledger the id does not say where the account
    /// is: every partition is read, and only the one holding the account (with everything of
    /// its ledger, so whole transactions) finds anything.
    async fn read_account<T: Send + 'static>(
        &self,
        filter: AccountFilter,
        filtered: ClientRead,
        read: LedgerRead<AccountFilter, T>,
    ) -> Result<Vec<T>, NodeError> {
        if self.queues.placement().kind != PlacementKind::ByLedger {
            let partition = partition_of(filter.account_id.0, self.partitions());
            return read_filtered(&self.queues, partition, filter, Some(filtered), read).await;
        }
        let reads = (0..self.partitions()).map(|partition| {
            read_filtered(
                &self.queues,
                partition,
                filter,
                Some(filtered.clone()),
                read,
            )
        });
        for found in join_all(reads).await {
            let found = found?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
        Ok(Vec::new())
    }

    pub async fn query_accounts(&self, filter: QueryFilter) -> Result<Vec<Account>, NodeError> {
        self.query_every_partition(filter, None, query_accounts, |a| a.timestamp)
            .await
    }

    pub async fn query_transfers(&self, filter: QueryFilter) -> Result<Vec<Transfer>, NodeError> {
        let filtered = Some(ClientRead::QueryTransfers(filter));
        self.query_every_partition(filter, filtered, Ledger::query_transfers, |t| t.timestamp)
            .await
    }

    /// Runs a query on every partition and orders the union as one partition's answer would
    /// be, cut to the filter's limit.
    async fn query_every_partition<T: Send + 'static>(
        &self,
        filter: QueryFilter,
        filtered: Option<ClientRead>,
        read: LedgerRead<QueryFilter, T>,
        timestamp: fn(&T) -> u64,
    ) -> Result<Vec<T>, NodeError> {
        let queues = self.queues.clone();
        // Under placement by ledger a query of one ledger reads that ledger's partition only.
        let placement = self.queues.placement();
        let partitions: Vec<u32> = match local_partition(placement, [filter.ledger]) {
            Some(partition) => vec![partition],
            None => (0..self.partitions()).collect(),
        };
        let partitions_read = partitions.clone();
        let query = move || {
            let (queues, partitions) = (queues.clone(), partitions.clone());
            let filtered = filtered.clone();
            async move {
                let reads = (partitions.into_iter()).map(|partition| {
                    read_counted(&queues, partition, filter, filtered.clone(), read)
                });
                let (mut counted, mut records) = (Vec::new(), Vec::new());
                for found in join_all(reads).await {
                    let (count, found) = found?;
                    counted.push(count);
                    records.extend(found);
                }
                records.sort_by_key(timestamp);
                if filter.flags.contains(QueryFilterFlags::REVERSED) {
                    records.reverse();
                }
                records.truncate(filter.limit as usize);
                Ok((counted, records))
            }
        };
        self.whole(partitions_read, query).await
    }
}

/// How often a read of several partitions runs again because an intent's effects were stored
/// in one of them while it read, before it gives up.
const WHOLE_READ_ATTEMPTS_MAX: usize = 1000;

/// How many intents' effects each of `partitions` stored so far (`Ledger::resolutions`).
async fn resolutions(queues: &CoreQueues, partitions: &[u32]) -> Result<Vec<u64>, NodeError> {
    let reads = (partitions.iter()).map(|partition| queues.read(*partition, Ledger::resolutions));
    join_all(reads).await.into_iter().collect()
}

/// Finds the ids `by_partition` names for each partition there; the `count` ids' records that
/// exist, in order, with each partition's count of intents stored as it was read (in
/// partition order).
async fn lookup_in<T: Send + 'static>(
    queues: CoreQueues,
    by_partition: BTreeMap<u32, Vec<(usize, u128)>>,
    count: usize,
    transfers: bool,
    find: LedgerLookup<T>,
) -> Result<(Vec<u64>, Vec<T>), NodeError> {
    let reads = by_partition.into_iter().map(|(partition, wanted)| {
        let ids: Arc<[u128]> = wanted.iter().map(|(_, id)| *id).collect();
        let read = move |ledger: &Ledger| {
            let found = wanted
                .iter()
                .map(|(index, id)| Ok((*index, find(ledger, *id)?)));
            let found: Result<Vec<_>, ColdError> = found.collect();
            found.map(|found| (ledger.resolutions(), found))
        };
        let queues = queues.clone();
        async move {
            let read = match transfers {
                true => {
                    let lookup = ClientRead::LookupTransfers(ids);
                    queues.read_prefetched(partition, lookup, read).await?
                }
                false => queues.read(partition, read).await?,
            };
            read.map_err(|error| NodeError::ColdRead { partition, error })
        }
    });
    let mut found: Vec<Option<T>> = (0..count).map(|_| None).collect();
    let mut counted = Vec::new();
    for read in join_all(reads).await {
        let (resolutions, read) = read?;
        counted.push(resolutions);
        for (index, record) in read {
            // A record is stored in one partition; the others find nothing.
            if record.is_some() {
                found[index] = record;
            }
        }
    }
    Ok((counted, found.into_iter().flatten().collect()))
}

/// Under placement by ledger with several partitions, the partition of the first ledger
/// named (not 0).
pub fn local_partition(
    placement: Placement,
    ledgers: impl IntoIterator<Item = u32>,
) -> Option<u32> {
    if placement.kind != PlacementKind::ByLedger || placement.partitions <= 1 {
        return None;
    }
    let ledger = ledgers.into_iter().find(|ledger| *ledger != 0)?;
    Some(ledger_partition(ledger, placement.partitions))
}

/// A lookup of one id in a partition's ledger, which may meet a record its runs cannot give.
type LedgerLookup<T> = fn(&Ledger, u128) -> Result<Option<T>, ColdError>;

/// A read of a partition's ledger by filter, which may meet an entry of its history that its
/// runs cannot give.
type LedgerRead<F, T> = fn(&Ledger, &F, &mut Vec<T>) -> Result<(), ColdError>;

// Accounts stay in memory: their query cannot fail.
fn query_accounts(l: &Ledger, f: &QueryFilter, out: &mut Vec<Account>) -> Result<(), ColdError> {
    l.query_accounts(f, out);
    Ok(())
}

/// Runs one of the ledger's filtered reads on `partition`'s core.
async fn read_filtered<F: Send + 'static, T: Send + 'static>(
    queues: &CoreQueues,
    partition: u32,
    filter: F,
    filtered: Option<ClientRead>,
    read: LedgerRead<F, T>,
) -> Result<Vec<T>, NodeError> {
    let found = read_counted(queues, partition, filter, filtered, read).await?;
    Ok(found.1)
}

/// [`read_filtered`], with the partition's count of intents stored as it was read
/// (`Ledger::resolutions`).
async fn read_counted<F: Send + 'static, T: Send + 'static>(
    queues: &CoreQueues,
    partition: u32,
    filter: F,
    filtered: Option<ClientRead>,
    read: LedgerRead<F, T>,
) -> Result<(u64, Vec<T>), NodeError> {
    let read = move |ledger: &Ledger| {
        let mut out = Vec::new();
        let read = read(ledger, &filter, &mut out);
        read.map(|()| (ledger.resolutions(), out))
    };
    // What it reads by filter is read ahead, so that the partition's core does not wait.
    let found = match filtered {
        Some(filtered) => queues.read_prefetched(partition, filtered, read).await,
        None => queues.read(partition, read).await,
    };
    found?.map_err(|error| NodeError::ColdRead { partition, error })
}

/// Runs `future` to completion on this thread (start-up work, before any runtime serves).
fn run_blocking<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().build();
    runtime.expect("a current-thread runtime").block_on(future)
}
