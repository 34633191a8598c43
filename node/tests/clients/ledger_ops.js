// TigerBeetle's official Node.js client against a Kassa node: every operation, checked.
//
// Usage: node ledger_ops.js <cluster id> <wire address>
// Exits non-zero (with the failing check) if any result differs from TigerBeetle's semantics.
// Driven by node/tests/t08_wire_clients.rs, which checks afterwards, over HTTP, that what this
// script created is there and balanced. Ids and the ledger differ from ledger_ops.py's, so
// both can run against one node.
"use strict";

const tb = require("tigerbeetle-node");

const LEDGER = 800;
const A = (n) => 5000n + BigInt(n); // account ids
const T = (n) => 6000n + BigInt(n); // transfer ids

function account(fields) {
  return {
    id: 0n, debits_pending: 0n, debits_posted: 0n, credits_pending: 0n, credits_posted: 0n,
    user_data_128: 0n, user_data_64: 0n, user_data_32: 0, reserved: 0, ledger: LEDGER,
    code: 10, flags: 0, timestamp: 0n, ...fields,
  };
}

function transfer(fields) {
  return {
    id: 0n, debit_account_id: 0n, credit_account_id: 0n, amount: 0n, pending_id: 0n,
    user_data_128: 0n, user_data_64: 0n, user_data_32: 0, timeout: 0, ledger: LEDGER, code: 1,
    flags: 0, timestamp: 0n, ...fields,
  };
}

function accountFilter(fields) {
  return {
    account_id: 0n, user_data_128: 0n, user_data_64: 0n, user_data_32: 0, code: 0,
    timestamp_min: 0n, timestamp_max: 0n, limit: 100,
    flags: tb.AccountFilterFlags.debits | tb.AccountFilterFlags.credits, ...fields,
  };
}

function queryFilter(fields) {
  return {
    user_data_128: 0n, user_data_64: 0n, user_data_32: 0, ledger: LEDGER, code: 0,
    timestamp_min: 0n, timestamp_max: 0n, limit: 10,
    flags: tb.QueryFilterFlags.none, ...fields,
  };
}

function check(condition, what) {
  if (!condition) {
    throw new Error(`check failed: ${what}`);
  }
}

const ids = (records) => records.map((r) => r.id);
const statuses = (results) => results.map((r) => r.status);
const same = (a, b) => JSON.stringify(a, (_, v) => (typeof v === "bigint" ? v.toString() : v)) ===
  JSON.stringify(b, (_, v) => (typeof v === "bigint" ? v.toString() : v));

async function main() {
  const client = tb.createClient({
    cluster_id: BigInt(process.argv[2]),
    replica_addresses: [process.argv[3]],
  });
  try {
    const S = tb.CreateTransferStatus;
    const limited = tb.AccountFlags.debits_must_not_exceed_credits | tb.AccountFlags.history;
    let results = await client.createAccounts([
      account({ id: A(1) }),
      account({ id: A(2) }),
      account({ id: A(3), code: 20, flags: limited }),
      account({ id: A(4), code: 20 }),
    ]);
    check(same(statuses(results), Array(4).fill(tb.CreateAccountStatus.created)), "accounts");
    results = await client.createAccounts([account({ id: A(1) })]);
    check(same(statuses(results), [tb.CreateAccountStatus.exists]), "account exists");

    results = await client.createTransfers([
      transfer({ id: T(1), debit_account_id: A(1), credit_account_id: A(3), amount: 500n }),
      transfer({ id: T(2), debit_account_id: A(1), credit_account_id: A(2), amount: 10n,
        flags: tb.TransferFlags.linked }),
      transfer({ id: T(3), debit_account_id: A(3), credit_account_id: A(2), amount: 1000000n }),
    ]);
    check(same(statuses(results), [S.created, S.linked_event_failed, S.exceeds_credits]),
      `linked chain: ${statuses(results)}`);

    results = await client.createTransfers([
      transfer({ id: T(11), debit_account_id: A(3), credit_account_id: A(2), amount: 200n,
        flags: tb.TransferFlags.pending }),
      transfer({ id: T(12), debit_account_id: A(3), credit_account_id: A(4), amount: 100n,
        flags: tb.TransferFlags.pending }),
    ]);
    check(same(statuses(results), [S.created, S.created]), "pending");
    results = await client.createTransfers([
      transfer({ id: T(13), pending_id: T(11), amount: 150n, ledger: 0, code: 0,
        flags: tb.TransferFlags.post_pending_transfer }),
      transfer({ id: T(14), pending_id: T(12), ledger: 0, code: 0,
        flags: tb.TransferFlags.void_pending_transfer }),
    ]);
    check(same(statuses(results), [S.created, S.created]), `post/void: ${statuses(results)}`);
    results = await client.createTransfers([
      transfer({ id: T(21), debit_account_id: A(3), credit_account_id: A(4),
        amount: tb.amount_max, flags: tb.TransferFlags.balancing_debit }),
    ]);
    check(same(statuses(results), [S.created]), "balancing");

    const found = await client.lookupAccounts([A(4), 999n, A(1), A(3)]);
    check(same(ids(found), [A(4), A(1), A(3)]), "lookup order");
    check(found[2].debits_posted === 500n && found[2].credits_posted === 500n, "A3 balances");
    check(found[0].credits_posted === 350n, "A4 got the balance");
    const transfers = await client.lookupTransfers([T(21), T(2), T(13)]);
    check(same(ids(transfers), [T(21), T(13)]), "lookup transfers");
    check(transfers[0].amount === 350n, "balancing amount");

    const history = await client.getAccountTransfers(accountFilter({ account_id: A(3) }));
    check(same(ids(history), [T(1), T(11), T(12), T(13), T(14), T(21)]), "account transfers");
    const balances = await client.getAccountBalances(accountFilter({ account_id: A(3) }));
    check(balances.length === 6, "balance history");
    check(balances[5].debits_posted === 500n, "last balance");

    const byCode = await client.queryAccounts(queryFilter({ code: 20 }));
    check(same(ids(byCode), [A(3), A(4)]), "query accounts");
    const recent = await client.queryTransfers(queryFilter({ code: 1, limit: 3,
      flags: tb.QueryFilterFlags.reversed }));
    check(same(ids(recent), [T(21), T(14), T(13)]), `query transfers: ${ids(recent)}`);

    const every = await client.lookupAccounts([A(1), A(2), A(3), A(4)]);
    const sum = (field) => every.reduce((total, a) => total + a[field], 0n);
    check(sum("debits_posted") === sum("credits_posted"), "posted balanced");
    check(sum("debits_pending") === sum("credits_pending"), "pending balanced");
    console.log("ledger_ops.js: ok");
  } finally {
    client.destroy();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
