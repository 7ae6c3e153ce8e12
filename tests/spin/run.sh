#!/usr/bin/env bash
# End-to-end tests of the Spin adapter: builds the component (scripts/build-spin), installs the
# test host (tests/spin/setup.sh), then serves the component over real HTTP on loopback ports
# with the top-level spin.toml and drives it against a local mock upstream speaking OpenAI's wire
# format (tests/spin/e2e.py). Prints "N passed, N failed"; exits non-zero on failure.
# Usage: tests/spin/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" PYTHONDONTWRITEBYTECODE=1

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
