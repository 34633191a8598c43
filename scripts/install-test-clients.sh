#!/usr/bin/env bash
# Installs TigerBeetle's official clients that node/tests/t08_wire_clients.rs drives against a
# real node: Python `tigerbeetle` (PyPI, in a virtualenv) and Node.js `tigerbeetle-node` (npm),
# both 0.17, into target/test-clients (or $KASSA_TEST_CLIENTS); and `schemathesis` (PyPI, in the
# same virtualenv), which node/tests/t14_fuzz_http.rs runs against the HTTP API. Idempotent: a second run with
# the same versions installed does nothing. Every Python package is pinned in
# scripts/test-clients-constraints.txt. Installs python3-venv, nodejs and npm with apt-get
# when they are missing (CI runs as root on a fresh Debian-like machine).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_CLIENT_VERSION=0.17.8
SCHEMATHESIS_VERSION=4.32.5
NODE_CLIENT_VERSION=0.17.9
dir="${KASSA_TEST_CLIENTS:-target/test-clients}"
mkdir -p "$dir"

missing=()
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

venv="$dir/venv"
constraints="scripts/test-clients-constraints.txt"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('tigerbeetle') != '$PYTHON_CLIENT_VERSION')" >/dev/null 2>&1; then
    echo "installing tigerbeetle==$PYTHON_CLIENT_VERSION (PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" "tigerbeetle==$PYTHON_CLIENT_VERSION"
fi

if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION')" >/dev/null 2>&1; then
    echo "installing schemathesis==$SCHEMATHESIS_VERSION (PyPI)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" "schemathesis==$SCHEMATHESIS_VERSION"
fi

npm_dir="$dir/npm"
package="$npm_dir/node_modules/tigerbeetle-node/package.json"
if ! grep -q "\"version\": \"$NODE_CLIENT_VERSION\"" "$package" 2>/dev/null; then
    echo "installing tigerbeetle-node@$NODE_CLIENT_VERSION (npm)"
    mkdir -p "$npm_dir"
    npm install --silent --no-audit --no-fund --prefix "$npm_dir" "tigerbeetle-node@$NODE_CLIENT_VERSION"
fi
