#!/usr/bin/env bash
# Builds target/release/conclave-test-modes: the server with the `test-modes`
# cargo feature (CONCLAVE_TEST_GHOST_ADDS: a server that misbehaves on
# purpose), for the browser tests that need one. A normal build, and
# target/release/conclave after this script, has no test modes.
#
# The build uses the package selection and environment of scripts/test.sh's
# `cargo test --release --workspace`, so every dependency is reused and only
# the server compiles again; cargo keeps the binary of each feature set
# (under target/release/deps/), so rebuilding without the feature at the end
# only puts the normal binary back in place. Needs web/dist (cd web && npm run build).
set -euo pipefail
cd "$(dirname "$0")/.."
export CONCLAVE_SKIP_WEB_BUILD=1
build() { cargo test --release --workspace --no-run --test signaling "$@"; }
build --features conclave-server/test-modes
rm -f target/release/conclave-test-modes
cp target/release/conclave target/release/conclave-test-modes
build
if grep -q 'test mode: proposing' target/release/conclave; then
  echo "build-test-modes: target/release/conclave still has the test modes" >&2
  exit 1
fi
grep -q 'test mode: proposing' target/release/conclave-test-modes
echo "built target/release/conclave-test-modes"
