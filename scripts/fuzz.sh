#!/bin/bash
# Runs the fuzz targets (fuzz/fuzz_targets: what a stranger or a malicious
# server controls) with libFuzzer through cargo-fuzz, each for SECONDS,
# starting from the committed seeds (fuzz/seeds/<target>) plus whatever
# earlier runs found (fuzz/corpus/<target>, not committed). Prints each
# target's executions per second and coverage. A crash stops the script with
# the input in fuzz/artifacts/<target>/: fix it and keep the input as a seed.
#
#   bash scripts/fuzz.sh              # 60 s per target
#   bash scripts/fuzz.sh 600          # the 10-minute runs of issue 15
#   bash scripts/fuzz.sh 30 sframe    # some targets only
#
# Stable Rust accepts cargo-fuzz's -Z flags with RUSTC_BOOTSTRAP=1. No
# sanitizer (`-s none`): the targets reach only safe Rust, and a panic or
# a failed assertion is a crash either way; debug assertions (overflow
# checks) are on.
set -euo pipefail
cd "$(dirname "$0")/.."
per_target=${1:-60}
[ $# -gt 0 ] && shift
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -O -s none
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "seeds/$target"
  log=$(mktemp)
  echo "fuzz: $target for ${per_target}s"
  if ! cargo fuzz run -O -s none "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$per_target" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target FAILED (input in fuzz/artifacts/$target/)"
    exit 1
  fi
  runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo 0)
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo '?')
  echo "fuzz: $target ok: $runs executions in ${per_target}s ($((runs / per_target)) per second), coverage $cov, no crash"
  rm -f "$log"
done
