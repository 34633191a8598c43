"""Lookups of single transfers through TigerBeetle's Python client, as a client sees them.

  lookups.py sample SAMPLES FILE [ADDRESS]   writes SAMPLES transfer ids, drawn by queries at
                                             random timestamps, one per line
  lookups.py time SYSTEM FILE [ADDRESS]      looks each id of FILE up alone, shuffled: p50, p99
                                             and max of the first reads, then of the same again

ADDRESS defaults to 3102. Used by scripts/cold-lookups.sh and scripts/full-node.sh; a
measurement, never a test's assertion.
"""
import random
import sys
import time

import tigerbeetle as tb


def sample(samples, path, address):
    with tb.ClientSync(cluster_id=0, replica_addresses=address) as client:
        def query(minimum=0, limit=1, flags=tb.QueryFilterFlags.NONE):
            return client.query_transfers(tb.QueryFilter(
                user_data_128=0, user_data_64=0, user_data_32=0, ledger=0, code=0,
                timestamp_min=minimum, timestamp_max=0, limit=limit, flags=flags))
        first = query()[0].timestamp
        last = query(flags=tb.QueryFilterFlags.REVERSED)[0].timestamp
        rng = random.Random(21)
        ids = set()
        while len(ids) < samples:
            ids.add(rng.choice(query(rng.randint(first, last), limit=200)).id)
    with open(path, "w") as out:
        out.write("\n".join(str(i) for i in ids))


def timed(system, path, address):
    ids = [int(line) for line in open(path)]
    random.Random(22).shuffle(ids)

    def percentiles(name, micros):
        micros.sort()
        at = lambda q: micros[min(len(micros) - 1, int(q * len(micros)))]
        print(f"{system}: {name}: {len(micros)} lookups  p50 {at(0.50):.0f} us  "
              f"p99 {at(0.99):.0f} us  max {micros[-1]:.0f} us", flush=True)

    with tb.ClientSync(cluster_id=0, replica_addresses=address) as client:
        client.lookup_transfers([0])  # the session's registration, not timed
        for name in ["cold (first read of each)", "again"]:
            micros = []
            for transfer_id in ids:
                began = time.perf_counter_ns()
                found = client.lookup_transfers([transfer_id])
                micros.append((time.perf_counter_ns() - began) / 1000)
                assert len(found) == 1 and found[0].id == transfer_id, transfer_id
            percentiles(name, micros)


def main(argv):
    if len(argv) < 4 or argv[1] not in ("sample", "time"):
        print(__doc__, file=sys.stderr)
        return 2
    address = argv[4] if len(argv) > 4 else "3102"
    if argv[1] == "sample":
        sample(int(argv[2]), argv[3], address)
    else:
        timed(argv[2], argv[3], address)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
