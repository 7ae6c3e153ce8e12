#!/usr/bin/env bash
# Install what the Spin end-to-end tests and benchmark need, from the package registries only:
#   - rustup target wasm32-wasip2 (the component's target)
#   - spin-test-host (tests/spin/host): wasmtime 48 + wasmtime-wasi + wasmtime-wasi-http from
#     crates.io, built once with its own Cargo.lock into target/tools/spin-test-host.
# The Spin CLI itself is not on any package registry (its binaries come from GitHub); see
# docs/spin.md for what this host does and does not reproduce.
# Idempotent: a second run is a no-op cargo freshness check (about a second).
# Prints the host binary's path on stdout. Set SPIN_TEST_HOST to use a prebuilt binary instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
log() { printf '[spin-setup] %s\n' "$*" >&2; }

if [ -n "${SPIN_TEST_HOST:-}" ]; then
  [ -x "$SPIN_TEST_HOST" ] || { log "SPIN_TEST_HOST=$SPIN_TEST_HOST is not executable"; exit 1; }
  echo "$SPIN_TEST_HOST"
  exit 0
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  log "adding rustup target wasm32-wasip2"
  rustup target add wasm32-wasip2 >&2
fi

target_dir="${CARGO_TARGET_DIR_TOOLS:-$root/target/tools}/spin-test-host"
bin="$target_dir/release/spin-test-host"
[ -x "$bin" ] || log "building spin-test-host (wasmtime from crates.io; several minutes, once)"
start=$(date +%s)
# The host is a test tool, not the thing measured: a lighter optimisation level keeps the
# one-time build short. SPIN_HOST_OPT_LEVEL=3 gives a faster host for benchmarking.
CARGO_PROFILE_RELEASE_OPT_LEVEL="${SPIN_HOST_OPT_LEVEL:-3}" CARGO_TARGET_DIR="$target_dir" \
  cargo build --quiet --release --locked --manifest-path "$root/tests/spin/host/Cargo.toml" >&2
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -gt 5 ] && log "spin-test-host built in ${elapsed}s"
echo "$bin"
