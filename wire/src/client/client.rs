//! [`Client`], the async driver: it connects, registers, sends each request built by
//! `session.rs`, and keeps resending the same bytes (reconnecting with bounded backoff) until a
//! reply, an eviction, a protocol violation or the call's deadline.
//!
//! Order that matters: a request is built and sealed once (`Session::begin_request`), then sent
//! any number of times; it is finished only by its reply. A call that returns early (deadline,
//! or its future dropped) leaves the request in flight, and the next call finishes it first,
//! because the next request's `parent` is that reply's `context` and its number must follow.
//! So a request that may have been applied is never renumbered: the server answers its resends
//! from its reply cache, exactly once. The connection is taken out of the client while in use,
//! so one interrupted mid-frame is dropped rather than read from again.

use std::time::Duration;

use tokio::time::{sleep, timeout_at, Instant};
use zerocopy::IntoBytes;

use super::config::ClientConfig;
use super::connection::{Connection, ReadError};
use super::error::{ClientError, Failure, ProtocolError};
use super::results;
use super::session::{Received, Session};
use crate::{
    Account, AccountBalance, AccountFilter, AccountId, CreateAccountResult, CreateTransferResult,
    EvictionReason, Operation, QueryFilter, Transfer, TransferId,
};

/// A client of one cluster: one session, one request in flight at a time.
///
/// Every call takes `&mut self`, so the protocol's rule of one request in flight per client
/// holds by construction. A client is `Send`: move it between tasks freely. For parallelism,
/// open several clients (each registers its own session); a server interleaves their requests.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    session: Session,
    connection: Option<Connection>,
    /// Which of `config.addresses` the next connection goes to.
    address_index: usize,
    /// Set once the client can no longer be used.
    terminal: Option<Terminal>,
}

#[derive(Clone, Copy, Debug)]
enum Terminal {
    Evicted(EvictionReason),
    Protocol(ProtocolError),
}

/// How one send-and-wait ended.
enum Attempt {
    Reply(Vec<u8>),
    Failed(Failure),
    Terminal(Terminal),
}

