#!/usr/bin/env bash
# Two Kassa binaries, alternating, under TigerBeetle's own benchmark client, each on a fresh
# default node (16 partitions); after each run the node is stopped and started again on the
# same data directory. One line per run: throughput and batch p99 (from the benchmark), the
# node's RSS at the end and its peak over the run, the data directory's size, log segments
# and checkpoint runs on disk, the time from `kassa start` until `GET /ready` answers, and
# the RSS after that restart.
#
# usage: scripts/ab-restart.sh TIGERBEETLE KASSA_A KASSA_B PAIRS [benchmark flags...]
#   N=transfers (default 10,000,000, the benchmark's own default)
#   KASSA_FLAGS="--memory 1GiB" adds flags to every `kassa start`; KASSA_FLAGS_A and
#   KASSA_FLAGS_B to A's or B's only (the same binary twice compares two settings)
# Ports 3102 and 18102 on loopback must be free. Benchmarks are benchmarks: compare A and B
# within one run, never across runs, and never assert on these numbers in a test.
set -u
if [ $# -lt 4 ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
tigerbeetle=$1; kassa_a=$2; kassa_b=$3; pairs=$4; shift 4
work=$(mktemp -d)
node=""
cleanup() {
  if [ -n "$node" ]; then kill "$node" 2>/dev/null; wait "$node" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

ready() {
  for _ in $(seq 6000); do
    curl -sf 127.0.0.1:18102/ready >/dev/null && return 0
    sleep 0.05
  done
  echo "the node did not get ready" >&2
  return 1
}

start() { # binary log flags
  # shellcheck disable=SC2086 # the flags are words
  "$1" start --data-dir "$work/data" --wire-address 127.0.0.1:3102 \
    --http-address 127.0.0.1:18102 ${KASSA_FLAGS:-} $3 >"$2" 2>&1 &
  node=$!
}

stop() {
  kill "$node"
  wait "$node" 2>/dev/null
  node=""
}

rss() { awk '/VmRSS/{print int($2 / 1024)}' "/proc/$node/status"; }
peak() { awk '/VmHWM/{print int($2 / 1024)}' "/proc/$node/status"; }

run() { # name binary side_flags [benchmark flags]
  local name=$1 binary=$2 side=$3
  shift 3
  rm -rf "$work/data"
  "$binary" format --data-dir "$work/data" --partitions 16 >/dev/null
  start "$binary" "$work/node.log" "$side"
  ready || return 1
  local result
  result=$("$tigerbeetle" benchmark --addresses=3102 --account-count=10000 \
    --transfer-count="${N:-10000000}" "$@" 2>&1 |
    awk '/load accepted/{t=$4} /batch latency p99/{p=$5} END{printf "%9s tx/s  batch p99 %4s ms", t, p}')
  local rss_run rss_peak
  rss_run=$(rss)
  rss_peak=$(peak)
  stop
  local disk segments runs
  disk=$(du -sm "$work/data" | cut -f1)
  segments=$(find "$work/data" -name 'log-*.seg' | wc -l)
  runs=$(find "$work/data" -name '*.run' | wc -l)
  local began ended
  began=$(date +%s%N)
  start "$binary" "$work/restart.log" "$side"
  ready || return 1
  ended=$(date +%s%N)
  local rss_restart
  rss_restart=$(rss)
  stop
  local seconds
  seconds=$(awk -v b="$began" -v e="$ended" 'BEGIN{printf "%.2f", (e - b) / 1e9}')
  printf "%s %s  rss %5s MB  peak %5s MB  disk %5s MB  segments %3s  runs %3s  restart %6s s  rss after %5s MB\n" \
    "$name" "$result" "$rss_run" "$rss_peak" "$disk" "$segments" "$runs" "$seconds" "$rss_restart"
}

for _ in $(seq "$pairs"); do
  run A "$kassa_a" "${KASSA_FLAGS_A:-}" "$@"
  run B "$kassa_b" "${KASSA_FLAGS_B:-}" "$@"
done
