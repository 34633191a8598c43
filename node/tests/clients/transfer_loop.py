"""Creates transfers one request at a time while the test kills and restarts the node.

Usage: python transfer_loop.py <cluster id> <wire address> <count>
Creates accounts 1 and 2 (ledger 1), then transfers 100001 .. 100000 + count from 1 to 2,
transfer i of amount i % 7 + 1, printing "acked <id>" as each is answered. Every answer must be
`created`: a request applied twice would answer `exists` the second time, and an evicted
session raises. Driven by node/tests/t08_wire_clients.rs, which restarts the node midway and
checks the ledger afterwards.
"""

import sys

import tigerbeetle as tb


def main():
    cluster, address, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    with tb.ClientSync(cluster_id=cluster, replica_addresses=address) as client:
        results = client.create_accounts(
            [tb.Account(id=1, ledger=1, code=1), tb.Account(id=2, ledger=1, code=1)]
        )
        created = tb.CreateAccountStatus.CREATED
        if [r.status for r in results] != [created, created]:
            raise SystemExit(f"accounts: {results}")
        print("accounts", flush=True)
        for i in range(1, count + 1):
            transfer = tb.Transfer(id=100000 + i, debit_account_id=1, credit_account_id=2,
                                   amount=i % 7 + 1, ledger=1, code=1)
            results = client.create_transfers([transfer])
            if [r.status for r in results] != [tb.CreateTransferStatus.CREATED]:
                raise SystemExit(f"transfer {transfer.id}: {results}")
            print(f"acked {transfer.id}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
