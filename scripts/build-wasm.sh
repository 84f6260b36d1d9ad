#!/usr/bin/env bash
# Build crates/e2ee-wasm for wasm32-unknown-unknown and generate the JS glue.
#
# Output (gitignored): ${E2EE_WASM_OUT:-target-wasm/pkg}/conclave_e2ee_wasm{.js,_bg.wasm,.d.ts}
#   e.g. E2EE_WASM_OUT=web/src/e2ee-wasm scripts/build-wasm.sh for the web app.
#
# Two toolchain routes:
#  * rustup with the wasm32-unknown-unknown target installed: plain cargo.
#  * otherwise Debian's rustc-web (/usr/bin/rustc, /usr/bin/cargo) building
#    the standard library from rust-web-src with -Zbuild-std (needs lld-22).
# wasm-bindgen CLI must be exactly the version pinned in crates/e2ee-wasm
# (0.2.130); it is installed with cargo if missing or different.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WB_VERSION=0.2.130
OUT=${E2EE_WASM_OUT:-target-wasm/pkg}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_WASM:-$ROOT/target-wasm}
# No debug info in the shipped wasm (the workspace release profile has debug = 1).
export CARGO_PROFILE_RELEASE_DEBUG=${CARGO_PROFILE_RELEASE_DEBUG:-0}
PROFILE=${E2EE_WASM_PROFILE:-release}
TARGET=wasm32-unknown-unknown

if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  echo "build-wasm: using rustup toolchain with $TARGET"
  RUSTFLAGS="${RUSTFLAGS:-} --cfg getrandom_backend=\"wasm_js\"" \
    cargo build --profile "$PROFILE" -p conclave-e2ee-wasm --target "$TARGET"
else
  echo "build-wasm: $TARGET not installed in rustup; using Debian rustc-web with -Zbuild-std"
  missing=()
  [ -x /usr/bin/rustc ] || missing+=(rustc-web)
  [ -x /usr/bin/cargo ] || missing+=(cargo-web)
  [ -d /usr/lib/rustlib/src/rust/library ] || missing+=(rust-web-src)
  command -v rust-lld >/dev/null 2>&1 || ls /usr/lib/llvm-*/bin/rust-lld >/dev/null 2>&1 \
    || command -v wasm-ld-22 >/dev/null 2>&1 || [ -x /usr/bin/rust-lld ] || missing+=(lld-22)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "build-wasm: ERROR: missing Debian packages: ${missing[*]}" >&2
    echo "  apt-get install -y rustc-web cargo-web rust-web-src lld-22" >&2
    exit 1
  fi
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="${RUSTFLAGS:-} --cfg getrandom_backend=\"wasm_js\"" \
    /usr/bin/cargo build --profile "$PROFILE" -p conclave-e2ee-wasm \
      -Zbuild-std=std,panic_abort --target "$TARGET"
fi

WASM="$CARGO_TARGET_DIR/$TARGET/$PROFILE/conclave_e2ee_wasm.wasm"
[ -f "$WASM" ] || { echo "build-wasm: ERROR: $WASM not produced" >&2; exit 1; }

WB=$(command -v wasm-bindgen || true)
if [ -z "$WB" ] || [ "$("$WB" --version | awk '{print $2}')" != "$WB_VERSION" ]; then
  echo "build-wasm: installing wasm-bindgen-cli $WB_VERSION (takes several minutes)"
  cargo install wasm-bindgen-cli --version "$WB_VERSION"
  WB=$(command -v wasm-bindgen || echo "$HOME/.cargo/bin/wasm-bindgen")
fi
mkdir -p "$OUT"
# Drop the name/producers sections (~25% smaller) unless E2EE_WASM_KEEP_NAMES=1.
STRIP=(--remove-name-section --remove-producers-section)
[ "${E2EE_WASM_KEEP_NAMES:-0}" = 1 ] && STRIP=()
"$WB" --target web "${STRIP[@]}" --out-dir "$OUT" "$WASM"
echo "build-wasm: wrote $OUT ($(du -h "$OUT/conclave_e2ee_wasm_bg.wasm" | cut -f1) wasm)"
