"""TigerBeetle's official Python client against a Kassa node: every operation, checked.

Usage: python ledger_ops.py <cluster id> <wire address>
Exits non-zero (with the failing check) if any result differs from TigerBeetle's semantics.
Driven by node/tests/t08_wire_clients.rs, which checks afterwards, over HTTP, that what this
script created is there and balanced.
"""

import sys

import tigerbeetle as tb

CREATED_ACCOUNT = tb.CreateAccountStatus.CREATED
CREATED = tb.CreateTransferStatus.CREATED


def statuses(results):
    return [r.status for r in results]


def check(condition, what):
    if not condition:
        raise SystemExit(f"check failed: {what}")


def main():
    cluster = int(sys.argv[1])
    address = sys.argv[2]
    with tb.ClientSync(cluster_id=cluster, replica_addresses=address) as client:
        # Accounts: two operating accounts, a limited one, one with history; one duplicate.
        accounts = [
            tb.Account(id=1001, ledger=700, code=10),
            tb.Account(id=1002, ledger=700, code=10),
            tb.Account(
                id=1003,
                ledger=700,
                code=20,
                flags=tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | tb.AccountFlags.HISTORY,
            ),
            tb.Account(id=1004, ledger=700, code=20, user_data_64=77),
        ]
        results = client.create_accounts(accounts)
        check(statuses(results) == [CREATED_ACCOUNT] * 4, f"accounts created: {results}")
        check(all(r.timestamp > 0 for r in results), "account timestamps")
        again = client.create_accounts([tb.Account(id=1001, ledger=700, code=10)])
        check(statuses(again) == [tb.CreateAccountStatus.EXISTS], f"exists: {again}")

        # Single-phase and a linked chain that fails as a whole.
        results = client.create_transfers(
            [
                tb.Transfer(id=2001, debit_account_id=1001, credit_account_id=1003,
                            amount=500, ledger=700, code=1),
                tb.Transfer(id=2002, debit_account_id=1001, credit_account_id=1002,
                            amount=10, ledger=700, code=1, flags=tb.TransferFlags.LINKED),
                tb.Transfer(id=2003, debit_account_id=1003, credit_account_id=1002,
                            amount=10**6, ledger=700, code=1),
            ]
        )
        check(
            statuses(results)
            == [CREATED, tb.CreateTransferStatus.LINKED_EVENT_FAILED,
                tb.CreateTransferStatus.EXCEEDS_CREDITS],
            f"linked chain: {results}",
        )

        # Two-phase: pending, then post part of one, void the other.
        results = client.create_transfers(
            [
                tb.Transfer(id=3001, debit_account_id=1003, credit_account_id=1002,
                            amount=200, ledger=700, code=1, flags=tb.TransferFlags.PENDING),
                tb.Transfer(id=3002, debit_account_id=1003, credit_account_id=1004,
                            amount=100, ledger=700, code=1, flags=tb.TransferFlags.PENDING),
            ]
        )
        check(statuses(results) == [CREATED, CREATED], f"pending: {results}")
        results = client.create_transfers(
            [
                tb.Transfer(id=3003, pending_id=3001, amount=150,
                            flags=tb.TransferFlags.POST_PENDING_TRANSFER),
                tb.Transfer(id=3004, pending_id=3002,
                            flags=tb.TransferFlags.VOID_PENDING_TRANSFER),
            ]
        )
        check(statuses(results) == [CREATED, CREATED], f"post/void: {results}")

        # Balancing: debit 1003 by at most what it has left (500 - 150 = 350).
        results = client.create_transfers(
            [
                tb.Transfer(id=4001, debit_account_id=1003, credit_account_id=1004,
                            amount=tb.AMOUNT_MAX, ledger=700, code=1,
                            flags=tb.TransferFlags.BALANCING_DEBIT),
            ]
        )
        check(statuses(results) == [CREATED], f"balancing: {results}")

        # Lookups, in request order, missing ids left out.
        found = client.lookup_accounts([1004, 999, 1001, 1003])
        check([a.id for a in found] == [1004, 1001, 1003], f"lookup order: {found}")
        by_id = {a.id: a for a in found}
        check(by_id[1003].debits_posted == 500 and by_id[1003].credits_posted == 500,
              f"1003 balances: {by_id[1003]}")
        check(by_id[1003].debits_pending == 0, "1003 pending released")
        check(by_id[1004].credits_posted == 350, f"1004 credited the balance: {by_id[1004]}")
        transfers = client.lookup_transfers([4001, 2002, 3003])
        check([t.id for t in transfers] == [4001, 3003], f"lookup transfers: {transfers}")
        check(transfers[0].amount == 350, f"balancing amount: {transfers[0]}")

        # An account's transfers and its balance history.
        account_filter = tb.AccountFilter(
            account_id=1003, user_data_128=0, user_data_64=0, user_data_32=0, code=0,
            timestamp_min=0, timestamp_max=0, limit=100,
            flags=tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS,
        )
        history = client.get_account_transfers(account_filter)
        check([t.id for t in history] == [2001, 3001, 3002, 3003, 3004, 4001],
              f"account transfers: {[t.id for t in history]}")
        account_filter.flags |= tb.AccountFilterFlags.REVERSED
        account_filter.limit = 2
        latest = client.get_account_transfers(account_filter)
        check([t.id for t in latest] == [4001, 3004], f"reversed, limited: {latest}")
        account_filter.flags = tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS
        account_filter.limit = 100
        balances = client.get_account_balances(account_filter)
        check(len(balances) == 6, f"balance history: {balances}")
        check(balances[-1].debits_posted == 500 and balances[-1].credits_posted == 500,
              f"last balance: {balances[-1]}")

        # Queries by fields.
        query = tb.QueryFilter(user_data_128=0, user_data_64=0, user_data_32=0, ledger=700,
                               code=20, timestamp_min=0, timestamp_max=0, limit=10,
                               flags=tb.QueryFilterFlags.NONE)
        check([a.id for a in client.query_accounts(query)] == [1003, 1004], "query accounts")
        query.code = 1
        query.flags = tb.QueryFilterFlags.REVERSED
        query.limit = 3
        recent = client.query_transfers(query)
        check([t.id for t in recent] == [4001, 3004, 3003], f"query transfers: {recent}")

        # Per ledger, debits equal credits.
        every = client.lookup_accounts([1001, 1002, 1003, 1004])
        check(sum(a.debits_posted for a in every) == sum(a.credits_posted for a in every),
              "posted balanced")
        check(sum(a.debits_pending for a in every) == sum(a.credits_pending for a in every),
              "pending balanced")
    print("ledger_ops: ok")


if __name__ == "__main__":
    main()
