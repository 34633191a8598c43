#!/usr/bin/env bash
# One data directory filled once, then restarted by each Kassa binary in turn: how long until
# `GET /ready` answers, the RSS a second later, and from `/metrics` the bytes of run indexes
# and filters in memory per keyspace, summed over partitions. The fill is TigerBeetle's own
# benchmark client against a default node (16 partitions) of the first binary; the data
# directory is deleted at the end. Every binary must read the first one's directory.
#
# usage: scripts/restart-memory.sh TIGERBEETLE TRANSFERS ROUNDS KASSA [KASSA...]
#   KASSA_FLAGS="--memory 1GiB" adds flags to every `kassa start`; benchmark flags (such as
#   --id-order=random) go in BENCHMARK_FLAGS.
# Ports 3102 and 18102 on loopback must be free. Benchmarks are benchmarks: compare binaries
# within one run, never across runs, and never assert on these numbers in a test.
set -u
if [ $# -lt 4 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
tigerbeetle=$1; transfers=$2; rounds=$3; shift 3
work=$(mktemp -d)
node=""
cleanup() {
  if [ -n "$node" ]; then kill "$node" 2>/dev/null; wait "$node" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

start() { # binary log
  # shellcheck disable=SC2086 # the flags are words
  "$1" start --data-dir "$work/data" --wire-address 127.0.0.1:3102 \
    --http-address 127.0.0.1:18102 ${KASSA_FLAGS:-} >"$2" 2>&1 &
  node=$!
  for _ in $(seq 60000); do
    curl -sf 127.0.0.1:18102/ready >/dev/null && return 0
    sleep 0.01
  done
  echo "the node did not get ready (log: $2)" >&2
  return 1
}

stop() {
  kill "$node"
  wait "$node" 2>/dev/null
  node=""
}

"$1" format --data-dir "$work/data" --partitions 16 >/dev/null || exit 1
start "$1" "$work/fill.log" || exit 1
# shellcheck disable=SC2086 # the flags are words
"$tigerbeetle" benchmark --addresses=3102 --account-count=10000 \
  --transfer-count="$transfers" ${BENCHMARK_FLAGS:-} 2>&1 |
  awk '/load accepted/{printf "fill: %s tx/s", $4} END{print ""}'
stop
echo "data directory: $(du -sm "$work/data" | cut -f1) MB"

for _ in $(seq "$rounds"); do
  for kassa in "$@"; do
    began=$(date +%s%N)
    start "$kassa" "$work/restart.log" || exit 1
    ended=$(date +%s%N)
    sleep 1
    rss=$(awk '/VmRSS/{print int($2 / 1024)}' "/proc/$node/status")
    memory=$(curl -sf 127.0.0.1:18102/metrics | awk '
      /^kassa_store_memory_bytes/ {
        split($1, label, "keyspace=\""); split(label[2], name, "\""); bytes[name[1]] += $2
      }
      END { for (k in bytes) printf " %s %.1f", k, bytes[k] / 1e6 }')
    stop
    printf "%s  restart %5.2f s  rss %5s MB  run memory (MB):%s\n" "$(basename "$kassa")" \
      "$(awk -v b="$began" -v e="$ended" 'BEGIN{print (e - b) / 1e9}')" "$rss" "$memory"
  done
done
