#!/usr/bin/env bash
# Kassa's whole test suite, from a fresh clone on a fresh machine.
#
# It installs what the tests need (Debian packages with apt-get, when there are any to install),
# then checks formatting and lints, runs every test of every crate, and runs each benchmark once
# in test mode so that none of them rots. Long simulations stay behind KASSA_LONG_TESTS=1.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the tests need: PostgreSQL for kassa-bench's baseline (its smoke test). Later
# steps (iproute2 for cluster tests) add theirs here.
packages=(postgresql)
missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

step "TigerBeetle's official clients (PyPI, npm) for the wire port's tests"
bash scripts/install-test-clients.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "benchmarks, once each in test mode (they must not rot)"
# Through `cargo test`, so they build with the test profile and share its dependencies with the
# tests below instead of building the workspace a second time (criterion runs each benchmark
# once when it is not given `--bench`).
cargo test --workspace --bench '*' --locked

step "cargo test (every crate; the test profile is optimized)"
cargo test --workspace --locked

step "the node's tests again, on placement by id (new data directories place by ledger)"
# Workspace-wide, so nothing is built again; the fuzz tests (input parsing) run once.
node_tests=()
for test in node/tests/t*.rs; do
    name=$(basename "$test" .rs)
    case "$name" in t13_fuzz_wire | t14_fuzz_http) ;; *) node_tests+=(--test "$name") ;; esac
done
KASSA_TEST_PLACEMENT=id cargo test --workspace --locked "${node_tests[@]}"
