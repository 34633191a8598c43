#!/usr/bin/env bash
# TigerBeetle's own benchmark on a fresh server and on one already holding FILL transfers,
# with lookups of cold transfers on the full one. Kassa (a default node, 16 partitions) then
# TigerBeetle (one replica), one at a time: each one's data is deleted before the next starts,
# so that the disk holds one full server at a time. For each server:
#   fresh  a new server; the benchmark at BENCH_N transfers (its own ids: accounts 1 to
#          10,000, transfers from 1 up)
#   fill   a new server; the benchmark creates FILL transfers with --id-order=reversed (ids
#          counting down from 2^128 - 2, so none meets the benchmark's own)
#   start  the server stops and starts again: seconds until it answers (Kassa: GET /ready;
#          TigerBeetle: its port accepts), and its RSS
#   cold   SAMPLES ids drawn by queries, a restart (empty caches), each id looked up alone by
#          TigerBeetle's Python client (scripts/lookups.py): cold reads, then the same again
#   full   the benchmark at BENCH_N, as fresh, on the full server
# Each line names the server and the step; the disk use is printed after the fill.
#
# usage: scripts/full-node.sh TIGERBEETLE KASSA [SAMPLES]
#   FILL (default 100,000,000), BENCH_N (default 10,000,000), SAMPLES (default 2,000)
#   SYSTEMS="kassa tigerbeetle" (the order and choice), KASSA_FLAGS (added to `kassa start`)
# Needs scripts/install-test-clients.sh run first, and ports 3102 and 18102 free on loopback.
# Disk: Kassa about 55 GB at FILL=100M; TigerBeetle about 1.3 KB a transfer (40 GB at 30M,
# so FILL=100M does not fit 70 GB: use SYSTEMS=tigerbeetle FILL=30000000 there).
# A measurement, never a test's assertion.
set -eu
if [ $# -lt 2 ]; then
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
tigerbeetle=$1; kassa=$2; samples=${3:-2000}
fill=${FILL:-100000000}; bench_n=${BENCH_N:-10000000}
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

ready() { # system
  for _ in $(seq 12000); do
    if [ "$1" = kassa ]; then
      curl -sf 127.0.0.1:18102/ready >/dev/null && return 0
    else
      (exec 3<>/dev/tcp/127.0.0.1/3102) 2>/dev/null && return 0
    fi
    sleep 0.05
  done
  echo "$1 did not get ready" >&2
  return 1
}
start() { # system
  if [ "$1" = kassa ]; then
    # shellcheck disable=SC2086 # the flags are words
    "$kassa" start --data-dir "$work/data" --wire-address 127.0.0.1:3102 \
      --http-address 127.0.0.1:18102 ${KASSA_FLAGS:-} >>"$work/server.log" 2>&1 &
  else
    "$tigerbeetle" start --addresses=3102 "$work/0_0.tb" >>"$work/server.log" 2>&1 &
  fi
  node=$!
  ready "$1"
}
stop() { kill "$node"; wait "$node" 2>/dev/null || true; node=""; }
format() { # system
  rm -rf "$work/data" "$work/0_0.tb"
  if [ "$1" = kassa ]; then
    "$kassa" format --data-dir "$work/data" --partitions 16 >/dev/null
  else
    "$tigerbeetle" format --cluster=0 --replica=0 --replica-count=1 "$work/0_0.tb" \
      >/dev/null 2>&1
  fi
}
rss_mb() { awk -v f="$1:" '$1 == f {printf "%d", $2 / 1024}' "/proc/$node/status"; }
bench() { # system step transfers [flags]
  local system=$1 step=$2 transfers=$3; shift 3
  "$tigerbeetle" benchmark --addresses=3102 --account-count=10000 \
    --transfer-count="$transfers" "$@" 2>&1 |
    awk -v s="$system" -v p="$step" -v n="$transfers" \
      '/load accepted/{t=$4} /batch latency p99 /{b=$5} /panic|error/{e=$0}
       END{if (e) print s ": " p ": " e; else printf "%s: %s: %d transfers  %s tx/s  batch p99 %s ms\n", s, p, n, t, b}'
}

for system in ${SYSTEMS:-kassa tigerbeetle}; do
  format "$system"
  start "$system"
  bench "$system" fresh "$bench_n"
  stop

  format "$system"
  start "$system"
  bench "$system" fill "$fill" --id-order=reversed
  echo "$system: fill: peak RSS $(rss_mb VmHWM) MB, RSS $(rss_mb VmRSS) MB, disk $(du -sm "$work" | cut -f1) MB"
  stop
  began=$(date +%s.%N)
  start "$system"
  took=$(awk -v a="$began" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
  echo "$system: start: ready after $took s, RSS $(rss_mb VmRSS) MB"
  "$python" "$root/scripts/lookups.py" sample "$samples" "$work/ids"
  stop
  start "$system"
  "$python" "$root/scripts/lookups.py" time "$system" "$work/ids"
  bench "$system" full "$bench_n"
  echo "$system: full: peak RSS $(rss_mb VmHWM) MB, disk $(du -sm "$work" | cut -f1) MB"
  stop
  rm -rf "$work/data" "$work/0_0.tb"
done
