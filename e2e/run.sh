#!/usr/bin/env bash
# Runs the browser end-to-end tests against the real server binary.
#   e2e/run.sh                      # uses target/release/conclave
#   CONCLAVE_BIN=/path/to/conclave e2e/run.sh
#   e2e/run.sh tests/firefox.test.mjs  # only some test files
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
#
# Firefox pairs no host candidate with a 127.0.0.1 server candidate, so the
# Firefox interop test announces media on an address of a test-only veth pair
# (one end in a network namespace made here, never a real network). Needs root
# and iproute2. Without them that test is skipped with the reason, except with
# CI=true, where a test that cannot run must fail: this script stops here.
# The ICE-TCP test runs a Chromium inside that namespace (CONCLAVE_E2E_NETNS)
# with UDP dropped there by nftables; the network-change test moves that
# Chromium to another address of the /29 (CONCLAVE_E2E_NETNS_IF names its
# interface).
ci=0
case "${CI:-}" in true | 1 | yes) ci=1 ;; esac
if [ -z "${CONCLAVE_E2E_FIREFOX_IP:-}" ]; then
  ns="conclave-e2e-$$"
  host_if="cv$$h"; ns_if="cv$$n"
  cleanup() { ip link del "$host_if" 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; }
  if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && trap cleanup EXIT \
    && ip netns add "$ns" && ip link add "$host_if" type veth peer name "$ns_if" \
    && ip link set "$ns_if" netns "$ns" && ip addr add 10.213.0.1/29 dev "$host_if" \
    && ip link set "$host_if" up && ip netns exec "$ns" ip addr add 10.213.0.2/29 dev "$ns_if" \
    && ip netns exec "$ns" ip link set "$ns_if" up; then
    ip netns exec "$ns" ip link set lo up || true
    export CONCLAVE_E2E_FIREFOX_IP=10.213.0.1
    export CONCLAVE_E2E_NETNS="$ns"
    export CONCLAVE_E2E_NETNS_IF="$ns_if"
  elif [ $ci = 1 ]; then
    echo "e2e: could not create the test veth pair for the Firefox test (needs root and iproute2), and CONCLAVE_E2E_FIREFOX_IP is not set; CI=true, so this is a failure" >&2
    exit 1
  else
    echo "e2e: could not create the test veth pair (needs root and iproute2); the Firefox test will be skipped" >&2
  fi
fi
if [ $# -gt 0 ]; then
  node --test --test-concurrency=1 "$@"
else
  node --test --test-concurrency=1 tests/
fi
