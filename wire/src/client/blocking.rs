//! [`BlockingClient`]: the async [`Client`] driven on a private current-thread tokio runtime,
//! for programs without an async runtime (`kassactl`). No protocol logic lives here.
//!
//! Invariant: each call blocks the calling thread until the inner call returns; calling it
//! from inside a tokio runtime panics (tokio forbids blocking there): use [`Client`] instead.

use tokio::runtime::{Builder, Runtime};

use super::client::Client;
use super::config::ClientConfig;
use super::error::ClientError;
use crate::{
    Account, AccountBalance, AccountFilter, AccountId, CreateAccountResult, CreateTransferResult,
    Operation, QueryFilter, Transfer, TransferId,
};

/// A [`Client`] with blocking calls; the same semantics, errors and retries.
#[derive(Debug)]
pub struct BlockingClient {
    runtime: Runtime,
    client: Client,
}

impl BlockingClient {
    /// Connects and registers, as [`Client::connect`].
    pub fn connect(config: ClientConfig) -> Result<BlockingClient, ClientError> {
        let runtime = Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| ClientError::Io {
                context: "starting the client's runtime",
                source,
            })?;
        let client = runtime.block_on(Client::connect(config))?;
        Ok(BlockingClient { runtime, client })
    }

    pub fn id(&self) -> u128 {
        self.client.id()
    }

    pub fn session(&self) -> u64 {
        self.client.session()
    }

    pub fn batch_size_limit(&self) -> u32 {
        self.client.batch_size_limit()
    }

    pub fn events_max(&self, operation: Operation) -> usize {
        self.client.events_max(operation)
    }

    pub fn create_accounts(
        &mut self,
        accounts: &[Account],
    ) -> Result<Vec<CreateAccountResult>, ClientError> {
        self.runtime.block_on(self.client.create_accounts(accounts))
    }

    pub fn create_transfers(
        &mut self,
        transfers: &[Transfer],
    ) -> Result<Vec<CreateTransferResult>, ClientError> {
        self.runtime
            .block_on(self.client.create_transfers(transfers))
    }

    pub fn lookup_accounts(&mut self, ids: &[AccountId]) -> Result<Vec<Account>, ClientError> {
        self.runtime.block_on(self.client.lookup_accounts(ids))
    }

    pub fn lookup_transfers(&mut self, ids: &[TransferId]) -> Result<Vec<Transfer>, ClientError> {
        self.runtime.block_on(self.client.lookup_transfers(ids))
    }

    pub fn get_account_transfers(
        &mut self,
        filter: &AccountFilter,
    ) -> Result<Vec<Transfer>, ClientError> {
        self.runtime
            .block_on(self.client.get_account_transfers(filter))
    }

    pub fn get_account_balances(
        &mut self,
        filter: &AccountFilter,
    ) -> Result<Vec<AccountBalance>, ClientError> {
        self.runtime
            .block_on(self.client.get_account_balances(filter))
    }

    pub fn query_accounts(&mut self, filter: &QueryFilter) -> Result<Vec<Account>, ClientError> {
        self.runtime.block_on(self.client.query_accounts(filter))
    }

    pub fn query_transfers(&mut self, filter: &QueryFilter) -> Result<Vec<Transfer>, ClientError> {
        self.runtime.block_on(self.client.query_transfers(filter))
    }
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<BlockingClient>();
};
