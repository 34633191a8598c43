#!/usr/bin/env bash
# The latency of a lookup of a cold transfer, one id per request, as a client sees it, on
# Kassa and on TigerBeetle. TigerBeetle's benchmark client fills a fresh server (Kassa: a
# default node, 16 partitions) with N transfers; the server restarts (Kassa: no transfer
# before its last checkpoint is in memory); a client samples ids with queries at random
# timestamps; the server restarts again (empty caches); the client looks each sampled id up
# alone: p50, p99 and max of those cold lookups, then of the same lookups again. Uses
# TigerBeetle's Python client (scripts/install-test-clients.sh installs it); its per-request
# overhead is in every number, for both servers.
#
# usage: scripts/cold-lookups.sh TIGERBEETLE KASSA [SAMPLES]
#   N=transfers (default 10,000,000); SAMPLES defaults to 2,000
# Ports 3102 and 18102 on loopback must be free. A measurement, never a test's assertion.
set -eu
if [ $# -lt 2 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
tigerbeetle=$1; kassa=$2; samples=${3:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
python=$root/target/test-clients/venv/bin/python
[ -x "$python" ] || { echo "run scripts/install-test-clients.sh first" >&2; exit 1; }
work=$(mktemp -d)
node=""
cleanup() {
  if [ -n "$node" ]; then kill "$node" 2>/dev/null; wait "$node" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

ready() { # port
  for _ in $(seq 6000); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "the server on $1 did not get ready" >&2
  return 1
}
start() { # system
  if [ "$1" = kassa ]; then
    "$kassa" start --data-dir "$work/data" --wire-address 127.0.0.1:3102 \
      --http-address 127.0.0.1:18102 >>"$work/server.log" 2>&1 &
    node=$!
    curl_ready
  else
    "$tigerbeetle" start --addresses=3102 "$work/0_0.tb" >>"$work/server.log" 2>&1 &
    node=$!
    ready 3102
  fi
}
curl_ready() {
  for _ in $(seq 6000); do
    curl -sf 127.0.0.1:18102/ready >/dev/null && return 0
    sleep 0.05
  done
  echo "the node did not get ready" >&2
  return 1
}
stop() { kill "$node"; wait "$node" 2>/dev/null || true; node=""; }

measure() { # system
  rm -rf "$work/data" "$work/0_0.tb"
  if [ "$1" = kassa ]; then
    "$kassa" format --data-dir "$work/data" --partitions 16 >/dev/null
  else
    "$tigerbeetle" format --cluster=0 --replica=0 --replica-count=1 "$work/0_0.tb" >/dev/null 2>&1
  fi
  start "$1"
  echo "$1: filling with ${N:-10000000} transfers"
  "$tigerbeetle" benchmark --addresses=3102 --account-count=10000 \
    --transfer-count="${N:-10000000}" 2>&1 | grep -E "load accepted|batch latency p99"
  stop
  start "$1"
  "$python" - "$samples" "$work/ids" <<'PY'
import random, sys
import tigerbeetle as tb
samples, path = int(sys.argv[1]), sys.argv[2]
with tb.ClientSync(cluster_id=0, replica_addresses="3102") as client:
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
PY
  stop
  start "$1"
  "$python" - "$1" "$work/ids" <<'PY'
import random, sys, time
import tigerbeetle as tb
system, ids = sys.argv[1], [int(line) for line in open(sys.argv[2])]
random.Random(22).shuffle(ids)
def percentiles(name, micros):
    micros.sort()
    at = lambda q: micros[min(len(micros) - 1, int(q * len(micros)))]
    print(f"{system}: {name}: {len(micros)} lookups  p50 {at(0.50):.0f} us  "
          f"p99 {at(0.99):.0f} us  max {micros[-1]:.0f} us")
with tb.ClientSync(cluster_id=0, replica_addresses="3102") as client:
    client.lookup_transfers([0])  # the session's registration, not timed
    for name in ["cold (first read of each)", "again"]:
        micros = []
        for transfer_id in ids:
            began = time.perf_counter_ns()
            found = client.lookup_transfers([transfer_id])
            micros.append((time.perf_counter_ns() - began) / 1000)
            assert len(found) == 1 and found[0].id == transfer_id, transfer_id
        percentiles(name, micros)
PY
  stop
}

measure kassa
measure tigerbeetle
