#!/usr/bin/env bash
# Builds and runs Conclave on a fresh Debian machine: installs what the build
# needs (the wasm32 toolchain for the E2EE module, wasm-bindgen-cli, npm
# packages), then `cargo run --release`. Arguments go to conclave, e.g.
#   scripts/run.sh --listen 0.0.0.0:8443 --public-ip 192.168.1.20
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --build-only
exec cargo run --release -- "$@"
