#!/usr/bin/env bash
# Run every check of the E2EE core end to end:
#   1. cargo fmt --check and clippy -D warnings for conclave-e2ee(+wasm)
#   2. cargo test -p conclave-e2ee -p conclave-e2ee-wasm (native)
#   3. the wasm build (scripts/build-wasm.sh)
#   4. the Node 20 wasm/native interop test (e2ee-wasm-test/, node --test)
# On a fresh Debian 12 machine the caller installs first:
#   apt-get install -y rustc-web cargo-web rust-web-src lld-22 nodejs
# Set E2EE_BENCH=1 to also print the native and wasm benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "test-e2ee: ERROR: '$1' not found. $2" >&2; exit 1; }; }
need cargo "Install Rust (rustup) or: apt-get install -y cargo-web rustc-web"
need node "apt-get install -y nodejs (Node >= 20)"
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
if [ "$NODE_MAJOR" -lt 20 ]; then
  echo "test-e2ee: ERROR: Node >= 20 required (found $(node --version))" >&2
  exit 1
fi

step() { echo; echo "=== test-e2ee: $* ==="; }

step "format and lints"
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt -p conclave-e2ee -p conclave-e2ee-wasm --check
else
  echo "(cargo fmt not available, skipped)"
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy -p conclave-e2ee -p conclave-e2ee-wasm --all-targets -- -D warnings
else
  echo "(cargo clippy not available, skipped)"
fi

step "native tests"
cargo test -p conclave-e2ee -p conclave-e2ee-wasm
cargo build -p conclave-e2ee --examples

step "wasm build"
scripts/build-wasm.sh

step "wasm/native interop (node --test)"
(cd e2ee-wasm-test && node --test)

if [ "${E2EE_BENCH:-0}" = 1 ]; then
  step "benchmarks"
  cargo run --release -q -p conclave-e2ee --example bench
  node e2ee-wasm-test/bench.mjs
fi
echo; echo "test-e2ee: all E2EE checks passed"
