//! Running a wire request when the cluster has more than one partition: its records live in
//! many partitions, its session in one (`session_partition`).
//!
//! - A create request goes to the transaction coordinator with its batches; the transaction
//!   that applies them also caches the reply in the session, so a retry after a crash gets the
//!   original reply and nothing is applied twice.
//! - A read runs where its records are ([`Reads`]); its reply is then cached in the session by
//!   an `Answer` log entry, so request numbers and retries behave as for any request.

use kassa_shard::sessions::BATCH_SIZE_LIMIT;
use kassa_shard::{ClientReply, ClientRequest, Command, Reply};
use kassa_wire::multi_batch::{encode_to_vec, MultiBatch};
use kassa_wire::{Account, AccountFilter, AccountId, Operation, QueryFilter, Transfer, TransferId};
use zerocopy::{FromBytes, IntoBytes};

use super::Context;
use crate::coordinator::{ClientBatches, Transactions};
use crate::cores::realtime_ns;
use crate::service::Reads;
use crate::NodeError;

/// Runs `request` (not a register) whose session lives in `partition`.
pub(super) async fn run(
    context: &Context,
    transactions: &Transactions,
    partition: u32,
    request: ClientRequest,
) -> Result<ClientReply, NodeError> {
    let operation = request.operation();
    let now = realtime_ns();
    let batches = batches_of(&request);
    match operation {
        Operation::CreateAccounts => {
            let batches = ClientBatches::Accounts(batches.iter().map(|b| records(b)).collect());
            transactions
                .client_request(now, partition, request, batches)
                .await
        }
        Operation::CreateTransfers => {
            let batches = ClientBatches::Transfers(batches.iter().map(|b| records(b)).collect());
            transactions
                .client_request(now, partition, request, batches)
                .await
        }
        _ => {
            let mut results = Vec::with_capacity(batches.len());
            for batch in &batches {
                results.push(read_batch(&context.reads, operation, batch).await?);
            }
            let slices: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
            let body = encode_to_vec(operation.result_size(), &slices);
            let body = body.expect("a validated request's results fit one message");
            let command = Command::Answer {
                now,
                request: Box::new(*request.header()),
                body,
            };
            match context.queues.write(partition, command).await? {
                Reply::Client(reply) => Ok(reply),
                other => unreachable!("an answer answered {other:?}"),
            }
        }
    }
}

/// The batches of a validated request's multi-batch body.
fn batches_of(request: &ClientRequest) -> Vec<Vec<u8>> {
    let operation = request.operation();
    let event_max = if operation.is_batchable() {
        operation.event_max(BATCH_SIZE_LIMIT as usize)
    } else {
        1
    };
    let decoded = MultiBatch::decode(request.body(), operation.event_size(), event_max);
    let decoded = decoded.expect("the body was validated when the request was built");
    decoded.batches().map(<[u8]>::to_vec).collect()
}

/// One read batch's results, as bytes.
async fn read_batch(
    reads: &Reads,
    operation: Operation,
    batch: &[u8],
) -> Result<Vec<u8>, NodeError> {
    Ok(match operation {
        Operation::LookupAccounts => {
            let ids: Vec<AccountId> = records(batch);
            reads.lookup_accounts(ids).await?.as_bytes().to_vec()
        }
        Operation::LookupTransfers => {
            let ids: Vec<TransferId> = records(batch);
            reads.lookup_transfers(ids).await?.as_bytes().to_vec()
        }
        Operation::GetAccountTransfers => {
            let filter = one::<AccountFilter>(batch);
            reads
                .get_account_transfers(filter)
                .await?
                .as_bytes()
                .to_vec()
        }
        Operation::GetAccountBalances => {
            let filter = one::<AccountFilter>(batch);
            reads
                .get_account_balances(filter)
                .await?
                .as_bytes()
                .to_vec()
        }
        Operation::QueryAccounts => {
            let filter = one::<QueryFilter>(batch);
            reads.query_accounts(filter).await?.as_bytes().to_vec()
        }
        Operation::QueryTransfers => {
            let filter = one::<QueryFilter>(batch);
            reads.query_transfers(filter).await?.as_bytes().to_vec()
        }
        Operation::Register | Operation::CreateAccounts | Operation::CreateTransfers => {
            unreachable!("{} is not a read", operation.name())
        }
    })
}

/// Copies a batch's records out of (possibly unaligned) bytes; the length was validated.
pub(super) fn records<T: FromBytes + IntoBytes + Copy>(batch: &[u8]) -> Vec<T> {
    assert_eq!(batch.len() % size_of::<T>(), 0);
    let mut out = T::new_vec_zeroed(batch.len() / size_of::<T>()).expect("batch-sized");
    out.as_mut_bytes().copy_from_slice(batch);
    out
}

/// The one filter of a query batch (validated: exactly one).
fn one<T: FromBytes>(batch: &[u8]) -> T {
    T::read_from_bytes(batch).expect("a query batch holds exactly one filter")
}

const _: () = assert!(size_of::<Account>() == 128 && size_of::<Transfer>() == 128);
