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
  "$python" "$root/scripts/lookups.py" sample "$samples" "$work/ids"
  stop
  start "$1"
  "$python" "$root/scripts/lookups.py" time "$1" "$work/ids"
  stop
}

measure kassa
measure tigerbeetle