impl Client {
    /// Connects to the cluster and registers a session (request 0), within `config.deadline`.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let client_id = match config.client_id {
            Some(id) => id,
            None => random_client_id()?,
        };
        let session = Session::new(config.cluster, client_id, config.release);
        let mut client = Client {
            config,
            session,
            connection: None,
            address_index: 0,
            terminal: None,
        };
        client.session.begin_register();
        client.finish_inflight().await?;
        assert!(client.session.session() > 0);
        Ok(client)
    }

    /// The client's id (the key of its session on the server).
    pub fn id(&self) -> u128 {
        self.session.client()
    }

    /// The session number the server assigned at registration.
    pub fn session(&self) -> u64 {
        self.session.session()
    }

    /// The largest request body the server accepts, from the register reply.
    pub fn batch_size_limit(&self) -> u32 {
        // connect() returns a client only after the register reply.
        self.session.batch_size_limit().unwrap_or(0)
    }

    /// The most events one call of `operation` may carry (larger batches are refused with
    /// [`ClientError::BatchTooLarge`], never split); 1 for the filter operations.
    pub fn events_max(&self, operation: Operation) -> usize {
        assert!(operation.is_multi_batch());
        if !operation.is_batchable() {
            return 1;
        }
        operation.event_max(self.batch_size_limit() as usize)
    }

    /// Creates `accounts`; one result per account, in order.
    pub async fn create_accounts(
        &mut self,
        accounts: &[Account],
    ) -> Result<Vec<CreateAccountResult>, ClientError> {
        let operation = Operation::CreateAccounts;
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let body = self.submit(operation, accounts.as_bytes()).await?;
        self.decoded(results::create_results(operation, &body, accounts.len()))
    }

    /// Creates `transfers`; one result per transfer, in order.
    pub async fn create_transfers(
        &mut self,
        transfers: &[Transfer],
    ) -> Result<Vec<CreateTransferResult>, ClientError> {
        let operation = Operation::CreateTransfers;
        if transfers.is_empty() {
            return Ok(Vec::new());
        }
        let body = self.submit(operation, transfers.as_bytes()).await?;
        self.decoded(results::create_results(operation, &body, transfers.len()))
    }

    /// The accounts among `ids` that exist, in the order of `ids`.
    pub async fn lookup_accounts(
        &mut self,
        ids: &[AccountId],
    ) -> Result<Vec<Account>, ClientError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.records(Operation::LookupAccounts, ids.as_bytes())
            .await
    }

    /// The transfers among `ids` that exist, in the order of `ids`.
    pub async fn lookup_transfers(
        &mut self,
        ids: &[TransferId],
    ) -> Result<Vec<Transfer>, ClientError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.records(Operation::LookupTransfers, ids.as_bytes())
            .await
    }

    /// At most `filter.limit` transfers of `filter.account_id`.
    pub async fn get_account_transfers(
        &mut self,
        filter: &AccountFilter,
    ) -> Result<Vec<Transfer>, ClientError> {
        self.records(Operation::GetAccountTransfers, filter.as_bytes())
            .await
    }

    /// At most `filter.limit` historical balances of `filter.account_id` (`history` accounts).
    pub async fn get_account_balances(
        &mut self,
        filter: &AccountFilter,
    ) -> Result<Vec<AccountBalance>, ClientError> {
        self.records(Operation::GetAccountBalances, filter.as_bytes())
            .await
    }

    /// At most `filter.limit` accounts matching `filter`.
    pub async fn query_accounts(
        &mut self,
        filter: &QueryFilter,
    ) -> Result<Vec<Account>, ClientError> {
        self.records(Operation::QueryAccounts, filter.as_bytes())
            .await
    }

    /// At most `filter.limit` transfers matching `filter`.
    pub async fn query_transfers(
        &mut self,
        filter: &QueryFilter,
    ) -> Result<Vec<Transfer>, ClientError> {
        self.records(Operation::QueryTransfers, filter.as_bytes())
            .await
    }

    async fn records<T: zerocopy::FromBytes>(
        &mut self,
        operation: Operation,
        batch: &[u8],
    ) -> Result<Vec<T>, ClientError> {
        let body = self.submit(operation, batch).await?;
        self.decoded(results::records(operation, &body))
    }

    /// A decoding failure is a protocol violation: terminal, like the others.
    fn decoded<T>(&mut self, decoded: Result<T, ProtocolError>) -> Result<T, ClientError> {
        decoded.map_err(|error| {
            self.terminal = Some(Terminal::Protocol(error));
            ClientError::Protocol(error)
        })
    }

    /// Sends one batch of `operation` and returns the reply body.
    async fn submit(&mut self, operation: Operation, batch: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.check_usable()?;
        if self.session.inflight().is_some() {
            // Left by a call that timed out or was cancelled: finish it first (its result
            // is dropped; the caller was told the outcome is unknown).
            self.finish_inflight().await?;
        }
        self.session.begin_request(operation, &[batch])?;
        self.finish_inflight().await
    }

    fn check_usable(&self) -> Result<(), ClientError> {
        match self.terminal {
            None => Ok(()),
            Some(Terminal::Evicted(reason)) => Err(ClientError::Evicted { reason }),
            Some(Terminal::Protocol(error)) => Err(ClientError::Protocol(error)),
        }
    }

    /// Sends the request in flight until its reply arrives, or the deadline passes.
    async fn finish_inflight(&mut self) -> Result<Vec<u8>, ClientError> {
        assert!(self.session.inflight().is_some());
        let deadline = Instant::now() + self.config.deadline;
        let mut request_timeout = self.config.request_timeout;
        let mut reconnect_delay = self.config.reconnect_delay_min;
        let mut attempts: u32 = 0;
        loop {
            let failure = match self.attempt(deadline, request_timeout, &mut attempts).await {
                Attempt::Reply(body) => return Ok(body),
                Attempt::Terminal(terminal) => {
                    self.terminal = Some(terminal);
                    return Err(self.check_usable().expect_err("terminal"));
                }
                Attempt::Failed(failure) => failure,
            };
            assert!(self.connection.is_none(), "a failed connection is dropped");
            if matches!(failure, Failure::NoReply { .. }) {
                request_timeout = (request_timeout * 2).min(self.config.request_timeout_max);
            }
            self.address_index = (self.address_index + 1) % self.config.addresses.len();
            if Instant::now() + reconnect_delay >= deadline {
                return Err(ClientError::Timeout {
                    deadline: self.config.deadline,
                    attempts,
                    last_failure: failure,
                });
            }
            sleep(reconnect_delay).await;
            reconnect_delay = (reconnect_delay * 2).min(self.config.reconnect_delay_max);
        }
    }

    /// Connects if needed, sends the request in flight, and reads frames until its reply or a
    /// failure. The connection goes back into the client only after a reply.
    async fn attempt(
        &mut self,
        deadline: Instant,
        request_timeout: Duration,
        attempts: &mut u32,
    ) -> Attempt {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => match self.open(deadline).await {
                Ok(connection) => connection,
                Err(failure) => return Attempt::Failed(failure),
            },
        };
        let address = connection.address();
        let attempt_deadline = (Instant::now() + request_timeout).min(deadline);
        let no_reply = Failure::NoReply {
            address,
            timeout: request_timeout,
        };
        let message = self
            .session
            .inflight()
            .expect("a request in flight")
            .message();
        *attempts += 1;
        match timeout_at(attempt_deadline, connection.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Attempt::Failed(Failure::Connection { address, source }),
            Err(_) => return Attempt::Failed(no_reply),
        }
        loop {
            let (header, body) = match timeout_at(attempt_deadline, connection.read_frame()).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(error)) => return Attempt::Failed(read_failure(address, error)),
                Err(_) => return Attempt::Failed(no_reply),
            };
            match self.session.on_frame(&header, body) {
                Received::Ignored => continue,
                Received::Reconnect(error) => {
                    return Attempt::Failed(Failure::Frame { address, error })
                }
                Received::Reply { body, .. } => {
                    self.connection = Some(connection);
                    return Attempt::Reply(body);
                }
                Received::Evicted(reason) => return Attempt::Terminal(Terminal::Evicted(reason)),
                Received::Violation(error) => return Attempt::Terminal(Terminal::Protocol(error)),
            }
        }
    }

    async fn open(&self, deadline: Instant) -> Result<Connection, Failure> {
        let address = self.config.addresses[self.address_index];
        match timeout_at(deadline, Connection::open(address)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(source)) => Err(Failure::Connect { address, source }),
            Err(_) => Err(Failure::ConnectTimeout { address }),
        }
    }
}

fn read_failure(address: std::net::SocketAddr, error: ReadError) -> Failure {
    match error {
        ReadError::Closed => Failure::Closed { address },
        ReadError::Io(source) => Failure::Connection { address, source },
        ReadError::Frame(error) => Failure::Frame { address, error },
    }
}

/// A random, non-zero client id from the operating system's generator.
fn random_client_id() -> Result<u128, ClientError> {
    loop {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).map_err(|error| ClientError::Io {
            context: "drawing a random client id",
            source: error.into(),
        })?;
        let id = u128::from_le_bytes(bytes);
        if id != 0 {
            return Ok(id);
        }
    }
}

const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Client>();
};
