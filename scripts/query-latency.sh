#!/usr/bin/env bash
# Kassa binaries one after another under TigerBeetle's own benchmark client, each on a fresh
# default node (16 partitions): the load's throughput and batch p99, then the benchmark's
# closing queries (100 `get_account_transfers`, most of them over cold transfers at 10M) and
# their latency, and from `/metrics` the reads of cold blocks that blocked a core (cache
# misses) and the blocks read ahead through io_uring, summed over partitions.
#
# usage: scripts/query-latency.sh TIGERBEETLE TRANSFERS KASSA [KASSA...]
#   KASSA_FLAGS="--memory 2GiB" adds flags to every `kassa start`
#   TIMESTAMP_QUERIES=200 then times that many `POST /v1/transfers/query` with timestamp
#   bounds (limit 100, each a thousandth of the history, spread over it), one at a time
# Ports 3102 and 18102 on loopback must be free. Benchmarks are benchmarks: compare binaries
# within one run, never across runs, and never assert on these numbers in a test.
set -u
if [ $# -lt 3 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
tigerbeetle=$1; transfers=$2; shift 2
work=$(mktemp -d)
node=""
cleanup() {
  if [ -n "$node" ]; then kill "$node" 2>/dev/null; wait "$node" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

metric() { # name: its sum over partitions
  curl -sf 127.0.0.1:18102/metrics | awk -v name="$1" '$1 ~ "^"name {s+=$2} END{print s+0}'
}

for kassa in "$@"; do
  rm -rf "$work/data"
  "$kassa" format --data-dir "$work/data" --partitions 16 >/dev/null || exit 1
  # shellcheck disable=SC2086 # the flags are words
  "$kassa" start --data-dir "$work/data" --wire-address 127.0.0.1:3102 \
    --http-address 127.0.0.1:18102 ${KASSA_FLAGS:-} >"$work/node.log" 2>&1 &
  node=$!
  for _ in $(seq 600); do
    curl -sf 127.0.0.1:18102/ready >/dev/null && break
    sleep 0.05
  done
  result=$("$tigerbeetle" benchmark --addresses=3102 --account-count=10000 \
    --transfer-count="$transfers" 2>&1 |
    awk '/load accepted/{t=$4} /batch latency p99/{p=$5} /queries in/{q=$4}
         /query latency p50/{q50=$5} /query latency p99/{q99=$5} /query latency p100/{qmax=$5}
         END{printf "%9s tx/s  batch p99 %4s ms  queries %5s s  query p50 %4s ms  p99 %4s ms  max %4s ms",
             t, p, q, q50, q99, qmax}')
  echo "$kassa: $result  blocking reads $(metric kassa_cache_misses_total)  read ahead $(metric kassa_cold_prefetched_blocks_total)"
  if [ "${TIMESTAMP_QUERIES:-0}" -gt 0 ]; then
    timestamp() { # body: the timestamp of the first transfer the query returns
      curl -sf -X POST 127.0.0.1:18102/v1/transfers/query -d "$1" |
        grep -o '"timestamp":"[0-9]*"' | head -1 | grep -o '[0-9][0-9]*'
    }
    first=$(timestamp '{"limit":1}'); last=$(timestamp '{"limit":1,"reversed":true}')
    step=$(( (last - first) / TIMESTAMP_QUERIES )); span=$(( (last - first) / 1000 ))
    misses=$(metric kassa_cache_misses_total)
    for i in $(seq 0 $((TIMESTAMP_QUERIES - 1))); do
      min=$((first + i * step)); max=$((min + span))
      curl -sf -o /dev/null -w '%{time_total}\n' -X POST 127.0.0.1:18102/v1/transfers/query \
        -d "{\"timestamp_min\":\"$min\",\"timestamp_max\":\"$max\",\"limit\":100}"
    done | sort -n | awk '{t[NR] = $1 * 1000}
      END{printf "  timestamp queries %d  p50 %.2f ms  p99 %.2f ms  max %.2f ms",
          NR, t[int(NR * 0.5)], t[int(NR * 0.99)], t[NR]}'
    echo "  blocking reads $(( $(metric kassa_cache_misses_total) - misses ))"
  fi
  kill "$node"; wait "$node" 2>/dev/null
  node=""
done
