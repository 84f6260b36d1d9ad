#!/usr/bin/env bash
# Runs every Conclave test: formatting and lints, Rust unit and integration
# tests against the real binary, the E2EE core natively and in WebAssembly,
# and the browser end-to-end tests with headless Chromium.
#
# A test that did not run is not a pass. Every skipped or ignored test is
# listed and counted on the last line (`N passed, N failed, N skipped`), and
# each testing step must run at least as many tests as the suite held when
# its minimum below was last raised (Node's runner passes on an empty
# folder; a suite that stops loading must not look green). With CI=true a
# skip fails the run, and the minimum counts tests that actually ran;
# elsewhere (say, a machine without root for the Firefox test's veth pair)
# skips are reported and the minimum counts tests that were found.
set -uo pipefail
cd "$(dirname "$0")/.."

# Tests in the suite (raise these when adding tests):
#   rust: `cargo test --release --workspace` (unit, integration and doc tests)
#   web:  web/test/*.test.ts (unit tests of the web client's pure logic)
#   wasm: e2ee-wasm-test/*.test.mjs
#   e2e:  e2e/tests/*.test.mjs
MIN_RUST_TESTS=238
MIN_WEB_TESTS=101
MIN_WASM_TESTS=5
MIN_E2E_TESTS=39

ci=0
case "${CI:-}" in true | 1 | yes) ci=1 ;; esac
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
failed_steps=()
total_pass=0 total_fail=0 total_skip=0
summary=()

sum() { awk '{s+=$1} END {print s+0}'; }

# step NAME MIN_TESTS COMMAND...: runs COMMAND, then counts the tests it
# reported (cargo's "test result:" lines, Node's TAP summary and directives).
step() {
  local name=$1 min=$2; shift 2
  local log="$logdir/step-${#summary[@]}.log"
  echo "::: $name"
  local ok=1
  "$@" 2>&1 | tee "$log" || ok=0

  local pass fail skip skip_lines
  pass=$(( $(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{print $4}' | sum) \
    + $(grep -E '^# pass [0-9]+' "$log" | awk '{print $3}' | sum) ))
  # A Node test cancelled (say, by a failing before() hook) did not pass either.
  fail=$(( $(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{print $6}' | sum) \
    + $(grep -E '^# (fail|cancelled) [0-9]+' "$log" | awk '{print $3}' | sum) ))
  # Node counts skipped and todo tests in "# skipped N" / "# todo N" but a
  # skipped describe() only as a "# SKIP" directive on its own line; take
  # whichever is larger. cargo: "N ignored" in its result lines.
  local node_skip node_directives cargo_ignored
  node_skip=$(grep -E '^# (skipped|todo) [0-9]+' "$log" | awk '{print $3}' | sum)
  node_directives=$(grep -Ec '^ *(not )?ok [0-9]+ .* # (SKIP|TODO)' "$log")
  cargo_ignored=$(grep -Eo '[0-9]+ ignored;' "$log" | awk '{print $1}' | sum)
  skip=$(( (node_skip > node_directives ? node_skip : node_directives) + cargo_ignored ))
  skip_lines=$(grep -E '^ *(not )?ok [0-9]+ .* # (SKIP|TODO)|^test .* \.\.\. ignored' "$log" | sed 's/^ */    /')

  local why=()
  [ $ok = 1 ] || why+=("exited with an error")
  if [ "$min" -gt 0 ]; then
    local counted=$((pass + fail)) what="ran"
    [ $ci = 1 ] || { counted=$((pass + fail + skip)); what="found"; }
    if [ $counted -lt "$min" ]; then
      why+=("$what $counted tests, fewer than the $min this step holds")
    fi
  fi
  if [ $skip -gt 0 ]; then
    echo "::: $name: $skip skipped or ignored:"
    echo "$skip_lines"
    [ $ci = 1 ] && why+=("skipped $skip tests (CI=true: every test must run)")
  fi
  summary+=("$name: $pass passed, $fail failed, $skip skipped")
  [ "$min" -gt 0 ] && summary[-1]+=" (minimum $min)"
  if [ ${#why[@]} -gt 0 ]; then
    failed_steps+=("$name")
    summary[-1]+=" — FAILED: $(IFS=';'; echo "${why[*]}" | sed 's/;/; /g')"
    # A step that failed without a failing test (rustfmt, a build, too few
    # tests, a skip in CI) counts as one failure.
    [ $fail -gt 0 ] || fail=1
  fi
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  total_skip=$((total_skip + skip))
}

bash scripts/setup.sh || { echo "setup failed"; exit 1; }

step "rustfmt" 0 cargo fmt --all -- --check
step "web client build" 0 bash -c 'cd web && npm run check && npm run build'
step "web unit (TypeScript)" $MIN_WEB_TESTS bash -c 'cd web && npm test --silent -- --test-reporter=tap'
step "clippy" 0 env CONCLAVE_SKIP_WEB_BUILD=1 cargo clippy --workspace --all-targets -- -D warnings
# One release build serves the Rust tests and the browser tests.
step "rust tests" $MIN_RUST_TESTS env CONCLAVE_SKIP_WEB_BUILD=1 cargo test --release --workspace --no-fail-fast
# The browser tests that need a misbehaving server use a second binary with the
# `test-modes` feature; target/release/conclave stays a normal build.
step "test-mode server build" 0 bash scripts/build-test-modes.sh
# The E2EE core's native tests ran above; here its wasm build must interoperate with them.
step "e2ee wasm interop" $MIN_WASM_TESTS bash -c 'bash scripts/build-wasm.sh && cd e2ee-wasm-test && E2EE_NATIVE_PROFILE=release node --test'
step "browser end-to-end" $MIN_E2E_TESTS bash e2e/run.sh
# Short libFuzzer runs of every fuzz target (longer: scripts/fuzz.sh 600).
step "fuzz (10 s per target)" 0 bash scripts/fuzz.sh 10

echo "::: summary"
for line in "${summary[@]}"; do echo "  $line"; done
[ ${#failed_steps[@]} -eq 0 ] || echo "failed steps: ${failed_steps[*]}"
if [ $total_skip -gt 0 ]; then
  echo "$total_pass passed, $total_fail failed, $total_skip skipped"
else
  echo "$total_pass passed, $total_fail failed"
fi
[ ${#failed_steps[@]} -eq 0 ]
