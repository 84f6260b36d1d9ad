#!/usr/bin/env bash
# Installs what building and testing Conclave needs on Debian 12 (idempotent).
# Rust (rustup, stable) and Node.js 20 are assumed; everything else comes from
# Debian's packages, crates.io and npm.
#   scripts/setup.sh              # everything the tests need
#   scripts/setup.sh --build-only # only what building the binary needs (no browsers)
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1

need_apt=()
if [ $build_only = 0 ]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v firefox-esr >/dev/null || need_apt+=(firefox-esr)
  command -v ip >/dev/null || need_apt+=(iproute2)
  command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
fi
# wasm32: rustup's target if present, else Debian's Rust builds the std for it (docs/building.md).
if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
  [ -x /usr/bin/rustc ] || need_apt+=(rustc-web cargo-web)
  [ -d /usr/lib/rustlib/src/rust ] || need_apt+=(rust-web-src)
  command -v rust-lld >/dev/null || [ -e /usr/bin/rust-lld ] || dpkg -s lld-22 >/dev/null 2>&1 || need_apt+=(lld-22)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi

want_bindgen=0.2.130
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want_bindgen" ]; then
  echo "setup: installing wasm-bindgen-cli $want_bindgen (a few minutes, once)"
  cargo install -q wasm-bindgen-cli --version "$want_bindgen"
fi

dirs=(web e2e e2ee-wasm-test)
[ $build_only = 1 ] && dirs=(web)
for dir in "${dirs[@]}"; do
  # Also when the lockfile changed since the last install (npm keeps a copy
  # in node_modules/.package-lock.json), say a new devDependency.
  if [ -f "$dir/package-lock.json" ] && { [ ! -d "$dir/node_modules" ] ||
    [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; }; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
