#!/usr/bin/env bash
# End-to-end tests of the Spin adapter: builds the component (scripts/build-spin), installs the
# test host (tests/spin/setup.sh), then serves the component over real HTTP on loopback ports
# with the top-level spin.toml and drives it against a local mock upstream speaking OpenAI's wire
# format (tests/spin/e2e.py). The limit tests run against both counter stores: SQLite (in the
# host) and a real redis-server, installed from Debian when missing and started here on a free
# loopback port for the duration of the run.
# Prints "N passed, N failed"; exits non-zero on failure.
# Usage: tests/spin/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" PYTHONDONTWRITEBYTECODE=1

# redis-server for the Redis counter store (Debian's package, installed once).
if ! command -v redis-server >/dev/null; then
  echo "[spin] installing redis-server (apt-get)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
redis_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis_dir="$(mktemp -d)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$redis_dir" \
  --daemonize no >"$redis_dir/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$redis_dir"' EXIT
export SPIN_TEST_REDIS_ADDRESS="redis://127.0.0.1:$redis_port"
for _ in $(seq 100); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.05
done

host="$(tests/spin/setup.sh)"
scripts/build-spin
# The host's own unit tests (manifest parsing, allow-list matching); reuse the built deps.
if [ -z "${SPIN_TEST_HOST:-}" ]; then
  if ! out="$(CARGO_PROFILE_RELEASE_OPT_LEVEL="${SPIN_HOST_OPT_LEVEL:-3}" \
      CARGO_TARGET_DIR="$(dirname "$(dirname "$host")")" \
      cargo test --quiet --release --locked --manifest-path tests/spin/host/Cargo.toml 2>&1)"; then
    printf '%s\nspin-test-host unit tests failed\n0 passed, 1 failed\n' "$out"
    exit 1
  fi
fi
python3 tests/spin/e2e.py "$host"
