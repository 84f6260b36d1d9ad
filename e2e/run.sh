#!/usr/bin/env bash
# Runs the browser end-to-end tests against the real server binary.
#   e2e/run.sh                      # uses target/release/conclave
#   CONCLAVE_BIN=/path/to/conclave e2e/run.sh
# Needs: Node 20+, Chromium at /usr/bin/chromium (or $CHROMIUM), the server
# built with the web client embedded (cd web && npm ci && npm run build;
# cargo build --release -p conclave-server).
set -euo pipefail
# A relative CONCLAVE_BIN means relative to where the script was started.
if [ -n "${CONCLAVE_BIN:-}" ]; then
  CONCLAVE_BIN="$(cd "$(dirname "$CONCLAVE_BIN")" && pwd)/$(basename "$CONCLAVE_BIN")"
  export CONCLAVE_BIN
fi
cd "$(dirname "$0")"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
BIN="${CONCLAVE_BIN:-../target/release/conclave}"
if [ ! -x "$BIN" ]; then
  echo "server binary not found at $BIN — build it first (cargo build --release -p conclave-server)" >&2
  exit 1
fi
# Node's default reporter: "spec" on a terminal, TAP ("# pass N" / "# fail N"
# summary lines, which scripts/test.sh adds up) when the output is piped.
exec node --test --test-concurrency=1 tests/
