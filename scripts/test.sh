#!/usr/bin/env bash
# Runs every Conclave test: formatting and lints, Rust unit and integration
# tests against the real binary, the E2EE core natively and in WebAssembly,
# and the browser end-to-end tests with headless Chromium.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
failed_steps=()

step() {
  local name=$1; shift
  echo "::: $name"
  if ! "$@" 2>&1 | tee -a "$log"; then
    failed_steps+=("$name")
  fi
}

bash scripts/setup.sh || { echo "setup failed"; exit 1; }

step "rustfmt" cargo fmt --all -- --check
step "web client build" bash -c 'cd web && npm run check && npm run build'
step "clippy" env CONCLAVE_SKIP_WEB_BUILD=1 cargo clippy --workspace --all-targets -- -D warnings
# One release build serves the Rust tests and the browser tests.
step "rust tests" env CONCLAVE_SKIP_WEB_BUILD=1 cargo test --release --workspace
# The E2EE core's native tests ran above; here its wasm build must interoperate with them.
step "e2ee wasm interop" bash -c 'bash scripts/build-wasm.sh && cd e2ee-wasm-test && E2EE_NATIVE_PROFILE=release node --test'
step "browser end-to-end" bash e2e/run.sh

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
node_pass=$(grep -E '^# pass [0-9]+' "$log" | awk '{s+=$3} END {print s+0}')
node_fail=$(grep -E '^# fail [0-9]+' "$log" | awk '{s+=$3} END {print s+0}')
rm -f "$log"
if [ ${#failed_steps[@]} -gt 0 ]; then
  echo "failed steps: ${failed_steps[*]}"
  failed=$((failed + node_fail + (node_fail == 0 ? 1 : 0)))
else
  failed=$((failed + node_fail))
fi
echo "$((passed + node_pass)) passed, $failed failed"
[ ${#failed_steps[@]} -eq 0 ]
